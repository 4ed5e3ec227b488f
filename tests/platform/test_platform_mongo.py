"""Index upkeep and `$in` lists against the wire Mongo server."""

import uuid

import pymongo
import pytest
from pymongo.errors import OperationFailure

from services.checkins import repository
from services.platform.store.mongo import Index, drop_retired_indexes, ensure_indexes, find_in, update_in, upsert_if
from tests.support.mongo import Commands


def index_names(db, collection: str) -> set[str]:
    return {index["name"] for index in db[collection].list_indexes()}


def test_retired_indexes_are_dropped_and_declared_ones_stay(db):
    ensure_indexes(db, [
        Index("things", [("owner", 1), ("key", 1)], name="old_unique", unique=True, partial={"key": {"$exists": True}}),
        Index("things", [("owner", 1)], name="by_owner"),
    ])
    db.things.insert_one({"_id": 1, "owner": "ann", "key": "k"})

    drop_retired_indexes(db, {"things": ["old_unique", "never_existed"]})
    drop_retired_indexes(db, {"things": ["old_unique"]})  # again, as on every start

    assert index_names(db, "things") == {"_id_", "by_owner"}
    db.things.insert_one({"_id": 2, "owner": "ann", "key": "k"})  # the unique rule is gone with it
    assert db.things.count_documents({}) == 2


def test_checkins_never_retire_an_index_they_still_declare():
    declared = {(index.collection, index.name) for index in repository.INDEXES}
    retired = {(collection, name) for collection, names in repository.RETIRED_INDEXES.items() for name in names}
    assert not declared & retired


@pytest.fixture
def sqlite_db(sqlite_mongo_uri):
    """A database on the SQLite engine, the store `make run` keeps, with a commands listener."""
    commands = Commands()
    client = pymongo.MongoClient(sqlite_mongo_uri, event_listeners=[commands])
    name = f"in_lists_{uuid.uuid4().hex[:10]}"
    yield client[name], commands
    client.drop_database(name)
    client.close()


def test_the_sqlite_store_refuses_an_empty_or_long_in_so_find_in_sends_neither(sqlite_db):
    db, commands = sqlite_db
    ensure_indexes(db, [Index("things", [("owner", 1)], name="by_owner")])
    db.things.insert_many([{"_id": f"t{i:04}", "owner": f"p{i:03}"} for i in range(300)])
    with pytest.raises(OperationFailure):  # what the stores sent before find_in: INTERNAL in the RPC
        list(db.things.find({"owner": {"$in": []}}))
    with pytest.raises(OperationFailure):
        list(db.things.find({"owner": {"$in": [f"p{i:03}" for i in range(1000)]}}))

    assert commands.during(lambda: find_in(db.things, "owner", [])) == []  # nothing, and no round trip
    owners = [f"p{i:03}" for i in reversed(range(1000))] + ["p001"]
    everything = find_in(db.things, "owner", owners, projection={"owner": 1})
    assert sorted(doc["_id"] for doc in everything) == [f"t{i:04}" for i in range(300)]  # each once
    page = find_in(db.things, "owner", owners, {"_id": {"$gt": "t0100"}}, {"owner": 1}, ("_id",), 5)
    assert [doc["_id"] for doc in page] == ["t0101", "t0102", "t0103", "t0104", "t0105"]  # merged, in order


def test_update_in_changes_every_listed_document_and_sends_nothing_for_none(sqlite_db):
    db, commands = sqlite_db
    ensure_indexes(db, [Index("things", [("owner", 1)], name="by_owner")])
    db.things.insert_many([{"_id": f"t{i:04}", "owner": f"p{i:03}", "done": False} for i in range(300)])
    assert commands.during(lambda: update_in(db.things, "owner", [], {}, {"$set": {"done": True}})) == []
    changed = update_in(db.things, "owner", [f"p{i:03}" for i in range(250)] * 2, {"done": False}, {"$set": {"done": True}})
    assert changed == 250 and db.things.count_documents({"done": True}) == 250


def test_upsert_if_writes_a_new_or_guarded_document_and_says_no_to_a_newer_one(db):
    def newer(revision):
        return upsert_if(db.things, {"_id": "t", "revision": {"$lt": revision}}, {"$set": {"revision": revision}})

    assert newer(2) is True, "inserted"
    assert newer(3) is True, "updated where the guard holds"
    assert newer(3) is False and newer(1) is False, "the same or an older revision: the duplicate key means no"
    assert db.things.find_one({"_id": "t"})["revision"] == 3


def test_production_writes_wait_for_a_majority_and_retry_across_a_failover(monkeypatch, mongo_uri):
    from services.platform.store.mongo import connect, durability

    monkeypatch.setenv("V2MOM_ENV", "production")
    assert durability("mongodb://a,b,c/?replicaSet=rs0") == {"w": "majority", "retryWrites": True, "retryReads": True}
    assert durability("mongodb://a,b,c/?replicaSet=rs0&w=1") == {}, "the operator's own write concern wins"
    client = connect(mongo_uri, "durability-test")
    try:
        assert client.write_concern.document == {"w": "majority"}
        assert client.options.retry_writes and client.options.retry_reads
        collection = client["durability_test"]["things"]
        assert collection.insert_one({"_id": 1}).acknowledged, "the wire store takes majority writes too"
    finally:
        client.drop_database("durability_test")
        client.close()


def test_development_keeps_the_driver_defaults(monkeypatch):
    from services.platform.store.mongo import durability

    monkeypatch.delenv("V2MOM_ENV", raising=False)
    assert durability("mongodb://127.0.0.1:27017/") == {}
