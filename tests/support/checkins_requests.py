"""Shared by the check-ins API tests: request builders, the check-ins store read directly, a probe that a
refused call wrote nothing (the error probes themselves are in tests.support.grpc_errors)."""

from datetime import UTC, datetime, timedelta

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from services.platform.bus.events import to_wire
from tests.support.grpc_errors import expect
from v2mom.v1 import checkins_pb2


Code = grpc.StatusCode
ON_TRACK = checkins_pb2.CHECKIN_STATUS_ON_TRACK
AT_RISK = checkins_pb2.CHECKIN_STATUS_AT_RISK
OFF_TRACK = checkins_pb2.CHECKIN_STATUS_OFF_TRACK
ADMIN = ("admin",)


def measure_request(v2mom_id: str, measure_id: str = "msr-nps", value: float = 40.0, status=ON_TRACK, confidence=7,
                    **extra) -> checkins_pb2.RecordMeasureCheckinRequest:
    request = checkins_pb2.RecordMeasureCheckinRequest(v2mom_id=v2mom_id, measure_id=measure_id, value=value,
                                                       status=status, **extra)
    if confidence is not None:
        request.confidence = confidence
    return request


def method_request(v2mom_id: str, method_id: str = "mth-guide", progress: float = 30.0, status=ON_TRACK,
                   **extra) -> checkins_pb2.RecordMethodCheckinRequest:
    return checkins_pb2.RecordMethodCheckinRequest(v2mom_id=v2mom_id, method_id=method_id, progress_percent=progress,
                                                   status=status, **extra)


def correct_request(checkin_id: str, reason: str = "typed the wrong number", **fields) -> checkins_pb2.CorrectCheckinRequest:
    return checkins_pb2.CorrectCheckinRequest(checkin_id=checkin_id, reason=reason, **fields)


def stamp(moment: datetime) -> Timestamp:
    message = Timestamp()
    message.FromDatetime(moment)
    return message


def days_ago(days: float) -> datetime:
    moment = datetime.now(UTC) - timedelta(days=days)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


class Store:
    """The check-ins database as a test inspects it."""

    def __init__(self, db):
        self.db = db

    def checkins(self, **query) -> list[dict]:
        return list(self.db.checkins.find(query))

    def count(self, **query) -> int:
        return self.db.checkins.count_documents(query)

    def checkin(self, checkin_id: str) -> dict:
        return self.db.checkins.find_one({"_id": checkin_id})

    def events(self) -> list[dict]:
        """Every pending outbox event of every check-in, as consumers will receive it."""
        return [to_wire(event) for doc in self.db.checkins.find({}) for event in doc.get("outbox", [])]

    def event_of(self, checkin_id: str) -> dict:
        (event,) = self.checkin(checkin_id)["outbox"]
        return to_wire(event)

    def structure(self, v2mom_id: str) -> dict | None:
        return self.db.structures.find_one({"_id": v2mom_id})

    def snapshot(self) -> dict:
        """Everything a refused call must leave as it was."""
        return {
            "checkins": {doc["_id"]: doc for doc in self.db.checkins.find({})},
            "cycle_settings": {doc["_id"]: doc for doc in self.db.cycle_settings.find({})},
        }


def expect_nothing_written(store: Store, call, request, code: grpc.StatusCode, *fields: str) -> grpc.RpcError:
    """The call fails with `code` cleanly (naming `fields`), and no check-in, link, event or setting changed."""
    before = store.snapshot()
    error = expect(call, request, code, *fields)
    assert store.snapshot() == before, "a refused call changed the store"
    return error
