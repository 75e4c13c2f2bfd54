"""Expected Medicare allowed amount per claim line, and the amount at risk per flag.

One implementation serves the nightly scrub (``annotate_and_price`` over the whole batch) and the
per-code calculator (``price_code`` prices a tiny frame with the same function), so the two can never
disagree.

How a line is priced (billing-domain 2 and 3):

1. Release in force on the date of service (``ReferenceSet.assign``); the PPRRVU row of
   (HCPCS, pricing modifier): the ``26``/``TC``/``53`` row when the line carries that modifier and the
   row exists, else the global row.
2. Locality: the line's ``locality`` (MAC-LOC) when the release's GPCI table knows it; else the
   ``service_zip`` through the ZIP5 crosswalk in force (the latest one when none covers the date);
   else national (GPCIs 1.000). Setting (facility / non-facility) from the place of service table.
3. ``round_half_up((W*GPCIw + PE*GPCIpe + MP*GPCImp) * CF, 2)`` with exact scaled integers
   (``scrubber.money``). CF: the release's; 2026+ the QP CF for NPIs configured as qualifying APM
   participants (rules/conversion_factors.yaml). OPPS imaging cap: where the OPPSCAP file of the
   release lists (code, modifier, locality) with status A, its price (CMS already applied the lower
   of MPFS and OPPS) replaces the formula amount. National amounts have no cap.
4. Payment modifiers in the order of billing-domain 3: PC/TC by row, bilateral (50), endoscopy family
   (MULT PROC 3), multiple-procedure ranking per patient + DOS + provider (MULT PROC 2/3 standard rule,
   4 imaging, 5 therapy PE, 6 cardiovascular, 7 ophthalmology), then split care (54/55/56),
   co-surgery (62), assistant (80/81/82 16%, AS 13.6%), NPP 85%.
5. Units multiply (ranking uses the per-line amount). Every percentage is kept as an integer
   fraction and applied to the *unrounded* product; the line is rounded once, half-up, to cents
   (the documented choice of ``scrubber.money``; CMS's exact order is unverified, +-1 cent).
   Units are used to the hundredth.

Amount semantics (``expected_allowed``):
- a number: what Medicare should allow for the line as billed;
- ``0.0`` for codes Medicare does not pay by status (B, P, I, N, X, M; historical D, F, G, H);
- ``NaN`` when the amount is *unknown* to the MPFS: status C (carrier priced), E (excluded; Part B
  drugs are priced from the ASP file), J (anesthesia: base + time units), R (restricted; carrier
  priced if covered); a code not in the release or no release for the date; 66 (team surgery, by
  report); 53 on a code without a 53 row (priced individually by the MAC).
``pricing_note`` says which and why. ``expected_allowed_cents`` is nullable ``Int64`` (<NA> = unknown).
The amount is the fee schedule amount: Medicare's "lower of the submitted charge and the fee schedule"
is not applied (the report measures claims against the fee schedule; ``charge_amount`` only caps the
``mppr`` amount at risk). Multiple-procedure choices where the README is silent: ranking is per
patient + DOS + provider (``Settings.provider_key``); imaging/cardiovascular/ophthalmology global lines
split into PC (their 26 row, priced alike) and TC (the rest), a global code without a 26 row counts as
all technical; therapy reduces the PE of every unit after the first unit of the day's highest-PE
service; the 6th and later surgical procedures are shown at 50% with a "by report" note.

Columns added (one row per line, same index): rvu_release, locality_used ("01112-05" | "national"),
locality_source (line | zip | national), setting (facility | nonfacility), pricing_modifier
("" | 26 | TC | 53: the PPRRVU row used), status_code, global_days, pctc_indicator, mult_proc,
bilat_surg, asst_surg, co_surg, team_surg, endo_base, imaging_family (the row's text, missing when the
code is not in the release), nonfacility_na / facility_na (True / False / None), work_rvu, pe_rvu
(of the setting), mp_rvu, gpci_work/pe/mp, conversion_factor, allowed_nonfacility / allowed_facility
(per-unit fee schedule amounts, statuses A/T/R), opps_capped, expected_allowed_cents,
expected_allowed, unreduced_allowed (before multiple-procedure reductions), mppr_rank (0 = not
ranked), adjustments, pricing_note. Text columns are pandas Categoricals (one small int array per
column for a million lines; "" is always a category so ``fillna("")`` works).

Performance: everything is vectorised: PPRRVU/GPCI/OPPSCAP decimals are converted to scaled integers
once per release (straight from the store's Arrow columns) and cached per ReferenceSet; what a line's
release + code + modifiers decide is worked out once per distinct combination (a "profile"), and the
fee schedule amounts once per distinct (PPRRVU row, locality, conversion factor) (a "rate"), so a
million lines cost a few gathers each; multiple-procedure ranking only looks at groups with more than
one candidate.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from scrubber.errors import ReferenceNotFound, RulesError
from scrubber.money import CENTS_DIVISOR, CF_SCALE, GPCI_SCALE, RVU_SCALE, cents_to_decimal, to_scaled
from scrubber.rules import SAFE_LOADER
from scrubber.settings import Settings

# ------------------------------------------------------------------------------------------------
# Domain tables (billing-domain 1.5, 3)

#: status -> (expected allowed: 0.0 "not paid" or NaN "unknown", note); A and T are priced.
STATUS_PRICING: dict[str, tuple[float, str]] = {
    "B": (0.0, "status B: bundled, never paid separately under the MPFS"),
    "P": (0.0, "status P: bundled/excluded, not paid separately under the MPFS"),
    "I": (0.0, "status I: not valid for Medicare, Medicare uses another code"),
    "N": (0.0, "status N: non-covered service, not paid by Medicare"),
    "X": (0.0, "status X: statutory exclusion from the MPFS (paid under another fee schedule, if at all)"),
    "M": (0.0, "status M: measurement (quality reporting) code, $0"),
    "D": (0.0, "status D: deleted code"),
    "F": (0.0, "status F: deleted code"),
    "G": (0.0, "status G: not valid for Medicare, deleted"),
    "H": (0.0, "status H: deleted modifier row"),
    "C": (math.nan, "status C: carrier priced, the MAC sets the amount; no national amount"),
    "E": (math.nan, "status E: excluded from the MPFS by regulation (Part B drugs are priced from the ASP "
                    "file), not priced from RVUs"),
    "J": (math.nan, "status J: anesthesia, priced with base + time units x the anesthesia CF, not RVUs"),
    "R": (math.nan, "status R: restricted coverage; if covered the MAC prices it"),
}
STATUS_MEANING: dict[str, str] = {
    "A": "active: separately paid under the MPFS (coverage still decided by NCD/LCD)",
    "T": "injection-type service: paid only when no other MPFS-payable service is billed the same day",
    **{k: v[1].split(": ", 1)[1] for k, v in STATUS_PRICING.items()},
}
PRICED_STATUS = ("A", "T")              # expected allowed computed from RVUs
FEE_STATUS = ("A", "T", "R")            # fee schedule amounts shown (README: RVUs of A, R, T are used)

PRICING_MODIFIERS = ("", "26", "TC", "53")
ASSISTANT_MODIFIERS = ("80", "81", "82")
#: fractions (num, den) of billing-domain 3
BILATERAL_150 = (3, 2)
BILATERAL_200 = (2, 1)      # indicator 3 with 50 on one line: each side at 100%
MPPR_SUBSEQUENT = (1, 2)
ASSISTANT = (16, 100)
ASSISTANT_NPP = (136, 1000)  # 85% of 16%
CO_SURGERY = (625, 1000)
NPP = (85, 100)
#: component factors in 20ths (subsequent procedures, billing-domain 3.1)
COMPONENT_DEN = 20
IMAGING_TC, IMAGING_PC = 10, 19     # TC 50%, PC 95%
CARDIO_TC = 15                      # TC 75%
OPHTH_TC = 16                       # TC 80%
THERAPY_PE = 10                     # PE 50%
UNITS_SCALE = 100                   # units to the hundredth
MAX_FULL_PRICE_RANK = 5             # 6th and later procedures are "by report"

NATIONAL = "national"
_SLOW_PATH_LIMIT = 1e18             # int64 headroom guard; rarer rows are computed with Python ints


# ------------------------------------------------------------------------------------------------
# rules/conversion_factors.yaml


@dataclass(frozen=True)
class ConversionFactors:
    """Factors a release file does not carry (QP MPFS CF from 2026, anesthesia CFs)."""

    single_cf_through: int
    mpfs_qp: dict[int, Decimal]
    anesthesia: dict[int, dict[str, Decimal | None]]

    def qp_cf(self, year: int) -> Decimal | None:
        return self.mpfs_qp.get(year)


def _decimal_field(path: Path, key: str, value: object) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, float):
        raise RulesError(f"{path}: {key}: write the factor as a quoted string (got the YAML float {value!r})")
    try:
        return Decimal(str(value))
    except ArithmeticError:
        raise RulesError(f"{path}: {key}: {value!r} is not a decimal number") from None


@lru_cache(maxsize=8)
def load_conversion_factors(rules_dir: Path) -> ConversionFactors:
    """Read and validate rules/conversion_factors.yaml (errors name the file and key)."""
    path = Path(rules_dir) / "conversion_factors.yaml"
    if not path.is_file():
        return ConversionFactors(single_cf_through=2025, mpfs_qp={}, anesthesia={})
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER) or {}
    except yaml.YAMLError as exc:
        raise RulesError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise RulesError(f"{path}: expected a mapping at the top level")
    through = doc.get("single_cf_through", 2025)
    if not isinstance(through, int):
        raise RulesError(f"{path}: single_cf_through: expected a year, got {through!r}")
    qp: dict[int, Decimal] = {}
    for year, entry in (doc.get("mpfs_qp") or {}).items():
        if not isinstance(year, int) or not isinstance(entry, dict) or "value" not in entry:
            raise RulesError(f"{path}: mpfs_qp.{year}: expected `YEAR: {{value: \"33.5675\", ...}}`")
        value = _decimal_field(path, f"mpfs_qp.{year}.value", entry["value"])
        if value is not None:
            qp[year] = value
    anes: dict[int, dict[str, Decimal | None]] = {}
    for year, entry in (doc.get("anesthesia") or {}).items():
        if not isinstance(year, int) or not isinstance(entry, dict):
            raise RulesError(f"{path}: anesthesia.{year}: expected `YEAR: {{nonqp: ..., qp: ...}}`")
        anes[year] = {k: _decimal_field(path, f"anesthesia.{year}.{k}", entry.get(k)) for k in ("nonqp", "qp")}
    return ConversionFactors(single_cf_through=through, mpfs_qp=qp, anesthesia=anes)


# ------------------------------------------------------------------------------------------------
# Per-release arrays, built once per ReferenceSet (cached), combined per call when a batch spans
# several releases. Every per-row array carries one neutral sentinel element at the end, so a row
# index of -1 ("no row") gathers the sentinel with plain numpy indexing.


def _scaled_array(values: pd.Series, scale: int) -> np.ndarray:
    """Exact scaled int64 of a Decimal column (blank -> 0).

    Arrow converts the Decimals to decimal128 at the published scale and refuses any value that
    would lose digits, so this is as exact as ``money.to_scaled`` and far faster. Anything Arrow
    will not take (e.g. strings) goes through ``to_scaled`` value by value.
    """
    places = len(str(scale)) - 1
    try:
        arr = pa.array(values.to_numpy(dtype=object, na_value=None), type=pa.decimal128(18, places))
        ints = pc.cast(pc.multiply(arr, pa.scalar(scale, pa.int64())), pa.int64())
        return ints.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return np.array([to_scaled(v, scale) if v is not None and v == v else 0 for v in values],
                        dtype=np.int64)


def _indicator_array(values: pd.Series) -> np.ndarray:
    """Single-digit indicator as int8; blank / non-digit -> -1 (converted once per distinct value)."""
    codes, uniq = pd.factorize(values, use_na_sentinel=True)
    distinct = pd.Series([*np.asarray(uniq, dtype=object), ""], dtype=object)   # code -1 (missing) -> ""
    num = pd.to_numeric(distinct, errors="coerce")
    return num.fillna(-1).to_numpy(dtype=np.int8)[codes]


def _text_codes(values: pd.Series) -> tuple[np.ndarray, list]:
    """int32 codes (-1 = missing) and the distinct values of a text column."""
    if isinstance(values.dtype, pd.StringDtype):     # Arrow text: no Python string per row
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
    else:
        codes, uniques = pd.factorize(values.astype(object).where(values.notna(), None))
    return codes.astype(np.int32), [str(u) for u in uniques]


def _with_sentinel(arr: np.ndarray, sentinel: object) -> np.ndarray:
    return np.concatenate([arr, np.array([sentinel], dtype=arr.dtype)])


STATUS_ORDER: tuple[str, ...] = ("A", "T", "R", "C", "E", "J", "B", "P", "I", "N", "X", "M", "D", "F", "G", "H")
_STATUS_PRICED = np.array([s in PRICED_STATUS for s in STATUS_ORDER] + [False])
_STATUS_FEE = np.array([s in FEE_STATUS for s in STATUS_ORDER] + [False])
_STATUS_ZERO = np.array([s in STATUS_PRICING and STATUS_PRICING[s][0] == 0.0 for s in STATUS_ORDER] + [False])

#: PPRRVU text columns carried to the lines (plus description/modifier for the calculator)
_TEXT_COLUMNS = ("status_code", "global_days", "pctc_indicator", "mult_proc", "bilat_surg", "asst_surg",
                 "co_surg", "team_surg", "endo_base", "imaging_family", "modifier")
_OPPS_KEY = 1 << 16


@dataclass
class _Release:
    """One RVU release as scaled integer arrays (no sentinels; see _Combined)."""

    release: str
    year: int
    cf: int                                   # ten-thousandths
    cf_qp: int | None                         # None: QP factor unknown for the year
    hcpcs_index: pd.Index                     # distinct codes
    rows_by_mod: np.ndarray                   # (4, n_codes) row per PRICING_MODIFIERS, -1
    work: np.ndarray
    pe_nf: np.ndarray
    pe_f: np.ndarray
    mp: np.ndarray
    split_pct: np.ndarray                     # (3, n_rows) pre, intra, post in hundredths
    mult_proc: np.ndarray
    bilat: np.ndarray
    status_idx: np.ndarray                    # index into STATUS_ORDER, -1 unknown
    text_codes: dict[str, np.ndarray]
    text_values: dict[str, list]
    nonfac_na: np.ndarray
    fac_na: np.ndarray
    endo_row: np.ndarray                      # row of the ENDO BASE code's global row, -1
    pc_row: np.ndarray                        # row of the same code's 26 row, -1
    gpci_index: pd.Index                      # locality ids "01112-05"
    gpci: np.ndarray                          # (3, n_localities) thousandths
    locality_name: list
    opps_keys: np.ndarray                     # row * _OPPS_KEY + locality position (status A rows)
    opps_nf: np.ndarray                       # cents
    opps_f: np.ndarray
    anes_cf: dict[str, Decimal] = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        return len(self.work)


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _cache_for(ref: Any) -> dict:
    try:
        return _CACHE.setdefault(ref, {})
    except TypeError:  # not weak-referenceable: no cache
        return {}


def _entry(ref: Any, release: str) -> Any:
    for e in ref.releases("rvu"):
        if e.release == release:
            return e
    raise ReferenceNotFound(f"release {release} is not in the catalog")


#: the PPRRVU columns pricing reads (decimal ones are converted straight from Arrow)
_PPRRVU_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys((
    "hcpcs", *_TEXT_COLUMNS, "work_rvu", "pe_rvu_nonfacility", "pe_rvu_facility", "mp_rvu", "preop_pct",
    "intraop_pct", "postop_pct", "nonfacility_na", "facility_na")))


class _Columns:
    """Some columns of one reference table: decimal columns as Arrow arrays, the others as pandas.

    Read straight from the store when the ReferenceSet can say where the table lives, so pricing never
    builds Python Decimal objects only to turn them back into scaled integers; otherwise (any other
    reference object) the columns come from ``ref.table``.
    """

    def __init__(self, ref: Any, table: str, release: str, columns: tuple[str, ...]) -> None:
        try:
            key = ref.catalog.get(release).tables[table]["key"]
            raw = ref.store.read_parquet_table(key, columns=list(columns))
        except (AttributeError, KeyError, TypeError, OSError, pa.ArrowInvalid):
            raw = None      # ref.table raises the same errors as before, or succeeds
        if raw is None:
            self.frame, self.decimals = ref.table(table, release).reset_index(drop=True), {}
            return
        self.decimals = {c: raw.column(c) for c in raw.column_names if pa.types.is_decimal(raw.schema.field(c).type)}
        self.frame = raw.select([c for c in raw.column_names if c not in self.decimals]).to_pandas()

    def __len__(self) -> int:
        return len(self.frame)

    def __getitem__(self, column: str) -> pd.Series:
        if column in self.decimals:
            return pd.Series(self.decimals[column].to_pandas(), dtype=object)
        return self.frame[column]

    def scaled(self, column: str, scale: int, rows: np.ndarray | None = None) -> np.ndarray:
        """Exact scaled int64 of a decimal column (blank -> 0) at ``rows`` (default all), as
        :func:`_scaled_array` computes it."""
        values = self.decimals.get(column)
        if values is not None:
            places = len(str(scale)) - 1
            try:
                picked = values if rows is None else values.take(pa.array(rows, pa.int64()))
                exact = picked.cast(pa.decimal128(18, places))
                ints = pc.cast(pc.multiply(exact, pa.scalar(scale, pa.int64())), pa.int64())
                return ints.fill_null(0).to_numpy().astype(np.int64)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                pass
        series = self[column]
        return _scaled_array(series if rows is None else series.iloc[rows], scale)


def _prepare_release(ref: Any, release: str, settings: Settings) -> _Release:
    """Scaled integer arrays of one RVU release (cached per ReferenceSet)."""
    cache = _cache_for(ref)
    key = ("rvu", release, str(settings.rules_dir))
    if key in cache:
        return cache[key]
    entry = _entry(ref, release)
    pp = _Columns(ref, "pprrvu", release, _PPRRVU_COLUMNS)
    mods = pp["modifier"].astype(object).where(pp["modifier"].notna(), "").to_numpy()
    codes, uniq = pd.factorize(pp["hcpcs"].astype(object).to_numpy())
    hcpcs_index = pd.Index(uniq, dtype=object)
    rows_by_mod = np.full((len(PRICING_MODIFIERS), len(uniq)), -1, dtype=np.int64)
    positions = np.arange(len(pp), dtype=np.int64)
    for i, m in enumerate(PRICING_MODIFIERS):
        sel = mods == m
        rows_by_mod[i, codes[sel]] = positions[sel]
    text_codes, text_values = {}, {}
    for c in _TEXT_COLUMNS:
        text_codes[c], text_values[c] = _text_codes(pp[c])
    endo = pp["endo_base"].astype(object).where(pp["endo_base"].notna(), "").to_numpy()
    endo_code = hcpcs_index.get_indexer(endo)
    endo_row = np.where(endo_code >= 0, rows_by_mod[0, np.maximum(endo_code, 0)], -1)
    status_idx = pd.Index(STATUS_ORDER).get_indexer(pp["status_code"].astype(object).to_numpy()).astype(np.int8)

    year = entry.effective_from.year
    cf = to_scaled(ref.conversion_factor(release), CF_SCALE)
    factors = load_conversion_factors(Path(settings.rules_dir))
    qp_meta = (entry.meta or {}).get("qp_conversion_factor")
    cf_qp: int | None = None
    if qp_meta:
        cf_qp = to_scaled(qp_meta, CF_SCALE)
    elif year <= factors.single_cf_through:
        cf_qp = cf
    elif factors.qp_cf(year) is not None:
        cf_qp = to_scaled(factors.qp_cf(year), CF_SCALE)

    if ref.has_table("gpci", release):
        g = _Columns(ref, "gpci", release, ("locality_id", "locality_name", "gpci_work", "gpci_pe", "gpci_mp"))
        gpci_index = pd.Index(g["locality_id"].astype(object).to_numpy(), dtype=object)
        gpci = np.vstack([g.scaled(c, GPCI_SCALE) for c in ("gpci_work", "gpci_pe", "gpci_mp")])
        loc_name = [None if pd.isna(x) else str(x) for x in g["locality_name"]]
    else:
        gpci_index, gpci, loc_name = pd.Index([], dtype=object), np.zeros((3, 0), np.int64), []

    opps_keys, opps_nf, opps_f = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    if ref.has_table("oppscap", release) and len(gpci_index):
        o = _Columns(ref, "oppscap", release, ("hcpcs", "modifier", "proc_status", "locality_id",
                                                "nonfacility_price", "facility_price"))
        active = np.flatnonzero((o["proc_status"].astype(str) == "A").to_numpy())   # C rows only carry the cap
        o_frame = o.frame.iloc[active]
        o_mod = o_frame["modifier"].astype(object).where(o_frame["modifier"].notna(), "").to_numpy()
        mod_pos = pd.Index(list(PRICING_MODIFIERS)).get_indexer(o_mod)
        code_pos = hcpcs_index.get_indexer(o_frame["hcpcs"].astype(object).to_numpy())
        row = np.where((mod_pos >= 0) & (code_pos >= 0),
                       rows_by_mod[np.maximum(mod_pos, 0), np.maximum(code_pos, 0)], -1)
        loc = gpci_index.get_indexer(o_frame["locality_id"].astype(object).to_numpy())
        ok = (row >= 0) & (loc >= 0)
        keys = row[ok] * _OPPS_KEY + loc[ok]
        _, first = np.unique(keys, return_index=True)
        opps_keys = keys[first]
        opps_nf = o.scaled("nonfacility_price", 100, active)[ok][first]
        opps_f = o.scaled("facility_price", 100, active)[ok][first]

    anes_cf: dict[str, Decimal] = {}
    if ref.has_table("anes", release):
        a = ref.table("anes", release)
        anes_cf = {str(k): Decimal(str(v)) for k, v in zip(a["locality_id"], a["anes_cf"], strict=False)}

    prepared = _Release(
        release=release, year=year, cf=cf, cf_qp=cf_qp, hcpcs_index=hcpcs_index, rows_by_mod=rows_by_mod,
        work=pp.scaled("work_rvu", RVU_SCALE), pe_nf=pp.scaled("pe_rvu_nonfacility", RVU_SCALE),
        pe_f=pp.scaled("pe_rvu_facility", RVU_SCALE), mp=pp.scaled("mp_rvu", RVU_SCALE),
        split_pct=np.vstack([pp.scaled(c, 100) for c in ("preop_pct", "intraop_pct", "postop_pct")]),
        mult_proc=_indicator_array(pp["mult_proc"]), bilat=_indicator_array(pp["bilat_surg"]),
        status_idx=status_idx, text_codes=text_codes, text_values=text_values,
        nonfac_na=pp["nonfacility_na"].fillna(False).to_numpy(dtype=bool),
        fac_na=pp["facility_na"].fillna(False).to_numpy(dtype=bool),
        endo_row=endo_row.astype(np.int64), pc_row=rows_by_mod[1, codes].astype(np.int64),
        gpci_index=gpci_index, gpci=gpci, locality_name=loc_name,
        opps_keys=opps_keys, opps_nf=opps_nf, opps_f=opps_f, anes_cf=anes_cf,
    )
    cache[key] = prepared
    return prepared


@dataclass
class _Combined:
    """The releases of one call concatenated, with global row / locality numbering and sentinels."""

    releases: list[_Release]
    row_offset: np.ndarray
    loc_offset: np.ndarray
    work: np.ndarray
    pe_nf: np.ndarray
    pe_f: np.ndarray
    mp: np.ndarray
    split_pct: np.ndarray
    mult_proc: np.ndarray
    bilat: np.ndarray
    status_idx: np.ndarray
    nonfac_na: np.ndarray
    fac_na: np.ndarray
    endo_row: np.ndarray
    pc_row: np.ndarray
    opps_eligible: np.ndarray
    text_codes: dict[str, np.ndarray]
    text_values: dict[str, list]
    gpci: np.ndarray                          # (3, n_loc + 1); last = national 1.000
    loc_code: np.ndarray                      # global locality -> code in loc_values; last = national
    loc_values: list
    opps_index: pd.Index
    opps_nf: np.ndarray
    opps_f: np.ndarray
    cf: np.ndarray                            # per release (+ sentinel 0)
    cf_qp: np.ndarray                         # per release, -1 unknown (+ sentinel)


def _combine(ref: Any, releases: list[_Release]) -> _Combined:
    cache = _cache_for(ref)
    key = ("combined", tuple(id(r) for r in releases))
    if key in cache:
        return cache[key]
    sizes = [r.n_rows for r in releases]
    row_offset = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64) if releases else np.zeros(0, np.int64)
    loc_sizes = [len(r.gpci_index) for r in releases]
    loc_offset = (np.concatenate([[0], np.cumsum(loc_sizes)[:-1]]).astype(np.int64) if releases
                  else np.zeros(0, np.int64))

    def cat(name: str, sentinel: object, dtype: object) -> np.ndarray:
        parts = [getattr(r, name) for r in releases]
        base = np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)
        return _with_sentinel(base, sentinel)

    def cat_rows(name: str) -> np.ndarray:
        parts = [np.where(getattr(r, name) >= 0, getattr(r, name) + off, -1)
                 for r, off in zip(releases, row_offset, strict=True)]
        return _with_sentinel(np.concatenate(parts) if parts else np.zeros(0, np.int64), -1)

    text_codes, text_values = {}, {}
    for c in _TEXT_COLUMNS:
        values: list = []
        index: dict[str, int] = {}
        parts = []
        for r in releases:
            remap = np.array([index.setdefault(v, len(index)) for v in r.text_values[c]] + [-1], dtype=np.int32)
            parts.append(remap[r.text_codes[c]])        # -1 stays -1 through the appended element
        values = list(index)
        text_codes[c] = _with_sentinel(np.concatenate(parts) if parts else np.zeros(0, np.int32), -1)
        text_values[c] = values

    loc_index: dict[str, int] = {}
    loc_code = np.concatenate([[loc_index.setdefault(str(x), len(loc_index)) for x in r.gpci_index]
                               for r in releases] + [np.zeros(0)]).astype(np.int64)
    national = loc_index.setdefault(NATIONAL, len(loc_index))
    loc_code = _with_sentinel(loc_code, national)
    gpci = np.concatenate([r.gpci for r in releases] + [np.full((3, 1), GPCI_SCALE, np.int64)], axis=1)

    okeys = [np.zeros(0, np.int64)]
    for r, roff, loff in zip(releases, row_offset, loc_offset, strict=True):
        okeys.append((r.opps_keys // _OPPS_KEY + roff) * _OPPS_KEY + (r.opps_keys % _OPPS_KEY + loff))
    opps_keys = np.concatenate(okeys)
    opps_eligible = np.zeros(int(sum(sizes)) + 1, dtype=bool)
    opps_eligible[opps_keys // _OPPS_KEY] = True

    combined = _Combined(
        releases=releases, row_offset=row_offset, loc_offset=loc_offset,
        work=cat("work", 0, np.int64), pe_nf=cat("pe_nf", 0, np.int64), pe_f=cat("pe_f", 0, np.int64),
        mp=cat("mp", 0, np.int64),
        split_pct=np.concatenate([r.split_pct for r in releases] + [np.zeros((3, 1), np.int64)], axis=1),
        mult_proc=cat("mult_proc", -1, np.int8), bilat=cat("bilat", -1, np.int8),
        status_idx=cat("status_idx", -1, np.int8), nonfac_na=cat("nonfac_na", False, bool),
        fac_na=cat("fac_na", False, bool), endo_row=cat_rows("endo_row"), pc_row=cat_rows("pc_row"),
        opps_eligible=opps_eligible, text_codes=text_codes, text_values=text_values,
        gpci=gpci, loc_code=loc_code, loc_values=list(loc_index),
        opps_index=pd.Index(opps_keys), opps_nf=np.concatenate([r.opps_nf for r in releases] + [np.zeros(0, np.int64)]),
        opps_f=np.concatenate([r.opps_f for r in releases] + [np.zeros(0, np.int64)]),
        cf=_with_sentinel(np.array([r.cf for r in releases], dtype=np.int64), 0),
        cf_qp=_with_sentinel(np.array([-1 if r.cf_qp is None else r.cf_qp for r in releases], dtype=np.int64), -1),
    )
    cache[key] = combined
    return combined


def _zip_table(ref: Any, release: str) -> tuple[pd.Index, np.ndarray]:
    """ZIP5 -> locality id of one crosswalk release (cached)."""
    cache = _cache_for(ref)
    key = ("zip5", release)
    if key not in cache:
        z = _Columns(ref, "zip5", release, ("zip5", "locality_id"))
        idx = pd.Index(z["zip5"].astype(object).to_numpy(), dtype=object)
        loc = z["locality_id"].astype(object).to_numpy()
        keep = ~idx.duplicated()
        cache[key] = (idx[keep], loc[keep])
    return cache[key]


# ------------------------------------------------------------------------------------------------
# Modifiers: parsed once per distinct modifier string


@dataclass
class _ModifierFlags:
    pref: np.ndarray        # index into PRICING_MODIFIERS (0 = global row)
    has50: np.ndarray
    has52: np.ndarray
    has53: np.ndarray
    has62: np.ndarray
    has66: np.ndarray
    asst: np.ndarray        # 80/81/82
    asst_npp: np.ndarray    # AS
    split: np.ndarray       # (3, n): 56 pre, 54 intra, 55 post


def _parse_modifiers(uniques: list) -> _ModifierFlags:
    """Flags per distinct modifier string; the last entry is for 'no modifiers' (code -1)."""
    values = [*uniques, ""]
    n = len(values)
    f = _ModifierFlags(pref=np.zeros(n, np.int64), has50=np.zeros(n, bool), has52=np.zeros(n, bool),
                       has53=np.zeros(n, bool), has62=np.zeros(n, bool), has66=np.zeros(n, bool),
                       asst=np.zeros(n, bool), asst_npp=np.zeros(n, bool), split=np.zeros((3, n), bool))
    for i, raw in enumerate(values):
        text = raw if isinstance(raw, str) else ""
        mods = {m for m in text.upper().replace(";", ",").replace(" ", ",").split(",") if m}
        f.pref[i] = 1 if "26" in mods else 2 if "TC" in mods else 3 if "53" in mods else 0
        f.has50[i], f.has52[i], f.has53[i] = "50" in mods, "52" in mods, "53" in mods
        f.has62[i], f.has66[i] = "62" in mods, "66" in mods
        f.asst[i] = bool(mods & set(ASSISTANT_MODIFIERS))
        f.asst_npp[i] = "AS" in mods
        f.split[:, i] = ("56" in mods, "54" in mods, "55" in mods)
    return f


# ------------------------------------------------------------------------------------------------
# Exact amount: round_half_up(sum(component * c) * num / (CENTS_DIVISOR * den_c * den))


def _exact_cents(a: np.ndarray, ca: np.ndarray, b: np.ndarray, cb: np.ndarray,
                 num: np.ndarray, den: np.ndarray, den_c: int) -> np.ndarray:
    """Cents of (a*ca + b*cb) * num / (10**7 * den_c * den), rounded once half-up; exact.

    int64 where the magnitude is safe; the rare rows that could overflow (huge units or stacked
    fractions) are computed with Python integers. Works in place on its own temporaries (a million
    lines: every extra array is 8 MB of fresh memory).
    """
    if len(a) == 0:
        return np.zeros(0, np.int64)
    bound = (_abs_max(a) * float(ca.max()) + _abs_max(b) * float(cb.max())) * float(num.max()) * 2.0
    if bound < _SLOW_PATH_LIMIT:       # the common case: one int64 pass, no per-row estimate
        slow = np.zeros(len(a), bool)
        any_slow = False
    else:
        est = (np.abs(a).astype(np.float64) * ca + np.abs(b).astype(np.float64) * cb) * num * 2.0
        slow = est >= _SLOW_PATH_LIMIT
        any_slow = bool(slow.any())
    if any_slow:
        a_, ca_, b_, cb_, num_ = (np.where(slow, 0, x) for x in (a, ca, b, cb, num))
        den_ = np.where(slow, 1, den)
    else:
        a_, ca_, b_, cb_, num_, den_ = a, ca, b, cb, num, den
    total = a_ * ca_
    if b_.any():
        total += b_ * cb_
    total *= num_
    d = den_ * (CENTS_DIVISOR * den_c)
    negative = total < 0
    out = np.abs(total, out=total)
    out *= 2
    out += d
    d *= 2
    out //= d
    np.negative(out, out=out, where=negative)
    if any_slow:
        for i in np.flatnonzero(slow):
            t = (int(a[i]) * int(ca[i]) + int(b[i]) * int(cb[i])) * int(num[i])
            dd = CENTS_DIVISOR * den_c * int(den[i])
            sign = -1 if t < 0 else 1
            out[i] = sign * ((abs(t) * 2 + dd) // (2 * dd))
    return out.astype(np.int64, copy=False)


def _abs_max(x: np.ndarray) -> float:
    """max(|x|) without an array of absolute values."""
    return float(max(abs(int(x.max())), abs(int(x.min()))))


def _factor_codes(values: Any) -> tuple[np.ndarray, int]:
    codes, uniq = pd.factorize(values)
    return codes.astype(np.int64), len(uniq)


def _combined_key(columns: list[np.ndarray]) -> np.ndarray:
    """Dense ids of the distinct rows of several integer columns (mixed-radix, one factorize)."""
    key = np.zeros(len(columns[0]), np.int64)
    span = 1
    for v in columns:
        v = v.astype(np.int64)
        lo = int(v.min())
        r = int(v.max()) - lo + 1
        if span * r >= 1 << 62:
            key, span = _factor_codes(key)
        key = key * r + (v - lo)
        span *= r
    return _factor_codes(key)[0]


def _group_ids(lines: pd.DataFrame, positions: np.ndarray, provider_key: str, date_codes: np.ndarray) -> np.ndarray:
    """Dense ids of patient + date of service + provider for the given line positions.

    ``date_codes``: the factorized service dates of all lines (already computed for the release).
    """
    provider = provider_key if provider_key in lines.columns else "rendering_npi"
    pat, _ = _factor_codes(lines["patient_id"].array.take(positions))
    prov, n_prov = _factor_codes(lines[provider].array.take(positions))
    d = date_codes[positions].astype(np.int64)
    n_d = int(d.max()) + 2 if len(d) else 1
    key = ((pat + 1) * n_d + (d + 1)) * (n_prov + 1) + prov + 1
    return _factor_codes(key)[0]


def _rank_desc(group: np.ndarray, value: np.ndarray, order: np.ndarray) -> np.ndarray:
    """1-based rank of value (descending, ties by order) within group."""
    if len(group) == 0:
        return np.zeros(0, np.int64)
    idx = np.lexsort((order, -value, group))
    g = group[idx]
    starts = np.r_[True, g[1:] != g[:-1]]
    first = np.maximum.accumulate(np.where(starts, np.arange(len(g)), 0))
    rank = np.empty(len(g), np.int64)
    rank[idx] = np.arange(len(g)) - first + 1
    return rank


# ------------------------------------------------------------------------------------------------
# Adjustment and note texts (bitmasks -> strings, built per distinct combination)

_ADJ = {
    0: "26 row (professional component)", 1: "TC row (technical component)", 2: "53 row (discontinued)",
    3: "bilateral 150%", 4: "bilateral 200% (each side 100%)", 5: "bilateral indicator 2: 100%",
    6: "endoscopy family: amount minus base {base}", 7: "MPPR 50% (rank {rank})",
    8: "imaging MPPR: TC 50%, PC 95% (rank {rank})", 9: "cardiovascular MPPR: TC 75% (rank {rank})",
    10: "ophthalmology MPPR: TC 80% (rank {rank})", 11: "therapy MPPR: PE 50% after the first unit",
    12: "split care {split}%", 13: "co-surgery 62.5%", 14: "assistant at surgery 16%",
    15: "assistant at surgery (NPP, AS) 13.6%", 16: "NPP 85%", 17: "OPPS imaging cap (file price)",
    18: "QP conversion factor", 19: "x {units} units",
}
_NOTE = {
    0: "no RVU release loaded covers the date of service",
    1: "code not in the RVU release in force",
    2: "66 team surgery: priced by report (MAC prices manually)",
    3: "52 reduced services: MAC prices manually; full amount shown, review",
    4: "53 on a code without a 53 RVU row: priced individually by the MAC",
    5: "6th or later procedure of the day: priced by report (shown at 50%)",
    6: "locality {locality} not in the GPCI file of the release; priced {fallback}",
    7: "ZIP not in the ZIP5 crosswalk; priced nationally",
    8: "QP NPI but no QP conversion factor configured for the year; non-QP CF used",
    9: "split care (54/55/56) on a code without global surgery percentages: $0",
}
_FALLBACK = ("nationally", "by the service ZIP")


def _texts(bits: np.ndarray, extra: dict[str, tuple[np.ndarray, list | None]], table: dict[int, str],
           status: np.ndarray | None = None) -> pd.Categorical:
    """Per-line text from a bitmask and template values, built once per distinct combination.

    ``extra``: name -> (int codes per line, values list or None when the codes are the values).
    ``status``: STATUS_ORDER index per line; statuses with a pricing note contribute it.
    """
    n = len(bits)
    has = bits != 0
    if status is not None:
        says = np.array([s in STATUS_PRICING for s in STATUS_ORDER] + [False])
        has |= says[status]
    pos = np.flatnonzero(has)
    if len(pos) == 0:
        return pd.Categorical.from_codes(np.zeros(n, np.int32), categories=[""])
    columns: dict[str, np.ndarray] = {"bits": bits[pos], **{k: v[0][pos] for k, v in extra.items()}}
    if status is not None:
        columns["status"] = status[pos].astype(np.int64)
    key = _combined_key(list(columns.values()))
    first = _first_rows(key, int(key.max()) + 1)
    index = {"": 0}
    combo_code = np.empty(len(first), np.int32)
    for j, f in enumerate(first):
        values = {}
        for k, (arr, vals) in extra.items():
            code = arr[pos[f]]
            values[k] = vals[code] if vals is not None and code >= 0 else code
        parts = []
        if status is not None:
            st = int(status[pos[f]])
            if 0 <= st < len(STATUS_ORDER) and STATUS_ORDER[st] in STATUS_PRICING:
                parts.append(STATUS_PRICING[STATUS_ORDER[st]][1])
        b = int(bits[pos[f]])
        for bit, template in table.items():
            if b >> bit & 1:
                parts.append(template.format(**values))
        text = "; ".join(parts)
        combo_code[j] = index.setdefault(text, len(index))
    codes = np.zeros(n, _code_dtype(len(index)))
    codes[pos] = combo_code[key]
    return pd.Categorical.from_codes(codes, categories=list(index))


def _categorical(codes: np.ndarray, values: list, rows: np.ndarray | None = None) -> pd.Categorical:
    """Text column from int codes (-1 = missing), or from ``codes[rows]`` when ``rows`` is given (codes
    per profile, say). Categorical: a million lines cost one small int array.

    "" is always a category so ``fillna("")`` works on the column.
    """
    cats = list(values)
    if "" not in cats:
        cats.append("")
    small = _code_dtype(len(cats))
    codes = codes.astype(small) if rows is None else codes.astype(small)[rows]
    return pd.Categorical.from_codes(codes, categories=cats, validate=False)


def _code_dtype(n_categories: int) -> type:
    """The code width pandas keeps for that many categories (so no second copy of the codes is made)."""
    for dtype in (np.int8, np.int16, np.int32):
        if n_categories < np.iinfo(dtype).max:
            return dtype
    return np.int64


# ------------------------------------------------------------------------------------------------
# The pricing function


def _date_codes(lines: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Codes of the service dates (-1 = missing) and the distinct dates: factorised once per call."""
    codes, uniq = pd.factorize(lines["service_date"])
    return codes.astype(np.int64), np.asarray(uniq)


def _dense_ids(key: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Dense ids 0..K-1 of non-negative int keys below ``size``, and the key of each id.

    A small key space (the usual case: a few codes x modifiers x releases) is handled with a presence
    table instead of hashing a million keys.
    """
    if size <= 2 * len(key) + (1 << 16):
        seen = np.zeros(size, dtype=bool)
        seen[key] = True
        keys = np.flatnonzero(seen)
        where = np.empty(size, dtype=np.int64)
        where[keys] = np.arange(len(keys))
        return where[key], keys
    ids, keys = pd.factorize(key)
    return ids.astype(np.int64), np.asarray(keys, dtype=np.int64)


def _first_rows(ids: np.ndarray, n_ids: int) -> np.ndarray:
    """Smallest row position of each id (ids cover 0..n_ids-1)."""
    first = np.empty(n_ids, dtype=np.int64)
    first[ids[::-1]] = np.arange(len(ids) - 1, -1, -1)
    return first


class _Gather:
    """``table[ids]`` evaluated only at the positions asked for: a per-line view of a small table."""

    def __init__(self, table: np.ndarray, ids: np.ndarray) -> None:
        self.table, self.ids = table, ids

    def __getitem__(self, pos: Any) -> np.ndarray:
        return self.table[self.ids[pos]]


def _facility(lines: pd.DataFrame, pos_table: pd.DataFrame | None, settings: Settings,
              dates: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Facility rate per line: the decision shared with the POS checks, made once per (POS, date)."""
    from scrubber.checks.place_of_service import facility_setting, load_pos_table

    if pos_table is None:
        pos_table = load_pos_table(Path(settings.rules_dir) / "pos.yaml")
    n = len(lines)
    if n == 0:
        return np.zeros(0, bool)
    p_codes, p_uniq = pd.factorize(lines["place_of_service"])
    d_codes, d_uniq = dates if dates is not None else _date_codes(lines)
    key = p_codes.astype(np.int64)
    key += 1
    key *= len(d_uniq) + 1
    key += d_codes
    key += 1
    pair, keys = _dense_ids(key, (len(p_uniq) + 1) * (len(d_uniq) + 1))
    first = _first_rows(pair, len(keys))
    pos_u = pd.Series(np.asarray(p_uniq, dtype=object)[p_codes[first]], dtype=object)
    pos_u[p_codes[first] < 0] = None
    date_u = pd.Series(np.asarray(d_uniq)[d_codes[first]])
    date_u[d_codes[first] < 0] = pd.NaT
    fac_u = facility_setting(pos_u, date_u, pos_table)
    return pd.Series(fac_u).fillna(False).to_numpy(dtype=bool)[pair]


def annotate_and_price(lines: pd.DataFrame, ref: Any, pos_table: pd.DataFrame | None,
                       settings: Settings | None = None) -> pd.DataFrame:
    """Lines plus the PPRRVU annotations and the expected allowed amount (see module docstring).

    Text annotations are returned as pandas Categoricals (one int array per column: cheap for a
    million lines; "" is always a category so ``fillna("")`` works).
    """
    settings = settings or Settings()
    dates = _date_codes(lines)
    return _price(lines, ref, _facility(lines, pos_table, settings, dates), settings, dates)


def _locality_codes(col: pd.Series) -> tuple[np.ndarray, list]:
    """Factorized, stripped text column; blank counts as missing (-1)."""
    codes, uniq = pd.factorize(col)
    codes = codes.astype(np.int64, copy=False)
    values = [str(u).strip() for u in uniq]
    blank = np.array([v == "" for v in values] + [True])
    codes[blank[codes]] = -1
    return codes, values


@dataclass
class _Profiles:
    """What the line's release, code and modifiers decide, once per distinct (release, code, modifiers).

    Every array has one entry per profile; ``of_line`` maps lines to profiles. Adjustment and note
    bits here are the ones that follow from the profile alone (the rest depend on the locality, the
    NPIs, units and the multiple-procedure ranking and are added per line).
    """

    of_line: np.ndarray
    grow: np.ndarray          # global PPRRVU row, -1 none
    row_pref: np.ndarray      # row of the pricing modifier, -1 none
    has_row: np.ndarray
    in_release: np.ndarray
    status: np.ndarray        # STATUS_ORDER index, -1 unknown
    payable: np.ndarray
    zero_status: np.ndarray
    fee_status: np.ndarray
    row_mod: np.ndarray       # text code of the row's modifier
    mult: np.ndarray
    bil_num: np.ndarray
    bil_den: np.ndarray
    frac_num: np.ndarray      # bilateral x split care x co-surgery x assistant (unreduced)
    frac_den: np.ndarray
    split: np.ndarray         # split-care percentage (0 unless billed with 54/55/56 on a payable line)
    asst_npp: np.ndarray
    adj: np.ndarray
    note: np.ndarray


def _profiles(rel_idx: np.ndarray, h_codes: np.ndarray, h_values: np.ndarray, m_codes: np.ndarray,
              mf: _ModifierFlags, releases: list[_Release], comb: _Combined) -> _Profiles:
    """Per-profile facts (see :class:`_Profiles`); lines gather them with one index each."""
    k_rel, n_h, n_m = len(releases), len(h_values) + 1, len(mf.pref)
    # -1 (no release / missing code / no modifiers) maps to the last slot of each dimension
    rel = np.where(rel_idx < 0, k_rel, rel_idx)
    hc = np.where(h_codes < 0, n_h - 1, h_codes)
    mc = np.where(m_codes < 0, n_m - 1, m_codes)
    of_line, keys = _dense_ids((rel * n_h + hc) * n_m + mc, (k_rel + 1) * n_h * n_m)
    p_rel, p_h, p_m = keys // (n_h * n_m), keys // n_m % n_h, keys % n_m

    table = np.full((k_rel + 1, len(PRICING_MODIFIERS), n_h), -1, np.int64)
    for k, release in enumerate(releases):
        hk = release.hcpcs_index.get_indexer(h_values)
        rows = np.where(hk >= 0, release.rows_by_mod[:, np.maximum(hk, 0)], -1)
        table[k, :, : n_h - 1] = np.where(rows >= 0, rows + comb.row_offset[k], -1)
    pref = mf.pref[p_m]
    row_pref = table[p_rel, pref, p_h]
    grow = np.where(row_pref >= 0, row_pref, table[p_rel, 0, p_h])
    has_row = grow >= 0
    in_release = p_rel < k_rel
    status = comb.status_idx[grow].astype(np.int64)
    priced_status = _STATUS_PRICED[status] & has_row
    has50, has52, has53, has62, has66 = (f[p_m] for f in (mf.has50, mf.has52, mf.has53, mf.has62, mf.has66))
    asst, asst_npp, split_sel = mf.asst[p_m], mf.asst_npp[p_m], mf.split[:, p_m]
    row_mod = comb.text_codes["modifier"][grow]
    code_of = {v: i for i, v in enumerate(comb.text_values["modifier"])}
    n_p = len(keys)
    adj = np.zeros(n_p, np.int64)
    note = np.zeros(n_p, np.int64)
    for bit, m in ((0, "26"), (1, "TC"), (2, "53")):
        if m in code_of:
            adj |= (row_mod == code_of[m]).astype(np.int64) << bit
    no53row = has53 & (pref == 3) & (row_pref < 0) & has_row
    payable = priced_status & ~has66 & ~no53row
    note |= (priced_status & has66).astype(np.int64) << 2
    note |= (payable & has52).astype(np.int64) << 3
    note |= (priced_status & no53row).astype(np.int64) << 4
    note |= (~in_release).astype(np.int64) << 0
    note |= (in_release & ~has_row).astype(np.int64) << 1

    bilat = comb.bilat[grow]
    bil_num = np.ones(n_p, np.int64)
    bil_den = np.ones(n_p, np.int64)
    b150 = payable & has50 & (bilat == 1)
    b200 = payable & has50 & (bilat == 3)
    bil_num[b150], bil_den[b150] = BILATERAL_150
    bil_num[b200], bil_den[b200] = BILATERAL_200
    adj |= b150.astype(np.int64) << 3
    adj |= b200.astype(np.int64) << 4
    adj |= (payable & has50 & (bilat == 2)).astype(np.int64) << 5

    frac_num, frac_den = bil_num.copy(), bil_den.copy()
    split = np.zeros(n_p, np.int64)
    sc = payable & split_sel.any(axis=0)
    if sc.any():
        split[sc] = (comb.split_pct[:, grow[sc]] * split_sel[:, sc]).sum(axis=0)
        frac_num[sc] *= split[sc]
        frac_den[sc] *= 100
        adj[sc] |= (split[sc] > 0).astype(np.int64) << 12
        note[sc] |= (split[sc] == 0).astype(np.int64) << 9
    for mask, (fn, fd), bit in ((payable & has62, CO_SURGERY, 13), (payable & asst & ~asst_npp, ASSISTANT, 14),
                                (payable & asst_npp, ASSISTANT_NPP, 15)):
        frac_num[mask] *= fn
        frac_den[mask] *= fd
        adj[mask] |= np.int64(1) << bit
    return _Profiles(of_line=of_line, grow=grow, row_pref=row_pref, has_row=has_row, in_release=in_release,
                     status=status, payable=payable, zero_status=_STATUS_ZERO[status] & has_row,
                     fee_status=_STATUS_FEE[status] & has_row, row_mod=row_mod, mult=comb.mult_proc[grow],
                     bil_num=bil_num, bil_den=bil_den, frac_num=frac_num, frac_den=frac_den, split=split,
                     asst_npp=asst_npp, adj=adj, note=note)


@dataclass
class _Rates:
    """Fee schedule amounts once per distinct (PPRRVU row, locality, conversion factor); ``of_line`` maps
    lines to rates. Amounts are products at 10**9 per dollar; ``p`` is (non-facility, facility)."""

    of_line: np.ndarray
    grow: np.ndarray
    work: np.ndarray
    pe_nf: np.ndarray
    pe_f: np.ndarray
    mp: np.ndarray
    gw: np.ndarray
    gpe: np.ndarray
    gmp: np.ndarray
    cf: np.ndarray
    in_release: np.ndarray
    p: np.ndarray             # (2, n_rates)
    capped: np.ndarray


def _rates(grow_ids: np.ndarray, grow_keys: np.ndarray, gl: np.ndarray, cf_sel: np.ndarray, cf_of_sel: np.ndarray,
           in_release_of_sel: np.ndarray, comb: _Combined) -> _Rates:
    """Per-rate amounts (see :class:`_Rates`): the formula and the OPPS cap on a few thousand rates.

    ``grow_ids`` (overwritten) index ``grow_keys`` (the distinct PPRRVU rows); ``cf_sel`` indexes
    ``cf_of_sel`` (the conversion factor of the line's release, QP or not).
    """
    n_g, n_l, n_s = len(grow_keys), int(comb.gpci.shape[1]), max(len(cf_of_sel), 1)
    key = grow_ids                     # the caller's temporary, turned into the rate key in place
    key *= n_l
    key += gl
    key += 1
    key *= n_s
    key += cf_sel
    of_line, keys = _dense_ids(key, n_g * n_l * n_s)
    del key
    grow = grow_keys[keys // (n_l * n_s)]
    loc = keys // n_s % n_l - 1
    sel = keys % n_s
    cf = cf_of_sel[sel]
    work, pe_nf, pe_f, mp = comb.work[grow], comb.pe_nf[grow], comb.pe_f[grow], comb.mp[grow]
    gw, gpe, gmp = comb.gpci[0][loc], comb.gpci[1][loc], comb.gpci[2][loc]
    p_nf = (work * gw + pe_nf * gpe + mp * gmp) * cf
    p_f = (work * gw + pe_f * gpe + mp * gmp) * cf
    capped = np.zeros(len(keys), bool)
    elig = np.flatnonzero(comb.opps_eligible[grow] & (loc >= 0) & (grow >= 0))
    if len(elig):
        oi = comb.opps_index.get_indexer(grow[elig] * _OPPS_KEY + loc[elig])
        hit = oi >= 0
        cpos = elig[hit]
        p_nf[cpos] = comb.opps_nf[oi[hit]] * CENTS_DIVISOR
        p_f[cpos] = comb.opps_f[oi[hit]] * CENTS_DIVISOR
        capped[cpos] = True
    return _Rates(of_line=of_line, grow=grow, work=work, pe_nf=pe_nf, pe_f=pe_f, mp=mp, gw=gw, gpe=gpe, gmp=gmp,
                  cf=cf, in_release=in_release_of_sel[sel], p=np.vstack([p_nf, p_f]), capped=capped)


class _Positions:
    """Indexing returns the positions themselves (the intake order used to break ties in rankings)."""

    def __getitem__(self, pos: np.ndarray) -> np.ndarray:
        return pos


def _price(lines: pd.DataFrame, ref: Any, facility: np.ndarray, settings: Settings,
           dates: tuple[np.ndarray, np.ndarray] | None = None) -> pd.DataFrame:
    """The priced frame (module docstring); ``facility`` per line, ``dates`` the lines' :func:`_date_codes`."""
    n = len(lines)

    # --- release per line (decided per distinct date) -------------------------------------------
    d_codes, d_uniq = dates if dates is not None else _date_codes(lines)
    d_series = pd.Series(d_uniq)
    rel_u = ref.assign(d_series, "rvu").to_numpy(dtype=object)
    r_codes_u, rel_names = pd.factorize(rel_u)
    rel_idx = np.append(r_codes_u, -1)[d_codes]       # -1: no release
    releases = [_prepare_release(ref, str(r), settings) for r in rel_names]
    comb = _combine(ref, releases)
    k_rel = len(releases)

    # --- PPRRVU row and everything else the code + modifiers decide (per profile) ----------------
    h_codes, h_uniq = pd.factorize(lines["hcpcs"])
    h_values = np.asarray(h_uniq, dtype=object)
    mod_col = lines["modifiers"] if "modifiers" in lines.columns else pd.Series("", index=lines.index)
    m_codes, m_uniq = pd.factorize(mod_col)
    mf = _parse_modifiers(list(m_uniq))
    prof = _profiles(rel_idx, h_codes, h_values, m_codes, mf, releases, comb)
    del m_codes
    pid = prof.of_line
    payable = prof.payable[pid]
    note_bits = prof.note[pid]
    adj_bits = prof.adj[pid]

    # --- locality: the line's, else the ZIP's, else national --------------------------------------
    gl = np.full(n, -1, np.int64)                            # global locality, -1 national
    src = np.zeros(n, np.int8)                               # 0 national, 1 line, 2 zip
    given = np.zeros(n, bool)
    loc_values: list = []
    l_codes = np.full(n, -1, np.int64)
    if "locality" in lines.columns:
        l_codes, loc_values = _locality_codes(lines["locality"])
        lt = np.full((k_rel + 1, len(loc_values) + 1), -1, np.int64)
        for k, rel in enumerate(releases):
            lk = rel.gpci_index.get_indexer(loc_values) if len(rel.gpci_index) else np.full(len(loc_values), -1)
            lt[k, : len(loc_values)] = np.where(lk >= 0, lk + comb.loc_offset[k], -1)
        gl = lt[rel_idx, l_codes]
        given = l_codes >= 0
        src[gl >= 0] = 1
    zip_given = np.zeros(n, bool)
    if "service_zip" in lines.columns and ref.releases("zip"):
        # only lines still without a locality look at their ZIP
        open_pos = np.flatnonzero(gl < 0)
        z_sub, z_values = _locality_codes(pd.Series(lines["service_zip"].array.take(open_pos)))
        zpos = open_pos[z_sub >= 0]
        z_codes = z_sub[z_sub >= 0]
        zip_given[zpos] = True
        if len(zpos):
            z5 = [v[:5] for v in z_values]
            zrel_u = ref.assign(d_series, "zip").to_numpy(dtype=object)
            latest = max(ref.releases("zip"), key=lambda e: e.effective_from).release
            zrel_u = np.where(pd.isna(zrel_u), latest, zrel_u)
            zr_codes_u, zr_names = pd.factorize(zrel_u)
            zr_idx = np.append(zr_codes_u, -1)[d_codes[zpos]]
            zt = np.full((len(zr_names) + 1, k_rel + 1, len(z5) + 1), -1, np.int64)
            for j, zr in enumerate(zr_names):
                if not ref.has_table("zip5", zr):
                    continue
                zidx, zloc = _zip_table(ref, zr)
                zk = zidx.get_indexer(z5)
                zloc_u = np.where(zk >= 0, zloc[np.maximum(zk, 0)], None) if len(zloc) else np.full(len(z5), None)
                for k, rel in enumerate(releases):
                    lk = rel.gpci_index.get_indexer(zloc_u) if len(rel.gpci_index) else np.full(len(z5), -1)
                    zt[j, k, : len(z5)] = np.where(lk >= 0, lk + comb.loc_offset[k], -1)
            gz = zt[zr_idx, rel_idx[zpos], z_codes]
            hit = gz >= 0
            gl[zpos[hit]] = gz[hit]
            src[zpos[hit]] = 2
    national = gl < 0
    note_bits |= (zip_given & national & ~given).astype(np.int64) << 7
    note_bits |= (given & (national | (src == 2))).astype(np.int64) << 6
    del zip_given, national

    # --- conversion factor: the release's, or its QP factor (one selector per line) ---------------
    cf_sel = rel_idx + 1                                   # 0: no release
    cf_of_sel = np.concatenate([[comb.cf[-1]], comb.cf[:k_rel], comb.cf_qp[:k_rel]])
    in_release_of_sel = np.concatenate([[False], np.ones(2 * k_rel, bool)])
    if settings.qp_npis:
        qp_line = np.zeros(n, bool)
        for c in ("rendering_npi", "billing_npi"):
            if c in lines.columns:
                qp_line |= lines[c].isin(list(settings.qp_npis)).to_numpy(dtype=bool)
        in_release = rel_idx >= 0
        qp_cf = comb.cf_qp[rel_idx]
        known_qp = qp_line & in_release & (qp_cf >= 0)
        cf_sel = np.where(known_qp, cf_sel + k_rel, cf_sel)
        adj_bits |= (known_qp & (qp_cf != comb.cf[rel_idx])).astype(np.int64) << 18
        note_bits |= (qp_line & in_release & (qp_cf < 0)).astype(np.int64) << 8

    # --- fee schedule amounts per unit (products: 10**9 per dollar), once per rate -----------------
    g_of_prof, grow_keys = _dense_ids(prof.grow + 1, len(comb.work) + 1)
    rates = _rates(g_of_prof[pid], grow_keys - 1, gl, cf_sel, cf_of_sel, in_release_of_sel, comb)
    del cf_sel
    rid = rates.of_line
    frid = facility.astype(np.int64)
    frid *= len(rates.cf)
    frid += rid                                            # (facility, rate) in the stacked tables
    p_line = rates.p.ravel()[frid]
    adj_bits |= (rates.capped[rid] & payable).astype(np.int64) << 17

    # --- units -------------------------------------------------------------------------------------
    units = pd.to_numeric(lines["units"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    units = np.nan_to_num(units, nan=1.0)
    units *= UNITS_SCALE
    units_h = np.rint(units, out=units).astype(np.int64)
    del units
    adj_bits |= ((units_h != UNITS_SCALE) & payable).astype(np.int64) << 19

    # --- components a (whole / PC / non-PE) and b (TC / PE), factors in 20ths x units --------------
    a = p_line.copy()
    b = np.zeros(n, np.int64)
    ca = units_h * COMPONENT_DEN
    cb = ca.copy()
    rank_out = np.zeros(n, np.int64)
    mppr_std = np.zeros(n, bool)
    base_code = np.full(n, -1, np.int64)                          # endoscopy base (endo_base value index)
    mult = prof.mult[pid]
    cand = np.flatnonzero(payable & (mult >= 1) & (mult <= 7) & (p_line > 0))
    if len(cand):
        grow = _Gather(prof.grow, pid)
        bil_num, bil_den = _Gather(prof.bil_num, pid), _Gather(prof.bil_den, pid)
        value = np.zeros(n)                                          # ranking value (candidates only)
        value[cand] = p_line[cand].astype(np.float64) * units_h[cand] * bil_num[cand] / bil_den[cand]
        order = _Positions()
        gw, gpe, gmp, cf = (_Gather(x, rid) for x in (rates.gw, rates.gpe, rates.gmp, rates.cf))
        pe_f, pe_nf = _Gather(rates.pe_f, rid), _Gather(rates.pe_nf, rid)
        row_mod = _Gather(prof.row_mod, pid)
        grp = _group_ids(lines, cand, settings.provider_key, d_codes)
        mcat = mult[cand].astype(np.int64)
        mcat = np.where(mcat == 1, 2, mcat)          # pre-1995 indicator 1: standard rule
        _therapy(cand[mcat == 5], grp[mcat == 5], facility, pe_f, pe_nf, gpe, cf, p_line, units_h, order,
                 a, b, cb, adj_bits)
        for cat, tc_f, pc_f, bit in ((4, IMAGING_TC, IMAGING_PC, 8), (6, CARDIO_TC, COMPONENT_DEN, 9),
                                     (7, OPHTH_TC, COMPONENT_DEN, 10)):
            sel = mcat == cat
            if not sel.any():
                continue
            sg = grp[sel]
            multi = np.bincount(sg)[sg] > 1
            if not multi.any():
                continue
            ipos = cand[sel][multi]
            rk = _rank_desc(sg[multi], value[ipos], order[ipos])
            rank_out[ipos] = rk
            lp = ipos[rk > 1]
            # PC part of a global line: its 26 row priced the same way; no 26 row -> all technical
            m = comb.text_values["modifier"]
            is_pc = row_mod[lp] == (m.index("26") if "26" in m else -2)
            is_tc = row_mod[lp] == (m.index("TC") if "TC" in m else -2)
            pr = comb.pc_row[grow[lp]]
            pe_pc = np.where(facility[lp], comb.pe_f[pr], comb.pe_nf[pr])
            p_pc = (comb.work[pr] * gw[lp] + pe_pc * gpe[lp] + comb.mp[pr] * gmp[lp]) * cf[lp]
            a_new = np.where(is_pc, p_line[lp], np.where(~is_tc & (pr >= 0), np.minimum(p_pc, p_line[lp]), 0))
            a[lp], b[lp] = a_new, p_line[lp] - a_new
            ca[lp] = pc_f * units_h[lp]
            cb[lp] = tc_f * units_h[lp]
            adj_bits[lp] |= np.int64(1) << bit
        st_sel = (mcat == 2) | (mcat == 3)
        if st_sel.any():
            _standard_rule(cand[st_sel], grp[st_sel], mcat[st_sel], comb, grow, h_codes, h_values, facility,
                           gw, gpe, gmp, cf, a, value, p_line, units_h, bil_num, bil_den, order, rank_out,
                           mppr_std, adj_bits, note_bits, base_code)
        del value
    del mult, h_codes

    # --- the line's fraction: profile (bilateral, split care, co-surgery, assistant) x MPPR x NPP ----
    f_key = pid * 4
    f_key += mppr_std * 2
    if settings.npp_npis and "rendering_npi" in lines.columns:
        npp = payable & lines["rendering_npi"].isin(list(settings.npp_npis)).to_numpy(dtype=bool) \
            & ~prof.asst_npp[pid]
        adj_bits |= npp.astype(np.int64) << 16
        f_key += npp
        del npp
    f_ids, f_keys = _dense_ids(f_key, len(prof.grow) * 4)
    del f_key
    f_prof, f_mppr, f_npp = f_keys // 4, (f_keys >> 1) & 1, f_keys & 1
    f_num = prof.frac_num[f_prof] * np.where(f_mppr == 1, MPPR_SUBSEQUENT[0], 1) * np.where(f_npp == 1, NPP[0], 1)
    f_den = prof.frac_den[f_prof] * np.where(f_mppr == 1, MPPR_SUBSEQUENT[1], 1) * np.where(f_npp == 1, NPP[1], 1)
    g = np.gcd(f_num, f_den)
    g[g == 0] = 1
    num, den = (f_num // g)[f_ids], (f_den // g)[f_ids]
    del f_ids

    # --- exact cents -------------------------------------------------------------------------------
    den_c = COMPONENT_DEN * UNITS_SCALE
    cents = _exact_cents(a, ca, b, cb, num, den, den_c)
    # before multiple-procedure reductions (basis of the "mppr" amount at risk)
    full_c = cents.copy()
    touched = mppr_std | (rank_out > 1) | (b != 0) | ((adj_bits >> 6 | adj_bits >> 11) & 1).astype(bool)
    touched &= payable
    reduced = np.flatnonzero(touched)
    del touched, a, ca, cb
    if len(reduced):
        num0 = np.where(mppr_std[reduced], num[reduced] * MPPR_SUBSEQUENT[1], num[reduced])
        den0 = np.where(mppr_std[reduced], den[reduced] * MPPR_SUBSEQUENT[0], den[reduced])
        zeros = np.zeros(len(reduced), np.int64)
        full_c[reduced] = _exact_cents(p_line[reduced], COMPONENT_DEN * units_h[reduced], zeros, zeros,
                                       num0, den0, den_c)
    del num, den, b, p_line, mppr_std
    not_payable = ~payable
    known = payable | prof.zero_status[pid]    # payable: amount; not paid by status: 0; else unknown
    cents[not_payable] = 0
    full_c[not_payable] = 0
    del not_payable
    unknown = ~known
    expected = pd.arrays.IntegerArray(cents, unknown)

    # --- output columns (collected, then added in one concat: cheaper than 40 insertions) ---------
    cols: dict[str, Any] = {}
    cols["rvu_release"] = _categorical(rel_idx, [str(r) for r in rel_names])
    cols["locality_used"] = _categorical(comb.loc_code, comb.loc_values, gl)
    cols["locality_source"] = pd.Categorical.from_codes(src, categories=[NATIONAL, "line", "zip"])
    cols["setting"] = pd.Categorical.from_codes(facility.astype(np.int8), categories=["nonfacility", "facility"])
    mod_values = comb.text_values["modifier"]
    pm_values = list(mod_values) + ([""] if "" not in mod_values else [])
    pm_codes = np.where(prof.has_row & (prof.row_mod >= 0), prof.row_mod, pm_values.index(""))
    cols["pricing_modifier"] = pd.Categorical.from_codes(pm_codes.astype(_code_dtype(len(pm_values)))[pid],
                                                         categories=pm_values, validate=False)
    for c in _TEXT_COLUMNS:
        if c != "modifier":
            cols[c] = _categorical(comb.text_codes[c][prof.grow], comb.text_values[c], pid)
    # True / False, None where the code is not in the release (object: `.eq(True)` stays a plain mask)
    tri = np.array([False, True, None], dtype=object)
    cols["nonfacility_na"] = tri[np.where(prof.has_row, comb.nonfac_na[prof.grow], 2)[pid]]
    cols["facility_na"] = tri[np.where(prof.has_row, comb.fac_na[prof.grow], 2)[pid]]
    # per-rate values (NaN where the line has no PPRRVU row / no fee-schedule status), one gather each
    r_row = rates.grow >= 0
    r_fee = (_STATUS_FEE[comb.status_idx[rates.grow].astype(np.int64)] & r_row)
    cols["work_rvu"] = np.where(r_row, rates.work / RVU_SCALE, np.nan)[rid]
    cols["pe_rvu"] = np.where(r_row, np.vstack([rates.pe_nf, rates.pe_f]) / RVU_SCALE, np.nan).ravel()[frid]
    cols["mp_rvu"] = np.where(r_row, rates.mp / RVU_SCALE, np.nan)[rid]
    cols["gpci_work"] = (rates.gw / GPCI_SCALE)[rid]
    cols["gpci_pe"] = (rates.gpe / GPCI_SCALE)[rid]
    cols["gpci_mp"] = (rates.gmp / GPCI_SCALE)[rid]
    cols["conversion_factor"] = np.where(rates.in_release, rates.cf / CF_SCALE, np.nan)[rid]
    allowed = np.where(r_fee, (rates.p * 2 + CENTS_DIVISOR) // (2 * CENTS_DIVISOR) / 100, np.nan)
    cols["allowed_nonfacility"] = allowed[0][rid]
    cols["allowed_facility"] = allowed[1][rid]
    cols["opps_capped"] = (rates.capped & r_fee)[rid]
    del frid, rid
    cols["expected_allowed_cents"] = expected
    expected_allowed = cents / 100
    expected_allowed[unknown] = np.nan
    cols["expected_allowed"] = expected_allowed
    unreduced = full_c / 100
    unreduced[unknown] = np.nan
    cols["unreduced_allowed"] = unreduced
    del full_c, unknown, known
    cols["mppr_rank"] = rank_out
    adj_bits[~payable] &= 0b111
    cols["adjustments"] = _texts(
        adj_bits,
        {"rank": (rank_out, None), "split": (_Gather(prof.split, pid), None),
         "base": (base_code, comb.text_values["endo_base"]), "units": (_UnitsText(units_h), None)}, _ADJ)
    del adj_bits
    cols["pricing_note"] = _texts(note_bits, {"fallback": (_Gather(np.array([0, 0, 1]), src), list(_FALLBACK)),
                                             "locality": (l_codes, loc_values)}, _NOTE,
                                 status=np.where(prof.has_row, prof.status, -1).astype(np.int8)[pid])
    new = pd.DataFrame(cols, index=lines.index, copy=False)
    base = lines.drop(columns=[c for c in cols if c in lines.columns])
    return pd.concat([base, new], axis=1)


class _UnitsText:
    """The {units} value of the adjustment text at the positions asked for: whole units as such, else
    hundredths (as units_h)."""

    def __init__(self, units_h: np.ndarray) -> None:
        self.units_h = units_h

    def __getitem__(self, pos: Any) -> Any:
        u = self.units_h[pos]
        whole = np.where(u % UNITS_SCALE == 0, u // UNITS_SCALE, -1)
        out = np.where(whole >= 0, whole, u)
        return out[()] if out.ndim == 0 else out


def _therapy(tpos: np.ndarray, tgrp: np.ndarray, facility: np.ndarray, pe_f: np.ndarray, pe_nf: np.ndarray,
             gpe: np.ndarray, cf: np.ndarray, p_line: np.ndarray, units_h: np.ndarray, order: np.ndarray,
             a: np.ndarray, b: np.ndarray, cb: np.ndarray, adj_bits: np.ndarray) -> None:
    """MULT PROC 5: the first unit of the day's highest-PE therapy service in full, PE of every other
    unit and service at 50% (in place on the components)."""
    if len(tpos) == 0:
        return
    p_pe = np.where(facility[tpos], pe_f[tpos], pe_nf[tpos]) * gpe[tpos] * cf[tpos]
    tr = _rank_desc(tgrp, p_pe.astype(np.float64), order[tpos])
    full = np.where(tr == 1, np.minimum(units_h[tpos], UNITS_SCALE), 0)
    reduced = units_h[tpos] > full
    a[tpos] = p_line[tpos] - p_pe
    b[tpos] = p_pe
    cb[tpos] = COMPONENT_DEN * full + THERAPY_PE * (units_h[tpos] - full)
    adj_bits[tpos] |= reduced.astype(np.int64) << 11


def _standard_rule(spos: np.ndarray, sg: np.ndarray, mcat: np.ndarray, comb: _Combined, grow: np.ndarray,
                   h_codes: np.ndarray, h_values: np.ndarray, facility: np.ndarray, gw: np.ndarray,
                   gpe: np.ndarray, gmp: np.ndarray, cf: np.ndarray, a: np.ndarray, value: np.ndarray,
                   p_line: np.ndarray, units_h: np.ndarray, bil_num: np.ndarray, bil_den: np.ndarray,
                   order: np.ndarray, rank_out: np.ndarray, mppr_std: np.ndarray, adj_bits: np.ndarray,
                   note_bits: np.ndarray, base_code: np.ndarray) -> None:
    """Endoscopy families (MULT PROC 3), then 100% / 50% ranking of the day's procedures (in place).

    A family is the MULT PROC 3 codes sharing an ENDO BASE, plus the base code itself when billed.
    The highest member is paid in full, every other member its amount minus the base amount (the
    base code itself: 0); the family then ranks as one procedure against the other surgery.
    """
    multi = np.bincount(sg)[sg] > 1
    if not multi.any():
        return
    spos, sg, mcat = spos[multi], sg[multi], mcat[multi]
    base_row = comb.endo_row[grow[spos]]
    base_e = comb.text_codes["endo_base"][grow[spos]].astype(np.int64)   # index into endo_values, -1
    endo_values = comb.text_values["endo_base"]
    is_fam3 = (mcat == 3) & (base_row >= 0) & (base_e >= 0)
    own_by_code = pd.Index(endo_values, dtype=object).get_indexer(np.asarray(h_values, dtype=object))
    own_e = own_by_code[h_codes[spos]]
    ne = len(endo_values) + 1
    fam_keys = pd.Index(np.unique(sg[is_fam3] * ne + base_e[is_fam3]))
    joins = ~is_fam3 & (own_e >= 0) & (fam_keys.get_indexer(sg * ne + own_e) >= 0)
    fam = np.where(is_fam3, base_e, np.where(joins, own_e, -1))
    in_fam = fam >= 0
    proc_value = value[spos].copy()
    if in_fam.any():
        fpos = spos[in_fam]
        fk, _ = pd.factorize(sg[in_fam] * ne + fam[in_fam])
        size = np.bincount(fk)[fk]
        fr = _rank_desc(fk, value[fpos], order[fpos])
        sub = (size > 1) & (fr > 1)
        # the base amount, priced like the line (same locality, setting and CF)
        br = np.where(is_fam3[in_fam], base_row[in_fam], grow[fpos])
        pe_b = np.where(facility[fpos], comb.pe_f[br], comb.pe_nf[br])
        p_base = (comb.work[br] * gw[fpos] + pe_b * gpe[fpos] + comb.mp[br] * gmp[fpos]) * cf[fpos]
        new_a = np.maximum(p_line[fpos] - p_base, 0)
        sp = fpos[sub]
        a[sp] = new_a[sub]
        adj_bits[sp] |= np.int64(1) << 6
        base_code[sp] = fam[in_fam][sub]
        fvalue = np.where(sub, new_a.astype(np.float64) * units_h[fpos] * bil_num[fpos] / bil_den[fpos],
                          value[fpos])
        proc_value[in_fam] = np.bincount(fk, weights=fvalue)[fk]
    # procedures: one per family, one per other line; rank per group by value
    proc_key = np.where(in_fam, sg * ne + fam, -(np.arange(len(spos)) + 1))
    pk, pk_uniq = pd.factorize(proc_key)
    first = np.full(len(pk_uniq), len(spos), np.int64)
    np.minimum.at(first, pk, np.arange(len(spos)))
    p_rank = _rank_desc(sg[first], proc_value[first], order[spos[first]])
    line_rank = p_rank[pk]
    rank_out[spos] = line_rank
    later = line_rank > 1
    mppr_std[spos[later]] = True
    adj_bits[spos[later]] |= np.int64(1) << 7
    note_bits[spos[line_rank > MAX_FULL_PRICE_RANK]] |= np.int64(1) << 5


# ------------------------------------------------------------------------------------------------
# The per-code calculator


def _dec(value: object) -> Decimal | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return Decimal(str(value))


def _text(value: object) -> str | None:
    """A text annotation as str, None when missing (categorical NaN)."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _money(value: float) -> Decimal | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return cents_to_decimal(round(value * 100))


def price_code(ref: Any, hcpcs: str, *, dos: date, modifier: str = "", pos: str | None = None,
               locality: str | None = None, zip5: str | None = None, pos_table: pd.DataFrame | None = None,
               settings: Settings | None = None) -> dict:
    """The ``scrubber price`` calculator: prices the code with ``annotate_and_price``'s implementation.

    Raises ReferenceNotFound when no RVU release covers ``dos``.
    """
    settings = settings or Settings()
    hcpcs = hcpcs.strip().upper()
    modifier = (modifier or "").strip().upper()
    entry = ref.release_for("rvu", dos)
    ts = pd.Timestamp(dos)
    # two lines (non-facility, facility), different patients so no multiple-procedure ranking
    frame = pd.DataFrame({
        "line_uid": [0, 1], "claim_id": ["calc-nf", "calc-f"], "line_number": [1, 1],
        "patient_id": ["calc-nf", "calc-f"], "rendering_npi": ["", ""], "billing_npi": ["", ""],
        "service_date": pd.to_datetime([ts, ts]), "hcpcs": [hcpcs, hcpcs], "modifiers": [modifier, modifier],
        "units": [1.0, 1.0], "place_of_service": [pos or "", pos or ""],
        "locality": [locality, locality], "service_zip": [zip5, zip5],
    })
    priced = _price(frame, ref, np.array([False, True]), settings)
    nf, f = priced.iloc[0], priced.iloc[1]
    facility_here: bool | None = None
    if pos:
        facility_here = bool(_facility(frame.iloc[:1], pos_table, settings)[0])
    chosen = f if facility_here else nf
    rel = _prepare_release(ref, entry.release, settings)

    row_found = _text(chosen["status_code"]) is not None
    desc = work_rvu = pe_nf_rvu = pe_f_rvu = mp_rvu = None
    if row_found:
        pp = ref.table("pprrvu", entry.release)
        pmod = _text(chosen["pricing_modifier"]) or ""
        m = pp[((pp["hcpcs"] == hcpcs) & (pp["modifier"].fillna("") == pmod)).to_numpy()]
        if len(m):
            row = m.iloc[0]
            desc = _text(row["description"])
            work_rvu, pe_nf_rvu, pe_f_rvu, mp_rvu = (_dec(row[c]) for c in ("work_rvu", "pe_rvu_nonfacility",
                                                                          "pe_rvu_facility", "mp_rvu"))
    loc_used = _text(chosen["locality_used"]) or NATIONAL
    loc_name = "national (GPCIs 1.000)"
    if loc_used != NATIONAL:
        k = rel.gpci_index.get_indexer([loc_used])[0]
        if k >= 0:
            loc_name = str(rel.locality_name[k]) if rel.locality_name[k] is not None else loc_used

    mue_value = mai = mue_release = None
    mue_rel = ref.assign(pd.Series([ts]), "mue").iloc[0]
    mue_rel = mue_rel if isinstance(mue_rel, str) else None
    if mue_rel and ref.has_table("mue", mue_rel):
        mue_release = mue_rel
        mt = ref.table("mue", mue_rel)
        hit = mt[mt["hcpcs"] == hcpcs]
        if len(hit):
            mue_value, mai = int(hit["mue_value"].iloc[0]), int(hit["mai"].iloc[0])

    ptp_edits: list[dict] = []
    ptp_release = ref.assign(pd.Series([ts]), "ptp").iloc[0]
    ptp_release = ptp_release if isinstance(ptp_release, str) else None
    if ptp_release and ref.has_table("ptp", ptp_release):
        ptp_edits = _ptp_edits(ref.table("ptp", ptp_release), hcpcs, ts, settings.ptp_deletion_inclusive)
    else:
        ptp_release = None

    def g(x: float) -> Decimal:
        return (Decimal(round(x * GPCI_SCALE)) / GPCI_SCALE).quantize(Decimal("0.001"))

    status = _text(chosen["status_code"])
    anes_cf = None
    if status == "J":
        anes_cf = rel.anes_cf.get(loc_used) if loc_used != NATIONAL else None
        if anes_cf is None:
            factors = load_conversion_factors(Path(settings.rules_dir)).anesthesia.get(rel.year, {})
            anes_cf = factors.get("nonqp")
    return {
        "hcpcs": hcpcs,
        "modifier": modifier,
        "pricing_modifier": _text(chosen["pricing_modifier"]) or "",
        "description": desc,
        "date_of_service": dos.isoformat(),
        "release": entry.release,
        "status_code": status,
        "status_meaning": STATUS_MEANING.get(status) if status else "code not in the RVU release in force",
        "locality": loc_used,
        "locality_source": _text(chosen["locality_source"]),
        "locality_name": loc_name,
        "work_rvu": work_rvu,
        "pe_rvu_nonfacility": pe_nf_rvu,
        "pe_rvu_facility": pe_f_rvu,
        "mp_rvu": mp_rvu,
        "gpci_work": g(chosen["gpci_work"]),
        "gpci_pe": g(chosen["gpci_pe"]),
        "gpci_mp": g(chosen["gpci_mp"]),
        "conversion_factor": (Decimal(round(chosen["conversion_factor"] * CF_SCALE)) / CF_SCALE
                              ).quantize(Decimal("0.0001")),
        "nonfacility_amount": _money(nf["allowed_nonfacility"]),
        "facility_amount": _money(nf["allowed_facility"]),
        "nonfacility_expected": _money(nf["expected_allowed"]),
        "facility_expected": _money(f["expected_allowed"]),
        "pos": pos,
        "setting": (("facility" if facility_here else "nonfacility") if pos else None),
        "pos_amount": _money(chosen["expected_allowed"]) if pos else None,
        "adjustments": _text(chosen["adjustments"]) or "",
        "pricing_note": _text(chosen["pricing_note"]) or "",
        "global_days": _text(chosen["global_days"]),
        "pctc_indicator": _text(chosen["pctc_indicator"]),
        "mult_proc": _text(chosen["mult_proc"]),
        "bilat_surg": _text(chosen["bilat_surg"]),
        "asst_surg": _text(chosen["asst_surg"]),
        "co_surg": _text(chosen["co_surg"]),
        "team_surg": _text(chosen["team_surg"]),
        "nonfacility_na": None if pd.isna(chosen["nonfacility_na"]) else bool(chosen["nonfacility_na"]),
        "facility_na": None if pd.isna(chosen["facility_na"]) else bool(chosen["facility_na"]),
        "opps_capped": bool(chosen["opps_capped"]),
        "anesthesia_cf": anes_cf,
        "mue_value": mue_value,
        "mue_adjudication_indicator": mai,
        "mue_release": mue_release,
        "ptp_edits": ptp_edits,
        "ptp_release": ptp_release,
    }


def _ptp_edits(ptp: pd.DataFrame, hcpcs: str, ts: pd.Timestamp, deletion_inclusive: bool) -> list[dict]:
    """PTP edits involving the code and active on the date (billing-domain 4.2)."""
    c1 = ptp["column_1"] == hcpcs
    c2 = ptp["column_2"] == hcpcs
    sub = ptp[c1 | c2]
    eff = pd.to_datetime(sub["effective_date"])
    dele = pd.to_datetime(sub["deletion_date"])
    active = (eff <= ts) & (dele.isna() | ((dele >= ts) if deletion_inclusive else (dele > ts)))
    sub = sub[active.to_numpy()]

    def d(x: object) -> str | None:
        return None if pd.isna(x) else pd.Timestamp(x).date().isoformat()

    return [{"column_1": r.column_1, "column_2": r.column_2,
             "role": "column_1" if r.column_1 == hcpcs else "column_2",
             "modifier_indicator": str(r.modifier_indicator), "effective_date": d(r.effective_date),
             "deletion_date": d(r.deletion_date), "rationale": r.rationale}
            for r in sub.sort_values(["column_1", "column_2"]).itertuples(index=False)]


# ------------------------------------------------------------------------------------------------
# Amount at risk per flag


def amount_at_risk(flags: pd.DataFrame, lines: pd.DataFrame) -> pd.Series:
    """Dollars the payer would not pay if the claim went out as is, one value per flag.

    By ``amount_basis`` (the flag's, else ``line``):
    - ``line``: the flagged line's expected allowed (MUE MAI 1 denies the whole line; MAI 2/3 deny all
      units of the code on the claim, which is the line's amount too), for deny and review flags;
    - ``pos_difference``: (non-facility - facility) x units when the billed setting is facility;
    - ``mppr``: the multiple-procedure reduction the charge does not already reflect:
      max(0, min(charge, unreduced) - expected);
    - ``none``: 0.
    ``info`` flags carry 0 whatever the basis (POS-FACILITY-RATE states its dollar difference in the
    message instead), so the morning list sorted by dollars starts with what will really be lost.
    Unknown amounts (NaN expected allowed) count as 0. Exact cents, then
    dollars. Summaries count each line at most once (the max over its flags; see report.summary).
    """
    if len(flags) == 0:
        return pd.Series([], index=flags.index, dtype=np.float64)
    uid = pd.Index(lines["line_uid"].to_numpy())
    if not uid.is_unique:
        uid = uid.drop_duplicates(keep="first")
        first = ~pd.Index(lines["line_uid"].to_numpy()).duplicated(keep="first")
        lines = lines[first]
    idx = uid.get_indexer(flags["line_uid"].to_numpy())
    found = idx >= 0
    ii = np.maximum(idx, 0)

    def take(c: str, default: float = np.nan) -> np.ndarray:
        if c not in lines.columns or len(lines) == 0:
            return np.full(len(flags), default)
        col = lines[c]
        v = (col.to_numpy(dtype=np.float64, na_value=np.nan) if pd.api.types.is_numeric_dtype(col.dtype)
             else pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan))[ii]
        return np.where(found, v, default)

    exp_c = take("expected_allowed_cents")
    exp_c = np.nan_to_num(exp_c, nan=0.0).astype(np.int64)
    units_h = np.rint(np.nan_to_num(take("units", 1.0), nan=1.0) * UNITS_SCALE).astype(np.int64)
    nf_c = np.rint(np.nan_to_num(take("allowed_nonfacility"), nan=0.0) * 100).astype(np.int64)
    f_c = np.rint(np.nan_to_num(take("allowed_facility"), nan=0.0) * 100).astype(np.int64)
    unred_c = np.rint(np.nan_to_num(take("unreduced_allowed"), nan=0.0) * 100).astype(np.int64)
    charge = take("charge_amount")
    charge_c = np.full(len(flags), np.iinfo(np.int64).max, dtype=np.int64)   # no charge: no cap
    has_charge = ~np.isnan(charge)
    charge_c[has_charge] = np.rint(charge[has_charge] * 100).astype(np.int64)
    fac = np.zeros(len(flags), bool)
    if "setting" in lines.columns and len(lines):
        fac = found & (lines["setting"] == "facility").to_numpy(dtype=bool, na_value=False)[ii]

    basis = (flags["amount_basis"] if "amount_basis" in flags.columns
             else pd.Series("line", index=flags.index)).fillna("line").astype(str).to_numpy()
    severity = (flags["severity"] if "severity" in flags.columns
                else pd.Series("deny", index=flags.index)).astype(str).to_numpy()
    line_c = exp_c
    diff = np.maximum(nf_c - f_c, 0)
    pos_c = np.where(fac, (diff * units_h * 2 + UNITS_SCALE) // (2 * UNITS_SCALE), 0)
    mppr_c = np.maximum(np.minimum(charge_c, unred_c) - exp_c, 0)
    risk = np.select([basis == "line", basis == "pos_difference", basis == "mppr"], [line_c, pos_c, mppr_c], 0)
    risk = np.where(severity == "info", 0, risk)   # info is never money at risk: it must not top the worklist
    risk = np.where(found, risk, 0)
    return pd.Series(risk / 100, index=flags.index, dtype=np.float64)
