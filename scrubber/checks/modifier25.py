"""Modifier 25 / 57 / 24 and the global surgery package (billing-domain 6).

An E/M by the same provider (settings.provider_key) is part of a procedure's global package unless a
modifier says otherwise:

- EM-NO25      same day as a 000/010 procedure, no 25                      -> deny (CO-97/236)
- EM-NO57      day of or day before a 090 procedure, no 57 (25 counts on the day) -> review
- EM-IN-POSTOP DOS+1..DOS+10 (010) / DOS+1..DOS+90 (090) after a procedure, no 24/25/57 -> review
- EM-25-NOPROC 25 on an E/M with no other same-day service by the same provider -> review
- MOD25-NON-EM 25 on a code that is not an E/M                              -> deny

Procedures come from the batch and from ctx.history (a post-op window reaches back 90 days; a 090
procedure billed tomorrow makes today's visit "the day before"). One flag per E/M line per rule; the
related line is the procedure (a batch line when there is one, else the history line: related_source
"history" + related_run_id), the detail describes it and counts any others. Same patient + provider + day
joins run on one int64 key. Procedures billed with 54 (surgical care only) open no post-op window.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from scrubber.checks.context import CheckContext
from scrubber.checks.engine import (
    NAT_DAY,
    cached,
    codes_with_null,
    day_numbers,
    factorized,
    history_codes,
    line_modifiers,
)
from scrubber.checks.frequency import YamlDoc, check_keys, expand_codes, read_rules_yaml
from scrubber.errors import RulesError
from scrubber.schemas import CHECK_RESULT_COLUMNS

FAMILY = "modifier25"

GLOBAL_SAME_DAY = ("000", "010")
POSTOP_DAYS: dict[str, int] = {"010": 10, "090": 90}
_POS_RE = re.compile(r"^\d{2}$")


# --- the E/M code list (rules/em_codes.yaml) ------------------------------------------------------------

class EmCodes(frozenset):
    """The E/M codes (a frozenset of HCPCS, so it works wherever a set of codes is expected) plus the
    per-group settings of rules/em_codes.yaml that the modifier25 and place_of_service checks use."""

    groups: dict[str, frozenset[str]]
    global_surgery: frozenset[str]      # E/M codes subject to the global-surgery rules
    supports_25: frozenset[str]         # E/M codes that are themselves an "other service" for a 25
    modifier25_also_allowed: frozenset[str]
    visit_addons: frozenset[str]
    settings: pd.DataFrame              # POS-EM-SETTING, long form: group, hcpcs, kind (expected |
                                        # not_expected), pos

    def __new__(cls, groups: dict[str, frozenset[str]], *, global_surgery: frozenset[str] = frozenset(),
                supports_25: frozenset[str] = frozenset(), modifier25_also_allowed: frozenset[str] = frozenset(),
                visit_addons: frozenset[str] = frozenset(), settings: pd.DataFrame | None = None) -> EmCodes:
        obj = super().__new__(cls, frozenset().union(*groups.values()) if groups else frozenset())
        obj.groups = groups
        obj.global_surgery = global_surgery
        obj.supports_25 = supports_25
        obj.modifier25_also_allowed = modifier25_also_allowed
        obj.visit_addons = visit_addons
        obj.settings = settings if settings is not None else _empty_settings()
        return obj

    def __reduce__(self):  # keep the extra attributes when pickled (Airflow XCom, multiprocessing)
        return (_rebuild_em_codes, (self.groups, self.global_surgery, self.supports_25,
                                    self.modifier25_also_allowed, self.visit_addons, self.settings))


def _rebuild_em_codes(groups, global_surgery, supports_25, also, addons, settings) -> EmCodes:
    return EmCodes(groups, global_surgery=global_surgery, supports_25=supports_25, modifier25_also_allowed=also,
                   visit_addons=addons, settings=settings)


def _empty_settings() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in ("group", "hcpcs", "kind", "pos")})


def _pos_list(doc: YamlDoc, key: tuple, value: object, label: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and _POS_RE.match(v) for v in value):
        raise doc.error(key, f"must be a list of quoted 2-digit POS codes like \"21\", got {value!r}", label)
    return tuple(value)


def load_em_codes(path: str | Path) -> EmCodes:
    """Read and validate rules/em_codes.yaml; RulesError naming file, key and line on any problem."""
    doc = read_rules_yaml(path)
    data = doc.data if doc.data is not None else {}
    check_keys(doc, (), data, ("groups", "modifier25_also_allowed", "visit_addons"), ("groups",))
    if not isinstance(data["groups"], dict) or not data["groups"]:
        raise doc.error(("groups",), "must map group names to their codes")
    groups: dict[str, frozenset[str]] = {}
    global_surgery: set[str] = set()
    supports_25: set[str] = set()
    rows: list[dict] = []
    owner: dict[str, str] = {}
    for name, entry in data["groups"].items():
        key = ("groups", str(name))
        label = f"group {name}"
        check_keys(doc, key, entry, ("codes", "global_surgery", "supports_25", "pos_expected", "pos_not_expected"),
                   ("codes",), label)
        codes = expand_codes(doc, (*key, "codes"), entry["codes"], label=label)
        for code in codes:
            if code in owner:
                raise doc.error((*key, "codes"), f"{code} is already in group {owner[code]}", label)
            owner[code] = str(name)
        for flag in ("global_surgery", "supports_25"):
            if flag in entry and not isinstance(entry[flag], bool):
                raise doc.error((*key, flag), f"expected true or false, got {entry[flag]!r}", label)
        expected = _pos_list(doc, (*key, "pos_expected"), entry.get("pos_expected"), label)
        not_expected = _pos_list(doc, (*key, "pos_not_expected"), entry.get("pos_not_expected"), label)
        if expected and not_expected:
            raise doc.error(key, "give pos_expected or pos_not_expected, not both", label)
        groups[str(name)] = frozenset(codes)
        if entry.get("global_surgery", True):
            global_surgery.update(codes)
        if entry.get("supports_25", False):
            supports_25.update(codes)
        for kind, pos_codes in (("expected", expected), ("not_expected", not_expected)):
            rows.extend({"group": str(name), "hcpcs": c, "kind": kind, "pos": p} for c in codes for p in pos_codes)
    also = expand_codes(doc, ("modifier25_also_allowed",), data.get("modifier25_also_allowed"), allow_empty=True)
    addons = expand_codes(doc, ("visit_addons",), data.get("visit_addons"), allow_empty=True)
    settings = pd.DataFrame(rows) if rows else _empty_settings()
    return EmCodes(groups, global_surgery=frozenset(global_surgery), supports_25=frozenset(supports_25),
                   modifier25_also_allowed=frozenset(also), visit_addons=frozenset(addons), settings=settings)


@lru_cache(maxsize=8)
def _em_codes_cached(path: str, mtime_ns: int) -> EmCodes:
    return load_em_codes(path)


def em_codes_of(ctx: CheckContext) -> EmCodes:
    """The E/M list with its group settings.

    RuleBook.em_codes is an :class:`EmCodes` when the rule book reads rules/em_codes.yaml with
    :func:`load_em_codes`. If it holds a plain set, the group settings are read once (cached by file
    modification time) from the rule book's rules_dir; without one, the plain set is used with defaults
    (every code subject to the global-surgery rules, no POS settings).
    """
    em = getattr(ctx.rules, "em_codes", None)
    if isinstance(em, EmCodes):
        return em
    if em is None:
        raise RulesError("the rule book has no E/M code list (rules/em_codes.yaml)")
    rules_dir = getattr(ctx.rules, "rules_dir", None)
    if rules_dir is not None and (Path(rules_dir) / "em_codes.yaml").is_file():
        path = Path(rules_dir) / "em_codes.yaml"
        full = _em_codes_cached(str(path), path.stat().st_mtime_ns)
        if set(full) == {str(c) for c in em}:
            return full
    codes = frozenset(str(c) for c in em)
    return EmCodes({"em": codes}, global_surgery=codes)


# --- helpers --------------------------------------------------------------------------------------------

def has_modifier(modifiers: pd.Series, *codes: str) -> pd.Series:
    """True where the canonical "25,59" modifier string carries any of ``codes``."""
    pattern = r"(?:^|,)(?:" + "|".join(codes) + r")(?:,|$)"
    return modifiers.fillna("").astype(str).str.contains(pattern, regex=True)


def provider_series(frame: pd.DataFrame, provider_key: str) -> pd.Series:
    """Same-provider key per line; a missing billing NPI falls back to the rendering NPI (never NaN)."""
    rendering = frame.get("rendering_npi", pd.Series("", index=frame.index)).fillna("").astype(str)
    if provider_key == "rendering_npi" or provider_key not in frame.columns:
        return rendering
    chosen = frame[provider_key].astype("string")
    return chosen.where(chosen.notna() & (chosen.str.strip() != ""), rendering).astype(str)


#: the line columns :func:`_prepare` reads (besides the provider key)
_PREPARED_FROM = ("line_uid", "patient_id", "rendering_npi", "service_date", "hcpcs", "modifiers", "global_days",
                  "claim_id", "line_number", "run_id")


def _prepare(frame: pd.DataFrame, source: str, provider_key: str) -> pd.DataFrame:
    """Batch or history lines reduced to what the global-surgery checks need (no copies of text columns
    beyond what the merges use)."""
    idx = frame.index
    dates = pd.to_datetime(frame["service_date"])
    return pd.DataFrame({
        "uid": pd.to_numeric(frame.get("line_uid", pd.Series(np.arange(len(frame)), index=idx)),
                             errors="coerce").astype("Int64"),
        "patient_id": frame["patient_id"],
        "provider": provider_series(frame, provider_key),
        "date": dates.astype("datetime64[ns]"),
        "day": dates.to_numpy(dtype="datetime64[D]").astype("int64"),
        "hcpcs": frame["hcpcs"].astype("str").str.upper(),
        "modifiers": frame.get("modifiers", pd.Series("", index=idx)).fillna(""),
        "global_days": frame.get("global_days", pd.Series(None, index=idx, dtype=object)),
        "claim_id": frame.get("claim_id", pd.Series(None, index=idx, dtype=object)),
        "line_number": frame.get("line_number", pd.Series(None, index=idx, dtype=object)),
        "run_id": frame.get("run_id", pd.Series(None, index=idx, dtype=object)),
        "source": source,
    }).reset_index(drop=True)


def _history_global_days(history: pd.DataFrame, pprrvu: pd.DataFrame | None) -> pd.Series:
    """Global days of history lines: stored with the line, else looked up by code in the loaded PPRRVU."""
    gd = history["global_days"]
    missing = gd.isna()
    if not missing.any() or pprrvu is None or pprrvu.empty or "global_days" not in pprrvu.columns:
        return gd
    ref = pprrvu
    if "modifier" in ref.columns:
        ref = ref[ref["modifier"].fillna("") == ""]
    if "release" in ref.columns:
        ref = ref.sort_values("release")
    lookup = ref.drop_duplicates("hcpcs", keep="last").set_index("hcpcs")["global_days"]
    return gd.where(~missing, history["hcpcs"].map(lookup))


def _describe(frame: pd.DataFrame, prefix: str) -> pd.Series:
    """'20553 (global 000) on 2025-03-10, claim C1 line 2' (history lines name their earlier run)."""
    p = prefix
    where = np.where(frame[f"{p}source"] == "history",
                     ", earlier run " + frame[f"{p}run_id"].astype(str) + " claim " + frame[f"{p}claim_id"].astype(str)
                     + " line " + frame[f"{p}line_number"].astype(str),
                     ", claim " + frame[f"{p}claim_id"].astype(str) + " line " + frame[f"{p}line_number"].astype(str))
    return (frame[f"{p}hcpcs"] + " (global " + frame[f"{p}global_days"].astype(str) + ") on "
            + frame[f"{p}date"].dt.strftime("%Y-%m-%d") + pd.Series(where, index=frame.index))


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in CHECK_RESULT_COLUMNS})


# --- batch + history as arrays ---------------------------------------------------------------------------

#: global surgery periods the rules look at, as small integer classes (0 = none of them)
_GLOBAL_CLASS: dict[str, int] = {"000": 1, "010": 2, "090": 3}


def _modifier_pattern(*codes: str) -> re.Pattern:
    """The :func:`has_modifier` test as one compiled expression (run on distinct modifier strings)."""
    return re.compile(r"(?:^|,)(?:" + "|".join(codes) + r")(?:,|$)")


#: bits of _Rows.code_bits (E/M list facts of the line's code)
IS_EM, SUPPORTS_25, VISIT_ADDON, ALSO_25, GLOBAL_SURGERY = 1, 2, 4, 8, 16
#: bits of _Rows.mod_bits (has_modifier facts of the line's modifiers)
MOD25, MOD57, MOD54, MOD24_25_57 = 1, 2, 4, 8
_MOD_PATTERNS: dict[int, re.Pattern] = {
    MOD25: _modifier_pattern("25"), MOD57: _modifier_pattern("57"), MOD54: _modifier_pattern("54"),
    MOD24_25_57: _modifier_pattern("24", "25", "57"),
}


@dataclass
class _Rows:
    """The batch lines, then the history lines of batch patients, as flat arrays (row i of ``both``).

    ``pp`` is a (patient, provider) id shared by batch and history; a history line whose patient or
    provider no batch line has gets -1 (it can never join a batch line). Code facts (E/M list
    membership, modifiers, global days) are computed per distinct value and expanded as bit sets.
    """

    n_batch: int
    pp: np.ndarray
    day: np.ndarray                 # day number, NAT_DAY when missing
    when: np.ndarray                # service date in ns for ordering (missing sorts last)
    uid: np.ndarray                 # line_uid (0 where missing)
    uid_na: np.ndarray
    code_bits: np.ndarray           # IS_EM | SUPPORTS_25 | ...
    mod_bits: np.ndarray            # MOD25 | MOD57 | ...
    gclass: np.ndarray              # _GLOBAL_CLASS of the line's global days (0 = other / missing)
    hcpcs_b: tuple[np.ndarray, np.ndarray]      # batch: code per line, upper-case text per code
    provider_b: tuple[np.ndarray, np.ndarray]   # batch: provider id per line, text per id
    hist: pd.DataFrame | None       # prepared history rows (``_prepare`` + global days), row i - n_batch
    is_hist: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.is_hist = np.arange(len(self.pp)) >= self.n_batch

    def batch_text(self, which: tuple[np.ndarray, np.ndarray], rows: np.ndarray) -> np.ndarray:
        codes, texts = which
        return texts[codes[rows]]


def _has(bits: np.ndarray, bit: int) -> np.ndarray:
    return (bits & bit) != 0


def _code_bits(upper: list, em: EmCodes) -> np.ndarray:
    """E/M-list facts per distinct upper-case code as bits (plus a trailing 0 for a missing code)."""
    sets = ((IS_EM, em), (SUPPORTS_25, em.supports_25), (VISIT_ADDON, em.visit_addons),
            (ALSO_25, em.modifier25_also_allowed), (GLOBAL_SURGERY, em.global_surgery))
    return np.array([sum(bit for bit, codes in sets if c in codes) for c in upper] + [0], dtype=np.uint8)


def _modifier_bits(texts: list[str]) -> np.ndarray:
    """:func:`has_modifier` results per distinct modifier string as bits (plus a trailing 0: no modifiers)."""
    return np.array([sum(bit for bit, pat in _MOD_PATTERNS.items() if pat.search(t)) for t in texts] + [0],
                    dtype=np.uint8)


def _global_class(values: list) -> np.ndarray:
    return np.array([_GLOBAL_CLASS.get(v, 0) if isinstance(v, str) else 0 for v in values] + [0], dtype=np.int8)


def _batch_providers(ctx: CheckContext, key: str) -> tuple[np.ndarray, dict[str, int]]:
    """Provider id per batch line (``provider_series`` semantics, worked out per distinct NPI) and text -> id."""
    lines = ctx.lines
    index: dict[str, int] = {}

    def text(u: object) -> str:
        return "" if u is None else str(u)

    if "rendering_npi" in lines.columns:
        r_codes, r_uniq = codes_with_null(ctx, "rendering_npi")
    else:
        r_codes, r_uniq = np.zeros(len(lines), np.int64), [None]
    r_ids = np.array([index.setdefault(text(u), len(index)) for u in r_uniq], dtype=np.int64)
    provider = r_ids[r_codes]
    if key != "rendering_npi" and key in lines.columns:
        b_codes, b_uniq = codes_with_null(ctx, key)
        usable = np.array([u is not None and str(u).strip() != "" for u in b_uniq], dtype=bool)
        b_ids = np.array([index.setdefault(str(u), len(index)) if ok else -1 for u, ok in zip(b_uniq, usable,
                                                                                             strict=True)],
                         dtype=np.int64)
        provider = np.where(usable[b_codes], b_ids[b_codes], provider)
    return provider, index


def _rows(ctx: CheckContext, em: EmCodes) -> _Rows:
    """Batch + history facts (see :class:`_Rows`)."""
    lines = ctx.lines
    key = ctx.settings.provider_key
    n = len(lines)

    # batch: cached factorisations shared with the other families
    h_codes, h_uniq = factorized(ctx, "hcpcs")
    upper = [str(u).upper() for u in h_uniq]
    code_bits = [_code_bits(upper, em)[h_codes]]
    if "modifiers" in lines.columns:
        mods = line_modifiers(ctx)
        mod_bits = [_modifier_bits(mods.texts)[mods.codes]]
    else:
        mod_bits = [np.zeros(n, np.uint8)]
    if "global_days" in lines.columns:
        g_codes, g_uniq = factorized(ctx, "global_days")
        gclass = [_global_class(list(g_uniq))[g_codes]]
    else:
        gclass = [np.zeros(n, np.int8)]
    provider, prov_index = _batch_providers(ctx, key)
    p_codes, p_uniq = codes_with_null(ctx, "patient_id")
    n_prov = max(len(prov_index), 1)
    pp = [p_codes * n_prov + provider]
    day = [cached(ctx, "days:service_date", lambda: day_numbers(lines["service_date"]))]
    when = [_when(lines["service_date"])]
    raw_uid = lines["line_uid"] if "line_uid" in lines.columns else pd.Series(np.arange(n), index=lines.index)
    uid_b = pd.array(pd.to_numeric(raw_uid, errors="coerce"), dtype="Int64")
    uid = [uid_b.to_numpy(dtype=np.int64, na_value=0)]
    uid_na = [np.asarray(uid_b.isna())]

    hist = None
    history = ctx.history
    if history is not None and not history.empty:
        h_patient = history_codes(history["patient_id"], p_uniq)
        keep = np.flatnonzero(h_patient >= 0)          # only patients of the batch can matter
        hist = _prepare(history.iloc[keep], "history", key)
        hist["global_days"] = _history_global_days(hist, getattr(ctx, "pprrvu", None))
        for col, out, facts in (("hcpcs", code_bits, lambda u: _code_bits(u, em)),
                                ("modifiers", mod_bits, _modifier_bits), ("global_days", gclass, _global_class)):
            codes, uniq = pd.factorize(hist[col], use_na_sentinel=True)
            values = list(np.asarray(uniq, dtype=object))
            if col == "modifiers":
                values = [u if isinstance(u, str) else "" for u in values]
            out.append(facts(values)[np.asarray(codes, dtype=np.int64)])
        h_provider = hist["provider"].map(prov_index).to_numpy(dtype=float, na_value=np.nan)
        found = ~np.isnan(h_provider)
        pp.append(np.where(found, h_patient[keep] * n_prov + np.nan_to_num(h_provider, nan=0).astype(np.int64), -1))
        day.append(hist["day"].to_numpy(dtype=np.int64))
        when.append(_when(hist["date"]))
        uid.append(hist["uid"].to_numpy(dtype=np.int64, na_value=0))
        uid_na.append(hist["uid"].isna().to_numpy())

    def cat(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    return _Rows(n_batch=n, pp=cat(pp), day=cat(day), when=cat(when), uid=cat(uid), uid_na=cat(uid_na),
                 code_bits=cat(code_bits), mod_bits=cat(mod_bits), gclass=cat(gclass),
                 hcpcs_b=(h_codes, np.array([*upper, np.nan], dtype=object)),
                 provider_b=(provider, np.array(list(prov_index), dtype=object)), hist=hist)


def _when(dates: pd.Series) -> np.ndarray:
    """Service dates as int64 ns for ordering; a missing date sorts last (as pandas sorts NaT)."""
    ns = pd.to_datetime(dates).to_numpy(dtype="datetime64[ns]")
    out = ns.view(np.int64).copy()
    out[np.isnat(ns)] = np.iinfo(np.int64).max
    return out


def _day_keys(rows: _Rows) -> tuple[np.ndarray, np.ndarray]:
    """One int64 per (patient, provider, day) and whether the day is known.

    Days are offset inside a span with two spare slots, so ``key + 1`` (the next day) never reaches the
    slot of missing dates or the next (patient, provider); missing dates share one slot per pair.
    """
    known = rows.day != NAT_DAY
    usable = known & (rows.pp >= 0)
    lo = int(rows.day[usable].min()) if usable.any() else 0
    hi = int(rows.day[usable].max()) if usable.any() else 0
    span = hi - lo + 3
    pp = rows.pp
    if float(max(int(pp.max(initial=0)), 0) + 1) * span >= 2**62:  # pragma: no cover - absurd sizes
        pp = np.where(pp >= 0, pd.factorize(pp)[0], -1)
    offset = np.where(known, rows.day - lo, span - 1)
    return np.where(pp >= 0, pp * span + offset, -1), known


def _best_per_key(rows: _Rows, keys: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Among candidate procedure rows, per key: the related line the report names and the number of rows.

    The related line is a batch line before a history line, then the earliest date, then the smallest
    line_uid (missing last), then the first in batch + history order (the order the flag detail used).
    Returns (sorted distinct keys, best row per key, rows per key).
    """
    if not len(cand):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    k = keys[cand]
    order = np.lexsort((cand, rows.uid[cand], rows.uid_na[cand], rows.when[cand], rows.is_hist[cand], k))
    ks = k[order]
    start = np.flatnonzero(np.concatenate([[True], ks[1:] != ks[:-1]]))
    return ks[start], cand[order[start]], np.diff(np.append(start, len(ks)))


def _lookup(uniq: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Position of each query in the sorted unique array, -1 when absent."""
    if not len(uniq):
        return np.full(len(query), -1, np.int64)
    i = np.minimum(np.searchsorted(uniq, query), len(uniq) - 1)
    return np.where(uniq[i] == query, i, -1)


@dataclass
class _Candidates:
    """Related-procedure candidates per E/M line: (E/M row, procedure row, part, rows it stands for, reason)."""

    e: list[np.ndarray] = field(default_factory=list)
    p: list[np.ndarray] = field(default_factory=list)
    part: list[np.ndarray] = field(default_factory=list)
    count: list[np.ndarray] = field(default_factory=list)
    reason: list[np.ndarray] = field(default_factory=list)

    def add(self, e: np.ndarray, p: np.ndarray, part: int, count: np.ndarray, reason: np.ndarray | str) -> None:
        self.e.append(e)
        self.p.append(p)
        self.part.append(np.full(len(e), part, np.int64))
        self.count.append(count)
        self.reason.append(np.full(len(e), reason, dtype=object) if isinstance(reason, str)
                           else np.asarray(reason, dtype=object))


def _same_day(rows: _Rows, keys: np.ndarray, e: np.ndarray, cand: np.ndarray, shift: int = 0
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """E/M rows ``e`` joined to candidate rows on the same (patient, provider) and day + ``shift``:
    (E/M rows with a match, their best candidate, the number of matches)."""
    uniq, best, count = _best_per_key(rows, keys, cand)
    hit = _lookup(uniq, keys[e] + shift)
    ok = hit >= 0
    return e[ok], best[hit[ok]], count[hit[ok]]


def _one_per_line(ctx: CheckContext, rows: _Rows, cands: _Candidates, rule_id: str) -> pd.DataFrame:
    """One flag per E/M line: the related procedure is the first batch line (else the first history line);
    the detail describes it and says how many other procedures triggered the same rule."""
    if not cands.e or not sum(len(x) for x in cands.e):
        return _empty()
    e, p, part = np.concatenate(cands.e), np.concatenate(cands.p), np.concatenate(cands.part)
    count, reason = np.concatenate(cands.count), np.concatenate(cands.reason)
    order = np.lexsort((p, part, rows.uid[p], rows.uid_na[p], rows.when[p], rows.is_hist[p], rows.uid[e]))
    es = e[order]
    start = np.flatnonzero(np.concatenate([[True], es[1:] != es[:-1]]))
    chosen = order[start]
    more = np.add.reduceat(count[order], start) - 1
    first = _procedure_frame(ctx, rows, p[chosen])
    first.index = pd.Index(rows.uid[e[chosen]], name="e_uid")
    first["_reason"] = reason[chosen]
    detail = (first["_reason"].astype(str) + " " + _describe(first, "p_")).to_numpy(dtype=object)
    detail = np.where(more > 0, detail + " (and " + more.astype(str) + " more the same way)", detail)
    is_hist = first["p_source"] == "history"
    return pd.DataFrame({
        "line_uid": first.index.to_numpy(dtype="int64"),
        "rule_id": rule_id,
        "related_line_uid": pd.array(first["p_uid"].to_numpy(), dtype="Int64"),
        "detail": detail,
        "amount_basis": None,
        "related_source": first["p_source"].to_numpy(dtype=object),
        "related_run_id": first["p_run_id"].where(is_hist).to_numpy(dtype=object),
    })


def _procedure_frame(ctx: CheckContext, rows: _Rows, p: np.ndarray) -> pd.DataFrame:
    """Prepared rows (``_prepare`` columns, ``p_`` prefix) of the few procedures a flag names, in order."""
    in_batch = p < rows.n_batch
    b_rows, b_inv = np.unique(p[in_batch], return_inverse=True)
    h_rows, h_inv = np.unique(p[~in_batch] - rows.n_batch, return_inverse=True)
    key = ctx.settings.provider_key
    # only the columns _prepare reads are taken: priced lines are some 60 columns wide
    read = [c for c in ctx.lines.columns if c in _PREPARED_FROM or c == key]
    parts = [_prepare(ctx.lines[read].iloc[b_rows], "batch", key)]
    if rows.hist is not None:
        parts.append(rows.hist.iloc[h_rows])
    both = pd.concat(parts, ignore_index=True)
    at = np.empty(len(p), np.int64)
    at[in_batch] = b_inv.reshape(-1)
    at[~in_batch] = len(b_rows) + h_inv.reshape(-1)
    return both.iloc[at].reset_index(drop=True).add_prefix("p_")


# --- the check ------------------------------------------------------------------------------------------

def check(ctx: CheckContext) -> pd.DataFrame:
    """EM-NO25, EM-NO57, EM-IN-POSTOP, EM-25-NOPROC, MOD25-NON-EM for the batch (procedures: batch + history)."""
    if ctx.lines.empty:
        return _empty()
    em = em_codes_of(ctx)
    key = ctx.settings.provider_key
    rows = _rows(ctx, em)
    n = rows.n_batch
    uid_b = rows.uid[:n]
    is_em = _has(rows.code_bits, IS_EM)
    mod25 = _has(rows.mod_bits, MOD25)
    parts: list[pd.DataFrame] = []

    # MOD25-NON-EM: 25 only means something on an E/M
    bad25 = np.flatnonzero(((rows.code_bits[:n] & (IS_EM | ALSO_25)) == 0) & mod25[:n])
    if len(bad25):
        parts.append(pd.DataFrame({
            "line_uid": uid_b[bad25], "rule_id": "MOD25-NON-EM",
            "related_line_uid": pd.array([pd.NA] * len(bad25), dtype="Int64"),
            "detail": rows.batch_text(rows.hcpcs_b, bad25) + " is not in the E/M code list, rules/em_codes.yaml",
            "amount_basis": None}))

    keys, known = _day_keys(rows)
    matchable = rows.pp >= 0
    # EM-25-NOPROC: a 25 needs another service the same day by the same provider (batch or history)
    em25 = np.flatnonzero(is_em[:n] & mod25[:n])
    if len(em25):
        k_codes, k_uniq = pd.factorize(keys[em25])
        other = matchable & (~is_em | _has(rows.code_bits, SUPPORTS_25)) & ~_has(rows.code_bits, VISIT_ADDON)
        at = pd.Index(k_uniq).get_indexer(keys[other])
        per_key = np.bincount(at[at >= 0], minlength=len(k_uniq))
        # the E/M line itself is no "other" service
        lonely = em25[per_key[k_codes] - other[em25] == 0]
        if len(lonely):
            who = f"{key.replace('_npi', ' NPI').replace('_', ' ')} "
            parts.append(pd.DataFrame({
                "line_uid": uid_b[lonely], "rule_id": "EM-25-NOPROC",
                "related_line_uid": pd.array([pd.NA] * len(lonely), dtype="Int64"),
                "detail": who + rows.batch_text(rows.provider_b, lonely),
                "amount_basis": None}))

    # global-surgery rules: E/M lines subject to them, against procedures from batch + history
    surg_em = ~rows.is_hist & is_em & _has(rows.code_bits, GLOBAL_SURGERY)
    procs = matchable & (rows.gclass > 0)
    if not surg_em.any() or not procs.any():
        return _finish(parts)

    # EM-NO25: same day as a 000/010 procedure without 25
    cands = _Candidates()
    e, p, cnt = _same_day(rows, keys, np.flatnonzero(surg_em & ~mod25),
                          np.flatnonzero(procs & ((rows.gclass == 1) | (rows.gclass == 2))))
    cands.add(e, p, 0, cnt, "E/M without modifier 25 on the day of")
    parts.append(_one_per_line(ctx, rows, cands, "EM-NO25"))

    # EM-NO57: day of (no 57 and no 25) or day before (no 57) a 090 procedure
    major = np.flatnonzero(procs & (rows.gclass == 3))
    no57 = surg_em & ~_has(rows.mod_bits, MOD57)
    cands = _Candidates()
    e, p, cnt = _same_day(rows, keys, np.flatnonzero(no57 & ~mod25), major)
    cands.add(e, p, 0, cnt, "E/M without modifier 57 (decision for surgery) on the day of")
    e, p, cnt = _same_day(rows, keys, np.flatnonzero(no57 & known), major[known[major]], shift=1)
    cands.add(e, p, 1, cnt, "E/M without modifier 57 (decision for surgery) the day before")
    parts.append(_one_per_line(ctx, rows, cands, "EM-NO57"))

    # EM-IN-POSTOP: inside the post-op window of a 010/090 procedure without 24/25/57
    open_all = np.flatnonzero(surg_em & ~_has(rows.mod_bits, MOD24_25_57))
    open_em = open_all[known[open_all]]
    window = procs & ~_has(rows.mod_bits, MOD54) & known
    cands = _Candidates()
    for part, (gd, days) in enumerate(POSTOP_DAYS.items()):
        e, p = _latest_before(rows, keys, open_em, np.flatnonzero(window & (rows.gclass == _GLOBAL_CLASS[gd])))
        gap = rows.day[e] - rows.day[p]
        inside = gap <= days
        e, p, gap = e[inside], p[inside], gap[inside]
        reason = [f"E/M without modifier 24 on day {g} of the post-operative period of" for g in gap.tolist()]
        cands.add(e, p, part, np.ones(len(e), np.int64), np.array(reason, dtype=object))
    parts.append(_one_per_line(ctx, rows, cands, "EM-IN-POSTOP"))
    return _finish(parts)


def _latest_before(rows: _Rows, keys: np.ndarray, e: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each E/M row, the latest candidate of the same (patient, provider) on an earlier day (the last
    one in batch + history order among several that day): (E/M rows with one, the candidate rows)."""
    if not len(e) or not len(cand):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.lexsort((cand, keys[cand]))
    ks, cs = keys[cand][order], cand[order]
    i = np.searchsorted(ks, keys[e], side="left") - 1
    ok = i >= 0
    ok[ok] = rows.pp[cs[i[ok]]] == rows.pp[e[ok]]
    return e[ok], cs[i[ok]]


def _finish(parts: list[pd.DataFrame]) -> pd.DataFrame:
    parts = [p for p in parts if not p.empty]
    if not parts:
        return _empty()
    out = pd.concat(parts, ignore_index=True)
    out["line_uid"] = out["line_uid"].astype("int64")
    out["related_line_uid"] = out["related_line_uid"].astype("Int64")
    out["related_source"] = out.get("related_source", pd.Series(None, index=out.index)).fillna("batch")
    out["related_run_id"] = out.get("related_run_id", pd.Series(None, index=out.index)).astype(object)
    return out[[*CHECK_RESULT_COLUMNS, "related_source", "related_run_id"]].reset_index(drop=True)
