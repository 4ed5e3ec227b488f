"""Readable, sortable string ids (ULIDs): cheaper than ObjectIds on the wire store."""

from ulid import ULID


def new_id(prefix: str) -> str:
    return f"{prefix}_{str(ULID()).lower()}"
