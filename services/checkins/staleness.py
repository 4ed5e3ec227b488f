"""Item clocks: when each measure and method was last checked in, and when it goes stale.

One ``item_clocks`` document per measure or method of a published V2MOM:

    {
      _id: "<v2mom id>/<measure|method>/<item id>",
      revision,                        # the write guard (versioned.py)
      v2mom_id, kind, item_id, title,
      owner_id,                        # the item's owner: who ListStaleItems(owner_id) is for
      v2mom_owner_id, org_unit_id, cycle_id,
      active: true,                    # false once the item left the V2MOM, the V2MOM was archived or the cycle ended
      started_at,                      # where the clock counts from while there was never a check-in: the
                                       # V2MOM's first publication, or its cycle's start if that is later
      last_checkin_time?,              # the latest observation checked in
      returned_at?,                    # when the item came back after leaving the V2MOM: nothing counts from before
      cadence: "CADENCE_BIWEEKLY",     # as of the last step
      staleness: FRESH | STALE | OVERDUE,
      stale_since?,                    # one cadence after the last check-in (or started_at)
      next_check_at?,                  # when the timer must look again (indexed); absent when nothing is due
      cycle_start?,                    # 00:00 UTC of the cycle's first day: no clock counts from before it
      cycle_end?,                      # the clock stops when the V2MOM's cycle ends
      outbox, outbox_pending           # item_became_stale / item_overdue, written with the step
    }

A clock moves one step at a time (FRESH -> STALE at one cadence without a
check-in, STALE -> OVERDUE at two), each step with its event in the same
guarded write, so two timers racing for a clock announce it once. A
check-in makes it FRESH again.

Check-ins open when the cycle starts, so a V2MOM approved ahead of its
cycle has its clocks count from the cycle's start, not from the approval:
its items go stale one cadence into the cycle, never before anyone could
check in.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from services.platform.bus.outbox import outbox_index
from services.platform.store.mongo import Index
from v2mom.v1 import checkins_pb2, events_pb2

from services.platform.core.clock import to_timestamp

from . import events
from .cycles import cadence_length, cadence_name
from .progress import MEASURE
from .published import PublishedItem, PublishedV2MOM
from .repository import CycleSettingsRepository
from .versioned import Change, update_versioned

ITEM_CLOCKS = "item_clocks"

FRESH, STALE, OVERDUE = "FRESH", "STALE", "OVERDUE"
STALE_STATES = [STALE, OVERDUE]
STALENESS_NAMES = {STALE: "STALENESS_STALE", OVERDUE: "STALENESS_OVERDUE"}

INDEXES = [
    outbox_index(ITEM_CLOCKS),
    Index(ITEM_CLOCKS, [("next_check_at", 1)], name="due"),
    Index(ITEM_CLOCKS, [("v2mom_id", 1)], name="by_v2mom"),
    Index(ITEM_CLOCKS, [("owner_id", 1), ("_id", 1)], name="by_owner"),
    Index(ITEM_CLOCKS, [("org_unit_id", 1), ("_id", 1)], name="by_org_unit"),
]


def clock_id(v2mom_id: str, kind: str, item_id: str) -> str:
    # Measure and method ids are unique per list only, so the kind is part of the key.
    return f"{v2mom_id}/{'measure' if kind == MEASURE else 'method'}/{item_id}"


# --- one clock's arithmetic -------------------------------------------------------------


def reference_time(clock: dict) -> datetime:
    """What staleness counts from: the last check-in, or the clock's start when there was none; for an item
    that left its V2MOM and came back, never from before its return."""
    base = clock.get("last_checkin_time") or clock["started_at"]
    returned = clock.get("returned_at")
    return returned if returned is not None and returned > base else base


def clock_start(published: datetime, cycle_start: datetime | None) -> datetime:
    """Where a clock counts from before any check-in: publication, or the cycle's start if that is later.

    Nobody can check in before the cycle opens, so time before it must not count.
    """
    return published if cycle_start is None else max(published, cycle_start)


def next_look(clock: dict, cadence: str) -> datetime | None:
    """When the timer must next look at this clock: its next step, or the cycle's end if sooner."""
    if not clock.get("active"):
        return None
    steps = {FRESH: 1, STALE: 2}.get(clock["staleness"])
    due = reference_time(clock) + steps * cadence_length(cadence) if steps else None
    candidates = [moment for moment in (due, clock.get("cycle_end")) if moment is not None]
    return min(candidates) if candidates else None


def cycle_over(clock: dict, now: datetime) -> bool:
    return clock.get("cycle_end") is not None and now >= clock["cycle_end"]


@dataclass(frozen=True)
class Move:
    """A clock's new state, and the event announcing it (None when the move is not news)."""

    clock: dict
    event_type: str | None = None


def moved(clock: dict | None) -> Move | None:
    return Move(clock) if clock is not None else None


def advance(clock: dict | None, now: datetime, cadence: str) -> Move | None:
    """A due clock, one step on. None when it is not due (any more)."""
    due = (clock or {}).get("next_check_at")
    if not (clock or {}).get("active") or due is None or due > now:
        return None  # another timer got here first, or a check-in reset it
    clock = {**clock, "cadence": cadence}
    if cycle_over(clock, now):
        return Move(stopped(clock))
    one_cadence = cadence_length(cadence)
    stale_at = reference_time(clock) + one_cadence
    event_type = None
    if clock["staleness"] == FRESH and now >= stale_at:
        clock.update(staleness=STALE, stale_since=stale_at)
        event_type = events.ITEM_BECAME_STALE
    elif clock["staleness"] == STALE and now >= stale_at + one_cadence:
        clock.update(staleness=OVERDUE)
        event_type = events.ITEM_OVERDUE
    # Neither: the cadence changed under it, and only its next look moves.
    clock["next_check_at"] = next_look(clock, cadence)
    return Move(clock, event_type)


def checked_in(clock: dict | None, observe_time: datetime, cadence: str, placeholder: dict) -> dict | None:
    """The clock after a check-in observed at observe_time; None if it already knows a later one.

    A check-in may arrive before the approval that creates its clock: it then
    leaves an inactive placeholder holding the time, which the approval completes.
    """
    clock = dict(clock or placeholder)
    last = clock.get("last_checkin_time")
    if last is not None and observe_time <= last:
        return None
    clock.update(last_checkin_time=observe_time, staleness=FRESH, stale_since=None, cadence=cadence)
    clock["next_check_at"] = next_look(clock, cadence)
    return clock


def published_clock(clock: dict | None, v2mom: PublishedV2MOM, item: PublishedItem, live: bool,
                    cadence: str, cycle_start: datetime | None, cycle_end: datetime | None, now: datetime) -> dict:
    """A clock as an approval leaves it: described anew, started at publication (or the cycle's
    start, if later), running if live.

    The start is the first publication's: a later approval (a new revision) does not restart it. An item
    that had left the V2MOM and comes back with this approval counts from its return (``returned_at``), not
    from a start or a check-in from before it left.
    """
    clock = dict(clock or {})
    was_running = clock.get("active", False)
    if live and not was_running and clock.get("started_at") is not None:  # not a placeholder: it was here
        clock["returned_at"] = clock_start(v2mom.publish_time or now, cycle_start)
    clock.update(
        v2mom_id=v2mom.v2mom_id, kind=item.kind, item_id=item.item_id, title=item.title, owner_id=item.owner_id,
        v2mom_owner_id=v2mom.owner_id, org_unit_id=v2mom.org_unit_id, cycle_id=v2mom.cycle_id,
        cycle_start=cycle_start, cycle_end=cycle_end, cadence=cadence, active=live,
    )
    started = clock_start(clock.get("started_at") or v2mom.publish_time or now, cycle_start)
    if clock.get("started_at") not in (None, started) and not clock.get("last_checkin_time"):
        # A clock written before starts were moved to the cycle's start: it counted time nobody could
        # check in, so whatever staleness that gave it is counted again from the right start.
        clock.update(staleness=FRESH, stale_since=None)
    clock["started_at"] = started
    if live and not was_running:
        clock.update(staleness=FRESH, stale_since=None)  # a new or returning item starts fresh
    clock.setdefault("staleness", FRESH)
    clock["next_check_at"] = next_look(clock, cadence)
    return clock


def stopped(clock: dict) -> dict:
    return {**clock, "active": False, "next_check_at": None}


# --- events and the read model ------------------------------------------------------------


def stale_item(clock: dict) -> checkins_pb2.StaleItem:
    item = checkins_pb2.StaleItem(
        v2mom_id=clock["v2mom_id"], kind=checkins_pb2.ItemKind.Value(clock["kind"]), item_id=clock["item_id"],
        title=clock.get("title", ""), owner_id=clock.get("owner_id", ""), org_unit_id=clock.get("org_unit_id", ""),
        cycle_id=clock.get("cycle_id", ""),
        staleness=checkins_pb2.Staleness.Value(STALENESS_NAMES[clock["staleness"]]) if clock["staleness"] in STALENESS_NAMES else 0,
    )
    if clock.get("last_checkin_time"):
        item.last_checkin_time.CopyFrom(to_timestamp(clock["last_checkin_time"]))
    if clock.get("stale_since"):
        item.stale_since_time.CopyFrom(to_timestamp(clock["stale_since"]))
    return item


def staleness_event(event_type: str, clock: dict) -> dict:
    data = events_pb2.ItemStalenessEventData(
        item=stale_item(clock), cadence=checkins_pb2.Cadence.Value(cadence_name(clock.get("cadence"))),
        v2mom_owner_id=clock.get("v2mom_owner_id", ""),
    )
    return events.staleness_event(event_type, data)


# --- the collection -------------------------------------------------------------------------


def _stored(clock: dict) -> dict:
    return {key: value for key, value in clock.items() if key not in ("_id", "revision") and value is not None}


class Clocks:
    def __init__(self, db):
        self.db = db
        self.collection = db[ITEM_CLOCKS]

    def record_checkin(self, v2mom_id: str, kind: str, item_id: str, observe_time: datetime, cadence: str) -> None:
        placeholder = {"v2mom_id": v2mom_id, "kind": kind, "item_id": item_id, "active": False, "staleness": FRESH}
        self._write(clock_id(v2mom_id, kind, item_id), lambda clock: moved(checked_in(clock, observe_time, cadence, placeholder)))

    def apply_structure(self, v2mom: PublishedV2MOM, archived: bool, cadence: str,
                        cycle: tuple[datetime, datetime] | None, now: datetime) -> None:
        """Starts a clock per item, restarts returning ones, stops the ones the approval removed.

        ``cycle`` is [start, end) of the V2MOM's cycle, None when goals does not know the cycle.
        """
        cycle_start, cycle_end = cycle or (None, None)
        live = not archived and (cycle_end is None or now < cycle_end)
        wanted = {clock_id(v2mom.v2mom_id, item.kind, item.item_id): item for item in v2mom.items}
        for doc_id, item in wanted.items():
            self._write(doc_id, lambda clock, item=item: Move(
                published_clock(clock, v2mom, item, live, cadence, cycle_start, cycle_end, now)))
        for doc_id in self._ids_of(v2mom.v2mom_id) - wanted.keys():
            self._write(doc_id, lambda clock: moved(stopped(clock) if clock else None))

    def advance(self, doc_id: str, now: datetime, cadence: str) -> Move | None:
        return self._write(doc_id, lambda clock: advance(clock, now, cadence))

    def known_cycle(self, cycle_id: str) -> tuple[datetime, datetime] | None:
        """The cycle's [start, end) as an earlier approval learned it from goals.

        Clocks written before they kept the cycle's start do not count: their end alone is not enough.
        """
        clock = self.collection.find_one(
            {"cycle_id": cycle_id, "cycle_start": {"$exists": True}, "cycle_end": {"$exists": True}},
            {"cycle_start": 1, "cycle_end": 1},
        )
        return (clock["cycle_start"], clock["cycle_end"]) if clock else None

    def of_v2moms(self, v2mom_ids: list[str]) -> dict[tuple[str, str, str], dict]:
        """The clocks of those V2MOMs, by (v2mom id, kind, item id)."""
        found = self.collection.find({"v2mom_id": {"$in": v2mom_ids}}, {"outbox": 0})
        return {(clock["v2mom_id"], clock["kind"], clock["item_id"]): clock for clock in found}

    def running_stale(self, owner_id: str, org_unit_ids: list[str], after: str, limit: int) -> list[dict]:
        """Up to ``limit`` running STALE and OVERDUE clocks of one owner (or else in those org units), by id after ``after``."""
        query: dict = {"active": True, "staleness": {"$in": STALE_STATES}}
        if owner_id:
            query["owner_id"] = owner_id
        else:
            query["org_unit_id"] = {"$in": list(org_unit_ids)}
        if after:
            query["_id"] = {"$gt": after}
        return list(self.collection.find(query, {"outbox": 0}).sort("_id", 1).limit(limit))

    def _ids_of(self, v2mom_id: str) -> set[str]:
        return {clock["_id"] for clock in self.collection.find({"v2mom_id": v2mom_id}, {"_id": 1})}

    def _write(self, doc_id: str, decide: Callable[[dict | None], Move | None]) -> Move | None:
        """One guarded write of one clock, with its event when the move is news."""
        decided: list[Move] = []

        def as_change(current: dict | None) -> Change | None:
            move = decide(current)
            if move is None or (current is not None and _stored(move.clock) == _stored(current)):
                return None
            decided[:] = [move]
            announced = [staleness_event(move.event_type, move.clock)] if move.event_type else []
            return Change(_stored(move.clock), announced)

        return decided[0] if update_versioned(self.collection, doc_id, as_change) else None


def advance_due(db, now: datetime, limit: int = 500) -> int:
    """Moves up to ``limit`` clocks due by ``now`` one step each; returns how many events that made."""
    clocks = Clocks(db)
    settings = CycleSettingsRepository(db)
    cadences: dict[str, str] = {}  # read once per cycle per pass
    announced = 0
    due = clocks.collection.find({"next_check_at": {"$lte": now}}, {"_id": 1, "cycle_id": 1})
    for found in list(due.sort("next_check_at", 1).limit(limit)):
        cycle_id = found.get("cycle_id", "")
        if cycle_id not in cadences:
            cadences[cycle_id] = settings.cadence_or_default(cycle_id)
        move = clocks.advance(found["_id"], now, cadences[cycle_id])
        announced += bool(move and move.event_type)
    return announced


def reschedule_cycle(db, cycle_id: str, now: datetime) -> int:
    """After a cadence change: the next tick looks again at every running clock of the cycle."""
    result = db[ITEM_CLOCKS].update_many(
        {"cycle_id": cycle_id, "active": True}, {"$set": {"next_check_at": now}, "$inc": {"revision": 1}}
    )
    return result.modified_count
