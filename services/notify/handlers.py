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

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from services.platform.core.clock import from_date_proto, from_timestamp, to_millis, utc_now
from services.platform.core.config import ConfigError, env_at_least, env_float, env_int, env_str
from services.platform.store.mongo import find_in, update_in
from services.platform.worker.consumer import PermanentError, parse_data, require
from v2mom.v1 import checkins_pb2, common_pb2, events_pb2, goals_pb2

from . import kinds, rules, schedules, unsubscribe
from .deliveries import Deliveries, Stats, inc_stats
from .directory import People
from .rules import Person
from .schedules import Schedules
from .store import CHECKINS, CYCLES, ITEMS, NOTIFICATIONS, PREFERENCES, SUBSCRIPTIONS, V2MOMS, reminders_id

log = logging.getLogger(__name__)

CONVERSION_WINDOW = timedelta(hours=48)


@dataclass(frozen=True)
class WorkerSettings:
    portal_url_template: str = "http://127.0.0.1:8080/v2moms/{v2mom_id}"
    approval_sla_days: int = 5
    escalation_email_after_hours: float = 24.0
    dispatch_interval_seconds: float = 0.5
    schedule_interval_seconds: float = 1.0
    cycle_fill_retry_seconds: float = 30.0  # while goals-api has not answered ListCycles since the start
    lease_seconds: float = 60.0
    dispatch_batch: int = 50
    dispatch_pass_max: int = 1000  # a pass drains a backlog batch by batch, up to this many, then yields its tick
    send_timeout_seconds: float = 10.0
    allow_private_webhooks: bool = False
    public_url: str = "http://127.0.0.1:9101"
    unsubscribe_secret: str = unsubscribe.DEFAULT_SECRET
    reminder_local_time: str = "MON 09:00"
    digest_local_time: str = "MON 08:00"

    @classmethod
    def from_env(cls) -> "WorkerSettings":
        weekly = {}
        for name, field_name in (("NOTIFY_REMINDER_LOCAL_TIME", "reminder_local_time"),
                                 ("NOTIFY_DIGEST_LOCAL_TIME", "digest_local_time")):
            weekly[field_name] = env_str(name, getattr(cls, field_name)).strip()
            try:
                schedules.parse_weekly_time(weekly[field_name])
            except ValueError as error:
                raise ConfigError(f"{name}: {error}") from None
        return cls(
            **weekly,
            portal_url_template=env_str("NOTIFY_PORTAL_URL_TEMPLATE", cls.portal_url_template),
            approval_sla_days=env_int("NOTIFY_APPROVAL_SLA_DAYS", cls.approval_sla_days),
            escalation_email_after_hours=env_float("NOTIFY_ESCALATION_EMAIL_AFTER_HOURS", cls.escalation_email_after_hours),
            dispatch_interval_seconds=env_float("NOTIFY_DISPATCH_INTERVAL_SECONDS", cls.dispatch_interval_seconds),
            schedule_interval_seconds=env_float("NOTIFY_SCHEDULE_INTERVAL_SECONDS", cls.schedule_interval_seconds),
            cycle_fill_retry_seconds=env_float("NOTIFY_CYCLE_FILL_RETRY_SECONDS", cls.cycle_fill_retry_seconds),
            lease_seconds=env_float("NOTIFY_LEASE_SECONDS", cls.lease_seconds),
            # A limit of 0 reads as "no limit" to the store: both must be at least 1.
            dispatch_batch=env_at_least("NOTIFY_DISPATCH_BATCH", cls.dispatch_batch, 1),
            dispatch_pass_max=env_at_least("NOTIFY_DISPATCH_PASS_MAX", cls.dispatch_pass_max, 1),
            send_timeout_seconds=env_float("NOTIFY_SEND_TIMEOUT_SECONDS", cls.send_timeout_seconds),
            allow_private_webhooks=env_str("NOTIFY_ALLOW_PRIVATE_WEBHOOKS", "false").lower() in ("1", "true", "yes"),
            public_url=env_str("NOTIFY_PUBLIC_URL", cls.public_url),
            unsubscribe_secret=unsubscribe.secret_from_env(),
        )




def event_time(envelope: dict) -> datetime:
    try:
        return to_millis(datetime.fromisoformat(envelope["time"].replace("Z", "+00:00")))
    except (AttributeError, ValueError):
        raise PermanentError(f"{envelope.get('type')} {envelope.get('id')}: time {envelope.get('time')!r} is not RFC 3339") from None


def _v2mom_view(data: events_pb2.V2MOMEventData, envelope: dict) -> dict:
    """What the rules read of a goals V2MOM event: ids, and the content as proto3 JSON."""
    return {"v2mom_id": data.v2mom_id, "owner_id": data.owner_id, "org_unit_id": data.org_unit_id,
            "content": (envelope["data"].get("content") or {})}


def _quarter_fields(cycle: common_pb2.Cycle) -> dict:
    """What notify keeps of a cycle's quarters: when each ends (00:00 UTC after its last day) and its id, both
    in order of the ends; ValueError naming what is wrong with a quarter's dates."""
    try:
        quarters = [(from_date_proto(q.start_date), from_date_proto(q.end_date), q.id) for q in cycle.quarters]
    except ValueError as error:
        raise ValueError(f"a quarter's date is not a day: {error}") from None
    if not all(first and last for first, last, _ in quarters):
        raise ValueError("needs every quarter's dates")
    ordered = sorted(quarters, key=lambda quarter: quarter[1])
    return {"quarter_ends": schedules.quarter_ends([(first, last) for first, last, _ in ordered]),
            "quarter_ids": [quarter_id for _, _, quarter_id in ordered]}


class Notifier:
    def __init__(self, db, people: People, settings: WorkerSettings = WorkerSettings(),
                 now: Callable[[], datetime] = utc_now, stats: Stats | None = None, fold_stats: bool = False):
        """``stats`` / ``fold_stats``: see deliveries.Deliveries (notify-worker folds the handlers' stats into the
        dispatcher's pass write); tests leave them out and see every count written at once."""
        self.db = db
        self.people = people
        self.settings = settings
        self.now = now
        self.deliveries = Deliveries(db, stats, fold_stats)
        self.schedules = Schedules(db)
        self.v2moms = db[V2MOMS]
        self.items = db[ITEMS]

    # --- the one way a notification is made ------------------------------------------------------------

    def notify(self, plan: rules.Planned, recipient: Person, reminder: bool = False,
               due_at: datetime | None = None) -> bool:
        """Creates the notification and its deliveries. A person who chose ``digest`` for a digestible kind gets
        it in the inbox at once and its email held for their next digest, unless ``due_at`` (when its item is
        due) comes before that digest: then it goes at once."""
        preferences = self.db[PREFERENCES].find_one({"_id": recipient.id})
        channels = kinds.channels_for(preferences, plan.kind)
        hold = False
        if kinds.EMAIL in channels and kinds.wants_digest(preferences, plan.kind):
            next_digest, _ = schedules.digest_slot(self.now(), self.settings.digest_local_time,
                                                   kinds.zone(recipient.time_zone))
            hold = not schedules.goes_at_once(due_at, next_digest)
            if hold:
                self.ensure_digest(recipient)
        subscriptions = [
            subscription for subscription in self.db[SUBSCRIPTIONS].find(
                {"org_unit_id": {"$in": ["", None, plan.org_unit_id]}, "disabled_at": None})
            if rules.subscription_wants(subscription, plan.kind, plan.org_unit_id)
        ]
        return self.deliveries.create(plan, channels, recipient.email, subscriptions, self.now(), reminder=reminder,
                                      hold_email=hold)

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
        # Managers get the weekly digest: the person's manager, and the person if people report to them.
        if data.person.manager_id and data.person.active:
            manager = self.people.get(data.person.manager_id)
            if manager is not None and manager.active:
                self.ensure_digest(manager)
        if self.people.collection.count_documents({"manager_id": data.person.id}, limit=1):
            person = self.people.get(data.person.id)
            if person is not None and person.active:
                self.ensure_digest(person)

    def v2mom_submitted(self, envelope: dict, sla_from_event: bool = False) -> None:
        data = self._v2mom_data(envelope)
        if not data.approver_id:
            # Company V2MOMs (and owners without a manager) wait for any admin: there is no one person to ask.
            log.info("submission without an approver: nobody to notify", extra={"v2mom_id": data.v2mom_id})
            return
        approver = self._recipient(data.approver_id, "approver", envelope)
        owner = self._named(data.owner_id)
        view = _v2mom_view(data, envelope)
        copy = self._remember(data, envelope, submitted=True,
                              submitted_title=rules.content_title(view["content"]))  # the title for digests
        if copy.get("decision_revision", 0) > data.revision:
            log.info("submission already decided: no request", extra={"v2mom_id": data.v2mom_id, "revision": data.revision})
            return
        self.notify(rules.approval_requested(envelope["id"], view, approver, owner, self.settings.portal_url_template),
                    approver)
        submitted_at = (event_time(envelope) if sla_from_event or not data.HasField("submit_time")
                        else from_timestamp(data.submit_time))
        reminder_at, escalation_at = schedules.approval_due(submitted_at, approver.time_zone, self.settings.approval_sla_days)
        payload = {"v2mom_id": data.v2mom_id, "owner_id": data.owner_id, "approver_id": data.approver_id,
                   "org_unit_id": data.org_unit_id, "title": rules.content_title(view["content"]),
                   "submitted_revision": data.revision, "submit_event_id": envelope["id"]}
        key = schedules.approval_key(data.v2mom_id)
        now = self.now()
        self.schedules.add_many([
            Schedules.document(schedules.schedule_id(schedules.APPROVAL_REMINDER, envelope["id"]),
                               schedules.APPROVAL_REMINDER, key, reminder_at, payload, now),
            Schedules.document(schedules.schedule_id(schedules.APPROVAL_ESCALATION, envelope["id"]),
                               schedules.APPROVAL_ESCALATION, key, escalation_at, payload, now)])
        # A decision that lands while these are written may leave them WAITING (its cancel ran first): firing reads
        # the copy's decision before anything else (_approval_overdue), so they tell nobody. Not read again here.

    def v2mom_approved(self, envelope: dict) -> None:
        self._decided(envelope, approved=True)

    def v2mom_changes_requested(self, envelope: dict) -> None:
        self._decided(envelope, approved=False)

    def _decided(self, envelope: dict, approved: bool) -> None:
        data = self._v2mom_data(envelope)
        owner = self._recipient(data.owner_id, "owner", envelope)
        approver_id = data.actor_id or data.approver_id
        approver = self._named(approver_id) if approver_id else None
        opened = self._opened_obstacles(data, envelope) if approved else []
        copy = self._remember(data, envelope, decided=True, published=approved)
        self._cancel_approval(data.v2mom_id, data.revision)
        if approved:
            self._publish_items(data, envelope, copy)
        self.notify(rules.approval_decided(envelope["id"], _v2mom_view(data, envelope), owner, approver, approved,
                                           data.reason, self.settings.portal_url_template), owner)
        self._tell_obstacles(envelope, data, opened)

    def _opened_obstacles(self, data: events_pb2.V2MOMEventData, envelope: dict) -> list[dict]:
        """Obstacles this publication opens, remembered with its revision so a replay tells the same people again."""
        self._ensure_copy(data.v2mom_id, data.owner_id, data.org_unit_id)
        before = self.v2moms.find_one({"_id": data.v2mom_id}, {"content": 1, "content_revision": 1, "obstacles_opened": 1})
        remembered = before.get("obstacles_opened") or {}
        if remembered.get("revision") == data.revision:
            return remembered["obstacles"]
        if before.get("content_revision", 0) >= data.revision:
            return []  # an older publication than the one we hold
        opened = rules.opened_obstacles(before.get("content"), envelope["data"].get("content"))
        self.v2moms.update_one({"_id": data.v2mom_id},
                               {"$set": {"obstacles_opened": {"revision": data.revision, "obstacles": opened}}})
        return opened

    def _tell_obstacles(self, envelope: dict, data: events_pb2.V2MOMEventData, opened: list[dict]) -> None:
        view = {**_v2mom_view(data, envelope), "title": rules.content_title(envelope["data"].get("content") or {})}
        for obstacle in opened:
            for person_id in rules.obstacle_recipients(view["content"], obstacle, data.owner_id):
                person = self.people.get(person_id)
                if person is None:
                    log.warning("obstacle attention for someone unknown: skipped", extra={"person_id": person_id})
                    continue
                self.notify(rules.obstacle_opened(envelope["id"], view, obstacle, person,
                                                  self.settings.portal_url_template), person)

    def obstacle_changed(self, envelope: dict) -> None:
        """An obstacle of a published V2MOM changed without an approval: one (re)opened is told as a publication
        opening it would be, to the owner and the Accountables. notify's copy of the published content takes the
        change, so the next approval, which carries it too, does not tell them again."""
        data = parse_data(envelope, events_pb2.ObstacleEventData)
        require(bool(data.v2mom_id) and data.revision > 0 and bool(data.obstacle.id),
                "needs v2momId, a positive revision and obstacle.id", envelope)
        obstacle = envelope["data"].get("obstacle") or {}
        self._take_obstacle(data, obstacle)
        if not rules.obstacle_reopened(obstacle, envelope["data"].get("previousStatus") or ""):
            return
        view = {"v2mom_id": data.v2mom_id, "org_unit_id": data.org_unit_id, "title": data.title}
        for person_id in dict.fromkeys([data.owner_id, *data.accountable_ids]):
            person = self.people.get(person_id) if person_id else None
            if person is None:
                log.warning("obstacle attention for someone unknown: skipped", extra={"person_id": person_id})
                continue
            self.notify(rules.obstacle_opened(envelope["id"], view, obstacle, person, self.settings.portal_url_template),
                        person)

    def _take_obstacle(self, data: events_pb2.ObstacleEventData, obstacle: dict) -> None:
        # Guarded like a publication: an older event than the content held changes nothing.
        self.v2moms.update_one(
            {"_id": data.v2mom_id, "content_revision": {"$lt": data.revision}, "content.obstacles.id": data.obstacle.id},
            {"$set": {"content.obstacles.$": obstacle, "content_revision": data.revision}})

    def comment_added(self, envelope: dict) -> None:
        """Each person the comment mentions hears of it (NOTIFICATION_KIND_MENTION), but never its author."""
        data = parse_data(envelope, events_pb2.CommentEventData)
        require(bool(data.comment.id) and bool(data.comment.v2mom_id), "needs comment.id and comment.v2momId", envelope)
        comment = envelope["data"]["comment"]
        author = self._named(data.comment.author_id)
        view = {"title": data.title, "org_unit_id": data.org_unit_id}
        for person_id in dict.fromkeys(data.comment.mention_ids):
            person = self.people.get(person_id) if person_id != data.comment.author_id else None
            if person is None:
                log.info("mention of the author or of someone unknown: skipped", extra={"person_id": person_id})
                continue
            self.notify(rules.mentioned(envelope["id"], comment, view, person, author,
                                        self.settings.portal_url_template), person)

    def v2mom_parent_changed(self, envelope: dict) -> None:
        """The owners of the V2MOMs aligned beneath a parent approved again with other content hear of it
        (NOTIFICATION_KIND_PARENT_CHANGED), once each: the notification's id is the event's and theirs."""
        data = parse_data(envelope, events_pb2.ParentChangedEventData)
        require(bool(data.v2mom_id), "needs v2momId", envelope)
        for person_id in rules.parent_changed_recipients(envelope["data"]):
            person = self.people.get(person_id)
            if person is None:
                log.info("parent change for someone unknown: skipped", extra={"person_id": person_id})
                continue
            self.notify(rules.parent_changed(envelope["id"], envelope["data"], person,
                                             self.settings.portal_url_template), person)

    def _ensure_copy(self, v2mom_id: str, owner_id: str, org_unit_id: str) -> None:
        """notify's copy of a V2MOM exists, with the counters every guarded update compares against."""
        self.v2moms.update_one({"_id": v2mom_id}, {"$setOnInsert": {
            **self._copy_counters(), "owner_id": owner_id, "org_unit_id": org_unit_id}}, upsert=True)

    def _copy_counters(self) -> dict:
        """What a new copy starts with. ``revision`` (goals' revision of the last event taken) starts at 0, which the
        guards treat as they treat no revision at all."""
        return {"revision": 0, "content_revision": 0, "decision_revision": 0, "submitted_revision": 0,
                "progress_revision": 0, "off_track_measures": 0, "created_at": self.now()}

    def v2mom_approver_changed(self, envelope: dict) -> None:
        """The submission waits on someone else now (its approver left, or the owner's manager changed): the
        old approver's reminders stop, and the new one is asked with a whole SLA from the hand-over, since
        they could not act on it before."""
        data = self._v2mom_data(envelope)
        self._cancel_approval(data.v2mom_id, data.revision)
        self.v2mom_submitted(envelope, sla_from_event=True)

    def v2mom_transferred(self, envelope: dict) -> None:
        """The V2MOM has a new owner (TransferV2MOM, or they became its unit's leader). notify's copy takes the new
        owner and unit (and the published content the event carries, whose items may have passed on with it), so
        reminders, escalations and attention go to the new owner from now on; the new owner is told (ATTENTION:
        inbox, and email as their preferences say). A submission's new approver is asked by the
        ``v2mom_approver_changed`` goals publishes with it. A transfer that is old news (the V2MOM has moved on to
        someone else since) or that the new owner made themselves tells nobody."""
        data = self._v2mom_data(envelope)
        owner = self._recipient(data.owner_id, "new owner", envelope)
        copy = self._take_handover(data, envelope)
        if copy.get("revision", 0) > data.revision and copy.get("owner_id") != data.owner_id:
            log.info("transfer superseded by a later owner: nobody told",
                     extra={"v2mom_id": data.v2mom_id, "revision": data.revision})
            return
        if data.actor_id and data.actor_id == data.owner_id:
            return
        previous = self._named(data.previous_owner_id) if data.previous_owner_id else None
        content = envelope["data"].get("content") or {}
        view = {**_v2mom_view(data, envelope),
                "title": copy.get("title") or copy.get("submitted_title") or rules.content_title(content)}
        self.notify(rules.v2mom_transferred(envelope["id"], view, owner, previous, data.reason,
                                            self.settings.portal_url_template), owner)

    def v2mom_items_reassigned(self, envelope: dict) -> None:
        """A leaver's methods, measures and obstacles passed to the V2MOM's owner, in place (no re-approval): the
        copy's content and ``items`` take the new owners and Accountables, so reminders, escalations and attention
        go to them. Nobody is told: the owner holds what they already answer for."""
        self._take_handover(self._v2mom_data(envelope), envelope)

    def _take_handover(self, data: events_pb2.V2MOMEventData, envelope: dict) -> dict:
        """A system revision that changes who holds a V2MOM or its items without an approval. Its ``content`` is
        the published version's once there is one (``publishTime`` set): then it replaces the kept published content
        (guarded by revision, as an approval's) and the items follow it; before that only owner and unit change."""
        published = data.HasField("publish_time") and data.state != goals_pb2.V2MOM_STATE_ARCHIVED
        copy = self._remember(data, envelope, published=published)
        if published:
            self._publish_items(data, envelope, copy)
        return copy

    def v2mom_withdrawn(self, envelope: dict) -> None:
        """The owner took the submission back: nobody is waiting for the approver, so their reminders and
        escalations stop. Remembered as a decision, so the submission arriving late asks nobody either."""
        data = self._v2mom_data(envelope)
        self._remember(data, envelope, decided=True)
        self._cancel_approval(data.v2mom_id, data.revision)

    def v2mom_archived(self, envelope: dict) -> None:
        data = self._v2mom_data(envelope)
        self._remember(data, envelope, decided=True, archived=True)
        self._cancel_approval(data.v2mom_id, data.revision)
        self.items.update_many({"v2mom_id": data.v2mom_id, "active": True},
                               {"$set": {"active": False, "removed_at": self.now()}})
        self.schedules.collection.update_many(
            {"payload.v2mom_id": data.v2mom_id, "kind": {"$in": [schedules.ITEM_ESCALATION, schedules.CHECKIN_REMINDER]},
             "state": schedules.WAITING},
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
                  decided: bool = False, published: bool = False, archived: bool = False,
                  submitted_title: str | None = None) -> dict:
        """notify's copy of the V2MOM (``v2moms``): owner, approver, the published content; each part guarded by revision.

        ``submitted_title`` (with ``submitted``) is kept for digests while this submission is the latest one and
        no later decision is known. Returns the copy as this event left it.

        Usually one write: when the copy is new, or this event is at least as new as every part it changes, one
        upsert makes all the changes at once (what the guarded steps below would make one after another). When
        a guard fails the upsert finds the copy taken (duplicate key) and the guarded steps run one by one."""
        now = self.now()
        rev = data.revision
        base = {"owner_id": data.owner_id, "org_unit_id": data.org_unit_id, "cycle_id": data.cycle_id,
                "level": common_pb2.OrgLevel.Name(data.level) if data.level else "", "updated_at": now}
        if data.approver_id:
            base["approver_id"] = data.approver_id
        content = (envelope["data"].get("content") or {}) if published else None
        sets, maxes = {**base, "revision": rev}, {}
        guard = {"_id": data.v2mom_id, "revision": {"$lte": rev}}
        if submitted:
            maxes["submitted_revision"] = rev
            if submitted_title is not None:
                sets["submitted_title"] = submitted_title
                guard.update(submitted_revision={"$lte": rev}, decision_revision={"$lte": rev})
        if decided:
            maxes["decision_revision"] = rev
        if published:
            sets.update(content=content, title=rules.content_title(content), content_revision=rev)
            guard["content_revision"] = {"$lt": rev}
        if archived:
            sets["archived"] = True
        update = {"$set": sets, "$setOnInsert": {field: value for field, value in self._copy_counters().items()
                                                 if field not in sets and field not in maxes}}
        if maxes:
            update["$max"] = maxes
        try:
            return self.v2moms.find_one_and_update(guard, update, upsert=True, return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:
            pass  # a newer event (or this one, replayed) got there first: each part under its own guard
        self._ensure_copy(data.v2mom_id, data.owner_id, data.org_unit_id)
        self.v2moms.update_one({"_id": data.v2mom_id, "revision": {"$not": {"$gt": rev}}},
                               {"$set": {**base, "revision": rev}})
        if submitted:
            self.v2moms.update_one({"_id": data.v2mom_id}, {"$max": {"submitted_revision": rev}})
        if decided:
            self.v2moms.update_one({"_id": data.v2mom_id}, {"$max": {"decision_revision": rev}})
        if published:
            self.v2moms.update_one(
                {"_id": data.v2mom_id, "content_revision": {"$lt": rev}},
                {"$set": {"content": content, "title": rules.content_title(content), "content_revision": rev}})
        if archived:
            self.v2moms.update_one({"_id": data.v2mom_id}, {"$set": {"archived": True}})
        copy = self.v2moms.find_one({"_id": data.v2mom_id})
        if submitted_title is not None and copy.get("decision_revision", 0) <= rev:
            self.v2moms.update_one({"_id": data.v2mom_id, "submitted_revision": rev},
                                   {"$set": {"submitted_title": submitted_title}})
        return copy

    # --- check-ins events ----------------------------------------------------------------------------------------

    def item_stale(self, envelope: dict) -> None:
        """item_became_stale / item_overdue: the item's owner is told in the inbox; the escalation chain starts."""
        data = parse_data(envelope, events_pb2.ItemStalenessEventData)
        stale = data.item
        require(bool(stale.v2mom_id and stale.item_id), "needs item.v2momId and item.itemId", envelope)
        require(stale.kind != checkins_pb2.ITEM_KIND_UNSPECIFIED, "needs item.kind", envelope)
        owner_id = stale.owner_id or data.v2mom_owner_id
        owner = self._recipient(owner_id, "item owner", envelope)
        self._learn_cadence(stale.cycle_id, data.cadence)
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
        self._learn_cadence(checkin.cycle_id, data.cadence)
        self._checked_in(envelope, data, item_kind, recorded)
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
        self._ensure_copy(data.v2mom_id, data.owner_id, data.org_unit_id)
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
        item = self.items.find_one({"_id": f"{data.v2mom_id}/{item_kind}/{data.item_id}"}, {"due_at": 1}) or {}
        for person_id in rules.attention_recipients(data.owner_id or copy.get("owner_id", ""), accountable):
            person = self.people.get(person_id)
            if person is None:
                log.warning("attention for someone unknown: skipped", extra={"person_id": person_id})
                continue
            self.notify(rules.attention(envelope["id"], progress, person, copy.get("title") or "a V2MOM", previous,
                                        self.settings.portal_url_template), person, due_at=item.get("due_at"))

    # --- schedules --------------------------------------------------------------------------------------------------

    def fire(self, schedule: dict) -> None:
        """What a due schedule does; every write has a derived id, so firing twice writes nothing new."""
        kind = schedule["kind"]
        if kind in (schedules.APPROVAL_REMINDER, schedules.APPROVAL_ESCALATION):
            self._approval_overdue(schedule, skip_level=kind == schedules.APPROVAL_ESCALATION)
        elif kind == schedules.ITEM_ESCALATION:
            self._escalate(schedule)
        elif kind == schedules.CHECKIN_REMINDER:
            self._remind(schedule)
        elif kind == schedules.DIGEST:
            self._digest(schedule)
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
            # The copy's owner first: a transfer since the item went stale hands the escalation to the new one's manager.
            v2mom_owner = self._named(copy.get("owner_id") or item.get("v2mom_owner_id", ""))
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

    # --- check-in reminders ----------------------------------------------------------------------------------------

    def _learn_cadence(self, cycle_id: str, cadence: int) -> None:
        """Check-ins' events carry the cycle's cadence; reminders use the latest one seen."""
        if cycle_id and cadence:
            self.db[CYCLES].update_one({"_id": cycle_id}, {"$set": {
                "cadence": checkins_pb2.Cadence.Name(cadence), "updated_at": self.now()}}, upsert=True)

    def _cadence(self, cycle_id: str) -> tuple[str, bool, tuple[datetime, ...]]:
        """(cadence, known, quarter ends): CADENCE_BIWEEKLY, check-ins' default, until an event of the cycle says
        otherwise; no quarters until goals' cycle events name some."""
        found = (self.db[CYCLES].find_one({"_id": cycle_id}) if cycle_id else None) or {}
        ends = tuple(found.get("quarter_ends") or ())
        if found.get("cadence") in schedules.CADENCE_DAYS:
            return found["cadence"], True, ends
        return schedules.DEFAULT_CADENCE, False, ends

    def cycle_changed(self, envelope: dict) -> None:
        """goals' cycle_changed and cycle_closed: the cycle's quarters, so a check-in counts for its own quarter only
        (as in checkins); the waiting first reminders of its items are planned again under them. Each event
        carries the whole cycle; an older revision than the one kept changes nothing."""
        data = parse_data(envelope, events_pb2.CycleEventData)
        cycle = data.cycle
        require(bool(cycle.id) and cycle.HasField("start_date") and cycle.HasField("end_date"),
                "needs cycle.id and its dates", envelope)
        try:
            quarters = _quarter_fields(cycle)
        except ValueError as error:
            raise PermanentError(f"cycle_changed {envelope.get('id')}: {error}") from None
        # At most as new as this event: a replay writes the same again and finishes the re-planning.
        if self._keep_quarters(cycle.id, quarters, data.revision) is not None:
            self._replan_reminders(cycle.id)

    def fill_cycles(self, listed) -> int:
        """goals' ListCycles (common_pb2.Cycle messages): the quarters of the cycles no event named yet (created
        before notify-worker consumed cycle events). A list carries no revision, so it is kept as revision 0:
        it never replaces what an event said, and any event replaces it. Reminders are planned again only for
        the cycles whose quarters this changed; how many those were."""
        changed = 0
        for cycle in listed:
            try:
                quarters = _quarter_fields(cycle)
            except ValueError as error:
                log.warning("a listed cycle's quarters cannot be read: skipped",
                            extra={"cycle_id": cycle.id, "reason": str(error)})
                continue
            kept = (self.db[CYCLES].find_one({"_id": cycle.id}, {"quarter_ends": 1, "quarter_ids": 1,
                                                                 "cycle_revision": 1}) if cycle.id else None) or {}
            if not cycle.id or kept.get("cycle_revision", 0) > 0 or (
                    "cycle_revision" in kept and all(kept.get(name) == value for name, value in quarters.items())):
                continue  # an event named it (the guard below would refuse too), or it was listed the same before
            if self._keep_quarters(cycle.id, quarters, 0) is not None:
                self._replan_reminders(cycle.id)
                changed += 1
        return changed

    def _keep_quarters(self, cycle_id: str, quarters: dict, revision: int):
        """Writes the quarters unless a newer revision is kept (then None); the write's result."""
        guard = {"_id": cycle_id, "$or": [{"cycle_revision": {"$lte": revision}},
                                          {"cycle_revision": {"$exists": False}}]}
        try:
            return self.db[CYCLES].update_one(guard, {"$set": {**quarters, "cycle_revision": revision,
                                                               "updated_at": self.now()}}, upsert=True)
        except DuplicateKeyError:
            return None  # a newer revision is kept already

    def _replan_reminders(self, cycle_id: str) -> None:
        """Each active item's waiting reminder that was planned from its basis moves to what the cycle's quarters
        now say; the weekly repeats after a sent reminder stay (the item is past due either way)."""
        cadence, _, ends = self._cadence(cycle_id)
        spec = self.settings.reminder_local_time
        for item in self.items.find({"cycle_id": cycle_id, "active": True}):
            if not item.get("reminder_id") or not item.get("owner_id"):
                continue
            owner = self.people.get(item["owner_id"])
            due = schedules.reminder_due(self._basis(item), cadence, spec,
                                         kinds.zone(owner.time_zone if owner else None), ends)
            self.schedules.collection.update_one(
                {"_id": item["reminder_id"], "state": schedules.WAITING, "payload.repeat": {"$ne": True}},
                {"$set": {"due_at": due}})

    def _basis(self, item: dict) -> datetime:
        """Where the item's cadence window starts: its last check-in, else its publication."""
        return max((moment for moment in (item.get("published_at"), item.get("last_checkin_at")) if moment),
                   default=self.now())

    def _publish_items(self, data: events_pb2.V2MOMEventData, envelope: dict, copy: dict) -> None:
        """An approval's content is the latest: keep its items, give each new one its reminder, stop removed ones."""
        if copy.get("archived") or copy.get("content_revision") != data.revision:
            return  # an older approval, late: the newer content is kept already
        now = self.now()
        published_at = from_timestamp(data.publish_time) if data.HasField("publish_time") else event_time(envelope)
        found = rules.published_items(data.v2mom_id, envelope["data"].get("content") or {}, data.owner_id)
        for item in found:
            item_id = item.pop("_id")
            self.items.update_one({"_id": item_id}, {"$setOnInsert": {"last_checkin_at": None, "content_revision": 0}},
                                  upsert=True)
            before = self.items.find_one_and_update(
                {"_id": item_id, "content_revision": {"$lte": data.revision}},
                {"$set": {**item, "org_unit_id": data.org_unit_id, "cycle_id": data.cycle_id,
                          "content_revision": data.revision, "active": True}},
                return_document=ReturnDocument.BEFORE)
            if before is not None and not before.get("active"):
                # new, or back after a removal: its reminder counts from this publication
                self.items.update_one({"_id": item_id, "reminder_id": before.get("reminder_id")}, {"$set": {
                    "published_at": published_at,
                    "reminder_id": schedules.schedule_id(schedules.CHECKIN_REMINDER, envelope["id"], item_id)}})
            self._ensure_reminder(self.items.find_one({"_id": item_id}))
        removed = [doc["_id"] for doc in self.items.find(
            {"v2mom_id": data.v2mom_id, "active": True, "_id": {"$nin": [i["v2mom_id"] + "/" + i["item_kind"] + "/"
                                                                          + i["item_id"] for i in found]},
             "content_revision": {"$lt": data.revision}}, {"_id": 1})]
        if removed:
            update_in(self.items, "_id", removed, {}, {"$set": {"active": False, "removed_at": now}})
            update_in(self.schedules.collection, "payload.item_key", removed,
                      {"kind": schedules.CHECKIN_REMINDER, "state": schedules.WAITING},
                      {"$set": {"state": schedules.CANCELLED, "cancelled_at": now}})
        for person_id in sorted({p for i in found for p in i["informed_ids"]}):
            informed = self.people.get(person_id)
            if informed is not None and informed.active:
                self.ensure_digest(informed)

    def _ensure_reminder(self, item: dict | None) -> None:
        """Writes the item's current reminder (``reminder_id``) if it is not there yet: idempotent, and it finishes
        what a crashed handler started."""
        if not item or not item.get("active") or not item.get("reminder_id") or not item.get("owner_id"):
            return
        if self.schedules.get(item["reminder_id"]) is not None:
            return
        owner = self.people.get(item["owner_id"])
        cadence, _, ends = self._cadence(item.get("cycle_id", ""))
        basis = self._basis(item)
        due = schedules.reminder_due(basis, cadence, self.settings.reminder_local_time,
                                     kinds.zone(owner.time_zone if owner else None), ends)
        self._add_reminder(item, item["reminder_id"], due, basis)

    def _add_reminder(self, item: dict, reminder_id: str, due: datetime, basis: datetime, repeat: bool = False) -> None:
        """``repeat``: a week after a reminder the item did not answer (not planned from its basis)."""
        self.schedules.add(
            reminder_id, schedules.CHECKIN_REMINDER,
            schedules.reminder_key(item["v2mom_id"], item["item_kind"], item["item_id"]), due,
            {"item_key": item["_id"], "v2mom_id": item["v2mom_id"], "item_kind": item["item_kind"],
             "item_id": item["item_id"], "basis_at": basis, "repeat": repeat}, self.now())

    def _checked_in(self, envelope: dict, data: events_pb2.CheckinEventData, item_kind: str, recorded: datetime) -> None:
        """Keeps the check-in for the digest; the newest check-in of an item moves its reminder to the next window."""
        checkin = data.checkin
        key = f"{checkin.v2mom_id}/{item_kind}/{checkin.item_id}"
        item = self.items.find_one({"_id": key}) or {}
        try:
            self.db[CHECKINS].insert_one({
                "_id": checkin.id or envelope["id"], "v2mom_id": checkin.v2mom_id, "item_key": key, "item_kind": item_kind,
                "item_id": checkin.item_id, "item_title": data.item_title or item.get("title") or "",
                "owner_id": item.get("owner_id") or checkin.author_id, "author_id": checkin.author_id,
                "status": checkins_pb2.CheckinStatus.Name(checkin.status), "progress_percent": checkin.progress_percent,
                "recorded_at": recorded})
        except DuplicateKeyError:
            pass  # a replay
        self.items.update_one({"_id": key}, {"$setOnInsert": {
            "v2mom_id": checkin.v2mom_id, "item_kind": item_kind, "item_id": checkin.item_id, "last_checkin_at": None,
            "content_revision": 0}}, upsert=True)
        reminder_id = schedules.schedule_id(schedules.CHECKIN_REMINDER, envelope["id"])
        self.items.update_one(
            {"_id": key, "$or": [{"last_checkin_at": None}, {"last_checkin_at": {"$lt": recorded}}]},
            {"$set": {"last_checkin_at": recorded, "reminder_id": reminder_id}})
        item = self.items.find_one({"_id": key})
        if item.get("reminder_id") != reminder_id:
            return  # a newer check-in (or a newer publication) already set the reminder
        self.schedules.collection.update_many(
            {"key": schedules.reminder_key(checkin.v2mom_id, item_kind, checkin.item_id), "state": schedules.WAITING,
             "_id": {"$ne": reminder_id}}, {"$set": {"state": schedules.CANCELLED, "cancelled_at": self.now()}})
        self._ensure_reminder(item)

    def _remind(self, schedule: dict) -> None:
        """CHECKIN_REMINDER to the item's owner unless a check-in within the window makes it early; then the next."""
        payload = schedule["payload"]
        following = schedules.schedule_id(schedules.CHECKIN_REMINDER, schedule["_id"])
        item = self.items.find_one({"_id": payload["item_key"]})
        if item is None or not item.get("active") or item.get("reminder_id") not in (schedule["_id"], following):
            return  # archived, removed, or moved by a check-in meanwhile
        now = self.now()
        owner = self.people.get(item.get("owner_id", ""))
        tz = kinds.zone(owner.time_zone if owner else None)
        spec = self.settings.reminder_local_time
        cadence, known, ends = self._cadence(item.get("cycle_id", ""))
        basis = self._basis(item)
        if schedules.reminder_not_due_yet(basis, cadence, spec, tz, now, ends):
            log.info("checked in within the window: reminder moved", extra={"schedule_id": schedule["_id"]})
            self._move_reminder(item, schedule["_id"], following,
                                schedules.reminder_due(basis, cadence, spec, tz, ends), basis)
            return
        if owner is None:
            log.warning("check-in reminder for someone unknown: skipped", extra={"person_id": item.get("owner_id")})
        else:
            due = schedules.checkin_due(basis, cadence, ends)
            turn = self._quarter_turn(item, due) if due in ends else None
            self.notify(rules.checkin_reminder(schedule["_id"], item, owner, due, cadence, known,
                                               self.settings.portal_url_template, turn),
                        owner, reminder=True, due_at=due)
        # Still not checked in: the next reminder time after this one, a week on, until a check-in moves it.
        after = max(now, schedule["due_at"]) + timedelta(minutes=1)
        self._move_reminder(item, schedule["_id"], following, schedules.next_weekly(after, spec, tz), basis, repeat=True)

    def _quarter_turn(self, item: dict, due: datetime) -> rules.QuarterTurn:
        """The item is due because a quarter ended at ``due``: which one began then, and which the last check-in
        counted for (names as goals gives them; empty when not known)."""
        found = self.db[CYCLES].find_one({"_id": item.get("cycle_id", "")}, {"quarter_ends": 1, "quarter_ids": 1}) or {}
        ends, ids = list(found.get("quarter_ends") or ()), list(found.get("quarter_ids") or ())

        def quarter_at(moment: datetime | None) -> str:
            index = next((i for i, end in enumerate(ends) if end > moment), None) if moment else None
            return ids[index] if index is not None and index < len(ids) else ""

        return rules.QuarterTurn(began=quarter_at(due), last_checkin_in=quarter_at(item.get("last_checkin_at")))

    def _move_reminder(self, item: dict, current: str, following: str, due: datetime, basis: datetime,
                       repeat: bool = False) -> None:
        self.items.update_one({"_id": item["_id"], "reminder_id": current}, {"$set": {"reminder_id": following}})
        if (self.items.find_one({"_id": item["_id"]}, {"reminder_id": 1}) or {}).get("reminder_id") == following:
            self._add_reminder(item, following, due, basis, repeat)

    # --- the weekly digest ---------------------------------------------------------------------------------------

    def ensure_digest(self, person: Person, at_or_after: datetime | None = None) -> None:
        """The person's next weekly digest (one per local ISO week, whoever asks for it and how often)."""
        due, week = schedules.digest_slot(at_or_after or self.now(), self.settings.digest_local_time,
                                          kinds.zone(person.time_zone))
        self.schedules.add(schedules.schedule_id(schedules.DIGEST, person.id, week), schedules.DIGEST,
                           schedules.digest_key(person.id), due, {"person_id": person.id, "week": week}, self.now())

    def _digest(self, schedule: dict) -> None:
        """One message: the team's check-ins of the week, what went off track, approvals waiting, the held mail."""
        person = self.people.get(schedule["payload"]["person_id"])
        if person is None or not person.active:
            return
        now, until = self.now(), schedule["due_at"]
        since = until - schedules.DIGEST_WINDOW
        digest_id = rules.notification_id(schedule["_id"], person.id, kinds.DIGEST)
        reports = [doc["_id"] for doc in self.people.collection.find(
            {"manager_id": person.id, "active": {"$ne": False}}, {"_id": 1})]
        informed = [doc["_id"] for doc in self.items.find({"informed_ids": person.id, "active": True}, {"_id": 1})]
        window = {"$gte": since, "$lt": until}
        found = {c["_id"]: c for c in find_in(self.db[CHECKINS], "owner_id", reports, {"recorded_at": window})}
        found.update({c["_id"]: c for c in find_in(self.db[CHECKINS], "item_key", informed, {"recorded_at": window})})
        checkins = [{"who": self._named(c.get("owner_id", "")).called, "item_title": c.get("item_title") or c["item_id"],
                     "status": c.get("status", "").removeprefix("CHECKIN_STATUS_").replace("_", " ").lower(),
                     "progress": c.get("progress_percent") or 0.0, "raw_status": c.get("status")}
                    for c in sorted(found.values(), key=lambda c: (c["recorded_at"], c["_id"]))]
        off_track = [c for c in checkins if c["raw_status"] == "CHECKIN_STATUS_OFF_TRACK"]
        approvals = [{"title": v.get("submitted_title") or v.get("title") or v["_id"], "owner": self._named(v.get("owner_id", "")).called}
                     for v in self.v2moms.find({"approver_id": person.id, "archived": {"$ne": True}})
                     if v.get("submitted_revision", 0) > v.get("decision_revision", 0)]
        held = self.deliveries.held(person.id, until, digest_id)
        notes = {n["_id"]: n for n in find_in(
            self.db[NOTIFICATIONS], "_id", [d["notification_id"] for d in held], projection={"title": 1, "link": 1})}
        listed = [notes[d["notification_id"]] for d in held if d["notification_id"] in notes]
        plan = rules.digest(schedule["_id"], person, since, until, checkins, off_track, approvals, listed)
        if plan is not None:
            self.notify(plan, person)
            self.deliveries.gather([d["_id"] for d in held], plan.id, now)
        if reports or informed:
            self.ensure_digest(person, until + timedelta(minutes=1))
