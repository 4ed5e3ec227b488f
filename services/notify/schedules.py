"""Persisted schedules (collection ``schedules``): the rules for when they fall due (pure) and their store.

A schedule is a timer that survives restarts: ``{_id, kind, key, due_at,
state: WAITING|DONE|CANCELLED, lease_until, lease_token, payload, created_at,
done_at | cancelled_at}``. ``_id`` is derived from its cause (an event id, or
the schedule that chained it), so a replay finds the schedule it wrote.
``key`` groups what one fact cancels: ``approval:<v2mom id>`` (a decision or
an archive) and ``item:<v2mom id>/<item kind>/<item id>`` (a check-in).

The schedule timer claims one due WAITING schedule at a time with an atomic
lease (find_one_and_update), so two replicas never fire one; firing writes
only documents with derived ids and then marks the schedule DONE under its
lease. A worker that dies mid-fire leaves the schedule WAITING with a lease
that expires, and the next claim fires it again, writing nothing new: none
is lost and none repeats.

Kinds:

- ``approval_reminder``: NOTIFY_APPROVAL_SLA_DAYS working days after the
  submission (in the approver's time zone): APPROVAL_OVERDUE to the approver;
- ``approval_escalation``: twice that: APPROVAL_OVERDUE to the approver's manager;
- ``item_escalation``: tier 1, 2, 3 at 1, 2, 3 × NOTIFY_ESCALATION_EMAIL_AFTER_HOURS
  after an item went stale or overdue: the previous tier's notification goes by
  email if still unread, and the next person (the method's Accountable, then
  the V2MOM owner's manager) is told in the inbox.
"""

import hashlib
from datetime import datetime, timedelta

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from services.platform.core.ids import new_id

from . import kinds
from .store import SCHEDULES

WAITING, DONE, CANCELLED = "WAITING", "DONE", "CANCELLED"
APPROVAL_REMINDER = "approval_reminder"
APPROVAL_ESCALATION = "approval_escalation"
ITEM_ESCALATION = "item_escalation"
LAST_ESCALATION_TIER = 3  # tier 3 only emails the manager's notification if it is unread


# --- rules (pure) ---------------------------------------------------------------------------------------


def schedule_id(kind: str, *cause: str) -> str:
    return f"sch_{hashlib.sha256(chr(31).join((kind, *cause)).encode()).hexdigest()[:32]}"


def approval_key(v2mom_id: str) -> str:
    return f"approval:{v2mom_id}"


def item_key(v2mom_id: str, item_kind: str, item_id: str) -> str:
    return f"item:{v2mom_id}/{item_kind}/{item_id}"


def approval_due(submitted_at: datetime, approver_time_zone: str, sla_days: int) -> tuple[datetime, datetime]:
    """(reminder, skip-level escalation): SLA and twice the SLA in working days, in the approver's time zone."""
    tz = kinds.zone(approver_time_zone)
    return (kinds.add_working_days(submitted_at, sla_days, tz),
            kinds.add_working_days(submitted_at, 2 * sla_days, tz))


def escalation_due(started_at: datetime, tier: int, hours: float) -> datetime:
    return started_at + timedelta(hours=hours * tier)


# --- store -------------------------------------------------------------------------------------------------


class Schedules:
    def __init__(self, db):
        self.collection = db[SCHEDULES]

    def add(self, schedule_id_: str, kind: str, key: str, due_at: datetime, payload: dict, now: datetime) -> bool:
        """False when it was there already (a replay): its state is left as it is."""
        try:
            self.collection.insert_one({
                "_id": schedule_id_, "kind": kind, "key": key, "due_at": due_at, "state": WAITING,
                "lease_until": now, "payload": payload, "created_at": now,
            })
            return True
        except DuplicateKeyError:
            return False

    def cancel(self, key: str, now: datetime, extra: dict | None = None) -> int:
        """Cancels the WAITING schedules under ``key`` (and matching ``extra``); how many."""
        result = self.collection.update_many(
            {"key": key, "state": WAITING, **(extra or {})}, {"$set": {"state": CANCELLED, "cancelled_at": now}}
        )
        return result.modified_count

    def claim_due(self, now: datetime, lease_seconds: float) -> dict | None:
        return self.collection.find_one_and_update(
            {"state": WAITING, "due_at": {"$lte": now}, "lease_until": {"$lte": now}},
            {"$set": {"lease_until": now + timedelta(seconds=lease_seconds), "lease_token": new_id("lease")}},
            sort=[("due_at", 1)], return_document=ReturnDocument.AFTER,
        )

    def done(self, schedule: dict, now: datetime) -> bool:
        """Under the caller's lease; False when it was cancelled (or re-leased) meanwhile."""
        result = self.collection.update_one(
            {"_id": schedule["_id"], "state": WAITING, "lease_token": schedule["lease_token"]},
            {"$set": {"state": DONE, "done_at": now}},
        )
        return result.modified_count == 1

    def get(self, schedule_id_: str) -> dict | None:
        return self.collection.find_one({"_id": schedule_id_})
