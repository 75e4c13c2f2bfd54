"""Hand-built CheckContexts for check tests: canonical columns with sensible defaults.

Import from test modules in tests/checks/ as ``from factory import make_lines, make_context`` (pytest's
default import mode puts this folder on sys.path). Everything is plain pandas in the canonical
schema, so a test states only what matters to it::

    lines = make_lines([{"hcpcs": "20553"}, {"hcpcs": "20552", "modifiers": "59"}])
    ctx = make_context(lines, ptp=make_ptp([{"column_1": "20553", "column_2": "20552",
                                             "modifier_indicator": "0"}]))

- :func:`make_lines`: every ``schemas.LINE_COLUMNS`` column plus the pipeline's reference annotations
  (``rvu_release``, ``ptp_release``, ``mue_release``, PPRRVU indicators, ``expected_allowed``). The
  PPRRVU indicators default to the real RVU25D row of the code when it is in :data:`PPRRVU_ROWS`
  (values from shared/reference-data KEY_ROWS.md and the RVU25D PPRRVU CSV); any key given in a row
  wins. ``modifier_1..4`` are derived from ``modifiers`` ("59,RT" or a list).
- :func:`make_history`: the same plus ``run_id`` (history of earlier runs).
- :func:`make_ptp`, :func:`make_mue`: reference tables in ``schemas.PTP_COLUMNS`` / ``MUE_COLUMNS``
  plus ``release``.
- :func:`make_context`: a CheckContext with the real rules/ (RuleBook.load) unless given.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scrubber.checks.context import CheckContext
from scrubber.rules import RuleBook
from scrubber.schemas import LINE_COLUMNS, MUE_COLUMNS, PTP_COLUMNS
from scrubber.settings import Settings

REPO = Path(__file__).resolve().parents[2]
RULES_DIR = REPO / "rules"

RVU_RELEASE = "RVU25D"
PTP_RELEASE = "PTP-2025Q4"
MUE_RELEASE = "MUE-2025Q4"
DEFAULT_DATE = "2025-03-14"
DEFAULT_NPI = "1234567893"

ANNOTATION_COLUMNS: list[str] = ["rvu_release", "ptp_release", "mue_release", "status_code", "global_days",
                                 "pctc_indicator", "nonfacility_na", "facility_na", "mult_proc", "bilat_surg",
                                 "asst_surg", "co_surg", "team_surg", "endo_base", "expected_allowed"]
_INDICATORS = ["status_code", "global_days", "pctc_indicator", "nonfacility_na", "facility_na", "mult_proc",
               "bilat_surg", "asst_surg", "co_surg", "team_surg", "endo_base"]

#: PPRRVU indicators per code: RVU25D (October 2025) rows [CMS-data]. Fields: status, global days,
#: PC/TC, facility NA, mult proc, bilat, asst, co-surg, team.
PPRRVU_ROWS: dict[str, tuple[str, str, str, bool, str, str, str, str, str]] = {
    "11042": ("A", "000", "0", False, "2", "0", "1", "0", "0"),
    "17000": ("A", "010", "0", False, "2", "0", "1", "0", "0"),
    "20552": ("A", "000", "0", False, "2", "0", "1", "0", "0"),
    "20553": ("A", "000", "0", False, "2", "0", "1", "0", "0"),
    "20610": ("A", "000", "0", False, "2", "1", "1", "0", "0"),
    "96372": ("A", "XXX", "5", True, "0", "0", "0", "0", "0"),
    "99213": ("A", "XXX", "0", False, "0", "0", "0", "0", "0"),
    "99214": ("A", "XXX", "0", False, "0", "0", "0", "0", "0"),
    "11045": ("A", "ZZZ", "0", False, "0", "0", "0", "0", "0"),
    "99291": ("A", "XXX", "0", False, "0", "0", "0", "0", "0"),
    "99292": ("A", "ZZZ", "0", False, "0", "0", "0", "0", "0"),
    "G2211": ("A", "ZZZ", "0", False, "0", "0", "0", "0", "0"),
}
#: statuses of other codes used in tests (billing-domain 1.5 examples); indicators default to 0/XXX
STATUS_OF: dict[str, str] = {
    "99070": "B", "A4550": "B", "99243": "I", "99244": "I", "99397": "N", "36415": "X", "96523": "T",
    "36591": "T", "J2001": "E", "J2002": "E", "J2003": "E", "J2004": "E", "J3301": "E", "J1100": "E",
}


def _modifier_list(value: Any) -> list[str]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, str):
        return [m.strip().upper() for m in value.replace(";", ",").replace(" ", ",").split(",") if m.strip()]
    return [str(m).strip().upper() for m in value if str(m).strip()]


def _annotation_defaults(hcpcs: str) -> dict[str, Any]:
    row = PPRRVU_ROWS.get(hcpcs)
    if row is not None:
        status, glob, pctc, fac_na, mult, bilat, asst, co, team = row
    else:
        status, glob, pctc, fac_na, mult, bilat, asst, co, team = (STATUS_OF.get(hcpcs, "A"), "XXX", "0", False,
                                                                     "0", "0", "0", "0", "0")
    return {"status_code": status, "global_days": glob, "pctc_indicator": pctc, "nonfacility_na": False,
            "facility_na": fac_na, "mult_proc": mult, "bilat_surg": bilat, "asst_surg": asst, "co_surg": co,
            "team_surg": team, "endo_base": ""}


def make_lines(rows: list[dict[str, Any]], *, start_uid: int = 0) -> pd.DataFrame:
    """Canonical batch lines (LINE_COLUMNS + annotations) from partial row dicts.

    Defaults: one patient "P1", rendering NPI 1234567893 (billing NPI the same), DOS 2025-03-14,
    99213, 1 unit, POS 11, payer medicare, claim "C<n>" per row unless ``claim_id`` is given (line
    numbers then count within the claim), line_uid = start_uid + row index, releases RVU25D /
    PTP-2025Q4 / MUE-2025Q4, expected_allowed NaN.
    """
    records = []
    for i, given in enumerate(rows):
        r = dict(given)
        hcpcs = str(r.get("hcpcs", "99213")).upper()
        mods = _modifier_list(r.pop("modifiers", None))
        base: dict[str, Any] = {
            "line_uid": start_uid + i, "source_file": "claims.csv", "source_row": i + 2,
            "claim_id": f"C{start_uid + i + 1}", "patient_id": "P1", "rendering_npi": DEFAULT_NPI,
            "billing_npi": None, "payer": "medicare", "service_date": DEFAULT_DATE, "hcpcs": hcpcs,
            "modifiers": ",".join(mods), "units": 1.0, "charge_amount": np.nan, "place_of_service": "11",
            "locality": "", "service_zip": "", "diagnosis_codes": "",
            "rvu_release": RVU_RELEASE, "ptp_release": PTP_RELEASE, "mue_release": MUE_RELEASE,
            "expected_allowed": np.nan,
        }
        for k in range(4):
            base[f"modifier_{k + 1}"] = mods[k] if k < len(mods) else ""
        base.update(_annotation_defaults(hcpcs))
        base.update(r)
        base["hcpcs"] = hcpcs
        if base["billing_npi"] is None:
            base["billing_npi"] = base["rendering_npi"]
        records.append(base)
    frame = pd.DataFrame.from_records(records)
    if "line_number" not in frame or frame["line_number"].isna().any():
        seq = frame.groupby("claim_id", sort=False).cumcount() + 1
        frame["line_number"] = frame["line_number"].fillna(seq) if "line_number" in frame else seq
    frame["line_number"] = frame["line_number"].astype("int64")
    frame["line_uid"] = frame["line_uid"].astype("int64")
    frame["source_row"] = frame["source_row"].astype("int64")
    frame["service_date"] = pd.to_datetime(frame["service_date"]).astype("datetime64[ns]")
    frame["units"] = frame["units"].astype(float)
    frame["charge_amount"] = pd.to_numeric(frame["charge_amount"], errors="coerce").astype(float)
    frame["expected_allowed"] = pd.to_numeric(frame["expected_allowed"], errors="coerce").astype(float)
    for col in ("claim_id", "patient_id", "rendering_npi", "billing_npi", "payer", "hcpcs", "modifiers",
                "place_of_service", "modifier_1", "modifier_2", "modifier_3", "modifier_4"):
        frame[col] = frame[col].astype("str")
    extra = [c for c in frame.columns if c not in LINE_COLUMNS and c not in ANNOTATION_COLUMNS]
    return frame[[*LINE_COLUMNS, *ANNOTATION_COLUMNS, *extra]]


def make_history(rows: list[dict[str, Any]], *, run_id: str = "20250313-earlier", start_uid: int = 0) -> pd.DataFrame:
    """Lines of an earlier run (``run_id`` column); uids restart at ``start_uid`` like a real run's."""
    frame = make_lines(rows, start_uid=start_uid)
    if "run_id" not in frame:
        frame["run_id"] = run_id
    return frame


def empty_history() -> pd.DataFrame:
    return make_history([{}]).iloc[0:0].reset_index(drop=True)


def make_ptp(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """PTP edits: column_1, column_2 required; effective 1996-01-01, active, indicator "1" by default."""
    out = []
    for r in rows:
        rec = {"column_1": r["column_1"], "column_2": r["column_2"], "prior_1996": r.get("prior_1996", ""),
               "effective_date": r.get("effective_date", "1996-01-01"), "deletion_date": r.get("deletion_date"),
               "modifier_indicator": str(r.get("modifier_indicator", "1")),
               "rationale": r.get("rationale", "Standards of medical/surgical practice"),
               "release": r.get("release", PTP_RELEASE)}
        out.append(rec)
    frame = pd.DataFrame.from_records(out, columns=[*PTP_COLUMNS, "release"])
    frame["effective_date"] = pd.to_datetime(frame["effective_date"]).astype("datetime64[ns]")
    frame["deletion_date"] = pd.to_datetime(frame["deletion_date"]).astype("datetime64[ns]")
    return frame


def make_mue(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """MUE rows: hcpcs, mue_value, mai required."""
    out = [{"hcpcs": r["hcpcs"], "mue_value": int(r["mue_value"]), "mai": int(r["mai"]),
            "rationale": r.get("rationale", "Clinical: Data"), "release": r.get("release", MUE_RELEASE)}
           for r in rows]
    frame = pd.DataFrame.from_records(out, columns=[*MUE_COLUMNS, "release"])
    frame["mue_value"] = frame["mue_value"].astype("int64")
    frame["mai"] = frame["mai"].astype("int64")
    return frame


@lru_cache(maxsize=1)
def rulebook() -> RuleBook:
    """The project's real rules/ folder, loaded once."""
    return RuleBook.load(RULES_DIR)


def make_context(lines: pd.DataFrame, *, history: pd.DataFrame | None = None, ptp: pd.DataFrame | None = None,
                 mue: pd.DataFrame | None = None, pprrvu: pd.DataFrame | None = None, rules: RuleBook | None = None,
                 settings: Settings | None = None) -> CheckContext:
    """A CheckContext over hand-built frames (empty reference tables and history unless given)."""
    return CheckContext(
        lines=lines,
        history=history if history is not None else empty_history(),
        pprrvu=pprrvu if pprrvu is not None else pd.DataFrame(),
        ptp=ptp if ptp is not None else make_ptp([]),
        mue=mue if mue is not None else make_mue([]),
        rules=rules if rules is not None else rulebook(),
        settings=settings if settings is not None else Settings(),
    )
