"""The MetricsService use cases: what each RPC means, independent of gRPC plumbing."""

import re
from collections.abc import Callable
from datetime import UTC, datetime

import grpc
from pymongo.database import Database

from services.platform.api.auth import Caller
from services.platform.core import paging
from services.platform.core.clock import to_date_proto, to_timestamp, utc_now
from services.platform.core.errors import FailedPrecondition, NotFound, PermissionDenied, Unavailable, Violations
from services.platform.core.validation import check_enum, check_id
from v2mom.v1 import common_pb2, metrics_pb2

from . import convert, engagement, history, model, rebuild, store
from .engagement import DIRECT, SUBTREE, Rates, View
from .org import OrgTree

CYCLE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,32}\Z")
LIST_ENGAGEMENT = "ListEngagement"

SORT_KEYS: dict[int, Callable[[Rates], float | None]] = {
    metrics_pb2.ENGAGEMENT_RATE_CREATION: lambda r: r.creation,
    metrics_pb2.ENGAGEMENT_RATE_APPROVAL: lambda r: r.approval,
    metrics_pb2.ENGAGEMENT_RATE_CHECKIN_FREQUENCY: lambda r: r.checkins_per_member_per_week,
    metrics_pb2.ENGAGEMENT_RATE_CHECKIN_COVERAGE: lambda r: r.checkin_coverage,
    metrics_pb2.ENGAGEMENT_RATE_PROGRESS: lambda r: r.progress,
    metrics_pb2.ENGAGEMENT_RATE_OFF_TRACK: lambda r: r.off_track,
}
LISTABLE_LEVELS = (common_pb2.ORG_LEVEL_UNSPECIFIED, common_pb2.ORG_LEVEL_DEPARTMENT, common_pb2.ORG_LEVEL_TEAM)


def _scope(value: int) -> str:
    return DIRECT if value == metrics_pb2.SCOPE_DIRECT else SUBTREE


def _check_ids(violations: Violations, request) -> None:
    check_id(violations, "org_unit_id", request.org_unit_id)
    # Cycle ids are shorter than other ids: the kernel's check_id allows 64 characters.
    if not request.cycle_id:
        violations.add("cycle_id", "is required")
    elif not CYCLE_ID.match(request.cycle_id):
        violations.add("cycle_id", "must be 1-32 characters of letters, digits, '_', '.' or '-'")
    check_enum(violations, "scope", metrics_pb2.Scope, request.scope)


class MetricsService:
    def __init__(self, db: Database, rebuilder: Callable[[], rebuild.Summary] | None = None,
                 clock: Callable[[], datetime] = utc_now):
        self.db = db
        self.rebuilder = rebuilder
        self.clock = clock

    # --- reads ---------------------------------------------------------------------------------

    def get_engagement(self, caller: Caller, request: metrics_pb2.GetEngagementRequest) -> metrics_pb2.Engagement:
        violations = Violations()
        _check_ids(violations, request)
        violations.raise_if_any()
        snapshot = self._read(request.org_unit_id, request.cycle_id)
        return self._message(snapshot, request.org_unit_id, request.cycle_id, _scope(request.scope))

    def list_engagement(self, caller: Caller, request: metrics_pb2.ListEngagementRequest) -> metrics_pb2.ListEngagementResponse:
        violations = Violations()
        _check_ids(violations, request)
        if request.level not in LISTABLE_LEVELS:
            violations.add("level", "must be DEPARTMENT, TEAM or unset")
        check_enum(violations, "order_by", metrics_pb2.EngagementRate, request.order_by)
        size = paging.page_size(violations, request.page_size)
        violations.raise_if_any()
        offset = _offset(request)
        snapshot = self._read(request.org_unit_id, request.cycle_id)
        scope = _scope(request.scope)
        views = [snapshot.view(unit_id, request.cycle_id, scope) for unit_id in snapshot.tree.subtree(request.org_unit_id)[1:]]
        if request.level:
            level = common_pb2.OrgLevel.Name(request.level)
            views = [view for view in views if snapshot.tree.units[view.unit_id].level == level]
        views = _sorted(views, request.order_by or metrics_pb2.ENGAGEMENT_RATE_CREATION, request.descending)
        page = views[offset:offset + size]
        more = offset + size < len(views)
        return metrics_pb2.ListEngagementResponse(
            engagements=[convert.engagement(snapshot.tree.units[view.unit_id], view) for view in page],
            next_page_token=paging.encode_token(LIST_ENGAGEMENT, _filters(request), offset + size) if more else "",
            total_size=len(views),
        )

    def engagement_history(self, caller: Caller, request) -> metrics_pb2.GetEngagementHistoryResponse:
        violations = Violations()
        _check_ids(violations, request)
        violations.raise_if_any()
        tree = store.org_tree(self.db)
        unit = self._unit(tree, request.org_unit_id)
        scope = _scope(request.scope)
        snapshots = []
        for week, counts, own in history.weeks(self.db, tree, unit.id, request.cycle_id, scope):
            start = model.week_start(week)
            view = View(unit.id, request.cycle_id, scope, counts, own, datetime(start.year, start.month, start.day, tzinfo=UTC))
            message = convert.engagement(unit, view)
            message.ClearField("compute_time")  # a snapshot's moment is its week, not a computation
            message.ClearField("oldest_pending_age")
            snapshots.append(metrics_pb2.EngagementSnapshot(week_start=to_date_proto(start), engagement=message))
        return metrics_pb2.GetEngagementHistoryResponse(snapshots=snapshots)

    # --- rebuild ---------------------------------------------------------------------------------

    def rebuild_aggregates(self, caller: Caller, request) -> metrics_pb2.RebuildAggregatesResponse:
        if not caller.is_admin:
            raise PermissionDenied("only admins may rebuild the metrics aggregates")
        if self.rebuilder is None:
            raise FailedPrecondition("this metrics-api has no sources configured to rebuild from")
        try:
            summary = self.rebuilder()
        except rebuild.RebuildBusy as error:
            raise FailedPrecondition(str(error)) from None
        except grpc.RpcError as error:
            # A source said no (UNAVAILABLE is already turned into Unavailable by the client).
            raise Unavailable(f"a source refused the rebuild's reads: {error.code().name}: {error.details()}") from None
        return metrics_pb2.RebuildAggregatesResponse(
            org_units=summary.org_units, people=summary.people, v2moms=summary.v2moms, checkins=summary.checkins,
            stale_items=summary.stale_items, aggregates=summary.aggregates,
            as_of=to_timestamp(summary.as_of), took=convert.duration(summary.seconds),
        )

    # --- helpers ---------------------------------------------------------------------------------

    def _read(self, unit_id: str, cycle_id: str) -> engagement.Snapshot:
        tree = store.org_tree(self.db)
        self._unit(tree, unit_id)
        units = tree.subtree(unit_id)
        return engagement.snapshot(self.clock(), tree, store.aggregates(self.db, cycle_id, units), units, cycle_id,
                                   store.cycle_quarters(self.db))

    @staticmethod
    def _unit(tree: OrgTree, unit_id: str):
        if unit_id not in tree:
            raise NotFound(f"org unit {unit_id!r} is unknown to the metrics service")
        return tree.units[unit_id]

    @staticmethod
    def _message(snapshot: engagement.Snapshot, unit_id: str, cycle_id: str, scope: str) -> metrics_pb2.Engagement:
        return convert.engagement(snapshot.tree.units[unit_id], snapshot.view(unit_id, cycle_id, scope))


def _sorted(views: list[View], order_by: int, descending: bool) -> list[View]:
    """By the rate, ascending or descending; units without one last; ties by id."""
    key = SORT_KEYS[order_by]
    known = [view for view in views if key(view.rates) is not None]
    unknown = sorted((view for view in views if key(view.rates) is None), key=lambda v: v.unit_id)
    known.sort(key=lambda v: v.unit_id)
    known.sort(key=lambda v: key(v.rates), reverse=descending)  # stable: ids stay ascending within a tie
    return known + unknown


def _filters(request) -> list:
    """What a page token is bound to: the same list with other filters or order must not resume from it."""
    return [request.org_unit_id, request.cycle_id, request.scope, request.level, request.order_by, request.descending]


def _offset(request) -> int:
    """Where the page starts: 0 without a token; INVALID_ARGUMENT on page_token for one this list did not issue."""
    offset = paging.decode_token(request.page_token, LIST_ENGAGEMENT, _filters(request), int)
    if offset is None:
        return 0
    if offset < 0:
        raise paging.bad_token()
    return offset
