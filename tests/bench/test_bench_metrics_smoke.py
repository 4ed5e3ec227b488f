"""The metrics benchmark runs end to end and writes sane results.

A smoke test only: tiny org sizes and event counts, results in a temp dir. It
checks that every phase measured what it says (every size loaded and scraped in
full, the long history loaded beside the same units, both consumers did the same
writes for every event), not the targets: those live in bench/ and its results,
not in a timed test on a shared machine.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRAPES, ROUNDS, EVENTS = 2, 2, 60


def finite(value) -> bool:
    return value is not None and math.isfinite(value) and value > 0


@pytest.mark.timeout(300)
def test_metrics_benchmark_quick_run_measures_every_phase(tmp_path):
    completed = subprocess.run(
        [
            sys.executable, "-m", "bench.metrics", "--quick", "--no-progress",
            "--units", "10,30", "--history-units", "30", "--scrapes", str(SCRAPES),
            "--rounds", str(ROUNDS), "--events", str(EVENTS), "--v2moms", "10", "--out-dir", str(tmp_path),
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=280,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads((tmp_path / "metrics.json").read_text())

    scrape = result["scrape"]
    assert [p["units"] for p in scrape["points"]] == [10, 30]
    long = scrape["long_history"]
    assert long["units"] == 30 and long["history"] == "long" and scrape["short_history"]["units"] == 30
    for point in [*scrape["points"], long]:
        n = point["units"]
        assert point["loaded"]["units"] == point["loaded"]["aggregates"] == n
        assert point["raw_docs"] == 2 * n, "the raw find read every unit and aggregate"
        assert point["headcount_samples"] == 2 * n, "the scrape exported every unit, direct and subtree"
        assert len(point["scrapes"]) == len(point["raw"]) == SCRAPES
        assert all(finite(x) for x in point["scrapes"] + point["raw"])
        assert finite(point["ratio"]) and point["bytes"] > 0
        assert finite(point["cold_s"]) and finite(point["catch_up_cpu_s"])
        assert point["changes_shown"] is True, "a scrape missed changes written before it"
    assert long["loaded"]["people"] == long["loaded"]["v2moms"] == 8 * 30 and long["loaded"]["history"] == 30
    assert "people" not in scrape["short_history"]["loaded"]
    for key in ("per_unit_growth", "history_growth", "cpu_history_growth"):
        assert finite(scrape[key])
    assert scrape["current_pass"] is True

    throughput = result["throughput"]
    assert len(throughput["rounds"]) == ROUNDS and throughput["same_work"] is True
    for r in throughput["rounds"]:
        for stack in ("worker", "bare"):
            assert r[stack]["work"] == {"counted": EVENTS, "v2mom_versions": EVENTS, "aggregate_memory": EVENTS}
            assert finite(r[stack]["events_per_s"])
        assert finite(r["ratio"])
    assert {r["order"] for r in throughput["rounds"]} == {"worker/bare", "bare/worker"}
    assert finite(throughput["ratio"]) and isinstance(result["pass"], bool)
    assert result["machine"]["commit"] and "load_average_1m" in result["machine"]

    report = (tmp_path / "metrics.md").read_text()
    for heading in ("## Verdict", "## A. Scrape cost", "## B. Event throughput"):
        assert heading in report
    assert not list(tmp_path.glob("*.tmp"))
