"""Who owns a new V2MOM, where it sits, and which slot it takes.

An individual V2MOM belongs to a person and sits in their org unit; only they
(or an admin) create it. A company, department or team V2MOM belongs to its
unit and is owned by the unit's leader, who (or an admin) creates it. Each
owner or unit has one live V2MOM per level and cycle: its slot. Archiving
frees the slot. Pure rules: the directory is passed in.
"""

from dataclasses import dataclass

from services.platform.api.auth import Caller
from services.platform.core.errors import FailedPrecondition, FieldViolation, InvalidArgument, PermissionDenied

from v2mom.v1 import common_pb2, goals_pb2


@dataclass(frozen=True)
class Placement:
    owner_id: str
    org_unit_id: str
    level: str  # ORG_LEVEL_* name, as stored
    slot_holder: str  # the person (individual) or unit whose slot the V2MOM takes

    def slot(self, cycle_id: str) -> str:
        return f"{cycle_id}/{self.level}/{self.slot_holder}"

    def slot_taken_message(self, cycle_id: str) -> str:
        noun = self.level.removeprefix("ORG_LEVEL_").lower()
        return f"{self.slot_holder} already has a {noun} V2MOM in {cycle_id}; edit it, or archive it first"


def level_name(level: int) -> str:
    return common_pb2.OrgLevel.Name(level)


def place(caller: Caller, request: goals_pb2.CreateV2MOMRequest, directory) -> Placement:
    """Where the requested V2MOM goes; INVALID_ARGUMENT, PERMISSION_DENIED or FAILED_PRECONDITION if nowhere."""
    if request.level == common_pb2.ORG_LEVEL_INDIVIDUAL:
        return _place_individual(caller, request, directory)
    return _place_unit(caller, request, directory)


def _place_individual(caller: Caller, request, directory) -> Placement:
    owner_id = request.owner_id or caller.person_id
    owner = directory.person(owner_id)
    if owner is None:
        raise InvalidArgument([FieldViolation("owner_id", f"unknown person {owner_id!r}")])
    if owner_id != caller.person_id and not caller.is_admin:
        raise PermissionDenied("only admins may create a V2MOM for someone else")
    if request.org_unit_id and request.org_unit_id != owner["org_unit_id"]:
        # Silently filing it elsewhere would surprise the client more than a refusal.
        raise InvalidArgument(
            [FieldViolation("org_unit_id", f"an individual V2MOM sits in its owner's org unit ({owner['org_unit_id']})")]
        )
    if not owner.get("active", True):
        raise FailedPrecondition(f"{owner_id!r} has left; nobody can create a V2MOM for them")
    _refuse_retired(directory.org_unit(owner["org_unit_id"]))
    return Placement(owner_id, owner["org_unit_id"], level_name(request.level), owner_id)


def _refuse_retired(unit: dict | None) -> None:
    # A retired unit keeps its V2MOMs (ListOrphans shows them) but takes no new ones.
    if unit is not None and unit.get("retired"):
        raise FailedPrecondition(f"org unit {unit['_id']!r} is retired; no new V2MOM can be created in it")


def _place_unit(caller: Caller, request, directory) -> Placement:
    if not request.org_unit_id:
        raise InvalidArgument([FieldViolation("org_unit_id", "is required for a company, department or team V2MOM")])
    unit = directory.org_unit(request.org_unit_id)
    if unit is None:
        raise InvalidArgument([FieldViolation("org_unit_id", f"unknown org unit {request.org_unit_id!r}")])
    level = level_name(request.level)
    if unit["level"] != level:
        raise InvalidArgument([FieldViolation("level", f"org unit {unit['_id']!r} is a {unit['level']}, not a {level}")])
    _refuse_retired(unit)
    if not unit.get("leader_id"):
        raise FailedPrecondition(f"org unit {unit['_id']!r} has no leader to own its V2MOM")
    if request.owner_id and request.owner_id != unit["leader_id"]:
        raise InvalidArgument([FieldViolation("owner_id", "a unit's V2MOM is owned by the unit's leader")])
    if caller.person_id != unit["leader_id"] and not caller.is_admin:
        raise PermissionDenied(f"only the leader of {unit['_id']!r} or an admin may create its V2MOM")
    return Placement(unit["leader_id"], unit["_id"], level, unit["_id"])
