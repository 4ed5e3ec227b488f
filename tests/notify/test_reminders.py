"""Check-in reminders (CHECKIN_REMINDER): the pure timing rules, the handlers in process on the wire store, and
notify-worker as a process sending one to the SMTP sink.

- a reminder goes at the first NOTIFY_REMINDER_LOCAL_TIME in the owner's time zone in the last 7 days before the item
  is due for a check-in (last check-in or publication + the cycle's cadence window), across DST changes and for a
  person whose Monday morning is Sunday evening in UTC;
- it is skipped (and moved) when the item was checked in within the window, cancelled and re-planned by a
  checkin_recorded, cancelled by an archive or by an approval that removes the item, and never sent twice.
"""

import socket
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.checkins import events as checkin_events
from services.goals import events as goals_events
from services.notify import kinds, schedules
from services.notify.directory import People
from services.notify.dispatch import Dispatcher
from services.notify.handlers import Notifier, WorkerSettings
from services.notify.store import CYCLES, DELIVERIES, INDEXES, ITEMS, NOTIFICATIONS, SCHEDULES, STATS
from services.platform.bus.events import to_wire
from services.platform.core.clock import to_date_proto
from services.platform.store.mongo import ensure_indexes
from tests.support.notify import Clock, Recorder, mails_to, publish
from tests.support.processes import log_tail, wait_for
from v2mom.v1 import checkins_pb2, common_pb2, events_pb2, goals_pb2

UTC_ZONE = kinds.zone("UTC")
NEW_YORK = kinds.zone("America/New_York")
BERLIN = kinds.zone("Europe/Berlin")
AUCKLAND = kinds.zone("Pacific/Auckland")
T0 = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)  # a Wednesday
PUBLISHED = T0 - timedelta(days=20)  # Thursday 21 May


@pytest.fixture
def broker_uri(isolated_broker_uri):
    return isolated_broker_uri


# --- the rules (pure) -------------------------------------------------------------------------------------------


def test_weekly_times_parse_and_bad_ones_are_refused():
    assert schedules.parse_weekly_time("MON 09:00") == (0, datetime(2026, 1, 1, 9).time())
    assert schedules.parse_weekly_time("sun 23:59")[0] == 6
    for bad in ("MON", "09:00", "MONDAY 09:00", "MON 9:00", "MON 24:00", ""):
        with pytest.raises(ValueError):
            schedules.parse_weekly_time(bad)


def test_next_weekly_is_at_or_after_and_keeps_the_local_time_across_dst():
    monday = datetime(2026, 6, 15, 9, 0, tzinfo=UTC)
    assert schedules.next_weekly(T0, "MON 09:00", UTC_ZONE) == monday
    assert schedules.next_weekly(monday, "MON 09:00", UTC_ZONE) == monday  # at: itself
    assert schedules.next_weekly(monday + timedelta(seconds=1), "MON 09:00", UTC_ZONE) == monday + timedelta(days=7)
    # New York springs forward on Sunday 8 March 2026: 09:00 EST is 14:00 UTC, 09:00 EDT 13:00 UTC
    assert schedules.next_weekly(datetime(2026, 3, 1, tzinfo=UTC), "MON 09:00", NEW_YORK) == datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
    assert schedules.next_weekly(datetime(2026, 3, 3, tzinfo=UTC), "MON 09:00", NEW_YORK) == datetime(2026, 3, 9, 13, 0, tzinfo=UTC)
    # Berlin falls back on Sunday 25 October 2026: 09:00 CEST is 07:00 UTC, 09:00 CET 08:00 UTC
    assert schedules.next_weekly(datetime(2026, 10, 20, tzinfo=UTC), "MON 09:00", BERLIN) == datetime(2026, 10, 26, 8, 0, tzinfo=UTC)
    assert schedules.next_weekly(datetime(2026, 10, 13, tzinfo=UTC), "MON 09:00", BERLIN) == datetime(2026, 10, 19, 7, 0, tzinfo=UTC)


def test_a_person_whose_monday_morning_is_sunday_evening_in_utc():
    # Auckland in June is UTC+12: Monday 09:00 there is Sunday 21:00 UTC
    assert schedules.next_weekly(T0, "MON 09:00", AUCKLAND) == datetime(2026, 6, 14, 21, 0, tzinfo=UTC)
    # already Monday in Auckland (Sunday 22:00 UTC) but past 09:00: next week
    assert schedules.next_weekly(datetime(2026, 6, 14, 22, 0, tzinfo=UTC), "MON 09:00", AUCKLAND) == datetime(
        2026, 6, 21, 21, 0, tzinfo=UTC)
    assert schedules.reminder_due(PUBLISHED, "CADENCE_BIWEEKLY", "MON 09:00", AUCKLAND) == datetime(
        2026, 5, 31, 21, 0, tzinfo=UTC)


def test_reminders_go_at_the_first_local_time_in_the_last_seven_days_before_the_item_is_due():
    basis = T0  # checked in on Wednesday 10 June
    assert schedules.checkin_due(basis, "CADENCE_BIWEEKLY") == T0 + timedelta(days=14)
    # biweekly: due Wed 24 June; its last week starts Wed 17 June: Monday 22 June
    assert schedules.reminder_due(basis, "CADENCE_BIWEEKLY", "MON 09:00", UTC_ZONE) == datetime(2026, 6, 22, 9, 0, tzinfo=UTC)
    # weekly: the whole window is the last week: the first Monday after the check-in
    assert schedules.reminder_due(basis, "CADENCE_WEEKLY", "MON 09:00", UTC_ZONE) == datetime(2026, 6, 15, 9, 0, tzinfo=UTC)
    # monthly (30 days): due Fri 10 July, last week from Fri 3 July: Monday 6 July
    assert schedules.reminder_due(basis, "CADENCE_MONTHLY", "MON 09:00", UTC_ZONE) == datetime(2026, 7, 6, 9, 0, tzinfo=UTC)
    # another configured time
    assert schedules.reminder_due(basis, "CADENCE_BIWEEKLY", "FRI 16:30", UTC_ZONE) == datetime(2026, 6, 19, 16, 30, tzinfo=UTC)
    # an unknown cadence counts as the default, biweekly
    assert schedules.cadence_window("") == schedules.cadence_window("CADENCE_BIWEEKLY") == timedelta(days=14)


def test_checked_in_within_the_window_means_the_reminder_is_not_due_yet():
    fired_at = datetime(2026, 6, 22, 9, 0, tzinfo=UTC)
    assert not schedules.reminder_not_due_yet(T0, "CADENCE_BIWEEKLY", "MON 09:00", UTC_ZONE, fired_at)
    checked_in = datetime(2026, 6, 19, 8, 0, tzinfo=UTC)  # three days before the reminder
    assert schedules.reminder_not_due_yet(checked_in, "CADENCE_BIWEEKLY", "MON 09:00", UTC_ZONE, fired_at)
    # weekly: a check-in last Monday after 09:00 is due again today; the reminder goes
    assert not schedules.reminder_not_due_yet(datetime(2026, 6, 15, 10, 0, tzinfo=UTC), "CADENCE_WEEKLY",
                                              "MON 09:00", UTC_ZONE, fired_at)


def test_the_weekly_times_come_from_the_environment_and_a_bad_one_stops_the_worker(monkeypatch):
    from services.platform.core.config import ConfigError

    monkeypatch.setenv("NOTIFY_REMINDER_LOCAL_TIME", "fri 16:30")
    monkeypatch.delenv("NOTIFY_DIGEST_LOCAL_TIME", raising=False)
    settings = WorkerSettings.from_env()
    assert (settings.reminder_local_time, settings.digest_local_time) == ("fri 16:30", "MON 08:00")
    monkeypatch.setenv("NOTIFY_DIGEST_LOCAL_TIME", "Monday 8am")
    with pytest.raises(ConfigError, match="NOTIFY_DIGEST_LOCAL_TIME"):
        WorkerSettings.from_env()


# --- in process ------------------------------------------------------------------------------------------------------


@pytest.fixture
def world(notify_db):
    ensure_indexes(notify_db, INDEXES)
    people = People(notify_db, goals=None, cache_seconds=0)
    for person_id, manager, zone in (("olive", "lee", "Pacific/Auckland"), ("lee", "", "UTC"), ("acc", "lee", "UTC")):
        people.upsert_from_event({"id": person_id, "displayName": person_id.title(), "email": f"{person_id}@acme.test",
                                  "managerId": manager, "orgUnitId": "platform", "active": True, "timeZone": zone}, 1)
    clock = Clock(T0)
    settings = WorkerSettings(portal_url_template="https://portal.test/v2moms/{v2mom_id}/{item_id}", lease_seconds=30)
    email = Recorder()

    class World:
        pass

    w = World()
    w.db, w.clock, w.email = notify_db, clock, email
    w.notifier = Notifier(notify_db, people, settings, now=clock)
    w.dispatcher = Dispatcher(notify_db, people, email, Recorder(), settings, now=clock)
    return w


def content(methods=("m1",), measures=("x1",)):
    return goals_pb2.V2MOMContent(
        title="Olive FY27",
        methods=[goals_pb2.Method(id=m, title=f"Method {m}", owner_id="olive", accountable_id="acc") for m in methods],
        measures=[goals_pb2.Measure(id=x, title=f"Measure {x}", method_ids=[]) for x in measures],
    )


def approved(revision=3, published=PUBLISHED, v2mom_id="v2m_1", **kw):
    data = events_pb2.V2MOMEventData(
        v2mom_id=v2mom_id, revision=revision, owner_id="olive", org_unit_id="platform", cycle_id="FY2027",
        level=common_pb2.ORG_LEVEL_INDIVIDUAL, state=goals_pb2.V2MOM_STATE_PUBLISHED, approver_id="lee", actor_id="lee",
        content=content(**kw))
    data.publish_time.FromDatetime(published)
    return to_wire(goals_events.v2mom_event(goals_events.V2MOM_APPROVED, data))


def archived(revision=9):
    data = events_pb2.V2MOMEventData(v2mom_id="v2m_1", revision=revision, owner_id="olive", org_unit_id="platform",
                                     cycle_id="FY2027", state=goals_pb2.V2MOM_STATE_ARCHIVED)
    return to_wire(goals_events.v2mom_event(goals_events.V2MOM_ARCHIVED, data))


def checkin(recorded, item_id="m1", kind=checkins_pb2.ITEM_KIND_METHOD, cadence=checkins_pb2.CADENCE_UNSPECIFIED,
            v2mom_id="v2m_1"):
    c = checkins_pb2.Checkin(id=f"chk_{uuid.uuid4().hex[:8]}", v2mom_id=v2mom_id, item_kind=kind, item_id=item_id,
                             author_id="olive", owner_id="olive", cycle_id="FY2027",
                             status=checkins_pb2.CHECKIN_STATUS_ON_TRACK, progress_percent=40)
    c.observe_time.FromDatetime(recorded)
    c.record_time.FromDatetime(recorded)
    return to_wire(checkin_events.checkin_event(checkin_events.CHECKIN_RECORDED,
                                                events_pb2.CheckinEventData(checkin=c, cadence=cadence)))


def reminders(db, state=None):
    query = {"kind": schedules.CHECKIN_REMINDER, **({"state": state} if state else {})}
    return sorted(db[SCHEDULES].find(query), key=lambda s: (s["due_at"], s["_id"]))


def fire_due(world, at):
    world.clock.now = at
    fired = 0
    while (schedule := world.notifier.schedules.claim_due(at, 30)) is not None:
        world.notifier.fire(schedule)
        world.notifier.schedules.done(schedule, at)
        fired += 1
    return fired


def counts(db):
    return tuple(db[name].count_documents({}) for name in (NOTIFICATIONS, DELIVERIES, SCHEDULES))


def test_an_approval_plans_one_reminder_per_item_in_the_owners_time_zone(world):
    event = approved()
    world.notifier.v2mom_approved(event)
    waiting = reminders(world.db, schedules.WAITING)
    assert sorted(s["payload"]["item_key"] for s in waiting) == ["v2m_1/ITEM_KIND_MEASURE/x1", "v2m_1/ITEM_KIND_METHOD/m1"]
    # published Thu 21 May, biweekly (the cycle's cadence is not known yet): Monday 09:00 in Auckland = Sun 21:00 UTC
    assert {s["due_at"] for s in waiting} == {datetime(2026, 5, 31, 21, 0, tzinfo=UTC)}
    item = world.db[ITEMS].find_one({"_id": "v2m_1/ITEM_KIND_MEASURE/x1"})
    assert item["owner_id"] == "olive" and item["active"] and item["reminder_id"] in {s["_id"] for s in waiting}
    before = counts(world.db)
    world.notifier.v2mom_approved(event)  # replayed
    assert counts(world.db) == before


def test_a_due_reminder_tells_the_owner_by_inbox_and_email_with_unsubscribe_counts_it_and_plans_the_next(world):
    world.notifier.v2mom_approved(approved(measures=()))
    assert fire_due(world, T0) == 1
    [note] = list(world.db[NOTIFICATIONS].find({"kind": kinds.CHECKIN_REMINDER}))
    assert note["recipient_id"] == "olive" and note["item_id"] == "m1" and "Method m1" in note["title"]
    assert note["facts"]["cadence"] == "CADENCE_BIWEEKLY" and note["facts"]["cadence_assumed"] is True
    assert note["link"] == "https://portal.test/v2moms/v2m_1/m1"
    assert world.db[STATS].find_one({"_id": "reminders|2026-06-10"})["reminded"] == 1
    [first, following] = reminders(world.db)
    assert first["state"] == schedules.DONE and following["state"] == schedules.WAITING
    assert following["due_at"] == datetime(2026, 6, 14, 21, 0, tzinfo=UTC)  # the next Monday 09:00 in Auckland
    world.dispatcher.run_once(10)
    [mail] = [m for m in world.email.sent if m.kind == kinds.CHECKIN_REMINDER]
    assert mail.recipient_email == "olive@acme.test"
    assert mail.unsubscribe_url.startswith("http://127.0.0.1:9101/unsubscribe?token=")
    # a check-in within 48 hours converts it, once
    event = checkin(T0 + timedelta(hours=5))
    world.notifier.checkin_recorded(event)
    world.notifier.checkin_recorded(event)
    assert world.db[STATS].find_one({"_id": "reminders|2026-06-10"})["converted"] == 1


def test_a_reminder_fired_twice_writes_nothing_new(world):
    event = approved(measures=())
    world.notifier.v2mom_approved(event)
    schedule = world.notifier.schedules.claim_due(T0, 30)
    world.notifier.fire(schedule)  # ... and the worker dies before marking it done
    before = counts(world.db)
    again = world.notifier.schedules.claim_due(T0 + timedelta(seconds=31), 30)
    assert again["_id"] == schedule["_id"]
    world.clock.now = T0 + timedelta(seconds=31)
    world.notifier.fire(again)
    assert counts(world.db) == before
    assert len(reminders(world.db, schedules.WAITING)) == 2  # itself (not marked yet) and the next one
    assert world.notifier.schedules.done(again, T0)
    world.notifier.v2mom_approved(event)  # the approval replayed plans nothing more
    assert counts(world.db) == before


def test_a_checkin_cancels_the_waiting_reminder_and_plans_the_next_from_the_checkin(world):
    world.notifier.v2mom_approved(approved(measures=()))
    [waiting] = reminders(world.db, schedules.WAITING)
    recorded = datetime(2026, 5, 29, 10, 0, tzinfo=UTC)
    event = checkin(recorded, cadence=checkins_pb2.CADENCE_WEEKLY)
    world.notifier.checkin_recorded(event)
    assert world.db[SCHEDULES].find_one({"_id": waiting["_id"]})["state"] == schedules.CANCELLED
    [planned] = reminders(world.db, schedules.WAITING)
    # weekly now (the check-in said so): the first Monday 09:00 Auckland after Fri 29 May
    assert planned["due_at"] == datetime(2026, 5, 31, 21, 0, tzinfo=UTC)
    assert world.db[CYCLES].find_one({"_id": "FY2027"})["cadence"] == "CADENCE_WEEKLY"
    before = counts(world.db)
    world.notifier.checkin_recorded(event)  # replayed
    world.notifier.checkin_recorded(checkin(recorded - timedelta(days=3)))  # an older one, late
    assert reminders(world.db, schedules.WAITING) == [planned]
    assert counts(world.db)[2] == before[2]


def test_checked_in_within_the_window_skips_the_reminder_and_moves_it(world):
    world.notifier.v2mom_approved(approved(measures=()))
    # a check-in the reminder was not moved for (it raced the firing): the item's copy knows it
    world.db[ITEMS].update_one({"_id": "v2m_1/ITEM_KIND_METHOD/m1"},
                               {"$set": {"last_checkin_at": datetime(2026, 6, 5, tzinfo=UTC)}})
    assert fire_due(world, T0) == 1
    assert world.db[NOTIFICATIONS].count_documents({}) == 1  # the approval decision only
    [moved] = reminders(world.db, schedules.WAITING)
    # biweekly from Fri 5 June: due Fri 19 June; last week from Fri 12 June: Monday 15 June 09:00 Auckland
    assert moved["due_at"] == datetime(2026, 6, 14, 21, 0, tzinfo=UTC)


def test_an_archive_or_an_approval_that_removes_the_item_cancels_its_reminder(world):
    world.notifier.v2mom_approved(approved())
    world.notifier.v2mom_approved(approved(revision=5, measures=()))  # x1 removed
    waiting = reminders(world.db, schedules.WAITING)
    assert [s["payload"]["item_id"] for s in waiting] == ["m1"]
    assert world.db[ITEMS].find_one({"_id": "v2m_1/ITEM_KIND_MEASURE/x1"})["active"] is False
    world.notifier.v2mom_approved(approved(revision=3))  # the older approval, late: x1 stays removed
    assert len(reminders(world.db, schedules.WAITING)) == 1
    world.notifier.v2mom_archived(archived())
    assert reminders(world.db, schedules.WAITING) == []
    assert fire_due(world, T0 + timedelta(days=30)) == 0


# --- notify-worker as a process ------------------------------------------------------------------------------------


def test_the_worker_reminds_at_the_configured_time_once_and_a_checkin_cancels_the_next(
        org, notify_worker, connection, ndb, sink):  # noqa: F811 (the process fixtures of test_worker_process)
    notify_worker.start(connection, NOTIFY_REMINDER_LOCAL_TIME="TUE 07:30")
    now = datetime.now(UTC)
    event = approved(v2mom_id="v2m_remind", published=now - timedelta(days=20), measures=())
    publish(connection, event)

    def reminder_mails():
        return [m for m in mails_to(sink, "olive@acme.test") if "Time to check in" in m["Subject"]]

    [mail] = wait_for(reminder_mails, message="the owner was never reminded")
    assert "Method m1" in mail["Subject"]
    assert mail["List-Unsubscribe"].startswith("<") and "unsubscribe?token=" in mail["List-Unsubscribe"]
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    [fired] = list(ndb[SCHEDULES].find({"kind": schedules.CHECKIN_REMINDER, "state": "DONE"}))
    [following] = list(ndb[SCHEDULES].find({"kind": schedules.CHECKIN_REMINDER, "state": "WAITING"}))
    for due in (fired["due_at"], following["due_at"]):  # olive's time zone is UTC (goals-api has none)
        assert (due.weekday(), due.hour, due.minute) == (1, 7, 30)
    assert following["due_at"] > now

    publish(connection, event)  # replayed
    publish(connection, checkin(datetime.now(UTC), v2mom_id="v2m_remind"), exchange="checkins.events")
    wait_for(lambda: ndb[SCHEDULES].find_one({"_id": following["_id"], "state": "CANCELLED"}),
             message="the check-in never cancelled the waiting reminder")
    # The next reminder is planned by a write of its own, after the cancel: wait for it too.
    [planned] = wait_for(lambda: list(ndb[SCHEDULES].find({"kind": schedules.CHECKIN_REMINDER, "state": "WAITING"})),
                         message="the check-in planned no next reminder")
    assert planned["due_at"] > datetime.now(UTC) + timedelta(days=6)
    time.sleep(1.0)  # the replay is consumed and the timers tick: nothing more may go
    assert len(reminder_mails()) == 1
    assert ndb[NOTIFICATIONS].count_documents({"kind": kinds.CHECKIN_REMINDER}) == 1


# --- quarters: a check-in counts for its own quarter only (as in checkins) ------------------------------------------

QUARTERS = (("2026-04-01", "2026-06-30"), ("2026-07-01", "2026-09-30"), ("2026-10-01", "2026-12-31"),
            ("2027-01-01", "2027-03-31"))
Q2_START = datetime(2026, 7, 1, tzinfo=UTC)


def listed_cycle(quarters=QUARTERS, cycle_id="FY2027", first="2026-04-01", last="2027-03-31") -> common_pb2.Cycle:
    """A cycle as goals' ListCycles gives it (what a cycle event carries, without a revision)."""
    return common_pb2.Cycle(
        id=cycle_id, start_date=to_date_proto(first), end_date=to_date_proto(last),
        quarters=[common_pb2.Quarter(id=f"Q{n}", start_date=to_date_proto(start), end_date=to_date_proto(end))
                  for n, (start, end) in enumerate(quarters, start=1)])


def cycle_event(quarters=QUARTERS, revision=1, cycle_id="FY2027", event_type=goals_events.CYCLE_CHANGED,
                first="2026-04-01", last="2027-03-31"):
    return to_wire(goals_events.cycle_event(event_type, events_pb2.CycleEventData(
        cycle=listed_cycle(quarters, cycle_id, first, last), actor_id="admin", revision=revision)))


def test_a_quarters_end_makes_the_item_due_and_the_reminder_goes_in_the_new_quarter():
    ends = schedules.quarter_ends([(datetime(2026, 4, 1).date(), datetime(2026, 6, 30).date()),
                                   (datetime(2026, 7, 1).date(), datetime(2026, 9, 30).date())])
    assert ends == [Q2_START, datetime(2026, 10, 1, tzinfo=UTC)]
    checked_in = datetime(2026, 6, 26, 10, 0, tzinfo=UTC)  # Friday, four days before Q1 ends
    assert schedules.checkin_due(checked_in, "CADENCE_MONTHLY") == datetime(2026, 7, 26, 10, 0, tzinfo=UTC)
    assert schedules.checkin_due(checked_in, "CADENCE_MONTHLY", ends) == Q2_START
    # the first Monday 09:00 of Q2 (6 July), not one in Q1 that a check-in for Q2 could not answer,
    # nor the one in the month's last week (20 July) that counts the Q1 check-in as current
    monday = datetime(2026, 7, 6, 9, 0, tzinfo=UTC)
    assert schedules.reminder_due(checked_in, "CADENCE_MONTHLY", "MON 09:00", UTC_ZONE, ends) == monday
    assert schedules.reminder_due(checked_in, "CADENCE_MONTHLY", "MON 09:00", UTC_ZONE) == monday + timedelta(days=14)
    assert schedules.reminder_not_due_yet(checked_in, "CADENCE_MONTHLY", "MON 09:00", UTC_ZONE, monday)
    assert not schedules.reminder_not_due_yet(checked_in, "CADENCE_MONTHLY", "MON 09:00", UTC_ZONE, monday, ends)
    # a check-in early in a quarter is due a cadence on, as without quarters; so is one in the last quarter
    early = datetime(2026, 7, 8, tzinfo=UTC)
    assert schedules.reminder_due(early, "CADENCE_MONTHLY", "MON 09:00", UTC_ZONE, ends) == schedules.reminder_due(
        early, "CADENCE_MONTHLY", "MON 09:00", UTC_ZONE)
    late = datetime(2026, 11, 1, tzinfo=UTC)
    assert schedules.checkin_due(late, "CADENCE_WEEKLY", ends) == late + timedelta(days=7)


def monthly_checkin(recorded=datetime(2026, 6, 26, 10, 0, tzinfo=UTC)):
    return checkin(recorded, cadence=checkins_pb2.CADENCE_MONTHLY)


def test_a_checkin_in_the_last_quarter_does_not_spare_the_reminder_at_the_new_quarters_start(world):
    world.notifier.cycle_changed(cycle_event())
    world.notifier.v2mom_approved(approved(measures=()))
    world.notifier.checkin_recorded(monthly_checkin())  # Fri 26 June: a month on is 26 July, but Q1 ends first
    [planned] = reminders(world.db, schedules.WAITING)
    # the first Monday 09:00 in Auckland of Q2: Mon 6 July 09:00 NZST = Sun 5 July 21:00 UTC
    assert planned["due_at"] == datetime(2026, 7, 5, 21, 0, tzinfo=UTC)
    assert fire_due(world, datetime(2026, 7, 5, 21, 0, tzinfo=UTC)) == 1
    [note] = list(world.db[NOTIFICATIONS].find({"kind": kinds.CHECKIN_REMINDER}))
    assert note["recipient_id"] == "olive" and note["facts"]["due_date"] == "2026-07-01T00:00:00Z"
    # not checked in: the next Monday again, a week on
    [following] = reminders(world.db, schedules.WAITING)
    assert following["due_at"] == datetime(2026, 7, 12, 21, 0, tzinfo=UTC) and following["payload"]["repeat"]


def test_quarters_learned_after_the_checkin_move_its_waiting_reminder_and_older_revisions_change_nothing(world):
    world.notifier.v2mom_approved(approved(measures=()))
    world.notifier.checkin_recorded(monthly_checkin())
    [planned] = reminders(world.db, schedules.WAITING)
    assert planned["due_at"] == datetime(2026, 7, 19, 21, 0, tzinfo=UTC)  # no quarters: the month's last week

    def due():
        [waiting] = reminders(world.db, schedules.WAITING)
        assert waiting["_id"] == planned["_id"]  # the same reminder, planned again
        return waiting["due_at"]

    # an admin cuts the cycle into quarters after the check-in: Q1 ends on 30 June
    world.notifier.cycle_changed(cycle_event(revision=2, quarters=(("2026-04-01", "2026-06-30"),
                                                                   ("2026-07-01", "2027-03-31"))))
    assert due() == datetime(2026, 7, 5, 21, 0, tzinfo=UTC)
    # and then moves Q2's start before the check-in: early in its quarter, it is due a month on again
    world.notifier.cycle_changed(cycle_event(revision=3, quarters=(("2026-04-01", "2026-06-24"),
                                                                   ("2026-06-25", "2027-03-31"))))
    assert due() == datetime(2026, 7, 19, 21, 0, tzinfo=UTC)
    world.notifier.cycle_changed(cycle_event(revision=2, quarters=(("2026-04-01", "2026-06-30"),
                                                                   ("2026-07-01", "2027-03-31"))))  # older, late
    stored = world.db[CYCLES].find_one({"_id": "FY2027"})
    assert stored["cycle_revision"] == 3 and stored["quarter_ends"] == [datetime(2026, 6, 25, tzinfo=UTC),
                                                                        datetime(2027, 4, 1, tzinfo=UTC)]
    assert due() == datetime(2026, 7, 19, 21, 0, tzinfo=UTC)
    # cycle_closed carries the whole cycle too: Q1 ending Sat 27 June means Monday 29 June 09:00 NZST
    world.notifier.cycle_changed(cycle_event(revision=4, quarters=(("2026-04-01", "2026-06-27"),
                                                                   ("2026-06-28", "2027-03-31")),
                                             event_type=goals_events.CYCLE_CLOSED))
    assert due() == datetime(2026, 6, 28, 21, 0, tzinfo=UTC)


def test_listed_cycles_fill_the_quarters_no_event_named_and_never_replace_what_an_event_said(world):
    world.notifier.v2mom_approved(approved(measures=()))
    world.notifier.checkin_recorded(monthly_checkin())  # Fri 26 June; the cycle is known by its cadence alone

    def due():
        [waiting] = reminders(world.db, schedules.WAITING)
        return waiting["due_at"]

    assert due() == datetime(2026, 7, 19, 21, 0, tzinfo=UTC)  # no quarters: the month's last week
    bad = listed_cycle(cycle_id="FY2026", first="2025-04-01", last="2026-03-31")
    bad.quarters[0].end_date.day = 31  # 31 June 2025: not a day
    bad.quarters[0].end_date.month = 6
    assert world.notifier.fill_cycles([bad, listed_cycle()]) == 1  # the unreadable one is skipped, not fatal
    stored = world.db[CYCLES].find_one({"_id": "FY2027"})
    assert stored["cycle_revision"] == 0 and stored["cadence"] == "CADENCE_MONTHLY"
    assert stored["quarter_ids"] == ["Q1", "Q2", "Q3", "Q4"] and stored["quarter_ends"][0] == Q2_START
    assert world.db[CYCLES].find_one({"_id": "FY2026"}) is None
    assert due() == datetime(2026, 7, 5, 21, 0, tzinfo=UTC)  # planned again: the first Monday of Q2 in Auckland
    assert world.notifier.fill_cycles([listed_cycle()]) == 0  # the same list again changes nothing
    # an event says Q2 starts on 25 June: it replaces the listed quarters ...
    world.notifier.cycle_changed(cycle_event(revision=1, quarters=(("2026-04-01", "2026-06-24"),
                                                                   ("2026-06-25", "2027-03-31"))))
    assert due() == datetime(2026, 7, 19, 21, 0, tzinfo=UTC)
    # ... and a later list (a restart) never replaces what the event said
    assert world.notifier.fill_cycles([listed_cycle()]) == 0
    stored = world.db[CYCLES].find_one({"_id": "FY2027"})
    assert stored["cycle_revision"] == 1 and stored["quarter_ends"] == [datetime(2026, 6, 25, tzinfo=UTC),
                                                                        datetime(2027, 4, 1, tzinfo=UTC)]
    assert due() == datetime(2026, 7, 19, 21, 0, tzinfo=UTC)


def test_a_reminder_at_a_quarters_start_says_the_quarter_began_in_the_inbox_and_the_email(world):
    from services.notify.channels.email import SmtpSettings, build_email

    world.notifier.fill_cycles([listed_cycle()])
    world.notifier.v2mom_approved(approved(measures=()))
    world.notifier.checkin_recorded(monthly_checkin())  # Fri 26 June, in Q1
    assert fire_due(world, datetime(2026, 7, 5, 21, 0, tzinfo=UTC)) == 1
    [note] = list(world.db[NOTIFICATIONS].find({"kind": kinds.CHECKIN_REMINDER}))
    said = ("Q2 has begun (Wed 01 Jul): your last check-in on \u201cMethod m1\u201d (Fri 26 Jun) counted for Q1; "
            "check in for Q2. A check-in takes a minute.")
    assert note["body"] == said  # not "due for a check-in by Wed 01 Jul", read on 6 July
    world.dispatcher.run_once(10)
    [mail] = [m for m in world.email.sent if m.kind == kinds.CHECKIN_REMINDER]
    text = build_email(mail, SmtpSettings()).get_body(("plain",)).get_content()
    assert said in " ".join(text.split()) and "due for a check-in by" not in text


def test_the_reminder_text_names_the_quarters_only_when_a_quarter_ended():
    from services.notify.rules import Person, QuarterTurn, checkin_reminder

    olive = Person(id="olive", name="Olive", email="olive@acme.test")
    item = {"v2mom_id": "v2m_1", "item_id": "m1", "item_kind": "ITEM_KIND_METHOD", "title": "Method m1",
            "last_checkin_at": datetime(2026, 6, 26, 10, 0, tzinfo=UTC)}
    due = datetime(2026, 7, 26, 10, 0, tzinfo=UTC)

    def body(item, due, turn=None):
        return checkin_reminder("s1", item, olive, due, "CADENCE_MONTHLY", True, "https://p/{v2mom_id}", turn).body

    assert body(item, due) == ("\u201cMethod m1\u201d is due for a check-in by Sun 26 Jul 10:00 UTC (check-ins are "
                               "monthly; it was last checked in on Fri 26 Jun). A check-in takes a minute.")
    assert body(item, Q2_START, QuarterTurn("Q2", "Q1")).startswith(
        "Q2 has begun (Wed 01 Jul): your last check-in on \u201cMethod m1\u201d (Fri 26 Jun) counted for Q1;")
    never = {**item, "last_checkin_at": None}
    assert body(never, Q2_START, QuarterTurn("Q2")) == (
        "Q2 has begun (Wed 01 Jul): \u201cMethod m1\u201d has no check-in yet; check in for Q2. "
        "A check-in takes a minute.")
    # the cycle's last quarter ended (no quarter began) or the quarters' names are not known
    assert body(item, Q2_START, QuarterTurn()).startswith(
        "A new quarter has begun (Wed 01 Jul): your last check-in on \u201cMethod m1\u201d (Fri 26 Jun) counted for "
        "an earlier quarter; check in for a new quarter.")


def test_a_cycle_event_without_its_dates_or_with_an_impossible_quarter_is_refused(world):
    from services.platform.worker.consumer import PermanentError

    event = cycle_event()
    del event["data"]["cycle"]["startDate"]
    with pytest.raises(PermanentError, match="dates"):
        world.notifier.cycle_changed(event)
    event = cycle_event()
    event["data"]["cycle"]["quarters"][0]["endDate"] = {"year": 2026, "month": 2, "day": 30}
    with pytest.raises(PermanentError, match="not a day"):
        world.notifier.cycle_changed(event)
    assert world.db[CYCLES].count_documents({}) == 0


def test_the_worker_learns_quarters_from_goals_and_reminds_at_a_new_quarters_start_despite_a_recent_checkin(
        org, notify_worker, connection, ndb, sink):  # noqa: F811 (the process fixtures of test_worker_process)
    # Q1 ended at the last UTC midnight at least an hour ago; the reminder time is that midnight's weekday 00:00
    quarter_end = datetime.combine((datetime.now(UTC) - timedelta(hours=1)).date(), datetime.min.time(), tzinfo=UTC)
    notify_worker.start(connection, NOTIFY_REMINDER_LOCAL_TIME=f"{schedules.WEEKDAYS[quarter_end.weekday()]} 00:00")
    first, q2_start = (quarter_end - timedelta(days=90)).date(), quarter_end.date()
    last = (quarter_end + timedelta(days=200)).date()
    publish(connection, cycle_event(quarters=((first.isoformat(), (q2_start - timedelta(days=1)).isoformat()),
                                              (q2_start.isoformat(), last.isoformat())),
                                    first=first.isoformat(), last=last.isoformat()))
    wait_for(lambda: (ndb[CYCLES].find_one({"_id": "FY2027"}) or {}).get("quarter_ends"),
             message="notify-worker never learned the cycle's quarters")
    # checked in an hour before Q1 ended, monthly: without quarters the next reminder would be three weeks away
    publish(connection, checkin(quarter_end - timedelta(hours=1), v2mom_id="v2m_quarter",
                                cadence=checkins_pb2.CADENCE_MONTHLY), exchange="checkins.events")
    wait_for(lambda: (ndb[ITEMS].find_one({"_id": "v2m_quarter/ITEM_KIND_METHOD/m1"}) or {}).get("last_checkin_at"),
             message="the check-in never reached the item's copy")
    publish(connection, approved(v2mom_id="v2m_quarter", published=quarter_end - timedelta(days=2), measures=()))

    def reminder_mails():
        return [m for m in mails_to(sink, "olive@acme.test") if "Time to check in" in m["Subject"]]

    [mail] = wait_for(reminder_mails, message="the owner was not reminded at the new quarter's start")
    assert "Method m1" in mail["Subject"]
    [fired] = list(ndb[SCHEDULES].find({"kind": schedules.CHECKIN_REMINDER, "state": "DONE"}))
    assert fired["due_at"] == quarter_end  # the new quarter's first reminder time
    time.sleep(1.0)  # the timers tick on: the next reminder is a week away
    assert len(reminder_mails()) == 1


def _quarter_cut_now() -> tuple[datetime, list[dict]]:
    """Q1 ended at the last UTC midnight at least an hour ago; Q1 and Q2 as goals stores them."""
    quarter_end = datetime.combine((datetime.now(UTC) - timedelta(hours=1)).date(), datetime.min.time(), tzinfo=UTC)
    first, q2_start = (quarter_end - timedelta(days=90)).date(), quarter_end.date()
    return quarter_end, [
        {"id": "Q1", "start_date": first.isoformat(), "end_date": (q2_start - timedelta(days=1)).isoformat()},
        {"id": "Q2", "start_date": q2_start.isoformat(), "end_date": (q2_start + timedelta(days=200)).isoformat()}]


def test_the_worker_fills_the_quarters_of_a_cycle_goals_had_before_it_started_and_reminds_at_the_quarters_start(
        org, notify_worker, connection, ndb, sink):  # noqa: F811 (the process fixtures of test_worker_process)
    quarter_end, quarters = _quarter_cut_now()
    # the cycle was cut into quarters before notify-worker ever ran: no event of it will reach notify
    org.upsert_cycle("FY2027", quarters[0]["start_date"], quarters[-1]["end_date"], quarters)
    notify_worker.start(connection, NOTIFY_REMINDER_LOCAL_TIME=f"{schedules.WEEKDAYS[quarter_end.weekday()]} 00:00")
    cycle = wait_for(lambda: (ndb[CYCLES].find_one({"_id": "FY2027", "quarter_ends": {"$exists": True}})),
                     message="notify-worker never filled the cycle's quarters from goals-api")
    assert cycle["cycle_revision"] == 0 and cycle["quarter_ids"] == ["Q1", "Q2"]
    assert cycle["quarter_ends"][0] == quarter_end
    # checked in an hour before Q1 ended, monthly: without quarters the next reminder would be three weeks away
    publish(connection, checkin(quarter_end - timedelta(hours=1), v2mom_id="v2m_listed",
                                cadence=checkins_pb2.CADENCE_MONTHLY), exchange="checkins.events")
    wait_for(lambda: (ndb[ITEMS].find_one({"_id": "v2m_listed/ITEM_KIND_METHOD/m1"}) or {}).get("last_checkin_at"),
             message="the check-in never reached the item's copy")
    publish(connection, approved(v2mom_id="v2m_listed", published=quarter_end - timedelta(days=2), measures=()))
    [mail] = wait_for(lambda: [m for m in mails_to(sink, "olive@acme.test") if "Time to check in" in m["Subject"]],
                      message="the owner was not reminded at the new quarter's start")
    [fired] = list(ndb[SCHEDULES].find({"kind": schedules.CHECKIN_REMINDER, "state": "DONE"}))
    assert fired["due_at"] == quarter_end  # the new quarter's first reminder time
    text = " ".join(mail.get_body(("plain",)).get_content().split())
    assert f"Q2 has begun ({quarter_end:%a %d %b}): your last check-in on \u201cMethod m1\u201d" in text
    assert "counted for Q1; check in for Q2." in text


def test_the_worker_starts_while_goals_api_is_down_and_fills_the_cycles_once_it_answers(
        org, settings, notify_worker, connection, ndb):  # noqa: F811
    from services.goals.api import create_server

    _, quarters = _quarter_cut_now()
    org.upsert_cycle("FY2027", quarters[0]["start_date"], quarters[-1]["end_date"], quarters)
    with socket.socket() as probe:  # a port nobody listens on, yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = notify_worker.start(connection, GOALS_ADDR=f"127.0.0.1:{port}", NOTIFY_CYCLE_FILL_RETRY_SECONDS="0.5")
    wait_for(lambda: "cycles not filled from goals-api yet" in log_tail(process, 20000),
             message="notify-worker never said goals-api did not answer")
    assert process.poll() is None and ndb[CYCLES].count_documents({}) == 0  # started, and consuming
    server, _ = create_server(f"127.0.0.1:{port}", settings)
    server.start()
    try:
        cycle = wait_for(lambda: ndb[CYCLES].find_one({"_id": "FY2027", "quarter_ends": {"$exists": True}}),
                         message="notify-worker never asked goals-api again")
        assert cycle["quarter_ids"] == ["Q1", "Q2"] and cycle["cycle_revision"] == 0
    finally:
        server.stop(grace=None)
