"""The inbox: each person's ``notifications`` (store.py), newest first, and marking them read.

notify-worker writes notifications; this side only reads them and sets
``read_at``. Pages resume after (created_at, _id) of the last row shown, the
order of the ``inbox_newest_first`` index, so a notification arriving while a
client pages never shifts the pages it has not read yet.
"""

from datetime import datetime, UTC

from pymongo import DESCENDING
from pymongo.database import Database

from services.platform.store.mongo import find_in, update_in

from .store import NOTIFICATIONS

UNREAD = {"read_at": None}  # matches a missing read_at too


class Inbox:
    def __init__(self, db: Database):
        self.notifications = db[NOTIFICATIONS]

    def page(self, recipient_id: str, unread_only: bool, after: tuple[datetime, str] | None, limit: int) -> list[dict]:
        """Up to ``limit`` notifications, newest first, after the position ``after`` (None: from the newest)."""
        query = {"recipient_id": recipient_id, **(UNREAD if unread_only else {})}
        if after is not None:
            created_at, last_id = after
            query["$or"] = [{"created_at": {"$lt": created_at}}, {"created_at": created_at, "_id": {"$lt": last_id}}]
        cursor = self.notifications.find(query).sort([("created_at", DESCENDING), ("_id", DESCENDING)]).limit(limit)
        return list(cursor)

    def unread_count(self, recipient_id: str) -> int:
        return self.notifications.count_documents({"recipient_id": recipient_id, **UNREAD})

    def owned(self, recipient_id: str, ids: list[str]) -> set[str]:
        """Which of ``ids`` are this person's notifications."""
        found = find_in(self.notifications, "_id", ids, {"recipient_id": recipient_id}, {"_id": 1})
        return {doc["_id"] for doc in found}

    def mark_read(self, recipient_id: str, ids: list[str] | None, now: datetime) -> int:
        """Marks the unread ones of ``ids`` (None: the whole inbox) read at ``now``; how many were unread."""
        query, change = {"recipient_id": recipient_id, **UNREAD}, {"$set": {"read_at": now}}
        if ids is not None:
            return update_in(self.notifications, "_id", ids, query, change)
        return self.notifications.update_many(query, change).modified_count


def position(doc: dict) -> list:
    """A page token's position for a notification: its creation time (ms since the epoch) and id."""
    return [int(doc["created_at"].timestamp() * 1000), doc["_id"]]


def parse_position(value) -> tuple[datetime, str] | None:
    """The (created_at, _id) a token's position names; None if it is not one ``position`` made."""
    if (not isinstance(value, list) or len(value) != 2 or not isinstance(value[0], int)
            or isinstance(value[0], bool) or not isinstance(value[1], str)):
        return None
    try:
        return datetime.fromtimestamp(value[0] / 1000, UTC), value[1]
    except (OverflowError, OSError, ValueError):
        return None
