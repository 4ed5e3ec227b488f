"""The chaos soak, longer than the suite's: two replicas of every api and worker under a steady mixed load while
replicas are SIGKILLed, the broker restarts once and the store pauses once (tests/scale/test_chaos_soak.py).

    .venv/bin/python -m bench.chaos [--seconds 600] [--out-dir bench/results]

It runs that test with V2MOM_SOAK_SECONDS of chaos, keeps the figures it reports (calls, retries, kills,
restarts, events, lag p99 during and after the faults) with whether every check held, and writes
bench/results/chaos.json and chaos.md.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
TEST = "tests/scale/test_chaos_soak.py"
SETUP_SECONDS = 150  # the cluster, the seed and the final checks, roughly, on this machine


def run(seconds: float, progress: bool) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "figures.json"
        env = {**os.environ, "V2MOM_SOAK_SECONDS": str(seconds), "V2MOM_SOAK_REPORT": str(report)}
        began = time.monotonic()
        with tqdm(total=int(seconds + SETUP_SECONDS), desc="chaos soak", unit="s", disable=not progress) as bar:
            done = threading.Event()

            def tick():
                while not done.wait(1.0):
                    if bar.n < bar.total - 1:
                        bar.update(1)
            threading.Thread(target=tick, daemon=True).start()
            completed = subprocess.run([sys.executable, "-m", "pytest", TEST, "-q", "-s", "-p", "no:cacheprovider"],
                                       cwd=ROOT, env=env, capture_output=True, text=True)
            done.set()
            bar.update(bar.total - bar.n)
        figures = json.loads(report.read_text()) if report.exists() else {}
    return {"figures": figures, "passed": completed.returncode == 0, "wall_seconds": round(time.monotonic() - began, 1),
            "output_tail": completed.stdout[-3000:] if completed.returncode else ""}


def markdown(result: dict) -> str:
    f = result["figures"]
    verdict = "PASS: every check held" if result["passed"] else "FAIL: see output_tail in chaos.json"
    rows = [("chaos", f"{f.get('chaos_seconds')} s"), ("check-ins recorded", f.get("checkins_recorded")),
            ("create/submit/approve calls", f.get("goals_calls")), ("journeys approved", f.get("journeys")),
            ("calls retried", f"{f.get('retried')} {f.get('retried_by_status')}"),
            ("replicas SIGKILLed", f"{f.get('kills')} {f.get('kills_by_kind')}"),
            ("broker restarts", f.get("broker_restarts")), ("store pauses", f.get("store_pauses")),
            ("events metrics-worker handled", f.get("events_handled_by_metrics")),
            ("event lag p99 during the faults", f"{f.get('lag_p99_during_s')} s"),
            ("event lag p99 after, while catching up", f"{f.get('lag_p99_after_s')} s"),
            ("whole run", f"{result['wall_seconds']} s")]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    return (f"# Chaos soak\n\n`python -m bench.chaos` ({TEST}, two replicas of every api and worker). {verdict}.\n\n"
            f"| | |\n|---|---|\n{table}\n\n"
            "Lag is metrics-worker's event lag histogram (`v2mom_metrics_event_lag_seconds`), read as a bucket "
            "bound: the time from an event's creation to its handling, p99 over the events handled in each window.\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.seconds, progress=not args.no_progress)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "chaos.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out_dir / "chaos.md").write_text(markdown(result))
    print(markdown(result))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
