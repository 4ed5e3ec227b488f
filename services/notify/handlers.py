"""What notify-worker does with each event it consumes, and with each schedule that falls due.

Plain methods over the notify database, the people copy and the clock, so
the nameko service (worker.py) stays wiring and tests drive them in
process. Who gets what is decided in rules.py; this module looks people and
V2MOMs up, stores what the rules plan (deliveries.py) and keeps the
schedules (schedules.py).

Every handler is idempotent: notifications, deliveries and schedules have
ids derived from the event (or schedule) that caused them, and the copies
(``people``, ``v2moms``) are written under revision guards, so a replay, or
an older event arriving after a newer one, leaves what one in-order
delivery would. A payload that cannot be read, or a recipient nobody knows,
raises PermanentError before anything is written: the event is
dead-lettered with that reason.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from google.protobuf import json_format
from pymongo import ReturnDocument

from services.platform.core.clock import from_timestamp, to_millis, utc_now
from services.platform.core.config import env_float, env_int, env_str
from services.platform.worker.consumer import PermanentError
from v2mom.v1 import checkins_pb2, common_pb2, events_pb2

from . import kinds, rules, schedules, unsubscribe
from .deliveries import Deliveries, inc_stats
from .directory import People
from .rules import Person
from .schedules import Schedules
from .store import NOTIFICATIONS, PREFERENCES, SUBSCRIPTIONS, V2MOMS, reminders_id

log = logging.getLogger(__name__)

CONVERSION_WINDOW = timedelta(hours=48)


@dataclass(frozen=True)
class WorkerSettings:
    portal_url_template: str = "http://127.0.0.1:8080/v2moms/{v2mom_id}"
    approval_sla_days: int = 5
    escalation_email_after_hours: float = 24.0
    dispatch_interval_seconds: float = 0.5
    schedule_interval_seconds: float = 1.0
    lease_seconds: float = 60.0
    dispatch_batch: int = 50
    send_timeout_seconds: float = 10.0
    allow_private_webhooks: bool = False
    public_url: str = "http://127.0.0.1:9101"
    unsubscribe_secret: str = unsubscribe.DEFAULT_SECRET

    @classmethod
    def from_env(cls) -> "WorkerSettings":
        return cls(
            portal_url_template=env_str("NOTIFY_PORTAL_URL_TEMPLATE", cls.portal_url_template),
            approval_sla_days=env_int("NOTIFY_APPROVAL_SLA_DAYS", cls.approval_sla_days),
            escalation_email_after_hours=env_float("NOTIFY_ESCALATION_EMAIL_AFTER_HOURS", cls.escalation_email_after_hours),
            dispatch_interval_seconds=env_float("NOTIFY_DISPATCH_INTERVAL_SECONDS", cls.dispatch_interval_seconds),
            schedule_interval_seconds=env_float("NOTIFY_SCHEDULE_INTERVAL_SECONDS", cls.schedule_interval_seconds),
            lease_seconds=env_float("NOTIFY_LEASE_SECONDS", cls.lease_seconds),
            dispatch_batch=env_int("NOTIFY_DISPATCH_BATCH", cls.dispatch_batch),
            send_timeout_seconds=env_float("NOTIFY_SEND_TIMEOUT_SECONDS", cls.send_timeout_seconds),
            allow_private_webhooks=env_str("NOTIFY_ALLOW_PRIVATE_WEBHOOKS", "false").lower() in ("1", "true", "yes"),
            public_url=env_str("NOTIFY_PUBLIC_URL", cls.public_url),
            unsubscribe_secret=unsubscribe.secret_from_env(),
        )


def parse_data(envelope: dict, message_class):
    try:
        return json_format.ParseDict(envelope["data"], message_class(), ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, ValueError) as error:
        raise PermanentError(f"{envelope.get('type')} data does not parse as {message_class.__name__}: {error}") from None


def require(condition: bool, what: str, envelope: dict) -> None:
    if not condition:
        raise PermanentError(f"{envelope.get('type')} {envelope.get('id')}: {what}")


def event_time(envelope: dict) -> datetime:
    try:
        return to_millis(datetime.fromisoformat(envelope["time"].replace("Z", "+00:00")))
    except (AttributeError, ValueError):
        raise PermanentError(f"{envelope.get('type')} {envelope.get('id')}: time {envelope.get('time')!r} is not RFC 3339") from None


def _v2mom_view(data: events_pb2.V2MOMEventData, envelope: dict) -> dict:
    """What the rules read of a goals V2MOM event: ids, and the content as proto3 JSON."""
    return {"v2mom_id": data.v2mom_id, "owner_id": data.owner_id, "org_unit_id": data.org_unit_id,
            "content": (envelope["data"].get("content") or {})}


class Notifier:
    def __init__(self, db, people: People, settings: WorkerSettings = WorkerSettings(),
                 now: Callable[[], datetime] = utc_now):
        self.db = db
        self.people = people
        self.settings = settings
        self.now = now
        self.deliveries = Deliveries(db)
        self.schedules = Schedules(db)
        self.v2moms = db[V2MOMS]

    # --- the one way a notification is made ------------------------------------------------------------

    def notify(self, plan: rules.Planned, recipient: Person, reminder: bool = False) -> bool:
        preferences = self.db[PREFERENCES].find_one({"_id": recipient.id})
        channels = kinds.channels_for(preferences, plan.kind)
        subscriptions = [
            subscription for subscription in self.db[SUBSCRIPTIONS].find(
                {"org_unit_id": {"$in": ["", None, plan.org_unit_id]}, "disabled_at": None})
            if rules.subscription_wants(subscription, plan.kind, plan.org_unit_id)
        ]
        return self.deliveries.create(plan, channels, recipient.email, subscriptions, self.now(), reminder=reminder)

    def _recipient(self, person_id: str, role: str, envelope: dict) -> Person:
        require(bool(person_id), f"names no {role}", envelope)
        person = self.people.get(person_id)
        require(person is not None, f"{role} {person_id!r} is unknown to the directory (notify's copy and goals-api)",
                envelope)
        return person

    def _named(self, person_id: str) -> Person:
        """Someone mentioned in a message, not its recipient: their id stands in when nobody knows them."""
        return (self.people.get(person_id) if person_id else None) or Person(id=person_id)

    # --- goals events ---------------------------------------------------------------------------------------

    def person_upserted(self, envelope: dict) -> None:
        data = parse_data(envelope, events_pb2.PersonEventData)
        require(bool(data.person.id), "needs person.id", envelope)
        require(data.revision > 0, "needs a positive revision", envelope)
        self.people.upsert_from_event(envelope["data"]["person"], data.revision)

    def v2mom_submitted(self, envelope: dict) -> None:
        data = self._v2mom_data(envelope)
        if not data.approver_id:
            # Company V2MOMs (and owners without a manager) wait for any admin: there is no one person to ask.
            log.info("submission without an approver: nobody to notify", extra={"v2mom_id": data.v2mom_id})
            return
        approver = self._recipient(data.approver_id, "approver", envelope)
        owner = self._named(data.owner_id)
        copy = self._remember(data, envelope, submitted=True)
        if copy.get("decision_revision", 0) > data.revision:
            log.info("submission already decided: no request", extra={"v2mom_id": data.v2mom_id, "revision": data.revision})
            return
        view = _v2mom_view(data, envelope)
        self.notify(rules.approval_requested(envelope["id"], view, approver, owner, self.settings.portal_url_template),
                    approver)
        submitted_at = from_timestamp(data.submit_time) if data.HasField("submit_time") else event_time(envelope)
        reminder_at, escalation_at = schedules.approval_due(submitted_at, approver.time_zone, self.settings.approval_sla_days)
        payload = {"v2mom_id": data.v2mom_id, "owner_id": data.owner_id, "approver_id": data.approver_id,
                   "org_unit_id": data.org_unit_id, "title": rules.content_title(view["content"]),
                   "submitted_revision": data.revision, "submit_event_id": envelope["id"]}
        key = schedules.approval_key(data.v2mom_id)
        now = self.now()
        self.schedules.add(schedules.schedule_id(schedules.APPROVAL_REMINDER, envelope["id"]),
                           schedules.APPROVAL_REMINDER, key, reminder_at, payload, now)
        self.schedules.add(schedules.schedule_id(schedules.APPROVAL_ESCALATION, envelope["id"]),
                           schedules.APPROVAL_ESCALATION, key, escalation_at, payload, now)
        if self.v2moms.find_one({"_id": data.v2mom_id}, {"decision_revision": 1}).get("decision_revision", 0) > data.revision:
            self._cancel_approval(data.v2mom_id, data.revision + 1)  # a decision landed while we wrote

    def v2mom_approved(self, envelope: dict) -> None:
        self._decided(envelope, approved=True)

    def v2mom_changes_requested(self, envelope: dict) -> None:
        self._decided(envelope, approved=False)

    def _decided(self, envelope: dict, approved: bool) -> None:
        data = self._v2mom_data(envelope)
        owner = self._recipient(data.owner_id, "owner", envelope)
        approver_id = data.actor_id or data.approver_id
        approver = self._named(approver_id) if approver_id else None
        self._remember(data, envelope, decided=True, published=approved)
        self._cancel_approval(data.v2mom_id, data.revision)
        self.notify(rules.approval_decided(envelope["id"], _v2mom_view(data, envelope), owner, approver, approved,
                                           data.reason, self.settings.portal_url_template), owner)

    def v2mom_archived(self, envelope: dict) -> None:
        data = self._v2mom_data(envelope)
        self._remember(data, envelope, decided=True, archived=True)
        self._cancel_approval(data.v2mom_id, data.revision)
        self.schedules.collection.update_many(
            {"payload.v2mom_id": data.v2mom_id, "kind": schedules.ITEM_ESCALATION, "state": schedules.WAITING},
            {"$set": {"state": schedules.CANCELLED, "cancelled_at": self.now()}})

    def _v2mom_data(self, envelope: dict) -> events_pb2.V2MOMEventData:
        data = parse_data(envelope, events_pb2.V2MOMEventData)
        require(bool(data.v2mom_id) and data.revision > 0, "needs v2momId and a positive revision", envelope)
        require(bool(data.owner_id), "needs ownerId", envelope)
        return data

    def _cancel_approval(self, v2mom_id: str, decided_revision: int) -> None:
        """Reminders of submissions older than the decision stop; a later resubmission keeps its own."""
        self.schedules.cancel(schedules.approval_key(v2mom_id), self.now(),
                              {"payload.submitted_revision": {"$lt": decided_revision}})

    def _remember(self, data: events_pb2.V2MOMEventData, envelope: dict, submitted: bool = False,
                  decided: bool = False, published: bool = False, archived: bool = False) -> dict:
        """notify's copy of the V2MOM (``v2moms``): owner, approver, the published content; each part guarded by revision."""
        now = self.now()
        self.v2moms.update_one({"_id": data.v2mom_id}, {"$setOnInsert": {
            "content_revision": 0, "decision_revision": 0, "submitted_revision": 0, "progress_revision": 0,
            "off_track_measures": 0, "created_at": now}}, upsert=True)
        base = {"owner_id": data.owner_id, "org_unit_id": data.org_unit_id, "cycle_id": data.cycle_id,
                "level": common_pb2.OrgLevel.Name(data.level) if data.level else "", "updated_at": now}
        if data.approver_id:
            base["approver_id"] = data.approver_id
        self.v2moms.update_one({"_id": data.v2mom_id, "revision": {"$not": {"$gt": data.revision}}},
                               {"$set": {**base, "revision": data.revision}})
        if submitted:
            self.v2moms.update_one({"_id": data.v2mom_id}, {"$max": {"submitted_revision": data.revision}})
        if decided:
            self.v2moms.update_one({"_id": data.v2mom_id}, {"$max": {"decision_revision": data.revision}})
        if published:
            content = envelope["data"].get("content") or {}
            self.v2moms.update_one(
                {"_id": data.v2mom_id, "content_revision": {"$lt": data.revision}},
                {"$set": {"content": content, "title": rules.content_title(content), "content_revision": data.revision}})
        if archived:
            self.v2moms.update_one({"_id": data.v2mom_id}, {"$set": {"archived": True}})
        return self.v2moms.find_one({"_id": data.v2mom_id})

    # --- check-ins events ----------------------------------------------------------------------------------------

    def item_stale(self, envelope: dict) -> None:
        """item_became_stale / item_overdue: the item's owner is told in the inbox; the escalation chain starts."""
        data = parse_data(envelope, events_pb2.ItemStalenessEventData)
        stale = data.item
        require(bool(stale.v2mom_id and stale.item_id), "needs item.v2momId and item.itemId", envelope)
        require(stale.kind != checkins_pb2.ITEM_KIND_UNSPECIFIED, "needs item.kind", envelope)
        owner_id = stale.owner_id or data.v2mom_owner_id
        owner = self._recipient(owner_id, "item owner", envelope)
        item_kind = checkins_pb2.ItemKind.Name(stale.kind)
        staleness = checkins_pb2.Staleness.Name(stale.staleness)
        item = {"v2mom_id": stale.v2mom_id, "kind": item_kind, "item_id": stale.item_id, "title": stale.title,
                "owner_id": owner.id, "owner_name": owner.called, "org_unit_id": stale.org_unit_id,
                "v2mom_owner_id": data.v2mom_owner_id}
        key = schedules.item_key(stale.v2mom_id, item_kind, stale.item_id)
        # An item that goes from stale to overdue starts a new chain: the old one stops.
        self.schedules.cancel(key, self.now(), {"payload.cause_event_id": {"$ne": envelope["id"]}})
        plan = rules.item_escalation(envelope["id"], item, owner, "owner", staleness, self.settings.portal_url_template)
        self.notify(plan, owner, reminder=True)
        started = event_time(envelope)
        self._schedule_escalation(item, staleness, envelope["id"], started, tier=1,
                                  previous_notification_id=plan.id, notified=[owner.id])

    def _schedule_escalation(self, item: dict, staleness: str, cause_event_id: str, started: datetime, tier: int,
                             previous_notification_id: str, notified: list[str]) -> None:
        key = schedules.item_key(item["v2mom_id"], item["kind"], item["item_id"])
        due = schedules.escalation_due(started, tier, self.settings.escalation_email_after_hours)
        self.schedules.add(
            schedules.schedule_id(schedules.ITEM_ESCALATION, cause_event_id, str(tier)), schedules.ITEM_ESCALATION, key,
            due, {"item": item, "staleness": staleness, "cause_event_id": cause_event_id, "started": started,
                  "tier": tier, "previous_notification_id": previous_notification_id, "notified": notified,
                  "v2mom_id": item["v2mom_id"]}, self.now())

    def checkin_recorded(self, envelope: dict) -> None:
        """A check-in stops the item's waiting escalations, and counts as a reminder converted within 48 hours."""
        data = parse_data(envelope, events_pb2.CheckinEventData)
        checkin = data.checkin
        require(bool(checkin.v2mom_id and checkin.item_id), "needs checkin.v2momId and checkin.itemId", envelope)
        require(checkin.item_kind != checkins_pb2.ITEM_KIND_UNSPECIFIED, "needs checkin.itemKind", envelope)
        item_kind = checkins_pb2.ItemKind.Name(checkin.item_kind)
        recorded = from_timestamp(checkin.record_time) if checkin.HasField("record_time") else event_time(envelope)
        self.schedules.cancel(schedules.item_key(checkin.v2mom_id, item_kind, checkin.item_id), self.now())
        reminders = self.db[NOTIFICATIONS].find({
            "v2mom_id": checkin.v2mom_id, "item_id": checkin.item_id, "reminded_day": {"$exists": True},
            "converted_at": None, "created_at": {"$gte": recorded - CONVERSION_WINDOW, "$lte": recorded},
        }, {"reminded_day": 1, "facts": 1})
        for reminder in list(reminders):
            if (reminder.get("facts") or {}).get("item_kind", item_kind) != item_kind:
                continue  # a measure and a method may share an id
            claimed = self.db[NOTIFICATIONS].update_one({"_id": reminder["_id"], "converted_at": None},
                                                        {"$set": {"converted_at": recorded}})
            if claimed.modified_count:
                inc_stats(self.db, reminders_id(reminder["reminded_day"]), {"converted": 1})

    def progress_changed(self, envelope: dict) -> None:
        """More measures off track than the V2MOM had before: ATTENTION to its owner and the item's Accountable."""
        data = parse_data(envelope, events_pb2.ProgressEventData)
        require(bool(data.v2mom_id) and data.revision > 0, "needs v2momId and a positive revision", envelope)
        require(data.off_track_measures >= 0 and data.measures >= 0, "needs non-negative measure counts", envelope)
        self.v2moms.update_one({"_id": data.v2mom_id}, {"$setOnInsert": {
            "content_revision": 0, "decision_revision": 0, "submitted_revision": 0, "progress_revision": 0,
            "off_track_measures": 0, "owner_id": data.owner_id, "org_unit_id": data.org_unit_id,
            "created_at": self.now()}}, upsert=True)
        before = self.v2moms.find_one_and_update(
            {"_id": data.v2mom_id, "progress_revision": {"$lt": data.revision}},
            {"$set": {"progress_revision": data.revision, "off_track_measures": data.off_track_measures}},
            return_document=ReturnDocument.BEFORE)
        if before is not None:
            previous = before.get("off_track_measures", 0)
            self.v2moms.update_one({"_id": data.v2mom_id, "progress_revision": data.revision},
                                   {"$set": {"last_progress": {"revision": data.revision, "previous": previous}}})
        else:
            copy = self.v2moms.find_one({"_id": data.v2mom_id}) or {}
            last = copy.get("last_progress") or {}
            if last.get("revision") != data.revision:
                return  # older than what we know: it changes nothing
            previous = last["previous"]  # a replay: finish what the first delivery may not have
        if data.archived or data.off_track_measures <= previous:
            return
        copy = self.v2moms.find_one({"_id": data.v2mom_id}) or {}
        item_kind = checkins_pb2.ItemKind.Name(data.item_kind) if data.item_kind else ""
        accountable = rules.accountable_for(copy.get("content"), item_kind, data.item_id) if data.item_id else ""
        progress = {"v2mom_id": data.v2mom_id, "item_id": data.item_id, "org_unit_id": data.org_unit_id,
                    "off_track_measures": data.off_track_measures, "measures": data.measures}
        for person_id in rules.attention_recipients(data.owner_id or copy.get("owner_id", ""), accountable):
            person = self.people.get(person_id)
            if person is None:
                log.warning("attention for someone unknown: skipped", extra={"person_id": person_id})
                continue
            self.notify(rules.attention(envelope["id"], progress, person, copy.get("title") or "a V2MOM", previous,
                                        self.settings.portal_url_template), person)

    # --- schedules --------------------------------------------------------------------------------------------------

    def fire(self, schedule: dict) -> None:
        """What a due schedule does; every write has a derived id, so firing twice writes nothing new."""
        kind = schedule["kind"]
        if kind in (schedules.APPROVAL_REMINDER, schedules.APPROVAL_ESCALATION):
            self._approval_overdue(schedule, skip_level=kind == schedules.APPROVAL_ESCALATION)
        elif kind == schedules.ITEM_ESCALATION:
            self._escalate(schedule)
        else:
            log.error("unknown schedule kind: marked done", extra={"schedule_id": schedule["_id"], "kind": kind})

    def _approval_overdue(self, schedule: dict, skip_level: bool) -> None:
        payload = schedule["payload"]
        copy = self.v2moms.find_one({"_id": payload["v2mom_id"]}) or {}
        if copy.get("decision_revision", 0) > payload["submitted_revision"]:
            return  # decided meanwhile (the cancellation and this firing raced)
        approver = self._named(payload["approver_id"])
        recipient = self.people.get(approver.manager_id) if skip_level else self.people.get(approver.id)
        if recipient is None:
            log.info("approval overdue with nobody to tell", extra={"schedule_id": schedule["_id"], "skip_level": skip_level})
            return
        days = self.settings.approval_sla_days * (2 if skip_level else 1)
        view = {"v2mom_id": payload["v2mom_id"], "org_unit_id": payload.get("org_unit_id", ""), "title": payload.get("title")}
        self.notify(rules.approval_overdue(schedule["_id"], view, recipient, approver, self._named(payload["owner_id"]),
                                           skip_level, days, self.settings.portal_url_template), recipient)

    def _escalate(self, schedule: dict) -> None:
        payload = schedule["payload"]
        item, tier = payload["item"], payload["tier"]
        now = self.now()
        previous = self.deliveries.notification(payload["previous_notification_id"]) if payload.get("previous_notification_id") else None
        if previous is not None and previous.get("read_at") is None:
            self._email_unread(previous, now)
        if tier >= schedules.LAST_ESCALATION_TIER:
            return
        copy = self.v2moms.find_one({"_id": item["v2mom_id"]}) or {}
        if tier == 1:
            next_id = rules.accountable_for(copy.get("content"), item["kind"], item["item_id"])
        else:
            v2mom_owner = self._named(item.get("v2mom_owner_id") or copy.get("owner_id", ""))
            next_id = v2mom_owner.manager_id
        notified = list(payload.get("notified") or [])
        recipient = self.people.get(next_id) if next_id and next_id not in notified else None
        plan_id = ""
        if recipient is not None:
            plan = rules.item_escalation(schedule["_id"], item, recipient, rules.ESCALATION_TIERS[tier],
                                         payload["staleness"], self.settings.portal_url_template)
            self.notify(plan, recipient)
            plan_id, notified = plan.id, notified + [recipient.id]
        self._schedule_escalation(item, payload["staleness"], payload["cause_event_id"], payload["started"], tier + 1,
                                  plan_id, notified)

    def _email_unread(self, notification: dict, now: datetime) -> None:
        """An escalation still unread after the wait goes by email too, unless the person turned that mail off."""
        preferences = self.db[PREFERENCES].find_one({"_id": notification["recipient_id"]}) or {}
        if notification["kind"] in set(preferences.get("unsubscribed") or ()):
            return
        person = self.people.get(notification["recipient_id"])
        if person is None or not person.email:
            return
        self.deliveries.add_delivery(notification, kinds.EMAIL, person.email, now)
