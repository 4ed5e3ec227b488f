"""Times as the check-ins store keeps them: timezone-aware UTC, whole milliseconds.

MongoDB keeps milliseconds. Truncating before comparing means a time read
back from the store equals the one that was written, so a replayed event
compares equal instead of looking a microsecond newer.
"""

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2


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
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp
