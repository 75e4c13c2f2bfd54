"""Process settings for a batch run: memory freed is kept for the next allocation, and the garbage
collector leaves alone the objects the imported libraries made.

Why: a run allocates and frees gigabytes of short-lived column buffers. By default the C allocator
hands big freed blocks back to the kernel and Arrow's mimalloc purges them, so the next buffer of the
same size is faulted in again and the kernel zeroes every page of it: measured at 3-4 CPU-seconds
per million claim lines (a quarter of the run) in the kernel's page clearing alone. Keeping freed
memory mapped makes the next buffer a reuse. The peak memory stays what the run needs at its
largest moment; the process just does not shrink between stages.

Python's collector runs a full pass over every tracked object now and then; Great Expectations
alone brings about a million of them (imports, schemas), so each pass costs tens of milliseconds,
measured at about 1 CPU-second per million lines. During a run those objects are frozen out of the
collector's view (:func:`gc.freeze`) and the first generation is collected less often; afterwards
both are put back as they were.

Both are on by default and turned off with ``SCRUBBER_TUNE_PROCESS=0`` (Settings.tune_process).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -2, -3, -8
#: blocks up to this size come from the heap (reused) instead of their own mapping (zeroed each time);
#: glibc's ceiling for the threshold on 64-bit systems. A column of 1.25M 8-byte values is 10 MB.
MMAP_THRESHOLD = 32 * 1024 * 1024
#: freed memory at the top of the heap is kept (up to this much: mallopt takes an int) instead of handed
#: back to the kernel
TRIM_THRESHOLD = 2**31 - 1
#: the heap grows in steps of at least this much (fewer, larger requests to the kernel)
TOP_PAD = 64 * 1024 * 1024
#: heaps the allocator keeps for threads: each keeps its own freed memory, so more heaps hold more
#: memory that one thread freed and another cannot reuse (the run has two busy threads at a time)
ARENA_MAX = 2
#: first-generation collection threshold during a run (Python's default is 700 allocations)
GC_GEN0_THRESHOLD = 100_000

_lock = threading.Lock()
_allocator_done = False
_libc: ctypes.CDLL | None = None
_gc_depth = 0
_gc_saved: tuple[int, ...] | None = None


def keep_freed_memory() -> bool:
    """Once per process: glibc keeps freed blocks up to :data:`MMAP_THRESHOLD` for reuse, and Arrow
    allocates through it (its mimalloc pool would return them to the kernel). Returns whether the
    allocator was changed (False off Linux/glibc, e.g. macOS or musl, where nothing is touched)."""
    global _allocator_done, _libc
    with _lock:
        if _allocator_done:
            return True
        if not sys.platform.startswith("linux"):
            return False
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # not glibc
            return False
        mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        if not all(mallopt(param, value) for param, value in (
                (_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD), (_M_TOP_PAD, TOP_PAD),
                (_M_ARENA_MAX, ARENA_MAX))):
            return False
        _libc = libc
        import pyarrow as pa

        pa.set_memory_pool(pa.system_memory_pool())
        _allocator_done = True
        return True


def release_freed_memory() -> None:
    """Hand the memory kept for reuse back to the kernel (glibc's malloc_trim): between the phases of a
    big run, whose next phase allocates differently (the report after the shards), so what one phase
    kept does not add to the next one's peak. Nothing to do where :func:`keep_freed_memory` did not
    change the allocator."""
    if _libc is not None:
        _libc.malloc_trim(0)


@contextmanager
def quiet_collector() -> Iterator[None]:
    """Objects that exist now are left out of collections until the block ends, and the first
    generation is collected every :data:`GC_GEN0_THRESHOLD` allocations; nested blocks (a run inside a
    DAG task) share the outermost one's settings."""
    global _gc_depth, _gc_saved
    with _lock:
        _gc_depth += 1
        if _gc_depth == 1:
            _gc_saved = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(max(GC_GEN0_THRESHOLD, _gc_saved[0]), *_gc_saved[1:])
    try:
        yield
    finally:
        with _lock:
            _gc_depth -= 1
            if _gc_depth == 0 and _gc_saved is not None:
                gc.set_threshold(*_gc_saved)
                gc.unfreeze()  # back in the oldest generation: collectable again
                _gc_saved = None


@contextmanager
def batch_process(enabled: bool = True) -> Iterator[None]:
    """The settings above for the duration of a run (``enabled=False``: the process is left as it is)."""
    if not enabled:
        yield
        return
    keep_freed_memory()
    with quiet_collector():
        yield
