"""Leases: which replica runs a job that must run in one place at a time.

A service's worker can run as many replicas. Most of its work is safe
anywhere (competing consumers, writes guarded by version or by claim), but a
few jobs are singletons: the outbox relay, whose one publisher keeps each
document's events in order and sends each once, and timers such as the
staleness sweep. A lease is one document per job in the service's own
``leases`` collection, ``{_id: job, holder, until}``: a replica runs the job
while its hold lasts, renews it when half is spent, and anyone may take it
once ``until`` has passed (the holder crashed or lost the store).

Times are each replica's wall clock, so clocks must agree to well within
``SKEW_SECONDS`` (NTP does far better); a holder stops trusting its hold that
long before it ends, so a slow clock cannot make two holders at once. A
holder cut off from the store keeps its hold until then and no longer: past
it, another replica may already run the job.
"""

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from functools import cache

from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError, PyMongoError

log = logging.getLogger(__name__)

LEASES = "leases"
SKEW_SECONDS = 1.0


@cache
def holder_name() -> str:
    """This process, distinguishable in the leases collection from every other replica (and from its own
    earlier life under a reused pid)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """One job's lease, as seen by one replica; ``held()`` is cheap enough to ask before every pass."""

    def __init__(self, collection: Collection, job: str, holder: str, ttl_seconds: float,
                 clock: Callable[[], float] = time.time):
        if ttl_seconds <= 4 * SKEW_SECONDS:
            raise ValueError(f"a lease of {ttl_seconds} s is too short to outlast clock skew; use > {4 * SKEW_SECONDS}")
        self.collection, self.job, self.holder = collection, job, holder
        self.ttl, self.clock = ttl_seconds, clock
        self._until = 0.0  # the end of our hold, as we wrote it
        self._retry_at = 0.0  # when another replica's hold runs out, as we last read it

    def held(self) -> bool:
        """Whether this replica may run the job now; renews or takes the lease when that is due."""
        now = self.clock()
        if now < self._until - self.ttl / 2:
            return True  # most calls: plenty of hold left, no store round trip
        if now < self._retry_at:
            return False  # another replica holds it; do not ask the store on every tick
        return self._acquire(now) or now < self._until - SKEW_SECONDS

    def _acquire(self, now: float) -> bool:
        until = now + self.ttl
        mine_or_free = {"_id": self.job, "$or": [{"holder": self.holder}, {"until": {"$lte": now}}]}
        try:
            # The upsert inserts only when no lease exists; one held by another fails on the unique _id.
            before = self.collection.find_one_and_update(
                mine_or_free, {"$set": {"holder": self.holder, "until": until}}, projection={"holder": 1}, upsert=True,
                return_document=ReturnDocument.BEFORE)
        except DuplicateKeyError:
            self._note_other_holder(now)
            return False
        except PyMongoError as error:  # the store is away: our hold, if any, lasts as long as it was written
            log.warning("lease not renewed", extra={"job": self.job, "reason": str(error)[:200]})
            return False
        if self._until <= now:
            # A timer ticking less often than the lease lasts takes it back each tick: only a new holder is news.
            level = logging.DEBUG if before and before.get("holder") == self.holder else logging.INFO
            log.log(level, "lease taken", extra={"job": self.job, "holder": self.holder, "seconds": self.ttl})
        self._until, self._retry_at = until, 0.0
        return True

    def _note_other_holder(self, now: float) -> None:
        if self._until > now:
            log.warning("lease lost to another replica", extra={"job": self.job, "holder": self.holder})
        self._until = 0.0
        try:
            found = self.collection.find_one({"_id": self.job}, {"until": 1})
        except PyMongoError:
            found = None
        self._retry_at = found["until"] if found else now

    def release(self) -> None:
        """Hands the job over at once (a clean stop), instead of after the hold runs out."""
        if self._until <= self.clock():
            return
        self._until = 0.0
        try:
            self.collection.update_one({"_id": self.job, "holder": self.holder}, {"$set": {"until": 0.0}})
        except PyMongoError:
            pass  # it runs out by itself


class Leases:
    """The leases of one process: one holder name, one ttl, a Lease per job."""

    def __init__(self, db, ttl_seconds: float, holder: str | None = None):
        self.collection = db[LEASES]
        self.ttl = ttl_seconds
        self.holder = holder or holder_name()
        self._by_job: dict[str, Lease] = {}

    def __getitem__(self, job: str) -> Lease:
        if job not in self._by_job:
            self._by_job[job] = Lease(self.collection, job, self.holder, self.ttl)
        return self._by_job[job]

    def release_all(self) -> None:
        for lease in self._by_job.values():
            lease.release()
