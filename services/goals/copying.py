"""CopyV2MOM: a V2MOM carried into a new cycle as a draft (what comes along: copy_forward.py).

Last cycle's final values (for the baselines) and which methods were
completed come in the request: the caller reads them from checkins-api's
GetProgress (the CLI does). Goals calls no other service and reads no other
database; asking check-ins itself would make goals depend on a service that
already depends on it (check-ins asks goals for structures and cycles), so a
slow check-ins could stall V2MOM writes. A method whose milestones are all
done counts as completed even without the caller saying so.
"""

from datetime import date, timedelta

from services.platform.api.auth import Caller
from services.platform.core.errors import FieldViolation, InvalidArgument, Violations
from services.platform.core.validation import check_finite, check_id

from . import copy_forward, cycles
from .access import Access
from .authoring import Authoring, new_v2mom, request_key
from .directory import Directory
from .lifecycle import ARCHIVED
from .ownership import Placement, place
from .repository import V2MOMRepository
from .views import render
from v2mom.v1 import common_pb2, goals_pb2

MAX_OMITTED = 100
MAX_LISTED = 20
PART_FLAGS = {"omit_values": "values", "omit_methods": "methods", "omit_obstacles": "obstacles", "omit_measures": "measures"}


class Copying:
    def __init__(self, repository: V2MOMRepository, directory: Directory, access: Access, authoring: Authoring):
        self.repository = repository
        self.directory = directory
        self.access = access
        self.authoring = authoring

    def copy(self, caller: Caller, request: goals_pb2.CopyV2MOMRequest) -> goals_pb2.V2MOM:
        _check(request)
        create_key = request_key(caller, request.request_id)
        if create_key and (existing := self.repository.find_by_create_key(create_key)):
            return render(existing, show_published=False)
        source = self.access.require_visible(caller, self.repository.get(request.source_id), request.source_id)
        target = self._target_cycle(request.cycle_id, source["cycle_id"])
        content = source["content"] if self.access.sees_working_copy(caller, source) else source["published"]["content"]
        _require_known_measures(request, content)
        create = goals_pb2.CreateV2MOMRequest(
            level=common_pb2.OrgLevel.Value(source["level"]), cycle_id=request.cycle_id,
            owner_id=source["owner_id"] if source["level"] == "ORG_LEVEL_INDIVIDUAL" else "",
            org_unit_id="" if source["level"] == "ORG_LEVEL_INDIVIDUAL" else source["org_unit_id"],
            parent_id=self._parent(caller, request, source, content),
        )
        placement = place(caller, create, self.directory)
        shift = _shift(self.directory.cycle(source["cycle_id"]), target)
        choice = _choice(request, shift, self._parent_methods(create.parent_id))
        copied = copy_forward.copied_content(content, choice)
        doc = new_v2mom(caller, create, placement, copied, create_key)
        doc["copied_from_id"] = source["_id"]
        doc["latest_revision"].update(action="COPY", reason=f"copied from {source['_id']} ({source['cycle_id']})")
        return self.authoring.insert(caller, doc, placement)

    def _target_cycle(self, cycle_id: str, source_cycle_id: str) -> dict:
        if cycle_id == source_cycle_id:
            raise InvalidArgument([FieldViolation("cycle_id", "copy into another cycle than the source's")])
        cycle = self.directory.cycle(cycle_id)
        if cycle is None:
            raise InvalidArgument([FieldViolation("cycle_id", f"unknown cycle {cycle_id!r}")])
        cycles.require_open(cycle, "copy V2MOMs into")
        return cycle

    def _parent_methods(self, parent_id: str) -> dict[str, str]:
        """For each method the new parent's published version copied, its origin's id -> its own id."""
        published = ((self.repository.get(parent_id) or {}).get("published") or {}) if parent_id else {}
        methods = (published.get("content") or {}).get("methods", [])
        return {method["copied_from"]: method["id"] for method in methods if method.get("copied_from")}

    def _parent(self, caller: Caller, request: goals_pb2.CopyV2MOMRequest, source: dict, content: dict) -> str:
        """The parent asked for, else the new cycle's V2MOM in the slot of the source's parent, if the caller sees it."""
        if request.parent_id:
            self.authoring.require_parent(caller, request.parent_id, request.cycle_id, "parent_id")
            return request.parent_id
        shown = source.get("parent_id") if content is source["content"] else source.get("published_parent_id")
        old_parent = self.repository.get(shown) if shown else None
        if old_parent is None:
            return ""
        holder = old_parent["owner_id"] if old_parent["level"] == "ORG_LEVEL_INDIVIDUAL" else old_parent["org_unit_id"]
        matching = self.repository.in_slot(Placement("", "", old_parent["level"], holder).slot(request.cycle_id))
        if matching is None or matching["state"] == ARCHIVED or not self.access.may_see(caller, matching):
            return ""
        return matching["_id"]


def _check(request: goals_pb2.CopyV2MOMRequest) -> None:
    violations = Violations()
    check_id(violations, "source_id", request.source_id)
    check_id(violations, "cycle_id", request.cycle_id)
    for field in ("parent_id", "request_id"):
        check_id(violations, field, getattr(request, field), required=False)
    for field, limit in (("omit_item_ids", MAX_OMITTED), ("completed_method_ids", MAX_LISTED), ("final_values", MAX_LISTED)):
        violations.max_items(field, getattr(request, field), limit)
    if not violations:
        for i, item_id in enumerate(request.omit_item_ids):
            check_id(violations, f"omit_item_ids[{i}]", item_id)
        for i, item_id in enumerate(request.completed_method_ids):
            check_id(violations, f"completed_method_ids[{i}]", item_id)
        for i, final in enumerate(request.final_values):
            check_id(violations, f"final_values[{i}].measure_id", final.measure_id)
            check_finite(violations, f"final_values[{i}].value", final.value)
    violations.raise_if_any()


def _require_known_measures(request: goals_pb2.CopyV2MOMRequest, content: dict) -> None:
    """A final value for a measure the source lacks is a mistake the caller should hear about, not drop."""
    known = {measure["id"] for measure in content.get("measures", [])}
    violations = Violations()
    for i, final in enumerate(request.final_values):
        if final.measure_id not in known:
            violations.add(f"final_values[{i}].measure_id", f"the source has no measure {final.measure_id!r}")
    violations.raise_if_any()


def _choice(request: goals_pb2.CopyV2MOMRequest, shift, parent_methods: dict[str, str]) -> copy_forward.Choice:
    return copy_forward.Choice(
        omit_parts=frozenset(part for flag, part in PART_FLAGS.items() if getattr(request, flag)),
        omit_item_ids=frozenset(request.omit_item_ids),
        include_completed_methods=request.include_completed_methods,
        completed_method_ids=frozenset(request.completed_method_ids),
        final_values={final.measure_id: final.value for final in request.final_values},
        shift=shift,
        parent_methods=parent_methods,
    )


def _shift(source_cycle: dict | None, target_cycle: dict) -> timedelta:
    """How far dates move: from one cycle's first day to the other's (nothing when the source's cycle is gone)."""
    if source_cycle is None:
        return timedelta(0)
    return date.fromisoformat(target_cycle["start_date"]) - date.fromisoformat(source_cycle["start_date"])
