"""From engagement views (engagement.py) to MetricsService messages."""

from google.protobuf.duration_pb2 import Duration

from services.platform.core.clock import to_timestamp
from v2mom.v1 import common_pb2, metrics_pb2

from . import model
from .engagement import DIRECT, View
from .org import Unit

SCOPES = {DIRECT: metrics_pb2.SCOPE_DIRECT, "subtree": metrics_pb2.SCOPE_SUBTREE}
STATES_BY_LABEL = {label: state for state, label in model.STATE_LABELS.items()}


def duration(seconds: float) -> Duration:
    value = Duration()
    value.FromNanoseconds(int(round(seconds * 1e9)))
    return value


def _level(unit: Unit) -> int:
    return common_pb2.OrgLevel.Value(unit.level) if unit.level in common_pb2.OrgLevel.keys() else 0


def engagement(unit: Unit, view: View) -> metrics_pb2.Engagement:
    counts, rates = view.counts, view.rates
    message = metrics_pb2.Engagement(
        org_unit_id=unit.id, org_unit_name=unit.name, level=_level(unit), cycle_id=view.cycle_id,
        scope=SCOPES[view.scope], compute_time=to_timestamp(view.now),
        headcount=counts.headcount, people_with_v2mom=counts.with_v2mom,
        v2moms_by_state=[
            metrics_pb2.V2MOMStateCount(state=STATES_BY_LABEL[label], count=n)
            for label, n in sorted(counts.v2moms.items()) if n
        ],
        submitted_v2moms=counts.submitted, approved_v2moms=counts.approved, pending_approvals=counts.pending,
        time_to_approval=_time_to_approval(counts),
        trailing_checkins=counts.trailing_checkins, checkins_week_to_date=counts.week_checkins,
        published_v2moms=counts.published, checked_in_v2moms=counts.covered,
        tracked_items=counts.items, stale_items=counts.stale, overdue_items=counts.overdue,
        measures=counts.measures, off_track_measures=counts.off_track,
    )
    optional = {
        "creation_ratio": rates.creation,
        "approval_ratio": rates.approval,
        "checkins_per_member_per_week": rates.checkins_per_member_per_week,
        "checkin_coverage_ratio": rates.checkin_coverage,
        "average_progress_percent": None if rates.progress is None else rates.progress * 100,
        "tree_progress_percent": None if rates.tree_progress is None or view.scope == DIRECT else rates.tree_progress * 100,
        "off_track_ratio": rates.off_track,
    }
    for field, value in optional.items():
        if value is not None:
            setattr(message, field, value)
    if counts.oldest_pending is not None:
        message.oldest_pending_submit_time.FromSeconds(int(counts.oldest_pending))
        message.oldest_pending_age.CopyFrom(duration(view.oldest_pending_age))
    return message


def _time_to_approval(counts) -> metrics_pb2.TimeToApproval:
    running, buckets = 0, []
    for bound, n in zip(list(model.TIME_TO_APPROVAL_BUCKETS) + [float("inf")], counts.tta_buckets):
        running += n
        buckets.append(metrics_pb2.HistogramBucket(upper_bound_seconds=float(bound), cumulative_count=running))
    return metrics_pb2.TimeToApproval(count=counts.tta_count, sum=duration(counts.tta_sum), buckets=buckets)
