"""The Prometheus collectors, reading the stored aggregates on every scrape.

``/metrics`` renders the engagement families with exposition.py, which writes
the text itself and maps ``GAUGES`` over every View; ``EngagementCollector`` is
the reference it is held byte-equal to, and what serves the rare requests
exposition.py leaves to prometheus_client.

Nothing is kept in the exporting process, so every metrics-api replica exports
the same numbers and a restart loses nothing. Rates are computed here, at scrape
time, from stored counters and windows (engagement.py).

Engagement families carry ``org_unit, org_unit_name, level, cycle, scope``
(scope ``direct``: the unit's own members and V2MOMs; ``subtree``: the unit and
everything below it). Ratios are left out where their denominator is zero.
"""

from collections.abc import Callable, Iterator
from datetime import datetime
from operator import attrgetter as _of

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from pymongo.database import Database

from services.platform.core.clock import utc_now

from . import engagement, model, pipeline, store
from .cycles import CycleCalendar
from .engagement import DIRECT, SUBTREE, View

LABELS = ["org_unit", "org_unit_name", "level", "cycle", "scope"]

# name, help, value of a View (None: leave the sample out); attrgetters, as exposition.py maps them over every View
GAUGES: list[tuple[str, str, Callable[[View], float | None]]] = [
    ("v2mom_headcount", "Active members.", _of("counts.headcount")),
    ("v2mom_people_with_v2mom", "Active members owning a V2MOM in the cycle that is not archived.",
     _of("counts.with_v2mom")),
    ("v2mom_creation_ratio", "People with a V2MOM in the cycle divided by headcount.", _of("rates.creation")),
    ("v2mom_submitted_v2moms", "V2MOMs (not archived) submitted at least once.", _of("counts.submitted")),
    ("v2mom_approved_v2moms", "V2MOMs (not archived) approved at least once.", _of("counts.approved")),
    ("v2mom_approval_ratio", "Approved V2MOMs divided by submitted V2MOMs.", _of("rates.approval")),
    ("v2mom_pending_approvals", "V2MOMs submitted and waiting for a decision.", _of("counts.pending")),
    ("v2mom_oldest_pending_approval_age_seconds", "Age of the oldest pending submission; 0 when none is pending.",
     lambda v: v.oldest_pending_age or 0.0),
    ("v2mom_trailing_checkins", "Check-ins observed in the 4 whole ISO weeks (UTC) before the current one.",
     _of("counts.trailing_checkins")),
    ("v2mom_checkins_week_to_date", "Check-ins observed so far in the current ISO week (UTC).",
     _of("counts.week_checkins")),
    ("v2mom_checkins_per_member_per_week", "Trailing check-ins per active member per week (4-week window).",
     _of("rates.checkins_per_member_per_week")),
    ("v2mom_published_v2moms", "Published V2MOMs (not archived).", _of("counts.published")),
    ("v2mom_checked_in_v2moms", "Published V2MOMs with a check-in within the last cadence of their cycle.",
     _of("counts.covered")),
    ("v2mom_checkin_coverage_ratio", "Checked-in V2MOMs divided by published V2MOMs.", _of("rates.checkin_coverage")),
    ("v2mom_tracked_items", "Measures and methods of published V2MOMs.", _of("counts.items")),
    ("v2mom_stale_items", "Tracked items without a check-in for one cadence (and not yet overdue).",
     _of("counts.stale")),
    ("v2mom_overdue_items", "Tracked items without a check-in for two cadences.", _of("counts.overdue")),
    ("v2mom_progress_ratio", "Mean own progress of published V2MOMs, 0 to 1.", _of("rates.progress")),
    ("v2mom_measures", "Measures of published V2MOMs.", _of("counts.measures")),
    ("v2mom_off_track_measures", "Measures whose latest check-in is OFF_TRACK.", _of("counts.off_track")),
    ("v2mom_off_track_measures_ratio", "Off-track measures divided by measures.", _of("rates.off_track")),
    ("v2mom_open_obstacles", "Unresolved (open or mitigating) obstacles of published V2MOMs.",
     _of("counts.open_obstacles")),
    ("v2mom_oldest_open_obstacle_age_seconds",
     "Seconds since the oldest unresolved obstacle of a published V2MOM opened; 0 when none is.",
     lambda v: v.oldest_open_obstacle_age or 0.0),
]
TREE_PROGRESS = ("v2mom_tree_progress_ratio",
                 "Tree progress of the unit's own V2MOM (it rolls up what is aligned below it), 0 to 1. scope=subtree only.")
STATES = ("v2mom_v2moms", "V2MOMs by state, archived included.")
TIME_TO_APPROVAL = ("v2mom_time_to_approval_seconds",
                    "Seconds from submission to approval, one observation per V2MOM (not archived) whose latest "
                    "submission was approved. Counts can fall when a V2MOM moves unit, is resubmitted or archived.")


class EngagementCollector(Collector):
    def __init__(self, db: Database, clock: Callable[[], datetime] = utc_now):
        self.db = db
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        tree = store.org_tree(self.db)
        snapshot = engagement.snapshot(now, tree, store.aggregates(self.db), quarters=store.cycle_quarters(self.db))
        gauges = [GaugeMetricFamily(name, text, labels=LABELS) for name, text, _ in GAUGES]
        tree = GaugeMetricFamily(*TREE_PROGRESS, labels=LABELS)
        states = GaugeMetricFamily(*STATES, labels=LABELS + ["state"])
        histogram = HistogramMetricFamily(*TIME_TO_APPROVAL, labels=LABELS)
        units = snapshot.tree.everything()
        for cycle in snapshot.cycles:
            for unit_id in units:
                unit = snapshot.tree.units[unit_id]
                for scope in (DIRECT, SUBTREE):
                    view = snapshot.view(unit_id, cycle, scope)
                    labels = [unit_id, unit.name, unit.level_label, cycle, scope]
                    for family, (_, _, value_of) in zip(gauges, GAUGES):
                        value = value_of(view)
                        if value is not None:
                            family.add_metric(labels, value)
                    for state, label in model.STATE_LABELS.items():
                        states.add_metric(labels + [label], view.counts.v2moms.get(label, 0))
                    histogram.add_metric(labels, _cumulative(view.counts), view.counts.tta_sum)
                    if scope == SUBTREE and view.rates.tree_progress is not None:
                        tree.add_metric(labels, view.rates.tree_progress)
        yield from gauges
        yield tree
        yield states
        yield histogram


def _cumulative(counts: engagement.Counts) -> list[tuple[str, float]]:
    running, buckets = 0, []
    for bound, n in zip(list(model.TIME_TO_APPROVAL_BUCKETS) + ["+Inf"], counts.tta_buckets):
        running += n
        buckets.append((str(float(bound)) if bound != "+Inf" else "+Inf", running))
    return buckets


class PipelineCollector(Collector):
    """How the event pipeline into the metrics service is doing, per source service."""

    def __init__(self, db: Database):
        self.db = db

    def collect(self) -> Iterator[Metric]:
        processed = CounterMetricFamily("v2mom_metrics_events_processed_total",
                                        "Events the metrics worker has processed, by source service and type.",
                                        labels=["source", "type"])
        dead = CounterMetricFamily("v2mom_metrics_events_dead_lettered_total",
                                   "Events the metrics worker rejected to its dead-letter queues.",
                                   labels=["source", "type", "reason"])
        lag = HistogramMetricFamily("v2mom_metrics_event_lag_seconds",
                                    "Seconds from an event's time to the metrics worker processing it.",
                                    labels=["source"])
        last = GaugeMetricFamily("v2mom_metrics_last_event_timestamp_seconds",
                                 "Time of the newest event processed from each source (Unix seconds).",
                                 labels=["source"])
        for doc in store.pipeline(self.db):
            source = doc["_id"]
            for event_type, n in sorted((doc.get("processed") or {}).items()):
                processed.add_metric([source, event_type], n)
            for event_type, reasons in sorted((doc.get("dead_lettered") or {}).items()):
                for reason, n in sorted(reasons.items()):
                    dead.add_metric([source, event_type, reason], n)
            lags = doc.get("lag") or {}
            if lags.get("count"):
                lag.add_metric([source], _lag_buckets(lags.get("buckets") or {}), lags.get("sum", 0.0))
            if doc.get("last_event_time"):
                last.add_metric([source], doc["last_event_time"].timestamp())
        yield processed
        yield dead
        yield lag
        yield last


def _lag_buckets(stored: dict) -> list[tuple[str, float]]:
    running, buckets = 0, []
    for bound, key in zip(list(pipeline.LAG_BUCKETS) + ["+Inf"], pipeline.LAG_KEYS):
        running += stored.get(key, 0)
        buckets.append((str(float(bound)) if bound != "+Inf" else "+Inf", running))
    return buckets


class CycleCollector(Collector):
    """Each cycle's first day and the day after its last, for alerts such as "three weeks in"."""

    def __init__(self, calendar: CycleCalendar):
        self.calendar = calendar

    def collect(self) -> Iterator[Metric]:
        start = GaugeMetricFamily("v2mom_cycle_start_timestamp_seconds",
                                  "Start of each cycle: 00:00 UTC of its first day (Unix seconds).", labels=["cycle"])
        end = GaugeMetricFamily("v2mom_cycle_end_timestamp_seconds",
                                "End of each cycle: 00:00 UTC of the day after its last (Unix seconds).", labels=["cycle"])
        for cycle in self.calendar.cycles():
            start.add_metric([cycle.id], cycle.start.timestamp())
            end.add_metric([cycle.id], cycle.end.timestamp())
        yield start
        yield end


class CascadeCollector(Collector):
    """Methods of published V2MOMs that nothing aligned beneath supports, per org unit and cycle (cascade.py)."""

    def __init__(self, db: Database):
        self.db = db

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "v2mom_unsupported_parent_methods",
            "Methods of published company, department and team V2MOMs that no published V2MOM aligned beneath "
            "supports, per org unit and cycle (only where there are some).", labels=["org_unit", "cycle"])
        totals: dict[tuple[str, str], int] = {}
        for doc in store.unsupported_parent_methods(self.db):
            key = (doc["org_unit_id"], doc["cycle_id"])
            totals[key] = totals.get(key, 0) + doc["unsupported"]
        for (unit, cycle), count in sorted(totals.items()):
            gauge.add_metric([unit, cycle], count)
        yield gauge


class EngagementCopyCollector(Collector):
    """How metrics-api's copy of the engagement text keeps up (rendered.py): per replica, like ``process_*``."""

    def __init__(self, rendered):
        self.rendered = rendered

    def collect(self) -> Iterator[Metric]:
        kinds = ["kind"]
        reads = CounterMetricFamily("v2mom_metrics_engagement_copy_reads_total",
                                    "Reads of the store for this replica's engagement copy: changes (before a scrape "
                                    "or in the background), everything (at start, after a rebuild), reconcile.",
                                    labels=kinds)
        documents = CounterMetricFamily("v2mom_metrics_engagement_copy_documents_read_total",
                                        "Unit and aggregate documents those reads returned.", labels=kinds)
        cpu = CounterMetricFamily("v2mom_metrics_engagement_copy_cpu_seconds_total",
                                  "CPU seconds this replica spent on those reads: decoding, recounting, rendering.",
                                  labels=kinds)
        for kind, stats in self.rendered.reads.items():
            reads.add_metric([kind], stats.reads)
            documents.add_metric([kind], stats.documents)
            cpu.add_metric([kind], stats.cpu_seconds)
        yield reads
        yield documents
        yield cpu
