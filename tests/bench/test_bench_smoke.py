"""The goals API benchmark runs end to end and writes sane results.

A smoke test only: tiny counts, one engine, results in a temp dir. It does
not check the 0.7 target - that lives in bench/ and its results, not in a
timed test on a shared machine.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(240)
def test_goals_api_benchmark_quick_run_writes_both_rows(tmp_path):
    completed = subprocess.run(
        [
            sys.executable, "-m", "bench.goals_api", "--quick", "--no-progress",
            "--engines", "sqlite", "--rounds", "2", "--concurrency", "2", "--seed-docs", "3",
            "--get-warmup", "5", "--get-count", "40", "--create-warmup", "2", "--create-count", "6",
            "--time-limit", "30", "--out-dir", str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]

    result = json.loads((tmp_path / "goals_api.json").read_text())
    assert [e["engine"] for e in result["engines"]] == ["sqlite"]
    engine = result["engines"][0]
    assert len(engine["rounds"]) == 2
    summary = engine["summary"]
    assert {row["rpc"] for row in summary.values()} == {"GetV2MOM", "CreateV2MOM"}
    for row in summary.values():
        assert row["errors"] == 0, row
        for stack in ("ours", "bare"):
            assert row[f"{stack}_throughput"] > 0, row
            assert 0 < row[f"{stack}_p50_ms"] <= row[f"{stack}_p99_ms"] < 30_000, row
        for metric in ("throughput", "p50", "p99"):
            value = row[f"ratio_{metric}"]
            assert value is not None and math.isfinite(value) and 0.05 < value < 20, (metric, row)
    # Fair creates: every round, both stacks insert the same number of documents into collections of the same size.
    for r in engine["rounds"]:
        assert r["create_start_size"] == 3
        assert r["create_end_size"] == {"ours": 3 + 8, "bare": 3 + 8}
        assert r["create"]["ours"]["completed"] == r["create"]["bare"]["completed"] == 6

    report = (tmp_path / "goals_api.md").read_text()
    assert "| GetV2MOM |" in report and "| CreateV2MOM |" in report
    assert "PASS" in report or "FAIL" in report
    assert not list(tmp_path.glob("*.tmp"))
