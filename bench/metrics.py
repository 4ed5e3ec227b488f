"""Benchmark: metrics-api's scrape cost by org size and event history, and metrics-worker's event
throughput against a bare kombu consumer doing the same Mongo writes.

One run, on the mongoeco wire server with its SQLite engine (what `make run` uses), its own process:

A. **Scrape cost.** For each org size (100, 1,000, 10,000 units) a metrics database is bulk-loaded
   in the shapes services/metrics/store.py documents (a unit and a (unit, cycle) aggregate per org
   unit, with their idempotency memories), then the real metrics-api
   (``python -m services.metrics.api``) serves it, and this process times an HTTP GET of its
   ``/metrics`` (what Prometheus does), each after writing what ``--changes`` check-in events
   would (metrics-api reads and renders only those: services/metrics/rendered.py), against a raw
   pymongo ``find`` of every unit and aggregate on the same store (what a scrape read before
   metrics-api kept a copy, and what its first scrape still reads), alternating A/B. **History** repeats one size with a long event history: full-cycle check-in
   weeks, counters ×50, full idempotency memories, plus what events leave beside the aggregates
   and a scrape never reads (people, V2MOMs with their memories, weekly history snapshots).
B. **Event throughput.** N ``checkin_recorded`` events on V2MOMs the store already knows, on a
   RabbitMQ vhost of the benchmark's own, consumed by the real metrics-worker
   (``python -m services.metrics.worker``) and by a bare kombu consumer (``bench.metrics bare``)
   that does the same Mongo writes per event as the ledger does (see ``bare``), each on a fresh
   database of the same store, alternating which goes first. Ratio = worker events/s ÷ bare events/s.

mongoeco's wire insert scans the collection (SQLite: for the duplicate ``_id``), so loading 10k
units over the wire is quadratic. The scrape databases are bulk-loaded with mongoeco's embedded
client (``insert_many``) straight into the SQLite file while the store is stopped, then the store
is started again on it: the documents are the same, only the loading path differs. (The memory
engine was tried: its finds cost the same as SQLite's, and it can only be loaded through the wire.)

    .venv/bin/python -m bench.metrics            # about 4 minutes; bench/results/metrics.{md,json}
    .venv/bin/python -m bench.metrics --quick    # a smoke run, under a minute
"""

import argparse
import gzip
import hashlib
import json
import math
import os
import random
import re
import statistics
import sys
import tempfile
import time
import urllib.request
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pymongo
from tqdm import tqdm

from bench import harness
from bench.harness import Process, fmt, verdict

# consume.py imports the platform consumer, which imports eventlet (unpatched here, and unused).
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

RESULT_NAME = "metrics"

SCRAPE_TARGET_S = 1.0  # a scrape at 10,000 units
SCRAPE_TARGET_UNITS = 10_000
THROUGHPUT_TARGET = 0.5  # worker >= 0.5 x bare
# "Linear": the per-unit cost at the largest size at most this multiple of the per-unit cost at the middle one.
LINEAR_SLACK = 1.5
# "Not at all with history": our part of a scrape (scrape - raw find) with the long history at most this
# multiple of our part with the short one, on the same units.
HISTORY_SLACK = 1.25

CYCLE = "FY2027"
HISTORY_FACTOR = 50  # counters of the long-history database, against the short one
MEMBERS = 8  # people per unit
WORKER_QUEUE = "evt-checkins-checkin_recorded--metrics_worker.on_checkins_event"
BARE_QUEUE = "bench-bare-checkins"
WORKER, BARE = "worker", "bare"
UNREACHABLE = "127.0.0.1:9"  # goals-api does not run: the cycle-date gauges are empty (one refused connect a minute)

DEFAULTS = {"units": "100,1000,10000", "history_units": 1000, "scrapes": 3, "changes": 100, "rounds": 3, "events": 400,
            "v2moms": 100}
QUICK = {"units": "20,100", "history_units": 100, "scrapes": 2, "changes": 10, "rounds": 2, "events": 100, "v2moms": 20}
CHECKED_PER_SCRAPE = 5  # changed units whose new value each scrape must show


# --- documents ---------------------------------------------------------------------------------------------


def week(moment: datetime) -> str:
    year, number, _ = moment.isocalendar()
    return f"{year}-W{number:02d}"


def memo(text: str) -> str:
    """store.short_id, spelled out: the bare consumer imports nothing of the service."""
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def org(n_units: int) -> list[tuple[str, str, str, str]]:
    """(id, name, level, parent): one company, departments of about 10 teams each."""
    departments = max(1, (n_units - 1) // 11)
    found = []
    for i in range(n_units):
        if i == 0:
            found.append(("u0", "Company", "ORG_LEVEL_COMPANY", ""))
        elif i <= departments:
            found.append((f"u{i}", f"Dept {i}", "ORG_LEVEL_DEPARTMENT", "u0"))
        else:
            found.append((f"u{i}", f"Team {i}", "ORG_LEVEL_TEAM", f"u{1 + i % departments}"))
    return found


def unit_document(unit: tuple, long: bool) -> dict:
    unit_id, name, level, parent = unit
    return {"_id": unit_id, "revision": 3 if long else 1, "name": name, "level": level, "parent_id": parent,
            "members": MEMBERS, "recent": [memo(f"{unit_id}/{k}") for k in range(128 if long else MEMBERS)]}


def aggregate_document(unit_id: str, now: datetime, long: bool) -> dict:
    """A (unit, cycle) aggregate as store.bump leaves it: a short history (a few weeks of events) or a long
    one (a whole cycle of weekly check-ins, counters x HISTORY_FACTOR, a full memory)."""
    h = HISTORY_FACTOR if long else 1
    weeks = 52 if long else 8
    return {
        "_id": f"{unit_id}|{CYCLE}", "unit": unit_id, "cycle": CYCLE, "with_v2mom": 6, "submitted": 5, "approved": 4,
        "v2moms": {"draft": 1, "submitted": 1, "published": 4, "archived": h - 1},
        "pending": {str(int((now - timedelta(days=3, hours=k)).timestamp())): 1 for k in range(1 + (h > 1))},
        "tta": {"buckets": {"3600": 1 * h, "86400": 2 * h, "604800": 1 * h}, "sum": 900000.0 * h, "count": 4 * h},
        "checkins": {week(now - timedelta(weeks=k)): 5 * h for k in range(weeks)},
        "published": 4, "covered": {"14": {(now - timedelta(days=d)).date().isoformat(): 1 for d in range(3)}},
        "items": 16, "stale": 2, "overdue": 1, "measures": 8, "off_track": 1, "progress": 180.0,
        "unit_tree": 40.0, "unit_v2moms": 1,
        "recent": [memo(f"{unit_id}/{k}") for k in range(128 if long else 20)],
    }


def entity_documents(unit_id: str, now: datetime) -> tuple[list, list, dict]:
    """What a long event history leaves beside the aggregates, and a scrape never reads: the unit's people and
    V2MOMs with full memories (32 entries each), and its weekly history snapshots."""
    target = f"agg:{unit_id}|{CYCLE}"
    people, v2moms = [], []
    for p in range(MEMBERS):
        person, v2mom = f"p_{unit_id}_{p}", f"v_{unit_id}_{p}"
        recent = [{"id": memo(f"{v2mom}/{k}"), "d": [[target, [[f"checkins.{week(now - timedelta(weeks=k % 52))}", 1]]]]}
                  for k in range(32)]
        people.append({"_id": person, "v": 12, "unit": unit_id, "recent": recent[:4],
                       "state": {"revision": 3, "org_unit_id": unit_id, "active": True, "live": [[CYCLE, 1]]}})
        v2moms.append({"_id": v2mom, "v": 250, "unit": unit_id, "owner_id": person, "individual": True, "recent": recent,
                       "state": {"cycle_id": CYCLE, "owner_id": person, "org_unit_id": unit_id,
                                 "level": "ORG_LEVEL_INDIVIDUAL", "revision": 4, "state": "V2MOM_STATE_PUBLISHED",
                                 "checkins": {week(now - timedelta(weeks=k)): 5 for k in range(52)},
                                 "items": [{"kind": "measure", "id": f"m{i}", "tracked": True, "last": now,
                                            "ref": None, "level": 0} for i in range(4)]}})
    snapshot = {"_id": f"{unit_id}|{CYCLE}", "unit": unit_id, "cycle": CYCLE,
                "weeks": {week(now - timedelta(weeks=k)): {"headcount": MEMBERS, "with_v2mom": 6, "checkins": 40,
                                                            "published": 4, "covered": 3} for k in range(52)}}
    return people, v2moms, snapshot


def load_database(sqlite_path: Path, name: str, n_units: int, long: bool) -> dict[str, int]:
    """Bulk-loads one metrics database through mongoeco's embedded client; the store must be stopped."""
    from services.metrics import store
    from services.platform.store.mongo import ensure_indexes

    now = datetime.now(UTC)
    with harness.embedded_store(sqlite_path) as client:
        db = client[name]
        counts = {}
        batches: dict[str, list] = {"units": [], "aggregates": [], "people": [], "v2moms": [], "history": []}

        def flush(collection: str, final: bool = False) -> None:
            docs = batches[collection]
            if docs and (final or len(docs) >= 2000):
                db[collection].insert_many(docs, ordered=False)
                counts[collection] = counts.get(collection, 0) + len(docs)
                docs.clear()

        for unit in org(n_units):
            batches["units"].append(unit_document(unit, long))
            batches["aggregates"].append(aggregate_document(unit[0], now, long))
            if long:
                people, v2moms, snapshot = entity_documents(unit[0], now)
                batches["people"] += people
                batches["v2moms"] += v2moms
                batches["history"].append(snapshot)
            for collection in batches:
                flush(collection)
        for collection in batches:
            flush(collection, final=True)
        ensure_indexes(db, store.INDEXES)
        return counts


# --- A. scrape cost -----------------------------------------------------------------------------------------


EXPOSITION_STARTED = "metrics exposition listening"  # metrics-api's log line with its HTTP port


def start_api(uri: str, db_name: str, tmp: Path) -> tuple[Process, int]:
    # No background catching up: each measured scrape reads and renders the changes before it itself.
    env = {"MONGO_URI": uri, "MONGO_DB": db_name, "METRICS_HTTP_ADDR": "127.0.0.1:0",
           "GOALS_ADDR": UNREACHABLE, "CHECKINS_ADDR": UNREACHABLE,
           "METRICS_FOLLOW_SECONDS": "86400", "METRICS_RECONCILE_SECONDS": "86400"}
    process = harness.spawn_service(f"metrics-api-{db_name}", "services.metrics.api", tmp, env)
    return process, harness.wait_for_port(process, EXPOSITION_STARTED)


PROMETHEUS_HEADERS = {"Accept": "text/plain;version=0.0.4", "Accept-Encoding": "gzip"}  # as Prometheus asks


def scrape(port: int) -> tuple[float, bytes]:
    """Seconds until the whole answer is here (gzip, as Prometheus asks for it), and the text."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=PROMETHEUS_HEADERS)
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=300) as response:
        body = response.read()
        packed = response.headers.get("Content-Encoding") == "gzip"
    seconds = time.perf_counter() - started
    return seconds, gzip.decompress(body) if packed else body


def raw_find(db) -> tuple[float, int]:
    """The collector's two reads (store.org_tree, store.aggregates), driver only."""
    started = time.perf_counter()
    units = list(db.units.find({"revision": {"$gt": 0}}, {"name": 1, "level": 1, "parent_id": 1, "members": 1}))
    aggregates = list(db.aggregates.find({}, {"recent": 0}))
    return time.perf_counter() - started, len(units) + len(aggregates)


def change(db, units: list[tuple], n: int, rng: random.Random, round_id: str) -> list[tuple[tuple, int]]:
    """What ``n`` check-in events between two scrapes write: one increment of this week's check-ins on ``n``
    random aggregates, by store.bump as the worker applies it. Returns (unit, its week_to_date now) for some."""
    from services.metrics import store

    this_week, changed = week(datetime.now(UTC)), []
    for unit in rng.sample(units, min(n, len(units))):
        key = f"{unit[0]}|{CYCLE}"
        store.bump(db, store.AGGREGATES, key, memo(f"{round_id}/{key}"), {f"checkins.{this_week}": 1},
                   {"unit": unit[0], "cycle": CYCLE})
        changed.append(unit)
    return [(unit, db.aggregates.find_one({"_id": f"{unit[0]}|{CYCLE}"})["checkins"][this_week])
            for unit in changed[:CHECKED_PER_SCRAPE]]


def shows(body: bytes, unit: tuple, week_to_date: int) -> bool:
    unit_id, name, level, _ = unit
    label = level.removeprefix("ORG_LEVEL_").lower()
    return (f'v2mom_checkins_week_to_date{{cycle="{CYCLE}",level="{label}",org_unit="{unit_id}",'
            f'org_unit_name="{name}",scope="direct"}} {float(week_to_date)}\n').encode() in body


COPY_CPU = re.compile(rb'^v2mom_metrics_engagement_copy_cpu_seconds_total\{kind="changes"\} (\S+)$', re.M)


def copy_cpu(body: bytes) -> float:
    """metrics-api's CPU so far on catching its copy up with changes (a counter it exports): per scrape, the
    difference between two scrapes, our work alone, without the store's or the HTTP's."""
    return float(COPY_CPU.search(body).group(1))


def series(body: bytes) -> dict[str, int]:
    text = body.decode()
    return {"headcount": sum(1 for line in text.splitlines() if line.startswith("v2mom_headcount{")),
            "samples": sum(1 for line in text.splitlines() if line and not line.startswith("#"))}


def scrape_point(store_proc: Process, uri: str, tmp: Path, n_units: int, long: bool, opts, bar: tqdm) -> dict:
    name = f"bench_metrics_{'long' if long else 'short'}_{n_units}"
    bar.set_description(f"A: loading {n_units:,} units ({'long' if long else 'short'} history)")
    store_proc.stop()
    started = time.monotonic()
    loaded = load_database(tmp / harness.STORE_FILE, name, n_units, long)
    load_seconds = time.monotonic() - started
    store_proc, uri = harness.start_store("sqlite", tmp)  # a restart: the store's address changes
    client = harness.mongo_client(uri)
    db = client[name]
    api, port = start_api(uri, name, tmp)
    bar.set_description(f"A: scraping {n_units:,} units ({'long' if long else 'short'} history)")
    units, rng = org(n_units), random.Random(n_units)
    try:
        cold, body = scrape(port)  # the first: metrics-api reads and renders everything (and misses cycle dates)
        raw_find(db)
        scraped, raw, api_cpu, store_cpu, catch_up_cpu, docs, shown = [], [], [], [], [], 0, True
        for i in range(opts.scrapes):
            for which in (("scrape", "raw") if i % 2 == 0 else ("raw", "scrape")):  # A/B, alternating
                if which == "scrape":
                    expected = change(db, units, opts.changes, rng, f"{name}/{i}")
                    before = harness.cpu_seconds(api.popen.pid), harness.cpu_seconds(store_proc.popen.pid)
                    counted_before = copy_cpu(body)
                    seconds, body = scrape(port)
                    after = harness.cpu_seconds(api.popen.pid), harness.cpu_seconds(store_proc.popen.pid)
                    catch_up_cpu.append(copy_cpu(body) - counted_before)
                    scraped.append(seconds)
                    api_cpu.append(harness.cpu_spent(before[0], after[0]))
                    store_cpu.append(harness.cpu_spent(before[1], after[1]))
                    shown &= all(shows(body, unit, n) for unit, n in expected)
                else:
                    seconds, docs = raw_find(db)
                    raw.append(seconds)
            bar.update(1)
        if api.popen.poll() is not None:
            raise RuntimeError(f"metrics-api stopped: {api.log_tail()}")
        api_rss = harness.rss_mb(api.popen.pid)
    finally:
        api.stop()
        client.drop_database(name)  # the next size starts from an empty store
        client.close()
    counted = series(body)
    s, r = statistics.median(scraped), statistics.median(raw)
    return {
        "units": n_units, "history": "long" if long else "short", "database": name, "loaded": loaded,
        "load_s": round(load_seconds, 1), "raw_docs": docs, "headcount_samples": counted["headcount"],
        "samples": counted["samples"], "bytes": len(body), "cold_s": cold, "changes_shown": shown,
        "scrape_s": s, "raw_find_s": r, "ratio": s / r, "scrape_ms_per_unit": 1000 * s / n_units,
        "api_cpu_s": _median_or_none(api_cpu), "store_cpu_s": _median_or_none(store_cpu),
        "catch_up_cpu_s": statistics.median(catch_up_cpu), "api_rss_mb": api_rss,
        "scrapes": scraped, "raw": raw,
    }, store_proc, uri


def _median_or_none(values):
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def part_scrape(store_proc: Process, uri: str, tmp: Path, opts, bar: tqdm) -> tuple[dict, Process, str]:
    points = []
    for n_units in opts.units:
        point, store_proc, uri = scrape_point(store_proc, uri, tmp, n_units, False, opts, bar)
        points.append(point)
    long, store_proc, uri = scrape_point(store_proc, uri, tmp, opts.history_units, True, opts, bar)
    short = next((p for p in points if p["units"] == opts.history_units), None)
    if short is None:
        short, store_proc, uri = scrape_point(store_proc, uri, tmp, opts.history_units, False, opts, bar)
        points.append(short)
    points.sort(key=lambda p: p["units"])
    largest, middle = points[-1], points[-2] if len(points) > 1 else points[-1]
    target_point = next((p for p in points if p["units"] == SCRAPE_TARGET_UNITS), None)
    linear_growth = largest["scrape_ms_per_unit"] / middle["scrape_ms_per_unit"]
    history_growth = long["scrape_s"] / short["scrape_s"]
    # The verdict is metrics-api's own work, its CPU: two wall clocks ~0.1 s apart at 1k units are noise.
    cpu_history_growth = long["catch_up_cpu_s"] / short["catch_up_cpu_s"] if short["catch_up_cpu_s"] else math.nan
    verdicts = {
        "target": target_point is not None and target_point["scrape_s"] < SCRAPE_TARGET_S,
        "linear": linear_growth <= LINEAR_SLACK,
        "history": cpu_history_growth <= HISTORY_SLACK,
        "current": all(p["changes_shown"] for p in [*points, long]),
    }
    return {
        "points": points, "long_history": long, "short_history": short,
        "per_unit_growth": linear_growth, "history_growth": history_growth,
        "cpu_history_growth": cpu_history_growth,
        "target_measured": target_point is not None, **{f"{k}_pass": v for k, v in verdicts.items()},
        "pass": all(verdicts.values()),
    }, store_proc, uri


# --- B. event throughput ------------------------------------------------------------------------------------


def checkin_events(n: int, v2moms: int, start: int = 0) -> list[dict]:
    """``checkin_recorded`` events as checkins-api publishes them, round-robin over the V2MOMs."""
    from services.checkins import events as checkin_events_module
    from services.platform.bus.events import to_wire
    from v2mom.v1 import checkins_pb2, events_pb2
    now = datetime.now(UTC)
    found = []
    for k in range(start, start + n):
        v = k % v2moms
        checkin = checkins_pb2.Checkin(
            id=f"chk_{k:07d}", v2mom_id=f"v2m_{v:05d}", item_kind=checkins_pb2.ITEM_KIND_MEASURE, item_id="m1",
            author_id=f"p{v}", owner_id=f"p{v}", org_unit_id=f"team{v % 10}", cycle_id=CYCLE,
            status=checkins_pb2.CHECKIN_STATUS_ON_TRACK, progress_percent=50.0)
        checkin.observe_time.FromDatetime(now - timedelta(days=k % 40))
        checkin.record_time.FromDatetime(now)
        data = events_pb2.CheckinEventData(checkin=checkin, cadence=checkins_pb2.CADENCE_BIWEEKLY)
        found.append(to_wire(checkin_events_module.checkin_event("checkin_recorded", data)))
    return found


def prepare_store(db, v2moms: int) -> None:
    """Every V2MOM known, as the ledger leaves it after a first check-in, so every measured event is an update."""
    from services.metrics import consume, store
    from services.platform.store.mongo import ensure_indexes
    ensure_indexes(db, store.INDEXES)
    for event in checkin_events(v2moms, v2moms, start=10_000_000):
        consume.apply(db, consume.CHECKINS, event)


def work_done(db) -> dict[str, int]:
    """What the consumers wrote: check-ins counted in aggregates, V2MOM versions, memory entries."""
    counted = remembered = 0
    for row in db.aggregates.find({}, {"checkins": 1, "recent": 1}):
        counted += sum((row.get("checkins") or {}).values())
        remembered += len(row.get("recent") or [])
    versions = sum(row["v"] for row in db.v2moms.find({}, {"v": 1}))
    return {"counted": counted, "v2mom_versions": versions, "aggregate_memory": remembered}


def counted(db) -> int:
    return sum(sum((row.get("checkins") or {}).values()) for row in db.aggregates.find({}, {"checkins": 1}))


def measure_rate(db, target: int, process: Process, timeout: float) -> tuple[float, float]:
    """(events/s, seconds) from the first handled event to the last, by polling the aggregates."""
    baseline, first, deadline = counted(db), None, time.monotonic() + timeout
    while True:
        now_count = counted(db)
        if first is None and now_count > baseline:
            first = (time.perf_counter(), now_count)
        if now_count >= target:
            elapsed = time.perf_counter() - first[0]
            return ((now_count - first[1]) / elapsed if elapsed > 0 else math.nan), elapsed
        if process.popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"consumer stopped or timed out at {now_count}/{target}: {process.log_tail()}")
        time.sleep(0.05)


def bare(argv: list[str]) -> None:
    """The bare consumer: kombu and a pool of 10 threads, i.e. as many events in flight as metrics-worker
    (nameko's max_workers, and so its prefetch); each message acked after its writes.

    Per event it makes the same Mongo calls as the ledger applying a check-in to a known V2MOM
    (ledger.Ledger._apply, _write, _flush; store.bump): ``find_one`` of the V2MOM by ``_id``; a check
    of its memory; the version-guarded ``update_one`` with ``$set`` of the new state (the week's
    check-in count, the latest observation), unit, owner and ``v`` + 1, and ``$push`` of
    ``{id, d: deltas}`` sliced to 32; then the aggregate's guarded ``$inc`` of ``checkins.<week>``
    with ``$push`` of the delta id sliced to 128 and ``$setOnInsert`` of unit and cycle, upsert.
    Ids are the same 16-hex blake2b digests. No nameko, no envelope validation, no protobuf parsing
    of the payload, no model (contributions and their difference), no retries, no pipeline tally.
    """
    parser = argparse.ArgumentParser()
    parser.add_argument("--mongo-uri"), parser.add_argument("--db"), parser.add_argument("--amqp-uri")
    parser.add_argument("--ready-file", type=Path)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args(argv)
    import queue as queues
    from concurrent.futures import ThreadPoolExecutor

    import kombu
    db = pymongo.MongoClient(args.mongo_uri, tz_aware=True)[args.db]
    exchange = kombu.Exchange("checkins.events", type="topic", durable=True)
    queue = kombu.Queue(BARE_QUEUE, exchange, routing_key="checkin_recorded", durable=True)
    pool, done = ThreadPoolExecutor(args.concurrency), queues.SimpleQueue()

    def apply(event: dict) -> None:
        checkin = event["data"]["checkin"]
        entry_id = memo(event["id"])
        observed = datetime.fromisoformat(checkin["observeTime"].replace("Z", "+00:00"))
        wk = week(observed)
        while True:  # as the ledger does: a version conflict means another thread won, so read again
            doc = db.v2moms.find_one({"_id": checkin["v2momId"]})
            if any(entry["id"] == entry_id for entry in doc.get("recent", [])):
                return
            state = doc["state"]
            state["checkins"][wk] = state["checkins"].get(wk, 0) + 1
            if state["last_checkin"] is None or observed > state["last_checkin"]:
                state["last_checkin"] = observed
            target = f"{doc['unit']}|{state['cycle_id']}"
            deltas = [[f"agg:{target}", [[f"checkins.{wk}", 1]]]]
            written = db.v2moms.update_one({"_id": doc["_id"], "v": doc["v"]}, {
                "$set": {"state": state, "unit": doc["unit"], "owner_id": doc["owner_id"],
                         "individual": doc["individual"], "v": doc["v"] + 1},
                "$push": {"recent": {"$each": [{"id": entry_id, "d": deltas}], "$slice": -32}}})
            if written.matched_count:
                break
        applied = memo(f"{event['id']}/v2mom:{doc['_id']}")
        unit, cycle = target.split("|")
        db.aggregates.update_one({"_id": target, "recent": {"$ne": applied}}, {
            "$inc": {f"checkins.{wk}": 1}, "$push": {"recent": {"$each": [applied], "$slice": -128}},
            "$setOnInsert": {"unit": unit, "cycle": cycle}}, upsert=True)

    def work(body, message) -> None:
        try:
            apply(body if isinstance(body, dict) else json.loads(body))  # kombu decodes registered JSON types
        finally:
            done.put(message)  # acked by the connection's thread

    with kombu.Connection(args.amqp_uri) as connection:
        channel = connection.channel()
        queue(channel).declare()
        channel.basic_qos(0, args.concurrency, False)
        with kombu.Consumer(channel, [queue], callbacks=[lambda body, message: pool.submit(work, body, message)],
                            accept=None):
            args.ready_file.write_text("ready")
            while True:
                try:
                    connection.drain_events(timeout=0.005)
                except TimeoutError:
                    pass
                while not done.empty():
                    done.get().ack()


def publish(uri: str, events: list[dict]) -> None:
    import kombu
    with kombu.Connection(uri) as connection:
        exchange = kombu.Exchange("checkins.events", type="topic", durable=True)
        producer = kombu.Producer(connection.channel())
        exchange(producer.channel).declare()
        for event in events:
            producer.publish(json.dumps(event), exchange=exchange, routing_key=event["type"], delivery_mode=2,
                             content_type="application/cloudevents+json", content_encoding="utf-8")


def _start_consumer(which: str, uri: str, db_name: str, amqp: str, tmp: Path) -> Process:
    import kombu
    if which == WORKER:
        env = {"MONGO_URI": uri, "MONGO_DB": db_name, "AMQP_URI": amqp, "LOG_LEVEL": "WARNING"}
        process = harness.spawn(f"metrics-worker-{db_name}", ["-m", "services.metrics.worker"], tmp, env)

        def declared() -> bool:
            with kombu.Connection(amqp) as connection:
                return harness.queue_depth(connection, WORKER_QUEUE) is not None
        harness.wait_until(process, declared, "metrics-worker's queues")
        return process
    args = ["-m", "bench.metrics", "bare", "--mongo-uri", uri, "--db", db_name, "--amqp-uri", amqp]
    return harness.start_with_ready_file(f"bare-{db_name}", args, tmp, tmp / f"{db_name}.ready", "the bare consumer")[0]


def _run_stack(which: str, client, uri: str, vhost: harness.Vhost, tmp: Path, opts, round_index: int) -> dict:
    import kombu
    name = f"bench_metrics_{which}_{round_index}"
    db = client[name]
    prepare_store(db, opts.v2moms)
    before = work_done(db)
    process = _start_consumer(which, uri, name, vhost.uri, tmp)
    try:
        publish(vhost.uri, checkin_events(opts.events, opts.v2moms, start=round_index * opts.events))
        rate, seconds = measure_rate(db, before["counted"] + opts.events, process, timeout=600)
        time.sleep(0.3)  # anything still in flight lands before the tally
        after = work_done(db)
    finally:
        process.stop()
        with kombu.Connection(vhost.uri) as connection:
            # Deleted, not purged: a queue left bound to checkins.events would collect the other stack's events.
            connection.channel().queue_delete(WORKER_QUEUE if which == WORKER else BARE_QUEUE)
        client.drop_database(name)
    return {"events_per_s": rate, "seconds": seconds, "work": {k: after[k] - before[k] for k in after}}


def part_throughput(uri: str, tmp: Path, opts, bar: tqdm) -> dict:
    client = harness.mongo_client(uri)
    rounds = []
    try:
        with harness.Vhost(opts.amqp_uri, "bench_metrics", "the throughput phase") as vhost:
            for r in range(opts.rounds):
                order = (WORKER, BARE) if r % 2 == 0 else (BARE, WORKER)
                found = {}
                for which in order:
                    bar.set_description(f"B: round {r + 1}, {which}")
                    found[which] = _run_stack(which, client, uri, vhost, tmp, opts, r)
                    bar.update(1)
                rounds.append({"order": "/".join(order), **found,
                               "ratio": found[WORKER]["events_per_s"] / found[BARE]["events_per_s"]})
    finally:
        client.close()
    ratio = statistics.median(r["ratio"] for r in rounds)
    same_work = all(r[WORKER]["work"] == r[BARE]["work"] for r in rounds)
    return {
        "rounds": rounds, "ratio": ratio, "ratio_range": [min(r["ratio"] for r in rounds), max(r["ratio"] for r in rounds)],
        "worker_events_per_s": statistics.median(r[WORKER]["events_per_s"] for r in rounds),
        "bare_events_per_s": statistics.median(r[BARE]["events_per_s"] for r in rounds),
        "same_work": same_work, "pass": ratio >= THROUGHPUT_TARGET and same_work,
    }


# --- the report ---------------------------------------------------------------------------------------------


def render(result: dict) -> str:
    o, a, b = result["options"], result["scrape"], result["throughput"]
    only = f" ({o['only']} phase only)" if o.get("only") else ""
    lines = [
        "# metrics benchmark: scrape cost by org size and history, worker throughput against a bare consumer", "",
        *harness.machine_lines(result),
        "- **Store:** the mongoeco wire server, SQLite engine (as `make run`), its own process. Scrape databases "
        "bulk-loaded with mongoeco's embedded client into the stopped store's file (a wire insert scans the "
        "collection, so 10k units over the wire is quadratic).",
        f"- **Targets:** A: a scrape at {SCRAPE_TARGET_UNITS:,} units under {SCRAPE_TARGET_S:.0f} s; cost linear in "
        f"units (per-unit cost at the largest size ≤ {LINEAR_SLACK}× the next size's); not growing with event history "
        f"(metrics-api's CPU catching up per scrape with the long history ≤ {HISTORY_SLACK}× the short one's); every scrape "
        "shows the changes written before it. "
        f"B: metrics-worker ≥ {THROUGHPUT_TARGET} × the bare kombu consumer doing the same Mongo writes.",
        harness.options_line(o),
        "",
        f"## Verdict: **{verdict(result['pass'])}**{only}", "",
    ]
    if a is not None:
        lines += [
            f"- A. scrape under {SCRAPE_TARGET_S:.0f} s at {SCRAPE_TARGET_UNITS:,} units: "
            f"**{verdict(a['target_pass'])}**" + ("" if a["target_measured"] else " (not measured at that size)"),
            f"- A. linear in units: **{verdict(a['linear_pass'])}** · flat with history: **{verdict(a['history_pass'])}** "
            f"· every scrape current: **{verdict(a['current_pass'])}**",
        ]
    if b is not None:
        lines.append(f"- B. worker ÷ bare ≥ {THROUGHPUT_TARGET}: **{verdict(b['pass'])}** (median {fmt(b['ratio'])})")
    lines.append("")
    if a is not None:
        lines += _render_scrape(a, o)
    if b is not None:
        lines += _render_throughput(b, o)
    return "\n".join(lines)


def _render_scrape(a: dict, o: dict) -> list[str]:
    lines = [
        "## A. Scrape cost", "",
        "An HTTP GET of the real metrics-api's `/metrics` as Prometheus scrapes it (gzip), after "
        f"{o['changes']} check-in increments written to random aggregates by `store.bump` (what {o['changes']} events "
        "between two scrapes write; metrics-api's background catching up is off, so the scrape reads and renders "
        "them itself), against a raw pymongo `find` of every unit and aggregate (units with `revision > 0`, "
        "aggregates without `recent`: what a scrape read before metrics-api kept its copy, and what its first scrape "
        f"and every reconcile still read) on the same store, alternating which goes first; median of {o['scrapes']} "
        "each. 'First scrape' is the one after metrics-api starts: it reads and renders everything. Each scrape's "
        f"text must show the new values of {CHECKED_PER_SCRAPE} of the changed units. CPU is per scrape: from /proc, "
        "and 'catching up' from metrics-api's own counter of CPU spent reading, recounting and rendering changes "
        "(`v2mom_metrics_engagement_copy_cpu_seconds_total{kind=\"changes\"}`).",
        "",
        "| units | history | scrape (s) | raw find (s) | scrape ÷ raw | scrape per unit (ms) | first scrape (s) "
        "| api CPU (s) | catching up (ms CPU) | store CPU (s) | changes shown | `v2mom_headcount` samples | bytes "
        "| api memory (MB) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for p in [*a["points"], a["long_history"]]:
        lines.append(
            f"| {p['units']:,} | {p['history']} | {fmt(p['scrape_s'], 3)} | {fmt(p['raw_find_s'], 3)} | {fmt(p['ratio'])} "
            f"| {fmt(p['scrape_ms_per_unit'], 3)} | {fmt(p['cold_s'], 3)} | {fmt(p['api_cpu_s'], 3)} "
            f"| {fmt(1000 * p['catch_up_cpu_s'], 1)} | {fmt(p['store_cpu_s'], 3)} | {p['changes_shown']} | {p['headcount_samples']:,} | {p['bytes']:,} "
            f"| {fmt(p['api_rss_mb'], 0)} |")
    short, long = a["short_history"], a["long_history"]
    lines += [
        "",
        f"- **Linear in units:** scrape per unit at the largest size is {fmt(a['per_unit_growth'])}× the next size's.",
        f"- **History:** at {long['units']:,} units the long history ({_loaded(long)}) scrapes in "
        f"{fmt(long['scrape_s'], 3)} s against {fmt(short['scrape_s'], 3)} s for the short one ({_loaded(short)}): "
        f"{fmt(a['history_growth'])}×; metrics-api's CPU catching up on the changes, {fmt(1000 * long['catch_up_cpu_s'], 1)} "
        f"ms against {fmt(1000 * short['catch_up_cpu_s'], 1)} ms (**{fmt(a['cpu_history_growth'])}×**, the verdict: our "
        "work alone, counted in-process by the thread's CPU clock, which /proc's 10 ms ticks cannot resolve at this "
        "size). The long history's aggregates are larger (52 weekly check-in keys instead of 8, a full 128-entry memory), which a full read "
        "pays for; the people, V2MOMs and history snapshots beside them are never read.",
        f"- **Current:** every scrape showed the changes written before it: **{a['current_pass']}**.",
        "",
        "<details><summary>Per scrape (s)</summary>", "",
        "| units | history | scrapes | raw finds | load (s) |", "|---:|---|---|---|---:|",
    ]
    for p in [*a["points"], a["long_history"]]:
        lines.append(f"| {p['units']:,} | {p['history']} | {', '.join(fmt(x, 3) for x in p['scrapes'])} "
                     f"| {', '.join(fmt(x, 3) for x in p['raw'])} | {p['load_s']} |")
    lines += ["", "</details>", ""]
    return lines


def _render_throughput(b: dict, o: dict) -> list[str]:
    lines = ["## B. Event throughput: metrics-worker ÷ bare kombu consumer", "",
              f"{o['events']} `checkin_recorded` events per stack per round on {o['v2moms']} V2MOMs the store already "
              "knows (each event updates one V2MOM and one aggregate), on a RabbitMQ vhost of the benchmark's own; "
              "each stack on a fresh database of the same store; rate from the first event handled to the last, by "
              "polling the aggregates. The bare consumer (kombu, 10 threads: as many events in flight as nameko's "
              "max_workers) makes the same Mongo calls with the same documents, update operators and idempotency "
              "records per event (see bench/README.md); \"work\" is what each stack wrote, which must be equal.", "",
              "| round | order | worker (events/s) | bare (events/s) | ratio | worker work | bare work |",
              "|---:|---|---:|---:|---:|---|---|"]
    for i, r in enumerate(b["rounds"], 1):
        lines.append(f"| {i} | {r['order']} | {fmt(r[WORKER]['events_per_s'], 1)} | {fmt(r[BARE]['events_per_s'], 1)} "
                     f"| {fmt(r['ratio'])} | {_work(r[WORKER]['work'])} | {_work(r[BARE]['work'])} |")
    lines += ["", f"Median ratio **{fmt(b['ratio'])}** (range {fmt(b['ratio_range'][0])}–{fmt(b['ratio_range'][1])}); "
              f"worker {fmt(b['worker_events_per_s'], 1)} events/s, bare {fmt(b['bare_events_per_s'], 1)} events/s; "
              f"same work in every round: **{b['same_work']}**.", ""]
    return lines


def _loaded(point: dict) -> str:
    return ", ".join(f"{n:,} {name}" for name, n in point["loaded"].items())


def _work(work: dict) -> str:
    return f"{work['counted']} counted, +{work['v2mom_versions']} versions, +{work['aggregate_memory']} memory"


def console_summary(result: dict) -> str:
    a, b = result["scrape"], result["throughput"]
    lines = [] if a is None else [f"A {p['units']:>6,} units {p['history']:>5} history  scrape {fmt(p['scrape_s'], 3)} s  raw find "
             f"{fmt(p['raw_find_s'], 3)} s  ratio {fmt(p['ratio'])}  first {fmt(p['cold_s'], 3)} s"
             for p in [*a["points"], a["long_history"]]]
    if a is not None:
        lines.append(f"A target {verdict(a['target_pass'])}  current {verdict(a['current_pass'])}  "
                     f"linear {verdict(a['linear_pass'])} ({fmt(a['per_unit_growth'])}x)  "
                     f"history {verdict(a['history_pass'])} (catching-up CPU {fmt(a['cpu_history_growth'])}x)")
    if b is not None:
        lines.append(f"B worker {fmt(b['worker_events_per_s'], 1)}/s  bare {fmt(b['bare_events_per_s'], 1)}/s  ratio "
                     f"{fmt(b['ratio'])}  same work {b['same_work']}  {verdict(b['pass'])}")
    lines.append(f"{verdict(result['pass'])} overall" + (f" ({result['options']['only']} phase only)"
                                                         if result["options"].get("only") else ""))
    return "\n".join(lines)


# --- the run ------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.metrics", description=__doc__.splitlines()[0])
    harness.add_quick(parser, QUICK)
    parser.add_argument("--units", help=f"comma-separated org sizes (default {DEFAULTS['units']})")
    for key in ("history_units", "scrapes", "changes", "rounds", "events", "v2moms"):
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, help=f"(default {DEFAULTS[key]})")
    parser.add_argument("--amqp-uri", default=os.environ.get("AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/"))
    parser.add_argument("--out-dir", type=Path, default=harness.RESULTS_DIR, help="where metrics.md and metrics.json go")
    parser.add_argument("--only", choices=("scrape", "throughput"),
                        help="run one phase only (A: scrape, B: throughput); the report leaves the other out")
    harness.add_strict_and_progress(parser)
    args = parser.parse_args(argv)
    harness.apply_defaults(args, DEFAULTS, QUICK)
    args.units = sorted({int(n) for n in str(args.units).split(",") if n.strip()})
    harness.require_positive(parser, args, ("history_units", "scrapes", "rounds", "events", "v2moms"))
    if len(args.units) < 2 or args.units[0] < 2:
        parser.error("--units needs at least two sizes of 2 or more")
    return args


def run_phases(args: argparse.Namespace, bar: tqdm) -> tuple[dict | None, dict | None, dict]:
    """A and/or B on one store in a temp dir: (scrape part, throughput part, seconds per phase)."""
    run_scrape, run_throughput = args.only in (None, "scrape"), args.only in (None, "throughput")
    seconds, scrape_part, throughput = {}, None, None
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp_name:
        tmp = Path(tmp_name)
        store_proc, uri = harness.start_store("sqlite", tmp)
        try:
            if run_scrape:
                clock = time.monotonic()
                scrape_part, store_proc, uri = part_scrape(store_proc, uri, tmp, args, bar)
                seconds["scrape"] = round(time.monotonic() - clock, 1)
            if run_throughput:
                clock = time.monotonic()
                throughput = part_throughput(uri, tmp, args, bar)
                seconds["throughput"] = round(time.monotonic() - clock, 1)
        finally:
            store_proc.stop()
    return scrape_part, throughput, seconds


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "bare":
        bare(argv[1:])
        return 0
    args = parse_args(argv)
    clock = harness.RunClock.start()
    extra = 0 if args.history_units in args.units else 1
    run_scrape, run_throughput = args.only in (None, "scrape"), args.only in (None, "throughput")
    steps = run_scrape * (len(args.units) + 1 + extra) * args.scrapes + run_throughput * 2 * args.rounds
    with harness.progress_bar(steps, args.progress) as bar:
        scrape_part, throughput, seconds = run_phases(args, bar)
    options = {key: getattr(args, key) for key in (*DEFAULTS, "quick", "only")}
    result = {
        **clock.record(RESULT_NAME, argv),
        "engine": "sqlite",
        "options": options,
        "targets": {"scrape_s": SCRAPE_TARGET_S, "scrape_units": SCRAPE_TARGET_UNITS, "linear_slack": LINEAR_SLACK,
                    "history_slack": HISTORY_SLACK, "throughput_ratio": THROUGHPUT_TARGET},
        "scrape": scrape_part, "throughput": throughput, "phase_seconds": seconds,
    }
    result["pass"] = all(part["pass"] for part in (scrape_part, throughput) if part is not None)
    return harness.finish(result, args, render(result), console_summary(result))


if __name__ == "__main__":
    sys.exit(main())
