"""The metrics database: the only module that names its collections and builds queries on them.

    units       {_id: unit id, revision, name, level, parent_id,       org projection (revision guard)
                 members, recent, changed}                             headcount, from person deltas
    people      {_id, v, state, unit, recent: [{id, d: deltas}]}       see model.py and ledger.py
    v2moms      {_id, v, state, unit, recent, owner_id, individual}    unit: the one it counts for
    aggregates  {_id: "<unit>|<cycle>", unit, cycle, <counters>, recent, changed}
                counters: with_v2mom, v2moms.<state>, submitted, approved, pending.<epoch s>,
                tta.buckets.<le>, tta.sum, tta.count, checkins.<ISO week>, published,
                covered.<cadence days>.<day>, items, stale, overdue, measures, off_track,
                progress (sum of %), unit_tree (sum of %), unit_v2moms
    history     {_id: "<unit>|<cycle>", unit, cycle, weeks: {<ISO week>: summable}}
    pipeline    {_id: source, processed.<type>, dead_lettered.<type>.<reason>, last_event_time,
                 lag.buckets.<le>, lag.sum, lag.count}
    control     {_id: "rebuild", holder, expires_at, started_at}

Every document an event touches is found by _id; the only other queries are
the owner lookup on a person's move, metrics-api's reads of what changed since
its last (by ``changed``, the store's time of the write), and its whole-collection
reads when it starts or reconciles. The use cases (ledger, rendered, history,
pipeline, control, rebuild, service) call the functions below, grouped by what
they serve; what the documents mean stays with them and with model.py.
"""

import hashlib
from datetime import datetime

from pymongo import DeleteMany, ReplaceOne, UpdateOne
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from services.platform.store.mongo import Index, find_in, matching, upsert_if

from . import cascade
from .org import OrgTree

UNITS = "units"
PEOPLE = "people"
V2MOMS = "v2moms"
AGGREGATES = "aggregates"
HISTORY = "history"
PIPELINE = "pipeline"
CONTROL = "control"
# Published V2MOMs' methods and supports, for the cascading gauge (cascade.py).
METHOD_SUPPORT = "method_support"
# Each cycle's quarters as goals' cycle events name them: coverage counts a check-in for its own quarter only.
CYCLES = "cycles"

# How many applied deltas a target remembers. A delta is re-sent only when a
# worker died between applying it and acking its event, and the redelivery
# comes within seconds: far fewer deltas than this reach one target meanwhile.
TARGET_MEMORY = 128

# Entities remember this many recent changes. An event applied but not acked when
# a worker dies comes back at the head of its queue; meanwhile at most the other
# messages in flight (nameko's prefetch: 10) and those beside it after the restart
# can have changed the same entity, far fewer than this.
ENTITY_MEMORY = 32

# Aggregates and units carry the store's time of their last change, so metrics-api re-reads only what changed
# (rendered.py). The store's clock, not the writer's: worker replicas' clocks may disagree.
CHANGED = "changed"
CHANGED_NOW = {CHANGED: True}

INDEXES = [
    # A person's move re-attributes their individual V2MOMs.
    Index(V2MOMS, [("owner_id", 1), ("_id", 1)], name="by_owner"),
    # Scrapes and history read one cycle's aggregates; lists read a subtree's.
    Index(AGGREGATES, [("cycle", 1), ("unit", 1)], name="by_cycle_unit"),
    Index(HISTORY, [("cycle", 1), ("unit", 1)], name="by_cycle_unit"),
    # metrics-api follows what changed since its last read.
    Index(AGGREGATES, [(CHANGED, 1)], name="by_changed"),
    Index(UNITS, [(CHANGED, 1)], name="by_changed"),
    Index(CYCLES, [(CHANGED, 1)], name="by_changed"),
    # A parent's children (its count follows theirs); a scrape reads only parents with a gap.
    Index(METHOD_SUPPORT, [("parent_id", 1)], name="by_parent"),
    Index(METHOD_SUPPORT, [("unsupported", 1)], name="by_unsupported"),
]

# A scrape never needs the idempotency memory.
WITHOUT_MEMORY = {"recent": 0}
# What places a unit in the org tree; metrics-api's copy also needs what tells a unit and a change.
TREE_FIELDS = {"name": 1, "level": 1, "parent_id": 1, "members": 1}
UNIT_FIELDS = {**TREE_FIELDS, "revision": 1, CHANGED: 1}

# Bulk writes go in batches of this many operations: a rebuild or a history tick can touch every document.
BATCH = 500


def short_id(text: str) -> str:
    """16 hex characters: the idempotency memories stay small, and small documents are cheap to rewrite."""
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def delta_id(message_id: str, source: str) -> str:
    """Stable: the same message from the same entity always gets the same id."""
    return short_id(f"{message_id}/{source}")


def aggregate_id(unit_id: str, cycle_id: str) -> str:
    return f"{unit_id}|{cycle_id}"


# --- V2MOMs and people, and the increments they send (ledger.py) ---------------------------------------


def entity(db: Database, collection: str, entity_id: str) -> dict | None:
    return db[collection].find_one({"_id": entity_id})


def insert_entity(db: Database, collection: str, entity_id: str, fields: dict, change: dict) -> bool:
    """A new entity at version 1, remembering its first change; False when someone inserted it first."""
    try:
        db[collection].insert_one({"_id": entity_id, "v": 1, **fields, "recent": [change]})
    except DuplicateKeyError:
        return False
    return True


def update_entity(db: Database, collection: str, entity_id: str, version: int, fields: dict, change: dict) -> bool:
    """The new fields and the memory of this change, if the entity is still at ``version``."""
    result = db[collection].update_one(
        {"_id": entity_id, "v": version},
        {"$set": {**fields, "v": version + 1}, "$push": {"recent": {"$each": [change], "$slice": -ENTITY_MEMORY}}},
    )
    return result.modified_count == 1


def person_unit(db: Database, person_id: str) -> str | None:
    doc = db[PEOPLE].find_one({"_id": person_id}, {"state.org_unit_id": 1})
    return (doc or {}).get("state", {}).get("org_unit_id") or None


def individual_v2moms_elsewhere(db: Database, owner_id: str, unit: str) -> list[str]:
    """Ids of the owner's individual V2MOMs counted anywhere but ``unit`` (index ``by_owner``)."""
    rows = db[V2MOMS].find({"owner_id": owner_id, "individual": True, "unit": {"$ne": unit}}, {"_id": 1})
    return [row["_id"] for row in rows]


def bump(db: Database, collection: str, doc_id: str, applied_id: str, increments: dict, on_insert: dict) -> bool:
    """``$inc`` once: the id is remembered in the same write, and a repeat is refused.

    Returns False when the increment had already been applied.
    """
    guard = {"_id": doc_id, "recent": {"$ne": applied_id}}
    update = {
        "$inc": increments,
        "$currentDate": CHANGED_NOW,
        "$push": {"recent": {"$each": [applied_id], "$slice": -TARGET_MEMORY}},
        "$setOnInsert": on_insert,
    }
    try:
        result = db[collection].update_one(guard, update, upsert=True)
    except DuplicateKeyError:
        # Either the document exists and already remembers the id, or a concurrent
        # upsert created it first: without upsert, the guard tells the two apart.
        result = db[collection].update_one(guard, {key: value for key, value in update.items() if key != "$setOnInsert"})
        return result.modified_count == 1
    return result.modified_count == 1 or result.upserted_id is not None


# --- org units -----------------------------------------------------------------------------------------


def upsert_unit(db: Database, fact: dict) -> bool:
    """Applies an org unit's newest revision; an older or repeated one changes nothing."""
    guard = {"_id": fact["unit_id"], "revision": {"$lt": fact["revision"]}}
    update = {"$set": {key: fact[key] for key in ("revision", "name", "level", "parent_id")},
              "$currentDate": CHANGED_NOW}
    try:
        result = db[UNITS].update_one(guard, update, upsert=True)
    except DuplicateKeyError:
        # It exists (maybe created concurrently by a headcount bump): apply only if newer.
        result = db[UNITS].update_one(guard, update)
        return result.modified_count == 1
    return result.modified_count == 1 or result.upserted_id is not None


def org_tree(db: Database) -> OrgTree:
    """Every unit heard of from goals (revision 0: only through its members, not a unit yet)."""
    return OrgTree.of(db[UNITS].find({"revision": {"$gt": 0}}, TREE_FIELDS))


def units(db: Database) -> list[dict]:
    """Every unit document, placeholders included, with ``UNIT_FIELDS``."""
    return list(db[UNITS].find({}, UNIT_FIELDS))


def units_changed_since(db: Database, since: datetime) -> list[dict]:
    return list(db[UNITS].find({CHANGED: {"$gte": since}}, UNIT_FIELDS))


# --- cycles ---------------------------------------------------------------------------------------------


def upsert_cycle(db: Database, fact: dict) -> bool:
    """A cycle's quarters at its newest revision (``{_id, quarters: [[first day, last day]], revision}``, days
    as ``model.day_key``); an older one changes nothing."""
    guard = {"_id": fact["cycle_id"], "revision": {"$lt": fact["revision"]}}
    update = {"$set": {"quarters": fact["quarters"], "revision": fact["revision"]}, "$currentDate": CHANGED_NOW}
    return upsert_if(db[CYCLES], guard, update)  # False: as new or newer is kept already


CYCLE_FIELDS = {"quarters": 1, CHANGED: 1}


def cycles(db: Database) -> list[dict]:
    """Every cycle document (a handful: one a year)."""
    return list(db[CYCLES].find({}, CYCLE_FIELDS))


def cycles_changed_since(db: Database, since: datetime) -> list[dict]:
    return list(db[CYCLES].find({CHANGED: {"$gte": since}}, CYCLE_FIELDS))


def quarters_of(rows) -> dict[str, list[tuple[str, str]]]:
    """Each cycle with quarters: its (first day, last day) pairs, in order."""
    return {row["_id"]: [tuple(q) for q in row["quarters"]] for row in rows if row.get("quarters")}


def cycle_quarters(db: Database) -> dict[str, list[tuple[str, str]]]:
    return quarters_of(cycles(db))


# --- aggregates ----------------------------------------------------------------------------------------


def aggregates(db: Database, cycle_id: str | None = None, unit_ids: list[str] | None = None) -> list[dict]:
    """Aggregate documents without their memory: all, or one cycle's, or those of some units."""
    query = matching(cycle=cycle_id)
    if unit_ids is not None:
        return find_in(db[AGGREGATES], "unit", unit_ids, query, WITHOUT_MEMORY)
    return list(db[AGGREGATES].find(query, WITHOUT_MEMORY))


def aggregates_changed_since(db: Database, since: datetime) -> list[dict]:
    return list(db[AGGREGATES].find({CHANGED: {"$gte": since}}, WITHOUT_MEMORY))


def unset_zeros(db: Database, aggregate: str, paths: list[str]) -> int:
    """Removes counters at ``paths`` if they are all still zero (a concurrent increment wins); 1 if removed."""
    guard = {"_id": aggregate, **{path: 0 for path in paths}}
    return db[AGGREGATES].update_one(guard, {"$unset": {path: "" for path in paths}}).modified_count


# --- weekly history ------------------------------------------------------------------------------------


def history_ids(db: Database) -> set[str]:
    return {row["_id"] for row in db[HISTORY].find({}, {"_id": 1})}


def write_history_week(db: Database, week: str, snapshots: list[tuple[str, str, dict]]) -> None:
    """Sets each (unit, cycle, counts)'s entry for ``week``, creating the documents that are missing."""
    writes = [UpdateOne({"_id": aggregate_id(unit_id, cycle_id)},
                        {"$set": {f"weeks.{week}": counts}, "$setOnInsert": {"unit": unit_id, "cycle": cycle_id}},
                        upsert=True)
              for unit_id, cycle_id, counts in snapshots]
    for start in range(0, len(writes), BATCH):
        db[HISTORY].bulk_write(writes[start:start + BATCH], ordered=False)


def history(db: Database, cycle_id: str, unit_ids: list[str]) -> list[dict]:
    return find_in(db[HISTORY], "unit", unit_ids, {"cycle": cycle_id}, {"unit": 1, "weeks": 1})


# --- pipeline health -----------------------------------------------------------------------------------


def add_to_pipeline(db: Database, source: str, increments: dict, last_event_time: datetime | None = None) -> None:
    update: dict = {"$inc": increments}
    if last_event_time is not None:
        update["$max"] = {"last_event_time": last_event_time}
    db[PIPELINE].update_one({"_id": source}, update, upsert=True)


def pipeline(db: Database) -> list[dict]:
    """One document per source, by source."""
    return list(db[PIPELINE].find({}).sort("_id", 1))


# --- leases (control.py) -------------------------------------------------------------------------------


def claim_lease(db: Database, name: str, holder: str, now: datetime, expires_at: datetime) -> bool:
    """True if ``holder`` now holds the lease: nobody held it, or their hold expired."""
    claim = {"$set": {"holder": holder, "expires_at": expires_at, "started_at": now}}
    # False: held by someone else
    return upsert_if(db[CONTROL], {"_id": name, "$or": [{"expires_at": {"$lte": now}}, {"holder": None}]}, claim)


def extend_lease(db: Database, name: str, holder: str, expires_at: datetime) -> None:
    db[CONTROL].update_one({"_id": name, "holder": holder}, {"$set": {"expires_at": expires_at}})


def release_lease(db: Database, name: str, holder: str, now: datetime) -> None:
    db[CONTROL].update_one({"_id": name, "holder": holder}, {"$set": {"holder": None, "expires_at": now}})


def lease(db: Database, name: str) -> dict | None:
    return db[CONTROL].find_one({"_id": name})


# --- the rebuild's wholesale rewrite -------------------------------------------------------------------


def known_revisions(db: Database, collection: str, path: str) -> dict[str, int]:
    """Each document's revision at the dotted ``path`` (0 where it has none)."""
    revisions = {}
    for row in db[collection].find({}, {path: 1}):
        value = row
        for part in path.split("."):
            value = (value or {}).get(part)
        revisions[row["_id"]] = int(value or 0)
    return revisions


def entity_versions(db: Database) -> dict[str, int]:
    """The version ``v`` of every person and V2MOM."""
    return {row["_id"]: row.get("v", 0) for name in (PEOPLE, V2MOMS) for row in db[name].find({}, {"v": 1})}


def replace_all(db: Database, collection: str, docs: list[dict]) -> None:
    """The collection becomes ``docs``: each replaced or inserted, every other document deleted."""
    keep = [doc["_id"] for doc in docs]
    operations = [ReplaceOne({"_id": doc["_id"]}, doc, upsert=True) for doc in docs]
    operations.append(DeleteMany({"_id": {"$nin": keep}}))
    for start in range(0, len(operations), BATCH):
        db[collection].bulk_write(operations[start:start + BATCH], ordered=True)


# --- cascading: method_support -----------------------------------------------------------------------


def take_published_methods(db: Database, entry: dict) -> None:
    """Keeps a published V2MOM's methods and supports, then recounts it and its parent. A revision older than
    the one stored (a late or replayed event, or an approval after the archive) changes nothing.

    The cost is the V2MOM's children and its parent's: bounded by the org's fan-out, not by what is stored."""
    fields = {k: v for k, v in entry.items() if k != "_id"}
    if _newer(db, entry["_id"], entry["revision"], fields):
        _recount(db, entry["_id"])
        if entry.get("parent_id"):
            _recount(db, entry["parent_id"])


def archive_published_methods(db: Database, v2mom_id: str, revision: int, parent_id: str | None) -> None:
    """An archived V2MOM counts no gap and supports nothing any more."""
    if _newer(db, v2mom_id, revision, {"revision": revision, "archived": True, "unsupported": 0}) and parent_id:
        _recount(db, parent_id)


def _newer(db: Database, v2mom_id: str, revision: int, fields: dict) -> bool:
    # False: the stored revision is this one or newer
    return upsert_if(db[METHOD_SUPPORT], {"_id": v2mom_id, "revision": {"$lt": revision}}, {"$set": fields})


RECOUNT_TRIES = 5


def _recount(db: Database, v2mom_id: str) -> None:
    """Counts the V2MOM's gaps from what it and its children say now. Worker replicas recount the same parent
    at once (its archive here, a child's approval there), and a count read before another's change can land
    after that one's count: so read again after writing, and count again until nothing moved underneath."""
    support = db[METHOD_SUPPORT]
    for _ in range(RECOUNT_TRIES):
        seen = _cascade_of(support, v2mom_id)
        if seen is None:
            return  # not published (yet): nothing to count
        parent, children = seen
        support.update_one({"_id": v2mom_id}, {"$set": {"unsupported": cascade.unsupported(parent, children)}})
        if _cascade_of(support, v2mom_id) == seen:
            return


def _cascade_of(support, v2mom_id: str) -> tuple[dict, list[dict]] | None:
    """A parent as its count depends on it (not the count itself), and its children, in a fixed order."""
    parent = support.find_one({"_id": v2mom_id}, {"unsupported": 0})
    if parent is None:
        return None
    children = support.find({"parent_id": v2mom_id}, {"supports": 1, "archived": 1, "revision": 1})  # by_parent
    return parent, sorted(children, key=lambda child: child["_id"])


def unsupported_parent_methods(db: Database) -> list[dict]:
    """The V2MOMs with methods nobody beneath supports: org unit, cycle and how many (by_unsupported)."""
    query = {"unsupported": {"$gt": 0}}
    return list(db[METHOD_SUPPORT].find(query, {"org_unit_id": 1, "cycle_id": 1, "unsupported": 1}))  # by_unsupported
