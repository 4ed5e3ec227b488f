"""Directory changes as an HRIS states them, for DirectoryService's tests (services/goals/directory_sync.py)."""

from datetime import datetime

from google.protobuf import timestamp_pb2

from services.platform.api.auth import bearer_metadata, mint_dev_token
from v2mom.v1 import directory_pb2, directory_pb2_grpc


def stamp(moment: datetime) -> timestamp_pb2.Timestamp:
    result = timestamp_pb2.Timestamp()
    result.FromDatetime(moment)
    return result


def hire(external_id: str, manager: str = "", unit: str = "platform", at: datetime | None = None, **fields):
    """A PersonChange with sensible defaults; ``fields`` override or add PersonChange fields."""
    person = directory_pb2.PersonChange(
        external_id=external_id, id=fields.pop("id", f"p-{external_id}"),
        display_name=fields.pop("display_name", f"Person {external_id}"),
        email=fields.pop("email", f"{external_id}@acme.test"), manager_ref=manager, org_unit_ref=unit,
        time_zone=fields.pop("time_zone", "Europe/Berlin"), **fields)
    if at is not None:
        person.effective_time.CopyFrom(stamp(at))
    return person


def directory_caller(goals, person_id: str, timeout: float):
    """``call(rpc, request)`` on the DirectoryService of a served goals-api (``goals``: its channel and settings),
    as ``person_id``."""
    stub = directory_pb2_grpc.DirectoryServiceStub(goals.channel)
    metadata = bearer_metadata(mint_dev_token(goals.settings.auth, person_id))
    return lambda rpc, request: getattr(stub, rpc)(request, metadata=metadata, timeout=timeout)
