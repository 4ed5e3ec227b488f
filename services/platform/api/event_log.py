"""``v2mom.v1.EventLogService``: ReplayEvents, served by every api whose service publishes events.

Each service replays its own events, from its own event log (bus/event_log.py,
in its own database: no service reads another's), so goals-api, checkins-api
and notify-api each serve it on their own port (``event_log_binding``);
metrics publishes nothing. A replay publishes the logged bodies to the
caller's queue through ``<service>.replay`` (bus/replay.py), never through
the live exchange, a batch at a time with one confirm wait per batch, reading
the log a page per type at a time: memory holds a batch, not the range.

Admin only. Everything a client can get wrong is INVALID_ARGUMENT (all at
once), a missing queue NOT_FOUND, a queue not bound to the replay exchange or
refused by the broker FAILED_PRECONDITION, a broker that is down UNAVAILABLE.
"""

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from pymongo.database import Database

from ..bus.event_log import INDEXES, EventLog
from ..bus.outbox import PublishFailed
from ..bus.events import replay_exchange_name
from ..bus.replay import BrokerRefused, QueueMissing, QueueNotBound, ReplayPublisher
from ..core.clock import to_timestamp
from ..core.errors import (FailedPrecondition, NotFound, PermissionDenied, PreconditionViolation, Unavailable,
                           Violations)
from ..core.paging import bad_token, decode_token, encode_token
from ..core.validation import check_timestamp
from ..store.mongo import ensure_indexes
from .auth import Caller, current_caller
from .server import ServiceBinding
from v2mom.v1 import event_log_pb2, event_log_pb2_grpc

MAX_TYPES = 64
# AMQP's short string; letters, digits and a little punctuation, so the name can be quoted back safely.
QUEUE_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,255}\Z")
RESERVED_QUEUE_PREFIX = "amq."
DEFAULT_MAX_EVENTS = 10_000
MAX_EVENTS = 100_000
# Events per publish and confirm wait (as the relay's batches).
PUBLISH_BATCH = 200
LIST_NAME = "ReplayEvents"

PublisherFactory = Callable[[str, str, str], ReplayPublisher]


class EventReplay:
    """ReplayEvents over one service's event log and broker."""

    def __init__(self, db: Database, service: str, event_types: Iterable[str], amqp_uri: str,
                 publisher: PublisherFactory = ReplayPublisher):
        self.log = EventLog(db, retention_days=0)  # read only: retention is the relay's business
        self.service = service
        self.event_types = frozenset(event_types)
        self.amqp_uri = amqp_uri
        self.publisher = publisher

    @property
    def exchange(self) -> str:
        return replay_exchange_name(self.service)

    def replay(self, caller: Caller, request) -> event_log_pb2.ReplayEventsResponse:
        if not caller.is_admin:
            raise PermissionDenied(f"only admins may replay {self.service}'s events")
        types, start, end, limit, after = self._validated(request)
        publisher = self.publisher(self.amqp_uri, self.service, request.queue)
        replayed, last, more = 0, None, False
        try:
            publisher.check()  # the queue exists: before reading anything
            batch: list[dict] = []
            for doc in self.log.replayable(types, start, end, after):
                if replayed + len(batch) == limit:
                    more = True
                    break
                batch.append(doc)
                if len(batch) == PUBLISH_BATCH:
                    replayed, last, batch = replayed + self._send(publisher, batch, replayed), batch[-1], []
            if batch:
                replayed, last = replayed + self._send(publisher, batch, replayed), batch[-1]
        except QueueMissing:
            raise NotFound(f"queue {request.queue!r} does not exist on the broker: declare it (durable) and bind it "
                           f"to exchange {self.exchange!r} with routing key {request.queue!r}, then replay") from None
        except BrokerRefused as error:
            raise FailedPrecondition(f"{error} (queue {request.queue!r}, exchange {self.exchange!r})") from None
        except PublishFailed as error:
            raise Unavailable(f"the broker is unavailable ({error}); {replayed} events were replayed before it; "
                              "try again") from None
        finally:
            publisher.close()
        response = event_log_pb2.ReplayEventsResponse(replayed=replayed, exchange=self.exchange)
        if last is not None:
            response.last_event_time.CopyFrom(to_timestamp(last["time"]))
            if more:
                response.next_page_token = encode_token(LIST_NAME, _filters(types, start, end), _position(last))
        return response

    def _send(self, publisher: ReplayPublisher, batch: list[dict], before: int) -> int:
        try:
            publisher.send([(doc["_id"], doc["type"], doc["body"]) for doc in batch])
        except QueueNotBound as error:
            raise FailedPrecondition(
                f"{error}: bind it once and replay again ({before + error.confirmed} events reached it)",
                [PreconditionViolation("NOT_BOUND", f"queue/{publisher.queue}",
                                       f"bind the queue to {self.exchange} with routing key {publisher.queue}")],
            ) from None
        return len(batch)

    def _validated(self, request):
        violations = Violations()
        types = list(dict.fromkeys(request.types))
        if not types:
            violations.add("types", "is required: name at least one event type")
        violations.max_items("types", types, MAX_TYPES)
        for index, event_type in enumerate(types if len(types) <= MAX_TYPES else []):
            if event_type not in self.event_types:
                violations.add(f"types[{index}]", f"{event_type[:80]!r} is not an event type {self.service} "
                               f"publishes; it publishes {', '.join(sorted(self.event_types))}")
        start = check_timestamp(violations, "start_time", request.start_time, required=True,
                                present=request.HasField("start_time"))
        end = check_timestamp(violations, "end_time", request.end_time, required=True,
                              present=request.HasField("end_time"))
        if start is not None and end is not None and end <= start:
            violations.add("end_time", "must be after start_time")
        queue = request.queue
        if not queue:
            violations.add("queue", "is required: the name of a queue bound to " + self.exchange)
        elif not QUEUE_PATTERN.match(queue):
            violations.add("queue", "must be 1-255 characters of letters, digits, '_', '.', ':' or '-'")
        elif queue.startswith(RESERVED_QUEUE_PREFIX):
            violations.add("queue", "names starting with 'amq.' are the broker's own")
        if not 0 <= request.max_events <= MAX_EVENTS:
            violations.add("max_events", f"must be between 0 and {MAX_EVENTS}")
        violations.raise_if_any()
        after = None
        if request.page_token:
            position = decode_token(request.page_token, LIST_NAME, _filters(types, start, end), list)
            after = _from_position(position)
        return types, start, end, request.max_events or DEFAULT_MAX_EVENTS, after


def _filters(types: list[str], start: datetime, end: datetime) -> list:
    return [sorted(types), start.isoformat(), end.isoformat()]


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLISECOND = timedelta(milliseconds=1)


def _position(doc: dict) -> list:
    # In whole milliseconds, as the store keeps times, by integer arithmetic: a float would round some to the
    # millisecond before, and the next page would repeat an event.
    return [(doc["time"] - EPOCH) // MILLISECOND, doc["_id"]]


def _from_position(position: list) -> tuple[datetime, str]:
    if (len(position) != 2 or not isinstance(position[0], int) or isinstance(position[0], bool)
            or not isinstance(position[1], str)):
        raise bad_token()
    try:
        moment = EPOCH + position[0] * MILLISECOND
    except (OverflowError, ValueError):
        raise bad_token() from None
    return moment, position[1]


class EventLogServicer(event_log_pb2_grpc.EventLogServiceServicer):
    """Thin: the authenticated caller and the request go to EventReplay."""

    def __init__(self, replay: EventReplay):
        self.replay = replay

    def ReplayEvents(self, request, context):
        return self.replay.replay(current_caller(), request)


def event_log_binding(db: Database, service: str, event_types: Iterable[str], amqp_uri: str) -> ServiceBinding:
    """EventLogService over a service's own log, to serve beside its API (``create_service_server(more=...)``)."""
    ensure_indexes(db, INDEXES)  # the API may start before the worker that also creates them
    return ServiceBinding(event_log_pb2_grpc.add_EventLogServiceServicer_to_server,
                          EventLogServicer(EventReplay(db, service, event_types, amqp_uri)),
                          event_log_pb2.DESCRIPTOR.services_by_name["EventLogService"].full_name)
