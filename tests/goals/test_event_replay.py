"""ReplayEvents end to end through goals-api: a V2MOM created through the API, relayed to goals.events and
logged by the kernel's relay, replayed to an integrator's queue with its original id, and nothing seen twice
by a live consumer. On a broker vhost of the test's own (goals.events there is the test's alone)."""

import json
import time
import uuid
from datetime import timedelta

import grpc
import kombu
import pytest

from services.goals.repository import V2MOMS
from services.platform.bus import event_log
from services.platform.bus.outbox import OutboxRelay
from services.platform.core.clock import to_timestamp, utc_now
from tests.support.cli import Cli
from tests.support.events_probe import EventProbe
from tests.support.goals import ADMIN, INDIVIDUAL, OWNER, build_org, valid_content
from tests.support.grpc_errors import rpc_error
from tests.support.services import Caller, metadata_for
from v2mom.v1 import event_log_pb2, event_log_pb2_grpc, goals_pb2


@pytest.fixture
def broker_uri(isolated_broker_uri):
    return isolated_broker_uri


def test_an_integrator_replays_v2mom_created_from_goals_api(settings, db, goals_api, enroll, tmp_path):
    build_org(db)
    live = EventProbe(settings.amqp_uri, "goals.events", routing_key="v2mom_created")
    created = goals_api(OWNER).CreateV2MOM(goals_pb2.CreateV2MOMRequest(
        level=INDIVIDUAL, owner_id=OWNER, cycle_id="FY2027", content=valid_content(OWNER)))
    # goals-worker's relay, as the kernel runs it: publishes, logs, then clears the outbox.
    relay = OutboxRelay.for_service(db, "goals", [V2MOMS], settings.amqp_uri, retention_days=30)
    try:
        assert relay.relay_until_empty() == 1
    finally:
        relay.close()
    (published,) = live.drain(until_count=1)
    assert published["type"] == "v2mom_created" and published["subject"] == created.id
    assert db[event_log.EVENT_LOG].find_one({"_id": published["id"]})["type"] == "v2mom_created"

    queue = f"integrator-{uuid.uuid4().hex[:8]}"
    with kombu.Connection(settings.amqp_uri) as connection:  # the integrator's queue, bound once
        channel = connection.channel()
        channel.queue_declare(queue, durable=True, auto_delete=False)
        channel.queue_bind(queue, "goals.replay", routing_key=queue)  # the relay declared the exchange

    channel = grpc.insecure_channel(f"127.0.0.1:{goals_api.port}")
    try:
        stub = event_log_pb2_grpc.EventLogServiceStub(channel)
        now = utc_now()
        request = event_log_pb2.ReplayEventsRequest(
            types=["v2mom_created"], start_time=to_timestamp(now - timedelta(hours=1)),
            end_time=to_timestamp(now + timedelta(hours=1)), queue=queue)
        answer = Caller(stub, metadata_for(settings, ADMIN, enroll=enroll)).ReplayEvents(request)
        assert answer.replayed == 1 and answer.exchange == "goals.replay"
        refused = rpc_error(Caller(stub, metadata_for(settings, OWNER, enroll=enroll)).ReplayEvents, request)
        assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        channel.close()

    # The same through the CLI, as an admin at a terminal.
    cli = Cli(f"127.0.0.1:{goals_api.port}", tmp_path)
    cli.ok("login", ADMIN)
    out = cli.ok("events", "replay", "goals", "--type", "v2mom_created", "--since",
                 (now - timedelta(hours=1)).isoformat(), "--queue", queue)
    assert "Replayed 1 goals event (v2mom_created)" in out and "goals.replay" in out
    missing = cli("events", "replay", "goals", "--type", "v2mom_created", "--since", "2026-01-01",
                  "--queue", "nobody-declared-this")
    assert missing.returncode == 1 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr

    with kombu.Connection(settings.amqp_uri) as connection:
        channel = connection.channel()
        replayed = [channel.basic_get(queue, no_ack=True) for _ in range(3)]
        assert replayed[0] is not None and replayed[1] is not None, "nothing reached the integrator's queue"
        for message in replayed[:2]:
            assert json.loads(message.body) == published, "the envelope as it was published, original id and all"
            assert message.properties["message_id"] == published["id"]
        assert replayed[2] is None
        channel.queue_delete(queue)
    assert len(live.settle(quiet_seconds=0.5)) == 1, "the live consumer saw the event once, not again"
    live.close()


def test_goals_worker_logs_what_it_relays(settings, db, goals_api, goals_worker):
    """The real goals-worker process (the kernel's OutboxRelayProvider, EVENT_LOG_RETENTION_DAYS unset: 30 days):
    what it publishes to goals.events is in goals' event log, as it was published."""
    build_org(db)
    live = EventProbe(settings.amqp_uri, "goals.events", routing_key="v2mom_created")
    try:
        created = goals_api(OWNER).CreateV2MOM(goals_pb2.CreateV2MOMRequest(
            level=INDIVIDUAL, owner_id=OWNER, cycle_id="FY2027", content=valid_content(OWNER)))
        (published,) = live.drain(until_count=1, timeout=30)
        assert published["subject"] == created.id
        deadline = time.monotonic() + 10
        while (logged := db[event_log.EVENT_LOG].find_one({"_id": published["id"]})) is None:
            assert time.monotonic() < deadline, "goals-worker published the event but did not log it"
            time.sleep(0.1)
        assert json.loads(logged["body"]) == published and logged["type"] == "v2mom_created"
        assert {index["name"] for index in db[event_log.EVENT_LOG].list_indexes()} >= {
            event_log.BY_TYPE_AND_TIME, event_log.BY_PUBLISHED}
    finally:
        live.close()
