"""When goals-api cannot be reached.

The choice, as the issue and the proto say: a check-in that needs goals-api
(no stored copy of the V2MOM's structure, or an item the copy lacks) gets
UNAVAILABLE with a clear message and nothing is written. A check-in the
stored copy can answer is taken: that copy is kept current by goals'
v2mom_approved / v2mom_archived events, not by asking goals each time, so
goals being down does not make it any less true. Replays and reads never
need goals.

Who the caller is - their roles, whether they have left - is goals' to say too
(the kernel's RemotePeople, services/platform/api/people.py): while goals is
down its last answer about a person stands; someone it was never asked about
gets UNAVAILABLE, reading or writing, since nobody knows what they may do.
"""

import time
from dataclasses import dataclass, replace

import grpc
import pytest

from services.checkins.api import create_server as create_checkins_server
from services.goals.directory import Directory
from services.goals.api import create_server as create_goals_server
from tests.support.checkins_requests import (
    ADMIN, Code, correct_request, expect_nothing_written, measure_request, method_request,
)
from tests.support.grpc_errors import expect
from tests.support.services import served_in_process
from v2mom.v1 import checkins_pb2, checkins_pb2_grpc


@dataclass
class Outage:
    """A goals-api of the test's own (on the world's database) that the test can stop and start."""

    settings: object
    port: int
    server: object = None

    def start(self):
        self.server, port = create_goals_server(f"127.0.0.1:{self.port}", self.settings)
        self.server.start()
        self.port = port

    def stop(self):
        self.server.stop(grace=None).wait()


@pytest.fixture
def goals(settings, goals_world):
    outage = Outage(settings, 0)
    outage.start()
    yield outage
    outage.stop()


@pytest.fixture
def checkins(goals, checkins_settings):
    """checkins-api pointed at the stoppable goals-api; returns a factory of per-person clients."""
    settings = replace(checkins_settings, goals_addr=f"127.0.0.1:{goals.port}")
    with served_in_process(create_checkins_server, checkins_pb2_grpc.CheckinServiceStub, settings) as client_for:
        yield client_for


def _unavailable(store, call, request):
    error = expect_nothing_written(store, call, request, Code.UNAVAILABLE)
    assert "goals-api is unavailable" in error.details() and "nothing was recorded" in error.details()
    return error


def _known(checkins, v2mom_id, *people):
    """Each of them calls once while goals is up, so checkins-api knows who they are when it goes down."""
    for person in people:
        checkins(person).ListCheckins(checkins_pb2.ListCheckinsRequest(v2mom_id=v2mom_id))


def test_with_nothing_stored_a_checkin_is_unavailable_and_nothing_is_written(goals_world, goals, checkins, store):
    ann = goals_world.ann_v2mom_id
    _known(checkins, ann, "ann", "rob")
    goals.stop()
    started = time.monotonic()
    _unavailable(store, checkins("ann").RecordMeasureCheckin, measure_request(ann, "msr-ttv"))
    assert time.monotonic() - started < 5, "retries must be bounded"
    _unavailable(store, checkins("rob").RecordMethodCheckin, method_request(ann, "mth-guide"))
    assert store.count() == 0 and store.events() == []
    assert store.db.structures.count_documents({}) == 0


def test_a_stored_structure_keeps_taking_checkins_while_goals_is_down(goals_world, goals, checkins, store):
    ann = goals_world.ann_v2mom_id
    first = checkins("ann").RecordMeasureCheckin(measure_request(ann, "msr-ttv", value=20))
    _known(checkins, ann, "rob", "cat")
    goals.stop()

    again = checkins("ann").RecordMeasureCheckin(measure_request(ann, "msr-ttv", value=18))
    method = checkins("rob").RecordMethodCheckin(method_request(ann, "mth-guide", progress=40))
    correction = checkins("ann").CorrectCheckin(correct_request(first.id, value=19))
    assert again.progress_percent == 60 and method.progress_percent == 40 and correction.supersedes_id == first.id
    assert store.count() == 4

    # The stored copy cannot say whether an item it lacks is new in goals: that needs goals.
    _unavailable(store, checkins("ann").RecordMeasureCheckin, measure_request(ann, "msr-brand-new"))
    # Nor can it speak for a V2MOM it never stored.
    _unavailable(store, checkins("rob").RecordMeasureCheckin, measure_request(goals_world.team_v2mom_id, "msr-nps"))
    # Who may check in is still decided from the stored copy.
    expect_nothing_written(store, checkins("cat").RecordMeasureCheckin, measure_request(ann, "msr-ttv"), Code.PERMISSION_DENIED)


def test_replays_and_reads_need_no_goals(goals_world, goals, checkins, store):
    ann = goals_world.ann_v2mom_id
    request = measure_request(ann, "msr-ttv", value=20, idempotency_key="offline-retry")
    first = checkins("ann").RecordMeasureCheckin(request)
    checkins("ada", ADMIN).UpdateCycleSettings(
        checkins_pb2.UpdateCycleSettingsRequest(cycle_id="FY2027", cadence=checkins_pb2.CADENCE_MONTHLY)
    )
    _known(checkins, ann, "cat")
    goals.stop()

    assert checkins("ann").RecordMeasureCheckin(request) == first
    listed = checkins("cat").ListCheckins(checkins_pb2.ListCheckinsRequest(v2mom_id=ann))
    assert [c.id for c in listed.checkins] == [first.id]
    assert checkins("cat").GetCycleSettings(checkins_pb2.GetCycleSettingsRequest(cycle_id="FY2027")).cadence == \
        checkins_pb2.CADENCE_MONTHLY
    assert store.count() == 1


def test_settings_for_a_cycle_goals_must_confirm_are_unavailable(goals_world, goals, checkins, store):
    goals.stop()
    error = expect_nothing_written(
        store, checkins("ada", ADMIN).UpdateCycleSettings,
        checkins_pb2.UpdateCycleSettingsRequest(cycle_id="FY2027", cadence=checkins_pb2.CADENCE_WEEKLY), Code.UNAVAILABLE,
    )
    assert "goals-api is unavailable" in error.details()
    expect(checkins("ann").GetCycleSettings, checkins_pb2.GetCycleSettingsRequest(cycle_id="FY2027"), Code.UNAVAILABLE)


def test_checkins_resume_when_goals_comes_back(goals_world, goals, checkins, store):
    ann = goals_world.ann_v2mom_id
    _known(checkins, ann, "ann")
    goals.stop()
    _unavailable(store, checkins("ann").RecordMeasureCheckin, measure_request(ann, "msr-ttv"))
    goals.start()

    deadline = time.monotonic() + 20  # the channel reconnects on its own backoff schedule
    while True:
        try:
            checkin = checkins("ann").RecordMeasureCheckin(measure_request(ann, "msr-ttv"))
            break
        except grpc.RpcError as error:
            assert error.code() == Code.UNAVAILABLE and time.monotonic() < deadline, error.details()
            time.sleep(0.2)
    assert store.count() == 1 and store.checkin(checkin.id)["v2mom_id"] == ann


def test_while_goals_is_down_its_last_word_on_who_has_left_stands(goals_world, goals, checkins, store, db):
    ann = goals_world.ann_v2mom_id
    checkins("ann").RecordMeasureCheckin(measure_request(ann, "msr-ttv", value=20))
    Directory(db, cache_seconds=0).upsert_person(
        {"_id": "rob", "display_name": "Rob", "org_unit_id": "onboarding", "manager_id": "lee", "active": False}
    )
    expect(checkins("rob").ListCheckins, checkins_pb2.ListCheckinsRequest(v2mom_id=ann), Code.PERMISSION_DENIED)
    goals.stop()

    # A leaver goals named stays out, reading or writing.
    expect(checkins("rob").ListCheckins, checkins_pb2.ListCheckinsRequest(v2mom_id=ann), Code.PERMISSION_DENIED)
    expect_nothing_written(store, checkins("rob").RecordMethodCheckin, method_request(ann, "mth-calls"),
                           Code.PERMISSION_DENIED)
    # A colleague goals named active keeps checking in on the stored structure.
    assert checkins("ann").RecordMeasureCheckin(measure_request(ann, "msr-ttv", value=18)).progress_percent == 60
    # Someone goals was never asked about: nobody knows who they are or what they may do, so nothing is done in
    # their name, not even a read.
    refused = expect(checkins("lee").ListCheckins, checkins_pb2.ListCheckinsRequest(v2mom_id=ann), Code.UNAVAILABLE)
    assert "who you are cannot be checked now" in refused.details()
    expect_nothing_written(store, checkins("lee").RecordMeasureCheckin, measure_request(ann, "msr-ttv"),
                           Code.UNAVAILABLE)
