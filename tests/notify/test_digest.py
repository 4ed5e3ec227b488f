"""The weekly digest (DIGEST): the pure window rules, the handlers in process on the wire store, and notify-worker as a
process gathering held emails into one message to the SMTP sink.

- managers (people with reports in the people copy) and Informed people get one message a week at
  NOTIFY_DIGEST_LOCAL_TIME in their time zone: their team's check-ins of the week, what went off track, approvals
  waiting on them;
- a person who chose ``digest`` for a digestible kind gets it in the inbox at once and its email in the next digest,
  all in one message; an item due before that digest goes at once.
"""

import time
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from services.checkins import events as checkin_events
from services.goals import events as goals_events
from services.notify import kinds, rules, schedules
from services.notify.deliveries import GATHERED, HELD
from services.notify.directory import People
from services.notify.dispatch import Dispatcher
from services.notify.handlers import Notifier, WorkerSettings
from services.notify.store import DELIVERIES, INDEXES, NOTIFICATIONS, PREFERENCES, SCHEDULES
from services.platform.bus.events import to_wire
from services.platform.store.mongo import ensure_indexes
from tests.support.notify import Clock, Recorder, mails_to, publish
from tests.support.processes import wait_for
from v2mom.v1 import checkins_pb2, common_pb2, events_pb2, goals_pb2
from google.type import date_pb2

T0 = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)  # a Wednesday
SLOT = datetime(2026, 6, 15, 8, 0, tzinfo=UTC)  # the next Monday 08:00 UTC
UTC_ZONE = kinds.zone("UTC")


@pytest.fixture
def broker_uri(isolated_broker_uri):
    return isolated_broker_uri


# --- the rules (pure) -------------------------------------------------------------------------------------------


def test_digest_window_membership_and_what_goes_at_once():
    assert schedules.in_digest_window(SLOT - timedelta(days=7), SLOT)
    assert schedules.in_digest_window(SLOT - timedelta(seconds=1), SLOT)
    assert not schedules.in_digest_window(SLOT, SLOT)  # the next digest's
    assert not schedules.in_digest_window(SLOT - timedelta(days=7, seconds=1), SLOT)  # last week's
    assert not schedules.in_digest_window(None, SLOT)
    assert schedules.goes_at_once(SLOT - timedelta(hours=1), SLOT)
    assert schedules.goes_at_once(SLOT, SLOT)
    assert not schedules.goes_at_once(SLOT + timedelta(minutes=1), SLOT)
    assert not schedules.goes_at_once(None, SLOT)  # nothing due: it can wait


def test_one_digest_a_local_week_however_often_it_is_asked_for():
    slots = {schedules.digest_slot(T0 + timedelta(hours=h), "MON 08:00", UTC_ZONE) for h in range(0, 100, 7)}
    assert slots == {(SLOT, "2026-W25")}
    assert schedules.digest_slot(SLOT + timedelta(minutes=1), "MON 08:00", UTC_ZONE) == (SLOT + timedelta(days=7), "2026-W26")
    # Auckland: Monday 08:00 there is Sunday 20:00 UTC, and the week is Auckland's
    assert schedules.digest_slot(T0, "MON 08:00", kinds.zone("Pacific/Auckland")) == (
        datetime(2026, 6, 14, 20, 0, tzinfo=UTC), "2026-W25")


def test_the_digest_says_nothing_when_there_is_nothing():
    person = rules.Person("lee", "Lee")
    assert rules.digest("sch_1", person, SLOT - timedelta(days=7), SLOT, [], [], [], []) is None
    plan = rules.digest("sch_1", person, SLOT - timedelta(days=7), SLOT, [], [], [{"title": "FY27", "owner": "Acc"}], [])
    assert plan.kind == kinds.DIGEST and "Waiting on your approval (1):\n- \u201cFY27\u201d by Acc" in plan.body


# --- in process ------------------------------------------------------------------------------------------------------


PEOPLE = {"olive": "lee", "acc": "lee", "lee": "dana", "dana": "", "ivy": ""}


@pytest.fixture
def world(notify_db):
    ensure_indexes(notify_db, INDEXES)
    people = People(notify_db, goals=None, cache_seconds=0)
    for person_id, manager in PEOPLE.items():
        people.upsert_from_event({"id": person_id, "displayName": person_id.title(), "email": f"{person_id}@acme.test",
                                  "managerId": manager, "orgUnitId": "platform", "active": True}, 1)
    clock = Clock(T0)
    settings = WorkerSettings(portal_url_template="https://portal.test/v2moms/{v2mom_id}", lease_seconds=30)
    email = Recorder()

    class World:
        pass

    w = World()
    w.db, w.clock, w.email, w.people = notify_db, clock, email, people
    w.notifier = Notifier(notify_db, people, settings, now=clock)
    w.dispatcher = Dispatcher(notify_db, people, email, Recorder(), settings, now=clock)
    return w


def due(day: date) -> date_pb2.Date:
    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


def v2mom_event(event_type, state, v2mom_id="v2m_1", owner="olive", revision=3, measures=(), methods=()):
    data = events_pb2.V2MOMEventData(
        v2mom_id=v2mom_id, revision=revision, owner_id=owner, org_unit_id="platform", cycle_id="FY2027",
        level=common_pb2.ORG_LEVEL_INDIVIDUAL, state=state, approver_id="lee", actor_id="lee",
        content=goals_pb2.V2MOMContent(title=f"{owner.title()} FY27", methods=list(methods), measures=list(measures)))
    data.publish_time.FromDatetime(T0 - timedelta(days=1))
    return to_wire(goals_events.v2mom_event(event_type, data))


def approved(**kw):
    return v2mom_event(goals_events.V2MOM_APPROVED, goals_pb2.V2MOM_STATE_PUBLISHED, **kw)


def measure(item_id, due_day):
    return goals_pb2.Measure(id=item_id, title=f"Measure {item_id}", owner_id="olive", due_date=due(due_day))


def progress(revision, item_id, v2mom_id="v2m_1", owner="olive"):
    data = events_pb2.ProgressEventData(v2mom_id=v2mom_id, owner_id=owner, org_unit_id="platform", revision=revision,
                                        off_track_measures=revision, measures=4, item_kind=checkins_pb2.ITEM_KIND_MEASURE,
                                        item_id=item_id, cause="checkin")
    return to_wire(checkin_events.progress_event(data))


def checkin(item_id, kind, recorded, status=checkins_pb2.CHECKIN_STATUS_ON_TRACK):
    c = checkins_pb2.Checkin(id=f"chk_{uuid.uuid4().hex[:8]}", v2mom_id="v2m_1", item_kind=kind, item_id=item_id,
                             author_id="olive", owner_id="olive", cycle_id="FY2027", status=status, progress_percent=30)
    c.observe_time.FromDatetime(recorded)
    c.record_time.FromDatetime(recorded)
    return to_wire(checkin_events.checkin_event(checkin_events.CHECKIN_RECORDED, events_pb2.CheckinEventData(checkin=c)))


def digests(db, state=None):
    return list(db[SCHEDULES].find({"kind": schedules.DIGEST, **({"state": state} if state else {})}))


def fire_digests(world, at):
    world.clock.now = at
    while (schedule := world.notifier.schedules.claim_due(at, 30)) is not None:
        if schedule["kind"] == schedules.DIGEST:
            world.notifier.fire(schedule)
        world.notifier.schedules.done(schedule, at)


def prefer_digest(db, person_id, kind=kinds.ATTENTION):
    db[PREFERENCES].insert_one({"_id": person_id, "kinds": {
        kind: {"channels": [kinds.INBOX, kinds.EMAIL], "digest": True}}})


def test_managers_get_a_digest_schedule_once_a_week_from_person_upserted(world):
    for person_id, revision in (("olive", 2), ("acc", 2), ("olive", 3)):
        world.notifier.person_upserted(to_wire(goals_events.person_event(events_pb2.PersonEventData(
            person=common_pb2.Person(id=person_id, display_name=person_id, manager_id="lee", active=True),
            revision=revision))))
    [lee] = digests(world.db)
    assert lee["payload"] == {"person_id": "lee", "week": "2026-W25"} and lee["due_at"] == SLOT
    world.notifier.person_upserted(to_wire(goals_events.person_event(events_pb2.PersonEventData(
        person=common_pb2.Person(id="lee", display_name="Lee", manager_id="dana", active=True), revision=2))))
    assert sorted(s["payload"]["person_id"] for s in digests(world.db)) == ["dana", "lee"]  # dana: lee's manager


def test_a_managers_and_an_informed_persons_digest_lists_the_weeks_checkins_off_track_and_approvals(world):
    world.notifier.v2mom_approved(approved(
        methods=[goals_pb2.Method(id="m1", title="Ship it", owner_id="olive", accountable_id="olive",
                                  informed_ids=["ivy"])],
        measures=[measure("x1", date(2026, 12, 31))]))
    assert [s["payload"]["person_id"] for s in digests(world.db)] == ["ivy"]  # Informed on m1
    world.notifier.ensure_digest(world.people.get("lee"))
    world.notifier.checkin_recorded(checkin("m1", checkins_pb2.ITEM_KIND_METHOD, T0))
    world.notifier.checkin_recorded(checkin("x1", checkins_pb2.ITEM_KIND_MEASURE, T0 + timedelta(hours=1),
                                            checkins_pb2.CHECKIN_STATUS_OFF_TRACK))
    world.notifier.checkin_recorded(checkin("m1", checkins_pb2.ITEM_KIND_METHOD, SLOT - timedelta(days=8)))  # last week
    world.notifier.v2mom_submitted(v2mom_event(goals_events.V2MOM_SUBMITTED, goals_pb2.V2MOM_STATE_SUBMITTED,
                                               v2mom_id="v2m_acc", owner="acc", revision=2))
    fire_digests(world, SLOT)
    by_person = {n["recipient_id"]: n for n in world.db[NOTIFICATIONS].find({"kind": kinds.DIGEST})}
    assert set(by_person) == {"lee", "ivy"}
    lee = by_person["lee"]
    assert (lee["facts"]["checkins"], lee["facts"]["off_track"], lee["facts"]["approvals_waiting"]) == (2, 1, 1)
    assert "Olive on \u201cShip it\u201d: on track, 30%" in lee["body"]
    assert "Went off track (1):\n- \u201cMeasure x1\u201d (Olive)" in lee["body"]
    assert "\u201cAcc FY27\u201d by Acc" in lee["body"]
    ivy = by_person["ivy"]
    assert (ivy["facts"]["checkins"], ivy["facts"]["off_track"], ivy["facts"]["approvals_waiting"]) == (1, 0, 0)
    # by email only (the default for digests), each once; next week's are planned
    assert [d["channel"] for d in world.db[DELIVERIES].find({"kind": kinds.DIGEST})] == [kinds.EMAIL, kinds.EMAIL]
    assert sorted((s["payload"]["person_id"], s["due_at"]) for s in digests(world.db, schedules.WAITING)) == [
        ("ivy", SLOT + timedelta(days=7)), ("lee", SLOT + timedelta(days=7))]


def test_held_emails_go_in_one_digest_and_an_item_due_before_it_goes_at_once(world):
    prefer_digest(world.db, "olive")
    world.notifier.v2mom_approved(approved(measures=[
        measure("x1", date(2026, 12, 31)), measure("x2", date(2026, 12, 31)), measure("x3", date(2026, 12, 31)),
        measure("x4", date(2026, 6, 12))]))  # due Friday: before Monday's digest
    for revision, item_id in enumerate(("x1", "x2", "x3", "x4"), start=1):
        world.notifier.progress_changed(progress(revision, item_id))
    attention = list(world.db[NOTIFICATIONS].find({"kind": kinds.ATTENTION, "recipient_id": "olive"}))
    assert len(attention) == 4  # all four in the inbox at once
    emails = {d["notification_id"]: d for d in world.db[DELIVERIES].find({"kind": kinds.ATTENTION, "channel": kinds.EMAIL})}
    by_item = {n["item_id"]: emails[n["_id"]] for n in attention}
    assert [by_item[x].get("digest_state") for x in ("x1", "x2", "x3", "x4")] == [HELD, HELD, HELD, None]
    assert by_item["x4"]["status"] == "PENDING" and by_item["x1"]["status"] == "SKIPPED"
    [olive] = digests(world.db, schedules.WAITING)
    assert olive["payload"]["person_id"] == "olive" and olive["due_at"] == SLOT

    world.dispatcher.run_once(20)
    assert sorted(m.kind for m in world.email.sent) == [kinds.APPROVAL_DECIDED, kinds.ATTENTION]  # x4 at once
    schedule = world.notifier.schedules.claim_due(SLOT, 30)
    world.clock.now = SLOT
    world.notifier.fire(schedule)
    world.notifier.fire(schedule)  # fired again after a lost lease: nothing new
    assert world.notifier.schedules.done(schedule, SLOT)
    [digest] = list(world.db[NOTIFICATIONS].find({"kind": kinds.DIGEST}))
    held_ids = [n["_id"] for n in sorted(attention, key=lambda n: n["item_id"])][:3]
    assert sorted(digest["facts"]["held_notification_ids"]) == sorted(held_ids)
    assert world.db[DELIVERIES].count_documents({"digest_state": GATHERED, "digest_notification_id": digest["_id"]}) == 3
    world.clock.now = SLOT + timedelta(seconds=5)
    world.dispatcher.run_once(20)
    [mail] = [m for m in world.email.sent if m.kind == kinds.DIGEST]
    assert "Held for this digest (3):" in mail.body and mail.body.count("Off track:") == 3
    assert mail.unsubscribe_url  # the digest is unsubscribable
    assert digests(world.db, schedules.WAITING) == []  # olive manages nobody and is Informed on nothing


def test_an_empty_week_sends_nothing_and_plans_the_next(world):
    world.notifier.ensure_digest(world.people.get("lee"))
    fire_digests(world, SLOT)
    assert world.db[NOTIFICATIONS].count_documents({"kind": kinds.DIGEST}) == 0
    [following] = digests(world.db, schedules.WAITING)
    assert following["due_at"] == SLOT + timedelta(days=7)


# --- notify-worker as a process ------------------------------------------------------------------------------------


def test_the_worker_gathers_three_held_emails_into_one_digest_and_sends_a_due_item_at_once(
        org, notify_worker, connection, ndb, sink):  # noqa: F811 (the process fixtures of test_worker_process)
    today = datetime.now(UTC).date()
    # the digest two days from now, so an item due today falls inside the window whatever day the test runs
    slot = f"{schedules.WEEKDAYS[(today.weekday() + 2) % 7]} 12:00"
    notify_worker.start(connection, NOTIFY_DIGEST_LOCAL_TIME=slot)
    prefer_digest(ndb, "olive")
    publish(connection, approved(v2mom_id="v2m_digest", measures=[
        measure("x1", today + timedelta(days=300)), measure("x2", today + timedelta(days=300)),
        measure("x3", today + timedelta(days=300)), measure("x4", today)]))
    wait_for(lambda: ndb["items"].count_documents({"v2mom_id": "v2m_digest"}) == 4, message="approval not consumed")
    for revision, item_id in enumerate(("x1", "x2", "x3", "x4"), start=1):  # one at a time: they carry revisions
        publish(connection, progress(revision, item_id, v2mom_id="v2m_digest"), exchange="checkins.events")
        wait_for(lambda n=revision: ndb[NOTIFICATIONS].count_documents({"kind": kinds.ATTENTION}) == n,
                 message=f"progress_changed {revision} not consumed")

    def attention_mails():
        return [m for m in mails_to(sink, "olive@acme.test") if m["Subject"].startswith("Off track")]

    [at_once] = wait_for(attention_mails, message="the item due inside the window never went at once")
    assert at_once["Subject"].startswith("Off track: 4 of 4")
    wait_for(lambda: ndb[DELIVERIES].count_documents({"digest_state": HELD}) == 3, message="emails not held")
    [schedule] = wait_for(lambda: digests(ndb, schedules.WAITING), message="no digest planned")
    # its time comes now (the digest lists what was held before its time, so not earlier than the held emails)
    ndb[SCHEDULES].update_one({"_id": schedule["_id"]}, {"$set": {"due_at": datetime.now(UTC) + timedelta(milliseconds=200)}})

    def digest_mails():
        return [m for m in mails_to(sink, "olive@acme.test") if m["Subject"].startswith("Your week in V2MOMs")]

    [mail] = wait_for(digest_mails, message="the digest never went")
    text = mail.get_body(("plain",)).get_content()
    assert "Held for this digest (3):" in text
    for n in (1, 2, 3):
        assert f"Off track: {n} of 4" in text
    assert "unsubscribe?token=" in mail["List-Unsubscribe"]
    time.sleep(1.0)  # the timers keep ticking: no second digest, and no held email goes on its own
    assert len(digest_mails()) == 1 and len(attention_mails()) == 1
    assert ndb[DELIVERIES].count_documents({"digest_state": GATHERED}) == 3
