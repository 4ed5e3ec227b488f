"""Optimistic writes of one document (services/checkins/versioned.py) on the wire store, under contention."""

import threading

import pytest

from services.checkins import versioned
from services.checkins.versioned import Change, WriteConflict, update_versioned
from services.platform.core.errors import Aborted


def counted(current):
    return Change({"n": (current or {}).get("n", 0) + 1})


def test_racing_writers_all_land_and_none_is_lost(db):
    errors, writers, rounds = [], 8, 10

    def write_many():
        try:
            for _ in range(rounds):
                update_versioned(db.docs, "hot", counted)
        except Exception as error:  # noqa: BLE001 - the assertion below reports it
            errors.append(error)

    threads = [threading.Thread(target=write_many) for _ in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    doc = db.docs.find_one({"_id": "hot"})
    assert doc["n"] == writers * rounds and doc["revision"] == writers * rounds


def test_a_writer_that_always_loses_gives_up_with_a_conflict_the_consumer_requeues(db, monkeypatch):
    monkeypatch.setattr(versioned, "BACKOFF_SECONDS", 0.0)
    db.docs.insert_one({"_id": "contested", "n": 0, "revision": 1})
    decided = []

    def lose_every_race(current):
        decided.append(current["revision"])
        db.docs.update_one({"_id": "contested"}, {"$inc": {"revision": 1}})  # someone else gets in first
        return counted(current)

    with pytest.raises(WriteConflict) as conflict:
        update_versioned(db.docs, "contested", lose_every_race)
    assert isinstance(conflict.value, Aborted)
    assert len(decided) == versioned.ATTEMPTS and decided == sorted(set(decided))  # it read afresh every time
    assert db.docs.find_one({"_id": "contested"})["n"] == 0
