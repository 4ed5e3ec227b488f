"""The SCIM benchmark runs end to end and writes sane results.

A smoke test only: a short run in a temp dir. It checks that both stacks served every request the client
made (no errors), that the numbers are consistent and the report's shape, not the target: that lives in
bench/ and its results, not in a timed test on a shared machine.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

@pytest.mark.timeout(300)
def test_scim_benchmark_quick_run_creates_and_patches_without_errors(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "bench.scim", "--quick", "--no-progress", "--seconds", "2", "--rounds", "2",
         "--warmup", "4", "--out-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=280,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads((tmp_path / "scim.json").read_text())
    assert result["benchmark"] == "scim" and result["targets"] == {"requests_per_second": 25.0}
    assert [r["order"] for r in result["rounds"]] == [["ours", "bare"], ["bare", "ours"]]
    for r in result["rounds"]:
        for stack in ("ours", "bare"):
            x = r[stack]
            assert x["errors"] == 0, x["error_samples"]
            assert x["requests"] > 0
            assert math.isfinite(x["throughput"]) and x["throughput"] > 0
            assert 0 < x["all_p50_ms"] <= x["all_p99_ms"]
        assert math.isfinite(r["ratio"])
    summary = result["summary"]
    assert summary["errors"] == 0 and summary["ratio_range"][0] <= summary["ratio"] <= summary["ratio_range"][1]
    assert isinstance(result["pass"], bool)
    report = (tmp_path / "scim.md").read_text()
    for heading in ("## Verdict", "## Rounds", "## Medians"):
        assert heading in report
    assert not list(tmp_path.glob("*.tmp"))
