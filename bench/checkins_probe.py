"""Event lag at fixed rates, with each process's CPU per check-in: where phase B's time goes.

Not a benchmark with a verdict: the stack of bench.checkins (store, goals-api, checkins-api, and
checkins-worker on a vhost of its own), then one lag run (bench/checkins_lag_client.py) per rate,
each followed by waiting until the worker has caught up. Per rate it prints one JSON line: the lag,
and the CPU time the store, goals-api, checkins-api and checkins-worker spent per check-in from the
first call until the worker caught up (/proc). At low rates the relay's idle polling (every 0.2 s)
weighs on the per-check-in figures.

    .venv/bin/python -m bench.checkins_probe --rates 15,25 --seconds 12

With a pymongo CommandListener loaded through a sitecustomize.py on PYTHONPATH (bench/README.md,
"Profiling under this load") it also gives the store commands per check-in of each process.
"""

import argparse
import json
import os
import tempfile
import time
import uuid
from pathlib import Path

from bench import checkins as bench_checkins
from bench import harness
from bench.harness import OURS


def cpu(stack: bench_checkins.Stack) -> dict[str, float | None]:
    return {name: harness.cpu_seconds(process.popen.pid)[0] for name, process in stack.processes.items()}


def probe(rates: list[float], seconds: float, v2moms: int, amqp_uri: str) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-checkins-probe-") as tmp:
        stack = bench_checkins.Stack(Path(tmp), bench_checkins.SHIPPED_RELAY_INTERVAL)
        try:
            stack.start_store()
            client = harness.mongo_client(stack.uri)
            stack.start_goals()
            world = bench_checkins.publish_world(stack, client[bench_checkins.GOALS_DB], v2moms)
            stack.start_ours()
            with harness.Vhost(amqp_uri, "bench_checkins_probe", "the probe") as vhost:
                stack.start_worker(vhost.uri)
                bench_checkins._wait_for_queues(vhost.uri)
                bench_checkins.prime(stack, world, names=(OURS,))
                bench_checkins._wait_until_projected(stack, client, list(world.facts))
                bench_checkins._wait_until_drained(client, vhost.uri)
                for run_no, rate in enumerate(rates):
                    before = cpu(stack)
                    plan = {"target": stack.address(OURS), "amqp_uri": vhost.uri, "rate": rate, "duration": seconds,
                            "concurrency": 4, "settle_timeout": 60.0, "run": uuid.uuid4().hex[:8], "run_no": run_no,
                            "items": world.items}
                    lag = harness.run_module("bench.checkins_lag_client", plan, timeout=seconds + 200)
                    bench_checkins._wait_until_drained(client, vhost.uri, timeout=300.0)
                    after = cpu(stack)
                    sent = max(1, lag["sent"])
                    result = {
                        "rate": rate, "achieved": lag["achieved_rate"], "sent": lag["sent"], "matched": lag["matched"],
                        "missing": lag["missing"], "lag_p50_ms": lag["lag_p50_ms"], "lag_p99_ms": lag["lag_p99_ms"],
                        "call_p50_ms": lag["latency_p50_ms"],
                        "cpu_ms_per_checkin": {
                            name: round(1000 * (after[name] - before[name]) / sent, 2)
                            for name in after if before.get(name) is not None and after[name] is not None
                        },
                        "load": round(os.getloadavg()[0], 2),
                    }
                    print(json.dumps(result), flush=True)
                    results.append(result)
                stack.stop("worker")
            client.close()
        finally:
            stack.stop_all()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.checkins_probe", description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="15,25", help="check-ins per second, one lag run each (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=12.0, help="length of each lag run (default %(default)s)")
    parser.add_argument("--v2moms", type=int, default=30,
                        help="V2MOMs checked in on, 3 measures each (default %(default)s)")
    parser.add_argument("--amqp-uri", default=os.environ.get("AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/"))
    args = parser.parse_args(argv)
    started = time.monotonic()
    probe([float(rate) for rate in args.rates.split(",") if rate.strip()], args.seconds, args.v2moms, args.amqp_uri)
    print(json.dumps({"duration_s": round(time.monotonic() - started, 1)}))


if __name__ == "__main__":
    main()
