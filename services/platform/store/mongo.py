"""The MongoDB connection each service uses for its own database.

Works against real MongoDB and the mongoeco wire server alike; only features
both support are used (see docs/architecture.md, "Storage").
"""

from dataclasses import dataclass

import pymongo
from pymongo.database import Database


def connect(uri: str, app_name: str) -> pymongo.MongoClient:
    # A short server-selection timeout makes a missing store fail fast and clearly.
    return pymongo.MongoClient(uri, appname=app_name, serverSelectionTimeoutMS=5000, tz_aware=True)


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
