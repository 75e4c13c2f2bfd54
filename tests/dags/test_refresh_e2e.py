"""The reference refresh DAG end to end: CMS files served over HTTP (a local http.server) or from an S3 prefix,
loaded into the store on moto_server by dag.test(), with the reference Asset emitted only for new releases."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from scrubber import orchestration
from scrubber.s3store import S3Store

pytestmark = [pytest.mark.airflow, pytest.mark.s3]

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_RELEASE = ROOT / "data" / "reference" / "sample-rvu25d"


def _release_files() -> list[Path]:
    if not SAMPLE_RELEASE.is_dir():
        pytest.skip("data/reference/sample-rvu25d (the bundled sample release) is not in this checkout")
    return sorted(p for p in SAMPLE_RELEASE.iterdir() if p.suffix.lower() in (".csv", ".txt"))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass


@pytest.fixture(scope="module")
def cms_site() -> Iterator[str]:
    """A stand-in for cms.gov: the sample release folder over HTTP on 127.0.0.1."""
    _release_files()
    handler = functools.partial(_QuietHandler, directory=str(SAMPLE_RELEASE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def store(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> S3Store:
    url = f"s3://{s3_bucket}/scrubber"
    monkeypatch.setenv("SCRUBBER_STORE", url)
    return S3Store.from_url(url)


@pytest.fixture(scope="module")
def refresh(dag_without_retries):
    return dag_without_retries("cms_reference_refresh")


def _run(dag, **conf) -> tuple[str, dict[str, str]]:
    dr = dag.test(run_conf=conf or None)
    return str(dr.state), {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}


def _asset_events() -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (session.query(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                .filter(AssetModel.uri.in_([orchestration.REFERENCE_ASSET_URI,
                                            orchestration.REFERENCE_ASSET_URI + "/"])).all())
        return [dict(r.extra or {}) for r in rows]


def test_refresh_from_http_publishes_once_and_announces_once(store: S3Store, refresh, cms_site: str) -> None:
    from scrubber.reference.catalog import ReferenceSet

    urls = [f"{cms_site}/{p.name}" for p in _release_files()]
    events_before = len(_asset_events())

    state, tasks = _run(refresh, sources=urls, partial=True)
    assert state == "success", tasks
    assert tasks == {"resolve_sources": "success", "load": "success", "announce": "success"}
    assert store.exists("reference/catalog.json")
    rvu = ReferenceSet(store).releases("rvu")
    assert len(rvu) == 1
    assert str(rvu[0].effective_from) == "2025-10-01"
    assert {"pprrvu", "gpci"} <= set(rvu[0].tables)
    events = _asset_events()
    assert len(events) == events_before + 1
    assert rvu[0].release in events[-1]["releases"]
    assert events[-1]["store"] == store.url

    # the same files again: nothing new is published and no Asset event goes out
    catalog = store.read_bytes("reference/catalog.json")
    state, tasks = _run(refresh, sources=urls, partial=True)
    assert state == "success"
    assert tasks["load"] == "success" and tasks["announce"] == "skipped"
    assert store.read_bytes("reference/catalog.json") == catalog
    assert len(_asset_events()) == events_before + 1


def test_refresh_from_an_s3_prefix_named_in_the_variable(store: S3Store, refresh, make_bucket,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Sources from the Airflow Variable (as JSON), fetched from another bucket with boto3."""
    from scrubber.reference.catalog import ReferenceSet

    drop = S3Store.from_url(f"s3://{make_bucket()}")
    for path in _release_files():
        drop.upload_file(path, f"cms/rvu25d/{path.name}")
    monkeypatch.setenv("AIRFLOW_VAR_SCRUBBER_REFERENCE_SOURCES", f'["{drop.url}/cms/rvu25d/"]')

    state, tasks = _run(refresh, partial=True)
    assert state == "success", tasks
    assert [r.release for r in ReferenceSet(store).releases("rvu")]


def test_a_missing_file_fails_the_run_and_publishes_nothing(store: S3Store, refresh, cms_site: str) -> None:
    state, tasks = _run(refresh, sources=[f"{cms_site}/PPRRVU2025_Oct.csv", f"{cms_site}/no-such-file.zip"])
    assert state == "failed"
    assert tasks["load"] == "failed" and tasks["announce"] == "upstream_failed"
    assert store.list("reference/") == []


def test_fetch_sources_errors_name_the_source(tmp_path: Path, cms_site: str) -> None:
    with pytest.raises(OSError, match=r"no-such-file\.csv"):
        orchestration.fetch_sources([f"{cms_site}/no-such-file.csv"], tmp_path)
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        orchestration.fetch_sources([str(tmp_path / "does-not-exist")], tmp_path)
    local = _release_files()[0]
    got = orchestration.fetch_sources([str(local), local.as_uri(), f"{cms_site}/{local.name}",
                                       f"{cms_site}/{local.name}"], tmp_path / "dl")
    assert got[:2] == [local, local]
    assert [p.name for p in got[2:]] == [local.name, f"{local.stem}-2{local.suffix}"]  # no clobbering
    assert all(p.read_bytes() == local.read_bytes() for p in got)


def test_reference_sources_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCRUBBER_REFERENCE_SOURCES", raising=False)
    assert orchestration.reference_sources({"sources": ["a", "b"]}) == ["a", "b"]
    monkeypatch.setenv("SCRUBBER_REFERENCE_SOURCES", "https://x/a.zip, s3://b/k")
    assert orchestration.reference_sources({}) == ["https://x/a.zip", "s3://b/k"]
    monkeypatch.setenv("SCRUBBER_REFERENCE_SOURCES", '["s3://b/k"]')
    assert orchestration.reference_sources(None) == ["s3://b/k"]
    monkeypatch.delenv("SCRUBBER_REFERENCE_SOURCES")
    with pytest.raises(ValueError, match="scrubber_reference_sources"):
        orchestration.reference_sources({})
