"""Planning cycles: a fiscal year, optionally cut into quarters, open until it is closed. Pure rules, no store.

A cycle's days are whole UTC days, first and last both inclusive (stored as
ISO dates). Quarters sit inside their cycle, in order and without overlap:
check-ins follow them. Cycles do not overlap each other, so "the current
cycle" of a moment is one cycle. Closing a cycle is final: no V2MOM is
created in it or copied into it afterwards.
"""

from datetime import date

from services.platform.core.errors import FailedPrecondition, PreconditionViolation, Violations
from services.platform.core.validation import check_date, check_id

from v2mom.v1 import common_pb2

MAX_CYCLE_ID = 32
MAX_QUARTERS = 4


def check_cycle(violations: Violations, prefix: str, cycle: common_pb2.Cycle) -> None:
    """A cycle as CreateCycle takes it: id, both dates in order, quarters inside it."""
    _check_cycle_id(violations, f"{prefix}.id", cycle.id)
    start = _required_date(violations, f"{prefix}.start_date", cycle.start_date)
    end = _required_date(violations, f"{prefix}.end_date", cycle.end_date)
    if start and end and start > end:
        violations.add(f"{prefix}.end_date", "must not be before start_date")
    check_quarters(violations, prefix, cycle.quarters, start, end)


def check_quarters(violations: Violations, prefix: str, quarters, start: date | None, end: date | None) -> None:
    violations.max_items(f"{prefix}.quarters", quarters, MAX_QUARTERS)
    if len(quarters) > MAX_QUARTERS:
        return
    seen: set[str] = set()
    previous_end: date | None = None
    for i, quarter in enumerate(quarters):
        path = f"{prefix}.quarters[{i}]"
        _check_cycle_id(violations, f"{path}.id", quarter.id)
        if quarter.id in seen:
            violations.add(f"{path}.id", f"duplicate quarter id {quarter.id!r}")
        seen.add(quarter.id)
        first = _required_date(violations, f"{path}.start_date", quarter.start_date)
        last = _required_date(violations, f"{path}.end_date", quarter.end_date)
        if not (first and last):
            continue
        if first > last:
            violations.add(f"{path}.end_date", "must not be before start_date")
        if start and end and not (start <= first and last <= end):
            violations.add(path, f"must lie inside the cycle ({start} to {end})")
        if previous_end and first <= previous_end:
            violations.add(f"{path}.start_date", "must start after the quarter before it ends")
        previous_end = last


def _check_cycle_id(violations: Violations, field: str, value: str) -> None:
    check_id(violations, field, value)
    violations.max_len(field, value, MAX_CYCLE_ID)


def _required_date(violations: Violations, field: str, value) -> date | None:
    if not (value.year or value.month or value.day):
        violations.add(field, "is required")
        return None
    return check_date(violations, field, value)


def days(doc: dict) -> tuple[date, date]:
    return date.fromisoformat(doc["start_date"]), date.fromisoformat(doc["end_date"])


def overlapping(cycle_id: str, start: date, end: date, others: list[dict]) -> list[str]:
    """Ids of the other cycles sharing a day with [start, end]."""
    return [o["_id"] for o in others if o["_id"] != cycle_id and days(o)[0] <= end and start <= days(o)[1]]


def require_no_overlap(cycle_id: str, start: date, end: date, others: list[dict]) -> None:
    clashes = overlapping(cycle_id, start, end, others)
    if clashes:
        raise FailedPrecondition(
            f"cycle {cycle_id!r} ({start} to {end}) would overlap {', '.join(clashes[:3])}; cycles may not share days",
            [PreconditionViolation("CYCLE_OVERLAP", c, "shares days with this cycle") for c in clashes[:3]],
        )


def containing(cycles: list[dict], day: date) -> dict | None:
    """The cycle whose days include ``day`` (the latest-starting one, should stored data ever overlap)."""
    found = [c for c in cycles if days(c)[0] <= day <= days(c)[1]]
    return max(found, key=lambda c: c["start_date"]) if found else None


def current(cycles: list[dict], day: date) -> dict | None:
    """The cycle planning happens in on ``day``: the one containing it, or, once that one was closed early,
    the cycle its close opened (and so on, should that one be closed too)."""
    found = containing(cycles, day)
    by_id = {c["_id"]: c for c in cycles}
    for _ in range(len(cycles)):  # a chain of closes never loops, but stored data must not hang us
        if found is None or not is_closed(found) or found.get("next_cycle_id") not in by_id:
            break
        found = by_id[found["next_cycle_id"]]
    return found


def quarter_of(cycle: dict, day: date) -> dict | None:
    for quarter in cycle.get("quarters") or []:
        if date.fromisoformat(quarter["start_date"]) <= day <= date.fromisoformat(quarter["end_date"]):
            return quarter
    return None


def is_closed(cycle: dict) -> bool:
    return cycle.get("closed_at") is not None


def require_open(cycle: dict, doing: str) -> None:
    """FAILED_PRECONDITION for work (``doing``: "create V2MOMs in") that a closed cycle no longer takes."""
    if is_closed(cycle):
        raise FailedPrecondition(
            f"cycle {cycle['_id']!r} is closed; cannot {doing} it (its next cycle is {cycle.get('next_cycle_id') or 'unset'})",
            [PreconditionViolation("CYCLE_CLOSED", cycle["_id"], "the cycle is closed")],
        )
