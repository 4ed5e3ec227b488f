"""The notify database: its collections, their indexes and document shapes.

Every collection belongs to notify alone. Ids are derived from what caused
them (sha256 of the cause), so a redelivered event or a replayed timer finds
the document it wrote before instead of writing a second one.

- ``notifications`` (the inbox): ``{_id, recipient_id, kind, title, body, link,
  v2mom_id, item_id, cause_event_id, created_at, read_at | None, facts: {...}}``
- ``deliveries``: one per (notification, channel, target): ``{_id, notification_id,
  recipient_id, kind, channel, target, status: PENDING|SENT|FAILED|SKIPPED, tries,
  last_error, created_at, next_try_at, sent_at, lease_until, cause_event_id,
  v2mom_id, outbox...}``. The relay publishes notification_sent / notification_failed
  from its outbox.
- ``preferences``: see kinds.py.
- ``subscriptions``: webhook subscriptions ``{_id, org_unit_id, url, format, kinds,
  secret, previous_secret, previous_secret_expires_at, disabled_at, disabled_reason,
  created_at, created_by}``.
- ``schedules``: persisted timers (approval SLA reminders and escalations, check-in
  reminders, item escalations, weekly digests): ``{_id, kind, due_at, state:
  WAITING|DONE|CANCELLED, lease_until, payload: {...}, created_at, done_at}``.
- ``people``: notify's copy of the directory, kept from goals' person_upserted
  events and filled from goals-api on a miss.
- ``v2moms``: the published structure notify needs (owner, approver, RACI,
  items), kept from goals' v2mom_* events.
- ``stats``: counters the collectors export, ``$inc``-ed in the same write as
  the change they count.
- ``processed_events``: consumed event ids, for idempotency.
"""

from services.platform.bus.outbox import outbox_index
from services.platform.store.mongo import Index

NOTIFICATIONS = "notifications"
DELIVERIES = "deliveries"
PREFERENCES = "preferences"
SUBSCRIPTIONS = "subscriptions"
SCHEDULES = "schedules"
PEOPLE = "people"
V2MOMS = "v2moms"
STATS = "stats"
PROCESSED_EVENTS = "processed_events"

INDEXES = [
    Index(NOTIFICATIONS, [("recipient_id", 1), ("created_at", -1), ("_id", -1)], name="inbox_newest_first"),
    Index(NOTIFICATIONS, [("recipient_id", 1), ("read_at", 1)], name="inbox_unread"),
    Index(DELIVERIES, [("status", 1), ("next_try_at", 1)], name="deliveries_due"),
    Index(DELIVERIES, [("created_at", -1), ("_id", -1)], name="deliveries_newest_first"),
    Index(DELIVERIES, [("recipient_id", 1), ("created_at", -1)], name="deliveries_by_recipient"),
    Index(SCHEDULES, [("state", 1), ("due_at", 1)], name="schedules_due"),
    Index(SUBSCRIPTIONS, [("org_unit_id", 1)], name="subscriptions_by_unit"),
    outbox_index(DELIVERIES),
]
