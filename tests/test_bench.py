"""The benchmark's stage meter still fits the pipeline: bench/bench_scrub.py wraps pipeline functions by
name, so a renamed or split stage would break the benchmark (not the product) without this test.

A real run of the bundled sample, spilled into shards, in a child process (the wrappers replace module
attributes for the life of the process): every stage the benchmark reports is seen at least once.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, sys
from datetime import date
from pathlib import Path
sys.path.insert(0, sys.argv[1] + "/bench")
import bench_scrub
from scrubber.pipeline import run_scrub
from scrubber.reference.loader import load_paths
from scrubber.settings import Settings
from scrubber.store import LocalStore

repo, tmp = Path(sys.argv[1]), Path(sys.argv[2])
store = LocalStore(tmp / "store")
load_paths(store, [repo / "data" / "reference" / "sample-rvu25d", repo / "data" / "reference" / "sample-ncci"],
           partial=True)
meter = bench_scrub.StageMeter()
bench_scrub.instrument(meter)
run_scrub(store, [repo / "data" / "claims" / "sample_claims.csv"], run_date=date(2026, 1, 5), out_dir=tmp / "out",
          settings=Settings.from_env(store=str(tmp / "store")), shard_lines=60)
meter.stop()
print(json.dumps({name: s["calls"] for name, s in meter.stats.items()}))
"""


def test_every_stage_the_benchmark_reports_is_seen_in_a_sharded_run(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", _CHILD, str(REPO), str(tmp_path)], capture_output=True,
                          text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    calls = json.loads(done.stdout.strip().splitlines()[-1])
    stages = {"intake.validate", "intake.repeats", "intake.spill", "lines_output", "pricing", "history_read",
              "check.flags", "amount_at_risk", "check_frame", "publish", "publish.summary",
              "publish.report_finish", "history_write", "history_publish"}
    assert stages <= set(calls), sorted(stages - set(calls))
    assert {f"check.{family}" for family in ("units", "bundling", "frequency", "modifier25", "place_of_service",
                                             "code_status", "duplicate")} <= set(calls)
    assert calls["pricing"] > 1   # several shards
