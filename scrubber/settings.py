"""One settings object. Environment variables SCRUBBER_* set defaults; command-line flags override."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent


def _default_rules_dir() -> Path:
    """rules/ of the checkout, or the copy installed with the package."""
    for candidate in (PROJECT_DIR / "rules", PACKAGE_DIR / "rules"):
        if candidate.is_dir():
            return candidate
    return PROJECT_DIR / "rules"


def _row_limit(name: str, value: str) -> int | None:
    """A row count from the environment: a whole number >= 0, or "all" for no limit."""
    text = value.strip().replace("_", "").replace(",", "")
    if text.lower() in ("all", "none"):
        return None
    if not text.isdigit():
        raise ValueError(f"{name}={value!r}: expected a whole number of rows (0 or more) or 'all'")
    return int(text)


@dataclass
class Settings:
    """Everything a run can be configured with. Build with :meth:`from_env`."""

    store: str = "./.scrubber"
    rules_dir: Path = field(default_factory=_default_rules_dir)
    s3_endpoint_url: str | None = None
    #: 2026+: NPIs (billing or rendering) that are qualifying APM participants get the QP CF.
    qp_npis: frozenset[str] = frozenset()
    #: PTP/global-surgery "same provider": "rendering_npi" (default) or "billing_npi".
    provider_key: str = "rendering_npi"
    #: PTP deletion date inclusive (data pattern) unless configured otherwise (billing-domain 4.2).
    ptp_deletion_inclusive: bool = True
    #: NPIs of non-physician practitioners (NP/PA/CNS) billing under their own NPI: paid 85%.
    npp_npis: frozenset[str] = frozenset()
    #: a run keeps freed memory for reuse and freezes imported objects out of the garbage collector
    #: (scrubber.runtime); off leaves the process's allocator and collector as they are.
    tune_process: bool = True
    #: info flags on each sheet of exceptions.xlsx at most (None: all, up to Excel's row limit). Deny and
    #: review flags are always all there; flags.csv and flags.parquet always hold every flag.
    xlsx_info_rows: int | None = 100_000

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        env = os.environ
        s = cls(
            store=env.get("SCRUBBER_STORE", "./.scrubber"),
            s3_endpoint_url=env.get("SCRUBBER_S3_ENDPOINT_URL") or env.get("AWS_ENDPOINT_URL"),
            qp_npis=frozenset(filter(None, env.get("SCRUBBER_QP_NPIS", "").replace(";", ",").split(","))),
            npp_npis=frozenset(filter(None, env.get("SCRUBBER_NPP_NPIS", "").replace(";", ",").split(","))),
            provider_key=env.get("SCRUBBER_PROVIDER_KEY", "rendering_npi"),
            ptp_deletion_inclusive=env.get("SCRUBBER_PTP_DELETION_INCLUSIVE", "1") not in ("0", "false", "no"),
            tune_process=env.get("SCRUBBER_TUNE_PROCESS", "1") not in ("0", "false", "no"),
            xlsx_info_rows=(_row_limit("SCRUBBER_XLSX_INFO_ROWS", env["SCRUBBER_XLSX_INFO_ROWS"])
                            if env.get("SCRUBBER_XLSX_INFO_ROWS", "").strip() else cls.xlsx_info_rows),
        )
        if env.get("SCRUBBER_RULES_DIR"):
            s.rules_dir = Path(env["SCRUBBER_RULES_DIR"])
        for key, value in overrides.items():
            if value is not None:
                setattr(s, key, value)
        return s
