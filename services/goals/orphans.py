"""ListOrphans: what waits on someone who can no longer act, and the V2MOMs of retired org units.

Read from the V2MOMs' owner, approver and unit indexes, for the people the directory lists as inactive (its
``people_by_active`` index) and the retired units: the directory is small next to the V2MOMs, and a leaver
has few.
"""

from services.platform.api.auth import Caller
from services.platform.core.errors import PermissionDenied, Violations
from services.platform.store.mongo import find_in

from .approver_changes import successor_of
from .directory import Directory
from .lifecycle import ARCHIVED, SUBMITTED
from .repository import V2MOMS
from v2mom.v1 import directory_pb2

DEFAULT_PAGE, MAX_PAGE = 100, 1000
Orphan = directory_pb2.Orphan


class Orphans:
    def __init__(self, directory: Directory):
        self.directory = directory
        self.v2moms = directory.db[V2MOMS]

    def list(self, caller: Caller, request: directory_pb2.ListOrphansRequest) -> directory_pb2.ListOrphansResponse:
        require_directory_writer(caller)
        limit = _page_size(request.page_size)
        gone = {person["_id"]: person for person in self.directory.inactive_people(MAX_PAGE * 10)}
        found = self._gone_owners(gone, limit) + self._gone_approvers(gone, limit) + self._retired_units(limit)
        return directory_pb2.ListOrphansResponse(orphans=found[:limit], truncated=len(found) > limit)

    def _gone_owners(self, gone: dict, limit: int) -> list:
        rows = find_in(self.v2moms, "owner_id", list(gone), {"state": {"$ne": ARCHIVED}},
                       {"_id": 1, "owner_id": 1, "org_unit_id": 1}, sort=("owner_id", "_id"), limit=limit + 1,
                       index="by_owner")
        return [Orphan(kind=Orphan.KIND_OWNER_GONE, v2mom_id=row["_id"], person_id=row["owner_id"],
                       org_unit_id=row.get("org_unit_id") or "", successor_id=self._successor(row["owner_id"]))
                for row in rows]

    def _gone_approvers(self, gone: dict, limit: int) -> list:
        rows = find_in(self.v2moms, "approver_id", list(gone), {"state": SUBMITTED},
                       {"_id": 1, "approver_id": 1, "org_unit_id": 1}, sort=("approver_id", "_id"), limit=limit + 1,
                       index="by_approver")
        return [Orphan(kind=Orphan.KIND_APPROVER_GONE, v2mom_id=row["_id"], person_id=row["approver_id"],
                       org_unit_id=row.get("org_unit_id") or "", successor_id=self._successor(row["approver_id"]))
                for row in rows]

    def _retired_units(self, limit: int) -> list:
        units = [unit["_id"] for unit in self.directory.retired_units(MAX_PAGE)]
        rows = find_in(self.v2moms, "org_unit_id", units, {"state": {"$ne": ARCHIVED}},
                       {"_id": 1, "org_unit_id": 1}, sort=("org_unit_id", "_id"), limit=limit + 1,
                       index="by_org_unit")
        return [Orphan(kind=Orphan.KIND_UNIT_RETIRED, v2mom_id=row["_id"], org_unit_id=row["org_unit_id"])
                for row in rows]

    def _successor(self, person_id: str) -> str:
        return successor_of(self.directory, person_id)


def require_directory_writer(caller: Caller) -> None:
    """The directory's write side (and what it reveals about leavers) is HR's and admins'."""
    if not (caller.has_role("hr") or caller.is_admin):
        raise PermissionDenied("only people with the role hr or admin may use the DirectoryService")


def _page_size(requested: int) -> int:
    if requested < 0:
        violations = Violations()
        violations.add("page_size", "must not be negative")
        violations.raise_if_any()
    return min(requested or DEFAULT_PAGE, MAX_PAGE)
