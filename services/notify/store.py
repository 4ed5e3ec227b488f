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
  from its outbox. An email held for the weekly digest (the person chose ``digest``
  for a digestible kind) is written SKIPPED with ``digest_state: "HELD"``, and
  becomes ``"GATHERED"`` with ``digest_notification_id`` once a digest lists it.
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
- ``items``: each published method and measure, for check-in reminders and the
  digest: ``{_id: "<v2mom id>/<item kind>/<item id>", v2mom_id, item_kind, item_id,
  title, owner_id, org_unit_id, cycle_id, informed_ids, due_at | None (the end of
  its due date, UTC), active, published_at, content_revision, last_checkin_at | None,
  reminder_id}``; ``reminder_id`` names the one ``checkin_reminder`` schedule that
  counts. Kept from goals' v2mom_approved (content) and v2mom_archived, and
  check-ins' checkin_recorded.
- ``checkins``: the check-ins the digest lists: ``{_id: check-in id, v2mom_id,
  item_key, item_kind, item_id, item_title, owner_id (the item's owner, else the
  author), author_id, status, progress_percent, recorded_at}``.
- ``cycles``: each cycle's check-in cadence as check-ins' events carry it, and
  when its quarters end as goals' ``cycle_changed`` / ``cycle_closed`` carry them
  (or goals-api's ``ListCycles``, at revision 0, for a cycle no event named):
  ``{_id: cycle id, cadence: "CADENCE_WEEKLY", quarter_ends: [datetime] (00:00 UTC
  after each quarter's last day), quarter_ids: [the quarters' ids, in the same
  order], cycle_revision, updated_at}``; a cycle not seen yet counts as
  CADENCE_BIWEEKLY (check-ins' default) with no quarters.
- ``stats``: counters the collectors export (collector.py), ``$inc``-ed with
  upsert by notify-worker as it makes the change they count. Enums by their
  proto names (kinds.py), times in UTC. Exactly these shapes:

  - ``{_id: "sent|<KIND>|<CHANNEL>", n}``: deliveries sent (``sent_id``);
  - ``{_id: "failed|<KIND>|<CHANNEL>", n}``: deliveries that failed for good,
    status FAILED, once per delivery, not per try (``failed_id``);
  - ``{_id: "latency|<CHANNEL>", sum, count, buckets: {<key>: n}}``: seconds
    from a delivery's ``created_at`` to its ``sent_at``, once per sent delivery:
    ``sum`` += seconds, ``count`` += 1, and exactly one bucket += 1, the one
    ``latency_key(seconds)`` names (not cumulative; the collector adds them up);
  - ``{_id: "reminders|YYYY-MM-DD", reminded, converted}``: per UTC day a
    check-in reminder was sent (``reminders_id``), ``reminded`` += 1 per item
    reminded, and ``converted`` += 1 on that same day's document when the
    item gets a ``checkin_recorded`` within 48 hours of its reminder (once per
    reminder).

  Delivery statuses are stored as ``PENDING``, ``SENT``, ``FAILED``, ``SKIPPED``
  (the ``DeliveryStatus`` names without their prefix); channels and kinds by
  their full proto names.
- ``processed_events``: consumed event ids, for idempotency.
"""

from pymongo.errors import BulkWriteError

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
ITEMS = "items"
CHECKINS = "checkins"
CYCLES = "cycles"
PROCESSED_EVENTS = "processed_events"

INDEXES = [
    Index(NOTIFICATIONS, [("recipient_id", 1), ("created_at", -1), ("_id", -1)], name="inbox_newest_first"),
    Index(NOTIFICATIONS, [("recipient_id", 1), ("read_at", 1)], name="inbox_unread"),
    Index(DELIVERIES, [("status", 1), ("next_try_at", 1)], name="deliveries_due"),
    Index(DELIVERIES, [("created_at", -1), ("_id", -1)], name="deliveries_newest_first"),
    Index(DELIVERIES, [("recipient_id", 1), ("created_at", -1)], name="deliveries_by_recipient"),
    Index(SCHEDULES, [("state", 1), ("due_at", 1)], name="schedules_due"),
    Index(SUBSCRIPTIONS, [("org_unit_id", 1)], name="subscriptions_by_unit"),
    # reminders and the digest
    Index(SCHEDULES, [("key", 1), ("state", 1)], name="schedules_by_key"),
    Index(SCHEDULES, [("payload.v2mom_id", 1), ("kind", 1), ("state", 1)], name="schedules_by_v2mom"),
    Index(DELIVERIES, [("recipient_id", 1), ("digest_state", 1), ("created_at", 1)], name="deliveries_held_for_digest"),
    Index(PEOPLE, [("manager_id", 1)], name="people_by_manager"),
    Index(V2MOMS, [("approver_id", 1)], name="v2moms_by_approver"),
    Index(ITEMS, [("v2mom_id", 1)], name="items_by_v2mom"),
    Index(ITEMS, [("informed_ids", 1)], name="items_by_informed"),
    Index(ITEMS, [("cycle_id", 1), ("active", 1)], name="items_by_cycle"),
    Index(CHECKINS, [("owner_id", 1), ("recorded_at", 1)], name="checkins_by_owner"),
    Index(CHECKINS, [("item_key", 1), ("recorded_at", 1)], name="checkins_by_item"),
    outbox_index(DELIVERIES),
]

# Delivery statuses as stored (DeliveryStatus names without "DELIVERY_STATUS_").
PENDING, SENT, FAILED, SKIPPED = "PENDING", "SENT", "FAILED", "SKIPPED"

# Delivery latency histogram bounds, seconds; the stored bucket keys have no dots (Mongo paths).
LATENCY_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0)
DUPLICATE_KEY = 11000

LATENCY_KEYS = [repr(bound).replace(".", "_") for bound in LATENCY_BUCKETS] + ["inf"]


def latency_key(seconds: float) -> str:
    """The one bucket of ``latency|<CHANNEL>`` a delivery that took ``seconds`` increments."""
    for bound, key in zip(LATENCY_BUCKETS, LATENCY_KEYS):
        if seconds <= bound:
            return key
    return "inf"


def sent_id(kind: str, channel: str) -> str:
    return f"sent|{kind}|{channel}"


def failed_id(kind: str, channel: str) -> str:
    return f"failed|{kind}|{channel}"


def latency_id(channel: str) -> str:
    return f"latency|{channel}"


def reminders_id(day) -> str:
    """``day``: a date (UTC) or its ISO text."""
    return f"reminders|{day if isinstance(day, str) else day.isoformat()}"


def insert_new(collection, docs: list[dict]) -> set[str]:
    """Inserts ``docs`` in one unordered ``insert_many``; the ids of those inserted. Those whose ``_id`` is taken
    already (a replay) are skipped; any other error is raised."""
    if not docs:
        return set()
    ids = [doc["_id"] for doc in docs]
    try:
        collection.insert_many(docs, ordered=False)
    except BulkWriteError as error:
        errors = error.details.get("writeErrors") or []
        if error.details.get("writeConcernErrors") or any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        taken = {e["index"] for e in errors}
        return {doc_id for index, doc_id in enumerate(ids) if index not in taken}
    return set(ids)
