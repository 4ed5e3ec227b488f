"""Use case UpdateObstacle: an obstacle's status, owner or methods change on a published V2MOM, no re-approval.

Obstacles move faster than a V2MOM's approval cycle, so the change goes to the
published version (and to the working copy's same obstacle, so the next
approval does not undo it), with a history entry and an ``obstacle_changed``
event in the same conditional write (repository.apply). The state stays.

Who may: whoever sees the working copy (the V2MOM's owner, their manager chain,
which holds the approver, and admins) and the obstacle's owner, who is the one
clearing it but may see only the published version.
"""

from services.platform.api.auth import Caller
from services.platform.core.clock import utc_now
from services.platform.core.errors import (Aborted, FailedPrecondition, FieldViolation, InvalidArgument, NotFound,
                                           PermissionDenied, PreconditionViolation, Violations)
from services.platform.core.validation import check_enum, check_id

from . import commits, convert, events, obstacles, validation
from .access import Access
from .directory import Directory
from .lifecycle import ARCHIVED
from .repository import V2MOMRepository
from .views import render_for
from v2mom.v1 import events_pb2, goals_pb2

ACTION = "UPDATE_OBSTACLE"


class ObstacleUpdates:
    def __init__(self, repository: V2MOMRepository, directory: Directory, access: Access):
        self.repository = repository
        self.directory = directory
        self.access = access

    def update(self, caller: Caller, request: goals_pb2.UpdateObstacleRequest) -> goals_pb2.V2MOM:
        fields = self._checked_fields(request)
        doc = self.access.require_visible(caller, self.repository.get(request.v2mom_id), request.v2mom_id)
        published = _published_content(doc)
        current = obstacles.find(published, request.obstacle_id)
        if current is None:
            raise NotFound(f"obstacle {request.obstacle_id!r} is not in v2mom {request.v2mom_id!r}'s published version")
        self._require_may_update(caller, doc, current)
        self._require_shown_revision(caller, doc, request.expected_revision)
        _require_methods(published, fields)
        changed = obstacles.changed_paths(current, fields)
        if not changed:
            return render_for(self.access, caller, doc)  # a replay or a no-op changes nothing
        return render_for(self.access, caller, self._commit(caller, doc, current, fields, changed, request.reason))

    def _checked_fields(self, request: goals_pb2.UpdateObstacleRequest) -> dict:
        """The masked fields as stored; INVALID_ARGUMENT for anything malformed or unknown."""
        violations = Violations()
        check_id(violations, "v2mom_id", request.v2mom_id)
        check_id(violations, "obstacle_id", request.obstacle_id)
        violations.raise_if_any()
        paths = validation.mask_paths(request.update_mask, obstacles.UPDATABLE)
        validation.require_reason("reason", request.reason, required=False)
        sent = request.obstacle
        if "status" in paths:
            check_enum(violations, "obstacle.status", goals_pb2.ObstacleStatus, sent.status, required=True)
        if "owner_id" in paths:
            self._check_owner(violations, sent.owner_id)
        if "method_ids" in paths:
            _check_method_ids(violations, sent.method_ids)
        violations.raise_if_any()
        return {path: _stored(sent, path) for path in paths}

    def _check_owner(self, violations: Violations, owner_id: str) -> None:
        # Empty unassigns (lint then warns); anyone else must be someone the directory knows.
        if not owner_id:
            return
        before = len(violations.items)
        check_id(violations, "obstacle.owner_id", owner_id)
        if len(violations.items) == before and self.directory.person(owner_id) is None:
            violations.add("obstacle.owner_id", f"unknown person {owner_id!r}")

    def _require_may_update(self, caller: Caller, doc: dict, current: dict) -> None:
        if self.access.sees_working_copy(caller, doc) or (current.get("owner_id") and caller.person_id == current["owner_id"]):
            return
        raise PermissionDenied("only the V2MOM's owner, their managers, admins and the obstacle's owner may update it")

    def _require_shown_revision(self, caller: Caller, doc: dict, expected: int) -> None:
        # The caller can only name the revision they were shown: a published-only reader sees the published one.
        shown = doc["revision"] if self.access.sees_working_copy(caller, doc) else doc["published"]["revision"]
        if expected < 0:
            raise InvalidArgument([FieldViolation("expected_revision", "must not be negative")])
        if expected and expected != shown:
            raise Aborted(f"v2mom {doc['_id']!r} is at revision {shown}, not {expected}; read it again and retry")

    def _commit(self, caller: Caller, doc: dict, current: dict, fields: dict, changed: list[str], reason: str) -> dict:
        stamp = utc_now()
        obstacle_id = current["id"]
        published = {**doc["published"], "content": obstacles.updated(doc["published"]["content"], obstacle_id, fields, stamp)}
        working = obstacles.updated(doc["content"], obstacle_id, fields, None)
        after = {**doc, "content": working, "published": published, "revision": doc["revision"] + 1, "updated_at": stamp}
        paths = [f"content.obstacles[{obstacle_id}].{path}" for path in changed]
        entry = commits.history_entry(after, ACTION, caller, stamp, reason, paths)
        event = _event(after, caller, current, changed, reason)
        saved = self.repository.apply(doc["_id"], doc["revision"],
                                      {"content": working, "published": published, "updated_at": stamp}, entry, [event])
        if saved is None:
            raise Aborted(f"v2mom {doc['_id']!r} changed while you were working on it; read it again and retry")
        return saved


def _published_content(doc: dict) -> dict:
    if doc["state"] == ARCHIVED:
        raise FailedPrecondition(f"v2mom {doc['_id']!r} is archived",
                                 [PreconditionViolation("STATE", doc["_id"], "archived V2MOMs do not change")])
    if not doc.get("published"):
        raise FailedPrecondition(
            f"v2mom {doc['_id']!r} was never published: change its obstacles with UpdateV2MOM",
            [PreconditionViolation("STATE", doc["_id"], "UpdateObstacle changes published V2MOMs")])
    return doc["published"]["content"]


def _check_method_ids(violations: Violations, method_ids) -> None:
    if len(method_ids) > validation.MAX_ITEMS:
        violations.add("obstacle.method_ids", f"at most {validation.MAX_ITEMS} methods")
        return
    for i, method_id in enumerate(method_ids):
        check_id(violations, f"obstacle.method_ids[{i}]", method_id)
    if len(set(method_ids)) != len(method_ids):
        violations.add("obstacle.method_ids", "names a method twice")


def _require_methods(published: dict, fields: dict) -> None:
    known = {m.get("id") for m in published.get("methods") or []}
    violations = Violations()
    for i, method_id in enumerate(fields.get("method_ids") or []):
        if method_id not in known:
            violations.add(f"obstacle.method_ids[{i}]", f"no method {method_id!r} in the published version")
    violations.raise_if_any()


def _stored(sent: goals_pb2.Obstacle, path: str):
    if path == "status":
        return goals_pb2.ObstacleStatus.Name(sent.status)
    if path == "method_ids":
        return list(sent.method_ids)
    return sent.owner_id


def _event(after: dict, caller: Caller, before: dict, changed: list[str], reason: str) -> dict:
    content = after["published"]["content"]
    obstacle = obstacles.find(content, before["id"])
    data = events_pb2.ObstacleEventData(
        v2mom_id=after["_id"], revision=after["revision"], owner_id=after["owner_id"],
        org_unit_id=after["org_unit_id"], level=after["level"], cycle_id=after["cycle_id"],
        actor_id=caller.person_id, obstacle=convert.obstacle_from_doc(obstacle),
        previous_status=before["status"], changed_paths=changed, reason=reason, title=content.get("title", ""),
        accountable_ids=obstacles.accountable_ids(content, obstacle),
    )
    return events.obstacle_event(data)
