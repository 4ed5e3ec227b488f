"""Benchmark: metrics-worker scaled out (competing consumers), its concurrency, and its recovery after a kill.

Built on bench/metrics.py's throughput phase (its events, store preparation, bare kombu consumer, work tally and
rate measurement, imported from there) and bench/harness.py, on the mongoeco wire server with its SQLite engine
(what `make run` uses), its own process, and a RabbitMQ vhost of the benchmark's own:

A. **Scaling.** For N in 1, 2, 4: N metrics-worker processes (``python -m services.metrics.worker``, competing
   consumers on the same queues) against N bare kombu consumers (``python -m bench.metrics bare``, the same queue
   name each) doing the same Mongo writes per ``checkin_recorded`` event, each stack on a fresh database of the
   same store. Every round runs every N for both stacks, alternating which stack goes first, so a slow spell of
   the machine hits both. Events/s, worker ÷ bare per N, and the scaling curve (events/s at N ÷ at 1, per round)
   for both; CPU of the store, the consumers, this process and the whole machine over each run, from /proc.
   Every run must write exactly one check-in count, one V2MOM version and one aggregate memory entry per event:
   competing consumers must not double-count, nor lose any.
B. **Concurrency.** At N = 1, metrics-worker with ``WORKER_CONCURRENCY`` (nameko's max_workers, which also sets
   the prefetch unless ``AMQP_PREFETCH`` does) at each value of ``--concurrency``, against the bare consumer with
   as many threads and the same prefetch. Skipped, and said so, when services/platform/core/config.py has no
   such setting.
C. **Recovery.** Events published at a steady rate (``--rate``) to one consumer; after ``--steady-s`` it is killed
   (SIGKILL), events pile up for ``--outage-s``, then it is started again: the time from that start until the
   event lag (the age of the oldest published event not yet applied) is back under 1 s and the queue holds at
   most a second's worth, and the backlog it found. The same for the bare consumer, interleaved. After the
   publishing stops, every published event must have been applied exactly once (the killed consumer's unacked
   deliveries come back; the ledger's memory must skip those it had already written).

    .venv/bin/python -m bench.scale            # about 10 minutes; bench/results/scale.{md,json}
    .venv/bin/python -m bench.scale --quick    # a smoke run, about a minute
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import kombu
from tqdm import tqdm

from bench import harness
from bench.harness import Process, fmt, verdict
from bench.metrics import (BARE, BARE_QUEUE, WORKER, WORKER_QUEUE, checkin_events, counted, measure_rate, prepare_store,
                           publish, work_done)

RESULT_NAME = "scale"

LAG_TARGET_S = 1.0  # "caught up": the oldest unapplied event is younger than this
CATCH_UP_LIMIT_S = 60.0  # a consumer slower than the publishing never catches up: given up on after this
FLAT_GAIN = 1.15  # the curve "flattens" at the first N whose throughput is less than this multiple of the previous N's
AGGREGATES = 10  # checkin_events spreads the V2MOMs over 10 teams: one aggregate each
AGGREGATE_MEMORY = 128  # store.bump keeps the last 128 delta ids per aggregate: the tally counts them
DEFAULT_CONCURRENCY = 10  # the worker's default max_workers (and the bare consumer's threads)

DEFAULTS = {"consumers": "1,2,4", "rounds": 3, "events": 600, "v2moms": 100, "concurrency": "1,4,10,20",
            "sweep_rounds": 2, "sweep_events": 400, "trials": 2, "rate": 50, "steady_s": 4.0, "outage_s": 5.0,
            "after_s": 3.0}
QUICK = {"consumers": "1,2", "rounds": 1, "events": 80, "v2moms": 20, "concurrency": "4", "sweep_rounds": 1,
         "sweep_events": 60, "trials": 1, "rate": 30, "steady_s": 1.0, "outage_s": 2.0, "after_s": 1.0}
INTEGERS = ("rounds", "events", "v2moms", "sweep_rounds", "sweep_events", "trials", "rate")


# --- measuring ----------------------------------------------------------------------------------------------


def concurrency_settings() -> dict[str, bool]:
    """Which of the worker's consumer settings this checkout has (another change adds them)."""
    from services.platform.core.config import Settings
    return {"WORKER_CONCURRENCY": hasattr(Settings, "worker_concurrency"), "AMQP_PREFETCH": hasattr(Settings, "prefetch")}


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far, all CPUs: /proc/stat's first line."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


class Meter:
    """CPU over a window, in cores (CPU seconds per wall second): the store, each consumer, this process (it
    publishes and polls), and the whole machine, which includes everything else running."""

    def __init__(self, store: Process, consumers: list[Process]):
        self.store, self.consumers = store, consumers
        self.wall = time.perf_counter()
        self.own = time.process_time()
        self.machine = machine_jiffies()
        self.before = [harness.cpu_seconds(p.popen.pid) for p in [store, *consumers]]

    def read(self) -> dict:
        wall = time.perf_counter() - self.wall
        spent = [harness.cpu_spent(b, harness.cpu_seconds(p.popen.pid))
                 for b, p in zip(self.before, [self.store, *self.consumers])]
        busy, total = machine_jiffies()
        machine = (busy - self.machine[0]) / (total - self.machine[1]) * os.cpu_count() if total > self.machine[1] else None
        per_consumer = [None if s is None else s / wall for s in spent[1:]]
        return {"window_s": wall, "store_cores": None if spent[0] is None else spent[0] / wall,
                "consumers_cores": sum(c for c in per_consumer if c is not None), "per_consumer_cores": per_consumer,
                "harness_cores": (time.process_time() - self.own) / wall, "machine_busy_cores": machine}


class Broker:
    """One connection for the benchmark's queue look-ups: passive declares, so nothing is created. A refusal (404)
    closes the channel, and a broker that drops connections (others' tests restart it) closes the connection: each
    retry is on a new channel, then on a new connection."""

    ATTEMPTS = 5

    def __init__(self, uri: str):
        self.connection = kombu.Connection(uri)
        self.channel = None
        self.error: BaseException | None = None

    def _call(self, action):
        for attempt in range(self.ATTEMPTS):
            try:
                if self.channel is None:
                    self.channel = self.connection.channel()
                return action(self.channel)
            except Exception as error:  # noqa: BLE001 - a 404, or a dropped connection
                self.error, self.channel = error, None
                if attempt >= 1:  # the connection itself, then, after a moment
                    self.close()
                    self.connection = self.connection.clone()
                    time.sleep(0.2 * attempt)
        return None

    def counts(self, queue: str) -> tuple[int, int] | None:
        """(ready messages, consumers), or None while nobody has declared the queue."""
        found = self._call(lambda channel: channel.queue_declare(queue, passive=True))
        return None if found is None else (found.message_count, found.consumer_count)

    def delete(self, queue: str) -> None:
        # Deleted, not purged: a queue left bound to checkins.events would collect the other stack's events.
        self._call(lambda channel: channel.queue_delete(queue) or True)

    def close(self) -> None:
        try:
            self.connection.release()
        except Exception:  # noqa: BLE001 - already gone
            pass


def queue_of(which: str) -> str:
    return WORKER_QUEUE if which == WORKER else BARE_QUEUE


def spawn_consumer(which: str, uri: str, db_name: str, amqp: str, tmp: Path, concurrency: int, index: int) -> Process:
    """One metrics-worker with WORKER_CONCURRENCY, or one bare consumer with as many threads (and so prefetch)."""
    name = f"{which}-{db_name}-{index}-{time.monotonic_ns()}"  # a restarted consumer gets a log of its own
    if which == WORKER:
        env = {"MONGO_URI": uri, "MONGO_DB": db_name, "AMQP_URI": amqp, "LOG_LEVEL": "WARNING",
               "WORKER_CONCURRENCY": str(concurrency)}
        return harness.spawn(name, ["-m", "services.metrics.worker"], tmp, env)
    return harness.spawn(name, ["-m", "bench.metrics", "bare", "--mongo-uri", uri, "--db", db_name, "--amqp-uri", amqp,
                                "--concurrency", str(concurrency), "--ready-file", str(tmp / f"{name}.ready")], tmp)


def wait_consuming(broker: Broker, queue: str, processes: list[Process], n: int, timeout: float = 120) -> None:
    """Until the queue has N consumers: every process is taking deliveries before anything is published."""

    def ready() -> bool:
        harness.require_alive(processes)
        found = broker.counts(queue)
        return found is not None and found[1] >= n
    harness.wait_until(processes[0], ready, f"{n} consumers on {queue}", timeout)


def stop_all(processes: list[Process]) -> None:
    for process in processes:  # all told at once, then waited for: nameko's clean stop takes a moment each
        if process.popen.poll() is None:
            process.popen.terminate()
    for process in processes:
        process.stop()


def run_stack(which: str, n: int, concurrency: int, client, uri: str, store: Process, vhost: harness.Vhost, tmp: Path,
              events: int, v2moms: int, tag: str) -> dict:
    """N consumers of one stack on a fresh database: EVENTS published, events/s, CPU shares, what was written."""
    name = f"bench_scale_{which}_{tag}"
    db = client[name]
    prepare_store(db, v2moms)
    before = work_done(db)
    batch = checkin_events(events, v2moms)
    broker = Broker(vhost.uri)
    processes = [spawn_consumer(which, uri, name, vhost.uri, tmp, concurrency, i) for i in range(n)]
    try:
        wait_consuming(broker, queue_of(which), processes, n)
        meter = Meter(store, processes)
        publish(vhost.uri, batch)
        rate, seconds = measure_rate(db, before["counted"] + events, processes[0], timeout=600)
        cpu = meter.read()
        time.sleep(0.3)  # anything still in flight lands before the tally
        harness.require_alive(processes)
        after = work_done(db)
        left = broker.counts(queue_of(which))
        if left is None:
            raise RuntimeError(f"{queue_of(which)} vanished: {broker.error!r}")
    finally:
        stop_all(processes)
        broker.delete(queue_of(which))
        broker.close()
        client.drop_database(name)
    work = {k: after[k] - before[k] for k in after}
    return {"events_per_s": rate, "seconds": seconds, "cpu": cpu, "work": work, "left_in_queue": left[0],
            "exact": work == expected_work(events) and left[0] == 0}


def expected_work(events: int) -> dict[str, int]:
    return {"counted": events, "v2mom_versions": events, "aggregate_memory": events}


# --- A. scaling ---------------------------------------------------------------------------------------------


def part_scaling(client, uri: str, store: Process, vhost: harness.Vhost, tmp: Path, opts, bar: tqdm) -> dict:
    rounds = []
    for r in range(opts.rounds):
        found = {}
        for i, n in enumerate(opts.consumers):
            order = (WORKER, BARE) if (r + i) % 2 == 0 else (BARE, WORKER)
            runs = {}
            for which in order:
                bar.set_description(f"A: round {r + 1}, {n} × {which}")
                runs[which] = run_stack(which, n, DEFAULT_CONCURRENCY, client, uri, store, vhost, tmp, opts.events,
                                        opts.v2moms, f"a{r}_{n}")
                bar.update(1)
            found[n] = {"order": "/".join(order), **runs,
                        "ratio": harness.ratio(runs[WORKER]["events_per_s"], runs[BARE]["events_per_s"])}
        first = found[opts.consumers[0]]
        for n, run in found.items():  # this round's curve: every N measured minutes apart, not a run apart
            run["speedup"] = {which: harness.ratio(run[which]["events_per_s"], first[which]["events_per_s"])
                              for which in (WORKER, BARE)}
        rounds.append({str(n): run for n, run in found.items()})
    points = [scaling_point(n, [r[str(n)] for r in rounds]) for n in opts.consumers]
    return {"rounds": rounds, "points": points, "flattens_at": {which: flattens_at(points, which) for which in (WORKER, BARE)},
            "exact": all(p["exact"] for p in points)}


def _median(values) -> float:
    return harness.median([v for v in values if v is not None])


def scaling_point(n: int, runs: list[dict]) -> dict:
    point = {"consumers": n, "ratio": _median(r["ratio"] for r in runs),
             "ratio_range": [min(r["ratio"] for r in runs), max(r["ratio"] for r in runs)],
             "exact": all(r[which]["exact"] for r in runs for which in (WORKER, BARE)),
             "same_work": all(r[WORKER]["work"] == r[BARE]["work"] for r in runs)}
    for which in (WORKER, BARE):
        point[which] = {
            "events_per_s": _median(r[which]["events_per_s"] for r in runs),
            "speedup": _median(r["speedup"][which] for r in runs),
            **{key: _median(r[which]["cpu"][key] for r in runs)
               for key in ("store_cores", "consumers_cores", "harness_cores", "machine_busy_cores")},
            "per_consumer_cores": [_median(r[which]["cpu"]["per_consumer_cores"][i] for r in runs) for i in range(n)],
        }
        point[which]["cpu_ms_per_event"] = {  # CPU per event: seconds of CPU per second ÷ events per second
            part: 1000 * point[which][f"{part}_cores"] / point[which]["events_per_s"] for part in ("store", "consumers")}
    return point


def flattens_at(points: list[dict], which: str) -> int | None:
    """The first N whose median throughput is under FLAT_GAIN × the previous N's; None if it kept rising."""
    for previous, point in zip(points, points[1:]):
        if point[which]["speedup"] < FLAT_GAIN * previous[which]["speedup"]:
            return point["consumers"]
    return None


# --- B. concurrency -----------------------------------------------------------------------------------------


def part_concurrency(client, uri: str, store: Process, vhost: harness.Vhost, tmp: Path, opts, bar: tqdm) -> dict:
    runs = {c: [] for c in opts.concurrency}
    for r in range(opts.sweep_rounds):
        for i, c in enumerate(opts.concurrency):
            order = (WORKER, BARE) if (r + i) % 2 == 0 else (BARE, WORKER)
            found = {}
            for which in order:
                bar.set_description(f"B: round {r + 1}, concurrency {c}, {which}")
                found[which] = run_stack(which, 1, c, client, uri, store, vhost, tmp, opts.sweep_events, opts.v2moms,
                                         f"b{r}_{c}")
                bar.update(1)
            runs[c].append({"order": "/".join(order), **found,
                            "ratio": harness.ratio(found[WORKER]["events_per_s"], found[BARE]["events_per_s"])})
    points = []
    for c, found in runs.items():
        points.append({"concurrency": c, "rounds": found, "ratio": _median(r["ratio"] for r in found),
                       "exact": all(r[which]["exact"] for r in found for which in (WORKER, BARE)),
                       **{which: {"events_per_s": _median(r[which]["events_per_s"] for r in found),
                                  "store_cores": _median(r[which]["cpu"]["store_cores"] for r in found),
                                  "consumers_cores": _median(r[which]["cpu"]["consumers_cores"] for r in found)}
                          for which in (WORKER, BARE)}})
    best = max(points, key=lambda p: p[WORKER]["events_per_s"])
    # The smallest value within 10 % of the best: more handlers in flight than that only queue at the store.
    enough = min((p for p in points if p[WORKER]["events_per_s"] >= 0.9 * best[WORKER]["events_per_s"]),
                 key=lambda p: p["concurrency"])
    return {"points": points, "best": best["concurrency"], "smallest_within_10pct": enough["concurrency"],
            "exact": all(p["exact"] for p in points)}


# --- C. recovery --------------------------------------------------------------------------------------------


class Pacer(threading.Thread):
    """Publishes check-in events at a steady rate on one connection, recording when each went out."""

    def __init__(self, amqp: str, rate: float, v2moms: int):
        super().__init__(daemon=True)
        self.amqp, self.rate, self.v2moms = amqp, rate, v2moms
        self.sent: list[float] = []  # perf_counter of each publish, in order
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with kombu.Connection(self.amqp) as connection:
                exchange = kombu.Exchange("checkins.events", type="topic", durable=True)
                producer = kombu.Producer(connection.channel(), exchange=exchange)
                exchange(producer.channel).declare()
                started = time.perf_counter()
                while not self.halt.is_set():
                    k = len(self.sent)
                    event = checkin_events(1, self.v2moms, start=k)[0]
                    time.sleep(max(0.0, started + k / self.rate - time.perf_counter()))
                    producer.publish(json.dumps(event), routing_key=event["type"], delivery_mode=2,
                                     content_type="application/cloudevents+json", content_encoding="utf-8")
                    self.sent.append(time.perf_counter())
        except BaseException as error:  # noqa: BLE001 - reported by the trial
            self.error = error

    def lag(self, applied: int) -> float:
        """Age of the oldest published event not yet applied (0 when all are): the queue is first in, first out,
        so after APPLIED events it is the next one's."""
        sent = self.sent
        return 0.0 if applied >= len(sent) else time.perf_counter() - sent[applied]


def recovery_trial(which: str, client, uri: str, store: Process, vhost: harness.Vhost, tmp: Path, opts,
                   tag: str) -> dict:
    name = f"bench_scale_{which}_{tag}"
    db = client[name]
    prepare_store(db, opts.v2moms)
    base = work_done(db)
    queue, broker = queue_of(which), Broker(vhost.uri)
    pacer = Pacer(vhost.uri, opts.rate, opts.v2moms)
    processes = [spawn_consumer(which, uri, name, vhost.uri, tmp, DEFAULT_CONCURRENCY, 0)]
    found: dict = {}

    def sample() -> tuple[float, int]:
        return pacer.lag(counted(db) - base["counted"]), (broker.counts(queue) or (0, 0))[0]

    try:
        wait_consuming(broker, queue, processes, 1)
        pacer.start()
        steady = watch(sample, opts.steady_s)
        found["steady_max_lag_s"] = max(lag for _, lag, _ in steady)
        processes[0].popen.kill()  # SIGKILL: no clean stop, its unacked deliveries go back to the queue
        processes[0].popen.wait()
        killed = time.perf_counter()
        watch(sample, opts.outage_s)
        applied = counted(db) - base["counted"]
        found["backlog_events"] = len(pacer.sent) - applied
        found["queue_at_restart"] = (broker.counts(queue) or (0, 0))[0]
        found["lag_at_restart_s"] = pacer.lag(applied)
        started = time.perf_counter()
        found["down_s"] = started - killed
        processes.append(spawn_consumer(which, uri, name, vhost.uri, tmp, DEFAULT_CONCURRENCY, 1))
        wait_consuming(broker, queue, processes[1:], 1)
        found["consuming_s"] = time.perf_counter() - started
        applied, meter = counted(db), Meter(store, processes[1:])
        found["caught_up_s"], found["peak_lag_s"] = catch_up(sample, processes[1], started, opts)
        # How fast the restarted consumer applied (backlog and new events), and what the store spent meanwhile.
        cpu = meter.read()
        found["catch_up_events_per_s"] = harness.ratio(counted(db) - applied, cpu["window_s"])
        found["catch_up_cpu"] = cpu
        watch(sample, opts.after_s)
        pacer.halt.set()
        pacer.join(10)
        if pacer.error is not None:
            raise RuntimeError(f"publishing failed: {pacer.error!r}")
        published = len(pacer.sent)
        deadline = time.monotonic() + CATCH_UP_LIMIT_S
        while versions(db) - base["v2mom_versions"] < published and time.monotonic() < deadline:
            harness.require_alive(processes[1:])
            time.sleep(0.1)
        found["drained"] = versions(db) - base["v2mom_versions"] >= published
        time.sleep(0.5)  # a double count would land now
        after = work_done(db)
        harness.require_alive(processes[1:])
    finally:
        pacer.halt.set()
        stop_all(processes)
        broker.delete(queue)
        broker.close()
        client.drop_database(name)
    work = {k: after[k] - base[k] for k in ("counted", "v2mom_versions")}
    found.update({"published": published, "work": work,
                  "exact": found["drained"] and work == {"counted": published, "v2mom_versions": published}})
    return found


def versions(db) -> int:
    """V2MOM versions: each event's first write, made by both stacks once per event."""
    return sum(row["v"] for row in db.v2moms.find({}, {"v": 1}))


def watch(sample, seconds: float) -> list[tuple[float, float, int]]:
    """(time, lag, queue depth) every 0.1 s for SECONDS."""
    seen, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        lag, depth = sample()
        seen.append((time.perf_counter(), lag, depth))
        time.sleep(0.1)
    return seen


def catch_up(sample, process: Process, started: float, opts) -> tuple[float | None, float]:
    """Seconds from the restart until the lag is under LAG_TARGET_S with at most a second's events queued
    (None if not within CATCH_UP_LIMIT_S), and the largest lag seen meanwhile."""
    peak, deadline = 0.0, started + CATCH_UP_LIMIT_S
    while time.perf_counter() < deadline:
        lag, depth = sample()
        peak = max(peak, lag)
        if lag < LAG_TARGET_S and depth <= opts.rate * LAG_TARGET_S:
            return time.perf_counter() - started, peak
        harness.require_alive([process])
        time.sleep(0.1)
    return None, peak


def part_recovery(client, uri: str, store: Process, vhost: harness.Vhost, tmp: Path, opts, bar: tqdm) -> dict:
    trials = []
    for t in range(opts.trials):
        order = (WORKER, BARE) if t % 2 == 0 else (BARE, WORKER)
        found = {}
        for which in order:
            bar.set_description(f"C: trial {t + 1}, {which} killed and restarted")
            found[which] = recovery_trial(which, client, uri, store, vhost, tmp, opts, f"c{t}")
            bar.update(1)
        trials.append({"order": "/".join(order), **found,
                       "ratio": harness.ratio(found[WORKER]["caught_up_s"] or float("nan"),
                                              found[BARE]["caught_up_s"] or float("nan"))})
    summary = {which: {**{key: _median(t[which].get(key) for t in trials)
                          for key in ("caught_up_s", "consuming_s", "backlog_events", "queue_at_restart", "peak_lag_s",
                                      "steady_max_lag_s", "catch_up_events_per_s")},
                       "store_cores": _median(t[which]["catch_up_cpu"]["store_cores"] for t in trials)}
               for which in (WORKER, BARE)}
    return {"trials": trials, **summary, "ratio": _median(t["ratio"] for t in trials),
            "caught_up": all(t[WORKER]["caught_up_s"] is not None for t in trials),
            "bare_caught_up": all(t[BARE]["caught_up_s"] is not None for t in trials),
            # The worker's alone: the bare consumer is not crash-safe (see the report), the ledger must be.
            "exact": all(t[WORKER]["exact"] for t in trials),
            "bare_exact": all(t[BARE]["exact"] for t in trials)}


# --- the report ---------------------------------------------------------------------------------------------


def render(result: dict) -> str:
    o, a, b, c = result["options"], result["scaling"], result["concurrency"], result["recovery"]
    lines = [
        "# scale benchmark: metrics-worker scaled out against bare kombu consumers, its concurrency, its recovery", "",
        *harness.machine_lines(result, "anything else running adds noise: the machine's busy cores per run are below"),
        "- **Store:** the mongoeco wire server, SQLite engine (as `make run`), one process (an asyncio server: one "
        "thread does its work). Each run on a fresh database of it; a RabbitMQ vhost of the benchmark's own.",
        "- **Targets:** none numeric for scaling (the issue asks for the ratio per N and where the curve flattens); "
        f"recovery: the time is reported. Checked: every run wrote exactly one count, one V2MOM version and one "
        "memory entry per event, whatever the number of competing consumers, and lost or doubled none after a kill.",
        harness.options_line(o), "",
        f"## Verdict: **{verdict(result['pass'])}** (same work everywhere: exact counts in every run)", "",
    ]
    if a is not None:
        lines += _render_scaling(a, o)
    if o["only"] in (None, "concurrency"):
        lines += _render_concurrency(b, o, result["settings"])
    if c is not None:
        lines += _render_recovery(c, o)
    return "\n".join(lines)


def _cores(value) -> str:
    return fmt(value, 2)


def _render_scaling(a: dict, o: dict) -> list[str]:
    lines = [
        "## A. Scaling: N competing consumers per stack", "",
        f"{o['events']} `checkin_recorded` events per run on {o['v2moms']} V2MOMs the store already knows; N "
        "metrics-worker processes (default concurrency, 10 handlers and prefetch 10 each) against N bare kombu "
        "consumers (10 threads, prefetch 10 each) on one queue, every N in every round, alternating which stack "
        "goes first. Rate from the first event counted to the last; speedup = events/s at N ÷ at 1 in the same round, "
        "median over rounds. CPU in cores (CPU seconds per second) over the run from /proc: the store, all N "
        "consumers, this process (publishing and polling) and the whole machine (busy cores of "
        f"{os.cpu_count()}, everyone's).", "",
        "| N | worker (events/s) | bare (events/s) | worker ÷ bare | worker speedup | bare speedup "
        "| store cores (w / b) | consumers' cores (w / b) | machine busy (w / b) | store ms CPU/event (w / b) "
        "| worker ms CPU/event | exact |",
        "|---:|---:|---:|---:|---:|---:|---|---|---|---|---:|---|",
    ]
    for p in a["points"]:
        w, b = p[WORKER], p[BARE]
        lines.append(
            f"| {p['consumers']} | {fmt(w['events_per_s'], 1)} | {fmt(b['events_per_s'], 1)} | **{fmt(p['ratio'])}** "
            f"({fmt(p['ratio_range'][0])}–{fmt(p['ratio_range'][1])}) | {fmt(w['speedup'])} | {fmt(b['speedup'])} "
            f"| {_cores(w['store_cores'])} / {_cores(b['store_cores'])} | {_cores(w['consumers_cores'])} / "
            f"{_cores(b['consumers_cores'])} | {_cores(w['machine_busy_cores'])} / {_cores(b['machine_busy_cores'])} "
            f"| {fmt(w['cpu_ms_per_event']['store'])} / {fmt(b['cpu_ms_per_event']['store'])} "
            f"| {fmt(w['cpu_ms_per_event']['consumers'])} | {p['exact'] and p['same_work']} |")
    lines += ["", "Where the curve flattens (first N under "
              f"{FLAT_GAIN}× the previous N's events/s): worker **{_flat(a['flattens_at'][WORKER])}**, "
              f"bare **{_flat(a['flattens_at'][BARE])}**. Exact counts in every run (no event lost or counted twice "
              f"by competing consumers, queue empty after): **{a['exact']}**.", "",
              "<details><summary>Per round</summary>", "",
              "| round | N | order | worker (events/s) | bare (events/s) | ratio | worker per-consumer cores | "
              "bare per-consumer cores | worker work | bare work |",
              "|---:|---:|---|---:|---:|---:|---|---|---|---|"]
    for i, r in enumerate(a["rounds"], 1):
        for n, run in r.items():
            lines.append(
                f"| {i} | {n} | {run['order']} | {fmt(run[WORKER]['events_per_s'], 1)} | {fmt(run[BARE]['events_per_s'], 1)} "
                f"| {fmt(run['ratio'])} | {', '.join(_cores(x) for x in run[WORKER]['cpu']['per_consumer_cores'])} "
                f"| {', '.join(_cores(x) for x in run[BARE]['cpu']['per_consumer_cores'])} | {_work(run[WORKER])} "
                f"| {_work(run[BARE])} |")
    lines += ["", "</details>", ""]
    return lines


def _flat(n: int | None) -> str:
    return "kept rising" if n is None else f"N = {n}"


def _work(run: dict) -> str:
    w = run["work"]
    return f"{w['counted']} / {w['v2mom_versions']} / {w['aggregate_memory']}, {run['left_in_queue']} left"


def _render_concurrency(b: dict | None, o: dict, settings: dict) -> list[str]:
    lines = ["## B. Concurrency at N = 1", ""]
    if b is None:
        return lines + ["Not measured: services/platform/core/config.py has no WORKER_CONCURRENCY setting in this "
                        f"checkout ({settings}).", ""]
    lines += [
        f"One metrics-worker with `WORKER_CONCURRENCY` = c (nameko's max_workers; the prefetch follows it, "
        f"`AMQP_PREFETCH` {'unset' if settings['AMQP_PREFETCH'] else 'absent'}) against one bare consumer with c "
        f"threads and prefetch c; {o['sweep_events']} events per run, {o['sweep_rounds']} rounds alternating the "
        "order.", "",
        "| c | worker (events/s) | bare (events/s) | worker ÷ bare | store cores (w / b) | consumer cores (w / b) | exact |",
        "|---:|---:|---:|---:|---|---|---|"]
    for p in b["points"]:
        w, bb = p[WORKER], p[BARE]
        lines.append(f"| {p['concurrency']} | {fmt(w['events_per_s'], 1)} | {fmt(bb['events_per_s'], 1)} | {fmt(p['ratio'])} "
                     f"| {_cores(w['store_cores'])} / {_cores(bb['store_cores'])} | {_cores(w['consumers_cores'])} / "
                     f"{_cores(bb['consumers_cores'])} | {p['exact']} |")
    lines += ["", f"Fastest worker setting: c = **{b['best']}**; the smallest within 10 % of it: c = "
              f"**{b['smallest_within_10pct']}**. Exact counts in every run: **{b['exact']}**.", ""]
    return lines


def _render_recovery(c: dict, o: dict) -> list[str]:
    lines = [
        "## C. Recovery after SIGKILL", "",
        f"{o['rate']} events/s published steadily to one consumer; after {o['steady_s']:g} s it is killed (SIGKILL), "
        f"events pile up for {o['outage_s']:g} s, then it is started again. Caught up = the oldest published event "
        f"not yet applied is under {LAG_TARGET_S:g} s old and the queue holds at most {o['rate']} events (a second's "
        f"worth); timed from the new process's start (imports and connecting included), given up on after "
        f"{CATCH_UP_LIMIT_S:.0f} s ('n/a'). Publishing goes on "
        f"{o['after_s']:g} s more; then every published event must be applied exactly once (drained within "
        f"{CATCH_UP_LIMIT_S:.0f} s, else not exact).", "",
        "| trial | stack | backlog at restart (events) | queue at restart | consuming after (s) | **caught up after (s)** "
        "| peak lag (s) | applied while catching up (events/s) | store cores meanwhile | lag before the kill (max, s) "
        "| published | exact |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for i, t in enumerate(c["trials"], 1):
        for which in t["order"].split("/"):
            r = t[which]
            lines.append(f"| {i} | {which} | {r['backlog_events']} | {r['queue_at_restart']} | {fmt(r['consuming_s'])} "
                         f"| **{fmt(r['caught_up_s'])}** | {fmt(r['peak_lag_s'])} | {fmt(r['catch_up_events_per_s'], 1)} "
                         f"| {_cores(r['catch_up_cpu']['store_cores'])} "
                         f"| {fmt(r['steady_max_lag_s'])} | {r['published']} | {r['exact']} |")
    w, b = c[WORKER], c[BARE]
    lines += ["", f"metrics-worker caught up **{fmt(w['caught_up_s'])} s** after its restart (median; consuming after "
              f"{fmt(w['consuming_s'])} s) with a backlog of {fmt(w['backlog_events'], 0)} events; the bare consumer "
              f"{fmt(b['caught_up_s'])} s (consuming after {fmt(b['consuming_s'])} s) with {fmt(b['backlog_events'], 0)}: "
              f"worker ÷ bare **{fmt(c['ratio'])}** in time. metrics-worker exact after the kill (nothing lost or "
              f"counted twice): **{c['exact']}**. The bare consumer exact too: {c['bare_exact']} (it is not "
              "crash-safe: killed between an event's V2MOM write and its aggregate write, its redelivery finds the "
              "event in the V2MOM's memory and skips the aggregate, one check-in short; the ledger replays the "
              "deltas it remembered, so the worker must be exact, and is the verdict).", ""]
    return lines


def console_summary(result: dict) -> str:
    a, b, c = result["scaling"], result["concurrency"], result["recovery"]
    lines = [] if a is None else [f"A N={p['consumers']}  worker {fmt(p[WORKER]['events_per_s'], 1)}/s  bare {fmt(p[BARE]['events_per_s'], 1)}/s  "
             f"ratio {fmt(p['ratio'])}  speedup {fmt(p[WORKER]['speedup'])} / {fmt(p[BARE]['speedup'])}  store "
             f"{_cores(p[WORKER]['store_cores'])} cores  exact {p['exact']}" for p in a["points"]]
    if a is not None:
        lines.append(f"A flattens at: worker {_flat(a['flattens_at'][WORKER])}, bare {_flat(a['flattens_at'][BARE])}")
    if b is None and result["options"]["only"] in (None, "concurrency"):
        lines.append("B not measured: no WORKER_CONCURRENCY setting")
    elif b is not None:
        lines += [f"B c={p['concurrency']}  worker {fmt(p[WORKER]['events_per_s'], 1)}/s  bare {fmt(p[BARE]['events_per_s'], 1)}/s  "
                  f"ratio {fmt(p['ratio'])}" for p in b["points"]]
    if c is not None:
        lines.append(f"C caught up: worker {fmt(c[WORKER]['caught_up_s'])} s (backlog {fmt(c[WORKER]['backlog_events'], 0)}), "
                     f"bare {fmt(c[BARE]['caught_up_s'])} s  exact {c['exact']}")
    lines.append(f"{verdict(result['pass'])} overall (exact counts everywhere)")
    return "\n".join(lines)


# --- the run ------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    harness.add_quick(parser, QUICK)
    parser.add_argument("--consumers", help=f"comma-separated consumer counts N (default {DEFAULTS['consumers']})")
    parser.add_argument("--concurrency", help=f"comma-separated WORKER_CONCURRENCY values (default {DEFAULTS['concurrency']})")
    for key in INTEGERS:
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, help=f"(default {DEFAULTS[key]})")
    for key in ("steady_s", "outage_s", "after_s"):
        parser.add_argument(f"--{key.replace('_', '-')}", type=float, help=f"(default {DEFAULTS[key]})")
    parser.add_argument("--amqp-uri", default=os.environ.get("AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/"))
    parser.add_argument("--out-dir", type=Path, default=harness.RESULTS_DIR, help="where scale.md and scale.json go")
    parser.add_argument("--only", choices=("scaling", "concurrency", "recovery"), help="run one phase only")
    harness.add_strict_and_progress(parser, "a run did not do exactly the work sent, or a consumer did not catch up")
    args = parser.parse_args(argv)
    harness.apply_defaults(args, DEFAULTS, QUICK)
    args.consumers = sorted({int(n) for n in str(args.consumers).split(",") if n.strip()})
    args.concurrency = sorted({int(n) for n in str(args.concurrency).split(",") if n.strip()})
    harness.require_positive(parser, args, INTEGERS)
    if not args.consumers or args.consumers[0] < 1 or not args.concurrency or args.concurrency[0] < 1:
        parser.error("--consumers and --concurrency need values of 1 or more")
    per_aggregate = (max(args.events, args.sweep_events) + args.v2moms) / min(AGGREGATES, args.v2moms)
    if per_aggregate > AGGREGATE_MEMORY:
        parser.error(f"too many events per aggregate for the memory tally ({per_aggregate:.0f} > {AGGREGATE_MEMORY})")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    clock = harness.RunClock.start()
    settings = concurrency_settings()
    phases = {phase: args.only in (None, phase) for phase in ("scaling", "concurrency", "recovery")}
    phases["concurrency"] &= settings["WORKER_CONCURRENCY"]
    steps = (phases["scaling"] * 2 * args.rounds * len(args.consumers)
             + phases["concurrency"] * 2 * args.sweep_rounds * len(args.concurrency) + phases["recovery"] * 2 * args.trials)
    parts, seconds = {"scaling": None, "concurrency": None, "recovery": None}, {}
    with harness.progress_bar(steps, args.progress) as bar, tempfile.TemporaryDirectory(prefix="bench-scale-") as name:
        tmp = Path(name)
        store, uri = harness.start_store("sqlite", tmp)
        client = harness.mongo_client(uri)
        try:
            with harness.Vhost(args.amqp_uri, "bench_scale", "the scale benchmark") as vhost:
                try:
                    for phase, run in (("scaling", lambda: part_scaling(client, uri, store, vhost, tmp, args, bar)),
                                       ("concurrency", lambda: part_concurrency(client, uri, store, vhost, tmp, args, bar)),
                                       ("recovery", lambda: part_recovery(client, uri, store, vhost, tmp, args, bar))):
                        if phases[phase]:
                            started = time.monotonic()
                            parts[phase] = run()
                            seconds[phase] = round(time.monotonic() - started, 1)
                except BaseException:
                    traceback.print_exc()  # before the vhost's clean-up, whose own failure would hide it
                    raise
        finally:
            client.close()
            store.stop()
    options = {key: getattr(args, key) for key in (*DEFAULTS, "quick", "only")}
    result = {**clock.record(RESULT_NAME, argv), "engine": "sqlite", "options": options, "settings": settings,
              "targets": {"lag_s": LAG_TARGET_S, "flat_gain": FLAT_GAIN}, **parts, "phase_seconds": seconds}
    done = [part for part in parts.values() if part is not None]
    result["pass"] = all(part["exact"] for part in done) and (parts["recovery"] is None or parts["recovery"]["caught_up"])
    return harness.finish(result, args, render(result), console_summary(result))


if __name__ == "__main__":
    sys.exit(main())
