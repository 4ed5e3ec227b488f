"""The MongoDB connection each service uses for its own database.

Works against real MongoDB and the mongoeco wire server alike; only features
both support are used (see docs/architecture.md, "Storage").
"""

from dataclasses import dataclass

import pymongo
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from ..core.config import is_production


def connect(uri: str, app_name: str) -> pymongo.MongoClient:
    # A short server-selection timeout makes a missing store fail fast and clearly.
    return pymongo.MongoClient(uri, appname=app_name, serverSelectionTimeoutMS=5000, tz_aware=True,
                               **durability(uri))


def durability(uri: str) -> dict:
    """In production, a write is acknowledged only once a majority of the replica set has it, so a failover
    never rolls back what a caller was told succeeded (or an outbox event that went with it); a write or read
    cut off by a primary change is retried once on the new primary. A ``w=`` in MONGO_URI wins."""
    if not is_production() or "w=" in uri.partition("?")[2]:
        return {}
    return {"w": "majority", "retryWrites": True, "retryReads": True}


@dataclass(frozen=True)
class Index:
    collection: str
    keys: list[tuple[str, int]]
    name: str
    unique: bool = False
    partial: dict | None = None


def ensure_indexes(db: Database, indexes: list[Index]) -> None:
    """Creates every index the queries need; safe to run on every start."""
    for index in indexes:
        options = {"name": index.name, "unique": index.unique}
        if index.partial:
            options["partialFilterExpression"] = index.partial
        db[index.collection].create_index(index.keys, **options)


def drop_retired_indexes(db: Database, retired: dict[str, list[str]]) -> None:
    """Drops indexes a service no longer declares, by collection: each one still costs every write."""
    for collection, names in retired.items():
        present = {index["name"] for index in db[collection].list_indexes()}
        for name in names:
            if name in present:
                db[collection].drop_index(name)


def matching(**fields) -> dict:
    """An equality filter on the fields given a value; an empty value ("", None) means any, as list RPCs read it."""
    return {field: value for field, value in fields.items() if value not in ("", None)}


def after_id(query: dict, after: str | None) -> dict:
    """The query limited to ids after ``after`` (keyset paging on ``_id``); unchanged without one."""
    return {**query, "_id": {"$gt": after}} if after else query


# mongoeco's SQLite engine (the store `make run` keeps in var/) turns `$in` into SQL: an empty list on an
# indexed field is an SQL syntax error, and more than about 500 values is "Expression tree is too large".
# MongoDB takes both. So a list is de-duplicated, never sent empty, and sent in chunks of this many.
IN_CHUNK = 200


def distinct(values) -> list:
    """The values once each, in their first order."""
    return list(dict.fromkeys(values))


def _chunks(values) -> list[list]:
    unique = distinct(values)
    return [unique[start:start + IN_CHUNK] for start in range(0, len(unique), IN_CHUNK)]


def find_in(collection: Collection, field: str, values, query: dict | None = None, projection: dict | None = None,
            sort: tuple[str, ...] = (), limit: int = 0, index: str | None = None) -> list[dict]:
    """The documents whose ``field`` is one of ``values`` (and that match ``query``), ascending by ``sort``.

    No values: no documents, and no round trip. A ``limit`` applies to the merged answer, so keyset pages
    over many chunks are still the first ``limit`` in order. ``index`` names the index the query must use
    (a missing one is an error, not a scan).
    """
    found: list[dict] = []
    chunks = _chunks(values)
    for chunk in chunks:
        cursor = collection.find({**(query or {}), field: {"$in": chunk}}, projection)
        if index:
            cursor = cursor.hint(index)
        if sort:
            cursor = cursor.sort([(key, 1) for key in sort])
        found.extend(cursor.limit(limit) if limit else cursor)
    if len(chunks) > 1 and sort:
        found.sort(key=lambda doc: tuple(doc.get(key) for key in sort))
    return found[:limit] if limit else found


def update_in(collection: Collection, field: str, values, query: dict, update: dict) -> int:
    """``update_many`` on the documents whose ``field`` is one of ``values``; how many it changed."""
    return sum(collection.update_many({**query, field: {"$in": chunk}}, update).modified_count
               for chunk in _chunks(values))


def upsert_if(collection: Collection, guard: dict, update: dict) -> bool:
    """Upserts the document ``guard`` finds by its ``_id`` where the guard holds; True when it wrote.

    An existing document the guard refuses (it holds something newer, or the same replayed) makes the upsert
    try to insert its ``_id`` again: that duplicate key is the answer "no", not an error.
    """
    try:
        result = collection.update_one(guard, update, upsert=True)
    except DuplicateKeyError:
        return False
    return result.modified_count == 1 or result.upserted_id is not None
