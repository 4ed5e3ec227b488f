"""The event log: what a service published, kept for a while so integrators can replay it.

The outbox forgets an event once the broker confirms it. Before it does, the
relay (outbox.py) inserts the published events here, in the service's own
database: one document per event, ``_id`` the CloudEvents id, with its type,
its CloudEvents ``time`` (replay selects by it), when it was ``published``
(retention counts from it) and ``body``, the exact JSON the broker was
given. A relay that publishes a batch again after a crash inserts the same
ids again: duplicate keys, ignored, so each event is logged once.

Every write is an indexed insert or a delete by ``_id``, so logging costs the
same per event however much the log holds. Retention
(EVENT_LOG_RETENTION_DAYS, 30 by default; 0 keeps no log at all) is enforced
by ``prune``, which the relay's lease holder runs (worker/deps.py,
SerialRelay): it deletes what was published before the cut-off in bounded
batches, oldest first, through the ``published`` index. No TTL index: the
embedded store (mongoeco) does not expire documents.

``replayable`` reads the log back for ReplayEvents (api/event_log.py): per
type through the (type, time, _id) index, a page at a time, merged into one
stream in (time, id) order, so memory holds a page per type, never the range.
"""

import heapq
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

from pymongo.database import Database
from pymongo.errors import BulkWriteError

from ..core.clock import to_millis, utc_now
from ..store.mongo import IN_CHUNK, Index

log = logging.getLogger(__name__)

EVENT_LOG = "event_log"
BY_TYPE_AND_TIME = "type_time"
BY_PUBLISHED = "published"
INDEXES = [
    Index(EVENT_LOG, [("type", 1), ("time", 1), ("_id", 1)], name=BY_TYPE_AND_TIME),
    Index(EVENT_LOG, [("published", 1)], name=BY_PUBLISHED),
]
DUPLICATE_KEY = 11000
# Deleted per round trip (an `$in` of ids: mongoeco's SQLite engine takes no more at once, store/mongo.py).
PRUNE_BATCH = IN_CHUNK
# Batches per prune: 10,000 events; a log that had more to prune says so, and the relay prunes again sooner.
PRUNE_MAX_BATCHES = 50
READ_BATCH = 200


def event_time(event: dict, default: datetime) -> datetime:
    """The event's CloudEvents ``time`` as a UTC datetime in whole milliseconds (as the store keeps it)."""
    try:
        return to_millis(datetime.fromisoformat(str(event["time"])))
    except (KeyError, ValueError):
        return default


class EventLog:
    """One service's event log: ``record`` what was published, ``prune`` what is past retention, and read it."""

    def __init__(self, db: Database, retention_days: int, clock: Callable[[], datetime] = utc_now):
        self.collection = db[EVENT_LOG]
        self.retention_days = retention_days
        self.clock = clock

    @property
    def enabled(self) -> bool:
        return self.retention_days > 0

    def record(self, events: list[dict], bodies: list[str]) -> int:
        """Logs published events (``bodies``: the JSON each was published as); how many were new."""
        if not self.enabled or not events:
            return 0
        now = self.clock()
        documents = [{"_id": event["id"], "type": event["type"], "time": event_time(event, now), "published": now,
                      "body": body} for event, body in zip(events, bodies, strict=True)]
        try:
            return len(self.collection.insert_many(documents, ordered=False).inserted_ids)
        except BulkWriteError as error:
            # A batch published again (a crash between the confirm and clearing the outbox): already logged.
            details = error.details
            if details.get("writeConcernErrors") or any(
                    failure.get("code") != DUPLICATE_KEY for failure in details.get("writeErrors", [])):
                raise
            return int(details.get("nInserted", 0))

    def cutoff(self) -> datetime:
        """Events published before this are past retention (with retention 0, everything is)."""
        return self.clock() - timedelta(days=self.retention_days)

    def prune(self, max_batches: int = PRUNE_MAX_BATCHES) -> tuple[int, bool]:
        """Deletes what was published before the cut-off, oldest first; (how many, whether more may be left)."""
        cutoff, deleted = self.cutoff(), 0
        for _ in range(max_batches):
            ids = [doc["_id"] for doc in self.collection.find({"published": {"$lt": cutoff}}, {"_id": 1})
                   .hint(BY_PUBLISHED).sort("published", 1).limit(PRUNE_BATCH)]
            if not ids:
                return deleted, False
            deleted += self.collection.delete_many({"_id": {"$in": ids}}).deleted_count
            if len(ids) < PRUNE_BATCH:
                return deleted, False
        return deleted, True

    def replayable(self, types, start: datetime, end: datetime, after: tuple[datetime, str] | None = None,
                   batch: int = READ_BATCH) -> Iterator[dict]:
        """The logged events of ``types`` with ``start <= time < end`` (after the position ``after``), in
        (time, id) order: one page per type in memory at a time."""
        streams = [self._of_type(event_type, start, end, after, batch) for event_type in sorted(set(types))]
        return heapq.merge(*streams, key=lambda doc: (doc["time"], doc["_id"]))

    def _of_type(self, event_type: str, start: datetime, end: datetime, after, batch: int) -> Iterator[dict]:
        position = after
        while True:
            query = {"type": event_type, "time": {"$gte": start, "$lt": end}}
            if position is not None:
                moment, event_id = position
                query["$or"] = [{"time": {"$gt": moment}}, {"time": moment, "_id": {"$gt": event_id}}]
            page = list(self.collection.find(query, {"time": 1, "type": 1, "body": 1}).hint(BY_TYPE_AND_TIME)
                        .sort([("time", 1), ("_id", 1)]).limit(batch))
            for doc in page:
                doc["time"] = _utc(doc["time"])
                yield doc
            if len(page) < batch:
                return
            position = (page[-1]["time"], page[-1]["_id"])


def _utc(moment: datetime) -> datetime:
    """A time read back from a client that is not tz_aware is naive UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
