"""The published shape of each V2MOM, as the check-ins service last learned it.

Goals owns V2MOMs. Check-ins keeps a copy of the published version of each
one it has met (collection ``structures``), so a check-in is checked without
a call to goals-api each time. The copy is filled two ways:

- from goals' ``v2mom_approved`` / ``v2mom_archived`` events: the worker calls
  ``store_from_event`` / ``mark_archived``, so a newly published revision
  replaces the old one (and a removed measure stops taking check-ins) within
  an event's latency;
- on a miss, or when a check-in names an item the copy lacks, from
  GoalService.GetV2MOM (``StructureCache``).

Every write is guarded by ``published_revision``: a slow fetch or a replayed
event never replaces a newer revision. ``archived`` only goes from false to
true; goals never un-archives.

A document::

    {_id: v2mom id, published_revision, archived, owner_id, org_unit_id, cycle_id, parent_id,
     publish_time (when goals last approved it; absent if goals did not say),
     measures: [{id, title, owner_id, baseline, target, direction, unit, weight, method_ids}],
     methods: [{id, title, owner_id, accountable_id, responsible_ids, milestone_ids, due_date, weight, value_ids}],
     values: [{id, name}],
     cycle_start, cycle_end (YYYY-MM-DD, inclusive; only once fetched from goals), fetched_at}

An archived V2MOM first met through its ``v2mom_archived`` event is a stub:
``{_id, archived: true, archived_revision, published_revision: 0}``.
"""

from datetime import UTC, date, datetime

from google.protobuf import json_format
from pymongo import ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from services.platform.core.errors import FailedPrecondition, NotFound, PreconditionViolation
from services.platform.bus.events import MalformedEvent
from services.platform.core.clock import from_timestamp

from .goals_client import GoalsClient
from .progress import MEASURE, METHOD
from v2mom.v1 import events_pb2, goals_pb2

STRUCTURES = "structures"
# Looked up by _id only.
INDEXES: list = []

ITEM_LISTS = {MEASURE: "measures", METHOD: "methods"}


# --- documents from goals' messages (pure) ------------------------------------------------------


def structure_from_content(
    v2mom_id: str, revision: int, owner_id: str, org_unit_id: str, cycle_id: str, parent_id: str,
    content: goals_pb2.V2MOMContent, publish_time: datetime | None = None,
) -> dict:
    structure = {
        "_id": v2mom_id,
        "published_revision": revision,
        "owner_id": owner_id,
        "org_unit_id": org_unit_id,
        "cycle_id": cycle_id,
        "parent_id": parent_id or None,
        "title": content.title,
        "measures": [_measure(m) for m in content.measures],
        "methods": [_method(m) for m in content.methods],
        "values": [{"id": v.id, "name": v.name} for v in content.values],
    }
    # Kept so a worker that learns the structure from this copy, late, still starts the
    # item clocks at publication rather than at the moment it happened to learn of it.
    if publish_time is not None:
        structure["publish_time"] = publish_time
    return structure


def structure_from_v2mom(v2mom: goals_pb2.V2MOM) -> dict:
    """From GetV2MOM(view=PUBLISHED): its content and published_revision are the published version's."""
    return structure_from_content(
        v2mom.id, v2mom.published_revision, v2mom.owner_id, v2mom.org_unit_id, v2mom.cycle_id, v2mom.parent_id,
        v2mom.content, _publish_time(v2mom),
    )


def _publish_time(message: goals_pb2.V2MOM | events_pb2.V2MOMEventData) -> datetime | None:
    return from_timestamp(message.publish_time) if message.HasField("publish_time") else None


def _measure(measure: goals_pb2.Measure) -> dict:
    return {
        "id": measure.id,
        "title": measure.title,
        "owner_id": measure.owner_id,
        "baseline": measure.baseline if measure.HasField("baseline") else None,
        "target": measure.target if measure.HasField("target") else None,
        "direction": goals_pb2.Direction.Name(measure.direction),
        "unit": measure.unit,
        "weight": measure.weight,
        "method_ids": list(measure.method_ids),
    }


def _method(method: goals_pb2.Method) -> dict:
    due = method.due_date
    return {
        "id": method.id,
        "title": method.title,
        "owner_id": method.owner_id,
        "accountable_id": method.accountable_id,
        "responsible_ids": list(method.responsible_ids),
        "milestone_ids": [m.id for m in method.milestones],
        "due_date": f"{due.year:04d}-{due.month:02d}-{due.day:02d}" if due.year else None,
        "weight": method.weight,
        "value_ids": list(method.value_ids),
    }


# --- reading a structure (pure) ---------------------------------------------------------------------


def find_item(structure: dict, kind: str, item_id: str) -> dict | None:
    return next((item for item in structure.get(ITEM_LISTS[kind], []) if item["id"] == item_id), None)


def is_complete(structure: dict) -> bool:
    """False for an archived stub that never saw the published content."""
    return structure.get("published_revision", 0) > 0


# --- writes: the worker's entry points --------------------------------------------------------------


def store_from_event(db: Database, data: dict) -> bool:
    """Stores the published version a ``v2mom_approved`` event carries.

    `data` is the event's CloudEvents ``data``: V2MOMEventData in proto3 JSON,
    its content the newly published one. Returns True when this revision is
    now the stored one, False when a newer revision was already stored (a
    replayed or late event). Raises MalformedEvent for a payload that is not
    a published V2MOM, so the consumer dead-letters it.
    """
    event = _parse_event(data)
    if event.state != goals_pb2.V2MOM_STATE_PUBLISHED:
        state = goals_pb2.V2MOMState.Name(event.state) if event.state in goals_pb2.V2MOMState.values() else event.state
        raise MalformedEvent(f"v2mom {event.v2mom_id!r} event has state {state}, not PUBLISHED")
    structure = structure_from_content(
        event.v2mom_id, event.revision, event.owner_id, event.org_unit_id, event.cycle_id, event.parent_id,
        event.content, _publish_time(event),
    )
    return store(db, structure)


def mark_archived(db: Database, v2mom_id: str, revision: int) -> bool:
    """Marks a V2MOM archived (from its ``v2mom_archived`` event); True when this call archived it.

    Archiving is final in goals, so no revision guard is needed: a late
    approved event stores content but leaves ``archived`` alone. `revision`
    (the event's) is kept as ``archived_revision``, the highest seen.
    """
    update = {
        "$set": {"archived": True},
        "$max": {"archived_revision": revision},
        "$setOnInsert": {"published_revision": 0},
    }
    collection = db[STRUCTURES]
    try:
        before = collection.find_one_and_update(
            {"_id": v2mom_id}, update, projection={"archived": 1}, upsert=True, return_document=ReturnDocument.BEFORE
        )
    except DuplicateKeyError:  # another writer inserted it between our find and insert: now it exists
        before = collection.find_one_and_update({"_id": v2mom_id}, update, projection={"archived": 1})
    return not (before or {}).get("archived", False)


def store(db: Database, structure: dict, archived: bool = False) -> bool:
    """Upserts a structure unless a newer published_revision is stored; True when stored."""
    fields = {key: value for key, value in structure.items() if key != "_id"}
    fields["fetched_at"] = datetime.now(UTC)
    update: dict = {"$set": fields}
    if archived:
        fields["archived"] = True
    else:
        update["$setOnInsert"] = {"archived": False}  # never un-archive what an event archived
    guard = {"_id": structure["_id"], "published_revision": {"$lte": structure["published_revision"]}}
    collection = db[STRUCTURES]
    try:
        collection.update_one(guard, update, upsert=True)
        return True
    except DuplicateKeyError:
        # The guard missed, so the upsert tried to insert an _id that exists: either a
        # newer revision is stored (keep it), or a concurrent writer inserted first
        # (then the guard may match now).
        return collection.update_one(guard, update).matched_count == 1


def set_cycle_bounds(db: Database, v2mom_id: str, start: str, end: str) -> None:
    """Adds a cycle's first and last day (YYYY-MM-DD) to a stored structure."""
    db[STRUCTURES].update_one({"_id": v2mom_id}, {"$set": {"cycle_start": start, "cycle_end": end}})


def find(db: Database, v2mom_id: str) -> dict | None:
    return db[STRUCTURES].find_one({"_id": v2mom_id})


def _parse_event(data: dict) -> events_pb2.V2MOMEventData:
    if not isinstance(data, dict) or not isinstance(data.get("content"), dict):
        # Checked here: ignore_unknown_fields (kept for newer goals' fields) would read a list as no content.
        raise MalformedEvent("v2mom event data must be a JSON object with a content object")
    try:
        event = json_format.ParseDict(data, events_pb2.V2MOMEventData(), ignore_unknown_fields=True)
    except json_format.ParseError as error:
        raise MalformedEvent(f"v2mom event data does not parse: {error}") from None
    if not event.v2mom_id or event.revision <= 0:
        raise MalformedEvent("v2mom event data needs v2momId and a positive revision")
    return event


# --- the API's read path ---------------------------------------------------------------------------


class StructureCache:
    """The stored copy when it can answer, goals-api when it cannot."""

    def __init__(self, db: Database, goals: GoalsClient):
        self.db = db
        self.goals = goals

    def published(self, v2mom_id: str, wanted_item: tuple[str, str] | None = None, authorization: str = "") -> dict:
        """The V2MOM's published structure.

        Asks goals when there is no stored copy, or when `wanted_item` ((kind,
        id)) is not in it: the item may be new in a revision whose event has
        not reached us yet. An archived V2MOM (final) is answered from the
        copy. `authorization` (the caller's own bearer header) lets an
        unpublished V2MOM be told apart from an unknown one; see _refusal.
        Raises NOT_FOUND, FAILED_PRECONDITION (not published) or UNAVAILABLE.
        The caller decides about a wanted item that is still missing, and
        about an archived V2MOM.
        """
        structure = find(self.db, v2mom_id)
        if self._needs_fetch(structure, wanted_item):
            structure = self._fetch(v2mom_id, authorization)
        return structure

    def cycle_dates(self, structure: dict) -> tuple[date, date]:
        """The first and last day of the V2MOM's cycle.

        A copy stored from an event has none (events do not carry them): ask
        goals once and keep them on the copy.
        """
        if "cycle_start" not in structure:
            structure = self._with_goals_cycle(structure)
            set_cycle_bounds(self.db, structure["_id"], structure["cycle_start"], structure["cycle_end"])
        return date.fromisoformat(structure["cycle_start"]), date.fromisoformat(structure["cycle_end"])

    @staticmethod
    def _needs_fetch(structure: dict | None, wanted_item: tuple[str, str] | None) -> bool:
        if structure is None:
            return True
        if structure.get("archived"):
            return False
        if not is_complete(structure):
            return True
        return wanted_item is not None and find_item(structure, *wanted_item) is None

    def _fetch(self, v2mom_id: str, authorization: str) -> dict:
        v2mom = self.goals.published_v2mom(v2mom_id)
        if v2mom is None:
            raise self._refusal(v2mom_id, authorization)
        archived = v2mom.state == goals_pb2.V2MOM_STATE_ARCHIVED
        structure = structure_from_v2mom(v2mom)
        if not archived:  # an archived V2MOM takes no check-ins: its cycle no longer matters
            structure = self._with_goals_cycle(structure)
        store(self.db, structure, archived=archived)
        # Read back: if a newer revision was stored meanwhile, that one is the answer.
        return find(self.db, v2mom_id)

    def _refusal(self, v2mom_id: str, authorization: str):
        """NOT_FOUND, or FAILED_PRECONDITION for a V2MOM the caller can see but that was never published.

        goals shows its service caller published versions only. Asking again
        as the caller lets goals decide whether they may know the draft
        exists; to anyone else it stays NOT_FOUND.
        """
        seen = self.goals.v2mom_seen_by(authorization, v2mom_id)
        if seen is None:
            return NotFound(f"v2mom {v2mom_id!r} not found")
        state = goals_pb2.V2MOMState.Name(seen.state).removeprefix("V2MOM_STATE_")
        return FailedPrecondition(
            f"v2mom {v2mom_id!r} has no published version (it is {state}); "
            "check-ins are taken on published V2MOMs only",
            [PreconditionViolation("STATE", v2mom_id, f"state is {state}")],
        )

    def _with_goals_cycle(self, structure: dict) -> dict:
        dates = self.goals.cycle_dates(structure["cycle_id"])
        if dates is None:
            raise FailedPrecondition(
                f"cycle {structure['cycle_id']!r} of v2mom {structure['_id']!r} is unknown to goals-api"
            )
        return {**structure, "cycle_start": dates[0].isoformat(), "cycle_end": dates[1].isoformat()}
