"""What every service's ReplayEvents must hold, whichever API serves it: its own event types only, a missing
queue named with the service's replay exchange, admins only (services/platform/api/event_log.py)."""

import uuid
from datetime import UTC, datetime, timedelta

import grpc

from services.platform.core.clock import to_timestamp
from tests.support.grpc_errors import assert_clean, rpc_error, violated_fields
from tests.support.services import Caller, metadata_for
from v2mom.v1 import event_log_pb2, event_log_pb2_grpc


def check_replay_is_the_services_own(port: int, settings, enroll, service: str, own_types: list[str],
                                     foreign_type: str) -> None:
    now = datetime.now(UTC)
    request = event_log_pb2.ReplayEventsRequest(
        types=own_types, start_time=to_timestamp(now - timedelta(days=1)), end_time=to_timestamp(now),
        queue=f"nobody-declared-{uuid.uuid4().hex[:8]}")
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = event_log_pb2_grpc.EventLogServiceStub(channel)
        admin = Caller(stub, metadata_for(settings, "ada", ("admin",), enroll))
        missing = rpc_error(admin.ReplayEvents, request)
        assert missing.code() == grpc.StatusCode.NOT_FOUND and f"{service}.replay" in missing.details()
        assert_clean(missing)
        other = rpc_error(admin.ReplayEvents, event_log_pb2.ReplayEventsRequest(
            types=[foreign_type], start_time=request.start_time, end_time=request.end_time, queue=request.queue))
        assert other.code() == grpc.StatusCode.INVALID_ARGUMENT and violated_fields(other) == {"types[0]"}
        member = Caller(stub, metadata_for(settings, "olive", (), enroll))
        assert rpc_error(member.ReplayEvents, request).code() == grpc.StatusCode.PERMISSION_DENIED
