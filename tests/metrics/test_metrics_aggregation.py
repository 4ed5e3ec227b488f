"""The aggregation maths and the Prometheus collector, on the wire Mongo server, without a broker.

Events are applied with the worker's own code path (consume.apply) and read
back through the collector registered in a registry of the test's own.
"""

import random
import uuid
from datetime import timedelta

import pymongo
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.metrics import consume, engagement, history, model, rebuild, store
from services.metrics.collector import PipelineCollector
from services.metrics.pipeline import PipelineStats
from services.metrics.rendered import RenderedEngagement
from services.goals import events as goal_events
from services.platform.bus.events import to_wire
from services.platform.worker.consumer import PermanentError
from tests.support.metrics import (
    ago, apply_all, at, CheckinLog, CheckinStore, CYCLE, coverage, cycle_event, FakeGoals, Journey, listed_cycle,
    listed_person, listed_unit, NOW, org_unit, person, QUARTERS, quarter_team, raw_event, scrape, SmallOrg, value,
)
from v2mom.v1 import common_pb2, events_pb2, goals_pb2


# --- a small org ---------------------------------------------------------------------------------
#
#   acme (company: ceo)  ── eng (department: vp) ── platform (team: ann, bob, cat who left)
#                        └─ sales (team: dan, eve)


@pytest.fixture
def org():
    return SmallOrg()


# --- every gauge ------------------------------------------------------------------------------------


def test_every_gauge_for_a_small_org(metrics_db, org):
    apply_all(metrics_db, org.events())
    s = scrape(metrics_db)
    g = lambda name, unit, scope="direct", **labels: value(s, name, unit, scope, **labels)  # noqa: E731

    # creation: cat has left, eve's V2MOM is archived
    assert (g("v2mom_headcount", "platform"), g("v2mom_people_with_v2mom", "platform")) == (2, 2)
    assert g("v2mom_creation_ratio", "platform") == 1.0
    assert (g("v2mom_headcount", "sales"), g("v2mom_people_with_v2mom", "sales"), g("v2mom_creation_ratio", "sales")) == (2, 1, 0.5)
    assert g("v2mom_v2moms", "sales", state="draft") == 1 and g("v2mom_v2moms", "sales", state="archived") == 1
    assert g("v2mom_v2moms", "platform", state="published") == 1 and g("v2mom_v2moms", "platform", state="submitted") == 1
    assert g("v2mom_v2moms", "eng", state="changes_requested") == 1

    # approval
    assert (g("v2mom_submitted_v2moms", "platform"), g("v2mom_approved_v2moms", "platform")) == (2, 1)
    assert g("v2mom_approval_ratio", "platform") == 0.5
    assert g("v2mom_approval_ratio", "eng") == 0.0  # sent back: submitted, not approved
    assert g("v2mom_approval_ratio", "sales") is None  # nothing submitted: no ratio at all
    assert g("v2mom_pending_approvals", "platform") == 1
    assert g("v2mom_oldest_pending_approval_age_seconds", "platform") == 3 * 86400
    assert g("v2mom_pending_approvals", "eng") == 0 and g("v2mom_oldest_pending_approval_age_seconds", "eng") == 0

    # time to approval: ann's 2 h falls in the 4 h bucket, the company's 1 d exactly on its bound
    assert g("v2mom_time_to_approval_seconds_bucket", "platform", le="3600.0") == 0
    assert g("v2mom_time_to_approval_seconds_bucket", "platform", le="14400.0") == 1
    assert g("v2mom_time_to_approval_seconds_bucket", "platform", le="+Inf") == 1
    assert (g("v2mom_time_to_approval_seconds_count", "platform"), g("v2mom_time_to_approval_seconds_sum", "platform")) == (1, 7200)
    assert g("v2mom_time_to_approval_seconds_bucket", "acme", le="86400.0") == 1
    assert g("v2mom_time_to_approval_seconds_bucket", "acme", le="14400.0") == 0

    # check-ins: W44-W47 trailing (the correction and W43 do not count), W48 so far
    assert (g("v2mom_trailing_checkins", "platform"), g("v2mom_checkins_week_to_date", "platform")) == (4, 2)
    assert g("v2mom_checkins_per_member_per_week", "platform") == 4 / 4 / 2
    assert g("v2mom_checkins_per_member_per_week", "sales") == 0.0
    assert (g("v2mom_published_v2moms", "platform"), g("v2mom_checked_in_v2moms", "platform")) == (1, 1)
    assert g("v2mom_checkin_coverage_ratio", "platform") == 1.0
    assert g("v2mom_checkin_coverage_ratio", "acme") == 0.0  # last check-in 20 days ago, cadence 14
    assert g("v2mom_checkin_coverage_ratio", "sales") is None

    # staleness: mb's claim is refuted by a later check-in
    assert (g("v2mom_tracked_items", "platform"), g("v2mom_stale_items", "platform"), g("v2mom_overdue_items", "platform")) == (3, 0, 1)
    assert (g("v2mom_tracked_items", "acme"), g("v2mom_stale_items", "acme"), g("v2mom_overdue_items", "acme")) == (2, 1, 1)

    # progress and off-track
    assert g("v2mom_progress_ratio", "platform") == 0.5
    assert g("v2mom_progress_ratio", "acme") == 0.2
    assert g("v2mom_tree_progress_ratio", "acme", "subtree") == 0.3
    assert g("v2mom_tree_progress_ratio", "acme") is None  # the unit's own tree is a subtree figure
    assert g("v2mom_tree_progress_ratio", "platform", "subtree") is None  # no team V2MOM
    assert (g("v2mom_measures", "platform"), g("v2mom_off_track_measures", "platform")) == (2, 1)
    assert g("v2mom_off_track_measures_ratio", "platform") == 0.5


def test_subtree_sums_every_unit_below(metrics_db, org):
    apply_all(metrics_db, org.events())
    s = scrape(metrics_db)
    g = lambda name, unit, **labels: value(s, name, unit, "subtree", **labels)  # noqa: E731

    assert (g("v2mom_headcount", "acme"), g("v2mom_people_with_v2mom", "acme")) == (6, 5)
    assert g("v2mom_creation_ratio", "acme") == 5 / 6
    assert (g("v2mom_submitted_v2moms", "acme"), g("v2mom_approved_v2moms", "acme")) == (4, 2)
    assert g("v2mom_oldest_pending_approval_age_seconds", "acme") == 3 * 86400
    assert g("v2mom_time_to_approval_seconds_count", "acme") == 2
    assert g("v2mom_time_to_approval_seconds_sum", "acme") == 86400 + 7200
    assert (g("v2mom_trailing_checkins", "acme"), g("v2mom_checkins_week_to_date", "acme")) == (5, 2)
    assert g("v2mom_checkins_per_member_per_week", "acme") == 5 / 4 / 6
    assert g("v2mom_checkin_coverage_ratio", "acme") == 0.5
    assert (g("v2mom_stale_items", "acme"), g("v2mom_overdue_items", "acme")) == (1, 2)
    assert g("v2mom_progress_ratio", "acme") == pytest.approx(0.35)
    assert g("v2mom_off_track_measures_ratio", "acme") == pytest.approx(1 / 3)
    # eng: vp, ann, bob
    assert (g("v2mom_headcount", "eng"), g("v2mom_creation_ratio", "eng")) == (3, 1.0)
    assert g("v2mom_approval_ratio", "eng") == pytest.approx(1 / 3)
    # a leaf team: subtree is direct
    for name in ("v2mom_headcount", "v2mom_trailing_checkins", "v2mom_progress_ratio"):
        assert g(name, "platform") == value(s, name, "platform", "direct")


def test_a_person_moving_takes_their_v2moms_and_checkins_along(metrics_db, org):
    apply_all(metrics_db, org.events())
    before = scrape(metrics_db)

    apply_all(metrics_db, [person("ann", "sales", revision=2)])
    s = scrape(metrics_db)
    g = lambda name, unit, scope="direct", **labels: value(s, name, unit, scope, **labels)  # noqa: E731
    assert (g("v2mom_headcount", "platform"), g("v2mom_people_with_v2mom", "platform")) == (1, 1)
    assert (g("v2mom_headcount", "sales"), g("v2mom_people_with_v2mom", "sales")) == (3, 2)
    assert g("v2mom_v2moms", "platform", state="published") == 0 and g("v2mom_v2moms", "sales", state="published") == 1
    # the trailing window moves too: her check-ins count where she is now
    assert (g("v2mom_trailing_checkins", "platform"), g("v2mom_trailing_checkins", "sales")) == (0, 4)
    assert g("v2mom_checkins_week_to_date", "sales") == 2
    assert (g("v2mom_overdue_items", "platform"), g("v2mom_overdue_items", "sales")) == (0, 1)
    assert g("v2mom_time_to_approval_seconds_count", "sales") == 1
    assert g("v2mom_progress_ratio", "sales") == 0.5 and g("v2mom_progress_ratio", "platform") is None
    # the company as a whole did not change
    for name in ("v2mom_headcount", "v2mom_trailing_checkins", "v2mom_approved_v2moms", "v2mom_overdue_items"):
        assert g(name, "acme", "subtree") == value(before, name, "acme", "subtree")

    apply_all(metrics_db, [person("ann", "platform", revision=3)])
    assert scrape(metrics_db) == before


def test_a_leaver_leaves_the_headcount_but_not_their_v2mom(metrics_db, org):
    apply_all(metrics_db, org.events() + [person("bob", "platform", active=False, revision=2)])
    s = scrape(metrics_db)
    assert value(s, "v2mom_headcount", "platform") == 1
    assert value(s, "v2mom_people_with_v2mom", "platform") == 1
    assert value(s, "v2mom_pending_approvals", "platform") == 1


def test_an_out_of_date_person_event_is_dropped(metrics_db, org):
    apply_all(metrics_db, org.events() + [person("ann", "sales", revision=3), person("ann", "platform", revision=2)])
    assert value(scrape(metrics_db), "v2mom_headcount", "sales") == 3


# --- time to approval and windows --------------------------------------------------------------------


@pytest.mark.parametrize("seconds, bucket", [
    (0, "3600"), (3600, "3600"), (3600.5, "14400"), (86400, "86400"), (86401, "172800"),
    (7 * 86400, "604800"), (30 * 86400, "2592000"), (30 * 86400 + 1, "inf"),
])
def test_time_to_approval_bucket_bounds_are_inclusive(seconds, bucket):
    assert model.tta_bucket(seconds) == bucket


def test_time_to_approval_histogram_is_cumulative_and_counts_the_latest_approval(metrics_db):
    units = [org_unit("t", "T", "team")]
    people = [person(p, "t") for p in ("a", "b", "c", "d")]
    fast = Journey("v1", "a", "t", "individual").step("draft", ago(days=3)).step("submitted", ago(days=3))
    fast.step("published", ago(days=3) + timedelta(minutes=30))
    slow = Journey("v2", "b", "t", "individual").step("draft", ago(days=20)).step("submitted", ago(days=19))
    slow.step("published", ago(days=9))
    # Edited after approval and approved again: only the latest approval counts.
    again = Journey("v3", "c", "t", "individual").step("draft", ago(days=9)).step("submitted", ago(days=9))
    again.step("published", ago(days=2)).step("edited", ago(days=1)).step("submitted", ago(hours=5))
    again.step("published", ago(hours=4))
    # Resubmitted and waiting: its old approval no longer stands for its latest submission.
    waiting = Journey("v4", "d", "t", "individual").step("draft", ago(days=9)).step("submitted", ago(days=9))
    waiting.step("published", ago(days=8)).step("edited", ago(days=2)).step("submitted", ago(days=1))
    apply_all(metrics_db, units + people + fast.events + slow.events + again.events + waiting.events)

    s = scrape(metrics_db)
    labels = {"org_unit": "t", "org_unit_name": "T", "level": "team", "cycle": CYCLE, "scope": "direct"}
    buckets = {dict(k[1])["le"]: v for k, v in s.items()
               if k[0] == "v2mom_time_to_approval_seconds_bucket" and all(dict(k[1]).get(n) == x for n, x in labels.items())}
    assert buckets == {"3600.0": 2, "14400.0": 2, "86400.0": 2, "172800.0": 2, "259200.0": 2, "604800.0": 2,
                       "1209600.0": 3, "2592000.0": 3, "+Inf": 3}
    count = s[("v2mom_time_to_approval_seconds_count", frozenset(labels.items()))]
    total = s[("v2mom_time_to_approval_seconds_sum", frozenset(labels.items()))]
    assert (count, total) == (3, 1800 + 10 * 86400 + 3600)
    assert s[("v2mom_pending_approvals", frozenset(labels.items()))] == 1


def test_a_withdrawn_submission_is_no_longer_pending_and_a_resubmission_is_again(metrics_db):
    units = [org_unit("t", "T", "team")]
    people = [person(p, "t") for p in ("a", "b")]
    withdrawn = Journey("w1", "a", "t", "individual").step("draft", ago(days=4)).step("submitted", ago(days=3))
    withdrawn.step("withdrawn", ago(days=2))
    back = Journey("w2", "b", "t", "individual").step("draft", ago(days=4)).step("submitted", ago(days=3))
    back.step("withdrawn", ago(days=2)).step("submitted", ago(days=1))
    apply_all(metrics_db, units + people + withdrawn.events + back.events)
    s = scrape(metrics_db)
    labels = frozenset({"org_unit": "t", "org_unit_name": "T", "level": "team", "cycle": CYCLE, "scope": "direct"}.items())
    assert s[("v2mom_pending_approvals", labels)] == 1  # only the resubmitted one waits
    assert s[("v2mom_oldest_pending_approval_age_seconds", labels)] == 86400  # since its resubmission
    assert (s[("v2mom_submitted_v2moms", labels)], s[("v2mom_approved_v2moms", labels)]) == (2, 0)
    assert s[("v2mom_v2moms", labels | {("state", "draft")})] == 1


def test_a_copy_forward_counts_as_a_creation_in_its_new_cycle(metrics_db):
    units = [org_unit("t", "T", "team")]
    people = [person(p, "t") for p in ("a", "b")]
    last_year = Journey("old", "a", "t", "individual").step("draft", ago(days=300)).step("archived", ago(days=2))
    copy = Journey("new", "a", "t", "individual", cycle="FY2028").step("draft", ago(days=1))
    copy.events[-1]["data"]["copiedFromId"] = "old"  # what CopyV2MOM's v2mom_created carries
    apply_all(metrics_db, units + people + last_year.events + copy.events)
    s = scrape(metrics_db)
    labels = lambda cycle: frozenset({"org_unit": "t", "org_unit_name": "T", "level": "team", "cycle": cycle,  # noqa: E731
                                      "scope": "direct"}.items())
    assert s[("v2mom_people_with_v2mom", labels("FY2028"))] == 1
    assert s[("v2mom_creation_ratio", labels("FY2028"))] == 0.5
    assert s[("v2mom_people_with_v2mom", labels(CYCLE))] == 0  # last year's is archived


def _obstacles(event: dict, *obstacles) -> dict:
    """The approval ``event`` with these obstacles (id, status name, open time) in its published content."""
    event["data"]["content"]["obstacles"] = [
        {"id": oid, "title": oid, "description": "", "ownerId": "", "status": f"OBSTACLE_STATUS_{status}",
         "methodIds": [], "copiedFrom": "", "stale": False,
         **({"openTime": opened.isoformat().replace("+00:00", "Z")} if opened else {})}
        for oid, status, opened in obstacles]
    return event


def _obstacle_changed(journey: Journey, revision: int, obstacle_id: str, status: str, opened) -> dict:
    obstacle = goals_pb2.Obstacle(id=obstacle_id, title=obstacle_id, status=goals_pb2.ObstacleStatus.Value(
        f"OBSTACLE_STATUS_{status}"))
    if opened:
        obstacle.open_time.FromDatetime(opened)
    data = events_pb2.ObstacleEventData(
        v2mom_id=journey.v2mom_id, revision=revision, owner_id=journey.owner, org_unit_id=journey.unit,
        level=common_pb2.ORG_LEVEL_INDIVIDUAL, cycle_id=journey.cycle, actor_id=journey.owner, obstacle=obstacle,
        previous_status=goals_pb2.OBSTACLE_STATUS_OPEN, changed_paths=["status"])
    return at(to_wire(goal_events.obstacle_event(data)), opened or NOW)


def test_open_obstacles_and_the_oldest_ones_age_follow_approvals_and_obstacle_changes_in_any_order(mongo_uri):
    units = [org_unit("t", "T", "team")]
    people = [person(p, "t") for p in ("a", "b")]
    live = Journey("ob1", "a", "t", "individual").step("draft", ago(days=10)).step("submitted", ago(days=9))
    live.step("published", ago(days=8))
    _obstacles(live.events[-1], ("x", "OPEN", ago(days=8)), ("y", "RESOLVED", None), ("z", "MITIGATING", ago(days=6)))
    changes = [_obstacle_changed(live, 4, "y", "OPEN", ago(days=2)),  # reopened
               _obstacle_changed(live, 5, "x", "RESOLVED", None)]
    gone = Journey("ob2", "b", "t", "individual").step("draft", ago(days=10)).step("submitted", ago(days=9))
    gone.step("published", ago(days=8))
    _obstacles(gone.events[-1], ("w", "OPEN", ago(days=30)))
    gone.step("archived", ago(days=1))  # an archived V2MOM's obstacles count no more
    events = units + people + live.events + changes + gone.events
    labels = frozenset({"org_unit": "t", "org_unit_name": "T", "level": "team", "cycle": CYCLE, "scope": "direct"}.items())
    seen = set()
    for seed in range(6):
        db = pymongo.MongoClient(mongo_uri, tz_aware=True)[f"metrics_obstacles_{uuid.uuid4().hex[:8]}"]
        try:
            shuffled = events[:len(units + people)] + random.Random(seed).sample(events[len(units + people):],
                                                                                   len(events) - len(units + people))
            apply_all(db, shuffled + changes)  # and replays
            s = scrape(db)
            seen.add((s[("v2mom_open_obstacles", labels)], s[("v2mom_oldest_open_obstacle_age_seconds", labels)]))
        finally:
            db.client.drop_database(db.name)
            db.client.close()
    assert seen == {(2, 6 * 86400.0)}  # z (mitigating since 6 days) and y (reopened 2 days ago)


def test_trailing_window_is_the_four_whole_weeks_before_this_one():
    monday = NOW.replace(hour=0) - timedelta(days=3)  # Monday 2026-11-23 00:00, start of W48
    aggregate = {"checkins": {
        model.week_key(monday): 1,                                    # this week
        model.week_key(monday - timedelta(microseconds=1000)): 10,    # last Sunday 23:59:59.999: W47
        model.week_key(monday - timedelta(weeks=4)): 100,             # W44, the window's first week
        model.week_key(monday - timedelta(weeks=4, seconds=1)): 1000,  # W43: out
    }}
    counts = engagement.counts_at(aggregate, headcount=5, now=NOW)
    assert (counts.trailing_checkins, counts.week_checkins) == (110, 1)
    assert engagement.counts_at(aggregate, 5, now=monday).week_checkins == 1
    # On Monday the window has moved: W44 drops out, W47 is in.
    next_monday = monday + timedelta(weeks=1)
    assert engagement.counts_at(aggregate, 5, now=next_monday).trailing_checkins == 11


def test_coverage_counts_check_ins_within_the_cadence_to_the_day():
    aggregate = {"covered": {"14": {model.day_key(ago(days=13)): 1, model.day_key(ago(days=14)): 2},
                             "7": {model.day_key(ago(days=6)): 4, model.day_key(ago(days=7)): 8}}}
    assert engagement.counts_at(aggregate, 1, NOW).covered == 1 + 4


# --- bad input, duplicates, order ------------------------------------------------------------------


def test_duplicates_and_any_arrival_order_give_the_same_gauges(metrics_db, mongo_uri, org):
    apply_all(metrics_db, org.events())
    expected = scrape(metrics_db)
    client = pymongo.MongoClient(mongo_uri, tz_aware=True)
    try:
        for seed in (1, 2, 3):
            db = client[f"metrics_test_{uuid.uuid4().hex[:10]}"]
            shuffled = org.events() + random.Random(seed).sample(org.events(), 15)
            random.Random(seed).shuffle(shuffled)
            apply_all(db, shuffled)
            assert scrape(db) == expected, f"arrival order {seed} changed a gauge"
            client.drop_database(db.name)
    finally:
        client.close()


@pytest.mark.parametrize("source, event_type, data", [
    ("goals", "v2mom_approved", {"v2momId": "v1", "revision": "x"}),
    ("goals", "v2mom_approved", {"v2momId": "", "revision": "1", "cycleId": "FY", "state": "V2MOM_STATE_PUBLISHED"}),
    ("goals", "v2mom_approved", {"v2momId": "v1", "revision": "1", "cycleId": "FY", "state": "V2MOM_STATE_BOGUS"}),
    ("goals", "person_upserted", {"person": {"id": "x"}, "revision": "0"}),
    ("goals", "org_unit_upserted", {"orgUnit": {"id": "u", "parentId": "u"}, "revision": "1"}),
    ("checkins", "checkin_recorded", {"checkin": {"id": "c", "v2momId": "v", "itemId": "i", "itemKind": "ITEM_KIND_MEASURE"}}),
    ("checkins", "checkin_recorded", {"checkin": {"id": "c", "v2momId": "v", "itemId": "i", "itemKind": "ITEM_KIND_MEASURE",
                                                  "observeTime": "2026-11-01T00:00:00Z", "recordTime": "2026-11-01T00:00:00Z",
                                                  "supersedesId": "d"}}),
    ("checkins", "progress_changed", {"v2momId": "v", "revision": "1", "progressPercent": "lots"}),
    ("checkins", "item_overdue", {"item": {"v2momId": "v", "itemId": "i", "kind": "ITEM_KIND_METHOD"}}),
    ("checkins", "no_such_type", {}),
])
def test_malformed_payloads_are_permanent_errors_and_write_nothing(metrics_db, source, event_type, data):
    with pytest.raises(PermanentError):
        consume.apply(metrics_db, source, raw_event(source, event_type, data))
    assert all(metrics_db[name].count_documents({}) == 0 for name in (store.V2MOMS, store.PEOPLE, store.UNITS, store.AGGREGATES))


def test_a_checkin_before_its_v2mom_is_known_lands_where_the_v2mom_belongs(metrics_db, org):
    """Check-ins for a V2MOM of someone who has moved, arriving before anything else about them."""
    log = CheckinLog()
    ann = Journey("v-ann", "ann", "platform", "individual", measures=("ma",)).step("draft", ago(days=9))
    ann.step("submitted", ago(days=9)).step("published", ago(days=8))
    log.record(ann, "ma", ago(days=8))
    apply_all(metrics_db, org.units + log.events)
    assert value(scrape(metrics_db), "v2mom_trailing_checkins", "platform") == 1  # where the check-in says, for now
    apply_all(metrics_db, [person("ann", "sales", revision=4)] + ann.events)
    s = scrape(metrics_db)
    assert (value(s, "v2mom_trailing_checkins", "platform"), value(s, "v2mom_trailing_checkins", "sales")) == (0, 1)
    assert value(s, "v2mom_people_with_v2mom", "sales") == 1


# --- rebuild ----------------------------------------------------------------------------------------


def test_rebuild_from_the_sources_equals_the_incremental_result(metrics_db, mongo_uri, org):
    apply_all(metrics_db, org.events() + [person("ann", "sales", revision=2)])
    incremental = scrape(metrics_db)
    org.people.append(person("ann", "sales", revision=2))
    org.people = [p for p in org.people if not (p["subject"] == "ann" and p["data"]["revision"] == "1")]

    client = pymongo.MongoClient(mongo_uri, tz_aware=True)
    fresh = client[f"metrics_test_{uuid.uuid4().hex[:10]}"]
    try:
        for db in (fresh, metrics_db):  # a new deployment, and a rebuild over live data
            rebuild.rebuild(db, org.goals_source(), CheckinStore(org.log), grace_seconds=0, clock=lambda: NOW)
            assert scrape(db) == incremental
    finally:
        client.drop_database(fresh.name)
        client.close()


def test_events_queued_during_a_rebuild_do_not_count_twice(metrics_db, org):
    rebuild.rebuild(metrics_db, org.goals_source(), CheckinStore(org.log), grace_seconds=0, clock=lambda: NOW)
    rebuilt = scrape(metrics_db)
    apply_all(metrics_db, org.events())  # the backlog the paused worker resumes with
    assert scrape(metrics_db) == rebuilt


# --- history, upkeep, pipeline ---------------------------------------------------------------------


def test_history_keeps_one_snapshot_per_week(metrics_db, org):
    apply_all(metrics_db, org.events())
    assert history.refresh(metrics_db, now=NOW - timedelta(weeks=1)) > 0
    assert history.refresh(metrics_db, now=NOW) > 0
    written = {}
    history.refresh(metrics_db, now=NOW, written=written)
    assert history.refresh(metrics_db, now=NOW, written=written) == 0, "unchanged numbers were written again"
    weeks = history.weeks(metrics_db, store.org_tree(metrics_db), "acme", CYCLE, "subtree")
    assert [week for week, _, _ in weeks] == ["2026-W47", "2026-W48"]
    assert weeks[-1][1].headcount == 6 and weeks[-1][2].headcount == 1


def test_zero_counters_are_tidied_without_changing_a_gauge(metrics_db, org):
    apply_all(metrics_db, org.events() + [person("ann", "sales", revision=2)])
    before = scrape(metrics_db)
    assert history.prune_zeros(metrics_db) > 0
    assert scrape(metrics_db) == before
    assert history.prune_zeros(metrics_db) == 0


def test_pipeline_tallies_reach_the_exposition(metrics_db):
    stats = PipelineStats()
    stats.observe("goals", "v2mom_created", NOW - timedelta(seconds=0.3), now=NOW)
    stats.observe("goals", "v2mom_created", NOW - timedelta(seconds=20), now=NOW)
    stats.observe("checkins", "checkin_recorded", NOW - timedelta(seconds=1), now=NOW)
    stats.flush(metrics_db)
    registry = CollectorRegistry()
    registry.register(PipelineCollector(metrics_db))
    samples = {(s.name, frozenset(s.labels.items())): s.value
               for f in text_string_to_metric_families(generate_latest(registry).decode()) for s in f.samples}
    assert samples[("v2mom_metrics_events_processed_total", frozenset({("source", "goals"), ("type", "v2mom_created")}))] == 2
    assert samples[("v2mom_metrics_event_lag_seconds_bucket", frozenset({("source", "goals"), ("le", "0.5")}))] == 1
    assert samples[("v2mom_metrics_event_lag_seconds_bucket", frozenset({("source", "goals"), ("le", "30.0")}))] == 2
    assert samples[("v2mom_metrics_last_event_timestamp_seconds", frozenset({("source", "checkins")}))] == pytest.approx(
        (NOW - timedelta(seconds=1)).timestamp())


def test_cycle_calendar_keeps_the_last_dates_while_goals_is_away():
    from services.metrics.cycles import Cycle, CycleCalendar
    from services.platform.core.errors import Unavailable

    known = [Cycle(CYCLE, NOW - timedelta(days=300), NOW + timedelta(days=65))]
    calls = []

    def fetch():
        calls.append(len(calls))
        if len(calls) == 2:
            raise Unavailable("goals-api is down")
        return known

    calendar = CycleCalendar(fetch, ttl=0, retry=60)
    assert calendar.cycles() == known
    assert calendar.cycles() == known  # the refresh failed: the last dates stand
    assert calendar.cycles() == known and len(calls) == 2, "a scrape waited on goals again within the retry pause"


# --- quarters: a check-in counts for its own quarter only (as in checkins) ----------------------------------------

def test_with_quarters_a_checkin_of_the_last_quarter_no_longer_covers_a_v2mom(metrics_db):
    events, log, ann = quarter_team()
    apply_all(metrics_db, events)
    assert coverage(metrics_db) == (1, 1.0)  # no quarters known: three days ago is within the 14-day cadence
    apply_all(metrics_db, [cycle_event()])
    assert coverage(metrics_db) == (0, 0.0)  # Q4 began on Tuesday: Monday's check-in counted for Q3 only
    assert coverage(metrics_db, now=ago(days=3)) == (1, 1.0)  # while Q3 lasted, it counted
    # every reader applies the same rule: the gRPC snapshot and metrics-api's kept text
    snapshot = engagement.snapshot(NOW, store.org_tree(metrics_db), store.aggregates(metrics_db),
                                   quarters=store.cycle_quarters(metrics_db))
    assert snapshot.direct[("platform", CYCLE)].covered == 0
    rendered = RenderedEngagement(metrics_db)
    assert _sample(kept_text(rendered), "v2mom_checked_in_v2moms", "platform") == 0
    # a check-in in Q4 covers it again
    log.record(ann, "m1", ago(hours=2))
    apply_all(metrics_db, log.events[-1:])
    assert coverage(metrics_db) == (1, 1.0)
    assert _sample(kept_text(rendered), "v2mom_checked_in_v2moms", "platform") == 1


def test_quarters_follow_the_newest_cycle_event_and_metrics_api_recounts_when_they_change(metrics_db):
    events, _, _ = quarter_team()
    apply_all(metrics_db, events + [cycle_event(revision=2)])
    rendered = RenderedEngagement(metrics_db)
    assert _sample(kept_text(rendered), "v2mom_checked_in_v2moms", "platform") == 0
    apply_all(metrics_db, [cycle_event(quarters=(), revision=1)])  # older, late: changes nothing
    assert coverage(metrics_db) == (0, 0.0)
    # the rollover's cycle_closed carries the whole cycle: Q3 now runs to the end of November
    apply_all(metrics_db, [cycle_event(quarters=QUARTERS[:2] + (("2026-08-01", "2026-11-30"),), revision=3,
                                       event_type=goal_events.CYCLE_CLOSED)])
    assert store.cycle_quarters(metrics_db)[CYCLE][-1] == ("2026-08-01", "2026-11-30")
    assert coverage(metrics_db) == (1, 1.0)
    assert _sample(kept_text(rendered), "v2mom_checked_in_v2moms", "platform") == 1  # no unit changed: recounted
    # a cycle without quarters: the cadence alone, as before
    apply_all(metrics_db, [cycle_event(quarters=(), revision=4)])
    assert store.cycle_quarters(metrics_db) == {} and coverage(metrics_db) == (1, 1.0)


def test_a_rebuild_fills_the_quarters_of_cycles_no_event_named_and_keeps_those_events_did(metrics_db):
    events, log, ann = quarter_team()
    listed_units = [listed_unit(e) for e in events if e["type"] == "org_unit_upserted"]
    listed_people = [listed_person(e) for e in events if e["type"] == "person_upserted"]
    goals = FakeGoals(listed_units, listed_people, [ann], cycles=[listed_cycle()])
    rebuild.rebuild(metrics_db, goals, CheckinStore(log), grace_seconds=0, clock=lambda: NOW)
    assert coverage(metrics_db) == (0, 0.0)  # a new deployment learns the quarters from ListCycles
    apply_all(metrics_db, [cycle_event(quarters=QUARTERS[:2] + (("2026-08-01", "2026-11-30"),), revision=1)])
    assert coverage(metrics_db) == (1, 1.0)  # any event beats the list, which carries no revision
    rebuild.rebuild(metrics_db, goals, CheckinStore(log), grace_seconds=0, clock=lambda: NOW)
    assert coverage(metrics_db) == (1, 1.0)  # and a later rebuild keeps what the event said


def test_a_cycle_event_with_an_impossible_quarter_is_dead_lettered_with_why(metrics_db):
    event = cycle_event()
    event["data"]["cycle"]["quarters"][1]["endDate"] = {"year": 2026, "month": 2, "day": 30}
    with pytest.raises(PermanentError, match="quarter 'Q2' needs real start and end dates"):
        consume.apply(metrics_db, "goals", event)
    event = cycle_event(quarters=(("2026-05-01", "2026-04-30"),))
    with pytest.raises(PermanentError, match="ends before it starts"):
        consume.apply(metrics_db, "goals", event)
    assert metrics_db[store.CYCLES].count_documents({}) == 0


def kept_text(rendered, now=NOW) -> str:
    return b"".join(rendered.chunks(now)).decode()


def _sample(text: str, name: str, unit: str, scope: str = "direct") -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if (sample.name, labels.get("org_unit"), labels.get("scope"), labels.get("cycle")) == (name, unit, scope, CYCLE):
                return sample.value
    return None
