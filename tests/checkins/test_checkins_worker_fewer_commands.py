"""The worker's cheaper check-in path: documents decided on as last written, facts on one V2MOM written together,
and the relay kicked only for what got events. Each must leave exactly what the one-read-one-write-per-fact
path left: replays and late facts change nothing, another writer's change is never lost, every fact keeps its
own revision and progress_changed.

Run against the wire store, as the other projection tests (``recorded_store``: a database of the test's own
and the commands its client sends).
"""

import threading
import time
import uuid
from datetime import timedelta

import pymongo
import pytest

from services.checkins import clock_store, progress_store
from services.checkins.handlers import Projection
from services.checkins.progress_doc import ChildReport
from services.checkins.versioned import Remembered, update_versioned, Change
from tests.support.checkin_events import (
    FakeGoals, NOW, approved, checkin_data, content, corrected, outbox, progress_changed, recorded, v2mom_data,
)
from v2mom.v1 import checkins_pb2, events_pb2

WEEKLY = checkins_pb2.CADENCE_WEEKLY
THREE = content(measures=(("m1", 30, 45, 1), ("m2", 30, 45, 1), ("m3", 30, 45, 1)), methods=())


def projection_on(db) -> Projection:
    return Projection(db, FakeGoals(), now=lambda: NOW)


def approve(projection: Projection, v2mom_id: str = "v2m_ann", parent_id: str = "") -> None:
    projection.v2mom_approved(approved(v2mom_data(v2mom_id, 2, THREE, parent_id=parent_id)))


def checkin(item_id: str, value: float, hours_ago: float, v2mom_id: str = "v2m_ann", checkin_id: str | None = None):
    return recorded(checkin_data(v2mom_id, item_id=item_id, value=value, observed=NOW - timedelta(hours=hours_ago),
                                 cadence=WEEKLY, checkin_id=checkin_id))


def progress_events(db) -> list[dict]:
    return [event["data"] for event in outbox(db, progress_store.PROGRESS, "progress_changed")]


def revisions(db) -> list[int]:
    return [int(data["revision"]) for data in progress_events(db)]  # int64: a string in proto3 JSON


def comparable(db, v2mom_id: str = "v2m_ann") -> dict:
    doc = db[progress_store.PROGRESS].find_one({"_id": v2mom_id}, {"outbox": 0, "outbox_pending": 0, "update_time": 0})
    for entry in doc["latest"]:
        entry.pop("checkin_id")
    return doc


@pytest.fixture
def second_db(mongo_uri):
    client = pymongo.MongoClient(mongo_uri, tz_aware=True)
    name = f"checkins_seq_{uuid.uuid4().hex[:10]}"
    yield client[name]
    client.drop_database(name)
    client.close()


# --- deciding on the document as last written ----------------------------------------------------------


def test_a_check_in_after_the_approval_writes_without_reading(recorded_store):
    db, commands = recorded_store
    projection = projection_on(db)
    approve(projection)

    seen = commands.during(lambda: projection.checkin_recorded(checkin("m1", 40.0, 5)))

    assert sorted((command, collection) for command, collection, _ in seen) == [
        ("update", "item_clocks"), ("update", "progress")]
    assert db.progress.find_one({"_id": "v2m_ann"})["latest"][0]["value"] == 40.0


def test_a_replay_or_a_late_check_in_reads_and_changes_nothing(recorded_store):
    db, commands = recorded_store
    projection = projection_on(db)
    approve(projection)
    first = checkin("m1", 40.0, 5)
    projection.checkin_recorded(first)
    before = db.progress.find_one({"_id": "v2m_ann"})

    replayed = commands.during(lambda: projection.checkin_recorded(first))
    late = commands.during(lambda: projection.checkin_recorded(checkin("m1", 33.0, 9)))

    # The memory says there is nothing to do; only the stored documents may say so: each is read, none written.
    assert sorted((c, coll) for c, coll, _ in replayed) == sorted((c, coll) for c, coll, _ in late) == [
        ("find", "item_clocks"), ("find", "progress")]
    assert db.progress.find_one({"_id": "v2m_ann"}) == before
    assert revisions(db) == [1, 2]  # the approval's, the first check-in's


def test_another_writer_in_between_is_never_overwritten(recorded_store):
    """Two replicas (two projections) write the same V2MOM in turn: each one's memory is stale after the
    other's write, so its guarded write is refused, it reads, and decides again."""
    db, commands = recorded_store
    one, other = projection_on(db), projection_on(db)
    approve(one)
    one.checkin_recorded(checkin("m1", 40.0, 6))
    other.checkin_recorded(checkin("m2", 45.0, 5))

    seen = commands.during(lambda: one.checkin_recorded(checkin("m3", 33.0, 4)))

    progress = [(command, query) for command, collection, query in seen if collection == "progress"]
    assert [command for command, _ in progress] == ["update", "find", "update"]  # refused, read, written
    doc = db.progress.find_one({"_id": "v2m_ann"})
    assert sorted((entry["item_id"], entry["value"]) for entry in doc["latest"]) == [
        ("m1", 40.0), ("m2", 45.0), ("m3", 33.0)]
    assert doc["revision"] == 4
    assert revisions(db) == [1, 2, 3, 4]
    clocks = {clock["item_id"]: clock for clock in db.item_clocks.find({"v2mom_id": "v2m_ann"})}
    assert {item: clock["last_checkin_time"] for item, clock in clocks.items()} == {
        "m1": NOW - timedelta(hours=6), "m2": NOW - timedelta(hours=5), "m3": NOW - timedelta(hours=4)}


def test_a_fact_the_memory_calls_late_counts_when_another_writer_corrected_the_newer_one(recorded_store):
    """The memory holds m1 observed 2 h ago; another replica has since applied its correction, observed 8 h ago.
    A check-in observed 5 h ago is late by the memory, and newest by the store: the store decides."""
    db, _ = recorded_store
    one, other = projection_on(db), projection_on(db)
    approve(one)
    one.checkin_recorded(checkin("m1", 40.0, 2, checkin_id="chk_newer"))
    fix = checkin_data("v2m_ann", item_id="m1", value=41.0, observed=NOW - timedelta(hours=8), cadence=WEEKLY,
                       supersedes_id="chk_newer")
    other.checkin_corrected(corrected(fix))

    one.checkin_recorded(checkin("m1", 43.0, 5, checkin_id="chk_between"))

    latest = db.progress.find_one({"_id": "v2m_ann"})["latest"]
    assert [(entry["checkin_id"], entry["value"]) for entry in latest] == [("chk_between", 43.0)]


def test_the_timer_moving_a_clock_is_not_undone_by_a_remembered_clock(recorded_store):
    db, _ = recorded_store
    projection = projection_on(db)
    approve(projection)
    projection.checkin_recorded(checkin("m1", 40.0, 30 * 24))  # a month ago: stale by now (weekly)
    clock_id = "v2m_ann/measure/m1"

    clock_store.advance_due(db, NOW + timedelta(days=1))  # the timer: another Clocks, another memory
    moved = db.item_clocks.find_one({"_id": clock_id})
    projection.checkin_recorded(checkin("m2", 40.0, 1))  # another clock: m1's memory stays stale

    assert moved["staleness"] != "FRESH"
    assert db.item_clocks.find_one({"_id": clock_id})["staleness"] == moved["staleness"]
    projection.checkin_recorded(checkin("m1", 41.0, 0.5))  # the stale memory is refused, read again
    clock = db.item_clocks.find_one({"_id": clock_id})
    assert clock["staleness"] == "FRESH" and clock["revision"] == moved["revision"] + 1


def test_a_document_deleted_behind_the_memory_is_created_again(recorded_store):
    db, _ = recorded_store
    memory = Remembered()

    def put(value):
        return lambda current: Change({"value": value, "seen": (current or {}).get("value")})

    update_versioned(db.things, "x", put(1), memory=memory)
    db.things.delete_one({"_id": "x"})
    update_versioned(db.things, "x", put(2), memory=memory)

    assert db.things.find_one({"_id": "x"}) == {"_id": "x", "value": 2, "revision": 1}


def test_the_memory_is_bounded_and_returns_copies():
    memory = Remembered(size=2)
    for name in ("a", "b", "c"):
        memory.keep(name, {"_id": name, "list": [1]})
    memory.get("b")["list"].append(2)

    assert memory.get("a") is None
    assert memory.get("b") == {"_id": "b", "list": [1]}


# --- facts on one V2MOM written together ----------------------------------------------------------------


def queue_while_held(projection: Projection, v2mom_id: str, envelopes: list[dict]) -> list[threading.Thread]:
    """Starts one handler per envelope while the V2MOM's turn is held, and returns once all have queued."""
    threads = []
    for envelope in envelopes:  # one after another, so the queue keeps their order
        thread = threading.Thread(target=projection.checkin_recorded, args=(envelope,))
        thread.start()
        threads.append(thread)
        deadline = time.monotonic() + 10
        while len(projection.progress._queued.get(v2mom_id, [])) < len(threads):
            assert time.monotonic() < deadline, "a handler never queued"
            time.sleep(0.005)
    return threads


def test_check_ins_waiting_for_one_v2mom_are_written_together_each_with_its_own_event(recorded_store, second_db):
    db, commands = recorded_store
    projection = projection_on(db)
    approve(projection)
    envelopes = [checkin("m1", 40.0, 6), checkin("m2", 45.0, 5), checkin("m1", 40.0, 6), checkin("m3", 33.0, 4),
                 checkin("m2", 31.0, 9)]
    envelopes[2] = envelopes[0]  # a replay inside the batch; the last is older than m2's first: late

    commands.seen, commands.recording = [], True
    with projection.progress._turns.holding("v2m_ann"):
        threads = queue_while_held(projection, "v2m_ann", envelopes)
    for thread in threads:
        thread.join(10)
    commands.recording = False

    progress_writes = [c for c in commands.seen if c[1] == "progress"]
    assert [command for command, _, _ in progress_writes] == ["update"]  # one write for the five
    events = progress_events(db)
    assert [(int(data["revision"]), data.get("itemId")) for data in events] == [
        (1, ""), (2, "m1"), (3, "m2"), (4, "m3")]
    assert [data.get("previousProgressPercent", 0.0) for data in events[1:]] == [
        data.get("progressPercent", 0.0) for data in events[:-1]]  # each from where the fact before it left it

    # The same facts one at a time, each in its own write: the same document.
    sequential = projection_on(second_db)
    approve(sequential)
    for envelope in envelopes:
        sequential.checkin_recorded(envelope)
    assert comparable(db) == comparable(second_db)
    assert [(d["revision"], d.get("itemId"), d.get("progressPercent")) for d in progress_events(second_db)] == [
        (d["revision"], d.get("itemId"), d.get("progressPercent")) for d in events]


def test_a_batch_whose_write_fails_leaves_each_fact_to_its_own_turn(recorded_store):
    db, _ = recorded_store
    projection = projection_on(db)
    approve(projection)
    store = projection.progress
    failures = []
    real = store._change_all

    def fail_once(v2mom_id, steps):
        if len(steps) > 1 and not failures:
            failures.append(len(steps))
            raise RuntimeError("the store went away")
        return real(v2mom_id, steps)

    store._change_all = fail_once
    errors = []

    def handle(envelope):
        try:
            projection.checkin_recorded(envelope)
        except RuntimeError:
            errors.append(envelope)

    envelopes = [checkin("m1", 40.0, 6), checkin("m2", 45.0, 5), checkin("m3", 33.0, 4)]
    threads = []
    with store._turns.holding("v2m_ann"):
        for envelope in envelopes:
            threads.append(threading.Thread(target=handle, args=(envelope,)))
            threads[-1].start()
            while len(store._queued.get("v2m_ann", [])) < len(threads):
                time.sleep(0.005)
    for thread in threads:
        thread.join(10)

    assert failures == [3] and len(errors) == 1  # only the turn's holder saw the failure (its handler retries)
    failed = errors[0]["data"]["checkin"]["itemId"]
    doc = db.progress.find_one({"_id": "v2m_ann"})
    # The others took their own turns.
    assert sorted(entry["item_id"] for entry in doc["latest"]) == sorted({"m1", "m2", "m3"} - {failed})
    projection.checkin_recorded(errors[0])  # the holder's redelivery
    assert sorted(entry["item_id"] for entry in db.progress.find_one({"_id": "v2m_ann"})["latest"]) == ["m1", "m2", "m3"]


def test_children_reports_waiting_for_one_parent_are_written_together(recorded_store):
    db, commands = recorded_store
    projection = projection_on(db)
    approve(projection, "v2m_parent")
    store = projection.progress
    results = []

    commands.seen, commands.recording = [], True
    with store._turns.holding("v2m_parent"):
        threads = []
        for n, child in enumerate(("v2m_a", "v2m_b", "v2m_a")):
            report = ChildReport(child, 3 + n, 10.0 * (n + 1))
            threads.append(threading.Thread(target=lambda r=report: results.append(store.apply_child("v2m_parent", r))))
            threads[-1].start()
            while len(store._queued.get("v2m_parent", [])) < len(threads):
                time.sleep(0.005)
    for thread in threads:
        thread.join(10)
    commands.recording = False

    assert [c[0] for c in commands.seen if c[1] == "progress"] == ["update"]
    doc = db.progress.find_one({"_id": "v2m_parent"})
    assert [(c["v2mom_id"], c["revision"], c["tree_progress_percent"]) for c in doc["children"]] == [
        ("v2m_a", 5, 30.0), ("v2m_b", 4, 20.0)]
    assert revisions(db) == [1, 2, 3, 4]


# --- what the worker kicks its relay for ------------------------------------------------------------------


def test_handlers_name_only_the_collections_they_wrote_events_into(cdb):
    projection = projection_on(cdb)
    approve(projection, "v2m_parent")
    approve(projection, "v2m_child", parent_id="v2m_parent")
    first = checkin("m1", 40.0, 5, v2mom_id="v2m_child")

    assert projection.checkin_recorded(first) == {"progress"}
    assert projection.checkin_recorded(first) == frozenset()  # a replay writes nothing
    child_event = [e for e in outbox(cdb, "progress", "progress_changed") if e["data"]["v2momId"] == "v2m_child"][-1]
    assert projection.progress_changed(child_event) == {"progress"}  # the parent's tree moved
    assert projection.progress_changed(child_event) == frozenset()  # the same report again
    top = events_pb2.ProgressEventData(v2mom_id="v2m_parent", revision=9, tree_progress_percent=5.0)
    assert projection.progress_changed(progress_changed(top)) == frozenset()  # no parent: nothing written
