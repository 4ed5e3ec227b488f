"""checkins-api serves ReplayEvents for check-ins' own events (services/platform/api/event_log.py; the replay
itself is tested in tests/platform/test_event_log.py and, end to end, in tests/goals/test_event_replay.py)."""

import uuid
from datetime import UTC, datetime, timedelta

import grpc

from services.platform.core.clock import to_timestamp
from tests.support.grpc_errors import assert_clean, rpc_error, violated_fields
from tests.support.services import Caller, metadata_for
from v2mom.v1 import event_log_pb2, event_log_pb2_grpc


def test_checkins_api_replays_check_ins_events_and_only_those(checkins_api, checkins_settings, enroll):
    now = datetime.now(UTC)
    request = event_log_pb2.ReplayEventsRequest(
        types=["checkin_recorded", "progress_changed"], start_time=to_timestamp(now - timedelta(days=1)),
        end_time=to_timestamp(now), queue=f"nobody-declared-{uuid.uuid4().hex[:8]}")
    with grpc.insecure_channel(f"127.0.0.1:{checkins_api.port}") as channel:
        stub = event_log_pb2_grpc.EventLogServiceStub(channel)
        admin = Caller(stub, metadata_for(checkins_settings, "ada", ("admin",), enroll))
        missing = rpc_error(admin.ReplayEvents, request)
        assert missing.code() == grpc.StatusCode.NOT_FOUND and "checkins.replay" in missing.details()
        assert_clean(missing)
        goals_type = rpc_error(admin.ReplayEvents, event_log_pb2.ReplayEventsRequest(
            types=["v2mom_created"], start_time=request.start_time, end_time=request.end_time, queue=request.queue))
        assert goals_type.code() == grpc.StatusCode.INVALID_ARGUMENT and violated_fields(goals_type) == {"types[0]"}
        member = Caller(stub, metadata_for(checkins_settings, "olive", (), enroll))
        assert rpc_error(member.ReplayEvents, request).code() == grpc.StatusCode.PERMISSION_DENIED
