"""ListOrphans: what waits on someone who can no longer act, and the V2MOMs of retired org units.

Read from the V2MOMs' owner, approver and unit indexes, for the people the directory lists as inactive (its
``people_by_active`` index) and the retired units: the directory is small next to the V2MOMs, and a leaver
has few.
"""

from __future__ import annotations

from services.platform.api.auth import Caller
from services.platform.core.errors import PermissionDenied, Violations
from services.platform.core.paging import bad_token, decode_token, encode_token
from services.platform.store.mongo import find_in

from .approver_changes import successor_of
from .directory import Directory
from .lifecycle import ARCHIVED, SUBMITTED
from .repository import V2MOMS
from v2mom.v1 import directory_pb2

DEFAULT_PAGE, MAX_PAGE = 100, 1000
Orphan = directory_pb2.Orphan


LIST = "ListOrphans"
KINDS = (Orphan.KIND_OWNER_GONE, Orphan.KIND_APPROVER_GONE, Orphan.KIND_UNIT_RETIRED)


class Orphans:
    """One ordered list, paged with the kernel's tokens: by kind, then the gone person (or retired unit), then
    the V2MOM id; a token holds the last (kind, person or unit, V2MOM id) shown."""

    def __init__(self, directory: Directory):
        self.directory = directory
        self.v2moms = directory.db[V2MOMS]

    def list(self, caller: Caller, request: directory_pb2.ListOrphansRequest) -> directory_pb2.ListOrphansResponse:
        require_directory_writer(caller)
        limit = _page_size(request.page_size)
        position = _position(request.page_token)
        gone = [person["_id"] for person in self.directory.inactive_people(MAX_PAGE * 10)]
        found: list[Orphan] = []
        for kind in KINDS:
            if position and kind < position[0]:
                continue
            after = position[1:] if position and kind == position[0] else None
            found += self._of_kind(kind, gone, after, limit + 1 - len(found))
            if len(found) > limit:
                break
        page = found[:limit]
        token = encode_token(LIST, {}, _position_of(page[-1])) if len(found) > limit else ""
        return directory_pb2.ListOrphansResponse(orphans=page, truncated=bool(token), next_page_token=token)

    def _of_kind(self, kind: int, gone: list[str], after: list | None, limit: int) -> list[Orphan]:
        if kind == Orphan.KIND_OWNER_GONE:
            rows = self._rows("owner_id", gone, {"state": {"$ne": ARCHIVED}}, "by_owner", after, limit)
            return [Orphan(kind=kind, v2mom_id=row["_id"], person_id=row["owner_id"],
                           org_unit_id=row.get("org_unit_id") or "", successor_id=self._successor(row["owner_id"]))
                    for row in rows]
        if kind == Orphan.KIND_APPROVER_GONE:
            rows = self._rows("approver_id", gone, {"state": SUBMITTED}, "by_approver", after, limit)
            return [Orphan(kind=kind, v2mom_id=row["_id"], person_id=row["approver_id"],
                           org_unit_id=row.get("org_unit_id") or "", successor_id=self._successor(row["approver_id"]))
                    for row in rows]
        units = [unit["_id"] for unit in self.directory.retired_units(MAX_PAGE)]
        rows = self._rows("org_unit_id", units, {"state": {"$ne": ARCHIVED}}, "by_org_unit", after, limit)
        return [Orphan(kind=kind, v2mom_id=row["_id"], org_unit_id=row["org_unit_id"]) for row in rows]

    def _rows(self, field: str, keys: list[str], query: dict, index: str, after: list | None, limit: int) -> list[dict]:
        """Up to ``limit`` V2MOMs whose ``field`` is one of ``keys``, by (field, _id), after ``after``."""
        projection = {"_id": 1, "owner_id": 1, "approver_id": 1, "org_unit_id": 1}
        rows: list[dict] = []
        if after:
            last_key, last_id = after
            if last_key in keys:
                rows = find_in(self.v2moms, field, [last_key], {**query, "_id": {"$gt": last_id}}, projection,
                               sort=(field, "_id"), limit=limit, index=index)
            keys = [key for key in keys if key > last_key]
        if len(rows) < limit:
            rows += find_in(self.v2moms, field, keys, query, projection, sort=(field, "_id"), limit=limit - len(rows),
                            index=index)
        return rows

    def _successor(self, person_id: str) -> str:
        return successor_of(self.directory, person_id)


def _position_of(orphan: Orphan) -> list:
    key = orphan.org_unit_id if orphan.kind == Orphan.KIND_UNIT_RETIRED else orphan.person_id
    return [orphan.kind, key, orphan.v2mom_id]


def _position(token: str) -> list | None:
    position = decode_token(token, LIST, {}, list)
    if position is None:
        return None
    if not (len(position) == 3 and position[0] in KINDS and all(isinstance(part, str) for part in position[1:])):
        raise bad_token()
    return position


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
