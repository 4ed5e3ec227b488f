"""The chaos soak's parts: a mixed load whose every call is retried until it succeeds (with its idempotency
key, so a retry never stores twice), the chaos loop that kills replicas, restarts the broker and pauses the
store meanwhile, and the lag histogram read off metrics-api.

What a client saw succeed is recorded here; the test then checks the store holds each exactly once.
"""

import json
import random
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import grpc
import kombu
from prometheus_client.parser import text_string_to_metric_families

from tests.support.metrics_service import scrape
from tests.support.processes import log_tail
from v2mom.v1 import checkins_pb2, common_pb2, goals_pb2

# What a client retries: the call may not have reached a live replica, or its answer was lost on the way.
RETRIABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED,
             grpc.StatusCode.CANCELLED}
CALL_BUDGET_SECONDS = 90.0


class GaveUp(AssertionError):
    pass


@dataclass
class Tally:
    calls: int = 0
    retries: int = 0
    by_status: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, status: str) -> None:
        with self.lock:
            self.by_status[status] += 1
            if status != "OK":
                self.retries += 1
            else:
                self.calls += 1


def retrying(call, tally: Tally, what: str, settled=None):
    """``call()`` until it succeeds; a retry's error that ``settled(error)`` says means "done already" ends too.

    Gives up (failing the test) after CALL_BUDGET_SECONDS: the system must come back within that.
    """
    deadline, pause = time.monotonic() + CALL_BUDGET_SECONDS, 0.05
    retried = False
    while True:
        try:
            result = call()
            tally.count("OK")
            return result
        except grpc.RpcError as error:
            if retried and settled is not None and _settled(settled, error):
                tally.count("OK")
                return None
            if error.code() not in RETRIABLE:
                raise AssertionError(f"{what}: {error.code().name}: {error.details()}") from None
            tally.count(error.code().name)
            retried = True
            if time.monotonic() > deadline:
                raise GaveUp(f"{what} never succeeded in {CALL_BUDGET_SECONDS:.0f} s: {error.code().name}")
            time.sleep(pause)
            pause = min(pause * 2, 1.0)


def _settled(settled, error: grpc.RpcError) -> bool:
    """Whether a retry's error means "done already"; the check is a call too, and a fault may fail it."""
    try:
        return settled(error)
    except grpc.RpcError as failed:
        if failed.code() not in RETRIABLE:
            raise AssertionError(f"checking whether it was done: {failed.code().name}: {failed.details()}") from None
        return False


@dataclass
class Measure:
    v2mom_id: str
    measure_id: str
    author: str
    baseline: float
    target: float


def measures_to_check_in(goals_admin) -> list[Measure]:
    """Every measure of every published V2MOM, with the person who may check in on it (its owner)."""
    found = []
    request = goals_pb2.ListV2MOMsRequest(page_size=200, state=goals_pb2.V2MOM_STATE_PUBLISHED)
    while True:
        page = goals_admin.ListV2MOMs(request)
        for v2mom in page.v2moms:
            view = goals_admin.GetV2MOM(goals_pb2.GetV2MOMRequest(id=v2mom.id, view=goals_pb2.V2MOM_VIEW_PUBLISHED))
            for measure in view.content.measures:
                found.append(Measure(v2mom.id, measure.id, measure.owner_id or v2mom.owner_id, measure.baseline,
                                     measure.target))
        if not page.next_page_token:
            return found
        request.page_token = page.next_page_token


class CheckinLoad:
    """Threads recording measure check-ins, each with a fresh idempotency key, until ``stop`` is set."""

    def __init__(self, checkins_for, measures: list[Measure], threads: int = 2, pause: float = 0.3):
        self.checkins_for, self.measures = checkins_for, measures
        # A steady busy-Monday rate (about threads / pause a second), not a flood: the soak is about faults.
        self.threads, self.pause = threads, pause
        self.stop = threading.Event()
        self.tally = Tally()
        self.recorded: dict[str, str] = {}  # idempotency key -> check-in id, as the client saw it succeed
        self.errors: list[str] = []
        self._lock = threading.Lock()

    def run(self) -> list[threading.Thread]:
        workers = [threading.Thread(target=self._loop, args=(n,), name=f"checkins-load-{n}") for n in range(self.threads)]
        for worker in workers:
            worker.start()
        return workers

    def _loop(self, n: int) -> None:
        rng = random.Random(n)
        try:
            while not self.stop.wait(self.pause):
                self._one(rng.choice(self.measures), rng)
        except Exception as error:  # a load thread that dies must fail the test, not leave it short of calls
            self.errors.append(f"{type(error).__name__}: {error}")

    def _one(self, measure: Measure, rng: random.Random) -> None:
        key = f"soak-{uuid.uuid4().hex[:20]}"
        value = measure.baseline + (measure.target - measure.baseline) * rng.random()
        request = checkins_pb2.RecordMeasureCheckinRequest(
            v2mom_id=measure.v2mom_id, measure_id=measure.measure_id, value=value,
            status=rng.choice([checkins_pb2.CHECKIN_STATUS_ON_TRACK, checkins_pb2.CHECKIN_STATUS_AT_RISK,
                               checkins_pb2.CHECKIN_STATUS_OFF_TRACK]),
            confidence=rng.randint(0, 10), comment="soak", idempotency_key=key)
        client = self.checkins_for(measure.author)
        checkin = retrying(lambda: client.RecordMeasureCheckin(request, timeout=5), self.tally,
                           f"check-in {key} on {measure.v2mom_id}/{measure.measure_id}")
        with self._lock:
            self.recorded[key] = checkin.id


class ApprovalLoad:
    """People without a V2MOM create one, submit it and have it approved, one person after another."""

    def __init__(self, goals_for, people: list[tuple[str, str]], cycle_id: str, content_for):
        self.goals_for, self.people, self.cycle_id, self.content_for = goals_for, people, cycle_id, content_for
        self.stop = threading.Event()
        self.tally = Tally()
        self.created: dict[str, str] = {}  # request id -> V2MOM id
        self.approved: list[str] = []
        self.errors: list[str] = []

    def run(self) -> list[threading.Thread]:
        worker = threading.Thread(target=self._loop, name="approvals-load")
        worker.start()
        return [worker]

    def _loop(self) -> None:
        try:
            for person, manager in self.people:
                if self.stop.is_set():
                    return
                self._journey(person, manager)
        except Exception as error:  # a journey cut short would look like a lost approval at the end
            self.errors.append(f"{type(error).__name__}: {error}")

    def _journey(self, person: str, manager: str) -> None:
        owner, approver = self.goals_for(person), self.goals_for(manager)
        request_id = f"soak-{person}"
        created = retrying(lambda: owner.CreateV2MOM(goals_pb2.CreateV2MOMRequest(
            level=common_pb2.ORG_LEVEL_INDIVIDUAL, owner_id=person, cycle_id=self.cycle_id,
            content=self.content_for(person), request_id=request_id), timeout=5), self.tally, f"create for {person}")
        self.created[request_id] = created.id

        def now_in(*states):
            return lambda error: owner.GetV2MOM(goals_pb2.GetV2MOMRequest(id=created.id), timeout=5).state in states
        retrying(lambda: owner.SubmitV2MOM(goals_pb2.SubmitV2MOMRequest(id=created.id), timeout=5), self.tally,
                 f"submit {created.id}", settled=now_in(goals_pb2.V2MOM_STATE_SUBMITTED, goals_pb2.V2MOM_STATE_PUBLISHED))
        retrying(lambda: approver.ApproveV2MOM(goals_pb2.ApproveV2MOMRequest(id=created.id), timeout=5), self.tally,
                 f"approve {created.id}", settled=now_in(goals_pb2.V2MOM_STATE_PUBLISHED))
        self.approved.append(created.id)


@dataclass
class Faults:
    kills: list[str] = field(default_factory=list)
    broker_restarts: int = 0
    store_pauses: int = 0
    errors: list[str] = field(default_factory=list)


class ChaosLoop:
    """Kills a random replica every ``every`` seconds for ``seconds``, each restarted a moment later as an
    orchestrator would (again and again while it cannot start, say with the broker down); restarts the broker
    once and pauses the store once on the way. ``settle()`` waits until every replica is back and ready."""

    def __init__(self, cluster, store_process, seconds: float, every: float = 4.0, seed: int = 11):
        self.cluster, self.store_process = cluster, store_process
        self.seconds, self.every = seconds, every
        self.random = random.Random(seed)
        self.faults = Faults()
        self.stop = threading.Event()
        self._restarting: dict[str, threading.Thread] = {}

    def run(self) -> threading.Thread:
        thread = threading.Thread(target=self._loop, name="chaos")
        thread.start()
        return thread

    def _loop(self) -> None:
        began = time.monotonic()
        plan = {self.seconds * 0.35: self._restart_broker, self.seconds * 0.65: self._pause_store}
        try:
            while not self.stop.wait(self.every):
                elapsed = time.monotonic() - began
                if elapsed > self.seconds:
                    return
                for at in sorted(at for at in plan if at <= elapsed):
                    plan.pop(at)()
                self._kill_one()
        except Exception as error:  # a fault that could not be injected or undone fails the test
            self.faults.errors.append(f"{type(error).__name__}: {error}")

    def _kill_one(self) -> None:
        candidates = [r for r in self.cluster.replicas if r.alive() and r.name not in self._restarting]
        if not candidates:
            return
        replica = self.random.choice(candidates)
        replica.kill()
        self.faults.kills.append(replica.name)
        restart = threading.Thread(target=self._bring_back, args=(replica,), name=f"restart-{replica.name}")
        self._restarting[replica.name] = restart
        restart.start()

    def _bring_back(self, replica) -> None:
        delay = self.random.uniform(0.5, 2.0)  # an orchestrator's restart delay, doubling while it fails
        try:
            while True:
                time.sleep(delay)
                replica.start()
                try:
                    replica.wait_ready(timeout=90)
                    return
                except AssertionError:
                    if replica.alive():
                        raise  # up but never ready: that is a failure, not chaos
                    delay = min(delay * 2, 8.0)
        except Exception as error:
            self.faults.errors.append(f"{replica.name} did not come back: {error}")
        finally:
            self._restarting.pop(replica.name, None)

    def settle(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        for restart in list(self._restarting.values()):
            restart.join(timeout=max(0.0, deadline - time.monotonic()))
        assert not self._restarting, f"still restarting: {sorted(self._restarting)}"
        for replica in self.cluster.replicas:
            replica.wait_ready(timeout=max(1.0, deadline - time.monotonic()))

    def _restart_broker(self) -> None:
        subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=120)
        time.sleep(2.0)
        subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=120)
        subprocess.run(["rabbitmqctl", "await_startup"], check=True, capture_output=True, timeout=120)
        self.faults.broker_restarts += 1

    def _pause_store(self, seconds: float = 3.0) -> None:
        self.store_process.send_signal(signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            self.store_process.send_signal(signal.SIGCONT)
        self.faults.store_pauses += 1


def lag_buckets(http_port: int) -> dict[str, dict[float, float]]:
    """metrics-worker's event lag histogram as metrics-api exports it: source -> {le: cumulative count}."""
    found: dict[str, dict[float, float]] = {}
    for family in text_string_to_metric_families(scrape(http_port)):
        if family.name != "v2mom_metrics_event_lag_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                found.setdefault(sample.labels["source"], {})[float(sample.labels["le"])] = sample.value
    return found


def lag_p99(before: dict, after: dict) -> float | None:
    """The bucket bound under which 99% of the events handled between two reads fell (as histogram_quantile
    would answer, without interpolation); None when none were."""
    totals: Counter = Counter()
    for source, buckets in after.items():
        for le, count in buckets.items():
            totals[le] += count - before.get(source, {}).get(le, 0.0)
    if not totals or totals[float("inf")] <= 0:
        return None
    everything = totals[float("inf")]
    return next(le for le in sorted(totals) if totals[le] >= 0.99 * everything)


def describe_logs(cluster) -> str:
    return "\n".join(f"--- {r.name}\n{log_tail(r.process, 800)}" for r in cluster.replicas if r.process)


def dead_letter_ids(amqp_uri: str, queues) -> dict[str, list[str]]:
    """The event ids in each dead-letter queue, looked at and left where they are (unacked, then returned)."""
    found = {}
    with kombu.Connection(amqp_uri) as connection:
        channel = connection.channel()
        for name in queues:
            ids = []
            while (message := channel.basic_get(name, no_ack=False)) is not None:
                try:
                    ids.append(json.loads(message.body).get("id"))
                except (ValueError, AttributeError):
                    ids.append(repr(message.body[:80]))
            found[name] = ids
        channel.close()  # what was got and not acked goes back to its queue
    return found
