"""Airflow for the DAG tests: a throwaway AIRFLOW_HOME with a migrated SQLite DB, plus moto_server for S3.

Airflow reads its configuration when first imported, so the environment is set here at import time
(pytest imports this conftest before the test modules of tests/dags/). If Airflow was already imported
by something else in this session with another AIRFLOW_HOME, the fixture stops with a clear message;
set these variables in the root conftest (or in the CI environment) to avoid that.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"

_HOME = Path(os.environ.get("SCRUBBER_TEST_AIRFLOW_HOME") or tempfile.mkdtemp(prefix="scrubber-airflow-"))
if not os.environ.get("SCRUBBER_TEST_AIRFLOW_HOME"):  # ours: remove it when the test process ends
    atexit.register(shutil.rmtree, _HOME, True)
AIRFLOW_ENV = {
    "AIRFLOW_HOME": str(_HOME),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME / 'airflow.db'}",
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
}
if "airflow" not in sys.modules:
    os.environ.update(AIRFLOW_ENV)

_spec = importlib.util.spec_from_file_location("scrubber_tests_motoserver",
                                               ROOT / "tests" / "s3" / "_motoserver.py")
motoserver = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(motoserver)


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    """AIRFLOW_HOME with the metadata DB migrated once per session (`airflow db migrate`, ~4 s)."""
    from airflow import configuration

    if Path(configuration.AIRFLOW_HOME).resolve() != _HOME.resolve():
        pytest.fail(f"Airflow was imported before tests/dags/conftest.py set AIRFLOW_HOME (it uses "
                    f"{configuration.AIRFLOW_HOME}); export AIRFLOW_HOME etc. before pytest starts")
    proc = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env={**os.environ, **AIRFLOW_ENV},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return _HOME


@pytest.fixture(scope="session")
def dagbag(airflow_home: Path):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with motoserver.moto_server(tmp_path_factory.mktemp("moto")) as endpoint:
        yield endpoint


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new empty bucket; boto3, the scrubber Settings and the DAG tasks all point at moto_server."""
    for key, value in motoserver.s3_env(s3_endpoint).items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "SCRUBBER_S3_ENDPOINT_URL", "AIRFLOW_CONN_AWS_DEFAULT",
                "AIRFLOW_VAR_SCRUBBER_STORE", "AIRFLOW_VAR_SCRUBBER_REFERENCE_SOURCES"):
        monkeypatch.delenv(key, raising=False)
    return motoserver.new_bucket(s3_endpoint)


@pytest.fixture
def make_bucket(s3_endpoint: str):
    """Create further buckets (e.g. a CMS drop bucket next to the store's)."""
    return lambda: motoserver.new_bucket(s3_endpoint)
