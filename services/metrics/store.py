"""The metrics database: what each collection holds, its indexes, and the guarded increment.

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
    control     {_id: "rebuild", running, started_at}

Every document an event touches is found by _id; the only other queries are
the owner lookup on a person's move, metrics-api's reads of what changed since
its last (by ``changed``, the store's time of the write), and its whole-collection
reads when it starts or reconciles.
"""

import hashlib

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from services.platform.store.mongo import Index

UNITS = "units"
PEOPLE = "people"
V2MOMS = "v2moms"
AGGREGATES = "aggregates"
HISTORY = "history"
PIPELINE = "pipeline"
CONTROL = "control"

# How many applied deltas a target remembers. A delta is re-sent only when a
# worker died between applying it and acking its event, and the redelivery
# comes within seconds: far fewer deltas than this reach one target meanwhile.
TARGET_MEMORY = 128

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
]

# A scrape never needs the idempotency memory.
WITHOUT_MEMORY = {"recent": 0}


def short_id(text: str) -> str:
    """16 hex characters: the idempotency memories stay small, and small documents are cheap to rewrite."""
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def delta_id(message_id: str, source: str) -> str:
    """Stable: the same message from the same entity always gets the same id."""
    return short_id(f"{message_id}/{source}")


def aggregate_id(unit_id: str, cycle_id: str) -> str:
    return f"{unit_id}|{cycle_id}"


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
