"""The dev store's SQLite engine (deploy/dev/mongo_server.py) writes exactly what mongoeco's own would.

Its shortcut for writes whose filter names ``_id`` and more must pick the same document, or none,
for every filter shape the services send (revision and version guards, idempotency memories,
leases, outbox clears), and leave anything else to the stock engine.
"""

import copy
from datetime import UTC, datetime

import pytest
from mongoeco import MongoClient
from mongoeco.engines import SQLiteEngine
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from deploy.dev import mongo_server
from deploy.dev.mongo_server import BatchedDispatchSQLiteEngine
from services.platform.bus.outbox import with_events

T0 = datetime(2026, 3, 2, tzinfo=UTC)
T1 = datetime(2026, 3, 9, tzinfo=UTC)

DOCS = [
    {"_id": "a", "revision": 3, "v": 1, "recent": ["x1", "x2"], "outbox": [], "holder": None, "expires_at": T0},
    {"_id": "b", "revision": 1, "v": 2, "recent": [], "outbox": [{"id": "e1"}], "holder": "w1", "expires_at": T1,
     "superseded_by_id": "c"},
    {"_id": "c", "revision": 7, "nested": {"k": 1}},
]

# (filter, update, upsert) as the services send them, matching and not.
WRITES = [
    ({"_id": "a", "revision": 3}, {"$set": {"n": 1}, "$inc": {"revision": 1}}, False),
    ({"_id": "a", "revision": 2}, {"$set": {"n": 2}}, False),
    ({"_id": "b", "v": 2}, {"$set": {"v": 3}, "$push": {"recent": {"$each": ["y"], "$slice": -32}}}, False),
    ({"_id": "a", "recent": {"$ne": "x1"}}, {"$inc": {"count": 1}}, False),
    ({"_id": "a", "recent": {"$ne": "x9"}}, {"$inc": {"count": 1}, "$push": {"recent": "x9"}}, False),
    ({"_id": "new", "recent": {"$ne": "x9"}}, {"$inc": {"count": 1}, "$setOnInsert": {"unit": "u"}}, True),
    ({"_id": "a", "recent": {"$ne": "x1"}}, {"$inc": {"count": 1}}, True),  # exists, already applied: duplicate key
    ({"_id": "b", "$or": [{"expires_at": {"$lte": T0}}, {"holder": None}]}, {"$set": {"holder": "w2"}}, False),
    ({"_id": "a", "$or": [{"expires_at": {"$lte": T0}}, {"holder": None}]}, {"$set": {"holder": "w2"}}, True),
    ({"_id": "a", "outbox": {"$size": 0}}, {"$set": {"outbox_pending": False}}, False),
    ({"_id": "b", "outbox": {"$size": 0}}, {"$set": {"outbox_pending": False}}, False),
    ({"_id": "b", "superseded_by_id": {"$exists": False}}, {"$set": {"superseded_by_id": "d"}}, False),
    ({"_id": "c", "superseded_by_id": {"$exists": False}}, {"$set": {"superseded_by_id": "d"}}, False),
    ({"_id": "c", "revision": {"$lt": 9}}, {"$set": {"name": "x"}}, False),
    ({"_id": "c", "revision": {"$in": [1, 2]}}, {"$set": {"name": "y"}}, False),
    ({"_id": "c", "nested.k": 1}, {"$set": {"name": "z"}}, False),
    ({"_id": "c", "$expr": {"$gt": ["$revision", 5]}}, {"$set": {"expr": True}}, False),
    ({"_id": "missing", "revision": 1}, {"$set": {"n": 1}}, False),
]


def run(engine, tmp_path, name: str) -> list:
    client = MongoClient(engine(str(tmp_path / f"{name}.sqlite")))
    collection = client.db.items
    collection.insert_many([dict(doc) for doc in DOCS])
    outcomes = []
    for query, update, upsert in WRITES:
        try:
            result = collection.update_one(query, update, upsert=upsert)
            outcomes.append((result.matched_count, result.modified_count, result.upserted_id))
        except DuplicateKeyError:
            outcomes.append("duplicate key")
    deleted = [collection.delete_one(query).deleted_count
               for query in ({"_id": "b", "v": 9}, {"_id": "b", "v": 3}, {"_id": "nope", "v": 1})]
    found = list(collection.find({}).sort("_id", 1))
    client.close()
    return [outcomes, deleted, found]


@pytest.mark.parametrize("shape", range(len(WRITES)))
def test_each_write_picks_what_the_stock_engine_picks(tmp_path, shape):
    query, update, upsert = WRITES[shape]
    outcomes = []
    for engine in (SQLiteEngine, BatchedDispatchSQLiteEngine):
        client = MongoClient(engine(str(tmp_path / f"{engine.__name__}.sqlite")))
        collection = client.db.items
        collection.insert_many([dict(doc) for doc in DOCS])
        try:
            result = collection.update_one(query, update, upsert=upsert)
            outcome = (result.matched_count, result.modified_count, result.upserted_id)
        except DuplicateKeyError:
            outcome = "duplicate key"
        outcomes.append((outcome, list(collection.find({}).sort("_id", 1))))
        client.close()
    assert outcomes[0] == outcomes[1]


def test_a_sequence_of_writes_and_deletes_ends_the_same(tmp_path):
    assert run(BatchedDispatchSQLiteEngine, tmp_path, "ours") == run(SQLiteEngine, tmp_path, "stock")


INSERTS = [
    {"_id": "a", "again": True},  # taken: a string id
    {"_id": "fresh"},
    {"_id": 1, "n": "int"},
    {"_id": 1.0, "n": "the same number as a double"},  # taken under BSON's rules, stored under another key
    {"_id": {"k": 1}},
    {"_id": {"k": 1.0}},
]


def test_inserts_refuse_the_same_ids_as_the_stock_engine(tmp_path):
    outcomes = []
    for engine in (SQLiteEngine, BatchedDispatchSQLiteEngine):
        client = MongoClient(engine(str(tmp_path / f"{engine.__name__}.sqlite")))
        collection = client.db.items
        collection.insert_many([dict(doc) for doc in DOCS])
        refused = []
        for doc in INSERTS:
            try:
                collection.insert_one(dict(doc))
                refused.append(False)
            except DuplicateKeyError:
                refused.append(True)
        try:
            collection.update_one({"_id": "fresh"}, {"$set": {"n": 2}}, upsert=True)
            collection.update_one({"_id": "new"}, {"$set": {"n": 3}}, upsert=True)
        except DuplicateKeyError:
            refused.append("upsert")
        outcomes.append((refused, list(collection.find({}, {"_id": 1, "n": 1}).sort("_id", 1))))
        client.close()
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == [True, False, False, True, False, True]


# Reads as the services send them: relay polls, $in lists, ranges, $exists, sorted pages, and a result
# larger than one batch (the cursor is read on with getMore).
READS = [
    ({"outbox_pending": True}, None, None, 200),
    ({"outbox_pending": True}, {"outbox": 1}, None, 200),  # the relay's own projection
    ({"kind": {"$in": ["m", "x"]}}, None, [("_id", 1)], 0),
    ({"score": {"$gte": 2.5, "$lt": 40}}, {"score": 1}, [("score", -1), ("_id", 1)], 0),
    ({"superseded_by_id": {"$exists": False}, "kind": "m"}, None, [("_id", -1)], 7),
    ({"score": 3}, None, None, 0),  # an int among doubles
    ({}, {"outbox": 0}, [("_id", 1)], 0),
]


def _read_all(engine, tmp_path) -> list:
    client = MongoClient(engine(str(tmp_path / f"reads-{engine.__name__}.sqlite")))
    collection = client.db.items
    collection.create_index([("outbox_pending", 1)], name="outbox_pending")
    collection.insert_many([
        {"_id": f"d{n:03d}", "kind": "m" if n % 3 else "x", "score": n / 2 if n % 2 else n // 2,
         "outbox_pending": n % 50 == 0, "outbox": [{"id": n}], **({"superseded_by_id": "z"} if n % 7 == 0 else {})}
        for n in range(300)
    ])
    found = []
    for query, projection, sort, limit in READS:
        collection.update_one({"_id": "d001"}, {"$inc": {"touched": 1}})  # a write before each, as on a busy store
        cursor = collection.find(query, projection, batch_size=50)
        if sort:
            cursor = cursor.sort(sort)
        found.append(list(cursor.limit(limit) if limit else cursor))
    client.close()
    return found


def test_reads_find_what_the_stock_engine_finds(tmp_path):
    ours, stock = _read_all(BatchedDispatchSQLiteEngine, tmp_path), _read_all(SQLiteEngine, tmp_path)
    assert [len(rows) for rows in ours] == [6, 6, 300, 75, 7, 1, 300]
    assert ours == stock


def test_a_relay_poll_reads_the_outbox_flag_through_its_index(tmp_path):
    """The stock engine answers ``{outbox_pending: true}`` with a SQL scan of the whole collection (its index
    serves only explain), so every relay poll cost more as the collection grew; here it reads the index."""
    engine = BatchedDispatchSQLiteEngine(str(tmp_path / "poll.sqlite"))
    plans = []
    compile_plan = engine._compile_read_execution_plan

    def recording(*args, **kwargs):
        plans.append(compile_plan(*args, **kwargs))
        return plans[-1]

    engine._compile_read_execution_plan = recording
    client = MongoClient(engine)
    collection = client.db.items
    collection.create_index([("outbox_pending", 1)], name="outbox_pending")
    collection.insert_many([{"_id": f"d{n:03d}", "outbox": [], "outbox_pending": False} for n in range(200)])
    collection.update_many({"_id": {"$in": ["d007", "d150"]}}, with_events({}, [{"id": "e"}]))
    found = [doc["_id"] for doc in collection.find({"outbox_pending": True}, {"outbox": 1}).limit(200)]
    collection.update_one({"_id": "d007"}, {"$set": {"outbox": [], "outbox_pending": False}})
    after = [doc["_id"] for doc in collection.find({"outbox_pending": True}, {"outbox": 1}).limit(200)]
    client.close()
    assert sorted(found) == ["d007", "d150"] and after == ["d150"]
    polls = [plan for plan in plans if plan.semantics.filter_spec == {"outbox_pending": True}]
    assert len(polls) == 2 and all("scalar_index_entries" in plan.sql for plan in polls), [p.sql for p in polls]



def _polls_the_index_cannot_answer(engine, tmp_path) -> list:
    client = MongoClient(engine(str(tmp_path / f"unanswered-{engine.__name__}.sqlite")))
    db = client.db
    db.empty.create_index([("outbox_pending", 1)], name="outbox_pending")
    db.unindexed.insert_many([{"_id": "u1", "outbox": [{"id": "e"}], "outbox_pending": True},
                              {"_id": "u2", "outbox": [], "outbox_pending": False}])
    found = [list(db[name].find({"outbox_pending": True}, {"outbox": 1}).limit(50))
             for name in ("missing", "empty", "unindexed")]
    client.close()
    return found


def test_a_poll_the_index_cannot_answer_takes_the_stock_plan(tmp_path):
    """A relay polls collections that do not exist yet or are empty; there the planner falls back to the
    stock plan, which must not come back to the shortcut (it recursed until Python gave up, on every poll)."""
    ours = _polls_the_index_cannot_answer(BatchedDispatchSQLiteEngine, tmp_path)
    assert ours == [[], [], [{"_id": "u1", "outbox": [{"id": "e"}]}]]
    assert ours == _polls_the_index_cannot_answer(SQLiteEngine, tmp_path)


def _writes_with_images(engine, tmp_path) -> list:
    """What a client sees of each write's before and after images, and what is stored after them."""
    client = MongoClient(engine(str(tmp_path / f"images-{engine.__name__}.sqlite")))
    collection = client.db.items
    collection.insert_many([dict(doc) for doc in DOCS])
    seen = []
    before = collection.find_one_and_update({"_id": "b", "v": 2}, {"$push": {"recent": "z"}, "$inc": {"v": 1}},
                                            return_document=ReturnDocument.BEFORE)
    seen.append(copy.deepcopy(before))
    before["recent"].append("changed by the client")  # the client's copy is its own: the stored one stays
    seen.append(collection.find_one_and_update({"_id": "c"}, {"$set": {"nested.k": 2}},
                                               return_document=ReturnDocument.AFTER))
    seen.append(collection.find_one_and_update({"_id": "new"}, {"$set": {"n": 1}}, upsert=True,
                                               return_document=ReturnDocument.AFTER))
    seen.append(collection.find_one_and_replace({"_id": "a"}, {"replaced": True},
                                                return_document=ReturnDocument.BEFORE))
    seen.append(collection.find_one_and_delete({"_id": "c"}))
    seen.append(collection.update_one({"_id": "b"}, {"$set": {"holder": None}}).modified_count)
    seen.append(list(collection.find({}).sort("_id", 1)))
    client.close()
    return seen


def test_outcomes_without_their_own_copies_show_what_the_stock_engine_shows(tmp_path):
    stock = _writes_with_images(SQLiteEngine, tmp_path)
    mongo_server.share_outcome_images()
    try:
        ours = _writes_with_images(BatchedDispatchSQLiteEngine, tmp_path)
    finally:
        mongo_server.share_outcome_images(False)
    assert ours == stock
    # The before image is the document as it was; the stored one has the write, not the client's change.
    assert ours[0]["recent"] == [] and ours[0]["v"] == 2
    stored_b = next(doc for doc in ours[-1] if doc["_id"] == "b")
    assert stored_b["recent"] == ["z"] and stored_b["v"] == 3 and stored_b["holder"] is None
