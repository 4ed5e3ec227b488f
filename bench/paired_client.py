"""Paired load client: one call to each of two targets in turn, from one separate process.

For slow calls on a noisy store (bench/checkins.py's history phase, where one
insert takes seconds): comparing the two stacks call by call, alternating
which goes first, cancels the machine's drift, which would swamp a
comparison of two blocks of calls made a minute apart.

Plan on stdin: bench/load_client.py's "checkin" plan, with "targets":
{"ours": "127.0.0.1:PORT", "bare": "127.0.0.1:PORT"} instead of "target";
"warmup" calls go to each target first, then "count" pairs.

Result on stdout: per target p50_ms, mean_ms, errors; and the per-pair
differences (first target minus second): diff_p50_ms, diff_mean_ms.
"""

import json
import statistics
import sys
import time

import grpc

from bench.harness import percentile
from bench.load_client import CALL_TIMEOUT_S, build_calls
from v2mom.v1 import checkins_pb2_grpc


def run(plan: dict) -> dict:
    names = list(plan["targets"])
    calls = {name: build_calls({**plan, "op": "checkin", "run": f"{plan['run']}-{name}"})[1] for name in names}
    channels = {name: grpc.insecure_channel(address) for name, address in plan["targets"].items()}
    try:
        stubs = {name: checkins_pb2_grpc.CheckinServiceStub(channel).RecordMeasureCheckin for name, channel in channels.items()}
        latencies: dict[str, list[float]] = {name: [] for name in names}
        errors: dict[str, list[str]] = {name: [] for name in names}

        def one(name: str, index: int) -> float | None:
            request, metadata = calls[name][index]
            started = time.perf_counter()
            try:
                stubs[name](request, metadata=metadata, timeout=CALL_TIMEOUT_S)
            except grpc.RpcError as error:
                errors[name].append(f"{error.code().name}: {error.details()}")
                return None
            return time.perf_counter() - started

        for index in range(plan["warmup"]):
            for name in names:
                one(name, index)
        diffs = []
        for pair in range(plan["count"]):
            order = names if pair % 2 == 0 else names[::-1]
            took = {name: one(name, plan["warmup"] + pair) for name in order}
            for name, seconds in took.items():
                if seconds is not None:
                    latencies[name].append(seconds)
            if None not in took.values():
                diffs.append(took[names[0]] - took[names[1]])
    finally:
        for channel in channels.values():
            channel.close()
    result = {name: _stats(latencies[name], errors[name]) for name in names}
    diffs.sort()
    result["diff_p50_ms"] = round(percentile(diffs, 0.5) * 1000, 2)
    result["diff_mean_ms"] = round(statistics.fmean(diffs) * 1000, 2) if diffs else float("nan")
    return result


def _stats(latencies: list[float], errors: list[str]) -> dict:
    latencies = sorted(latencies)
    return {
        "completed": len(latencies),
        "errors": len(errors),
        "error_samples": errors[:5],
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2) if latencies else float("nan"),
    }


def main() -> None:
    print(json.dumps(run(json.load(sys.stdin))), flush=True)


if __name__ == "__main__":
    main()
