"""Code status and modifier validity against the PPRRVU indicators (billing-domain 1.5, 1.6, 3.2-3.5).

Reads only the line annotations the pipeline adds from the PPRRVU row of (hcpcs, pricing modifier) in
the release in force on the date of service: ``status_code``, ``pctc_indicator``, ``bilat_surg``,
``asst_surg``, ``co_surg``, ``team_surg`` (None where the code is not in that release) and
``rvu_release`` (None where no loaded release covers the date). A line with 26/TC is annotated from
the ``26``/``TC`` row when one exists, else from the global row, so "26 on a PC/TC 0 code" shows up
here as indicator 0.

Status B/P (bundled) and T (injection bundled with other services) belong to the bundling family;
status E (Part B drugs, paid outside the fee schedule) and A are not flagged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scrubber.checks.context import CheckContext
from scrubber.checks.engine import (
    LineModifiers,
    concat_results,
    empty_result,
    format_combinations,
    line_modifiers,
    make_result,
    text_in,
    text_values,
)

FAMILY = "code_status"

#: billing-domain 1.5, paraphrased for the people reading the report
STATUS_MEANING: dict[str, str] = {
    "A": "A (active: paid under the fee schedule if covered)",
    "R": "R (restricted coverage: paid only in special cases, priced by the MAC)",
    "T": "T (injection paid only when no other fee-schedule service is billed the same day)",
    "C": "C (carrier-priced: the MAC prices it case by case)",
    "B": "B (bundled: never paid separately, even when RVUs are shown)",
    "P": "P (bundled or excluded: supplies are part of the visit; other items are paid outside the fee schedule)",
    "E": "E (excluded from the fee schedule by regulation; Part B drugs are paid from the drug pricing file)",
    "X": "X (statutory exclusion: not a physician service, e.g. clinical lab or ambulance; paid under another "
         "fee schedule, not this one)",
    "I": "I (not valid for Medicare: Medicare uses another code for this service)",
    "N": "N (non-covered service: the patient pays only with a signed advance notice)",
    "M": "M (quality measurement code, $0)",
    "J": "J (anesthesia service: base and time units, no RVUs)",
    "D": "D (deleted code)",
    "F": "F (deleted code, no grace period)",
    "G": "G (not valid for Medicare; replaced by another code)",
    "H": "H (deleted modifier for this code)",
}
#: statuses reported as CODE-NOT-PAYABLE (billing-domain 1.5: I, N, X and the historical D/F/G/H)
NOT_PAYABLE_STATUSES: frozenset[str] = frozenset({"I", "N", "X", "D", "F", "G", "H"})
#: status -> informational / review rule
STATUS_RULES: dict[str, str] = {"C": "CODE-CARRIER-PRICED", "R": "CODE-RESTRICTED", "M": "CODE-MEASUREMENT",
                                "J": "CODE-ANESTHESIA"}

#: PC/TC indicators on which a modifier is allowed (billing-domain 1.6)
PCTC_ALLOWED: dict[str, frozenset[str]] = {"26": frozenset({"1", "6"}), "TC": frozenset({"1"})}
PCTC_MEANING: dict[str, str] = {
    "0": "0 (physician service: the PC/TC split does not apply)",
    "1": "1 (diagnostic test with professional and technical components)",
    "2": "2 (professional-component-only code)",
    "3": "3 (technical-component-only code)",
    "4": "4 (global-test-only code: bill the separate PC-only/TC-only codes instead)",
    "5": "5 (incident-to service)",
    "6": "6 (lab physician interpretation: 26 allowed, TC not)",
    "7": "7 (physical therapy service)",
    "8": "8 (physician interpretation of abnormal smear: TC never)",
    "9": "9 (PC/TC concept does not apply)",
}
#: indicator values meaning "not allowed / concept does not apply" (billing-domain 3.2-3.5)
BILAT_INVALID: frozenset[str] = frozenset({"0", "9"})
ASST_NOT_PAID: frozenset[str] = frozenset({"1", "9"})
COSURG_INVALID: frozenset[str] = frozenset({"0", "9"})
TEAM_INVALID: frozenset[str] = frozenset({"0", "9"})
ASSISTANT_MODIFIERS: frozenset[str] = frozenset({"80", "81", "82", "AS"})
INDICATOR_MEANING: dict[str, dict[str, str]] = {
    "bilat_surg": {"0": "0 (150% bilateral adjustment does not apply: the anatomy or a separate bilateral code "
                        "rules it out)", "9": "9 (bilateral concept does not apply)"},
    "asst_surg": {"1": "1 (statutory restriction: an assistant at surgery is never paid)",
                  "9": "9 (assistant-at-surgery concept does not apply)"},
}


def _status_flags(ctx: CheckContext) -> list[pd.DataFrame]:
    lines = ctx.lines
    uid = lines["line_uid"].to_numpy()
    known = ~text_in(ctx, "status_code", {""})
    has_release = ~text_in(ctx, "rvu_release", {""})
    parts = []
    unknown = ~known & has_release
    if unknown.any():
        detail = format_combinations(lambda r: f"release {r}", text_values(ctx, "rvu_release")[unknown])
        parts.append(make_result(uid[unknown], "CODE-UNKNOWN", detail=detail))
    no_release = ~known & ~has_release
    if no_release.any():
        parts.append(make_result(uid[no_release], "CODE-UNKNOWN", severity="review",
                                 detail="no loaded fee-schedule release covers this date of service, so the code "
                                        "could not be checked; load the release and re-run"))
    not_payable = text_in(ctx, "status_code", NOT_PAYABLE_STATUSES)
    if not_payable.any():
        status = text_values(ctx, "status_code")[not_payable]
        detail = format_combinations(lambda st: STATUS_MEANING.get(st, st), status)
        parts.append(make_result(uid[not_payable], "CODE-NOT-PAYABLE", detail=detail))
    for st, rule_id in STATUS_RULES.items():
        m = text_in(ctx, "status_code", {st})
        if m.any():
            parts.append(make_result(uid[m], rule_id, detail=STATUS_MEANING[st]))
    return parts


def _modifier_flags(ctx: CheckContext, mods: LineModifiers) -> list[pd.DataFrame]:
    lines = ctx.lines
    uid = lines["line_uid"].to_numpy()
    known = ~text_in(ctx, "status_code", {""})
    parts = []

    bad_pctc = np.zeros(len(lines), dtype=bool)
    for mod, allowed in PCTC_ALLOWED.items():
        bad_pctc |= mods.any_of({mod}) & ~text_in(ctx, "pctc_indicator", allowed)
    bad_pctc &= known & ~text_in(ctx, "pctc_indicator", {""})
    if bad_pctc.any():
        allowed_txt = "; 26 is allowed only on indicators 1 and 6, TC only on 1"
        detail = format_combinations(lambda v: PCTC_MEANING.get(v, v) + allowed_txt,
                                     text_values(ctx, "pctc_indicator")[bad_pctc])
        parts.append(make_result(uid[bad_pctc], "MOD-PCTC-INVALID", detail=detail))

    for column, rule_mods, invalid, rule_id in (("bilat_surg", {"50"}, BILAT_INVALID, "MOD-BILAT-INVALID"),
                                                ("asst_surg", ASSISTANT_MODIFIERS, ASST_NOT_PAID,
                                                 "MOD-ASST-NOT-PAID")):
        bad = known & mods.any_of(rule_mods) & text_in(ctx, column, invalid)
        if bad.any():
            meaning = INDICATOR_MEANING[column]
            detail = format_combinations(lambda v, meaning=meaning: meaning.get(v, v), text_values(ctx, column)[bad])
            parts.append(make_result(uid[bad], rule_id, detail=detail))

    bad62 = known & mods.any_of({"62"}) & text_in(ctx, "co_surg", COSURG_INVALID)
    bad66 = known & mods.any_of({"66"}) & text_in(ctx, "team_surg", TEAM_INVALID)
    bad = bad62 | bad66
    if bad.any():
        def describe(b62: bool, b66: bool, co: str, team: str) -> str:
            texts = ([f"the co-surgery indicator is {co} (62 not permitted)"] if b62 else []) + (
                [f"the team-surgery indicator is {team} (66 not permitted)"] if b66 else [])
            return " and ".join(texts)
        detail = format_combinations(describe, bad62[bad], bad66[bad], text_values(ctx, "co_surg")[bad],
                                     text_values(ctx, "team_surg")[bad])
        parts.append(make_result(uid[bad], "MOD-COSURG-INVALID", detail=detail))
    return parts


def check(ctx: CheckContext) -> pd.DataFrame:
    """CODE-* status flags and MOD-* modifier-validity flags, one per line and rule."""
    lines = ctx.lines
    if lines.empty:
        return empty_result()
    return concat_results([*_status_flags(ctx), *_modifier_flags(ctx, line_modifiers(ctx))])
