"""The directory import benchmark runs end to end and writes sane results.

A smoke test only: a tiny export (150 employees) into a temp dir. It checks the phases' shape, that every
number is finite, that the import wrote what the export says (every row on the first import, the changed rows
alone on the re-import and when only they are sent) and the report's shape; not the targets: those live in
bench/ and its results, not in a timed test on a shared machine.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PHASES = ("first", "bare", "reimport", "changed_only")


@pytest.mark.timeout(300)
def test_directory_import_benchmark_quick_run_imports_and_reimports(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "bench.directory_import", "--quick", "--no-progress", "--employees", "150",
         "--departments", "2", "--teams-per-department", "2", "--out-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=280,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads((tmp_path / "directory_import.json").read_text())
    assert result["benchmark"] == "directory_import"
    assert result["targets"] == {"first_import_ratio": 0.5, "reimport_vs_changed_only": 2.0}
    data = result["data"]
    assert data["employees"] == 150 and data["org_units"] == 7 and 3 <= data["changed_rows"] < 150
    (record,) = result["rounds"]
    assert record["order"] == ["ours", "bare"]
    for phase in PHASES:
        x = record[phase]
        assert x["rows"] == (data["changed_rows"] if phase == "changed_only" else 150)
        for metric in ("seconds", "rows_per_s", "store_cpu_s"):
            assert math.isfinite(x[metric]) and x[metric] > 0, (phase, metric)
        assert x["store_commands"] >= x["store_ops"]["insert"] >= 0
    assert record["first"]["created"] == 150 and record["first"]["rewritten"] == 150
    assert record["bare"]["store_ops"]["insert"] == 150
    again, only = record["reimport"], record["changed_only"]
    assert again["created"] == 0 and again["unchanged"] == 150 - data["changed_rows"]
    assert only["rewritten"] == data["changed_rows"] and only["unchanged"] == 0
    assert again["rewritten"] == data["changed_rows"], "a re-import writes the changed rows alone"
    summary = result["summary"]
    for key in ("ratio", "reimport_vs_first_time", "reimport_vs_changed_only_time", "reimport_vs_first_commands",
                "reimport_vs_changed_only_commands"):
        assert math.isfinite(summary[key]) and summary[key] > 0, key
    assert isinstance(result["pass"], bool) and isinstance(summary["proportional"], bool)
    report = (tmp_path / "directory_import.md").read_text()
    for heading in ("## Verdict", "## Phases", "## Ratios"):
        assert heading in report
    assert not list(tmp_path.glob("*.tmp"))
