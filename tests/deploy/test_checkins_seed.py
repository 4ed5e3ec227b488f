"""The demo check-in history, seeded for real: goals-api and checkins-api over gRPC, goals-worker and
checkins-worker as processes on RabbitMQ, the wire Mongo server.

The goals demo organisation is seeded first (as `make run` does), then the
check-ins history twice. What the dashboards will show must be true: lagging
teams have stale and overdue items, some measures are off track, corrections
carry their reasons, and a diligent team's progress rises week by week.
"""

import functools
import time
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import grpc
import kombu
import pymongo
import pytest
from google.type import date_pb2

from deploy.demo.checkins import Correction, ItemStory, Story, V2MOMStory, load_story
from deploy.demo.checkins.plan import MEASURE, METHOD, plan
from services.checkins.goals_client import GoalsClient
from services.checkins.handlers import Projection
from services.checkins.progress import week_start
from services.platform.bus.events import to_wire
from deploy.demo.checkins_seed import seed as seed_checkins
from deploy.demo.goals import load_org
from deploy.demo.goals_seed import seed as seed_goals
from services.platform.api.auth import bearer_metadata, mint_dev_token
from deploy.demo.calendar import current_cycle
from tests.support.broker import queue_exists
from tests.support import processes
from v2mom.v1 import checkins_pb2, checkins_pb2_grpc, common_pb2, goals_pb2

WORKER_QUEUES = (
    "evt-goals-v2mom_approved--checkins_worker.on_v2mom_approved",
    "evt-checkins-checkin_recorded--checkins_worker.on_checkin_recorded",
)
STALE = checkins_pb2.STALENESS_STALE
OVERDUE = checkins_pb2.STALENESS_OVERDUE


FY2027 = (date(2026, 2, 1), date(2027, 1, 31))
NOW = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)  # a Friday


# --- the plan (pure) ------------------------------------------------------------------------------


def day(iso: str) -> date_pb2.Date:
    year, month, dd = (int(part) for part in iso.split("-"))
    return date_pb2.Date(year=year, month=month, day=dd)


def published(v2mom_id: str, owner: str) -> goals_pb2.V2MOM:
    """A published team V2MOM: one measure owned by ann, one method with A, R and a done milestone."""
    return goals_pb2.V2MOM(
        id=v2mom_id, owner_id=owner, level=common_pb2.ORG_LEVEL_TEAM, org_unit_id=v2mom_id, cycle_id="FY2027",
        content=goals_pb2.V2MOMContent(
            title=v2mom_id,
            measures=[goals_pb2.Measure(id="msr-nps", title="NPS", unit="NPS", baseline=20, target=60,
                                        due_date=day("2026-12-31"), owner_id="ann")],
            methods=[goals_pb2.Method(
                id="mth-guide", title="Guide", owner_id="rob", accountable_id=owner, responsible_ids=["cat"],
                start_date=day("2026-03-01"), due_date=day("2026-12-31"),
                milestones=[goals_pb2.Milestone(id="mil-draft", due_date=day("2026-10-01"), done=True),
                            goals_pb2.Milestone(id="mil-final", due_date=day("2026-12-31"))],
            )],
        ),
    )


def small_story(**diligent) -> Story:
    remarks = {"on_track": ["fine"], "at_risk": ["slow"], "off_track": ["stuck"], "done": ["done"]}
    return Story(cycle="FY2027", weeks=8, random_seed=7, admin="ada", remarks=remarks, v2moms=[
        V2MOMStory(unit="diligent", owner="", habit="weekly", **diligent),
        V2MOMStory(unit="lagging", owner="", habit="biweekly", stopped_weeks_ago=3),
    ])


def small_plan(story=None, now=NOW):
    story = story or small_story()
    v2moms = [(story.v2moms[0], published("diligent", "lee")), (story.v2moms[1], published("lagging", "kim"))]
    return plan(story, v2moms, FY2027, now)


def test_the_plan_is_the_same_every_time_and_goes_week_by_week_across_v2moms():
    planned = small_plan()
    assert planned == small_plan()
    assert [p.weeks_ago for p in planned] == sorted((p.weeks_ago for p in planned), reverse=True)
    assert [(p.weeks_ago, p.v2mom_id, p.kind) for p in planned[:5]] == [
        (8, "diligent", MEASURE), (7, "diligent", MEASURE), (7, "diligent", METHOD), (7, "lagging", MEASURE),
        (7, "lagging", METHOD),
    ]
    assert len({(p.author, p.key) for p in planned}) == len(planned), "a key is used once per author"


def test_habits_decide_which_weeks_and_the_last_check_in_stays_put():
    planned = small_plan()
    weeks = lambda v2mom, kind: [p.weeks_ago for p in planned if p.v2mom_id == v2mom and p.kind == kind]  # noqa: E731
    assert weeks("diligent", MEASURE) == [8, 7, 6, 5, 4, 3, 2, 1]
    assert weeks("diligent", METHOD) == [7, 5, 3, 1]
    assert weeks("lagging", MEASURE) == weeks("lagging", METHOD) == [7, 5, 3]


def test_observations_are_in_past_weeks_on_each_persons_day_and_never_before_the_cycle():
    this_monday = datetime(2026, 11, 23, tzinfo=UTC)
    for entry in small_plan():
        assert this_monday - timedelta(weeks=entry.weeks_ago) <= entry.observe_time < this_monday
        assert entry.observe_time.isocalendar().week == (this_monday - timedelta(weeks=entry.weeks_ago)).isocalendar().week
    early = small_plan(now=datetime(2026, 2, 20, 12, tzinfo=UTC))  # three weeks into FY2027
    assert early and min(p.observe_time for p in early) >= datetime(2026, 2, 1, tzinfo=UTC)
    assert {p.weeks_ago for p in early} <= {1, 2, 3}


def test_authors_may_record_and_methods_report_done_milestones():
    for entry in small_plan():
        owner = "lee" if entry.v2mom_id == "diligent" else "kim"
        may = {"ann", owner} if entry.kind == MEASURE else {"rob", "cat", owner}
        assert entry.author in may, entry
        if entry.kind == METHOD:
            assert entry.milestone_ids == (("mil-draft",) if entry.observe_time.date() >= date(2026, 10, 1) else ())


def test_pace_sets_the_status_and_a_correction_rides_on_its_week():
    correction = Correction(weeks_ago=4, factor=0.1, reason="Typed {typed} instead of {value}.")
    story = small_story(pace=0.5, items={"NPS": ItemStory(correction=correction)})
    planned = [p for p in small_plan(story) if p.v2mom_id == "diligent" and p.kind == MEASURE]
    assert {p.status for p in planned} == {"off_track"} and all(p.confidence <= 4 for p in planned)
    [typo] = [p for p in planned if p.fix]
    assert typo.weeks_ago == 4 and typo.value == round(typo.fix.value * 0.1)
    assert typo.fix.reason == f"Typed {typo.value:g} instead of {typo.fix.value:g}." and typo.fix.author == "ann"
    assert typo.fix.key == typo.key + ".fix"


def test_the_demo_story_names_only_what_the_goals_demo_publishes():
    story = load_story()
    assert story.cycle == current_cycle() and story.weeks == 8
    assert story.cycle in {cycle["id"] for cycle in load_org().cycles}
    assert {"eng-platform", "eng-autonomy", "sales-success"} <= {v.unit for v in story.v2moms}
    assert sum(1 for v in story.v2moms for item in v.items.values() if item.correction) >= 2


# --- seeded for real ---------------------------------------------------------------------------------


@pytest.fixture
def broker_uri(isolated_broker_uri):
    return isolated_broker_uri


@pytest.fixture
def stack(settings, goals_api, checkins_settings, checkins_api, goals_worker, checkins_worker):
    """Everything `make run` starts, with checkins-worker listening before goals publishes anything."""
    with kombu.Connection(settings.amqp_uri) as connection:
        deadline = time.monotonic() + 30
        while not all(queue_exists(connection, name) for name in WORKER_QUEUES):
            assert checkins_worker.poll() is None, checkins_worker.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "checkins-worker never declared its queues"
            time.sleep(0.1)
    return {"goals": f"127.0.0.1:{goals_api.port}", "checkins": f"127.0.0.1:{checkins_api.port}"}


class Reader:
    """checkins-api and goals-api as someone browsing the demo would read them."""

    def __init__(self, settings, checkins, stack, db):
        self.metadata = bearer_metadata(mint_dev_token(settings.auth, "helena.vasquez"))
        self.channel = grpc.insecure_channel(stack["checkins"])
        self.stub = checkins_pb2_grpc.CheckinServiceStub(self.channel)
        self.checkins = checkins
        self.goals_db = db

    def v2mom_of_unit(self, unit: str) -> str:
        return self.goals_db.v2moms.find_one({"org_unit_id": unit, "cycle_id": current_cycle(), "level": {"$ne": "ORG_LEVEL_INDIVIDUAL"}})["_id"]

    def v2mom_of(self, person: str) -> str:
        return self.goals_db.v2moms.find_one({"owner_id": person, "cycle_id": current_cycle(), "level": "ORG_LEVEL_INDIVIDUAL"})["_id"]

    def call(self, rpc, request):
        return getattr(self.stub, rpc)(request, metadata=self.metadata, timeout=10)

    def stale_in(self, unit: str) -> list:
        return list(self.call("ListStaleItems", checkins_pb2.ListStaleItemsRequest(org_unit_id=unit, page_size=200)).items)

    def history(self, v2mom_id: str) -> list:
        return list(self.call("GetProgressHistory", checkins_pb2.GetProgressHistoryRequest(v2mom_id=v2mom_id)).snapshots)

    def progress(self, v2mom_id: str) -> checkins_pb2.Progress:
        return self.call("GetProgress", checkins_pb2.GetProgressRequest(v2mom_id=v2mom_id))

    def all_checkins(self, v2mom_id: str) -> list:
        request = checkins_pb2.ListCheckinsRequest(v2mom_id=v2mom_id, include_superseded=True, page_size=200)
        return list(self.call("ListCheckins", request).checkins)


wait_for = functools.partial(processes.wait_for, every=0.2)


@pytest.mark.timeout(600)
def test_the_demo_history_is_seeded_once_and_tells_a_true_story(settings, db, checkins_settings, checkins_db, stack):
    seed_goals(settings, goals_api_address=stack["goals"], progress=False)

    first = seed_checkins(settings.auth, stack["goals"], stack["checkins"], progress=False)

    assert first.v2moms == 14, "every published V2MOM of the demo's running cycle has a history"
    assert first.recorded == first.planned > 300 and first.corrected == 3, first.summary()
    assert first.caught_up, "checkins-worker never showed every item's latest check-in"
    stored = checkins_db.checkins.count_documents({})
    assert stored == first.recorded + first.corrected

    second = seed_checkins(settings.auth, stack["goals"], stack["checkins"], progress=False)

    assert (second.recorded, second.corrected, second.planned) == (0, 0, first.planned), second.summary()
    assert not second.changed and "nothing new" in second.summary()
    assert checkins_db.checkins.count_documents({}) == stored

    read = Reader(settings, checkins_settings, stack, db)
    _history_lies_in_the_past_week_by_week(read, checkins_db)
    _lagging_teams_have_stale_and_overdue_items(read)
    _some_measures_are_off_track_with_a_reason(read)
    _corrections_keep_the_original_and_say_why(read, checkins_db)
    _a_diligent_team_rises_week_by_week(read)
    _every_check_in_was_recorded_by_someone_who_may(read, db, checkins_db)


def _history_lies_in_the_past_week_by_week(read: Reader, checkins_db) -> None:
    this_monday = datetime.combine(week_start(datetime.now(UTC)), datetime.min.time(), tzinfo=UTC)
    observed = [doc["observe_time"] for doc in checkins_db.checkins.find({}, {"observe_time": 1})]
    assert max(observed) < this_monday, "nothing is observed in the current week, let alone the future"
    assert min(observed) >= this_monday - timedelta(weeks=8)
    start = next(date.fromisoformat(c["start"]) for c in load_org().cycles if c["id"] == current_cycle())
    assert min(observed) >= datetime.combine(start, datetime.min.time(), tzinfo=UTC), "never before the cycle starts"
    weeks = {week_start(moment) for moment in observed}
    assert len(weeks) == 8


def _lagging_teams_have_stale_and_overdue_items(read: Reader) -> None:
    # The staleness timer runs every half second in this test's worker.
    autonomy = wait_for(lambda: [i for i in read.stale_in("eng-autonomy") if i.staleness == OVERDUE],
                        message="Autonomy stopped checking in five weeks ago, yet nothing of theirs is overdue")
    assert {item.org_unit_id for item in autonomy} == {"eng-autonomy"}
    assert all(item.last_checkin_time.ToDatetime(tzinfo=UTC) < datetime.now(UTC) - timedelta(weeks=4) for item in autonomy)
    mei = read.v2mom_of("mei.tanaka")
    stale = wait_for(lambda: [i for i in read.stale_in("eng-autonomy") if i.v2mom_id == mei and i.staleness == STALE],
                     message="Mei stopped three weeks ago, yet none of her items is stale")
    assert all(item.owner_id == "mei.tanaka" for item in stale)
    assert not read.stale_in("eng-platform"), "Platform checks in every week: nothing of theirs may be stale"


def _some_measures_are_off_track_with_a_reason(read: Reader) -> None:
    sales = read.progress(read.v2mom_of_unit("sales"))
    off_track = [item for item in sales.items if item.status == checkins_pb2.CHECKIN_STATUS_OFF_TRACK]
    assert [item.title for item in off_track] == ["Pilot-to-contract conversion"]
    latest = read.all_checkins(sales.v2mom_id)
    conversion = next(c for c in latest if c.item_id == off_track[0].item_id)
    assert "Q1 budgets" in conversion.comment and conversion.confidence <= 4


def _corrections_keep_the_original_and_say_why(read: Reader, checkins_db) -> None:
    corrections = list(checkins_db.checkins.find({"supersedes_id": {"$exists": True}}))
    assert len(corrections) == 3
    for correction in corrections:
        original = checkins_db.checkins.find_one({"_id": correction["supersedes_id"]})
        assert original["superseded_by_id"] == correction["_id"], "the original stays in the history, linked"
        assert original["value"] != correction["value"] and correction["correction_reason"]
        assert original["observe_time"] == correction["observe_time"]
    platform = read.v2mom_of_unit("eng-platform")
    runbooks = next(c for c in corrections if c["v2mom_id"] == platform)
    assert runbooks["correction_reason"].startswith("Typed ") and runbooks["author_id"] == "hannah.berg"


def _a_diligent_team_rises_week_by_week(read: Reader) -> None:
    snapshots = read.history(read.v2mom_of_unit("eng-platform"))
    mondays = [(s.week_start.year, s.week_start.month, s.week_start.day) for s in snapshots]
    assert len(snapshots) >= 8 and mondays == sorted(set(mondays)), mondays
    progress = [s.progress_percent for s in snapshots]
    assert progress[-1] - progress[0] >= 3, f"no rising trend: {progress}"
    rises = sum(later >= earlier for earlier, later in zip(progress, progress[1:]))
    assert rises >= len(progress) - 2, f"more than one week went down: {progress}"


def _every_check_in_was_recorded_by_someone_who_may(read: Reader, db, checkins_db) -> None:
    """The item's owner, one of the method's A or R people, or the V2MOM's owner; never an admin's shortcut."""
    published = {doc["_id"]: doc for doc in db.v2moms.find({"published_revision": {"$gt": 0}})}
    for checkin in checkins_db.checkins.find({}):
        v2mom = published[checkin["v2mom_id"]]
        content = v2mom["published"]["content"]
        allowed = {v2mom["owner_id"]}
        for kind in ("measures", "methods"):
            for item in content[kind]:
                if item["id"] == checkin["item_id"] and checkin["item_kind"].endswith(kind[:-1].upper()):
                    allowed |= {item.get("owner_id"), item.get("accountable_id"), *item.get("responsible_ids", [])}
        assert checkin["author_id"] in allowed, checkin


# --- in process or through checkins-api: the same history --------------------------------------------


# Made afresh by every call, so they differ between any two seeds: the time the use case stamps a
# check-in with (record_time, recordTime in its event), its event's id and time, and the time the
# worker's projection last wrote a progress document (update_time). Check-in ids do not: they derive
# from the author and the idempotency key.
GENERATED = {"record_time", "recordTime", "id", "time", "update_time"}


def _without_generated(value, keep_ids: bool = False):
    if isinstance(value, dict):
        return {key: _without_generated(item, keep_ids or key == "checkin")
                for key, item in value.items() if key not in GENERATED or (key == "id" and keep_ids)}
    if isinstance(value, list):
        return [_without_generated(item, keep_ids) for item in value]
    return value


def _stored_history(checkins_db) -> list[dict]:
    """Every check-in with its pending events (rendered as the relay sends them), in recording order."""
    rows = []
    for doc in checkins_db.checkins.find({}).sort([("record_time", 1), ("_id", 1)]):
        doc["outbox"] = [to_wire(event) for event in doc.get("outbox", [])]
        rows.append(doc)
    return rows


def _roll_up(checkins_db, goals_addr: str, auth) -> dict:
    """What checkins-worker makes of the stored events: its own handlers, fed the check-ins' events in
    recording order and then the progress events they raise, until none is left."""
    goals = GoalsClient(goals_addr, auth)
    projection = Projection(checkins_db, goals)
    handle = {"checkin_recorded": projection.checkin_recorded, "checkin_corrected": projection.checkin_corrected,
              "progress_changed": projection.progress_changed}
    try:
        for doc in _stored_history(checkins_db):
            for event in doc["outbox"]:
                handle[event["type"]](event)
        while pending := list(checkins_db.progress.find({"outbox_pending": True})):
            for doc in pending:
                checkins_db.progress.update_one({"_id": doc["_id"]}, {"$set": {"outbox_pending": False, "outbox": []}})
                for event in doc["outbox"]:
                    if event["type"] in handle:
                        handle[event["type"]](to_wire(event))
    finally:
        goals.close()
    return {
        name: [_without_generated({k: v for k, v in doc.items() if k not in ("outbox", "outbox_pending")})
               for doc in checkins_db[name].find({}).sort("_id", 1)]
        for name in ("progress", "item_clocks")
    }


def _differences(one, other, path: str = "") -> list[str]:
    """Where two stored values differ, as paths (the first 20)."""
    if isinstance(one, dict) and isinstance(other, dict):
        found = [f"{path}.{key}" for key in one.keys() ^ other.keys()]
        for key in one.keys() & other.keys():
            found += _differences(one[key], other[key], f"{path}.{key}")
        return found[:20]
    if isinstance(one, list) and isinstance(other, list) and len(one) == len(other):
        return [d for i, (a, b) in enumerate(zip(one, other)) for d in _differences(a, b, f"{path}[{i}]")][:20]
    return [] if one == other else [f"{path}: {one!r} != {other!r}"]


@pytest.fixture
def second_checkins_settings(checkins_settings):
    """The check-ins service's settings on a second database of its own."""
    other = replace(checkins_settings, mongo_db=checkins_settings.database_name + "_b")
    yield other
    client = pymongo.MongoClient(other.mongo_uri)
    client.drop_database(other.database_name)
    client.close()


@pytest.mark.timeout(600)
def test_in_process_seeding_stores_what_seeding_through_checkins_api_stores(
    settings, db, goals_api, checkins_settings, checkins_db, checkins_api, second_checkins_settings,
):
    goals_addr = f"127.0.0.1:{goals_api.port}"
    seed_goals(settings, goals_api_address=goals_addr, progress=False)
    now = datetime.now(UTC)

    through_api = seed_checkins(settings.auth, goals_addr, f"127.0.0.1:{checkins_api.port}", progress=False, now=now,
                                catch_up_wait=0)
    in_process = seed_checkins(settings.auth, goals_addr, second_checkins_settings, progress=False, now=now,
                               catch_up_wait=0)

    assert through_api.summary() == in_process.summary()
    assert (in_process.recorded, in_process.corrected) == (in_process.planned, 3)
    client = pymongo.MongoClient(second_checkins_settings.mongo_uri, tz_aware=True)
    try:
        other_db = client[second_checkins_settings.database_name]
        api_history, fast_history = _stored_history(checkins_db), _stored_history(other_db)
        assert len(api_history) == len(fast_history) == in_process.planned + 3
        assert [_without_generated(doc) for doc in fast_history] == [_without_generated(doc) for doc in api_history]
        assert all(doc["outbox"] and doc["outbox_pending"] for doc in fast_history), "every event waits for the relay"
        # The same documents and events make the same progress, history snapshots and item clocks.
        assert _differences(_roll_up(other_db, goals_addr, checkins_settings.auth),
                            _roll_up(checkins_db, goals_addr, checkins_settings.auth)) == []
        again = seed_checkins(settings.auth, goals_addr, second_checkins_settings, progress=False, now=now,
                              catch_up_wait=0)
        assert not again.changed and other_db.checkins.count_documents({}) == len(fast_history)
    finally:
        client.close()
