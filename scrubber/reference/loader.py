"""`scrubber reference load`: expand folders and zips, detect each file by content, parse, validate,
and publish versioned Parquet tables plus the catalog.

Publishing is all-or-nothing per call: every table is parsed and validated first; only then are the
Parquet files written (under a new revision folder, so readers of the old revision are unaffected)
and finally the catalog, whose single atomic write makes the new revision visible.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import logging
import zipfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pandas as pd

from scrubber.errors import InputFileError, ScrubberError
from scrubber.reference.base import ParsedTable, Parser
from scrubber.reference.catalog import Catalog, ReleaseEntry
from scrubber.reference.validate import PARSER_MODULES, validate_table
from scrubber.schemas import TABLE_KIND
from scrubber.store import Store

log = logging.getLogger(__name__)
SNIFF_BYTES = 64 * 1024
#: when one folder holds the same file in several formats, parse only the best one
FORMAT_PREFERENCE = {".csv": 0, ".txt": 1, ".prn": 1, ".xlsx": 2, ".xls": 3}
IGNORED_SUFFIXES = {".pdf", ".doc", ".docx", ".md", ".rtf", ".htm", ".html"}


@dataclass
class Member:
    """One candidate file: where it came from (group) and how to get its bytes."""

    group: str
    name: str          # display name, "rvu25d.zip!PPRRVU2025_Oct.csv"
    data: bytes
    explicit: bool     # named directly by the user (an unknown explicit file is an error)

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name.split("!")[-1]).stem.lower()

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name.split("!")[-1]).suffix.lower()


@dataclass
class LoadReport:
    """What a load did, for the command line and the refresh DAG."""

    published: list[dict] = field(default_factory=list)   # {kind, release, revision, table, rows, source, ...}
    unchanged: list[str] = field(default_factory=list)    # releases already loaded with identical content
    skipped: list[str] = field(default_factory=list)      # files not recognised or duplicate formats
    warnings: list[str] = field(default_factory=list)

    @property
    def releases(self) -> list[str]:
        return sorted({p["release"] for p in self.published})


def all_parsers() -> list[Parser]:
    parsers: list[Parser] = []
    for name in PARSER_MODULES:
        try:
            module = importlib.import_module(f"scrubber.reference.{name}")
        except ModuleNotFoundError as exc:  # a parser module missing is a packaging bug, say so
            if exc.name == f"scrubber.reference.{name}":
                log.warning("parser module %s is not available", name)
                continue
            raise
        parsers.extend(getattr(module, "PARSERS", []))
    return parsers


def _expand_zip(group_name: str, data: bytes, explicit: bool) -> list[Member]:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise InputFileError(group_name, f"not a readable zip archive ({exc})") from None
    members: list[Member] = []
    with zf:
        for info in sorted(zf.infolist(), key=lambda i: i.filename):
            if info.is_dir() or PurePosixPath(info.filename).name.startswith((".", "__MACOSX")) \
                    or "__MACOSX" in info.filename:
                continue
            inner = zf.read(info)
            name = f"{group_name}!{info.filename}"
            if info.filename.lower().endswith(".zip"):
                members.extend(_expand_zip(name, inner, explicit=False))
            else:
                members.append(Member(group=group_name, name=name, data=inner, explicit=False))
    if explicit and not members:
        raise InputFileError(group_name, "the zip archive is empty")
    return members


def expand(paths: Iterable[str | Path]) -> list[Member]:
    """Folders (recursively, grouped by containing folder), zips (nested), single files."""
    members: list[Member] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InputFileError(str(raw), "no such file or folder")
        if path.is_dir():
            for f in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
                if f.suffix.lower() == ".zip":
                    members.extend(_expand_zip(f.name, f.read_bytes(), explicit=False))
                else:
                    members.append(Member(group=str(f.parent), name=f.name, data=f.read_bytes(), explicit=False))
        elif path.suffix.lower() == ".zip" or path.read_bytes()[:4] == b"PK\x03\x04":
            members.extend(_expand_zip(path.name, path.read_bytes(), explicit=True))
        else:
            members.append(Member(group="<files>", name=path.name, data=path.read_bytes(), explicit=True))
    return members


def _sniff(member: Member, parsers: list[Parser]) -> Parser | None:
    head = member.data[:SNIFF_BYTES]
    for parser in parsers:
        try:
            if parser.sniff(member.name, head):
                return parser
        except Exception:  # a sniffer must never break detection of other kinds
            log.debug("sniffer %s failed on %s", parser.name, member.name, exc_info=True)
    return None


def detect(members: list[Member], parsers: list[Parser], report: LoadReport) -> list[tuple[Member, Parser]]:
    """Pick a parser per file; keep one format per (folder, file stem, table)."""
    chosen: dict[tuple[str, str, str], tuple[Member, Parser]] = {}
    for m in members:
        if not m.data:
            raise InputFileError(m.name, "the file is empty")
        parser = _sniff(m, parsers)
        if parser is None:
            if m.explicit:
                raise InputFileError(m.name, "not a CMS file this tool recognises (PPRRVU, GPCI, LOCCO, ANES, "
                                             "OPPSCAP, ZIP5, NCCI PTP, MUE); check it is the published file")
            if m.suffix not in IGNORED_SUFFIXES:
                report.skipped.append(f"{m.name}: not a recognised CMS data file")
            continue
        key = (m.group, m.stem, parser.table)
        if key in chosen:
            kept = chosen[key][0]
            if FORMAT_PREFERENCE.get(m.suffix, 9) < FORMAT_PREFERENCE.get(kept.suffix, 9):
                chosen[key] = (m, parser)
                report.skipped.append(f"{kept.name}: same table as {m.name} (format preference)")
            else:
                report.skipped.append(f"{m.name}: same table as {kept.name} (format preference)")
            continue
        chosen[key] = (m, parser)
    if not chosen:
        groups = sorted({m.group for m in members})
        raise InputFileError(", ".join(groups) or "<no input>", "no known CMS file found in the input")
    return list(chosen.values())


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _assign_releases(parsed: list[tuple[Member, ParsedTable]], catalog: Catalog) -> None:
    """RVU side files (GPCI, LOCCO, ANES, OPPSCAP) take the PPRRVU release of their folder/zip."""
    by_group: dict[str, list[tuple[Member, ParsedTable]]] = defaultdict(list)
    for m, pt in parsed:
        by_group[m.group].append((m, pt))
    for group, items in by_group.items():
        rvu_main = [pt for _, pt in items if pt.table == "pprrvu"]
        releases = {pt.release for pt in rvu_main}
        if len(releases) > 1:
            raise InputFileError(group, f"one folder holds PPRRVU files of several releases {sorted(releases)}; "
                                        "load them from separate folders")
        for m, pt in items:
            if TABLE_KIND[pt.table] != "rvu" or pt.table == "pprrvu" or pt.release:
                continue
            if rvu_main:
                pt.release = rvu_main[0].release
                pt.effective_from = rvu_main[0].effective_from
                continue
            year = pt.meta.get("year")
            candidates = [e for e in catalog.current("rvu") if year is None or e.effective_from.year == int(year)]
            if not candidates:
                raise InputFileError(m.name, f"a {pt.table.upper()} file needs the PPRRVU release it belongs to "
                                             f"(year {year}): load it together with, or after, that release")
            latest = candidates[-1]
            pt.release, pt.effective_from = latest.release, latest.effective_from
            pt.warnings.append(f"{m.name}: attached to the loaded release {latest.release}")


def _one_pprrvu_per_release(parsed: list[tuple[Member, ParsedTable]],
                            report: LoadReport) -> list[tuple[Member, ParsedTable]]:
    """2026+ CMS ships a non-QPP and a QPP PPRRVU per release (same RVUs, two CFs): keep the non-QPP table
    and record the QPP conversion factor; two files of the same variant for one release is an error."""
    by_release: dict[str, list[tuple[Member, ParsedTable]]] = defaultdict(list)
    for m, pt in parsed:
        if pt.table == "pprrvu":
            by_release[pt.release or ""].append((m, pt))
    dropped: set[int] = set()
    for rel, items in by_release.items():
        if len(items) < 2:
            continue
        variants = [str(pt.meta.get("cf_variant") or "") for _, pt in items]
        qpp = [(m, pt) for (m, pt), v in zip(items, variants, strict=True) if v.upper() == "QPP"]
        main = [(m, pt) for (m, pt), v in zip(items, variants, strict=True) if v.upper() != "QPP"]
        if len(main) != 1 or len(qpp) != 1:
            names = ", ".join(m.name for m, _ in items)
            raise InputFileError(names, f"several PPRRVU files for release {rel}; load one (or one non-QPP plus "
                                        "one QPP file)")
        main[0][1].meta["qp_conversion_factor"] = str(qpp[0][1].meta.get("conversion_factor"))
        dropped.add(id(qpp[0][1]))
        report.warnings.append(f"{qpp[0][0].name}: QPP variant of {rel}; its conversion factor "
                               f"{qpp[0][1].meta.get('conversion_factor')} is kept for qualifying APM participants")
    return [(m, pt) for m, pt in parsed if id(pt) not in dropped]


def _publishable(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[c for c in frame.columns if str(c).startswith("_")])


def load_paths(store: Store, paths: Iterable[str | Path], *, release: str | None = None,
               partial: bool = False) -> LoadReport:
    """Load CMS reference files into ``store``. ``release`` overrides the detected release id.

    ``partial=True`` accepts a deliberate subset of a release (the bundled demo sample): every
    expectation still applies except the row-count bounds of a complete CMS file.
    """
    report = LoadReport()
    parsers = all_parsers()
    members = expand(paths)
    picked = detect(members, parsers, report)
    catalog = Catalog.load(store)

    parsed: list[tuple[Member, ParsedTable]] = []
    for member, parser in picked:
        pt = parser.parse(member.name, member.data)
        pt.meta.setdefault("sha256", _sha256(member.data))
        if release:
            pt.release = release
        parsed.append((member, pt))
        report.warnings.extend(pt.warnings)
    _assign_releases(parsed, catalog)
    parsed = _one_pprrvu_per_release(parsed, report)

    # group into releases: {release: {table: [ParsedTable...]}}
    releases: dict[str, dict[str, list[ParsedTable]]] = defaultdict(lambda: defaultdict(list))
    for member, pt in parsed:
        if not pt.release or pt.effective_from is None:
            raise InputFileError(member.name, "could not tell which release/quarter this file belongs to; "
                                              "pass --release")
        releases[pt.release][pt.table].append(pt)

    plans: list[tuple[ReleaseEntry, dict[str, pd.DataFrame]]] = []
    for rel, tables in sorted(releases.items()):
        first = next(iter(tables.values()))[0]
        kind = TABLE_KIND[first.table]
        previous = catalog.get(rel)
        sources = [{"name": pt.source, "sha256": pt.meta["sha256"], "table": t}
                   for t, pts in tables.items() for pt in pts]
        if previous is not None:
            known = {(s["table"], s["sha256"]) for s in previous.sources}
            if all((s["table"], s["sha256"]) in known for s in sources):
                report.unchanged.append(rel)
                continue
        frames: dict[str, pd.DataFrame] = {}
        for table, pts in tables.items():
            for pt in pts:
                validate_table(table, pt.frame, pt.source, full_release=not partial)
            frame = pd.concat([_publishable(pt.frame) for pt in pts], ignore_index=True) \
                if len(pts) > 1 else _publishable(pts[0].frame)
            if table == "ptp" and previous is not None and "ptp" in previous.tables and "part" in frame.columns:
                # parts f1..f4 may arrive in separate loads: keep earlier parts not re-sent now
                old = store.read_parquet(previous.tables["ptp"]["key"])
                if "part" in old.columns:
                    old = old[~old["part"].isin(set(frame["part"]))]
                    frame = pd.concat([old, frame], ignore_index=True)
            frames[table] = frame
        meta: dict = {}
        cf = None
        for pts in tables.values():
            for pt in pts:
                meta.update({k: v for k, v in pt.meta.items() if k != "sha256" and _jsonable(v)})
        if "conversion_factor" in meta:
            cf = str(meta.pop("conversion_factor"))
        elif previous is not None:
            cf = previous.conversion_factor
        entry = ReleaseEntry(kind=kind, release=rel, revision=0, effective_from=first.effective_from,
                             sources=sources, conversion_factor=cf, meta=meta)
        if previous is not None:  # a re-issue that re-sends only some tables keeps the others
            entry.tables = {t: dict(v) for t, v in previous.tables.items() if t not in frames}
            entry.sources = [s for s in previous.sources if s["table"] not in frames] + sources
            entry.meta = {**previous.meta, **meta}
        plans.append((entry, frames))

    # publish: data files first (new revision folder), the catalog last
    for entry, frames in plans:
        revision = catalog.next_revision(entry.release)
        for table, frame in frames.items():
            key = f"reference/{table}/{entry.release}/r{revision}/{table}.parquet"
            try:
                store.write_parquet(key, frame)
            except Exception as exc:
                raise ScrubberError(f"could not write {key} to the store: {exc}") from exc
            entry.tables[table] = {"key": key, "rows": len(frame),
                                   "source": ", ".join(s["name"] for s in entry.sources if s["table"] == table),
                                   "sha256": ",".join(s["sha256"] for s in entry.sources if s["table"] == table)}
        catalog.add(entry)
        for table, frame in frames.items():
            report.published.append({"kind": entry.kind, "release": entry.release, "revision": entry.revision,
                                     "table": table, "rows": len(frame), "source": entry.tables[table]["source"],
                                     "effective_from": entry.effective_from})
    if plans:
        catalog.save(store)
    for p in report.published:
        e = catalog.get(p["release"])
        p["effective_to"] = e.effective_to if e else None
    return report


def _jsonable(value: object) -> bool:
    return isinstance(value, str | int | float | bool | type(None) | list | dict)
