"""The goals use cases: what each RPC means, independent of gRPC plumbing."""

import base64
from datetime import UTC, datetime

from google.protobuf import field_mask_pb2

from services.platform.api.auth import Caller
from services.platform.core.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    FieldViolation,
    NotFound,
    PermissionDenied,
    PreconditionViolation,
    Violations,
)
from services.platform.core.ids import new_id

from . import convert, events, lint, validation
from .access import Access
from .directory import Directory
from .repository import DuplicateCreate, SlotTaken, V2MOMRepository
from v2mom.v1 import common_pb2, goals_pb2

DRAFT = "V2MOM_STATE_DRAFT"
SUBMITTED = "V2MOM_STATE_SUBMITTED"
CHANGES_REQUESTED = "V2MOM_STATE_CHANGES_REQUESTED"
PUBLISHED = "V2MOM_STATE_PUBLISHED"
ARCHIVED = "V2MOM_STATE_ARCHIVED"
EDITABLE_STATES = (DRAFT, CHANGES_REQUESTED, PUBLISHED)

UPDATABLE_PATHS = {
    "content.title": "title",
    "content.vision": "vision",
    "content.values": "values",
    "content.methods": "methods",
    "content.obstacles": "obstacles",
    "content.measures": "measures",
    "parent_id": None,
}
MAX_TREE_DEPTH = 10
SEVERITY = {lint.ERROR: goals_pb2.SEVERITY_ERROR, lint.WARNING: goals_pb2.SEVERITY_WARNING, lint.INFO: goals_pb2.SEVERITY_INFO}


def now() -> datetime:
    # Mongo keeps milliseconds; truncating here keeps what we return equal to what we store.
    stamp = datetime.now(UTC)
    return stamp.replace(microsecond=stamp.microsecond // 1000 * 1000)


def encode_token(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode()


def decode_token(token: str) -> str:
    if not token:
        return ""
    try:
        value = base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument([FieldViolation("page_token", "is not a token this service issued")]) from None
    if not validation.ID_PATTERN.match(value) and not value.isdigit():
        raise InvalidArgument([FieldViolation("page_token", "is not a token this service issued")])
    return value


class GoalsService:
    def __init__(self, repository: V2MOMRepository, directory: Directory):
        self.repository = repository
        self.directory = directory
        self.access = Access(directory)

    def active_caller(self, caller: Caller) -> Caller:
        """A leaver's token may still be valid for hours; their access ends when HR says so."""
        if caller.has_role("service"):
            return caller
        person = self.directory.person(caller.person_id)
        if person is not None and not person.get("active", True):
            raise PermissionDenied(f"{caller.person_id} is no longer active in the directory")
        return caller

    # --- create ----------------------------------------------------------------

    def create(self, caller: Caller, request: goals_pb2.CreateV2MOMRequest) -> goals_pb2.V2MOM:
        violations = Violations()
        validation.check_enum(violations, "level", common_pb2.OrgLevel, request.level, required=True)
        validation.check_id(violations, "cycle_id", request.cycle_id)
        validation.check_id(violations, "owner_id", request.owner_id, required=False)
        validation.check_id(violations, "org_unit_id", request.org_unit_id, required=False)
        validation.check_id(violations, "parent_id", request.parent_id, required=False)
        validation.check_id(violations, "request_id", request.request_id, required=False)
        validation.check_content(violations, request.content, self._person_exists)
        violations.raise_if_any()

        if request.request_id:
            existing = self.repository.find_by_create_key(f"{caller.person_id}:{request.request_id}")
            if existing:
                return convert.v2mom_to_proto(existing, show_published=False)

        cycle = self.directory.cycle(request.cycle_id)
        if cycle is None:
            raise InvalidArgument([FieldViolation("cycle_id", f"unknown cycle {request.cycle_id!r}")])
        owner_id, unit_id, slot_holder = self._owner_and_unit(caller, request)
        level = validation.level_name(request.level)
        if request.parent_id:
            self._check_parent(caller, request.parent_id, request.cycle_id, child_id=None)

        stamp = now()
        content = validation.assign_ids(convert.content_to_doc(request.content))
        doc = {
            "_id": new_id("v2m"),
            "revision": 1,
            "owner_id": owner_id,
            "org_unit_id": unit_id,
            "level": level,
            "cycle_id": request.cycle_id,
            "parent_id": request.parent_id or None,
            "state": DRAFT,
            "content": content,
            "published": None,
            "published_revision": 0,
            "approver_id": None,
            "slot": f"{request.cycle_id}/{level}/{slot_holder}",
            "created_by": caller.person_id,
            "created_at": stamp,
            "updated_at": stamp,
        }
        if request.request_id:
            doc["create_key"] = f"{caller.person_id}:{request.request_id}"
        doc["history"] = [self._history(doc, "CREATE", caller, stamp, "", ["content"])]
        content_message = convert.content_from_doc(content)
        event = events.v2mom_event(events.V2MOM_CREATED, convert.event_data(doc, caller.person_id, "", content_message))
        try:
            self.repository.insert(doc, [event])
        except DuplicateCreate:
            existing = self.repository.find_by_create_key(doc["create_key"])
            return convert.v2mom_to_proto(existing, show_published=False)
        except SlotTaken:
            raise AlreadyExists(
                f"{slot_holder} already has a {level.removeprefix('ORG_LEVEL_').lower()} V2MOM in {request.cycle_id}; "
                "edit it, or archive it first"
            ) from None
        return convert.v2mom_to_proto(doc, show_published=False, content_message=content_message)

    def _owner_and_unit(self, caller: Caller, request) -> tuple[str, str, str]:
        if request.level == common_pb2.ORG_LEVEL_INDIVIDUAL:
            owner_id = request.owner_id or caller.person_id
            owner = self.directory.person(owner_id)
            if owner is None:
                raise InvalidArgument([FieldViolation("owner_id", f"unknown person {owner_id!r}")])
            if owner_id != caller.person_id and not caller.is_admin:
                raise PermissionDenied("only admins may create a V2MOM for someone else")
            if request.org_unit_id and request.org_unit_id != owner["org_unit_id"]:
                # Silently filing it elsewhere would surprise the client more than a refusal.
                raise InvalidArgument(
                    [FieldViolation("org_unit_id", f"an individual V2MOM sits in its owner's org unit ({owner['org_unit_id']})")]
                )
            return owner_id, owner["org_unit_id"], owner_id
        if not request.org_unit_id:
            raise InvalidArgument([FieldViolation("org_unit_id", "is required for a company, department or team V2MOM")])
        unit = self.directory.org_unit(request.org_unit_id)
        if unit is None:
            raise InvalidArgument([FieldViolation("org_unit_id", f"unknown org unit {request.org_unit_id!r}")])
        if unit["level"] != validation.level_name(request.level):
            raise InvalidArgument(
                [FieldViolation("level", f"org unit {unit['_id']!r} is a {unit['level']}, not a {validation.level_name(request.level)}")]
            )
        if not unit.get("leader_id"):
            raise FailedPrecondition(f"org unit {unit['_id']!r} has no leader to own its V2MOM")
        if request.owner_id and request.owner_id != unit["leader_id"]:
            raise InvalidArgument([FieldViolation("owner_id", "a unit's V2MOM is owned by the unit's leader")])
        if caller.person_id != unit["leader_id"] and not caller.is_admin:
            raise PermissionDenied(f"only the leader of {unit['_id']!r} or an admin may create its V2MOM")
        return unit["leader_id"], unit["_id"], unit["_id"]

    def _check_parent(
        self, caller: Caller, parent_id: str, cycle_id: str, child_id: str | None, field: str = "parent_id"
    ) -> None:
        parent = self.repository.get(parent_id)
        if parent is None or not self.access.may_see(caller, parent):
            raise InvalidArgument([FieldViolation(field, f"unknown v2mom {parent_id!r}")])
        if parent["cycle_id"] != cycle_id:
            raise InvalidArgument(
                [FieldViolation(field, f"parent is in cycle {parent['cycle_id']}, this V2MOM in {cycle_id}")]
            )
        if parent["state"] == ARCHIVED:
            raise FailedPrecondition(f"parent v2mom {parent_id!r} is archived")
        if child_id is None:
            return
        cursor, hops = parent_id, 0
        while cursor and hops <= 64:
            if cursor == child_id:
                raise InvalidArgument([FieldViolation(field, "would make the alignment tree loop back on itself")])
            cursor, hops = self.repository.parent_of(cursor), hops + 1

    def _person_exists(self, person_id: str) -> bool:
        return self.directory.person(person_id) is not None

    # --- read --------------------------------------------------------------------

    def get(self, caller: Caller, request: goals_pb2.GetV2MOMRequest) -> goals_pb2.V2MOM:
        self._require_id("id", request.id)
        violations = Violations()
        validation.check_enum(violations, "view", goals_pb2.V2MOMView, request.view)
        violations.raise_if_any()
        doc = self.access.require_visible(caller, self.repository.get(request.id), request.id)
        sees_working = self.access.sees_working_copy(caller, doc)
        if request.view == goals_pb2.V2MOM_VIEW_PUBLISHED:
            if not doc.get("published"):
                raise NotFound(f"v2mom {request.id!r} has no published version")
            return self._render(doc, show_published=True)
        if request.view == goals_pb2.V2MOM_VIEW_WORKING and not sees_working:
            raise PermissionDenied("only the owner, their managers and admins see the working copy")
        return self._render(doc, show_published=not sees_working)

    def _render(self, doc: dict, show_published: bool) -> goals_pb2.V2MOM:
        message = convert.v2mom_to_proto(doc, show_published)
        if show_published and doc["state"] != ARCHIVED:
            # The reader sees the published version; the draft behind it is not theirs to know about.
            message.state = goals_pb2.V2MOM_STATE_PUBLISHED
            message.revision = doc["published"]["revision"]
            message.ClearField("changes_requested_reason")
            message.ClearField("submit_time")
            message.approver_id = ""
        return message

    def _render_for(self, caller: Caller, doc: dict) -> goals_pb2.V2MOM:
        return self._render(doc, show_published=not self.access.sees_working_copy(caller, doc))

    def list_v2moms(self, caller: Caller, request: goals_pb2.ListV2MOMsRequest) -> goals_pb2.ListV2MOMsResponse:
        violations = Violations()
        for field in ("owner_id", "org_unit_id", "cycle_id"):
            validation.check_id(violations, field, getattr(request, field), required=False)
        validation.check_enum(violations, "state", goals_pb2.V2MOMState, request.state)
        limit = validation.page_size(violations, request.page_size)
        violations.raise_if_any()
        query: dict = {}
        for field in ("owner_id", "org_unit_id", "cycle_id"):
            if getattr(request, field):
                query[field] = getattr(request, field)
        state = goals_pb2.V2MOMState.Name(request.state) if request.state else None
        if caller.is_admin:
            if state:
                query["state"] = state
        else:
            query["$or"] = self._visible_clauses(caller, state)
        docs = self.repository.find(query, decode_token(request.page_token), limit + 1)
        return goals_pb2.ListV2MOMsResponse(
            v2moms=[self._render_for(caller, d) for d in docs[:limit]],
            next_page_token=encode_token(docs[limit - 1]["_id"]) if len(docs) > limit else "",
        )

    def _visible_clauses(self, caller: Caller, state: str | None) -> list[dict]:
        """What a non-admin may list, filtered on the state they will be shown.

        Someone who sees only the published version sees PUBLISHED (or ARCHIVED), never
        the draft behind it, so a state filter must match that, not the stored state.
        """
        visible = self.access.visible_owner_ids(caller)
        working = {"owner_id": {"$in": visible}}
        public = {"owner_id": {"$nin": visible}, "published_revision": {"$gt": 0}}
        if state:
            working["state"] = state
        if state == PUBLISHED:
            public["state"] = {"$ne": ARCHIVED}
        elif state == ARCHIVED:
            public["state"] = ARCHIVED
        elif state:
            return [working]
        return [working, public]

    def pending_approvals(self, caller: Caller, request) -> goals_pb2.ListV2MOMsResponse:
        violations = Violations()
        limit = validation.page_size(violations, request.page_size)
        violations.raise_if_any()
        approvers = [caller.person_id, ""] if caller.is_admin else [caller.person_id]
        query = {"state": SUBMITTED, "approver_id": {"$in": approvers}, "owner_id": {"$ne": caller.person_id}}
        docs = self.repository.find(query, decode_token(request.page_token), limit + 1)
        return goals_pb2.ListV2MOMsResponse(
            v2moms=[self._render(d, show_published=False) for d in docs[:limit]],
            next_page_token=encode_token(docs[limit - 1]["_id"]) if len(docs) > limit else "",
        )

    def alignment_tree(self, caller: Caller, request) -> goals_pb2.AlignmentNode:
        self._require_id("id", request.id)
        if not 0 <= request.max_depth <= MAX_TREE_DEPTH:
            raise InvalidArgument([FieldViolation("max_depth", f"must be between 1 and {MAX_TREE_DEPTH}")])
        root = self.access.require_visible(caller, self.repository.get(request.id), request.id)
        depth = request.max_depth or MAX_TREE_DEPTH
        children_of: dict[str, list[dict]] = {}
        frontier, seen = [root["_id"]], {root["_id"]}
        for _ in range(depth):
            if not frontier:
                break
            children = [c for c in self.repository.children_of(frontier) if c["_id"] not in seen]
            frontier = []
            for child in children:
                if not self.access.may_see(caller, child):
                    continue  # hidden drafts, and everything aligned below them, stay out
                seen.add(child["_id"])
                children_of.setdefault(child["parent_id"], []).append(child)
                frontier.append(child["_id"])
        return self._subtree(caller, root, children_of)

    def _subtree(self, caller: Caller, doc: dict, children_of: dict[str, list[dict]]) -> goals_pb2.AlignmentNode:
        # Bottom-up: appending a message to a repeated field copies it, so a child must be
        # complete before it goes in (growing it afterwards lost every grandchild).
        node = self._node(caller, doc)
        node.children.extend(self._subtree(caller, child, children_of) for child in children_of.get(doc["_id"], []))
        return node

    def _node(self, caller: Caller, doc: dict) -> goals_pb2.AlignmentNode:
        shown = self._render_for(caller, doc)
        return goals_pb2.AlignmentNode(
            id=doc["_id"],
            title=shown.content.title,
            owner_id=doc["owner_id"],
            org_unit_id=doc["org_unit_id"],
            level=shown.level,
            state=shown.state,
        )

    def revisions(self, caller: Caller, request) -> goals_pb2.ListRevisionsResponse:
        self._require_id("v2mom_id", request.v2mom_id)
        violations = Violations()
        limit = validation.page_size(violations, request.page_size)
        violations.raise_if_any()
        self.access.require_working_copy(caller, self.repository.get(request.v2mom_id), request.v2mom_id)
        after = decode_token(request.page_token)
        if after and not after.isdigit():
            # Another list's token would silently restart from the first revision.
            raise InvalidArgument([FieldViolation("page_token", "is not a token this service issued")])
        start = int(after) if after else 0
        history = [h for h in self.repository.history(request.v2mom_id) if h["revision"] > start]
        page = history[:limit]
        return goals_pb2.ListRevisionsResponse(
            revisions=[convert.revision_to_proto(h) for h in page],
            next_page_token=encode_token(str(page[-1]["revision"])) if len(history) > limit else "",
        )

    def lint(self, caller: Caller, request) -> goals_pb2.LintV2MOMResponse:
        if request.id:
            self._require_id("id", request.id)
            doc = self.access.require_working_copy(caller, self.repository.get(request.id), request.id)
            content = doc["content"]
        else:
            violations = Violations()
            validation.check_content(violations, request.content, self._person_exists)
            violations.raise_if_any()
            content = validation.assign_ids(convert.content_to_doc(request.content))
        findings = lint.lint(content)
        return goals_pb2.LintV2MOMResponse(
            findings=[
                goals_pb2.LintFinding(severity=SEVERITY[f.severity], field_path=f.field_path, code=f.code, message=f.message)
                for f in findings
            ],
            submittable=not lint.has_errors(findings),
        )

    # --- change --------------------------------------------------------------------

    def update(self, caller: Caller, request: goals_pb2.UpdateV2MOMRequest) -> goals_pb2.V2MOM:
        self._require_id("v2mom.id", request.v2mom.id)
        paths = list(request.update_mask.paths)
        violations = Violations()
        if not paths:
            violations.add("update_mask", "name at least one field to update")
        unknown = [p for p in paths if p not in UPDATABLE_PATHS]
        if unknown:
            # One violation, however many paths: a mask of thousands must not overflow the trailers.
            named = ", ".join(repr(p[:100]) for p in unknown[:3])
            if len(unknown) > 3:
                named += f" and {len(unknown) - 3} more"
            violations.add("update_mask", f"cannot update {named}; allowed: {', '.join(UPDATABLE_PATHS)}")
        validation.check_text(violations, "change_reason", request.change_reason, validation.MAX_REASON)
        validation.check_id(violations, "v2mom.parent_id", request.v2mom.parent_id, required=False)
        violations.raise_if_any()

        doc = self.access.require_editor(caller, self.repository.get(request.v2mom.id), request.v2mom.id)
        self._check_revision(doc, request.expected_revision)
        if doc["state"] not in EDITABLE_STATES:
            raise self._wrong_state(doc, "edited", EDITABLE_STATES)
        if doc.get("published_revision") and not request.change_reason.strip():
            raise InvalidArgument([FieldViolation("change_reason", "is required once a V2MOM has been published")])

        keys = [UPDATABLE_PATHS[p] for p in dict.fromkeys(paths) if UPDATABLE_PATHS[p]]
        incoming = self._merged_content(doc, request.v2mom.content, keys)
        new_content = dict(doc["content"])
        changed = []
        for key in keys:
            if new_content.get(key) != incoming[key]:
                new_content[key] = incoming[key]
                changed.append(f"content.{key}")
        new_parent = doc.get("parent_id")
        if "parent_id" in paths and (request.v2mom.parent_id or None) != doc.get("parent_id"):
            if request.v2mom.parent_id:
                self._check_parent(
                    caller, request.v2mom.parent_id, doc["cycle_id"], child_id=doc["_id"], field="v2mom.parent_id"
                )
            new_parent = request.v2mom.parent_id or None
            changed.append("parent_id")
        if not changed:
            return self._render(doc, show_published=False)  # a retried or empty edit changes nothing

        # Editing the published version opens a new draft; the published one stays as it is.
        new_state = DRAFT if doc["state"] == PUBLISHED else doc["state"]
        stamp = now()
        after = {**doc, "content": new_content, "parent_id": new_parent, "state": new_state, "revision": doc["revision"] + 1}
        return self._commit(
            caller, doc, after, "UPDATE", events.V2MOM_UPDATED, request.change_reason, changed, stamp,
            {"content": new_content, "parent_id": new_parent, "state": new_state, "updated_at": stamp},
        )

    def _merged_content(self, doc: dict, sent: goals_pb2.V2MOMContent, keys: list[str]) -> dict:
        """The stored content with the masked fields taken from the request, validated as a whole.

        Links are checked against the result, not the request alone: an edit of the methods
        may link values it did not resend, and an edit of the values must not strand links.
        """
        merged = convert.content_from_doc(doc["content"])
        if keys:
            field_mask_pb2.FieldMask(paths=keys).MergeMessage(
                sent, merged, replace_message_field=True, replace_repeated_field=True
            )
            violations = Violations()
            validation.check_content(violations, merged, self._person_exists, prefix="v2mom.content")
            violations.raise_if_any()
        return validation.assign_ids(convert.content_to_doc(merged))

    def submit(self, caller: Caller, request) -> goals_pb2.V2MOM:
        self._require_id("id", request.id)
        doc = self.access.require_editor(caller, self.repository.get(request.id), request.id)
        self._check_revision(doc, request.expected_revision)
        if doc["state"] not in (DRAFT, CHANGES_REQUESTED):
            raise self._wrong_state(doc, "submitted", (DRAFT, CHANGES_REQUESTED))
        errors = [f for f in lint.lint(doc["content"]) if f.severity == lint.ERROR]
        if errors:
            raise FailedPrecondition(
                f"v2mom {doc['_id']!r} has {len(errors)} problem(s) to fix before submitting; see LintV2MOM",
                [PreconditionViolation(f.code, f.field_path, f.message) for f in errors],
            )
        stamp = now()
        approver = self.access.approver_for(doc)
        changes = {"state": SUBMITTED, "approver_id": approver, "submitted_at": stamp, "updated_at": stamp}
        # The reason answered the previous submission; a new one starts clean.
        return self._commit(
            caller, doc, {**doc, **changes}, "SUBMIT", events.V2MOM_SUBMITTED, "", [], stamp, changes,
            unset=("changes_requested_reason",),
        )

    def approve(self, caller: Caller, request) -> goals_pb2.V2MOM:
        self._require_id("id", request.id)
        self._check_reason(request.comment, "comment", required=False)
        doc = self.access.require_approver(caller, self.repository.get(request.id), request.id)
        self._check_revision(doc, request.expected_revision)
        if doc["state"] != SUBMITTED:
            raise self._wrong_state(doc, "approved", (SUBMITTED,))
        stamp = now()
        published = {
            "revision": doc["revision"] + 1,
            "content": doc["content"],
            "approved_by": caller.person_id,
            "published_at": stamp,
        }
        changes = {
            "state": PUBLISHED,
            "published": published,
            "published_revision": published["revision"],
            "published_at": stamp,
            "updated_at": stamp,
        }
        return self._commit(
            caller, doc, {**doc, **changes}, "APPROVE", events.V2MOM_APPROVED, request.comment, [], stamp,
            changes, unset=("changes_requested_reason",),
        )

    def request_changes(self, caller: Caller, request) -> goals_pb2.V2MOM:
        self._require_id("id", request.id)
        self._check_reason(request.reason, "reason", required=True)
        doc = self.access.require_approver(caller, self.repository.get(request.id), request.id)
        self._check_revision(doc, request.expected_revision)
        if doc["state"] != SUBMITTED:
            raise self._wrong_state(doc, "sent back", (SUBMITTED,))
        stamp = now()
        changes = {"state": CHANGES_REQUESTED, "changes_requested_reason": request.reason, "updated_at": stamp}
        return self._commit(
            caller, doc, {**doc, **changes}, "REQUEST_CHANGES", events.V2MOM_CHANGES_REQUESTED, request.reason, [], stamp, changes
        )

    def archive(self, caller: Caller, request) -> goals_pb2.V2MOM:
        self._require_id("id", request.id)
        self._check_reason(request.reason, "reason", required=False)
        doc = self.access.require_editor(caller, self.repository.get(request.id), request.id)
        self._check_revision(doc, request.expected_revision)
        if doc["state"] == ARCHIVED:
            raise FailedPrecondition(f"v2mom {doc['_id']!r} is already archived")
        stamp = now()
        changes = {"state": ARCHIVED, "archived_at": stamp, "updated_at": stamp}
        return self._commit(
            caller, doc, {**doc, **changes}, "ARCHIVE", events.V2MOM_ARCHIVED, request.reason, [], stamp,
            changes, unset=("slot",),
        )

    def _commit(self, caller, doc, after, action, event_type, reason, changed, stamp, changes, unset=()) -> goals_pb2.V2MOM:
        after = {**after, "revision": doc["revision"] + 1}
        entry = self._history(after, action, caller, stamp, reason, changed)
        data = convert.event_data(after, caller.person_id, doc["state"], reason=reason or "", changed_paths=changed)
        event = events.v2mom_event(event_type, data)
        saved = self.repository.apply(doc["_id"], doc["revision"], changes, entry, [event], unset)
        if saved is None:
            raise Aborted(f"v2mom {doc['_id']!r} changed while you were working on it; read it again and retry")
        return self._render(saved, show_published=False)

    @staticmethod
    def _history(doc: dict, action: str, caller: Caller, stamp: datetime, reason: str, changed: list[str]) -> dict:
        return {
            "revision": doc["revision"],
            "action": action,
            "actor_id": caller.person_id,
            "at": stamp,
            "reason": reason,
            "changed_paths": changed,
            "state": doc["state"],
            "content": doc["content"],
        }

    @staticmethod
    def _check_revision(doc: dict, expected: int) -> None:
        if expected < 0:
            raise InvalidArgument([FieldViolation("expected_revision", "must not be negative")])
        if expected and expected != doc["revision"]:
            raise Aborted(f"v2mom {doc['_id']!r} is at revision {doc['revision']}, not {expected}; read it again and retry")

    @staticmethod
    def _check_reason(text: str, field: str, required: bool) -> None:
        violations = Violations()
        validation.check_text(violations, field, text, validation.MAX_REASON, required=required)
        violations.raise_if_any()

    @staticmethod
    def _wrong_state(doc: dict, verb: str, allowed) -> FailedPrecondition:
        names = ", ".join(s.removeprefix("V2MOM_STATE_") for s in allowed)
        state = doc["state"].removeprefix("V2MOM_STATE_")
        return FailedPrecondition(
            f"v2mom {doc['_id']!r} is {state}; only {names} V2MOMs can be {verb}",
            [PreconditionViolation("STATE", doc["_id"], f"state is {state}")],
        )

    @staticmethod
    def _require_id(field: str, value: str) -> None:
        violations = Violations()
        validation.check_id(violations, field, value)
        violations.raise_if_any()

    # --- directory ---------------------------------------------------------------

    def get_person(self, caller: Caller, request) -> common_pb2.Person:
        self._require_id("id", request.id)
        person = self.directory.person(request.id)
        if person is None:
            raise NotFound(f"person {request.id!r} not found")
        return convert.person_to_proto(person)

    def list_people(self, caller: Caller, request) -> goals_pb2.ListPeopleResponse:
        violations = Violations()
        validation.check_id(violations, "org_unit_id", request.org_unit_id, required=False)
        validation.check_id(violations, "manager_id", request.manager_id, required=False)
        limit = validation.page_size(violations, request.page_size)
        violations.raise_if_any()
        rows = self.directory.list_people(request.org_unit_id, request.manager_id, decode_token(request.page_token), limit + 1)
        return goals_pb2.ListPeopleResponse(
            people=[convert.person_to_proto(p) for p in rows[:limit]],
            next_page_token=encode_token(rows[limit - 1]["_id"]) if len(rows) > limit else "",
        )

    def get_org_unit(self, caller: Caller, request) -> common_pb2.OrgUnit:
        self._require_id("id", request.id)
        unit = self.directory.org_unit(request.id)
        if unit is None:
            raise NotFound(f"org unit {request.id!r} not found")
        return convert.org_unit_to_proto(unit)

    def list_org_units(self, caller: Caller, request) -> goals_pb2.ListOrgUnitsResponse:
        violations = Violations()
        validation.check_id(violations, "parent_id", request.parent_id, required=False)
        limit = validation.page_size(violations, request.page_size)
        violations.raise_if_any()
        rows = self.directory.list_org_units(request.parent_id, decode_token(request.page_token), limit + 1)
        return goals_pb2.ListOrgUnitsResponse(
            org_units=[convert.org_unit_to_proto(u) for u in rows[:limit]],
            next_page_token=encode_token(rows[limit - 1]["_id"]) if len(rows) > limit else "",
        )

    def list_cycles(self, caller: Caller, request) -> goals_pb2.ListCyclesResponse:
        return goals_pb2.ListCyclesResponse(cycles=[convert.cycle_to_proto(c) for c in self.directory.list_cycles()])
