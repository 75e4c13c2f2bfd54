"""The exception report: summary.json, flags/lines Parquet, CSV, exceptions.xlsx and report.html."""

from scrubber.report.summary import build_summary
from scrubber.report.writers import write_report

__all__ = ["build_summary", "write_report"]
