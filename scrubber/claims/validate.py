"""Validate raw claim rows and turn the good ones into canonical claim lines.

Column-level rules (required, formats, numeric ranges) run as one Great Expectations validation per
file, so the checks are declared in one suite and their failures come back with the offending
``source_row``. Rules GX has no vocabulary for (NPI check digit, calendar dates, uniqueness within a
claim, modifier lists against rules/modifiers.yaml) are vectorised pandas/numpy. Every failure is
a record (source_row, field, value, reason); a row with any failure goes to quarantine once, with
all its reasons, and never into the lines. Nothing is dropped silently.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from scrubber import schemas
from scrubber.errors import RulesError, ValidationFailed

if TYPE_CHECKING:
    from scrubber.claims.readers import RawTable

log = logging.getLogger(__name__)

REQUIRED: list[str] = list(schemas.CLAIM_INPUT_REQUIRED)
OPTIONAL: list[str] = list(schemas.CLAIM_INPUT_OPTIONAL)
INPUT_COLUMNS: list[str] = REQUIRED + OPTIONAL
MODIFIER_COLUMNS: list[str] = ["modifier_1", "modifier_2", "modifier_3", "modifier_4"]
MAX_MODIFIERS = 4
MAX_UNITS = 9999
MAX_LINE_NUMBER = 99999
EARLIEST_SERVICE_DATE = pd.Timestamp("2000-01-01")
DEFAULT_PAYER = "medicare"

#: one row per failure found in a file; a row with several failures has several records
ERROR_COLUMNS: list[str] = ["source_row", "field", "value", "reason"]
#: one row per quarantined input row (or one row for an unreadable file, source_row 0)
QUARANTINE_COLUMNS: list[str] = ["source_file", "source_row", "claim_id", "line_number", "field", "value",
                                 "reason", "raw"]

# Patterns spell out [0-9] and [ \t]: ASCII only (Python's \d also matches other scripts' digits) and
# simple enough for pandas to run them in pyarrow's RE2 instead of a Python loop.
_NUMBER = r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$"
_ISO_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_US_DATE = r"^[0-9]{1,2}/[0-9]{1,2}/[0-9]{4}$"
_MODIFIER = re.compile(r"^[A-Z0-9]{2}$")
_SEPARATORS = r"[,; \t]+"


# --- rules/modifiers.yaml ---------------------------------------------------------------------------

def load_modifier_sets(rules_dir: str | Path) -> dict[str, set[str]]:
    """Read rules/modifiers.yaml into {group: {modifier, ...}}; raise RulesError naming file and key.

    The union of all groups is the set of modifiers intake accepts (see :func:`known_modifiers`).
    """
    path = Path(rules_dir) / "modifiers.yaml"
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RulesError(f"{path}: file not found (the modifier sets are required)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise RulesError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise RulesError(f"{path}: expected a mapping with key 'groups' at the top level")
    unknown_top = set(doc) - {"version", "groups"}
    if unknown_top:
        raise RulesError(f"{path}, key {sorted(map(str, unknown_top))[0]!r}: unknown top-level key "
                         "(expected 'version' and 'groups')")
    if doc.get("version", 1) != 1:
        raise RulesError(f"{path}, key 'version': unsupported version {doc.get('version')!r} (expected 1)")
    groups = doc.get("groups")
    if not isinstance(groups, dict) or not groups:
        raise RulesError(f"{path}, key 'groups': must be a non-empty mapping of group name -> modifiers")
    sets: dict[str, set[str]] = {}
    for name, body in groups.items():
        key = f"groups.{name}"
        if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise RulesError(f"{path}, key {key!r}: group names are lower-case letters, digits and '_'")
        if isinstance(body, dict):
            extra = set(body) - {"description", "modifiers"}
            if extra:
                raise RulesError(f"{path}, key '{key}.{sorted(map(str, extra))[0]}': unknown key "
                                 "(expected 'description' and 'modifiers')")
            items = body.get("modifiers")
            key += ".modifiers"
        else:
            items = body
        if not isinstance(items, list) or not items:
            raise RulesError(f"{path}, key {key!r}: must be a non-empty list of 2-character modifiers")
        codes: set[str] = set()
        for i, item in enumerate(items):
            item_key = f"{key}[{i}]"
            if isinstance(item, bool):
                raise RulesError(f"{path}, key {item_key!r}: {item!r} was read by YAML as a boolean; "
                                 "quote the modifier (e.g. \"NO\")")
            if isinstance(item, int) and 0 <= item <= 99:
                item = f"{item:02d}"
            if not isinstance(item, str) or not _MODIFIER.match(item.strip().upper()):
                raise RulesError(f"{path}, key {item_key!r}: {item!r} is not a modifier "
                                 "(exactly 2 letters or digits)")
            codes.add(item.strip().upper())
        sets[name] = codes
    return sets


def known_modifiers(sets: dict[str, set[str]]) -> set[str]:
    """Every modifier listed in any group: what intake accepts."""
    return set().union(*sets.values()) if sets else set()


@lru_cache(maxsize=8)
def _cached_known(path: str, mtime_ns: int) -> frozenset[str]:
    return frozenset(known_modifiers(load_modifier_sets(Path(path).parent)))


def default_known_modifiers(rules_dir: str | Path | None = None) -> set[str]:
    """Known modifiers from the configured rules/ folder (SCRUBBER_RULES_DIR or the checkout's rules/).

    Cached per file modification time, so a long-running worker picks up an edited file.
    """
    if rules_dir is None:
        from scrubber.settings import Settings

        rules_dir = Settings.from_env().rules_dir
    path = Path(rules_dir) / "modifiers.yaml"
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        mtime = -1  # load_modifier_sets raises the clear error
    return set(_cached_known(str(path), mtime))


# --- Great Expectations suite (built once per process) ----------------------------------------------

def _expectation_specs() -> list[tuple[str, dict, str, str]]:
    """(GX class name, kwargs, field reported, reason) for every column-level rule."""
    specs: list[tuple[str, dict, str, str]] = []
    for col in REQUIRED:
        specs.append(("ExpectColumnValuesToNotBeNull", {"column": col}, col, "required value is missing"))
    regexes = [
        ("line_number", r"^[0-9]+$", "must be a positive whole number"),
        ("rendering_npi", r"^[0-9]{10}$", "an NPI is exactly 10 digits"),
        ("billing_npi", r"^[0-9]{10}$", "an NPI is exactly 10 digits"),
        ("service_date", f"(?:{_ISO_DATE})|(?:{_US_DATE})", "date must be YYYY-MM-DD or MM/DD/YYYY"),
        ("hcpcs", r"^[A-Z0-9]{4}[A-Z0-9]$", "a CPT/HCPCS code is 5 letters or digits"),
        ("units", _NUMBER, "units must be a number"),
        ("charge_amount", _NUMBER, "charge_amount must be a number"),
        ("place_of_service", r"^[0-9]{2}$", "place of service is 2 digits"),
        ("locality", r"^[0-9]{5}-[0-9]{2}$", "locality must be MAC-LOC, e.g. 01112-05"),
        ("service_zip", r"^[0-9]{5}(?:-?[0-9]{4})?$", "ZIP code must be 5 digits (or ZIP+4)"),
    ]
    for col, regex, reason in regexes:
        specs.append(("ExpectColumnValuesToMatchRegex", {"column": col, "regex": regex}, col, reason))
    specs += [
        ("ExpectColumnValuesToBeBetween",
         {"column": "line_number_num", "min_value": 1, "max_value": MAX_LINE_NUMBER},
         "line_number", f"must be between 1 and {MAX_LINE_NUMBER}"),
        ("ExpectColumnValuesToBeBetween",
         {"column": "units_num", "min_value": 0, "strict_min": True, "max_value": MAX_UNITS},
         "units", f"units must be greater than 0 and at most {MAX_UNITS}"),
        ("ExpectColumnValuesToBeBetween", {"column": "charge_num", "min_value": 0},
         "charge_amount", "charge_amount must not be negative"),
    ]
    return specs


@lru_cache(maxsize=1)
def _gx_validation():
    """Ephemeral GX context + suite + validation definition, built once (setup costs ~0.2 s)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    from scrubber.reference.validate import quiet_gx_logging

    quiet_gx_logging()
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (context.data_sources.add_pandas("claim_intake")
             .add_dataframe_asset("claim_lines").add_batch_definition_whole_dataframe("whole"))
    suite = context.suites.add(gx.ExpectationSuite(name="claim_lines"))
    for cls_name, kwargs, fld, reason in _expectation_specs():
        cls = getattr(gx.expectations, cls_name)
        suite.add_expectation(cls(**kwargs, meta={"field": fld, "reason": reason}))
    return context.validation_definitions.add(
        gx.ValidationDefinition(name="claim_lines", data=batch, suite=suite))


_RESULT_FORMAT = {"result_format": "COMPLETE", "unexpected_index_column_names": ["source_row"],
                  "return_unexpected_index_query": False, "partial_unexpected_count": 0}


#: the columns the suite reads. GX filters the whole frame once per expectation, so a narrower
#: frame is measurably faster on a million rows.
GX_COLUMNS: list[str] = ["source_row", *sorted({kw["column"] for _, kw, _, _ in _expectation_specs()})]


class _DistinctFrame:
    """The validation frame cut down to each column's distinct values (missing counts as a value).

    Every expectation of the suite looks at one column, value by value, so a value fails on every row
    that holds it: GX checks each distinct value once (thousands of rows instead of a million) and the
    failing values are spread back to their rows. A column that is only checked for missing values
    keeps one present value and the missing one. Shorter columns are padded to the frame's length with
    missing values when no not-null rule reads them (value rules skip missing values), else with
    their most common present value; padding never adds a value the column does not hold, so the
    result is the same as on the whole frame.
    """

    def __init__(self, vf: pd.DataFrame, not_null: set[str], value_checked: set[str]) -> None:
        self.codes: dict[str, np.ndarray] = {}
        self.row_code: dict[str, np.ndarray] = {}
        kept: dict[str, np.ndarray] = {}
        for col in sorted(not_null | value_checked):
            if col in value_checked:
                codes, uniq = pd.factorize(vf[col], use_na_sentinel=False)
                n_values = len(uniq)
            else:  # presence is all that is checked: two values, present (0) and missing (1)
                codes = vf[col].isna().to_numpy().astype(np.int64)
                n_values = 2
            first = np.full(n_values, -1, dtype=np.int64)
            first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)  # first row of each value
            keep = np.flatnonzero(first >= 0)
            self.codes[col], kept[col] = codes, (keep, first)
        rows = max([len(k) for k, _ in kept.values()] + [1])
        self.frame = pd.DataFrame({"source_row": np.arange(rows, dtype=np.int64)})
        for col, (keep, first) in kept.items():
            pad = -1
            if col in not_null:  # the most common present value (a missing one would fail every pad row)
                counts = np.bincount(self.codes[col], minlength=len(first))
                unusable = first < 0
                unusable[~unusable] = pd.isna(vf[col].iloc[first[~unusable]]).to_numpy()
                counts[unusable] = -1
                pad = int(np.argmax(counts)) if counts.max() > 0 else -1
            row_code = np.full(rows, pad, dtype=np.int64)
            row_code[:len(keep)] = keep
            self.row_code[col] = row_code
            column = vf[col].iloc[first[np.maximum(row_code, 0)]].reset_index(drop=True)
            self.frame[col] = column.where(pd.Series(row_code >= 0)) if pad < 0 else column

    def positions(self, column: str, rows: list) -> np.ndarray:
        """Row positions of the validation frame holding the values at reduced ``rows`` (ascending)."""
        failing = np.unique(self.row_code[column][np.asarray(rows, dtype=np.int64)])
        return np.flatnonzero(np.isin(self.codes[column], failing[failing >= 0]))


def _gx_failures(vf: pd.DataFrame, source: str) -> list[pd.DataFrame]:
    """Run the suite on the validation frame's distinct values; one error frame per failed expectation."""
    specs = _expectation_specs()
    distinct = _DistinctFrame(vf, {kw["column"] for name, kw, _, _ in specs if name == "ExpectColumnValuesToNotBeNull"},
                              {kw["column"] for name, kw, _, _ in specs if name != "ExpectColumnValuesToNotBeNull"})
    result = _gx_validation().run(batch_parameters={"dataframe": distinct.frame}, result_format=_RESULT_FORMAT)
    out: list[pd.DataFrame] = []
    crashed = []
    for r in result.results:
        if r.exception_info and r.exception_info.get("raised_exception"):
            crashed.append({"expectation": r.expectation_config.type,
                            "detail": r.exception_info.get("exception_message")})
            continue
        if r.success:
            continue
        meta = r.expectation_config.meta or {}
        rows = [d["source_row"] for d in (r.result or {}).get("unexpected_index_list") or []]
        if rows:
            positions = distinct.positions(r.expectation_config.kwargs["column"], rows)
            out.append(_errors_at(vf, positions, meta["field"], meta["reason"]))
    if crashed:  # a check that could not run must stop the run, not pass rows unchecked
        raise ValidationFailed("claim_lines", source, crashed)
    return out


# --- building error records -------------------------------------------------------------------------

def _errors_at(vf: pd.DataFrame, positions: np.ndarray, fld: str, reason: str | np.ndarray) -> pd.DataFrame:
    """Error records for the rows at ``positions``: the reason quotes the offending value."""
    values = (vf[fld].iloc[positions] if fld in vf.columns
              else pd.Series([None] * len(positions), dtype="str"))
    values = pd.Series(values.astype("str").fillna("").to_numpy(), dtype="str")
    text = pd.Series(np.broadcast_to(np.asarray(reason, dtype=object), (len(positions),)), dtype="str")
    full = (fld + " '" + values + "': " + text).where(values.ne(""), fld + ": " + text)
    return pd.DataFrame({"source_row": vf["source_row"].to_numpy()[positions], "field": fld,
                         "value": values.to_numpy(), "reason": full.to_numpy()})


def _mask_errors(vf: pd.DataFrame, mask: np.ndarray | pd.Series, fld: str,
                 reason: str | pd.Series) -> pd.DataFrame | None:
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return None
    if not isinstance(reason, str):
        reason = np.asarray(reason, dtype=object)[mask]
    return _errors_at(vf, np.flatnonzero(mask), fld, reason)


# --- vectorised helpers -----------------------------------------------------------------------------

def _blank_to_na(s: pd.Series) -> pd.Series:
    """Trim; empty -> missing. In pyarrow (one pass per column, no Python per row)."""
    trimmed = pc.utf8_trim_whitespace(pa.array(s.astype("str").array))
    blank = pc.equal(trimmed, "")
    return pd.Series(pd.array(pc.if_else(blank, pa.scalar(None, trimmed.type), trimmed), dtype="str"))


def _numeric(s: pd.Series) -> pd.Series:
    """to_numeric on the distinct values only (claim files repeat units/charges a lot)."""
    codes, uniq = pd.factorize(s)
    if len(uniq) == 0:
        return pd.Series(np.full(len(s), np.nan), index=s.index)
    num = pd.to_numeric(pd.Series(uniq, dtype="str").where(lambda u: u.str.match(_NUMBER)), errors="coerce")
    values = np.where(codes >= 0, num.to_numpy(dtype=float)[np.maximum(codes, 0)], np.nan)
    return pd.Series(values, index=s.index, dtype="float64")


def npi_check_digit_ok(npis: pd.Series) -> np.ndarray:
    """True where the value is 10 digits with a valid NPI check digit (Luhn over '80840' + 9 digits).

    The 80840 prefix adds a constant 24 to the Luhn sum, so only the 10 digits are needed.
    Computed on the distinct values with numpy (a file has few distinct NPIs).
    """
    codes, uniq = pd.factorize(npis)
    ok_u = np.zeros(len(uniq), dtype=bool)
    if len(uniq):
        u = pd.Series(uniq, dtype="str")
        ten = u.str.fullmatch(r"[0-9]{10}").fillna(False).to_numpy(dtype=bool)
        if ten.any():
            digits = (np.frombuffer("".join(u[ten]).encode("ascii"), dtype=np.uint8)
                      .reshape(-1, 10).astype(np.int64) - 48)
            doubled = digits[:, 0:9:2] * 2          # positions 1,3,5,7,9 (from the left) are doubled
            total = (doubled - 9 * (doubled > 9)).sum(axis=1) + digits[:, 1:9:2].sum(axis=1) + 24
            ok_u[np.flatnonzero(ten)] = (10 - total % 10) % 10 == digits[:, 9]
    return np.where(codes >= 0, ok_u[np.maximum(codes, 0)] if len(uniq) else False, False)


def parse_service_dates(values: pd.Series) -> pd.Series:
    """YYYY-MM-DD or MM/DD/YYYY strings -> datetime64[us]; NaT for anything else or impossible dates.

    Microsecond resolution so a typo like 2999-01-01 is reported as a future date instead of
    overflowing nanoseconds; canonical lines (all within 2000..tomorrow) are datetime64[ns].
    Parses each distinct string once (a nightly file has a few hundred distinct dates).
    """
    codes, uniq = pd.factorize(values)
    u = pd.Series(uniq, dtype="str")
    parsed = pd.Series(pd.NaT, index=u.index, dtype="datetime64[us]")
    iso = u.str.match(_ISO_DATE).fillna(False).to_numpy(dtype=bool)
    us = u.str.match(_US_DATE).fillna(False).to_numpy(dtype=bool)
    if iso.any():
        parsed[iso] = pd.to_datetime(u[iso], format="%Y-%m-%d", errors="coerce").astype("datetime64[us]")
    if us.any():
        parsed[us] = pd.to_datetime(u[us], format="%m/%d/%Y", errors="coerce").astype("datetime64[us]")
    out = parsed.array.take(codes, allow_fill=True) if len(u) else pd.array(
        [pd.NaT] * len(values), dtype="datetime64[us]")
    return pd.Series(out, index=values.index, dtype="datetime64[us]")


def _na_text(n: int) -> pd.Series:
    """n missing values as a text column (built in pyarrow: no per-row Python)."""
    return pd.Series(pd.array(pa.nulls(n, pa.string()), dtype="str"))


def _arrow(s: pd.Series) -> pa.Array:
    """A text column as one pyarrow array (zero-copy for pyarrow-backed columns)."""
    arr = pa.array(s.array)
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _modifier_tokens(vf: pd.DataFrame, present: set[str]) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """(row position, source column index, token) of every modifier on every row, in billed order.

    Source column index: 0 = ``modifiers`` (split on , ; space or tab), k = ``modifier_k``.
    """
    pos_parts: list[np.ndarray] = []
    src_parts: list[np.ndarray] = []
    tok_parts: list[pa.Array] = []
    for k, col in enumerate(["modifiers", *MODIFIER_COLUMNS]):
        if col not in present:
            continue
        arr = pc.utf8_upper(_arrow(vf[col]))
        if k == 0:
            lists = pc.split_pattern_regex(arr, _SEPARATORS)      # null rows give no tokens
            pos = pc.list_parent_indices(lists).to_numpy()
            tok = pc.list_flatten(lists)
        else:
            pos = np.flatnonzero(pc.is_valid(arr).to_numpy(zero_copy_only=False))
            tok = arr.filter(pc.is_valid(arr))
        pos_parts.append(pos.astype(np.int64))
        src_parts.append(np.full(len(pos), k, dtype=np.int8))
        tok_parts.append(tok.cast(pa.string()))
    if not pos_parts:
        return np.array([], dtype=np.int64), np.array([], dtype=np.int8), pa.array([], pa.string())
    pos = np.concatenate(pos_parts)
    src = np.concatenate(src_parts)
    tokens = pa.concat_arrays(tok_parts)
    if len(pos_parts) > 1:                       # several source columns: back into row order
        order = np.argsort(pos, kind="stable")
        pos, src, tokens = pos[order], src[order], tokens.take(pa.array(order))
    keep = pc.greater(pc.utf8_length(tokens), 0).to_numpy(zero_copy_only=False)  # "25,,59" leaves ""
    return pos[keep], src[keep], tokens.filter(pa.array(keep))


def _rank_within_rows(pos: np.ndarray) -> np.ndarray:
    """0,1,2.. position of each item within its row (``pos`` sorted)."""
    if not len(pos):
        return np.array([], dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(pos)) + 1]
    lengths = np.diff(np.r_[starts, len(pos)])
    return np.arange(len(pos)) - np.repeat(starts, lengths)


def _scatter(n: int, positions: np.ndarray, values: pa.Array) -> pa.Array:
    """An n-long text array holding ``values`` at ``positions`` and null elsewhere (pyarrow take)."""
    index = np.full(n, -1, dtype=np.int64)
    index[positions] = np.arange(len(positions))
    return values.take(pa.array(index, mask=index < 0))


def _check_modifiers(vf: pd.DataFrame, known: set[str], present: set[str] | None = None
                     ) -> tuple[list[pd.DataFrame], pd.DataFrame]:
    """Errors for bad/unknown/too many modifiers, and the canonical modifier columns for every row.

    Works on the long (row, token) arrays with numpy and pyarrow: duplicates are found by comparing
    each token with the earlier tokens of its row (rows carry a handful), ranks and counts come from
    run lengths, and the modifier_1..4 columns are scattered back with one take each.
    """
    n = len(vf)
    present = set(vf.columns) if present is None else present
    errors: list[pd.DataFrame] = []
    pos, src, tokens = _modifier_tokens(vf, present)
    if not len(pos):
        blank = _na_text(n).fillna("")
        return errors, pd.DataFrame({c: blank for c in ["modifiers", *MODIFIER_COLUMNS]})
    source_rows = vf["source_row"].to_numpy()
    well_formed = pc.match_substring_regex(tokens, r"^[A-Z0-9]{2}$").to_numpy(zero_copy_only=False)
    is_known = pc.is_in(tokens, value_set=pa.array(sorted(known), pa.string())).to_numpy(zero_copy_only=False)
    names = np.asarray(["modifiers", *MODIFIER_COLUMNS], dtype=object)
    for mask, why in ((~well_formed, "a modifier is exactly 2 letters or digits"),
                      (well_formed & ~is_known, "not a known modifier (rules/modifiers.yaml)")):
        if mask.any():
            cols = names[src[mask]]
            vals = np.asarray(tokens.filter(pa.array(mask)).to_pylist(), dtype=object)
            errors.append(pd.DataFrame({"source_row": source_rows[pos[mask]], "field": cols, "value": vals,
                                        "reason": [f"{c} '{v}': {why}" for c, v in zip(cols, vals, strict=True)]}))
    rank = _rank_within_rows(pos)
    codes = pc.dictionary_encode(tokens).indices.to_numpy(zero_copy_only=False)
    duplicate = np.zeros(len(pos), dtype=bool)
    for lag in range(1, int(rank.max()) + 1):
        duplicate[lag:] |= (pos[lag:] == pos[:-lag]) & (codes[lag:] == codes[:-lag])
    pos, tokens = pos[~duplicate], tokens.filter(pa.array(~duplicate))
    rank = _rank_within_rows(pos)
    rows, counts = np.unique(pos, return_counts=True)
    over = counts > MAX_MODIFIERS
    if over.any():
        errors.append(pd.DataFrame({
            "source_row": source_rows[rows[over]], "field": "modifiers",
            "value": vf["modifiers"].iloc[rows[over]].fillna("").to_numpy(),
            "reason": [f"modifiers: {c} modifiers on one line, at most {MAX_MODIFIERS} allowed"
                       for c in counts[over]]}))
    slots = [pc.fill_null(_scatter(n, pos[rank == k], tokens.filter(pa.array(rank == k))), "")
             for k in range(len(MODIFIER_COLUMNS))]
    # slots are filled left to right, so "25,59,," only needs its trailing commas trimmed
    joined = pc.utf8_rtrim(pc.binary_join_element_wise(*slots, ","), characters=",")
    canon = {"modifiers": joined, **dict(zip(MODIFIER_COLUMNS, slots, strict=True))}
    return errors, pd.DataFrame({c: pd.Series(pd.array(a, dtype="str")) for c, a in canon.items()})


# --- main entry -------------------------------------------------------------------------------------

def missing_required_columns(columns: list[str]) -> list[str]:
    return [c for c in REQUIRED if c not in columns]


def _validation_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Trimmed, blank->NA text columns for every input column (absent optional ones all-NA)."""
    n = len(frame)
    cols: dict[str, pd.Series | np.ndarray] = {"source_row": frame["source_row"].to_numpy(dtype=np.int64)}
    for col in INPUT_COLUMNS:
        cols[col] = (_blank_to_na(frame[col]).reset_index(drop=True) if col in frame.columns
                     else _na_text(n))
    vf = pd.DataFrame(cols)
    vf["hcpcs"] = vf["hcpcs"].str.upper()
    if vf["charge_amount"].str.contains(r"[$,]", regex=True).fillna(False).any():
        vf["charge_amount"] = vf["charge_amount"].str.replace(r"^[$]|,", "", regex=True)
    vf["line_number_num"] = _numeric(vf["line_number"].where(vf["line_number"].str.match(r"^[0-9]+$")))
    vf["units_num"] = _numeric(vf["units"])
    vf["charge_num"] = _numeric(vf["charge_amount"])
    return vf


def validate_table(table: RawTable, known: set[str], *, today: date | None = None
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a file's rows into canonical lines (no line_uid yet) and quarantine rows.

    Every row of ``table.frame`` ends in exactly one of the two. The caller checks required
    columns first (:func:`missing_required_columns`).
    """
    frame = table.frame
    vf = _validation_frame(frame)
    errors: list[pd.DataFrame] = []
    if table.row_errors is not None and len(table.row_errors):
        errors.append(table.row_errors[ERROR_COLUMNS])
    if len(vf):
        errors += _gx_failures(vf, table.name)

    # NPI check digit: only on values that already passed the 10-digit format check
    for col in ("rendering_npi", "billing_npi"):
        s = vf[col]
        ten = s.str.fullmatch(r"[0-9]{10}").fillna(False).to_numpy(dtype=bool)
        if ten.any():
            bad = ten & ~npi_check_digit_ok(s)
            errors.append(_mask_errors(vf, bad, col, "fails the NPI check digit (Luhn)"))

    # service dates: real calendar dates in a plausible window
    dates = parse_service_dates(vf["service_date"])
    well_formed = vf["service_date"].str.match(f"{_ISO_DATE}|{_US_DATE}").fillna(False).to_numpy(dtype=bool)
    nat = dates.isna().to_numpy()
    latest = pd.Timestamp(today or date.today()) + timedelta(days=1)
    errors.append(_mask_errors(vf, well_formed & nat, "service_date", "not a real calendar date"))
    errors.append(_mask_errors(vf, (dates < EARLIEST_SERVICE_DATE).to_numpy(), "service_date",
                               f"before {EARLIEST_SERVICE_DATE.date().isoformat()}"))
    errors.append(_mask_errors(vf, (dates > latest).to_numpy(), "service_date",
                               f"in the future (after {latest.date().isoformat()})"))

    # line_number unique within claim (within this file)
    ln = vf["line_number_num"]
    keyed = vf["claim_id"].notna() & ln.notna()
    dup = np.zeros(len(vf), dtype=bool)
    if keyed.any():
        # (claim, line number) pairs as one integer: factorizing the claim ids (Arrow dictionary encode)
        # is much cheaper than hashing the text pairs row by row
        c_codes, _ = pd.factorize(vf["claim_id"][keyed])
        l_codes, l_uniq = pd.factorize(ln[keyed])
        pair = c_codes.astype(np.int64) * max(len(l_uniq), 1) + l_codes
        dup[np.flatnonzero(keyed.to_numpy())] = pd.Series(pair).duplicated(keep=False).to_numpy()
    if dup.any():
        times = pd.DataFrame({"c": vf["claim_id"], "l": ln}).groupby(["c", "l"])["l"].transform("size")
        reason = ("appears " + times.astype("Int64").astype("str") + " times in claim '"
                  + vf["claim_id"].fillna("") + "'")
        errors.append(_mask_errors(vf, dup, "line_number", reason))

    mod_errors, canon_mods = _check_modifiers(vf, known, set(frame.columns))
    errors += mod_errors

    errs = pd.concat([e for e in errors if e is not None and len(e)], ignore_index=True) if any(
        e is not None and len(e) for e in errors) else pd.DataFrame(columns=ERROR_COLUMNS)
    bad_rows = np.unique(errs["source_row"].to_numpy(dtype=np.int64)) if len(errs) else np.array([], np.int64)
    is_bad = np.isin(vf["source_row"].to_numpy(), bad_rows)
    good = ~is_bad

    if good.all():   # the usual case: no row to drop, no copy
        lines = _canonical(table.name, vf, dates, canon_mods)
    else:
        keep = [c for c in vf.columns if c not in _NOT_IN_LINES]
        lines = _canonical(table.name, vf.loc[good, keep], dates[good], canon_mods[good])
    quarantine = _quarantine_rows(table, vf, is_bad, errs)
    return lines, quarantine


#: validation-frame columns the canonical lines do not read (not copied when bad rows are dropped):
#: modifiers come from the canonical modifier frame, numbers and dates from their parsed forms
_NOT_IN_LINES = frozenset({"modifiers", *MODIFIER_COLUMNS, "line_number", "units", "charge_amount", "service_date"})


def _canonical(name: str, vf: pd.DataFrame, dates: pd.Series, mods: pd.DataFrame) -> pd.DataFrame:
    """Canonical claim lines (schemas.LINE_COLUMNS except line_uid) from validated rows."""
    vf = vf.reset_index(drop=True)
    mods = mods.reset_index(drop=True)

    def text(col: str) -> pd.Series:
        column = vf[col]
        return column.fillna("") if column.hasnans else column   # required columns have no gaps left

    diagnosis = (text("diagnosis_codes").str.upper()
                 .str.replace(_SEPARATORS, ",", regex=True).str.strip(","))
    out = pd.DataFrame({
        "source_file": pd.Series(pd.array(pa.array([name] * len(vf), pa.string()), dtype="str")),
        "source_row": vf["source_row"].to_numpy(dtype=np.int64),
        "claim_id": text("claim_id"),
        "line_number": vf["line_number_num"].to_numpy(dtype=np.int64),
        "patient_id": text("patient_id"),
        "rendering_npi": text("rendering_npi"),
        "billing_npi": text("billing_npi"),
        "payer": vf["payer"].str.lower().fillna(DEFAULT_PAYER),
        "service_date": dates.to_numpy().astype("datetime64[ns]"),
        "hcpcs": text("hcpcs"),
        **{c: mods[c] for c in ["modifiers", *MODIFIER_COLUMNS]},
        "units": vf["units_num"].to_numpy(dtype=np.float64),
        "charge_amount": vf["charge_num"].to_numpy(dtype=np.float64),
        "place_of_service": text("place_of_service"),
        "locality": text("locality"),
        "service_zip": text("service_zip").str.slice(0, 5),
        "diagnosis_codes": diagnosis,
    })
    return out


def _join_unique(values: Iterable[str]) -> str:
    return "; ".join(dict.fromkeys(values))


def _quarantine_rows(table: RawTable, vf: pd.DataFrame, is_bad: np.ndarray, errs: pd.DataFrame) -> pd.DataFrame:
    """One quarantine row per bad input row: every field and reason joined with '; ', plus the raw row."""
    if not is_bad.any():
        return empty_quarantine()
    grouped = errs.groupby("source_row", sort=True).agg(
        field=("field", _join_unique), value=("value", lambda v: _join_unique(x for x in map(str, v) if x)),
        reason=("reason", "; ".join))
    bad = vf[is_bad]
    rows = bad["source_row"].to_numpy()
    grouped = grouped.reindex(rows)
    raw = raw_text(table, np.flatnonzero(is_bad))
    out = pd.DataFrame({
        "source_file": table.name,
        "source_row": rows.astype(np.int64),
        "claim_id": bad["claim_id"].fillna("").to_numpy(),
        "line_number": bad["line_number"].fillna("").to_numpy(),
        "field": grouped["field"].to_numpy(),
        "value": grouped["value"].to_numpy(),
        "reason": grouped["reason"].to_numpy(),
        "raw": raw,
    })
    return _quarantine_dtypes(out)


def raw_text(table: RawTable, positions: np.ndarray) -> np.ndarray:
    """The original rows at ``positions`` as text: the X12 segments, or a JSON object of the CSV/Parquet row."""
    frame = table.frame
    if table.raw_column:
        return frame[table.raw_column].to_numpy()[positions].astype(object)
    cols = [c for c in table.columns if c in frame.columns]
    if not len(positions) or not cols:
        return np.full(len(positions), "", dtype=object)
    sub = frame.iloc[positions][cols].rename(columns=table.columns)
    return np.asarray(sub.to_json(orient="records", lines=True, force_ascii=False).splitlines(), dtype=object)


def empty_quarantine() -> pd.DataFrame:
    return _quarantine_dtypes(pd.DataFrame({c: [] for c in QUARANTINE_COLUMNS}))


def _quarantine_dtypes(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame[QUARANTINE_COLUMNS].copy()
    frame["source_row"] = frame["source_row"].astype(np.int64)
    for col in QUARANTINE_COLUMNS:
        if col != "source_row":
            frame[col] = frame[col].fillna("").astype("str")
    return frame
