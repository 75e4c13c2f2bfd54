"""X12 837P (005010X222) -> raw claim lines, one per service line (2400 loop).

pyx12 does the X12 work: tokenising with the interchange's own delimiters, walking its 837P map to
put every segment in its loop (2010AA vs 2310B vs 2420A NM1), and validating segments and
elements against the implementation guide. This module only maps the loops to the canonical
line fields (billing-domain 10.1) and decides what a pyx12 error means for the lines:

- the interchange cannot be tokenised, has no ISA, or is not an 837P -> the whole file is rejected;
- a structural error (segment pyx12 cannot place, mandatory segment/loop missing, loop or
  segment repeated too often, HL/LX numbering) quarantines the lines it belongs to: an error
  inside a 2400 loop its line, inside the 2300 claim every line of the claim, in a billing
  provider / subscriber HL loop every claim under that HL, in the transaction header or the
  ST/SE envelope every claim of the transaction set, in the ISA/GS envelope the whole file.
  After a segment pyx12 cannot place, the loop context of what follows is uncertain, so the
  values mapped from it cannot be trusted;
- an element error (bad code, wrong length, missing element) quarantines the same scope only
  when the element feeds a canonical field (CLM01, CLM05-1, LX01, SV1, DTP*472, NM1 ids, ZIPs,
  SBR09, HI); otherwise it is recorded as a file warning;
- cosmetic findings (trailing element separators, leading spaces) are warnings.

Field mapping (billing-domain 10.1): CLM01 claim_id; LX01 line_number; 2010BA NM1*IL NM109
patient_id; rendering NPI from 2420A NM1*82, else 2310B NM1*82, else the billing provider
(2010AA NM1*85); DTP*472 service date (D8, or the from-date of RD8); SV101-2 hcpcs; SV101-3..6
modifiers; SV102 charge; SV104 units; SV105 else CLM05-1 place of service; HI diagnosis codes;
service ZIP from 2420C/2310C N4, else the billing provider's N4; payer "medicare" when the
subscriber's SBR09 is MB, else the 2010BB payer name in lower case.

source_row is the segment number (1 = ISA) of the line's SV1 segment.
"""

from __future__ import annotations

import bisect
import io
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyx12.error_handler
import pyx12.errors
import pyx12.params
import pyx12.x12context

from scrubber.claims.readers import RawTable
from scrubber.errors import InputFileError

log = logging.getLogger(__name__)

#: GS08 versions accepted as 837P. pyx12 ships the A1 map; the A2 errata does not change the
#: loops or elements used here, so A2 is read with the A1 map.
PROFESSIONAL_VERSIONS = ("005010X222A1", "005010X222A2")
LINE_FIELDS = ["claim_id", "line_number", "patient_id", "rendering_npi", "billing_npi", "payer",
               "service_date", "hcpcs", "modifiers", "units", "charge_amount", "place_of_service",
               "service_zip", "diagnosis_codes"]
RAW_COLUMN = "_x12_segments"
MAX_ERRORS_PER_LINE = 5

_COSMETIC = re.compile(r"trailing element terminators|leading space", re.I)


@dataclass
class _Error:
    kind: str                 # isa | gs | st | seg | ele
    code: str
    message: str
    value: str | None
    seg_no: int               # file-wide segment number (1 = ISA)
    seg_id: str | None
    path: str | None
    refdes: str | None
    st_index: int
    hl_seg: int | None        # segment number of the HL loop the error sits in (None: header)


class _ErrorRecorder(pyx12.error_handler.errh_null):
    """pyx12 error handler that keeps every error with the segment it was found on."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[_Error] = []
        self.seg_no = 0
        self.seg_id: str | None = None
        self.path: str | None = None
        self.st_index = -1
        self.hl_seg: int | None = None

    def add_st_loop(self, seg: Any, src: Any) -> None:
        self.st_index += 1
        self.hl_seg = None

    def add_seg(self, map_node: Any, seg: Any, seg_count: int, cur_line: int, ls_id: str | None) -> None:
        self.seg_no = cur_line
        self.seg_id = seg.get_seg_id() if seg is not None else None
        self.path = map_node.get_path() if map_node is not None else None
        if self.seg_id == "HL" and self.path and self.path.endswith("/HL"):
            self.hl_seg = cur_line

    def _add(self, kind: str, code: str, message: str, value: str | None = None,
             seg_no: int | None = None, refdes: str | None = None) -> None:
        self.errors.append(_Error(kind, str(code), message, value, seg_no or self.seg_no, self.seg_id,
                                  self.path, refdes, self.st_index, self.hl_seg))

    def handle_errors(self, err_list: list) -> None:
        for err_type, code, message, value, src_line in err_list:
            if err_type == "seg":
                self.seg_error(code, message, value, src_line)
            elif err_type in ("isa", "gs", "st"):
                self._add(err_type, code, message)

    def isa_error(self, err_cde: str, err_str: str) -> None:
        self._add("isa", err_cde, err_str)

    def gs_error(self, err_cde: str, err_str: str) -> None:
        self._add("gs", err_cde, err_str)

    def st_error(self, err_cde: str, err_str: str) -> None:
        self._add("st", err_cde, err_str)

    def seg_error(self, err_cde: str, err_str: str, err_value: str | None = None,
                  src_line: int | None = None) -> None:
        self._add("seg", err_cde, err_str, err_value, seg_no=src_line)

    def ele_error(self, err_cde: str, err_str: str, bad_value: str | None, refdes: str | None = None) -> None:
        self._add("ele", err_cde, err_str, bad_value, refdes=refdes)


# --- mapping ---------------------------------------------------------------------------------------

def _v(seg: Any, ref: str) -> str:
    """Element value or '' (pyx12 returns None for absent elements)."""
    if seg is None:
        return ""
    try:
        value = seg.get_value(ref)
    except (IndexError, pyx12.errors.X12PathError, pyx12.errors.EngineError):
        return ""  # absent, or a segment pyx12 could not place (its id differs from the map's)
    return (value or "").strip()


def _segments(node: Any) -> list[Any]:
    return [c for c in node.children if c.type == "seg"]


def _loops(node: Any, loop_id: str) -> list[Any]:
    return [c for c in node.children if c.type == "loop" and c.id == loop_id]


def _first(node: Any, seg_id: str, qualifier: tuple[str, str] | None = None) -> Any:
    """First segment node with this id (and element value, e.g. ('NM101', '82')) directly in the loop."""
    for child in _segments(node):
        seg = child.seg_data
        if seg is not None and seg.get_seg_id() == seg_id and (
                qualifier is None or _v(seg, qualifier[0]) == qualifier[1]):
            return child
    return None


def _walk(node: Any) -> list[Any]:
    """Every segment node of a loop subtree, in file order."""
    out = []
    for child in node.children:
        if child.type == "seg":
            out.append(child)
        elif child.type == "loop":
            out.extend(_walk(child))
    return out


@dataclass
class _Group:
    """Loop instances read as one: pyx12 opens a new loop instance when it meets a segment it
    cannot place (e.g. ``SV1*HC>99213`` with the wrong component separator is taken for the next
    LX), so an instance that does not start with its own anchor segment belongs to the previous one.
    """

    children: list[Any]
    type: str = "loop"


def _placed(loop: Any) -> bool:
    """True when the loop instance starts with the segment its map expects (CLM, LX, ...)."""
    segs = _segments(loop)
    return bool(segs) and segs[0].seg_data is not None and segs[0].seg_data.get_seg_id() == segs[0].x12_map_node.id


def _date(qualifier: str, value: str) -> str:
    """DTP D8 CCYYMMDD or RD8 CCYYMMDD-CCYYMMDD -> ISO from-date; anything else returned as found."""
    if qualifier in ("D8", "RD8") and re.fullmatch(r"\d{8}(-\d{8})?", value):
        return f"{value[:4]}-{value[4:6]}-{value[6:8]}"
    return value


def _diagnoses(claim: Any) -> str:
    codes = []
    for child in _segments(claim):
        seg = child.seg_data
        if seg is None or seg.get_seg_id() != "HI":
            continue
        for i in range(1, 13):
            code = _v(seg, f"HI{i:02d}-2")
            if code:
                codes.append(code)
    return ",".join(codes)


@dataclass
class _Context:
    """Values inherited by claims from the loops above them."""

    st_index: int = -1
    billing_npi: str = ""
    billing_zip: str = ""
    sbr09: str = ""
    patient_id: str = ""
    payer_name: str = ""
    hl: dict[str, int] = field(default_factory=dict)   # HL03 level code -> segment number


@dataclass
class _ClaimSpan:
    start: int
    st_index: int
    hl_segs: tuple[int, ...]
    line_starts: list[int]           # LX segment numbers
    line_ids: list[int]              # index into the lines list


def read_x12(name: str, text: str) -> RawTable:
    """Parse an 837P interchange into a RawTable of raw line fields; pyx12 errors become row errors."""
    errh = _ErrorRecorder()
    notices: list[str] = []
    text = text.lstrip()
    if len(text) > 106 and text.startswith("ISA"):
        terminator = text[105]                    # the ISA segment is fixed-length; its last char ends segments
        stripped = text.rstrip()
        if not stripped.endswith(terminator):     # pyx12 would silently drop an unterminated last segment
            text = stripped + terminator
            notices.append(f"{name}: the last segment had no terminator {terminator!r}; one was added")
    try:
        reader = pyx12.x12context.X12ContextReader(pyx12.params.params(), errh, io.StringIO(text))
    except pyx12.errors.X12Error as exc:
        raise InputFileError(name, f"not a readable X12 interchange: {exc}") from None
    a1_map = reader.map_index_if.get_filename("00501", PROFESSIONAL_VERSIONS[0], "HC")
    for version in PROFESSIONAL_VERSIONS[1:]:
        reader.map_index_if.add_map("00501", version, "HC", None, a1_map, "837P")

    lines: list[dict] = []
    claims: list[_ClaimSpan] = []
    notes: list[tuple[int, str]] = []   # (line index, reason) found while mapping
    boundaries: list[int] = []       # segment numbers where a claim's extent ends (HL, CLM, SE, ...)
    ctx = _Context()
    group: _Group | None = None

    def flush() -> None:
        nonlocal group
        if group is not None:
            claims.append(_map_claim(group, ctx, lines, notes))
            boundaries.append(claims[-1].start)
            group = None

    try:
        for node in reader.iter_segments("2300"):
            if node.type == "loop":
                if group is not None and not _placed(node):
                    group.children.extend(node.children)
                else:
                    flush()
                    group = _Group(list(node.children))
                continue
            flush()
            _track_context(name, node, ctx, boundaries)
        flush()
        reader.src.cleanup()
        missing_trailers = [err[2] for err in reader.src.pop_errors()]
        if missing_trailers:
            # pyx12 only hands over a claim when the next loop starts, so the claim that was being
            # read when the data ended never arrives: the lines cannot all be accounted for.
            raise InputFileError(name, "interchange is truncated or unterminated: " + "; ".join(missing_trailers))
        total_segments = reader.src.get_cur_line()
    except InputFileError:
        raise
    except (pyx12.errors.X12Error, pyx12.errors.EngineError, pyx12.errors.X12PathError) as exc:
        raise InputFileError(name, f"X12 structure cannot be read: {exc}") from None
    except Exception as exc:  # pyx12 tripping over input it does not expect must not stop the batch
        log.exception("%s: pyx12 failed", name)
        raise InputFileError(name, f"X12 structure cannot be read ({type(exc).__name__}: {exc})") from None
    finally:
        reader.close()

    frame = pd.DataFrame(lines, columns=[*LINE_FIELDS, "source_row", RAW_COLUMN, "_st", "_lx"])
    row_errors, warnings, unattached = _resolve_errors(name, errh.errors, frame, claims, sorted(set(boundaries)),
                                                       total_segments, reader.src.subele_term, notes)
    if not len(frame) and unattached:   # e.g. truncated before the first claim: the file is broken, not empty
        more = f" (and {len(unattached) - 3} more)" if len(unattached) > 3 else ""
        raise InputFileError(name, "; ".join(unattached[:3]) + more)
    frame = frame.sort_values("source_row", kind="stable").reset_index(drop=True)
    frame = frame.drop(columns=["_st", "_lx"])
    for col in [*LINE_FIELDS, RAW_COLUMN]:
        frame[col] = frame[col].astype("str")
    frame["source_row"] = frame["source_row"].astype("int64")
    warnings = notices + warnings
    if not len(frame):
        warnings.append(f"{name}: no service lines (2400 loops) in the interchange")
    return RawTable(name=name, format="x12", frame=frame, columns={c: c for c in LINE_FIELDS},
                    warnings=warnings, encoding=None, row_errors=row_errors, raw_column=RAW_COLUMN)


def _track_context(name: str, node: Any, ctx: _Context, boundaries: list[int]) -> None:
    """Update what claims inherit from a segment outside the 2300 loops."""
    seg = node.seg_data
    if seg is None or seg.get_seg_id() != node.x12_map_node.id:
        return  # a segment pyx12 could not place: its error is recorded, its values are not used
    seg_id = seg.get_seg_id()
    path = node.cur_path
    seg_no = node.cur_line_number or 0
    if seg_id == "GS":
        version = _v(seg, "GS08")
        if version not in PROFESSIONAL_VERSIONS:
            raise InputFileError(name, f"not an 837P professional claim interchange: GS08 is {version!r} "
                                       f"(expected {' or '.join(PROFESSIONAL_VERSIONS)})", row=seg_no, field="GS08")
    elif seg_id == "ST":
        if _v(seg, "ST01") != "837":
            raise InputFileError(name, f"transaction set {_v(seg, 'ST01')!r} is not an 837 claim",
                                 row=seg_no, field="ST01")
        ctx.__init__(st_index=ctx.st_index + 1)          # fresh context per transaction set
        boundaries.append(seg_no)
    elif seg_id in ("SE", "GE", "IEA"):
        boundaries.append(seg_no)
    elif seg_id == "HL":
        level = _v(seg, "HL03")
        boundaries.append(seg_no)
        if level == "20":
            ctx.hl = {"20": seg_no}
            ctx.billing_npi = ctx.billing_zip = ""
            ctx.sbr09 = ctx.patient_id = ctx.payer_name = ""
        elif level == "22":
            ctx.hl = {k: v for k, v in ctx.hl.items() if k == "20"} | {"22": seg_no}
            ctx.sbr09 = ctx.patient_id = ctx.payer_name = ""
        else:
            ctx.hl[level] = seg_no
    elif path.endswith("/2010AA/NM1"):
        ctx.billing_npi = _v(seg, "NM109")
    elif path.endswith("/2010AA/N4"):
        ctx.billing_zip = _v(seg, "N403")
    elif path.endswith("/2000B/SBR"):
        ctx.sbr09 = _v(seg, "SBR09")
    elif path.endswith("/2010BA/NM1"):
        ctx.patient_id = _v(seg, "NM109")
    elif path.endswith("/2010BB/NM1"):
        ctx.payer_name = _v(seg, "NM103")


def _map_claim(claim: Any, ctx: _Context, lines: list[dict], notes: list[tuple[int, str]]) -> _ClaimSpan:
    """One 2300 loop -> one raw record per 2400 loop, appended to ``lines``."""
    clm = _first(claim, "CLM")
    clm_seg = clm.seg_data if clm is not None else None
    start = min(n.cur_line_number for n in _walk(claim))
    claim_rendering = _first_loop_seg(claim, "2310B", "NM1", ("NM101", "82"))
    claim_zip = _first_loop_seg(claim, "2310C", "N4")
    payer = "medicare" if ctx.sbr09 == "MB" else ctx.payer_name.lower()
    base = {field: "" for field in LINE_FIELDS} | {
        "claim_id": _v(clm_seg, "CLM01"),
        "patient_id": ctx.patient_id,
        "billing_npi": ctx.billing_npi,
        "rendering_npi": _v(claim_rendering, "NM109") or ctx.billing_npi,
        "payer": payer,
        "place_of_service": _v(clm_seg, "CLM05-1"),
        "service_zip": _v(claim_zip, "N403") or ctx.billing_zip,
        "diagnosis_codes": _diagnoses(claim),
        "_st": ctx.st_index,
    }
    clm_text = clm_seg.format() if clm_seg is not None else ""
    span = _ClaimSpan(start=start, st_index=ctx.st_index, hl_segs=tuple(ctx.hl.values()),
                      line_starts=[], line_ids=[])
    line_groups: list[_Group] = []
    for loop in _loops(claim, "2400"):
        if line_groups and not _placed(loop):
            line_groups[-1].children.extend(loop.children)
        else:
            line_groups.append(_Group(list(loop.children)))
    if not line_groups:  # a claim without service lines must still show up somewhere
        notes.append((len(lines), f"X12 segment {start}: claim {base['claim_id']!r} has no service line "
                                  "(2400 loop)"))
        span.line_starts.append(start)
        span.line_ids.append(len(lines))
        lines.append(base | {"source_row": start, RAW_COLUMN: clm_text, "_lx": start})
        return span
    for loop in line_groups:
        seg_nodes = _walk(loop)
        lx = _first(loop, "LX")
        sv1_node = _first(loop, "SV1")
        sv1 = sv1_node.seg_data if sv1_node is not None else None
        dtp = _first(loop, "DTP", ("DTP01", "472"))
        dtp_seg = dtp.seg_data if dtp is not None else None
        line_rendering = _first_loop_seg(loop, "2420A", "NM1", ("NM101", "82"))
        line_zip = _first_loop_seg(loop, "2420C", "N4")
        modifiers = [m for m in (_v(sv1, f"SV101-{k}") for k in range(3, 7)) if m]
        first_seg = min(n.cur_line_number for n in seg_nodes)
        row = base | {
            "line_number": _v(lx.seg_data if lx is not None else None, "LX01"),
            "service_date": _date(_v(dtp_seg, "DTP02"), _v(dtp_seg, "DTP03")),
            "hcpcs": _v(sv1, "SV101-2"),
            "modifiers": ",".join(modifiers),
            "units": _v(sv1, "SV104"),
            "charge_amount": _v(sv1, "SV102"),
            "source_row": (sv1_node or lx or seg_nodes[0]).cur_line_number,
            RAW_COLUMN: clm_text + "".join(n.seg_data.format() for n in seg_nodes if n.seg_data is not None),
            "_lx": first_seg,
        }
        row["rendering_npi"] = _v(line_rendering, "NM109") or row["rendering_npi"]
        row["place_of_service"] = _v(sv1, "SV105") or row["place_of_service"]
        row["service_zip"] = _v(line_zip, "N403") or row["service_zip"]
        span.line_starts.append(first_seg)
        span.line_ids.append(len(lines))
        lines.append(row)
    return span


def _first_loop_seg(node: Any, loop_id: str, seg_id: str, qualifier: tuple[str, str] | None = None) -> Any:
    """Segment data of the first ``seg_id`` in the first ``loop_id`` child loop (or None)."""
    for loop in _loops(node, loop_id):
        found = _first(loop, seg_id, qualifier)
        if found is not None:
            return found.seg_data
    return None


# --- pyx12 errors -> quarantine records ------------------------------------------------------------------

_MAPPED_ELEMENTS = re.compile(r"^(CLM01|CLM05-0?1|LX01|SV10[1245].*|HI.*|SBR09|NM10[389]|N403|DTP0[123])$")
_MAPPED_PATHS = ("/2300/CLM", "/2400/LX", "/2400/SV1", "/2400/DTP[472]", "/2300/HI", "/2000B/SBR",
                 "/2010AA/NM1", "/2010BA/NM1", "/2010BB/NM1", "/2310B/NM1", "/2420A/NM1",
                 "/2010AA/N4", "/2310C/N4", "/2420C/N4")


def _element_is_mapped(err: _Error) -> bool:
    path = err.path or ""
    in_path = any(p in path for p in _MAPPED_PATHS)
    return in_path and bool(_MAPPED_ELEMENTS.match(err.refdes or ""))


def _describe(err: _Error, component_separator: str | None) -> str:
    if err.kind in ("isa", "gs", "st"):
        return f"X12 {err.kind.upper()} envelope: {err.message}"
    where = f"segment {err.seg_no}"
    if err.seg_id:
        where += f" ({err.seg_id}"
        if err.path:
            where += " in " + "/".join(p for p in err.path.split("/")[-3:-1] if p not in ("DETAIL", "HEADER"))
        where += ")"
    text = f"X12 {where}: {err.message}"
    if err.value and err.value not in err.message:
        text += f" ({err.value})"
    if component_separator and component_separator != ">" and ">" in err.message and "not found" in err.message:
        text += f" — the ISA declares '{component_separator}' as component separator but the segment uses '>'"
    return text


def _resolve_errors(name: str, errors: list[_Error], frame: pd.DataFrame, claims: list[_ClaimSpan],
                    boundaries: list[int], total_segments: int, component_separator: str | None,
                    notes: list[tuple[int, str]]) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Turn pyx12 errors into per-line error records (for the lines they affect) and file warnings.

    Also returns the structural errors that no service line carries (they make an interchange
    without lines unusable rather than empty).
    """
    warnings: list[str] = []
    unattached: list[str] = []
    per_line: dict[int, list[str]] = {}
    for i, text in notes:
        per_line.setdefault(i, []).append(text)
    starts = [c.start for c in claims]
    st_of_line = frame["_st"].tolist() if len(frame) else []
    all_lines = range(len(frame))

    def claim_end(claim: _ClaimSpan) -> int:
        i = bisect.bisect_right(boundaries, claim.start)
        return boundaries[i] - 1 if i < len(boundaries) else total_segments

    for err in errors:
        text = _describe(err, component_separator)
        if err.kind == "seg" and _COSMETIC.search(err.message):
            warnings.append(f"{name}: {text}")
            continue
        if err.kind == "ele" and not _element_is_mapped(err):
            warnings.append(f"{name}: {text}")
            continue
        if err.kind in ("isa", "gs"):
            targets = list(all_lines)
        elif err.kind == "st":
            targets = [i for i in all_lines if st_of_line[i] == err.st_index]
        else:
            targets = []
            k = bisect.bisect_right(starts, err.seg_no) - 1
            if k >= 0 and err.seg_no <= claim_end(claims[k]) and claims[k].st_index == err.st_index:
                claim = claims[k]
                j = bisect.bisect_right(claim.line_starts, err.seg_no) - 1
                if j >= 0 and (err.path is None or "/2400" in err.path):
                    targets = [claim.line_ids[j]]
                else:
                    targets = list(claim.line_ids)
            elif err.hl_seg is not None:
                targets = [i for c in claims if err.hl_seg in c.hl_segs and c.st_index == err.st_index
                           for i in c.line_ids]
            else:
                targets = [i for i in all_lines if st_of_line[i] == err.st_index]
        if not targets:
            unattached.append(text)
            warnings.append(f"{name}: {text} (affects no service line)")
        for i in targets:
            per_line.setdefault(i, []).append(text)

    records = []
    source_rows = frame["source_row"].tolist() if len(frame) else []
    for i, texts in per_line.items():
        if len(texts) > MAX_ERRORS_PER_LINE:
            texts = [*texts[:MAX_ERRORS_PER_LINE], f"and {len(texts) - MAX_ERRORS_PER_LINE} more X12 errors"]
        records.append({"source_row": int(source_rows[i]), "field": "x12", "value": "",
                        "reason": "; ".join(texts)})
    if len(warnings) > 50:
        warnings = [*warnings[:50], f"{name}: and {len(warnings) - 50} more X12 warnings"]
    return pd.DataFrame(records, columns=["source_row", "field", "value", "reason"]), warnings, unattached
