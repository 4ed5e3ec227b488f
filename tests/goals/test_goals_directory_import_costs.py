"""What one ImportDirectory call costs the store beyond its rows (services/goals/directory_import.py): a file
sent in parts counts the directory once, reads pending references only when someone arrives, prunes old
confirmations at most every PRUNE_EVERY, and finds the row that would terminate the caller in the records it
reads anyway. Every command the importer sends is recorded by a pymongo command listener on the wire store."""

import uuid
from datetime import UTC, datetime

import pymongo
import pytest
from pymongo import monitoring

from services.goals.directory import INDEXES, Directory
from services.goals.directory_import import DirectoryImport
from services.goals.directory_sync import DirectorySync
from services.platform.store.mongo import ensure_indexes
from tests.support.goals import build_org

PART = 10


class Recorder(monitoring.CommandListener):
    def __init__(self):
        self.commands: list[tuple[str, str, tuple]] = []

    def started(self, event):
        name = event.command_name
        target = event.command.get(name)
        query = event.command.get("filter") or {}
        self.commands.append((name, target if isinstance(target, str) else "", tuple(sorted(query))))

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass

    def count(self, name: str, collection: str, field: str | None = None) -> int:
        return sum(1 for n, c, fields in self.commands if (n, c) == (name, collection)
                   and (field is None or field in fields))


@pytest.fixture
def recorded(mongo_uri):
    recorder = Recorder()
    client = pymongo.MongoClient(mongo_uri, tz_aware=True, event_listeners=[recorder])
    db = client[f"goals_test_{uuid.uuid4().hex[:10]}"]
    try:
        ensure_indexes(db, INDEXES)
        build_org(db)
        yield db, recorder
    finally:
        client.drop_database(db.name)
        client.close()


def row(key: str, **fields) -> dict:
    return {"kind": "person", "external_id": key, "id": f"p-{key}", "effective_at": datetime.now(UTC),
            "fields": {"display_name": f"Person {key}", "email": f"{key}@acme.test", "title": "", "manager_ref": "lee",
                       "org_unit_ref": "platform", "time_zone": "Europe/Berlin", "locale": "",
                       "employment_status": "ACTIVE", "start_date": "", "end_date": "", **fields}}


def in_parts(importer: DirectoryImport, rows: list[dict], caller: str = "ada") -> None:
    for start in range(0, len(rows), PART):
        diff = importer.run([], rows[start:start + PART], dry_run=False, allow_mass_deactivation=True, refused=[],
                            caller_id=caller)
        assert diff.applied and not diff.refused, diff.refused


def test_a_reimport_in_parts_pays_little_per_part(recorded):
    db, recorder = recorded
    importer = DirectoryImport(DirectorySync(Directory(db, 0)))
    rows = [row(f"c{n:03d}") for n in range(4 * PART)]
    in_parts(importer, rows)
    recorder.commands.clear()
    changed = [row(r["external_id"], title="Changed") if n % 7 == 0 else r for n, r in enumerate(rows)]
    changed[5] = row("c005", employment_status="TERMINATED", end_date="2026-06-30")
    in_parts(importer, changed)

    assert recorder.count("count", "people") == 0, "the sizes the first import read are kept for the parts"
    assert recorder.count("find", "people", "pending_manager") == 0, "nobody arrived: no pending references read"
    assert recorder.count("find", "org_units", "pending_leader") == 0
    assert recorder.count("find", "directory_confirmations", "created_at") == 0, "pruned by the first import"
    assert recorder.count("update", "people") == 4, "one bulk write per part that changed someone"
    # The terminated row is checked against the caller from the view: no look-up of its own.
    assert recorder.count("find", "people", "external_id") <= 4 * 2, recorder.commands
    stored = {p["external_id"]: p for p in db.people.find({"external_id": {"$regex": "^c"}})}
    assert stored["c005"]["active"] is False and stored["c007"]["title"] == "Changed"


def test_an_arrival_still_resolves_what_waited_for_it(recorded):
    db, recorder = recorded
    sync = DirectorySync(Directory(db, 0))
    importer = DirectoryImport(sync)
    sync.upsert_person(row("r1", manager_ref="boss"))  # the manager is not known yet: pending (an import refuses it)
    assert db.people.find_one({"external_id": "r1"})["pending_manager"] == "boss"
    recorder.commands.clear()
    in_parts(importer, [row("boss")])
    assert recorder.count("find", "people", "pending_manager") == 1
    assert db.people.find_one({"external_id": "r1"})["manager_id"] == "p-boss"


def test_the_caller_cannot_terminate_themselves_through_the_view(recorded):
    db, _ = recorded
    importer = DirectoryImport(DirectorySync(Directory(db, 0)))
    in_parts(importer, [row("me")])
    diff = importer.run([], [row("me", employment_status="TERMINATED")], dry_run=False,
                        allow_mass_deactivation=True, refused=[], caller_id="p-me")
    assert not diff.applied and [r["reason"] for r in diff.refused] == ["you cannot terminate yourself"]
    assert db.people.find_one({"external_id": "me"})["active"] is True
