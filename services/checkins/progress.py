"""How far a V2MOM has come: pure functions over plain values, no I/O.

progress_store.py feeds these from the stored latest check-ins and the
published structure; service.py derives a check-in's progress with the same
``measure_progress``, so the two never disagree.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

MEASURE = "ITEM_KIND_MEASURE"
METHOD = "ITEM_KIND_METHOD"

INCREASE = "DIRECTION_INCREASE"
DECREASE = "DIRECTION_DECREASE"


def clamp_percent(value: float) -> float:
    return min(100.0, max(0.0, value))


def measure_progress(value: float, baseline: float, target: float, direction: str = INCREASE) -> float:
    """Share of the way from baseline to target, 0-100.

    ``(value - baseline) / (target - baseline)`` already covers decreasing
    measures: both differences change sign. Direction only decides what
    "met" means when there is no distance to cover.
    """
    if target == baseline:
        met = value <= target if direction == DECREASE else value >= target
        return 100.0 if met else 0.0
    return clamp_percent(100.0 * (value - baseline) / (target - baseline))


@dataclass(frozen=True)
class ItemProgress:
    """One measure or method as the roll-up sees it: progress is None until its first check-in."""

    kind: str
    weight: float
    progress: float | None


def weighted_average(pairs: Iterable[tuple[float, float]]) -> float:
    """Average of (weight, value) pairs; equal weights when no weight is set."""
    pairs = list(pairs)
    if not pairs:
        return 0.0
    total_weight = sum(weight for weight, _ in pairs)
    if total_weight <= 0:
        return sum(value for _, value in pairs) / len(pairs)
    return sum(weight * value for weight, value in pairs) / total_weight


def counted_items(items: Iterable[ItemProgress]) -> list[ItemProgress]:
    """The items own progress is made of: the measures, or the methods when there are no measures."""
    items = list(items)
    measures = [item for item in items if item.kind == MEASURE]
    return measures or [item for item in items if item.kind == METHOD]


def own_progress(items: Iterable[ItemProgress]) -> float:
    """A V2MOM's own progress; an item without a check-in counts as 0."""
    return weighted_average((item.weight, item.progress or 0.0) for item in counted_items(items))


@dataclass(frozen=True)
class LinkedItem:
    """A measure or method with what it links to: a measure's methods, a method's values."""

    kind: str
    item_id: str
    links: tuple[str, ...]


def items_behind_value(value_id: str, items: Iterable[LinkedItem]) -> list[LinkedItem]:
    """What a value's progress is made of, as a V2MOM's own progress is (counted_items): the measures linked
    to the value's methods, or those methods when none of them has a measure. Empty for a value no method
    carries out: nothing shows how it is doing."""
    items = list(items)
    methods = [item for item in items if item.kind == METHOD and value_id in item.links]
    method_ids = {item.item_id for item in methods}
    measures = [item for item in items if item.kind == MEASURE and method_ids & set(item.links)]
    return measures or methods


def tree_progress(own: float, has_items: bool, children: Iterable[float]) -> float:
    """Own progress averaged with each counted child's tree progress, equal weights.

    A V2MOM with no measures and no methods has no progress of its own to
    offer, so it does not pull its tree towards zero.
    """
    parts = ([own] if has_items else []) + list(children)
    return sum(parts) / len(parts) if parts else 0.0


def week_start(moment: datetime | date) -> date:
    """Monday of the ISO week the moment falls in."""
    day = moment.date() if isinstance(moment, datetime) else moment
    return day - timedelta(days=day.weekday())
