"""Use cases for writing a V2MOM's content: CreateV2MOM, UpdateV2MOM, and LintV2MOM to check it first."""

from typing import TYPE_CHECKING

from google.protobuf import field_mask_pb2

from services.platform.api.auth import Caller
from services.platform.core.clock import utc_now
from services.platform.core.errors import AlreadyExists, FieldViolation, InvalidArgument, Violations
from services.platform.core.ids import new_id
from services.platform.core.validation import check_enum, check_id, check_text

from . import alignment, cascade, commits, convert, cycles, events, lifecycle, lint, validation
from .access import Access
from .directory import Directory
from .ownership import Placement, place
from .repository import DuplicateCreate, SlotTaken, V2MOMRepository
from .views import render

if TYPE_CHECKING:
    from .template_admin import Templates
from v2mom.v1 import common_pb2, goals_pb2

# Update mask path -> content key (None: not content).
UPDATABLE_PATHS = {
    "content.title": "title",
    "content.vision": "vision",
    "content.values": "values",
    "content.methods": "methods",
    "content.obstacles": "obstacles",
    "content.measures": "measures",
    "parent_id": None,
}
SEVERITY = {lint.ERROR: goals_pb2.SEVERITY_ERROR, lint.WARNING: goals_pb2.SEVERITY_WARNING, lint.INFO: goals_pb2.SEVERITY_INFO}


def request_key(caller: Caller, request_id: str) -> str | None:
    """What a retried create is known by: the caller's own request_id (None without one). One format for every
    create, since CreateV2MOM and CopyV2MOM share the V2MOMs' create keys."""
    return f"{caller.person_id}:{request_id}" if request_id else None


class Authoring:
    def __init__(self, repository: V2MOMRepository, directory: Directory, access: Access, templates: "Templates"):
        self.repository = repository
        self.directory = directory
        self.access = access
        self.templates = templates

    # --- CreateV2MOM --------------------------------------------------------------

    def create(self, caller: Caller, request: goals_pb2.CreateV2MOMRequest) -> goals_pb2.V2MOM:
        self._check_create(request)
        create_key = request_key(caller, request.request_id)
        if create_key and (existing := self.repository.find_by_create_key(create_key)):
            return render(existing, show_published=False)
        cycle = self.directory.cycle(request.cycle_id)
        if cycle is None:
            raise InvalidArgument([FieldViolation("cycle_id", f"unknown cycle {request.cycle_id!r}")])
        cycles.require_open(cycle, "create V2MOMs in")
        placement = place(caller, request, self.directory)
        if request.parent_id:
            self.require_parent(caller, request.parent_id, request.cycle_id, "parent_id")
        content = self.templates.content_for(request) if request.template_id else convert.content_to_doc(request.content)
        self._require_supports(content, request.parent_id or None, "content")
        doc = new_v2mom(caller, request, placement, validation.assign_ids(content), create_key)
        return self.insert(caller, doc, placement)

    def insert(self, caller: Caller, doc: dict, placement: Placement) -> goals_pb2.V2MOM:
        """Stores a new V2MOM with its v2mom_created; a replayed key gets the first one back."""
        content_message = convert.content_from_doc(doc["content"])
        event = events.v2mom_event(events.V2MOM_CREATED, convert.event_data(doc, caller.person_id, "", content_message))
        try:
            self.repository.insert(doc, [event])
        except DuplicateCreate:
            return render(self.repository.find_by_create_key(doc["create_key"]), show_published=False)
        except SlotTaken:
            raise AlreadyExists(placement.slot_taken_message(doc["cycle_id"])) from None
        return convert.v2mom_to_proto(doc, show_published=False, content_message=content_message)

    def _check_create(self, request: goals_pb2.CreateV2MOMRequest) -> None:
        violations = Violations()
        check_enum(violations, "level", common_pb2.OrgLevel, request.level, required=True)
        check_id(violations, "cycle_id", request.cycle_id)
        for field in ("owner_id", "org_unit_id", "parent_id", "request_id", "template_id"):
            check_id(violations, field, getattr(request, field), required=False)
        validation.check_content(violations, request.content, self._person_exists)
        if request.template_id and request.content.ByteSize():
            violations.add("template_id", "send content or a template, not both")
        violations.raise_if_any()

    # --- UpdateV2MOM --------------------------------------------------------------

    def update(self, caller: Caller, request: goals_pb2.UpdateV2MOMRequest) -> goals_pb2.V2MOM:
        validation.require_id("v2mom.id", request.v2mom.id)
        paths = list(request.update_mask.paths)
        _check_update(request, paths)
        doc = self.access.require_editor(caller, self.repository.get(request.v2mom.id), request.v2mom.id)
        lifecycle.require_expected_revision(doc, request.expected_revision)
        lifecycle.require_allowed(lifecycle.UPDATE, doc["_id"], doc["state"])
        if lifecycle.requires_change_reason(doc) and not request.change_reason.strip():
            raise InvalidArgument([FieldViolation("change_reason", "is required once a V2MOM has been published")])

        new_content, changed = self._edited_content(doc, request.v2mom.content, paths)
        new_parent = doc.get("parent_id")
        if "parent_id" in paths and (request.v2mom.parent_id or None) != new_parent:
            new_parent = self._new_parent(caller, doc, request.v2mom.parent_id)
            changed.append("parent_id")
        if not changed:
            return render(doc, show_published=False)  # a retried or empty edit changes nothing
        if {"content.methods", "parent_id"} & set(changed):
            self._require_supports(new_content, new_parent, "v2mom.content")

        stamp = utc_now()
        changes = {"content": new_content, "parent_id": new_parent, "updated_at": stamp}
        # An edit answers any change of the parent before it (parent_changes.py): the mark goes.
        saved = commits.commit(
            self.repository, caller, doc, lifecycle.UPDATE, changes, stamp, request.change_reason, changed,
            unset=("parent_changed_at",),
        )
        return render(saved, show_published=False)

    def _edited_content(self, doc: dict, sent: goals_pb2.V2MOMContent, paths: list[str]) -> tuple[dict, list[str]]:
        """The stored content with the masked fields replaced, and the paths that really changed."""
        keys = [UPDATABLE_PATHS[p] for p in dict.fromkeys(paths) if UPDATABLE_PATHS[p]]
        incoming = self._merged_content(doc, sent, keys)
        content, changed = dict(doc["content"]), []
        for key in keys:
            if content.get(key) != incoming[key]:
                content[key] = incoming[key]
                changed.append(f"content.{key}")
        return content, changed

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

    def _new_parent(self, caller: Caller, doc: dict, parent_id: str) -> str | None:
        if parent_id:
            self.require_parent(caller, parent_id, doc["cycle_id"], "v2mom.parent_id")
            alignment.require_no_loop(doc["_id"], parent_id, self.repository.parent_of, "v2mom.parent_id")
        return parent_id or None

    # --- LintV2MOM ----------------------------------------------------------------

    def lint(self, caller: Caller, request: goals_pb2.LintV2MOMRequest) -> goals_pb2.LintV2MOMResponse:
        has_parent = False
        if request.id:
            validation.require_id("id", request.id)
            doc = self.access.require_working_copy(caller, self.repository.get(request.id), request.id)
            content, has_parent = doc["content"], bool(doc.get("parent_id"))
        else:
            violations = Violations()
            validation.check_content(violations, request.content, self._person_exists)
            violations.raise_if_any()
            content = validation.assign_ids(convert.content_to_doc(request.content))
        findings = lint.lint(content, has_parent)
        return goals_pb2.LintV2MOMResponse(
            findings=[
                goals_pb2.LintFinding(severity=SEVERITY[f.severity], field_path=f.field_path, code=f.code, message=f.message)
                for f in findings
            ],
            submittable=not lint.has_errors(findings),
        )

    # --- shared -------------------------------------------------------------------

    def require_parent(self, caller: Caller, parent_id: str, cycle_id: str, field: str) -> None:
        parent = self.repository.get(parent_id)
        visible = parent if parent is not None and self.access.may_see(caller, parent) else None
        alignment.require_parent(parent_id, visible, cycle_id, field)

    def _require_supports(self, content: dict, parent_id: str | None, prefix: str) -> None:
        """Each method's ``supports`` against the parent's published methods (cascade.py); read only when named."""
        if cascade.names_supports(content):
            cascade.require_supports_known(content, self.repository.get(parent_id) if parent_id else None, prefix)

    def _person_exists(self, person_id: str) -> bool:
        return self.directory.person(person_id) is not None


def _check_update(request: goals_pb2.UpdateV2MOMRequest, paths: list[str]) -> None:
    violations = Violations()
    validation.check_mask(violations, paths, tuple(UPDATABLE_PATHS))
    check_text(violations, "change_reason", request.change_reason, validation.MAX_REASON)
    check_id(violations, "v2mom.parent_id", request.v2mom.parent_id, required=False)
    violations.raise_if_any()


def new_v2mom(caller: Caller, request, placement: Placement, content: dict, create_key: str | None) -> dict:
    """The stored document of a new V2MOM: a DRAFT at revision 1, with its first history entry."""
    stamp = utc_now()
    doc = {
        "_id": new_id("v2m"),
        "revision": 1,
        "owner_id": placement.owner_id,
        "org_unit_id": placement.org_unit_id,
        "level": placement.level,
        "cycle_id": request.cycle_id,
        "parent_id": request.parent_id or None,
        "state": lifecycle.DRAFT,
        "content": content,
        "published": None,
        "published_revision": 0,
        "approver_id": None,
        "slot": placement.slot(request.cycle_id),
        "created_by": caller.person_id,
        "created_at": stamp,
        "updated_at": stamp,
    }
    if create_key:
        doc["create_key"] = create_key
    doc["latest_revision"] = commits.history_entry(doc, "CREATE", caller, stamp, "", ["content"])
    return doc
