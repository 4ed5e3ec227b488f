"""The schedules store on the wire Mongo server: leases that one claimant wins, cancellation by key, done under a lease."""

import threading
from datetime import UTC, datetime, timedelta

from services.notify import schedules
from services.notify.schedules import Schedules

T0 = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)


def add(store, name, due, key="approval:v2m_1", **payload):
    return store.add(schedules.schedule_id("test", name), "test", key, due, payload, T0)


def test_adding_twice_keeps_the_first(notify_db):
    store = Schedules(notify_db)
    assert add(store, "a", T0, n=1) and not add(store, "a", T0, n=2)
    assert store.get(schedules.schedule_id("test", "a"))["payload"] == {"n": 1}


def test_only_due_waiting_schedules_are_claimed_earliest_first_and_each_by_one_claimant(notify_db):
    store = Schedules(notify_db)
    add(store, "late", T0 + timedelta(hours=1))
    add(store, "second", T0 - timedelta(minutes=1))
    add(store, "first", T0 - timedelta(minutes=2))
    claimed = []

    def claimant():
        while (schedule := store.claim_due(T0, 30)) is not None:
            claimed.append(schedule["_id"])

    threads = [threading.Thread(target=claimant) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted([schedules.schedule_id("test", "first"), schedules.schedule_id("test", "second")])


def test_a_lost_lease_cannot_mark_done_and_a_cancelled_schedule_is_never_claimed(notify_db):
    store = Schedules(notify_db)
    add(store, "a", T0)
    first = store.claim_due(T0, 30)
    second = store.claim_due(T0 + timedelta(seconds=31), 30)
    assert first["_id"] == second["_id"]
    assert not store.done(first, T0) and store.done(second, T0)
    assert store.claim_due(T0 + timedelta(hours=1), 30) is None
    add(store, "b", T0, key="item:v2m_1/ITEM_KIND_METHOD/m1")
    assert store.cancel("item:v2m_1/ITEM_KIND_METHOD/m1", T0) == 1
    assert store.cancel("item:v2m_1/ITEM_KIND_METHOD/m1", T0) == 0
    assert store.claim_due(T0 + timedelta(hours=1), 30) is None
