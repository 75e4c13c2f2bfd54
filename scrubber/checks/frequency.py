"""Frequency limits (billing-domain 8): "at most N services of these codes per window", as data.

Rules live in rules/frequency.yaml (schema: billing-domain 8.1, validated by :func:`load_frequency_rules`).
A new line is evaluated against everything we know of the beneficiary: history from earlier runs plus the
earlier lines of the current batch in date-of-service order, so two lines of one batch can conflict.
Following 8.4, a batch line this same rule expects to be *denied* does not consume the allowance of the
lines after it (it will not be paid); a line only flagged for review still counts (it may be paid).

Limitation (said in every flag's message): our history only holds what this practice billed; Medicare
counts services by every provider, so a line we pass may still be denied ("no prior service found in our
records" is all we can say).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from scrubber.checks.context import CheckContext
from scrubber.checks.engine import factorized
from scrubber.errors import RulesError
from scrubber.rules import DEFAULT_PAYER, SAFE_LOADER
from scrubber.schemas import CHECK_RESULT_COLUMNS

FAMILY = "frequency"
#: reads claim columns and history only, nothing pricing adds: a run checks it beside the pricing
READS_PRICING = False

#: every frequency hit is reported as this catalog rule; its severity comes from the frequency rule
RULE_ID = "FREQ-LIMIT"
SEVERITY_RANK: dict[str, int] = {"deny": 0, "review": 1, "info": 2}
#: spellings of billing-domain 8.1 accepted as aliases
_SEVERITY_ALIASES = {"deny_expected": "deny", "warn": "review"}

WINDOW_TYPES: tuple[str, ...] = ("rolling_days", "months_after_month", "calendar_year", "lifetime",
                                 "same_day", "rolling_months")
_WINDOWS_WITH_N = {"rolling_days", "months_after_month", "rolling_months"}
SCOPES: dict[str, tuple[str, ...]] = {
    "beneficiary": ("patient_id",),
    "beneficiary+rendering_npi": ("patient_id", "rendering_npi"),
    "beneficiary+billing_npi": ("patient_id", "billing_npi"),
}
#: the earliest date a lifetime window reaches back to (history before it cannot exist)
LIFETIME_START = dt.date(1900, 1, 1)

_CODE_RE = re.compile(r"^[A-Z0-9]{5}$")
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


# --- YAML with line numbers (shared with the modifier25 and place_of_service rules files) ---------------

@dataclass
class YamlDoc:
    """A parsed rules file that remembers the line of every key, so errors can point at it."""

    file: str
    data: Any
    lines: dict[tuple, int]

    def line(self, key: tuple) -> int | None:
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.lines.get((), None)

    def error(self, key: tuple, reason: str, label: str | None = None) -> RulesError:
        where = self.file
        line = self.line(key)
        if line is not None:
            where += f", line {line}"
        if key:
            where += f", key {_key_text(key)!r}"
        if label:
            where += f" ({label})"
        return RulesError(f"{where}: {reason}")


def _key_text(key: tuple) -> str:
    text = ""
    for part in key:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def read_rules_yaml(path: str | Path) -> YamlDoc:
    """Parse a rules YAML file with line numbers; RulesError (file and line) when it is not valid YAML."""
    path = Path(path)
    name = _display_name(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"{name}: cannot read rules file: {exc.strerror or exc}") from None
    try:
        node = yaml.compose(text, Loader=SAFE_LOADER)
        data = yaml.load(text, Loader=SAFE_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RulesError(f"{name}{where}: not valid YAML: {problem}") from None
    lines: dict[tuple, int] = {}

    def walk(n: yaml.Node | None, key: tuple) -> None:
        if n is None:
            return
        lines.setdefault(key, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                sub = (*key, str(k.value))
                lines[sub] = k.start_mark.line + 1
                walk(v, sub)
        elif isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value):
                walk(v, (*key, i))

    walk(node, ())
    return YamlDoc(name, data, lines)


def _display_name(path: Path) -> str:
    """rules/<file> when the file sits in a folder named rules (how users know it), else the path."""
    return f"{path.parent.name}/{path.name}" if path.parent.name else str(path)


def expand_codes(doc: YamlDoc, key: tuple, value: Any, *, label: str | None = None,
                 allow_empty: bool = False) -> tuple[str, ...]:
    """A list of HCPCS codes; "AAAAA-BBBBB" is an inclusive numeric range. Codes must be quoted strings
    (YAML reads 00100 as the number 64), but a plain 5-digit number without leading zero is accepted."""
    if value is None and allow_empty:
        return ()
    if not isinstance(value, list):
        raise doc.error(key, "must be a list of HCPCS codes", label)
    out: list[str] = []
    for i, item in enumerate(value):
        k = (*key, i)
        if isinstance(item, int) and not isinstance(item, bool) and 10000 <= item <= 99999:
            item = str(item)
        if not isinstance(item, str):
            raise doc.error(k, f"HCPCS code must be a quoted string, got {item!r}", label)
        text = item.strip().upper()
        if "-" in text:
            lo, _, hi = text.partition("-")
            if not (lo.isdigit() and hi.isdigit() and len(lo) == len(hi) == 5 and int(lo) <= int(hi)):
                raise doc.error(k, f"bad code range {item!r} (expected e.g. '99202-99205')", label)
            out.extend(f"{c:05d}" for c in range(int(lo), int(hi) + 1))
        elif _CODE_RE.match(text):
            out.append(text)
        else:
            raise doc.error(k, f"not a 5-character HCPCS code: {item!r}", label)
    if not out and not allow_empty:
        raise doc.error(key, "must list at least one code", label)
    return tuple(dict.fromkeys(out))


def parse_date(doc: YamlDoc, key: tuple, value: Any, *, label: str | None = None,
               optional: bool = False) -> dt.date | None:
    if value is None and optional:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise doc.error(key, f"expected a date YYYY-MM-DD, got {value!r}", label)


def check_keys(doc: YamlDoc, key: tuple, entry: Any, allowed: Iterable[str], required: Iterable[str],
               label: str | None = None) -> dict:
    if not isinstance(entry, dict):
        raise doc.error(key, f"expected a mapping, got {type(entry).__name__}", label)
    allowed = set(allowed)
    for k in entry:
        if str(k) not in allowed:
            raise doc.error((*key, str(k)), f"unknown key {k!r} (allowed: {', '.join(sorted(allowed))})", label)
    for k in required:
        if k not in entry or entry[k] is None:
            raise doc.error(key, f"missing required key {k!r}", label)
    return entry


# --- vectorised helpers shared by the modifier25 / place_of_service / frequency checks -------------------

def _arrow_text(values: object) -> pa.Array:
    if isinstance(values, (set, frozenset)):
        values = sorted(values)
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    if series.dtype != "str":
        series = series.astype("str")
    return pa.array(series, type=pa.string(), from_pandas=True)


def isin_text(values: pd.Series, allowed: object) -> pd.Series:
    """``values.isin(allowed)`` for text keys, via Arrow. pandas 3's Arrow-string isin converts every
    allowed value to a scalar (measured ~6 s for 200k patient ids); pyarrow's is_in takes ~0.1 s."""
    hit = pc.is_in(_arrow_text(values), value_set=pc.unique(_arrow_text(allowed)))
    return pd.Series(hit.to_numpy(zero_copy_only=False), index=values.index, dtype=bool)


def join_texts(keys: pd.Series, texts: pd.Series, sep: str = "; ") -> pd.Series:
    """Texts joined per key (first-seen order), indexed by key. The common one-text case stays vectorised;
    keys with several texts (a handful of frequency rules hitting one line) are joined group by group."""
    key_arr = keys.to_numpy()
    text_arr = texts.to_numpy(dtype=object)
    dup = keys.duplicated(keep=False).to_numpy()
    single = pd.Series(text_arr[~dup], index=key_arr[~dup])
    if not dup.any():
        return single
    k, t = key_arr[dup], text_arr[dup]
    order = np.argsort(k, kind="stable")
    k, t = k[order], t[order]
    uniq, starts = np.unique(k, return_index=True)
    joined = [sep.join(part) for part in np.split(t, starts[1:])]
    return pd.concat([single, pd.Series(joined, index=uniq, dtype=object)])


# --- rule schema -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Window:
    """How far back prior services count. ``n`` is days or months depending on ``type``."""

    type: str
    n: int | None = None

    def describe(self) -> str:
        return {
            "rolling_days": f"{self.n} days",
            "months_after_month": f"{self.n} full months after the month of the last service",
            "calendar_year": "the calendar year",
            "lifetime": "a lifetime",
            "same_day": "one day",
            "rolling_months": f"{self.n} months (rolling)",
        }[self.type]


@dataclass(frozen=True)
class FrequencyRule:
    """One frequency policy of rules/frequency.yaml (billing-domain 8.1)."""

    id: str
    payer: str
    effective_from: dt.date
    effective_to: dt.date | None        # exclusive: first day the rule no longer applies; None = open
    applies_to_codes: tuple[str, ...]
    counts_codes: tuple[str, ...]
    blocks_if_codes: tuple[str, ...]
    max_count: int
    window: Window
    blocks_window: Window
    scope: str
    per_side: bool
    count_units: bool
    severity: str                       # deny | review | info
    expected_carc: tuple[str, ...]
    source: str
    confidence: str | None = None
    note: str | None = None
    #: a blocking service on the same date of service blocks too (false: only earlier dates do)
    blocks_same_day: bool = True
    #: the catalog rule (family frequency) hits are reported as: its message, fix and CARC
    report_as: str = RULE_ID


_RULE_KEYS = ("id", "payer", "effective", "applies_to_codes", "counts_codes", "blocks_if_codes", "blocks_window",
              "blocks_same_day", "max_count", "window", "scope", "per_side", "count_units", "severity",
              "expected_carc", "report_as", "source", "confidence", "note")
_CATALOG_ID_RE = re.compile(r"^[A-Z0-9][A-Z0-9-]*$")
_RULE_REQUIRED = ("id", "payer", "effective", "applies_to_codes", "window", "source")


def _parse_window(doc: YamlDoc, key: tuple, value: Any, label: str) -> Window:
    entry = check_keys(doc, key, value, ("type", "n"), ("type",), label)
    wtype = entry["type"]
    if wtype not in WINDOW_TYPES:
        raise doc.error((*key, "type"), f"window type must be one of {', '.join(WINDOW_TYPES)}; got {wtype!r}",
                        label)
    n = entry.get("n")
    if wtype in _WINDOWS_WITH_N:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise doc.error((*key, "n"), f"window type {wtype} needs a positive integer n, got {n!r}", label)
    elif n is not None:
        raise doc.error((*key, "n"), f"window type {wtype} takes no n", label)
    return Window(wtype, n)


def _parse_bool(doc: YamlDoc, key: tuple, value: Any, label: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise doc.error(key, f"expected true or false, got {value!r}", label)
    return value


def _parse_rule(doc: YamlDoc, i: int, entry: Any) -> FrequencyRule:
    key: tuple = ("rules", i)
    label = f"rule {entry.get('id')!r}" if isinstance(entry, dict) and entry.get("id") else f"rule #{i + 1}"
    check_keys(doc, key, entry, _RULE_KEYS, _RULE_REQUIRED, label)
    rid = entry["id"]
    if not isinstance(rid, str) or not _ID_RE.match(rid):
        raise doc.error((*key, "id"), f"id must be a lower-case slug (a-z, 0-9, _ . -), got {rid!r}", label)
    payer = entry["payer"]
    if not isinstance(payer, str) or not payer.strip():
        raise doc.error((*key, "payer"), f"payer must be a payer id string, got {payer!r}", label)
    eff = check_keys(doc, (*key, "effective"), entry["effective"], ("from", "to"), ("from",), label)
    eff_from = parse_date(doc, (*key, "effective", "from"), eff["from"], label=label)
    eff_to = parse_date(doc, (*key, "effective", "to"), eff.get("to"), label=label, optional=True)
    if eff_to is not None and eff_to <= eff_from:
        raise doc.error((*key, "effective", "to"), "effective.to (exclusive) must be after effective.from", label)
    applies = expand_codes(doc, (*key, "applies_to_codes"), entry["applies_to_codes"], label=label)
    counts = (applies if "counts_codes" not in entry
              else expand_codes(doc, (*key, "counts_codes"), entry["counts_codes"], label=label, allow_empty=True))
    blocks = expand_codes(doc, (*key, "blocks_if_codes"), entry.get("blocks_if_codes"), label=label,
                          allow_empty=True)
    if not counts and not blocks:
        raise doc.error(key, "a rule needs counts_codes or blocks_if_codes", label)
    max_count = entry.get("max_count", 1)
    if counts and (not isinstance(max_count, int) or isinstance(max_count, bool) or max_count < 1):
        raise doc.error((*key, "max_count"), f"max_count must be a positive integer, got {max_count!r}", label)
    window = _parse_window(doc, (*key, "window"), entry["window"], label)
    blocks_window = (window if entry.get("blocks_window") is None
                     else _parse_window(doc, (*key, "blocks_window"), entry["blocks_window"], label))
    scope = entry.get("scope", "beneficiary")
    if scope not in SCOPES:
        raise doc.error((*key, "scope"), f"scope must be one of {', '.join(SCOPES)}; got {scope!r}", label)
    severity = entry.get("severity", "deny")
    severity = _SEVERITY_ALIASES.get(severity, severity)
    if severity not in SEVERITY_RANK:
        raise doc.error((*key, "severity"), f"severity must be deny, review or info; got {entry.get('severity')!r}",
                        label)
    carc = entry.get("expected_carc", [])
    if isinstance(carc, (str, int)):
        carc = [carc]
    if not isinstance(carc, list) or not all(isinstance(c, (str, int)) for c in carc):
        raise doc.error((*key, "expected_carc"), "expected_carc must be a list of codes like \"119\"", label)
    source = entry["source"]
    if not isinstance(source, str) or not source.strip():
        raise doc.error((*key, "source"), "source must say where the limit comes from", label)
    for opt in ("confidence", "note"):
        if entry.get(opt) is not None and not isinstance(entry[opt], str):
            raise doc.error((*key, opt), f"{opt} must be text", label)
    report_as = entry.get("report_as", RULE_ID)
    if not isinstance(report_as, str) or not _CATALOG_ID_RE.match(report_as):
        raise doc.error((*key, "report_as"), f"report_as must be a catalog rule id like {RULE_ID}, got "
                        f"{report_as!r}", label)
    return FrequencyRule(
        id=rid, payer=payer.strip().lower(), effective_from=eff_from, effective_to=eff_to,
        applies_to_codes=applies, counts_codes=counts, blocks_if_codes=blocks, max_count=int(max_count),
        window=window, blocks_window=blocks_window, scope=scope,
        per_side=_parse_bool(doc, (*key, "per_side"), entry.get("per_side"), label, False),
        count_units=_parse_bool(doc, (*key, "count_units"), entry.get("count_units"), label, False),
        severity=severity, expected_carc=tuple(str(c) for c in carc), source=source.strip(),
        confidence=entry.get("confidence"), note=entry.get("note"),
        blocks_same_day=_parse_bool(doc, (*key, "blocks_same_day"), entry.get("blocks_same_day"), label, True),
        report_as=report_as,
    )


def load_frequency_rules(path: str | Path) -> tuple[FrequencyRule, ...]:
    """Read and validate rules/frequency.yaml; RulesError naming file, key and line on any problem."""
    doc = read_rules_yaml(path)
    check_keys(doc, (), doc.data if doc.data is not None else {}, ("rules",), ("rules",))
    entries = doc.data["rules"]
    if not isinstance(entries, list):
        raise doc.error(("rules",), "must be a list of frequency rules")
    rules = [_parse_rule(doc, i, e) for i, e in enumerate(entries)]
    seen: dict[str, int] = {}
    for i, r in enumerate(rules):
        if r.id in seen:
            raise doc.error(("rules", i, "id"), f"duplicate rule id {r.id!r} (first at rules[{seen[r.id]}])")
        seen[r.id] = i
    return tuple(rules)


def lookback_start(rules: Iterable[FrequencyRule], first_dos: dt.date) -> dt.date:
    """Earliest service date any rule's window can reach from ``first_dos``: where history reads must start."""
    start = first_dos
    for r in rules:
        for w in (r.window, r.blocks_window):
            if w.type == "lifetime":
                return LIFETIME_START
            if w.type == "rolling_days":
                cand = first_dos - dt.timedelta(days=w.n)
            elif w.type in ("months_after_month", "rolling_months"):
                m = first_dos.year * 12 + first_dos.month - 1 - (w.n or 0) - 1
                cand = dt.date(m // 12, m % 12 + 1, 1)
            elif w.type == "calendar_year":
                cand = dt.date(first_dos.year, 1, 1)
            else:
                cand = first_dos
            start = min(start, cand)
    return start


def catalog_problems(rules: Iterable[FrequencyRule], families: dict[str, str]) -> list[str]:
    """``report_as`` ids missing from the catalog or not of the frequency family (``families``: rule id ->
    family), as sentences for an error."""
    out = []
    for r in rules:
        family = families.get(r.report_as)
        if family is None:
            out.append(f"rule {r.id!r}: report_as {r.report_as!r} is not a rule of rules/catalog")
        elif family != FAMILY:
            out.append(f"rule {r.id!r}: report_as {r.report_as!r} is a {family} rule, not a {FAMILY} one")
    return out


def target_codes(rules: Iterable[FrequencyRule]) -> set[str]:
    """Every code a rule judges: only patients with one of these in the batch need their history read."""
    return {c for r in rules for c in r.applies_to_codes}


def code_in(code_of: np.ndarray, code_values: Sequence[object], codes: set[str]) -> np.ndarray:
    """Per line, whether its code is one of ``codes``: the column factorised (``code_of`` indexes
    ``code_values``, -1 = missing), each distinct code trimmed, upper-cased and looked up once."""
    return np.array([str(v).strip().upper() in codes for v in code_values] + [False])[code_of]


def frequency_codes(rules: Iterable[FrequencyRule]) -> set[str]:
    """Every code a rule reads from history (counted or blocking): lets the pipeline read less history."""
    out: set[str] = set()
    for r in rules:
        out.update(r.counts_codes, r.blocks_if_codes)
    return out


# --- the check -------------------------------------------------------------------------------------------

def _window_start(dates: pd.Series, window: Window) -> pd.Series:
    """First date (inclusive) a prior service on it still counts against a new service on ``dates``."""
    d = dates.to_numpy(dtype="datetime64[ns]")
    if window.type == "lifetime":
        start = np.full(d.shape, np.datetime64(LIFETIME_START, "ns"))
    elif window.type == "rolling_days":
        # once per n days: a service n days after the last one is allowed again
        start = d - np.timedelta64(window.n - 1, "D")
    elif window.type == "months_after_month":
        # billing-domain 8.2: allowed if m(new) - m(last) >= n + 1, so counted while m(last) >= m(new) - n
        start = (d.astype("datetime64[M]") - window.n).astype("datetime64[ns]")
    elif window.type == "calendar_year":
        start = d.astype("datetime64[Y]").astype("datetime64[ns]")
    elif window.type == "same_day":
        start = d
    else:  # rolling_months: counted while prior > new - n calendar months (2026-03-10 - 12 months = 2025-03-10)
        shifted = pd.Series(d) - pd.DateOffset(months=window.n)
        start = (shifted + pd.Timedelta(days=1)).to_numpy(dtype="datetime64[ns]")
    return pd.Series(start, index=dates.index)


def _next_allowed(last: pd.Series, window: Window) -> pd.Series:
    """For max_count 1: the first date a new service is allowed after ``last`` (NaT for lifetime)."""
    d = last.to_numpy(dtype="datetime64[ns]")
    if window.type == "rolling_days":
        out = d + np.timedelta64(window.n, "D")
    elif window.type == "months_after_month":
        out = (d.astype("datetime64[M]") + window.n + 1).astype("datetime64[ns]")
    elif window.type == "calendar_year":
        out = (d.astype("datetime64[Y]") + 1).astype("datetime64[ns]")
    elif window.type == "same_day":
        out = d + np.timedelta64(1, "D")
    elif window.type == "rolling_months":
        out = (pd.Series(d) + pd.DateOffset(months=window.n)).to_numpy(dtype="datetime64[ns]")
    else:
        out = np.full(d.shape, np.datetime64("NaT", "ns"))
    return pd.Series(out, index=last.index)


def _norm_payer(s: pd.Series | None, index: pd.Index) -> pd.Series:
    if s is None:
        return pd.Series(DEFAULT_PAYER, index=index)
    out = s.astype("string").str.strip().str.lower()
    return out.mask(out.isna() | (out == ""), DEFAULT_PAYER).astype(object)


def _events_frame(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Normalise batch or history lines to the columns the counters use."""
    n = len(frame)
    idx = frame.index
    get = frame.get
    out = pd.DataFrame({
        "uid": pd.to_numeric(get("line_uid", pd.Series(np.arange(n), index=idx)), errors="coerce").astype("Int64"),
        "patient_id": get("patient_id", pd.Series("", index=idx)).astype(object),
        "rendering_npi": get("rendering_npi", pd.Series("", index=idx)).astype(object),
        "billing_npi": get("billing_npi", pd.Series(None, index=idx, dtype=object)).astype(object),
        "payer": _norm_payer(get("payer"), idx),
        "date": pd.to_datetime(get("service_date", pd.Series(pd.NaT, index=idx))).astype("datetime64[ns]"),
        "hcpcs": get("hcpcs", pd.Series("", index=idx)).astype("string").str.upper().astype(object),
        "modifiers": get("modifiers", pd.Series("", index=idx)).fillna("").astype(str),
        "units": pd.to_numeric(get("units", pd.Series(1.0, index=idx)), errors="coerce").fillna(0.0).astype(float),
        "claim_id": get("claim_id", pd.Series(None, index=idx, dtype=object)).astype(object),
        "line_number": get("line_number", pd.Series(None, index=idx, dtype=object)).astype(object),
        "run_id": get("run_id", pd.Series(None, index=idx, dtype=object)).astype(object),
        "source": source,
    })
    # billing NPI missing: fall back to the rendering NPI so scope keys never match on NaN == NaN
    out["billing_npi"] = out["billing_npi"].where(out["billing_npi"].notna() & (out["billing_npi"] != ""),
                                                  out["rendering_npi"])
    # ordering of same-day services for unit counting: history first, then batch lines in intake order
    out["order"] = out["uid"].astype("float64") if source == "batch" else -1.0
    return out.reset_index(drop=True)


_SIDE_RE = r"(?:^|,)(?:{})(?:,|$)"


def _explode_sides(frame: pd.DataFrame) -> pd.DataFrame:
    """per_side rules: RT and LT are separate counters; 50 (bilateral) is one of each; others are unsided."""
    mods = frame["modifiers"]
    rt = mods.str.contains(_SIDE_RE.format("RT|50"), regex=True)
    lt = mods.str.contains(_SIDE_RE.format("LT|50"), regex=True)
    parts = [frame[rt].assign(side="RT"), frame[lt].assign(side="LT"), frame[~(rt | lt)].assign(side="")]
    return pd.concat(parts, ignore_index=True)


def _describe_event(ev: pd.DataFrame, prefix: str = "e_") -> pd.Series:
    """'G0439 on 2025-03-14 (earlier run R, claim C line 1)' for the prior service a flag points at."""
    date_txt = ev[f"{prefix}date"].dt.strftime("%Y-%m-%d")
    where = np.where(
        ev[f"{prefix}source"] == "history",
        "earlier run " + ev[f"{prefix}run_id"].astype(str) + ", claim " + ev[f"{prefix}claim_id"].astype(str)
        + " line " + ev[f"{prefix}line_number"].astype(str),
        "this batch, claim " + ev[f"{prefix}claim_id"].astype(str) + " line " + ev[f"{prefix}line_number"].astype(str),
    )
    return ev[f"{prefix}hcpcs"].astype(str) + " on " + date_txt + " (" + pd.Series(where, index=ev.index) + ")"


def _hits(targets: pd.DataFrame, pool: pd.DataFrame, keys: list[str], *, mode: str, max_count: int,
          same_day: bool = True) -> pd.DataFrame:
    """Targets whose prior services in the window reach the limit.

    mode "sessions": distinct earlier service dates in the window >= max_count.
    mode "units":    units of earlier services (same day: earlier in order) + own units > max_count.
    mode "block":    any service of a blocking code in the window (the same day included unless
                     ``same_day`` is false; never the target line itself).
    Returns one row per flagged target (and side): t_uid, count, the latest counted event (e_* columns).
    """
    if targets.empty or pool.empty:
        return pd.DataFrame()
    t = targets.add_prefix("t_")
    e = pool.add_prefix("e_")
    m = t.merge(e, left_on=[f"t_{k}" for k in keys], right_on=[f"e_{k}" for k in keys], how="inner")
    if m.empty:
        return pd.DataFrame()
    in_window = m["e_date"] >= m["t_start"]
    if mode == "sessions":
        in_window &= m["e_date"] < m["t_date"]
    elif mode == "units":
        in_window &= (m["e_date"] < m["t_date"]) | ((m["e_date"] == m["t_date"]) & (m["e_order"] < m["t_order"]))
    elif same_day:
        in_window &= (m["e_date"] <= m["t_date"]) & ~((m["e_source"] == "batch") & (m["e_uid"] == m["t_uid"]))
    else:
        in_window &= m["e_date"] < m["t_date"]
    m = m[in_window]
    if m.empty:
        return pd.DataFrame()
    by = ["t_uid", "t_side"] if "t_side" in m.columns else ["t_uid"]
    grouped = m.groupby(by, sort=False)
    if mode == "sessions":
        count = grouped["e_date"].nunique()
        over = count >= max_count
    elif mode == "units":
        count = grouped["e_units"].sum()
        own = grouped["t_units"].first()
        over = (count + own) > max_count
    else:
        count = grouped.size()
        over = count > 0
    flagged = over[over].rename("_over").reset_index()
    latest = (m.merge(flagged[by], on=by).sort_values([*by, "e_date", "e_order"])
              .drop_duplicates(by, keep="last"))
    return latest.merge(count.rename("count").reset_index(), on=by)


_RESULT_COLUMNS = [*CHECK_RESULT_COLUMNS, "related_source", "related_run_id", "severity"]


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in _RESULT_COLUMNS})


@functools.lru_cache(maxsize=64)
def _value_set(codes: frozenset[str]) -> pa.Array:
    """A rule's codes as an Arrow set, built once (the new-patient limit reads ~60,000 codes)."""
    return pa.array(sorted(codes), pa.string())


class _Columns:
    """hcpcs, payer and patient of an events frame as Arrow text, so each rule selects its rows in C."""

    def __init__(self, events: pd.DataFrame) -> None:
        self.hcpcs, self.payer, self.patient = (pa.array(events[c].to_numpy(dtype=object), type=pa.string())
                                                for c in ("hcpcs", "payer", "patient_id"))

    def rows(self, codes: Iterable[str], payer: str, patients: Iterable[str] | None = None) -> np.ndarray:
        """Rows of one of ``codes`` for ``payer`` (and, when given, of one of ``patients``)."""
        mask = pc.and_(pc.is_in(self.hcpcs, value_set=_value_set(frozenset(codes))), pc.equal(self.payer, payer))
        if patients is not None:
            mask = pc.and_(mask, pc.is_in(self.patient, value_set=pa.array(list(patients), pa.string())))
        return pc.fill_null(mask, False).to_numpy(zero_copy_only=False)


def _evaluate_rule(rule: FrequencyRule, batch: pd.DataFrame, everyone: pd.DataFrame, *,
                   batch_columns: _Columns, everyone_columns: _Columns) -> list[pd.DataFrame]:
    """Flags of one frequency rule (a list of partial result frames). ``everyone``: history + batch;
    ``*_columns``: their :class:`_Columns`, made once for all rules."""
    keys = list(SCOPES[rule.scope])
    candidates = batch[batch_columns.rows(rule.applies_to_codes, rule.payer)]
    in_force = candidates["date"] >= pd.Timestamp(rule.effective_from)
    if rule.effective_to is not None:
        in_force &= candidates["date"] < pd.Timestamp(rule.effective_to)
    targets = candidates[in_force]
    if targets.empty:
        return []
    # only the codes this rule reads, of the patients it judges (every scope is per patient)
    everyone = everyone[everyone_columns.rows(
        {*rule.counts_codes, *rule.blocks_if_codes}, rule.payer, targets["patient_id"].unique())]
    if rule.per_side:
        targets = _explode_sides(targets)
        everyone = _explode_sides(everyone)
        keys = [*keys, "side"]
    out: list[pd.DataFrame] = []

    # (1) blocking codes: presence in the blocks window flags, whatever the count
    if rule.blocks_if_codes:
        blockers = everyone[everyone["hcpcs"].isin(rule.blocks_if_codes)]
        tb = targets.assign(start=_window_start(targets["date"], rule.blocks_window))
        hit = _hits(tb, blockers, keys, mode="block", max_count=0, same_day=rule.blocks_same_day)
        if not hit.empty:
            detail = (f"frequency rule {rule.id}: not allowed within {rule.blocks_window.describe()} of "
                      + _describe_event(hit))
            out.append(_frame_for(rule, hit, detail))

    # (2) counted codes, evaluated in rounds of DOS order so a line this rule denies does not count later
    if rule.counts_codes:
        mode = "units" if rule.count_units else "sessions"
        counted = everyone[everyone["hcpcs"].isin(rule.counts_codes)]
        is_self = (counted["source"] == "batch") & counted["uid"].isin(targets["uid"])
        pool = counted[~is_self]                  # history and batch lines this rule does not judge
        own = counted[is_self]                    # this rule's targets: they count once accepted
        tc = targets.assign(start=_window_start(targets["date"], rule.window))
        if mode == "sessions":
            tc["round"] = tc.groupby(keys, dropna=False)["date"].rank(method="dense").astype(int)
        else:
            tc["round"] = tc.sort_values(["date", "order"]).groupby(keys, dropna=False).cumcount() + 1
        if rule.severity != "deny":
            tc["round"] = 1                       # a review/info flag still counts: one pass is exact
            pool = counted
        flagged_uids: set = set()
        for r in range(1, int(tc["round"].max()) + 1):
            current = tc[tc["round"] == r]
            hit = _hits(current, pool, keys, mode=mode, max_count=rule.max_count)
            if not hit.empty:
                flagged_uids.update(hit["t_uid"].tolist())
                out.append(_frame_for(rule, hit, _count_detail(rule, hit)))
            if rule.severity == "deny":
                accepted = own[own["uid"].isin(current["uid"]) & ~own["uid"].isin(flagged_uids)]
                pool = pd.concat([pool, accepted], ignore_index=True)
    return out


def _count_detail(rule: FrequencyRule, hit: pd.DataFrame) -> pd.Series:
    unit = "units" if rule.count_units else ("service" if rule.max_count == 1 else "services")
    limit = f"at most {rule.max_count} {unit} per {rule.window.describe()}"
    text = (f"frequency rule {rule.id} ({limit}): " + hit["count"].astype(int).astype(str)
            + " already counted in the window, the latest " + _describe_event(hit))
    if rule.max_count == 1 and rule.window.type != "same_day":
        nxt = _next_allowed(hit["e_date"], rule.window)
        nxt_txt = np.where(nxt.isna(), "; once per lifetime",
                           "; next allowed on or after " + nxt.dt.strftime("%Y-%m-%d").fillna(""))
        text = text + pd.Series(nxt_txt, index=hit.index)
    if rule.expected_carc:
        text = text + f"; expect CARC {'/'.join(rule.expected_carc)}"
    return text


def _frame_for(rule: FrequencyRule, hit: pd.DataFrame, detail: pd.Series | str) -> pd.DataFrame:
    if isinstance(detail, str):
        detail = pd.Series(detail, index=hit.index)
    is_hist = hit["e_source"] == "history"
    return pd.DataFrame({
        "line_uid": hit["t_uid"].to_numpy(),
        "rule_id": rule.report_as,
        "related_line_uid": pd.array(hit["e_uid"].to_numpy(), dtype="Int64"),
        "detail": detail.to_numpy(),
        "amount_basis": None,
        "related_source": hit["e_source"].to_numpy(dtype=object),
        "related_run_id": hit["e_run_id"].where(is_hist).to_numpy(dtype=object),
        "severity": rule.severity,
        "_rank": SEVERITY_RANK[rule.severity],
    })


def check(ctx: CheckContext) -> pd.DataFrame:
    """One flag per line (FREQ-LIMIT or the rule's ``report_as``; severity, rule and related line from the
    strictest frequency rule that hit it)."""
    rules: Iterable[FrequencyRule] = getattr(ctx.rules, "frequency", None) or ()
    if ctx.lines.empty or not rules:
        return _empty()
    # only lines of codes some rule reads, of patients with a line some rule judges (every scope is per
    # patient): on a real batch a few percent, so frames are built for those only
    judged = target_codes(rules)
    codes = frequency_codes(rules) | judged
    code_of, code_values = factorized(ctx, "hcpcs")
    is_judged = code_in(code_of, code_values, judged)
    patient_of, patient_values = factorized(ctx, "patient_id")
    judged_patients = np.unique(patient_of[is_judged & (patient_of >= 0)])
    if not len(judged_patients):
        return _empty()
    of_judged = np.zeros(len(patient_values) + 1, dtype=bool)   # the extra last entry: no patient (code -1)
    of_judged[judged_patients] = True
    lines = ctx.lines[code_in(code_of, code_values, codes) & of_judged[patient_of]]
    patients = [patient_values[i] for i in judged_patients]
    batch = _events_frame(lines, "batch")
    hist = ctx.history
    if hist is not None and not hist.empty:
        hist = hist[code_in(*pd.factorize(hist["hcpcs"]), codes) & isin_text(hist["patient_id"], patients)]
    history = _events_frame(hist, "history") if hist is not None and not hist.empty else batch.iloc[0:0]
    everyone = pd.concat([history, batch], ignore_index=True)
    parts: list[pd.DataFrame] = []
    batch_columns, everyone_columns = _Columns(batch), _Columns(everyone)
    for rule in rules:  # a handful of policies; each is evaluated vectorised over all lines
        parts.extend(_evaluate_rule(rule, batch, everyone, batch_columns=batch_columns,
                                    everyone_columns=everyone_columns))
    parts = [p for p in parts if not p.empty]
    if not parts:
        return _empty()
    res = pd.concat(parts, ignore_index=True).drop_duplicates(["line_uid", "detail"])
    # one flag per line: several frequency rules hitting a line become one message; the strictest
    # severity and its related line lead
    res = res.sort_values(["line_uid", "_rank"], kind="stable")
    details = join_texts(res["line_uid"], res["detail"])
    first = res.drop_duplicates("line_uid").set_index("line_uid").sort_index()
    first["detail"] = details.reindex(first.index).to_numpy()
    out = first.reset_index()
    out["line_uid"] = out["line_uid"].astype("int64")
    out["related_line_uid"] = out["related_line_uid"].astype("Int64")
    return out[_RESULT_COLUMNS]
