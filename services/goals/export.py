"""Use case ExportV2MOMs: every V2MOM of an org unit's subtree in a cycle that the caller may see, streamed.

The V2MOMs are gathered first (one indexed query per level of units, then per chunk of units), so each
message can say how many the export holds; what is streamed is what GetV2MOM would show the caller. Progress
and the latest check-ins come from goals' own projection of checkins' events (checkin_projection.py, read in
one query per collection and chunk of V2MOMs): goals never calls checkins-api (checkins calls goals, and a call
back would tie the two services' availability together).
"""

from collections.abc import Iterator

from services.platform.api.auth import Caller
from services.platform.core.errors import NotFound, Violations
from services.platform.core.validation import check_id

from services.platform.core.clock import to_timestamp

from . import convert
from .checkin_projection import CheckinProjection
from .access import Access
from .directory import Directory
from .lifecycle import ARCHIVED
from .repository import V2MOMRepository
from .views import render_for
from v2mom.v1 import checkins_pb2, goals_pb2

UNIT_PAGE = 200


class Export:
    def __init__(self, repository: V2MOMRepository, directory: Directory, access: Access,
                 checkins: CheckinProjection):
        self.repository = repository
        self.checkins = checkins
        self.directory = directory
        self.access = access

    def export(self, caller: Caller, request: goals_pb2.ExportV2MOMsRequest) -> Iterator[goals_pb2.ExportedV2MOM]:
        violations = Violations()
        check_id(violations, "org_unit_id", request.org_unit_id)
        check_id(violations, "cycle_id", request.cycle_id)
        violations.raise_if_any()
        if self.directory.org_unit(request.org_unit_id) is None:
            raise NotFound(f"org unit {request.org_unit_id!r} not found")
        if self.directory.cycle(request.cycle_id) is None:
            raise NotFound(f"cycle {request.cycle_id!r} not found")
        units = self._subtree(request.org_unit_id)
        docs = [doc for doc in self.repository.in_units(list(units), request.cycle_id)
                if (request.include_archived or doc["state"] != ARCHIVED) and self.access.may_see(caller, doc)]
        checked = self.checkins.read([doc["_id"] for doc in docs])
        for index, doc in enumerate(docs, 1):
            message = self._exported(caller, doc, units, index, len(docs))
            add_checkins(message, checked[doc["_id"]])
            yield message

    def _subtree(self, unit_id: str) -> dict[str, dict]:
        """The unit and every unit below it, by id (units_by_parent, a page at a time)."""
        units = {unit_id: self.directory.org_unit(unit_id)}
        frontier = [unit_id]
        while frontier:
            parent = frontier.pop()
            after = None
            while page := self.directory.list_org_units(parent, after, UNIT_PAGE):
                for unit in page:
                    if unit["_id"] not in units:  # a loop in the directory must not loop here
                        units[unit["_id"]] = unit
                        frontier.append(unit["_id"])
                after = page[-1]["_id"]
                if len(page) < UNIT_PAGE:
                    break
        return units

    def _exported(self, caller: Caller, doc: dict, units: dict[str, dict], index: int,
                  total: int) -> goals_pb2.ExportedV2MOM:
        owner = self.directory.person(doc["owner_id"])
        message = goals_pb2.ExportedV2MOM(
            v2mom=render_for(self.access, caller, doc), org_unit_name=(units.get(doc["org_unit_id"]) or {}).get("name", ""),
            index=index, total=total)
        if owner is not None:
            message.owner.CopyFrom(convert.person_to_proto(owner))
        return message


def add_checkins(message: goals_pb2.ExportedV2MOM, checked: dict) -> None:
    """The V2MOM's progress, each item's latest check-in and the latest of them all, as projected."""
    if checked["progress"] is not None:
        progress = checked["progress"]
        message.progress.CopyFrom(goals_pb2.ExportedProgress(
            progress_percent=progress["progress_percent"], tree_progress_percent=progress["tree_progress_percent"],
            off_track_measures=progress["off_track_measures"], measures=progress["measures"],
            revision=progress["revision"]))
    items = checked["items"]
    message.item_checkins.extend(_checkin(item["checkin"]) for item in items)
    if items:
        message.latest_checkin.CopyFrom(_checkin(max(items, key=lambda item: item["order"])["checkin"]))


def _checkin(stored: dict) -> goals_pb2.ExportedCheckin:
    return goals_pb2.ExportedCheckin(
        checkin_id=stored["id"], item_kind=checkins_pb2.ItemKind.Value(stored["item_kind"]), item_id=stored["item_id"],
        author_id=stored["author_id"], value=stored.get("value"), progress_percent=stored["progress_percent"],
        status=checkins_pb2.CheckinStatus.Value(stored["status"]), confidence=stored.get("confidence"),
        comment=stored["comment"], observe_time=to_timestamp(stored["observe_time"]),
        record_time=to_timestamp(stored["record_time"]))
