"""Time as every service stores it: timezone-aware UTC, whole milliseconds.

MongoDB keeps milliseconds. Truncating before comparing means a time read
back from the store equals the one that was written, so a replayed event
compares equal instead of looking a microsecond newer.
"""

from datetime import UTC, date, datetime

from google.protobuf import timestamp_pb2
from google.type import date_pb2


def utc_now() -> datetime:
    return to_millis(datetime.now(UTC))


def to_millis(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def from_timestamp(stamp: timestamp_pb2.Timestamp) -> datetime:
    return to_millis(stamp.ToDatetime(tzinfo=UTC))


def to_timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC))
    return stamp


def to_date_proto(value: str | date | None) -> date_pb2.Date:
    """An ISO date (or a date) as google.type.Date; the empty Date for None or ""."""
    if not value:
        return date_pb2.Date()
    day = date.fromisoformat(value) if isinstance(value, str) else value
    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


def from_date_proto(value: date_pb2.Date) -> date | None:
    """The date, or None for the empty Date; ValueError for an impossible one (2026-02-30)."""
    if (value.year, value.month, value.day) == (0, 0, 0):
        return None
    return date(value.year, value.month, value.day)
