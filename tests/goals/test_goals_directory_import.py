"""ImportDirectory's bulk path over gRPC and on the store (services/goals/directory_import.py, directory_batch.py):
an unchanged row writes nothing and its version is kept by a confirmation that later changes respect, the store
is read and written a few times per call rather than per row, references that waited for a person resolve,
and a write lost to a concurrent change goes through directory sync alone."""

import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from services.goals import directory_batch
from services.goals.directory_batch import key_runs, span
from services.goals.directory import CONFIRMATIONS, INDEXES, Directory
from services.goals.directory_import import DirectoryImport
from services.goals.directory_sync import DirectorySync
from services.platform.store.mongo import ensure_indexes
from tests.support.directory import directory_caller, hire
from tests.support.goals import ADMIN
from v2mom.v1 import common_pb2, directory_pb2, events_pb2

D = directory_pb2
TERMINATED = common_pb2.EMPLOYMENT_STATUS_TERMINATED


@pytest.fixture
def hr(isolated_goals):
    return directory_caller(isolated_goals, ADMIN, timeout=30)


def team(prefix: str, size: int, **fields) -> list:
    """A lead under lee and ``size - 1`` reports, reports first (the import orders them)."""
    lead = hire(f"{prefix}0", manager="lee", **fields)
    return [hire(f"{prefix}{n}", manager=f"{prefix}0", **fields) for n in range(1, size)] + [lead]


def revisions(db, prefix: str) -> dict:
    return {p["external_id"]: (p["revision"], len(p.get("outbox") or []))
            for p in db.people.find({"external_id": {"$regex": f"^{prefix}"}})}


def opcounters(db) -> dict:
    counters = db.client.admin.command("serverStatus")["opcounters"]
    return {key: int(counters.get(key, 0)) for key in ("insert", "query", "update", "delete")}


def spent(before: dict, after: dict) -> dict:
    return {key: after[key] - before[key] for key in before}


def test_a_reimport_writes_nothing_and_the_store_is_read_per_call_not_per_row(hr, isolated_goals):
    db = isolated_goals.db
    rows = team("u", 40)
    before = opcounters(db)
    first = hr("ImportDirectory", D.ImportDirectoryRequest(people=rows))
    cost = spent(before, opcounters(db))
    assert first.applied and len(first.created) == 40
    assert cost["update"] == 0 and cost["insert"] == 40 and cost["query"] < 40, cost
    stored = revisions(db, "u")
    assert set(stored.values()) == {(1, 1)}, "one write and one event each"

    before = opcounters(db)
    again = hr("ImportDirectory", D.ImportDirectoryRequest(people=rows))
    cost = spent(before, opcounters(db))
    assert again.applied and again.unchanged == 40 and not (again.created or again.changed or again.moved)
    assert revisions(db, "u") == stored, "nothing rewritten, no event"
    assert cost["update"] == 0 and cost["insert"] == 1 and cost["query"] < 40, cost  # the one confirmation
    (confirmation,) = db[CONFIRMATIONS].find()
    assert sorted(entry["e"] for entry in confirmation["entries"]) == sorted(row.external_id for row in rows)
    assert {entry["r"] for entry in confirmation["entries"]} == {1}

    changed = [hire(row.external_id, manager=row.manager_ref, title="Staff" if n < 3 else "") for n, row in
               enumerate(rows)]
    dry = hr("ImportDirectory", D.ImportDirectoryRequest(people=changed, dry_run=True))
    assert len(dry.changed) == 3 and dry.unchanged == 37 and revisions(db, "u") == stored
    answer = hr("ImportDirectory", D.ImportDirectoryRequest(people=changed))
    assert answer.applied and len(answer.changed) == 3
    now = revisions(db, "u")
    assert sorted(key for key in now if now[key] != stored[key]) == sorted(row.external_id for row in rows[:3])
    assert all(now[row.external_id] == (2, 2) for row in rows[:3]), "one write with its event per changed row"


def test_a_late_change_loses_to_an_import_that_confirmed_the_value_and_a_later_one_wins(hr, isolated_goals):
    db, key = isolated_goals.db, f"c{uuid.uuid4().hex[:6]}"
    t1 = datetime(2026, 3, 1, tzinfo=UTC)
    t2, t3, t4 = t1 + timedelta(days=1), t1 + timedelta(days=2), t1 + timedelta(days=3)
    hr("UpsertPerson", D.UpsertPersonRequest(person=hire(key, manager="lee", title="A", at=t1)))
    stored = db.people.find_one({"external_id": key})
    confirmed = hr("ImportDirectory", D.ImportDirectoryRequest(people=[hire(key, manager="lee", title="A", at=t3)]))
    assert confirmed.unchanged == 1 and db.people.find_one({"external_id": key})["revision"] == stored["revision"]

    late = hr("UpsertPerson", D.UpsertPersonRequest(person=hire(key, manager="lee", title="B", at=t2)))
    assert late.outcome == D.CHANGE_OUTCOME_STALE and late.person.title == "A"
    # Only the end date and status at t4: the write keeps the confirmed versions of the other fields...
    gone = hr("DeactivatePerson", D.DeactivatePersonRequest(ref=key, effective_time=_stamp(t4)))
    assert gone.outcome == D.CHANGE_OUTCOME_CHANGED
    assert db.people.find_one({"external_id": key})["versions"]["title"][0].startswith(t3.date().isoformat())
    # ...so, the confirmation aside (pruned, or the revision moved on), a late title still loses.
    db[CONFIRMATIONS].delete_many({})
    late = hr("UpsertPerson", D.UpsertPersonRequest(person=hire(key, manager="lee", title="B", at=t2)))
    assert late.outcome == D.CHANGE_OUTCOME_STALE
    later = hr("UpsertPerson", D.UpsertPersonRequest(person=hire(key, manager="lee", title="B", at=t4)))
    assert later.outcome == D.CHANGE_OUTCOME_CHANGED and later.person.title == "B"


def test_a_late_change_on_the_single_path_respects_the_confirmation_without_a_write(hr, isolated_goals):
    """The order the brief's case names: A@t1 stored, an import at t3 says A, then B@t2 stays A and B@t4 is B."""
    db, key = isolated_goals.db, f"d{uuid.uuid4().hex[:6]}"
    t1 = datetime(2026, 5, 1, tzinfo=UTC)
    hr("UpsertPerson", D.UpsertPersonRequest(person=hire(key, manager="lee", title="A", at=t1)))
    hr("ImportDirectory", D.ImportDirectoryRequest(people=[hire(key, manager="lee", title="A",
                                                                at=t1 + timedelta(days=2))]))
    sync = DirectorySync(Directory(db, 0), clock=lambda: t1 + timedelta(days=10))
    change = {"kind": "person", "external_id": key, "id": f"p-{key}", "effective_at": t1 + timedelta(days=1),
              "fields": {**_fields(key), "title": "B"}}
    assert sync.upsert_person(change)[0] == "STALE"
    assert db.people.find_one({"external_id": key})["title"] == "A"
    assert sync.upsert_person({**change, "effective_at": t1 + timedelta(days=3)})[0] == "CHANGED"
    assert db.people.find_one({"external_id": key})["title"] == "B"


def test_people_waiting_for_a_manager_or_a_termination_waiting_for_a_hire_resolve_on_import(hr, isolated_goals):
    db = isolated_goals.db
    boss, report, leaver = (f"w{uuid.uuid4().hex[:6]}" for _ in range(3))
    hr("UpsertPerson", D.UpsertPersonRequest(person=hire(report, manager=boss)))
    assert db.people.find_one({"external_id": report})["pending_manager"] == boss
    sync = DirectorySync(Directory(db, 0))
    assert sync.deactivate_person(leaver, "2026-06-30", datetime.now(UTC), keep_if_unknown=True)[0] == "SCHEDULED"
    hired = datetime.now(UTC) - timedelta(days=30)  # the hire predates the termination that overtook it
    answer = hr("ImportDirectory", D.ImportDirectoryRequest(people=[hire(boss, manager="lee"),
                                                                    hire(leaver, manager=boss, at=hired)]))
    assert answer.applied and len(answer.created) == 2
    resolved = db.people.find_one({"external_id": report})
    assert resolved["manager_id"] == f"p-{boss}" and not resolved["pending_manager"]
    assert [event["type"] for event in resolved["outbox"]][-1].endswith("person_upserted")
    gone = db.people.find_one({"external_id": leaver})
    assert not gone["active"] and gone["end_date"] == "2026-06-30" and gone["manager_id"] == f"p-{boss}"
    assert db.directory_scheduled.count_documents({"waits_for": leaver}) == 0


def test_a_write_lost_to_a_concurrent_change_goes_through_directory_sync(isolated_goals, monkeypatch):
    db = isolated_goals.db
    importer = DirectoryImport(DirectorySync(Directory(db, 0)))
    rows = [_change(f"l{n}", title="One") for n in range(4)]
    importer.run([], rows, dry_run=False, allow_mass_deactivation=False, refused=[])
    flush = directory_batch.PeopleWrites.flush

    def racing(writes):
        if writes.staged:  # someone else writes l1 and creates l9 between the read and the write
            db.people.update_one({"external_id": "l1"}, {"$set": {"locale": "fr-FR"}, "$inc": {"revision": 1}})
            db.people.insert_one({"_id": "l9", "external_id": "l9", "display_name": "Early", "revision": 1})
        return flush(writes)

    monkeypatch.setattr(directory_batch.PeopleWrites, "flush", racing)
    later = [_change(f"l{n}", title="Two") for n in range(4)] + [_change("l9", title="Two")]
    diff = importer.run([], later, dry_run=False, allow_mass_deactivation=False, refused=[])
    assert diff.applied and len(diff.changed) == 4 and len(diff.created) == 1
    people = {p["external_id"]: p for p in db.people.find({"external_id": {"$in": ["l0", "l1", "l2", "l3", "l9"]}})}
    assert {p["title"] for p in people.values()} == {"Two"}
    assert people["l1"]["revision"] == 3 and people["l1"]["locale"] == "", "the import's newer locale wins"
    assert people["l0"]["revision"] == 2 and people["l9"]["display_name"] == "Person l9"
    assert all(_event_revision(p["outbox"][-1]) == p["revision"] for p in people.values())


def test_an_id_another_employee_holds_still_refuses_the_row(hr, isolated_goals):
    first, second = f"a{uuid.uuid4().hex[:6]}", f"a{uuid.uuid4().hex[:6]}"
    hr("UpsertPerson", D.UpsertPersonRequest(person=hire(first, id=f"taken-{first}")))
    with pytest.raises(grpc.RpcError) as taken:
        hr("ImportDirectory", D.ImportDirectoryRequest(people=[hire(second, id=f"taken-{first}")]))
    assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_old_confirmations_are_pruned_by_an_import(hr, isolated_goals):
    db = isolated_goals.db
    Directory(db, 0).confirm([{"e": "someone", "at": "2026-01-01T00:00:00.000+00:00", "d": "x", "r": 1}],
                             datetime.now(UTC) - timedelta(days=31))
    assert db[CONFIRMATIONS].count_documents({}) == 1
    hr("ImportDirectory", D.ImportDirectoryRequest(people=[hire(f"p{uuid.uuid4().hex[:6]}", manager="lee")]))
    assert db[CONFIRMATIONS].count_documents({}) == 0


def test_confirmations_are_found_by_person_on_the_memory_engine(mongo_uri):
    """The confirmation queries use a multikey index (entries.e) and $elemMatch; both of mongoeco's engines
    (and MongoDB) answer them."""
    _check_confirmations(mongo_uri)


def test_confirmations_are_found_by_person_on_the_sqlite_engine(sqlite_mongo_uri):
    _check_confirmations(sqlite_mongo_uri)


def _check_confirmations(uri: str) -> None:
    import pymongo

    client = pymongo.MongoClient(uri, tz_aware=True)
    db = client[f"goals_test_{uuid.uuid4().hex[:10]}"]
    try:
        ensure_indexes(db, INDEXES)
        directory, now = Directory(db, 0), datetime.now(UTC)
        entries = [{"e": f"E{n}", "at": f"2026-0{1 + n % 3}-01T00:00:00.000+00:00", "d": "d", "r": n % 2}
                   for n in range(700)]
        directory.confirm(entries, now)
        directory.confirm([{"e": "E4", "at": "2026-09-01T00:00:00.000+00:00", "d": "z", "r": 0}],
                          now - timedelta(days=40))
        assert db[CONFIRMATIONS].count_documents({}) == 3  # 500 entries a document
        assert directory.confirmed_version("E4", 0) == ["2026-09-01T00:00:00.000+00:00", "z"]
        assert directory.confirmed_version("E4", 1) is None and directory.confirmed_version("nobody", 0) is None
        assert directory.confirmed_version("E601", 1) == ["2026-02-01T00:00:00.000+00:00", "d"]
        assert directory.confirmations_since("2026-10-01", ["E4"]) == []
        since = directory.confirmations_since("2026-02-01", ["E1", "E4", "E5"])  # entries of documents reaching it
        assert sorted(entry["e"] for entry in since) == ["E1", "E4", "E4", "E5"]
        assert directory.prune_confirmations(now - timedelta(days=30)) == 1
        assert directory.confirmed_version("E4", 0) == ["2026-02-01T00:00:00.000+00:00", "d"]
    finally:
        client.drop_database(db.name)
        client.close()


def test_keys_that_run_in_order_are_read_as_one_range_each():
    runs = key_runs(["E000003", "E000001", "E000040", "E000100", "lee", "emp02", "emp003", "E000101"])
    assert runs == [("E000001", "E000003"), ("E000040", "E000040"), ("E000100", "E000101"), ("emp003", "emp003"),
                    ("emp02", "emp02"), ("lee", "lee")]
    assert span(runs) == 3 + 1 + 2 + 1 + 1 + 1


def _fields(key: str) -> dict:
    return {"display_name": f"Person {key}", "email": f"{key}@acme.test", "title": "", "manager_ref": "lee",
            "org_unit_ref": "platform", "time_zone": "Europe/Berlin", "locale": "", "employment_status": "ACTIVE",
            "start_date": "", "end_date": ""}


def _change(key: str, **fields) -> dict:
    return {"kind": "person", "external_id": key, "id": key, "effective_at": datetime.now(UTC),
            "fields": {**_fields(key), **fields}}


def _event_revision(event: dict) -> int:
    return events_pb2.PersonEventData.FromString(event["data_proto"]["value"]).revision


def _stamp(moment: datetime):
    from google.protobuf import timestamp_pb2

    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp
