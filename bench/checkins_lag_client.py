"""Event lag client for the check-ins benchmark: a separate process that records and listens.

It binds a queue of its own to ``checkins.events`` (routing key
``progress_changed``) before sending anything, then records measure
check-ins through checkins-api at a fixed rate (open loop: each request has
its moment, t0 + i / rate, whatever the answers before it took) and notes
when each call returned. A check-in's lag is the time from its call
returning to this process consuming the ``progress_changed`` event that
check-in caused (cause ``checkin``, same V2MOM and measure). Both times come
from this process's clock.

Matching: each (V2MOM, measure) pair is used in turn, so a pair comes round
again only after ``len(items) / rate`` seconds, and its k-th event answers
its k-th check-in. The pairs must be used by nothing else while this runs.
Every check-in changes its measure's value, so every one moves progress and
is announced.

Plan on stdin (bench/checkins.py writes it):
    {"target": "127.0.0.1:PORT", "amqp_uri": "amqp://.../vhost", "rate": 10.0, "duration": 20.0,
     "concurrency": 4, "settle_timeout": 30.0, "run": "unique-string", "run_no": 0,
     "items": [[v2mom_id, measure_id, bearer_token, baseline], ...]}

Result on stdout: sent, errors, achieved_rate, matched, missing, lag p50/p99/max ms,
call latency p50/p99 ms.
"""

import itertools
import json
import sys
import threading
import time
import uuid

import grpc
import kombu

from bench.harness import percentile
from services.platform.api.auth import bearer_metadata
from v2mom.v1 import checkins_pb2, checkins_pb2_grpc

CALL_TIMEOUT_S = 30.0
EXCHANGE = "checkins.events"


class Listener:
    """progress_changed events caused by check-ins, with the moment each was consumed, per (V2MOM, measure)."""

    def __init__(self, amqp_uri: str):
        self.connection = kombu.Connection(amqp_uri)
        exchange = kombu.Exchange(EXCHANGE, type="topic", durable=True)
        self.queue = kombu.Queue(f"bench-lag-{uuid.uuid4().hex[:8]}", exchange, routing_key="progress_changed",
                                 exclusive=True, auto_delete=True)
        self.consumed: dict[tuple[str, str], list[float]] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        # Declared (and bound) now, before any check-in is sent: nothing can slip past it.
        self.queue(self.connection.default_channel).declare()
        self.thread = threading.Thread(target=self._consume, daemon=True)
        self.thread.start()

    def _consume(self) -> None:
        with kombu.Consumer(self.connection.default_channel, queues=[self.queue], on_message=self._on_message,
                            no_ack=True):
            while not self.stopping.is_set():
                try:
                    self.connection.drain_events(timeout=0.2)
                except TimeoutError:
                    continue

    def _on_message(self, message) -> None:
        arrived = time.perf_counter()
        data = json.loads(message.body).get("data", {})
        if data.get("cause") != "checkin":
            return  # a roll-up or a structure change, not a check-in's own announcement
        with self.lock:
            self.consumed.setdefault((data.get("v2momId", ""), data.get("itemId", "")), []).append(arrived)

    def seen(self, pair: tuple[str, str]) -> list[float]:
        with self.lock:
            return list(self.consumed.get(pair, []))

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        self.connection.release()


def request(item: list, round_on_item: int, plan: dict, index: int) -> checkins_pb2.RecordMeasureCheckinRequest:
    v2mom_id, measure_id, _, baseline = item
    # One more than the round, so the first differs from the value the harness primed the pair with; and
    # a hundredth per earlier run on the same pairs, so a run's first differs from the last run's last.
    value = baseline + 1 + (round_on_item + 1) % 10 + plan.get("run_no", 0) / 100
    return checkins_pb2.RecordMeasureCheckinRequest(
        v2mom_id=v2mom_id, measure_id=measure_id, value=value,
        status=checkins_pb2.CHECKIN_STATUS_ON_TRACK, confidence=7, comment="Lag probe",
        idempotency_key=f"lag.{plan['run']}.{index}",
    )


def send(plan: dict) -> tuple[dict[tuple[str, str], list[float]], list[float], int, float]:
    """Paced calls; returns per pair the moments calls returned (in send order), latencies, errors, elapsed."""
    items, rate = plan["items"], float(plan["rate"])
    total = max(1, int(rate * float(plan["duration"])))
    returned: dict[tuple[str, str], list[tuple[int, float]]] = {}
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    counter = itertools.count()
    t0 = time.perf_counter() + 0.2

    def worker() -> None:
        with grpc.insecure_channel(plan["target"], options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            call = checkins_pb2_grpc.CheckinServiceStub(channel).RecordMeasureCheckin
            while (i := next(counter)) < total:
                delay = t0 + i / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                item = items[i % len(items)]
                started = time.perf_counter()
                try:
                    call(request(item, i // len(items), plan, i), metadata=bearer_metadata(item[2]),
                         timeout=CALL_TIMEOUT_S)
                except grpc.RpcError:
                    with lock:
                        errors[0] += 1
                    continue
                done = time.perf_counter()
                with lock:
                    latencies.append(done - started)
                    returned.setdefault((item[0], item[1]), []).append((i, done))

    threads = [threading.Thread(target=worker) for _ in range(int(plan["concurrency"]))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ordered = {pair: [moment for _, moment in sorted(calls)] for pair, calls in returned.items()}
    return ordered, latencies, errors[0], time.perf_counter() - t0


def lags(returned: dict, listener: Listener) -> tuple[list[float], int]:
    """Each call's lag (the k-th event of its pair answers its k-th call); and how many have no event yet."""
    found, missing = [], 0
    for pair, moments in returned.items():
        events = listener.seen(pair)
        found += [event - call for call, event in zip(moments, events)]
        missing += max(0, len(moments) - len(events))
    return found, missing


def run(plan: dict) -> dict:
    listener = Listener(plan["amqp_uri"])
    try:
        returned, latencies, errors, elapsed = send(plan)
        deadline = time.perf_counter() + float(plan["settle_timeout"])
        found, missing = lags(returned, listener)
        while missing and time.perf_counter() < deadline:
            time.sleep(0.1)
            found, missing = lags(returned, listener)
    finally:
        listener.close()
    found.sort()
    latencies.sort()
    sent = sum(len(moments) for moments in returned.values())
    return {
        "rate": plan["rate"],
        "sent": sent,
        "errors": errors,
        "achieved_rate": round(sent / elapsed, 2) if elapsed > 0 else 0.0,
        "matched": len(found),
        "missing": missing,
        "lag_p50_ms": round(percentile(found, 0.50) * 1000, 1),
        "lag_p99_ms": round(percentile(found, 0.99) * 1000, 1),
        "lag_max_ms": round(found[-1] * 1000, 1) if found else None,
        "latency_p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "latency_p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
    }


def main() -> None:
    print(json.dumps(run(json.load(sys.stdin))), flush=True)


if __name__ == "__main__":
    main()
