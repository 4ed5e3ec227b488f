"""HRIS events into directory sync: goals-worker's handlers for the ``hris.events`` exchange.

Each event is one directory change, so it applies whole or not at all (one conditional document write), and a
repeated or late one changes nothing (directory_rules.py), so no processed-events record is needed. An event
that can never apply (bad data, an unknown unit, a manager cycle) is dead-lettered with its reason, and the
reason is kept in ``hris_rejected`` (one document per event id, so a redelivery counts once) for HR to see;
goals-api's ``/metrics`` counts them by type (hris_rejected.py, collector.py).
"""

import logging
from datetime import datetime

from google.protobuf.message import Message

from services.platform.core.clock import to_millis, utc_now
from services.platform.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Violations
from services.platform.core.validation import check_date, check_id
from services.platform.worker.consumer import PermanentError, parse_data

from . import directory_rules as rules
from .directory_api import effective_at, person_change, unit_change
from .directory_sync import DirectorySync
from .hris_rejected import HIRED, REJECTED, TERMINATED, UNIT_RETIRED, UNIT_UPSERTED, UPDATED
from v2mom.v1 import directory_pb2

log = logging.getLogger(__name__)

SOURCE = "hris"  # the exchange hris.events; events carry source /v2mom/hris, as every exchange's own source


class HrisEvents:
    def __init__(self, sync: DirectorySync):
        self.sync = sync
        self.rejected = sync.directory.db[REJECTED]

    def apply(self, envelope: dict) -> str:
        """Applies one HRIS event; PermanentError (recorded) when it never can."""
        try:
            return self._apply(envelope)
        except (InvalidArgument, FailedPrecondition, NotFound, AlreadyExists) as error:
            self._reject(envelope, error.message)
            raise PermanentError(f"{envelope.get('type')} {envelope.get('id')}: {error.message}") from None
        except PermanentError as error:
            self._reject(envelope, str(error))
            raise

    def _apply(self, envelope: dict) -> str:
        kind, at = envelope["type"], _event_time(envelope)
        if kind in (HIRED, UPDATED):
            change = _checked(person_change, parse_data(envelope, directory_pb2.PersonChange), at)
            return self.sync.upsert_person(change)[0]
        if kind == UNIT_UPSERTED:
            change = _checked(unit_change, parse_data(envelope, directory_pb2.OrgUnitChange), at)
            return self.sync.upsert_org_unit(change)[0]
        if kind == TERMINATED:
            data = parse_data(envelope, directory_pb2.EmployeeTerminatedData)
            end = self._ref_and_date(data)
            return self.sync.deactivate_person(data.external_id, end, _effective(data, at), keep_if_unknown=True)[0]
        if kind == UNIT_RETIRED:
            data = parse_data(envelope, directory_pb2.OrgUnitRetiredData)
            self._ref_and_date(data)
            return self.sync.retire_org_unit(data.external_id, _effective(data, at))[0]
        raise PermanentError(f"unknown HRIS event type {kind!r}")

    @staticmethod
    def _ref_and_date(data: Message) -> str:
        violations = Violations()
        check_id(violations, "external_id", data.external_id)
        end = check_date(violations, "end_date", data.end_date) if "end_date" in data.DESCRIPTOR.fields_by_name \
            and data.HasField("end_date") else None
        violations.raise_if_any()
        return rules.iso_date(end)

    def _reject(self, envelope: dict, reason: str) -> None:
        log.warning("hris event rejected", extra={"event_id": envelope.get("id"), "type": envelope.get("type"),
                                                  "reason": reason[:300]})
        self.rejected.update_one({"_id": str(envelope.get("id"))},
                                 {"$setOnInsert": {"type": envelope.get("type"), "reason": reason[:1000],
                                                   "at": utc_now()}}, upsert=True)

    def rejected_count(self) -> int:
        return self.rejected.count_documents({})


def _event_time(envelope: dict) -> datetime:
    try:
        return to_millis(datetime.fromisoformat(str(envelope["time"]).replace("Z", "+00:00")))
    except ValueError:
        raise PermanentError(f"time {str(envelope['time'])[:40]!r} is not an RFC 3339 time") from None


def _effective(data: Message, at: datetime) -> datetime:
    """The change's own effective time, else the event's."""
    if not data.HasField("effective_time"):
        return at
    violations = Violations()
    effective = effective_at(violations, "effective_time", data)
    violations.raise_if_any()
    return effective


def _checked(convert_change, message: Message, at: datetime) -> dict:
    violations = Violations()
    change = convert_change(violations, "", message)
    violations.raise_if_any()
    return change if message.HasField("effective_time") else {**change, "effective_at": at}
