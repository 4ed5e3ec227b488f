"""Optimistic read-modify-write of one document, guarded by its ``revision``.

The worker changes progress documents and item clocks from several green
threads, and more than one worker may run. Each change reads the document,
decides the new one in Python, and writes it only if nobody wrote in
between; otherwise it reads again and decides again. The events that
announce the change go into the same write (the outbox), so a change and
its event commit together or not at all.

A writer may remember what it last wrote (``Remembered``): its next change
to the document then decides on that and writes, guarded by the remembered
revision, without reading first (only a decision to write: one to do
nothing is checked against the stored document). Every other writer of these collections
moves the revision (versioned writes, the timer, ``update_many`` with
``$inc``), so a stale memory costs one refused write and a read, never a
lost change; the relay touches only the outbox, which decisions never see.

Fields are never stored as ``None``: mongoeco orders null below every date,
so a null ``next_check_at`` would look due. A field that becomes ``None`` is
unset instead.
"""

import random
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import bson
from bson.codec_options import CodecOptions

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
    # How far the write moves the revision: one per change it stands for (several facts in one write).
    revisions: int = 1


# As the store hands a document back: datetimes in whole milliseconds, UTC (the services' clients are tz_aware).
_AS_STORED = CodecOptions(tz_aware=True)


class Remembered:
    """The last written state of up to ``size`` documents, as a read would return it (without the outbox).

    Bounded, least recently used first out, so memory does not grow with the
    collection. Only green threads (or one OS thread) use one: no lock.
    """

    def __init__(self, size: int = 4096):
        self.size = size
        self._docs: OrderedDict[str, dict] = OrderedDict()

    def get(self, doc_id: str) -> dict | None:
        doc = self._docs.get(doc_id)
        return None if doc is None else bson.decode(doc, _AS_STORED)  # a copy: decide may change what it gets

    def keep(self, doc_id: str, document: dict) -> None:
        # Single dict operations only, each atomic: tests drive one store from several OS threads.
        self._docs.pop(doc_id, None)
        self._docs[doc_id] = bson.encode(document)  # last: the most recently used
        while len(self._docs) > self.size:
            try:
                self._docs.popitem(last=False)
            except KeyError:
                break

    def forget(self, doc_id: str) -> None:
        self._docs.pop(doc_id, None)


Decide = Callable[[dict | None], Change | None]


def update_versioned(collection: Collection, doc_id: str, decide: Decide, attempts: int = ATTEMPTS,
                     memory: Remembered | None = None) -> Change | None:
    """Applies ``decide(current)`` to one document; ``None`` from decide means nothing to do.

    decide must be a pure function of the document it is given: it may run
    more than once when another writer gets in first. With ``memory``, the
    first attempt decides on the remembered document when there is one; a
    refused write then reads, at once (a stale memory is not a race), and so
    does a decision that there is nothing to do, which the memory cannot
    vouch for.
    """
    remembered = memory.get(doc_id) if memory is not None else None
    attempt = 0
    while attempt < attempts:
        if remembered is not None:
            current = remembered
        else:
            if attempt:
                time.sleep(random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_SECONDS * 2 ** attempt)))
            current = collection.find_one({"_id": doc_id}, {OUTBOX_FIELD: 0, PENDING_FIELD: 0})
        change = decide(current)
        if change is None:
            if remembered is not None:
                # Only a write checks the memory (by its guard): "nothing to do" is the stored document's to say.
                # Another writer may have moved it where this fact counts (a correction, an approval).
                remembered = None
                continue
            return None
        written = _write(collection, doc_id, current, change)
        if written is not None:
            if memory is not None:
                memory.keep(doc_id, written)
            return change
        if memory is not None:
            memory.forget(doc_id)
        if remembered is not None:
            remembered = None  # the memory was stale: read, without counting it as a lost race
            continue
        attempt += 1
    raise WriteConflict(f"{collection.name}/{doc_id}: still conflicting after {attempts} attempts")


def next_revision(current: dict | None) -> int:
    return (current or {}).get(REVISION, 0) + 1


def _write(collection: Collection, doc_id: str, current: dict | None, change: Change) -> dict | None:
    """The document as written (without the outbox), or None when another writer got in first."""
    kept = {key: value for key, value in change.document.items() if value is not None}
    if current is None:
        document = {"_id": doc_id, **kept, REVISION: change.revisions}
        try:
            collection.insert_one(new_document_with_events(document, change.events) if change.events else document)
        except DuplicateKeyError:
            return None  # created meanwhile: decide again on what is there now
        return document
    revision = current[REVISION] + change.revisions
    update = {"$set": {**_changed(current, kept), REVISION: revision}}
    dropped = [key for key in current if key not in kept and key not in ("_id", REVISION)]
    if dropped:
        update["$unset"] = {key: "" for key in dropped}
    if change.events:
        update = with_events(update, change.events)
    if collection.update_one({"_id": doc_id, REVISION: current[REVISION]}, update).matched_count != 1:
        return None
    return {"_id": doc_id, **kept, REVISION: revision}


def _changed(current: dict, kept: dict) -> dict:
    # Only what differs travels: progress documents carry lists that rarely all change.
    return {key: value for key, value in kept.items() if current.get(key) != value}
