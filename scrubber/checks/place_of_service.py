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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scrubber.checks.context import CheckContext
from scrubber.checks.engine import NAT_DAY, cached, day_numbers, factorized
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


@dataclass
class _LinePos:
    """The POS table looked up once per distinct (stripped POS, date of service) pair of the batch.

    ``pair`` gives each line its pair; ``pairs`` holds the :func:`pos_lookup` columns per pair plus the
    texts the details quote (``pos``, ``setting``, ``date_txt``, ``invalid_text``), built with the same
    pandas operations the row-wise version used, on a few thousand pairs instead of a million lines.
    """

    pair: np.ndarray
    pairs: pd.DataFrame

    def at(self, column: str, rows: np.ndarray | None = None) -> np.ndarray:
        values = self.pairs[column].to_numpy()
        return values[self.pair] if rows is None else values[self.pair[rows]]


def _distinct(ctx: CheckContext, column: str) -> tuple[np.ndarray, pd.Series]:
    """Cached codes of a ctx.lines column and its distinct values as a Series of the column's dtype, with a
    trailing None for code -1 (missing): text operations then run once per distinct value."""
    codes, uniq = factorized(ctx, column)
    values = pd.concat([pd.Series(uniq, dtype=ctx.lines[column].dtype), pd.Series([None], dtype=object)],
                       ignore_index=True)
    return codes, values


def _stripped_pos_codes(ctx: CheckContext) -> tuple[np.ndarray, np.ndarray]:
    """Per line, a code of ``place_of_service.astype("string").str.strip().fillna("")``; and the texts."""
    codes, values = _distinct(ctx, "place_of_service")
    stripped = values.astype("string").str.strip().fillna("").astype(object).to_numpy()
    s_codes, s_uniq = pd.factorize(stripped)
    return s_codes[codes], np.asarray(s_uniq, dtype=object)


def _service_day_codes(ctx: CheckContext) -> tuple[np.ndarray, np.ndarray]:
    """Per line, a code of the service date (datetime64[ns]); and the dates. Whole days (the normal case)
    are coded by their offset from the first day, without hashing a million values."""
    lines = ctx.lines
    ns = pd.to_datetime(lines["service_date"]).to_numpy(dtype="datetime64[ns]")
    days = cached(ctx, "days:service_date", lambda: day_numbers(lines["service_date"]))
    known = days != NAT_DAY
    day_ns = np.int64(86_400_000_000_000)
    if known.any() and not (ns.view(np.int64)[known] % day_ns).any():
        lo, hi = int(days[known].min()), int(days[known].max())
        span = hi - lo + 1
        code = np.where(known, days - lo, span)
        dates = np.concatenate([(np.arange(lo, hi + 1, dtype=np.int64) * day_ns).view("datetime64[ns]"),
                                np.array(["NaT"], dtype="datetime64[ns]")])
        return code, dates
    code, uniq = pd.factorize(ns.view(np.int64))
    return code.astype(np.int64), np.asarray(uniq, dtype=np.int64).view("datetime64[ns]")


def _line_pos(ctx: CheckContext, pos_table: pd.DataFrame) -> _LinePos:
    """:class:`_LinePos` of ctx.lines (cached)."""
    def build() -> _LinePos:
        p_code, p_text = _stripped_pos_codes(ctx)
        d_code, d_uniq = _service_day_codes(ctx)
        n_d = max(len(d_uniq), 1)
        key = p_code.astype(np.int64) * n_d + d_code
        size = len(p_text) * n_d
        if size <= 4 * len(key) + 1024:       # small key space: a presence table instead of a hash
            seen = np.zeros(size, dtype=bool)
            seen[key] = True
            keys = np.flatnonzero(seen)
            where = np.full(size, -1, np.int64)
            where[keys] = np.arange(len(keys))
            pair = where[key]
        else:
            pair, keys = pd.factorize(key)
            pair, keys = pair.astype(np.int64), np.asarray(keys, dtype=np.int64)
        pos = p_text[keys // n_d]
        dates = d_uniq[keys % n_d]
        pairs = _pos_lookup_rows(pos, dates, pos_table)
        pos_s = pd.Series(pos, dtype=object)
        date_txt = pd.Series(dates).dt.strftime("%Y-%m-%d")
        pairs["pos"] = pos
        pairs["date"] = dates
        pairs["setting"] = ("POS " + pos_s + " (" + pairs["name"].fillna("").astype(str) + ")").to_numpy(dtype=object)
        pairs["date_txt"] = date_txt.to_numpy(dtype=object)
        pairs["invalid_text"] = np.where(pairs["known"], "POS " + pos_s + " is not in force on " + date_txt,
                                         "POS '" + pos_s + "' is not a valid place-of-service code")
        return _LinePos(pair=pair, pairs=pairs)

    return cached(ctx, f"line_pos:{id(pos_table)}", build)


def _flags(lines: pd.DataFrame, rows: np.ndarray, rule_id: str, detail: Callable[[np.ndarray], object],
           amount_basis: str | None = None) -> pd.DataFrame:
    """Result rows for the line positions ``rows``; ``detail(rows)`` builds the texts for those rows only
    (strings are the expensive part on a million lines, and few lines are flagged)."""
    if not len(rows):
        return _empty()
    return pd.DataFrame({
        "line_uid": lines["line_uid"].to_numpy()[rows].astype("int64"),
        "rule_id": rule_id,
        "related_line_uid": pd.array([pd.NA] * len(rows), dtype="Int64"),
        "detail": pd.Series(detail(rows)).to_numpy(dtype=object),
        "amount_basis": amount_basis,
    })


def _bool(lines: pd.DataFrame, column: str) -> np.ndarray:
    """Reference annotations are None for codes missing from the release: treat as not set (``eq(True)``).
    Plain booleans and True/False/None objects are tested without a per-value pandas pass."""
    if column not in lines.columns:
        return np.zeros(len(lines), dtype=bool)
    values = lines[column].to_numpy()
    if values.dtype == bool:
        return values
    if values.dtype == object:
        try:
            return np.equal(values, True).astype(bool)
        except TypeError:   # e.g. pd.NA among the values: let pandas decide
            pass
    return lines[column].eq(True).to_numpy(dtype=bool)


def _text_at(series: pd.Series, rows: np.ndarray) -> pd.Series:
    return series.iloc[rows].reset_index(drop=True)


def check(ctx: CheckContext) -> pd.DataFrame:
    """POS-INVALID, POS-NF-NA, POS-FAC-NA, POS-INCIDENT-TO-HOSP, POS-EM-SETTING, POS-FACILITY-RATE
    (and POS-TELEHEALTH-HOME when configured) for the batch."""
    lines = ctx.lines
    pos_table = getattr(ctx.rules, "pos", None)
    if lines.empty or pos_table is None:
        return _empty()
    lp = _line_pos(ctx, pos_table)
    hcpcs = lines["hcpcs"].astype(str)

    def setting(rows: np.ndarray) -> pd.Series:
        return pd.Series(lp.at("setting", rows), dtype=object)

    parts: list[pd.DataFrame] = []

    # POS-INVALID: not a code at all, or not in force on the date of service
    valid = lp.at("effective")
    parts.append(_flags(lines, np.flatnonzero(~valid), "POS-INVALID", lambda r: lp.at("invalid_text", r)))

    is_facility = lp.at("facility")
    facility = is_facility & valid
    nonfacility = ~is_facility & valid

    # POS-NF-NA / POS-FAC-NA: the RVU file says the code is (almost) never done in that kind of setting
    parts.append(_flags(lines, np.flatnonzero(nonfacility & _bool(lines, "nonfacility_na")), "POS-NF-NA",
                        lambda r: (_text_at(hcpcs, r) + " has no non-facility rate (NON-FAC NA) but is billed in "
                                   + setting(r) + "; Medicare pays the facility rate at best")))
    parts.append(_flags(lines, np.flatnonzero(facility & _bool(lines, "facility_na")), "POS-FAC-NA",
                        lambda r: (_text_at(hcpcs, r) + " has no facility rate (FACILITY NA: billed by the "
                                   "facility) but is billed in " + setting(r))))

    # POS-INCIDENT-TO-HOSP: PC/TC 5 ("incident to") not payable to the practitioner for hospital patients
    if "pctc_indicator" in lines.columns:
        codes, per_value = _distinct(ctx, "pctc_indicator")
        is5 = per_value.astype("string").str.strip().eq("5").fillna(False).astype(bool).to_numpy()
        hits = np.flatnonzero(valid & lp.at("hospital") & is5[codes])
        parts.append(_flags(lines, hits, "POS-INCIDENT-TO-HOSP", lambda r: (
            _text_at(hcpcs, r) + " is an incident-to service (PC/TC indicator 5), not payable to the practitioner in "
            + setting(r))))

    # POS-EM-SETTING: E/M family vs setting (rules/em_codes.yaml)
    parts.append(_em_setting(ctx, lines, lp, valid, setting))

    # POS-FACILITY-RATE: surface what a facility POS costs compared with the non-facility rate
    parts.append(_facility_rate(ctx, lines, facility, setting))

    # POS-TELEHEALTH-HOME: optional dated switch for Medicare home telehealth
    periods = pos_table.attrs.get("telehealth_home_payable")
    if periods is not None:
        pairs = lp.pairs
        tele_pair = (pairs["pos"] == "10").to_numpy() & ~payable_on(pd.Series(pairs["date"]), periods).to_numpy()
        tele = valid & tele_pair[lp.pair]
        parts.append(_flags(lines, np.flatnonzero(tele), "POS-TELEHEALTH-HOME", lambda r: (
            "home telehealth (POS 10) is not configured as payable by Medicare on "
            + pd.Series(lp.at("date_txt", r), dtype=object))))

    parts = [p for p in parts if not p.empty]
    if not parts:
        return _empty()
    out = pd.concat(parts, ignore_index=True)
    out["related_line_uid"] = out["related_line_uid"].astype("Int64")
    return out[CHECK_RESULT_COLUMNS]


def _em_setting(ctx: CheckContext, lines: pd.DataFrame, lp: _LinePos, valid: np.ndarray,
                setting: Callable[[np.ndarray], pd.Series]) -> pd.DataFrame:
    """POS-EM-SETTING, decided once per distinct (code, POS) of the valid E/M lines."""
    settings = em_codes_of(ctx).settings
    if settings.empty:
        return _empty()
    h_codes, h_values = _distinct(ctx, "hcpcs")
    h_text = h_values.astype(str).to_numpy(dtype=object)
    listed = pd.Series(h_text).isin(settings["hcpcs"].unique()).to_numpy()
    rows = np.flatnonzero(valid & listed[h_codes])
    if not len(rows):
        return _empty()
    pos_code, pos_text = pd.factorize(lp.pairs["pos"].to_numpy(dtype=object))
    combo, combo_uniq = pd.factorize(h_codes[rows] * len(pos_text) + pos_code[lp.pair[rows]])
    combo_uniq = np.asarray(combo_uniq, dtype=np.int64)
    q = pd.DataFrame({"_i": np.arange(len(combo_uniq)), "hcpcs": h_text[combo_uniq // len(pos_text)],
                      "pos": np.asarray(pos_text, dtype=object)[combo_uniq % len(pos_text)]})
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
    hits = hits.drop_duplicates("_i")
    hit_of_combo = np.full(len(combo_uniq), -1, np.int64)
    hit_of_combo[hits["_i"].to_numpy()] = np.arange(len(hits))
    line_hit = hit_of_combo[combo]
    flagged = rows[line_hit >= 0]
    hit_rows = line_hit[line_hit >= 0]
    group = hits["group"].str.replace("_", " ").to_numpy(dtype=object)[hit_rows]
    why = hits["why"].to_numpy(dtype=object)[hit_rows]

    def text(r: np.ndarray) -> np.ndarray:
        return ("E/M " + lines["hcpcs"].iloc[r].astype(str).to_numpy(dtype=object) + " (" + group + " visit) in "
                + setting(r).to_numpy(dtype=object) + ": " + why)

    return _flags(lines, flagged, "POS-EM-SETTING", text)


def _facility_rate(ctx: CheckContext, lines: pd.DataFrame, facility: np.ndarray,
                   setting: Callable[[np.ndarray], pd.Series]) -> pd.DataFrame:
    if {"allowed_nonfacility", "allowed_facility"} <= set(lines.columns):
        nf = pd.to_numeric(lines["allowed_nonfacility"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        f = pd.to_numeric(lines["allowed_facility"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            higher = facility & ~np.isnan(nf) & ~np.isnan(f) & (np.round(nf * 100) > np.round(f * 100))
        rows = np.flatnonzero(higher)

        def text(r: np.ndarray) -> pd.Series:
            nf_r, f_r = pd.Series(nf[r]), pd.Series(f[r])
            return ("non-facility " + _dollars(nf_r) + " vs facility " + _dollars(f_r) + " for " + setting(r)
                    + ": the facility POS pays " + _dollars(nf_r - f_r) + " less; verify the POS")

        return _flags(lines, rows, "POS-FACILITY-RATE", text, "pos_difference")
    totals = _rvu_totals(lines, getattr(ctx, "pprrvu", None))
    higher = facility & ~_bool(lines, "nonfacility_na") & totals["nf"].notna().to_numpy() \
        & totals["f"].notna().to_numpy() & (np.round(totals["nf"] * 100) > np.round(totals["f"] * 100)).to_numpy()
    return _flags(lines, np.flatnonzero(higher), "POS-FACILITY-RATE", lambda r: (
        "non-facility " + totals["nf"].iloc[r].round(2).astype(str).reset_index(drop=True) + " RVUs vs facility "
        + totals["f"].iloc[r].round(2).astype(str).reset_index(drop=True) + " RVUs for " + setting(r)
        + ": the facility POS pays less; verify the POS"), "pos_difference")


def payable_on(dates: pd.Series, periods: list[tuple[pd.Timestamp, pd.Timestamp]]) -> pd.Series:
    """True where a date falls in one of the (from, to-exclusive) periods."""
    out = pd.Series(False, index=dates.index)
    for start, end in periods:  # a handful of configured periods, not lines
        out |= (dates >= start) & ((dates < end) if pd.notna(end) else True)
    return out
