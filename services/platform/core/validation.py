"""Structural checks every service makes on requests: ids, text sizes, enums, numbers, dates.

Each problem is added to a Violations (INVALID_ARGUMENT, every problem at
once). Domain limits (how long a vision may be) stay in each service; these
are only the shapes.
"""

import math
import re
from datetime import date, datetime

from google.protobuf import timestamp_pb2
from google.type import date_pb2

from .clock import from_date_proto, from_timestamp
from .errors import Violations

# \Z, not $: "$" also matches before a trailing newline, which let "olive\n" pass as an id.
ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")
MAX_ID = 64


def is_id(value) -> bool:
    return isinstance(value, str) and bool(ID_PATTERN.match(value))


def check_id(violations: Violations, field: str, value: str, required: bool = True) -> None:
    if not value:
        if required:
            violations.add(field, "is required")
        return
    if not ID_PATTERN.match(value):
        violations.add(field, "must be 1-64 characters of letters, digits, '_', '.' or '-'")


def check_text(violations: Violations, field: str, value: str, limit: int, required: bool = False) -> None:
    if required and not value.strip():
        violations.add(field, "is required")
    violations.max_len(field, value, limit)


def check_enum(violations: Violations, field: str, enum_type, value: int, required: bool = False) -> None:
    if value not in enum_type.values():
        violations.add(field, f"unknown value {value}")
    elif required and value == 0:
        violations.add(field, "is required")


def check_finite(violations: Violations, field: str, value: float) -> None:
    if not math.isfinite(value):
        violations.add(field, "must be a finite number")


def check_number(violations: Violations, field: str, value: float, low=None, high=None) -> None:
    if not math.isfinite(value):
        violations.add(field, "must be a finite number")
    elif (low is not None and value < low) or (high is not None and value > high):
        violations.add(field, f"must be between {low} and {high}")


def check_date(violations: Violations, field: str, value: date_pb2.Date) -> date | None:
    """The date, None when unset; a violation for an impossible one."""
    try:
        return from_date_proto(value)
    except ValueError:
        violations.add(field, f"is not a valid date ({value.year:04d}-{value.month:02d}-{value.day:02d})")
        return None


# What google.protobuf.Timestamp allows: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
MIN_TIMESTAMP_SECONDS = -62135596800
MAX_TIMESTAMP_SECONDS = 253402300799


def check_timestamp(violations: Violations, field: str, value: timestamp_pb2.Timestamp,
                    required: bool = False, present: bool = True) -> datetime | None:
    """The time as an aware UTC datetime in whole milliseconds; None when unset (``present`` False: a message
    field's HasField) or impossible, with a violation for an impossible one or a required one missing."""
    if not present:
        if required:
            violations.add(field, "is required")
        return None
    if not (MIN_TIMESTAMP_SECONDS <= value.seconds <= MAX_TIMESTAMP_SECONDS and 0 <= value.nanos < 1_000_000_000):
        violations.add(field, "is not a valid timestamp (0001-01-01 to 9999-12-31)")
        return None
    return from_timestamp(value)
