"""Place of service (billing-domain 7): valid codes by date, facility vs non-facility, setting mismatches.

rules/pos.yaml is the POS table (:func:`load_pos_table`). :func:`facility_setting` is the single place
that decides whether a line is paid at the facility rate; pricing calls it too, so the checks and the
expected amounts never disagree.

- POS-INVALID           POS not in the table, or not in force on the date of service      deny
- POS-NF-NA             non-facility POS on a code with NON-FAC NA                         review
- POS-FAC-NA            facility POS on a code with FACILITY NA (TC / incident-to)         deny
- POS-INCIDENT-TO-HOSP  PC/TC indicator 5 code in a hospital POS (19/21/22/23)             deny
- POS-EM-SETTING        E/M family vs POS (rules/em_codes.yaml pos_expected / pos_not_expected) review
- POS-FACILITY-RATE     facility POS where the non-facility amount is higher: the $ difference  info
- POS-TELEHEALTH-HOME   POS 10 outside the configured payable periods (off unless configured) review
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from scrubber.checks.context import CheckContext
from scrubber.checks.frequency import YamlDoc, check_keys, parse_date, read_rules_yaml
from scrubber.checks.modifier25 import em_codes_of, has_modifier
from scrubber.schemas import CHECK_RESULT_COLUMNS

FAMILY = "place_of_service"

RATES: tuple[str, ...] = ("F", "NF", "none")
POS_TABLE_COLUMNS: list[str] = ["pos", "name", "rate", "effective_from", "effective_to", "hospital", "source_line"]
_POS_RE = re.compile(r"^\d{2}$")
_ENTRY_KEYS = ("pos", "name", "rate", "effective_from", "effective_to", "hospital", "note")


# --- the table ------------------------------------------------------------------------------------------

def _periods(doc: YamlDoc, key: tuple, value: object) -> list[tuple[pd.Timestamp, pd.Timestamp]] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise doc.error(key, "must be null or a list of {effective_from, effective_to} periods")
    out = []
    for i, entry in enumerate(value):
        k = (*key, i)
        check_keys(doc, k, entry, ("effective_from", "effective_to"), ("effective_from",))
        start = parse_date(doc, (*k, "effective_from"), entry["effective_from"])
        end = parse_date(doc, (*k, "effective_to"), entry.get("effective_to"), optional=True)
        if end is not None and end <= start:
            raise doc.error((*k, "effective_to"), "effective_to (exclusive) must be after effective_from")
        out.append((pd.Timestamp(start), pd.Timestamp(end) if end else pd.NaT))
    return out


def load_pos_table(path: str | Path) -> pd.DataFrame:
    """Read and validate rules/pos.yaml into one row per (POS, period).

    Columns: pos (str "11"), name, rate (F | NF | none), effective_from (datetime64), effective_to
    (datetime64, exclusive, NaT = open), hospital (bool), source_line (line in the file).
    ``attrs``: price_undesignated_as ("F"/"NF"), telehealth_home_payable (list of (from, to) or None), source.
    RulesError naming file, key and line on any problem.
    """
    doc = read_rules_yaml(path)
    data = doc.data if doc.data is not None else {}
    check_keys(doc, (), data, ("codes", "price_undesignated_as", "telehealth_home_payable"), ("codes",))
    undesignated = data.get("price_undesignated_as", "NF")
    if undesignated not in ("F", "NF"):
        raise doc.error(("price_undesignated_as",), f"must be F or NF, got {undesignated!r}")
    telehealth = _periods(doc, ("telehealth_home_payable",), data.get("telehealth_home_payable"))
    entries = data["codes"]
    if not isinstance(entries, list) or not entries:
        raise doc.error(("codes",), "must be a non-empty list of POS entries")
    rows = []
    for i, entry in enumerate(entries):
        key = ("codes", i)
        label = f"POS {entry.get('pos')!r}" if isinstance(entry, dict) and entry.get("pos") is not None else None
        check_keys(doc, key, entry, _ENTRY_KEYS, ("pos", "name", "rate", "effective_from"), label)
        pos = entry["pos"]
        if not isinstance(pos, str) or not _POS_RE.match(pos):
            raise doc.error((*key, "pos"), f"pos must be a quoted 2-digit code like \"02\", got {pos!r}", label)
        if not isinstance(entry["name"], str) or not entry["name"].strip():
            raise doc.error((*key, "name"), "name must be text", label)
        if entry["rate"] not in RATES:
            raise doc.error((*key, "rate"), f"rate must be F, NF or none, got {entry['rate']!r}", label)
        start = parse_date(doc, (*key, "effective_from"), entry["effective_from"], label=label)
        end = parse_date(doc, (*key, "effective_to"), entry.get("effective_to"), label=label, optional=True)
        if end is not None and end <= start:
            raise doc.error((*key, "effective_to"), "effective_to (exclusive) must be after effective_from", label)
        hospital = entry.get("hospital", False)
        if not isinstance(hospital, bool):
            raise doc.error((*key, "hospital"), f"hospital must be true or false, got {hospital!r}", label)
        if entry.get("note") is not None and not isinstance(entry["note"], str):
            raise doc.error((*key, "note"), "note must be text", label)
        rows.append({"pos": pos, "name": entry["name"].strip(), "rate": entry["rate"],
                     "effective_from": pd.Timestamp(start), "effective_to": pd.Timestamp(end) if end else pd.NaT,
                     "hospital": hospital, "source_line": doc.line(key) or 0, "_i": i})
    table = pd.DataFrame(rows).sort_values(["pos", "effective_from"], kind="stable").reset_index(drop=True)
    # periods of one code must not overlap: each period has to end before the next one starts
    nxt_from = table.groupby("pos")["effective_from"].shift(-1)
    overlap = nxt_from.notna() & (table["effective_to"].isna() | (table["effective_to"] > nxt_from))
    if overlap.any():
        bad = table[overlap].iloc[0]
        raise doc.error(("codes", int(bad["_i"]), "effective_to"),
                        f"POS {bad['pos']} has overlapping periods (this one runs into the entry starting "
                        f"{nxt_from[overlap].iloc[0].date()})")
    table = table.drop(columns="_i")
    table["effective_from"] = table["effective_from"].astype("datetime64[ns]")
    table["effective_to"] = table["effective_to"].astype("datetime64[ns]")
    table = table[POS_TABLE_COLUMNS]
    table.attrs = {"price_undesignated_as": undesignated, "telehealth_home_payable": telehealth,
                   "source": doc.file}
    return table


def pos_lookup(pos: pd.Series, dates: pd.Series, pos_table: pd.DataFrame) -> pd.DataFrame:
    """Per line (same index as ``pos``): known (code in the table at all), effective (in force on the date),
    rate, name, hospital, facility (True = facility rate). Vectorised: one merge on the code, run on the
    distinct (code, date) pairs only (a million lines hold a few thousand) and spread back to the lines."""
    code_no, code_uniq = pd.factorize(pos.astype("string").str.strip().fillna(""))
    days = pd.to_datetime(dates).to_numpy(dtype="datetime64[ns]")
    day_no, day_uniq = pd.factorize(days.view("int64"))
    pair_no, pair_uniq = pd.factorize(code_no.astype(np.int64) * max(len(day_uniq), 1) + day_no)
    first = np.zeros(len(pair_uniq), dtype=np.int64)
    first[pair_no[::-1]] = np.arange(len(pair_no))[::-1]  # first line of each pair
    distinct = _pos_lookup_rows(np.asarray(code_uniq, dtype=object)[code_no[first]], days[first], pos_table)
    out = distinct.iloc[pair_no]
    out.index = pos.index
    return out


def _pos_lookup_rows(pos: np.ndarray, dates: np.ndarray, pos_table: pd.DataFrame) -> pd.DataFrame:
    """pos_lookup on arrays of stripped codes and datetime64[ns] dates."""
    n = len(pos)
    query = pd.DataFrame({"_i": np.arange(n), "pos": pos, "date": dates})
    m = query.merge(pos_table, on="pos", how="inner")
    known = np.zeros(n, dtype=bool)
    known[m["_i"].to_numpy()] = True
    in_force = (m["date"] >= m["effective_from"]) & (m["effective_to"].isna() | (m["date"] < m["effective_to"]))
    eff = m[in_force].drop_duplicates("_i").set_index("_i")
    out = pd.DataFrame({"known": known}, index=pd.RangeIndex(n))
    out["effective"] = out.index.isin(eff.index)
    out["rate"] = eff["rate"].reindex(out.index).astype(object)
    out["name"] = eff["name"].reindex(out.index).astype(object)
    out["hospital"] = eff["hospital"].reindex(out.index).eq(True)
    undesignated_f = pos_table.attrs.get("price_undesignated_as", "NF") == "F"
    out["facility"] = out["rate"].eq("F") | (out["rate"].eq("none") & undesignated_f)
    return out


def facility_setting(pos: pd.Series, dates: pd.Series, pos_table: pd.DataFrame) -> pd.Series:
    """True where the POS is paid at the facility rate on the date of service (rules/pos.yaml).

    Non-facility POS, `none` codes (unless price_undesignated_as: F) and invalid codes are False: an
    invalid POS is flagged POS-INVALID; pricing falls back to the non-facility rate for it.
    """
    if pos_table is None or pos_table.empty:
        return pd.Series(False, index=pos.index, name="facility")
    return pos_lookup(pos, dates, pos_table)["facility"].rename("facility")


# --- the checks -----------------------------------------------------------------------------------------

def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in CHECK_RESULT_COLUMNS})


def _flags(lines: pd.DataFrame, mask: pd.Series, rule_id: str, detail: Callable[[pd.Series], pd.Series],
           amount_basis: str | None = None) -> pd.DataFrame:
    """Result rows for ``mask``; ``detail(mask)`` builds the texts for those rows only (strings are the
    expensive part on a million lines, and few lines are flagged)."""
    mask = mask.fillna(False).astype(bool)
    if not mask.any():
        return _empty()
    sel = lines[mask]
    return pd.DataFrame({
        "line_uid": sel["line_uid"].to_numpy(dtype="int64"),
        "rule_id": rule_id,
        "related_line_uid": pd.array([pd.NA] * len(sel), dtype="Int64"),
        "detail": pd.Series(detail(mask)).to_numpy(dtype=object),
        "amount_basis": amount_basis,
    })


def _bool(lines: pd.DataFrame, column: str) -> pd.Series:
    """Reference annotations are None for codes missing from the release: treat as not set."""
    if column not in lines.columns:
        return pd.Series(False, index=lines.index)
    return lines[column].eq(True)


def _dollars(values: pd.Series) -> pd.Series:
    """'$58.55' from float dollars, exact to the cent (integer cents, no float formatting drift)."""
    cents = np.round(values.to_numpy(dtype="float64") * 100).astype("int64")
    return pd.Series(["$"] * len(values), index=values.index) + pd.Series(cents // 100, index=values.index).astype(
        str) + "." + pd.Series(cents % 100, index=values.index).astype(str).str.zfill(2)


def _pricing_modifier(modifiers: pd.Series) -> pd.Series:
    out = pd.Series("", index=modifiers.index, dtype=object)
    out[has_modifier(modifiers, "TC")] = "TC"
    out[has_modifier(modifiers, "26")] = "26"
    return out


def _rvu_totals(lines: pd.DataFrame, pprrvu: pd.DataFrame | None) -> pd.DataFrame:
    """Fallback when pricing has not run: total non-facility / facility RVUs of the line's PPRRVU row."""
    idx = lines.index
    empty = pd.DataFrame({"nf": np.nan, "f": np.nan}, index=idx)
    need = {"hcpcs", "modifier", "total_nonfacility", "total_facility", "release"}
    if pprrvu is None or pprrvu.empty or not need <= set(pprrvu.columns) or "rvu_release" not in lines.columns:
        return empty
    q = pd.DataFrame({"_i": np.arange(len(lines)), "release": lines["rvu_release"].to_numpy(dtype=object),
                      "hcpcs": lines["hcpcs"].to_numpy(dtype=object),
                      "modifier": _pricing_modifier(lines.get("modifiers", pd.Series("", index=idx))).to_numpy()})
    ref = pprrvu[["release", "hcpcs", "modifier", "total_nonfacility", "total_facility"]].copy()
    ref["modifier"] = ref["modifier"].fillna("")
    m = q.merge(ref, on=["release", "hcpcs", "modifier"], how="left").drop_duplicates("_i").set_index("_i")
    out = pd.DataFrame({"nf": pd.to_numeric(m["total_nonfacility"].astype(object), errors="coerce").to_numpy(),
                        "f": pd.to_numeric(m["total_facility"].astype(object), errors="coerce").to_numpy()})
    out.index = idx
    return out


def check(ctx: CheckContext) -> pd.DataFrame:
    """POS-INVALID, POS-NF-NA, POS-FAC-NA, POS-INCIDENT-TO-HOSP, POS-EM-SETTING, POS-FACILITY-RATE
    (and POS-TELEHEALTH-HOME when configured) for the batch."""
    lines = ctx.lines
    pos_table = getattr(ctx.rules, "pos", None)
    if lines.empty or pos_table is None:
        return _empty()
    pos = lines["place_of_service"].astype("string").str.strip().fillna("").astype(object)
    dates = pd.to_datetime(lines["service_date"])
    info = pos_lookup(pos, dates, pos_table)
    hcpcs = lines["hcpcs"].astype(str)

    def setting(m: pd.Series) -> pd.Series:
        return "POS " + pos[m] + " (" + info["name"][m].fillna("").astype(str) + ")"

    def date_txt(m: pd.Series) -> pd.Series:
        return dates[m].dt.strftime("%Y-%m-%d")

    parts: list[pd.DataFrame] = []

    # POS-INVALID: not a code at all, or not in force on the date of service
    def invalid_text(m: pd.Series) -> pd.Series:
        return pd.Series(np.where(info["known"][m], "POS " + pos[m] + " is not in force on " + date_txt(m),
                                  "POS '" + pos[m] + "' is not a valid place-of-service code"), index=pos[m].index)

    parts.append(_flags(lines, ~info["effective"], "POS-INVALID", invalid_text))

    valid = info["effective"]
    facility = info["facility"] & valid
    nonfacility = ~info["facility"] & valid

    # POS-NF-NA / POS-FAC-NA: the RVU file says the code is (almost) never done in that kind of setting
    parts.append(_flags(lines, nonfacility & _bool(lines, "nonfacility_na"), "POS-NF-NA", lambda m: (
        hcpcs[m] + " has no non-facility rate (NON-FAC NA) but is billed in " + setting(m)
        + "; Medicare pays the facility rate at best")))
    parts.append(_flags(lines, facility & _bool(lines, "facility_na"), "POS-FAC-NA", lambda m: (
        hcpcs[m] + " has no facility rate (FACILITY NA: billed by the facility) but is billed in " + setting(m))))

    # POS-INCIDENT-TO-HOSP: PC/TC 5 ("incident to") not payable to the practitioner for hospital patients
    if "pctc_indicator" in lines.columns:
        pctc5 = lines["pctc_indicator"].astype("string").str.strip().eq("5").fillna(False).astype(bool)
        parts.append(_flags(lines, valid & info["hospital"] & pctc5, "POS-INCIDENT-TO-HOSP", lambda m: (
            hcpcs[m] + " is an incident-to service (PC/TC indicator 5), not payable to the practitioner in "
            + setting(m))))

    # POS-EM-SETTING: E/M family vs setting (rules/em_codes.yaml)
    parts.append(_em_setting(ctx, lines, pos, valid, setting))

    # POS-FACILITY-RATE: surface what a facility POS costs compared with the non-facility rate
    parts.append(_facility_rate(ctx, lines, facility, setting))

    # POS-TELEHEALTH-HOME: optional dated switch for Medicare home telehealth
    periods = pos_table.attrs.get("telehealth_home_payable")
    if periods is not None:
        tele = valid & pos.eq("10") & ~payable_on(dates, periods)
        parts.append(_flags(lines, tele, "POS-TELEHEALTH-HOME", lambda m: (
            "home telehealth (POS 10) is not configured as payable by Medicare on " + date_txt(m))))

    parts = [p for p in parts if not p.empty]
    if not parts:
        return _empty()
    out = pd.concat(parts, ignore_index=True)
    out["related_line_uid"] = out["related_line_uid"].astype("Int64")
    return out[CHECK_RESULT_COLUMNS]


def _em_setting(ctx: CheckContext, lines: pd.DataFrame, pos: pd.Series, valid: pd.Series,
                setting: Callable[[pd.Series], pd.Series]) -> pd.DataFrame:
    settings = em_codes_of(ctx).settings
    if settings.empty:
        return _empty()
    q = pd.DataFrame({"_i": np.arange(len(lines)), "hcpcs": lines["hcpcs"].astype(str).to_numpy(dtype=object),
                      "pos": pos.to_numpy(dtype=object)})
    q = q[valid.to_numpy() & q["hcpcs"].isin(settings["hcpcs"].unique()).to_numpy()]
    # pos_not_expected: the (code, POS) pair is listed
    bad = q.merge(settings[settings["kind"] == "not_expected"], on=["hcpcs", "pos"])
    # pos_expected: the code has a list and the POS is not on it
    expected = settings[settings["kind"] == "expected"]
    has_list = q[q["hcpcs"].isin(expected["hcpcs"].unique())]
    ok = has_list.merge(expected[["hcpcs", "pos"]], on=["hcpcs", "pos"])["_i"]
    miss = has_list[~has_list["_i"].isin(ok)].merge(
        expected.drop_duplicates("hcpcs")[["hcpcs", "group"]], on="hcpcs")
    allowed = expected.groupby("hcpcs")["pos"].agg(", ".join)
    miss["why"] = "expected POS " + miss["hcpcs"].map(allowed)
    bad["why"] = "not expected in this POS"
    hits = pd.concat([bad[["_i", "group", "why"]], miss[["_i", "group", "why"]]], ignore_index=True)
    if hits.empty:
        return _empty()
    hits = hits.drop_duplicates("_i").sort_values("_i")
    mask = pd.Series(False, index=lines.index)
    mask.iloc[hits["_i"].to_numpy()] = True

    def text(m: pd.Series) -> pd.Series:
        return ("E/M " + lines["hcpcs"][m].astype(str).to_numpy(dtype=object) + " ("
                + hits["group"].str.replace("_", " ").to_numpy(dtype=object) + " visit) in "
                + setting(m).to_numpy(dtype=object) + ": " + hits["why"].to_numpy(dtype=object))

    return _flags(lines, mask, "POS-EM-SETTING", text)


def _facility_rate(ctx: CheckContext, lines: pd.DataFrame, facility: pd.Series,
                   setting: Callable[[pd.Series], pd.Series]) -> pd.DataFrame:
    if {"allowed_nonfacility", "allowed_facility"} <= set(lines.columns):
        nf = pd.to_numeric(lines["allowed_nonfacility"], errors="coerce")
        f = pd.to_numeric(lines["allowed_facility"], errors="coerce")
        higher = facility & nf.notna() & f.notna() & (np.round(nf * 100) > np.round(f * 100))
        return _flags(lines, higher, "POS-FACILITY-RATE", lambda m: (
            "non-facility " + _dollars(nf[m]) + " vs facility " + _dollars(f[m]) + " for " + setting(m)
            + ": the facility POS pays " + _dollars(nf[m] - f[m]) + " less; verify the POS"), "pos_difference")
    totals = _rvu_totals(lines, getattr(ctx, "pprrvu", None))
    higher = facility & ~_bool(lines, "nonfacility_na") & totals["nf"].notna() & totals["f"].notna() & (
        np.round(totals["nf"] * 100) > np.round(totals["f"] * 100))
    return _flags(lines, higher, "POS-FACILITY-RATE", lambda m: (
        "non-facility " + totals["nf"][m].round(2).astype(str) + " RVUs vs facility "
        + totals["f"][m].round(2).astype(str) + " RVUs for " + setting(m)
        + ": the facility POS pays less; verify the POS"), "pos_difference")


def payable_on(dates: pd.Series, periods: list[tuple[pd.Timestamp, pd.Timestamp]]) -> pd.Series:
    """True where a date falls in one of the (from, to-exclusive) periods."""
    out = pd.Series(False, index=dates.index)
    for start, end in periods:  # a handful of configured periods, not lines
        out |= (dates >= start) & ((dates < end) if pd.notna(end) else True)
    return out
