"""Page tokens and page sizes, one scheme for every list RPC.

A token is opaque to clients: base64 of {"f": fingerprint of the list's name
and filters, "p": the position to resume after}. A token only works for the
list and the filters it was issued for, so a token of another list, or of the
same list with other filters, is refused instead of silently skipping or
repeating rows. Whatever a client sends, the answer is a position of the type
the caller expects, or INVALID_ARGUMENT: never a decoding error.
"""

import base64
import binascii
import hashlib
import json

from .errors import FieldViolation, InvalidArgument, Violations

MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 50
MAX_TOKEN_LENGTH = 1024


def page_size(violations: Violations, value: int, maximum: int = MAX_PAGE_SIZE,
              default: int = DEFAULT_PAGE_SIZE) -> int:
    """The page size to use: 0 means the default; outside 0..maximum is a violation."""
    if value < 0 or value > maximum:
        violations.add("page_size", f"must be between 0 and {maximum}")
    return value or default


def encode_token(list_name: str, filters, position) -> str:
    payload = json.dumps({"f": _fingerprint(list_name, filters), "p": position}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode()


def decode_token(token: str, list_name: str, filters, position_type: type | tuple = (str, int, float, list)):
    """The position in ``token``, or None for no token; INVALID_ARGUMENT for anything this list did not issue."""
    if not token:
        return None
    if len(token) > MAX_TOKEN_LENGTH:
        raise bad_token()
    try:
        payload = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        raise bad_token() from None
    if not isinstance(payload, dict) or payload.get("f") != _fingerprint(list_name, filters):
        raise bad_token()
    position = payload.get("p")
    # bool is an int to Python; no list ever resumes after True.
    if not isinstance(position, position_type) or isinstance(position, bool):
        raise bad_token()
    return position


def next_token(list_name: str, filters, rows: list, limit: int, position_of) -> str:
    """The token after the last row shown when more than ``limit`` rows came back ("" on the last page)."""
    return encode_token(list_name, filters, position_of(rows[limit - 1])) if len(rows) > limit else ""


def bad_token() -> InvalidArgument:
    return InvalidArgument([FieldViolation("page_token", "is not a token this list issued for these filters")])


def _fingerprint(list_name: str, filters) -> str:
    return hashlib.sha256(json.dumps([list_name, filters], sort_keys=True, default=str).encode()).hexdigest()[:16]
