"""Structural checks every service makes on requests: ids, text sizes, enums, numbers, dates.

Each problem is added to a Violations (INVALID_ARGUMENT, every problem at
once). Domain limits (how long a vision may be) stay in each service; these
are only the shapes.
"""

import math
import re
from datetime import date

from google.type import date_pb2

from .clock import from_date_proto
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
