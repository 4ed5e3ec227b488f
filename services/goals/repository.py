"""Storage of V2MOM aggregates: one document each, carrying its history and outbox.

Every change is one conditional update on (_id, revision): the new state, the
history entry and the events commit together or not at all, and a writer
holding a stale revision gets nothing (optimistic concurrency). Every query
on the ``v2moms`` collection is built here.
"""

from pymongo import ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from services.platform.bus.outbox import new_document_with_events, outbox_index, with_events
from services.platform.store.mongo import Index, after_id, find_in

from .lifecycle import ARCHIVED, PUBLISHED, SUBMITTED

V2MOMS = "v2moms"

INDEXES = [
    Index(V2MOMS, [("owner_id", 1), ("_id", 1)], name="by_owner"),
    Index(V2MOMS, [("org_unit_id", 1), ("_id", 1)], name="by_org_unit"),
    Index(V2MOMS, [("cycle_id", 1), ("state", 1), ("_id", 1)], name="by_cycle_state"),
    Index(V2MOMS, [("parent_id", 1)], name="by_parent"),
    Index(V2MOMS, [("approver_id", 1), ("state", 1), ("_id", 1)], name="by_approver"),
    Index(V2MOMS, [("published_revision", 1), ("_id", 1)], name="by_published"),
    # One live V2MOM per slot (owner or unit, per level and cycle); archiving frees it.
    Index(V2MOMS, [("slot", 1)], name="one_per_slot", unique=True, partial={"slot": {"$exists": True}}),
    Index(V2MOMS, [("create_key", 1)], name="idempotent_create", unique=True, partial={"create_key": {"$exists": True}}),
    outbox_index(V2MOMS),
]

# Lists and single reads never need the history or the pending events.
SUMMARY = {"history": 0, "outbox": 0, "outbox_pending": 0}


class SlotTaken(Exception):
    pass


class DuplicateCreate(Exception):
    pass


class V2MOMRepository:
    def __init__(self, db: Database):
        self.collection = db[V2MOMS]

    def insert(self, document: dict, events: list[dict]) -> None:
        try:
            self.collection.insert_one(new_document_with_events(document, events))
        except DuplicateKeyError:
            # A replayed create collides on both unique indexes, and which one the store
            # names first is up to it: the key decides, so the retry gets its V2MOM back.
            if document.get("create_key") and self.find_by_create_key(document["create_key"]):
                raise DuplicateCreate() from None
            raise SlotTaken() from None

    def get(self, v2mom_id: str) -> dict | None:
        return self.collection.find_one({"_id": v2mom_id}, SUMMARY)

    def find_by_create_key(self, key: str) -> dict | None:
        return self.collection.find_one({"create_key": key}, SUMMARY)

    def history(self, v2mom_id: str) -> list[dict]:
        doc = self.collection.find_one({"_id": v2mom_id}, {"history": 1})
        return doc["history"] if doc else []

    def apply(
        self,
        v2mom_id: str,
        expected_revision: int,
        changes: dict,
        history_entry: dict,
        events: list[dict],
        unset: tuple[str, ...] = (),
    ) -> dict | None:
        """Commits a change made on top of expected_revision; None if someone got there first."""
        update: dict = {
            "$set": {**changes, "revision": expected_revision + 1},
            "$push": {"history": history_entry},
        }
        if unset:
            update["$unset"] = {field: "" for field in unset}
        try:
            return self.collection.find_one_and_update(
                {"_id": v2mom_id, "revision": expected_revision},
                with_events(update, events),
                projection=SUMMARY,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            raise SlotTaken() from None

    def list_page(
        self, filters: dict, state: str | None, working_owner_ids: list[str] | None, after: str | None, limit: int
    ) -> list[dict]:
        """ListV2MOMs: filters are field -> value ("" matches all); working_owner_ids None means an admin, who sees all."""
        query: dict = {field: value for field, value in filters.items() if value}
        if working_owner_ids is None:
            if state:
                query["state"] = state
        else:
            query["$or"] = _visible_clauses(working_owner_ids, state)
        return self._page(query, after, limit)

    def pending_approval_page(self, approver_ids: list[str], caller_id: str, after: str | None, limit: int) -> list[dict]:
        """Submitted V2MOMs waiting for one of approver_ids ("" is any admin), except the caller's own."""
        query = after_id({"state": SUBMITTED, "owner_id": {"$ne": caller_id}}, after)
        return find_in(self.collection, "approver_id", approver_ids, query, SUMMARY, ("_id",), limit)

    def _page(self, query: dict, after: str | None, limit: int) -> list[dict]:
        return list(self.collection.find(after_id(query, after), SUMMARY).sort("_id", 1).limit(limit))

    def children_of(self, parent_ids: list[str]) -> list[dict]:
        return find_in(self.collection, "parent_id", parent_ids, projection=SUMMARY, sort=("_id",))

    def parent_of(self, v2mom_id: str) -> str | None:
        doc = self.collection.find_one({"_id": v2mom_id}, {"parent_id": 1})
        return doc.get("parent_id") if doc else None


def _visible_clauses(working_owner_ids: list[str], state: str | None) -> list[dict]:
    """What a non-admin may list, filtered on the state they will be shown.

    Someone who sees only the published version sees PUBLISHED (or ARCHIVED), never
    the draft behind it, so a state filter must match that, not the stored state.
    """
    working = {"owner_id": {"$in": working_owner_ids}}
    public = {"owner_id": {"$nin": working_owner_ids}, "published_revision": {"$gt": 0}}
    if state:
        working["state"] = state
    if state == PUBLISHED:
        public["state"] = {"$ne": ARCHIVED}
    elif state == ARCHIVED:
        public["state"] = ARCHIVED
    elif state:
        return [working]
    return [working, public]
