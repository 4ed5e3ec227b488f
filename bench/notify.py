"""Benchmark: notify-worker's email delivery against a bare smtplib client, and the lag from a submission to
the approver's email.

One run, on the mongoeco wire server with its SQLite engine (what `make run` uses), a RabbitMQ vhost of its
own and the dev SMTP sink (deploy/dev/smtp_sink.py, ``--jsonl``: it stamps each message ``received_at`` before
answering 250), each its own process:

A. **Throughput.** The real notify-worker (``python -m services.notify.worker``, database ``bench_notify``,
   dispatch settings as shipped) is fed N goals ``v2mom_submitted`` CloudEvents envelopes, published straight to
   ``goals.events`` as goals-worker's relay would (services/goals/events.py + to_wire). Its approvers and the
   owners are written into notify's ``people`` copy beforehand in the shape directory.py documents, so no
   goals-api runs. Rate = N ÷ (first publish → the last of the N emails received by the sink). Against it,
   **bare** (``python -m bench.notify bare``): one plain smtplib client sending the same N messages (the raw
   bytes notify-worker produced in its previous run, Message-ID renamed to the same length) to the same sink,
   one after another, one SMTP connection per batch of NOTIFY_DISPATCH_BATCH (50) messages, as notify's
   dispatcher sends (one connection per dispatch pass). Rounds alternate which
   goes first; ratio = notify ÷ bare per round, median. Each round starts from empty notify collections
   (people kept).
B. **Lag.** At half of A's median notify rate, submissions are published at a steady rate for a while; each
   message's lag runs from its publish to the sink receiving the approver's email (matched by the V2MOM id in
   the subject). p50/p95/p99.
C. **The dispatcher alone** (no target: it tells how much of A's gap is the handler's). Per round, a
   notify-worker whose dispatcher does not tick writes QUEUED submissions' deliveries and is stopped; the
   shipped worker then starts and sends them. Against the bare client sending the same mails; both timed from
   the first mail received to the last.

    .venv/bin/python -m bench.notify            # about 4 minutes; bench/results/notify.{md,json}
    .venv/bin/python -m bench.notify --quick    # a smoke run, well under a minute
"""

import argparse
import json
import os
import re
import smtplib
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import kombu
from tqdm import tqdm

from bench import harness, notify_report
from bench.harness import BARE, Process

RESULT_NAME = "notify"
OURS = "notify"  # the stack under test, as the report names it

TARGET_RATIO = 0.5
TARGET_LAG_P99_MS = 2000.0

DB = "bench_notify"
MAIL_FROM = "V2MOM <v2mom@localhost>"
SUBMITTED_QUEUE = "evt-goals-v2mom_submitted--notify_worker.on_v2mom_submitted"
# Emptied between rounds: what a round's submissions leave behind (people stay; nothing else is written).
ROUND_COLLECTIONS = ("notifications", "deliveries", "schedules", "v2moms", "stats", "processed_events")
# The V2MOM id carries the run and the message number; the approver's subject carries the V2MOM's title,
# which carries the id: that is how a mail is matched to its publish.
ID_PATTERN = re.compile(r"v2mb[0-9a-f]{6}r\d{2}n\d{6}")
MESSAGE_ID_PATTERN = re.compile(r"^Message-ID:\s*<([^@>]+)@", re.IGNORECASE | re.MULTILINE)
BARE_MARK = "bare"

DEFAULTS = {
    "messages": 150,
    "queued": 300,
    "rounds": 3,
    "approvers": 20,
    "lag_seconds": 30.0,
}
QUICK = {
    "messages": 15,
    "queued": 30,
    "rounds": 1,
    "approvers": 4,
    "lag_seconds": 4.0,
}

# notify-worker's shipped NOTIFY_DISPATCH_BATCH: the bare client sends as many per connection.
DISPATCH_BATCH = 50


# --- the organisation and the events ----------------------------------------------------------------------


def person_id(kind: str, index: int) -> str:
    return f"bench_{kind}_{index:03d}"


def seed_people(db, approvers: int) -> None:
    """notify's ``people`` copy (directory.py's shape): approver i and owner i, owner i reporting to approver i."""
    now = datetime.now(UTC)
    docs = []
    for i in range(approvers):
        for kind, manager in (("approver", ""), ("owner", person_id("approver", i))):
            pid = person_id(kind, i)
            docs.append({"_id": pid, "display_name": f"Bench {kind.title()} {i}", "email": f"{pid}@bench.test",
                         "manager_id": manager, "org_unit_id": "bench_unit", "active": True, "time_zone": "UTC",
                         "revision": 1, "updated_at": now})
    db.people.delete_many({})
    db.people.insert_many(docs)


def submitted_events(run: str, round_no: int, count: int, approvers: int) -> list[dict]:
    """``count`` v2mom_submitted envelopes as goals-worker's relay puts them on the wire, round-robin over the approvers."""
    from v2mom.v1 import common_pb2, events_pb2, goals_pb2

    from bench.goals_api import content_template
    from services.goals import events as goals_events
    from services.platform.bus.events import to_wire

    template = content_template()
    events = []
    for i in range(count):
        v2mom_id = f"v2mb{run}r{round_no:02d}n{i:06d}"
        content = goals_pb2.V2MOMContent()
        content.CopyFrom(template)
        content.title = f"Bench {v2mom_id}"
        data = events_pb2.V2MOMEventData(
            v2mom_id=v2mom_id, revision=2, owner_id=person_id("owner", i % approvers), org_unit_id="bench_unit",
            cycle_id="FY2027", level=common_pb2.ORG_LEVEL_INDIVIDUAL, state=goals_pb2.V2MOM_STATE_SUBMITTED,
            approver_id=person_id("approver", i % approvers), actor_id=person_id("owner", i % approvers),
            content=content)
        data.submit_time.GetCurrentTime()
        events.append(to_wire(goals_events.v2mom_event(goals_events.V2MOM_SUBMITTED, data)))
    return events


class Publisher:
    """One kombu connection to the vhost, publishing to goals.events as goals-worker's relay does (persistent)."""

    def __init__(self, uri: str):
        self.connection = kombu.Connection(uri)
        self.exchange = kombu.Exchange("goals.events", type="topic", durable=True)
        self.producer = kombu.Producer(self.connection.channel())
        self.exchange(self.producer.channel).declare()

    def publish(self, event: dict) -> float:
        """Publishes one event; returns the wall time just before it went (the sink stamps with time.time())."""
        body = json.dumps(event)
        at = time.time()
        self.producer.publish(body, exchange=self.exchange, routing_key=event["type"], delivery_mode=2,
                              content_type="application/cloudevents+json", content_encoding="utf-8")
        return at

    def close(self) -> None:
        self.connection.release()


# --- the sink's record ----------------------------------------------------------------------------------


class SinkLog:
    """Reads the sink's --jsonl file incrementally: each kept mail with its receive time and ids."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0

    def read_new(self) -> list[dict]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        end = chunk.rfind(b"\n") + 1  # only whole lines: the sink may be writing the next one
        self.offset += end
        mails = []
        for line in chunk[:end].splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            header_end = record["raw"].find("\n\n") if "\n\n" in record["raw"] else record["raw"].find("\r\n\r\n")
            headers = record["raw"][: header_end if header_end >= 0 else None]
            found = MESSAGE_ID_PATTERN.search(headers)
            v2mom = ID_PATTERN.search(record["subject"])
            mails.append({"received_at": record["received_at"], "message_id": found.group(1) if found else "",
                          "v2mom_id": v2mom.group(0) if v2mom else "", "mail_from": record["mail_from"],
                          "rcpt_tos": record["rcpt_tos"], "raw": record["raw"]})
        return mails


def collect(sink: SinkLog, want, timeout: float, processes, seen: list[dict]) -> list[dict]:
    """Reads the sink until ``want(seen)`` holds or the timeout passes; ``seen`` accumulates what arrived."""
    deadline = time.monotonic() + timeout
    while True:
        seen.extend(sink.read_new())
        if want(seen) or time.monotonic() > deadline:
            return seen
        harness.require_alive(processes)
        time.sleep(0.05)


# --- the processes -----------------------------------------------------------------------------------------


def start_sink(tmp: Path) -> tuple[Process, int, Path]:
    jsonl = tmp / "mail.jsonl"
    process, port = harness.start_with_ready_file(
        "smtp-sink", ["-m", "deploy.dev.smtp_sink", "--port", "0", "--jsonl", str(jsonl)], tmp, tmp / "smtp.port")
    return process, int(port), jsonl


def start_worker(tmp: Path, mongo_uri: str, amqp_uri: str, smtp_port: int, name: str = "notify-worker",
                 overrides: dict | None = None) -> Process:
    """notify-worker as deployed; dispatch and relay settings left at what it ships with (unless ``overrides``
    says otherwise). GOALS_ADDR points nowhere: every person is in notify's copy, so goals-api is never asked
    (a miss would stall the run)."""
    env = {"MONGO_URI": mongo_uri, "MONGO_DB": DB, "AMQP_URI": amqp_uri, "GOALS_ADDR": "127.0.0.1:9",
           "NOTIFY_SMTP_HOST": "127.0.0.1", "NOTIFY_SMTP_PORT": str(smtp_port), "NOTIFY_MAIL_FROM": MAIL_FROM,
           "NOTIFY_PORTAL_URL_TEMPLATE": "https://portal.bench.test/v2moms/{v2mom_id}", "LOG_LEVEL": "WARNING",
           **(overrides or {})}
    process = harness.spawn(name, ["-m", "services.notify.worker"], tmp, env)

    def declared() -> bool:
        with kombu.Connection(amqp_uri) as connection:
            return harness.queue_depth(connection, SUBMITTED_QUEUE) is not None
    harness.wait_until(process, declared, "notify-worker's queues")
    return process


def shipped_settings() -> dict:
    """What notify-worker runs with here: its defaults (handlers.WorkerSettings, config) unless overridden."""
    import warnings

    # handlers.py sits beside the worker and imports eventlet (not patched here: nothing of it runs in this process).
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    from services.notify.handlers import WorkerSettings
    from services.platform.core.config import load

    settings = WorkerSettings.from_env()
    return {"dispatch_interval_s": settings.dispatch_interval_seconds, "dispatch_batch": settings.dispatch_batch,
            "dispatch_pass_max": settings.dispatch_pass_max,
            "relay_interval_s": load("notify").relay_interval_seconds, "max_workers": 10}


# --- A: throughput against bare ------------------------------------------------------------------------------


def wait_until_settled(db, amqp_uri: str, process: Process, timeout: float = 120.0) -> None:
    """No PENDING delivery, no unrelayed outbox event, nothing queued, twice in a row: notify has finished."""
    deadline, calm = time.monotonic() + timeout, 0
    with kombu.Connection(amqp_uri) as connection:
        while calm < 2:
            pending = db.deliveries.count_documents({"status": "PENDING"})
            unrelayed = db.deliveries.count_documents({"outbox_pending": True})
            queued = harness.queue_depth(connection, SUBMITTED_QUEUE) or 0
            calm = calm + 1 if pending == unrelayed == queued == 0 else 0
            if time.monotonic() > deadline:
                raise RuntimeError(f"notify-worker did not settle ({pending} pending, {unrelayed} unrelayed, {queued} "
                                   f"queued):\n{process.log_tail(3000)}")
            harness.require_alive([process])
            time.sleep(0.2)


def clear_round(db) -> None:
    for name in ROUND_COLLECTIONS:
        db[name].delete_many({})


def run_notify(ctx: dict, events: list[dict], timeout: float) -> dict:
    """Publishes every event at once, then waits for each approver's email: the rate and what arrived."""
    wanted = {e["data"]["v2momId"] for e in events}
    seen: list[dict] = []
    ctx["sink"].read_new()  # anything earlier is not this run's
    procs = ctx["procs"]
    before = {name: harness.cpu_seconds(p.popen.pid) for name, p in procs.items()}
    publisher = Publisher(ctx["amqp"])
    try:
        started = publisher.publish(events[0])
        for event in events[1:]:
            publisher.publish(event)
        published = time.time()
    finally:
        publisher.close()
    collect(ctx["sink"], lambda got: len({m["v2mom_id"] for m in got if m["v2mom_id"] in wanted}) >= len(wanted),
            timeout, procs.values(), seen)
    cpu = {name: harness.cpu_spent(before[name], harness.cpu_seconds(p.popen.pid)) for name, p in procs.items()}
    mine = [m for m in seen if m["v2mom_id"] in wanted and not m["message_id"].startswith(BARE_MARK)]
    time.sleep(0.3)  # a duplicate, if any, lands before the count
    mine += [m for m in ctx["sink"].read_new() if m["v2mom_id"] in wanted and not m["message_id"].startswith(BARE_MARK)]
    counted = tally((m["v2mom_id"] for m in mine), len(events))
    last = max((m["received_at"] for m in mine), default=started)
    seconds = last - started
    n = len(events)
    return {
        **counted, "seconds": round(seconds, 3),
        "publish_seconds": round(published - started, 3),
        "throughput": round(counted["arrived"] / seconds, 2) if seconds > 0 else float("nan"),
        "cpu_ms_per_msg": {name: round(s * 1000 / n, 2) if s is not None else None for name, s in cpu.items()},
        "mails": sorted(mine, key=lambda m: m["received_at"]),
    }


def bare_corpus(mails: list[dict], tag: str) -> list[list[str]]:
    """notify's own mails, each under a new Message-ID of the same length (so the bytes sent are as many)."""
    corpus = []
    for index, mail in enumerate(mails):
        old = mail["message_id"]
        new = (f"{BARE_MARK}{tag}{index:06d}" + "0" * len(old))[: len(old)]
        if len(new) < len(f"{BARE_MARK}{tag}{index:06d}"):
            raise RuntimeError(f"Message-ID {old!r} too short to rename")
        raw = mail["raw"].replace(f"<{old}@", f"<{new}@", 1)
        corpus.append([mail["mail_from"], mail["rcpt_tos"][0], raw])
    return corpus


def run_bare(ctx: dict, corpus: list[list[str]], tag: str, timeout: float) -> dict:
    path = ctx["tmp"] / f"bare-{tag}.json"
    path.write_text(json.dumps({"host": "127.0.0.1", "port": ctx["smtp_port"], "mails": corpus,
                                "batch": DISPATCH_BATCH}))
    ctx["sink"].read_new()
    procs = ctx["procs"]
    before = {name: harness.cpu_seconds(p.popen.pid) for name, p in procs.items()}
    done = _run_bare_process(path, timeout)
    prefix = f"{BARE_MARK}{tag}"
    seen: list[dict] = []
    collect(ctx["sink"], lambda got: sum(m["message_id"].startswith(prefix) for m in got) >= len(corpus), 30.0,
            procs.values(), seen)
    cpu = {name: harness.cpu_spent(before[name], harness.cpu_seconds(p.popen.pid)) for name, p in procs.items()}
    mine = [m for m in seen if m["message_id"].startswith(prefix)]
    counted = tally((m["message_id"] for m in mine), len(corpus))
    n = len(corpus)
    seconds = max((m["received_at"] for m in mine), default=done["started"]) - done["started"]
    return {
        **counted,
        "errors": done["errors"], "seconds": round(seconds, 3), "client_cpu_ms_per_msg": done["client_cpu_ms_per_msg"],
        "throughput": round(counted["arrived"] / seconds, 2) if seconds > 0 else float("nan"),
        "spread_throughput": spread_rate([m["received_at"] for m in mine]),
        "cpu_ms_per_msg": {name: round(s * 1000 / n, 2) if s is not None else None for name, s in cpu.items()},
        "bytes": sum(len(raw.encode()) for _, _, raw in corpus),
    }


def tally(keys, sent: int) -> dict:
    """What arrived of ``sent`` messages, each named by its key (V2MOM id or Message-ID): once, twice, or not at all."""
    counts = Counter(keys)
    return {"sent": sent, "arrived": len(counts), "duplicates": sum(c - 1 for c in counts.values()),
            "missing": sent - len(counts)}


def spread_rate(received: list[float]) -> float:
    """Messages per second between the first and the last to arrive: (n − 1) ÷ (last − first)."""
    if len(received) < 2 or max(received) <= min(received):
        return float("nan")
    return round((len(received) - 1) / (max(received) - min(received)), 2)


def _run_bare_process(path: Path, timeout: float) -> dict:
    import subprocess
    completed = subprocess.run([sys.executable, "-m", "bench.notify", "bare", str(path)], cwd=harness.ROOT,
                               capture_output=True, text=True, timeout=timeout)
    if completed.returncode != 0:
        raise RuntimeError(f"bare smtplib client failed ({completed.returncode}):\n{completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def bare(argv: list[str]) -> None:
    """The bare client: one SMTP connection per batch (EHLO, then MAIL, RCPT, DATA per message, QUIT), one message
    after another, as notify's dispatcher sends a pass; prints {started, finished, errors} as JSON. Plain smtplib."""
    plan = json.loads(Path(argv[0]).read_text())
    payloads = [(sender, recipient, raw.encode("utf-8")) for sender, recipient, raw in plan["mails"]]
    batch = plan.get("batch", 1)
    errors = 0
    cpu_before = time.process_time()
    started = time.time()
    for first in range(0, len(payloads), batch):
        errors += _send_batch(plan["host"], plan["port"], payloads[first:first + batch])
    print(json.dumps({"started": started, "finished": time.time(), "errors": errors,
                      "client_cpu_ms_per_msg": round((time.process_time() - cpu_before) * 1000 / max(len(payloads), 1), 3)}))


def _send_batch(host: str, port: int, payloads: list[tuple[str, str, bytes]]) -> int:
    """Sends one batch on one connection; returns how many failed."""
    try:
        smtp = smtplib.SMTP(host, port, timeout=10)
    except OSError:
        return len(payloads)
    errors = 0
    try:
        smtp.ehlo()
        for sender, recipient, raw in payloads:
            try:
                smtp.sendmail(sender, [recipient], raw)
            except smtplib.SMTPException:
                errors += 1
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        errors = len(payloads)
    finally:
        smtp.close()
    return errors


def check_deliveries(db, events: list[dict]) -> dict:
    """What notify wrote for the run's V2MOMs: one EMAIL delivery SENT (tried once) and one INBOX each."""
    ids = [e["data"]["v2momId"] for e in events]
    email = list(db.deliveries.find({"v2mom_id": {"$in": ids}, "channel": {"$regex": "EMAIL"}},
                                    {"status": 1, "tries": 1, "v2mom_id": 1, "created_at": 1, "sent_at": 1}))
    inbox = db.deliveries.count_documents({"v2mom_id": {"$in": ids}, "channel": {"$regex": "INBOX"}})
    return {"email": len(email), "email_sent": sum(d["status"] == "SENT" for d in email),
            "email_tries": sum(d.get("tries", 0) for d in email), "inbox": inbox, "docs": email}


def part_throughput(ctx: dict, opts, bar: tqdm) -> dict:
    db, run = ctx["db"], ctx["run"]
    bar.set_description("A: warm-up (notify, not counted)")
    warm_events = submitted_events(run, 0, opts.messages, opts.approvers)
    warm = run_notify(ctx, warm_events, timeout=300)
    if warm["missing"]:
        raise RuntimeError(f"warm-up: {warm['missing']} of {warm['sent']} emails never arrived:\n"
                           f"{ctx['procs']['worker'].log_tail(3000)}")
    corpus_source = warm["mails"]
    wait_until_settled(db, ctx["amqp"], ctx["procs"]["worker"])
    clear_round(db)
    bar.update(1)
    rounds = []
    for index in range(opts.rounds):
        order = (OURS, BARE) if index % 2 == 0 else (BARE, OURS)
        record = {"round": index + 1, "order": list(order)}
        for name in order:
            bar.set_description(f"A: round {index + 1}/{opts.rounds} {name}")
            if name == OURS:
                events = submitted_events(run, index + 1, opts.messages, opts.approvers)
                got = run_notify(ctx, events, timeout=300)
                wait_until_settled(db, ctx["amqp"], ctx["procs"]["worker"])
                written = check_deliveries(db, events)
                got["deliveries"] = {k: v for k, v in written.items() if k != "docs"}
                corpus_source = got.pop("mails")
                clear_round(db)
            else:
                got = run_bare(ctx, bare_corpus(corpus_source, f"{index + 1:02d}"), f"{index + 1:02d}", timeout=300)
            record[name] = got
            harness.require_alive(ctx["procs"].values())
            bar.update(1)
        record["ratio"] = harness.ratio(record[OURS]["throughput"], record[BARE]["throughput"])
        rounds.append(record)
    return summarize_throughput(rounds, warm)


def summarize_throughput(rounds: list[dict], warm: dict) -> dict:
    ratios = [r["ratio"] for r in rounds]
    exact = all(r[s]["missing"] == 0 and r[s]["duplicates"] == 0 for r in rounds for s in (OURS, BARE))
    written = all(r[OURS]["deliveries"]["email_sent"] == r[OURS]["sent"] == r[OURS]["deliveries"]["inbox"]
                  for r in rounds)
    errors = sum(r[BARE]["errors"] for r in rounds)
    ratio = harness.median(ratios)
    cpu = {"bare_client": round(harness.median(r[BARE]["client_cpu_ms_per_msg"] for r in rounds), 3)}
    for stack in (OURS, BARE):
        for proc in ("worker", "store", "sink"):
            cpu[f"{stack}_{proc}"] = round(harness.median(
                r[stack]["cpu_ms_per_msg"].get(proc) or float("nan") for r in rounds), 2)
    return {
        "rounds": rounds,
        "warmup": {k: v for k, v in warm.items() if k != "mails"},
        "ours_throughput": round(harness.median(r[OURS]["throughput"] for r in rounds), 2),
        "bare_throughput": round(harness.median(r[BARE]["throughput"] for r in rounds), 2),
        "ratio": round(ratio, 3),
        "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
        "cpu_ms_per_msg": cpu,
        "mail_bytes_per_msg": round(statistics.mean(r[BARE]["bytes"] / r[BARE]["sent"] for r in rounds)),
        "exactly_once": exact, "deliveries_match": written, "bare_errors": errors,
        "pass": bool(exact and written and not errors and ratio >= TARGET_RATIO),
    }


# --- B: lag at half the maximum rate -------------------------------------------------------------------------


def part_lag(ctx: dict, opts, rate: float, bar: tqdm) -> dict:
    db = ctx["db"]
    count = max(1, round(rate * opts.lag_seconds))
    events = submitted_events(ctx["run"], 99, count, opts.approvers)
    bar.set_description(f"B: {count} submissions at {rate:.1f}/s")
    ctx["sink"].read_new()
    publisher = Publisher(ctx["amqp"])
    published = {}
    late = 0.0
    try:
        start = time.monotonic()
        for index, event in enumerate(events):
            due = start + index / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            else:
                late = max(late, -pause)
            published[event["data"]["v2momId"]] = publisher.publish(event)
        elapsed = time.monotonic() - start
    finally:
        publisher.close()
    seen: list[dict] = []
    collect(ctx["sink"], lambda got: len({m["v2mom_id"] for m in got if m["v2mom_id"] in published}) >= count,
            60.0, ctx["procs"].values(), seen)
    time.sleep(0.3)
    seen += ctx["sink"].read_new()
    mine = [m for m in seen if m["v2mom_id"] in published]
    first = {}
    for mail in mine:
        first.setdefault(mail["v2mom_id"], mail["received_at"])
    lags = sorted((first[v] - published[v]) * 1000 for v in first)
    counts = Counter(m["v2mom_id"] for m in mine)
    wait_until_settled(db, ctx["amqp"], ctx["procs"]["worker"])
    split = _split(db, published, first)
    clear_round(db)
    bar.update(1)
    q = lambda p: round(harness.percentile(lags, p), 1)
    result = {
        "rate": round(rate, 2), "achieved_rate": round((count - 1) / elapsed, 2) if count > 1 and elapsed else rate,
        "seconds": round(elapsed, 1), "sent": count, "matched": len(first), "missing": count - len(first),
        "duplicates": sum(c - 1 for c in counts.values()), "publish_late_max_ms": round(late * 1000, 1),
        "lag_p50_ms": q(0.5), "lag_p95_ms": q(0.95), "lag_p99_ms": q(0.99),
        "lag_max_ms": round(lags[-1], 1) if lags else float("nan"), **split,
    }
    result["pass"] = bool(result["matched"] == count and not result["duplicates"] and result["lag_p99_ms"] < TARGET_LAG_P99_MS)
    return result


def _split(db, published: dict, received: dict) -> dict:
    """Where the lag goes: publish → the delivery written (the handler), delivery written → the sink (dispatch)."""
    handler, dispatch = [], []
    for doc in db.deliveries.find({"v2mom_id": {"$in": list(published)}, "channel": {"$regex": "EMAIL"}},
                                  {"v2mom_id": 1, "created_at": 1}):
        created = doc["created_at"].timestamp()
        handler.append((created - published[doc["v2mom_id"]]) * 1000)
        if doc["v2mom_id"] in received:
            dispatch.append((received[doc["v2mom_id"]] - created) * 1000)
    handler.sort(), dispatch.sort()
    return {"handler_p50_ms": round(harness.percentile(handler, 0.5), 1),
            "handler_p99_ms": round(harness.percentile(handler, 0.99), 1),
            "dispatch_p50_ms": round(harness.percentile(dispatch, 0.5), 1),
            "dispatch_p99_ms": round(harness.percentile(dispatch, 0.99), 1)}


# --- C: the dispatcher alone ---------------------------------------------------------------------------------------

# A worker whose dispatcher never ticks in a run (nameko's timer waits one interval before its first tick): it only
# writes the deliveries, for the shipped worker started after it to find queued.
NO_DISPATCH = {"NOTIFY_DISPATCH_INTERVAL_SECONDS": "3600"}


def queue_deliveries(ctx: dict, events: list[dict], name: str) -> None:
    """The events' EMAIL deliveries written and left PENDING, by a worker that does not dispatch, then stopped."""
    db, procs = ctx["db"], ctx["procs"]
    procs["worker"].stop()
    writer = start_worker(ctx["tmp"], ctx["mongo"], ctx["amqp"], ctx["smtp_port"], name, NO_DISPATCH)
    procs["worker"] = writer
    publisher = Publisher(ctx["amqp"])
    try:
        for event in events:
            publisher.publish(event)
    finally:
        publisher.close()
    ids = [e["data"]["v2momId"] for e in events]
    deadline = time.monotonic() + 300
    while (db.deliveries.count_documents({"v2mom_id": {"$in": ids}, "status": "PENDING", "channel": {"$regex": "EMAIL"}})
           < len(ids) or db.deliveries.count_documents({"outbox_pending": True})):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the writer did not queue {len(ids)} deliveries:\n{writer.log_tail(3000)}")
        harness.require_alive([writer])
        time.sleep(0.2)
    writer.stop()


def run_dispatch(ctx: dict, events: list[dict], round_no: int) -> dict:
    """The shipped worker started on the queued deliveries: how fast its dispatcher sends them, first mail to last."""
    wanted = {e["data"]["v2momId"] for e in events}
    ctx["sink"].read_new()
    store_before = harness.cpu_seconds(ctx["procs"]["store"].popen.pid)
    worker = start_worker(ctx["tmp"], ctx["mongo"], ctx["amqp"], ctx["smtp_port"], f"notify-worker-c{round_no}")
    ctx["procs"]["worker"] = worker
    seen: list[dict] = []
    collect(ctx["sink"], lambda got: len({m["v2mom_id"] for m in got if m["v2mom_id"] in wanted}) >= len(wanted),
            300, ctx["procs"].values(), seen)
    store_cpu = harness.cpu_spent(store_before, harness.cpu_seconds(ctx["procs"]["store"].popen.pid))
    wait_until_settled(ctx["db"], ctx["amqp"], worker)
    mine = [m for m in seen if m["v2mom_id"] in wanted]
    written = check_deliveries(ctx["db"], events)
    n = len(events)
    return {**tally((m["v2mom_id"] for m in mine), n),
            "spread_throughput": spread_rate([m["received_at"] for m in mine]),
            "email_sent": written["email_sent"], "email_tries": written["email_tries"],
            "store_cpu_ms_per_msg": round(store_cpu * 1000 / n, 2) if store_cpu is not None else None,
            "mails": sorted(mine, key=lambda m: m["received_at"])}


def part_dispatch(ctx: dict, opts, bar: tqdm) -> dict:
    """Rounds of: deliveries queued by a non-dispatching worker, then the shipped worker sending them; against the
    bare client sending the same mails. Both timed from the first mail received to the last."""
    rounds, corpus_source = [], None
    for index in range(opts.rounds):
        events = submitted_events(ctx["run"], 50 + index, opts.queued, opts.approvers)
        bar.set_description(f"C: round {index + 1}/{opts.rounds} queueing {opts.queued}")
        queue_deliveries(ctx, events, f"notify-writer-c{index + 1}")
        record = {"round": index + 1}
        order = (OURS, BARE) if index % 2 == 0 or corpus_source is None else (BARE, OURS)
        record["order"] = list(order)
        for name in order:
            bar.set_description(f"C: round {index + 1}/{opts.rounds} {name}")
            if name == OURS:
                got = run_dispatch(ctx, events, index + 1)
                corpus_source = got.pop("mails")
                clear_round(ctx["db"])
            else:
                got = run_bare(ctx, bare_corpus(corpus_source, f"c{index + 1}"), f"c{index + 1}", timeout=300)
            record[name] = got
        record["ratio"] = harness.ratio(record[OURS]["spread_throughput"], record[BARE]["spread_throughput"])
        rounds.append(record)
        bar.update(1)
    ratios = [r["ratio"] for r in rounds]
    return {
        "rounds": rounds,
        "ours_throughput": round(harness.median(r[OURS]["spread_throughput"] for r in rounds), 2),
        "bare_throughput": round(harness.median(r[BARE]["spread_throughput"] for r in rounds), 2),
        "ratio": round(harness.median(ratios), 3), "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
        "store_cpu_ms_per_msg": round(harness.median(r[OURS]["store_cpu_ms_per_msg"] or float("nan") for r in rounds), 2),
        "exactly_once": all(r[s]["missing"] == 0 and r[s]["duplicates"] == 0 for r in rounds for s in (OURS, BARE)),
        "sent_once": all(r[OURS]["email_sent"] == r[OURS]["sent"] == r[OURS]["email_tries"] for r in rounds),
    }


# --- the run ---------------------------------------------------------------------------------------------------


def bench(opts, bar: tqdm) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-notify-") as tmp_name:
        tmp = Path(tmp_name)
        procs: dict[str, Process] = {}
        client = None
        try:
            with harness.Vhost(opts.amqp_uri, "bench_notify", "notify-worker") as vhost:
                procs["store"], mongo_uri = harness.start_store("sqlite", tmp)
                procs["sink"], smtp_port, jsonl = start_sink(tmp)
                client = harness.mongo_client(mongo_uri)
                db = client[DB]
                seed_people(db, opts.approvers)
                procs["worker"] = start_worker(tmp, mongo_uri, vhost.uri, smtp_port)
                ctx = {"db": db, "amqp": vhost.uri, "sink": SinkLog(jsonl), "procs": procs, "tmp": tmp,
                       "smtp_port": smtp_port, "run": uuid.uuid4().hex[:6], "mongo": mongo_uri}
                throughput = part_throughput(ctx, opts, bar)
                rate = throughput["ours_throughput"] / 2
                lag = part_lag(ctx, opts, rate, bar)
                dispatch = part_dispatch(ctx, opts, bar)
        finally:
            if client is not None:
                client.close()
            for name in ("worker", "sink", "store"):
                if name in procs:
                    procs[name].stop()
    return {"throughput": throughput, "lag": lag, "dispatch": dispatch}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.notify", description=__doc__.splitlines()[0])
    harness.add_quick(parser, QUICK)
    parser.add_argument("--messages", type=int, help=f"submissions per stack per round (default {DEFAULTS['messages']})")
    parser.add_argument("--rounds", type=int, help=f"A/B rounds (default {DEFAULTS['rounds']})")
    parser.add_argument("--approvers", type=int, help=f"approvers the submissions go to (default {DEFAULTS['approvers']})")
    parser.add_argument("--queued", type=int, help=f"deliveries queued per round of C (default {DEFAULTS['queued']})")
    parser.add_argument("--lag-seconds", type=float, help=f"how long B publishes (default {DEFAULTS['lag_seconds']})")
    parser.add_argument("--amqp-uri", default=os.environ.get("AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/"))
    parser.add_argument("--out-dir", type=Path, default=harness.RESULTS_DIR, help="where notify.md and notify.json go")
    harness.add_strict_and_progress(parser)
    args = parser.parse_args(argv)
    harness.apply_defaults(args, DEFAULTS, QUICK)
    harness.require_positive(parser, args, ("messages", "rounds", "approvers", "queued"))
    if args.lag_seconds <= 0:
        parser.error("--lag-seconds must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "bare":
        bare(argv[1:])
        return 0
    args = parse_args(argv)
    clock = harness.RunClock.start()
    with harness.progress_bar(1 + 2 * args.rounds + 1 + args.rounds, args.progress) as bar:
        parts = bench(args, bar)
    options = {key: getattr(args, key) for key in (*DEFAULTS, "quick")}
    result = {
        **clock.record(RESULT_NAME, argv),
        "engine": "sqlite",
        "options": options,
        "notify_settings": shipped_settings(),
        "targets": {"ratio": TARGET_RATIO, "lag_p99_ms": TARGET_LAG_P99_MS},
        **parts,
    }
    result["pass"] = bool(parts["throughput"]["pass"] and parts["lag"]["pass"])
    return harness.finish(result, args, notify_report.render(result), notify_report.console_summary(result))


if __name__ == "__main__":
    sys.exit(main())
