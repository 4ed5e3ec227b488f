"""Checks on requests that need nothing stored: sizes, formats, ranges, enums.

Each problem is a field violation (INVALID_ARGUMENT) and a client hears about
all of them at once. Limits are the ones named in checkins.proto; the shapes
(ids, text, enums, page sizes) are the kernel's. Checks that need the V2MOM
(milestones of the method, the cycle's dates) are in checkin_rules.py, asked
once the structure is known.
"""

import math
import re
from datetime import datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp

from services.platform.core.clock import from_timestamp
from services.platform.core.errors import Violations
from services.platform.core.paging import page_size
from services.platform.core.validation import check_enum, check_finite, check_id, check_text

from v2mom.v1 import checkins_pb2

CYCLE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,32}\Z")
IDEMPOTENCY_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}\Z")

MAX_COMMENT = 2000
MAX_REASON = 1000
MAX_MILESTONES = 20
MAX_CONFIDENCE = 10
# Clients' clocks run a little ahead of ours; an observation a few seconds
# "in the future" is a clock, not a lie.
CLOCK_SKEW = timedelta(minutes=1)

# What google.protobuf.Timestamp allows: 0001-01-01 to 9999-12-31.
_MIN_SECONDS = -62135596800
_MAX_SECONDS = 253402300799


def check_cycle_id(violations: Violations, field: str, value: str) -> None:
    if not value:
        violations.add(field, "is required")
    elif not CYCLE_ID_PATTERN.match(value):
        violations.add(field, "must be 1-32 characters of letters, digits, '_', '.' or '-'")


def check_status(violations: Violations, value: int, required: bool = True) -> None:
    check_enum(violations, "status", checkins_pb2.CheckinStatus, value, required=required)


def check_percent(violations: Violations, field: str, value: float) -> None:
    if not math.isfinite(value) or not 0 <= value <= 100:
        violations.add(field, "must be a number from 0 to 100")


def check_confidence(violations: Violations, present: bool, value: int, required: bool) -> None:
    if not present:
        if required:
            violations.add("confidence", "is required for a measure (0-10)")
    elif not 0 <= value <= MAX_CONFIDENCE:
        violations.add("confidence", f"must be from 0 to {MAX_CONFIDENCE}")


def check_milestone_ids(violations: Violations, ids) -> None:
    field = "completed_milestone_ids"
    if len(ids) > MAX_MILESTONES:
        violations.max_items(field, ids, MAX_MILESTONES)
        return  # one violation per id of an oversized list would only add noise
    for i, milestone_id in enumerate(ids):
        check_id(violations, f"{field}[{i}]", milestone_id)
    if len(set(ids)) != len(ids):
        violations.add(field, "lists the same milestone twice")


def check_idempotency_key(violations: Violations, key: str) -> None:
    if key and not IDEMPOTENCY_KEY_PATTERN.match(key):
        violations.add("idempotency_key", "must be 1-64 characters of letters, digits, '_', '.', ':' or '-'")


def to_datetime(violations: Violations, field: str, stamp: Timestamp) -> datetime | None:
    """A valid Timestamp as an aware UTC datetime, truncated to what Mongo keeps (milliseconds)."""
    if not (_MIN_SECONDS <= stamp.seconds <= _MAX_SECONDS and 0 <= stamp.nanos < 1_000_000_000):
        violations.add(field, "is not a valid timestamp")
        return None
    return from_timestamp(stamp)


def observe_time(violations: Violations, request, now: datetime) -> datetime | None:
    """The request's observe_time if it sent one (None if not), refused when in the future.

    Within the tolerated skew it is pulled back to now: nothing is stored as
    observed after it was recorded.
    """
    if not request.HasField("observe_time"):
        return None
    observed = to_datetime(violations, "observe_time", request.observe_time)
    if observed is None:
        return None
    if observed > now + CLOCK_SKEW:
        violations.add("observe_time", "is in the future")
        return None
    return min(observed, now)


def time_range(violations: Violations, request) -> tuple[datetime | None, datetime | None]:
    start = to_datetime(violations, "start_time", request.start_time) if request.HasField("start_time") else None
    end = to_datetime(violations, "end_time", request.end_time) if request.HasField("end_time") else None
    if start and end and start >= end:
        violations.add("end_time", "must be after start_time")
    return start, end


# --- one function per request ------------------------------------------------------------


def measure_checkin(request: checkins_pb2.RecordMeasureCheckinRequest, now: datetime) -> datetime | None:
    """Raises INVALID_ARGUMENT; returns the requested observe time (None: now)."""
    violations = Violations()
    check_id(violations, "v2mom_id", request.v2mom_id)
    check_id(violations, "measure_id", request.measure_id)
    check_finite(violations, "value", request.value)
    check_status(violations, request.status)
    check_confidence(violations, request.HasField("confidence"), request.confidence, required=True)
    check_text(violations, "comment", request.comment, MAX_COMMENT)
    check_idempotency_key(violations, request.idempotency_key)
    observed = observe_time(violations, request, now)
    violations.raise_if_any()
    return observed


def method_checkin(request: checkins_pb2.RecordMethodCheckinRequest, now: datetime) -> datetime | None:
    violations = Violations()
    check_id(violations, "v2mom_id", request.v2mom_id)
    check_id(violations, "method_id", request.method_id)
    check_percent(violations, "progress_percent", request.progress_percent)
    check_status(violations, request.status)
    check_text(violations, "comment", request.comment, MAX_COMMENT)
    check_milestone_ids(violations, request.completed_milestone_ids)
    check_idempotency_key(violations, request.idempotency_key)
    observed = observe_time(violations, request, now)
    violations.raise_if_any()
    return observed


def correction(request: checkins_pb2.CorrectCheckinRequest, now: datetime) -> datetime | None:
    violations = Violations()
    check_id(violations, "checkin_id", request.checkin_id)
    check_text(violations, "reason", request.reason, MAX_REASON, required=True)
    if request.HasField("value"):
        check_finite(violations, "value", request.value)
    if request.HasField("progress_percent"):
        check_percent(violations, "progress_percent", request.progress_percent)
    check_status(violations, request.status, required=False)
    check_confidence(violations, request.HasField("confidence"), request.confidence, required=False)
    check_text(violations, "comment", request.comment, MAX_COMMENT)
    check_milestone_ids(violations, request.completed_milestone_ids)
    check_idempotency_key(violations, request.idempotency_key)
    observed = observe_time(violations, request, now)
    violations.raise_if_any()
    return observed


def list_checkins(request: checkins_pb2.ListCheckinsRequest) -> tuple[int, datetime | None, datetime | None]:
    """Returns (page size, start, end)."""
    violations = Violations()
    check_id(violations, "v2mom_id", request.v2mom_id, required=False)
    check_id(violations, "item_id", request.item_id, required=False)
    check_id(violations, "author_id", request.author_id, required=False)
    if not request.v2mom_id and not request.author_id:
        violations.add("v2mom_id", "set v2mom_id, author_id or both")
    if request.item_id and not request.v2mom_id:
        violations.add("item_id", "needs v2mom_id: item ids are unique only within a V2MOM")
    start, end = time_range(violations, request)
    limit = page_size(violations, request.page_size)
    violations.raise_if_any()
    return limit, start, end


def v2mom_id_only(v2mom_id: str) -> None:
    violations = Violations()
    check_id(violations, "v2mom_id", v2mom_id)
    violations.raise_if_any()


def stale_items(request: checkins_pb2.ListStaleItemsRequest) -> int:
    violations = Violations()
    check_id(violations, "owner_id", request.owner_id, required=False)
    check_id(violations, "org_unit_id", request.org_unit_id, required=False)
    if bool(request.owner_id) == bool(request.org_unit_id):
        violations.add("owner_id", "set exactly one of owner_id and org_unit_id")
    limit = page_size(violations, request.page_size)
    violations.raise_if_any()
    return limit


def cycle_settings(request, cadence_required: bool) -> None:
    violations = Violations()
    check_cycle_id(violations, "cycle_id", request.cycle_id)
    if cadence_required:
        check_enum(violations, "cadence", checkins_pb2.Cadence, request.cadence, required=True)
    violations.raise_if_any()
