"""The ``notifications`` and ``deliveries`` collections as notify-worker writes them.

- ``create``: a notification (the inbox document) and one delivery per
  channel and target, each with an id derived from its cause, so a replayed
  event or a re-fired schedule writes nothing new and a half-finished create
  is finished by the replay. The inbox delivery is SENT as it is created.
- ``held`` / ``gather``: emails held for the weekly digest (``create`` with
  ``hold_email``: SKIPPED, ``digest_state`` HELD) and their gathering into
  one digest (GATHERED, naming it), both idempotent.
- ``claim_due``: one due PENDING delivery, leased with an atomic
  find_one_and_update, so two worker replicas never both send one.
- ``mark_sent`` / ``mark_retry`` / ``mark_failed`` / ``defer`` / ``skip``: each
  one guarded write of the delivery (by its lease token and PENDING status)
  carrying its ``notification_sent`` / ``notification_failed`` event in the
  outbox; the ``stats`` counter follows only when that write won, so a
  transition is counted at most once (store.py has the shapes).

Delivery documents are shaped as store.py says; ``lease_token`` names the
claim that may finish a delivery, and ``lease_until`` is a time (the creation
time for a delivery never claimed), so "lease expired" is one comparison.
"""

import logging
from datetime import datetime, timedelta

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from services.platform.bus.outbox import new_document_with_events, with_events
from services.platform.core.ids import new_id

from . import kinds
from .events import ERROR_MAX, NOTIFICATION_FAILED, NOTIFICATION_SENT, delivery_event
from .rules import Planned, delivery_id
from .store import (
    DELIVERIES, FAILED, NOTIFICATIONS, PENDING, SENT, SKIPPED, STATS, failed_id, latency_id, latency_key,
    reminders_id, sent_id,
)

log = logging.getLogger(__name__)

# Emails held for the weekly digest (``digest_state``), and why they are SKIPPED.
HELD, GATHERED = "HELD", "GATHERED"
HELD_REASON = "held for the weekly digest"


def inc_stats(db, stat_id: str, fields: dict) -> None:
    db[STATS].update_one({"_id": stat_id}, {"$inc": fields}, upsert=True)


def count_sent(db, delivery: dict, sent_at: datetime) -> None:
    inc_stats(db, sent_id(delivery["kind"], delivery["channel"]), {"n": 1})
    seconds = max((sent_at - delivery["created_at"]).total_seconds(), 0.0)
    inc_stats(db, latency_id(delivery["channel"]),
              {"sum": seconds, "count": 1, f"buckets.{latency_key(seconds)}": 1})


class Deliveries:
    def __init__(self, db):
        self.db = db
        self.notifications = db[NOTIFICATIONS]
        self.collection = db[DELIVERIES]

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
            inc_stats(self.db, reminders_id(now.date()), {"reminded": 1})
        targets = [(channel, email if channel == kinds.EMAIL else plan.recipient_id) for channel in channels]
        targets += [(kinds.WEBHOOK, subscription["_id"]) for subscription in subscriptions]
        for channel, target in targets:
            new |= self.add_delivery(notification, channel, target, now, hold=hold_email and channel == kinds.EMAIL)
        return new

    def add_delivery(self, notification: dict, channel: str, target: str, now: datetime, hold: bool = False) -> bool:
        """One delivery of a stored notification (also used later: an unread escalation's email)."""
        doc = {
            "_id": delivery_id(notification["_id"], channel, target), "notification_id": notification["_id"],
            "recipient_id": notification["recipient_id"], "kind": notification["kind"], "channel": channel,
            "target": target, "status": PENDING, "tries": 0, "last_error": "", "created_at": now,
            "next_try_at": now, "sent_at": None, "lease_until": now,
            "cause_event_id": notification.get("cause_event_id") or "", "v2mom_id": notification.get("v2mom_id") or "",
        }
        if channel == kinds.INBOX:
            doc.update(status=SENT, tries=1, sent_at=now)
            new = self._insert(self.collection, new_document_with_events(doc, [delivery_event(NOTIFICATION_SENT, doc, 1)]))
            if new:
                count_sent(self.db, doc, now)
            return new
        if channel == kinds.EMAIL and not target:
            doc.update(status=SKIPPED, last_error="the directory has no email address for the recipient")
        elif hold:
            doc.update(status=SKIPPED, last_error=HELD_REASON, digest_state=HELD)
        return self._insert(self.collection, doc)

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
        result = self.collection.update_many(
            {"_id": {"$in": delivery_ids}, "digest_state": HELD},
            {"$set": {"digest_state": GATHERED, "digest_notification_id": digest_notification_id, "gathered_at": now}})
        return result.modified_count

    @staticmethod
    def _insert(collection, doc: dict) -> bool:
        try:
            collection.insert_one(doc)
            return True
        except DuplicateKeyError:
            return False

    # --- dispatching ----------------------------------------------------------------------------------

    def claim_due(self, now: datetime, lease_seconds: float) -> dict | None:
        """One due PENDING delivery whose lease (if any) expired, now leased to the caller; None when none is due."""
        return self.collection.find_one_and_update(
            {"status": PENDING, "next_try_at": {"$lte": now}, "lease_until": {"$lte": now}},
            {"$set": {"lease_until": now + timedelta(seconds=lease_seconds), "lease_token": new_id("lease")}},
            sort=[("next_try_at", 1)], return_document=ReturnDocument.AFTER, projection={"outbox": 0},
        )

    def _finish(self, delivery: dict, update: dict, events: list[dict]) -> bool:
        """One guarded write: only the holder of the current lease may move a PENDING delivery."""
        guard = {"_id": delivery["_id"], "status": PENDING, "lease_token": delivery["lease_token"]}
        result = self.collection.update_one(guard, with_events(update, events) if events else update)
        if result.matched_count == 0:
            log.warning("delivery lease lost before it was finished", extra={"delivery_id": delivery["_id"]})
        return result.matched_count == 1

    def mark_sent(self, delivery: dict, now: datetime) -> bool:
        tries = delivery.get("tries", 0) + 1
        won = self._finish(delivery, {
            "$set": {"status": SENT, "sent_at": now, "tries": tries, "last_error": "", "lease_until": now},
        }, [delivery_event(NOTIFICATION_SENT, delivery, tries)])
        if won:
            count_sent(self.db, delivery, now)
        return won

    def mark_retry(self, delivery: dict, error: str, next_try_at: datetime, now: datetime) -> bool:
        return self._finish(delivery, {"$set": {
            "tries": delivery.get("tries", 0) + 1, "last_error": error[:ERROR_MAX], "next_try_at": next_try_at,
            "lease_until": now,
        }}, [])

    def mark_failed(self, delivery: dict, error: str, now: datetime) -> bool:
        tries = delivery.get("tries", 0) + 1
        won = self._finish(delivery, {
            "$set": {"status": FAILED, "tries": tries, "last_error": error[:ERROR_MAX], "lease_until": now,
                     "failed_at": now},
        }, [delivery_event(NOTIFICATION_FAILED, delivery, tries, error)])
        if won:
            inc_stats(self.db, failed_id(delivery["kind"], delivery["channel"]), {"n": 1})
        return won

    def defer(self, delivery: dict, until: datetime, why: str, now: datetime) -> bool:
        """Not a try: quiet hours move the next try without counting one."""
        return self._finish(delivery, {"$set": {"next_try_at": until, "lease_until": now, "deferred_because": why}}, [])

    def skip(self, delivery: dict, why: str, now: datetime) -> bool:
        return self._finish(delivery, {"$set": {"status": SKIPPED, "last_error": why[:ERROR_MAX], "lease_until": now}}, [])

    def notification(self, notification_id: str) -> dict | None:
        return self.notifications.find_one({"_id": notification_id})
