"""The rebuild lease: while RebuildAggregates runs, the worker leaves events in their queues.

The lease lives in the metrics database, so every worker replica sees it, and
it expires on its own: a metrics-api that dies mid-rebuild cannot stop event
consumption for longer than ``LEASE_SECONDS``.
"""

import time
from datetime import UTC, datetime, timedelta

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from . import store

REBUILD = "rebuild"
LEASE_SECONDS = 600


def now() -> datetime:
    return datetime.now(UTC)


def take_rebuild_lease(db: Database, holder: str) -> bool:
    """True if this holder now holds the lease (nobody else did, or theirs expired)."""
    stamp = now()
    claim = {"$set": {"holder": holder, "expires_at": stamp + timedelta(seconds=LEASE_SECONDS), "started_at": stamp}}
    try:
        result = db[store.CONTROL].update_one(
            {"_id": REBUILD, "$or": [{"expires_at": {"$lte": stamp}}, {"holder": None}]}, claim, upsert=True
        )
    except DuplicateKeyError:
        return False  # held by someone else
    return result.modified_count == 1 or result.upserted_id is not None


def extend_rebuild_lease(db: Database, holder: str) -> None:
    db[store.CONTROL].update_one(
        {"_id": REBUILD, "holder": holder}, {"$set": {"expires_at": now() + timedelta(seconds=LEASE_SECONDS)}}
    )


def release_rebuild_lease(db: Database, holder: str) -> None:
    db[store.CONTROL].update_one({"_id": REBUILD, "holder": holder}, {"$set": {"holder": None, "expires_at": now()}})


def rebuild_running(db: Database) -> bool:
    doc = db[store.CONTROL].find_one({"_id": REBUILD})
    return bool(doc and doc.get("holder") and doc["expires_at"] > now())


class PauseSwitch:
    """``rebuild_running``, asked at most every ``ttl`` seconds: not one read per event."""

    def __init__(self, db: Database, ttl: float = 0.5):
        self.db = db
        self.ttl = ttl
        self._checked_at = 0.0
        self._paused = False

    def paused(self) -> bool:
        clock = time.monotonic()
        if clock - self._checked_at >= self.ttl:
            self._paused = rebuild_running(self.db)
            self._checked_at = clock
        return self._paused
