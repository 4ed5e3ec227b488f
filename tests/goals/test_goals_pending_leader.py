"""An org unit's leader named before they are hired is kept pending (``pending_leader``) and resolved when the
person arrives by any path (services/goals/directory_sync.py, directory_import.py), as pending managers and
parents are; ImportDirectory keeps an unknown parent pending too, instead of refusing the row. Over gRPC against
a served goals-api, with its /metrics over HTTP; HRIS events through the real broker into the real goals-worker;
SCIM over real HTTP."""

import urllib.request
import uuid
from datetime import UTC, datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.goals.api import create_server
from services.goals.directory import Directory
from services.goals.directory_sync import DirectorySync
from services.platform.api.auth import bearer_metadata, mint_dev_token
from services.platform.bus.events import to_wire
from tests.support.broker import queue_exists
from tests.support.directory import directory_caller, hire
from tests.support.goals import ADMIN, build_org, start_env, stop_env
from tests.support.hris import publish
from tests.support.processes import log_tail, wait_for
from tests.support.scim import scim_goals
from tests.support.services import served
from v2mom.v1 import common_pb2, directory_pb2, goals_pb2

D = directory_pb2
GAUGES = ("v2mom_goals_people_pending_manager", "v2mom_goals_org_units_pending_parent",
          "v2mom_goals_org_units_pending_leader")


@pytest.fixture
def served_goals(mongo_uri):
    """A goals-api on a database of its own (the test org), its HTTP side (/metrics) on a free port."""
    env = start_env(mongo_uri)
    try:
        with served(create_server, env.settings, None, "127.0.0.1:0") as (server, _):
            env.metrics_url = f"http://127.0.0.1:{server.http.port}/metrics"
            yield env
    finally:
        stop_env(env)


def gauges(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    return {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples
            if s.name in GAUGES}


def unit_change(external_id: str, parent: str = "acme", leader: str = "", level=common_pb2.ORG_LEVEL_TEAM):
    return D.OrgUnitChange(external_id=external_id, name=f"Unit {external_id}", level=level, parent_ref=parent,
                           leader_ref=leader)


def unit_events(db, unit_id: str) -> list[dict]:
    return [to_wire(event)["data"]["orgUnit"] for event in db.org_units.find_one({"_id": unit_id}).get("outbox", [])
            if event["type"] == "org_unit_upserted"]


def test_a_leader_named_before_the_hire_is_pending_gauged_and_resolved_by_upsert_person(served_goals):
    env, key = served_goals, uuid.uuid4().hex[:6]
    hr = directory_caller(env, ADMIN, timeout=30)
    lab, boss, dept = f"lab-{key}", f"L{key}", f"dept-{key}"
    answer = hr("UpsertOrgUnit", D.UpsertOrgUnitRequest(org_unit=unit_change(lab, parent=dept, leader=boss)))
    assert answer.outcome == D.CHANGE_OUTCOME_CREATED
    assert (answer.org_unit.leader_id, answer.org_unit.pending_leader_external_id) == ("", boss)
    assert answer.org_unit.pending_parent_external_id == dept
    assert gauges(env.metrics_url) == dict.fromkeys(GAUGES[1:], 1) | {GAUGES[0]: 0}

    hr("UpsertOrgUnit", D.UpsertOrgUnitRequest(org_unit=unit_change(dept, level=common_pb2.ORG_LEVEL_DEPARTMENT)))
    hired = hr("UpsertPerson", D.UpsertPersonRequest(person=hire(boss, manager="lee", unit=lab)))
    assert hired.outcome == D.CHANGE_OUTCOME_CREATED
    stored = env.db.org_units.find_one({"_id": lab})
    assert (stored["leader_id"], stored["pending_leader"], stored["parent_id"]) == (f"p-{boss}", None, dept)
    seen = env.stub.GetOrgUnit(goals_pb2.GetOrgUnitRequest(id=lab),
                               metadata=bearer_metadata(mint_dev_token(env.settings.auth, ADMIN)))
    assert (seen.leader_id, seen.pending_leader_external_id) == (f"p-{boss}", "")
    # Each step published: created with both pending, then placed under its parent, then led.
    published = unit_events(env.db, lab)
    assert [(e["parentId"], e["pendingParentExternalId"], e["leaderId"], e["pendingLeaderExternalId"])
            for e in published] == [("", dept, "", boss), (dept, "", "", boss), (dept, "", f"p-{boss}", "")]
    # A resolved reference is kept as null: the gauges count what still waits, not what once did.
    assert gauges(env.metrics_url) == dict.fromkeys(GAUGES, 0)


def test_import_keeps_an_unknown_parent_and_leader_pending_and_resolves_them_in_any_row_order(served_goals):
    env, key = served_goals, uuid.uuid4().hex[:6]
    hr = directory_caller(env, ADMIN, timeout=60)
    team, dept, stray, later, head = f"team-{key}", f"dept-{key}", f"stray-{key}", f"later-{key}", f"H{key}"
    units = [unit_change(team, parent=dept),  # the child before its parent
             unit_change(stray, parent=later, leader=f"X{key}"),  # neither known: both pending
             unit_change(dept, leader=head, level=common_pb2.ORG_LEVEL_DEPARTMENT)]
    people = [hire(f"M{key}", manager=head, unit=team), hire(head, manager="lee", unit=dept)]
    dry = hr("ImportDirectory", D.ImportDirectoryRequest(org_units=units, people=people, dry_run=True))
    assert not dry.refused and not dry.applied and len(dry.created) == 5
    answer = hr("ImportDirectory", D.ImportDirectoryRequest(org_units=units, people=people))
    assert answer.applied and not answer.refused and len(answer.created) == 5
    stored = {unit["_id"]: unit for unit in env.db.org_units.find({"_id": {"$in": [team, dept, stray]}})}
    assert (stored[team]["parent_id"], stored[team].get("pending_parent")) == (dept, None)
    assert (stored[dept]["leader_id"], stored[dept]["pending_leader"]) == (f"p-{head}", None)
    assert unit_events(env.db, dept)[-1]["leaderId"] == f"p-{head}"
    assert (stored[stray]["parent_id"], stored[stray]["pending_parent"]) == ("", later)
    assert (stored[stray]["leader_id"], stored[stray]["pending_leader"]) == ("", f"X{key}")
    assert gauges(env.metrics_url)["v2mom_goals_org_units_pending_leader"] == 1

    # A later import brings the parent and the leader; the import again is idempotent.
    again = [unit_change(later, level=common_pb2.ORG_LEVEL_DEPARTMENT)]
    hr("ImportDirectory", D.ImportDirectoryRequest(org_units=again, people=[hire(f"X{key}", manager="lee")]))
    placed = env.db.org_units.find_one({"_id": stray})
    assert (placed["parent_id"], placed["pending_parent"], placed["leader_id"], placed["pending_leader"]) == (
        later, None, f"p-X{key}", None)
    assert gauges(env.metrics_url) == dict.fromkeys(GAUGES, 0)
    repeat = hr("ImportDirectory", D.ImportDirectoryRequest(org_units=units, people=people))
    assert repeat.applied and not repeat.created and not repeat.changed and not repeat.moved

    # A loop is still refused, pending references counted.
    loop = hr("ImportDirectory", D.ImportDirectoryRequest(org_units=[unit_change(f"a-{key}", parent=f"b-{key}"),
                                                                     unit_change(f"b-{key}", parent=f"a-{key}")]))
    assert not loop.applied and {row.reason for row in loop.refused} == {"org unit cycle"}


# --- HRIS events on the real broker, SCIM over real HTTP ----------------------------------------------------------


@pytest.fixture
def broker_uri(isolated_broker_uri):
    return isolated_broker_uri


UNIT_QUEUE = "evt-hris-org_unit.upserted--goals_worker.on_org_unit_upserted"
HIRED_QUEUE = "evt-hris-employee.hired--goals_worker.on_employee_hired"


def hris_event(kind: str, data: dict) -> dict:
    return {"specversion": "1.0", "id": f"hris-{uuid.uuid4().hex}", "source": "/v2mom/hris", "type": kind,
            "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"), "datacontenttype": "application/json",
            "data": data}


def test_an_hris_unit_waits_for_its_leaders_hire_on_the_real_worker(db, connection, goals_worker):
    build_org(db)
    wait_for(lambda: all(queue_exists(connection, q) for q in (UNIT_QUEUE, HIRED_QUEUE))
             or goals_worker.poll() is not None, 30, "goals-worker never declared its HRIS queues")
    assert goals_worker.poll() is None, log_tail(goals_worker)
    publish(connection, hris_event("org_unit.upserted", {"externalId": "robotics", "name": "Robotics",
                                                         "level": "ORG_LEVEL_TEAM", "parentRef": "eng",
                                                         "leaderRef": "E900"}))
    wait_for(lambda: (db.org_units.find_one({"_id": "robotics"}) or {}).get("pending_leader") == "E900", 30,
             "the unit was not kept with its leader pending")
    publish(connection, hris_event("employee.hired", {
        "externalId": "E900", "id": "rosa", "displayName": "Rosa Robot", "email": "rosa@acme.test",
        "orgUnitRef": "robotics", "managerRef": "dana", "timeZone": "Europe/Paris"}))
    wait_for(lambda: (db.org_units.find_one({"_id": "robotics"}) or {}).get("leader_id") == "rosa", 30,
             "the hire never became the unit's leader")
    assert db.org_units.find_one({"_id": "robotics"})["pending_leader"] is None
    assert goals_worker.poll() is None, log_tail(goals_worker)


def test_a_scim_created_user_resolves_the_unit_waiting_for_them(mongo_uri):
    with scim_goals(mongo_uri) as env:
        sync = DirectorySync(Directory(env.db, 0))
        sync.upsert_org_unit({"kind": "unit", "external_id": "design", "id": "design", "effective_at": datetime.now(UTC),
                              "fields": {"name": "Design", "level": "ORG_LEVEL_TEAM", "parent_ref": "eng",
                                         "leader_ref": "EMP-77"}})
        assert env.db.org_units.find_one({"_id": "design"})["pending_leader"] == "EMP-77"
        created = env.create(user_name="dora@acme.test", displayName="Dora Design",
                             emails=[{"value": "dora@acme.test", "primary": True}],
                             **{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":
                                {"employeeNumber": "EMP-77", "department": "design"}})
        unit = env.db.org_units.find_one({"_id": "design"})
        assert (unit["leader_id"], unit["pending_leader"]) == (created["id"], None)
