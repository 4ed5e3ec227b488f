"""The event log (services/platform/bus/event_log.py) and ReplayEvents (services/platform/api/event_log.py)
against the real broker and the wire store, through a real gRPC client.

Each test has a service name of its own (``replaytest<hex>``), so its exchanges, ``<service>.events`` and
``<service>.replay``, and its queues are its own on the machine's broker; all are deleted afterwards.
"""

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
import kombu
import pymongo
import pytest
from pymongo.errors import PyMongoError

from services.platform.api.auth import Authenticator, PersonRecord, bearer_metadata, mint_dev_token
from services.platform.api.event_log import EventLogServicer, EventReplay
from services.platform.api.server import ServiceBinding, create_server
from services.platform.bus import event_log
from services.platform.bus.event_log import EVENT_LOG, EventLog
from services.platform.bus.events import envelope
from services.platform.bus.outbox import OutboxRelay, new_document_with_events, wire_body
from services.platform.bus.replay import REPLAYED_HEADER
from services.platform.core.clock import to_timestamp
from services.platform.core.config import AuthSettings, ConfigError, load
from services.platform.store.mongo import ensure_indexes
from services.platform.worker.deps import SerialRelay
from tests.support.events_probe import EventProbe
from tests.support.grpc_errors import assert_clean, rpc_error, violated_fields
from tests.support.mongo import Commands
from v2mom.v1 import event_log_pb2, event_log_pb2_grpc

AUTH = AuthSettings(service="replaytest")
PEOPLE = {"ann": PersonRecord(frozenset({"admin"}), True), "bob": PersonRecord(frozenset(), True)}
TYPES = ("thing_happened", "other_happened", "third_happened")
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def text(body) -> str:
    return body.decode() if isinstance(body, bytes) else body


def metadata(person: str) -> tuple:
    return bearer_metadata(mint_dev_token(AUTH, person))


@dataclass
class World:
    service: str
    db: object
    log: EventLog
    stub: event_log_pb2_grpc.EventLogServiceStub
    live: EventProbe
    queue: str
    amqp_uri: str

    def logged(self, event_type: str, at: datetime, n: int = 0) -> dict:
        """An event as the relay would have logged it after publishing it."""
        event = envelope(self.service, event_type, subject=f"agg{n}", data={"n": n}, time=at)
        self.log.record([event], [wire_body(event)])
        return event

    def replay(self, person: str = "ann", **fields):
        request = event_log_pb2.ReplayEventsRequest(**{"queue": self.queue, **fields})
        return self.stub.ReplayEvents(request, metadata=metadata(person), timeout=20)

    def read_queue(self, name: str | None = None) -> list:
        with kombu.Connection(self.amqp_uri) as connection:
            channel = connection.channel()
            messages = []
            while (message := channel.basic_get(name or self.queue, no_ack=True)) is not None:
                messages.append(message)
            return messages


def request_times(start: datetime, end: datetime) -> dict:
    return {"start_time": to_timestamp(start), "end_time": to_timestamp(end)}


def declare_bound_queue(amqp_uri: str, service: str, name: str, bind: bool = True) -> None:
    """What an integrator does once: a durable queue, bound to the service's replay exchange with its own name."""
    with kombu.Connection(amqp_uri) as connection:
        channel = connection.channel()
        channel.queue_declare(name, durable=True, auto_delete=False)
        if bind:
            channel.exchange_declare(f"{service}.replay", "direct", durable=True, auto_delete=False)
            channel.queue_bind(name, f"{service}.replay", routing_key=name)


def cleanup(amqp_uri: str, service: str, queues: list[str]) -> None:
    with kombu.Connection(amqp_uri) as connection:
        channel = connection.channel()
        for queue in queues:
            channel.queue_delete(queue)
        for exchange in (f"{service}.replay", f"{service}.events.unrouted", f"{service}.events"):
            channel.exchange_delete(exchange)


@pytest.fixture
def service_name():
    return f"replaytest{uuid.uuid4().hex[:8]}"


@pytest.fixture
def world(db, amqp_uri, service_name):
    ensure_indexes(db, event_log.INDEXES)
    replay = EventReplay(db, service_name, TYPES, amqp_uri)
    binding = ServiceBinding(event_log_pb2_grpc.add_EventLogServiceServicer_to_server, EventLogServicer(replay),
                             "v2mom.v1.EventLogService")
    server, port, _ = create_server("127.0.0.1:0", [binding], AUTH, authenticator=Authenticator(AUTH, PEOPLE.get))
    server.start()
    live = EventProbe(amqp_uri, f"{service_name}.events")  # what live consumers would see: must stay empty
    queue = f"{service_name}-integrator"
    declare_bound_queue(amqp_uri, service_name, queue)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield World(service_name, db, EventLog(db, 30), event_log_pb2_grpc.EventLogServiceStub(channel), live, queue,
                    amqp_uri)
    finally:
        channel.close()
        server.stop(None)
        live.close()
        cleanup(amqp_uri, service_name, [queue, f"{service_name}.events.unrouted"])


# --- the relay logs what it published -----------------------------------------------------------------------


def test_the_relay_logs_what_the_broker_confirmed_once_even_when_it_publishes_it_again(mongo_uri, db, amqp_uri,
                                                                                      service_name):
    ensure_indexes(db, event_log.INDEXES)
    probe = EventProbe(amqp_uri, f"{service_name}.events")
    events = [envelope(service_name, TYPES[n % 2], subject=f"agg{n}", data={"n": n}) for n in range(3)]
    for n, event in enumerate(events):
        db.things.insert_one(new_document_with_events({"_id": f"agg{n}"}, [event]))
    commands = Commands()
    client = pymongo.MongoClient(mongo_uri, tz_aware=True, event_listeners=[commands])
    relay = OutboxRelay.for_service(client[db.name], service_name, ["things"], amqp_uri, retention_days=30)
    try:
        relayed = []
        sent = commands.during(lambda: relayed.append(relay.relay_until_empty()))
        assert relayed == [3]
        assert [c for c in sent if c[1] == EVENT_LOG] == [("insert", EVENT_LOG, {})], \
            "one insert per batch, nothing read: the cost does not grow with the log"
        probe.drain(until_count=3)
        live = {message.properties["message_id"]: text(message.body) for message in probe.messages}
        logged = {doc["_id"]: doc for doc in db[EVENT_LOG].find()}
        assert set(logged) == {event["id"] for event in events}
        for event in events:
            doc = logged[event["id"]]
            assert doc["type"] == event["type"] and doc["time"] == event_log.event_time(event, None)
            assert doc["body"] == live[event["id"]], "the log keeps exactly what was published"
        first_published = {doc_id: doc["published"] for doc_id, doc in logged.items()}

        # A crash between the broker's confirm and clearing the outbox: the same events go out again...
        for n, event in enumerate(events):
            db.things.replace_one({"_id": f"agg{n}"}, new_document_with_events({"_id": f"agg{n}"}, [event]))
        assert relay.relay_until_empty() == 3
        assert len(probe.drain(until_count=6)) == 6
        # ...and are logged once.
        assert db[EVENT_LOG].count_documents({}) == 3
        assert {doc["_id"]: doc["published"] for doc in db[EVENT_LOG].find()} == first_published
    finally:
        relay.close()
        client.close()
        probe.close()
        cleanup(amqp_uri, service_name, [f"{service_name}.events.unrouted"])


def test_an_event_the_log_could_not_keep_stays_in_the_outbox(db, amqp_uri, service_name):
    """The log is written before the outbox lets go: a store error in between publishes it again later, it never
    leaves the outbox unlogged."""
    ensure_indexes(db, event_log.INDEXES)
    event = envelope(service_name, TYPES[0], subject="agg1", data={})
    db.things.insert_one(new_document_with_events({"_id": "agg1"}, [event]))
    relay = OutboxRelay.for_service(db, service_name, ["things"], amqp_uri, retention_days=30)

    def store_fails(events, bodies):
        raise PyMongoError("the store went away")

    try:
        relay.event_log.record = store_fails
        with pytest.raises(PyMongoError):
            relay.relay_once()
        assert db.things.find_one({"_id": "agg1"})["outbox_pending"] is True
        del relay.event_log.record
        assert relay.relay_once() == 1
        assert db[EVENT_LOG].find_one({"_id": event["id"]}) is not None
    finally:
        relay.close()
        cleanup(amqp_uri, service_name, [f"{service_name}.events.unrouted"])


def test_with_retention_zero_nothing_is_logged(db, amqp_uri, service_name):
    db.things.insert_one(new_document_with_events({"_id": "agg1"}, [envelope(service_name, TYPES[0], "agg1", {})]))
    relay = OutboxRelay.for_service(db, service_name, ["things"], amqp_uri, retention_days=0)
    try:
        assert relay.relay_until_empty() == 1
    finally:
        relay.close()
        cleanup(amqp_uri, service_name, [f"{service_name}.events.unrouted"])
    assert db[EVENT_LOG].count_documents({}) == 0


# --- retention ----------------------------------------------------------------------------------------------


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _record_at(log: EventLog, clock: Clock, at: datetime, count: int, event_type: str = TYPES[0]) -> list[dict]:
    clock.now = at
    events = [envelope("replaytest", event_type, subject=f"agg{n}", data={}, time=at) for n in range(count)]
    log.record(events, [wire_body(event) for event in events])
    return events


def test_retention_prunes_what_was_published_before_it_oldest_first_in_bounded_batches(db):
    ensure_indexes(db, event_log.INDEXES)
    clock = Clock(T0)
    log = EventLog(db, retention_days=30, clock=clock)
    _record_at(log, clock, T0 - timedelta(days=40), event_log.PRUNE_BATCH + 50)
    kept = _record_at(log, clock, T0 - timedelta(days=29), 5)
    clock.now = T0
    assert log.prune(max_batches=1) == (event_log.PRUNE_BATCH, True), "one batch at a time, and says more is left"
    assert log.prune() == (50, False)
    assert {doc["_id"] for doc in db[EVENT_LOG].find()} == {event["id"] for event in kept}
    assert log.prune() == (0, False)


def test_retention_counts_from_publication_not_from_the_events_own_time(db):
    """An event dated long ago (a late directory change, a relay back after an outage) is kept its full term."""
    ensure_indexes(db, event_log.INDEXES)
    clock = Clock(T0)
    log = EventLog(db, retention_days=30, clock=clock)
    old = envelope("replaytest", TYPES[0], subject="agg1", data={}, time=T0 - timedelta(days=90))
    log.record([old], [wire_body(old)])
    assert log.prune() == (0, False)
    assert db[EVENT_LOG].count_documents({}) == 1


def test_retention_zero_logs_nothing_and_empties_what_was_logged(db):
    ensure_indexes(db, event_log.INDEXES)
    clock = Clock(T0)
    _record_at(EventLog(db, 30, clock), clock, T0 - timedelta(days=1), 3)
    off = EventLog(db, retention_days=0, clock=clock)
    assert _record_at(off, clock, T0, 2) and db[EVENT_LOG].count_documents({}) == 3
    clock.now = T0 + timedelta(seconds=1)
    assert off.prune() == (3, False)
    assert db[EVENT_LOG].count_documents({}) == 0


def test_the_relay_prunes_between_passes_every_so_often_and_only_with_the_lease(db, amqp_uri, service_name):
    from services.platform.store.lease import Leases

    ensure_indexes(db, event_log.INDEXES)
    clock = Clock(T0)
    relay = OutboxRelay.for_service(db, service_name, ["things"], amqp_uri, retention_days=30)
    relay.event_log.clock = clock
    _record_at(relay.event_log, clock, T0 - timedelta(days=31), 3)
    ticks = [0.0]
    holder = SerialRelay(relay, lease=Leases(db, 10.0, holder="a")["outbox_relay"], prune_seconds=60,
                         clock=lambda: ticks[0])
    other = SerialRelay(OutboxRelay.for_service(db, service_name, ["things"], amqp_uri, retention_days=30),
                        lease=Leases(db, 10.0, holder="b")["outbox_relay"], prune_seconds=60, clock=lambda: ticks[0])
    other.relay.event_log.clock = clock
    try:
        clock.now = T0
        holder.drain()
        assert db[EVENT_LOG].count_documents({}) == 0, "the lease holder prunes"
        _record_at(relay.event_log, clock, T0 - timedelta(days=31), 2)
        clock.now = T0
        other.drain()
        assert db[EVENT_LOG].count_documents({}) == 2, "a replica without the lease does not"
        ticks[0] = 30.0
        holder.drain()
        assert db[EVENT_LOG].count_documents({}) == 2, "not before prune_seconds"
        ticks[0] = 61.0
        holder.drain()
        assert db[EVENT_LOG].count_documents({}) == 0
    finally:
        relay.close()
        other.relay.close()
        cleanup(amqp_uri, service_name, [f"{service_name}.events.unrouted"])


@pytest.mark.parametrize("raw, problem", [("abc", "must be an integer"), ("-1", "must be between 0 and 3650"),
                                          ("3651", "must be between 0 and 3650")])
def test_a_malformed_retention_stops_the_process_naming_the_variable(monkeypatch, raw, problem):
    monkeypatch.setenv("EVENT_LOG_RETENTION_DAYS", raw)
    with pytest.raises(ConfigError, match=f"EVENT_LOG_RETENTION_DAYS {problem}"):
        load("goals")


def test_retention_defaults_to_thirty_days_and_zero_is_allowed(monkeypatch):
    monkeypatch.delenv("EVENT_LOG_RETENTION_DAYS", raising=False)
    assert load("goals").event_log_retention_days == 30
    monkeypatch.setenv("EVENT_LOG_RETENTION_DAYS", "0")
    assert load("goals").event_log_retention_days == 0


# --- ReplayEvents ---------------------------------------------------------------------------------------------


def test_replay_sends_only_the_chosen_types_and_range_to_the_named_queue_with_their_original_ids(world):
    inside = [world.logged(TYPES[0], T0 + timedelta(minutes=2), 1), world.logged(TYPES[1], T0 + timedelta(minutes=1), 2),
              world.logged(TYPES[0], T0 + timedelta(minutes=3), 3)]
    world.logged(TYPES[2], T0 + timedelta(minutes=2), 4)  # a type not asked for
    world.logged(TYPES[0], T0 - timedelta(seconds=1), 5)  # before the range
    world.logged(TYPES[0], T0 + timedelta(hours=1), 6)  # at its end: excluded
    answer = world.replay(types=[TYPES[0], TYPES[1]], **request_times(T0, T0 + timedelta(hours=1)))
    assert answer.replayed == 3 and not answer.next_page_token and answer.exchange == f"{world.service}.replay"
    assert answer.last_event_time.ToDatetime(tzinfo=UTC) == T0 + timedelta(minutes=3)
    messages = world.read_queue()
    expected = sorted(inside, key=lambda event: event["time"])  # oldest first, across types
    assert [m.properties["message_id"] for m in messages] == [event["id"] for event in expected]
    for message, event in zip(messages, expected):
        assert text(message.body) == wire_body(event), "byte for byte the envelope that was published"
        assert json.loads(message.body)["id"] == event["id"]
        assert message.headers[REPLAYED_HEADER] is True
        assert message.delivery_info["exchange"] == f"{world.service}.replay"
    assert world.live.settle(quiet_seconds=0.5) == [], "live consumers saw nothing"


def test_replay_pages_through_a_range_larger_than_max_events(world):
    # Odd milliseconds: page tokens keep them exactly (a float would round some down and repeat an event).
    events = [world.logged(TYPES[n % 3], T0 + timedelta(milliseconds=1000 * n + 123 + n), n) for n in range(7)]
    times = request_times(T0, T0 + timedelta(days=1))
    replayed, token = [], ""
    for _ in range(5):
        answer = world.replay(types=list(TYPES), max_events=3, page_token=token, **times)
        replayed.append(answer.replayed)
        token = answer.next_page_token
        if not token:
            break
    assert replayed == [3, 3, 1]
    assert [m.properties["message_id"] for m in world.read_queue()] == [event["id"] for event in events]


def test_events_of_the_same_time_are_replayed_once_each_across_pages(world):
    """Keyset paging on (time, id): ties are not skipped or repeated at a page's edge."""
    events = [world.logged(TYPES[0], T0, n) for n in range(5)]
    times = request_times(T0, T0 + timedelta(minutes=1))
    first = world.replay(types=[TYPES[0]], max_events=2, **times)
    second = world.replay(types=[TYPES[0]], max_events=10, page_token=first.next_page_token, **times)
    assert (first.replayed, second.replayed) == (2, 3)
    assert sorted(m.properties["message_id"] for m in world.read_queue()) == sorted(e["id"] for e in events)


def test_a_range_with_nothing_logged_replays_nothing(world):
    answer = world.replay(types=[TYPES[0]], **request_times(T0, T0 + timedelta(hours=1)))
    assert answer.replayed == 0 and not answer.HasField("last_event_time")
    assert world.read_queue() == []


def test_only_admins_may_replay(world):
    world.logged(TYPES[0], T0)
    error = rpc_error(lambda r: world.stub.ReplayEvents(r, metadata=metadata("bob"), timeout=10),
                      event_log_pb2.ReplayEventsRequest(types=[TYPES[0]], queue=world.queue,
                                                        **request_times(T0, T0 + timedelta(hours=1))))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED and "admin" in error.details()
    error = rpc_error(lambda r: world.stub.ReplayEvents(r, timeout=10), event_log_pb2.ReplayEventsRequest())
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert world.read_queue() == []


def test_a_queue_that_does_not_exist_is_not_found_and_nothing_is_created(world):
    world.logged(TYPES[0], T0)
    missing = f"{world.service}-nobody"
    error = rpc_error(lambda r: world.replay(**r), dict(queue=missing, types=[TYPES[0]],
                                                     **request_times(T0, T0 + timedelta(hours=1))))
    assert error.code() == grpc.StatusCode.NOT_FOUND and missing in error.details()
    assert f"{world.service}.replay" in error.details(), "says what to bind it to"
    assert_clean(error)
    with kombu.Connection(world.amqp_uri) as connection:
        from tests.support.broker import queue_exists

        assert not queue_exists(connection, missing)


def test_a_queue_not_bound_to_the_replay_exchange_is_a_failed_precondition(world):
    world.logged(TYPES[0], T0)
    unbound = f"{world.service}-unbound"
    declare_bound_queue(world.amqp_uri, world.service, unbound, bind=False)
    try:
        error = rpc_error(lambda r: world.replay(**r), dict(queue=unbound, types=[TYPES[0]],
                                                         **request_times(T0, T0 + timedelta(hours=1))))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "not bound" in error.details() and unbound in error.details()
        assert_clean(error)
        assert world.read_queue(unbound) == []
    finally:
        cleanup(world.amqp_uri, world.service, [unbound])
    assert world.live.settle(quiet_seconds=0.3) == []


def test_a_broker_that_is_down_is_unavailable(db, service_name):
    replay = EventReplay(db, service_name, TYPES, "amqp://guest:guest@127.0.0.1:1/")
    from services.platform.api.auth import Caller
    from services.platform.core.errors import Unavailable

    request = event_log_pb2.ReplayEventsRequest(types=[TYPES[0]], queue="q", **request_times(T0, T0 + timedelta(hours=1)))
    with pytest.raises(Unavailable):
        replay.replay(Caller("ann", frozenset({"admin"})), request)


@pytest.mark.parametrize("fields, violated", [
    ({}, {"types", "start_time", "end_time", "queue"}),
    ({"types": ["no_such_type"]}, {"types[0]"}),
    ({"types": [TYPES[0], "v2mom_created"]}, {"types[1]"}),
    ({"types": [f"t{n}" for n in range(65)]}, {"types"}),
    ({"end": T0 - timedelta(seconds=1)}, {"end_time"}),
    ({"end": T0}, {"end_time"}),
    ({"queue": ""}, {"queue"}),
    ({"queue": "amq.gen-abc"}, {"queue"}),
    ({"queue": "q" * 256}, {"queue"}),
    ({"queue": "with space"}, {"queue"}),
    ({"queue": "naïve"}, {"queue"}),
    ({"queue": "line\n"}, {"queue"}),
    ({"max_events": -1}, {"max_events"}),
    ({"max_events": 100_001}, {"max_events"}),
    ({"page_token": "not a token"}, {"page_token"}),
])
def test_bad_input_is_invalid_argument_naming_each_field(world, fields, violated):
    fields = dict(fields)
    base = {"types": [TYPES[0]], "queue": world.queue, **request_times(T0, fields.pop("end", T0 + timedelta(hours=1)))}
    if not fields and violated == {"types", "start_time", "end_time", "queue"}:
        request = event_log_pb2.ReplayEventsRequest()
    else:
        request = event_log_pb2.ReplayEventsRequest(**{**base, **fields})
    error = rpc_error(lambda r: world.stub.ReplayEvents(r, metadata=metadata("ann"), timeout=10), request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert violated_fields(error) == violated
    assert_clean(error)


def test_an_impossible_timestamp_is_invalid_argument(world):
    request = event_log_pb2.ReplayEventsRequest(types=[TYPES[0]], queue=world.queue, **request_times(T0, T0 + timedelta(1)))
    request.start_time.nanos = -5
    request.end_time.seconds = 10**12
    error = rpc_error(lambda r: world.stub.ReplayEvents(r, metadata=metadata("ann"), timeout=10), request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(error) == {"start_time", "end_time"}


def test_a_page_token_of_other_filters_is_refused(world):
    for n in range(3):
        world.logged(TYPES[0], T0 + timedelta(seconds=n), n)
    first = world.replay(types=[TYPES[0]], max_events=1, **request_times(T0, T0 + timedelta(hours=1)))
    assert first.next_page_token
    error = rpc_error(lambda r: world.replay(**r), dict(types=[TYPES[1]], page_token=first.next_page_token,
                                                     **request_times(T0, T0 + timedelta(hours=1))))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and violated_fields(error) == {"page_token"}
