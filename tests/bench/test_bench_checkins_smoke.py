"""The check-ins benchmark runs end to end and writes sane results.

A smoke test only: tiny counts, results in a temp dir. It checks that every
phase measured what it says (both stacks, the same documents, every lag
matched, both curves at every size), not the targets: those live in bench/
and its results, not in a timed test on a shared machine.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def finite(value) -> bool:
    return value is not None and math.isfinite(value)


@pytest.mark.timeout(300)
def test_checkins_benchmark_quick_run_measures_every_phase(tmp_path):
    completed = subprocess.run(
        [
            sys.executable, "-m", "bench.checkins", "--quick", "--no-progress",
            "--v2moms", "2", "--lag-v2moms", "4", "--rounds", "2", "--concurrency", "2", "--warmup", "2",
            "--count", "6", "--max-count", "6", "--lag-seconds", "3", "--history", "300,600", "--history-samples", "2",
            "--out-dir", str(tmp_path),
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=280,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads((tmp_path / "checkins.json").read_text())

    throughput = result["throughput"]
    assert len(throughput["rounds"]) == 2 and throughput["summary"]["errors"] == 0
    for r in throughput["rounds"]:
        assert r["ours"]["completed"] == r["bare"]["completed"] == 6
        assert finite(r["ratios"]["throughput"]) and finite(r["ratios"]["p50"])
    assert {r["start_size"] for r in throughput["rounds"]} == {6}, "every round starts from the primed check-ins only"
    sizes = throughput["doc_sizes"]
    assert sizes["ours"]["fields"] == sizes["bare"]["fields"]

    lag = result["lag"]
    assert lag["relay_interval_s"] == 0.2 and lag["maximum"]["throughput"] > 0
    # Every call is accounted for; on a busy machine the worker may still be behind when the wait ends.
    assert lag["lag"]["sent"] > 0 and lag["lag"]["matched"] > 0
    assert lag["lag"]["matched"] + lag["lag"]["missing"] == lag["lag"]["sent"]
    assert 0 < lag["lag"]["lag_p50_ms"] <= lag["lag"]["lag_p99_ms"] < 60_000

    points = result["history"]["points"]
    # Each size is filled up to, or past when the earlier phases stored more (the lag phase's count varies).
    stored = [p["stored"]["ours"] for p in points]
    assert len(stored) == 2 and 300 <= stored[0] < stored[1] and stored[1] >= 600, stored
    assert all(p["stored"]["ours"] == p["stored"]["bare"] for p in points)
    for point in points:
        assert point["ours"]["completed"] == point["bare"]["completed"] == 2
        assert finite(point["extra_ms"]) and point["bare"]["p50_ms"] > 0
    assert isinstance(result["pass"], bool)

    report = (tmp_path / "checkins.md").read_text()
    for heading in ("## A.", "## B.", "## C."):
        assert heading in report
    assert not list(tmp_path.glob("*.tmp"))
