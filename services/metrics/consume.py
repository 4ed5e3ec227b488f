"""What each consumed event does to the metrics store.

Every event becomes one fact (facts.py) and one change to one entity through
the ledger, identified by the event id: a redelivered or republished event is
recognised by that id, and an old one loses to the revision guards.
"""

from datetime import datetime

from pymongo.database import Database

from services.platform.worker.consumer import PermanentError
from v2mom.v1 import events_pb2

from . import cascade, facts, model, store
from .ledger import Ledger

GOALS, CHECKINS = "goals", "checkins"

# Spelled out rather than imported: no service imports another's modules.
V2MOM_EVENTS = (
    "v2mom_created", "v2mom_updated", "v2mom_submitted", "v2mom_changes_requested", "v2mom_approved", "v2mom_archived",
    # A withdrawn submission is a draft again: no longer pending (it stays "submitted at least once").
    "v2mom_withdrawn",
    # Milestones a check-in completed: a new revision of the same published items, nothing to count anew, but
    # its revision keeps this projection in step (and the event has a consumer, so it is never unroutable).
    "milestones_completed",
    # A V2MOM moved to a successor (TransferV2MOM, or a unit's new leader): a newer revision naming the new owner,
    # and for an individual V2MOM the new owner's unit. The owner's live count and the unit it counts for follow
    # through the ledger like any identity change; the state and published items stay as they were.
    "v2mom_transferred",
    # A leaver's items passed to the V2MOM's owner in place: item owners and Accountables, which metrics does not
    # count (the published item ids stay), so only the revision moves; consumed to keep this projection in step.
    "v2mom_items_reassigned",
)
PERSON_UPSERTED, ORG_UNIT_UPSERTED = "person_upserted", "org_unit_upserted"
OBSTACLE_CHANGED = "obstacle_changed"
# Each carries the whole cycle: its quarters bound what coverage counts (a check-in counts for its own quarter).
CYCLE_EVENTS = ("cycle_changed", "cycle_closed")
CHECKIN_RECORDED, CHECKIN_CORRECTED = "checkin_recorded", "checkin_corrected"
PROGRESS_CHANGED, ITEM_BECAME_STALE, ITEM_OVERDUE = "progress_changed", "item_became_stale", "item_overdue"

SUBSCRIPTIONS = {
    GOALS: V2MOM_EVENTS + (PERSON_UPSERTED, ORG_UNIT_UPSERTED, OBSTACLE_CHANGED) + CYCLE_EVENTS,
    CHECKINS: (CHECKIN_RECORDED, CHECKIN_CORRECTED, PROGRESS_CHANGED, ITEM_BECAME_STALE, ITEM_OVERDUE),
}


def event_time(envelope: dict) -> datetime:
    try:
        return facts.event_time(envelope["time"])
    except facts.InvalidFact as error:
        raise PermanentError(str(error)) from None


def apply(db: Database, source: str, envelope: dict) -> None:
    try:
        _apply(db, source, envelope)
    except facts.InvalidFact as error:
        raise PermanentError(str(error)) from None


def _follow_cascade(db: Database, event_type: str, payload: events_pb2.V2MOMEventData) -> None:
    """Which parent methods nobody supports (cascade.py): approvals and archives are what change it."""
    if event_type == "v2mom_approved":
        store.take_published_methods(db, cascade.entry_from_event(payload))
    elif event_type == "v2mom_archived":
        store.archive_published_methods(db, payload.v2mom_id, payload.revision, payload.parent_id or None)


def _apply(db: Database, source: str, envelope: dict) -> None:
    event_type, event_id, data = envelope["type"], envelope["id"], envelope["data"]
    if event_type not in SUBSCRIPTIONS.get(source, ()):
        raise PermanentError(f"{source} does not publish {event_type!r} as far as metrics knows")
    if not isinstance(event_id, str) or not event_id or len(event_id) > 200:
        raise PermanentError("id must be a non-empty string of at most 200 characters")
    ledger = Ledger(db)
    if event_type in V2MOM_EVENTS:
        payload = facts.parse_payload(data, events_pb2.V2MOMEventData)
        fact = facts.lifecycle_from_event(payload)
        ledger.v2mom(fact["v2mom_id"], event_id, lambda state: model.apply_lifecycle(state, fact))
        _follow_cascade(db, event_type, payload)
    elif event_type == OBSTACLE_CHANGED:
        fact = facts.obstacle_from_event(facts.parse_payload(data, events_pb2.ObstacleEventData),
                                         facts.event_time(envelope["time"]))
        ledger.v2mom(fact["v2mom_id"], event_id, lambda state: model.apply_obstacle(state, fact))
    elif event_type == PERSON_UPSERTED:
        fact = facts.person_from_event(facts.parse_payload(data, events_pb2.PersonEventData))
        ledger.person(fact["person_id"], event_id, lambda state: model.apply_person(state, fact))
    elif event_type == ORG_UNIT_UPSERTED:
        store.upsert_unit(db, facts.unit_from_event(facts.parse_payload(data, events_pb2.OrgUnitEventData)))
    elif event_type in CYCLE_EVENTS:
        store.upsert_cycle(db, facts.cycle_from_event(facts.parse_payload(data, events_pb2.CycleEventData)))
    elif event_type in (CHECKIN_RECORDED, CHECKIN_CORRECTED):
        fact = facts.checkin_from_event(facts.parse_payload(data, events_pb2.CheckinEventData))
        if fact["original"] != (event_type == CHECKIN_RECORDED):
            raise PermanentError(f"{event_type} must {'not ' if event_type == CHECKIN_RECORDED else ''}carry supersedesId")
        ledger.v2mom(fact["v2mom_id"], event_id, lambda state: model.apply_checkin(state, fact))
    elif event_type == PROGRESS_CHANGED:
        fact = facts.progress_from_event(facts.parse_payload(data, events_pb2.ProgressEventData))
        ledger.v2mom(fact["v2mom_id"], event_id, lambda state: model.apply_progress(state, fact))
    else:
        fact = facts.staleness_from_event(facts.parse_payload(data, events_pb2.ItemStalenessEventData))
        ledger.v2mom(fact["v2mom_id"], event_id, lambda state: model.apply_staleness(state, fact))
