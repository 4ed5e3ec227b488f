"""Optimistic read-modify-write of one document, guarded by its ``revision``.

The worker changes progress documents and item clocks from several green
threads, and more than one worker may run. Each change reads the document,
decides the new one in Python, and writes it only if nobody wrote in
between; otherwise it reads again and decides again. The events that
announce the change go into the same write (the outbox), so a change and
its event commit together or not at all.

Fields are never stored as ``None``: mongoeco orders null below every date,
so a null ``next_check_at`` would look due. A field that becomes ``None`` is
unset instead.
"""

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from services.platform.core.errors import Aborted
from services.platform.bus.outbox import OUTBOX_FIELD, PENDING_FIELD, new_document_with_events, with_events

REVISION = "revision"
ATTEMPTS = 10
# Losers of a race wait a random while before reading again: retrying at once, the same green threads meet
# again in the same order, and under load one of them loses every round (a handler used to exhaust its
# attempts on a parent V2MOM's progress that its children's events were all updating).
BACKOFF_SECONDS = 0.005
BACKOFF_CAP_SECONDS = 0.2


class WriteConflict(Aborted):
    """Other writers kept winning the race. Transient by nature: the handler's bounded retry tries again,
    and after that the consumer puts the event back in its queue rather than dead-lettering it."""


@dataclass
class Change:
    """The whole new document (without ``_id`` and ``revision``) and the events announcing it."""

    document: dict
    events: list[dict] = field(default_factory=list)


Decide = Callable[[dict | None], Change | None]


def update_versioned(collection: Collection, doc_id: str, decide: Decide, attempts: int = ATTEMPTS) -> Change | None:
    """Applies ``decide(current)`` to one document; ``None`` from decide means nothing to do.

    decide must be a pure function of the document it is given: it may run
    more than once when another writer gets in first.
    """
    for attempt in range(attempts):
        if attempt:
            time.sleep(random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_SECONDS * 2 ** attempt)))
        current = collection.find_one({"_id": doc_id}, {OUTBOX_FIELD: 0, PENDING_FIELD: 0})
        change = decide(current)
        if change is None:
            return None
        if _write(collection, doc_id, current, change):
            return change
    raise WriteConflict(f"{collection.name}/{doc_id}: still conflicting after {attempts} attempts")


def next_revision(current: dict | None) -> int:
    return (current or {}).get(REVISION, 0) + 1


def _write(collection: Collection, doc_id: str, current: dict | None, change: Change) -> bool:
    kept = {key: value for key, value in change.document.items() if value is not None}
    if current is None:
        document = {"_id": doc_id, **kept, REVISION: 1}
        try:
            collection.insert_one(new_document_with_events(document, change.events) if change.events else document)
        except DuplicateKeyError:
            return False  # created meanwhile: decide again on what is there now
        return True
    update = {"$set": {**_changed(current, kept), REVISION: current[REVISION] + 1}}
    dropped = [key for key in current if key not in kept and key not in ("_id", REVISION)]
    if dropped:
        update["$unset"] = {key: "" for key in dropped}
    if change.events:
        update = with_events(update, change.events)
    return collection.update_one({"_id": doc_id, REVISION: current[REVISION]}, update).matched_count == 1


def _changed(current: dict, kept: dict) -> dict:
    # Only what differs travels: progress documents carry lists that rarely all change.
    return {key: value for key, value in kept.items() if current.get(key) != value}
