"""Release selection by date of service, revisions and effective periods."""

from datetime import date

import pandas as pd
import pytest

from scrubber.errors import ReferenceNotFound
from scrubber.reference.catalog import Catalog, ReferenceSet, ReleaseEntry
from scrubber.store import LocalStore


def entry(kind: str, release: str, start: date, sha: str = "x") -> ReleaseEntry:
    return ReleaseEntry(kind=kind, release=release, revision=0, effective_from=start,
                        sources=[{"name": release, "sha256": sha, "table": kind}], conversion_factor="1")


def test_periods_run_until_next_release_and_natural_end(tmp_path) -> None:
    cat = Catalog()
    cat.add(entry("rvu", "RVU25D", date(2025, 10, 1)))
    cat.add(entry("rvu", "RVU26C", date(2026, 7, 1)))
    cat.add(entry("rvu", "RVU26A", date(2026, 1, 1)))
    cat.add(entry("ptp", "PTP-2025Q4", date(2025, 10, 1)))
    store = LocalStore(tmp_path)
    cat.save(store)
    ref = ReferenceSet(store)
    assert ref.release_for("rvu", date(2025, 11, 15)).release == "RVU25D"
    assert ref.release_for("rvu", date(2025, 12, 31)).release == "RVU25D"
    assert ref.release_for("rvu", date(2026, 3, 31)).release == "RVU26A"
    assert ref.release_for("rvu", date(2026, 8, 3)).release == "RVU26C"
    assert ref.release_for("ptp", date(2025, 12, 31)).release == "PTP-2025Q4"
    with pytest.raises(ReferenceNotFound, match="no ptp release covers date of service 2026-01-01"):
        ref.release_for("ptp", date(2026, 1, 1))
    with pytest.raises(ReferenceNotFound):
        ref.release_for("rvu", date(2025, 9, 30))
    got = ref.assign(pd.Series(pd.to_datetime(["2025-09-30", "2025-10-01", "2026-02-01", "2027-01-01", None])), "rvu")
    assert isinstance(got.dtype, pd.CategoricalDtype)  # a handful of release ids over many lines
    assert [v if isinstance(v, str) else None for v in got] == [None, "RVU25D", "RVU26A", None, None]


def test_reissue_keeps_both_revisions(tmp_path) -> None:
    cat = Catalog()
    cat.add(entry("mue", "MUE-2025Q4", date(2025, 10, 1), sha="a"))
    cat.add(entry("mue", "MUE-2025Q4", date(2025, 10, 1), sha="b"))
    store = LocalStore(tmp_path)
    cat.save(store)
    again = Catalog.load(store)
    assert [(e.revision, e.status) for e in again.entries] == [(1, "superseded"), (2, "current")]
    assert again.get("MUE-2025Q4").sources[0]["sha256"] == "b"
