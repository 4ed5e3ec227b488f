"""Storage of V2MOM templates: the ``templates`` collection, one document each, and every query on it.

A template is configuration an admin writes, not a V2MOM: it has no lifecycle
and publishes no events. Writes are guarded by the template's ``revision``.
"""

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from services.platform.store.mongo import Index, after_id, matching

TEMPLATES = "templates"

INDEXES = [
    Index(TEMPLATES, [("level", 1), ("_id", 1)], name="templates_by_level"),
]


class TemplateStore:
    def __init__(self, db: Database):
        self.collection = db[TEMPLATES]

    def get(self, template_id: str) -> dict | None:
        return self.collection.find_one({"_id": template_id})

    def page(self, level: str, after: str | None, limit: int) -> list[dict]:
        """By id, all levels or one (templates_by_level)."""
        return list(self.collection.find(after_id(matching(level=level), after)).sort("_id", 1).limit(limit))

    def insert(self, document: dict) -> bool:
        """False when the id is taken."""
        try:
            self.collection.insert_one(document)
        except DuplicateKeyError:
            return False
        return True

    def replace(self, document: dict, expected_revision: int) -> bool:
        """False when the template changed (or went) since ``expected_revision``."""
        result = self.collection.replace_one({"_id": document["_id"], "revision": expected_revision}, document)
        return result.modified_count == 1

    def delete(self, template_id: str, expected_revision: int) -> bool:
        return self.collection.delete_one({"_id": template_id, "revision": expected_revision}).deleted_count == 1
