"""The reference catalog: which CMS releases are loaded, their revisions and effective periods,
and selection of the release in force on a date of service (never "latest").

A release covers dates from its effective quarter start until the next loaded release of the same
kind starts, and never past its natural end: an RVU release ends with its calendar year (each year
has its own conversion factor); NCCI PTP and MUE tables end with their quarter; ZIP5 crosswalks
stay in force until a newer one is loaded. A date nothing covers raises ReferenceNotFound.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from scrubber.errors import ReferenceNotFound
from scrubber.schemas import is_arrow_text
from scrubber.store import Store

CATALOG_KEY = "reference/catalog.json"
KINDS = ("rvu", "ptp", "mue", "zip")


def _natural_end(kind: str, start: date) -> date | None:
    """Exclusive end a release can never cover past, whatever is loaded after it."""
    if kind == "rvu":
        return date(start.year + 1, 1, 1)
    if kind in ("ptp", "mue"):
        q_month = 3 * ((start.month - 1) // 3) + 1
        return date(start.year + (q_month + 3 > 12), (q_month + 3 - 1) % 12 + 1, 1)
    return None


@dataclass
class ReleaseEntry:
    """One published revision of one CMS release."""

    kind: str
    release: str
    revision: int
    effective_from: date
    tables: dict[str, dict] = field(default_factory=dict)   # table -> {key, rows, source, sha256}
    sources: list[dict] = field(default_factory=list)       # [{name, sha256, table}]
    conversion_factor: str | None = None
    meta: dict = field(default_factory=dict)
    published_at: str = ""
    status: str = "current"                                 # current | superseded
    effective_to: date | None = None                        # derived at load time, exclusive

    def to_json(self) -> dict:
        d = asdict(self)
        d["effective_from"] = self.effective_from.isoformat()
        d.pop("effective_to")
        return d

    @classmethod
    def from_json(cls, d: dict) -> ReleaseEntry:
        d = dict(d)
        d["effective_from"] = date.fromisoformat(d["effective_from"])
        d.pop("effective_to", None)
        return cls(**d)


class Catalog:
    """reference/catalog.json: every revision ever published; the current one per release is used."""

    def __init__(self, entries: list[ReleaseEntry] | None = None) -> None:
        self.entries = entries or []
        self._derive_periods()

    @classmethod
    def load(cls, store: Store) -> Catalog:
        if not store.exists(CATALOG_KEY):
            return cls()
        doc = json.loads(store.read_text(CATALOG_KEY))
        return cls([ReleaseEntry.from_json(e) for e in doc.get("releases", [])])

    def save(self, store: Store) -> None:
        doc = {"format": 1, "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
               "releases": [e.to_json() for e in self.entries]}
        store.write_text(CATALOG_KEY, json.dumps(doc, indent=2, sort_keys=False))

    def current(self, kind: str | None = None) -> list[ReleaseEntry]:
        out = [e for e in self.entries if e.status == "current" and (kind is None or e.kind == kind)]
        return sorted(out, key=lambda e: (e.kind, e.effective_from, e.release))

    def get(self, release: str) -> ReleaseEntry | None:
        for e in self.entries:
            if e.release == release and e.status == "current":
                return e
        return None

    def next_revision(self, release: str) -> int:
        """The revision number the next publication of ``release`` gets (1 for a new release)."""
        return max((e.revision for e in self.entries if e.release == release), default=0) + 1

    def add(self, entry: ReleaseEntry) -> ReleaseEntry:
        """Add a new revision of ``entry.release``; the previous current one becomes superseded."""
        entry.revision = self.next_revision(entry.release)
        for e in self.entries:
            if e.release == entry.release:
                e.status = "superseded"
        entry.status = "current"
        entry.published_at = entry.published_at or datetime.now(UTC).isoformat(timespec="seconds")
        self.entries.append(entry)
        self._derive_periods()
        return entry

    def _derive_periods(self) -> None:
        for kind in KINDS:
            cur = self.current(kind)
            for i, e in enumerate(cur):
                nxt = cur[i + 1].effective_from if i + 1 < len(cur) else None
                natural = _natural_end(kind, e.effective_from)
                ends = [d for d in (nxt, natural) if d is not None]
                e.effective_to = min(ends) if ends else None


class ReferenceSet:
    """Read access to published reference tables, selected by date of service. Caches tables."""

    def __init__(self, store: Store, catalog: Catalog | None = None) -> None:
        self.store = store
        self.catalog = catalog or Catalog.load(store)
        self._cache: dict[tuple[str, str], pd.DataFrame] = {}
        self._arrow: dict[tuple[str, str], pa.Table] = {}

    def releases(self, kind: str | None = None) -> list[ReleaseEntry]:
        return self.catalog.current(kind)

    def release_for(self, kind: str, dos: date) -> ReleaseEntry:
        for e in self.catalog.current(kind):
            if e.effective_from <= dos and (e.effective_to is None or dos < e.effective_to):
                return e
        loaded = ", ".join(f"{e.release} ({e.effective_from}..{e.effective_to or 'open'})"
                           for e in self.catalog.current(kind)) or "none"
        raise ReferenceNotFound(f"no {kind} release covers date of service {dos}; loaded: {loaded}. "
                                f"Load the CMS release in force on that date with `scrubber reference load`.")

    def assign(self, dates: pd.Series, kind: str) -> pd.Series:
        """Release id in force for each date (missing where nothing covers it), vectorised over dates; a
        categorical over the loaded releases (a million lines carry a handful of release ids)."""
        cur = self.catalog.current(kind)
        names = [e.release for e in cur]
        if not cur or len(dates) == 0:
            return pd.Series(pd.Categorical([None] * len(dates), categories=pd.unique(pd.Series(names, dtype=object))),
                             index=dates.index)
        d = pd.to_datetime(dates).to_numpy(dtype="datetime64[D]")
        starts = np.array([np.datetime64(e.effective_from, "D") for e in cur])
        ends = np.array([np.datetime64(e.effective_to, "D") if e.effective_to else np.datetime64("9999-12-31")
                         for e in cur])
        idx = np.searchsorted(starts, d, side="right") - 1
        valid = (idx >= 0)
        safe = np.where(valid, idx, 0)
        valid &= d < ends[safe]
        valid &= ~np.isnat(d)
        if len(set(names)) < len(names):  # one current revision per release: never expected
            return pd.Series(np.where(valid, np.array(names, dtype=object)[safe], None), index=dates.index,
                             dtype=object)
        return pd.Series(pd.Categorical.from_codes(np.where(valid, safe, -1), categories=names), index=dates.index)

    def table(self, table: str, release: str) -> pd.DataFrame:
        key = (table, release)
        if key not in self._cache:
            self._cache[key] = (_decoded(self._arrow[key]).to_pandas() if key in self._arrow
                                else self.store.read_parquet(self._entry_key(table, release)))
        return self._cache[key]

    def _entry_key(self, table: str, release: str) -> str:
        entry = self.catalog.get(release)
        if entry is None or table not in entry.tables:
            raise ReferenceNotFound(f"release {release} has no {table} table in the store")
        return entry.tables[table]["key"]

    def arrow_table(self, table: str, release: str) -> pa.Table:
        """The published table as Arrow, text columns dictionary-encoded (read once per run).

        The PTP table has 2.5M rows over ~15k distinct codes: read as dictionaries it takes a third of
        the time and memory, and a filter by code tests the dictionary, not every row.
        """
        key = (table, release)
        if key not in self._arrow:
            data = pa.BufferReader(self.store.read_bytes(self._entry_key(table, release)))
            text = [f.name for f in pq.read_schema(data) if is_arrow_text(f.type)]
            self._arrow[key] = pq.read_table(data, read_dictionary=text)
        return self._arrow[key]

    def has_table(self, table: str, release: str | None) -> bool:
        entry = self.catalog.get(release) if release else None
        return entry is not None and table in entry.tables

    def tables(self, table: str, releases: Iterable[str | None], *,
               codes_in: tuple[Sequence[str], Iterable[str]] | None = None) -> pd.DataFrame:
        """The tables of ``releases`` stacked, with a ``release`` column.

        ``codes_in=(columns, codes)`` keeps only rows whose every named column holds one of ``codes``,
        filtered in Arrow: a night's 1M lines use a few thousand codes, so of the 2.5M PTP edits only
        those between two billed codes are ever turned into pandas.
        """
        frames = []
        code_array = (pa.array(sorted({c for c in codes_in[1] if isinstance(c, str)}), type=pa.large_string())
                      if codes_in else None)
        for rel in sorted({r for r in releases if isinstance(r, str) and r}):  # no release: NaN/None
            if not self.has_table(table, rel):
                continue
            if codes_in is None:
                frames.append(self.table(table, rel).assign(release=rel))
                continue
            arrow = self.arrow_table(table, rel)
            keep = None
            for column in codes_in[0]:
                hit = _is_in(arrow[column], code_array)
                keep = hit if keep is None else pc.and_(keep, hit)
            frames.append(_decoded(arrow.filter(keep)).to_pandas().assign(release=rel))
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def conversion_factor(self, release: str, qp: bool = False) -> Decimal:
        entry = self.catalog.get(release)
        if entry is None or entry.conversion_factor is None:
            raise ReferenceNotFound(f"release {release} has no conversion factor in the catalog")
        if qp and entry.meta.get("qp_conversion_factor"):
            return Decimal(entry.meta["qp_conversion_factor"])
        return Decimal(entry.conversion_factor)


def _is_in(values: pa.ChunkedArray, codes: pa.Array) -> pa.ChunkedArray:
    """Row mask: value among ``codes``; a dictionary column tests its dictionary once, then indexes."""
    if not pa.types.is_dictionary(values.type):
        return pc.is_in(values, value_set=codes.cast(values.type))
    return pa.chunked_array(
        [pc.take(pc.is_in(chunk.dictionary, value_set=codes.cast(chunk.dictionary.type)), chunk.indices)
         for chunk in values.chunks], type=pa.bool_())


def _decoded(table: pa.Table) -> pa.Table:
    """Dictionary columns back to plain text, so pandas sees the published types."""
    fields = [pa.field(f.name, f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in table.schema]
    return table.cast(pa.schema(fields, metadata=table.schema.metadata))
