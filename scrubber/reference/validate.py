"""Validate a parsed reference table with Great Expectations before it is published.

The expectations travel with each parser (``EXPECTATIONS`` in scrubber.reference.<module>), pandera
style; this module only runs them and turns failures into one clear error that names the
expectation and the offending source rows. A table that fails is never published.
"""

from __future__ import annotations

import importlib
import logging
import uuid
from collections.abc import Callable
from decimal import Decimal
from functools import lru_cache

import pandas as pd

from scrubber.errors import ValidationFailed

PARSER_MODULES = ("rvu", "gpci", "zipcodes", "ncci_ptp", "mue")
log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def expectation_builders() -> dict[str, Callable[[], list]]:
    """table -> builder of its expectations, collected from every parser module."""
    builders: dict[str, Callable[[], list]] = {}
    for name in PARSER_MODULES:
        try:
            module = importlib.import_module(f"scrubber.reference.{name}")
        except ModuleNotFoundError:
            continue
        builders.update(getattr(module, "EXPECTATIONS", {}))
    return builders


def quiet_gx_logging() -> None:
    """GX sets some of its loggers to INFO explicitly; their lines are noise for users of the CLI."""
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("great_expectations"):
            logger = logging.getLogger(name)
            if logger.level < logging.WARNING:
                logger.setLevel(logging.WARNING)


@lru_cache(maxsize=1)
def _gx_context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    quiet_gx_logging()
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def _validation_copy(frame: pd.DataFrame) -> pd.DataFrame:
    """GX compares numbers, not Decimal objects: convert Decimal columns to float64 for checking only."""
    out = frame.copy(deep=False)
    for col in out.columns:
        s = out[col]
        if s.dtype == object and len(s) and isinstance(s.dropna().iloc[0] if s.notna().any() else None, Decimal):
            out[col] = pd.to_numeric(s.map(lambda v: None if v is None else float(v)), errors="coerce")
    if "source_row" not in out.columns:
        out["source_row"] = range(1, len(out) + 1)
    return out


def validate_table(table: str, frame: pd.DataFrame, source: str, *, full_release: bool = True) -> None:
    """Run the table's expectations; raise ValidationFailed with the expectation and rows that failed.

    ``full_release=False`` (a deliberate subset, e.g. the bundled demo sample) skips the expectations
    tagged ``meta={"full_release_only": True}`` (row-count bounds of a complete CMS file).
    """
    builder = expectation_builders().get(table)
    if builder is None:
        raise ValidationFailed(table, source, [{"expectation": "registered expectations",
                                                "detail": f"no expectations are defined for table {table!r}"}])
    import great_expectations as gx

    context = _gx_context()
    name = f"{table}_{uuid.uuid4().hex}"   # not id(frame): ids are reused once a frame is freed
    data = _validation_copy(frame)
    ds = context.data_sources.add_or_update_pandas(f"ds_{name}")
    asset = ds.add_dataframe_asset(f"asset_{name}")
    batch_def = asset.add_batch_definition_whole_dataframe("whole")
    suite = gx.ExpectationSuite(name=f"suite_{name}")
    for expectation in builder():
        if not full_release and (getattr(expectation, "meta", None) or {}).get("full_release_only"):
            continue
        suite.add_expectation(expectation)
    suite = context.suites.add_or_update(suite)
    vd = gx.ValidationDefinition(name=f"vd_{name}", data=batch_def, suite=suite)
    result_format = {"result_format": "COMPLETE", "unexpected_index_column_names": ["source_row"],
                     "return_unexpected_index_query": False, "partial_unexpected_count": 10}
    try:
        result = vd.run(batch_parameters={"dataframe": data}, result_format=result_format)
    finally:
        try:
            context.data_sources.delete(f"ds_{name}")
            context.suites.delete(f"suite_{name}")
        except Exception:  # cleanup of the ephemeral context must not mask the real outcome
            log.debug("GX cleanup failed", exc_info=True)
    failures = []
    for r in result.results:
        if r.success:
            continue
        cfg = r.expectation_config
        kwargs = {k: v for k, v in (cfg.kwargs or {}).items() if k not in ("batch_id",)}
        res = r.result or {}
        rows = [d.get("source_row") for d in (res.get("unexpected_index_list") or [])[:10] if isinstance(d, dict)]
        values = (res.get("partial_unexpected_list") or [])[:5]
        detail = f"{kwargs}"
        if res.get("unexpected_count"):
            detail += f"; {res['unexpected_count']} unexpected"
        if rows:
            detail += f"; source rows {rows}"
        if values:
            detail += f"; values {values}"
        if "observed_value" in res:
            detail += f"; observed {res['observed_value']}"
        if r.exception_info and r.exception_info.get("raised_exception"):
            detail += f"; error {r.exception_info.get('exception_message')}"
        failures.append({"expectation": cfg.type, "detail": detail, "rows": rows})
    if failures:
        raise ValidationFailed(table, source, failures)
