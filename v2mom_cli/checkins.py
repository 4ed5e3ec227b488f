"""The check-in commands: record and correct check-ins, read progress and what has gone stale.

They talk to the check-ins API (--checkins-addr), and to the goals API to
turn references (me, @person, unit:<id>) and item titles into ids.
"""

from datetime import UTC, date, datetime, time

from google.protobuf.timestamp_pb2 import Timestamp

from v2mom.v1 import checkins_pb2, goals_pb2

from . import items, refs, render_progress
from .errors import CliError

STATUSES = {
    "on-track": checkins_pb2.CHECKIN_STATUS_ON_TRACK,
    "at-risk": checkins_pb2.CHECKIN_STATUS_AT_RISK,
    "off-track": checkins_pb2.CHECKIN_STATUS_OFF_TRACK,
}
# A write carries this invocation's idempotency key, so trying again cannot record it twice.
WRITE_ATTEMPTS = 3


# --- recording ----------------------------------------------------------------------------


def checkin(ctx, args) -> int:
    v2mom = published(ctx, args.v2mom)
    item = items.find_item(v2mom.content, args.item)
    if item.kind == items.MEASURE:
        rpc, request = "RecordMeasureCheckin", measure_request(v2mom.id, item, args)
    else:
        rpc, request = "RecordMethodCheckin", method_request(v2mom.id, item, args)
    print(render_progress.recorded(write(ctx, rpc, request), item.title))
    return 0


def measure_request(v2mom_id: str, item: items.Item, args) -> checkins_pb2.RecordMeasureCheckinRequest:
    _refuse_flags(item, {"--progress": args.progress, "--milestone": args.milestone})
    if args.value is None:
        raise CliError(f"{item.title!r} is a measure: give its current value with --value", exit_code=2)
    request = checkins_pb2.RecordMeasureCheckinRequest(
        v2mom_id=v2mom_id, measure_id=item.id, value=args.value, status=STATUSES[args.status],
        comment=args.comment or "",
    )
    if args.confidence is not None:  # otherwise the API says it is required, as it does to every client
        request.confidence = args.confidence
    _set_observed(request, args.observed)
    return request


def method_request(v2mom_id: str, item: items.Item, args) -> checkins_pb2.RecordMethodCheckinRequest:
    _refuse_flags(item, {"--value": args.value, "--confidence": args.confidence})
    if args.progress is None:
        raise CliError(f"{item.title!r} is a method: say how far it is with --progress (0-100)", exit_code=2)
    request = checkins_pb2.RecordMethodCheckinRequest(
        v2mom_id=v2mom_id, method_id=item.id, progress_percent=args.progress, status=STATUSES[args.status],
        comment=args.comment or "",
        completed_milestone_ids=[items.find_milestone(item, name) for name in args.milestone or []],
    )
    _set_observed(request, args.observed)
    return request


def correct(ctx, args) -> int:
    request = checkins_pb2.CorrectCheckinRequest(
        checkin_id=args.checkin_id, reason=args.reason, status=STATUSES[args.status] if args.status else 0,
        comment=args.comment or "",
    )
    # Unset fields keep the corrected check-in's values; the API refuses the other kind's fields.
    if args.value is not None:
        request.value = args.value
    if args.progress is not None:
        request.progress_percent = args.progress
    if args.confidence is not None:
        request.confidence = args.confidence
    print(render_progress.corrected(write(ctx, "CorrectCheckin", request)))
    return 0


def write(ctx, rpc: str, request):
    request.idempotency_key = ctx.idempotency_key
    return ctx.checkins.call(rpc, request, attempts=WRITE_ATTEMPTS)


# --- reading -------------------------------------------------------------------------------


def list_checkins(ctx, args) -> int:
    v2mom = published(ctx, args.v2mom)
    item = items.find_item(v2mom.content, args.item) if args.item else None
    request = checkins_pb2.ListCheckinsRequest(
        v2mom_id=v2mom.id, item_id=item.id if item else "", include_superseded=args.all
    )
    found = refs.list_all(ctx.checkins, "ListCheckins", request, "checkins")
    titles = {each.id: each.title for each in items.items_of(v2mom.content)}
    print(render_progress.checkins_table(found, titles))
    return 0


def progress(ctx, args) -> int:
    v2mom = published(ctx, args.v2mom)
    request = checkins_pb2.GetProgressRequest(v2mom_id=v2mom.id, include_tree=args.tree)
    report = ctx.checkins.call("GetProgress", request)
    titles = tree_titles(ctx, v2mom.id) if args.tree else {}
    titles[v2mom.id] = v2mom.content.title
    print(render_progress.progress_report(report, titles, with_tree=args.tree))
    return 0


def progress_history(ctx, args) -> int:
    v2mom = published(ctx, args.v2mom)
    history = ctx.checkins.call("GetProgressHistory", checkins_pb2.GetProgressHistoryRequest(v2mom_id=v2mom.id))
    print(render_progress.history_chart(v2mom.content.title, history.snapshots))
    return 0


def stale(ctx, args) -> int:
    if args.owner and args.unit:
        raise CliError("give --owner or --unit, not both", exit_code=2)
    if args.unit:
        request = checkins_pb2.ListStaleItemsRequest(org_unit_id=args.unit)
    else:
        request = checkins_pb2.ListStaleItemsRequest(owner_id=person_id(ctx, args.owner or "me"))
    print(render_progress.stale_table(refs.list_all(ctx.checkins, "ListStaleItems", request, "items")))
    return 0


# --- helpers ---------------------------------------------------------------------------------


def published(ctx, ref: str) -> goals_pb2.V2MOM:
    """The published version: the one check-ins are taken against, whatever draft stands behind it."""
    request = goals_pb2.GetV2MOMRequest(id=ctx.resolve(ref), view=goals_pb2.V2MOM_VIEW_PUBLISHED)
    return ctx.call("GetV2MOM", request)


def tree_titles(ctx, v2mom_id: str) -> dict[str, str]:
    """Titles of the V2MOM and of everything aligned below it that you can see."""
    titles: dict[str, str] = {}
    frontier = [ctx.call("GetAlignmentTree", goals_pb2.GetAlignmentTreeRequest(id=v2mom_id))]
    while frontier:
        node = frontier.pop()
        titles[node.id] = node.title
        frontier.extend(node.children)
    return titles


def person_id(ctx, ref: str) -> str:
    """me, @person or a plain person id."""
    return ctx.me if ref == "me" else ref.removeprefix("@")


def _set_observed(request, day: date | None) -> None:
    """Noon UTC of the day observed, which is that same day almost everywhere; now if noon is still to come."""
    if day is None:
        return  # the API takes now
    if day > date.today():
        raise CliError(f"--observed {day} is in the future", exit_code=2)
    moment = min(datetime.combine(day, time(12), tzinfo=UTC), datetime.now(UTC))
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    request.observe_time.CopyFrom(stamp)


def _refuse_flags(item: items.Item, flags: dict[str, object]) -> None:
    given = [flag for flag, value in flags.items() if value not in (None, [])]
    if given:
        raise CliError(f"{item.title!r} is a {item.kind}: {', '.join(given)} is not for {item.kind}s", exit_code=2)
