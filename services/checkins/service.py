"""The check-ins use cases: what each RPC means, independent of gRPC plumbing.

Every write goes the same way: validate the request (nothing stored needed),
learn the V2MOM's published structure (stored copy or goals-api), authorise
against it, check the cycle, then insert the check-in with its event in one
write. The worker derives progress from that event; this side never touches
progress.

A retried call (same author, same idempotency key) collides on the insert and
gets the first call's check-in back. It is looked up before that only when a
check refuses the retry, since things may have changed since the first call
(the V2MOM archived, the cycle over): a first call pays no extra read.
"""

import base64
import hashlib
import json
import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta

from services.platform.api.auth import Caller
from services.platform.core.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PreconditionViolation,
    ServiceError,
    Unavailable,
    Violations,
)

from . import access, convert, events, validation
from .goals_client import GOALS_DOWN, GoalsClient
from .progress import measure_progress
from .progress_store import ProgressReader
from .repository import (
    AlreadyCorrected,
    CheckinRepository,
    CycleSettingsRepository,
    Replayed,
    checkin_id,
    checkin_query,
)
from .structures import MEASURE, METHOD, StructureCache, find_item
from v2mom.v1 import checkins_pb2

log = logging.getLogger(__name__)

NOUN = {MEASURE: "measure", METHOD: "method"}
MAX_TOKEN_LENGTH = 1024


def now() -> datetime:
    # Mongo keeps milliseconds; truncating here keeps what we return equal to what we store.
    stamp = datetime.now(UTC)
    return stamp.replace(microsecond=stamp.microsecond // 1000 * 1000)


class CheckinsService:
    def __init__(
        self,
        checkins: CheckinRepository,
        cycle_settings: CycleSettingsRepository,
        structures: StructureCache,
        goals: GoalsClient,
        progress: ProgressReader,
        reschedule_clocks: Callable[[str, datetime], int],
    ):
        self.checkins = checkins
        self.cycle_settings = cycle_settings
        self.structures = structures
        self.goals = goals
        # The worker's projection (progress, item_clocks), read-only here...
        self.progress_store = progress
        # ...but for this: after a cadence change, the cycle's running clocks must be looked at again
        # (staleness.reschedule_cycle), or a shorter cadence would wait for each clock's old next look.
        self.reschedule_clocks = reschedule_clocks

    # --- who is calling ----------------------------------------------------------------------

    def active_caller(self, caller: Caller, writes: bool) -> Caller:
        """The caller, unless goals' directory says their person has left: PERMISSION_DENIED then.

        A leaver's token may stay valid for hours; their access ends when HR
        marks them inactive, as in goals-api, within GoalsClient's
        PERSON_SECONDS (the answer is cached). Services act for no person and
        pass. When goals-api cannot be reached, the last answer it gave about
        this person still counts (a known leaver stays out, a known colleague
        keeps working); with none, reads go ahead, since they show only what
        every employee may read, but writes get UNAVAILABLE: nothing is
        recorded in the name of someone who may have left.
        """
        if caller.has_role("service"):
            return caller
        try:
            active = self.goals.person_active(caller.person_id)
        except Unavailable:
            if writes:
                raise Unavailable(GOALS_DOWN) from None
            log.warning("reading without knowing whether the caller is active", extra={"person_id": caller.person_id})
            return caller
        if active is False:  # None: goals does not know them, and goals-api lets them in too
            raise PermissionDenied(f"{caller.person_id} is no longer active in the directory")
        return caller

    # --- recording ----------------------------------------------------------------------------

    def record_measure(self, caller: Caller, request, authorization: str = "") -> checkins_pb2.Checkin:
        stamp = now()
        observed = validation.measure_checkin(request, stamp)
        try:
            structure, measure = self._recordable(caller, request.v2mom_id, MEASURE, request.measure_id, authorization)
            observed = self._in_open_cycle(structure, stamp, observed or stamp)
        except ServiceError as refusal:
            return self._replayed_or_raise(caller, request.idempotency_key, refusal)
        checkin = self._new_checkin(
            caller, structure, MEASURE, measure, stamp, observed, request.idempotency_key,
            value=request.value,
            progress_percent=_measure_percent(measure, request.value),
            status=checkins_pb2.CheckinStatus.Name(request.status),
            confidence=request.confidence,
            comment=request.comment,
            completed_milestone_ids=[],
        )
        return convert.checkin_to_proto(self._insert(checkin, events.CHECKIN_RECORDED, structure, measure))

    def record_method(self, caller: Caller, request, authorization: str = "") -> checkins_pb2.Checkin:
        stamp = now()
        observed = validation.method_checkin(request, stamp)
        try:
            structure, method = self._recordable(caller, request.v2mom_id, METHOD, request.method_id, authorization)
            _require_milestones_of(method, request.completed_milestone_ids)
            observed = self._in_open_cycle(structure, stamp, observed or stamp)
        except ServiceError as refusal:
            return self._replayed_or_raise(caller, request.idempotency_key, refusal)
        checkin = self._new_checkin(
            caller, structure, METHOD, method, stamp, observed, request.idempotency_key,
            value=None,
            progress_percent=request.progress_percent,
            status=checkins_pb2.CheckinStatus.Name(request.status),
            confidence=None,
            comment=request.comment,
            completed_milestone_ids=list(request.completed_milestone_ids),
        )
        return convert.checkin_to_proto(self._insert(checkin, events.CHECKIN_RECORDED, structure, method))

    def _replayed_or_raise(self, caller: Caller, key: str, refusal: ServiceError) -> checkins_pb2.Checkin:
        """A key this caller used before answers with what that call recorded, whatever changed since."""
        existing = self.checkins.find_by_key(caller.person_id, key) if key else None
        if existing is None:
            raise refusal
        return convert.checkin_to_proto(existing)

    def _recordable(
        self, caller: Caller, v2mom_id: str, kind: str, item_id: str, authorization: str
    ) -> tuple[dict, dict]:
        structure = self.structures.published(v2mom_id, (kind, item_id), authorization)
        _require_not_archived(structure)
        item = find_item(structure, kind, item_id)
        if item is None:
            raise NotFound(f"{NOUN[kind]} {item_id!r} not found in the published version of v2mom {v2mom_id!r}")
        access.require_may_record(caller, structure, kind, item)
        return structure, item

    def _in_open_cycle(self, structure: dict, stamp: datetime, observed: datetime) -> datetime:
        """New check-ins are taken while the cycle runs, observed within it."""
        start, end = self._cycle_window(structure)
        cycle_id = structure["cycle_id"]
        if stamp < start:
            raise FailedPrecondition(
                f"cycle {cycle_id} starts on {start.date()}; check-ins open then",
                [PreconditionViolation("CYCLE_NOT_STARTED", cycle_id, f"starts {start.date()}")],
            )
        if stamp >= end:
            raise FailedPrecondition(
                f"cycle {cycle_id} ended on {_last_day(end)}; it takes no new check-ins "
                "(its V2MOM's owner, an item's owner or an admin may still correct one)",
                [PreconditionViolation("CYCLE_ENDED", cycle_id, f"ended {_last_day(end)}")],
            )
        return self._within_cycle(structure, observed)

    def _within_cycle(self, structure: dict, observed: datetime) -> datetime:
        start, end = self._cycle_window(structure)
        cycle_id = structure["cycle_id"]
        if observed < start:
            raise _bad_observe_time(f"is before cycle {cycle_id} starts ({start.date()})")
        if observed >= end:
            raise _bad_observe_time(f"is after cycle {cycle_id} ended ({_last_day(end)})")
        return observed

    def _cycle_window(self, structure: dict) -> tuple[datetime, datetime]:
        """[first day 00:00 UTC, the day after the last 00:00 UTC): cycles are whole UTC days."""
        first, last = self.structures.cycle_dates(structure)
        return _midnight(first), _midnight(last + timedelta(days=1))

    @staticmethod
    def _new_checkin(
        caller: Caller, structure: dict, kind: str, item: dict, stamp: datetime, observed: datetime, key: str,
        *, value, progress_percent, status, confidence, comment, completed_milestone_ids,
    ) -> dict:
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

    def _insert(self, checkin: dict, event_type: str, structure: dict, item: dict) -> dict:
        """Stores the check-in with its event; a concurrent replay of the same key gets the first one back."""
        cadence = self.cycle_settings.cadence(structure["cycle_id"]) or convert.DEFAULT_CADENCE
        data = convert.checkin_event_data(checkin, item["title"], structure.get("parent_id"), cadence)
        try:
            self.checkins.insert(checkin, [events.checkin_event(event_type, data)])
        except Replayed as replay:
            return replay.existing
        return checkin

    # --- correcting ------------------------------------------------------------------------------

    def correct(self, caller: Caller, request, authorization: str = "") -> checkins_pb2.Checkin:
        """Records a new check-in that supersedes an earlier one; the earlier one stays in the history.

        Two writes, correction first: the unique index on supersedes_id makes
        the insert the claim (of two racing corrections one wins), and then the
        corrected check-in is linked to it. If the process dies in between, the
        worker links it from the checkin_corrected event.
        """
        stamp = now()
        requested_observe_time = validation.correction(request, stamp)
        try:
            original, structure, item, observed = self._correction_target(caller, request, stamp, requested_observe_time,
                                                                          authorization)
        except ServiceError as refusal:
            # Includes "already corrected": by this very call, when it is a retry.
            return self._replayed_or_raise(caller, request.idempotency_key, refusal)
        correction = self._new_checkin(
            caller, structure, original["item_kind"], item, stamp, observed, request.idempotency_key,
            **_corrected_values(original["item_kind"], item, original, request),
        )
        correction.update(supersedes_id=original["_id"], correction_reason=request.reason)
        return convert.checkin_to_proto(self._insert_correction(correction, original, structure, item))

    def _correction_target(
        self, caller: Caller, request, stamp: datetime, requested_observe_time: datetime | None, authorization: str
    ) -> tuple[dict, dict, dict, datetime]:
        """(the check-in to correct, its V2MOM's published structure, its item, the correction's observe time)."""
        original = self._correctable(request.checkin_id)
        kind = original["item_kind"]
        _require_fields_of_kind(kind, original["_id"], request)
        structure = self.structures.published(original["v2mom_id"], (kind, original["item_id"]), authorization)
        _require_not_archived(structure)
        item = find_item(structure, kind, original["item_id"])
        if item is None:
            raise FailedPrecondition(
                f"{NOUN[kind]} {original['item_id']!r} is no longer in v2mom {original['v2mom_id']!r}; "
                "its check-ins can no longer be corrected"
            )
        _, end = self._cycle_window(structure)
        access.require_may_correct(caller, structure, kind, item, cycle_ended=stamp >= end)
        if kind == METHOD:
            _require_milestones_of(item, request.completed_milestone_ids)
        observed = self._within_cycle(structure, requested_observe_time or original["observe_time"])
        return original, structure, item, observed

    def _correctable(self, checkin_id: str) -> dict:
        original = self.checkins.get(checkin_id)
        if original is None:
            raise NotFound(f"check-in {checkin_id!r} not found")
        if original.get("superseded_by_id"):
            raise _already_corrected(checkin_id, original["superseded_by_id"])
        return original

    def _insert_correction(self, correction: dict, original: dict, structure: dict, item: dict) -> dict:
        try:
            stored = self._insert(correction, events.CHECKIN_CORRECTED, structure, item)
        except AlreadyCorrected as race:
            # The winner may have died before linking; linking is idempotent, so do it for them.
            self.checkins.mark_superseded(original["_id"], race.correction_id)
            raise _already_corrected(original["_id"], race.correction_id) from None
        if stored is correction:
            self.checkins.mark_superseded(original["_id"], correction["_id"])
        return stored

    # --- reading ------------------------------------------------------------------------------------

    def list_checkins(self, caller: Caller, request) -> checkins_pb2.ListCheckinsResponse:
        limit, start, end = validation.list_checkins(request)
        filters = [
            "checkins", request.v2mom_id, request.item_id, request.author_id,
            start.isoformat() if start else "", end.isoformat() if end else "", request.include_superseded,
        ]
        after = _checkin_position(decode_token(request.page_token, filters))
        query = checkin_query(
            request.v2mom_id, request.item_id, request.author_id, start, end, request.include_superseded
        )
        rows = self.checkins.page(query, after, limit + 1)
        page = rows[:limit]
        next_token = ""
        if len(rows) > limit:
            last = page[-1]
            next_token = encode_token(
                filters, [last["observe_time"].isoformat(), last["record_time"].isoformat(), last["_id"]]
            )
        return checkins_pb2.ListCheckinsResponse(
            checkins=[convert.checkin_to_proto(doc) for doc in page], next_page_token=next_token
        )

    def progress(self, caller: Caller, request) -> checkins_pb2.Progress:
        validation.v2mom_id_only(request.v2mom_id)
        found = self.progress_store.progress(request.v2mom_id, request.include_tree)
        if found is not None:
            return found
        return convert.progress_before_any_checkin(self.structures.published(request.v2mom_id))

    def progress_history(self, caller: Caller, request) -> checkins_pb2.GetProgressHistoryResponse:
        validation.v2mom_id_only(request.v2mom_id)
        found = self.progress_store.history(request.v2mom_id)
        if found is not None:
            return found
        self.structures.published(request.v2mom_id)  # NOT_FOUND unless published
        return checkins_pb2.GetProgressHistoryResponse()

    def stale_items(self, caller: Caller, request) -> checkins_pb2.ListStaleItemsResponse:
        limit = validation.stale_items(request)
        filters = ["stale", request.owner_id, request.org_unit_id]
        after = decode_token(request.page_token, filters) or ""
        if not isinstance(after, str):
            raise _bad_token()
        org_unit_ids: list[str] = []
        if request.org_unit_id:
            org_unit_ids = self.goals.org_subtree(request.org_unit_id)
            if org_unit_ids is None:
                raise NotFound(f"org unit {request.org_unit_id!r} not found")
        items, next_after = self.progress_store.stale_items(request.owner_id, org_unit_ids, after, limit)
        return checkins_pb2.ListStaleItemsResponse(
            items=items, next_page_token=encode_token(filters, next_after) if next_after else ""
        )

    # --- cycle settings --------------------------------------------------------------------------

    def get_cycle_settings(self, caller: Caller, request) -> checkins_pb2.CycleSettings:
        validation.cycle_settings(request, cadence_required=False)
        cadence = self.cycle_settings.cadence(request.cycle_id)
        if cadence is None:
            self._require_cycle(request.cycle_id)  # the default applies to cycles that exist
        return convert.cycle_settings(request.cycle_id, cadence)

    def update_cycle_settings(self, caller: Caller, request) -> checkins_pb2.CycleSettings:
        validation.cycle_settings(request, cadence_required=True)
        access.require_admin(caller, "change a cycle's check-in cadence")
        self._require_cycle(request.cycle_id)
        cadence = checkins_pb2.Cadence.Name(request.cadence)
        stamp = now()
        self.cycle_settings.set_cadence(request.cycle_id, cadence, caller.person_id, stamp)
        # Setting first: the timer reads the cadence when it looks. Should this process die
        # in between, a shorter cadence waits for each clock's old next look; nothing is lost.
        self.reschedule_clocks(request.cycle_id, stamp)
        return convert.cycle_settings(request.cycle_id, cadence)

    def _require_cycle(self, cycle_id: str) -> None:
        if self.goals.cycle_dates(cycle_id) is None:
            raise NotFound(f"cycle {cycle_id!r} not found")


# --- rules that need no state -------------------------------------------------------------------


def _measure_percent(measure: dict, value: float) -> float:
    """How far `value` has come on a stored measure's scale, by the formula the worker's roll-up uses.

    A published measure always has a baseline and a target (goals' lint
    refuses to submit without); a missing one counts as 0 rather than
    failing the check-in.
    """
    return measure_progress(
        value, measure.get("baseline") or 0.0, measure.get("target") or 0.0, measure.get("direction") or ""
    )


def _require_not_archived(structure: dict) -> None:
    if structure.get("archived"):
        raise FailedPrecondition(
            f"v2mom {structure['_id']!r} is archived; it takes no more check-ins or corrections",
            [PreconditionViolation("STATE", structure["_id"], "state is ARCHIVED")],
        )


def _require_milestones_of(method: dict, milestone_ids) -> None:
    known = set(method.get("milestone_ids", []))
    violations = Violations()
    for i, milestone_id in enumerate(milestone_ids):
        if milestone_id not in known:
            violations.add(
                f"completed_milestone_ids[{i}]", f"{milestone_id!r} is not a milestone of method {method['id']!r}"
            )
    violations.raise_if_any()


def _require_fields_of_kind(kind: str, checkin_id: str, request) -> None:
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


def _corrected_values(kind: str, item: dict, original: dict, request) -> dict:
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
            "progress_percent": _measure_percent(item, value),
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


def _bad_observe_time(description: str) -> InvalidArgument:
    return InvalidArgument([FieldViolation("observe_time", description)])


def _already_corrected(checkin_id: str, correction_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"check-in {checkin_id!r} was already corrected by {correction_id!r}; correct that one instead",
        [PreconditionViolation("SUPERSEDED", checkin_id, f"superseded by {correction_id}")],
    )


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _last_day(end_exclusive: datetime) -> date:
    return (end_exclusive - timedelta(days=1)).date()


# --- page tokens ---------------------------------------------------------------------------------
# Opaque to clients: base64 of {"f": fingerprint of the filters, "p": position}. A token
# only works with the filters it was issued for, so a token of another list, or of the
# same list with other filters, is refused instead of silently skipping rows.


def encode_token(filters: list, position) -> str:
    payload = json.dumps({"f": _fingerprint(filters), "p": position}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode()


def decode_token(token: str, filters: list):
    if not token:
        return None
    if len(token) > MAX_TOKEN_LENGTH:
        raise _bad_token()
    try:
        payload = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, UnicodeError):
        raise _bad_token() from None
    if not isinstance(payload, dict) or payload.get("f") != _fingerprint(filters) or "p" not in payload:
        raise _bad_token()
    return payload["p"]


def _checkin_position(position) -> tuple[datetime, datetime, str] | None:
    if position is None:
        return None
    try:
        observed, recorded, last_id = position
        observed, recorded = datetime.fromisoformat(observed), datetime.fromisoformat(recorded)
    except (TypeError, ValueError):
        raise _bad_token() from None
    if not isinstance(last_id, str) or observed.tzinfo is None or recorded.tzinfo is None:
        raise _bad_token()
    return observed, recorded, last_id


def _fingerprint(filters: list) -> str:
    return hashlib.sha256(json.dumps(filters).encode()).hexdigest()[:16]


def _bad_token() -> InvalidArgument:
    return InvalidArgument([FieldViolation("page_token", "is not a token this list issued for these filters")])
