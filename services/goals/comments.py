"""Storage of the discussion on V2MOMs: the ``comments`` collection, one document per comment, its outbox.

A comment keeps its earlier texts in ``edits`` (bounded: discussion.MAX_EDITS)
and a deleted one stays as a tombstone, so its thread keeps its shape. Every
change is conditional on the comment's ``revision``; the new comment and its
``comment_added`` event are one insert. Every query on ``comments`` is built here.
"""

from pymongo import ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from services.platform.bus.outbox import new_document_with_events, outbox_index
from services.platform.store.mongo import Index, after_id

COMMENTS = "comments"
BY_V2MOM = "comments_by_v2mom"
BY_ITEM = "comments_by_item"

INDEXES = [
    Index(COMMENTS, [("v2mom_id", 1), ("_id", 1)], name=BY_V2MOM),
    Index(COMMENTS, [("v2mom_id", 1), ("item_id", 1), ("_id", 1)], name=BY_ITEM),
    # A retried AddComment (caller + request_id) finds the comment it made.
    Index(COMMENTS, [("create_key", 1)], name="idempotent_comment", unique=True,
          partial={"create_key": {"$exists": True}}),
    outbox_index(COMMENTS),
]

SHOWN = {"outbox": 0, "outbox_pending": 0, "create_key": 0}


class CommentStore:
    def __init__(self, db: Database):
        self.collection = db[COMMENTS]

    def get(self, comment_id: str) -> dict | None:
        return self.collection.find_one({"_id": comment_id}, SHOWN)

    def find_by_create_key(self, key: str) -> dict | None:
        return self.collection.find_one({"create_key": key}, SHOWN)

    def insert(self, document: dict, events: list[dict]) -> dict:
        """Stores the comment with its events; a replayed create key gets the first comment back."""
        try:
            self.collection.insert_one(new_document_with_events(document, events))
        except DuplicateKeyError:
            if not document.get("create_key"):
                raise
            return self.find_by_create_key(document["create_key"])
        return {k: v for k, v in document.items() if k not in SHOWN}

    def page(self, v2mom_id: str, item_id: str, published_only: bool, after: str | None, limit: int) -> list[dict]:
        """Oldest first (ids are time-ordered), on one V2MOM or one of its items; by the index that fits."""
        query: dict = {"v2mom_id": v2mom_id}
        if item_id:
            query["item_id"] = item_id
        if published_only:
            query["on_published"] = True
        cursor = self.collection.find(after_id(query, after), SHOWN).hint(BY_ITEM if item_id else BY_V2MOM)
        return list(cursor.sort("_id", 1).limit(limit))

    def change(self, comment_id: str, expected_revision: int, fields: dict, prior: dict) -> dict | None:
        """Sets ``fields`` and keeps ``prior`` (the text replaced) in its edits; None if it changed meanwhile."""
        return self.collection.find_one_and_update(
            {"_id": comment_id, "revision": expected_revision},
            {"$set": {**fields, "revision": expected_revision + 1}, "$push": {"edits": prior}},
            projection=SHOWN, return_document=ReturnDocument.AFTER,
        )
