"""Airflow for the DAG tests: a throwaway AIRFLOW_HOME with a migrated SQLite DB, plus moto_server for S3.

Airflow reads its configuration when first imported, so the environment is set here at import time
(pytest imports this conftest before the test modules of tests/dags/). If Airflow was already imported
by something else in this session with another AIRFLOW_HOME, the fixture stops with a clear message;
set these variables in the root conftest (or in the CI environment) to avoid that.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
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


@pytest.fixture(scope="module")
def dag_without_retries(dagbag):
    """``get(dag_id)``: a DAG of the bag with retries off, so a failing task fails the run at once instead
    of waiting minutes; the retries are put back after the module."""
    saved: dict[tuple[str, str], tuple[object, int]] = {}

    def get(dag_id: str):
        dag = dagbag.get_dag(dag_id)
        for t in dag.tasks:
            saved.setdefault((dag_id, t.task_id), (t, t.retries))
            t.retries = 0
        return dag

    yield get
    for task, retries in saved.values():
        task.retries = retries
