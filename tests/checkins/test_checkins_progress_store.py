"""The progress projection in-process, on the wire Mongo server: what each event does to `progress`.

The worker process runs exactly these handlers (services/checkins/handlers.py);
test_checkins_worker.py proves the wiring with RabbitMQ and real goals.
"""

import uuid
from datetime import timedelta

import pytest

from services.checkins import structures
from services.checkins.handlers import Projection
from services.checkins.progress_reader import ProgressReader
from services.checkins.progress_store import PROGRESS
from services.checkins.clock_store import ITEM_CLOCKS
from services.platform.worker.consumer import PermanentError
from services.platform.core.errors import Unavailable
from services.platform.bus.events import MalformedEvent
from tests.support.checkin_events import (
    approved, archived, checkin_data, content, corrected, FakeGoals, METHOD, NOW, OFF_TRACK, outbox,
    progress_changed, recorded, v2mom_data,
)
from v2mom.v1 import events_pb2, goals_pb2


class Clock:
    def __init__(self, now=NOW):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def goals():
    return FakeGoals()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def projection(cdb, goals, clock):
    return Projection(cdb, goals, now=clock)


def doc(cdb, v2mom_id):
    return cdb[PROGRESS].find_one({"_id": v2mom_id})


def progress_events(cdb, v2mom_id=None):
    found = [e["data"] for e in outbox(cdb, PROGRESS, "progress_changed")]
    return [e for e in found if v2mom_id is None or e["v2momId"] == v2mom_id]


def new_id():
    return f"v2m_{uuid.uuid4().hex[:12]}"


# --- approvals ------------------------------------------------------------------------------


def test_an_approval_creates_progress_at_zero_and_announces_it(cdb, projection):
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3, parent_id="v2m_team")))

    stored = doc(cdb, "v2m_ann")
    assert stored["structure_revision"] == 3 and stored["parent_id"] == "v2m_team"
    assert [(i["kind"], i["item_id"]) for i in stored["items"]] == [
        ("ITEM_KIND_MEASURE", "msr-nps"), ("ITEM_KIND_MEASURE", "msr-ttv"), ("ITEM_KIND_METHOD", "mth-guide"),
    ]
    assert (stored["progress_percent"], stored["tree_progress_percent"], stored["measures"]) == (0.0, 0.0, 2)
    [event] = progress_events(cdb)
    assert event["cause"] == "structure" and event["parentV2momId"] == "v2m_team" and event["revision"] == "1"
    assert event["ownerId"] == "ann" and event["orgUnitId"] == "onboarding" and event["cycleId"] == "FY2027"
    assert structures.find(cdb, "v2m_ann")["published_revision"] == 3  # the API's copy, through its own function


def test_a_replayed_approval_changes_nothing(cdb, projection):
    event = approved(v2mom_data("v2m_ann", 3))
    for _ in range(3):
        projection.v2mom_approved(event)
    assert doc(cdb, "v2m_ann")["revision"] == 1
    assert len(progress_events(cdb)) == 1


def test_a_check_in_moves_own_and_tree_progress_and_says_who_and_what(cdb, projection):
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3)))
    projection.checkin_recorded(recorded(checkin_data("v2m_ann", "msr-nps", value=40.0, status=OFF_TRACK)))

    stored = doc(cdb, "v2m_ann")
    assert stored["progress_percent"] == pytest.approx(37.5)  # nps 50% at weight 75, ttv 0% at 25
    assert stored["tree_progress_percent"] == pytest.approx(37.5)
    event = progress_events(cdb)[-1]
    assert event["cause"] == "checkin" and event["personId"] == "rob"
    assert event["itemKind"] == "ITEM_KIND_MEASURE" and event["itemId"] == "msr-nps"
    assert event["previousProgressPercent"] == 0.0 and event["progressPercent"] == pytest.approx(37.5)
    assert (event["offTrackMeasures"], event["measures"]) == (1, 2)


def test_a_decreasing_measure_counts_down(cdb, projection):
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3)))
    projection.checkin_recorded(recorded(checkin_data("v2m_ann", "msr-ttv", value=15.0)))
    assert doc(cdb, "v2m_ann")["progress_percent"] == pytest.approx(0.25 * 75.0)


def test_methods_count_only_without_measures(cdb, projection):
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3, content(measures=(), methods=("mth-a", "mth-b")))))
    projection.checkin_recorded(recorded(checkin_data("v2m_ann", "mth-a", kind=METHOD, value=None, progress=80.0)))
    assert doc(cdb, "v2m_ann")["progress_percent"] == pytest.approx(40.0)


def test_a_replayed_check_in_counts_once(cdb, projection):
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3)))
    event = recorded(checkin_data("v2m_ann", value=40.0))
    for _ in range(3):
        projection.checkin_recorded(event)
    assert doc(cdb, "v2m_ann")["revision"] == 2
    assert len(progress_events(cdb)) == 2  # the approval's and the check-in's


def test_a_late_older_observation_does_not_move_progress_back(cdb, projection):
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3)))
    projection.checkin_recorded(recorded(checkin_data("v2m_ann", value=60.0, observed=NOW - timedelta(hours=1))))
    projection.checkin_recorded(recorded(checkin_data("v2m_ann", value=20.0, observed=NOW - timedelta(days=3))))
    stored = doc(cdb, "v2m_ann")
    assert stored["progress_percent"] == pytest.approx(75.0)
    assert stored["revision"] == 2


def test_equal_observation_times_are_settled_by_record_time(cdb, projection):
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3)))
    observed = NOW - timedelta(days=1)
    projection.checkin_recorded(recorded(checkin_data("v2m_ann", value=60.0, observed=observed, recorded=NOW - timedelta(minutes=1))))
    projection.checkin_recorded(recorded(checkin_data("v2m_ann", value=40.0, observed=observed, recorded=NOW - timedelta(hours=5))))
    assert doc(cdb, "v2m_ann")["progress_percent"] == pytest.approx(75.0)


def test_a_correction_replaces_the_latest_check_in_it_supersedes(cdb, projection):
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3)))
    original = checkin_data("v2m_ann", value=60.0, checkin_id="chk_orig")
    cdb.checkins.insert_one({"_id": "chk_orig", "v2mom_id": "v2m_ann"})
    projection.checkin_recorded(recorded(original))
    # The correction keeps the original's observation but was recorded earlier than a clock skew could explain:
    # it replaces the original because it says so, not because it sorts later.
    fix = checkin_data("v2m_ann", value=40.0, checkin_id="chk_fix", supersedes_id="chk_orig",
                       observed=NOW - timedelta(days=2), recorded=NOW - timedelta(days=2))
    projection.checkin_corrected(corrected(fix))

    assert doc(cdb, "v2m_ann")["progress_percent"] == pytest.approx(37.5)
    assert progress_events(cdb)[-1]["cause"] == "correction"
    assert cdb.checkins.find_one({"_id": "chk_orig"})["superseded_by_id"] == "chk_fix"
    projection.checkin_recorded(recorded(original))  # the original, replayed late
    assert doc(cdb, "v2m_ann")["progress_percent"] == pytest.approx(37.5)


def test_a_correction_of_an_older_check_in_leaves_the_latest_alone(cdb, projection):
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3)))
    projection.checkin_recorded(recorded(checkin_data("v2m_ann", value=30.0, checkin_id="chk_old", observed=NOW - timedelta(days=9))))
    projection.checkin_recorded(recorded(checkin_data("v2m_ann", value=60.0, checkin_id="chk_new", observed=NOW - timedelta(days=1))))
    projection.checkin_corrected(corrected(checkin_data(
        "v2m_ann", value=50.0, supersedes_id="chk_old", observed=NOW - timedelta(days=9), recorded=NOW,
    )))
    assert doc(cdb, "v2m_ann")["progress_percent"] == pytest.approx(75.0)


def test_the_correction_link_is_repaired_once_and_never_overwritten(cdb, projection):
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3)))
    cdb.checkins.insert_many([{"_id": "chk_a"}, {"_id": "chk_b", "superseded_by_id": "chk_first"}])
    projection.checkin_corrected(corrected(checkin_data("v2m_ann", checkin_id="chk_a2", supersedes_id="chk_a")))
    projection.checkin_corrected(corrected(checkin_data("v2m_ann", checkin_id="chk_b2", supersedes_id="chk_b")))
    assert cdb.checkins.find_one({"_id": "chk_a"})["superseded_by_id"] == "chk_a2"
    assert cdb.checkins.find_one({"_id": "chk_b"})["superseded_by_id"] == "chk_first"


def test_a_re_approval_that_removes_a_measure_drops_it_from_progress(cdb, projection):
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3)))
    projection.checkin_recorded(recorded(checkin_data("v2m_ann", "msr-nps", value=40.0)))
    projection.checkin_recorded(recorded(checkin_data("v2m_ann", "msr-ttv", value=10.0)))
    assert doc(cdb, "v2m_ann")["progress_percent"] == pytest.approx(62.5)

    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 7, content(measures=(("msr-nps", 20, 60, 100),)))))
    stored = doc(cdb, "v2m_ann")
    assert stored["progress_percent"] == pytest.approx(50.0) and stored["measures"] == 1
    assert progress_events(cdb)[-1]["cause"] == "structure"


def test_a_re_approval_rereads_values_on_the_new_scale(cdb, projection):
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3, content(measures=(("msr-nps", 20, 60, 0),)))))
    projection.checkin_recorded(recorded(checkin_data("v2m_ann", "msr-nps", value=40.0)))
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 5, content(measures=(("msr-nps", 20, 100, 0),)))))
    assert doc(cdb, "v2m_ann")["progress_percent"] == pytest.approx(25.0)


def test_an_older_approval_after_a_newer_one_is_ignored(cdb, projection):
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 7, content(measures=(("msr-nps", 20, 60, 100),)))))
    before = doc(cdb, "v2m_ann")
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3)))
    after = doc(cdb, "v2m_ann")
    assert after["structure_revision"] == 7 and after["items"] == before["items"] and after["revision"] == before["revision"]
    assert cdb[ITEM_CLOCKS].count_documents({"v2mom_id": "v2m_ann", "active": True}) == 2  # nps and the method


def test_a_check_in_on_an_item_from_an_approval_not_seen_yet_counts_when_it_arrives(cdb, projection):
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3, content(measures=(("msr-nps", 20, 60, 0),)))))
    projection.checkin_recorded(recorded(checkin_data("v2m_ann", "msr-new", value=5.0)))
    assert doc(cdb, "v2m_ann")["progress_percent"] == 0.0
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 5, content(measures=(("msr-nps", 20, 60, 0), ("msr-new", 0, 10, 0))))))
    assert doc(cdb, "v2m_ann")["progress_percent"] == pytest.approx(25.0)


# --- a worker that missed the approval -------------------------------------------------------------


def published_v2mom(v2mom_id, revision=4, state=goals_pb2.V2MOM_STATE_PUBLISHED):
    v2mom = goals_pb2.V2MOM(
        id=v2mom_id, revision=revision, published_revision=revision, owner_id="ann", org_unit_id="onboarding",
        cycle_id="FY2027", state=state, content=content(),
    )
    v2mom.publish_time.FromDatetime(NOW - timedelta(days=3))
    return v2mom


def test_a_check_in_for_an_unknown_v2mom_learns_its_structure_from_goals(cdb, projection, goals):
    goals.v2moms["v2m_late"] = published_v2mom("v2m_late")
    projection.checkin_recorded(recorded(checkin_data("v2m_late", value=40.0)))

    stored = doc(cdb, "v2m_late")
    assert stored["structure_revision"] == 4 and stored["progress_percent"] == pytest.approx(37.5)
    assert structures.find(cdb, "v2m_late")["published_revision"] == 4
    assert cdb[ITEM_CLOCKS].count_documents({"v2mom_id": "v2m_late", "active": True}) == 3


def test_a_check_in_for_an_unknown_v2mom_uses_the_stored_structure_before_asking_goals(cdb, projection, goals):
    structures.store(cdb, structures.structure_from_v2mom(published_v2mom("v2m_cached")))
    projection.checkin_recorded(recorded(checkin_data("v2m_cached", value=40.0)))
    assert doc(cdb, "v2m_cached")["progress_percent"] == pytest.approx(37.5)
    assert not [call for call in goals.calls if call.startswith("GetV2MOM")]


def test_goals_down_fails_the_delivery_and_invents_nothing(cdb, projection, goals):
    goals.down = True
    event = recorded(checkin_data("v2m_late", value=40.0))
    with pytest.raises(Unavailable):
        projection.checkin_recorded(event)
    stored = doc(cdb, "v2m_late")
    assert stored["structure_revision"] == 0 and stored.get("items") == [] and progress_events(cdb) == []

    goals.down = False
    goals.v2moms["v2m_late"] = published_v2mom("v2m_late")
    projection.checkin_recorded(event)  # the redelivery
    assert doc(cdb, "v2m_late")["progress_percent"] == pytest.approx(37.5)


def test_a_v2mom_goals_does_not_know_keeps_the_check_in_without_progress(cdb, projection):
    projection.checkin_recorded(recorded(checkin_data("v2m_ghost", value=40.0)))
    stored = doc(cdb, "v2m_ghost")
    assert stored["structure_revision"] == 0 and len(stored["latest"]) == 1 and progress_events(cdb) == []


# --- archive ------------------------------------------------------------------------------------


def test_archiving_announces_it_and_stops_the_clocks(cdb, projection):
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3, parent_id="v2m_team")))
    projection.v2mom_archived(archived("v2m_ann", 4, parent_id="v2m_team"))
    projection.v2mom_archived(archived("v2m_ann", 4, parent_id="v2m_team"))  # replayed

    assert doc(cdb, "v2m_ann")["archived"] is True
    events = progress_events(cdb)
    assert len(events) == 2 and events[-1]["archived"] is True
    assert cdb[ITEM_CLOCKS].count_documents({"v2mom_id": "v2m_ann", "active": True}) == 0
    assert structures.find(cdb, "v2m_ann")["archived"] is True


def test_archived_before_approved_ends_archived_with_idle_clocks(cdb, projection):
    projection.v2mom_archived(archived("v2m_ann", 5))
    assert progress_events(cdb) == []  # nothing known to announce yet
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 4, parent_id="v2m_team")))

    stored = doc(cdb, "v2m_ann")
    assert stored["archived"] is True and stored["structure_revision"] == 4
    [event] = progress_events(cdb)
    assert event["archived"] is True  # so the parent never counts it
    assert cdb[ITEM_CLOCKS].count_documents({"v2mom_id": "v2m_ann"}) == 3
    assert cdb[ITEM_CLOCKS].count_documents({"v2mom_id": "v2m_ann", "active": True}) == 0


# --- the tree --------------------------------------------------------------------------------------


def relay(projection, cdb, v2mom_id):
    """Feeds a V2MOM's pending progress_changed events back in, as the worker's own queue would."""
    for event in outbox(cdb, PROGRESS, "progress_changed"):
        if event["data"]["v2momId"] == v2mom_id:
            projection.progress_changed(event)


def test_a_child_tree_progress_reaches_the_parent(cdb, projection):
    projection.v2mom_approved(approved(v2mom_data("v2m_team", 2, owner_id="lee")))
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3, parent_id="v2m_team")))
    projection.checkin_recorded(recorded(checkin_data("v2m_team", value=60.0)))  # team own: 75
    projection.checkin_recorded(recorded(checkin_data("v2m_ann", value=40.0)))   # ann: 37.5
    relay(projection, cdb, "v2m_ann")

    team = doc(cdb, "v2m_team")
    assert team["progress_percent"] == pytest.approx(75.0)
    assert team["tree_progress_percent"] == pytest.approx(56.25)
    assert progress_events(cdb, "v2m_team")[-1]["cause"] == "child"


def test_a_parent_heard_of_before_its_own_approval_counts_its_children_once_approved(cdb, projection):
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3, parent_id="v2m_team")))
    projection.checkin_recorded(recorded(checkin_data("v2m_ann", value=40.0)))
    relay(projection, cdb, "v2m_ann")
    assert progress_events(cdb, "v2m_team") == []  # a stub has nothing to announce

    projection.v2mom_approved(approved(v2mom_data("v2m_team", 2, owner_id="lee")))
    assert doc(cdb, "v2m_team")["tree_progress_percent"] == pytest.approx(37.5 / 2)


def test_an_older_child_report_is_ignored(cdb, projection):
    projection.v2mom_approved(approved(v2mom_data("v2m_team", 2, owner_id="lee", content_=content(measures=(), methods=()))))
    newer = events_pb2.ProgressEventData(v2mom_id="v2m_ann", parent_v2mom_id="v2m_team", revision=5, tree_progress_percent=40)
    older = events_pb2.ProgressEventData(v2mom_id="v2m_ann", parent_v2mom_id="v2m_team", revision=4, tree_progress_percent=90)
    projection.progress_changed(progress_changed(newer))
    projection.progress_changed(progress_changed(older))
    projection.progress_changed(progress_changed(newer))
    assert doc(cdb, "v2m_team")["tree_progress_percent"] == pytest.approx(40.0)


def test_an_archived_child_stops_counting(cdb, projection):
    projection.v2mom_approved(approved(v2mom_data("v2m_team", 2, owner_id="lee")))
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3, parent_id="v2m_team")))
    projection.checkin_recorded(recorded(checkin_data("v2m_team", value=60.0)))
    projection.checkin_recorded(recorded(checkin_data("v2m_ann", value=40.0)))
    relay(projection, cdb, "v2m_ann")
    projection.v2mom_archived(archived("v2m_ann", 4, parent_id="v2m_team"))
    relay(projection, cdb, "v2m_ann")
    assert doc(cdb, "v2m_team")["tree_progress_percent"] == pytest.approx(75.0)


def test_a_child_that_moves_leaves_its_old_parent_for_good(cdb, projection):
    for parent in ("v2m_old", "v2m_new"):
        projection.v2mom_approved(approved(v2mom_data(parent, 2, owner_id="lee", content_=content(measures=(), methods=()))))
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3, parent_id="v2m_old")))
    projection.checkin_recorded(recorded(checkin_data("v2m_ann", value=40.0)))
    pre_move = [e for e in outbox(cdb, PROGRESS, "progress_changed") if e["data"]["v2momId"] == "v2m_ann"]

    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 5, parent_id="v2m_new")))
    relay(projection, cdb, "v2m_ann")  # every event ann ever sent, in any order: pre-move ones included
    for event in reversed(pre_move):
        projection.progress_changed(event)

    old, new = doc(cdb, "v2m_old"), doc(cdb, "v2m_new")
    assert [c["state"] for c in old["children"]] == ["moved"] and old["tree_progress_percent"] == 0.0
    assert [c["state"] for c in new["children"]] == ["active"]
    assert new["tree_progress_percent"] == pytest.approx(37.5)
    assert progress_events(cdb, "v2m_old")[-1]["treeProgressPercent"] == 0.0


# --- snapshots and the read side -------------------------------------------------------------------


def test_one_snapshot_per_week_and_a_late_fact_never_rewrites_an_earlier_week(cdb, projection, clock):
    clock.now = NOW - timedelta(weeks=3)
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3, publish_time=clock.now)))
    for weeks_ago, value in ((2, 30.0), (1, 40.0), (0, 50.0)):
        clock.now = NOW - timedelta(weeks=weeks_ago)
        projection.checkin_recorded(recorded(checkin_data("v2m_ann", value=value, observed=clock.now)))
        projection.checkin_recorded(recorded(checkin_data("v2m_ann", "msr-ttv", value=30.0 - weeks_ago, observed=clock.now)))
    # Recorded now, observed a month ago: it lands in this week, not in the past.
    projection.checkin_recorded(recorded(checkin_data("v2m_ann", "mth-guide", kind=METHOD, value=None, progress=10,
                                                      observed=NOW - timedelta(weeks=4))))

    history = ProgressReader(cdb).history("v2m_ann")
    weeks = [(s.week_start.month, s.week_start.day) for s in history.snapshots]
    assert weeks == [(5, 18), (5, 25), (6, 1), (6, 8)]
    assert history.snapshots[-1].progress_percent == pytest.approx(0.75 * 75.0)
    assert len(doc(cdb, "v2m_ann")["snapshots"]) == 4


def test_history_recorded_after_the_approval_but_observed_before_it_draws_its_own_weeks(cdb, projection, clock):
    # Approved this week (its point: 0%), then three weeks of earlier observations recorded in order,
    # as a backfill or the demo seed does: each lands in its own week, and this week's point follows.
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3, publish_time=NOW)))
    for weeks_ago, value in ((3, 28.0), (2, 32.0), (1, 36.0)):
        projection.checkin_recorded(recorded(checkin_data("v2m_ann", value=value, observed=NOW - timedelta(weeks=weeks_ago))))
    # A late fact (observed before what is already held) still only moves the newest point.
    projection.checkin_recorded(recorded(checkin_data("v2m_ann", "msr-ttv", value=20.0, observed=NOW - timedelta(weeks=2))))

    history = ProgressReader(cdb).history("v2m_ann")
    weeks = [(s.week_start.month, s.week_start.day) for s in history.snapshots]
    assert weeks == [(5, 18), (5, 25), (6, 1), (6, 8)]
    nps_only = [0.75 * 100 * (value - 20) / 40 for value in (28.0, 32.0, 36.0)]
    assert [s.progress_percent for s in history.snapshots[:3]] == pytest.approx(nps_only)
    assert history.snapshots[-1].progress_percent == pytest.approx(nps_only[-1] + 0.25 * 50.0)


def test_the_reader_gives_items_tree_and_nothing_for_unknown_v2moms(cdb, projection):
    projection.v2mom_approved(approved(v2mom_data("v2m_team", 2, owner_id="lee")))
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3, parent_id="v2m_team")))
    projection.checkin_recorded(recorded(checkin_data("v2m_ann", value=40.0, status=OFF_TRACK)))
    relay(projection, cdb, "v2m_ann")
    reader = ProgressReader(cdb, now=lambda: NOW)

    team = reader.progress("v2m_team", include_tree=True)
    assert team.tree_progress_percent == pytest.approx(37.5 / 2)
    [ann] = team.children
    assert ann.v2mom_id == "v2m_ann" and ann.progress_percent == pytest.approx(37.5)
    nps = next(item for item in ann.items if item.item_id == "msr-nps")
    assert (nps.value, nps.progress_percent, nps.weight, nps.owner_id) == (40.0, 50.0, 75.0, "rob")
    assert nps.status == 3 and nps.last_checkin_time.seconds > 0 and not nps.stale
    assert not reader.progress("v2m_team", include_tree=False).children
    assert reader.progress("v2m_nobody", include_tree=True) is None
    assert reader.history("v2m_nobody") is None


# --- bad payloads --------------------------------------------------------------------------------------


@pytest.mark.parametrize("handler, data", [
    ("v2mom_approved", {"v2momId": "v2m_x"}),                                    # no revision
    ("v2mom_approved", {"v2momId": 7, "revision": "3"}),                         # wrong type
    ("v2mom_approved", {"v2momId": "v2m_x", "revision": "3", "state": "V2MOM_STATE_DRAFT"}),
    ("v2mom_archived", {"revision": "3"}),
    ("checkin_recorded", {"checkin": {"id": "chk_1", "v2momId": "v2m_x", "itemId": "m", "itemKind": "ITEM_KIND_MEASURE"}}),
    ("checkin_recorded", {"checkin": "not an object"}),
    ("checkin_recorded", {"checkin": {"id": "chk_1", "v2momId": "v2m_x", "itemId": "m", "itemKind": "ITEM_KIND_MEASURE",
                                      "observeTime": "2026-06-01T00:00:00Z", "recordTime": "2026-06-01T00:00:00Z",
                                      "value": "NaN"}}),
    ("checkin_corrected", {"checkin": {"id": "chk_1", "v2momId": "v2m_x", "itemId": "m", "itemKind": "ITEM_KIND_METHOD",
                                       "observeTime": "2026-06-01T00:00:00Z", "recordTime": "2026-06-01T00:00:00Z"}}),
    ("progress_changed", {"v2momId": "v2m_x", "revision": "three"}),
])
def test_malformed_payloads_are_permanent_failures(cdb, projection, handler, data):
    envelope = {"id": "evt_1", "type": handler, "data": data}
    with pytest.raises((PermanentError, MalformedEvent)):
        getattr(projection, handler)(envelope)
    assert cdb[PROGRESS].count_documents({}) == 0
