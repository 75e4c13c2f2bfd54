"""Shared fixtures. Real CMS files come from ../shared/reference-data when present (skip otherwise)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_REF = REPO.parent / "shared" / "reference-data"
DATA = REPO / "data"

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

# Airflow reads its configuration when first imported, by whichever test module comes first: give the
# whole session one throwaway AIRFLOW_HOME on SQLite (tests/dags/conftest.py uses the same one).
if not os.environ.get("SCRUBBER_TEST_AIRFLOW_HOME"):
    _airflow_home = tempfile.mkdtemp(prefix="scrubber-airflow-")
    atexit.register(shutil.rmtree, _airflow_home, True)
    os.environ["SCRUBBER_TEST_AIRFLOW_HOME"] = _airflow_home
    os.environ.update({
        "AIRFLOW_HOME": _airflow_home,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_airflow_home}/airflow.db",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    })


@pytest.fixture(scope="session")
def shared_ref() -> Path:
    """The shared CMS reference-data folder; tests that need it skip cleanly when it is absent."""
    if not SHARED_REF.is_dir():
        pytest.skip("../shared/reference-data is not present beside the repository")
    return SHARED_REF


@pytest.fixture(scope="session")
def rvu25d_dir(shared_ref: Path) -> Path:
    path = shared_ref / "cms-rvu" / "RVU25D_2025_Oct"
    if not path.is_dir():
        pytest.skip("RVU25D folder missing from ../shared/reference-data")
    return path


@pytest.fixture(scope="session")
def rvu25d_store(tmp_path_factory: pytest.TempPathFactory, rvu25d_dir: Path):
    """A local store with the real RVU25D release and the ZIP5 crosswalk loaded (once per session)."""
    from scrubber.reference.loader import load_paths
    from scrubber.store import LocalStore

    store = LocalStore(tmp_path_factory.mktemp("rvu25d_store"))
    load_paths(store, [rvu25d_dir, rvu25d_dir.parent / "ZIP5_OCT2025"])
    return store
