"""Item clocks: when each measure and method was last checked in, and when it goes stale. Pure, no I/O.

A clock moves one step at a time (FRESH -> STALE at one cadence without a
check-in, STALE -> OVERDUE at two), each step with its event in the same
guarded write, so two timers racing for a clock announce it once. A
check-in makes it FRESH again.

Check-ins open when the cycle starts, so a V2MOM approved ahead of its
cycle has its clocks count from the cycle's start, not from the approval:
its items go stale one cadence into the cycle, never before anyone could
check in.

A clock is the plain dict clock_store.py keeps (its shape is described
there); each function here takes one and returns the next.
"""

from dataclasses import dataclass
from datetime import datetime

from services.platform.core.clock import to_timestamp
from v2mom.v1 import checkins_pb2, events_pb2

from . import events
from .cycles import cadence_length, cadence_name
from .progress import MEASURE
from .published import PublishedItem, PublishedV2MOM

FRESH, STALE, OVERDUE = "FRESH", "STALE", "OVERDUE"
STALE_STATES = [STALE, OVERDUE]
STALENESS_NAMES = {STALE: "STALENESS_STALE", OVERDUE: "STALENESS_OVERDUE"}


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


def stale_at(clock: dict, cadence: str) -> datetime:
    """When the item goes stale: one cadence after its reference time, or when that time's quarter ends, if sooner.

    Quarters (``quarter_ends``, learned from goals) are review periods: a check-in
    counts for its own quarter, so a new quarter asks each item for one of its own.
    """
    reference = reference_time(clock)
    due = reference + cadence_length(cadence)
    quarter_end = next((end for end in clock.get("quarter_ends") or () if end > reference), None)
    return min(due, quarter_end) if quarter_end is not None else due


def next_look(clock: dict, cadence: str) -> datetime | None:
    """When the timer must next look at this clock: its next step, or the cycle's end if sooner."""
    if not clock.get("active"):
        return None
    steps = {FRESH: 0, STALE: 1}.get(clock["staleness"])
    due = stale_at(clock, cadence) + steps * cadence_length(cadence) if steps is not None else None
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
    stale_time = stale_at(clock, cadence)
    event_type = None
    if clock["staleness"] == FRESH and now >= stale_time:
        clock.update(staleness=STALE, stale_since=stale_time)
        event_type = events.ITEM_BECAME_STALE
    elif clock["staleness"] == STALE and now >= stale_time + one_cadence:
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
                    cadence: str, cycle_start: datetime | None, cycle_end: datetime | None, now: datetime,
                    quarter_ends: tuple[datetime, ...] = ()) -> dict:
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
        cycle_start=cycle_start, cycle_end=cycle_end, cadence=cadence, active=live, quarter_ends=list(quarter_ends),
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


# --- events and messages ------------------------------------------------------------


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
