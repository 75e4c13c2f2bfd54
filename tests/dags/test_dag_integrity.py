"""Both DAG files import cleanly, carry their operational settings, and do no work when parsed."""

from __future__ import annotations

import ast
import itertools
import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from scrubber import orchestration

pytestmark = pytest.mark.airflow

DAG_IDS = {"nightly_claim_scrub", "cms_reference_refresh"}
DAGS = Path(__file__).resolve().parents[2] / "dags"


def test_dagbag_imports_both_dags(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) >= DAG_IDS


@pytest.mark.parametrize("dag_id", sorted(DAG_IDS))
def test_operational_settings(dagbag, dag_id: str) -> None:
    dag = dagbag.get_dag(dag_id)
    assert dag.tags and "scrubber" in dag.tags
    assert dag.doc_md and len(dag.doc_md) > 300
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.timetable.expression  # a cron schedule, not None
    for t in dag.tasks:
        assert t.retries >= 2, t.task_id
        assert t.retry_delay >= timedelta(minutes=1), t.task_id


def test_nightly_shape(dagbag) -> None:
    dag = dagbag.get_dag("nightly_claim_scrub")
    assert dag.timetable.expression == "0 2 * * *"
    assert set(dag.params) == {"run_date", "shards"}
    order = ["claim", "plan", "intake", "scrub_shard", "publish", "finish"]
    assert {t.task_id for t in dag.tasks} == set(order)
    for up, down in itertools.pairwise(order):
        assert down in dag.get_task(up).downstream_task_ids
    scrub = dag.get_task("scrub_shard")
    assert type(scrub).__name__.endswith("MappedOperator")  # dynamic mapping over shards
    assert [i.uri.rstrip("/") for i in scrub.inlets] == [orchestration.REFERENCE_ASSET_URI]  # lineage only


def test_refresh_emits_the_reference_asset(dagbag) -> None:
    dag = dagbag.get_dag("cms_reference_refresh")
    outlets = dag.get_task("announce").outlets
    assert [o.uri.rstrip("/") for o in outlets] == [orchestration.REFERENCE_ASSET_URI]
    assert set(dag.params) == {"sources", "release", "partial"}


@pytest.mark.parametrize("path", sorted(DAGS.glob("*.py")), ids=lambda p: p.name)
def test_every_task_is_one_scrubber_call(path: Path) -> None:
    """Thin DAGs: each @task body is `return orchestration.<function>(...)` and nothing else."""
    tree = ast.parse(path.read_text())
    tasks = [f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
             and any("task" in ast.unparse(d) for d in f.decorator_list)]
    assert tasks
    for fn in tasks:
        assert len(fn.body) == 1 and isinstance(fn.body[0], ast.Return), fn.name
        call = fn.body[0].value
        assert isinstance(call, ast.Call) and ast.unparse(call.func).startswith("orchestration."), fn.name


def test_parsing_does_no_work(tmp_path: Path) -> None:
    """Parsing the DAG folder opens no network connection, touches no store, loads no pandas/pyarrow."""
    store = tmp_path / "store"
    script = textwrap.dedent(f"""
        import sys
        def guard(event, args):
            if event == "socket.connect":
                raise RuntimeError(f"network access while parsing DAGs: {{args}}")
        sys.addaudithook(guard)
        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag(dag_folder={str(DAGS)!r})
        assert not bag.import_errors, bag.import_errors
        assert {sorted(DAG_IDS)!r} == sorted(bag.dag_ids), bag.dag_ids
        heavy = [m for m in ("pandas", "pyarrow", "great_expectations", "scrubber.store") if m in sys.modules]
        assert not heavy, heavy
        print("ok")
    """)
    env = {**os.environ, "SCRUBBER_STORE": str(store), "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stdout[-2000:] + proc.stderr[-3000:]
    assert not store.exists()
