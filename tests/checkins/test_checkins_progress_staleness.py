"""Item clocks in-process, on the wire Mongo server: FRESH -> STALE -> OVERDUE, resets, races and the read side."""

import threading
from datetime import UTC, date, datetime, timedelta

import pymongo
import pytest

from services.checkins import staleness, structures
from services.checkins.clock_store import ITEM_CLOCKS, advance_due, reschedule_cycle
from services.checkins.cycles import cadence_name
from services.checkins.handlers import Projection
from services.checkins.progress_reader import ProgressReader
from services.checkins.staleness import FRESH, OVERDUE, STALE, advance, next_look
from services.checkins.published import PublishedV2MOM
from services.platform.core.errors import Unavailable
from services.platform.worker.consumer import PermanentError
from tests.support.checkin_events import (
    approved, archived, checkin_data, content, cycle_changed, FakeGoals, FY2027, METHOD, NOW, outbox, recorded,
    v2mom_data,
)
from v2mom.v1 import goals_pb2

PUBLISHED_AT = NOW - timedelta(days=1)
WEEK = timedelta(days=7)
NPS = "v2m_ann/measure/msr-nps"


@pytest.fixture
def projection(cdb):
    return Projection(cdb, FakeGoals(), now=lambda: NOW)


def weekly(cdb, cycle_id="FY2027"):
    cdb.cycle_settings.insert_one({"_id": cycle_id, "cadence": "CADENCE_WEEKLY"})


def clock(cdb, doc_id=NPS):
    return cdb[ITEM_CLOCKS].find_one({"_id": doc_id})


def staleness_events(cdb):
    return outbox(cdb, ITEM_CLOCKS)


# --- starting clocks --------------------------------------------------------------------------


def test_an_approval_starts_one_clock_per_item_at_publication(cdb, projection):
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3, publish_time=PUBLISHED_AT)))

    clocks = {c["_id"]: c for c in cdb[ITEM_CLOCKS].find()}
    assert set(clocks) == {NPS, "v2m_ann/measure/msr-ttv", "v2m_ann/method/mth-guide"}
    nps = clocks[NPS]
    assert nps["active"] and nps["staleness"] == FRESH and "last_checkin_time" not in nps
    assert nps["started_at"] == PUBLISHED_AT
    assert nps["next_check_at"] == PUBLISHED_AT + timedelta(days=14)  # biweekly unless the cycle says otherwise
    assert nps["cycle_end"] == datetime(2027, 2, 1, tzinfo=UTC)  # FY2027's last day, 2027-01-31, has ended
    assert (nps["owner_id"], nps["v2mom_owner_id"], nps["org_unit_id"], nps["cycle_id"]) == ("rob", "ann", "onboarding", "FY2027")


def test_the_cycle_cadence_sets_the_first_look(cdb, projection):
    weekly(cdb)
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3, publish_time=PUBLISHED_AT)))
    assert clock(cdb)["next_check_at"] == PUBLISHED_AT + WEEK


@pytest.mark.parametrize("raw, name", [
    ("CADENCE_WEEKLY", "CADENCE_WEEKLY"), ("monthly", "CADENCE_MONTHLY"), (1, "CADENCE_WEEKLY"),
    (None, "CADENCE_BIWEEKLY"), ("CADENCE_UNSPECIFIED", "CADENCE_BIWEEKLY"), ("hourly", "CADENCE_BIWEEKLY"),
])
def test_cadence_names(raw, name):
    assert cadence_name(raw) == name


# --- stepping -------------------------------------------------------------------------------------


def test_a_clock_goes_stale_then_overdue_with_one_event_each(cdb, projection):
    weekly(cdb)
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3, publish_time=PUBLISHED_AT)))

    assert advance_due(cdb, PUBLISHED_AT + WEEK - timedelta(seconds=1)) == 0
    assert advance_due(cdb, PUBLISHED_AT + WEEK) == 3
    assert advance_due(cdb, PUBLISHED_AT + WEEK + timedelta(days=3)) == 0
    nps = clock(cdb)
    assert nps["staleness"] == STALE and nps["stale_since"] == PUBLISHED_AT + WEEK
    assert nps["next_check_at"] == PUBLISHED_AT + 2 * WEEK
    assert advance_due(cdb, PUBLISHED_AT + 2 * WEEK) == 3
    assert advance_due(cdb, PUBLISHED_AT + 5 * WEEK) == 0
    assert clock(cdb)["staleness"] == OVERDUE

    nps_events = [e for e in staleness_events(cdb) if e["data"]["item"]["itemId"] == "msr-nps"]
    assert [e["type"] for e in nps_events] == ["item_became_stale", "item_overdue"]
    stale = nps_events[0]["data"]
    assert stale["item"] | {"lastCheckinTime": None} == {
        "v2momId": "v2m_ann", "kind": "ITEM_KIND_MEASURE", "itemId": "msr-nps", "title": "Measure msr-nps",
        "ownerId": "rob", "orgUnitId": "onboarding", "cycleId": "FY2027", "staleness": "STALENESS_STALE",
        "staleSinceTime": "2026-06-16T12:00:00Z", "lastCheckinTime": None,
    }
    assert stale["cadence"] == "CADENCE_WEEKLY" and stale["v2momOwnerId"] == "ann"
    assert nps_events[0]["subject"] == "v2m_ann/msr-nps"


def test_a_clock_long_past_both_steps_takes_them_one_tick_at_a_time(cdb, projection):
    weekly(cdb)
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3, publish_time=PUBLISHED_AT)))
    late = PUBLISHED_AT + 6 * WEEK
    assert advance_due(cdb, late) == 3 and clock(cdb)["staleness"] == STALE
    assert advance_due(cdb, late) == 3 and clock(cdb)["staleness"] == OVERDUE
    assert advance_due(cdb, late) == 0


def test_racing_timers_announce_each_step_once(cdb, mongo_uri, projection):
    weekly(cdb)
    for n in range(6):
        projection.v2mom_approved(approved(v2mom_data(f"v2m_{n}", 3, publish_time=PUBLISHED_AT)))
    clients = [pymongo.MongoClient(mongo_uri, tz_aware=True) for _ in range(4)]
    announced = []
    barrier = threading.Barrier(len(clients))

    def timer(client):
        barrier.wait()
        announced.append(advance_due(client[cdb.name], PUBLISHED_AT + WEEK))

    threads = [threading.Thread(target=timer, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for client in clients:
        client.close()
    assert sum(announced) == 18
    events = staleness_events(cdb)
    assert len(events) == 18 and len({e["subject"] for e in events}) == 18


# --- check-ins ------------------------------------------------------------------------------------------


def test_a_check_in_makes_a_stale_clock_fresh_and_an_older_one_does_not(cdb, projection):
    weekly(cdb)
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3, publish_time=PUBLISHED_AT)))
    advance_due(cdb, PUBLISHED_AT + WEEK)
    observed = PUBLISHED_AT + WEEK + timedelta(hours=1)
    projection.checkin_recorded(recorded(checkin_data("v2m_ann", observed=observed)))

    nps = clock(cdb)
    assert nps["staleness"] == FRESH and "stale_since" not in nps
    assert nps["last_checkin_time"] == observed and nps["next_check_at"] == observed + WEEK
    projection.checkin_recorded(recorded(checkin_data("v2m_ann", observed=observed - timedelta(days=3))))
    assert clock(cdb)["last_checkin_time"] == observed


def test_the_check_in_event_cadence_is_used_for_the_reset(cdb, projection):
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3, publish_time=PUBLISHED_AT)))
    observed = NOW - timedelta(hours=1)
    projection.checkin_recorded(recorded(checkin_data("v2m_ann", observed=observed, cadence=3)))  # MONTHLY
    assert clock(cdb)["next_check_at"] == observed + timedelta(days=30)


def test_a_check_in_before_the_approval_is_remembered_by_the_clock(cdb):
    weekly(cdb)
    # goals does not know it yet (the approval is still on its way): the check-in is kept all the same.
    projection = Projection(cdb, FakeGoals(), now=lambda: NOW)
    observed = NOW - timedelta(days=2)
    projection.checkin_recorded(recorded(checkin_data("v2m_ann", observed=observed)))
    assert clock(cdb)["active"] is False
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3, publish_time=NOW - timedelta(days=20))))
    nps = clock(cdb)
    assert nps["active"] and nps["last_checkin_time"] == observed and nps["next_check_at"] == observed + WEEK


def test_a_worker_that_learns_the_structure_from_the_apis_copy_starts_the_clocks_at_publication(cdb, projection):
    # The approval never reached this worker; checkins-api stored the structure it fetched from goals.
    published = goals_pb2.V2MOM(id="v2m_ann", revision=3, published_revision=3, owner_id="ann",
                                org_unit_id="onboarding", cycle_id="FY2027", content=content())
    published.publish_time.FromDatetime(NOW - timedelta(days=20))
    structures.store(cdb, structures.structure_from_v2mom(published))

    projection.checkin_recorded(recorded(checkin_data("v2m_ann", "msr-nps", observed=NOW - timedelta(hours=1))))

    ttv = clock(cdb, "v2m_ann/measure/msr-ttv")
    assert ttv["active"] and ttv["started_at"] == NOW - timedelta(days=20)
    assert advance_due(cdb, NOW) == 2  # nobody checked in on msr-ttv or mth-guide for 20 days: stale now
    assert clock(cdb)["staleness"] == FRESH


# --- approvals ahead of the cycle ----------------------------------------------------------------------------

# FY2027 as a cycle that opens three weeks after NOW: check-ins are refused until 2026-06-30 00:00 UTC.
AHEAD = {"FY2027": (date(2026, 6, 30), date(2027, 6, 29))}
CYCLE_OPENS = datetime(2026, 6, 30, tzinfo=UTC)


@pytest.fixture
def ahead(cdb):
    return Projection(cdb, FakeGoals(cycles=AHEAD), now=lambda: NOW)


def test_an_approval_before_the_cycle_starts_counts_from_the_cycle_start(cdb, ahead):
    weekly(cdb)
    ahead.v2mom_approved(approved(v2mom_data("v2m_ann", 3, publish_time=PUBLISHED_AT)))
    nps = clock(cdb)
    assert nps["active"] and nps["staleness"] == FRESH
    assert (nps["started_at"], nps["cycle_start"]) == (CYCLE_OPENS, CYCLE_OPENS)
    assert nps["next_check_at"] == CYCLE_OPENS + WEEK

    # A week after the approval, and until a week into the cycle, nothing is stale: nobody could check in.
    assert advance_due(cdb, PUBLISHED_AT + WEEK) == 0
    assert advance_due(cdb, CYCLE_OPENS + WEEK - timedelta(seconds=1)) == 0
    reader = ProgressReader(cdb, now=lambda: CYCLE_OPENS + WEEK - timedelta(seconds=1))
    assert reader.stale_items("rob", [], "", 50) == ([], "")
    assert not any(item.stale for item in reader.progress("v2m_ann", False).items)

    assert advance_due(cdb, CYCLE_OPENS + WEEK) == 3
    stale, _ = reader.stale_items("rob", [], "", 50)
    assert {item.item_id for item in stale} == {"msr-nps", "msr-ttv"}
    assert {item.stale_since_time.ToDatetime(tzinfo=UTC) for item in stale} == {CYCLE_OPENS + WEEK}
    assert advance_due(cdb, CYCLE_OPENS + 2 * WEEK - timedelta(seconds=1)) == 0
    assert advance_due(cdb, CYCLE_OPENS + 2 * WEEK) == 3
    assert clock(cdb)["staleness"] == OVERDUE
    nps_events = [e for e in staleness_events(cdb) if e["data"]["item"]["itemId"] == "msr-nps"]
    assert [(e["type"], e["data"]["item"]["staleSinceTime"]) for e in nps_events] == [
        ("item_became_stale", "2026-07-07T00:00:00Z"), ("item_overdue", "2026-07-07T00:00:00Z")]


@pytest.mark.parametrize("first_day, start", [
    (date(2026, 2, 1), PUBLISHED_AT),                          # approved well into the cycle: from the approval
    (date(2026, 6, 9), PUBLISHED_AT),                          # approved at noon of the cycle's first day
    (date(2026, 6, 10), datetime(2026, 6, 10, tzinfo=UTC)),    # approved the day before it opened: from 00:00 UTC
])
def test_a_clock_starts_at_publication_or_the_cycle_start_whichever_is_later(cdb, first_day, start):
    weekly(cdb)
    goals = FakeGoals(cycles={"FY2027": (first_day, date(2027, 1, 31))})
    Projection(cdb, goals, now=lambda: NOW).v2mom_approved(approved(v2mom_data("v2m_ann", 3, publish_time=PUBLISHED_AT)))
    assert clock(cdb)["started_at"] == start and clock(cdb)["next_check_at"] == start + WEEK
    assert advance_due(cdb, start + WEEK - timedelta(seconds=1)) == 0
    assert advance_due(cdb, start + WEEK) == 3
    assert clock(cdb)["stale_since"] == start + WEEK


def test_a_re_approval_in_the_cycle_keeps_counting_from_the_cycle_start(cdb):
    weekly(cdb)
    moment = {"now": NOW}
    projection = Projection(cdb, FakeGoals(cycles=AHEAD), now=lambda: moment["now"])
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3, publish_time=PUBLISHED_AT)))
    moment["now"] = reapproved = CYCLE_OPENS + timedelta(days=3)
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 5, publish_time=reapproved)))

    nps = clock(cdb)
    assert nps["started_at"] == CYCLE_OPENS and nps["next_check_at"] == CYCLE_OPENS + WEEK  # neither approval's time
    assert advance_due(cdb, CYCLE_OPENS + WEEK) == 3


def test_a_cadence_change_before_the_cycle_starts_counts_from_the_cycle_start(cdb, ahead):
    ahead.v2mom_approved(approved(v2mom_data("v2m_ann", 3, publish_time=PUBLISHED_AT)))
    assert clock(cdb)["next_check_at"] == CYCLE_OPENS + 2 * WEEK  # biweekly
    weekly(cdb)
    assert reschedule_cycle(cdb, "FY2027", NOW) == 3
    assert advance_due(cdb, NOW) == 0  # looked at again at once: three weeks before the cycle, nothing is due
    nps = clock(cdb)
    assert (nps["staleness"], nps["cadence"], nps["next_check_at"]) == (FRESH, "CADENCE_WEEKLY", CYCLE_OPENS + WEEK)
    assert advance_due(cdb, CYCLE_OPENS + WEEK) == 3


def test_goals_down_a_clock_counts_from_the_cycle_start_an_earlier_approval_learned(cdb):
    goals = FakeGoals(cycles=AHEAD)
    projection = Projection(cdb, goals, now=lambda: NOW)
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3, publish_time=PUBLISHED_AT)))
    goals.down = True
    projection.v2mom_approved(approved(v2mom_data("v2m_bob", 3, owner_id="bob", publish_time=NOW)))
    bob = clock(cdb, "v2m_bob/measure/msr-nps")
    assert (bob["started_at"], bob["cycle_end"]) == (CYCLE_OPENS, datetime(2027, 6, 30, tzinfo=UTC))

    cdb[ITEM_CLOCKS].update_many({}, {"$unset": {"cycle_start": ""}})  # as workers that knew only the end wrote them
    with pytest.raises(Unavailable):  # the start is not known: retried, not guessed
        projection.v2mom_approved(approved(v2mom_data("v2m_cat", 3, owner_id="cat", publish_time=NOW)))


def test_a_clock_that_counted_from_before_the_cycle_is_put_right_by_the_next_approval(cdb, ahead):
    weekly(cdb)
    ahead.v2mom_approved(approved(v2mom_data("v2m_ann", 3, publish_time=PUBLISHED_AT)))
    # As a worker that started clocks at the approval left them: stale a week later, before the cycle opened.
    cdb[ITEM_CLOCKS].update_many({}, {
        "$set": {"started_at": PUBLISHED_AT, "staleness": STALE, "stale_since": PUBLISHED_AT + WEEK,
                 "next_check_at": PUBLISHED_AT + 2 * WEEK},
        "$unset": {"cycle_start": ""}, "$inc": {"revision": 1},
    })
    ahead.v2mom_approved(approved(v2mom_data("v2m_ann", 5, publish_time=NOW)))

    nps = clock(cdb)
    assert (nps["started_at"], nps["staleness"], nps["next_check_at"]) == (CYCLE_OPENS, FRESH, CYCLE_OPENS + WEEK)
    assert "stale_since" not in nps
    assert advance_due(cdb, PUBLISHED_AT + 2 * WEEK) == 0  # no overdue step on the old count
    assert advance_due(cdb, CYCLE_OPENS + WEEK) == 3


# --- approvals and archives handled at the same time ------------------------------------------------------


def test_clocks_end_idle_when_an_archive_lands_between_an_approvals_two_writes(cdb, projection):
    # The approval's handler has written progress but not yet synced its clocks...
    projection.progress.apply_structure(PublishedV2MOM.from_event(v2mom_data("v2m_ann", 3)))
    projection.v2mom_archived(archived("v2m_ann", 4))  # ...when the archive is handled in full,
    projection.clocks_follow("v2m_ann")  # ...and then the approval's handler syncs its clocks.
    assert cdb[ITEM_CLOCKS].count_documents({"v2mom_id": "v2m_ann"}) == 3
    assert cdb[ITEM_CLOCKS].count_documents({"v2mom_id": "v2m_ann", "active": True}) == 0


def test_clocks_follow_the_newest_approval_whichever_sync_runs_last(cdb, projection):
    newer = v2mom_data("v2m_ann", 5, content(measures=(("msr-ttv", 30, 10, 0),)))
    projection.progress.apply_structure(PublishedV2MOM.from_event(v2mom_data("v2m_ann", 3)))
    projection.v2mom_approved(approved(newer))
    projection.clocks_follow("v2m_ann")  # the older approval's late sync
    running = {c["item_id"] for c in cdb[ITEM_CLOCKS].find({"v2mom_id": "v2m_ann", "active": True})}
    assert running == {"msr-ttv", "mth-guide"}


def test_goals_down_for_cycle_dates_uses_what_an_earlier_approval_learned(cdb):
    goals = FakeGoals()
    projection = Projection(cdb, goals, now=lambda: NOW)
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3)))
    goals.down = True
    projection.v2mom_approved(approved(v2mom_data("v2m_bob", 3, owner_id="bob")))
    assert clock(cdb, "v2m_bob/measure/msr-nps")["cycle_end"] == datetime(2027, 2, 1, tzinfo=UTC)
    with pytest.raises(Unavailable):  # nothing learned about this cycle yet: retried, not guessed
        projection.v2mom_approved(approved(v2mom_data("v2m_next", 3, cycle_id="FY2028")))


# --- stopping and restarting ------------------------------------------------------------------------------


@pytest.mark.parametrize("checked_in_before_leaving", [False, True], ids=["never-checked-in", "checked-in"])
def test_a_removed_item_stops_and_a_returning_one_starts_fresh_from_its_return(cdb, projection,
                                                                                 checked_in_before_leaving):
    weekly(cdb)
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3, publish_time=PUBLISHED_AT)))
    if checked_in_before_leaving:
        projection.checkin_recorded(recorded(checkin_data("v2m_ann", "msr-nps", observed=PUBLISHED_AT + timedelta(days=1))))
    advance_due(cdb, PUBLISHED_AT + 2 * WEEK)
    assert clock(cdb)["staleness"] == STALE
    removed_at, returned_at = PUBLISHED_AT + 2 * WEEK, PUBLISHED_AT + 5 * WEEK
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 5, content(measures=(("msr-ttv", 30, 10, 0),)),
                                                  publish_time=removed_at)))
    nps = clock(cdb)
    assert nps["active"] is False and "next_check_at" not in nps

    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 7, publish_time=returned_at)))
    nps = clock(cdb)
    assert nps["active"] and nps["staleness"] == FRESH and nps["returned_at"] == returned_at
    assert nps["started_at"] == PUBLISHED_AT  # a start is still the first publication's
    assert nps["next_check_at"] == returned_at + WEEK  # a cadence from its return, not from before it left
    advance_due(cdb, returned_at + WEEK - timedelta(seconds=1))  # the items that never left move on
    assert clock(cdb)["staleness"] == FRESH
    advance_due(cdb, returned_at + WEEK)
    assert clock(cdb)["staleness"] == STALE and clock(cdb)["stale_since"] == returned_at + WEEK


def test_archiving_stops_every_clock(cdb, projection):
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3, publish_time=PUBLISHED_AT)))
    projection.v2mom_archived(archived("v2m_ann", 4))
    assert cdb[ITEM_CLOCKS].count_documents({"active": True}) == 0
    assert cdb[ITEM_CLOCKS].count_documents({"next_check_at": {"$exists": True}}) == 0
    assert advance_due(cdb, PUBLISHED_AT + 10 * WEEK) == 0


def test_clocks_stop_quietly_when_the_cycle_ends(cdb):
    short = FakeGoals(cycles={"FY2027": (NOW.date() - timedelta(days=30), NOW.date() + timedelta(days=2))})
    Projection(cdb, short, now=lambda: NOW).v2mom_approved(approved(v2mom_data("v2m_ann", 3, publish_time=PUBLISHED_AT)))
    cycle_end = datetime.combine(NOW.date() + timedelta(days=3), datetime.min.time(), tzinfo=UTC)
    assert clock(cdb)["next_check_at"] == cycle_end  # before the biweekly step
    assert advance_due(cdb, cycle_end) == 0
    assert clock(cdb)["active"] is False and staleness_events(cdb) == []


def test_an_approval_after_the_cycle_ended_starts_no_clock(cdb):
    ended = FakeGoals(cycles={"FY2027": (NOW.date() - timedelta(days=400), NOW.date() - timedelta(days=35))})
    Projection(cdb, ended, now=lambda: NOW).v2mom_approved(approved(v2mom_data("v2m_ann", 3)))
    assert cdb[ITEM_CLOCKS].count_documents({"active": True}) == 0


def test_a_cadence_change_is_picked_up_after_reschedule(cdb, projection):
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3, publish_time=PUBLISHED_AT)))
    weekly(cdb)
    assert advance_due(cdb, PUBLISHED_AT + WEEK + timedelta(days=1)) == 0  # still scheduled biweekly
    assert reschedule_cycle(cdb, "FY2027", PUBLISHED_AT) == 3
    assert advance_due(cdb, PUBLISHED_AT + WEEK + timedelta(days=1)) == 3


# --- quarters -------------------------------------------------------------------------------------------

# FY2027 cut so a quarter ends five days after the approval: 2026-06-15 00:00 UTC.
SPLIT = [(date(2026, 2, 1), date(2026, 6, 14)), (date(2026, 6, 15), date(2027, 1, 31))]
QUARTER_END = datetime(2026, 6, 15, tzinfo=UTC)


def test_with_quarters_a_checkin_counts_for_its_own_quarter_only(cdb):
    goals = FakeGoals(quarters={"FY2027": SPLIT})
    projection = Projection(cdb, goals, now=lambda: NOW)
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3, publish_time=PUBLISHED_AT)))
    assert clock(cdb)["quarter_ends"] == [QUARTER_END, datetime(2027, 2, 1, tzinfo=UTC)]
    assert clock(cdb)["next_check_at"] == QUARTER_END  # before the biweekly step, June 23
    advance_due(cdb, QUARTER_END)
    assert (clock(cdb)["staleness"], clock(cdb)["stale_since"]) == (STALE, QUARTER_END)
    assert clock(cdb)["next_check_at"] == QUARTER_END + 2 * WEEK  # overdue a cadence later

    in_new_quarter = QUARTER_END + timedelta(days=1)
    projection.checkin_recorded(recorded(checkin_data("v2m_ann", "msr-nps", observed=in_new_quarter)))
    assert clock(cdb)["staleness"] == FRESH and clock(cdb)["next_check_at"] == in_new_quarter + 2 * WEEK


def test_quarters_given_to_a_cycle_reach_its_running_clocks(cdb, projection):
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3, publish_time=PUBLISHED_AT)))
    assert clock(cdb)["next_check_at"] == PUBLISHED_AT + 2 * WEEK and not clock(cdb)["quarter_ends"]
    event = cycle_changed("FY2027", FY2027, SPLIT)
    projection.cycle_changed(event)
    assert "forget cycles" in projection.goals.calls  # the next approval asks goals again
    assert clock(cdb)["quarter_ends"][0] == QUARTER_END and clock(cdb)["next_check_at"] == NOW
    assert advance_due(cdb, NOW) == 0  # judged again by the quarters: not stale before the 15th
    assert clock(cdb)["next_check_at"] == QUARTER_END
    assert advance_due(cdb, QUARTER_END) == 3 and clock(cdb)["staleness"] == STALE
    bad = {**event, "data": {**event["data"], "cycle": {"id": ""}}}
    with pytest.raises(PermanentError):
        projection.cycle_changed(bad)


def test_a_longer_cadence_only_moves_the_next_look():
    started = NOW - timedelta(days=8)
    clock_ = {"active": True, "staleness": FRESH, "started_at": started, "next_check_at": started + WEEK}
    moved = advance(clock_, NOW, "CADENCE_MONTHLY")
    assert moved.event_type is None and moved.clock["staleness"] == FRESH
    assert moved.clock["next_check_at"] == started + timedelta(days=30)
    assert next_look({**clock_, "staleness": OVERDUE}, "CADENCE_WEEKLY") is None
    assert next_look({**clock_, "active": False}, "CADENCE_WEEKLY") is None


# --- the read side -------------------------------------------------------------------------------------------


def test_stale_items_by_owner_and_by_org_units_paged(cdb, projection):
    weekly(cdb)
    for n in range(3):
        projection.v2mom_approved(approved(v2mom_data(f"v2m_{n}", 3, publish_time=PUBLISHED_AT)))
    projection.v2mom_approved(approved(v2mom_data("v2m_billing", 3, org_unit_id="billing", owner_id="cat",
                                                  publish_time=PUBLISHED_AT)))
    advance_due(cdb, PUBLISHED_AT + WEEK)
    projection.v2mom_archived(archived("v2m_2", 4))  # its stale items are no one's worry now
    reader = ProgressReader(cdb)

    first, after = reader.stale_items("rob", [], "", 4)
    second, last_after = reader.stale_items("rob", [], after, 4)
    robs = first + second
    # Rob owns the two measures in each of v2m_0, v2m_1 and v2m_billing; ann owns the methods.
    assert (len(first), len(second), last_after) == (4, 2, "")
    assert len({(i.v2mom_id, i.item_id) for i in robs}) == 6
    assert {(i.v2mom_id, i.item_id) for i in robs} >= {("v2m_0", "msr-nps"), ("v2m_billing", "msr-ttv")}
    assert all(i.staleness == 1 and i.stale_since_time.seconds for i in robs)

    onboarding, _ = reader.stale_items("", ["onboarding"], "", 50)
    assert {i.v2mom_id for i in onboarding} == {"v2m_0", "v2m_1"} and len(onboarding) == 6
    both, _ = reader.stale_items("", ["onboarding", "billing"], "", 50)
    assert len(both) == 9


def test_item_progress_shows_staleness_and_late_methods(cdb):
    projection = Projection(cdb, FakeGoals(), now=lambda: NOW)
    weekly(cdb)
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3, publish_time=PUBLISHED_AT)))
    advance_due(cdb, PUBLISHED_AT + 2 * WEEK)
    advance_due(cdb, PUBLISHED_AT + 2 * WEEK)
    projection.checkin_recorded(recorded(checkin_data("v2m_ann", observed=PUBLISHED_AT + 2 * WEEK)))

    after_due_date = datetime(2027, 1, 5, tzinfo=UTC)  # mth-guide is due 2026-12-31
    items = {i.item_id: i for i in ProgressReader(cdb, now=lambda: after_due_date).progress("v2m_ann", False).items}
    assert not items["msr-nps"].stale and not items["msr-nps"].overdue
    assert items["msr-ttv"].stale and items["msr-ttv"].overdue
    assert items["mth-guide"].overdue  # late by its due date, and overdue by cadence too

    projection.checkin_recorded(recorded(checkin_data("v2m_ann", "mth-guide", kind=METHOD, value=None, progress=100,
                                                      observed=PUBLISHED_AT + 2 * WEEK)))
    items = {i.item_id: i for i in ProgressReader(cdb, now=lambda: after_due_date).progress("v2m_ann", False).items}
    assert not items["mth-guide"].overdue  # done, so not late


def test_clock_ids_keep_measures_and_methods_apart():
    assert staleness.clock_id("v2m_a", "ITEM_KIND_MEASURE", "x") != staleness.clock_id("v2m_a", "ITEM_KIND_METHOD", "x")
