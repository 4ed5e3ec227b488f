"""The ``notifications`` and ``deliveries`` collections as notify-worker writes them.

- ``create``: a notification (the inbox document) and one delivery per
  channel and target, each with an id derived from its cause, so a replayed
  event or a re-fired schedule writes nothing new and a half-finished create
  is finished by the replay. The inbox delivery is SENT as it is created.
- ``held`` / ``gather``: emails held for the weekly digest (``create`` with
  ``hold_email``: SKIPPED, ``digest_state`` HELD) and their gathering into
  one digest (GATHERED, naming it), both idempotent.
- ``due`` / ``claim_many``: the ids of due PENDING deliveries (one query per
  dispatch pass), then all of them leased under one new token in one bulk
  write of updates by ``_id`` that repeat the due conditions, and those the
  token won read back in one query; so two worker replicas never both send
  one. ``claim`` (one, atomically, find_one_and_update) and ``claim_due``
  (the first due) do the same for a single delivery.
- ``mark_sent`` / ``mark_retry`` / ``mark_failed`` / ``defer`` / ``skip`` /
  ``release``: each one guarded write of the delivery (by its lease token and
  PENDING status) carrying its ``notification_sent`` / ``notification_failed``
  event in the outbox; the ``stats`` counter follows only when that write won,
  so a transition is counted at most once (store.py has the shapes). Within
  ``finishing_together`` (a dispatch pass's claimed batch) they are queued and
  written in one unordered bulk write when it ends (``flush_finishes``); the
  winners are then known from the matched count, or, when some lease was lost,
  by reading back which deliveries still carry the claim's token.

Store round trips: a notification's deliveries are inserted with one
``insert_many`` (unordered: a replay's duplicates are told apart by their
index), and the ``stats`` increments of one change go in one unordered bulk
write, folded to one update per stats document (``Stats``). The dispatcher
folds a whole pass's increments and writes them at the end of the pass
(``Deliveries.folding_stats``); in notify-worker the handlers' increments
(an INBOX delivery sent, a reminder) join the same ``Stats`` and go with the
next pass's write (within ``NOTIFY_DISPATCH_INTERVAL_SECONDS``). A crash
before that write loses those counts, never adds one.

Each delivery carries at most one event in its life: the INBOX one is
created SENT with its ``notification_sent``, the others get theirs in the
one write that makes them SENT or FAILED, both final. So the relay may
empty a delivery's outbox in one write (worker.py: ``append_once``).

Delivery documents are shaped as store.py says; ``lease_token`` names the
claim that may finish a delivery, and ``lease_until`` is a time (the creation
time for a delivery never claimed), so "lease expired" is one comparison.
"""

import logging
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime, timedelta

from pymongo import ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError

from services.platform.bus.outbox import new_document_with_events, with_events
from services.platform.core.ids import new_id
from services.platform.store.mongo import find_in, update_in

from . import kinds
from .events import ERROR_MAX, NOTIFICATION_FAILED, NOTIFICATION_SENT, delivery_event
from .rules import Planned, delivery_id
from .store import (
    DELIVERIES, FAILED, NOTIFICATIONS, PENDING, SENT, SKIPPED, STATS, failed_id, latency_id, latency_key,
    insert_new, reminders_id, sent_id,
)

log = logging.getLogger(__name__)

# Emails held for the weekly digest (``digest_state``), and why they are SKIPPED.
HELD, GATHERED = "HELD", "GATHERED"
HELD_REASON = "held for the weekly digest"


def inc_stats(db, stat_id: str, fields: dict) -> None:
    db[STATS].update_one({"_id": stat_id}, {"$inc": fields}, upsert=True)


class Stats:
    """``$inc``s of the ``stats`` collection, folded per document and written by ``flush`` in one bulk write.

    An increment of zero changes nothing and is left out (an INBOX delivery's latency ``sum``)."""

    def __init__(self, db):
        self.collection = db[STATS]
        self.pending: dict[str, dict[str, float]] = {}

    def add(self, stat_id: str, fields: dict) -> None:
        folded = self.pending.setdefault(stat_id, {})
        for field, amount in fields.items():
            folded[field] = folded.get(field, 0) + amount

    def count_sent(self, delivery: dict, sent_at: datetime) -> None:
        self.add(sent_id(delivery["kind"], delivery["channel"]), {"n": 1})
        seconds = max((sent_at - delivery["created_at"]).total_seconds(), 0.0)
        self.add(latency_id(delivery["channel"]), {"sum": seconds, "count": 1, f"buckets.{latency_key(seconds)}": 1})

    def flush(self) -> None:
        pending, self.pending = self.pending, {}
        updates = [UpdateOne({"_id": stat_id}, {"$inc": changed}, upsert=True)
                   for stat_id, fields in pending.items()
                   if (changed := {field: amount for field, amount in fields.items() if amount})]
        if updates:
            self.collection.bulk_write(updates, ordered=False)


def count_sent(db, delivery: dict, sent_at: datetime) -> None:
    stats = Stats(db)
    stats.count_sent(delivery, sent_at)
    stats.flush()


class Deliveries:
    def __init__(self, db, stats: Stats | None = None, fold_stats: bool = False):
        """``stats``: shared with other writers (worker.py shares one between the handlers and the dispatcher);
        ``fold_stats``: always fold, and leave the writing to whoever flushes it (the dispatcher's pass)."""
        self.db = db
        self.notifications = db[NOTIFICATIONS]
        self.collection = db[DELIVERIES]
        self.stats = stats if stats is not None else Stats(db)
        self._always_fold = fold_stats
        self._folding = False
        # (delivery, guarded update, what to do if it wins) while finishing_together; None: write at once.
        self._finishes: list[tuple[dict, dict, Callable[[], None] | None]] | None = None

    @contextmanager
    def folding_stats(self):
        """Within it, stats increments wait and are written in one bulk write when it ends (a dispatch pass)."""
        self._folding = True
        try:
            yield
        finally:
            self._folding = False
            self.stats.flush()

    @contextmanager
    def finishing_together(self):
        """Within it, the guarded writes that finish a delivery wait and go in one bulk write when it ends."""
        self._finishes = []
        try:
            yield
        finally:
            try:
                self.flush_finishes()
            finally:
                self._finishes = None

    def _counted(self) -> None:
        if not (self._folding or self._always_fold):
            self.stats.flush()

    # --- creating ---------------------------------------------------------------------------------

    def create(self, plan: Planned, channels: tuple[str, ...], email: str, subscriptions: list[dict],
               now: datetime, reminder: bool = False, hold_email: bool = False) -> bool:
        """The notification and its deliveries; False when every one of them was there already (a replay).

        ``channels`` are the recipient's personal channels (kinds.channels_for);
        ``subscriptions`` the webhook subscriptions that want this notification.
        ``reminder`` counts it in the day's reminders (store.py, ``reminders|day``).
        ``hold_email`` keeps its email for the weekly digest instead of sending it.
        """
        notification = {
            "_id": plan.id, "recipient_id": plan.recipient_id, "kind": plan.kind, "title": plan.title,
            "body": plan.body, "link": plan.link, "v2mom_id": plan.v2mom_id, "item_id": plan.item_id,
            "cause_event_id": plan.cause_id, "created_at": now, "read_at": None, "facts": plan.facts,
        }
        if reminder:
            notification["reminded_day"] = now.date().isoformat()
        new = self._insert(self.notifications, notification)
        if new and reminder:
            self.stats.add(reminders_id(now.date()), {"reminded": 1})
        targets = [(channel, email if channel == kinds.EMAIL else plan.recipient_id) for channel in channels]
        targets += [(kinds.WEBHOOK, subscription["_id"]) for subscription in subscriptions]
        docs = [self._delivery(notification, channel, target, now, hold=hold_email and channel == kinds.EMAIL)
                for channel, target in targets]
        new |= self._insert_deliveries(docs, now)
        self._counted()
        return new

    def add_delivery(self, notification: dict, channel: str, target: str, now: datetime, hold: bool = False) -> bool:
        """One delivery of a stored notification (also used later: an unread escalation's email)."""
        new = self._insert_deliveries([self._delivery(notification, channel, target, now, hold)], now)
        self._counted()
        return new

    def _insert_deliveries(self, docs: list[dict], now: datetime) -> bool:
        """Inserts them in one command; an INBOX delivery that was new is counted as sent. False when all were there."""
        inserted = self._insert_many(self.collection, docs)
        for doc in docs:
            if doc["_id"] in inserted and doc["channel"] == kinds.INBOX:
                self.stats.count_sent(doc, now)
        return bool(inserted)

    def _delivery(self, notification: dict, channel: str, target: str, now: datetime, hold: bool = False) -> dict:
        doc = {
            "_id": delivery_id(notification["_id"], channel, target), "notification_id": notification["_id"],
            "recipient_id": notification["recipient_id"], "kind": notification["kind"], "channel": channel,
            "target": target, "status": PENDING, "tries": 0, "last_error": "", "created_at": now,
            "next_try_at": now, "sent_at": None, "lease_until": now,
            "cause_event_id": notification.get("cause_event_id") or "", "v2mom_id": notification.get("v2mom_id") or "",
        }
        if channel == kinds.INBOX:
            doc.update(status=SENT, tries=1, sent_at=now)
            return new_document_with_events(doc, [delivery_event(NOTIFICATION_SENT, doc, 1)])
        if channel == kinds.EMAIL and not target:
            doc.update(status=SKIPPED, last_error="the directory has no email address for the recipient")
        elif hold:
            doc.update(status=SKIPPED, last_error=HELD_REASON, digest_state=HELD)
        return doc

    # --- the weekly digest ---------------------------------------------------------------------------

    def held(self, recipient_id: str, until: datetime, digest_notification_id: str) -> list[dict]:
        """The recipient's emails held for a digest before ``until``, and those this digest gathered already
        (a re-fired digest lists the same ones), oldest first."""
        return list(self.collection.find(
            {"recipient_id": recipient_id, "$or": [
                {"digest_state": HELD, "created_at": {"$lt": until}},
                {"digest_state": GATHERED, "digest_notification_id": digest_notification_id}]},
            {"outbox": 0}).sort([("created_at", 1), ("_id", 1)]))

    def gather(self, delivery_ids: list[str], digest_notification_id: str, now: datetime) -> int:
        return update_in(self.collection, "_id", delivery_ids, {"digest_state": HELD}, {"$set": {
            "digest_state": GATHERED, "digest_notification_id": digest_notification_id, "gathered_at": now}})

    @staticmethod
    def _insert(collection, doc: dict) -> bool:
        try:
            collection.insert_one(doc)
            return True
        except DuplicateKeyError:
            return False

    @staticmethod
    def _insert_many(collection, docs: list[dict]) -> set[str]:
        """The ids of those inserted; those already there (a replay) are skipped. Any other error is raised."""
        return insert_new(collection, docs)

    # --- dispatching ----------------------------------------------------------------------------------

    @staticmethod
    def _due(now: datetime) -> dict:
        return {"status": PENDING, "next_try_at": {"$lte": now}, "lease_until": {"$lte": now}}

    def due(self, now: datetime, limit: int) -> list[dict]:
        """Up to ``limit`` due PENDING deliveries whose lease (if any) expired, the longest due first: their
        ``_id`` and ``notification_id`` only (``claim`` reads the rest)."""
        return list(self.collection.find(self._due(now), {"_id": 1, "notification_id": 1})
                    .sort([("next_try_at", 1), ("_id", 1)]).limit(limit))

    def claim(self, delivery_id: str, now: datetime, lease_seconds: float) -> dict | None:
        """That delivery, leased to the caller if it is still due and unleased (by ``_id``, a point read); else None."""
        return self.collection.find_one_and_update(
            {"_id": delivery_id, **self._due(now)},
            {"$set": {"lease_until": now + timedelta(seconds=lease_seconds), "lease_token": new_id("lease")}},
            return_document=ReturnDocument.AFTER, projection={"outbox": 0},
        )

    def claim_many(self, delivery_ids: list[str], now: datetime, lease_seconds: float) -> list[dict]:
        """Those of ``delivery_ids`` still due and unleased, leased to the caller under one new token, in the
        order given: one bulk write (each update by ``_id``, repeating the due conditions) and one read."""
        if not delivery_ids:
            return []
        token = new_id("lease")
        lease = {"$set": {"lease_until": now + timedelta(seconds=lease_seconds), "lease_token": token}}
        self.collection.bulk_write([UpdateOne({"_id": delivery_id, **self._due(now)}, lease)
                                    for delivery_id in delivery_ids], ordered=False)
        won = {doc["_id"]: doc for doc in find_in(self.collection, "_id", delivery_ids,
                                                  {"status": PENDING, "lease_token": token}, {"outbox": 0})}
        return [won[delivery_id] for delivery_id in delivery_ids if delivery_id in won]

    def claim_due(self, now: datetime, lease_seconds: float) -> dict | None:
        """One due PENDING delivery whose lease (if any) expired, now leased to the caller; None when none is due."""
        for due in self.due(now, 1):
            claimed = self.claim(due["_id"], now, lease_seconds)
            if claimed is not None:
                return claimed
        return None

    def _finish(self, delivery: dict, update: dict, events: list[dict],
                on_won: Callable[[], None] | None = None) -> bool | None:
        """One guarded write: only the holder of the current lease may move a PENDING delivery. ``on_won`` runs
        if it wins. None when it is queued (finishing_together): the flush decides."""
        write = with_events(update, events) if events else update
        if self._finishes is not None:
            self._finishes.append((delivery, write, on_won))
            return None
        result = self.collection.update_one(self._guard(delivery), write)
        if result.matched_count == 0:
            log.warning("delivery lease lost before it was finished", extra={"delivery_id": delivery["_id"]})
            return False
        if on_won is not None:
            on_won()
        return True

    @staticmethod
    def _guard(delivery: dict) -> dict:
        return {"_id": delivery["_id"], "status": PENDING, "lease_token": delivery["lease_token"]}

    def flush_finishes(self) -> int:
        """Writes the queued finishes in one unordered bulk write; how many won (their ``on_won`` ran)."""
        queued = self._finishes or []
        if self._finishes is not None:
            self._finishes = []
        if not queued:
            return 0
        result = self.collection.bulk_write([UpdateOne(self._guard(d), write) for d, write, _ in queued],
                                            ordered=False)
        won = queued if result.matched_count == len(queued) else self._still_ours(queued)
        for _, _, on_won in won:
            if on_won is not None:
                on_won()
        return len(won)

    def _still_ours(self, queued: list) -> list:
        """After a bulk finish that matched fewer than it held: those whose write won. A won write leaves the
        claim's token in place; one that lost found another claim's token there (only a claim changes it)."""
        tokens = {d["_id"]: d["lease_token"] for d, _, _ in queued}
        holding = {doc["_id"] for doc in find_in(self.collection, "_id", list(tokens), projection={"lease_token": 1})
                   if doc.get("lease_token") == tokens[doc["_id"]]}
        for delivery, _, _ in queued:
            if delivery["_id"] not in holding:
                log.warning("delivery lease lost before it was finished", extra={"delivery_id": delivery["_id"]})
        return [entry for entry in queued if entry[0]["_id"] in holding]

    def mark_sent(self, delivery: dict, now: datetime) -> bool | None:
        tries = delivery.get("tries", 0) + 1

        def count() -> None:
            self.stats.count_sent(delivery, now)
            self._counted()
        return self._finish(delivery, {
            "$set": {"status": SENT, "sent_at": now, "tries": tries, "last_error": "", "lease_until": now},
        }, [delivery_event(NOTIFICATION_SENT, delivery, tries)], count)

    def mark_retry(self, delivery: dict, error: str, next_try_at: datetime, now: datetime) -> bool | None:
        return self._finish(delivery, {"$set": {
            "tries": delivery.get("tries", 0) + 1, "last_error": error[:ERROR_MAX], "next_try_at": next_try_at,
            "lease_until": now,
        }}, [])

    def mark_failed(self, delivery: dict, error: str, now: datetime) -> bool | None:
        tries = delivery.get("tries", 0) + 1

        def count() -> None:
            self.stats.add(failed_id(delivery["kind"], delivery["channel"]), {"n": 1})
            self._counted()
        return self._finish(delivery, {
            "$set": {"status": FAILED, "tries": tries, "last_error": error[:ERROR_MAX], "lease_until": now,
                     "failed_at": now},
        }, [delivery_event(NOTIFICATION_FAILED, delivery, tries, error)], count)

    def defer(self, delivery: dict, until: datetime, why: str, now: datetime) -> bool | None:
        """Not a try: quiet hours move the next try without counting one."""
        return self._finish(delivery, {"$set": {"next_try_at": until, "lease_until": now, "deferred_because": why}}, [])

    def skip(self, delivery: dict, why: str, now: datetime) -> bool | None:
        return self._finish(delivery, {"$set": {"status": SKIPPED, "last_error": why[:ERROR_MAX], "lease_until": now}}, [])

    def release(self, delivery: dict, now: datetime) -> bool | None:
        """Gives a claimed delivery back unsent (not a try): any replica may claim it again at once."""
        return self._finish(delivery, {"$set": {"lease_until": now}}, [])

    def notification(self, notification_id: str) -> dict | None:
        return self.notifications.find_one({"_id": notification_id})

    def notifications_by_id(self, notification_ids) -> dict[str, dict]:
        """Several notifications in one query (a dispatch pass reads its deliveries' at once); by id."""
        return {doc["_id"]: doc for doc in find_in(self.notifications, "_id", sorted(set(notification_ids)))}

