"""Use cases reading the org directory: GetPerson, ListPeople, GetOrgUnit, ListOrgUnits, ListCycles.

Everything here is readable by every authenticated caller.
"""

from services.platform.api.auth import Caller
from services.platform.core import paging
from services.platform.core.errors import NotFound, Violations
from services.platform.core.validation import check_id

from . import convert, validation
from .directory import Directory
from v2mom.v1 import common_pb2, goals_pb2


class DirectoryReads:
    def __init__(self, directory: Directory):
        self.directory = directory

    def get_person(self, caller: Caller, request: goals_pb2.GetPersonRequest) -> common_pb2.Person:
        validation.require_id("id", request.id)
        person = self.directory.person(request.id)
        if person is None:
            raise NotFound(f"person {request.id!r} not found")
        return convert.person_to_proto(person)

    def list_people(self, caller: Caller, request: goals_pb2.ListPeopleRequest) -> goals_pb2.ListPeopleResponse:
        violations = Violations()
        check_id(violations, "org_unit_id", request.org_unit_id, required=False)
        check_id(violations, "manager_id", request.manager_id, required=False)
        limit = paging.page_size(violations, request.page_size)
        violations.raise_if_any()
        filters = {"org_unit_id": request.org_unit_id, "manager_id": request.manager_id}
        after = paging.decode_token(request.page_token, "ListPeople", filters, str)
        rows = self.directory.list_people(request.org_unit_id, request.manager_id, after, limit + 1)
        return goals_pb2.ListPeopleResponse(
            people=[convert.person_to_proto(p) for p in rows[:limit]],
            next_page_token=paging.next_token("ListPeople", filters, rows, limit, _id),
        )

    def get_org_unit(self, caller: Caller, request: goals_pb2.GetOrgUnitRequest) -> common_pb2.OrgUnit:
        validation.require_id("id", request.id)
        unit = self.directory.org_unit(request.id)
        if unit is None:
            raise NotFound(f"org unit {request.id!r} not found")
        return convert.org_unit_to_proto(unit)

    def list_org_units(self, caller: Caller, request: goals_pb2.ListOrgUnitsRequest) -> goals_pb2.ListOrgUnitsResponse:
        violations = Violations()
        check_id(violations, "parent_id", request.parent_id, required=False)
        limit = paging.page_size(violations, request.page_size)
        violations.raise_if_any()
        filters = {"parent_id": request.parent_id}
        after = paging.decode_token(request.page_token, "ListOrgUnits", filters, str)
        rows = self.directory.list_org_units(request.parent_id, after, limit + 1)
        return goals_pb2.ListOrgUnitsResponse(
            org_units=[convert.org_unit_to_proto(u) for u in rows[:limit]],
            next_page_token=paging.next_token("ListOrgUnits", filters, rows, limit, _id),
        )

    def list_cycles(self, caller: Caller, request: goals_pb2.ListCyclesRequest) -> goals_pb2.ListCyclesResponse:
        return goals_pb2.ListCyclesResponse(cycles=[convert.cycle_to_proto(c) for c in self.directory.list_cycles()])


def _id(row: dict) -> str:
    return row["_id"]
