"""The scale benchmark runs end to end and writes sane results.

A smoke test only: one and two consumers, one concurrency value, one short recovery trial, results in a temp
dir. It checks that every phase measured what it says (every run finite, both stacks doing exactly the work
sent whatever the number of competing consumers, nothing lost or doubled after the kill, the consumer caught
up), not the figures: those live in bench/ and its results, not in a timed test on a shared machine.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 60
STACKS = ("worker", "bare")


def finite(value) -> bool:
    return value is not None and math.isfinite(value) and value > 0


@pytest.mark.timeout(300)
def test_scale_benchmark_quick_run_measures_every_phase(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--quick", "--no-progress", "--events", str(EVENTS),
         "--out-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=280,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads((tmp_path / "scale.json").read_text())
    expected = {"counted": EVENTS, "v2mom_versions": EVENTS, "aggregate_memory": EVENTS}

    scaling = result["scaling"]
    assert [p["consumers"] for p in scaling["points"]] == [1, 2] and len(scaling["rounds"]) == 1
    for n, run in scaling["rounds"][0].items():
        for stack in STACKS:
            assert run[stack]["work"] == expected, "competing consumers lost or double-counted events"
            assert run[stack]["left_in_queue"] == 0 and run[stack]["exact"] is True
            assert finite(run[stack]["events_per_s"])
            cpu = run[stack]["cpu"]
            assert len(cpu["per_consumer_cores"]) == int(n)
            assert all(finite(x) for x in [cpu["store_cores"], cpu["consumers_cores"], *cpu["per_consumer_cores"]])
        assert finite(run["ratio"])
    for point in scaling["points"]:
        assert point["exact"] is True and point["same_work"] is True and finite(point["ratio"])
        assert all(finite(point[stack]["speedup"]) for stack in STACKS)
    assert scaling["points"][0]["worker"]["speedup"] == 1.0 and scaling["exact"] is True
    assert set(scaling["flattens_at"]) == set(STACKS)

    concurrency = result["concurrency"]
    if result["settings"]["WORKER_CONCURRENCY"]:
        assert [p["concurrency"] for p in concurrency["points"]] == [4] and concurrency["exact"] is True
        assert all(finite(p[stack]["events_per_s"]) for p in concurrency["points"] for stack in STACKS)
    else:
        assert concurrency is None

    recovery = result["recovery"]
    assert len(recovery["trials"]) == 1 and recovery["exact"] is True and recovery["caught_up"] is True
    for stack in STACKS:
        trial = recovery["trials"][0][stack]
        assert trial["drained"] is True and trial["work"]["v2mom_versions"] == trial["published"]
        assert trial["backlog_events"] > 0, "the kill left no backlog to catch up on"
        assert finite(trial["caught_up_s"]) and trial["consuming_s"] <= trial["caught_up_s"]
        assert finite(trial["catch_up_events_per_s"]) and finite(trial["catch_up_cpu"]["store_cores"])
    worker = recovery["trials"][0]["worker"]
    # The ledger must be exact after a kill; the bare consumer may be an in-flight event short (not crash-safe).
    assert worker["exact"] is True and worker["work"]["counted"] == worker["published"]
    assert result["pass"] is True
    assert result["machine"]["commit"] and "load_average_1m" in result["machine"]

    report = (tmp_path / "scale.md").read_text()
    for heading in ("## Verdict", "## A. Scaling", "## B. Concurrency", "## C. Recovery"):
        assert heading in report
    assert not list(tmp_path.glob("*.tmp"))
