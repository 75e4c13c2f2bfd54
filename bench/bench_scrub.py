"""Benchmark the whole scrub (scrubber.pipeline.run_scrub) end to end at nightly-batch scale.

    python bench/bench_scrub.py [--lines 1000000 10000000] [--store DIR] [--format parquet|csv] [--profile]

Against full-size reference data read from ../shared/reference-data beside the repository:
the RVU25D release folder + ZIP5 crosswalk, the full practitioner PTP table (2,545,089 edits, written
as the 4 CMS TXT parts) and the full practitioner MUE table (CMS CSV), loaded once with the real
loader into a cached reference store (default /tmp/scrubber-bench-store; reused on later runs).

Per size, claims are generated with scrubber.generate (seed 1, 5% seeded problems, Q4 2025 dates;
cached beside the store under a fingerprint of the generator's source, so a changed generator makes
new files; generation is not timed) and scrubbed in a fresh Python process, so peak RSS
(resource.getrusage ru_maxrss) belongs to that run alone. Each run gets its own store (the reference
folder hard-linked in, no history), so every size starts from the same state.

The child wraps the pipeline's stage functions (intake validation per chunk and its repeated line
numbers, which may wait for a big file's file-wide count, the spill of chunks into
shards by patient, pricing, each check family, flag building, amount at risk, stringifying mixed flag columns,
each shard's lines written out, the report files that wait for the lines and the summary) to record
per stage: wall seconds, CPU seconds (user + sys of the process; on a shared 2-core machine wall
overstates the cost) and the peak RSS seen while the stage ran (a 10 ms sampler of /proc/self/statm).
The wrappers only observe. "intake.spill", "lines_output" and "history_write" run on side threads
beside the main one: their wall time overlaps the main thread's stages, and their CPU figure counts
every thread of the process. The families that read nothing pricing adds (units, frequency,
duplicate) start on a side thread while the main thread prices (pipeline.CheckPlan): their wall time
overlaps "pricing", so "checks (all families)" (the sum over families) is more than the run waits for
them; "check_frame" is the main thread's time from priced lines to flags with amounts at risk.
"intake (whole)" is the run's own timing of reading, validating and (above one shard) spilling.
``--profile`` runs one size in this process under cProfile and prints the top 25 cumulative entries.
The import of the library (every scrubber module, and Great Expectations) is timed apart from the run.

This VM's speed drifts by 20-30% within minutes. Before and after each run, DuckDB reads the biggest
claim file of the invocation and writes it back as Parquet (a child process each, ``--no-read-write``
skips it): the issue timed that at 0.7 s per million lines on this machine when it measured its
yardstick (a DuckDB SQL version of the checks: 3 s for 1M lines, 24 s for 10M). A 1M-line file is one
row group, which DuckDB reads on one thread, so gauge with a 10M-line file (``--gauge-lines``). The
ratio says how fast the machine is at the moment of the run, and the run's wall time is also given
scaled to the yardstick's speed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "reference-data"
PTP_SOURCE = SHARED / "ncci-ptp" / "2024Q2_v301r0_northstar_qs" / "ptp_practitioner_2024q2_v301r0.parquet"
MUE_SOURCE = SHARED / "ncci-mue" / "2024Q3_northstar_qs" / "mue_practitioner_2024q3.parquet"
RVU_FOLDER = SHARED / "cms-rvu" / "RVU25D_2025_Oct"
ZIP5_FOLDER = SHARED / "cms-rvu" / "ZIP5_OCT2025"
DEFAULT_STORE = Path("/tmp/scrubber-bench-store")  # a scratch cache, not a project path
RUN_DATE = date(2026, 1, 5)
READY = "bench-ready.json"
#: the issue's yardstick, measured on this 2-core machine: DuckDB reading and writing the lines as
#: Parquet (seconds per million lines), and a DuckDB SQL version of the checks (seconds per size)
YARDSTICK_READ_WRITE_PER_M = 0.7
YARDSTICK_SCRUB = {1_000_000: 3.0, 10_000_000: 24.0}

sys.path.insert(0, str(REPO))


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# --- preparation (children) ------------------------------------------------------------------------

def prepare_store(cache: Path) -> dict:
    """Write the CMS-layout NCCI files and load everything into cache/store (once)."""
    from scrubber.devtools.cms_layouts import write_mue_csv, write_ptp_parts
    from scrubber.reference.loader import load_paths
    from scrubber.store import LocalStore

    t0 = time.perf_counter()
    inputs = cache / "inputs"
    parts = write_ptp_parts(PTP_SOURCE, inputs, year=2025, quarter=4, version="v313r0", parts=4)
    mue_csv = write_mue_csv(MUE_SOURCE, inputs, eff="10-01-2025")
    report = load_paths(LocalStore(cache / "store"), [RVU_FOLDER, ZIP5_FOLDER, *parts, mue_csv])
    doc = {"seconds": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb(),
           "published": [(p["table"], p["release"], p["rows"]) for p in report.published]}
    (cache / READY).write_text(json.dumps(doc))
    return doc


def claims_file(cache: Path, n_lines: int, fmt: str) -> Path:
    """Where the generated claims of a size are cached: named by a fingerprint of the generator's
    source, so files made before a generator change (new seeded scenarios) are not measured again."""
    fingerprint = hashlib.sha256((REPO / "scrubber" / "generate.py").read_bytes()).hexdigest()[:10]
    return cache / "claims" / f"claims-{n_lines}-{fingerprint}.{fmt}"


def generate_file(cache: Path, n_lines: int, fmt: str, out: str) -> dict:
    """Generate n_lines claim lines from the cached store's releases and write them (not timed)."""
    from scrubber import generate
    from scrubber.store import LocalStore

    t0 = time.perf_counter()
    pprrvu, ptp, mue = generate.frames_from_store(LocalStore(cache / "store"), date(2025, 11, 15))
    gen = generate.generate_claims(n_lines, pprrvu=pprrvu, ptp=ptp, mue=mue, seed=1)
    tmp = Path(out + ".tmp")
    generate.write_claims(gen, tmp, fmt=fmt)
    tmp.rename(out)
    return {"seconds": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb(), **{
        k: gen.stats[k] for k in ("lines", "claims", "patients", "providers")}}


# --- instrumentation ---------------------------------------------------------------------------------

class StageMeter:
    """Per-stage wall, CPU and peak RSS; nested stages each see their own peak."""

    def __init__(self, max_rss_mb: float = float("inf")) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.max_rss_mb = max_rss_mb
        self.active: dict[str, float] = {}
        self.stats: dict[str, dict] = {}
        self.order: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def rss_mb(self) -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page / 2**20

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            rss = self.rss_mb()
            for name, peak in list(self.active.items()):
                if rss > peak:
                    self.active[name] = rss
            if rss > self.max_rss_mb:  # stop before the machine runs out of memory; say where
                print(json.dumps({"aborted": f"RSS {rss:,.0f} MB over the --max-rss-gb guard",
                                  "running": list(self.active), "stages": self.stats}), flush=True)
                os._exit(3)

    def stop(self) -> None:
        self._stop.set()

    def wrap(self, name: str, fn):
        meter = self

        def wrapped(*args, **kwargs):
            meter.active[name] = meter.rss_mb()
            w0, c0 = time.perf_counter(), cpu_s()
            try:
                return fn(*args, **kwargs)
            finally:
                wall, cpu = time.perf_counter() - w0, cpu_s() - c0
                peak = max(meter.active.pop(name, 0.0), meter.rss_mb())
                s = meter.stats.setdefault(name, {"wall": 0.0, "cpu": 0.0, "peak_mb": 0.0, "calls": 0})
                if name not in meter.order:
                    meter.order.append(name)
                s["wall"] += wall
                s["cpu"] += cpu
                s["peak_mb"] = max(s["peak_mb"], peak)
                s["calls"] += 1

        return wrapped


def instrument(meter: StageMeter) -> None:
    """Wrap the stage functions where the pipeline looks them up (module attributes at call time)."""
    import importlib

    def mod(name: str):  # packages re-export functions under their module names: take the modules
        return importlib.import_module(f"scrubber.{name}")

    history, pipeline, pricing, engine = mod("history"), mod("pipeline"), mod("pricing"), mod("checks.engine")
    intake, summary, writers = mod("claims.intake"), mod("report.summary"), mod("report.writers")

    validate = mod("claims.validate")
    intake._begin_table = meter.wrap("intake.validate", intake._begin_table)
    # repeated line numbers and the split into lines and quarantine (its wall time includes waiting for
    # a big file's file-wide line-number count)
    validate.PendingValidation.finish = meter.wrap("intake.repeats", validate.PendingValidation.finish)
    shards = mod("shards")
    shards.ShardSpill._split = meter.wrap("intake.spill", shards.ShardSpill._split)  # side thread
    pipeline.RunOutput._write_lines = meter.wrap("lines_output", pipeline.RunOutput._write_lines)
    pricing.annotate_and_price = meter.wrap("pricing", pricing.annotate_and_price)
    pipeline._read_history_for = meter.wrap("history_read", pipeline._read_history_for)
    for name in engine.FAMILY_MODULES:
        module = importlib.import_module(f"scrubber.checks.{name}")
        module.check = meter.wrap(f"check.{name}", module.check)
    engine.build_flags = meter.wrap("check.flags", engine.build_flags)
    pricing.amount_at_risk = meter.wrap("amount_at_risk", pricing.amount_at_risk)
    pipeline.check_frame = meter.wrap("check_frame", pipeline.check_frame)
    pipeline.stringify = meter.wrap("stringify", pipeline.stringify)
    pipeline._publish = meter.wrap("publish", pipeline._publish)
    summary.build_summary = meter.wrap("publish.summary", summary.build_summary)
    writers.ReportWriter.finish = meter.wrap("publish.report_finish", writers.ReportWriter.finish)
    history.HistoryWriter.add = meter.wrap("history_write", history.HistoryWriter.add)
    history.HistoryWriter.close = meter.wrap("history_publish", history.HistoryWriter.close)


def run_store(cache: Path, tag: str) -> Path:
    """A fresh store for one run: the cached reference folder linked in, no history."""
    root = cache / "runs" / tag
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    # hard links (the store refuses symlinks that leave its root); the scrub only reads reference/
    shutil.copytree(cache / "store" / "reference", root / "reference", copy_function=os.link)
    return root


def import_library() -> None:
    """Every module of the package, as a long-lived process (an Airflow worker) has them: the run's own
    lazy imports (checks, pricing, report writers) are a one-off cost per process, counted with the
    import, not in the run's figures (where PYTHONDONTWRITEBYTECODE is set they are compiled each time)."""
    import importlib
    import pkgutil

    import scrubber

    for module in pkgutil.walk_packages(scrubber.__path__, "scrubber."):
        importlib.import_module(module.name)


def scrub_once(cache: Path, claims: str, tag: str, *, profile: bool = False,
               max_rss_gb: float = float("inf")) -> dict:
    """Import, instrument and run run_scrub once; returns the figures."""
    w0, c0 = time.perf_counter(), cpu_s()
    import great_expectations  # noqa: F401  (one-off import cost, kept out of the run figures)

    import_library()
    from scrubber import pipeline
    from scrubber.settings import Settings
    from scrubber.store import LocalStore

    imported_wall, imported_cpu = time.perf_counter() - w0, cpu_s() - c0
    meter = StageMeter(max_rss_gb * 1024)
    instrument(meter)
    root = run_store(cache, tag)
    store = LocalStore(root)
    settings = Settings.from_env(store=str(root))
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
    w0, c0, rss0 = time.perf_counter(), cpu_s(), meter.rss_mb()
    if profiler:
        profiler.enable()
    result = pipeline.run_scrub(store, [claims], run_date=RUN_DATE, out_dir=root / "report", settings=settings)
    if profiler:
        profiler.disable()
    wall, cpu = time.perf_counter() - w0, cpu_s() - c0
    meter.stop()
    figures = {
        "lines": result.summary["counts"]["scrubbed_lines"], "flags": len(result.report_flags),
        "quarantined": len(result.quarantine),
        "wall": wall, "cpu": cpu, "peak_mb": peak_rss_mb(), "rss_before_mb": rss0,
        "import_wall": imported_wall, "import_cpu": imported_cpu,
        "stages": {k: meter.stats[k] for k in meter.order},
        "pipeline_timings": result.summary.get("timings", {}),
        "load": list(os.getloadavg()),
    }
    if profiler:
        import io
        import pstats

        buf = io.StringIO()
        pstats.Stats(profiler, stream=buf).sort_stats("cumulative").print_stats(25)
        figures["profile"] = buf.getvalue()
    shutil.rmtree(root, ignore_errors=True)
    return figures


def duckdb_read_write(claims: str, n_lines: int) -> dict:
    """DuckDB reads the claim file and writes it back as Parquet: the operation the issue timed at 0.7 s
    per million lines on this machine. Timed next to a run, it says how fast the (drifting) machine is
    at that moment compared with when the yardstick was measured."""
    import duckdb

    src = Path(claims)
    out = src.with_name(f".read-write-{os.getpid()}.parquet")
    reader = "read_parquet" if src.suffix == ".parquet" else "read_csv_auto"
    quoted = [str(p).replace("'", "''") for p in (src, out)]
    con = duckdb.connect()
    try:
        t0, c0 = time.perf_counter(), cpu_s()
        con.execute(f"COPY (SELECT * FROM {reader}('{quoted[0]}')) TO '{quoted[1]}' (FORMAT parquet)")
        return {"seconds": time.perf_counter() - t0, "cpu": cpu_s() - c0, "lines": n_lines}
    finally:
        con.close()
        out.unlink(missing_ok=True)


# --- driver ------------------------------------------------------------------------------------------

def _child(cache: Path, *args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--store", str(cache), "--child", *args],
                          capture_output=True, text=True)
    if proc.returncode == 3:  # the memory guard stopped the run
        return json.loads(proc.stdout.strip().splitlines()[-1])
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"child {args[0]} failed ({proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_table(n: int, fig: dict) -> None:
    print(f"\n=== {n:,} lines ({fig['lines']:,} scrubbed, {fig['flags']:,} flags, {fig['quarantined']:,} "
          f"quarantined); load average before {' '.join(f'{x:.1f}' for x in fig['load'])} ===")
    print(f"{'stage':<26}{'wall s':>9}{'cpu s':>9}{'peak RSS MB':>13}{'calls':>7}")
    intake_wall = fig["pipeline_timings"].get("intake")
    if intake_wall is not None:  # reading + validating every chunk (+ spilling shards), as the run timed it
        print(f"{'intake (whole)':<26}{intake_wall:>9.2f}")
    for name, s in fig["stages"].items():
        label = ("  " if "." in name and not name.startswith("check.") else "") + name
        print(f"{label:<26}{s['wall']:>9.2f}{s['cpu']:>9.2f}{s['peak_mb']:>13,.0f}{s['calls']:>7}")
    checks = [s for k, s in fig["stages"].items() if k.startswith("check.")]
    print(f"{'checks (all families)':<26}{sum(s['wall'] for s in checks):>9.2f}"
          f"{sum(s['cpu'] for s in checks):>9.2f}{max((s['peak_mb'] for s in checks), default=0):>13,.0f}")
    print(f"{'TOTAL run_scrub':<26}{fig['wall']:>9.2f}{fig['cpu']:>9.2f}{fig['peak_mb']:>13,.0f}")
    print(f"lines/s: {fig['lines'] / fig['wall']:,.0f} (wall), {fig['lines'] / fig['cpu']:,.0f} (cpu); "
          f"import of the library (not counted): {fig['import_wall']:.1f} s; "
          f"RSS before the run {fig['rss_before_mb']:,.0f} MB")
    timed = fig.get("read_write")
    if timed:
        gauge = timed[0]["lines"]
        said = YARDSTICK_READ_WRITE_PER_M * gauge / 1e6
        now = sum(t["seconds"] for t in timed) / len(timed)
        speed = said / now    # under 1: the machine is slower now than when the yardstick was measured
        target = f"; target {2 * YARDSTICK_SCRUB[n]:.0f} s, twice the DuckDB scrub" if n in YARDSTICK_SCRUB else ""
        took = " s and ".join(f"{t['seconds']:.2f}" for t in timed)
        print(f"machine speed: DuckDB read+write of the {gauge:,}-line file as Parquet took {took} s (before "
              f"and after the run), against "
              f"{said:.2f} s when the issue's yardstick was measured: {speed:.2f}x that speed. At that speed "
              f"this run would take {fig['wall'] * speed:.2f} s{target}.")
        if gauge < 10_000_000:
            print("  (a file this small is one row group, which DuckDB reads on one thread: it understates the "
                  "machine's speed; gauge with --gauge-lines 10000000)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE,
                        help="cache folder for the prepared reference store and generated claims")
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    parser.add_argument("--profile", action="store_true", help="cProfile the first size in this process")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--max-rss-gb", type=float, default=16.0,
                        help="abort a run whose RSS passes this (protects a shared machine)")
    parser.add_argument("--no-read-write", action="store_true",
                        help="skip timing DuckDB's read+write of the claims before and after each run")
    parser.add_argument("--gauge-lines", type=int,
                        help="gauge the machine on the claim file of this size (default: the biggest of --lines)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    cache = args.store.resolve()

    if args.child:
        kind, *rest = args.child
        if kind == "prepare":
            out = prepare_store(cache)
        elif kind == "generate":
            out = generate_file(cache, int(rest[0]), rest[1], rest[2])
        elif kind == "read-write":
            out = duckdb_read_write(rest[0], int(rest[1]))
        else:
            out = scrub_once(cache, rest[0], rest[1], max_rss_gb=float(rest[2]))
        print(json.dumps(out))
        return

    if not (cache / READY).exists():
        for needed in (PTP_SOURCE, MUE_SOURCE, RVU_FOLDER, ZIP5_FOLDER):
            if not needed.exists():
                raise SystemExit(f"missing {needed}: the benchmark needs ../shared/reference-data")
        cache.mkdir(parents=True, exist_ok=True)
        doc = _child(cache, "prepare")
        print(f"prepared reference store in {doc['seconds']:.0f} s (peak RSS {doc['peak_rss_mb']:,.0f} MB)")
    # the machine is gauged on the biggest file by default: a 1M-line file is one row group, which DuckDB
    # reads on one thread, so its read+write is not the per-million rate the issue gives
    gauge = args.gauge_lines or max(args.lines)
    files = {}
    for n in dict.fromkeys([*args.lines, gauge]):
        claims = claims_file(cache, n, args.format)
        if not claims.exists():
            claims.parent.mkdir(parents=True, exist_ok=True)
            for pattern in (f"claims-{n}.{args.format}", f"claims-{n}-*.{args.format}"):  # older generators'
                for stale in claims.parent.glob(pattern):
                    stale.unlink()
            g = _child(cache, "generate", str(n), args.format, str(claims))
            print(f"generated {g['lines']:,} lines / {g['claims']:,} claims / {g['patients']:,} patients "
                  f"in {g['seconds']:.0f} s (not timed)")
        files[n] = claims
    results = {}
    for n in args.lines:
        claims = files[n]
        if args.profile:
            fig = scrub_once(cache, str(claims), f"profile-{n}", profile=True)
            print_table(n, fig)
            print(fig["profile"])
            return
        timed = [] if args.no_read_write else [_child(cache, "read-write", str(files[gauge]), str(gauge))]
        fig = _child(cache, "scrub", str(claims), f"{n}", str(args.max_rss_gb))
        if timed:
            timed.append(_child(cache, "read-write", str(files[gauge]), str(gauge)))
            fig["read_write"] = timed
        results[n] = fig
        if "aborted" in fig:
            print(f"\n=== {n:,} lines: ABORTED: {fig['aborted']} while running {fig['running']} ===")
            for name, s in fig["stages"].items():
                print(f"{name:<26}{s['wall']:>9.2f}{s['cpu']:>9.2f}{s['peak_mb']:>13,.0f}")
            continue
        print_table(n, fig)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
