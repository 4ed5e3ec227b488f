"""What a check-in costs the store on its hot path, beyond the writes it must make.

- checkins-worker: check-ins on one V2MOM handled at the same time take
  turns at its progress document (services/platform/core/locks.py), so none of
  them loses the revision guard to another and pays a read, a refused write
  and a back-off again. The benchmark's lag phase sends a V2MOM's measures
  one after another; they arrive in one relay batch and were handled at once.
  The turn's holder writes every check-in queued meanwhile with its own, and
  the document as last written is remembered, so none of them reads it
  (tests/checkins/test_checkins_worker_fewer_commands.py).
- checkins-api: the cadence a check-in's event carries is remembered for a
  few seconds (CycleSettingsRepository's ``remember_seconds``) instead of
  read on every call; a change made through the same process is seen at once.
"""

import threading
from datetime import timedelta

from services.checkins.handlers import Projection
from services.platform.core.locks import KeyedLocks
from services.checkins.repository import CycleSettingsRepository
from tests.support.checkin_events import FakeGoals, NOW, approved, checkin_data, content, recorded, v2mom_data
from v2mom.v1 import checkins_pb2

WEEKLY = checkins_pb2.CADENCE_WEEKLY
AT_ONCE = 8


def test_check_ins_on_one_v2mom_handled_at_once_never_read_it_and_write_it_at_most_once_each(recorded_store):
    db, commands = recorded_store
    projection = Projection(db, FakeGoals(), now=lambda: NOW)
    measures = [f"msr-{n}" for n in range(AT_ONCE)]
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3, content([(m, 0, 100, 1) for m in measures]))))
    # One check-in per measure, so each changes the document whatever order they are handled in.
    checkins = [
        checkin_data("v2m_ann", item_id=measure, value=10.0 + n, observed=NOW - timedelta(minutes=60 - n),
                     cadence=WEEKLY)
        for n, measure in enumerate(measures)
    ]
    before = db.progress.find_one({"_id": "v2m_ann"})["revision"]
    start = threading.Barrier(AT_ONCE)
    failures = []

    def handle(data):
        start.wait()
        try:
            projection.checkin_recorded(recorded(data))
        except Exception as error:  # noqa: BLE001 - reported below
            failures.append(error)

    def all_at_once():
        threads = [threading.Thread(target=handle, args=(data,)) for data in checkins]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

    seen = commands.during(all_at_once)

    assert not failures
    progress = [(command, query) for command, collection, query in seen if collection == "progress"]
    assert [query for command, query in progress if command == "find"] == []  # as the approval left it
    writes = [query for command, query in progress if command == "update"]
    assert 1 <= len(writes) <= AT_ONCE and all(set(query) == {"_id", "revision"} for query in writes)  # guarded
    stored = db.progress.find_one({"_id": "v2m_ann"})
    latest = {entry["item_id"]: entry["value"] for entry in stored["latest"]}
    assert latest == {measure: 10.0 + n for n, measure in enumerate(measures)}
    assert stored["revision"] == before + AT_ONCE


def test_keyed_locks_keep_only_the_keys_in_use():
    locks = KeyedLocks()
    order = []
    release = threading.Event()

    def first():
        with locks.holding("v2m_a"):
            order.append("first in")
            release.wait(10)
            order.append("first out")

    def second():
        with locks.holding("v2m_a"):
            order.append("second in")

    one = threading.Thread(target=first)
    one.start()
    while not order:
        pass
    two = threading.Thread(target=second)
    two.start()
    with locks.holding("v2m_b"):  # another key does not wait
        order.append("other key")
    release.set()
    one.join(10)
    two.join(10)

    assert order == ["first in", "other key", "first out", "second in"]
    assert locks._locks == {}


def test_the_event_cadence_is_read_once_and_a_change_through_this_process_is_seen_at_once(recorded_store):
    db, commands = recorded_store
    api = CycleSettingsRepository(db, remember_seconds=10.0)

    reads = commands.during(lambda: [api.recent_cadence("FY2027") for _ in range(5)])
    assert api.recent_cadence("FY2027") == "CADENCE_BIWEEKLY"
    assert [(command, collection) for command, collection, _ in reads] == [("find", "cycle_settings")]

    api.set_cadence("FY2027", "CADENCE_WEEKLY", "ada", NOW)
    assert api.recent_cadence("FY2027") == "CADENCE_WEEKLY"
    # GetCycleSettings and the clocks read the store, never what the API remembers.
    assert [c[1] for c in commands.during(lambda: api.cadence("FY2027"))] == ["cycle_settings"]


def test_the_worker_remembers_no_cadence(recorded_store):
    db, commands = recorded_store
    worker = CycleSettingsRepository(db)
    CycleSettingsRepository(db, remember_seconds=10.0).set_cadence("FY2027", "CADENCE_MONTHLY", "ada", NOW)

    reads = commands.during(lambda: [worker.recent_cadence("FY2027") for _ in range(3)])

    assert worker.recent_cadence("FY2027") == "CADENCE_MONTHLY"
    assert len(reads) == 3
