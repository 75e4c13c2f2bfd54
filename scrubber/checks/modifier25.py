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
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from scrubber.checks.context import CheckContext
from scrubber.checks.frequency import YamlDoc, check_keys, expand_codes, isin_text, read_rules_yaml
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


def _add_keys(both: pd.DataFrame) -> pd.DataFrame:
    """Integer keys for the joins: ``pp`` = (patient, provider), ``key`` = (patient, provider, day).
    Joining on one int64 instead of three text columns is what keeps a million lines fast."""
    pp = both.groupby(["patient_id", "provider"], sort=False, dropna=False).ngroup().to_numpy(dtype="int64")
    both["pp"] = pp
    both["key"] = pp * _DAY_SPAN + (both["day"].to_numpy() - _DAY_ZERO)
    return both


#: days are offset from 1900-01-01 and fit in 200,000 (to the year 2447) inside the combined key
_DAY_ZERO = int(np.datetime64("1900-01-01", "D").astype("int64"))
_DAY_SPAN = 200_000


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


def _one_per_line(pairs: pd.DataFrame, rule_id: str, reason: pd.Series | str) -> pd.DataFrame:
    """One flag per E/M line: the related procedure is the first batch line (else the first history line);
    the detail describes it and says how many other procedures triggered the same rule."""
    if pairs.empty:
        return _empty()
    pairs = pairs.assign(_reason=reason, _rank=(pairs["p_source"] != "batch").astype("int8"))
    pairs = pairs.sort_values(["e_uid", "_rank", "p_date", "p_uid"], kind="stable")
    others = pairs.groupby("e_uid", sort=True)["p_uid"].size() - 1
    first = pairs.drop_duplicates("e_uid").set_index("e_uid").sort_index()
    more = others.reindex(first.index).to_numpy()
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


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in CHECK_RESULT_COLUMNS})


_E_COLS = ["uid", "pp", "key", "date", "day"]
_P_COLS = ["uid", "pp", "key", "date", "day", "hcpcs", "global_days", "claim_id", "line_number", "run_id", "source"]


def _pairs(left: pd.DataFrame, right: pd.DataFrame, *, right_shift_days: int = 0) -> pd.DataFrame:
    """Same patient + provider, right line's day = left day + shift (exact join on the int key)."""
    e = left[_E_COLS].add_prefix("e_")
    p = right[_P_COLS].add_prefix("p_")
    return e.merge(p.assign(_k=p["p_key"] - right_shift_days), left_on="e_key", right_on="_k", how="inner")


def _postop(ems: pd.DataFrame, procs: pd.DataFrame, days: int, gd: str) -> pd.DataFrame:
    """E/M lines inside DOS+1..DOS+days of the latest earlier procedure with global ``gd`` (merge_asof)."""
    p = procs[procs["global_days"] == gd]
    if p.empty or ems.empty:
        return pd.DataFrame()
    left = ems[_E_COLS].add_prefix("e_").sort_values("e_day", kind="stable")
    right = p[_P_COLS].add_prefix("p_").sort_values("p_day", kind="stable")
    m = pd.merge_asof(left, right, left_on="e_day", right_on="p_day", left_by="e_pp", right_by="p_pp",
                      direction="backward", allow_exact_matches=False)
    m = m[m["p_day"].notna()]
    return m[(m["e_day"] - m["p_day"]) <= days]


# --- the check ------------------------------------------------------------------------------------------

def check(ctx: CheckContext) -> pd.DataFrame:
    """EM-NO25, EM-NO57, EM-IN-POSTOP, EM-25-NOPROC, MOD25-NON-EM for the batch (procedures: batch + history)."""
    if ctx.lines.empty:
        return _empty()
    em = em_codes_of(ctx)
    key = ctx.settings.provider_key
    batch = _prepare(ctx.lines, "batch", key)
    history = ctx.history
    if history is not None and not history.empty:
        hist = _prepare(history, "history", key)
        hist["global_days"] = _history_global_days(hist, getattr(ctx, "pprrvu", None))
        hist = hist[isin_text(hist["patient_id"], batch["patient_id"])]
    else:
        hist = batch.iloc[0:0]
    both = _add_keys(pd.concat([batch, hist], ignore_index=True))
    batch = both.iloc[: len(batch)]
    parts: list[pd.DataFrame] = []

    is_em = batch["hcpcs"].isin(em)
    mod25 = has_modifier(batch["modifiers"], "25")
    mod57 = has_modifier(batch["modifiers"], "57")

    # MOD25-NON-EM: 25 only means something on an E/M
    bad25 = batch[mod25 & ~is_em & ~batch["hcpcs"].isin(em.modifier25_also_allowed)]
    if not bad25.empty:
        parts.append(pd.DataFrame({
            "line_uid": bad25["uid"].to_numpy(dtype="int64"), "rule_id": "MOD25-NON-EM",
            "related_line_uid": pd.array([pd.NA] * len(bad25), dtype="Int64"),
            "detail": (bad25["hcpcs"] + " is not in the E/M code list, rules/em_codes.yaml").to_numpy(),
            "amount_basis": None}))

    # EM-25-NOPROC: a 25 needs another service the same day by the same provider (batch or history)
    em25 = batch[is_em & mod25]
    if not em25.empty:
        other = both[(~both["hcpcs"].isin(em) | both["hcpcs"].isin(em.supports_25))
                     & ~both["hcpcs"].isin(em.visit_addons)]
        # keys with a service other than the E/M line itself: any non-self line, so drop the E/M's own row
        other = other[other["key"].isin(em25["key"].unique())]
        m = _pairs(em25, other)
        m = m[~((m["p_source"] == "batch") & (m["p_uid"] == m["e_uid"]))]
        lonely = em25[~em25["uid"].isin(m["e_uid"])]
        if not lonely.empty:
            parts.append(pd.DataFrame({
                "line_uid": lonely["uid"].to_numpy(dtype="int64"), "rule_id": "EM-25-NOPROC",
                "related_line_uid": pd.array([pd.NA] * len(lonely), dtype="Int64"),
                "detail": (f"{key.replace('_npi', ' NPI').replace('_', ' ')} " + lonely["provider"]).to_numpy(),
                "amount_basis": None}))

    # global-surgery rules: E/M lines subject to them, against procedures from batch + history
    surg_em = batch[is_em & batch["hcpcs"].isin(em.global_surgery)]
    procs = both[both["global_days"].isin(("000", "010", "090"))]
    if surg_em.empty or procs.empty:
        return _finish(parts)

    # EM-NO25: same day as a 000/010 procedure without 25
    no25 = surg_em[~mod25.loc[surg_em.index]]
    m = _pairs(no25, procs[procs["global_days"].isin(GLOBAL_SAME_DAY)])
    parts.append(_one_per_line(m, "EM-NO25", "E/M without modifier 25 on the day of"))

    # EM-NO57: day of (no 57 and no 25) or day before (no 57) a 090 procedure
    major = procs[procs["global_days"] == "090"]
    no57 = surg_em[~mod57.loc[surg_em.index]]
    same = _pairs(no57[~mod25.loc[no57.index]], major)
    same = same.assign(_why="E/M without modifier 57 (decision for surgery) on the day of")
    before = _pairs(no57, major, right_shift_days=1)
    before = before.assign(_why="E/M without modifier 57 (decision for surgery) the day before")
    m = pd.concat([same, before], ignore_index=True)
    parts.append(_one_per_line(m, "EM-NO57", m["_why"] if not m.empty else ""))

    # EM-IN-POSTOP: inside the post-op window of a 010/090 procedure without 24/25/57
    open_em = surg_em[~has_modifier(surg_em["modifiers"], "24", "25", "57")]
    window_procs = procs[~has_modifier(procs["modifiers"], "54")]
    hits = [_postop(open_em, window_procs, days, gd) for gd, days in POSTOP_DAYS.items()]
    hits = [h for h in hits if not h.empty]
    if hits:
        m = pd.concat(hits, ignore_index=True)
        reason = ("E/M without modifier 24 on day " + (m["e_day"] - m["p_day"]).astype("int64").astype(str)
                  + " of the post-operative period of")
        parts.append(_one_per_line(m, "EM-IN-POSTOP", reason))
    return _finish(parts)


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
