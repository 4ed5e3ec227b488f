"""The check-ins use cases: what each RPC means, independent of gRPC plumbing.

Every write goes the same way: validate the request (nothing stored needed),
learn the V2MOM's published structure (stored copy or goals-api), authorise
against it, check the cycle, then insert the check-in with its event in one
write. The worker derives progress from that event; this side only reads it
(progress_reader.py). The rules each step applies are in validation.py,
access.py and checkin_rules.py; the queries in repository.py and
structures.py. What is left here is the order of the steps.

A retried call (same author, same idempotency key) collides on the insert and
gets the first call's check-in back. It is looked up before that only when a
check refuses the retry, since things may have changed since the first call
(the V2MOM archived, the cycle over): a first call pays no extra read.
"""

from collections.abc import Callable
from datetime import datetime

from services.platform.api.auth import Caller
from services.platform.core import paging
from services.platform.core.clock import utc_now
from services.platform.core.errors import FailedPrecondition, NotFound, ServiceError

from . import access, convert, events, validation
from .checkin_rules import (
    NOUN,
    already_corrected,
    corrected_values,
    measure_percent,
    new_checkin,
    require_fields_of_kind,
    require_milestones_of,
    require_not_archived,
    require_open_cycle,
    require_within_cycle,
)
from .cycles import cycle_window
from .goals_client import GoalsClient
from .progress import MEASURE, METHOD
from .progress_reader import ProgressReader
from .repository import (
    AlreadyCorrected,
    CheckinRepository,
    CycleSettingsRepository,
    Replayed,
    checkin_query,
    page_position,
    parse_page_position,
)
from .structures import StructureCache, find_item
from v2mom.v1 import checkins_pb2


# The lists' names in their page tokens: a token of one list is refused by the other.
CHECKINS_LIST = "checkins"
STALE_LIST = "stale"


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
        self.progress_reader = progress
        # ...but for this: after a cadence change, the cycle's running clocks must be looked at again
        # (clock_store.reschedule_cycle), or a shorter cadence would wait for each clock's old next look.
        self.reschedule_clocks = reschedule_clocks

    # --- recording ----------------------------------------------------------------------------

    def record_measure(self, caller: Caller, request, authorization: str = "") -> checkins_pb2.Checkin:
        stamp = utc_now()
        observed = validation.measure_checkin(request, stamp)
        try:
            structure, measure = self._recordable(caller, request.v2mom_id, MEASURE, request.measure_id, authorization)
            observed = self._in_open_cycle(structure, stamp, observed or stamp)
        except ServiceError as refusal:
            return self._replayed_or_raise(caller, request.idempotency_key, refusal)
        checkin = new_checkin(
            caller, structure, MEASURE, measure, stamp, observed, request.idempotency_key,
            value=request.value,
            progress_percent=measure_percent(measure, request.value),
            status=checkins_pb2.CheckinStatus.Name(request.status),
            confidence=request.confidence,
            comment=request.comment,
            completed_milestone_ids=[],
        )
        return convert.checkin_to_proto(self._insert(checkin, events.CHECKIN_RECORDED, structure, measure))

    def record_method(self, caller: Caller, request, authorization: str = "") -> checkins_pb2.Checkin:
        stamp = utc_now()
        observed = validation.method_checkin(request, stamp)
        try:
            structure, method = self._recordable(caller, request.v2mom_id, METHOD, request.method_id, authorization)
            require_milestones_of(method, request.completed_milestone_ids)
            observed = self._in_open_cycle(structure, stamp, observed or stamp)
        except ServiceError as refusal:
            return self._replayed_or_raise(caller, request.idempotency_key, refusal)
        checkin = new_checkin(
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
        require_not_archived(structure)
        item = find_item(structure, kind, item_id)
        if item is None:
            raise NotFound(f"{NOUN[kind]} {item_id!r} not found in the published version of v2mom {v2mom_id!r}")
        access.require_may_record(caller, structure, kind, item)
        return structure, item

    def _in_open_cycle(self, structure: dict, stamp: datetime, observed: datetime) -> datetime:
        """New check-ins are taken while the cycle runs, observed within it."""
        window = self._cycle_window(structure)
        require_open_cycle(structure["cycle_id"], window, stamp)
        return require_within_cycle(structure["cycle_id"], window, observed)

    def _cycle_window(self, structure: dict) -> tuple[datetime, datetime]:
        return cycle_window(*self.structures.cycle_dates(structure))

    def _insert(self, checkin: dict, event_type: str, structure: dict, item: dict) -> dict:
        """Stores the check-in with its event; a concurrent replay of the same key gets the first one back."""
        cadence = self.cycle_settings.recent_cadence(structure["cycle_id"])
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
        stamp = utc_now()
        requested_observe_time = validation.correction(request, stamp)
        try:
            original, structure, item, observed = self._correction_target(caller, request, stamp, requested_observe_time,
                                                                          authorization)
        except ServiceError as refusal:
            # Includes "already corrected": by this very call, when it is a retry.
            return self._replayed_or_raise(caller, request.idempotency_key, refusal)
        correction = new_checkin(
            caller, structure, original["item_kind"], item, stamp, observed, request.idempotency_key,
            **corrected_values(original["item_kind"], item, original, request),
        )
        correction.update(supersedes_id=original["_id"], correction_reason=request.reason)
        return convert.checkin_to_proto(self._insert_correction(correction, original, structure, item))

    def _correction_target(
        self, caller: Caller, request, stamp: datetime, requested_observe_time: datetime | None, authorization: str
    ) -> tuple[dict, dict, dict, datetime]:
        """(the check-in to correct, its V2MOM's published structure, its item, the correction's observe time)."""
        original = self._correctable(request.checkin_id)
        kind = original["item_kind"]
        require_fields_of_kind(kind, original["_id"], request)
        structure = self.structures.published(original["v2mom_id"], (kind, original["item_id"]), authorization)
        require_not_archived(structure)
        item = find_item(structure, kind, original["item_id"])
        if item is None:
            raise FailedPrecondition(
                f"{NOUN[kind]} {original['item_id']!r} is no longer in v2mom {original['v2mom_id']!r}; "
                "its check-ins can no longer be corrected"
            )
        _, end = self._cycle_window(structure)
        access.require_may_correct(caller, structure, kind, item, cycle_ended=stamp >= end)
        if kind == METHOD:
            require_milestones_of(item, request.completed_milestone_ids)
        observed = require_within_cycle(
            structure["cycle_id"], self._cycle_window(structure), requested_observe_time or original["observe_time"]
        )
        return original, structure, item, observed

    def _correctable(self, checkin_id: str) -> dict:
        original = self.checkins.get(checkin_id)
        if original is None:
            raise NotFound(f"check-in {checkin_id!r} not found")
        if original.get("superseded_by_id"):
            raise already_corrected(checkin_id, original["superseded_by_id"])
        return original

    def _insert_correction(self, correction: dict, original: dict, structure: dict, item: dict) -> dict:
        try:
            stored = self._insert(correction, events.CHECKIN_CORRECTED, structure, item)
        except AlreadyCorrected as race:
            # The winner may have died before linking; linking is idempotent, so do it for them.
            self.checkins.mark_superseded(original["_id"], race.correction_id)
            raise already_corrected(original["_id"], race.correction_id) from None
        if stored is correction:
            self.checkins.mark_superseded(original["_id"], correction["_id"])
        return stored

    # --- reading ------------------------------------------------------------------------------------

    def list_checkins(self, caller: Caller, request) -> checkins_pb2.ListCheckinsResponse:
        limit, start, end = validation.list_checkins(request)
        filters = [
            request.v2mom_id, request.item_id, request.author_id,
            start.isoformat() if start else "", end.isoformat() if end else "", request.include_superseded,
        ]
        after = parse_page_position(paging.decode_token(request.page_token, CHECKINS_LIST, filters, list))
        query = checkin_query(
            request.v2mom_id, request.item_id, request.author_id, start, end, request.include_superseded
        )
        rows = self.checkins.page(query, after, limit + 1)
        return checkins_pb2.ListCheckinsResponse(
            checkins=[convert.checkin_to_proto(doc) for doc in rows[:limit]],
            next_page_token=paging.next_token(CHECKINS_LIST, filters, rows, limit, page_position),
        )

    def progress(self, caller: Caller, request) -> checkins_pb2.Progress:
        validation.v2mom_id_only(request.v2mom_id)
        found = self.progress_reader.progress(request.v2mom_id, request.include_tree)
        if found is not None:
            return found
        return convert.progress_before_any_checkin(self.structures.published(request.v2mom_id))

    def progress_history(self, caller: Caller, request) -> checkins_pb2.GetProgressHistoryResponse:
        validation.v2mom_id_only(request.v2mom_id)
        found = self.progress_reader.history(request.v2mom_id)
        if found is not None:
            return found
        self.structures.published(request.v2mom_id)  # NOT_FOUND unless published
        return checkins_pb2.GetProgressHistoryResponse()

    def stale_items(self, caller: Caller, request) -> checkins_pb2.ListStaleItemsResponse:
        limit = validation.stale_items(request)
        filters = [request.owner_id, request.org_unit_id]
        after = paging.decode_token(request.page_token, STALE_LIST, filters, str) or ""
        org_unit_ids: list[str] = []
        if request.org_unit_id:
            org_unit_ids = self.goals.org_subtree(request.org_unit_id)
            if org_unit_ids is None:
                raise NotFound(f"org unit {request.org_unit_id!r} not found")
        items, next_after = self.progress_reader.stale_items(request.owner_id, org_unit_ids, after, limit)
        return checkins_pb2.ListStaleItemsResponse(
            items=items, next_page_token=paging.encode_token(STALE_LIST, filters, next_after) if next_after else ""
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
        stamp = utc_now()
        self.cycle_settings.set_cadence(request.cycle_id, cadence, caller.person_id, stamp)
        # Setting first: the timer reads the cadence when it looks. Should this process die
        # in between, a shorter cadence waits for each clock's old next look; nothing is lost.
        self.reschedule_clocks(request.cycle_id, stamp)
        return convert.cycle_settings(request.cycle_id, cadence)

    def _require_cycle(self, cycle_id: str) -> None:
        if self.goals.cycle_dates(cycle_id) is None:
            raise NotFound(f"cycle {cycle_id!r} not found")
