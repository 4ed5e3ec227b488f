"""Persisted schedules (collection ``schedules``): the rules for when they fall due (pure) and their store.

A schedule is a timer that survives restarts: ``{_id, kind, key, due_at,
state: WAITING|DONE|CANCELLED, lease_until, lease_token, payload, created_at,
done_at | cancelled_at}``. ``_id`` is derived from its cause (an event id, or
the schedule that chained it), so a replay finds the schedule it wrote.
``key`` groups what one fact cancels: ``approval:<v2mom id>`` (a decision or
an archive) and ``item:<v2mom id>/<item kind>/<item id>`` (a check-in).

The schedule timer finds the ids of due WAITING schedules (one query per
pass) and claims each with an atomic lease (find_one_and_update by ``_id``
repeating the due conditions), so two replicas never fire one; firing writes
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
  the V2MOM owner's manager) is told in the inbox;
- ``checkin_reminder`` (key ``reminder:<v2mom id>/<item kind>/<item id>``):
  one per published item with an owner, at ``reminder_due``: the first
  NOTIFY_REMINDER_LOCAL_TIME (``"MON 09:00"``) in the owner's time zone in
  the last ``REMINDER_LEAD`` (7 days) before the item is due for a check-in
  (its last check-in, or its publication, + the cadence window); when that
  moment's quarter ends first, at the first reminder time of the new quarter
  (a check-in counts for its own quarter only, as in checkins). The item's
  copy (``items``) names the one reminder that counts (``reminder_id``); a
  check-in, an archive or a removal moves or cancels it;
- ``digest`` (key ``digest:<person id>``): one per recipient and local ISO
  week, at NOTIFY_DIGEST_LOCAL_TIME (``"MON 08:00"``) in their time zone:
  the weekly DIGEST of the ``DIGEST_WINDOW`` before it.
"""

import hashlib
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from services.platform.core.ids import new_id

from . import kinds
from .store import SCHEDULES, insert_new

WAITING, DONE, CANCELLED = "WAITING", "DONE", "CANCELLED"
APPROVAL_REMINDER = "approval_reminder"
APPROVAL_ESCALATION = "approval_escalation"
ITEM_ESCALATION = "item_escalation"
CHECKIN_REMINDER = "checkin_reminder"
DIGEST = "digest"
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


# --- weekly local times, check-in reminders and the digest (pure) ------------------------------------------

WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
# Check-in cadences as check-ins stores them, and their windows (the same days as checkins' cycles.py).
CADENCE_DAYS = {"CADENCE_WEEKLY": 7, "CADENCE_BIWEEKLY": 14, "CADENCE_MONTHLY": 30}
DEFAULT_CADENCE = "CADENCE_BIWEEKLY"  # what check-ins assumes for a cycle without one
REMINDER_LEAD = timedelta(days=7)  # a reminder goes at the first reminder time in the last 7 days before due
DIGEST_WINDOW = timedelta(days=7)


def parse_weekly_time(text: str) -> tuple[int, time]:
    """``"DAY HH:MM"`` (``MON``..``SUN``, 24-hour) as (weekday 0 = Monday, time); ValueError otherwise."""
    day, _, clock = (text or "").strip().partition(" ")
    if day.upper() not in WEEKDAYS:
        raise ValueError(f"{text!r} is not \"DAY HH:MM\" (DAY one of {', '.join(WEEKDAYS)})")
    return WEEKDAYS.index(day.upper()), kinds.parse_local_time(clock.strip())


def next_weekly(after: datetime, spec: str, tz: ZoneInfo) -> datetime:
    """The first ``spec`` (``"MON 09:00"``) local time in ``tz`` at or after ``after``, in UTC.

    Counted on the local calendar, so a DST change keeps 09:00 at 09:00 local (the UTC time moves).
    A local time that does not exist that day (inside a spring-forward gap) is read as zoneinfo does:
    with the offset before the change.
    """
    weekday, at = parse_weekly_time(spec)
    local = after.astimezone(tz)
    day = local.date() + timedelta(days=(weekday - local.weekday()) % 7)
    while True:
        candidate = datetime.combine(day, at, tzinfo=tz).astimezone(UTC)
        if candidate >= after:
            return candidate
        day += timedelta(days=7)


def cadence_window(cadence: str) -> timedelta:
    return timedelta(days=CADENCE_DAYS.get(cadence or "", CADENCE_DAYS[DEFAULT_CADENCE]))


def checkin_due(basis: datetime, cadence: str, quarter_ends: tuple[datetime, ...] = ()) -> datetime:
    """When an item is due for a check-in: its last check-in (or its publication) + the cadence window, or the end
    of that moment's quarter if sooner.

    ``quarter_ends`` (the cycle's, learned from goals' cycle events) are review periods: as in checkins'
    staleness, a check-in counts for its own quarter only, so a new quarter asks each item for one of its own.
    """
    due = basis + cadence_window(cadence)
    quarter_end = next((end for end in sorted(quarter_ends) if end > basis), None)
    return min(due, quarter_end) if quarter_end is not None else due


def reminder_due(basis: datetime, cadence: str, spec: str, tz: ZoneInfo,
                 quarter_ends: tuple[datetime, ...] = ()) -> datetime:
    """The first ``spec`` local time in the last REMINDER_LEAD before the item is due (never before ``basis``).

    A weekly cadence therefore reminds at the first reminder time after the check-in; a biweekly one in
    its second week; a monthly one in its last seven days. When the basis's quarter ends first, at the
    first reminder time of the new quarter: a check-in before the quarter's end would count for the old
    quarter only, so reminding earlier asks for one that cannot satisfy the new quarter.
    """
    due = checkin_due(basis, cadence, quarter_ends)
    if due < checkin_due(basis, cadence):
        return next_weekly(due, spec, tz)
    return next_weekly(max(due - REMINDER_LEAD, basis), spec, tz)


def reminder_not_due_yet(basis: datetime, cadence: str, spec: str, tz: ZoneInfo, now: datetime,
                         quarter_ends: tuple[datetime, ...] = ()) -> bool:
    """Checked in within the cadence window (and in the current quarter): the reminder the latest check-in
    calls for is still ahead."""
    return reminder_due(basis, cadence, spec, tz, quarter_ends) > now


def quarter_ends(quarters) -> list[datetime]:
    """The moments a cycle's quarters end (00:00 UTC after each one's last day), in order; quarters as
    (first, last) days, both inclusive, as goals names them."""
    return sorted(datetime.combine(last + timedelta(days=1), time.min, tzinfo=UTC) for _, last in quarters)


def reminder_key(v2mom_id: str, item_kind: str, item_id: str) -> str:
    return f"reminder:{v2mom_id}/{item_kind}/{item_id}"


def digest_key(person_id: str) -> str:
    return f"digest:{person_id}"


def digest_slot(now: datetime, spec: str, tz: ZoneInfo) -> tuple[datetime, str]:
    """The recipient's next digest time at or after ``now``, and its local ISO week (``2026-W24``).

    The week names the digest's schedule, so however often it is asked for, one week has one digest.
    """
    at = next_weekly(now, spec, tz)
    year, week, _ = at.astimezone(tz).isocalendar()
    return at, f"{year}-W{week:02d}"


def in_digest_window(moment: datetime | None, until: datetime) -> bool:
    """Whether something that happened at ``moment`` belongs in the digest sent at ``until`` (the week before)."""
    return moment is not None and until - DIGEST_WINDOW <= moment < until


def goes_at_once(due_at: datetime | None, next_digest_at: datetime) -> bool:
    """A digestible notification whose item is due before the next digest goes out is not held for it."""
    return due_at is not None and due_at <= next_digest_at


# --- store -------------------------------------------------------------------------------------------------


class Schedules:
    def __init__(self, db):
        self.collection = db[SCHEDULES]

    @staticmethod
    def document(schedule_id_: str, kind: str, key: str, due_at: datetime, payload: dict, now: datetime) -> dict:
        return {"_id": schedule_id_, "kind": kind, "key": key, "due_at": due_at, "state": WAITING,
                "lease_until": now, "payload": payload, "created_at": now}

    def add(self, schedule_id_: str, kind: str, key: str, due_at: datetime, payload: dict, now: datetime) -> bool:
        """False when it was there already (a replay): its state is left as it is."""
        try:
            self.collection.insert_one(self.document(schedule_id_, kind, key, due_at, payload, now))
            return True
        except DuplicateKeyError:
            return False

    def add_many(self, documents: list[dict]) -> set[str]:
        """Several (``document``) in one command; the ids of the new ones. Those there already are left as they are."""
        return insert_new(self.collection, documents)

    def cancel(self, key: str, now: datetime, extra: dict | None = None) -> int:
        """Cancels the WAITING schedules under ``key`` (and matching ``extra``); how many."""
        result = self.collection.update_many(
            {"key": key, "state": WAITING, **(extra or {})}, {"$set": {"state": CANCELLED, "cancelled_at": now}}
        )
        return result.modified_count

    @staticmethod
    def _due(now: datetime) -> dict:
        return {"state": WAITING, "due_at": {"$lte": now}, "lease_until": {"$lte": now}}

    def due(self, now: datetime, limit: int) -> list[str]:
        """The ids of up to ``limit`` due WAITING schedules whose lease (if any) expired, the earliest first."""
        return [doc["_id"] for doc in
                self.collection.find(self._due(now), {"_id": 1}).sort([("due_at", 1), ("_id", 1)]).limit(limit)]

    def claim(self, schedule_id_: str, now: datetime, lease_seconds: float) -> dict | None:
        """That schedule, leased to the caller if it is still due and unleased (by ``_id``); else None."""
        return self.collection.find_one_and_update(
            {"_id": schedule_id_, **self._due(now)},
            {"$set": {"lease_until": now + timedelta(seconds=lease_seconds), "lease_token": new_id("lease")}},
            return_document=ReturnDocument.AFTER,
        )

    def claim_due(self, now: datetime, lease_seconds: float) -> dict | None:
        """One due WAITING schedule, leased to the caller; None when none is due."""
        for schedule_id_ in self.due(now, 1):
            claimed = self.claim(schedule_id_, now, lease_seconds)
            if claimed is not None:
                return claimed
        return None

    def done(self, schedule: dict, now: datetime) -> bool:
        """Under the caller's lease; False when it was cancelled (or re-leased) meanwhile."""
        result = self.collection.update_one(
            {"_id": schedule["_id"], "state": WAITING, "lease_token": schedule["lease_token"]},
            {"$set": {"state": DONE, "done_at": now}},
        )
        return result.modified_count == 1

    def get(self, schedule_id_: str) -> dict | None:
        return self.collection.find_one({"_id": schedule_id_})
