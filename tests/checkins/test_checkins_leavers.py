"""People who left lose check-ins access even while their token is still valid, as in goals-api.

checkins-api asks goals-api (GetPerson, with its service token) whether the
caller is active, and trusts the answer for GoalsClient.PERSON_SECONDS.
These tests shorten that window so they need not wait 30 seconds.
"""

import time

import pytest

from services.checkins import goals_client
from services.checkins.api import create_server
from services.goals.directory import Directory
from tests.support.checkins_requests import (
    ADMIN, Code, correct_request, expect_nothing_written, measure_request, method_request,
)
from tests.support.grpc_errors import expect
from tests.support.services import served_in_process
from v2mom.v1 import checkins_pb2, checkins_pb2_grpc


def serve(settings):
    return served_in_process(create_server, checkins_pb2_grpc.CheckinServiceStub, settings)


@pytest.fixture
def api_asking_every_time(monkeypatch, goals_world, checkins_settings):
    monkeypatch.setattr(goals_client, "PERSON_SECONDS", 0.0)
    with serve(checkins_settings) as client_for:
        yield client_for


def leaves(db, person_id: str, unit: str, manager: str, roles=()) -> None:
    """HR marks the person inactive in goals' directory."""
    Directory(db, cache_seconds=0).upsert_person({
        "_id": person_id, "display_name": person_id.title(), "org_unit_id": unit, "manager_id": manager,
        "roles": list(roles), "active": False,
    })


def every_rpc(v2mom_id: str, checkin_id: str) -> list[tuple[str, object]]:
    return [
        ("RecordMeasureCheckin", measure_request(v2mom_id, "msr-nps")),
        ("RecordMethodCheckin", method_request(v2mom_id, "mth-guide")),
        ("CorrectCheckin", correct_request(checkin_id, value=45)),
        ("ListCheckins", checkins_pb2.ListCheckinsRequest(v2mom_id=v2mom_id)),
        ("GetProgress", checkins_pb2.GetProgressRequest(v2mom_id=v2mom_id, include_tree=True)),
        ("GetProgressHistory", checkins_pb2.GetProgressHistoryRequest(v2mom_id=v2mom_id)),
        ("ListStaleItems", checkins_pb2.ListStaleItemsRequest(owner_id="ada")),
        ("GetCycleSettings", checkins_pb2.GetCycleSettingsRequest(cycle_id="FY2027")),
        ("UpdateCycleSettings",
         checkins_pb2.UpdateCycleSettingsRequest(cycle_id="FY2027", cadence=checkins_pb2.CADENCE_WEEKLY)),
    ]


def test_a_leaver_is_refused_on_every_rpc_and_nothing_is_written(goals_world, db, api_asking_every_time, store):
    api, ann = api_asking_every_time, goals_world.ann_v2mom_id
    # ada is an admin: before she leaves, every one of these calls is hers to make.
    ada = api("ada", ADMIN)
    checkin = ada.RecordMeasureCheckin(measure_request(ann, "msr-nps"))
    for rpc, request in every_rpc(ann, checkin.id):
        getattr(ada, rpc)(request)

    leaves(db, "ada", "acme", "ceo", roles=["admin"])
    for rpc, request in every_rpc(ann, checkin.id):
        error = expect_nothing_written(store, getattr(ada, rpc), request, Code.PERMISSION_DENIED)
        assert error.details() == "ada is no longer active in the directory", rpc

    # Colleagues, and services (which act for no person), are unaffected.
    assert api("ann").RecordMeasureCheckin(measure_request(ann, "msr-ttv")).author_id == "ann"
    listed = api("svc:metrics", ("service",)).ListCheckins(
        checkins_pb2.ListCheckinsRequest(author_id="ada", include_superseded=True))
    assert checkin.id in {c.id for c in listed.checkins}


def test_someone_goals_does_not_know_is_refused_as_a_stranger_not_as_a_leaver(goals_world, api_asking_every_time):
    # Roles come from goals' directory, so someone it does not know has none to act with: refused outright.
    ghost = api_asking_every_time("ghost")
    for call, request in ((ghost.GetCycleSettings, checkins_pb2.GetCycleSettingsRequest(cycle_id="FY2027")),
                          (ghost.RecordMeasureCheckin, measure_request(goals_world.ann_v2mom_id, "msr-nps"))):
        refused = expect(call, request, Code.UNAUTHENTICATED)
        assert "'ghost' is not a person in the org directory" in refused.details()


def test_goals_answer_is_trusted_for_the_cache_window_then_asked_again(monkeypatch, goals_world, db, checkins_settings):
    monkeypatch.setattr(goals_client, "PERSON_SECONDS", 1.0)
    ann = goals_world.ann_v2mom_id
    with serve(checkins_settings) as api:
        rob = api("rob")
        rob.RecordMethodCheckin(method_request(ann, "mth-calls", progress=10))
        leaves(db, "rob", "onboarding", "lee")
        # Inside the window the earlier answer stands: this is the documented delay.
        rob.RecordMethodCheckin(method_request(ann, "mth-calls", progress=20))
        time.sleep(1.2)
        error = expect(rob.RecordMethodCheckin, method_request(ann, "mth-calls", progress=30), Code.PERMISSION_DENIED)
        assert "no longer active" in error.details()
