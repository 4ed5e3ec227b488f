"""Use cases on templates: ListTemplates, GetTemplate (everyone), CreateTemplate, UpdateTemplate,
DeleteTemplate (admins), and the content a CreateV2MOM from a template starts with."""

from google.protobuf import field_mask_pb2

from services.platform.api.auth import Caller
from services.platform.core import paging
from services.platform.core.clock import utc_now
from services.platform.core.errors import (
    Aborted, AlreadyExists, FieldViolation, InvalidArgument, NotFound, PermissionDenied, Violations,
)
from services.platform.core.validation import check_enum, check_id, check_text

from . import convert, copy_forward, validation
from .directory import Directory
from .templates import TemplateStore
from v2mom.v1 import common_pb2, goals_pb2

UPDATABLE = ("name", "description", "level", "content")
MAX_TEMPLATE_DESCRIPTION = 2000


class Templates:
    def __init__(self, store: TemplateStore, directory: Directory):
        self.store = store
        self.directory = directory

    # --- reads ---------------------------------------------------------------------------------

    def list(self, caller: Caller, request: goals_pb2.ListTemplatesRequest) -> goals_pb2.ListTemplatesResponse:
        violations = Violations()
        check_enum(violations, "level", common_pb2.OrgLevel, request.level)
        limit = paging.page_size(violations, request.page_size)
        violations.raise_if_any()
        level = common_pb2.OrgLevel.Name(request.level) if request.level else ""
        filters = {"level": level}
        after = paging.decode_token(request.page_token, "ListTemplates", filters, str)
        rows = self.store.page(level, after, limit + 1)
        return goals_pb2.ListTemplatesResponse(
            templates=[convert.template_to_proto(row) for row in rows[:limit]],
            next_page_token=paging.next_token("ListTemplates", filters, rows, limit, lambda row: row["_id"]),
        )

    def get(self, caller: Caller, request: goals_pb2.GetTemplateRequest) -> goals_pb2.Template:
        validation.require_id("id", request.id)
        return convert.template_to_proto(self._require(request.id))

    def content_for(self, request: goals_pb2.CreateV2MOMRequest) -> dict:
        """A new V2MOM's content from its template: the template's items under ids of their own."""
        template = self.store.get(request.template_id)
        if template is None:
            raise InvalidArgument([FieldViolation("template_id", f"unknown template {request.template_id!r}")])
        if template["level"] != common_pb2.OrgLevel.Name(request.level):
            noun = template["level"].removeprefix("ORG_LEVEL_").lower()
            raise InvalidArgument([FieldViolation("template_id", f"template {template['_id']!r} is for {noun} V2MOMs")])
        return copy_forward.copied_content(template["content"], copy_forward.Choice(mark_origin=False))

    # --- writes (admins) -------------------------------------------------------------------------

    def create(self, caller: Caller, request: goals_pb2.CreateTemplateRequest) -> goals_pb2.Template:
        _require_admin(caller)
        self._check(request.template, "template")
        doc = {**self._fields(request.template), "_id": request.template.id, "revision": 1,
               "created_by": caller.person_id, "updated_at": utc_now()}
        if not self.store.insert(doc):
            raise AlreadyExists(f"template {request.template.id!r} already exists; change it with UpdateTemplate")
        return convert.template_to_proto(doc)

    def update(self, caller: Caller, request: goals_pb2.UpdateTemplateRequest) -> goals_pb2.Template:
        _require_admin(caller)
        validation.require_id("template.id", request.template.id)
        paths = validation.mask_paths(request.update_mask, UPDATABLE)
        stored = self._require(request.template.id)
        _require_revision(stored, request.expected_revision)
        merged = convert.template_to_proto(stored)
        field_mask_pb2.FieldMask(paths=paths).MergeMessage(
            request.template, merged, replace_message_field=True, replace_repeated_field=True)
        self._check(merged, "template")
        fields = self._fields(merged)
        if all(stored.get(k) == v for k, v in fields.items()):
            return convert.template_to_proto(stored)
        doc = {**stored, **fields, "revision": stored["revision"] + 1, "updated_at": utc_now()}
        if not self.store.replace(doc, stored["revision"]):
            raise Aborted(f"template {stored['_id']!r} changed while you were working on it; read it again and retry")
        return convert.template_to_proto(doc)

    def delete(self, caller: Caller, request: goals_pb2.DeleteTemplateRequest) -> goals_pb2.DeleteTemplateResponse:
        _require_admin(caller)
        validation.require_id("id", request.id)
        stored = self._require(request.id)
        _require_revision(stored, request.expected_revision)
        if not self.store.delete(stored["_id"], stored["revision"]):
            raise Aborted(f"template {stored['_id']!r} changed while you were deleting it; read it again and retry")
        return goals_pb2.DeleteTemplateResponse()

    # --- shared ------------------------------------------------------------------------------------

    def _require(self, template_id: str) -> dict:
        template = self.store.get(template_id)
        if template is None:
            raise NotFound(f"template {template_id!r} not found")
        return template

    def _check(self, template: goals_pb2.Template, prefix: str) -> None:
        violations = Violations()
        check_id(violations, f"{prefix}.id", template.id)
        check_text(violations, f"{prefix}.name", template.name, validation.MAX_TITLE, required=True)
        check_text(violations, f"{prefix}.description", template.description, MAX_TEMPLATE_DESCRIPTION)
        check_enum(violations, f"{prefix}.level", common_pb2.OrgLevel, template.level, required=True)
        validation.check_content(violations, template.content, self._person_exists, prefix=f"{prefix}.content")
        violations.raise_if_any()

    def _fields(self, template: goals_pb2.Template) -> dict:
        return {"name": template.name, "description": template.description,
                "level": common_pb2.OrgLevel.Name(template.level),
                "content": validation.assign_ids(convert.content_to_doc(template.content))}

    def _person_exists(self, person_id: str) -> bool:
        return self.directory.person(person_id) is not None


def _require_admin(caller: Caller) -> None:
    if not caller.is_admin:
        raise PermissionDenied("only admins may manage templates")


def _require_revision(stored: dict, expected: int) -> None:
    if expected < 0:
        raise InvalidArgument([FieldViolation("expected_revision", "must not be negative")])
    if expected and expected != stored["revision"]:
        raise Aborted(f"template {stored['_id']!r} is at revision {stored['revision']}, not {expected}; read it again")

