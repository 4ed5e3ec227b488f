"""`v2mom events replay`: admins send a service's logged events again, to one integrator's queue.

Each publishing service replays its own events (EventLogService on its own API: goals on --addr, check-ins on
--checkins-addr, notify on --notify-addr). The queue must exist and be bound to `<service>.replay` with its own
name as routing key; the command pages through the range until every matching event is replayed.
"""

from datetime import UTC, date, datetime, time, timedelta

from services.platform.core.clock import to_timestamp
from v2mom.v1 import event_log_pb2, event_log_pb2_grpc

from .errors import CliError
from .session import Api, Client

SERVICES = ("goals", "checkins", "notify")
# A replay publishes up to this many events per call, each confirmed by the broker before the answer.
PAGE = 10_000
REPLAY_TIMEOUT_SECONDS = 300.0


def moment(text: str) -> datetime:
    """YYYY-MM-DD (midnight UTC) or an ISO date and time (UTC unless it names an offset)."""
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(), UTC)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(f"{text!r} is not a date or time: use YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+HH:MM]",
                       exit_code=2) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _client(ctx, service: str) -> Client:
    addr, setting = {"goals": (ctx.addr, "--addr / V2MOM_GOALS_ADDR"),
                     "checkins": (ctx.checkins_addr, "--checkins-addr / V2MOM_CHECKINS_ADDR"),
                     "notify": (ctx.notify_addr, "--notify-addr / V2MOM_NOTIFY_ADDR")}[service]
    return Client(addr, ctx.client.token, Api(f"{service} API (event log)", setting,
                                              event_log_pb2_grpc.EventLogServiceStub))


def replay(ctx, args) -> int:
    start = moment(args.since)
    end = moment(args.until) if args.until else datetime.now(UTC) + timedelta(seconds=1)
    if end <= start:
        raise CliError("--until must be after --since", exit_code=2)
    client = _client(ctx, args.service)
    total, token = 0, ""
    try:
        while True:
            answer = client.call("ReplayEvents", event_log_pb2.ReplayEventsRequest(
                types=args.types, start_time=to_timestamp(start), end_time=to_timestamp(end), queue=args.queue,
                max_events=PAGE, page_token=token), timeout=REPLAY_TIMEOUT_SECONDS)
            total += answer.replayed
            token = answer.next_page_token
            if not token:
                break
            print(f"  {total} so far, up to {answer.last_event_time.ToDatetime(tzinfo=UTC).isoformat()}")
    finally:
        client.close()
    print(f"Replayed {total} {args.service} event{'s' if total != 1 else ''} "
          f"({', '.join(args.types)}) from {start.isoformat()} to {end.isoformat()} "
          f"to queue {args.queue} through {args.service}.replay.")
    return 0


def add_commands(command) -> None:
    events = command("events", None, "admins: replay a service's logged events to your queue")
    sub = events.add_subparsers(dest="events_command", metavar="{replay}", required=True)
    replaying = sub.add_parser(
        "replay", prog="v2mom events replay", help="publish logged events again to one queue",
        description="Publishes again, to one queue, the events a service logged (EVENT_LOG_RETENTION_DAYS, 30 "
        "by default) of the given types whose time falls in [--since, --until), oldest first, with their "
        "original CloudEvents ids; never to the live exchange. The queue must exist and be bound to exchange "
        "<service>.replay with its own name as routing key. Admins only.")
    replaying.set_defaults(handler=replay)
    replaying.add_argument("service", choices=SERVICES, help="whose events: each service replays its own")
    replaying.add_argument("--type", dest="types", action="append", required=True, metavar="TYPE",
                           help="an event type, for example v2mom_created (repeat for more)")
    replaying.add_argument("--since", required=True, help="from this time, inclusive: YYYY-MM-DD or ISO 8601")
    replaying.add_argument("--until", help="to this time, exclusive (default: now)")
    replaying.add_argument("--queue", required=True, help="your queue, bound to <service>.replay")
