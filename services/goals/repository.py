"""Storage of V2MOM aggregates: one document each, its latest history entry and its outbox; older entries
in ``revisions``, one document each.

Every change is one conditional update on (_id, revision): the new state, the
history entry and the events commit together or not at all, and a writer
holding a stale revision gets nothing (optimistic concurrency). The V2MOM
keeps only its newest entry (``latest_revision``), so its size is bounded
however often it is edited. Before a change replaces that entry, the entry
is copied to ``revisions`` under (v2mom id, revision): it was committed, so
the copy is idempotent and two racing writers copy the same thing. A crash
after the copy leaves an entry stored twice, never one lost or half-written;
a crash after the V2MOM's write leaves its newest entry in the V2MOM, where
``history`` reads it. Every query on ``v2moms`` and ``revisions`` is built here.
"""

from itertools import islice

from pymongo import ReplaceOne, ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from services.platform.bus.outbox import new_document_with_events, outbox_index, with_events
from services.platform.store.mongo import IN_CHUNK, Index, after_id, find_in

from .lifecycle import ARCHIVED, PUBLISHED, SUBMITTED

V2MOMS = "v2moms"
REVISIONS = "revisions"
MIGRATIONS = "migrations"
REVISIONS_INDEX = "revisions_by_v2mom"
ITEM_PEOPLE = "item_people"

INDEXES = [
    Index(V2MOMS, [("owner_id", 1), ("_id", 1)], name="by_owner"),
    Index(V2MOMS, [("org_unit_id", 1), ("_id", 1)], name="by_org_unit"),
    Index(V2MOMS, [("cycle_id", 1), ("state", 1), ("_id", 1)], name="by_cycle_state"),
    Index(V2MOMS, [("parent_id", 1)], name="by_parent"),
    Index(V2MOMS, [("published_parent_id", 1)], name="by_published_parent"),
    Index(V2MOMS, [("approver_id", 1), ("state", 1), ("_id", 1)], name="by_approver"),
    Index(V2MOMS, [("published_revision", 1), ("_id", 1)], name="by_published"),
    # One live V2MOM per slot (owner or unit, per level and cycle); archiving frees it.
    Index(V2MOMS, [("slot", 1)], name="one_per_slot", unique=True, partial={"slot": {"$exists": True}}),
    Index(V2MOMS, [("create_key", 1)], name="idempotent_create", unique=True, partial={"create_key": {"$exists": True}}),
    # V2MOMs whose parent changed since their last edit (ListV2MOMs parent_changed): only those carry the field.
    Index(V2MOMS, [("parent_changed_at", 1), ("_id", 1)], name="by_parent_changed",
          partial={"parent_changed_at": {"$exists": True}}),
    # Who holds an item (owns a method, measure or obstacle, or is a method's Accountable) in the working copy or
    # the published version: what a leaver hands over (handover.py). Multikey; kept by insert and apply.
    Index(V2MOMS, [(ITEM_PEOPLE, 1), ("_id", 1)], name="by_item_person"),
    outbox_index(V2MOMS),
    Index(REVISIONS, [("v2mom_id", 1), ("revision", 1)], name=REVISIONS_INDEX),
]

# Lists and single reads never need the history or the pending events.
SUMMARY = {"latest_revision": 0, "history": 0, "outbox": 0, "outbox_pending": 0, ITEM_PEOPLE: 0}


class SlotTaken(Exception):
    pass


class DuplicateCreate(Exception):
    pass


class V2MOMRepository:
    def __init__(self, db: Database):
        self.collection = db[V2MOMS]
        self.revisions = db[REVISIONS]

    def insert(self, document: dict, events: list[dict]) -> None:
        document = {**document, ITEM_PEOPLE: item_people(document.get("content"), document.get("published"))}
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

    def history(self, v2mom_id: str, after: int, limit: int) -> list[dict]:
        """Up to ``limit`` history entries after revision ``after``, oldest first (by the revisions index).

        The V2MOM's newest entry is read first: every older one was copied out before it was committed, so
        the collection read next holds them all, whatever commits meanwhile.
        """
        latest = (self.collection.find_one({"_id": v2mom_id}, {"latest_revision": 1}) or {}).get("latest_revision")
        query = {"v2mom_id": v2mom_id, "revision": {"$gt": after}}
        stored = self.revisions.find(query, {"_id": 0, "v2mom_id": 0}).hint(REVISIONS_INDEX)  # never a scan
        entries = {entry["revision"]: entry for entry in stored.sort("revision", 1).limit(limit)}
        if latest and latest["revision"] > after:
            entries.setdefault(latest["revision"], latest)  # the newest, not copied out until the next change
        return [entries[revision] for revision in sorted(entries)][:limit]

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
        wanted = {"latest_revision": 1, **({} if "content" in changes else {"content": 1}),
                  **({} if "published" in changes else {"published.content": 1})}
        current = self.collection.find_one({"_id": v2mom_id, "revision": expected_revision}, wanted)
        if current is None:
            return None
        keep_revisions(self.revisions, v2mom_id, [current["latest_revision"]] if current.get("latest_revision") else [])
        update: dict = {"$set": {**changes, "revision": expected_revision + 1, "latest_revision": history_entry}}
        if "content" in changes or "published" in changes:
            update["$set"][ITEM_PEOPLE] = item_people(changes.get("content", current.get("content")),
                                                      changes.get("published", current.get("published")))
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
        elif len(working_owner_ids) > IN_CHUNK:
            return self._page_for_many_owners(query, working_owner_ids, state, after, limit)
        else:
            query["$or"] = _visible_clauses(working_owner_ids, state)
        return self._page(query, after, limit)

    def _page_for_many_owners(self, query: dict, owner_ids: list[str], state: str | None, after: str | None,
                              limit: int) -> list[dict]:
        """list_page for a caller above more people than one `$in` may name (see store.mongo.IN_CHUNK): their
        working copies by chunks of owners, everyone else's published versions by skipping those owners."""
        working, *public = _visible_clauses([], state)
        del working["owner_id"]
        owners = set(owner_ids)
        wanted = [query["owner_id"]] if "owner_id" in query else owner_ids  # an owner_id filter narrows "mine"
        mine = find_in(self.collection, "owner_id", [o for o in wanted if o in owners],
                       after_id({**query, **working}, after), SUMMARY, ("_id",), limit)
        others: list[dict] = []
        if public:
            del public[0]["owner_id"]
            cursor = self.collection.find(after_id({**query, **public[0]}, after), SUMMARY).sort("_id", 1)
            others = list(islice((doc for doc in cursor if doc["owner_id"] not in owners), limit))
        return sorted(mine + others, key=lambda doc: doc["_id"])[:limit]

    def pending_approval_page(self, approver_ids: list[str], caller_id: str, after: str | None, limit: int) -> list[dict]:
        """Submitted V2MOMs waiting for one of approver_ids ("" is any admin), except the caller's own."""
        query = after_id({"state": SUBMITTED, "owner_id": {"$ne": caller_id}}, after)
        return find_in(self.collection, "approver_id", approver_ids, query, SUMMARY, ("_id",), limit)

    def _page(self, query: dict, after: str | None, limit: int) -> list[dict]:
        return list(self.collection.find(after_id(query, after), SUMMARY).sort("_id", 1).limit(limit))

    def children_of(self, parent_ids: list[str]) -> list[dict]:
        """V2MOMs whose working copy or published version aligns to one of ``parent_ids``, by id."""
        by = (("parent_id", "by_parent"), ("published_parent_id", "by_published_parent"))
        found = {doc["_id"]: doc for field, index in by
                 for doc in find_in(self.collection, field, parent_ids, projection=SUMMARY, index=index)}
        return [found[v2mom_id] for v2mom_id in sorted(found)]

    def holding_items(self, person_id: str, after: str | None, limit: int) -> list[dict]:
        """Live V2MOMs in which the person holds an item (working copy or published version), by id after ``after``."""
        query = after_id({ITEM_PEOPLE: person_id, "state": {"$ne": ARCHIVED}}, after)
        return list(self.collection.find(query, SUMMARY).hint("by_item_person").sort("_id", 1).limit(limit))

    def in_progress_page(self, cycle_id: str, after: str | None, limit: int) -> list[dict]:
        """A cycle's V2MOMs not archived yet, by id (by_cycle_state): what closing the cycle archives."""
        query = after_id({"cycle_id": cycle_id, "state": {"$ne": ARCHIVED}}, after)
        return list(self.collection.find(query, SUMMARY).hint("by_cycle_state").sort("_id", 1).limit(limit))  # never a scan

    def in_slot(self, slot: str) -> dict | None:
        """The live V2MOM holding a slot (one_per_slot), if any."""
        return self.collection.find_one({"slot": slot}, SUMMARY)

    def in_units(self, org_unit_ids: list[str], cycle_id: str) -> list[dict]:
        """A cycle's V2MOMs in any of these org units, by id (by_org_unit, chunked)."""
        return find_in(self.collection, "org_unit_id", org_unit_ids, {"cycle_id": cycle_id}, SUMMARY, ("_id",),
                       index="by_org_unit")

    def mark_parent_changed(self, v2mom_ids: list[str], changed_at) -> int:
        """Marks each V2MOM not edited since ``changed_at`` (and not archived) as having a changed parent; keeps
        the first mark since its last edit, so replays and older events change nothing. The revision stays: this
        is a note for readers, not a change of the V2MOM. Returns how many were marked."""
        query = {"updated_at": {"$lt": changed_at}, "state": {"$ne": ARCHIVED},
                 "parent_changed_at": {"$exists": False}}
        marked = 0
        for v2mom_id in v2mom_ids:
            result = self.collection.update_one({"_id": v2mom_id, **query}, {"$set": {"parent_changed_at": changed_at}})
            marked += result.modified_count
        return marked

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


def keep_revisions(revisions: Collection, v2mom_id: str, entries: list[dict]) -> None:
    """Stores committed history entries under (v2mom id, revision); storing one again changes nothing."""
    if entries:
        revisions.bulk_write([ReplaceOne({"_id": f"{v2mom_id}/{entry['revision']}"},
                                         {**entry, "v2mom_id": v2mom_id}, upsert=True) for entry in entries])


# --- start-up: documents written by older versions ------------------------------------------------------

# Before these, a V2MOM carried every revision in a `history` array, and its published version no parent.
REVISIONS_MOVED = "v2mom_history_to_revisions"
OLD_SHAPE = {"$or": [{"history": {"$exists": True}},
                     {"published_revision": {"$gt": 0}, "published_parent_id": {"$exists": False}}]}


def item_people(content: dict | None, published: dict | None) -> list[str]:
    """Everyone who holds an item of the working copy or the published version (handover.HELD)."""
    from .handover import holders  # the rule lives with the handover; the store keeps its index up to date
    found = holders(content or {}) + holders((published or {}).get("content") or {})
    return sorted(set(found))


ITEM_PEOPLE_ADDED = "v2mom_item_people"


def migrate(db: Database) -> None:
    _migrate_revisions(db)
    _add_item_people(db)


def _add_item_people(db: Database) -> None:
    """V2MOMs stored before ``item_people`` get it once (a marker says so), each conditional on its revision."""
    if db[MIGRATIONS].find_one({"_id": ITEM_PEOPLE_ADDED}):
        return
    for _ in range(5):
        old = list(db[V2MOMS].find({ITEM_PEOPLE: {"$exists": False}}, {"content": 1, "published.content": 1,
                                                                         "revision": 1}))
        if not old:
            db[MIGRATIONS].update_one({"_id": ITEM_PEOPLE_ADDED}, {"$set": {"done": True}}, upsert=True)
            return
        for doc in old:
            db[V2MOMS].update_one({"_id": doc["_id"], "revision": doc["revision"]},
                                  {"$set": {ITEM_PEOPLE: item_people(doc.get("content"), doc.get("published"))}})


def _migrate_revisions(db: Database) -> None:
    """Brings V2MOMs of the older shape to today's, once per database (a marker in ``migrations`` says so).

    Idempotent and safe to interrupt: each V2MOM's entries are copied before its array goes, in one write
    conditional on its revision; one a writer changed meanwhile is read again.
    """
    if db[MIGRATIONS].find_one({"_id": REVISIONS_MOVED}):
        return
    for _ in range(5):
        old = list(db[V2MOMS].find(OLD_SHAPE, {"outbox": 0}))
        if not old:
            db[MIGRATIONS].update_one({"_id": REVISIONS_MOVED}, {"$set": {"done": True}}, upsert=True)
            return
        for doc in old:
            _migrate_one(db, doc)


def _migrate_one(db: Database, doc: dict) -> None:
    history = doc.get("history") or []
    keep_revisions(db[REVISIONS], doc["_id"], history)
    change: dict = {"$unset": {"history": ""}, "$set": {}}
    if history:
        change["$set"]["latest_revision"] = history[-1]
    if doc.get("published") and "published_parent_id" not in doc:
        # Older versions kept no published parent: the working copy's is the best there is.
        parent_id = doc.get("parent_id")
        change["$set"].update({"published.parent_id": parent_id, "published_parent_id": parent_id})
    db[V2MOMS].update_one({"_id": doc["_id"], "revision": doc["revision"]}, {k: v for k, v in change.items() if v})
