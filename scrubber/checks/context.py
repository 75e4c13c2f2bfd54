"""The inputs every check receives. Built once per run by scrubber.pipeline; checks never do I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from scrubber.settings import Settings


@dataclass
class CheckContext:
    """Everything a check may read.

    lines:   the current batch, schemas.LINE_COLUMNS plus reference annotations added by the pipeline:
             ``rvu_release``, ``ptp_release``, ``mue_release`` (str, None where no loaded release covers the
             date of service), and from the PPRRVU row of (hcpcs, pricing modifier) in that release:
             ``status_code``, ``global_days``, ``pctc_indicator``, ``nonfacility_na``, ``facility_na``,
             ``mult_proc``, ``bilat_surg``, ``asst_surg``, ``co_surg``, ``team_surg``, ``endo_base``
             (None when the code is not in the release), and ``expected_allowed`` (float dollars, NaN when not
             priced yet) once pricing has run.
    history: earlier scrubbed lines of the patients in this batch (same columns as lines where available, plus
             ``run_id``), never including lines of the current run; empty frame when none.
    pprrvu / ptp / mue: canonical reference tables for the releases used in this batch, each with a
             ``release`` column (see scrubber.schemas).
    rules:   parsed rules/ (scrubber.rules.RuleBook).
    """

    lines: pd.DataFrame
    history: pd.DataFrame
    pprrvu: pd.DataFrame
    ptp: pd.DataFrame
    mue: pd.DataFrame
    rules: object
    settings: Settings = field(default_factory=Settings)
