"""Storage of check-ins and cycle settings.

A check-in is one document, written once with its ``checkin_recorded`` /
``checkin_corrected`` event in its outbox (one insert: the check-in and its
event commit together or not at all). Afterwards only ``superseded_by_id``
changes, when a correction replaces it (and the relay clears the outbox).

Two rules must hold under concurrency, and unique keys carry them:

- a retried call collides with the first one and gets its check-in back: a
  check-in sent with an idempotency key takes its ``_id`` from (author, key)
  (``checkin_id``), so the primary key is the claim. Not a unique index on
  those fields: the store validates a partial unique index on every write to
  any document it covers, and this collection only grows;
- ``one_correction_each`` on supersedes_id: a check-in is corrected at most
  once, so two racing corrections cannot both win. Partial (corrections are
  few), and the field is left out, never null, when unused.

Ids are then not in record order, so lists order equal observation times by
``record_time`` and only then by id.
"""

import base64
import hashlib
from datetime import datetime

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from services.platform.bus.outbox import new_document_with_events, outbox_index
from services.platform.core.cache import ExpiringCache
from services.platform.core.ids import new_id
from services.platform.core.paging import bad_token
from services.platform.store.mongo import Index, matching

from .cycles import cadence_name

CHECKINS = "checkins"
CYCLE_SETTINGS = "cycle_settings"

NEWEST_FIRST = [("observe_time", -1), ("record_time", -1), ("_id", -1)]

INDEXES = [
    Index(CHECKINS, [("v2mom_id", 1), ("item_id", 1), *NEWEST_FIRST], name="by_v2mom_item_newest"),
    Index(CHECKINS, [("v2mom_id", 1), *NEWEST_FIRST], name="by_v2mom_newest"),
    Index(CHECKINS, [("author_id", 1), *NEWEST_FIRST], name="by_author_newest"),
    Index(
        CHECKINS, [("supersedes_id", 1)], name="one_correction_each", unique=True,
        partial={"supersedes_id": {"$exists": True}},
    ),
    outbox_index(CHECKINS),
]

# Declared by earlier versions: dropped at start-up (see drop_retired_indexes).
RETIRED_INDEXES = {
    CHECKINS: ["idempotent_record", "by_v2mom_item_observed", "by_v2mom_observed", "by_author_observed"],
}

# Reads never need the pending events.
WITHOUT_OUTBOX = {"outbox": 0, "outbox_pending": 0}


def checkin_id(author_id: str, idempotency_key: str) -> str:
    """A new check-in's id: the same for every retry of one call (same author and key), else a ULID."""
    if not idempotency_key:
        return new_id("chk")
    digest = hashlib.sha256(f"{author_id}\0{idempotency_key}".encode()).digest()
    return "chk_" + base64.b32encode(digest).decode()[:26].lower()


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
            # Which key the store names first is up to it: look, in order of what wins.
            existing = self.get(checkin["_id"]) if checkin.get("idempotency_key") else None
            if existing:
                raise Replayed(existing) from None
            superseder = self.find_correction_of(checkin["supersedes_id"]) if checkin.get("supersedes_id") else None
            if superseder:
                raise AlreadyCorrected(superseder["_id"]) from None
            raise

    def get(self, checkin_id: str) -> dict | None:
        return self.collection.find_one({"_id": checkin_id}, WITHOUT_OUTBOX)

    def find_by_key(self, author_id: str, key: str) -> dict | None:
        return self.get(checkin_id(author_id, key))

    def find_correction_of(self, checkin_id: str) -> dict | None:
        return self.collection.find_one({"supersedes_id": checkin_id}, WITHOUT_OUTBOX)

    def mark_superseded(self, checkin_id: str, correction_id: str) -> bool:
        """Links a check-in to the correction that replaced it; False if it already was."""
        result = self.collection.update_one(
            {"_id": checkin_id, "superseded_by_id": {"$exists": False}}, {"$set": {"superseded_by_id": correction_id}}
        )
        return result.modified_count == 1

    def page(self, query: dict, after: tuple[datetime, datetime, str] | None, limit: int) -> list[dict]:
        """Newest observation first, then latest recorded, then id (only for equal record times)."""
        if after:
            observed, recorded, last_id = after
            query = {
                **query,
                "$or": [
                    {"observe_time": {"$lt": observed}},
                    {"observe_time": observed, "record_time": {"$lt": recorded}},
                    {"observe_time": observed, "record_time": recorded, "_id": {"$lt": last_id}},
                ],
            }
        return list(self.collection.find(query, WITHOUT_OUTBOX).sort(NEWEST_FIRST).limit(limit))


def page_position(checkin: dict) -> list:
    """Where a list resumes after this check-in, as a page token carries it (JSON)."""
    return [checkin["observe_time"].isoformat(), checkin["record_time"].isoformat(), checkin["_id"]]


def parse_page_position(position) -> tuple[datetime, datetime, str] | None:
    """A page token's position back as (observe time, record time, id); INVALID_ARGUMENT unless page_position made it."""
    if position is None:
        return None
    try:
        observed, recorded, last_id = position
        observed, recorded = datetime.fromisoformat(observed), datetime.fromisoformat(recorded)
    except (TypeError, ValueError):
        raise bad_token() from None
    if not isinstance(last_id, str) or observed.tzinfo is None or recorded.tzinfo is None:
        raise bad_token()
    return observed, recorded, last_id


def checkin_query(
    v2mom_id: str, item_id: str, author_id: str, start: datetime | None, end: datetime | None, include_superseded: bool
) -> dict:
    query = matching(v2mom_id=v2mom_id, item_id=item_id, author_id=author_id)
    if start or end:
        query["observe_time"] = {**({"$gte": start} if start else {}), **({"$lt": end} if end else {})}
    if not include_superseded:
        query["superseded_by_id"] = {"$exists": False}
    return query


class CycleSettingsRepository:
    """Check-in cadence per cycle: ``{_id: cycle id, cadence: "CADENCE_WEEKLY", updated_by, updated_at}``.

    ``remember_seconds`` (checkins-api) keeps each cycle's cadence that long for ``recent_cadence``, the
    cadence a new check-in's event carries: reading it from the store on every check-in was a third of
    checkins-api's store commands. A change made through this process is seen at once; one made through
    another replica reaches this one's events within ``remember_seconds``. Until then a check-in there
    still carries the old cadence, which its item's clock takes for its next look (the timer then
    judges it by the cadence it reads itself, ``clock_store.advance_due``) and metrics for the unit's
    cadence until the next check-in. ``cadence`` (GetCycleSettings) and the worker (0: nothing
    remembered) always read the store.
    """

    def __init__(self, db: Database, remember_seconds: float = 0.0):
        self.collection = db[CYCLE_SETTINGS]
        self._remembered = ExpiringCache(remember_seconds) if remember_seconds > 0 else None

    def cadence(self, cycle_id: str) -> str | None:
        """The cadence an admin set for the cycle; None when none was."""
        doc = self.collection.find_one({"_id": cycle_id}, {"cadence": 1}) if cycle_id else None
        return doc["cadence"] if doc else None

    def cadence_or_default(self, cycle_id: str) -> str:
        """The cadence the cycle's items are judged by."""
        return cadence_name(self.cadence(cycle_id))

    def recent_cadence(self, cycle_id: str) -> str:
        """cadence_or_default, as remembered for up to ``remember_seconds`` (see the class)."""
        if self._remembered is None:
            return self.cadence_or_default(cycle_id)
        return self._remembered.get(cycle_id, lambda: self.cadence_or_default(cycle_id))

    def set_cadence(self, cycle_id: str, cadence: str, actor_id: str, at: datetime) -> None:
        update = {"$set": {"cadence": cadence, "updated_by": actor_id, "updated_at": at}}
        try:
            self.collection.update_one({"_id": cycle_id}, update, upsert=True)
        except DuplicateKeyError:  # a concurrent first setting inserted it: last writer wins
            self.collection.update_one({"_id": cycle_id}, update)
        if self._remembered is not None:
            self._remembered.clear()  # this process's next check-ins carry the new cadence at once
