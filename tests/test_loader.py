"""`reference load`: detection by content, zips, idempotency, re-issues, all-or-nothing publishing."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from scrubber.errors import InputFileError, ValidationFailed
from scrubber.reference.catalog import Catalog, ReferenceSet
from scrubber.reference.loader import load_paths
from scrubber.store import LocalStore


def _zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def test_release_folder_loads_with_identity_and_period(rvu25d_store: LocalStore) -> None:
    cat = Catalog.load(rvu25d_store)
    rvu = cat.get("RVU25D")
    assert rvu is not None and rvu.kind == "rvu" and rvu.conversion_factor == "32.3465"
    assert str(rvu.effective_from) == "2025-10-01" and str(rvu.effective_to) == "2026-01-01"
    assert {"pprrvu", "gpci", "locco", "anes", "oppscap"} <= set(rvu.tables)
    assert rvu.tables["pprrvu"]["rows"] == 19090
    assert rvu.tables["gpci"]["rows"] == 109
    assert any(e.kind == "zip" for e in cat.current())
    ref = ReferenceSet(rvu25d_store)
    row = ref.table("pprrvu", "RVU25D").set_index(["hcpcs", "modifier"]).loc[("20553", "")]
    assert str(row["work_rvu"]) == "0.75" and row["global_days"] == "000"


def test_same_release_twice_is_idempotent(tmp_path: Path, rvu25d_dir: Path) -> None:
    store = LocalStore(tmp_path / "s")
    first = load_paths(store, [rvu25d_dir / "PPRRVU2025_Oct.csv", rvu25d_dir / "GPCI2025.csv"])
    assert first.releases == ["RVU25D"]
    before = (tmp_path / "s" / "reference" / "catalog.json").read_text()
    again = load_paths(store, [rvu25d_dir / "PPRRVU2025_Oct.csv", rvu25d_dir / "GPCI2025.csv"])
    assert again.published == [] and again.unchanged == ["RVU25D"]
    assert (tmp_path / "s" / "reference" / "catalog.json").read_text() == before


def test_corrected_reissue_replaces_and_catalog_keeps_both(tmp_path: Path, rvu25d_dir: Path) -> None:
    store = LocalStore(tmp_path / "s")
    load_paths(store, [rvu25d_dir / "PPRRVU2025_Oct.csv", rvu25d_dir / "GPCI2025.csv"])
    fixed = tmp_path / "GPCI2025.csv"
    text = (rvu25d_dir / "GPCI2025.csv").read_text()
    fixed.write_text(text.replace("06302,WI,00,WISCONSIN,1,0.957,0.331", "06302,WI,00,WISCONSIN,1,0.958,0.331"))
    load_paths(store, [fixed])
    entries = [e for e in Catalog.load(store).entries if e.release == "RVU25D"]
    assert [(e.revision, e.status) for e in entries] == [(1, "superseded"), (2, "current")]
    ref = ReferenceSet(store)
    wi = ref.table("gpci", "RVU25D").set_index("locality_id").loc["06302-00"]
    assert str(wi["gpci_pe"]) == "0.958"
    assert ref.table("pprrvu", "RVU25D").shape[0] == 19090  # carried over from revision 1


def test_release_zip_with_nested_folder(tmp_path: Path, rvu25d_dir: Path) -> None:
    z = _zip(tmp_path / "rvu25d.zip", {
        "rvu25d/PPRRVU2025_Oct.csv": (rvu25d_dir / "PPRRVU2025_Oct.csv").read_bytes(),
        "rvu25d/GPCI2025.csv": (rvu25d_dir / "GPCI2025.csv").read_bytes(),
        "rvu25d/RVU25D.pdf": b"%PDF-1.4 not data",
    })
    report = load_paths(LocalStore(tmp_path / "s"), [z])
    assert {(p["release"], p["table"]) for p in report.published} == {("RVU25D", "pprrvu"), ("RVU25D", "gpci")}


def test_zip_with_no_known_file_is_refused(tmp_path: Path) -> None:
    z = _zip(tmp_path / "junk.zip", {"readme.txt": b"hello", "notes.csv": b"a,b\n1,2\n"})
    with pytest.raises(InputFileError, match=r"junk\.zip.*no known CMS file"):
        load_paths(LocalStore(tmp_path / "s"), [z])


def test_unknown_single_file_and_empty_file_are_refused(tmp_path: Path) -> None:
    odd = tmp_path / "claims.csv"
    odd.write_text("a,b\n1,2\n")
    with pytest.raises(InputFileError, match=r"claims\.csv"):
        load_paths(LocalStore(tmp_path / "s"), [odd])
    empty = tmp_path / "PPRRVU2025_Oct.csv"
    empty.write_bytes(b"")
    with pytest.raises(InputFileError, match="empty"):
        load_paths(LocalStore(tmp_path / "s"), [empty])


def test_failed_validation_publishes_nothing(tmp_path: Path, rvu25d_dir: Path) -> None:
    bad = tmp_path / "GPCI2025.csv"
    text = (rvu25d_dir / "GPCI2025.csv").read_text()
    bad.write_text(text.replace("06302,WI,00,WISCONSIN,1,0.957,0.331", "06302,WI,00,WISCONSIN,1,9.957,0.331"))
    store = LocalStore(tmp_path / "s")
    with pytest.raises((ValidationFailed, InputFileError)) as info:
        load_paths(store, [rvu25d_dir / "PPRRVU2025_Oct.csv", bad])
    assert "GPCI2025.csv" in str(info.value)
    assert not (tmp_path / "s" / "reference").exists() or not list((tmp_path / "s" / "reference").rglob("*.parquet"))


def test_2026_release_loads_beside_2025(tmp_path: Path, shared_ref: Path, rvu25d_dir: Path) -> None:
    store = LocalStore(tmp_path / "s")
    load_paths(store, [rvu25d_dir / "PPRRVU2025_Oct.csv", rvu25d_dir / "GPCI2025.csv"])
    dir26 = shared_ref / "cms-rvu" / "RVU26C_2026_Jul"
    copy = tmp_path / "RVU26C"
    shutil.copytree(dir26, copy)
    report = load_paths(store, [copy])
    assert report.releases == ["RVU26C"]
    doc = json.loads((tmp_path / "s" / "reference" / "catalog.json").read_text())
    assert {r["release"] for r in doc["releases"]} == {"RVU25D", "RVU26C"}
    entry = Catalog.load(store).get("RVU26C")
    assert entry.conversion_factor == "33.4009" and str(entry.effective_from) == "2026-07-01"
    assert "pricing_indicator" in ReferenceSet(store).table("pprrvu", "RVU26C").columns
