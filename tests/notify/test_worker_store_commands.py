"""What one approver email costs the store, command by command (pymongo command monitoring): the
``v2mom_submitted`` handler, the dispatch pass that sends it, and the outbox relay. A budget, so a change that
adds a round trip to this path says so; and every write names its document by ``_id``."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pymongo
import pytest
from pymongo import monitoring

from services.notify.deliveries import Deliveries, Stats
from services.notify.directory import People
from services.notify.dispatch import Dispatcher
from services.notify.handlers import Notifier, WorkerSettings
from services.notify.store import DELIVERIES, INDEXES, STATS, V2MOMS
from services.platform.bus.outbox import OutboxRelay
from services.platform.store.mongo import ensure_indexes
from tests.support.notify import Clock, Recorder, v2mom_event
from v2mom.v1 import goals_pb2

HANDSHAKE = {"hello", "isMaster", "ismaster", "ping", "endSessions", "buildInfo"}
T0 = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
SETTINGS = WorkerSettings(portal_url_template="https://portal.test/v2moms/{v2mom_id}", lease_seconds=30)
PEOPLE = {"olive": ("Olive Owner", "lee"), "lee": ("Lee Lead", "dana"), "dana": ("Dana Director", "")}


def submitted(v2mom_id="v2m_1"):
    return v2mom_event("v2mom_submitted", goals_pb2.V2MOM_STATE_SUBMITTED, v2mom_id=v2mom_id)


class Commands(monitoring.CommandListener):
    """Round trips as (command, collection), and each write statement's filter."""

    def __init__(self):
        self.recording = False
        self.trips: list[tuple[str, str]] = []
        self.write_filters: list[tuple[str, dict]] = []

    def started(self, event):
        if not self.recording or event.command_name in HANDSHAKE:
            return
        command = event.command
        collection = command[event.command_name]
        self.trips.append((event.command_name, collection))
        if event.command_name == "update":
            self.write_filters.extend((collection, update["q"]) for update in command["updates"])
        elif event.command_name == "findAndModify":
            self.write_filters.append((collection, command["query"]))

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass

    def during(self, action):
        self.trips, self.write_filters, self.recording = [], [], True
        try:
            action()
        finally:
            self.recording = False
        return self.trips


class Publisher:
    def __init__(self):
        self.events = []

    def publish(self, events, bodies=None):
        self.events.extend(events)
        return 0  # none unroutable

    def close(self):
        pass


@pytest.fixture
def counted(notify_settings, notify_db):
    commands = Commands()
    client = pymongo.MongoClient(notify_settings.mongo_uri, tz_aware=True, event_listeners=[commands])
    db = client[notify_db.name]
    ensure_indexes(db, INDEXES)
    people = People(db, goals=None)
    for person_id, (name, manager) in PEOPLE.items():
        people.upsert_from_event({"id": person_id, "displayName": name, "email": f"{person_id}@acme.test",
                                  "managerId": manager, "orgUnitId": "platform", "active": True}, 1)
    for person_id in PEOPLE:
        people.get(person_id)  # a running worker has them cached
    clock = Clock(T0)
    email = Recorder()
    world = type("World", (), {})()
    world.db, world.commands, world.email, world.clock = db, commands, email, clock
    world.notifier = Notifier(db, people, SETTINGS, now=clock)
    world.dispatcher = Dispatcher(db, people, email, Recorder(), SETTINGS, now=clock)
    world.publisher = Publisher()
    world.relay = OutboxRelay(db, [DELIVERIES], world.publisher, append_once=frozenset({DELIVERIES}))
    yield world
    client.close()


def test_a_submission_is_seven_round_trips_each_write_by_id(counted):
    trips = counted.commands.during(lambda: counted.notifier.v2mom_submitted(submitted()))
    assert trips == [
        ("findAndModify", V2MOMS),  # the copy: created, or updated under its revision guards, in one write
        ("find", "preferences"), ("find", "subscriptions"),
        ("insert", "notifications"),
        ("insert", DELIVERIES),  # INBOX (SENT, with its notification_sent) and EMAIL in one insert_many
        ("update", STATS),  # sent|…|INBOX and latency|INBOX in one bulk write
        ("insert", "schedules"),  # the SLA reminder and the skip-level escalation in one insert_many
    ]
    assert all("_id" in query for _, query in counted.commands.write_filters)
    assert len(counted.commands.write_filters) == 3  # the copy and the two stats documents


def test_a_replayed_submission_costs_the_same_and_writes_nothing_new(counted):
    event = submitted()
    counted.notifier.v2mom_submitted(event)
    before = {name: list(counted.db[name].find({}, {"lease_until": 0}))
              for name in ("notifications", DELIVERIES, "schedules", STATS)}
    trips = counted.commands.during(lambda: counted.notifier.v2mom_submitted(event))
    assert len(trips) == 6  # nothing new: no stats write
    after = {name: list(counted.db[name].find({}, {"lease_until": 0}))
             for name in ("notifications", DELIVERIES, "schedules", STATS)}
    assert after == before


@pytest.mark.parametrize("emails", [3, 12])
def test_a_dispatch_pass_costs_the_same_round_trips_however_many_emails_it_sends(counted, emails):
    for n in range(emails):
        counted.notifier.v2mom_submitted(submitted(v2mom_id=f"v2m_{n}"))
    trips = counted.commands.during(lambda: counted.dispatcher.run_once(50))
    assert len(counted.email.sent) == emails
    assert trips == [
        ("find", DELIVERIES),  # what is due
        ("update", DELIVERIES), ("find", DELIVERIES),  # all claimed under one token in one bulk write; those won
        ("find", "notifications"), ("find", "preferences"),  # what the batch needs, read once
        ("update", DELIVERIES),  # every SENT with its notification_sent, one bulk write
        ("update", STATS),  # the batch's counts
        ("find", DELIVERIES),  # anything written meanwhile? (nothing: the pass ends)
    ]
    assert all("_id" in query for _, query in counted.commands.write_filters)
    assert len(counted.commands.write_filters) == 2 * emails + 2  # a claim and a finish each; two stats documents
    assert counted.db[STATS].find_one({"_id": "sent|NOTIFICATION_KIND_APPROVAL_REQUESTED|CHANNEL_EMAIL"})["n"] == emails
    latency = counted.db[STATS].find_one({"_id": "latency|CHANNEL_EMAIL"})
    assert (latency["count"], latency["buckets"]["1_0"]) == (emails, emails)
    emails_ = list(counted.db[DELIVERIES].find({"channel": "CHANNEL_EMAIL"}))
    assert {(d["status"], d["tries"], len(d["outbox"])) for d in emails_} == {("SENT", 1, 1)}


def test_the_limit_holds_and_what_is_written_while_a_batch_is_sent_goes_in_the_same_pass(counted):
    for n in range(5):
        counted.notifier.v2mom_submitted(submitted(v2mom_id=f"v2m_{n}"))
    assert counted.dispatcher.run_once(2) == 2 and len(counted.email.sent) == 2
    send = counted.dispatcher.send_email

    def send_while_another_arrives(message):
        send(message)
        if len(counted.email.sent) == 3:  # a handler writes a new submission's email meanwhile
            counted.notifier.v2mom_submitted(submitted(v2mom_id="v2m_late"))
    counted.dispatcher.send_email = send_while_another_arrives
    assert counted.dispatcher.run_once(10) == 4
    assert len(counted.email.sent) == 6 and counted.email.sent[-1].recipient_email == "lee@acme.test"
    assert counted.db[DELIVERIES].count_documents({"channel": "CHANNEL_EMAIL", "status": "SENT"}) == 6


def test_a_backlog_drains_in_one_pass_a_batch_at_a_time_each_over_its_own_connection(counted):
    """More due than a batch holds: the pass goes on batch by batch (each claimed under its own lease token and
    sent over one SMTP session of its own, so a relay sees at most a batch per connection) until nothing is due."""
    for n in range(7):
        counted.notifier.v2mom_submitted(submitted(v2mom_id=f"v2m_{n}"))
    sessions = []

    class Session:
        def __init__(self):
            self.sent, self.closed = [], False
            sessions.append(self)

        def send(self, message):
            assert not self.closed
            self.sent.append(message)
            counted.email.sent.append(message)

        def close(self):
            self.closed = True
    dispatcher = Dispatcher(counted.db, counted.notifier.people, counted.email, Recorder(),
                            replace(SETTINGS, dispatch_batch=3), now=counted.clock, email_session=Session)
    assert dispatcher.run_once(1000) == 7
    assert [len(s.sent) for s in sessions] == [3, 3, 1] and all(s.closed for s in sessions)
    assert len({m.delivery_id for m in counted.email.sent}) == 7
    emails = list(counted.db[DELIVERIES].find({"channel": "CHANNEL_EMAIL"}))
    assert {(d["status"], d["tries"]) for d in emails} == {("SENT", 1)}
    assert len({d["lease_token"] for d in emails}) == 3  # one claim per batch
    assert counted.db[STATS].find_one({"_id": "sent|NOTIFICATION_KIND_APPROVAL_REQUESTED|CHANNEL_EMAIL"})["n"] == 7
    assert dispatcher.run_once(1000) == 0 and len(sessions) == 3  # nothing due: no connection opened


def test_a_pass_stops_at_its_limit_and_the_next_tick_goes_on(counted):
    for n in range(5):
        counted.notifier.v2mom_submitted(submitted(v2mom_id=f"v2m_{n}"))
    dispatcher = Dispatcher(counted.db, counted.notifier.people, counted.email, Recorder(),
                            replace(SETTINGS, dispatch_batch=2), now=counted.clock)
    assert dispatcher.run_once(3) == 3  # a batch of 2, then one of the 1 left under the limit
    assert dispatcher.run_once(3) == 2 and len(counted.email.sent) == 5


def test_a_pass_starts_no_batch_after_half_a_lease_and_the_next_tick_goes_on(counted):
    """A slow relay (each send here moves the clock 6 s on; the lease is 30 s) ends a pass after the batch that
    crossed half a lease, so a stop's grace period never waits on a long backlog; the next pass goes on."""
    for n in range(6):
        counted.notifier.v2mom_submitted(submitted(v2mom_id=f"v2m_{n}"))

    def slow(message):
        counted.email.sent.append(message)
        counted.clock.now += timedelta(seconds=6)
    dispatcher = Dispatcher(counted.db, counted.notifier.people, slow, Recorder(),
                            replace(SETTINGS, dispatch_batch=2), now=counted.clock)
    assert dispatcher.run_once(1000) == 4  # two batches: 24 s in, past the 15 s mark, no third one starts
    assert dispatcher.run_once(1000) == 2 and len(counted.email.sent) == 6


def test_the_dispatch_limits_come_from_the_environment_and_zero_stops_the_worker(monkeypatch):
    from services.platform.core.config import ConfigError

    monkeypatch.setenv("NOTIFY_DISPATCH_BATCH", "20")
    monkeypatch.setenv("NOTIFY_DISPATCH_PASS_MAX", "400")
    settings = WorkerSettings.from_env()
    assert (settings.dispatch_batch, settings.dispatch_pass_max) == (20, 400)
    for name in ("NOTIFY_DISPATCH_BATCH", "NOTIFY_DISPATCH_PASS_MAX"):
        monkeypatch.setenv(name, "0")  # a store limit of 0 would mean no limit at all
        with pytest.raises(ConfigError, match=name):
            WorkerSettings.from_env()
        monkeypatch.setenv(name, "5")


def test_a_pass_that_dies_before_its_write_sends_each_again_once_under_the_same_id(counted, monkeypatch):
    """notify-worker killed after a batch's sends and before the write that marks them: every delivery of the batch
    stays PENDING under its lease, and the next claim sends each of them once more, with the same delivery id (the
    Message-ID's), marked and announced once."""
    for n in range(4):
        counted.notifier.v2mom_submitted(submitted(v2mom_id=f"v2m_{n}"))

    def died(self):
        raise SystemExit("killed before the batch's write")
    monkeypatch.setattr(Deliveries, "flush_finishes", died)
    with pytest.raises(SystemExit):
        counted.dispatcher.run_once(50)
    monkeypatch.undo()
    first = [m.delivery_id for m in counted.email.sent]
    assert len(first) == len(set(first)) == 4
    assert counted.db[DELIVERIES].count_documents({"channel": "CHANNEL_EMAIL", "status": "PENDING"}) == 4
    assert counted.dispatcher.run_once(50) == 0  # still leased: nobody sends them meanwhile
    counted.clock.now = T0 + timedelta(seconds=SETTINGS.lease_seconds + 1)
    assert counted.dispatcher.run_once(50) == 4
    again = [m.delivery_id for m in counted.email.sent[4:]]
    assert sorted(again) == sorted(first)  # each once more, under the same id
    assert counted.dispatcher.run_once(50) == 0
    emails = list(counted.db[DELIVERIES].find({"channel": "CHANNEL_EMAIL"}))
    assert {(d["status"], d["tries"], len(d["outbox"])) for d in emails} == {("SENT", 1, 1)}
    assert counted.db[STATS].find_one({"_id": "sent|NOTIFICATION_KIND_APPROVAL_REQUESTED|CHANNEL_EMAIL"})["n"] == 4


def test_a_batch_sends_only_while_half_its_lease_is_left_and_gives_the_rest_back(counted):
    """Sends that take long (here each one moves the clock 10 s on, with a 30 s lease) stop a batch before its lease
    could lapse mid-send; the rest are released unsent, not tried, and claimed again by the next pass under a lease
    of their own."""
    for n in range(4):
        counted.notifier.v2mom_submitted(submitted(v2mom_id=f"v2m_{n}"))

    def slow(message):
        counted.email.sent.append(message)
        counted.clock.now += timedelta(seconds=10)
    counted.dispatcher.send_email = slow
    releases = []
    release = counted.dispatcher.deliveries.release
    counted.dispatcher.deliveries.release = lambda delivery, now: releases.append((delivery["_id"], now)) or release(
        delivery, now)
    assert counted.dispatcher.run_once(50) == 4  # the batch crossed half a lease: the pass ends with it
    # at 0 s and 10 s; at 20 s less than half of the first 30 s lease was left: the other two went back ...
    assert [at for _, at in releases] == [T0 + timedelta(seconds=20)] * 2
    assert counted.dispatcher.run_once(50) == 2  # the next tick's pass
    emails = {d["_id"]: d for d in counted.db[DELIVERIES].find({"channel": "CHANNEL_EMAIL"})}
    first, second = [m.delivery_id for m in counted.email.sent[:2]], [m.delivery_id for m in counted.email.sent[2:]]
    assert sorted(second) == sorted(delivery_id for delivery_id, _ in releases)
    # ... and were claimed again (due at once) and sent under a lease of their own, each once, one try each
    assert len({emails[i]["lease_token"] for i in first}) == len({emails[i]["lease_token"] for i in second}) == 1
    assert emails[first[0]]["lease_token"] != emails[second[0]]["lease_token"]
    assert {(d["status"], d["tries"]) for d in emails.values()} == {("SENT", 1)}
    assert len(set(first + second)) == len(counted.email.sent) == 4


def test_the_first_of_a_batch_goes_even_when_the_reads_before_it_took_half_the_lease(counted):
    """A store slow to answer (here the batch's reads move the clock 20 s on, with a 30 s lease) does not stall the
    pass: the first delivery is sent, as one claimed alone would be; the second, with less than half the lease
    left, goes back and is sent by the next pass under a lease of its own."""
    for n in range(2):
        counted.notifier.v2mom_submitted(submitted(v2mom_id=f"v2m_{n}"))
    notifications_by_id = counted.dispatcher.deliveries.notifications_by_id

    def slow_read(ids):
        counted.clock.now += timedelta(seconds=20)
        return notifications_by_id(ids)
    counted.dispatcher.deliveries.notifications_by_id = slow_read
    assert counted.dispatcher.run_once(50) == 2  # both claimed, the first sent, the second released
    assert counted.dispatcher.run_once(50) == 1 and len(counted.email.sent) == 2  # the next tick sends it
    emails = list(counted.db[DELIVERIES].find({"channel": "CHANNEL_EMAIL"}))
    assert {(d["status"], d["tries"]) for d in emails} == {("SENT", 1)}
    assert len({d["lease_token"] for d in emails}) == 2


def test_a_finish_whose_lease_another_replica_took_is_not_counted_and_the_others_are(counted):
    for n in range(3):
        counted.notifier.v2mom_submitted(submitted(v2mom_id=f"v2m_{n}"))
    deliveries = Deliveries(counted.db)
    claimed = deliveries.claim_many([d["_id"] for d in deliveries.due(T0, 50)], T0, 30)
    emails = [d for d in claimed if d["channel"] == "CHANNEL_EMAIL"]
    assert len(emails) == 3
    later = T0 + timedelta(seconds=31)
    taken = deliveries.claim(emails[0]["_id"], later, 30)  # our lease lapsed: another replica claimed one
    assert taken is not None
    with deliveries.finishing_together():
        for delivery in emails:
            assert deliveries.mark_sent(delivery, later) is None  # queued
    assert counted.db[STATS].find_one({"_id": "sent|NOTIFICATION_KIND_APPROVAL_REQUESTED|CHANNEL_EMAIL"})["n"] == 2
    assert counted.db[DELIVERIES].find_one({"_id": emails[0]["_id"]})["status"] == "PENDING"
    assert deliveries.mark_sent(taken, later)  # the other replica's write wins
    assert counted.db[STATS].find_one({"_id": "sent|NOTIFICATION_KIND_APPROVAL_REQUESTED|CHANNEL_EMAIL"})["n"] == 3


def test_the_relay_empties_each_delivery_outbox_in_one_write_by_id(counted):
    counted.notifier.v2mom_submitted(submitted())
    counted.dispatcher.run_once(50)
    trips = counted.commands.during(counted.relay.relay_once)
    assert trips == [("find", DELIVERIES), ("update", DELIVERIES)]
    filters = [query for _, query in counted.commands.write_filters]
    assert sorted(filters, key=lambda q: q["_id"]) == [{"_id": d["_id"]} for d in
                                                      counted.db[DELIVERIES].find({}, {"_id": 1}).sort("_id")]
    assert sorted(e["type"] for e in counted.publisher.events) == ["notification_sent", "notification_sent"]
    assert counted.db[DELIVERIES].count_documents({"outbox_pending": True}) == 0
    assert all(d["outbox"] == [] for d in counted.db[DELIVERIES].find())


def test_a_delivery_another_replica_claimed_after_the_due_query_is_passed_over(counted):
    counted.notifier.v2mom_submitted(submitted())
    deliveries = Deliveries(counted.db)
    [due] = deliveries.due(T0, 50)
    assert deliveries.claim(due["_id"], T0, 30) is not None  # the other replica
    assert deliveries.claim(due["_id"], T0, 30) is None
    assert counted.dispatcher.run_once(50) == 0 and counted.email.sent == []
    counted.clock.now = T0 + timedelta(seconds=31)  # its lease expired: ours now
    assert counted.dispatcher.run_once(50) == 1 and len(counted.email.sent) == 1


def test_as_notify_worker_wires_it_the_handler_leaves_its_counts_to_the_next_dispatch_pass(counted):
    stats = Stats(counted.db)
    notifier = Notifier(counted.db, counted.notifier.people, SETTINGS, now=counted.clock, stats=stats, fold_stats=True)
    dispatcher = Dispatcher(counted.db, counted.notifier.people, counted.email, Recorder(), SETTINGS, now=counted.clock,
                            stats=stats)
    trips = counted.commands.during(lambda: notifier.v2mom_submitted(submitted()))
    assert len(trips) == 6 and ("update", STATS) not in trips
    assert counted.db[STATS].count_documents({}) == 0
    trips = counted.commands.during(lambda: dispatcher.run_once(50))
    assert trips.count(("update", STATS)) == 1  # the handler's counts go with the batch's, in its one stats write
    assert trips[trips.index(("update", STATS)) - 1] == ("update", DELIVERIES)
    assert {doc["_id"]: doc.get("n", doc.get("count")) for doc in counted.db[STATS].find()} == {
        "sent|NOTIFICATION_KIND_APPROVAL_REQUESTED|CHANNEL_INBOX": 1, "latency|CHANNEL_INBOX": 1,
        "sent|NOTIFICATION_KIND_APPROVAL_REQUESTED|CHANNEL_EMAIL": 1, "latency|CHANNEL_EMAIL": 1}
    assert "sum" not in counted.db[STATS].find_one({"_id": "latency|CHANNEL_INBOX"})  # += 0 is left out


def test_a_pass_with_nothing_due_still_writes_what_the_handlers_counted(counted):
    stats = Stats(counted.db)
    dispatcher = Dispatcher(counted.db, counted.notifier.people, counted.email, Recorder(), SETTINGS, now=counted.clock,
                            stats=stats)
    stats.add("reminders|2026-06-10", {"reminded": 1})  # as a handler folds it
    trips = counted.commands.during(lambda: dispatcher.run_once(50))
    assert trips == [("find", DELIVERIES), ("update", STATS)]
    assert counted.db[STATS].find_one({"_id": "reminders|2026-06-10"})["reminded"] == 1
