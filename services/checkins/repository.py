"""Storage of check-ins and cycle settings.

A check-in is one document, written once with its ``checkin_recorded`` /
``checkin_corrected`` event in its outbox (one insert: the check-in and its
event commit together or not at all). Afterwards only ``superseded_by_id``
changes, when a correction replaces it (and the relay clears the outbox).

Two unique indexes carry the rules that must hold under concurrency:

- ``idempotent_record`` on (author_id, idempotency_key): a retried call
  collides with the first one and gets its check-in back;
- ``one_correction_each`` on supersedes_id: a check-in is corrected at most
  once, so two racing corrections cannot both win.

Both are partial (only documents that carry the field) and the fields are
left out, never null, when unused.
"""

from datetime import datetime

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from services.platform.mongo import Index
from services.platform.outbox import new_document_with_events, outbox_index

CHECKINS = "checkins"
CYCLE_SETTINGS = "cycle_settings"

INDEXES = [
    Index(
        CHECKINS, [("v2mom_id", 1), ("item_id", 1), ("observe_time", -1), ("_id", -1)], name="by_v2mom_item_observed"
    ),
    Index(CHECKINS, [("v2mom_id", 1), ("observe_time", -1), ("_id", -1)], name="by_v2mom_observed"),
    Index(CHECKINS, [("author_id", 1), ("observe_time", -1), ("_id", -1)], name="by_author_observed"),
    Index(
        CHECKINS, [("author_id", 1), ("idempotency_key", 1)], name="idempotent_record", unique=True,
        partial={"idempotency_key": {"$exists": True}},
    ),
    Index(
        CHECKINS, [("supersedes_id", 1)], name="one_correction_each", unique=True,
        partial={"supersedes_id": {"$exists": True}},
    ),
    outbox_index(CHECKINS),
]

# Reads never need the pending events.
WITHOUT_OUTBOX = {"outbox": 0, "outbox_pending": 0}


class Replayed(Exception):
    """The author already used this idempotency key: `existing` is what the first call recorded."""

    def __init__(self, existing: dict):
        super().__init__(existing["_id"])
        self.existing = existing


class AlreadyCorrected(Exception):
    """Another correction of the same check-in got in first: `correction_id` is it."""

    def __init__(self, correction_id: str):
        super().__init__(correction_id)
        self.correction_id = correction_id


class CheckinRepository:
    def __init__(self, db: Database):
        self.collection = db[CHECKINS]

    def insert(self, checkin: dict, events: list[dict]) -> None:
        try:
            self.collection.insert_one(new_document_with_events(checkin, events))
        except DuplicateKeyError:
            # Which unique index the store names first is up to it: look, in order of what wins.
            key = checkin.get("idempotency_key")
            existing = self.find_by_key(checkin["author_id"], key) if key else None
            if existing:
                raise Replayed(existing) from None
            superseder = self.find_correction_of(checkin["supersedes_id"]) if checkin.get("supersedes_id") else None
            if superseder:
                raise AlreadyCorrected(superseder["_id"]) from None
            raise

    def get(self, checkin_id: str) -> dict | None:
        return self.collection.find_one({"_id": checkin_id}, WITHOUT_OUTBOX)

    def find_by_key(self, author_id: str, key: str) -> dict | None:
        return self.collection.find_one({"author_id": author_id, "idempotency_key": key}, WITHOUT_OUTBOX)

    def find_correction_of(self, checkin_id: str) -> dict | None:
        return self.collection.find_one({"supersedes_id": checkin_id}, WITHOUT_OUTBOX)

    def mark_superseded(self, checkin_id: str, correction_id: str) -> bool:
        """Links a check-in to the correction that replaced it; False if it already was."""
        result = self.collection.update_one(
            {"_id": checkin_id, "superseded_by_id": {"$exists": False}}, {"$set": {"superseded_by_id": correction_id}}
        )
        return result.modified_count == 1

    def page(self, query: dict, after: tuple[datetime, str] | None, limit: int) -> list[dict]:
        """Newest observation first, then newest id (ids are ULIDs: record order)."""
        if after:
            observed, checkin_id = after
            query = {
                **query,
                "$or": [{"observe_time": {"$lt": observed}}, {"observe_time": observed, "_id": {"$lt": checkin_id}}],
            }
        cursor = self.collection.find(query, WITHOUT_OUTBOX).sort([("observe_time", -1), ("_id", -1)]).limit(limit)
        return list(cursor)


def checkin_query(
    v2mom_id: str, item_id: str, author_id: str, start: datetime | None, end: datetime | None, include_superseded: bool
) -> dict:
    query: dict = {}
    if v2mom_id:
        query["v2mom_id"] = v2mom_id
    if item_id:
        query["item_id"] = item_id
    if author_id:
        query["author_id"] = author_id
    if start or end:
        query["observe_time"] = {**({"$gte": start} if start else {}), **({"$lt": end} if end else {})}
    if not include_superseded:
        query["superseded_by_id"] = {"$exists": False}
    return query


class CycleSettingsRepository:
    """Check-in cadence per cycle: ``{_id: cycle id, cadence: "CADENCE_WEEKLY", updated_by, updated_at}``."""

    def __init__(self, db: Database):
        self.collection = db[CYCLE_SETTINGS]

    def cadence(self, cycle_id: str) -> str | None:
        doc = self.collection.find_one({"_id": cycle_id}, {"cadence": 1})
        return doc["cadence"] if doc else None

    def set_cadence(self, cycle_id: str, cadence: str, actor_id: str, at: datetime) -> None:
        update = {"$set": {"cadence": cadence, "updated_by": actor_id, "updated_at": at}}
        try:
            self.collection.update_one({"_id": cycle_id}, update, upsert=True)
        except DuplicateKeyError:  # a concurrent first setting inserted it: last writer wins
            self.collection.update_one({"_id": cycle_id}, update)
