"""Read-only queries over ``deliveries`` (store.py) for ListDeliveries: newest first, with optional filters.

notify-worker creates and updates deliveries; notify-api only reads them.
Pages resume after (created_at, _id), the order of ``deliveries_newest_first``
(``deliveries_by_recipient`` serves the recipient filter).
"""

from datetime import datetime

from pymongo import DESCENDING
from pymongo.database import Database

from services.platform.store.mongo import matching

from .store import DELIVERIES


class DeliveryLog:
    def __init__(self, db: Database):
        self.deliveries = db[DELIVERIES]

    def page(self, recipient_id: str, status: str, channel: str, after: tuple[datetime, str] | None,
             limit: int) -> list[dict]:
        query = matching(recipient_id=recipient_id, status=status, channel=channel)
        if after is not None:
            created_at, last_id = after
            query["$or"] = [{"created_at": {"$lt": created_at}}, {"created_at": created_at, "_id": {"$lt": last_id}}]
        # The outbox rides on the delivery documents; a log reader never needs it.
        cursor = (self.deliveries.find(query, {"outbox": 0})
                  .sort([("created_at", DESCENDING), ("_id", DESCENDING)]).limit(limit))
        return list(cursor)
