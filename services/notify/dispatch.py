"""Sending one claimed delivery over its channel, and deciding what happens next.

The dispatcher timer (worker.py) runs passes (``Dispatcher.run_once``), and
a pass runs batches until nothing is due (or its limit is reached, or it
has run for half a lease): the
ids of up to ``NOTIFY_DISPATCH_BATCH`` due PENDING deliveries in one query,
then all of them claimed under one lease (deliveries.Deliveries.claim_many: one bulk write by
``_id``, one read back; a delivery another replica claimed meanwhile is
passed over). What the claimed deliveries need is read once for the batch:
their notifications, the email recipients' preferences, the webhook
subscriptions. Each is then handed to ``Dispatcher.dispatch``, which:

- skips it when its notification is gone, the person turned that mail off
  since it was created, or its webhook subscription was disabled;
- defers it to the end of the recipient's quiet hours (email only; not a try);
- sends it (channels/email.py, channels/webhooks.py; the senders are passed
  in, so tests can use their own);
- then decides, in one guarded write each: SENT (``notification_sent`` in the
  outbox), a retry at ``channels.retry.next_try_delay`` (honouring
  Retry-After), or FAILED after the last try or a permanent refusal
  (``notification_failed``). A 410 Gone also disables the subscription.

The writes that finish the batch's deliveries (SENT with its outbox event,
a retry, FAILED, deferred, skipped) are queued and go in one bulk write when
the batch is done (``Deliveries.finishing_together``), each still guarded by
its lease token, and the stats count only those that won.

Exactly once, as far as a receiver can tell: the send comes before the
write that marks it SENT, so a worker that dies between the two (anywhere in
the batch) leaves those deliveries PENDING with a lease that expires, and
the next claim sends them again, with the same Message-ID (email) or
webhook-id (webhooks), both derived from the delivery id. Receivers
de-duplicate on those ids; each delivery is marked SENT, counted and
announced once.

Two replicas never both send one: after the batch's first delivery, one is
sent only while at least half of the batch's lease is left (a slow receiver
late in a batch must not outlast it, or another replica could claim and
send it too); those left over are released unsent in the batch's write,
and claimed again (by the next pass or any replica) under a lease of their own.
The first always goes, as a delivery claimed alone always did, so a pass
makes progress however slow the store's answers before it were.

Within a batch, emails share one SMTP connection when an ``email_session``
factory is given (worker.py: channels.email.SmtpSession, one per batch,
closed at its end; each send keeps its own deadline, and an error closes the
connection so the next send opens a fresh one). The stats increments of a
batch are folded and written once at its end.
"""

import logging
import os
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from services.platform.core.clock import utc_now
from services.platform.store.mongo import find_in

from . import kinds, unsubscribe
from .channels import Message, PermanentFailure, TemporaryFailure
from .channels.retry import next_try_delay
from .deliveries import Deliveries, Stats
from .directory import People
from .store import PREFERENCES, SUBSCRIPTIONS

log = logging.getLogger(__name__)

# Tests only: seconds to stall after a batch's sends and before they are marked, so a test can kill the worker there.
PAUSE_AFTER_SEND_ENV = "NOTIFY_TEST_PAUSE_AFTER_SEND_SECONDS"


class Dispatcher:
    def __init__(self, db, people: People, send_email: Callable[[Message], None],
                 send_webhook: Callable[[dict, Message], object], settings, now: Callable[[], datetime] = utc_now,
                 sleep: Callable[[float], None] | None = None, email_session: Callable[[], object] | None = None,
                 stats: Stats | None = None):
        """``email_session``: makes an object with ``send(message)`` and ``close()`` that ``run_once`` uses for the
        emails of one batch (one connection); ``send_email`` sends them otherwise. ``stats``: written after every
        batch and at the end of every pass, with whatever others (the handlers) folded into it meanwhile."""
        self.db = db
        self.people = people
        self.send_email = send_email
        self.email_session = email_session
        self._batch_send_email: Callable[[Message], None] | None = None
        self.send_webhook = send_webhook
        self.settings = settings
        self.now = now
        self.deliveries = Deliveries(db, stats)
        # A claimed batch's preferences and webhook subscriptions, by id (None outside a batch: read per delivery).
        self._batch_preferences: dict[str, dict] | None = None
        self._batch_subscriptions: dict[str, dict] | None = None
        self.pause_after_send = float(os.environ.get(PAUSE_AFTER_SEND_ENV) or 0)
        self._sent_in_batch = 0
        self.sleep = sleep

    def run_once(self, limit: int) -> int:
        """Claims and dispatches up to ``limit`` due deliveries, a batch of at most ``settings.dispatch_batch`` at a
        time, until nothing more is due; how many were claimed.

        A backlog (a Monday's reminders, a restart after an outage) drains in one pass at the senders' pace
        instead of one batch per tick. Each batch has its own lease, its own SMTP connection (a relay sees at most
        a batch per connection) and its own stats write, so a long pass holds no count back. No new batch starts
        once the pass has run for half a lease: a slow relay cannot make one pass outlast a stop's grace period."""
        handled = 0
        ends = self.now() + timedelta(seconds=self.settings.lease_seconds / 2)
        with self.deliveries.folding_stats():  # written after each batch, and at the end of every pass (the handlers')
            while handled < limit and (handled == 0 or self.now() < ends):
                claimed = self._run_batch(min(self.settings.dispatch_batch, limit - handled))
                if not claimed:
                    break  # nothing due, or other replicas have it all
                handled += claimed
        return handled

    def _run_batch(self, limit: int) -> int:
        """One batch: claimed under one lease, sent over one SMTP connection, finished in one write; how many."""
        due = self.deliveries.due(self.now(), limit)
        claimed = self.deliveries.claim_many([d["_id"] for d in due], self.now(), self.settings.lease_seconds)
        if not claimed:
            return 0
        session = self.email_session() if self.email_session is not None else None
        self._batch_send_email = session.send if session is not None else None
        try:
            self._dispatch_batch(claimed)
        finally:
            self._batch_send_email = None
            if session is not None:
                session.close()
            self.deliveries.stats.flush()
        return len(claimed)

    def _dispatch_batch(self, claimed: list[dict]) -> None:
        """Deliveries claimed under one lease: what they need read at once, each sent in turn, finished in one write."""
        # What a delivery says never changes once written: its notification is read with the others'.
        notifications = self.deliveries.notifications_by_id(d["notification_id"] for d in claimed)
        self._batch_preferences = self._read_by_id(PREFERENCES, claimed, kinds.EMAIL, "recipient_id")
        self._batch_subscriptions = self._read_by_id(SUBSCRIPTIONS, claimed, kinds.WEBHOOK, "target")
        try:
            with self.deliveries.finishing_together():
                for index, delivery in enumerate(claimed):
                    # The first always goes, as one claimed alone would: a slow store before it cannot stall a pass.
                    if index and not self._lease_left(delivery):
                        self.deliveries.release(delivery, self.now())
                        continue
                    try:
                        self.dispatch(delivery, notifications.get(delivery["notification_id"]))
                    except Exception:  # one broken delivery must not stop the others; its lease expires, it is retried
                        log.exception("delivery dispatch failed", extra={"delivery_id": delivery["_id"]})
                self._pause_for_tests()
        finally:
            self._batch_preferences = self._batch_subscriptions = None

    def _read_by_id(self, collection: str, claimed: list[dict], channel: str, field: str) -> dict[str, dict]:
        """The documents of ``collection`` named by ``field`` of the claimed deliveries of ``channel``, by id."""
        ids = sorted({d[field] for d in claimed if d["channel"] == channel})
        return {doc["_id"]: doc for doc in find_in(self.db[collection], "_id", ids)}

    def _lease_left(self, delivery: dict) -> bool:
        """At least half the lease is left: a send started now ends well before another replica may claim it."""
        return self.now() <= delivery["lease_until"] - timedelta(seconds=self.settings.lease_seconds / 2)

    def _preferences(self, person_id: str) -> dict:
        if self._batch_preferences is not None:
            return self._batch_preferences.get(person_id) or {}
        return self.db[PREFERENCES].find_one({"_id": person_id}) or {}

    def _subscription(self, subscription_id: str) -> dict | None:
        if self._batch_subscriptions is not None:
            return self._batch_subscriptions.get(subscription_id)
        return self.db[SUBSCRIPTIONS].find_one({"_id": subscription_id})

    def dispatch(self, delivery: dict, notification: dict | None = None) -> None:
        """``notification``: the delivery's, when the caller read it already (its title, body, link and facts are
        written once, with it)."""
        now = self.now()
        if notification is None or notification["_id"] != delivery["notification_id"]:
            notification = self.deliveries.notification(delivery["notification_id"])
        if notification is None:
            self.deliveries.skip(delivery, "the notification no longer exists", now)
            return
        if delivery["channel"] == kinds.EMAIL:
            self._email(delivery, notification, now)
        elif delivery["channel"] == kinds.WEBHOOK:
            self._webhook(delivery, notification, now)
        else:
            self.deliveries.skip(delivery, f"no sender for {delivery['channel']}", now)

    # --- channels ------------------------------------------------------------------------------------------

    def _email(self, delivery: dict, notification: dict, now: datetime) -> None:
        preferences = self._preferences(delivery["recipient_id"])
        if delivery["kind"] in set(preferences.get("unsubscribed") or ()):
            self.deliveries.skip(delivery, "the recipient unsubscribed from this kind of mail", now)
            return
        stored = (preferences.get("kinds") or {}).get(delivery["kind"])
        if stored is not None and kinds.EMAIL not in (stored.get("channels") or ()) and delivery["kind"] != kinds.ITEM_ESCALATION:
            self.deliveries.skip(delivery, "the recipient turned email off for this kind", now)
            return
        person = self.people.get(delivery["recipient_id"])
        quiet = kinds.QuietHours.of(preferences)
        if quiet is not None:
            allowed = quiet.next_allowed(now, kinds.zone(person.time_zone if person else None))
            if allowed > now:
                self.deliveries.defer(delivery, allowed, "quiet hours", now)
                return
        message = self._message(delivery, notification, person)
        send_email = self._batch_send_email or self.send_email
        self._send(delivery, now, lambda: send_email(message))

    def _webhook(self, delivery: dict, notification: dict, now: datetime) -> None:
        subscription = self._subscription(delivery["target"])
        if subscription is None or subscription.get("disabled_at"):
            self.deliveries.skip(delivery, "the subscription was deleted or disabled", now)
            return
        message = self._message(delivery, notification, self.people.get(delivery["recipient_id"]))
        self._send(delivery, now, lambda: self.send_webhook(subscription, message), subscription)

    def _message(self, delivery: dict, notification: dict, person) -> Message:
        unsubscribe_url = ""
        if delivery["channel"] == kinds.EMAIL and delivery["kind"] in kinds.UNSUBSCRIBABLE:
            token = unsubscribe.make_token(self.settings.unsubscribe_secret, delivery["recipient_id"], delivery["kind"])
            unsubscribe_url = unsubscribe.unsubscribe_url(self.settings.public_url, token)
        created = notification.get("created_at")
        return Message(
            delivery_id=delivery["_id"], notification_id=notification["_id"], kind=delivery["kind"],
            recipient_id=delivery["recipient_id"], recipient_name=(person.name if person else "") or delivery["recipient_id"],
            recipient_email=delivery["target"] if delivery["channel"] == kinds.EMAIL else (person.email if person else ""),
            title=notification.get("title") or "", body=notification.get("body") or "", link=notification.get("link") or "",
            unsubscribe_url=unsubscribe_url, facts=dict(notification.get("facts") or {}),
            created_at=created.isoformat().replace("+00:00", "Z") if created else "",
        )

    # --- the outcome ------------------------------------------------------------------------------------------

    def _send(self, delivery: dict, started: datetime, send: Callable[[], object], subscription: dict | None = None) -> None:
        tries = delivery.get("tries", 0) + 1
        try:
            try:
                send()
            except (TemporaryFailure, PermanentFailure):
                raise
            except Exception as error:  # a sender's bug must cost a retry, not the delivery
                log.exception("sender raised unexpectedly", extra={"delivery_id": delivery["_id"]})
                raise TemporaryFailure(f"{type(error).__name__}: {error}") from None
        except TemporaryFailure as failure:
            delay = next_try_delay(tries, failure.retry_after)
            now = self.now()
            if delay is None:
                self.deliveries.mark_failed(delivery, f"gave up after {tries} tries: {failure}", now)
            else:
                self.deliveries.mark_retry(delivery, str(failure), now + timedelta(seconds=delay), now)
            return
        except PermanentFailure as failure:
            self.deliveries.mark_failed(delivery, str(failure), self.now())
            if failure.gone and subscription is not None:
                self._disable(subscription, str(failure))
            return
        self._sent_in_batch += 1
        self.deliveries.mark_sent(delivery, self.now())

    def _disable(self, subscription: dict, reason: str) -> None:
        disabled = {"disabled_at": self.now(), "disabled_reason": f"the receiver answered 410 Gone: {reason}"[:500]}
        self.db[SUBSCRIPTIONS].update_one({"_id": subscription["_id"], "disabled_at": None}, {"$set": disabled})
        if self._batch_subscriptions is not None and subscription["_id"] in self._batch_subscriptions:
            self._batch_subscriptions[subscription["_id"]] = {**subscription, **disabled}  # the batch's later ones skip it
        log.warning("webhook subscription disabled: 410 Gone", extra={"subscription_id": subscription["_id"]})

    def _pause_for_tests(self) -> None:
        """Between a batch's sends and the write that marks them, when something was sent."""
        sent, self._sent_in_batch = self._sent_in_batch, 0
        if self.pause_after_send > 0 and sent:
            log.warning("pausing after a send before marking it (test hook)", extra={"sent": sent})
            (self.sleep or time.sleep)(self.pause_after_send)  # green under eventlet
