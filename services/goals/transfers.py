"""Use case TransferV2MOM: a live V2MOM moves to a successor, and a unit's V2MOM follows its new leader.

One conditional write: the new owner (an individual V2MOM also takes the successor's org unit and slot), a
submission's new approver (the successor's nearest active manager, or any admin), the items a former owner who
left held in it (handover.py), the history entry ``TRANSFER`` (who, why) and ``v2mom_transferred`` (with
``previous_owner_id``). The state, the content otherwise and the published version stay: nothing is approved
again.

Who may (DirectoryService.TransferV2MOM): hr, admins, and the owner's managers (a leaver's former manager
takes over their V2MOMs from ListOrphans). goals-worker moves a team's, department's or company's V2MOMs to
the unit's new leader when its own ``org_unit_upserted`` names one (``follow_leader``), as the system.
"""

import logging

from services.platform.api.auth import Caller
from services.platform.core.clock import utc_now
from services.platform.core.errors import (Aborted, AlreadyExists, FailedPrecondition, FieldViolation,
                                           InvalidArgument, NotFound, PermissionDenied, PreconditionViolation,
                                           Violations)
from services.platform.core.validation import check_id
from services.platform.store.mongo import find_in

from . import commits, convert, events, handover, validation
from .access import Access
from .approver_changes import successor_of
from .directory import Directory
from .lifecycle import ARCHIVED, SUBMITTED
from .repository import SlotTaken, V2MOMRepository
from .views import render_for
from v2mom.v1 import common_pb2, directory_pb2, goals_pb2

log = logging.getLogger(__name__)

ACTION = "TRANSFER"
SYSTEM = commits.SYSTEM
INDIVIDUAL, COMPANY = "ORG_LEVEL_INDIVIDUAL", "ORG_LEVEL_COMPANY"


class Transfers:
    def __init__(self, repository: V2MOMRepository, directory: Directory):
        self.repository = repository
        self.directory = directory

    # --- the RPC ---------------------------------------------------------------------------------

    def transfer(self, caller: Caller, request: directory_pb2.TransferV2MOMRequest) -> directory_pb2.TransferV2MOMResponse:
        violations = Violations()
        check_id(violations, "v2mom_id", request.v2mom_id)
        check_id(violations, "successor_id", request.successor_id)
        if request.expected_revision < 0:
            violations.add("expected_revision", "must not be negative")
        violations.raise_if_any()
        validation.require_reason("reason", request.reason, required=False)
        doc = self.repository.get(request.v2mom_id)
        self._require_may_transfer(caller, doc, request.v2mom_id)
        if request.expected_revision and request.expected_revision != doc["revision"]:
            raise Aborted(f"v2mom {doc['_id']!r} is at revision {doc['revision']}, not {request.expected_revision}; "
                          "read it again and retry")
        saved, moved = self.move(caller, doc, request.successor_id, request.reason)
        return directory_pb2.TransferV2MOMResponse(v2mom=self._shown(caller, saved), transferred=moved)

    def _shown(self, caller: Caller, doc: dict) -> goals_pb2.V2MOM:
        """As GetV2MOM would show it: HR outside the owner's chain see the published version, or of a draft only
        where it now sits."""
        access = Access(self.directory)
        if access.may_see(caller, doc):
            return render_for(access, caller, doc)
        return goals_pb2.V2MOM(id=doc["_id"], owner_id=doc["owner_id"], org_unit_id=doc["org_unit_id"],
                               level=common_pb2.OrgLevel.Value(doc["level"]), cycle_id=doc["cycle_id"])

    def _require_may_transfer(self, caller: Caller, doc: dict | None, v2mom_id: str) -> None:
        if caller.has_role("hr") or caller.is_admin:
            if doc is None:
                raise NotFound(f"v2mom {v2mom_id!r} not found")
            return
        chain = self.directory.manager_chain(doc["owner_id"]) if doc is not None else []
        if doc is None or (caller.person_id not in chain and doc.get("published") is None):
            raise NotFound(f"v2mom {v2mom_id!r} not found")  # as GetV2MOM: a draft they may not see is not there
        if caller.person_id not in chain:
            raise PermissionDenied("only hr, admins and the owner's managers may transfer a V2MOM")

    # --- the use case, for the RPC and goals-worker ------------------------------------------------

    def move(self, actor: Caller, doc: dict, successor_id: str, reason: str = "") -> tuple[dict, bool]:
        """Moves ``doc`` to ``successor_id``; (the V2MOM after, whether it moved)."""
        if doc["state"] == ARCHIVED:
            raise FailedPrecondition(f"v2mom {doc['_id']!r} is archived",
                                     [PreconditionViolation("STATE", doc["_id"], "archived V2MOMs are not transferred")])
        successor = self.directory.person(successor_id)
        if successor is None:
            raise InvalidArgument([FieldViolation("successor_id", f"unknown person {successor_id!r}")])
        if not successor.get("active", True):
            raise FailedPrecondition(
                f"{successor_id!r} has left; transfer to someone who can act",
                [PreconditionViolation("SUCCESSOR_INACTIVE", successor_id, "the successor has left")])
        if doc["owner_id"] == successor_id:
            return doc, False  # a repeat: already theirs
        changes, paths = self._changes(doc, successor)
        stamp = utc_now()
        previous = doc["owner_id"]
        reason = reason or f"transferred from {previous} to {successor_id}"
        after = {**doc, **changes, "revision": doc["revision"] + 1, "updated_at": stamp}
        entry = commits.history_entry(after, ACTION, actor, stamp, reason, paths)
        data = handover.event_data(after, actor.person_id, doc["state"], reason, paths, previous_owner_id=previous)
        emitted = [events.v2mom_event(events.V2MOM_TRANSFERRED, data)]
        if "approver_id" in changes:
            emitted.append(_approver_changed(after, previous))
        try:
            saved = self.repository.apply(doc["_id"], doc["revision"], {**changes, "updated_at": stamp}, entry,
                                          emitted)
        except SlotTaken:
            noun = doc["level"].removeprefix("ORG_LEVEL_").lower()
            raise AlreadyExists(f"{successor_id} already has an {noun} V2MOM in {doc['cycle_id']}; "
                                "archive or transfer that one first") from None
        if saved is None:
            raise Aborted(f"v2mom {doc['_id']!r} changed while you were working on it; read it again and retry")
        return saved, True

    def _changes(self, doc: dict, successor: dict) -> tuple[dict, list[str]]:
        successor_id = successor["_id"]
        changes: dict = {"owner_id": successor_id}
        paths = ["owner_id"]
        if doc["level"] == INDIVIDUAL:
            # An individual V2MOM is its owner's: it sits in their unit and takes their slot.
            if successor.get("org_unit_id") and successor["org_unit_id"] != doc["org_unit_id"]:
                changes["org_unit_id"] = successor["org_unit_id"]
                paths.append("org_unit_id")
            changes["slot"] = f"{doc['cycle_id']}/{doc['level']}/{successor_id}"
        else:
            unit = self.directory.org_unit(doc["org_unit_id"]) or {}
            if unit.get("leader_id") != successor_id:
                raise FailedPrecondition(
                    f"a unit's V2MOM is owned by its leader, and {successor_id!r} does not lead "
                    f"{doc['org_unit_id']!r}: make them its leader (UpsertOrgUnit), which moves the V2MOM",
                    [PreconditionViolation("NOT_UNIT_LEADER", successor_id, f"does not lead {doc['org_unit_id']}")])
        if doc["state"] == SUBMITTED:
            approver = "" if doc["level"] == COMPANY else successor_of(self.directory, successor_id)
            if approver != (doc.get("approver_id") or ""):
                changes["approver_id"] = approver
                paths.append("approver_id")
        previous = self.directory.person(doc["owner_id"])
        if previous is not None and not previous.get("active", True):
            # What the leaver held in it passes on with it (handover.py's rule, to the new owner).
            held, held_paths = handover.changes_for(doc, doc["owner_id"], successor_id)
            changes.update(held)
            paths.extend(held_paths)
        return changes, paths

    # --- a unit's new leader (goals-worker, its own org_unit_upserted) --------------------------------

    def follow_leader(self, unit: common_pb2.OrgUnit) -> int:
        """Moves the unit's live V2MOMs to its leader; returns how many moved. A unit without a leader, or led by
        someone who left, keeps them (ListOrphans shows them)."""
        leader = self.directory.person(unit.leader_id) if unit.leader_id else None
        if leader is None or not leader.get("active", True) or unit.retired:
            return 0
        docs = find_in(self.repository.collection, "org_unit_id", [unit.id],
                       {"state": {"$ne": ARCHIVED}, "level": {"$ne": INDIVIDUAL}}, {"_id": 1, "owner_id": 1},
                       index="by_org_unit")
        moved = 0
        for doc in docs:
            if doc["owner_id"] == leader["_id"]:
                continue
            reason = f"leader changed: {unit.id} is now led by {leader['_id']}"
            current = self.repository.get(doc["_id"])
            if current is not None and current["state"] != ARCHIVED:
                moved += self.move(SYSTEM, current, leader["_id"], reason)[1]
        return moved


def _approver_changed(after: dict, previous_owner: str) -> dict:
    """A transferred submission waits on someone else: ``v2mom_approver_changed`` too (same write, same revision),
    as when an approver leaves, so notify stops the old approver's reminders and asks the new one."""
    approver = after.get("approver_id") or "an admin"
    reason = f"{previous_owner}'s V2MOM is now {after['owner_id']}'s; {approver} approves now"
    data = convert.event_data(after, SYSTEM.person_id, after["state"], reason=reason, changed_paths=["approver_id"])
    return events.v2mom_event(events.V2MOM_APPROVER_CHANGED, data)
