"""A cycle as check-ins count it: whole UTC days, checked in at a cadence. Pure, no I/O.

Goals names a cycle by its first and last day (both inclusive); check-ins
open as the first day begins and close as the last one ends, in UTC. Each
cycle has a check-in cadence (stored in ``cycle_settings``, biweekly unless
an admin set another): an item goes stale one cadence after its last
check-in. A cycle may be cut into quarters (goals says); then a check-in
counts for its own quarter only: an item goes stale at the end of the
quarter of its last check-in if that comes before one cadence has passed,
so every quarter's review starts from check-ins made in it.
"""

from datetime import UTC, date, datetime, time, timedelta

from v2mom.v1 import checkins_pb2

DEFAULT_CADENCE = "CADENCE_BIWEEKLY"
CADENCE_DAYS = {"CADENCE_WEEKLY": 7, "CADENCE_BIWEEKLY": 14, "CADENCE_MONTHLY": 30}


def cycle_window(first_day: date, last_day: date) -> tuple[datetime, datetime]:
    """[first day 00:00 UTC, the day after the last 00:00 UTC)."""
    return _midnight(first_day), _midnight(last_day + timedelta(days=1))


def quarter_ends(quarters) -> tuple[datetime, ...]:
    """The moments the quarters end (00:00 UTC after each one's last day), in order; quarters as (first, last)."""
    return tuple(sorted(_midnight(last + timedelta(days=1)) for _, last in quarters))


def last_day(end_exclusive: datetime) -> date:
    """The last day of a window that ends at ``end_exclusive``."""
    return (end_exclusive - timedelta(days=1)).date()


def cadence_name(raw) -> str:
    """A cadence as stored or sent (enum name, number, or 'weekly'); the default when unset."""
    if isinstance(raw, int) and not isinstance(raw, bool) and raw in checkins_pb2.Cadence.values():
        raw = checkins_pb2.Cadence.Name(raw)
    if isinstance(raw, str):
        name = raw.upper() if raw.upper().startswith("CADENCE_") else f"CADENCE_{raw.upper()}"
        if name in CADENCE_DAYS:
            return name
    return DEFAULT_CADENCE


def cadence_length(cadence: str) -> timedelta:
    return timedelta(days=CADENCE_DAYS[cadence_name(cadence)])


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)
