"""Each person's ``preferences`` (shape in kinds.py) and their time zone from notify's ``people`` copy.

Writes touch only the fields they change, so an UpdatePreferences and a
one-click unsubscribe racing each other both land.
"""

from datetime import datetime

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from .store import PEOPLE, PREFERENCES


class PreferenceStore:
    def __init__(self, db: Database):
        self.preferences = db[PREFERENCES]
        self.people = db[PEOPLE]

    def get(self, person_id: str) -> dict | None:
        return self.preferences.find_one({"_id": person_id})

    def time_zone(self, person_id: str) -> str:
        """The person's IANA zone as the directory last said; "UTC" until it says one."""
        person = self.people.find_one({"_id": person_id}, {"time_zone": 1})
        return (person or {}).get("time_zone") or "UTC"

    def update(self, person_id: str, fields: dict, resubscribed: list[str], now: datetime) -> None:
        """Sets ``fields`` (kinds, quiet_hours); kinds chosen again for email leave ``unsubscribed``."""
        change = {"$set": {**fields, "updated_at": now}}
        if resubscribed:
            change["$pull"] = {"unsubscribed": {"$in": resubscribed}}
        self.preferences.update_one({"_id": person_id}, change, upsert=True)

    def unsubscribe(self, person_id: str, kind: str, now: datetime) -> bool:
        """Turns email off for one kind; False when it already was (idempotent)."""
        try:
            self.preferences.update_one(
                {"_id": person_id, "unsubscribed": {"$ne": kind}},
                {"$addToSet": {"unsubscribed": kind}, "$set": {"updated_at": now}},
                upsert=True,
            )
        except DuplicateKeyError:  # the document exists and already lists the kind: nothing to do
            return False
        return True
