"""The notify benchmark runs end to end and writes sane results.

A smoke test only: tiny counts, results in a temp dir. It checks that every phase measured what they say
(every approver's email arrived exactly once, for notify-worker and for the bare client; every lag matched; the
dispatcher alone sent every queued delivery once)
and the report's shape, not the targets: those live in bench/ and its results, not in a timed test on a
shared machine.
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
def test_notify_benchmark_quick_run_delivers_every_message_once(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "bench.notify", "--quick", "--no-progress", "--messages", "8", "--rounds", "2",
         "--approvers", "3", "--lag-seconds", "3", "--queued", "12", "--out-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=280,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads((tmp_path / "notify.json").read_text())
    assert result["benchmark"] == "notify" and result["targets"] == {"ratio": 0.5, "lag_p99_ms": 2000.0}

    a = result["throughput"]
    assert len(a["rounds"]) == 2 and [r["order"] for r in a["rounds"]] == [["notify", "bare"], ["bare", "notify"]]
    for r in a["rounds"]:
        for stack in ("notify", "bare"):
            assert r[stack]["sent"] == r[stack]["arrived"] == 8, (stack, r[stack])
            assert r[stack]["missing"] == r[stack]["duplicates"] == 0
            assert finite(r[stack]["throughput"]) and r[stack]["throughput"] > 0
        assert r["notify"]["deliveries"] == {"email": 8, "email_sent": 8, "email_tries": 8, "inbox": 8}
        assert r["bare"]["errors"] == 0 and r["bare"]["bytes"] > 0
        assert finite(r["ratio"])
    assert a["exactly_once"] and a["deliveries_match"] and a["bare_errors"] == 0
    assert finite(a["ratio"]) and a["ratio_range"][0] <= a["ratio"] <= a["ratio_range"][1]

    b = result["lag"]
    assert b["sent"] > 0 and b["matched"] == b["sent"] and b["missing"] == b["duplicates"] == 0
    assert 0 < b["lag_p50_ms"] <= b["lag_p95_ms"] <= b["lag_p99_ms"] <= b["lag_max_ms"] < 60_000
    assert b["rate"] == pytest.approx(a["ours_throughput"] / 2, rel=0.01)
    assert isinstance(result["pass"], bool)

    c = result["dispatch"]
    assert len(c["rounds"]) == 2
    for r in c["rounds"]:
        assert r["notify"]["sent"] == r["notify"]["arrived"] == r["notify"]["email_sent"] == r["notify"]["email_tries"] == 12
        assert r["bare"]["sent"] == r["bare"]["arrived"] == 12 and r["bare"]["errors"] == 0
        assert finite(r["notify"]["spread_throughput"]) and finite(r["bare"]["spread_throughput"]) and finite(r["ratio"])
    assert c["exactly_once"] and c["sent_once"]

    report = (tmp_path / "notify.md").read_text()
    for heading in ("## Verdict", "## A.", "## B.", "## C."):
        assert heading in report
    assert not list(tmp_path.glob("*.tmp"))
