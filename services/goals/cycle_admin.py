"""Use cases on planning cycles: CreateCycle, UpdateCycle, GetCurrentCycle, and CloseCycle (the yearly rollover).

Admins write cycles; everyone reads them. Each write carries its event
(``cycle_changed``, ``cycle_closed``) in the cycle's outbox. CloseCycle
opens (or names) the next cycle, marks the cycle closed, then archives what
is still in progress in it, one V2MOM at a time, each with its own
``v2mom_archived``. The order makes a retry safe: a call that stopped half
way is repeated, and the repeat archives what the first left.
"""

from datetime import UTC, datetime

from google.protobuf import field_mask_pb2

from services.platform.api.auth import Caller
from services.platform.core.clock import from_timestamp, utc_now
from services.platform.core.validation import check_id, check_text
from services.platform.core.errors import (
    Aborted, AlreadyExists, FailedPrecondition, FieldViolation, InvalidArgument, NotFound, PermissionDenied, Violations,
)

from . import commits, convert, cycles, lifecycle, validation
from .directory import Directory
from .events import CYCLE_CHANGED, CYCLE_CLOSED, cycle_event
from .repository import V2MOMRepository
from v2mom.v1 import common_pb2, events_pb2, goals_pb2

UPDATABLE = ("start_date", "end_date", "quarters")


class CycleAdmin:
    def __init__(self, repository: V2MOMRepository, directory: Directory):
        self.repository = repository
        self.directory = directory

    # --- CreateCycle / UpdateCycle -------------------------------------------------------

    def create(self, caller: Caller, request: goals_pb2.CreateCycleRequest) -> common_pb2.Cycle:
        _require_admin(caller, "create cycles")
        violations = Violations()
        cycles.check_cycle(violations, "cycle", request.cycle)
        violations.raise_if_any()
        return convert.cycle_to_proto(self._insert(caller, request.cycle))

    def _insert(self, caller: Caller, cycle: common_pb2.Cycle) -> dict:
        doc = _cycle_doc(cycle)
        if self.directory.fresh_cycle(cycle.id) is not None:
            raise AlreadyExists(f"cycle {cycle.id!r} already exists; change it with UpdateCycle")
        cycles.require_no_overlap(cycle.id, *cycles.days(doc), self.directory.list_cycles())
        doc.update(revision=1, created_by=caller.person_id, updated_at=utc_now())
        if not self.directory.insert_cycle(doc, _event(CYCLE_CHANGED, doc, caller)):
            raise AlreadyExists(f"cycle {cycle.id!r} already exists; change it with UpdateCycle")
        return doc

    def update(self, caller: Caller, request: goals_pb2.UpdateCycleRequest) -> common_pb2.Cycle:
        _require_admin(caller, "change cycles")
        validation.require_id("cycle.id", request.cycle.id)
        paths = validation.mask_paths(request.update_mask, UPDATABLE)
        stored = self._require_cycle(request.cycle.id)
        cycles.require_open(stored, "change")
        merged = convert.cycle_to_proto(stored)
        field_mask_pb2.FieldMask(paths=paths).MergeMessage(request.cycle, merged, replace_repeated_field=True)
        violations = Violations()
        cycles.check_cycle(violations, "cycle", merged)
        violations.raise_if_any()
        fields = {k: v for k, v in _cycle_doc(merged).items() if k != "_id" and stored.get(k) != v}
        if not fields:
            return convert.cycle_to_proto(stored)  # a retried or empty change changes nothing
        cycles.require_no_overlap(stored["_id"], *cycles.days({**stored, **fields}), self.directory.list_cycles())
        fields["updated_at"] = utc_now()
        after = {**stored, **fields, "revision": (stored.get("revision") or 0) + 1}
        if not self.directory.update_cycle(stored["_id"], stored.get("revision"), fields, _event(CYCLE_CHANGED, after, caller)):
            raise Aborted(f"cycle {stored['_id']!r} changed while you were working on it; read it again and retry")
        return convert.cycle_to_proto(after)

    # --- GetCurrentCycle --------------------------------------------------------------------

    def current(self, caller: Caller, request: goals_pb2.GetCurrentCycleRequest) -> goals_pb2.GetCurrentCycleResponse:
        moment = _moment(request)
        found = cycles.current(self.directory.list_cycles(), moment.date())
        if found is None:
            raise NotFound(f"no cycle contains {moment.date().isoformat()}")
        response = goals_pb2.GetCurrentCycleResponse(cycle=convert.cycle_to_proto(found))
        quarter = cycles.quarter_of(found, moment.date())
        if quarter:
            response.quarter.CopyFrom(convert.quarter_to_proto(quarter))
        return response

    # --- CloseCycle ---------------------------------------------------------------------------

    def close(self, caller: Caller, request: goals_pb2.CloseCycleRequest) -> goals_pb2.CloseCycleResponse:
        _require_admin(caller, "close cycles")
        _check_close(request)
        cycle = self._require_cycle(request.cycle_id)
        if cycles.is_closed(cycle) and cycle.get("next_cycle_id") != request.next_cycle.id:
            raise FailedPrecondition(
                f"cycle {cycle['_id']!r} is already closed, with {cycle.get('next_cycle_id')!r} opened after it"
            )
        next_cycle = self._next_cycle(caller, request.next_cycle)
        if not cycles.is_closed(cycle):
            cycle = self._mark_closed(caller, cycle, next_cycle["_id"], request.reason)
        archived = self._archive_in_progress(caller, cycle["_id"], request.reason)
        return goals_pb2.CloseCycleResponse(
            cycle=convert.cycle_to_proto(cycle), next_cycle=convert.cycle_to_proto(next_cycle), archived_count=archived,
        )

    def _next_cycle(self, caller: Caller, wanted: common_pb2.Cycle) -> dict:
        """The cycle named to follow: an existing open one, or a new one CreateCycle would make."""
        existing = self.directory.fresh_cycle(wanted.id)
        if existing is None:
            violations = Violations()
            cycles.check_cycle(violations, "next_cycle", wanted)
            violations.raise_if_any()
            return self._insert(caller, wanted)
        if wanted.HasField("start_date") and convert.cycle_to_proto(existing).start_date != wanted.start_date:
            raise InvalidArgument([FieldViolation("next_cycle", f"cycle {wanted.id!r} exists with other dates; send only its id")])
        cycles.require_open(existing, "open")
        return existing

    def _mark_closed(self, caller: Caller, cycle: dict, next_cycle_id: str, reason: str) -> dict:
        stamp = utc_now()
        fields = {"closed_at": stamp, "closed_by": caller.person_id, "close_reason": reason,
                  "next_cycle_id": next_cycle_id, "updated_at": stamp}
        after = {**cycle, **fields, "revision": (cycle.get("revision") or 0) + 1}
        if not self.directory.update_cycle(cycle["_id"], cycle.get("revision"), fields,
                                           _event(CYCLE_CLOSED, after, caller, reason)):
            raise Aborted(f"cycle {cycle['_id']!r} changed while it was being closed; try again")
        return after

    def _archive_in_progress(self, caller: Caller, cycle_id: str, reason: str) -> int:
        """Archives every V2MOM of the cycle not archived yet, each with its history entry and event."""
        archived, after = 0, None
        while page := self.repository.in_progress_page(cycle_id, after, 200):
            for doc in page:
                archived += self._archive_one(caller, doc, reason)
            after = page[-1]["_id"]
        return archived

    def _archive_one(self, caller: Caller, doc: dict, reason: str) -> int:
        for _ in range(3):  # its owner may be editing it right now: read it again and retry
            if doc is None or doc["state"] == lifecycle.ARCHIVED:
                return 0
            stamp = utc_now()
            try:
                commits.commit(self.repository, caller, doc, lifecycle.ARCHIVE,
                               {"archived_at": stamp, "updated_at": stamp}, stamp, reason, unset=("slot",))
                return 1
            except Aborted:
                doc = self.repository.get(doc["_id"])
        raise Aborted(f"v2mom {doc['_id']!r} kept changing while its cycle was closed; call CloseCycle again")

    def _require_cycle(self, cycle_id: str) -> dict:
        cycle = self.directory.fresh_cycle(cycle_id)
        if cycle is None:
            raise NotFound(f"cycle {cycle_id!r} not found")
        return cycle


def _require_admin(caller: Caller, what: str) -> None:
    if not caller.is_admin:
        raise PermissionDenied(f"only admins may {what}")



def _check_close(request: goals_pb2.CloseCycleRequest) -> None:
    violations = Violations()
    check_id(violations, "cycle_id", request.cycle_id)
    check_text(violations, "reason", request.reason, validation.MAX_REASON, required=True)
    check_id(violations, "next_cycle.id", request.next_cycle.id)
    if request.next_cycle.id and request.next_cycle.id == request.cycle_id:
        violations.add("next_cycle.id", "must name another cycle than the one closed")
    violations.raise_if_any()


def _moment(request: goals_pb2.GetCurrentCycleRequest) -> datetime:
    if not request.HasField("time"):
        return utc_now()
    try:
        return from_timestamp(request.time).astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        raise InvalidArgument([FieldViolation("time", "is not a valid timestamp")]) from None


def _cycle_doc(cycle: common_pb2.Cycle) -> dict:
    """A validated cycle message's stored fields."""
    return {
        "_id": cycle.id,
        "start_date": convert.stored_date(cycle.start_date),
        "end_date": convert.stored_date(cycle.end_date),
        "quarters": convert.quarters_to_doc(cycle.quarters),
    }


def _event(event_type: str, doc: dict, caller: Caller, reason: str = "") -> dict:
    data = events_pb2.CycleEventData(cycle=convert.cycle_to_proto(doc), actor_id=caller.person_id, reason=reason,
                                     revision=doc["revision"])
    return cycle_event(event_type, data)
