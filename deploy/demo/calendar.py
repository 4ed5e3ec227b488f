"""The demo organisation's calendar: its files, moved forward so that the demo always looks as it did when written.

The demo data (deploy/demo/goals, deploy/demo/checkins) was written on
2026-11-27, for the fiscal year FY2027 (2026-02-01..2027-01-31) with FY2026
before it: ten months into the year, with weeks of check-ins behind it,
methods just past due and the year-end close ahead. The demo keeps that
moment. The loaders pass every YAML document they read through shift(), which
moves every date forward by days_ahead(today): the whole weeks since
2026-11-27. So the demo's "now" always falls between 2026-11-27 and
2026-12-03 as the files see it, and weekdays stay what they were.

Fiscal years are named after the calendar year they end in, so the labels
(FY2027, FY27, fy27 in keys such as fy27-eng) move on by as many years as
FY2027's last day has moved into a later year: once 2027-01-31 + the shift
falls in 2028, FY2027 reads FY2028 and FY2026 reads FY2027. Every date moves
by the same days, so the cycles still follow each other without a gap.
Until 2026-12-04 the shift is zero and the documents come back untouched.

Dates written out in prose ("GA by 30 September 2026", "left in October") stay
as they are: they are sentences to read, and the demo still makes sense with them.

Both the goals and the check-ins demo use this module, which is why it lives in
the shared package: neither service may import the other's modules.
"""

import re
from datetime import UTC, date, datetime, timedelta

# The day the demo files were written: the moment they describe.
WRITTEN_ON = date(2026, 11, 27)
# Their running cycle, FY2027, and its last day, which names it.
BASE_YEAR = 2027
BASE_CYCLE_END = date(2027, 1, 31)

# A fiscal-year label: FY2027, FY27, fy27 (in keys such as fy27-eng); not part of a longer word or number.
_LABEL = re.compile(r"(?<![A-Za-z0-9])(FY|fy)(\d{4}|\d{2})(?!\d)")


def utc_today() -> date:
    return datetime.now(UTC).date()


def days_ahead(today: date | None = None) -> int:
    """How many days the demo's dates move on: the whole weeks from 2026-11-27 to `today`, never fewer than none."""
    today = today or utc_today()
    # Whole weeks, so a Monday in the files is a Monday in the demo.
    return max(0, (today - WRITTEN_ON).days // 7 * 7)


def label_years(days: int) -> int:
    """How many years the fiscal-year labels move on when the dates move `days`: where FY2027's last day lands."""
    return (BASE_CYCLE_END + timedelta(days=days)).year - BASE_CYCLE_END.year


def current_cycle(today: date | None = None) -> str:
    """The id of the demo's running cycle, FY2027 as written: FY2028 once its shifted end falls in 2028, and so on."""
    return f"FY{BASE_YEAR + label_years(days_ahead(today))}"


def shift(document, days: int):
    """A loaded YAML document `days` on: dates moved, fiscal-year labels renamed to match (keys included)."""
    if days == 0:
        return document  # the demo exactly as written
    return _shifted(document, timedelta(days=days), label_years(days))


def _shifted(value, by: timedelta, years: int):
    if isinstance(value, dict):
        return {_shifted(key, by, years): _shifted(item, by, years) for key, item in value.items()}
    if isinstance(value, list):
        return [_shifted(item, by, years) for item in value]
    if isinstance(value, date):  # a datetime is a date too, and keeps its time and zone
        return value + by
    if isinstance(value, str):
        return rename_labels(value, years)
    return value  # numbers and booleans: a random seed of 2027 is not a year to move


def rename_labels(text: str, years: int) -> str:
    """FY2027 -> FY2028, fy27 -> fy28 and so on, every label in the text moved on by the same years."""
    if years == 0:
        return text

    def renamed(match: re.Match) -> str:
        prefix, digits = match.groups()
        year = int(digits) + years
        return f"{prefix}{year:04d}" if len(digits) == 4 else f"{prefix}{year % 100:02d}"

    # One pass, so FY2026 -> FY2027 is not then taken for FY2027 and moved again.
    return _LABEL.sub(renamed, text)
