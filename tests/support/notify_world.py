"""The in-process world of notify-worker's handler tests: a small directory on the wire store, the handlers and the
dispatcher with recording senders and a settable clock, and envelopes as goals and check-ins publish them."""

import uuid
from datetime import UTC, datetime, timedelta

from services.checkins import events as checkin_events
from services.goals import events as goals_events
from services.notify.directory import People
from services.notify.dispatch import Dispatcher
from services.notify.handlers import Notifier, WorkerSettings
from services.notify.store import DELIVERIES, INDEXES, NOTIFICATIONS, SCHEDULES
from services.platform.bus.events import to_wire
from services.platform.store.mongo import ensure_indexes
from tests.support.notify import Clock, Recorder
from v2mom.v1 import checkins_pb2, common_pb2, events_pb2, goals_pb2

T0 = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)  # a Wednesday
SETTINGS = WorkerSettings(portal_url_template="https://portal.test/v2moms/{v2mom_id}", approval_sla_days=2,
                          escalation_email_after_hours=24, lease_seconds=30)
PEOPLE = {  # id: (name, manager)
    "olive": ("Olive Owner", "lee"), "lee": ("Lee Lead", "dana"), "dana": ("Dana Director", ""),
    "acc": ("Ace Accountable", "lee"),
}


def build_world(notify_db):
    """olive (reporting to lee, lee to dana) and acc in notify's directory; a Notifier and a Dispatcher with recording
    senders on a clock set to T0."""
    ensure_indexes(notify_db, INDEXES)
    people = People(notify_db, goals=None, cache_seconds=0)
    for person_id, (name, manager) in PEOPLE.items():
        people.upsert_from_event({"id": person_id, "displayName": name, "email": f"{person_id}@acme.test",
                                  "managerId": manager, "orgUnitId": "platform", "active": True}, 1)
    clock = Clock(T0)
    email, webhook = Recorder(), Recorder()
    notifier = Notifier(notify_db, people, SETTINGS, now=clock)
    dispatcher = Dispatcher(notify_db, people, email, webhook, SETTINGS, now=clock)

    class World:
        pass

    w = World()
    w.db, w.people, w.clock, w.email, w.webhook, w.notifier, w.dispatcher = (
        notify_db, people, clock, email, webhook, notifier, dispatcher)
    return w


def content():
    return goals_pb2.V2MOMContent(
        title="Olive FY27",
        methods=[goals_pb2.Method(id="m1", title="Ship it", owner_id="olive", accountable_id="acc")],
        measures=[goals_pb2.Measure(id="x1", title="NPS", owner_id="olive", method_ids=["m1"])],
    )


def v2mom_event(event_type, revision, state, reason="", approver="lee", actor="", v2mom_id="v2m_1", body=None):
    data = events_pb2.V2MOMEventData(
        v2mom_id=v2mom_id, revision=revision, owner_id="olive", org_unit_id="platform", cycle_id="FY2027",
        level=common_pb2.ORG_LEVEL_INDIVIDUAL, state=state, approver_id=approver, actor_id=actor, reason=reason,
        content=body or content())
    data.submit_time.FromDatetime(T0)
    return to_wire(goals_events.v2mom_event(event_type, data))


def submitted(revision=2, **kw):
    return v2mom_event(goals_events.V2MOM_SUBMITTED, revision, goals_pb2.V2MOM_STATE_SUBMITTED, **kw)


def approved(revision=3, **kw):
    return v2mom_event(goals_events.V2MOM_APPROVED, revision, goals_pb2.V2MOM_STATE_PUBLISHED, actor="lee", **kw)


def changes_requested(revision=3, reason="Add a measure", **kw):
    return v2mom_event(goals_events.V2MOM_CHANGES_REQUESTED, revision, goals_pb2.V2MOM_STATE_CHANGES_REQUESTED,
                       reason=reason, actor="lee", **kw)


def stale(item_id="m1", kind=checkins_pb2.ITEM_KIND_METHOD, owner="olive"):
    data = events_pb2.ItemStalenessEventData(
        item=checkins_pb2.StaleItem(v2mom_id="v2m_1", kind=kind, item_id=item_id, title="Ship it", owner_id=owner,
                                    org_unit_id="platform", cycle_id="FY2027",
                                    staleness=checkins_pb2.STALENESS_STALE),
        cadence=checkins_pb2.CADENCE_WEEKLY, v2mom_owner_id="olive")
    event = to_wire(checkin_events.staleness_event(checkin_events.ITEM_BECAME_STALE, data))
    event["time"] = T0.isoformat().replace("+00:00", "Z")
    return event


def checkin(item_id="m1", recorded=T0 + timedelta(hours=30)):
    c = checkins_pb2.Checkin(id=f"chk_{uuid.uuid4().hex[:8]}", v2mom_id="v2m_1", item_kind=checkins_pb2.ITEM_KIND_METHOD,
                             item_id=item_id, author_id="olive", owner_id="olive")
    c.observe_time.FromDatetime(recorded)
    c.record_time.FromDatetime(recorded)
    return to_wire(checkin_events.checkin_event(checkin_events.CHECKIN_RECORDED, events_pb2.CheckinEventData(checkin=c)))


def progress(revision, off_track, item_id="x1"):
    data = events_pb2.ProgressEventData(v2mom_id="v2m_1", owner_id="olive", org_unit_id="platform", revision=revision,
                                        off_track_measures=off_track, measures=2, item_kind=checkins_pb2.ITEM_KIND_MEASURE,
                                        item_id=item_id, cause="checkin")
    return to_wire(checkin_events.progress_event(data))


def notifications(db, **query):
    return list(db[NOTIFICATIONS].find(query))


def deliveries(db, **query):
    return list(db[DELIVERIES].find(query))


def counts(db):
    return db[NOTIFICATIONS].count_documents({}), db[DELIVERIES].count_documents({}), db[SCHEDULES].count_documents({})


def fire_due(world, at):
    world.clock.now = at
    while (schedule := world.notifier.schedules.claim_due(at, 30)) is not None:
        world.notifier.fire(schedule)
        assert world.notifier.schedules.done(schedule, at)
