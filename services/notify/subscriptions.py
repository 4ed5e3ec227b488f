"""Webhook ``subscriptions`` (store.py): created, listed, deleted and their secrets rotated by admins.

notify-worker reads them to fan deliveries out and disables one whose receiver
answers 410 Gone; this side owns the rest.
"""

from datetime import datetime

from pymongo import ASCENDING
from pymongo.database import Database

from services.platform.store.mongo import after_id

from .store import SUBSCRIPTIONS


class SubscriptionStore:
    def __init__(self, db: Database):
        self.subscriptions = db[SUBSCRIPTIONS]

    def insert(self, doc: dict) -> dict:
        self.subscriptions.insert_one(doc)
        return doc

    def same_target(self, org_unit_id: str, url: str, format_name: str) -> dict | None:
        """An existing subscription of this unit to the same URL in the same format (by the unit's index)."""
        for doc in self.subscriptions.find({"org_unit_id": org_unit_id}, {"url": 1, "format": 1}):
            if doc["url"] == url and doc.get("format") == format_name:
                return doc
        return None

    def get(self, subscription_id: str) -> dict | None:
        return self.subscriptions.find_one({"_id": subscription_id})

    def page(self, after: str | None, limit: int) -> list[dict]:
        return list(self.subscriptions.find(after_id({}, after)).sort("_id", ASCENDING).limit(limit))

    def delete(self, subscription_id: str) -> bool:
        return self.subscriptions.delete_one({"_id": subscription_id}).deleted_count == 1

    def rotate(self, subscription_id: str, current: str, new: str, previous_expires_at: datetime) -> dict | None:
        """The subscription with ``new`` signing and ``current`` kept until then; None if another rotation won."""
        result = self.subscriptions.update_one(
            {"_id": subscription_id, "secret": current},
            {"$set": {"secret": new, "previous_secret": current, "previous_secret_expires_at": previous_expires_at}},
        )
        return self.get(subscription_id) if result.matched_count else None
