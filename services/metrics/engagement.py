"""Engagement as read: stored counters, evaluated at a moment, summed up the org tree.

Everything here is computed from the aggregate documents and the org tree
alone, so the cost of a read is linear in the number of (unit, cycle)
aggregates read and independent of how many events built them. Windows
(trailing check-ins, check-in coverage, pending ages) are evaluated against the
moment of the read from keys stored by week, day or epoch.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from functools import cached_property
from typing import NamedTuple

from . import model
from .org import OrgTree

N_BUCKETS = len(model.TIME_TO_APPROVAL_BUCKETS) + 1
BUCKET_KEYS = [str(b) for b in model.TIME_TO_APPROVAL_BUCKETS] + ["inf"]
DIRECT, SUBTREE = "direct", "subtree"


@dataclass
class Counts:
    """What one unit (or a subtree) has, at one moment. Every field sums, except
    ``oldest_pending`` and ``oldest_open_obstacle`` (minimums) and the unit's own tree progress."""

    headcount: int = 0
    with_v2mom: int = 0
    v2moms: dict[str, int] = field(default_factory=dict)  # state label -> count
    submitted: int = 0
    approved: int = 0
    pending: int = 0
    oldest_pending: float | None = None  # epoch seconds of the oldest pending submission
    tta_buckets: list[int] = field(default_factory=lambda: [0] * N_BUCKETS)  # not cumulative
    tta_sum: float = 0.0
    tta_count: int = 0
    trailing_checkins: int = 0
    week_checkins: int = 0
    published: int = 0
    covered: int = 0
    items: int = 0
    stale: int = 0
    overdue: int = 0
    measures: int = 0
    off_track: int = 0
    progress_sum: float = 0.0
    unit_tree_sum: float = 0.0
    unit_v2moms: int = 0
    open_obstacles: int = 0
    oldest_open_obstacle: float | None = None  # epoch seconds at which the oldest unresolved obstacle opened

    def __iadd__(self, other: "Counts") -> "Counts":
        # Spelled out (a scrape sums one of these per unit and cycle); _SUMMED below checks that it covers every field.
        self.headcount += other.headcount
        self.with_v2mom += other.with_v2mom
        if other.v2moms:
            mine = self.v2moms
            for state, n in other.v2moms.items():
                mine[state] = mine.get(state, 0) + n
        self.submitted += other.submitted
        self.approved += other.approved
        self.pending += other.pending
        theirs = other.oldest_pending
        if theirs is not None and (self.oldest_pending is None or theirs < self.oldest_pending):
            self.oldest_pending = theirs
        self.tta_buckets = [a + b for a, b in zip(self.tta_buckets, other.tta_buckets)]
        self.tta_sum += other.tta_sum
        self.tta_count += other.tta_count
        self.trailing_checkins += other.trailing_checkins
        self.week_checkins += other.week_checkins
        self.published += other.published
        self.covered += other.covered
        self.items += other.items
        self.stale += other.stale
        self.overdue += other.overdue
        self.measures += other.measures
        self.off_track += other.off_track
        self.progress_sum += other.progress_sum
        self.unit_tree_sum += other.unit_tree_sum
        self.unit_v2moms += other.unit_v2moms
        self.open_obstacles += other.open_obstacles
        theirs = other.oldest_open_obstacle
        if theirs is not None and (self.oldest_open_obstacle is None or theirs < self.oldest_open_obstacle):
            self.oldest_open_obstacle = theirs
        return self

    def to_doc(self) -> dict:
        return {spec.name: getattr(self, spec.name) for spec in fields(self)}

    @classmethod
    def from_doc(cls, doc: dict) -> "Counts":
        known = {spec.name for spec in fields(cls)}
        return cls(**{key: value for key, value in doc.items() if key in known})


# Every field __iadd__ handles: adding a field to Counts without summing it there fails here, at import.
_SUMMED = {"headcount", "with_v2mom", "v2moms", "submitted", "approved", "pending", "oldest_pending", "tta_buckets",
           "tta_sum", "tta_count", "trailing_checkins", "week_checkins", "published", "covered", "items", "stale",
           "overdue", "measures", "off_track", "progress_sum", "unit_tree_sum", "unit_v2moms", "open_obstacles",
           "oldest_open_obstacle"}
assert _SUMMED == {spec.name for spec in fields(Counts)}, "Counts.__iadd__ must sum every field"


def _sum(values: dict | None) -> float:
    return sum((values or {}).values())


class Window:
    """The keys a moment's windows select, worked out once per read instead of once per aggregate.

    ``quarters`` (store.cycle_quarters: cycle -> (first day, last day) pairs) bound coverage as checkins
    bounds staleness: a check-in counts for its own quarter only, so on a quarter's first day nothing
    checked in before it covers a V2MOM, however recent.
    """

    __slots__ = ("now", "current", "trailing", "_first_day", "_quarter_start")

    def __init__(self, now: datetime, quarters: dict[str, list[tuple[str, str]]] | None = None):
        self.now = now
        self.current = model.week_key(now)
        self.trailing = tuple(model.week_key(now - timedelta(weeks=k)) for k in range(1, model.TRAILING_WEEKS + 1))
        self._first_day: dict = {}
        today = model.day_key(now)
        self._quarter_start = {cycle: first for cycle, pairs in (quarters or {}).items()
                               for first, last in pairs if first <= today <= last}

    def first_day(self, cadence, cycle: str = "") -> str:
        """The first UTC day within the last ``cadence`` days and the cycle's current quarter, if it has quarters
        (a stored key, so a string of days)."""
        day = self._first_day.get(cadence)
        if day is None:
            day = self._first_day[cadence] = model.day_key(self.now - timedelta(days=int(cadence) - 1))
        return max(day, self._quarter_start.get(cycle, day))


def counts_at(aggregate: dict | None, headcount: int, now: datetime, window: Window | None = None) -> Counts:
    """One unit's own counts for one cycle at ``now``, from its aggregate document."""
    window = window or Window(now)
    get = (aggregate or {}).get
    pending = {int(epoch): n for epoch, n in (get("pending") or {}).items() if n > 0}
    obstacles = {int(epoch): n for epoch, n in (get("open_obstacles") or {}).items() if n > 0}
    tta = get("tta") or {}
    buckets = tta.get("buckets") or {}
    checkins = get("checkins") or {}
    return Counts(
        headcount=headcount,
        with_v2mom=int(get("with_v2mom", 0)),
        v2moms={state: int(n) for state, n in (get("v2moms") or {}).items() if n},
        submitted=int(get("submitted", 0)),
        approved=int(get("approved", 0)),
        pending=int(sum(pending.values())),
        oldest_pending=float(min(pending)) if pending else None,
        tta_buckets=[int(buckets.get(key, 0)) for key in BUCKET_KEYS],
        tta_sum=float(tta.get("sum", 0.0)),
        tta_count=int(tta.get("count", 0)),
        # the 4 weeks looked up, not the stored weeks scanned: flat with the length of the history
        trailing_checkins=int(sum(checkins.get(week, 0) for week in window.trailing)) if checkins else 0,
        week_checkins=int(checkins.get(window.current, 0)),
        published=int(get("published", 0)),
        covered=_covered(get("covered") or {}, now, window, get("cycle", "")),
        items=int(get("items", 0)),
        stale=int(get("stale", 0)),
        overdue=int(get("overdue", 0)),
        measures=int(get("measures", 0)),
        off_track=int(get("off_track", 0)),
        progress_sum=float(get("progress", 0.0)),
        unit_tree_sum=float(get("unit_tree", 0.0)),
        unit_v2moms=int(get("unit_v2moms", 0)),
        open_obstacles=int(sum(obstacles.values())),
        oldest_open_obstacle=float(min(obstacles)) if obstacles else None,
    )


def _covered(by_cadence: dict, now: datetime, window: Window | None = None, cycle: str = "") -> int:
    """Published V2MOMs whose latest check-in falls within the last cadence (to the UTC day), and within the
    current quarter when the cycle has quarters."""
    window = window or Window(now)
    total = 0
    for cadence, by_day in by_cadence.items():
        first_day = window.first_day(cadence, cycle)
        total += sum(n for day, n in by_day.items() if day >= first_day)
    return int(total)


# --- derived rates ------------------------------------------------------------------------------


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


class Rates(NamedTuple):
    """Immutable; a NamedTuple rather than a frozen dataclass because a scrape builds one per unit, cycle and scope."""

    creation: float | None
    approval: float | None
    checkins_per_member_per_week: float | None
    checkin_coverage: float | None
    progress: float | None  # 0-1
    tree_progress: float | None  # 0-1, the unit's own V2MOM
    off_track: float | None


def rates(counts: Counts, own: Counts) -> Rates:
    return Rates(
        ratio(counts.with_v2mom, counts.headcount),  # creation
        ratio(counts.approved, counts.submitted),  # approval
        ratio(counts.trailing_checkins, model.TRAILING_WEEKS * counts.headcount),  # checkins_per_member_per_week
        ratio(counts.covered, counts.published),  # checkin_coverage
        ratio(counts.progress_sum / 100.0, counts.published),  # progress
        ratio(own.unit_tree_sum / 100.0, own.unit_v2moms),  # tree_progress
        ratio(counts.off_track, counts.measures),  # off_track
    )


def pending_age(oldest_pending: float | None, now: float) -> float | None:
    """Seconds the oldest pending submission (epoch seconds) has waited at ``now``; None when nothing is pending."""
    return None if oldest_pending is None else max(0.0, now - oldest_pending)


# --- reading -----------------------------------------------------------------------------------


@dataclass
class View:
    """One unit, cycle and scope: its counts, and its own (direct) counts beside them."""

    unit_id: str
    cycle_id: str
    scope: str
    counts: Counts
    own: Counts
    now: datetime

    @cached_property
    def rates(self) -> Rates:
        return rates(self.counts, self.own)

    @property
    def oldest_pending_age(self) -> float | None:
        """Seconds the oldest pending submission has waited at ``now``; None when nothing is pending."""
        return pending_age(self.counts.oldest_pending, self.now.timestamp())

    @property
    def oldest_open_obstacle_age(self) -> float | None:
        """Seconds the oldest unresolved obstacle has been open at ``now``; None when none is."""
        return pending_age(self.counts.oldest_open_obstacle, self.now.timestamp())


@dataclass
class Snapshot:
    now: datetime
    tree: OrgTree
    # (unit, cycle) -> counts
    direct: dict[tuple[str, str], Counts]
    subtree: dict[tuple[str, str], Counts]
    cycles: list[str]

    def view(self, unit_id: str, cycle_id: str, scope: str) -> View:
        own = self.direct[(unit_id, cycle_id)]
        counts = own if scope == DIRECT else self.subtree[(unit_id, cycle_id)]
        return View(unit_id, cycle_id, scope, counts, own, self.now)


def snapshot(now: datetime, tree: OrgTree, aggregates: Iterable[dict], units: list[str] | None = None,
             cycle_id: str | None = None, quarters: dict[str, list[tuple[str, str]]] | None = None) -> Snapshot:
    """Counts of ``units`` (tree order, parents first; default every unit) for every cycle in ``aggregates``
    (and ``cycle_id`` even without any), direct and subtree; ``quarters`` as Window takes them."""
    units = tree.everything() if units is None else units
    by_key = {(row["unit"], row["cycle"]): row for row in aggregates}
    cycles = sorted({cycle for _, cycle in by_key} | ({cycle_id} if cycle_id else set()))
    direct, subtree = {}, {}
    window = Window(now, quarters)
    for cycle in cycles:
        for unit_id in units:
            direct[(unit_id, cycle)] = counts_at(by_key.get((unit_id, cycle)), tree.units[unit_id].members, now, window)
        for unit_id in reversed(units):  # children before parents
            total = Counts()
            total += direct[(unit_id, cycle)]
            for child in tree.units[unit_id].children:
                total += subtree[(child, cycle)]
            subtree[(unit_id, cycle)] = total
    return Snapshot(now, tree, direct, subtree, cycles)
