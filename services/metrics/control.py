"""The rebuild lease: while RebuildAggregates runs, the worker leaves events in their queues.

The lease lives in the metrics database, so every worker replica sees it, and
it expires on its own: a metrics-api that dies mid-rebuild cannot stop event
consumption for longer than ``LEASE_SECONDS``.
"""

import time
from datetime import timedelta

from pymongo.database import Database

from services.platform.core.clock import utc_now

from . import store

REBUILD = "rebuild"
LEASE_SECONDS = 600


def take_rebuild_lease(db: Database, holder: str) -> bool:
    """True if this holder now holds the lease (nobody else did, or theirs expired)."""
    now = utc_now()
    return store.claim_lease(db, REBUILD, holder, now, now + timedelta(seconds=LEASE_SECONDS))


def extend_rebuild_lease(db: Database, holder: str) -> None:
    store.extend_lease(db, REBUILD, holder, utc_now() + timedelta(seconds=LEASE_SECONDS))


def release_rebuild_lease(db: Database, holder: str) -> None:
    store.release_lease(db, REBUILD, holder, utc_now())


def rebuild_running(db: Database) -> bool:
    doc = store.lease(db, REBUILD)
    return bool(doc and doc.get("holder") and doc["expires_at"] > utc_now())


def rebuild_marker(db: Database) -> tuple:
    """Who holds the lease and since when: it changes when a rebuild starts or ends."""
    doc = store.lease(db, REBUILD) or {}
    return doc.get("holder"), doc.get("started_at")


class PauseSwitch:
    """``rebuild_running``, asked at most every ``ttl`` seconds: not one read per event.

    Once it has an answer, one handler asks at a time: the others, arriving
    while its read is under way, take the answer still held (at most ``ttl``
    and that one read old, well inside the rebuild's grace). Before, every
    green thread handling an event when the answer expired sent its own read.
    """

    def __init__(self, db: Database, ttl: float = 0.5):
        self.db = db
        self.ttl = ttl
        self._checked_at: float | None = None  # None until the first answer
        self._paused = False
        self._asking = False

    def paused(self) -> bool:
        clock = time.monotonic()
        if self._checked_at is not None and (self._asking or clock - self._checked_at < self.ttl):
            return self._paused
        self._asking = True
        try:
            self._paused = rebuild_running(self.db)
            self._checked_at = clock
        finally:
            self._asking = False
        return self._paused
