"""Realistic synthetic Medicare professional claims, with an answer key of seeded problems.

Tests, the demo and the benchmarks need claim files that look like a practice's nightly batch and
whose expected scrub result is known. This module draws them from the REAL codes of a PPRRVU release
(and, when given, the real NCCI PTP and MUE tables), in two parts:

* **clean claims** (vectorised, a million lines in seconds): practice-like encounters per specialty
  (office visits with injections, drugs and X-rays; hospital and ED visits; radiology reads with
  ``26``; surgery and endoscopy in facilities; therapy). They are built to raise no deny/review flag of
  any rule family: only status A codes (E for drugs), POS consistent with the NA indicators and E/M
  setting, ``26`` only on PC/TC-1 codes, units within the MUE, no duplicates, no frequency-limited codes,
  ``25`` on an E/M exactly when a same-day service needs it, 010/090 procedures only in single-visit
  patient/provider relationships (no post-op or day-before E/M), and no unbypassed PTP pair among
  same-day lines of one provider (a vectorised anti-join against the PTP table; offending lines get
  an ``XS`` when clinically plausible, else are dropped).
* **seeded scenarios** (small Python loops, a few per cent of claims): one problem each, on its own
  patient, recorded in ``answer_key`` with family, severity and rule id (per the rules catalog). Flags
  that the seeded lines imply by the tables (e.g. the PTP edit of ``99213`` with ``20553``) are
  derived from the tables and listed too, so the key is the complete expected set of deny/review flags.

Patients, claim ids and NPIs are synthetic (NPIs carry valid check digits, nothing else).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from scrubber.store import Store

log = logging.getLogger(__name__)

#: The claim input contract (architecture 3.2), in the order the files are written.
CLAIM_COLUMNS: list[str] = [
    "claim_id", "line_number", "patient_id", "rendering_npi", "billing_npi", "payer", "service_date",
    "hcpcs", "modifiers", "units", "charge_amount", "place_of_service", "locality", "service_zip",
    "diagnosis_codes",
]
ANSWER_KEY_COLUMNS: list[str] = ["claim_id", "line_number", "rule_family", "severity", "rule_id", "note"]

#: rule id -> (family, default severity), as agreed in the rules catalog (rules/catalog/*.yaml).
RULES: dict[str, tuple[str, str]] = {
    "MUE-LINE": ("units", "deny"),
    "MUE-DOS": ("units", "deny"),
    "PTP-IND0": ("bundling", "deny"),
    "PTP-IND1": ("bundling", "deny"),
    "PTP-BYPASS": ("bundling", "info"),
    "BUNDLED-STATUS": ("bundling", "deny"),
    "BUNDLED-SUPPLY": ("bundling", "deny"),
    "STATUS-T-BUNDLED": ("bundling", "deny"),
    "ADDON-NO-PRIMARY": ("bundling", "deny"),
    "EM-NO25": ("modifier25", "deny"),
    "EM-25-NOPROC": ("modifier25", "review"),
    "MOD25-NON-EM": ("modifier25", "deny"),
    "EM-NO57": ("modifier25", "review"),
    "EM-IN-POSTOP": ("modifier25", "review"),
    "POS-INVALID": ("place_of_service", "deny"),
    "POS-NF-NA": ("place_of_service", "review"),
    "POS-FAC-NA": ("place_of_service", "deny"),
    "POS-INCIDENT-TO-HOSP": ("place_of_service", "deny"),
    "POS-EM-SETTING": ("place_of_service", "review"),
    "FREQ-LIMIT": ("frequency", "deny"),
    "FREQ-NEW-PATIENT": ("frequency", "review"),
    "CODE-UNKNOWN": ("code_status", "deny"),
    "CODE-NOT-PAYABLE": ("code_status", "deny"),
    "MOD-PCTC-INVALID": ("code_status", "deny"),
    "MOD-BILAT-INVALID": ("code_status", "deny"),
    "MOD-ASST-NOT-PAID": ("code_status", "deny"),
    "DUP-BATCH": ("duplicate", "deny"),
}

#: Codes under a Medicare frequency limit (billing-domain 8.3) or a common annual-screening limit.
#: Clean lines never use them, so no patient's history can reach a limit by chance.
FREQUENCY_LIMITED_CODES: frozenset[str] = frozenset({
    "G0402", "G0438", "G0439", "G0101", "Q0091", "G0104", "G0105", "G0121", "20552", "20553",
    "77067", "77063", "77080", "G0442", "G0443", "G0444", "G0446", "G0447", "G0102", "G0103", "82270",
    "G0328", "80061", "99497", "99498",
})
#: Local anaesthetics that rules/bundled.yaml bundles into injection procedures (never on clean lines).
BUNDLED_SUPPLY_CODES: frozenset[str] = frozenset({"J2001", "J2002", "J2003", "J2004"})

FACILITY_POS: frozenset[str] = frozenset({"02", "19", "21", "22", "23", "24", "26", "31", "34", "41", "42",
                                          "51", "52", "53", "56", "61"})
HOSPITAL_POS: frozenset[str] = frozenset({"19", "21", "22", "23"})
NCCI_ASSOCIATED: frozenset[str] = frozenset(
    {"E1", "E2", "E3", "E4", "FA", "TA", "LT", "RT", "LC", "LD", "RC", "LM", "RI", "24", "25", "57", "58", "78",
     "79", "27", "59", "91", "XE", "XS", "XP", "XU"}
    | {f"F{i}" for i in range(1, 10)} | {f"T{i}" for i in range(1, 10)})
X_MODIFIERS: frozenset[str] = frozenset({"59", "XE", "XS", "XP", "XU"})
#: Modifiers that make a repeated code on another line legitimate (billing-domain 9.4).
DUPLICATE_DISTINGUISHERS: frozenset[str] = frozenset({"76", "77", "91"}) | X_MODIFIERS
ANATOMIC_FAMILIES: tuple[frozenset[str], ...] = (
    frozenset({"LT", "RT"}), frozenset({"E1", "E2", "E3", "E4"}),
    frozenset({"FA"} | {f"F{i}" for i in range(1, 10)}), frozenset({"TA"} | {f"T{i}" for i in range(1, 10)}),
    frozenset({"LC", "LD", "LM", "RC", "RI"}),
)


def _code_range(first: int, last: int) -> list[str]:
    return [str(c) for c in range(first, last + 1)]


OFFICE_EM: frozenset[str] = frozenset(_code_range(99202, 99205) + _code_range(99211, 99215))
HOSPITAL_EM: frozenset[str] = frozenset(_code_range(99221, 99223) + _code_range(99231, 99236) + ["99238", "99239"])
ED_EM: frozenset[str] = frozenset(_code_range(99281, 99285))
#: E/M codes as in rules/em_codes.yaml (billing-domain 6.2).
EM_CODES: frozenset[str] = (OFFICE_EM | HOSPITAL_EM | ED_EM | {"99291", "99292"}
                            | frozenset([*_code_range(99304, 99310), "99315", "99316"])
                            | frozenset(["99341", "99342", "99344", "99345", *_code_range(99347, 99350)])
                            | {"G0402", "G0438", "G0439"})

#: Real (ZIP5, MAC-locality) pairs from the October 2025 ZIP5 file; all have GPCI2025 rows.
PRACTICE_LOCATIONS: tuple[tuple[str, str], ...] = (
    ("94110", "01112-05"), ("10001", "13202-01"), ("60601", "06102-16"), ("77030", "04412-18"),
    ("33136", "09102-04"), ("02115", "14212-01"), ("85004", "03102-00"), ("98101", "02402-02"),
    ("30303", "10212-01"), ("48201", "08202-01"), ("35203", "10112-00"), ("68102", "05402-00"),
    ("55455", "06202-00"), ("80202", "04112-01"), ("37203", "10312-35"), ("19104", "12502-01"),
    ("97201", "02302-01"), ("27710", "11502-00"), ("53226", "06302-00"),
)
#: The subset of PRACTICE_LOCATIONS whose ZIPs are in the demo's ZIP5 sample (data/reference/sample-rvu25d).
SAMPLE_LOCATIONS: tuple[tuple[str, str], ...] = (
    ("10001", "13202-01"), ("94110", "01112-05"), ("53226", "06302-00"), ("99501", "02102-01"),
)

# --- practice mix ----------------------------------------------------------------------------------
#
# An item is what a clinician does in one go: "96372 J1100-JZ*4-10" = an injection administration
# line plus a drug line (modifier JZ, 4 to 10 units). "-RT|LT" draws a side. "*N-M" draws units.

_OFFICE_EST = (("99212", 15), ("99213", 45), ("99214", 32), ("99215", 8))
_NEW_FOR_EST = {"99212": "99202", "99213": "99203", "99214": "99204", "99215": "99205"}
_HOSPITAL_VISITS = (("99221", 5), ("99222", 10), ("99223", 15), ("99231", 15), ("99232", 30), ("99233", 15),
                    ("99238", 6), ("99239", 4))
_STAY_ADMIT = (("99221", 20), ("99222", 40), ("99223", 40))
_STAY_DAILY = (("99231", 30), ("99232", 50), ("99233", 20))
_STAY_DISCHARGE = (("99238", 60), ("99239", 40))
_ED_VISITS = (("99282", 10), ("99283", 30), ("99284", 35), ("99285", 25))


@dataclass(frozen=True)
class Encounter:
    """One kind of visit: where, which E/M anchors it (if any), and the services added to it."""

    name: str
    specialty: str
    weight: float                                  # share of the specialty's patient relationships
    pos: tuple[tuple[str, float], ...]
    anchor: tuple[tuple[str, float], ...]          # E/M codes (empty: no visit code)
    items: tuple[tuple[str, float], ...]
    mean_items: float
    max_items: int = 6
    episodic: bool = False                         # one claim per patient/provider (010/090 allowed)
    dx: tuple[str, ...] = ()
    stay: bool = False                             # an inpatient stay: one visit line per day, one claim


_FM_DX = ("E119", "I10", "E785", "J069", "M5450", "R059", "J209", "N390", "K219", "F419", "E039", "D649",
          "E538", "M797")
_ORTHO_DX = ("M1711", "M1712", "M25561", "M25562", "M7541", "M7542", "M5416", "M1611", "M1612", "G5601",
             "M65311", "M7061")
_DERM_DX = ("L570", "L821", "D485", "L720", "B079", "D225", "L988", "D2239")
_CARD_DX = ("I2510", "I480", "I10", "I5022", "R0789", "I350", "R002", "I739")
_ED_DX = ("R0789", "S0181XA", "R1084", "J189", "S61411A", "N390", "R55", "S0990XA", "R519", "J45901")
_HOSP_DX = ("J189", "I5023", "N179", "A419", "J441", "I639", "E871", "K8590", "N390")
_RAD_DX = ("R0789", "M5450", "M25561", "R1084", "J189", "R519", "R0602", "R109", "N2889")
_GI_DX = ("K635", "D126", "K921", "K219", "R1013", "K5730", "D500")
_PT_DX = ("M5450", "M25561", "M6281", "R262", "M1711", "M7541", "Z96651")

ENCOUNTERS: tuple[Encounter, ...] = (
    Encounter("fm_office", "family_medicine", 0.86, (("11", 1.0),), _OFFICE_EST, (
        ("96372 J1100-JZ*4-10", 3), ("96372 J3301*1-4", 2), ("96372 J1885*1-2", 2), ("96372 J0696-JZ*1-4", 1.5),
        ("96372 J3420", 1.5), ("96372 J1200", 0.5), ("96372 J2550", 0.5), ("96372 J0897-JZ*60", 0.5),
        ("96372 J0561*24", 0.3), ("93000", 3), ("71046", 2), ("72100", 1), ("94010", 1), ("94060", 0.5),
        ("99406", 1), ("69210", 1), ("11102", 0.5), ("20610-RT|LT", 1), ("96127", 0.5), ("11720", 0.3),
    ), mean_items=4.6, dx=_FM_DX),
    Encounter("fm_minor_procedure", "family_medicine", 0.14, (("11", 1.0),), _OFFICE_EST, (
        ("10060", 2), ("11200", 1), ("17110", 2), ("17000", 1), ("12031", 0.5), ("12001", 1), ("11102", 1),
        ("20610-RT|LT", 1), ("69210", 1), ("10120", 0.5), ("11730", 0.3), ("93000", 1),
    ), mean_items=3.4, episodic=True, dx=_FM_DX),
    Encounter("cardiology_office", "cardiology", 0.8, (("11", 1.0),), _OFFICE_EST, (
        ("93000", 3), ("93306", 2), ("93880", 1), ("93970", 0.5), ("93922", 0.5), ("71046", 1), ("78452", 0.5),
        ("93971-RT|LT", 0.3),
    ), mean_items=4.2, dx=_CARD_DX),
    Encounter("cardiology_hospital_reads", "cardiology", 0.2, (("21", 0.6), ("22", 0.4)), (), (
        ("93010", 3), ("93306-26", 2), ("93880-26", 1), ("93970-26", 0.5), ("78452-26", 0.5),
    ), mean_items=3.0, dx=_CARD_DX),
    Encounter("ortho_office", "orthopedics", 0.8, (("11", 1.0),), _OFFICE_EST, (
        ("20610-RT|LT J3301*1-4", 3), ("20610-RT|LT", 1.5), ("20611-RT|LT", 1), ("20605-RT|LT", 1),
        ("20550", 0.7), ("20551", 0.5), ("73560-RT|LT", 2), ("73562-RT|LT", 1), ("73030-RT|LT", 1),
        ("73110-RT|LT", 1), ("73630-RT|LT", 1), ("72100", 1), ("73502-RT|LT", 0.5), ("73610-RT|LT", 0.5),
        ("20610-RT|LT J7325-JZ*48", 0.5), ("20610-RT|LT J7323-JZ", 0.3), ("96372 J1100-JZ*4-10", 0.5),
    ), mean_items=3.8, dx=_ORTHO_DX),
    Encounter("ortho_surgery", "orthopedics", 0.2, (("22", 0.65), ("21", 0.35)), (), (
        ("29881-RT|LT", 3), ("29880-RT|LT", 1), ("29827-RT|LT", 1), ("27447-RT|LT", 2), ("27130-RT|LT", 1.5),
        ("23412-RT|LT", 0.5), ("64721-RT|LT", 1), ("25111-RT|LT", 0.3),
    ), mean_items=1.3, max_items=3, episodic=True, dx=_ORTHO_DX),
    Encounter("derm_office", "dermatology", 0.6, (("11", 1.0),), _OFFICE_EST, (
        ("11102", 3), ("11104", 1), ("11300", 1), ("11301", 1), ("11305", 0.5), ("11306", 0.3), ("11310", 0.3),
    ), mean_items=5.0, dx=_DERM_DX),
    Encounter("derm_procedure", "dermatology", 0.4, (("11", 1.0),), _OFFICE_EST, (
        ("17000", 3), ("17110", 2), ("11400", 1), ("11401", 1), ("11402", 0.5), ("11200", 1), ("11102", 2),
        ("10060", 0.5), ("11440", 0.5), ("11420", 0.3),
    ), mean_items=3.8, episodic=True, dx=_DERM_DX),
    Encounter("ed_visit", "emergency_medicine", 1.0, (("23", 1.0),), _ED_VISITS, (
        ("71046-26", 3), ("70450-26", 2), ("74177-26", 1.5), ("93010", 2), ("12001", 1), ("12002", 0.5),
        ("12011", 0.5), ("72100-26", 0.5), ("73610-26-RT|LT", 0.5), ("71045-26", 1), ("74176-26", 0.5),
    ), mean_items=4.4, episodic=True, dx=_ED_DX),
    Encounter("hospital_visit", "hospitalist", 0.5, (("21", 0.8), ("22", 0.2)), _HOSPITAL_VISITS, (
        ("93010", 1),
    ), mean_items=0.3, max_items=1, dx=_HOSP_DX),
    Encounter("hospital_stay", "hospitalist", 0.5, (("21", 1.0),), _STAY_ADMIT + _STAY_DAILY + _STAY_DISCHARGE, (),
              mean_items=2.5, max_items=7, episodic=True, dx=_HOSP_DX, stay=True),
    Encounter("radiology_hospital", "radiology", 0.7, (("22", 0.5), ("21", 0.25), ("23", 0.25)), (), (
        ("71046-26", 3), ("71045-26", 2), ("70450-26", 2), ("74177-26", 2), ("74176-26", 1), ("72148-26", 1),
        ("70551-26", 1), ("76700-26", 1), ("76705-26", 1), ("73721-26-RT|LT", 1), ("93971-26-RT|LT", 0.5),
        ("72100-26", 1), ("73560-26-RT|LT", 1), ("76770-26", 0.5),
    ), mean_items=3.7, dx=_RAD_DX),
    Encounter("radiology_office", "radiology", 0.3, (("11", 1.0),), (), (
        ("71046", 3), ("72100", 1), ("73560-RT|LT", 1), ("76700", 1), ("76856", 1), ("72148", 1),
        ("74177", 1), ("70551", 1), ("76536", 0.5), ("73721-RT|LT", 0.5),
    ), mean_items=3.4, dx=_RAD_DX),
    Encounter("gi_office", "gastroenterology", 0.4, (("11", 1.0),), _OFFICE_EST, (
        ("96372 J2405*4-8", 0.3), ("96127", 0.2),
    ), mean_items=0.3, max_items=1, dx=_GI_DX),
    Encounter("gi_endoscopy", "gastroenterology", 0.6, (("22", 1.0),), (), (
        ("45380", 3), ("45385", 2), ("45378", 2), ("43239", 2), ("43235", 1), ("45384", 0.5),
    ), mean_items=2.5, max_items=3, episodic=True, dx=_GI_DX),
    Encounter("therapy", "physical_therapy", 1.0, (("11", 1.0),), (), (
        ("97110-GP*1-3", 3), ("97140-GP*1-2", 2), ("97112-GP*1-2", 2), ("97530-GP*1-2", 2), ("97161-GP", 0.3),
        ("97162-GP", 0.3), ("97116-GP*1-2", 0.5), ("G0283-GP", 1),
    ), mean_items=5.0, dx=_PT_DX),
)

#: Share of patient relationships per specialty.
SPECIALTIES: dict[str, float] = {
    "family_medicine": 0.34, "cardiology": 0.07, "orthopedics": 0.11, "dermatology": 0.07,
    "emergency_medicine": 0.10, "hospitalist": 0.10, "radiology": 0.11, "gastroenterology": 0.05,
    "physical_therapy": 0.05,
}
#: Relative size of specialties in the provider roster (radiologists read for many patients).
_PROVIDER_SHARE: dict[str, float] = {
    "family_medicine": 0.34, "cardiology": 0.08, "orthopedics": 0.12, "dermatology": 0.07,
    "emergency_medicine": 0.12, "hospitalist": 0.11, "radiology": 0.06, "gastroenterology": 0.05,
    "physical_therapy": 0.05,
}
_DRUG_UNIT_PRICE = 4.5     # charge per drug unit when none is known (drugs are not RVU-priced)


@dataclass
class GeneratedClaims:
    """Claim lines (architecture 3.2 columns) and the expected deny/review flags on them."""

    claims: pd.DataFrame
    answer_key: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)


# --- small helpers ---------------------------------------------------------------------------------

def npi_with_check_digit(base9: np.ndarray) -> np.ndarray:
    """10-digit NPIs (strings) from 9-digit bases: Luhn check digit over '80840' + base (constant 24)."""
    base9 = np.asarray(base9, dtype=np.int64)
    digits = (base9[:, None] // 10 ** np.arange(8, -1, -1)) % 10           # left to right
    doubled = digits[:, 0:9:2] * 2
    total = (doubled - 9 * (doubled > 9)).sum(axis=1) + digits[:, 1:9:2].sum(axis=1) + 24
    check = (10 - total % 10) % 10
    return np.char.add(np.char.zfill(base9.astype(str), 9), check.astype(str))


@dataclass(frozen=True)
class _LineSpec:
    hcpcs: str
    modifiers: tuple[str, ...]      # fixed modifiers
    side: bool                      # draw RT/LT
    units: tuple[int, int]


def _parse_item(spec: str) -> tuple[_LineSpec, ...]:
    out = []
    for token in spec.split():
        units = (1, 1)
        if "*" in token:
            token, u = token.split("*")
            lo, _, hi = u.partition("-")
            units = (int(lo), int(hi or lo))
        parts = token.split("-")
        side = parts[-1] == "RT|LT"
        mods = tuple(p for p in parts[1:] if p != "RT|LT")
        out.append(_LineSpec(parts[0], mods, side, units))
    return tuple(out)


class _Reference:
    """Lookups the generator needs from the canonical PPRRVU / PTP / MUE frames."""

    _RVU_FIELDS = ("status_code", "not_used_for_medicare", "pctc_indicator", "global_days", "nonfacility_na",
                   "facility_na", "bilat_surg", "asst_surg")

    def __init__(self, pprrvu: pd.DataFrame, ptp: pd.DataFrame | None, mue: pd.DataFrame | None,
                 start: date, end: date) -> None:
        rvu = pprrvu.drop_duplicates(["hcpcs", "modifier"], keep="last")
        cols = {c: rvu[c].to_numpy(dtype=object) for c in self._RVU_FIELDS if c in rvu}
        cols["_nf"] = pd.to_numeric(rvu["total_nonfacility"].astype(str), errors="coerce").fillna(0.0).to_numpy()
        cols["_f"] = pd.to_numeric(rvu["total_facility"].astype(str), errors="coerce").fillna(0.0).to_numpy()
        names = list(cols)
        self.rows: dict[tuple[str, str], dict] = {
            (h, m): dict(zip(names, values, strict=True))
            for h, m, *values in zip(rvu["hcpcs"].astype(str).to_numpy(dtype=object),
                                     rvu["modifier"].fillna("").astype(str).to_numpy(dtype=object),
                                     *cols.values(), strict=True)}
        self.codes: frozenset[str] = frozenset(h for h, _m in self.rows)
        cf = pd.to_numeric(rvu["conversion_factor"].astype(str), errors="coerce") if "conversion_factor" in rvu \
            else pd.Series(dtype=float)
        self.cf = float(cf.dropna().iloc[0]) if cf.notna().any() else 32.3465
        self.start, self.end = start, end
        self.mue: dict[str, tuple[int, int]] = {}
        if mue is not None and len(mue):
            self.mue = {str(h): (int(v), int(a)) for h, v, a in
                        zip(mue["hcpcs"], mue["mue_value"], mue["mai"], strict=True)}
        self.has_ptp = False
        self._by_col1: dict[str, dict[str, list[tuple[pd.Timestamp, pd.Timestamp, str]]]] = {}
        if ptp is not None and len(ptp):
            self._index_ptp(ptp, start, end)

    def _index_ptp(self, ptp: pd.DataFrame, start: date, end: date) -> None:
        """Edits with indicator 0/1 overlapping [start, end], as integer code arrays (no string sorting)."""
        ind = ptp["modifier_indicator"].astype(str)
        eff = pd.to_datetime(ptp["effective_date"])
        dele = pd.to_datetime(ptp["deletion_date"])
        keep = (ind.isin(["0", "1"]) & (eff <= pd.Timestamp(end))
                & (dele.isna() | (dele >= pd.Timestamp(start)))).to_numpy(dtype=bool)
        c1_codes, self.c1_uniq = pd.factorize(ptp["column_1"])
        c2_codes, self.c2_uniq = pd.factorize(ptp["column_2"])
        self.c1 = c1_codes[keep]
        self.c2 = c2_codes[keep]
        self.ind0 = (ind == "0").to_numpy(dtype=bool)[keep]
        self.eff = eff.to_numpy()[keep]
        self.dele = dele.to_numpy()[keep]
        self._c1_pos = {str(c): i for i, c in enumerate(self.c1_uniq)}
        self._c1_order = np.argsort(self.c1, kind="stable")
        self._c1_sorted = self.c1[self._c1_order]
        self.has_ptp = True

    def ptp_keys(self, vocab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sorted pair keys (i * len(vocab) + j over vocab positions) of indicator-0 and indicator-1 edits."""
        if not self.has_ptp:
            return np.array([], dtype=np.int64), np.array([], dtype=np.int64)
        v = len(vocab)
        lut1 = np.full(len(self.c1_uniq), -1, dtype=np.int64)
        lut2 = np.full(len(self.c2_uniq), -1, dtype=np.int64)
        pos1 = pd.Index(self.c1_uniq).get_indexer(vocab)
        pos2 = pd.Index(self.c2_uniq).get_indexer(vocab)
        lut1[pos1[pos1 >= 0]] = np.flatnonzero(pos1 >= 0)
        lut2[pos2[pos2 >= 0]] = np.flatnonzero(pos2 >= 0)
        a, b = lut1[self.c1], lut2[self.c2]
        ok = (a >= 0) & (b >= 0)
        key = a[ok] * v + b[ok]
        return np.unique(key[self.ind0[ok]]), np.unique(key[~self.ind0[ok]])

    # code attributes -------------------------------------------------------------------------
    def row(self, hcpcs: str, modifier: str = "") -> dict | None:
        return self.rows.get((hcpcs, modifier))

    def status(self, hcpcs: str) -> str | None:
        r = self.row(hcpcs)
        return None if r is None else str(r["status_code"])

    def attr(self, hcpcs: str, column: str, default: str = "") -> str:
        r = self.row(hcpcs)
        return default if r is None else str(r[column])

    def line_ok(self, hcpcs: str, mods: Sequence[str], pos: str, *, allow_frequency: bool = False) -> bool:
        """Would a line of this code raise no code-status, modifier or POS flag in this setting?

        Frequency-limited codes are refused unless ``allow_frequency`` (one service of a fresh
        patient cannot reach a limit; clean claims never use them at all).
        """
        base = self.row(hcpcs)
        if base is None or hcpcs in BUNDLED_SUPPLY_CODES:
            return False
        if hcpcs in FREQUENCY_LIMITED_CODES and not allow_frequency:
            return False
        status = str(base["status_code"])
        is_drug = hcpcs.startswith("J")
        if not (status == "A" or (status == "E" and is_drug)):
            return False
        if str(base.get("not_used_for_medicare", "")).strip():
            return False
        pricing_mod = "26" if "26" in mods else ("TC" if "TC" in mods else "")
        if pricing_mod and str(base["pctc_indicator"]) != "1":
            return False
        row = self.row(hcpcs, pricing_mod) if pricing_mod else base
        if row is None or str(row["status_code"]) != status:
            return False
        if status == "A" and str(base["global_days"]) not in ("000", "010", "090", "XXX"):
            return False
        facility = pos in FACILITY_POS
        if facility and (bool(row["facility_na"]) or str(base["pctc_indicator"]) == "5"):
            return False
        if facility and str(base["pctc_indicator"]) in ("1", "3", "4") and pricing_mod != "26":
            return False          # global / technical test parts are the hospital's to bill
        if not facility and bool(row["nonfacility_na"]):
            return False
        if hcpcs in OFFICE_EM and pos != "11":
            return False
        if hcpcs in HOSPITAL_EM and pos not in ("21", "22"):
            return False
        return not (hcpcs in ED_EM and pos != "23")

    def global_days(self, hcpcs: str) -> str:
        return self.attr(hcpcs, "global_days")

    def amount(self, hcpcs: str, mod: str, pos: str) -> float:
        r = self.row(hcpcs, mod) or self.row(hcpcs)
        if r is None:
            return 0.0
        return float(r["_f"] if pos in FACILITY_POS else r["_nf"]) * self.cf

    # PTP ---------------------------------------------------------------------------------------
    def pair_rows(self, col1: str, col2: str) -> list[tuple[pd.Timestamp, pd.Timestamp, str]]:
        """PTP rows (effective, deletion, indicator) of the edit col1/col2 overlapping the period."""
        if not self.has_ptp:
            return []
        if col1 not in self._by_col1:
            rows: dict[str, list[tuple[pd.Timestamp, pd.Timestamp, str]]] = {}
            code = self._c1_pos.get(col1)
            if code is not None:
                lo, hi = np.searchsorted(self._c1_sorted, code, "left"), np.searchsorted(self._c1_sorted, code, "right")
                for r in self._c1_order[lo:hi]:
                    rows.setdefault(str(self.c2_uniq[self.c2[r]]), []).append(
                        (pd.Timestamp(self.eff[r]), pd.Timestamp(self.dele[r]), "0" if self.ind0[r] else "1"))
            self._by_col1[col1] = rows
        return self._by_col1[col1].get(col2, [])

    def edit_on(self, col1: str, col2: str, dos: date) -> str | None:
        """The modifier indicator of the edit (col1, col2) in force on dos ("0" wins over "1"), or None."""
        ts = pd.Timestamp(dos)
        inds = {ind for eff, dele, ind in self.pair_rows(col1, col2)
                if eff <= ts and (pd.isna(dele) or ts <= dele)}
        return "0" if "0" in inds else ("1" if "1" in inds else None)


# --- clean claims ------------------------------------------------------------------------------------
#
# Clean lines live as integer codes (code, fixed-modifier set, POS, provider, patient, day) until the
# very end: pandas sorts, merges and de-duplicates integers fast, while string columns are slow to
# build; the final string columns are taken from small arrays of distinct values.

@dataclass
class _Pools:
    """Per encounter: usable anchors and items, with codes and modifier sets as integer ids."""

    encounters: list[Encounter]
    vocab: np.ndarray                                      # code strings (id -> code)
    fixed_mods: np.ndarray                                 # modifier-set strings ("" / "26" / "JZ" / "GP")
    anchors: list[tuple[np.ndarray, np.ndarray]]           # code ids, probabilities
    items: list[dict[str, np.ndarray]]                     # flat line table of the items + offsets
    item_probs: list[np.ndarray]
    pos: list[tuple[np.ndarray, np.ndarray]]
    pos_values: np.ndarray = field(default_factory=lambda: np.array(["11", "21", "22", "23"], dtype=object))


def _build_pools(ref: _Reference, warnings: list[str]) -> _Pools:
    chosen: list[tuple[Encounter, list[tuple[str, float]], list[tuple[_LineSpec, ...]], list[float]]] = []
    for enc in ENCOUNTERS:
        pos_values = [p for p, _ in enc.pos]
        ok_anchor = [(c, w) for c, w in enc.anchor if all(ref.line_ok(c, (), p) for p in pos_values)]
        if enc.anchor and not ok_anchor:
            continue
        if enc.stay and not ({c for c, _ in ok_anchor} & {c for c, _ in _STAY_ADMIT + _STAY_DAILY}):
            continue
        items, weights = [], []
        for spec, w in enc.items:
            lines = _parse_item(spec)
            if w <= 0:
                continue
            globals_ = {ref.global_days(ls.hcpcs) for ls in lines}
            if "090" in globals_ and enc.anchor:
                continue                     # an E/M with a 090 procedure would need 57
            if globals_ & {"010", "090"} and not enc.episodic:
                continue                     # post-op windows only in single-visit relationships
            if all(ref.line_ok(ls.hcpcs, ls.modifiers, p) for ls in lines for p in pos_values):
                items.append(lines)
                weights.append(w)
        if items or ok_anchor:
            chosen.append((enc, ok_anchor, items, weights))
    if not chosen:
        warnings.append("no practice-mix code is usable in this release: clean claims use any status A codes")
        chosen = _fallback_pools(ref)
    codes = sorted({c for _e, anchors, _i, _w in chosen for c, _ in anchors}
                   | {ls.hcpcs for _e, _a, items, _w in chosen for item in items for ls in item}
                   | {c for c, _ in _STAY_ADMIT + _STAY_DAILY + _STAY_DISCHARGE if ref.line_ok(c, (), "21")}
                   | {c for c in _NEW_FOR_EST.values() if ref.line_ok(c, (), "11")})
    code_id = {c: i for i, c in enumerate(codes)}
    mod_sets = sorted({",".join(ls.modifiers) for _e, _a, items, _w in chosen for item in items for ls in item}
                      | {""})
    mod_id = {m: i for i, m in enumerate(mod_sets)}
    pos_values = np.array(sorted({p for e, *_ in chosen for p, _ in e.pos}), dtype=object)
    pos_id = {p: i for i, p in enumerate(pos_values)}
    pools = _Pools([], np.array(codes, dtype=object), np.array(mod_sets, dtype=object), [], [], [], [],
                   pos_values)
    for enc, anchors, items, weights in chosen:
        pools.encounters.append(enc)
        aw = np.array([w for _, w in anchors], dtype=float)
        pools.anchors.append((np.array([code_id[c] for c, _ in anchors], dtype=np.int64),
                              aw / aw.sum() if len(aw) else aw))
        flat = [ls for item in items for ls in item]
        counts = np.array([len(item) for item in items], dtype=np.int64)
        pools.items.append({
            "code": np.array([code_id[ls.hcpcs] for ls in flat], dtype=np.int64),
            "mods": np.array([mod_id[",".join(ls.modifiers)] for ls in flat], dtype=np.int64),
            "side": np.array([ls.side for ls in flat], dtype=bool),
            "lo": np.array([ls.units[0] for ls in flat], dtype=np.int64),
            "hi": np.array([ls.units[1] for ls in flat], dtype=np.int64),
            "sub": np.concatenate([np.arange(n) for n in counts]) if len(counts) else np.array([], dtype=np.int64),
            "count": counts, "offset": np.cumsum(counts) - counts,
        })
        iw = np.array(weights, dtype=float)
        pools.item_probs.append(iw / iw.sum() if len(iw) else iw)
        pw = np.array([w for _, w in enc.pos], dtype=float)
        pools.pos.append((np.array([pos_id[p] for p, _ in enc.pos], dtype=np.int64), pw / pw.sum()))
    return pools


def _fallback_pools(ref: _Reference) -> list:
    codes = sorted(c for (c, m) in ref.rows if m == "" and c not in EM_CODES and ref.line_ok(c, (), "11")
                   and ref.global_days(c) in ("000", "XXX"))
    if not codes:
        raise ValueError("the PPRRVU release has no status A code usable on an office claim")
    enc = Encounter("generic_office", "family_medicine", 1.0, (("11", 1.0),), (), (), mean_items=3.0)
    items = [(_LineSpec(c, (), False, (1, 1)),) for c in codes[:300]]
    return [(enc, [], items, [1.0] * len(items))]


def _providers(rng: np.random.Generator, n: int, specialties: list[str],
               locations: Sequence[tuple[str, str]] = PRACTICE_LOCATIONS) -> pd.DataFrame:
    """A roster: rendering NPI, specialty, group billing NPI and practice location."""
    share = np.array([_PROVIDER_SHARE.get(s, 0.05) for s in specialties])
    spec_idx = np.concatenate([np.arange(len(specialties))[: n],
                               rng.choice(len(specialties), size=max(0, n - len(specialties)), p=share / share.sum())])
    spec_idx = np.sort(spec_idx[:n])
    within = np.zeros(n, dtype=np.int64)
    for s in np.unique(spec_idx):
        within[spec_idx == s] = np.arange((spec_idx == s).sum())
    group_key = spec_idx * 1_000_000 + within // 6                      # single-specialty groups of ~6
    _, group = np.unique(group_key, return_inverse=True)
    bases = rng.choice(10 ** 8, size=n + group.max() + 1, replace=False) + 10 ** 8
    loc = rng.integers(0, len(locations), size=group.max() + 1)
    return pd.DataFrame({
        "rendering_npi": npi_with_check_digit(bases[:n]).astype(object),
        "specialty": np.array(specialties, dtype=object)[spec_idx],
        "billing_npi": npi_with_check_digit(bases[n:])[group].astype(object),
        "zip": np.array([z for z, _ in locations], dtype=object)[loc[group]],
        "locality": np.array([lc for _, lc in locations], dtype=object)[loc[group]],
    }, dtype=object)


def _ranks_within(counts: np.ndarray) -> np.ndarray:
    """0..n-1 for each block of a repeat (np.repeat(x, counts) companion)."""
    return np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)


def _clean_batch(rng: np.random.Generator, ref: _Reference, pools: _Pools, providers: pd.DataFrame,
                 n_claims: int, n_patients: int, start: date, end: date) -> pd.DataFrame:
    """About n_claims clean claims as an integer line table (claim_idx, code, mods, units, day, ...)."""
    specialties = set(providers["specialty"])
    # relationships: patient x provider x encounter kind ------------------------------------------
    enc_w = np.array([SPECIALTIES.get(e.specialty, 0.05) * e.weight if e.specialty in specialties else 0.0
                      for e in pools.encounters])
    n_rel = max(1, int(n_claims / 1.6))
    rel_enc = rng.choice(len(pools.encounters), size=n_rel, p=enc_w / enc_w.sum())
    rel_patient = rng.permutation(np.arange(n_rel) % max(1, n_patients))
    prov_spec = providers["specialty"].to_numpy(dtype=object)
    rel_provider = np.empty(n_rel, dtype=np.int64)
    for k, enc in enumerate(pools.encounters):
        mask = rel_enc == k
        if mask.any():
            candidates = np.flatnonzero(prov_spec == enc.specialty)
            rel_provider[mask] = candidates[rng.integers(0, len(candidates), size=mask.sum())]
    rel = pd.DataFrame({"patient": rel_patient, "provider": rel_provider, "enc": rel_enc})
    rel = rel.drop_duplicates(["patient", "provider"]).reset_index(drop=True)
    episodic = np.array([e.episodic for e in pools.encounters])[rel["enc"].to_numpy()]
    visits = np.where(episodic, 1, rng.geometric(0.55, size=len(rel)))
    # claims: one patient, provider and date each ----------------------------------------------------
    ci = np.repeat(np.arange(len(rel)), visits)
    first_day, last_day = np.datetime64(start, "D").astype(np.int64), np.datetime64(end, "D").astype(np.int64)
    day = rng.integers(first_day, last_day + 1, size=len(ci))
    enc_of = rel["enc"].to_numpy()[ci]
    office = np.array([all(p == "11" for p, _ in e.pos) for e in pools.encounters])[enc_of]
    weekday = (day - 4) % 7                                                  # 0 = Monday
    shift = np.where(weekday == 5, -1, np.where(weekday == 6, 1, 0)) * office    # offices close at weekends
    for step in (shift, -2 * shift):
        moved = day + step
        ok = (moved >= first_day) & (moved <= last_day) & (step != 0)
        day = np.where(ok, moved, day)
        shift = np.where(ok, 0, shift)
    claims = pd.DataFrame({"rel": ci, "patient": rel["patient"].to_numpy()[ci],
                           "provider": rel["provider"].to_numpy()[ci], "enc": enc_of, "day": day})
    claims = claims.drop_duplicates(["patient", "provider", "day"]).sort_values(["rel", "day"], kind="stable")
    claims = claims.reset_index(drop=True)
    first_visit = ~claims["rel"].duplicated().to_numpy()
    enc_arr = claims["enc"].to_numpy()
    pos = np.zeros(len(claims), dtype=np.int64)
    for k in range(len(pools.encounters)):
        mask = enc_arr == k
        if mask.any():
            pc, pw = pools.pos[k]
            pos[mask] = pc[rng.choice(len(pc), size=mask.sum(), p=pw)]
    # lines: anchors + items ---------------------------------------------------------------------------
    parts: list[dict[str, np.ndarray]] = []
    new_code = np.arange(len(pools.vocab))
    code_pos = {c: i for i, c in enumerate(pools.vocab)}
    for est, new in _NEW_FOR_EST.items():
        if est in code_pos and new in code_pos:
            new_code[code_pos[est]] = code_pos[new]
    for k, enc in enumerate(pools.encounters):
        idx = np.flatnonzero(enc_arr == k)
        if not len(idx):
            continue
        ac, ap = pools.anchors[k]
        table = pools.items[k]
        if enc.stay:
            parts.append(_stay_lines(rng, ref, pools, idx, claims["day"].to_numpy()[idx], last_day, enc.max_items))
            continue
        n_items = np.minimum(1 + rng.poisson(max(enc.mean_items - 1, 0), size=len(idx)), enc.max_items)
        if len(ac):
            anchor = ac[rng.choice(len(ac), size=len(idx), p=ap)]
            # a patient's first visit to this provider is sometimes a new-patient visit (99202-99205)
            anchor = np.where(first_visit[idx] & (rng.random(len(idx)) < 0.25), new_code[anchor], anchor)
            parts.append(_line_part(idx, np.zeros(len(idx), np.int64), np.zeros(len(idx), np.int64), anchor,
                                    np.zeros(len(idx), np.int64), np.zeros(len(idx), bool),
                                    np.ones(len(idx), np.int64), np.ones(len(idx), np.int64)))
            n_items = np.minimum(rng.poisson(enc.mean_items, size=len(idx)), enc.max_items)
        if not len(table["count"]):
            continue
        item_claim = np.repeat(idx, n_items)
        item_slot = _ranks_within(n_items) + 1
        pick = rng.choice(len(table["count"]), size=len(item_claim), p=pools.item_probs[k])
        reps = table["count"][pick]
        src = np.repeat(table["offset"][pick], reps) + _ranks_within(reps)
        parts.append(_line_part(np.repeat(item_claim, reps), np.repeat(item_slot, reps), table["sub"][src],
                                table["code"][src], table["mods"][src], table["side"][src], table["lo"][src],
                                table["hi"][src]))
    lines = pd.DataFrame({c: np.concatenate([p[c] for p in parts]) for c in parts[0]})
    lines = lines.sort_values(["claim_idx", "day_off", "item_slot", "sub"], kind="stable")
    lines = lines[~lines.duplicated(["claim_idx", "day_off", "code"])].reset_index(drop=True)
    claim_of = lines["claim_idx"].to_numpy()
    for col, values in (("patient", claims["patient"]), ("provider", claims["provider"]), ("enc", claims["enc"]),
                        ("day", claims["day"])):
        lines[col] = values.to_numpy()[claim_of]
    lines["day"] += lines["day_off"]
    lines["pos"] = pos[claim_of]
    lines["units"] = _draw_units(rng, ref, pools, lines)
    lines["side_mod"] = np.where(lines["side"].to_numpy(), rng.integers(1, 3, size=len(lines)), 0)  # 1 RT, 2 LT
    return _resolve_edits(rng, ref, pools, lines)


def _line_part(claim_idx: np.ndarray, item_slot: np.ndarray, sub: np.ndarray, code: np.ndarray, mods: np.ndarray,
               side: np.ndarray, lo: np.ndarray, hi: np.ndarray, day_off: np.ndarray | None = None
               ) -> dict[str, np.ndarray]:
    return {"claim_idx": claim_idx, "day_off": np.zeros(len(claim_idx), np.int64) if day_off is None else day_off,
            "item_slot": item_slot, "sub": sub, "code": code, "mods": mods, "side": side, "lo": lo, "hi": hi}


def _stay_lines(rng: np.random.Generator, ref: _Reference, pools: _Pools, idx: np.ndarray, day: np.ndarray,
                last_day: int, max_days: int) -> dict[str, np.ndarray]:
    """An inpatient stay on one claim: admission visit, a visit each following day, the discharge day."""
    code_pos = {c: i for i, c in enumerate(pools.vocab)}

    def usable(choices: tuple[tuple[str, float], ...]) -> tuple[np.ndarray, np.ndarray]:
        ok = [(code_pos[c], w) for c, w in choices if c in code_pos and ref.line_ok(c, (), "21")]
        w = np.array([w for _, w in ok], dtype=float)
        return np.array([c for c, _ in ok], dtype=np.int64), w / w.sum() if len(w) else w
    admit, daily, discharge = usable(_STAY_ADMIT), usable(_STAY_DAILY), usable(_STAY_DISCHARGE)
    room = last_day - day + 1
    days = np.clip(np.minimum(2 + rng.poisson(2.0, size=len(idx)), room), 1, max_days)
    claim = np.repeat(idx, days)
    day_off = _ranks_within(days)
    last = day_off == np.repeat(days, days) - 1
    code = np.zeros(len(claim), dtype=np.int64)
    for mask, (codes, w) in ((day_off == 0, admit), (last & (day_off > 0), discharge),
                             (~last & (day_off > 0), daily)):
        if mask.any():
            codes, w = (codes, w) if len(codes) else (admit if len(admit) else daily)
            code[mask] = codes[rng.choice(len(codes), size=mask.sum(), p=w)]
    zeros, ones = np.zeros(len(claim), np.int64), np.ones(len(claim), np.int64)
    return _line_part(claim, day_off, zeros, code, zeros, np.zeros(len(claim), bool), ones, ones, day_off)


def _draw_units(rng: np.random.Generator, ref: _Reference, pools: _Pools, lines: pd.DataFrame) -> np.ndarray:
    """Draw units in each line's range, capped at the MUE (1 when the code has no published MUE).

    One line per code per claim and day, so the day total of a code is its line's units.
    """
    lo, hi = lines["lo"].to_numpy(), lines["hi"].to_numpy()
    units = lo + (rng.random(len(lines)) * (hi - lo + 1)).astype(np.int64)
    cap = np.array([ref.mue[c][0] if c in ref.mue else 1 for c in pools.vocab], dtype=np.int64)
    return np.maximum(1, np.minimum(units, cap[lines["code"].to_numpy()]))


def _resolve_edits(rng: np.random.Generator, ref: _Reference, pools: _Pools, lines: pd.DataFrame) -> pd.DataFrame:
    """Make each claim day free of unbypassed PTP pairs, and put 25 on E/M lines exactly where needed.

    A claim day is one patient + DOS + rendering NPI (no two claims share one), so pairs are looked
    up within claim days only (offset self-join over the sorted lines, no per-line loop). An E/M
    takes 25 when the day has a 000/010 procedure or a PTP edit puts the E/M in column 2 with
    indicator 1 (a visit with a separate service). Other indicator-1 pairs with a surgical column 2
    code get XS half the time (a distinct site); anything else is resolved by dropping the later line.
    Repeats until stable (it only removes lines, so it converges in a few rounds).
    """
    vocab = pools.vocab
    v = len(vocab)
    keys0, keys1 = ref.ptp_keys(vocab)
    code_id = lines["code"].to_numpy()
    is_em = np.isin(vocab, list(EM_CODES))[code_id]
    minor = np.isin(np.array([ref.global_days(c) for c in vocab], dtype=object), ["000", "010"])[code_id]
    surgical = np.isin(np.array([ref.global_days(c) for c in vocab], dtype=object), ["000", "010", "090"])[code_id]
    claim = lines["claim_idx"].to_numpy() * 64 + lines["day_off"].to_numpy()
    xs = np.zeros(len(lines), dtype=bool)
    keep = np.ones(len(lines), dtype=bool)
    for _ in range(50):
        idx = np.flatnonzero(keep)
        cl, cid = claim[idx], code_id[idx]
        first, second = _pairs(cl)                                   # column 1, column 2 candidates
        key = cid[first] * v + cid[second]
        in0, in1 = np.isin(key, keys0), np.isin(key, keys1)
        em2 = is_em[idx][second]
        em_needs_25 = np.zeros(len(idx), dtype=bool)
        em_needs_25[second[in1 & ~in0 & em2]] = True
        m25 = is_em[idx] & (_claim_any(cl, minor[idx]) | em_needs_25)
        conflict = in0 | (in1 & ~(m25 | xs[idx])[second])
        if not conflict.any():
            break
        can_xs = in1 & ~in0 & surgical[idx][second] & (rng.random(len(key)) < 0.5)
        xs_now = conflict & can_xs
        xs[idx[second[xs_now]]] = True
        keep[idx[np.maximum(first, second)[conflict & ~xs_now]]] = False
    else:  # pragma: no cover - lines are only removed, so a fixed point comes within a few rounds
        raise RuntimeError("could not resolve PTP edits in generated claims")
    out = lines[keep].reset_index(drop=True)
    out["m25"] = m25
    out["xs"] = xs[keep]
    return out


def _pairs(groups_sorted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All ordered pairs (i, j), i != j, of positions in the same group (groups contiguous)."""
    pa, pb = [], []
    d = 1
    while d < len(groups_sorted):
        same = np.flatnonzero(groups_sorted[:-d] == groups_sorted[d:])
        if not len(same):
            break
        pa.append(same)
        pb.append(same + d)
        d += 1
    a = np.concatenate(pa) if pa else np.array([], dtype=np.int64)
    b = np.concatenate(pb) if pb else np.array([], dtype=np.int64)
    return np.concatenate([a, b]), np.concatenate([b, a])


def _claim_any(claim_sorted: np.ndarray, flag: np.ndarray) -> np.ndarray:
    """Per line: does any line of the same claim (claim ids sorted) have flag."""
    if not len(claim_sorted):
        return flag.copy()
    starts = np.flatnonzero(np.r_[True, claim_sorted[1:] != claim_sorted[:-1]])
    any_per = np.logical_or.reduceat(flag, starts)
    return np.repeat(any_per, np.diff(np.r_[starts, len(claim_sorted)]))



# --- seeded scenarios ------------------------------------------------------------------------------

@dataclass
class _SLine:
    hcpcs: str
    modifiers: tuple[str, ...] = ()
    units: int = 1
    expect: tuple[str, ...] = ()          # rule ids seeded on purpose
    note: str = ""


@dataclass
class _SClaim:
    patient: int
    provider: int
    dos: date
    pos: str
    lines: list[_SLine]
    order: int = 0                        # within a scenario: file order of its claims


class _ScenarioBuilder:
    """Builds one seeded problem per call; each returns claims or None (skipped: tables lack the codes)."""

    def __init__(self, rng: np.random.Generator, ref: _Reference, providers: pd.DataFrame, start: date,
                 end: date) -> None:
        self.rng, self.ref, self.start, self.end = rng, ref, start, end
        self.by_spec = {s: np.flatnonzero(providers["specialty"].to_numpy(dtype=object) == s)
                        for s in providers["specialty"].unique()}
        self.n_providers = len(providers)
        self._choices: dict[str, object] = {}

    # helpers ----------------------------------------------------------------------------------------
    def provider(self, specialty: str) -> int:
        pool = self.by_spec.get(specialty)
        if pool is None or not len(pool):
            return int(self.rng.integers(0, self.n_providers))
        return int(pool[self.rng.integers(0, len(pool))])

    def day(self, lo_offset: int = 0, hi_offset: int = 0) -> date:
        span = (self.end - self.start).days - lo_offset - hi_offset
        return self.start + timedelta(days=lo_offset + int(self.rng.integers(0, max(span, 0) + 1)))

    def safe(self, code: str, pos: str = "11", mods: Sequence[str] = ()) -> bool:
        return self.ref.line_ok(code, mods, pos) and code not in EM_CODES

    def first(self, key: str, candidates: Iterable[str] | Callable[[], Iterable[str]],
              ok: Callable[[str], bool]) -> str | None:
        """The first candidate code that passes ``ok`` (worked out once per builder, then cached)."""
        if key not in self._choices:
            pool = candidates() if callable(candidates) else candidates
            self._choices[key] = next((c for c in pool if ok(c)), None)
        return self._choices[key]  # type: ignore[return-value]

    def _pair(self, key: str, indicator: str, preferred: Sequence[tuple[str, str]]) -> tuple[str, str] | None:
        """A real (column 1, column 2) edit with this indicator between two safe office codes."""
        if key in self._choices:
            return self._choices[key]  # type: ignore[return-value]
        ref = self.ref
        found = None
        mid = self.start + (self.end - self.start) / 2

        def usable(c1: str, c2: str) -> bool:
            if not (self.safe(c1) and self.safe(c2)) or "090" in (ref.global_days(c1), ref.global_days(c2)):
                return False
            if any(ref.edit_on(c1, c2, d) != indicator for d in (self.start, mid, self.end)):
                return False
            return not ref.pair_rows(c2, c1)
        for c1, c2 in preferred:
            if usable(c1, c2):
                found = (c1, c2)
                break
        if found is None and ref.has_ptp:
            office = np.array(sorted(c for c in _office_pool_codes() if self.safe(c)), dtype=object)
            keys0, keys1 = ref.ptp_keys(office)
            keys = keys0 if indicator == "0" else keys1
            for key in keys:
                c1, c2 = office[key // len(office)], office[key % len(office)]
                if usable(c1, c2):
                    found = (c1, c2)
                    break
        self._choices[key] = found
        return found

    # scenarios ------------------------------------------------------------------------------------
    def mue_line(self, pid: int) -> list[_SClaim] | None:
        ref = self.ref
        code = self.first("mue_line", lambda: sorted((c for c, (_v, a) in ref.mue.items() if a == 1),
                                                     key=lambda c: (c != "J3471", c)), self.safe)
        if code is None:
            return None
        v = ref.mue[code][0]
        return [_SClaim(pid, self.provider("family_medicine"), self.day(), "11",
                        [_SLine(code, (), v + 1, ("MUE-LINE",), f"{v + 1} units on one line, MUE {v} (MAI 1)")])]

    def mue_dos(self, pid: int) -> list[_SClaim] | None:
        ref = self.ref
        pref = ["96372", "97110", "20610", "93000", "71046"]
        code = self.first("mue_dos", lambda: pref + sorted(c for c, (_v, a) in ref.mue.items() if a in (2, 3)),
                          lambda c: self.safe(c) and c in ref.mue
                          and ref.mue[c][1] in (2, 3) and ref.mue[c][0] <= 50
                          and ref.global_days(c) in ("XXX", "000"))
        if code is None:
            return None
        v = ref.mue[code][0]
        prov, d = self.provider("family_medicine"), self.day()
        note = f"{v} + 1 units the same day on two claims, MUE {v} (MAI {ref.mue[code][1]})"
        return [_SClaim(pid, prov, d, "11", [_SLine(code, (), v, ("MUE-DOS",), note)], order=0),
                _SClaim(pid, prov, d, "11", [_SLine(code, ("76",), 1, ("MUE-DOS",), note)], order=1)]

    def _ptp(self, pid: int, indicator: str, rule: str, col2_mods: tuple[str, ...]) -> list[_SClaim] | None:
        preferred = {"0": [("11104", "11102"), ("20553", "20552"), ("45380", "45378")],
                     "1": [("20610", "96372"), ("11102", "11300"), ("20610", "20551"), ("11300", "11200")]}
        pair = self._pair(f"ptp{indicator}", indicator, preferred[indicator])
        if pair is None:
            return None
        c1, c2 = pair
        note = f"PTP edit {c1}/{c2} (modifier indicator {indicator})"
        return [_SClaim(pid, self.provider("family_medicine"), self.day(), "11",
                        [_SLine(c1), _SLine(c2, col2_mods, 1, (rule,), note)])]

    def ptp_ind0(self, pid: int) -> list[_SClaim] | None:
        return self._ptp(pid, "0", "PTP-IND0", ())

    def ptp_ind1(self, pid: int) -> list[_SClaim] | None:
        return self._ptp(pid, "1", "PTP-IND1", ())

    def ptp_bypass(self, pid: int) -> list[_SClaim] | None:
        return self._ptp(pid, "1", "PTP-BYPASS", ("59",))

    def bundled_status(self, pid: int) -> list[_SClaim] | None:
        ref = self.ref
        code = self.first("bundled_status", lambda: ["99070", "A4550", *sorted(c for (c, m) in ref.rows if m == "")],
                          lambda c: ref.status(c) in ("B", "P"))
        if code is None:
            return None
        return [_SClaim(pid, self.provider("family_medicine"), self.day(), "11",
                        [_SLine(code, (), 1, ("BUNDLED-STATUS",), f"status {ref.status(code)} code billed")])]

    def bundled_supply(self, pid: int) -> list[_SClaim] | None:
        ref = self.ref
        drug = self.first("supply_drug", ["J2003", "J2004", "J2002", "J2001"], lambda c: ref.status(c) == "E")
        proc = self.first("supply_proc", ["20610", "20605", "20600", "20550", "20551"], lambda c: self.safe(c))
        if drug is None or proc is None:
            return None
        return [_SClaim(pid, self.provider("orthopedics"), self.day(), "11",
                        [_SLine(proc, ("RT",)), _SLine(drug, (), min(10, ref.mue.get(drug, (10, 3))[0]),
                                                       ("BUNDLED-SUPPLY",), f"lidocaine with {proc}")])]

    def status_t(self, pid: int) -> list[_SClaim] | None:
        ref = self.ref
        t_code = self.first("status_t", ["94760", "94761", "96523", "36591"],
                            lambda c: ref.status(c) == "T" and not ref.row(c)["nonfacility_na"])
        em = self.first("em_office", ["99213", "99214", "99212"], lambda c: ref.line_ok(c, (), "11"))
        if t_code is None or em is None:
            return None
        return [_SClaim(pid, self.provider("family_medicine"), self.day(), "11",
                        [_SLine(em), _SLine(t_code, (), 1, ("STATUS-T-BUNDLED",), f"status T {t_code} with {em}")])]

    def add_on_alone(self, pid: int) -> list[_SClaim] | None:
        ref = self.ref
        # clean lines never use add-ons alone (line_ok refuses global ZZZ): one office add-on, nothing else
        add_on = self.first("add_on", ["G2211", "11045", "17003"],
                            lambda c: ref.global_days(c) == "ZZZ" and ref.status(c) == "A"
                            and not ref.row(c)["nonfacility_na"] and c not in FREQUENCY_LIMITED_CODES)
        if add_on is None:
            return None
        return [_SClaim(pid, self.provider("family_medicine"), self.day(), "11",
                        [_SLine(add_on, (), 1, ("ADDON-NO-PRIMARY",), f"add-on {add_on} with no primary service")])]

    def em_no25(self, pid: int) -> list[_SClaim] | None:
        ref = self.ref
        em = self.first("em_office", ["99213", "99214", "99212"], lambda c: ref.line_ok(c, (), "11"))
        proc = self.first("minor_proc", ["20553", "20610", "11102", "20605", "69210"],
                          lambda c: ref.line_ok(c, (), "11", allow_frequency=True)
                          and ref.global_days(c) in ("000", "010"))
        if em is None or proc is None:
            return None
        return [_SClaim(pid, self.provider("family_medicine"), self.day(), "11",
                        [_SLine(em, (), 1, ("EM-NO25",), f"{em} with {proc} ({ref.global_days(proc)}) without 25"),
                         _SLine(proc)])]

    def em_25_noproc(self, pid: int) -> list[_SClaim] | None:
        em = self.first("em_office_25", ["99214", "99213", "99215"], lambda c: self.ref.line_ok(c, (), "11"))
        if em is None:
            return None
        return [_SClaim(pid, self.provider("family_medicine"), self.day(), "11",
                        [_SLine(em, ("25",), 1, ("EM-25-NOPROC",), "25 on a visit with nothing else that day")])]

    def mod25_non_em(self, pid: int) -> list[_SClaim] | None:
        code = self.first("mod25_non_em", ["20610", "11102", "93000", "71046"], lambda c: self.safe(c))
        if code is None:
            return None
        return [_SClaim(pid, self.provider("orthopedics"), self.day(), "11",
                        [_SLine(code, ("25",), 1, ("MOD25-NON-EM",), "25 on a non-E/M code")])]

    def _major(self) -> tuple[str, str] | None:
        ref = self.ref
        major = self.first("major", ["27447", "27130", "29881", "23412", "64721"],
                           lambda c: ref.global_days(c) == "090" and ref.line_ok(c, (), "22")
                           and ref.line_ok(c, (), "21"))
        em = self.first("em_office", ["99213", "99214", "99212"], lambda c: ref.line_ok(c, (), "11"))
        return None if major is None or em is None else (major, em)

    def em_no57(self, pid: int) -> list[_SClaim] | None:
        codes = self._major()
        if codes is None or (self.end - self.start).days < 1:
            return None
        major, em = codes
        prov = self.provider("orthopedics")
        d = self.day(lo_offset=1)
        return [_SClaim(pid, prov, d - timedelta(days=1), "11",
                        [_SLine(em, (), 1, ("EM-NO57",), f"visit the day before {major} (090) without 57")]),
                _SClaim(pid, prov, d, "21", [_SLine(major, ("RT",))], order=1)]

    def em_in_postop(self, pid: int) -> list[_SClaim] | None:
        codes = self._major()
        span = (self.end - self.start).days
        if codes is None or span < 3:
            return None
        major, em = codes
        gap = int(self.rng.integers(2, min(30, span) + 1))
        prov = self.provider("orthopedics")
        d = self.day(hi_offset=gap)
        return [_SClaim(pid, prov, d, "22", [_SLine(major, ("LT",))]),
                _SClaim(pid, prov, d + timedelta(days=gap), "11",
                        [_SLine(em, (), 1, ("EM-IN-POSTOP",), f"visit {gap} days after {major} (090) without 24")],
                        order=1)]

    def pos_nf_na(self, pid: int) -> list[_SClaim] | None:
        ref = self.ref
        code = self.first("nf_na", ["27447", "27130", "29881"],
                          lambda c: ref.status(c) == "A" and bool(ref.row(c)["nonfacility_na"])
                          and c not in EM_CODES)
        if code is None:
            return None
        return [_SClaim(pid, self.provider("orthopedics"), self.day(), "11",
                        [_SLine(code, ("RT",), 1, ("POS-NF-NA",), f"{code} is NA in a non-facility setting")])]

    def pos_fac_na(self, pid: int) -> list[_SClaim] | None:
        ref = self.ref
        code = self.first("fac_na", ["96372", "93000", "93005"],
                          lambda c: ref.status(c) == "A" and bool(ref.row(c)["facility_na"]))
        if code is None:
            return None
        rules = ["POS-FAC-NA"] + (["POS-INCIDENT-TO-HOSP"] if ref.attr(code, "pctc_indicator") == "5" else [])
        return [_SClaim(pid, self.provider("family_medicine"), self.day(), "22",
                        [_SLine(code, (), 1, tuple(rules), f"{code} is NA in a facility setting")])]

    def pos_invalid(self, pid: int) -> list[_SClaim] | None:
        em = self.first("em_office", ["99213", "99214", "99212"], lambda c: self.ref.line_ok(c, (), "11"))
        if em is None:
            return None
        return [_SClaim(pid, self.provider("family_medicine"), self.day(), "98",
                        [_SLine(em, (), 1, ("POS-INVALID",), "POS 98 is not a place-of-service code")])]

    def pos_em_setting(self, pid: int) -> list[_SClaim] | None:
        em = self.first("em_office", ["99213", "99214", "99212"], lambda c: self.ref.line_ok(c, (), "11"))
        if em is None:
            return None
        return [_SClaim(pid, self.provider("hospitalist"), self.day(), "21",
                        [_SLine(em, (), 1, ("POS-EM-SETTING",), "office visit code in an inpatient setting")])]

    def freq_limit(self, pid: int) -> list[_SClaim] | None:
        ref = self.ref
        code = self.first("freq", ["G0439"], lambda c: ref.status(c) == "A" and not ref.row(c)["nonfacility_na"])
        if code is None or (self.end - self.start).days < 1:
            return None
        return self._visit_then(pid, code, code, "FREQ-LIMIT", f"second {code} {{gap}} days after the first")

    def new_patient_again(self, pid: int) -> list[_SClaim] | None:
        """An office visit, then a new-patient visit (99202-99205) by the same clinician weeks later."""
        ref = self.ref
        est = self.first("em_office", ["99213", "99214", "99212"], lambda c: ref.line_ok(c, (), "11"))
        new = _NEW_FOR_EST.get(est or "")
        if est is None or new is None or not ref.line_ok(new, (), "11") or (self.end - self.start).days < 1:
            return None
        return self._visit_then(pid, est, new, "FREQ-NEW-PATIENT", f"{new} {{gap}} days after {est} by the same NPI")

    def _visit_then(self, pid: int, first: str, then: str, rule: str, note: str) -> list[_SClaim]:
        """``first`` in the office, then ``then`` 1-60 days later by the same clinician, flagged ``rule``
        (``note``'s ``{gap}`` is the days between)."""
        prov = self.provider("family_medicine")
        gap = int(self.rng.integers(1, min(60, (self.end - self.start).days) + 1))
        d = self.day(hi_offset=gap)
        return [_SClaim(pid, prov, d, "11", [_SLine(first)]),
                _SClaim(pid, prov, d + timedelta(days=gap), "11",
                        [_SLine(then, (), 1, (rule,), note.format(gap=gap))], order=1)]

    def _single_status(self, pid: int, key: str, candidates: Sequence[str], statuses: set[str]) -> list[_SClaim] | None:
        ref = self.ref
        code = self.first(key, candidates, lambda c: ref.status(c) in statuses)
        if code is None:
            return None
        return [_SClaim(pid, self.provider("family_medicine"), self.day(), "11",
                        [_SLine(code, (), 1, ("CODE-NOT-PAYABLE",), f"status {ref.status(code)}")])]

    def not_payable_i(self, pid: int) -> list[_SClaim] | None:
        return self._single_status(pid, "status_i", ["99243", "99242", "99244", "99417"], {"I"})

    def not_payable_n(self, pid: int) -> list[_SClaim] | None:
        return self._single_status(pid, "status_n", ["99396", "99395", "99397", "99401"], {"N"})

    def code_unknown(self, pid: int) -> list[_SClaim] | None:
        code = self.first("unknown", ["99999", "99998", "0999T", "99990"], lambda c: c not in self.ref.codes)
        if code is None:
            return None
        return [_SClaim(pid, self.provider("family_medicine"), self.day(), "11",
                        [_SLine(code, (), 1, ("CODE-UNKNOWN",), "code not in the release")])]

    def pctc_invalid(self, pid: int) -> list[_SClaim] | None:
        em = self.first("em_office", ["99213", "99214", "99212"], lambda c: self.ref.line_ok(c, (), "11"))
        if em is None or self.ref.attr(em, "pctc_indicator") == "1":
            return None
        return [_SClaim(pid, self.provider("family_medicine"), self.day(), "11",
                        [_SLine(em, ("26",), 1, ("MOD-PCTC-INVALID",), "26 on a code without PC/TC split")])]

    def bilat_invalid(self, pid: int) -> list[_SClaim] | None:
        ref = self.ref
        code = self.first("bilat0", ["20551", "11102", "20550", "69210"],
                          lambda c: self.safe(c) and ref.attr(c, "bilat_surg") == "0")
        if code is None:
            return None
        return [_SClaim(pid, self.provider("orthopedics"), self.day(), "11",
                        [_SLine(code, ("50",), 1, ("MOD-BILAT-INVALID",), "50 on bilateral indicator 0")])]

    def asst_not_paid(self, pid: int) -> list[_SClaim] | None:
        ref = self.ref
        code = self.first("asst1", ["20610", "20605", "11102", "20551"],
                          lambda c: self.safe(c) and ref.attr(c, "asst_surg") == "1")
        if code is None:
            return None
        return [_SClaim(pid, self.provider("orthopedics"), self.day(), "11",
                        [_SLine(code, ("80",), 1, ("MOD-ASST-NOT-PAID",), "assistant on indicator 1")])]

    def dup_batch(self, pid: int) -> list[_SClaim] | None:
        ref = self.ref
        em = self.first("dup_code", ["99213", "99214", "99212"],
                        lambda c: ref.line_ok(c, (), "11") and ref.mue.get(c, (2, 3))[0] >= 2)
        if em is None:
            return None
        prov, d = self.provider("family_medicine"), self.day()
        return [_SClaim(pid, prov, d, "11", [_SLine(em)], order=0),
                _SClaim(pid, prov, d, "11", [_SLine(em, (), 1, ("DUP-BATCH",), "same line on an earlier claim")],
                        order=1)]


#: scenario kind -> (builder method, primary rule); round-robin order of seeding.
SCENARIOS: dict[str, tuple[str, str]] = {
    "mue_line": ("mue_line", "MUE-LINE"),
    "mue_dos": ("mue_dos", "MUE-DOS"),
    "ptp_ind0": ("ptp_ind0", "PTP-IND0"),
    "ptp_ind1": ("ptp_ind1", "PTP-IND1"),
    "ptp_bypass": ("ptp_bypass", "PTP-BYPASS"),
    "bundled_status": ("bundled_status", "BUNDLED-STATUS"),
    "bundled_supply": ("bundled_supply", "BUNDLED-SUPPLY"),
    "status_t": ("status_t", "STATUS-T-BUNDLED"),
    "add_on_alone": ("add_on_alone", "ADDON-NO-PRIMARY"),
    "em_no25": ("em_no25", "EM-NO25"),
    "em_25_noproc": ("em_25_noproc", "EM-25-NOPROC"),
    "mod25_non_em": ("mod25_non_em", "MOD25-NON-EM"),
    "em_no57": ("em_no57", "EM-NO57"),
    "em_in_postop": ("em_in_postop", "EM-IN-POSTOP"),
    "pos_invalid": ("pos_invalid", "POS-INVALID"),
    "pos_nf_na": ("pos_nf_na", "POS-NF-NA"),
    "pos_fac_na": ("pos_fac_na", "POS-FAC-NA"),
    "pos_em_setting": ("pos_em_setting", "POS-EM-SETTING"),
    "freq_limit": ("freq_limit", "FREQ-LIMIT"),
    "new_patient_again": ("new_patient_again", "FREQ-NEW-PATIENT"),
    "not_payable_i": ("not_payable_i", "CODE-NOT-PAYABLE"),
    "not_payable_n": ("not_payable_n", "CODE-NOT-PAYABLE"),
    "code_unknown": ("code_unknown", "CODE-UNKNOWN"),
    "pctc_invalid": ("pctc_invalid", "MOD-PCTC-INVALID"),
    "bilat_invalid": ("bilat_invalid", "MOD-BILAT-INVALID"),
    "asst_not_paid": ("asst_not_paid", "MOD-ASST-NOT-PAID"),
    "dup_batch": ("dup_batch", "DUP-BATCH"),
}
_NEEDS_PTP = {"ptp_ind0", "ptp_ind1", "ptp_bypass"}
_NEEDS_MUE = {"mue_line", "mue_dos"}


#: Codes the seeded scenarios prefer (first usable one wins; see the builder methods).
SCENARIO_CODES: frozenset[str] = frozenset({
    "J3471", "96372", "97110", "20610", "93000", "71046", "11104", "11102", "20553", "20552", "45380", "45378",
    "11300", "20551", "11200", "99070", "A4550", "J2003", "J2004", "J2002", "J2001", "20605", "20600", "20550",
    "94760", "94761", "96523", "36591", "99213", "99214", "99212", "99215", "69210", "27447", "27130", "29881",
    "23412", "64721", "93005", "G0439", "99243", "99242", "99244", "99417", "99396", "99395", "99397", "99401",
    "G2211", "11045", "17003",
})

#: The call that builds data/claims/sample_claims.csv from the demo sample release (plus its tables).
SAMPLE_CLAIMS_ARGS: dict = {"n_lines": 320, "seed": 2025, "providers": 12, "locations": SAMPLE_LOCATIONS}


def practice_codes() -> set[str]:
    """Every code the practice mix or a scenario may draw (to cut reference tables down for tests)."""
    return ({ls.hcpcs for e in ENCOUNTERS for spec, _w in e.items for ls in _parse_item(spec)}
            | {c for e in ENCOUNTERS for c, _w in e.anchor} | set(_NEW_FOR_EST.values()) | set(SCENARIO_CODES))


def _office_pool_codes() -> set[str]:
    return {ls.hcpcs for e in ENCOUNTERS if all(p == "11" for p, _ in e.pos)
            for spec, _w in e.items for ls in _parse_item(spec)}


def _derive_expected(ref: _Reference, claims: list[_SClaim]) -> list[list[list[tuple[str, str]]]]:
    """Per claim, per line: (rule id, note) the tables imply for these claims, beyond the seeded ones.

    Same logic as the checks (rules brief): PTP pairs within patient + DOS + rendering provider
    (column 2 line flagged, bypass by NCCI-associated modifiers), MUE per line (MAI 1) or per day
    (MAI 2/3, every line of the code), exact duplicates (later lines).
    """
    out: list[list[list[tuple[str, str]]]] = [[[] for _ in c.lines] for c in claims]
    groups: dict[tuple[int, int, date], list[tuple[int, int]]] = {}
    for c in sorted(range(len(claims)), key=lambda k: claims[k].order):      # file order
        for li in range(len(claims[c].lines)):
            groups.setdefault((claims[c].patient, claims[c].provider, claims[c].dos), []).append((c, li))
    for (_p, _prov, dos), members in groups.items():
        lines = [(c, li, claims[c].lines[li]) for c, li in members]
        for ca, la, a in lines:
            for cb, lb, b in lines:
                if (ca, la) == (cb, lb):
                    continue
                ind = ref.edit_on(a.hcpcs, b.hcpcs, dos)
                if ind is None:
                    continue
                note = f"PTP edit {a.hcpcs}/{b.hcpcs} (indicator {ind})"
                if ind == "0":
                    out[cb][lb].append(("PTP-IND0", note))
                elif _bypassed(a.modifiers, b.modifiers):
                    out[cb][lb].append(("PTP-BYPASS", note))
                else:
                    out[cb][lb].append(("PTP-IND1", note))
        by_code: dict[str, list[tuple[int, int, _SLine]]] = {}
        for c, li, ln in lines:
            by_code.setdefault(ln.hcpcs, []).append((c, li, ln))
        for code, same in by_code.items():
            value, mai = ref.mue.get(code, (None, None))
            if mai == 1:
                for c, li, ln in same:
                    if ln.units > value:
                        out[c][li].append(("MUE-LINE", f"{ln.units} units on one line, MUE {value} (MAI 1)"))
            elif value is not None and (total := sum(ln.units for _c, _l, ln in same)) > value:
                for c, li, _ln in same:
                    out[c][li].append(("MUE-DOS", f"{total} units that day, MUE {value} (MAI {mai})"))
            seen: set[frozenset[str]] = set()
            for c, li, ln in same:
                mods = frozenset(ln.modifiers)
                if mods & DUPLICATE_DISTINGUISHERS:
                    continue
                if mods in seen:
                    out[c][li].append(("DUP-BATCH", "exact repeat of an earlier line"))
                seen.add(mods)
    return out


def _bypassed(mods1: Sequence[str], mods2: Sequence[str]) -> bool:
    if set(mods2) & NCCI_ASSOCIATED or set(mods1) & X_MODIFIERS:
        return True
    return any(set(mods1) & fam and set(mods2) & fam and set(mods1) & fam != set(mods2) & fam
               for fam in ANATOMIC_FAMILIES)


def _build_scenarios(rng: np.random.Generator, ref: _Reference, providers: pd.DataFrame, start: date, end: date,
                     n_scenarios: int, families: set[str] | None, warnings: list[str]
                     ) -> tuple[list[tuple[str, list[_SClaim]]], list[str]]:
    builder = _ScenarioBuilder(rng, ref, providers, start, end)
    kinds = []
    for kind, (_method, rule) in SCENARIOS.items():
        if families is not None and RULES[rule][0] not in families:
            continue
        if kind in _NEEDS_PTP and not ref.has_ptp:
            warnings.append(f"scenario {kind} skipped: no PTP table given")
            continue
        if kind in _NEEDS_MUE and not ref.mue:
            warnings.append(f"scenario {kind} skipped: no MUE table given")
            continue
        kinds.append(kind)
    built: list[tuple[str, list[_SClaim]]] = []
    skipped: set[str] = set()
    pid = 0
    for i in range(n_scenarios if kinds else 0):
        kind = kinds[i % len(kinds)]
        if kind in skipped:
            continue
        claims = getattr(builder, SCENARIOS[kind][0])(pid)
        if claims is None:
            skipped.add(kind)
            warnings.append(f"scenario {kind} skipped: the reference tables lack a usable code or edit")
            continue
        built.append((kind, claims))
        pid += 1
    return built, [k for k in kinds if k not in skipped]


# --- assembly ------------------------------------------------------------------------------------

_DX_BY_SPECIALTY = {e.specialty: e.dx for e in ENCOUNTERS if e.dx}


@dataclass
class _Part:
    """Lines of one origin (clean or seeded) in column form.

    ``ints``: group, order (a scenario's claims in file order), line_number, patient_num, provider,
    day (days since 1970-01-01), units; ``charge``: dollars; ``strs``: string columns as
    (distinct values, codes), code -1 = empty.
    """

    ints: dict[str, np.ndarray]
    charge: np.ndarray
    strs: dict[str, tuple[np.ndarray, np.ndarray]]


_INT_COLUMNS = ("group", "order", "line_number", "patient_num", "provider", "day", "units")
_STR_COLUMNS = ("hcpcs", "modifiers", "place_of_service", "locality", "service_zip", "diagnosis_codes")


def _diagnoses(rng: np.random.Generator, specialty: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1-3 distinct ICD-10-CM codes (837P style, no dot) from the specialty's list, comma separated.

    Returns (distinct strings, code per row): strings are built once per distinct combination.
    """
    specs = sorted(set(specialty))
    width = max(len(_DX_BY_SPECIALTY.get(sp, _FM_DX)) for sp in specs) if specs else 1
    key = np.zeros(len(specialty), dtype=np.int64)
    for s_no, spec in enumerate(specs):
        idx = np.flatnonzero(specialty == spec)
        n = len(_DX_BY_SPECIALTY.get(spec, _FM_DX))
        picks = np.argsort(rng.random((len(idx), n)), axis=1)[:, :3]
        picks = np.pad(picks, ((0, 0), (0, 3 - picks.shape[1])), constant_values=0)
        k = rng.choice([1, 2, 3], size=len(idx), p=[0.45, 0.35, 0.2])
        k = np.minimum(k, n)
        key[idx] = (((s_no * 4 + k) * width + picks[:, 0]) * width + picks[:, 1]) * width + picks[:, 2]
    codes, uniq = pd.factorize(key)
    strings = []
    for u in uniq:
        rest, p3 = divmod(int(u), width)
        rest, p2 = divmod(rest, width)
        rest, p1 = divmod(rest, width)
        s_no, k = divmod(rest, 4)
        dx = _DX_BY_SPECIALTY.get(specs[s_no], _FM_DX)
        strings.append(",".join(dx[p] for p in (p1, p2, p3)[:k]))
    return np.array(strings, dtype=object), codes


def _take_str(values: np.ndarray, codes: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """A string column from distinct values and codes (-1 = missing), without building 1M Python strings."""
    return pd.array(np.asarray(values, dtype=object), dtype="str").take(codes, allow_fill=True)


def generate_claims(n_lines: int, *, pprrvu: pd.DataFrame, ptp: pd.DataFrame | None = None,
                    mue: pd.DataFrame | None = None, seed: int = 0, start: date = date(2025, 10, 1),
                    end: date = date(2025, 12, 31), problem_rate: float = 0.05,
                    families: Iterable[str] | None = None, providers: int | None = None,
                    patients: int | None = None,
                    locations: Sequence[tuple[str, str]] = PRACTICE_LOCATIONS) -> GeneratedClaims:
    """Exactly ``n_lines`` claim lines in the input contract, plus the answer key of seeded problems.

    ``pprrvu``/``ptp``/``mue`` are canonical frames of the releases in force between ``start`` and
    ``end`` (scrubber.schemas). ``problem_rate`` is the share of claims that carry a seeded problem
    (when > 0: at least one of each scenario kind if the batch has room, at most 20,000 scenarios);
    ``families`` limits seeding to those rule families. ``providers``/``patients`` default to about
    one per 2,000 / 10 lines. ``locations`` are the (ZIP, MAC-locality) pairs practices sit in (they
    must be in the ZIP5 and GPCI tables the scrub uses). Same arguments -> identical output.
    """
    if n_lines < 1:
        raise ValueError("n_lines must be at least 1")
    if end < start:
        raise ValueError("end must not be before start")
    fam = set(families) if families is not None else None
    if fam is not None and (unknown := fam - {f for f, _ in RULES.values()}):
        raise ValueError(f"unknown rule families: {sorted(unknown)}")
    rng = np.random.default_rng(seed)
    warnings: list[str] = []
    ref = _Reference(pprrvu, ptp, mue, start, end)
    if ptp is None:
        warnings.append("no PTP table given: clean claims are not checked against PTP edits")

    pools = _build_pools(ref, warnings)
    specialties = sorted({e.specialty for e in pools.encounters})
    roster = _providers(rng, providers or max(len(specialties), round(n_lines / 2000), 12), specialties,
                        locations)
    n_pat = patients or max(1, round(n_lines / 10))

    # seeded scenarios first: their size decides how many clean lines are needed
    n_scen = 0
    if problem_rate > 0:
        n_scen = max(round(problem_rate * n_lines / 4), len(SCENARIOS))
        n_scen = min(n_scen, 20_000, n_lines // 4)
    scenarios, kinds = _build_scenarios(rng, ref, roster, start, end, n_scen, fam, warnings)
    need = n_lines - sum(len(c.lines) for _k, claims in scenarios for c in claims)
    clean_lines = _clean_lines(rng, ref, pools, roster, need, n_pat, start, end)
    clean, clean_meta = _clean_part(rng, ref, pools, roster, clean_lines)
    seeded, key_rows = _scenario_part(rng, ref, roster, scenarios)
    claims, claim_table = _assemble(rng, roster, [clean, seeded])

    key = pd.DataFrame(key_rows, columns=["group", "order", "line_number", "rule_id", "note"])
    key = key.merge(claim_table, on=["group", "order"], how="left")
    key["rule_family"] = key["rule_id"].map(lambda r: RULES[r][0])
    key["severity"] = key["rule_id"].map(lambda r: RULES[r][1])
    key = key.drop_duplicates(["claim_id", "line_number", "rule_id"])
    key = key.sort_values(["claim_id", "line_number", "rule_id"]).reset_index(drop=True)[ANSWER_KEY_COLUMNS]
    key = key.astype({"line_number": "int64"})
    stats = {
        "lines": len(claims), "claims": len(claim_table),
        "patients": int(claims["patient_id"].nunique()), "providers": int(claims["rendering_npi"].nunique()),
        "seeded_scenarios": len(scenarios), "answer_key_rows": len(key),
        "families_seeded": sorted(set(key["rule_family"])), "scenario_kinds": kinds, **clean_meta,
    }
    for w in warnings:
        log.warning(w)
    return GeneratedClaims(claims=claims, answer_key=key, warnings=warnings, stats=stats)


def _assemble(rng: np.random.Generator, roster: pd.DataFrame, parts: list[_Part]
              ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Join the parts, order claims by date of service and number them; the contract frame + claim table."""
    ints = {c: np.concatenate([p.ints[c] for p in parts]).astype(np.int64) for c in _INT_COLUMNS}
    charge = np.concatenate([p.charge for p in parts])
    strs = {}
    for c in _STR_COLUMNS:
        values, codes, offset = [], [], 0
        for p in parts:
            v, k = p.strs[c]
            values.append(np.asarray(v, dtype=object))
            codes.append(np.where(k >= 0, k + offset, -1))
            offset += len(v)
        strs[c] = (np.concatenate(values), np.concatenate(codes).astype(np.int64))
    group, order = ints["group"], ints["order"]
    n = len(group)
    starts = np.flatnonzero(np.r_[True, (group[1:] != group[:-1]) | (order[1:] != order[:-1])]) if n else \
        np.array([], dtype=np.int64)
    sizes = np.diff(np.r_[starts, n])
    # file order: by date of service (ties at random), a scenario's claims in their intended order
    g_codes, g_uniq = pd.factorize(group[starts])
    tiebreak = rng.random(len(g_uniq))[g_codes]
    claim_rank = np.empty(len(starts), dtype=np.int64)
    claim_rank[np.lexsort((order[starts], tiebreak, ints["day"][starts]))] = np.arange(len(starts))
    perm = np.argsort(np.repeat(claim_rank, sizes), kind="stable")
    claim_ids = np.char.add("C", np.char.zfill(np.arange(1, len(starts) + 1).astype(str), 9)).astype(object)
    line_rank = np.repeat(claim_rank, sizes)[perm]
    # synthetic patient ids: random 9-digit numbers, so seeded patients do not stand out
    nums, pat_code = np.unique(ints["patient_num"], return_inverse=True)
    pat_ids = np.char.add("P", np.char.zfill(rng.choice(10 ** 9, size=len(nums), replace=False).astype(str), 9))
    days, day_code = np.unique(ints["day"], return_inverse=True)
    day_text = np.datetime_as_string(days.astype("datetime64[D]"), unit="D").astype(object)
    prov = ints["provider"][perm]
    frame = pd.DataFrame({
        "claim_id": _take_str(claim_ids, line_rank),
        "line_number": ints["line_number"][perm],
        "patient_id": _take_str(pat_ids.astype(object), pat_code[perm]),
        "rendering_npi": _take_str(roster["rendering_npi"].to_numpy(dtype=object), prov),
        "billing_npi": _take_str(roster["billing_npi"].to_numpy(dtype=object), prov),
        "payer": _take_str(np.array(["medicare"], dtype=object), np.zeros(n, dtype=np.int64)),
        "service_date": _take_str(day_text, day_code[perm]),
        "hcpcs": _take_str(*_perm(strs["hcpcs"], perm)),
        "modifiers": _take_str(*_perm(strs["modifiers"], perm)),
        "units": ints["units"][perm],
        "charge_amount": charge[perm].astype(np.float64),
        "place_of_service": _take_str(*_perm(strs["place_of_service"], perm)),
        "locality": _take_str(*_perm(strs["locality"], perm)),
        "service_zip": _take_str(*_perm(strs["service_zip"], perm)),
        "diagnosis_codes": _take_str(*_perm(strs["diagnosis_codes"], perm)),
    })
    claim_table = pd.DataFrame({"group": group[starts], "order": order[starts],
                                "claim_id": claim_ids[claim_rank]})
    return frame[CLAIM_COLUMNS], claim_table


def _perm(col: tuple[np.ndarray, np.ndarray], perm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return col[0], col[1][perm]


def _clean_lines(rng: np.random.Generator, ref: _Reference, pools: _Pools, roster: pd.DataFrame, need: int,
                 n_pat: int, start: date, end: date, patient_offset: int = 0) -> pd.DataFrame:
    """Clean lines totalling exactly ``need``: oversample, keep whole claims in random order, top up."""
    if need <= 0:
        return pd.DataFrame()
    batch = _clean_batch(rng, ref, pools, roster, max(8, int(need / 3.6 * 1.3) + 8), n_pat, start, end)
    batch["patient"] += patient_offset
    sizes = np.bincount(batch["claim_idx"].to_numpy())
    order = rng.permutation(np.flatnonzero(sizes))
    csum = np.cumsum(sizes[order])
    fits = csum <= need
    gap = need - (int(csum[fits][-1]) if fits.any() else 0)
    extra = []
    for c in order[~fits]:
        if not gap:
            break                   # the gap is smaller than one claim: a few iterations at most
        if sizes[c] <= gap:
            extra.append(c)
            gap -= int(sizes[c])
    chosen = np.zeros(len(sizes), dtype=bool)
    chosen[order[fits]] = True
    chosen[np.array(extra, dtype=np.int64)] = True
    out = batch[chosen[batch["claim_idx"].to_numpy()]].reset_index(drop=True)
    if gap:   # the oversample ran short: top up with claims of new patients
        more = _clean_lines(rng, ref, pools, roster, gap, n_pat, start, end, patient_offset + n_pat + 1)
        more["claim_idx"] += len(sizes)
        out = pd.concat([out, more], ignore_index=True)
    return out


def _clean_part(rng: np.random.Generator, ref: _Reference, pools: _Pools, roster: pd.DataFrame,
                lines: pd.DataFrame) -> tuple[_Part, dict]:
    """Integer line table -> a _Part (modifier lists, charges, diagnoses, locality or ZIP per claim)."""
    if not len(lines):
        empty = np.array([], dtype=np.int64)
        return _Part({c: empty for c in _INT_COLUMNS}, np.array([], dtype=float),
                     {c: (np.array([], dtype=object), empty) for c in _STR_COLUMNS}), {"clean_lines": 0}
    claim_idx = lines["claim_idx"].to_numpy()
    starts = np.flatnonzero(np.r_[True, claim_idx[1:] != claim_idx[:-1]])
    n_claims = len(starts)
    claim_of_line = np.repeat(np.arange(n_claims), np.diff(np.r_[starts, len(lines)]))
    code, pos = lines["code"].to_numpy(), lines["pos"].to_numpy()
    # modifier lists: few distinct combinations, so strings are built per combination
    fixed_has26 = np.array(["26" in m.split(",") for m in pools.fixed_mods])
    fixed_rest = np.array([",".join(x for x in m.split(",") if x and x != "26") for m in pools.fixed_mods],
                          dtype=object)
    mods_id, side = lines["mods"].to_numpy(), lines["side_mod"].to_numpy()
    m25, xs = lines["m25"].to_numpy(), lines["xs"].to_numpy()
    combo = (((mods_id * 3 + side) * 2 + m25) * 2 + xs)
    combo_codes, combo_uniq = pd.factorize(combo)
    combo_text = []
    for c in combo_uniq:
        rest, x = divmod(int(c), 2)
        rest, e25 = divmod(rest, 2)
        mid, sd = divmod(rest, 3)
        parts = ["26" if fixed_has26[mid] else "", ("", "RT", "LT")[sd], "25" if e25 else "", fixed_rest[mid],
                 "XS" if x else ""]
        combo_text.append(",".join(p for p in parts if p))
    has26 = fixed_has26[mods_id]
    # charges: the practice's fee (about 1.5-2.8 x the Medicare amount) times units; drugs at a unit price
    price_key = (code * 2 + has26) * len(pools.pos_values) + pos
    pk_codes, pk_uniq = pd.factorize(price_key)
    base = np.array([ref.amount(str(pools.vocab[k // 2 // len(pools.pos_values)]),
                                "26" if (k // len(pools.pos_values)) % 2 else "",
                                str(pools.pos_values[k % len(pools.pos_values)])) for k in pk_uniq])[pk_codes]
    markup = rng.uniform(1.5, 2.8, size=n_claims)[claim_of_line]
    units = lines["units"].to_numpy()
    charge = np.maximum(np.round(np.where(base > 0, base, _DRUG_UNIT_PRICE) * units * markup, 2), 5.0)
    # per claim: diagnoses, and a locality, a ZIP or neither (then pricing uses the national amounts)
    provider = lines["provider"].to_numpy()
    claim_prov = provider[starts]
    dx_values, dx_codes = _diagnoses(rng, roster["specialty"].to_numpy(dtype=object)[claim_prov])
    loc_mode = rng.choice(3, size=n_claims, p=[0.35, 0.35, 0.30])[claim_of_line]
    ints = {"group": claim_of_line, "order": np.zeros(len(lines), np.int64),
            "line_number": _ranks_within(np.diff(np.r_[starts, len(lines)])) + 1,
            "patient_num": lines["patient"].to_numpy(), "provider": provider, "day": lines["day"].to_numpy(),
            "units": units}
    strs = {
        "hcpcs": (pools.vocab, code), "modifiers": (np.array(combo_text, dtype=object), combo_codes),
        "place_of_service": (pools.pos_values, pos),
        "locality": (roster["locality"].to_numpy(dtype=object), np.where(loc_mode == 0, provider, -1)),
        "service_zip": (roster["zip"].to_numpy(dtype=object), np.where(loc_mode == 1, provider, -1)),
        "diagnosis_codes": (dx_values, dx_codes[claim_of_line]),
    }
    enc_names = np.array([e.name for e in pools.encounters], dtype=object)
    meta = {"clean_lines": len(lines), "clean_claims": n_claims,
            "encounters": pd.Series(enc_names[lines["enc"].to_numpy()[starts]]).value_counts().to_dict()}
    return _Part(ints, charge, strs), meta


def _scenario_part(rng: np.random.Generator, ref: _Reference, roster: pd.DataFrame,
                   scenarios: list[tuple[str, list[_SClaim]]]) -> tuple[_Part, list[tuple]]:
    """Seeded claims as a _Part, and their answer-key rows (seeded + implied by the tables)."""
    group_base = 1 << 40          # apart from clean claim groups
    patient_base = 1 << 40        # apart from clean patient numbers
    cols: dict[str, list] = {c: [] for c in (*_INT_COLUMNS, "charge", "hcpcs", "modifiers", "place_of_service",
                                             "claim_no")}
    key_rows: list[tuple] = []
    amounts: dict[tuple[str, str, str], float] = {}
    claim_no = 0
    implied_cache: dict[tuple, list[list[list[tuple[str, str]]]]] = {}
    for s, (kind, claims) in enumerate(scenarios):
        # the implied flags depend on codes, modifiers, units, dates and which claims share a provider
        shape = tuple((c.dos, c.provider == claims[0].provider, c.order,
                       tuple((ln.hcpcs, ln.modifiers, ln.units) for ln in c.lines)) for c in claims)
        if shape not in implied_cache:
            implied_cache[shape] = _derive_expected(ref, claims)
        implied = implied_cache[shape]
        for c_no, claim in enumerate(claims):
            day = (claim.dos - date(1970, 1, 1)).days
            for li, ln in enumerate(claim.lines):
                pricing = "26" if "26" in ln.modifiers else ""
                if (ln.hcpcs, pricing, claim.pos) not in amounts:
                    amounts[ln.hcpcs, pricing, claim.pos] = ref.amount(ln.hcpcs, pricing, claim.pos)
                amount = amounts[ln.hcpcs, pricing, claim.pos]
                charge = max(round((amount if amount > 0 else _DRUG_UNIT_PRICE) * ln.units * 2.0, 2), 5.0)
                for name, value in (("group", group_base + s), ("order", claim.order), ("line_number", li + 1),
                                    ("patient_num", patient_base + claim.patient), ("provider", claim.provider),
                                    ("day", day), ("units", int(ln.units)), ("charge", charge),
                                    ("hcpcs", ln.hcpcs), ("modifiers", ",".join(ln.modifiers)),
                                    ("place_of_service", claim.pos), ("claim_no", claim_no)):
                    cols[name].append(value)
                for rule in ln.expect:
                    key_rows.append((group_base + s, claim.order, li + 1, rule, f"{kind}: {ln.note}"))
                for rule, note in implied[c_no][li]:
                    key_rows.append((group_base + s, claim.order, li + 1, rule, f"{kind}: also {note}"))
            claim_no += 1
    n = len(cols["group"])
    ints = {c: np.array(cols[c], dtype=np.int64) for c in _INT_COLUMNS}
    claim_no_arr = np.array(cols["claim_no"], dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, claim_no_arr[1:] != claim_no_arr[:-1]]) if n else np.array([], np.int64)
    claim_of_line = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, n]))
    prov = ints["provider"]
    dx_values, dx_codes = _diagnoses(rng, roster["specialty"].to_numpy(dtype=object)[prov[starts]])
    loc_mode = rng.integers(0, 3, size=len(starts))[claim_of_line]
    strs = {c: tuple(reversed(pd.factorize(np.array(cols[c], dtype=object)))) for c in
            ("hcpcs", "modifiers", "place_of_service")}
    strs = {c: (np.asarray(v, dtype=object), k) for c, (v, k) in strs.items()}
    strs["locality"] = (roster["locality"].to_numpy(dtype=object), np.where(loc_mode == 0, prov, -1))
    strs["service_zip"] = (roster["zip"].to_numpy(dtype=object), np.where(loc_mode == 1, prov, -1))
    strs["diagnosis_codes"] = (dx_values, dx_codes[claim_of_line] if n else np.array([], np.int64))
    return _Part(ints, np.array(cols["charge"], dtype=float), strs), key_rows


# --- reference frames ------------------------------------------------------------------------------

def reference_frames(paths: Iterable[str | Path]) -> dict[str, pd.DataFrame]:
    """Canonical tables parsed straight from CMS files (folders, zips, single files), no store needed.

    Uses the same parsers as ``scrubber reference load``; parts of one table (PTP f1..f4) are
    concatenated. Handy for feeding :func:`generate_claims` from a release on disk.
    """
    from scrubber.reference.loader import LoadReport, all_parsers, detect, expand

    frames: dict[str, list[pd.DataFrame]] = {}
    for member, parser in detect(expand(paths), all_parsers(), LoadReport()):
        parsed = parser.parse(member.name, member.data)
        frames.setdefault(parsed.table, []).append(parsed.frame)
    return {t: pd.concat(f, ignore_index=True) if len(f) > 1 else f[0] for t, f in frames.items()}


def frames_from_store(store: Store, dos: date) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None]:
    """(pprrvu, ptp, mue) of the releases in force on ``dos`` in a store; ptp/mue None when not loaded."""
    from scrubber.errors import ReferenceNotFound
    from scrubber.reference.catalog import ReferenceSet

    refset = ReferenceSet(store)
    pprrvu = refset.table("pprrvu", refset.release_for("rvu", dos).release)
    out: list[pd.DataFrame | None] = []
    for kind in ("ptp", "mue"):
        try:
            out.append(refset.table(kind, refset.release_for(kind, dos).release))
        except ReferenceNotFound:
            out.append(None)
    return pprrvu, out[0], out[1]


# --- writers -------------------------------------------------------------------------------------

def write_claims(gen: GeneratedClaims, path: str | Path, fmt: str = "csv") -> Path:
    """Write the claim lines as a CSV (ISO dates, charges with 2 decimals) or a Parquet file."""
    return _write(gen.claims, path, fmt)


def write_answer_key(gen: GeneratedClaims, path: str | Path, fmt: str = "csv") -> Path:
    """Write the answer key (claim_id, line_number, rule_family, severity, rule_id, note)."""
    return _write(gen.answer_key, path, fmt)


def _write(frame: pd.DataFrame, path: str | Path, fmt: str) -> Path:
    path = Path(path)
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"unknown format {fmt!r} (csv or parquet)")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        path.write_bytes(csv_bytes(frame))
    else:
        frame.to_parquet(path, index=False)
    return path


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """The frame as CSV (header, LF, fields quoted only when they hold a comma or quote; floats with 2
    decimals; missing values empty), built with Arrow kernels: a million lines in about a second."""
    import pyarrow as pa
    import pyarrow.compute as pc

    fields = []
    for name in frame.columns:
        col = frame[name]
        if pd.api.types.is_float_dtype(col):
            cents = np.round(col.to_numpy(dtype=float) * 100).astype(np.int64)
            text = pc.binary_join_element_wise(pa.array(cents // 100).cast(pa.string()),
                                               pc.utf8_lpad(pa.array(cents % 100).cast(pa.string()), 2, "0"), ".")
        elif pd.api.types.is_integer_dtype(col):
            text = pa.array(col.to_numpy()).cast(pa.string())
        else:
            arr = pa.array(col.array, from_pandas=True) if isinstance(col.dtype, pd.StringDtype) else \
                pa.array(col.to_numpy(dtype=object), from_pandas=True)
            if isinstance(arr, pa.ChunkedArray):
                arr = arr.combine_chunks()
            text = pc.fill_null(arr.cast(pa.string()), "")
            special = pc.match_substring_regex(text, '[,"\r\n]')
            if pc.any(special).as_py():                 # most columns never need quoting: skip the work
                quoted = pc.binary_join_element_wise('"', pc.replace_substring(text, '"', '""'), '"', "")
                text = pc.if_else(special, quoted, text)
        fields.append(text)
    header = ",".join(frame.columns) + "\n"
    if not len(frame):
        return header.encode()
    lines = pc.binary_join_element_wise(pc.binary_join_element_wise(*fields, ","), "\n", "")
    lines = pa.array(lines).cast(pa.large_string())
    _validity, offsets, data = lines.buffers()
    off = np.frombuffer(offsets, dtype=np.int64)[lines.offset: lines.offset + len(lines) + 1]
    return header.encode() + data.to_pybytes()[off[0]:off[-1]]
