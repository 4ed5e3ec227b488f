"""Load generator for the goals API benchmark: a separate client process.

It reads one plan as JSON on stdin, drives one gRPC target with a few threads
(one channel, hence one HTTP/2 connection, each), and prints one JSON result
on stdout. Requests are built before the clock starts; a warm-up runs first
and is left out of the numbers; the measured phase stops at a fixed request
count or a time bound, whichever comes first.

Plan (bench/goals_api.py and bench/checkins.py write it):
    {"target": "127.0.0.1:PORT", "op": "get" | "create" | "checkin",
     "concurrency": 4, "warmup": 20, "count": 500, "time_limit": 20.0,
     "items": [[id_or_person_id, bearer_token], ...],       # get: cycled; create: one per request
     "cycle_id": "...", "org_unit_id": "...", "content": "<base64 V2MOMContent>"}   # create only
    checkin: "items": [[v2mom_id, measure_id, bearer_token, baseline], ...], cycled, and "run": a
    string that makes this run's idempotency keys unique (each request sends its own key).

Result: completed, errors, throughput (req/s), p50_ms, p99_ms, mean_ms,
elapsed_s, time_bounded, plus up to five error samples.
"""

import base64
import itertools
import json
import math
import sys
import threading
import time

import grpc

from bench.harness import percentile
from services.platform.api.auth import bearer_metadata
from v2mom.v1 import checkins_pb2, checkins_pb2_grpc, common_pb2, goals_pb2, goals_pb2_grpc

CALL_TIMEOUT_S = 30.0


def checkin_request(item: list, sequence: int, round_on_item: int, run: str) -> checkins_pb2.RecordMeasureCheckinRequest:
    """A measure check-in whose value differs from the last one on the same measure, so progress moves."""
    v2mom_id, measure_id, _, baseline = item
    return checkins_pb2.RecordMeasureCheckinRequest(
        v2mom_id=v2mom_id, measure_id=measure_id, value=baseline + 1 + round_on_item % 10,
        status=checkins_pb2.CHECKIN_STATUS_ON_TRACK, confidence=7, comment="Steady week; on plan.",
        idempotency_key=f"bench.{run}.{sequence}",
    )


def build_calls(plan: dict) -> tuple[str, list[tuple[object, tuple]]]:
    """(rpc name, [(request, metadata)]) for warm-up plus measured requests, in order."""
    total = plan["warmup"] + plan["count"]
    items = plan["items"]
    if plan["op"] == "checkin":
        calls = []
        for i in range(total):
            item = items[i % len(items)]
            calls.append((checkin_request(item, i, i // len(items), plan["run"]), bearer_metadata(item[2])))
        return "RecordMeasureCheckin", calls
    if plan["op"] == "get":
        calls = []
        for i in range(total):
            v2mom_id, token = items[i % len(items)]
            calls.append((goals_pb2.GetV2MOMRequest(id=v2mom_id), bearer_metadata(token)))
        return "GetV2MOM", calls
    if plan["op"] == "create":
        if len(items) < total:
            raise SystemExit(f"create needs {total} distinct authors, got {len(items)}")
        template = goals_pb2.V2MOMContent.FromString(base64.b64decode(plan["content"]))
        calls = []
        for person_id, token in items[:total]:
            content = goals_pb2.V2MOMContent()
            content.CopyFrom(template)
            for method in content.methods:
                method.owner_id = person_id
                method.accountable_id = person_id
            request = goals_pb2.CreateV2MOMRequest(
                level=common_pb2.ORG_LEVEL_INDIVIDUAL,
                owner_id=person_id,
                org_unit_id=plan["org_unit_id"],
                cycle_id=plan["cycle_id"],
                content=content,
            )
            calls.append((request, bearer_metadata(token)))
        return "CreateV2MOM", calls
    raise SystemExit(f"unknown op {plan['op']!r}")


def run(plan: dict) -> dict:
    rpc, calls = build_calls(plan)
    warmup, concurrency, time_limit = plan["warmup"], plan["concurrency"], float(plan["time_limit"])
    warm_calls, measured_calls = calls[:warmup], calls[warmup:]
    warm_next, measured_next = itertools.count(), itertools.count()  # next() on count is atomic under the GIL
    clock = {"t0": 0.0}
    barrier = threading.Barrier(concurrency, action=lambda: clock.__setitem__("t0", time.perf_counter()))
    lock = threading.Lock()
    latencies: list[float] = []
    finished: list[float] = []
    errors: list[str] = []
    error_count = [0]
    time_bounded = [False]
    setup_errors: list[str] = []

    def worker() -> None:
        # One channel per thread, with its own subchannel pool: a connection each.
        channel = grpc.insecure_channel(plan["target"], options=[("grpc.use_local_subchannel_pool", 1)])
        try:
            _work(channel)
        except threading.BrokenBarrierError:
            pass  # another thread failed first; it recorded why
        except Exception as error:  # noqa: BLE001 - reported in the result, and the others are released
            with lock:
                setup_errors.append(f"{type(error).__name__}: {error}")
            barrier.abort()
        finally:
            channel.close()

    def _work(channel) -> None:
        grpc.channel_ready_future(channel).result(timeout=10)
        stub = checkins_pb2_grpc.CheckinServiceStub if rpc == "RecordMeasureCheckin" else goals_pb2_grpc.GoalServiceStub
        call = getattr(stub(channel), rpc)

        def one(request, metadata) -> float | None:
            started = time.perf_counter()
            try:
                call(request, metadata=metadata, timeout=CALL_TIMEOUT_S)
            except grpc.RpcError as error:
                with lock:
                    error_count[0] += 1
                    if len(errors) < 5:
                        errors.append(f"{error.code().name}: {error.details()}")
                return None
            return time.perf_counter() - started

        while (i := next(warm_next)) < len(warm_calls):
            one(*warm_calls[i])
        barrier.wait(timeout=120)  # the measured phase starts when every thread is done warming up
        deadline = clock["t0"] + time_limit
        mine: list[float] = []
        while (i := next(measured_next)) < len(measured_calls):
            if time.perf_counter() > deadline:
                time_bounded[0] = True
                break
            took = one(*measured_calls[i])
            if took is not None:
                mine.append(took)
        with lock:
            latencies.extend(mine)
            finished.append(time.perf_counter())

    threads = [threading.Thread(target=worker, name=f"load-{k}") for k in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = max(finished) - clock["t0"] if finished else math.nan
    latencies.sort()
    return {
        "rpc": rpc,
        "concurrency": concurrency,
        "warmup": warmup,
        "requested": len(measured_calls),
        "completed": len(latencies),
        "errors": error_count[0] + len(setup_errors),
        "error_samples": (setup_errors + errors)[:5],
        "time_bounded": time_bounded[0],
        "elapsed_s": round(elapsed, 4),
        "throughput": round(len(latencies) / elapsed, 2) if latencies else 0.0,
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 3),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
        "mean_ms": round(sum(latencies) / len(latencies) * 1000, 3) if latencies else math.nan,
    }


def main() -> None:
    plan = json.load(sys.stdin)
    print(json.dumps(run(plan)), flush=True)


if __name__ == "__main__":
    main()
