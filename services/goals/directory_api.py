"""v2mom.v1.DirectoryService on goals-api: requests to directory changes and back (the use cases are
directory_sync.py, directory_import.py and orphans.py)."""

from google.protobuf.message import Message

from services.platform.api.auth import Caller, current_caller
from services.platform.core.clock import from_date_proto, from_timestamp, utc_now
from services.platform.core.errors import FieldViolation, InvalidArgument, Violations
from services.platform.core.validation import check_date, check_id

from . import convert, directory_rules as rules
from .directory import Directory
from .directory_import import DirectoryImport
from .directory_sync import DirectorySync
from .orphans import Orphans, require_directory_writer
from .repository import V2MOMRepository
from .transfers import Transfers
from v2mom.v1 import common_pb2, directory_pb2, directory_pb2_grpc

MAX_IMPORT_ROWS = 20_000  # ~4 MB of requests; a bigger HRIS export is sent in parts
STATUSES = {0: rules.ACTIVE, 1: rules.ACTIVE, 2: rules.ON_LEAVE, 3: rules.TERMINATED}


class DirectoryServicer(directory_pb2_grpc.DirectoryServiceServicer):
    def __init__(self, directory: Directory):
        self.sync = DirectorySync(directory)
        self.importer = DirectoryImport(self.sync)
        self.orphans = Orphans(directory)
        self.transfers = Transfers(V2MOMRepository(directory.db), directory)

    def UpsertPerson(self, request, context):
        caller = _writer()
        change = _checked(person_change, request.person, "person.")
        if self._terminates_caller(caller, change):
            raise InvalidArgument([FieldViolation("person.employment_status", "you cannot terminate yourself")])
        return _result(*self.sync.upsert_person(change))

    def DeactivatePerson(self, request, context):
        caller = _writer()
        violations = Violations()
        check_id(violations, "ref", request.ref)
        end = check_date(violations, "end_date", request.end_date) if request.HasField("end_date") else None
        at = effective_at(violations, "effective_time", request)
        violations.raise_if_any()
        if caller.person_id in (request.ref,) or _is_self(self.sync.directory, caller, request.ref):
            raise InvalidArgument([FieldViolation("ref", "you cannot deactivate yourself")])
        return _result(*self.sync.deactivate_person(request.ref, rules.iso_date(end), at))

    def UpsertOrgUnit(self, request, context):
        _writer()
        change = _checked(unit_change, request.org_unit, "org_unit.")
        return _result(*self.sync.upsert_org_unit(change))

    def RetireOrgUnit(self, request, context):
        _writer()
        violations = Violations()
        check_id(violations, "ref", request.ref)
        at = effective_at(violations, "effective_time", request)
        violations.raise_if_any()
        return _result(*self.sync.retire_org_unit(request.ref, at))

    def ImportDirectory(self, request, context):
        caller = _writer()
        if len(request.org_units) + len(request.people) > MAX_IMPORT_ROWS:
            raise InvalidArgument([FieldViolation("people", f"at most {MAX_IMPORT_ROWS} rows per import")])
        refused: list[dict] = []
        units = _rows("org_unit", request.org_units, unit_change, refused)
        people = _rows("person", request.people, person_change, refused)
        # The importer refuses a row terminating the caller (as UpsertPerson does), from the records it reads anyway.
        diff = self.importer.run(units, people, request.dry_run, request.allow_mass_deactivation, refused,
                                 caller_id=caller.person_id)
        return directory_pb2.ImportDirectoryResponse(
            created=[directory_pb2.ImportRow(**row) for row in diff.created],
            changed=[directory_pb2.ImportRow(**row) for row in diff.changed],
            deactivated=[directory_pb2.ImportRow(**row) for row in diff.deactivated],
            moved=[directory_pb2.ImportRow(**row) for row in diff.moved],
            unchanged=diff.unchanged,
            refused=[directory_pb2.RefusedRow(**row) for row in diff.refused],
            applied=diff.applied,
        )

    def ListOrphans(self, request, context):
        return self.orphans.list(current_caller(), request)

    def TransferV2MOM(self, request, context):
        # Not _writer(): a leaver's former manager may take over their V2MOMs too (transfers.py checks).
        return self.transfers.transfer(current_caller(), request)


    def _terminates_caller(self, caller: Caller, change: dict) -> bool:
        """Whether a change would lock its own author out (HR or the only admin, by a slip of a file)."""
        if change["fields"].get("employment_status") != rules.TERMINATED:
            return False
        person = self.sync.directory.person_by_ref(change["external_id"])
        person = person or self.sync.directory.person_by_ref(change.get("id") or change["external_id"])
        return person is not None and person["_id"] == caller.person_id


def _writer() -> Caller:
    caller = current_caller()
    require_directory_writer(caller)
    return caller


def _is_self(directory: Directory, caller: Caller, ref: str) -> bool:
    person = directory.person_by_ref(ref)
    return person is not None and person["_id"] == caller.person_id


def person_change(violations: Violations, prefix: str, person: directory_pb2.PersonChange) -> dict:
    """A PersonChange as directory_sync takes it; every rule is checked into ``violations``."""
    if person.employment_status not in STATUSES:
        violations.add(f"{prefix}employment_status", f"unknown value {person.employment_status}")
    dates = {name: check_date(violations, f"{prefix}{name}", getattr(person, name))
             if person.HasField(name) else None for name in ("start_date", "end_date")}
    change = {
        "kind": "person", "external_id": person.external_id, "id": person.id,
        "fields": {"display_name": person.display_name, "email": person.email, "title": person.title,
                   "manager_ref": person.manager_ref, "org_unit_ref": person.org_unit_ref,
                   "time_zone": person.time_zone, "locale": person.locale,
                   "employment_status": STATUSES.get(person.employment_status, rules.ACTIVE),
                   "start_date": rules.iso_date(dates["start_date"]), "end_date": rules.iso_date(dates["end_date"])},
        "effective_at": effective_at(violations, f"{prefix}effective_time", person),
    }
    rules.check_person(violations, prefix, change)
    return change


def unit_change(violations: Violations, prefix: str, unit: directory_pb2.OrgUnitChange) -> dict:
    level = common_pb2.OrgLevel.Name(unit.level) if unit.level in common_pb2.OrgLevel.values() else ""
    change = {
        "kind": "unit", "external_id": unit.external_id, "id": unit.id,
        "fields": {"name": unit.name, "level": level, "parent_ref": unit.parent_ref, "leader_ref": unit.leader_ref},
        "effective_at": effective_at(violations, f"{prefix}effective_time", unit),
    }
    rules.check_unit(violations, prefix, change)
    return change


def effective_at(violations: Violations, field: str, message: Message):
    if not message.HasField("effective_time"):
        return utc_now()
    stamp = message.effective_time
    if not (0 <= stamp.seconds < 253402300800 and 0 <= stamp.nanos < 1_000_000_000):  # years 1970..9999
        violations.add(field, "must be a time between 1970 and 9999")
        return utc_now()
    return from_timestamp(stamp)


def _checked(convert_change, message, prefix: str) -> dict:
    violations = Violations()
    change = convert_change(violations, prefix, message)
    violations.raise_if_any()
    return change


def _rows(kind: str, messages, convert_change, refused: list[dict]) -> list[dict]:
    """The well-formed rows; each malformed one joins ``refused`` with its reasons."""
    rows = []
    for index, message in enumerate(messages):
        violations = Violations()
        change = convert_change(violations, "", message)
        if violations:
            reason = "; ".join(f"{v.field}: {v.description}" for v in violations.items)
            refused.append({"kind": kind, "index": index, "external_id": message.external_id, "reason": reason})
        else:
            rows.append(change)
    return rows


def _result(outcome: str, record: dict | None) -> directory_pb2.DirectoryChangeResult:
    result = directory_pb2.DirectoryChangeResult(outcome=directory_pb2.ChangeOutcome.Value(f"CHANGE_OUTCOME_{outcome}"))
    if record is not None and "display_name" in record:
        result.person.CopyFrom(convert.person_to_proto(record))
    elif record is not None:
        result.org_unit.CopyFrom(convert.org_unit_to_proto(record))
    return result
