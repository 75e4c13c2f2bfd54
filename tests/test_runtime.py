"""The run's process settings (scrubber.runtime): freed memory kept for reuse, imported objects frozen
out of the collector during a run and given back afterwards."""

from __future__ import annotations

import gc
import sys

import pyarrow as pa
import pytest

from scrubber import runtime
from scrubber.settings import Settings


def test_collector_settings_are_restored_after_nested_runs() -> None:
    before = gc.get_threshold()
    with runtime.quiet_collector():
        frozen = gc.get_freeze_count()
        assert frozen > 0  # the objects of the imported libraries
        assert gc.get_threshold()[0] >= runtime.GC_GEN0_THRESHOLD
        with runtime.quiet_collector():  # a run inside a task: the outer block's settings hold
            assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] >= runtime.GC_GEN0_THRESHOLD
        assert gc.get_freeze_count() > 0  # the inner block did not unfreeze (frozen objects may be freed)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0  # collectable again


def test_collector_settings_are_restored_when_the_run_fails() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), runtime.batch_process():
        raise RuntimeError("the run stopped")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_cycles_made_during_a_run_are_still_collected() -> None:
    class Node:
        pass

    with runtime.quiet_collector():
        a, b = Node(), Node()
        a.other, b.other = b, a
        del a, b
        assert gc.collect() >= 2


def test_disabled_leaves_the_process_alone() -> None:
    before = gc.get_threshold()
    with runtime.batch_process(enabled=False):
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_allocator_keeps_freed_memory_on_glibc() -> None:
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not a glibc system: the allocator is left alone")
    assert runtime.keep_freed_memory() is True
    assert pa.default_memory_pool().backend_name == "system"
    assert runtime.keep_freed_memory() is True  # once per process


def test_settings_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.from_env().tune_process is True
    monkeypatch.setenv("SCRUBBER_TUNE_PROCESS", "0")
    assert Settings.from_env().tune_process is False
