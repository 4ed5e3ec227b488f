"""ExportV2MOMs carries each V2MOM's progress and latest check-ins, from goals' own projection of checkins'
events (checkin_projection.py): older, replayed and out-of-order events never move it back.

The first tests feed the projection goals-worker writes into a real goals-api's database and read the export
over gRPC; the last runs goals-api, checkins-api, checkins-worker and goals-worker for real on RabbitMQ and the
wire store, and records check-ins through checkins-api.
"""

from datetime import UTC, datetime, timedelta

import pytest

from services.goals.checkin_projection import ITEM_CHECKINS, PROGRESS, CheckinProjection
from services.platform.core.clock import to_timestamp
from tests.support.broker import queue_exists
from tests.support.checkins import build_goals_world
from tests.support.goals import OWNER, PEER
from tests.support.processes import log_tail, wait_for
from v2mom.v1 import checkins_pb2, events_pb2, goals_pb2

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
ON, OFF = checkins_pb2.CHECKIN_STATUS_ON_TRACK, checkins_pb2.CHECKIN_STATUS_OFF_TRACK
QUEUES = ("evt-checkins-checkin_recorded--goals_worker.on_checkin_recorded",
          "evt-checkins-progress_changed--goals_worker.on_progress_changed",
          "evt-goals-v2mom_approved--checkins_worker.on_v2mom_approved")


def checkin(v2mom_id, checkin_id, hours, item_id="msr-1", value=10.0, supersedes="", status=ON, recorded_hours=None):
    observed = T0 + timedelta(hours=hours)
    recorded = T0 + timedelta(hours=hours if recorded_hours is None else recorded_hours, minutes=1)
    return checkins_pb2.Checkin(
        id=checkin_id, v2mom_id=v2mom_id, item_kind=checkins_pb2.ITEM_KIND_MEASURE, item_id=item_id,
        author_id=OWNER, value=value, progress_percent=value, status=status, confidence=7, comment=f"as of {hours}h",
        observe_time=to_timestamp(observed), record_time=to_timestamp(recorded), supersedes_id=supersedes)


def progress(v2mom_id, revision, percent):
    return events_pb2.ProgressEventData(v2mom_id=v2mom_id, revision=revision, progress_percent=percent,
                                        tree_progress_percent=percent / 2, off_track_measures=1, measures=3)


def exported(goals, v2mom_id, person=PEER, unit="platform", cycle="") -> goals_pb2.ExportedV2MOM:
    stream = goals.client(person).ExportV2MOMs(goals_pb2.ExportV2MOMsRequest(org_unit_id=unit, cycle_id=cycle))
    return next(e for e in stream if e.v2mom.id == v2mom_id)


@pytest.fixture
def projection(goals):
    return CheckinProjection(goals.db)


@pytest.fixture
def v2mom(goals, cycle):
    return goals.published(cycle_id=cycle)


def test_a_v2mom_checked_in_on_exports_its_progress_and_latest_checkins(goals, cycle, projection, v2mom):
    assert projection.take_progress(progress(v2mom.id, 3, 40.0))
    assert projection.take_checkin(checkin(v2mom.id, "chk-a", 1, value=12))
    assert projection.take_checkin(checkin(v2mom.id, "chk-m", 2, item_id="mth-0", status=OFF))
    shown = exported(goals, v2mom.id, cycle=cycle)
    assert (shown.progress.progress_percent, shown.progress.tree_progress_percent, shown.progress.revision,
            shown.progress.off_track_measures, shown.progress.measures) == (40.0, 20.0, 3, 1, 3)
    latest = shown.latest_checkin
    assert (latest.checkin_id, latest.item_id, latest.status, latest.author_id) == ("chk-m", "mth-0", OFF, OWNER)
    assert latest.observe_time.ToDatetime(tzinfo=UTC) == T0 + timedelta(hours=2)
    items = {c.item_id: c for c in shown.item_checkins}
    assert set(items) == {"msr-1", "mth-0"}
    measure = items["msr-1"]
    assert (measure.value, measure.confidence, measure.progress_percent, measure.comment, measure.item_kind) == (
        12.0, 7, 12.0, "as of 1h", checkins_pb2.ITEM_KIND_MEASURE)


def test_a_v2mom_never_checked_in_on_has_no_progress_fields(goals, cycle, v2mom):
    shown = exported(goals, v2mom.id, cycle=cycle)
    assert not shown.HasField("progress") and not shown.HasField("latest_checkin") and not shown.item_checkins


def test_older_and_replayed_progress_never_moves_it_back(goals, projection, v2mom):
    assert projection.take_progress(progress(v2mom.id, 5, 60.0))
    assert not projection.take_progress(progress(v2mom.id, 4, 10.0))  # late
    assert not projection.take_progress(progress(v2mom.id, 5, 60.0))  # replayed
    assert goals.db[PROGRESS].find_one({"_id": v2mom.id})["progress_percent"] == 60.0
    assert projection.take_progress(progress(v2mom.id, 6, 65.0))
    assert goals.db[PROGRESS].count_documents({"_id": v2mom.id}) == 1


def test_the_latest_checkin_is_the_latest_observed_whatever_the_order_of_arrival(goals, projection, v2mom):
    assert projection.take_checkin(checkin(v2mom.id, "chk-2", 2, value=20))
    assert not projection.take_checkin(checkin(v2mom.id, "chk-1", 1, value=10))  # observed earlier, arrived later
    assert not projection.take_checkin(checkin(v2mom.id, "chk-2", 2, value=20))  # replayed
    # Observed at the same time, recorded later: that one is the latest (checkins' ListCheckins order).
    assert projection.take_checkin(checkin(v2mom.id, "chk-2b", 2, value=22, recorded_hours=3))
    stored = goals.db[ITEM_CHECKINS].find({"v2mom_id": v2mom.id})
    assert [doc["checkin_id"] for doc in stored] == ["chk-2b"]


def test_a_correction_replaces_what_it_corrects_and_the_original_never_comes_back(goals, projection, v2mom):
    assert projection.take_checkin(checkin(v2mom.id, "chk-1", 5, value=50))
    # The correction moves the observation earlier: it still takes the place of the one it corrects.
    assert projection.take_checkin(checkin(v2mom.id, "chk-1c", 4, value=45, supersedes="chk-1", recorded_hours=6))
    assert not projection.take_checkin(checkin(v2mom.id, "chk-1", 5, value=50))  # the original, replayed
    doc = goals.db[ITEM_CHECKINS].find_one({"v2mom_id": v2mom.id})
    assert (doc["checkin_id"], doc["checkin"]["value"]) == ("chk-1c", 45.0)

    # A correction arriving before its original: the original, though observed later, is not taken.
    assert projection.take_checkin(checkin(v2mom.id, "chk-9c", 9, value=90, supersedes="chk-9", recorded_hours=10,
                                           item_id="msr-2"))
    assert not projection.take_checkin(checkin(v2mom.id, "chk-9", 9.5, value=95, item_id="msr-2"))
    assert goals.db[ITEM_CHECKINS].find_one({"checkin_id": "chk-9c"}) is not None


# --- the real thing: check-ins recorded through checkins-api reach goals' export ----------------------------------


@pytest.fixture
def broker_uri(isolated_broker_uri):
    return isolated_broker_uri


@pytest.fixture
def running(connection, checkins_worker, goals_worker):
    """Both workers once each one's queues exist (so nothing published later is missed)."""
    wait_for(lambda: all(queue_exists(connection, name) for name in QUEUES)
             or goals_worker.poll() is not None or checkins_worker.poll() is not None,
             30, "the workers never declared their queues")
    assert goals_worker.poll() is None and checkins_worker.poll() is None, log_tail(goals_worker)
    return checkins_worker, goals_worker


@pytest.fixture
def world(running, db, goals_api):  # the workers first: they must hear the approvals
    return build_goals_world(db, goals_api)


def test_checkins_recorded_through_checkins_api_show_in_the_export(world, goals_api, checkins_api, running, db):
    ann, ann_id = checkins_api("ann"), world.ann_v2mom_id
    first = ann.RecordMeasureCheckin(checkins_pb2.RecordMeasureCheckinRequest(
        v2mom_id=ann_id, measure_id="msr-ttv", value=20, status=ON, confidence=8, comment="halfway"))
    latest = ann.RecordMethodCheckin(checkins_pb2.RecordMethodCheckinRequest(
        v2mom_id=ann_id, method_id="mth-guide", progress_percent=40, status=checkins_pb2.CHECKIN_STATUS_AT_RISK))

    def shown():
        stream = goals_api("ann").ExportV2MOMs(goals_pb2.ExportV2MOMsRequest(org_unit_id="onboarding",
                                                                             cycle_id="FY2027"))
        return next(e for e in stream if e.v2mom.id == ann_id)

    def caught_up():  # the export shows both check-ins and the progress checkins-api gives now
        truth = ann.GetProgress(checkins_pb2.GetProgressRequest(v2mom_id=ann_id))
        export = shown()
        return (export.latest_checkin.checkin_id == latest.id and truth.progress_percent > 0
                and export.progress.progress_percent == pytest.approx(truth.progress_percent)
                and export.progress.tree_progress_percent == pytest.approx(truth.tree_progress_percent))

    try:
        wait_for(caught_up, 60, "the export never showed the check-ins")
    except AssertionError:
        print(shown(), ann.GetProgress(checkins_pb2.GetProgressRequest(v2mom_id=ann_id)), log_tail(running[1]),
              log_tail(running[0]))
        raise
    export = shown()
    items = {c.item_id: c for c in export.item_checkins}
    assert (items["msr-ttv"].checkin_id, items["msr-ttv"].value, items["msr-ttv"].confidence,
            items["msr-ttv"].author_id, items["msr-ttv"].comment) == (first.id, 20.0, 8, "ann", "halfway")
    assert (export.latest_checkin.status, export.latest_checkin.progress_percent) == (
        checkins_pb2.CHECKIN_STATUS_AT_RISK, 40.0)

    # A late, replayed progress_changed (an older revision) does not move the export back.
    stored = db[PROGRESS].find_one({"_id": ann_id})
    CheckinProjection(db).take_progress(progress(ann_id, 1, 0.0))
    assert shown().progress.progress_percent == stored["progress_percent"]
    assert running[0].poll() is None and running[1].poll() is None, log_tail(running[1])
