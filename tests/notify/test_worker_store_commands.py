"""What one approver email costs the store, command by command (pymongo command monitoring): the
``v2mom_submitted`` handler, the dispatch pass that sends it, and the outbox relay. A budget, so a change that
adds a round trip to this path says so; and every write names its document by ``_id``."""

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


def test_a_submission_is_eight_round_trips_each_write_by_id(counted):
    trips = counted.commands.during(lambda: counted.notifier.v2mom_submitted(submitted()))
    assert trips == [
        ("findAndModify", V2MOMS),  # the copy: created, or updated under its revision guards, in one write
        ("find", "preferences"), ("find", "subscriptions"),
        ("insert", "notifications"),
        ("insert", DELIVERIES),  # INBOX (SENT, with its notification_sent) and EMAIL in one insert_many
        ("update", STATS),  # sent|…|INBOX and latency|INBOX in one bulk write
        ("insert", "schedules"),  # the SLA reminder and the skip-level escalation in one insert_many
        ("find", V2MOMS),  # did a decision land while we wrote?
    ]
    assert all("_id" in query for _, query in counted.commands.write_filters)
    assert len(counted.commands.write_filters) == 3  # the copy and the two stats documents


def test_a_replayed_submission_costs_the_same_and_writes_nothing_new(counted):
    event = submitted()
    counted.notifier.v2mom_submitted(event)
    before = {name: list(counted.db[name].find({}, {"lease_until": 0}))
              for name in ("notifications", DELIVERIES, "schedules", STATS)}
    trips = counted.commands.during(lambda: counted.notifier.v2mom_submitted(event))
    assert len(trips) == 7  # nothing new: no stats write
    after = {name: list(counted.db[name].find({}, {"lease_until": 0}))
             for name in ("notifications", DELIVERIES, "schedules", STATS)}
    assert after == before


def test_a_dispatch_pass_reads_what_is_due_once_and_costs_three_round_trips_per_email(counted):
    for n in range(3):
        counted.notifier.v2mom_submitted(submitted(v2mom_id=f"v2m_{n}"))
    trips = counted.commands.during(lambda: counted.dispatcher.run_once(50))
    assert len(counted.email.sent) == 3
    per_email = [("findAndModify", DELIVERIES), ("find", "preferences"), ("update", DELIVERIES)]
    assert trips == [("find", DELIVERIES), ("find", "notifications"), *per_email * 3,
                     ("find", DELIVERIES), ("update", STATS)]
    assert all("_id" in query for _, query in counted.commands.write_filters)
    assert counted.db[STATS].find_one({"_id": "sent|NOTIFICATION_KIND_APPROVAL_REQUESTED|CHANNEL_EMAIL"})["n"] == 3
    latency = counted.db[STATS].find_one({"_id": "latency|CHANNEL_EMAIL"})
    assert (latency["count"], latency["buckets"]["1_0"]) == (3, 3)


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
    assert len(trips) == 7 and ("update", STATS) not in trips
    assert counted.db[STATS].count_documents({}) == 0
    trips = counted.commands.during(lambda: dispatcher.run_once(50))
    assert trips[-1] == ("update", STATS) and trips.count(("update", STATS)) == 1
    assert {doc["_id"]: doc.get("n", doc.get("count")) for doc in counted.db[STATS].find()} == {
        "sent|NOTIFICATION_KIND_APPROVAL_REQUESTED|CHANNEL_INBOX": 1, "latency|CHANNEL_INBOX": 1,
        "sent|NOTIFICATION_KIND_APPROVAL_REQUESTED|CHANNEL_EMAIL": 1, "latency|CHANNEL_EMAIL": 1}
    assert "sum" not in counted.db[STATS].find_one({"_id": "latency|CHANNEL_INBOX"})  # += 0 is left out
