"""metrics: scrape cost by org size, and metrics-worker throughput against a bare kombu consumer.

    .venv/bin/python -m bench.metrics            # a few minutes, writes bench/results/metrics.{md,json}
    .venv/bin/python -m bench.metrics --quick    # < 40 s smoke run

Scrape: units, people and aggregates are written straight into a metrics
database in the shapes services/metrics/store.py documents (aggregates with a
full idempotency memory); a separate process serves them with metrics-api's own
registry (services.metrics.api.registry_for); this process times GET /metrics
against a raw pymongo find of the same documents (units + aggregates, memory
excluded, as the collector reads them), alternating A/B in every round.
"History" repeats the middle size with 10x the processed events: bigger counters,
10x the entity documents (people, v2moms) the scrape never reads.

Throughput: N checkin_recorded events on V2MOMs the store already knows, on a
RabbitMQ vhost of its own, consumed by the real metrics-worker process and by a
bare kombu consumer process (bench.metrics bare) doing the same Mongo writes
per event as the ledger does for a check-in: find the V2MOM, a version-guarded
update of its state with the memory push, and the guarded $inc of its
aggregate (store.bump). No nameko, envelope validation, payload parsing,
model or pipeline tally. Ratio = worker events/s ÷ bare events/s per round.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pymongo
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"
AMQP_URI = os.environ.get("AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/")
DEFAULTS = {"units": [100, 1000, 10000], "history_units": 1000, "scrapes": 3, "rounds": 3, "events": 2000, "v2moms": 100}
QUICK = {"units": [20, 100], "history_units": 100, "scrapes": 2, "rounds": 1, "events": 150, "v2moms": 20}
SCRAPE_TARGET, THROUGHPUT_TARGET = 1.0, 0.5
CYCLE = "FY2027"
WORKER_QUEUE = "evt-checkins-checkin_recorded--metrics_worker.on_checkins_event"


def spawn(args: list[str], env: dict | None = None, log: Path | None = None) -> subprocess.Popen:
    out = open(log, "a") if log else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env={**os.environ, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=out)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_file(path: Path, process: subprocess.Popen, what: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.05)
    return path.read_text().strip()


# --- scrape cost -------------------------------------------------------------------------------------------


def week(moment: datetime) -> str:
    year, number, _ = moment.isocalendar()
    return f"{year}-W{number:02d}"


def populate(db, n_units: int, history: int = 1) -> None:
    """One company, departments of 10 teams, ``n_units`` units; an aggregate per unit; ``history`` scales events."""
    now = datetime.now(UTC)
    units, aggregates, people, v2moms = [], [], [], []
    departments = max(1, (n_units - 1) // 11)
    for i in range(n_units):
        if i == 0:
            unit = {"_id": "u0", "name": "Company", "level": "ORG_LEVEL_COMPANY", "parent_id": ""}
        elif i <= departments:
            unit = {"_id": f"u{i}", "name": f"Dept {i}", "level": "ORG_LEVEL_DEPARTMENT", "parent_id": "u0"}
        else:
            unit = {"_id": f"u{i}", "name": f"Team {i}", "level": "ORG_LEVEL_TEAM",
                    "parent_id": f"u{1 + i % departments}"}
        unit.update(revision=1 + history, members=8, recent=[uuid.uuid4().hex[:16] for _ in range(min(128, 8 * history))])
        units.append(unit)
        h = history
        aggregates.append({
            "_id": f"u{i}|{CYCLE}", "unit": f"u{i}", "cycle": CYCLE, "with_v2mom": 6, "submitted": 5, "approved": 4,
            "v2moms": {"draft": 1, "submitted": 1, "published": 4, "archived": h - 1},
            "pending": {str(int((now - timedelta(days=3)).timestamp())): 1},
            "tta": {"buckets": {"3600": 1, "86400": 2, "604800": 1}, "sum": 900000.0 * h, "count": 4},
            "checkins": {week(now - timedelta(weeks=k)): 5 * h for k in range(0, 8)},
            "published": 4, "covered": {"14": {(now - timedelta(days=d)).date().isoformat(): 1 for d in range(3)}},
            "items": 16, "stale": 2, "overdue": 1, "measures": 8, "off_track": 1, "progress": 180.0,
            "unit_tree": 40.0, "unit_v2moms": 1,
            "recent": [uuid.uuid4().hex[:16] for _ in range(min(128, 20 * h))],
        })
        for p in range(8 * h if h > 1 else 0):  # what the event history leaves beside the aggregates: entities, never scraped
            people.append({"_id": f"p{i}_{p}", "v": h, "unit": f"u{i}", "recent": [],
                           "state": {"revision": h, "org_unit_id": f"u{i}", "active": p < 8, "live": [[CYCLE, 1]]}})
            v2moms.append({"_id": f"v{i}_{p}", "v": 5 * h, "unit": f"u{i}", "owner_id": f"p{i}_{p}", "individual": True,
                           "recent": [], "state": {"cycle_id": CYCLE, "owner_id": f"p{i}_{p}", "checkins": {}}})
    for name, docs in (("units", units), ("aggregates", aggregates), ("people", people), ("v2moms", v2moms)):
        for start in range(0, len(docs), 1000):
            db[name].insert_many(docs[start:start + 1000], ordered=False)
    from services.metrics import store
    from services.platform.mongo import ensure_indexes
    ensure_indexes(db, store.INDEXES)


def serve(argv: list[str]) -> None:
    """A process of its own serving /metrics with metrics-api's registry."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--mongo-uri"), parser.add_argument("--db"), parser.add_argument("--ready-file", type=Path)
    args = parser.parse_args(argv)
    from prometheus_client import start_http_server

    from services.metrics.api import registry_for
    from services.platform.mongo import connect
    db = connect(args.mongo_uri, "bench-metrics-api")[args.db]
    httpd, _ = start_http_server(0, addr="127.0.0.1", registry=registry_for(db))
    args.ready_file.write_text(str(httpd.server_address[1]))
    while True:
        time.sleep(3600)


def time_scrape(port: int) -> tuple[float, int]:
    started = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=120) as response:
        body = response.read()
    return time.perf_counter() - started, len(body)


def time_raw(db) -> float:
    started = time.perf_counter()
    list(db.units.find({"revision": {"$gt": 0}}, {"name": 1, "level": 1, "parent_id": 1, "members": 1}))
    list(db.aggregates.find({}, {"recent": 0}))
    return time.perf_counter() - started


def bench_scrape(uri: str, tmp: Path, n_units: int, history: int, scrapes: int, bar) -> dict:
    client = pymongo.MongoClient(uri, tz_aware=True)
    name = f"bench_metrics_{uuid.uuid4().hex[:8]}"
    db = client[name]
    populate(db, n_units, history)
    ready = tmp / f"{name}.port"
    server = spawn(["-m", "bench.metrics", "serve", "--mongo-uri", uri, "--db", name, "--ready-file", str(ready)],
                   log=tmp / "serve.log")
    try:
        port = int(wait_file(ready, server, "the exposition"))
        time_scrape(port), time_raw(db)  # warm-up
        scraped, raw, size = [], [], 0
        for i in range(scrapes):
            for which in (("scrape", "raw") if i % 2 == 0 else ("raw", "scrape")):  # A/B, alternating
                if which == "scrape":
                    seconds, size = time_scrape(port)
                    scraped.append(seconds)
                else:
                    raw.append(time_raw(db))
            bar.update(1)
    finally:
        stop(server)
        client.drop_database(name)
        client.close()
    return {"units": n_units, "history": history, "scrape_s": statistics.median(scraped),
            "raw_find_s": statistics.median(raw), "ratio": statistics.median(scraped) / statistics.median(raw),
            "bytes": size, "scrapes": scraped, "raw": raw}


# --- throughput ---------------------------------------------------------------------------------------------


def checkin_events(n: int, v2moms: int, start: int = 0) -> list[dict]:
    from services.checkins import events as checkin_events_module
    from services.platform.events import to_wire
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
    """Every V2MOM known, as the ledger leaves it after its first check-in (the measured events all update)."""
    from services.metrics import consume, store
    from services.platform.mongo import ensure_indexes
    ensure_indexes(db, store.INDEXES)
    for event in checkin_events(v2moms, v2moms, start=10_000_000):
        consume.apply(db, consume.CHECKINS, event)


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


def publish(uri: str, events: list[dict]) -> None:
    import kombu
    with kombu.Connection(uri) as connection:
        exchange = kombu.Exchange("checkins.events", type="topic", durable=True)
        producer = kombu.Producer(connection.channel())
        exchange(producer.channel).declare()
        for event in events:
            producer.publish(json.dumps(event), exchange=exchange, routing_key=event["type"], delivery_mode=2,
                             content_type="application/cloudevents+json", content_encoding="utf-8")


def counted(db) -> int:
    total = 0
    for row in db.aggregates.find({}, {"checkins": 1}):
        total += sum((row.get("checkins") or {}).values())
    return total


def measure(db, target: int, process: subprocess.Popen, timeout: float) -> float:
    """Seconds from the first handled event to the last, by polling the aggregates."""
    baseline, first, deadline = counted(db), None, time.monotonic() + timeout
    while True:
        now_count = counted(db)
        if first is None and now_count > baseline:
            first = (time.perf_counter(), now_count)
        if now_count >= target:
            return (now_count - first[1]) / (time.perf_counter() - first[0]) if first and now_count > first[1] else 0.0
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"consumer stopped or timed out at {now_count}/{target}")
        time.sleep(0.05)


def bare(argv: list[str]) -> None:
    """The bare consumer: kombu, ack per message, the ledger's writes for a check-in and nothing else."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--mongo-uri"), parser.add_argument("--db"), parser.add_argument("--amqp-uri")
    parser.add_argument("--ready-file", type=Path)
    args = parser.parse_args(argv)
    import kombu
    db = pymongo.MongoClient(args.mongo_uri, tz_aware=True)[args.db]
    exchange = kombu.Exchange("checkins.events", type="topic", durable=True)
    queue = kombu.Queue("bench-bare-checkins", exchange, routing_key="checkin_recorded", durable=True)

    def handle(body, message):
        event = json.loads(body)
        checkin = event["data"]["checkin"]
        memo = uuid.uuid5(uuid.NAMESPACE_URL, event["id"]).hex[:16]
        observed = datetime.fromisoformat(checkin["observeTime"].replace("Z", "+00:00"))
        wk = week(observed)
        doc = db.v2moms.find_one({"_id": checkin["v2momId"]})
        state = doc["state"]
        state["checkins"][wk] = state["checkins"].get(wk, 0) + 1
        target = f"{doc['unit']}|{state['cycle_id']}"
        deltas = [[f"agg:{target}", [[f"checkins.{wk}", 1]]]]
        db.v2moms.update_one({"_id": doc["_id"], "v": doc["v"]}, {
            "$set": {"state": state, "unit": doc["unit"], "owner_id": doc["owner_id"], "individual": doc["individual"],
                     "v": doc["v"] + 1},
            "$push": {"recent": {"$each": [{"id": memo, "d": deltas}], "$slice": -32}}})
        unit, cycle = target.split("|")
        db.aggregates.update_one({"_id": target, "recent": {"$ne": memo}}, {
            "$inc": {f"checkins.{wk}": 1}, "$push": {"recent": {"$each": [memo], "$slice": -128}},
            "$setOnInsert": {"unit": unit, "cycle": cycle}}, upsert=True)
        message.ack()

    with kombu.Connection(args.amqp_uri) as connection:
        channel = connection.channel()
        queue(channel).declare()
        channel.basic_qos(0, 10, False)  # nameko's default prefetch
        with kombu.Consumer(channel, [queue], callbacks=[handle], accept=None):
            args.ready_file.write_text("ready")
            while True:
                try:
                    connection.drain_events(timeout=1)
                except TimeoutError:
                    pass


def bench_throughput(uri: str, tmp: Path, opts, bar) -> list[dict]:
    vhost = f"bench_{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    amqp = AMQP_URI.rstrip("/") + "/" + vhost
    client = pymongo.MongoClient(uri, tz_aware=True)
    rounds = []
    try:
        for r in range(opts.rounds):
            rates = {}
            for which in (("worker", "bare") if r % 2 == 0 else ("bare", "worker")):
                name = f"bench_metrics_{which}_{uuid.uuid4().hex[:8]}"
                db = client[name]
                prepare_store(db, opts.v2moms)
                ready = tmp / f"{name}.ready"
                if which == "worker":
                    import kombu
                    env = {"MONGO_URI": uri, "MONGO_DB": name, "AMQP_URI": amqp, "LOG_LEVEL": "WARNING"}
                    process = spawn(["-m", "services.metrics.worker"], env, tmp / "worker.log")
                    deadline = time.monotonic() + 60
                    with kombu.Connection(amqp) as connection:
                        while True:
                            try:
                                connection.channel().queue_declare(WORKER_QUEUE, passive=True)
                                break
                            except Exception:
                                if process.poll() is not None or time.monotonic() > deadline:
                                    raise RuntimeError("metrics-worker did not declare its queues")
                                time.sleep(0.1)
                else:
                    process = spawn(["-m", "bench.metrics", "bare", "--mongo-uri", uri, "--db", name, "--amqp-uri", amqp,
                                     "--ready-file", str(ready)], log=tmp / "bare.log")
                    wait_file(ready, process, "the bare consumer")
                try:
                    target = counted(db) + opts.events
                    publish(amqp, checkin_events(opts.events, opts.v2moms, start=r * opts.events))
                    rates[which] = measure(db, target, process, timeout=300)
                finally:
                    stop(process)
                    if which == "worker":
                        import kombu
                        with kombu.Connection(amqp) as connection:
                            connection.channel().queue_purge(WORKER_QUEUE)
                    else:
                        with __import__("kombu").Connection(amqp) as connection:
                            connection.channel().queue_delete("bench-bare-checkins")
                    client.drop_database(name)
                bar.update(1)
            rounds.append({**{f"{k}_events_per_s": v for k, v in rates.items()}, "ratio": rates["worker"] / rates["bare"]})
    finally:
        client.close()
        rabbitmqctl("delete_vhost", vhost)
    return rounds


# --- the run ------------------------------------------------------------------------------------------------


def report(result: dict) -> str:
    s, t = result["scrape"], result["throughput"]
    lines = [
        "# metrics benchmark", "",
        f"{result['time']}, mongoeco ({result['engine']}), events per throughput round: {result['opts']['events']}, "
        f"rounds: {result['opts']['rounds']}.", "",
        "## Scrape cost", "",
        f"Target: a scrape at 10,000 units under {SCRAPE_TARGET:.0f} s. Median of {result['opts']['scrapes']} A/B pairs.", "",
        "| units | history | scrape (s) | raw find (s) | scrape ÷ raw | scrape per unit (ms) | bytes |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in s:
        lines.append(f"| {row['units']:,} | {row['history']}× | {row['scrape_s']:.3f} | {row['raw_find_s']:.3f} | "
                     f"{row['ratio']:.2f} | {1000 * row['scrape_s'] / row['units']:.3f} | {row['bytes']:,} |")
    lines += ["", f"Scrape target met: **{result['scrape_pass']}**.", "",
              "## Event throughput: metrics-worker ÷ bare kombu consumer", "",
              f"Target ≥ {THROUGHPUT_TARGET}.", "", "| round | worker (events/s) | bare (events/s) | ratio |",
              "|---:|---:|---:|---:|"]
    for i, row in enumerate(t, 1):
        lines.append(f"| {i} | {row['worker_events_per_s']:.1f} | {row['bare_events_per_s']:.1f} | {row['ratio']:.2f} |")
    lines += ["", f"Median ratio **{result['throughput_ratio']:.2f}**; target met: **{result['throughput_pass']}**.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "serve":
        serve(argv[1:])
        return 0
    if argv and argv[0] == "bare":
        bare(argv[1:])
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.metrics", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--units", help="comma-separated org sizes")
    parser.add_argument("--history-units", type=int)
    parser.add_argument("--scrapes", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--events", type=int)
    parser.add_argument("--v2moms", type=int)
    parser.add_argument("--engine", choices=("sqlite", "memory"), default="sqlite")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    args = parser.parse_args(argv)
    base = QUICK if args.quick else DEFAULTS
    opts = argparse.Namespace(**{k: getattr(args, k) if getattr(args, k, None) is not None else v for k, v in base.items()})
    if isinstance(opts.units, str):
        opts.units = [int(u) for u in opts.units.split(",")]
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp_name:
        tmp = Path(tmp_name)
        ready = tmp / "mongo.uri"
        store_args = ["-m", "services.platform.mongo_server", "--port", "0", "--ready-file", str(ready)]
        if args.engine == "sqlite":
            store_args += ["--sqlite", str(tmp / "store.sqlite")]
        mongo = spawn(store_args, log=tmp / "mongo.log")
        try:
            uri = wait_file(ready, mongo, "the mongoeco wire server")
            sizes = [(n, 1) for n in opts.units] + [(opts.history_units, 10)]
            steps = len(sizes) * opts.scrapes + 2 * opts.rounds
            with tqdm(total=steps, unit="step", file=sys.stderr, disable=not progress, desc="bench metrics") as bar:
                scrape = [bench_scrape(uri, tmp, n, h, opts.scrapes, bar) for n, h in sizes]
                throughput = bench_throughput(uri, tmp, opts, bar)
        finally:
            stop(mongo)
    largest = max(row["units"] for row in scrape)
    ratio = statistics.median(row["ratio"] for row in throughput)
    result = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"), "engine": args.engine, "opts": vars(opts),
        "scrape": scrape, "throughput": throughput, "throughput_ratio": ratio,
        "scrape_pass": largest >= 10000 and next(r for r in scrape if r["units"] == largest and r["history"] == 1)[
            "scrape_s"] < SCRAPE_TARGET,
        "throughput_pass": ratio >= THROUGHPUT_TARGET,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out_dir / "metrics.md").write_text(report(result))
    print(report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
