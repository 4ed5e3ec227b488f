"""What a check-in must satisfy, and how one is built: pure functions, no I/O.

service.py learns the V2MOM's published structure and its cycle's window,
then asks these rules; the refusals are the ServiceErrors a client sees.
"""

from datetime import datetime

from services.platform.api.auth import Caller
from services.platform.core.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    PreconditionViolation,
    Violations,
)
from v2mom.v1 import checkins_pb2

from .cycles import last_day
from .progress import MEASURE, METHOD, measure_progress
from .repository import checkin_id

NOUN = {MEASURE: "measure", METHOD: "method"}


def new_checkin(
    caller: Caller, structure: dict, kind: str, item: dict, stamp: datetime, observed: datetime, key: str,
    *, value, progress_percent, status, confidence, comment, completed_milestone_ids,
) -> dict:
    """The check-in document: recorded now (``stamp``) against the structure's published revision."""
    checkin = {
        "_id": checkin_id(caller.person_id, key),
        "v2mom_id": structure["_id"],
        "item_kind": kind,
        "item_id": item["id"],
        "author_id": caller.person_id,
        "owner_id": structure["owner_id"],
        "org_unit_id": structure["org_unit_id"],
        "cycle_id": structure["cycle_id"],
        # Which published revision it was checked against (and its progress derived from).
        "structure_revision": structure["published_revision"],
        "value": value,
        "progress_percent": progress_percent,
        "status": status,
        "confidence": confidence,
        "comment": comment,
        "completed_milestone_ids": completed_milestone_ids,
        "observe_time": observed,
        "record_time": stamp,
    }
    if key:  # kept to show what the id was derived from; absent, not empty, without one
        checkin["idempotency_key"] = key
    return checkin


def measure_percent(measure: dict, value: float) -> float:
    """How far `value` has come on a stored measure's scale, by the formula the worker's roll-up uses.

    A published measure always has a baseline and a target (goals' lint
    refuses to submit without); a missing one counts as 0 rather than
    failing the check-in.
    """
    return measure_progress(
        value, measure.get("baseline") or 0.0, measure.get("target") or 0.0, measure.get("direction") or ""
    )


def corrected_values(kind: str, item: dict, original: dict, request) -> dict:
    """What the correction says, the corrected check-in's values where it says nothing."""
    values = {
        "status": checkins_pb2.CheckinStatus.Name(request.status) if request.status else original["status"],
        "comment": request.comment or original["comment"],
    }
    if kind == MEASURE:
        value = request.value if request.HasField("value") else original["value"]
        return {
            **values,
            "value": value,
            # Derived again: the current published version's baseline and target are the ones that count.
            "progress_percent": measure_percent(item, value),
            "confidence": request.confidence if request.HasField("confidence") else original["confidence"],
            "completed_milestone_ids": [],
        }
    progress = request.progress_percent if request.HasField("progress_percent") else original["progress_percent"]
    return {
        **values,
        "value": None,
        "progress_percent": progress,
        "confidence": None,
        "completed_milestone_ids": list(request.completed_milestone_ids) or original["completed_milestone_ids"],
    }


# --- refusals --------------------------------------------------------------------------------------


def require_open_cycle(cycle_id: str, window: tuple[datetime, datetime], stamp: datetime) -> None:
    """New check-ins are taken while the cycle runs."""
    start, end = window
    if stamp < start:
        raise FailedPrecondition(
            f"cycle {cycle_id} starts on {start.date()}; check-ins open then",
            [PreconditionViolation("CYCLE_NOT_STARTED", cycle_id, f"starts {start.date()}")],
        )
    if stamp >= end:
        raise FailedPrecondition(
            f"cycle {cycle_id} ended on {last_day(end)}; it takes no new check-ins "
            "(its V2MOM's owner, an item's owner or an admin may still correct one)",
            [PreconditionViolation("CYCLE_ENDED", cycle_id, f"ended {last_day(end)}")],
        )


def require_within_cycle(cycle_id: str, window: tuple[datetime, datetime], observed: datetime) -> datetime:
    """A check-in speaks for a moment of its cycle; returns that moment."""
    start, end = window
    if observed < start:
        raise _bad_observe_time(f"is before cycle {cycle_id} starts ({start.date()})")
    if observed >= end:
        raise _bad_observe_time(f"is after cycle {cycle_id} ended ({last_day(end)})")
    return observed


def require_not_archived(structure: dict) -> None:
    if structure.get("archived"):
        raise FailedPrecondition(
            f"v2mom {structure['_id']!r} is archived; it takes no more check-ins or corrections",
            [PreconditionViolation("STATE", structure["_id"], "state is ARCHIVED")],
        )


def require_milestones_of(method: dict, milestone_ids) -> None:
    known = set(method.get("milestone_ids", []))
    violations = Violations()
    for i, milestone_id in enumerate(milestone_ids):
        if milestone_id not in known:
            violations.add(
                f"completed_milestone_ids[{i}]", f"{milestone_id!r} is not a milestone of method {method['id']!r}"
            )
    violations.raise_if_any()


def require_fields_of_kind(kind: str, checkin_id: str, request) -> None:
    """A correction sends the fields of the corrected check-in's kind, not the other kind's."""
    violations = Violations()
    on = f"check-in {checkin_id!r} is on a {NOUN[kind]}"
    if kind == MEASURE:
        if request.HasField("progress_percent"):
            violations.add("progress_percent", f"{on}: send value, not progress_percent")
        if request.completed_milestone_ids:
            violations.add("completed_milestone_ids", f"{on}, which has no milestones")
    else:
        if request.HasField("value"):
            violations.add("value", f"{on}: send progress_percent, not value")
        if request.HasField("confidence"):
            violations.add("confidence", f"{on}, which takes no confidence")
    violations.raise_if_any()


def already_corrected(checkin_id: str, correction_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"check-in {checkin_id!r} was already corrected by {correction_id!r}; correct that one instead",
        [PreconditionViolation("SUPERSEDED", checkin_id, f"superseded by {correction_id}")],
    )


def _bad_observe_time(description: str) -> InvalidArgument:
    return InvalidArgument([FieldViolation("observe_time", description)])
