"""The ``item_clocks`` collection: one clock per measure or method of a published V2MOM.

Written by checkins-worker (the projection and the staleness timer); read by
checkins-api through progress_reader.py. Every write is one guarded write of
one clock (versioned.py) carrying the ``item_became_stale`` / ``item_overdue``
event the move announces, if any. How a clock moves is decided in
staleness.py.

A document::

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
      quarter_ends?: [datetime],       # when the cycle's quarters end: a check-in counts for its own quarter
      outbox, outbox_pending           # item_became_stale / item_overdue, written with the step
    }
"""

from collections.abc import Callable
from datetime import datetime

from services.platform.bus.outbox import outbox_index
from services.platform.store.mongo import Index, after_id, find_in

from .published import PublishedV2MOM
from .repository import CycleSettingsRepository
from .staleness import (
    FRESH,
    STALE_STATES,
    Move,
    advance,
    checked_in,
    clock_id,
    moved,
    published_clock,
    staleness_event,
    stopped,
)
from .versioned import Change, Remembered, update_versioned

ITEM_CLOCKS = "item_clocks"

INDEXES = [
    outbox_index(ITEM_CLOCKS),
    Index(ITEM_CLOCKS, [("next_check_at", 1)], name="due"),
    Index(ITEM_CLOCKS, [("v2mom_id", 1)], name="by_v2mom"),
    Index(ITEM_CLOCKS, [("owner_id", 1), ("_id", 1)], name="by_owner"),
    Index(ITEM_CLOCKS, [("org_unit_id", 1), ("_id", 1)], name="by_org_unit"),
    # Every approval asks what an earlier one learned of its cycle; cycle changes reschedule by cycle.
    Index(ITEM_CLOCKS, [("cycle_id", 1)], name="by_cycle"),
]




def _stored(clock: dict) -> dict:
    return {key: value for key, value in clock.items() if key not in ("_id", "revision") and value is not None}


class Clocks:
    def __init__(self, db):
        self.db = db
        self.collection = db[ITEM_CLOCKS]
        # What this writer last wrote of each clock: a check-in's step decides on it without reading first.
        self._memory = Remembered()

    def record_checkin(self, v2mom_id: str, kind: str, item_id: str, observe_time: datetime, cadence: str) -> Move | None:
        """The clock's move (None when it did not change); its ``event_type`` says whether the write carries an event."""
        placeholder = {"v2mom_id": v2mom_id, "kind": kind, "item_id": item_id, "active": False, "staleness": FRESH}
        return self._write(clock_id(v2mom_id, kind, item_id), lambda clock: moved(checked_in(clock, observe_time, cadence, placeholder)))

    def apply_structure(self, v2mom: PublishedV2MOM, archived: bool, cadence: str,
                        cycle: tuple | None, now: datetime) -> None:
        """Starts a clock per item, restarts returning ones, stops the ones the approval removed.

        ``cycle`` is (start, end, quarter ends) of the V2MOM's cycle ([start, end)), None when goals does not know it.
        """
        cycle_start, cycle_end, quarter_ends = cycle or (None, None, ())
        live = not archived and (cycle_end is None or now < cycle_end)
        wanted = {clock_id(v2mom.v2mom_id, item.kind, item.item_id): item for item in v2mom.items}
        for doc_id, item in wanted.items():
            self._write(doc_id, lambda clock, item=item: Move(
                published_clock(clock, v2mom, item, live, cadence, cycle_start, cycle_end, now, quarter_ends)))
        for doc_id in self._ids_of(v2mom.v2mom_id) - wanted.keys():
            self._write(doc_id, lambda clock: moved(stopped(clock) if clock else None))

    def advance(self, doc_id: str, now: datetime, cadence: str) -> Move | None:
        return self._write(doc_id, lambda clock: advance(clock, now, cadence))

    def known_cycle(self, cycle_id: str) -> tuple | None:
        """The cycle's (start, end, quarter ends) as an earlier approval learned it from goals.

        Clocks written before they kept the cycle's start do not count: their end alone is not enough.
        """
        # The hint makes a missing index an error rather than a scan growing with every clock stored.
        clock = next(self.collection.find(
            {"cycle_id": cycle_id, "cycle_start": {"$exists": True}, "cycle_end": {"$exists": True}},
            {"cycle_start": 1, "cycle_end": 1, "quarter_ends": 1},
        ).hint("by_cycle").limit(1), None)
        return (clock["cycle_start"], clock["cycle_end"], tuple(clock.get("quarter_ends") or ())) if clock else None

    def of_v2moms(self, v2mom_ids: list[str]) -> dict[tuple[str, str, str], dict]:
        """The clocks of those V2MOMs, by (v2mom id, kind, item id)."""
        found = find_in(self.collection, "v2mom_id", v2mom_ids, projection={"outbox": 0})
        return {(clock["v2mom_id"], clock["kind"], clock["item_id"]): clock for clock in found}

    def running_stale(self, owner_id: str, org_unit_ids: list[str], after: str, limit: int) -> list[dict]:
        """Up to ``limit`` running STALE and OVERDUE clocks of one owner (or else in those org units), by id after ``after``."""
        query = after_id({"active": True, "staleness": {"$in": STALE_STATES}}, after)
        if owner_id:
            return find_in(self.collection, "owner_id", [owner_id], query, {"outbox": 0}, ("_id",), limit)
        return find_in(self.collection, "org_unit_id", org_unit_ids, query, {"outbox": 0}, ("_id",), limit)

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

        return decided[0] if update_versioned(self.collection, doc_id, as_change, memory=self._memory) else None


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


def follow_cycle(db, cycle_id: str, start: datetime, end: datetime, quarter_ends: tuple[datetime, ...],
                 now: datetime) -> int:
    """After goals changed a cycle's dates or quarters: every running clock of it takes them, and the next
    tick judges each one by them (as after a cadence change)."""
    result = db[ITEM_CLOCKS].update_many(
        {"cycle_id": cycle_id, "active": True},
        {"$set": {"cycle_start": start, "cycle_end": end, "quarter_ends": list(quarter_ends), "next_check_at": now},
         "$inc": {"revision": 1}},
    )
    return result.modified_count


def reschedule_cycle(db, cycle_id: str, now: datetime) -> int:
    """After a cadence change: the next tick looks again at every running clock of the cycle."""
    result = db[ITEM_CLOCKS].update_many(
        {"cycle_id": cycle_id, "active": True}, {"$set": {"next_check_at": now}, "$inc": {"revision": 1}}
    )
    return result.modified_count
