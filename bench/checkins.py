"""Benchmark: checkins-api's RecordMeasureCheckin against a bare grpcio server, its event lag, and its
cost as the stored history grows.

One run, on the mongoeco wire server with its SQLite engine (what `make run` uses):

A. **Throughput and latency.** checkins-api (`python -m services.checkins.api`, database
   ``bench_checkins``, with a real goals-api behind it) against bench/bare_checkins_server.py (the
   same insert, database ``bench_checkins_bare``, same indexes), each driven by a separate client
   process (bench/load_client.py) in alternating rounds. Each round gives ours/bare ratios; the
   report gives their medians. Both stacks insert the same number of documents into collections of
   the same size each round, and the round's documents are deleted afterwards.
B. **Event lag.** With checkins-worker running (on a RabbitMQ vhost of its own, its relay every
   RELAY_INTERVAL_SECONDS as shipped), the maximum closed-loop throughput is measured, then
   bench/checkins_lag_client.py records check-ins at half that rate and times each one from its
   call returning to its ``progress_changed`` event reaching a queue of its own.
C. **History growth.** The check-ins collections of both stacks are filled to each size (1k, 5k,
   10k, 20k stored check-ins) and a few check-ins are recorded through each stack: our per-check-in
   time against the bare insert's, at each size.

mongoeco inserts one document at a time over the wire, and each insert scans the collection, so a
history of 20k cannot be inserted through the wire in any reasonable time (it is quadratic). The
history is bulk-loaded with mongoeco's embedded client into the store's SQLite file while the store
is stopped, in the shape checkins-api stores (a relayed check-in: empty outbox), without
idempotency keys (as a client that sends none leaves it).

    .venv/bin/python -m bench.checkins            # about 5 minutes; bench/results/checkins.{md,json}
    .venv/bin/python -m bench.checkins --quick    # a smoke run, under a minute
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bson
import grpc
import kombu
from tqdm import tqdm

from bench import checkins_report, harness
from bench.goals_api import MANAGER, author_ids, content_template, create_request, seed_directory
from bench.harness import BARE, OURS, Process
from services.checkins import repository
from services.platform.api.auth import bearer_metadata, mint_dev_token
from services.platform.core.config import load
from services.platform.store.mongo import ensure_indexes
from v2mom.v1 import goals_pb2, goals_pb2_grpc

RESULT_NAME = "checkins"

TARGET_RATIO = 0.6  # ours >= 0.6 x bare, throughput and p50
TARGET_LAG_P99_MS = 1000.0
# "Flat": our cost beyond the bare insert grows by at most this much over the whole history range.
FLAT_SLACK_MS, FLAT_SLACK_SHARE = 10.0, 0.10
# What checkins-worker ships with (services/checkins/worker.py, RELAY_INTERVAL_SECONDS).
SHIPPED_RELAY_INTERVAL = 0.2

GOALS_DB, OURS_DB, BARE_DB = "bench_goals", "bench_checkins", "bench_checkins_bare"
MEASURES = ("msr1", "msr2", "msr3")  # bench.goals_api.content_template's, each 30 -> 45
BASELINE = 30.0
WORKER_QUEUES = (
    "evt-checkins-checkin_recorded--checkins_worker.on_checkin_recorded",
    "evt-checkins-progress_changed--checkins_worker.on_progress_changed",
)

DEFAULTS = {
    "v2moms": 20,
    "lag_v2moms": 30,
    "rounds": 6,
    "concurrency": 4,
    "warmup": 10,
    "count": 80,
    "time_limit": 30.0,
    "max_count": 80,
    "lag_seconds": 20.0,
    "history": "1000,5000,10000,20000",
    "history_samples": 5,
}
QUICK = {
    "v2moms": 4,
    "lag_v2moms": 8,
    "rounds": 2,
    "warmup": 4,
    "count": 20,
    "max_count": 20,
    "lag_seconds": 4.0,
    "history": "200,600",
    "history_samples": 2,
}


# --- the processes ---------------------------------------------------------------------


@dataclass
class Stack:
    """The store and the services under test, each its own process, restartable one by one."""

    tmp: Path
    relay_interval: float
    processes: dict[str, Process] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    uri: str = ""

    @property
    def sqlite_path(self) -> Path:
        return self.tmp / harness.STORE_FILE  # where harness.start_store keeps it

    def start_store(self) -> None:
        self.processes["store"], self.uri = harness.start_store("sqlite", self.tmp)

    def start_goals(self) -> None:
        self._start_api("goals", "services.goals.api", {"MONGO_DB": GOALS_DB})

    def start_ours(self) -> None:
        self._start_api(OURS, "services.checkins.api", {"MONGO_DB": OURS_DB, "GOALS_ADDR": self.address("goals")})

    def start_bare(self, structures: Path) -> None:
        args = ["-m", "bench.bare_checkins_server", "--mongo-uri", self.uri, "--db", BARE_DB, "--structures", str(structures)]
        self.processes[BARE], port = harness.start_with_ready_file("bare-checkins", args, self.tmp, self.tmp / "bare.port")
        self.ports[BARE] = int(port)

    def start_worker(self, amqp_uri: str) -> None:
        env = {"MONGO_URI": self.uri, "MONGO_DB": OURS_DB, "AMQP_URI": amqp_uri, "GOALS_ADDR": self.address("goals"),
               "RELAY_INTERVAL_SECONDS": str(self.relay_interval), "LOG_LEVEL": "INFO"}
        process = harness.spawn("checkins-worker", ["-m", "services.checkins.worker"], self.tmp, env)
        self.processes["worker"] = process
        harness.wait_until(process, lambda: "worker started" in process.log_tail(1_000_000), "'worker started' log line")

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"

    def stop(self, *names: str) -> None:
        for name in names:
            process = self.processes.pop(name, None)
            if process is not None:
                process.stop()

    def stop_all(self) -> None:
        self.stop(*reversed(list(self.processes)))

    def require_alive(self) -> None:
        harness.require_alive(self.processes.values())

    def restart_servers(self, structures: Path) -> None:
        """Everything on a restarted store, whose address changed: goals-api first (ours reads it at start)."""
        self.start_goals()
        ours = self._spawn_api(OURS, "services.checkins.api", {"MONGO_DB": OURS_DB, "GOALS_ADDR": self.address("goals")})
        self.start_bare(structures)  # while ours imports
        self._wait_for_api(OURS, ours)

    def _start_api(self, name: str, module: str, env: dict) -> None:
        self._wait_for_api(name, self._spawn_api(name, module, env))

    def _spawn_api(self, name: str, module: str, env: dict) -> Process:
        self.processes[name] = harness.spawn_service(name, module, self.tmp, {"MONGO_URI": self.uri, **env})
        return self.processes[name]

    def _wait_for_api(self, name: str, process: Process) -> None:
        self.ports[name] = harness.wait_for_port(process)


# --- the V2MOMs checked in on ------------------------------------------------------------


@dataclass(frozen=True)
class World:
    """Published V2MOMs: `facts` for the bare server, and each measure as a load item."""

    facts: dict[str, dict]
    items: list[list]  # [v2mom_id, measure_id, token, baseline], every V2MOM in order, three measures each

    def items_of(self, v2mom_ids) -> list[list]:
        wanted = set(v2mom_ids)
        return [item for item in self.items if item[0] in wanted]


def publish_world(stack: Stack, db, count: int) -> World:
    """`count` individual V2MOMs, created, submitted and approved through goals-api by their people."""
    auth = load("checkins").auth
    owners = author_ids(count)
    seed_directory(db, owners)
    template = content_template()
    facts, items = {}, []
    with grpc.insecure_channel(stack.address("goals")) as channel:
        stub = goals_pb2_grpc.GoalServiceStub(channel)
        manager = bearer_metadata(mint_dev_token(auth, MANAGER))
        for owner in owners:
            token = mint_dev_token(auth, owner)
            me = bearer_metadata(token)
            created = stub.CreateV2MOM(create_request(owner, template), metadata=me, timeout=30)
            stub.SubmitV2MOM(goals_pb2.SubmitV2MOMRequest(id=created.id), metadata=me, timeout=30)
            published = stub.ApproveV2MOM(goals_pb2.ApproveV2MOMRequest(id=created.id), metadata=manager, timeout=30)
            facts[created.id] = _facts(published)
            items += [[created.id, measure_id, token, BASELINE] for measure_id in MEASURES]
    return World(facts, items)


def _facts(v2mom: goals_pb2.V2MOM) -> dict:
    return {
        "owner_id": v2mom.owner_id, "org_unit_id": v2mom.org_unit_id, "cycle_id": v2mom.cycle_id,
        "revision": v2mom.published_revision, "parent_id": v2mom.parent_id,
        "measures": {m.id: {"title": m.title, "baseline": m.baseline, "target": m.target} for m in v2mom.content.measures},
    }


def prime(stack: Stack, world: World, names=(OURS, BARE)) -> None:
    """One check-in per V2MOM on each stack, not measured: ours learns each structure and cycle from goals."""
    firsts = [item for item in world.items if item[1] == MEASURES[0]]
    for name in names:
        plan = {"target": stack.address(name), "op": "checkin", "concurrency": 4, "warmup": 0, "count": len(firsts),
                "time_limit": 120.0, "items": firsts, "run": f"prime-{uuid.uuid4().hex[:6]}"}
        result = harness.run_client(plan)
        if result["errors"]:
            raise RuntimeError(f"priming {name} failed: {result['error_samples']}")


def checkin_ids(client, db_name: str) -> list[str]:
    return [doc["_id"] for doc in client[db_name][repository.CHECKINS].find({}, {"_id": 1})]


def sizes(client) -> dict[str, int]:
    return {name: client[db][repository.CHECKINS].count_documents({}) for name, db in ((OURS, OURS_DB), (BARE, BARE_DB))}


def doc_sizes(client) -> dict:
    """A stored check-in of each stack, in bytes and BSON elements: the store must do the same work for both."""
    found = {}
    for name, db in ((OURS, OURS_DB), (BARE, BARE_DB)):
        doc = client[db][repository.CHECKINS].find_one({"outbox_pending": True})
        found[name] = {"bytes": len(bson.encode(doc)), "elements": harness.elements(doc), "fields": sorted(doc)}
    if found[OURS]["fields"] != found[BARE]["fields"]:
        raise RuntimeError(f"bare stores other fields than ours: {found}")
    return found


# --- A: throughput and latency against bare ----------------------------------------------


def part_throughput(stack: Stack, client, world: World, opts, bar: tqdm) -> dict:
    keep = {OURS: checkin_ids(client, OURS_DB), BARE: checkin_ids(client, BARE_DB)}
    rounds = []
    for index in range(opts.rounds):
        order = (OURS, BARE) if index % 2 == 0 else (BARE, OURS)
        start = sizes(client)
        if start[OURS] != start[BARE]:
            raise RuntimeError(f"check-ins collections differ in size before a round: {start}")
        record = {"round": index + 1, "order": list(order), "start_size": start[OURS]}
        for name in order:
            bar.set_description(f"A: round {index + 1}/{opts.rounds} {name}")
            plan = {"target": stack.address(name), "op": "checkin", "concurrency": opts.concurrency,
                    "warmup": opts.warmup, "count": opts.count, "time_limit": opts.time_limit,
                    "items": world.items_of(list(world.facts)[: opts.v2moms]), "run": f"a{index}-{name}-{uuid.uuid4().hex[:6]}"}
            record[name] = harness.measure(plan, stack.processes[name], stack.processes["store"])
            stack.require_alive()
            bar.update(1)
        record["ratios"] = harness.round_ratios(record[OURS], record[BARE])
        if index == opts.rounds - 1:
            stored = doc_sizes(client)
        rounds.append(record)
        for name, db in ((OURS, OURS_DB), (BARE, BARE_DB)):
            client[db][repository.CHECKINS].delete_many({"_id": {"$nin": keep[name]}})
    return {"summary": summarize_throughput(rounds), "rounds": rounds, "doc_sizes": stored}


def summarize_throughput(rounds: list[dict]) -> dict:
    row = harness.summarize_rounds(rounds)
    row["pass"] = bool(row["errors"] == 0 and row["ratio_throughput"] >= TARGET_RATIO and row["ratio_p50"] >= TARGET_RATIO)
    return row


# --- B: event lag at half the maximum throughput -------------------------------------------


def part_lag(stack: Stack, client, world: World, opts, bar: tqdm) -> dict:
    closed_loop = world.items_of(list(world.facts)[: opts.v2moms])
    probed = world.items_of(list(world.facts)[opts.v2moms :])
    with harness.Vhost(opts.amqp_uri, "bench_checkins", "the lag phase") as vhost:
        bar.set_description("B: starting checkins-worker")
        stack.start_worker(vhost.uri)
        try:
            _wait_for_queues(vhost.uri)
            prime(stack, world, names=(OURS,))  # again, now that the worker listens: it learns every structure
            _wait_until_projected(stack, client, list(world.facts))
            _wait_until_drained(client, vhost.uri)
            bar.update(1)
            bar.set_description("B: maximum throughput, worker running")
            plan = {"target": stack.address(OURS), "op": "checkin", "concurrency": opts.concurrency, "warmup": opts.warmup,
                    "count": opts.max_count, "time_limit": opts.time_limit, "items": closed_loop, "run": f"max-{uuid.uuid4().hex[:6]}"}
            maximum = harness.run_client(plan)
            _wait_until_drained(client, vhost.uri)
            bar.update(1)
            bar.set_description("B: event lag at half of it")
            lag_plan = {"target": stack.address(OURS), "amqp_uri": vhost.uri, "rate": round(maximum["throughput"] / 2, 2),
                        "duration": opts.lag_seconds, "concurrency": opts.concurrency, "settle_timeout": 30.0,
                        "run": uuid.uuid4().hex[:8], "run_no": 0, "items": probed}
            with Profiler(opts, stack, ("store", OURS, "worker"), seconds=opts.lag_seconds):
                lag = _lag_run(lag_plan, opts.lag_seconds)
            stack.require_alive()
            bar.update(1)
            slower = [] if lag["pass"] or opts.quick else _slower_rates(client, vhost.uri, lag_plan, opts, bar)
        finally:
            stack.stop("worker")
    return {"relay_interval_s": stack.relay_interval, "maximum": maximum, "lag": lag, "slower": slower,
            "pairs": len(probed), "pair_reuse_s": round(len(probed) / lag_plan["rate"], 1) if lag_plan["rate"] else None}


def _lag_run(plan: dict, seconds: float) -> dict:
    lag = harness.run_module("bench.checkins_lag_client", plan, timeout=seconds + 120)
    lag["pass"] = bool(lag["matched"] and not lag["missing"] and not lag["errors"] and lag["lag_p99_ms"] < TARGET_LAG_P99_MS)
    return lag


def _slower_rates(client, amqp_uri: str, plan: dict, opts, bar: tqdm) -> list[dict]:
    """After a miss: the lag at a half and a quarter of that rate, shorter, to show what the stack sustains."""
    runs = []
    for run_no, share in enumerate((0.5, 0.25), start=1):
        _wait_until_drained(client, amqp_uri, timeout=300.0)
        bar.set_description(f"B: event lag at {share:.0%} of the rate that missed")
        seconds = max(5.0, opts.lag_seconds / 2)
        slower = {**plan, "rate": round(plan["rate"] * share, 2), "duration": seconds, "run": uuid.uuid4().hex[:8],
                  "run_no": run_no}
        runs.append(_lag_run(slower, seconds))
        if runs[-1]["pass"]:
            break
    return runs


class Profiler:
    """With --py-spy PATH: samples the named processes' Python CPU while the block runs (see bench/README.md)."""

    def __init__(self, opts, stack: Stack, names: tuple[str, ...], seconds: float):
        self.runs: list[subprocess.Popen] = []
        self.plan = [] if not opts.py_spy else [
            [opts.py_spy, "record", "--gil", "-r", "200", "-f", "raw", "-d", str(int(seconds) + 1),
             "-o", str(opts.profile_dir / f"{name}.txt"), "-p", str(stack.processes[name].popen.pid)]
            for name in names
        ]
        if self.plan:
            opts.profile_dir.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> None:
        self.runs = [subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for args in self.plan]

    def __exit__(self, *exc) -> None:
        for run in self.runs:
            try:
                run.wait(timeout=30)
            except subprocess.TimeoutExpired:
                run.kill()


def _wait_for_queues(amqp_uri: str, timeout: float = 30.0) -> None:
    with kombu.Connection(amqp_uri) as connection:
        deadline = time.monotonic() + timeout
        while not all(harness.queue_depth(connection, name) is not None for name in WORKER_QUEUES):
            if time.monotonic() > deadline:
                raise RuntimeError("checkins-worker never declared its queues")
            time.sleep(0.1)


def _wait_until_projected(stack: Stack, client, v2mom_ids: list[str], timeout: float = 60.0) -> None:
    query = {"_id": {"$in": v2mom_ids}, "structure_revision": {"$gt": 0}}
    deadline = time.monotonic() + timeout
    while (projected := client[OURS_DB]["progress"].count_documents(query)) < len(v2mom_ids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"checkins-worker projected {projected} of {len(v2mom_ids)} benchmark V2MOMs:\n"
                               f"{stack.processes['worker'].log_tail(4000)}")
        time.sleep(0.2)


def _wait_until_drained(client, amqp_uri: str, timeout: float = 120.0) -> None:
    """No pending outbox events and no queued messages, twice in a row: the worker has caught up."""
    deadline, calm = time.monotonic() + timeout, 0
    with kombu.Connection(amqp_uri) as connection:
        while calm < 2:
            pending = sum(client[OURS_DB][name].count_documents({"outbox_pending": True})
                          for name in ("checkins", "progress", "item_clocks"))
            queued = sum(harness.queue_depth(connection, name) or 0 for name in WORKER_QUEUES)
            calm = calm + 1 if pending == queued == 0 else 0
            if time.monotonic() > deadline:
                raise RuntimeError(f"checkins-worker did not catch up ({pending} pending, {queued} queued)")
            time.sleep(0.3)


# --- C: per-check-in cost as the stored history grows --------------------------------------


def part_history(stack: Stack, client_factory, world: World, structures: Path, opts, bar: tqdm) -> dict:
    # One person's V2MOM: the warm-up fills checkins-api's caches (structure, person) for every measured call.
    items = world.items_of(list(world.facts)[:1])
    shape = _api_document_fields(client_factory)
    points = []
    for index, size in enumerate(opts.history):
        bar.set_description(f"C: loading {size:,} stored check-ins")
        stack.stop(OURS, BARE, "goals", "store")
        prefill(stack.sqlite_path, size, world, shape)
        stack.start_store()
        stack.restart_servers(structures)
        client = client_factory()
        stored = sizes(client)
        client.close()
        bar.set_description(f"C: {size:,} stored, ours and bare in turn")
        plan = {"targets": {OURS: stack.address(OURS), BARE: stack.address(BARE)}, "warmup": 1,
                "count": opts.history_samples, "items": items, "run": f"c{size}-{uuid.uuid4().hex[:6]}"}
        paired = harness.run_module("bench.paired_client", plan, timeout=1200)
        stack.require_alive()
        errors = paired[OURS]["errors"] + paired[BARE]["errors"]
        if errors:
            raise RuntimeError(f"history phase at {size}: {paired[OURS]['error_samples'] + paired[BARE]['error_samples']}")
        # The median of per-pair differences: each pair ran back to back, so the machine's drift cancels.
        points.append({"stored": stored, OURS: paired[OURS], BARE: paired[BARE], "extra_ms": paired["diff_p50_ms"],
                       "ratio": round(harness.ratio(paired[BARE]["p50_ms"], paired[OURS]["p50_ms"]), 3)})
        bar.update(1)
    return {"points": points, **flatness(points)}


def flatness(points: list[dict]) -> dict:
    """Whether our cost beyond the bare insert stays flat from the smallest to the largest history."""
    first, last = points[0], points[-1]
    extra_growth = last["extra_ms"] - first["extra_ms"]
    store_growth = last[BARE]["p50_ms"] - first[BARE]["p50_ms"]
    allowed = FLAT_SLACK_MS + FLAT_SLACK_SHARE * max(store_growth, 0.0)
    return {"extra_growth_ms": round(extra_growth, 1), "store_growth_ms": round(store_growth, 1),
            "allowed_growth_ms": round(allowed, 1), "pass": bool(extra_growth <= allowed)}


def _api_document_fields(client_factory) -> list[str]:
    client = client_factory()
    try:
        doc = client[OURS_DB][repository.CHECKINS].find_one({"idempotency_key": {"$exists": True}})
    finally:
        client.close()
    return sorted(set(doc) - {"idempotency_key"})


def prefill(sqlite_path: Path, size: int, world: World, shape: list[str]) -> None:
    """Fills both check-ins collections to `size` documents (or to the larger's, if more) through mongoeco's
    embedded client, which bulk-loads without a scan per document; the store must be stopped."""
    with harness.embedded_store(sqlite_path) as client:
        rng = random.Random(size)
        collections = [client[db_name][repository.CHECKINS] for db_name in (OURS_DB, BARE_DB)]
        size = max(size, *(collection.count_documents({}) for collection in collections))
        for collection in collections:
            missing = size - collection.count_documents({})
            while missing > 0:
                batch = [history_document(world, rng) for _ in range(min(2000, missing))]
                if sorted(batch[0]) != shape:
                    raise RuntimeError(f"history documents {sorted(batch[0])} are not shaped as the API's {shape}")
                collection.insert_many(batch, ordered=False)
                missing -= len(batch)


def history_document(world: World, rng: random.Random) -> dict:
    """An old check-in as checkins-api stored it, its event long relayed (services/checkins/checkin_rules.py, new_checkin)."""
    v2mom_id = rng.choice(list(world.facts))
    facts = world.facts[v2mom_id]
    measure_id = rng.choice(MEASURES)
    measure = facts["measures"][measure_id]
    value = round(rng.uniform(measure["baseline"], measure["target"]), 1)
    observed = datetime.now(UTC) - timedelta(days=rng.uniform(1, 270))
    observed = observed.replace(microsecond=observed.microsecond // 1000 * 1000)
    return {
        "_id": f"chk_{uuid.uuid4().hex[:26]}", "v2mom_id": v2mom_id, "item_kind": "ITEM_KIND_MEASURE",
        "item_id": measure_id, "author_id": facts["owner_id"], "owner_id": facts["owner_id"],
        "org_unit_id": facts["org_unit_id"], "cycle_id": facts["cycle_id"], "structure_revision": facts["revision"],
        "value": value, "progress_percent": 100 * (value - measure["baseline"]) / (measure["target"] - measure["baseline"]),
        "status": "CHECKIN_STATUS_ON_TRACK", "confidence": rng.randint(5, 9), "comment": "Steady week; on plan.",
        "completed_milestone_ids": [], "observe_time": observed, "record_time": observed,
        "outbox": [], "outbox_pending": False,
    }


# --- the run -------------------------------------------------------------------------------


def bench(opts, bar: tqdm) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-checkins-") as tmp_name:
        stack = Stack(Path(tmp_name), opts.relay_interval)
        try:
            return _bench(stack, opts, bar)
        finally:
            stack.stop_all()


def _bench(stack: Stack, opts, bar: tqdm) -> dict:
    clock = time.monotonic()
    bar.set_description("setup: store, goals-api, V2MOMs")
    stack.start_store()
    client_factory = lambda: harness.mongo_client(stack.uri)  # noqa: E731 - read late: a restarted store moves
    client = client_factory()
    stack.start_goals()
    world = publish_world(stack, client[GOALS_DB], opts.v2moms + opts.lag_v2moms)
    structures = stack.tmp / "structures.json"
    structures.write_text(json.dumps(world.facts))
    ensure_indexes(client[BARE_DB], repository.INDEXES)  # the same indexes as ours: the same store work
    stack.start_ours()
    stack.start_bare(structures)
    prime(stack, world)
    bar.update(1)
    seconds = {"setup": time.monotonic() - clock}
    throughput = part_throughput(stack, client, world, opts, bar)
    seconds["throughput"] = time.monotonic() - clock - sum(seconds.values())
    lag = part_lag(stack, client, world, opts, bar)
    seconds["lag"] = time.monotonic() - clock - sum(seconds.values())
    client.close()
    history = part_history(stack, client_factory, world, structures, opts, bar)
    seconds["history"] = time.monotonic() - clock - sum(seconds.values())
    return {"throughput": throughput, "lag": lag, "history": history,
            "phase_seconds": {name: round(value, 1) for name, value in seconds.items()}}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.checkins", description=__doc__.splitlines()[0])
    harness.add_quick(parser, QUICK)
    for key, default in DEFAULTS.items():
        kind = float if isinstance(default, float) else int if isinstance(default, int) else str
        parser.add_argument(f"--{key.replace('_', '-')}", type=kind, help=f"(default {default})")
    parser.add_argument("--relay-interval", type=float, default=SHIPPED_RELAY_INTERVAL,
                        help="checkins-worker's RELAY_INTERVAL_SECONDS (default: what it ships with, %(default)s)")
    parser.add_argument("--amqp-uri", default=os.environ.get("AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/"))
    parser.add_argument("--out-dir", type=Path, default=harness.RESULTS_DIR, help="where checkins.md and checkins.json go")
    parser.add_argument("--note", default="", help="what else ran on the machine, for the report's load line")
    parser.add_argument("--py-spy", metavar="PATH", help="py-spy binary: profile store, checkins-api and worker during B")
    parser.add_argument("--profile-dir", type=Path, default=Path("/tmp/bench-checkins-profile"),
                        help="where --py-spy writes one raw profile per process (default %(default)s)")
    harness.add_strict_and_progress(parser)
    args = parser.parse_args(argv)
    harness.apply_defaults(args, DEFAULTS, QUICK)
    args.history = sorted({int(size) for size in str(args.history).split(",") if size.strip()})
    harness.require_positive(parser, args, ("v2moms", "lag_v2moms", "rounds", "concurrency", "count", "max_count", "history_samples"))
    if not args.history:
        parser.error("--history needs at least one size")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    clock = harness.RunClock.start()
    with harness.progress_bar(1 + 2 * args.rounds + 3 + len(args.history), args.progress) as bar:
        parts = bench(args, bar)
    options = {key: getattr(args, key) for key in (*DEFAULTS, "quick", "relay_interval")}
    result = {
        **clock.record(RESULT_NAME, argv),
        "options": options,
        "targets": {"ratio": TARGET_RATIO, "lag_p99_ms": TARGET_LAG_P99_MS,
                    "flat": {"slack_ms": FLAT_SLACK_MS, "slack_share_of_store_growth": FLAT_SLACK_SHARE}},
        **parts,
    }
    if args.note:
        result["note"] = args.note
    result["pass"] = all(part["pass"] for part in (parts["throughput"]["summary"], parts["lag"]["lag"], parts["history"]))
    return harness.finish(result, args, checkins_report.render(result), checkins_report.console_summary(result))


if __name__ == "__main__":
    sys.exit(main())
