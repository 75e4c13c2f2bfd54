"""Validate raw claim rows and turn the good ones into canonical claim lines.

Column-level rules (required, formats, numeric ranges) run as one Great Expectations validation per
file, so the checks are declared in one suite and their failures come back with the offending
``source_row``. Rules GX has no vocabulary for (NPI check digit, calendar dates, uniqueness within a
claim, modifier lists against rules/modifiers.yaml) are vectorised pandas/numpy. Columns repeat a
few thousand values over a million rows, so each is dictionary-encoded once and every normalisation,
pattern, parse and GX check runs on its distinct values, reaching the rows through the codes. Every
failure is a record (source_row, field, value, reason); a row with any failure goes to quarantine
once, with all its reasons, and never into the lines. Nothing is dropped silently.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
from scrubber.rules import DEFAULT_PAYER, SAFE_LOADER

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
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER)
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
def _gx_batch():
    """Ephemeral GX context and its in-memory batch definition, built once (setup costs ~0.2 s)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    from scrubber.reference.validate import quiet_gx_logging

    quiet_gx_logging()
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (context.data_sources.add_pandas("claim_intake")
             .add_dataframe_asset("claim_lines").add_batch_definition_whole_dataframe("whole"))
    return context, batch


#: validation definitions built so far, per choice of expectations (GX refuses a second suite of a name)
_DEFINITIONS: dict[tuple[int, ...] | None, object] = {}
_DEFINITIONS_LOCK = threading.Lock()


def _gx_validation(chosen: tuple[int, ...] | None = None):
    """The suite (or the expectations ``chosen`` by their index in :func:`_expectation_specs`) as a GX
    validation definition, built once per choice for the life of the process (a handful of choices:
    the columns that bring new values). Each expectation's meta names its spec index."""
    with _DEFINITIONS_LOCK:
        if chosen not in _DEFINITIONS:
            _DEFINITIONS[chosen] = _validation_definition(chosen)
        return _DEFINITIONS[chosen]


def _validation_definition(chosen: tuple[int, ...] | None):
    import great_expectations as gx

    context, batch = _gx_batch()
    specs = list(enumerate(_expectation_specs()))
    if chosen is not None:
        specs = [specs[i] for i in chosen]
    name = "claim_lines" if chosen is None else "claim_lines_" + "_".join(map(str, chosen))
    suite = context.suites.add(gx.ExpectationSuite(name=name))
    for i, (cls_name, kwargs, fld, reason) in specs:
        cls = getattr(gx.expectations, cls_name)
        suite.add_expectation(cls(**kwargs, meta={"field": fld, "reason": reason, "spec": i}))
    return context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))


_RESULT_FORMAT = {"result_format": "COMPLETE", "unexpected_index_column_names": ["source_row"],
                  "return_unexpected_index_query": False, "partial_unexpected_count": 0}


#: the columns the suite reads. GX filters the whole frame once per expectation, so a narrower
#: frame is measurably faster on a million rows.
GX_COLUMNS: list[str] = ["source_row", *sorted({kw["column"] for _, kw, _, _ in _expectation_specs()})]

#: the key of a column only checked for missing values: any present value stands for all of them
_ANY_PRESENT = "<any present value>"


@dataclass
class _CheckedColumn:
    """One column as the suite sees it: its distinct values and each row's index into them (-1: missing).

    ``keys`` are what :class:`SuiteMemo` remembers (the values, or :data:`_ANY_PRESENT`), ``values`` what
    GX is shown for each key."""

    keys: pd.Series
    values: pd.Series
    codes: np.ndarray

    @classmethod
    def of(cls, vf: _ValidationFrame, col: str, value_checked: bool) -> _CheckedColumn:
        if value_checked:
            values, codes = vf.distinct(col)
            values = values.reset_index(drop=True)
            return cls(values, values, codes)   # text stays Arrow-backed: membership tests run in Arrow
        missing = vf.is_missing(col)   # presence is all that is checked: one present value stands for all
        first = int(np.argmin(missing)) if len(missing) else 0
        present = np.array([first] if len(missing) and not missing[first] else [], dtype=np.int64)
        codes = -missing.astype(np.int8) if len(present) else np.full(len(missing), -1, dtype=np.int8)
        return cls(pd.Series([_ANY_PRESENT] * len(present), dtype=object),
                   vf.text_at(col, present).reset_index(drop=True), codes)

    @property
    def has_missing(self) -> bool:
        return bool((self.codes < 0).any())


def _is_in(keys: pd.Series, value_set: pd.Series) -> np.ndarray:
    """Mask of ``keys`` found in ``value_set``, in Arrow (pandas' isin on Arrow text lists the set in
    Python); a NaN number matches a NaN."""
    try:
        arr = pa.array(keys, from_pandas=True)
        return pc.is_in(arr, value_set=pa.array(value_set, from_pandas=True).cast(arr.type)).to_numpy(
            zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError):
        return keys.isin(value_set).to_numpy(dtype=bool)


class SuiteMemo:
    """What the suite already said about the values of earlier chunks (of the files of one intake).

    Every expectation looks at one column, value by value, so a value judged once is judged for good:
    a later chunk shows GX only the values it has not seen, and runs only the expectations of the
    columns that have some. A 10M-line file's ten chunks repeat their codes, NPIs, places and units, so
    after the first one GX sees a few thousand new charges and dates and four expectations instead of
    the whole suite (~0.4 s of fixed cost per run). A column past :attr:`MAX_KEYS` remembered values
    stops growing: its further values are judged again, which costs time, never a wrong answer.
    """

    MAX_KEYS = 1_000_000

    def __init__(self) -> None:
        self.judged: dict[str, pd.Series] = {}       # column -> values judged by every expectation on it
        self.missing_judged: set[str] = set()        # columns whose missing value has been judged
        self.failed: dict[int, pd.Series] = {}       # spec index -> values that failed it
        self.missing_failed: set[int] = set()        # spec indexes the missing value failed

    def new_keys(self, col: str, checked: _CheckedColumn) -> tuple[np.ndarray, bool]:
        """(mask over the column's keys: not judged yet, whether its missing value is new)."""
        judged = self.judged.get(col)
        new = (np.ones(len(checked.keys), dtype=bool) if judged is None
               else ~_is_in(checked.keys, judged))
        return new, checked.has_missing and col not in self.missing_judged

    def known_good(self, checked: _CheckedColumn, new: np.ndarray, spec_ids: list[int]) -> np.ndarray:
        """Mask over the column's keys: judged before (not ``new``, :meth:`new_keys`), and failed none of
        ``spec_ids``."""
        good = ~new
        for i in spec_ids:
            if i in self.failed and good.any():
                good &= ~_is_in(checked.keys, self.failed[i])
        return good

    def record(self, spec_id: int, keys: pd.Series, missing: bool) -> None:
        """The keys (and whether the missing value) that failed expectation ``spec_id`` in this run."""
        if len(keys):
            failed = self.failed.get(spec_id)
            self.failed[spec_id] = keys if failed is None else pd.concat([failed, keys], ignore_index=True)
        if missing:
            self.missing_failed.add(spec_id)

    def judge(self, col: str, keys: pd.Series, missing: bool) -> None:
        """Remember that every expectation on ``col`` has seen ``keys`` (and the missing value)."""
        judged = self.judged.get(col)
        if len(keys) and (judged is None or len(judged) + len(keys) <= self.MAX_KEYS):
            self.judged[col] = keys if judged is None else pd.concat([judged, keys], ignore_index=True)
        if missing:
            self.missing_judged.add(col)

    def failing(self, spec_id: int, checked: _CheckedColumn) -> np.ndarray:
        """Row positions whose value failed expectation ``spec_id`` (in this chunk or an earlier one)."""
        bad = np.zeros(len(checked.keys) + 1, dtype=bool)   # the last entry: missing (code -1)
        if spec_id in self.failed:
            bad[:-1] = _is_in(checked.keys, self.failed[spec_id])
        bad[-1] = spec_id in self.missing_failed
        return np.flatnonzero(bad[checked.codes]) if bad.any() else np.array([], dtype=np.int64)


class _SuiteFrame:
    """The frame GX is shown: per column, the keys still to judge, one per row (missing counts as a
    value), padded to the longest column. Padding never adds a value the column does not hold: with the
    missing value where no not-null rule reads the column (value rules skip missing values), else with a
    present value, one judged good before if there is one, else the most common of a sample of rows
    (likely a good one, so GX lists few pad rows as failing). So the answer is the one the whole column
    would get."""

    def __init__(self, columns: dict[str, _CheckedColumn], todo: dict[str, tuple[np.ndarray, bool]],
                 not_null: set[str], good: dict[str, np.ndarray]) -> None:
        held = {col: np.append(np.flatnonzero(new), [len(columns[col].keys)] if missing else [])
                .astype(np.int64) for col, (new, missing) in todo.items()}
        rows = max([len(h) for h in held.values()] + [1])
        self.frame = pd.DataFrame({"source_row": np.arange(rows, dtype=np.int64)})
        self.row_key: dict[str, np.ndarray] = {}   # per frame row: index of the key it holds (n: missing)
        for col, keys_held in held.items():
            checked = columns[col]
            n = len(checked.keys)
            pad = n
            if col in not_null and n:
                if good[col].any():
                    pad = int(np.argmax(good[col]))
                else:
                    sample = checked.codes[::max(1, len(checked.codes) // 65536)]
                    pad = int(np.argmax(np.bincount(sample + 1, minlength=n + 1)[1:]))
            row_key = np.full(rows, pad, dtype=np.int64)
            row_key[:len(keys_held)] = keys_held
            self.row_key[col] = row_key
            values = checked.values
            with_missing = pd.concat([values, pd.Series([np.nan], dtype=values.dtype)], ignore_index=True)
            self.frame[col] = with_missing.iloc[row_key].reset_index(drop=True)

    def failed_keys(self, col: str, checked: _CheckedColumn, rows: list) -> tuple[pd.Series, bool]:
        """(keys, whether the missing value) held at failing frame ``rows``."""
        held = np.unique(self.row_key[col][np.asarray(rows, dtype=np.int64)])
        n = len(checked.keys)
        return checked.keys.iloc[held[held < n]].reset_index(drop=True), bool((held == n).any())


def _gx_failures(vf: _ValidationFrame, source: str, memo: SuiteMemo | None = None) -> list[pd.DataFrame]:
    """Run the suite on the validation frame's distinct values not judged before (``memo``: of earlier
    chunks); one error frame per failed expectation, in the order GX reports a whole suite."""
    specs = _expectation_specs()
    memo = SuiteMemo() if memo is None else memo
    not_null = {kw["column"] for name, kw, _, _ in specs if name == "ExpectColumnValuesToNotBeNull"}
    value_checked = {kw["column"] for name, kw, _, _ in specs if name != "ExpectColumnValuesToNotBeNull"}
    columns = {col: _CheckedColumn.of(vf, col, col in value_checked) for col in sorted(not_null | value_checked)}
    todo = {col: memo.new_keys(col, checked) for col, checked in columns.items()}
    todo = {col: (new, missing) for col, (new, missing) in todo.items() if new.any() or missing}
    chosen = tuple(i for i, (_, kw, _, _) in enumerate(specs) if kw["column"] in todo)
    if chosen:
        on = {col: [i for i in chosen if specs[i][1]["column"] == col] for col in todo}
        good = {col: memo.known_good(columns[col], new, on[col])   # pad values: only not-null columns need them
                for col, (new, _) in todo.items() if col in not_null}
        frame = _SuiteFrame(columns, todo, not_null, good)
        result = _gx_validation(chosen).run(batch_parameters={"dataframe": frame.frame},
                                            result_format=_RESULT_FORMAT)
        crashed = [{"expectation": r.expectation_config.type, "detail": r.exception_info.get("exception_message")}
                   for r in result.results if r.exception_info and r.exception_info.get("raised_exception")]
        if crashed:  # a check that could not run must stop the run, not pass rows unchecked
            raise ValidationFailed("claim_lines", source, crashed)
        for r in result.results:
            rows = [d["source_row"] for d in (r.result or {}).get("unexpected_index_list") or []]
            if not r.success and rows:
                col = r.expectation_config.kwargs["column"]
                memo.record(int(r.expectation_config.meta["spec"]), *frame.failed_keys(col, columns[col], rows))
        for col, (new, missing) in todo.items():
            memo.judge(col, columns[col].keys[new].reset_index(drop=True), missing)
    out: list[pd.DataFrame] = []
    for i in _REPORT_ORDER:
        _, kw, fld, reason = specs[i]
        positions = memo.failing(i, columns[kw["column"]])
        if len(positions):
            out.append(_errors_at(vf, positions, fld, reason))
    return out


def _report_order() -> list[int]:
    """Spec indexes column by column (in the order columns first appear in the suite), as GX reports
    a whole suite's results: a row's reasons keep one order whichever expectations ran."""
    specs = _expectation_specs()
    first: dict[str, int] = {}
    for i, (_, kw, _, _) in enumerate(specs):
        first.setdefault(kw["column"], i)
    return sorted(range(len(specs)), key=lambda i: (first[specs[i][1]["column"]], i))


_REPORT_ORDER = _report_order()


# --- building error records -------------------------------------------------------------------------

def _errors_at(vf: _ValidationFrame, positions: np.ndarray, fld: str,
               reason: str | np.ndarray) -> pd.DataFrame:
    """Error records for the rows at ``positions``: the reason quotes the offending value."""
    values = pd.Series(vf.text_at(fld, positions).astype("str").fillna("").to_numpy(), dtype="str")
    text = pd.Series(np.broadcast_to(np.asarray(reason, dtype=object), (len(positions),)), dtype="str")
    full = (fld + " '" + values + "': " + text).where(values.ne(""), fld + ": " + text)
    return pd.DataFrame({"source_row": vf["source_row"].to_numpy()[positions], "field": fld,
                         "value": values.to_numpy(), "reason": full.to_numpy()})


def _mask_errors(vf: _ValidationFrame, mask: np.ndarray | pd.Series, fld: str,
                 reason: str | pd.Series) -> pd.DataFrame | None:
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return None
    if not isinstance(reason, str):
        reason = np.asarray(reason, dtype=object)[mask]
    return _errors_at(vf, np.flatnonzero(mask), fld, reason)


# --- vectorised helpers -----------------------------------------------------------------------------

def _blank_to_na(s: pd.Series) -> pd.Series:
    """Trim; empty -> missing. In pyarrow (one pass per column, no Python per row).

    A column with nothing to trim and no blank comes back as it is (its text is not copied).
    """
    text = s.astype("str")
    normalised = _trim_blank(pa.array(text.array))
    return pd.Series(text.array if normalised is None else pd.array(normalised, dtype="str"))


def _trim_blank(original: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray | None:
    """Trimmed text with blanks missing, or None when that changes nothing."""
    trimmed = pc.utf8_trim_whitespace(original)
    blank = pc.equal(trimmed, "")
    if not pc.any(blank).as_py() and (pc.sum(pc.binary_length(trimmed)).as_py()
                                      == pc.sum(pc.binary_length(original)).as_py()):
        return None
    return pc.if_else(blank, pa.scalar(None, trimmed.type), trimmed)


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


# --- columns as distinct values ---------------------------------------------------------------------

def _chunked(column: pd.Series | pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    """A text column as a pyarrow chunked array (zero-copy for pyarrow-backed columns)."""
    if isinstance(column, pd.Series):
        column = pa.array(column.astype("str").array)
    return column if isinstance(column, pa.ChunkedArray) else pa.chunked_array([column])


class _Coded:
    """A text column as its distinct values plus, per row, the index of the row's value (-1: missing).

    Claim columns repeat a few thousand values over a million rows, so every string function, pattern
    and parse runs once per distinct value and reaches the rows through the codes (one gather or take).
    """

    __slots__ = ("codes", "source", "values")

    def __init__(self, values: pa.Array, codes: np.ndarray, source: pd.Series | None = None) -> None:
        self.values = values  # distinct, none missing
        self.codes = codes    # int32, one per row
        self.source = source  # the text column encoded, while its values are unchanged (reused, not rebuilt)

    @classmethod
    def encode(cls, column: pd.Series | pa.Array | pa.ChunkedArray) -> _Coded:
        """Dictionary-encode a text column (one hash pass over the rows)."""
        chunks = pc.dictionary_encode(_chunked(column)).chunks
        if not chunks:
            return cls.missing(0)
        # the chunks are encoded with one memo table, so each chunk's dictionary starts the last one's
        values = chunks[-1].dictionary
        if not all(c.dictionary.equals(values.slice(0, len(c.dictionary))) for c in chunks[:-1]):
            return cls.encode(_chunked(column).combine_chunks())
        codes = [pc.fill_null(c.indices, -1).to_numpy(zero_copy_only=False) for c in chunks]
        source = pd.Series(column.array) if isinstance(column, pd.Series) and column.dtype == "str" else None
        return cls(values, codes[0] if len(codes) == 1 else np.concatenate(codes), source)

    @classmethod
    def of_codes(cls, values: pa.Array, codes: np.ndarray, column: pd.Series) -> _Coded:
        """A text column whose distinct values and codes are already known (read as a dictionary)."""
        source = pd.Series(column.array) if column.dtype == "str" else None
        return cls(values.cast(pa.large_string()), codes.astype(np.int32, copy=False), source)

    @classmethod
    def missing(cls, n: int) -> _Coded:
        """A column without any value (an optional column the file does not have)."""
        return cls(pa.array([], pa.large_string()), np.full(n, -1, dtype=np.int32))

    def series(self) -> pd.Series:
        """The distinct values as a text Series (index = value index)."""
        return pd.Series(pd.array(self.values, dtype="str"))

    def map(self, fn: Callable[[pd.Series], pd.Series]) -> _Coded:
        """The column after a text -> text function applied to every distinct value.

        Values that become equal share one code afterwards; a value that becomes missing is missing.
        """
        out = pa.array(fn(self.series()).array)
        out = out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out
        if out.equals(self.values):   # nothing changed (the usual case for clean files)
            return self
        encoded = pc.dictionary_encode(out)
        if out.null_count == 0 and len(encoded.dictionary) == len(out):   # still distinct: codes unchanged
            return _Coded(out, self.codes)
        # one extra entry at the end, so code -1 (missing) stays -1
        remap = np.append(pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False), -1).astype(np.int32)
        return _Coded(encoded.dictionary, remap[self.codes])

    def gather(self, per_value: np.ndarray, missing: object) -> np.ndarray:
        """Per-row array from one entry per distinct value, ``missing`` on rows without a value."""
        return np.append(per_value, np.asarray([missing], dtype=per_value.dtype))[self.codes]

    def text(self, rows: np.ndarray | None = None, *, fill: str | None = None,
             values: pa.Array | None = None) -> pd.Series:
        """The rows' text (only ``rows`` when given) as a pandas text column, one pyarrow take.

        ``values``: replacement text per distinct value (e.g. upper-cased); ``fill``: the text of rows
        without a value (default missing).
        """
        unchanged = values is None or values.equals(self.values)
        if self.source is not None and rows is None and unchanged and (fill is None or not (self.codes < 0).any()):
            return self.source
        values = self.values if values is None else values
        codes = self.codes if rows is None else self.codes[rows]
        if fill is None:
            taken = values.take(pa.array(codes, mask=codes < 0))
        else:
            with_fill = pa.concat_arrays([values, pa.array([fill], values.type)])
            taken = with_fill.take(pa.array(np.where(codes < 0, len(values), codes)))
        return pd.Series(pd.array(taken, dtype="str"))

    def dictionary(self, *, fill: str, values: pa.Array | None = None) -> pd.Series:
        """Every row's text as codes into the distinct values (``fill`` where a row has none), nothing
        decoded: an Arrow dictionary column (:func:`text_dictionary`)."""
        values = self.values if values is None else values
        codes = self.codes
        if (codes < 0).any():
            values = pa.concat_arrays([values, pa.array([fill], values.type)])
            codes = np.where(codes < 0, len(values) - 1, codes)
        return text_dictionary(codes, values)


def text_dictionary(codes: np.ndarray, values: pa.Array) -> pd.Series:
    """A text column as Arrow dictionary codes (int32) into ``values``: handed to the shard spill, a column
    of a few thousand distinct values is split and written as codes instead of a million strings. The
    values may repeat (two spellings normalised alike); a reader decodes, it never compares codes."""
    array = pa.DictionaryArray.from_arrays(pa.array(codes, type=pa.int32()), values.cast(pa.large_string()))
    return pd.Series(pd.arrays.ArrowExtensionArray(array))


#: input columns holding about one value per claim or patient and only checked for presence: trimmed
#: as whole columns (dictionary-encoding them would cost more than it saves)
_PLAIN_COLUMNS = frozenset({"claim_id", "patient_id"})
#: parsed numbers: column -> the text column they are read from
_NUMBER_COLUMNS = {"line_number_num": "line_number", "units_num": "units", "charge_num": "charge_amount"}


class _ValidationFrame:
    """The rows being validated: trimmed, blank->missing input columns (absent optional ones all missing).

    Columns with repeated values are held as :class:`_Coded` (normalised and parsed per distinct value),
    claim_id and patient_id as plain text columns. ``vf[column]`` gives any column over all rows as a
    pandas Series, built on first use, so the columns only needed at a few error rows are never built.
    """

    def __init__(self, frame: pd.DataFrame, codes: dict[str, tuple[pa.Array, np.ndarray]] | None = None) -> None:
        """``codes``: columns the reader already has as distinct values (:attr:`RawTable.codes`)."""
        n = len(frame)
        codes = codes or {}
        self._length = n
        self._built: dict[str, pd.Series] = {"source_row": pd.Series(frame["source_row"].to_numpy(dtype=np.int64))}
        self.coded: dict[str, _Coded] = {}
        for col in INPUT_COLUMNS:
            present = col in frame.columns
            if col in _PLAIN_COLUMNS:
                self._built[col] = _blank_to_na(frame[col]).reset_index(drop=True) if present else _na_text(n)
            elif not present:
                self.coded[col] = _Coded.missing(n)
            else:
                coded = _Coded.encode(frame[col]) if col not in codes else _Coded.of_codes(*codes[col], frame[col])
                self.coded[col] = coded.map(_blank_to_na)
        self.coded["hcpcs"] = self.coded["hcpcs"].map(lambda v: v.str.upper())
        charge = self.coded["charge_amount"]
        if charge.series().str.contains(r"[$,]", regex=True).fillna(False).any():
            self.coded["charge_amount"] = charge.map(lambda v: v.str.replace(r"^[$]|,", "", regex=True))
        line = self.coded["line_number"].series()
        self.numbers: dict[str, np.ndarray] = {   # per distinct value of the text column
            "line_number_num": _numeric(line.where(line.str.match(r"^[0-9]+$"))).to_numpy(dtype=np.float64),
            "units_num": _numeric(self.coded["units"].series()).to_numpy(dtype=np.float64),
            "charge_num": _numeric(self.coded["charge_amount"].series()).to_numpy(dtype=np.float64),
        }

    @property
    def columns(self) -> list[str]:
        return ["source_row", *INPUT_COLUMNS, *_NUMBER_COLUMNS]

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, col: str) -> pd.Series:
        if col not in self._built:
            if col in self.coded:
                self._built[col] = self.coded[col].text()
            elif col in self.numbers:
                self._built[col] = pd.Series(self.number(col), dtype="float64")
            else:
                raise KeyError(col)
        return self._built[col]

    def number(self, col: str, rows: np.ndarray | None = None) -> np.ndarray:
        """A parsed number column per row (NaN where missing or not a number), only ``rows`` when given."""
        coded = self.coded[_NUMBER_COLUMNS[col]]
        codes = coded.codes if rows is None else coded.codes[rows]
        return np.append(self.numbers[col], np.nan)[codes]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({col: self[col] for col in self.columns})

    def text_at(self, col: str, positions: np.ndarray) -> pd.Series:
        """The column's values at row ``positions`` (without building the whole column)."""
        if col in self.coded:
            return self.coded[col].text(np.asarray(positions, dtype=np.int64))
        return self[col].iloc[positions].reset_index(drop=True)

    def distinct(self, col: str) -> tuple[pd.Series, np.ndarray]:
        """(distinct values, per-row index into them with -1 for missing); numbers per text value."""
        if col in self.numbers:
            return pd.Series(self.numbers[col], dtype="float64"), self.coded[_NUMBER_COLUMNS[col]].codes
        if col in self.coded:
            return self.coded[col].series(), self.coded[col].codes
        codes, uniq = pd.factorize(self[col])
        return pd.Series(uniq, dtype=self[col].dtype), codes

    def is_missing(self, col: str) -> np.ndarray:
        return self.coded[col].codes < 0 if col in self.coded else self[col].isna().to_numpy()


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


def _modifier_combinations(vf: _ValidationFrame) -> tuple[np.ndarray, np.ndarray]:
    """(per-row combination index, one row holding each combination) of the modifier columns' values.

    A file has a few hundred distinct modifier combinations, so they are checked once each.
    """
    n = len(vf)
    key = np.zeros(n, dtype=np.int64)
    size = 1
    for col in ["modifiers", *MODIFIER_COLUMNS]:
        coded = vf.coded[col]
        width = len(coded.values) + 1
        if width == 1:    # no value in this column
            continue
        if size * width >= 2 ** 62:   # keep the combined key inside int64: renumber what is there so far
            key, uniq = pd.factorize(key)
            size = len(uniq)
        key = key * width + (coded.codes + 1)
        size *= width
    if size <= 4 * n + 1024:   # dense renumbering: no hashing
        seen = np.zeros(size, dtype=bool)
        seen[key] = True
        combination = (np.cumsum(seen) - 1)[key]
        n_combinations = int(seen.sum())
    else:
        combination, uniq = pd.factorize(key)
        n_combinations = len(uniq)
    holder = np.zeros(n_combinations, dtype=np.int64)
    holder[combination] = np.arange(n)   # some row of each combination (they all hold the same values)
    return combination, holder


def _spread_to_rows(errors: pd.DataFrame, combination: np.ndarray, source_rows: np.ndarray) -> pd.DataFrame:
    """Error records found per combination (``source_row`` = combination index) onto every row holding it.

    Rows come out ascending, each with its combination's records in their order.
    """
    found = errors["source_row"].to_numpy(dtype=np.int64)
    n_combinations = int(combination.max()) + 1 if len(combination) else 0
    hit = np.zeros(n_combinations, dtype=bool)
    hit[found] = True
    rows = np.flatnonzero(hit[combination])
    order = np.argsort(found, kind="stable")
    start = np.searchsorted(found[order], np.arange(n_combinations))
    per_row = np.bincount(found, minlength=n_combinations)[combination[rows]]
    offset = np.arange(per_row.sum()) - np.repeat(np.cumsum(per_row) - per_row, per_row)
    records = order[np.repeat(start[combination[rows]], per_row) + offset]
    out = errors.iloc[records].reset_index(drop=True)
    out["source_row"] = source_rows[np.repeat(rows, per_row)]
    return out


def _check_modifier_combinations(vf: _ValidationFrame, known: set[str], present: set[str]
                                 ) -> tuple[list[pd.DataFrame], pd.DataFrame, np.ndarray]:
    """:func:`_check_modifiers` on each distinct combination of modifier values, spread to the rows.

    Returns the error frames, the canonical modifier columns per combination and each row's combination.
    """
    combination, holder = _modifier_combinations(vf)
    columns = ["modifiers", *MODIFIER_COLUMNS]
    reduced = pd.DataFrame({"source_row": np.arange(len(holder), dtype=np.int64),
                            **{col: vf.text_at(col, holder) for col in columns}})
    errors, canon = _check_modifiers(reduced, known, present)
    source_rows = vf["source_row"].to_numpy()
    return [_spread_to_rows(e, combination, source_rows) for e in errors], canon, combination


# --- main entry -------------------------------------------------------------------------------------

def missing_required_columns(columns: list[str]) -> list[str]:
    return [c for c in REQUIRED if c not in columns]


def _pair_counts(claim: pd.Series, line_number: pd.Series) -> np.ndarray:
    """Rows per (claim, line number) pair at each row; 0 where either is missing."""
    # the pair as one integer: factorizing claim ids (Arrow dictionary encode) beats hashing text pairs
    return _coded_pair_counts(pd.factorize(claim)[0], line_number.to_numpy(dtype=np.float64, na_value=np.nan))


def _coded_pair_counts(claim_codes: np.ndarray, line_number: np.ndarray) -> np.ndarray:
    """:func:`_pair_counts` from claim codes (-1: missing) and line numbers (NaN: missing)."""
    counts = np.zeros(len(claim_codes), dtype=np.int64)
    keyed = (claim_codes >= 0) & ~np.isnan(line_number)
    if keyed.any():
        every = keyed.all()   # the usual case: no copy of a million codes
        c_codes = claim_codes if every else claim_codes[keyed]
        l_codes, l_uniq = pd.factorize(line_number if every else line_number[keyed])
        pairs = c_codes.astype(np.int64) * max(len(l_uniq), 1) + l_codes
        if len(pairs) and pairs.max() < 4 * len(pairs):   # a few line numbers per claim: count in place
            counts[keyed] = np.bincount(pairs)[pairs]
        else:
            pair_codes, _ = pd.factorize(pairs)
            counts[keyed] = np.bincount(pair_codes)[pair_codes]
    return counts


def _trimmed_codes(values: pd.Series) -> np.ndarray:
    """Codes of ``values`` as :func:`_blank_to_na` leaves them (-1: missing), trimming the distinct
    values only: a 10M-line file has about 3M distinct claim ids."""
    codes, uniques = pd.factorize(values)
    if not len(uniques):
        return codes
    normalised = _trim_blank(pa.array(pd.Series(uniques).astype("str").array))
    if normalised is None:        # the usual file: nothing to trim, the distinct values stay distinct
        return codes
    trimmed, _ = pd.factorize(pd.Series(pd.array(normalised, dtype="str")))  # equal once trimmed: one code
    return np.append(trimmed, -1)[codes]                                    # code -1 takes the appended -1


def claim_line_counts(claim_id: pd.Series, line_number: pd.Series) -> np.ndarray:
    """File-wide :func:`_pair_counts` from raw columns, normalised as validation does (trimmed, blank is
    missing, line numbers whole numbers), so a file validated in chunks finds the same repeats.

    ``line_number`` is text, or integers where the file typed it so (Parquet): a whole number is then
    the value itself when it is not negative, as the text of it would read.
    """
    if pd.api.types.is_integer_dtype(line_number.dtype):
        numbers = line_number.to_numpy(dtype=np.float64, na_value=np.nan)
        numbers[numbers < 0] = np.nan
    else:
        text = _blank_to_na(line_number)
        numbers = _numeric(text.where(text.str.match(r"^[0-9]+$"))).to_numpy()
    return _coded_pair_counts(_trimmed_codes(claim_id), numbers)


def validate_table(table: RawTable, known: set[str], *, today: date | None = None, dictionary_text: bool = False
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a file's rows into canonical lines (no line_uid yet) and quarantine rows.

    Every row of ``table.frame`` ends in exactly one of the two. The caller checks required
    columns first (:func:`missing_required_columns`). ``dictionary_text``: the text columns made of
    a file's distinct values come as codes into them (:func:`text_dictionary`), not as text.
    """
    return begin_validation(table, known, today=today, dictionary_text=dictionary_text).finish()


def begin_validation(table: RawTable, known: set[str], *, today: date | None = None,
                     dictionary_text: bool = False, memo: SuiteMemo | None = None) -> PendingValidation:
    """:func:`validate_table` up to the file-wide line-number repeats, which a big file's chunk may have
    to wait for (:meth:`RawTable.file_line_counts`): :meth:`PendingValidation.finish` does the rest, so
    a caller can validate the next chunk meanwhile. ``memo``: what the suite said about the values of
    the chunks validated before this one (:class:`SuiteMemo`; one call at a time)."""
    vf = _ValidationFrame(table.frame, table.codes)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gx") as side:
        # GX is mostly Python and the checks below mostly Arrow/numpy: the suite runs on a side thread
        gx = side.submit(_gx_failures, vf, table.name, memo) if len(vf) else None
        lines, errors, repeats_at = _own_checks(table, vf, known, today, dictionary_text)
        if gx is not None:
            errors += gx.result()
    return PendingValidation(table, vf, lines, errors, repeats_at)


@dataclass
class PendingValidation:
    """A table validated but for its repeated line numbers (see :func:`begin_validation`)."""

    table: RawTable
    vf: _ValidationFrame
    lines: pd.DataFrame                     # every row made canonical, bad ones included
    errors: list[pd.DataFrame | None]
    repeats_at: int                         # where the repeated line numbers go among a row's reasons

    def ready(self) -> bool:
        """Whether :meth:`finish` would run without waiting for the file-wide line counts."""
        return self.table.line_counts_ready()

    def finish(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(canonical lines, quarantine rows), waiting for the file-wide line counts where needed."""
        vf, errors = self.vf, list(self.errors)
        # line_number unique within claim, counted over the whole file (a chunk gets the file's counts)
        times = self.table.file_line_counts()
        if times is None:
            times = _pair_counts(vf["claim_id"], vf["line_number_num"])
        dup = times > 1
        if dup.any():
            reason = ("appears " + pd.Series(times, dtype="Int64").astype("str") + " times in claim '"
                      + vf["claim_id"].fillna("") + "'")
            errors.insert(self.repeats_at, _mask_errors(vf, dup, "line_number", reason))
        errs = pd.concat([e for e in errors if e is not None and len(e)], ignore_index=True) if any(
            e is not None and len(e) for e in errors) else pd.DataFrame(columns=ERROR_COLUMNS)
        bad_rows = np.unique(errs["source_row"].to_numpy(dtype=np.int64)) if len(errs) else np.array([], np.int64)
        is_bad = np.isin(vf["source_row"].to_numpy(), bad_rows)
        lines = self.lines
        if is_bad.any():  # every row was made canonical meanwhile: keep the good ones
            lines = lines.take(np.flatnonzero(~is_bad)).reset_index(drop=True)
        return lines, _quarantine_rows(self.table, vf, is_bad, errs)


def _own_checks(table: RawTable, vf: _ValidationFrame, known: set[str], today: date | None,
                dictionary_text: bool = False) -> tuple[pd.DataFrame, list[pd.DataFrame | None], int]:
    """The checks GX does not express (check digits, calendar dates, modifier combinations; repeats are
    :meth:`PendingValidation.finish`'s) and every row made canonical (bad ones are dropped once all
    errors are in): (lines, errors, where the repeated line numbers go among the errors)."""
    frame = table.frame
    errors: list[pd.DataFrame | None] = []
    if table.row_errors is not None and len(table.row_errors):
        errors.append(table.row_errors[ERROR_COLUMNS])

    # NPI check digit: only on values that already passed the 10-digit format check (per distinct NPI)
    for col in ("rendering_npi", "billing_npi"):
        npis = vf.coded[col]
        values = npis.series()
        ten = values.str.fullmatch(r"[0-9]{10}").fillna(False).to_numpy(dtype=bool)
        if ten.any():
            bad = ten & ~npi_check_digit_ok(values)
            errors.append(_mask_errors(vf, npis.gather(bad, False), col, "fails the NPI check digit (Luhn)"))

    # service dates: real calendar dates in a plausible window (per distinct date)
    service_dates = vf.coded["service_date"]
    values = service_dates.series()
    dates = parse_service_dates(values)
    well_formed = values.str.match(f"{_ISO_DATE}|{_US_DATE}").fillna(False).to_numpy(dtype=bool)
    nat = dates.isna().to_numpy()
    latest = pd.Timestamp(today or date.today()) + timedelta(days=1)
    errors.append(_mask_errors(vf, service_dates.gather(well_formed & nat, False), "service_date",
                               "not a real calendar date"))
    errors.append(_mask_errors(vf, service_dates.gather((dates < EARLIEST_SERVICE_DATE).to_numpy(), False),
                               "service_date", f"before {EARLIEST_SERVICE_DATE.date().isoformat()}"))
    errors.append(_mask_errors(vf, service_dates.gather((dates > latest).to_numpy(), False), "service_date",
                               f"in the future (after {latest.date().isoformat()})"))

    repeats_at = len(errors)  # where the repeated line numbers go among the reasons, worked out last
    mod_errors, canon_mods, mod_combination = _check_modifier_combinations(vf, known, set(frame.columns))
    errors += mod_errors
    lines = _canonical(table.name, vf, dates.to_numpy(), canon_mods, mod_combination,
                       dictionary_text=dictionary_text)
    return lines, errors, repeats_at


def _canonical(name: str, vf: _ValidationFrame, dates: np.ndarray, mods: pd.DataFrame,
               mod_combination: np.ndarray, *, dictionary_text: bool = False) -> pd.DataFrame:
    """Canonical claim lines (schemas.LINE_COLUMNS except line_uid) of every row, bad ones included (the
    caller drops them). Text is normalised per distinct value, then taken to the rows once per column,
    or with ``dictionary_text`` left as codes into the distinct values (:func:`text_dictionary`).

    dates: parsed service date per distinct service_date value; mods: canonical modifier columns per
    modifier combination; mod_combination: each row's combination.
    """
    n = len(vf)

    def plain(col: str) -> pd.Series:
        column = vf[col]
        return column.fillna("") if column.hasnans else column   # required columns: gaps only on bad rows

    def text(col: str, normalise: Callable[[pd.Series], pd.Series] | None = None, fill: str = "") -> pd.Series:
        coded = vf.coded[col]
        values = None if normalise is None else _arrow(normalise(coded.series()))
        return coded.dictionary(fill=fill, values=values) if dictionary_text else coded.text(fill=fill, values=values)

    def modifier(col: str) -> pd.Series:
        if dictionary_text:
            return text_dictionary(mod_combination, _arrow(mods[col]))
        return pd.Series(pd.array(_arrow(mods[col]).take(combination), dtype="str"))

    combination = pa.array(mod_combination)
    return pd.DataFrame({
        "source_file": (text_dictionary(np.zeros(n, np.int32), pa.array([name])) if dictionary_text else
                        pd.Series(pd.array(pa.repeat(pa.scalar(name, pa.large_string()), n), dtype="str"))),
        "source_row": vf["source_row"].to_numpy(dtype=np.int64),
        "claim_id": plain("claim_id"),
        "line_number": np.nan_to_num(vf.number("line_number_num"), nan=0).astype(np.int64),  # NaN: a bad row
        "patient_id": plain("patient_id"),
        "rendering_npi": text("rendering_npi"),
        "billing_npi": text("billing_npi"),
        "payer": text("payer", lambda v: v.str.lower(), fill=DEFAULT_PAYER),
        "service_date": np.append(dates, np.datetime64("NaT"))[vf.coded["service_date"].codes].astype("datetime64[ns]"),
        "hcpcs": text("hcpcs"),
        **{c: modifier(c) for c in ["modifiers", *MODIFIER_COLUMNS]},
        "units": vf.number("units_num"),
        "charge_amount": vf.number("charge_num"),
        "place_of_service": text("place_of_service"),
        "locality": text("locality"),
        "service_zip": text("service_zip", lambda v: v.str.slice(0, 5)),
        "diagnosis_codes": text("diagnosis_codes",
                                lambda v: v.str.upper().str.replace(_SEPARATORS, ",", regex=True).str.strip(",")),
    })


def _join_unique(values: Iterable[str]) -> str:
    return "; ".join(dict.fromkeys(values))


def _quarantine_rows(table: RawTable, vf: _ValidationFrame, is_bad: np.ndarray,
                     errs: pd.DataFrame) -> pd.DataFrame:
    """One quarantine row per bad input row: every field and reason joined with '; ', plus the raw row."""
    if not is_bad.any():
        return empty_quarantine()
    grouped = errs.groupby("source_row", sort=True).agg(
        field=("field", _join_unique), value=("value", lambda v: _join_unique(x for x in map(str, v) if x)),
        reason=("reason", "; ".join))
    positions = np.flatnonzero(is_bad)
    rows = vf["source_row"].to_numpy()[positions]
    grouped = grouped.reindex(rows)
    raw = raw_text(table, positions)
    out = pd.DataFrame({
        "source_file": table.name,
        "source_row": rows.astype(np.int64),
        "claim_id": vf.text_at("claim_id", positions).fillna("").to_numpy(),
        "line_number": vf.text_at("line_number", positions).fillna("").to_numpy(),
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
