"""Claim intake: CSV, Parquet and X12 837P files -> canonical claim lines (schemas.LINE_COLUMNS) + quarantine."""

from scrubber.claims.intake import IntakeResult, empty_lines, intake
from scrubber.claims.validate import QUARANTINE_COLUMNS, load_modifier_sets

__all__ = ["QUARANTINE_COLUMNS", "IntakeResult", "empty_lines", "intake", "load_modifier_sets"]
