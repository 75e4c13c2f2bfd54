"""Shared fixtures. Real CMS files come from ../shared/reference-data when present (skip otherwise)."""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
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


# --- a real S3 API on loopback (moto_server), shared by the S3 store, history and DAG tests ---------

_spec = importlib.util.spec_from_file_location("scrubber_tests_motoserver", REPO / "tests" / "s3" / "_motoserver.py")
motoserver = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(motoserver)


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto_server started on a free 127.0.0.1 port for the session."""
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
