"""Canonical column sets shared by every module: reference tables, claim lines, flags.

One place for these names so parsers, checks, pricing and the report agree. Columns listed in the
public contract (docs: architecture 3.2/3.3) are never renamed or dropped; new ones may be added.
"""

from __future__ import annotations

import pyarrow as pa

# --- reference tables (Parquet under reference/<table>/<release>/) -------------------------------
#
# Exact decimals (RVUs, GPCIs, CF, OPPS prices) are stored as decimal128 in Parquet and arrive in
# pandas as decimal.Decimal objects; pricing converts them once per release to scaled ints
# (scrubber.money). Codes and indicators are strings (leading zeros matter).

PPRRVU_COLUMNS: list[str] = [
    "hcpcs", "modifier",            # modifier "" for the global row, "26", "TC", "53"
    "description", "status_code", "not_used_for_medicare",  # "+" or ""
    "work_rvu", "pe_rvu_nonfacility", "nonfacility_na", "pe_rvu_facility", "facility_na", "mp_rvu",
    "total_nonfacility", "total_facility",
    "pctc_indicator", "global_days", "preop_pct", "intraop_pct", "postop_pct",
    "mult_proc", "bilat_surg", "asst_surg", "co_surg", "team_surg",
    "pricing_indicator",            # 2026+ only; "" before
    "endo_base", "conversion_factor", "phys_supervision", "calc_flag", "imaging_family",
    "opps_pe_nonfacility", "opps_pe_facility", "opps_mp",
]
# nonfacility_na / facility_na: bool (True where the file prints "NA").
# decimal columns: work_rvu, pe_rvu_*, mp_rvu, total_*, *_pct, conversion_factor, opps_*.

GPCI_COLUMNS: list[str] = ["mac", "locality", "locality_id", "state", "locality_name",
                           "gpci_work", "gpci_pe", "gpci_mp"]
# mac "01112", locality "05", locality_id "01112-05" (the MAC-LOC form claims use)

LOCCO_COLUMNS: list[str] = ["mac", "locality", "locality_id", "state", "fee_schedule_area", "counties"]
ANES_COLUMNS: list[str] = ["mac", "locality", "locality_id", "locality_name", "anes_cf"]
OPPSCAP_COLUMNS: list[str] = ["hcpcs", "modifier", "proc_status", "mac", "locality", "locality_id",
                              "facility_price", "nonfacility_price"]
ZIP5_COLUMNS: list[str] = ["zip5", "state", "mac", "locality", "locality_id", "rural_indicator",
                           "plus_four_flag", "year_quarter"]
PTP_COLUMNS: list[str] = ["column_1", "column_2", "prior_1996", "effective_date", "deletion_date",
                          "modifier_indicator", "rationale"]
# effective_date / deletion_date: datetime64 (deletion NaT = "*", still active); modifier_indicator "0"/"1"/"9"
MUE_COLUMNS: list[str] = ["hcpcs", "mue_value", "mai", "rationale"]
# mue_value int, mai int (1/2/3)

#: table name -> the kind of release it belongs to
TABLE_KIND: dict[str, str] = {
    "pprrvu": "rvu", "gpci": "rvu", "locco": "rvu", "anes": "rvu", "oppscap": "rvu",
    "zip5": "zip", "ptp": "ptp", "mue": "mue",
}

# --- claim lines (canonical, after intake) --------------------------------------------------------

CLAIM_INPUT_REQUIRED: list[str] = ["claim_id", "line_number", "patient_id", "rendering_npi",
                                   "service_date", "hcpcs", "units", "place_of_service"]
CLAIM_INPUT_OPTIONAL: list[str] = ["billing_npi", "payer", "modifiers", "modifier_1", "modifier_2",
                                   "modifier_3", "modifier_4", "charge_amount", "locality", "service_zip",
                                   "diagnosis_codes"]

LINE_COLUMNS: list[str] = [
    "line_uid",          # int64, unique within a run (stable order of intake)
    "source_file", "source_row",   # file name and 1-based physical row (header = row 1)
    "claim_id", "line_number", "patient_id", "rendering_npi", "billing_npi", "payer",
    "service_date",      # datetime64[ns] (date only)
    "hcpcs", "modifiers",  # modifiers: canonical "25,59" (order kept, upper-case, "" when none)
    "modifier_1", "modifier_2", "modifier_3", "modifier_4",
    "units",             # float64 (> 0)
    "charge_amount",     # float64, NaN when absent
    "place_of_service",  # "11"
    "locality", "service_zip", "diagnosis_codes",
]

# --- flags (exception report) ---------------------------------------------------------------------

FLAG_COLUMNS: list[str] = [
    "run_id", "claim_id", "line_number", "patient_id", "rendering_npi", "service_date", "hcpcs",
    "modifiers", "units", "place_of_service", "rule_family", "rule_id", "severity", "message",
    "related_claim_id", "related_line_number", "expected_allowed", "amount_at_risk", "reference_release",
    # extensions
    "fix", "carc", "payer", "line_uid", "related_line_uid", "source_file", "source_row",
    "amount_basis",      # how pricing derives amount_at_risk for this flag (line | pos_difference | mppr | none)
]

#: what a check function returns, one row per hit; the engine adds the line columns from the lines.
CHECK_RESULT_COLUMNS: list[str] = ["line_uid", "rule_id", "related_line_uid", "detail", "amount_basis"]
# detail: str, specifics interpolated into the rule's message template ({detail})
# amount_basis: optional str naming how amount_at_risk is derived: "line" (the line's expected
#   allowed), "pos_difference", "none"; None -> the rule's default from rules/rules.yaml

RULE_FAMILIES: tuple[str, ...] = ("units", "bundling", "frequency", "modifier25", "place_of_service",
                                  "code_status", "duplicate")
SEVERITIES: tuple[str, ...] = ("deny", "review", "info")


#: columns holding about one value per line, claim or patient. Parquet files get no dictionary for them
#: (hashing a million near-unique values costs encoding time, and the dictionary makes the file bigger),
#: and claim files are read with them as plain text.
MOSTLY_DISTINCT_COLUMNS: frozenset[str] = frozenset({
    "line_uid", "source_row", "claim_id", "patient_id", "related_line_uid", "related_claim_id"})


def parquet_dictionary_columns(names: list[str]) -> list[str]:
    """The columns of a Parquet file to dictionary-encode: all but :data:`MOSTLY_DISTINCT_COLUMNS`."""
    return [name for name in names if name not in MOSTLY_DISTINCT_COLUMNS]


def is_arrow_text(kind: pa.DataType) -> bool:
    """Arrow text in either offset width: pandas' text columns are large_string, files often string."""
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)
