"""An org unit may arrive before its parent (services/goals/directory_sync.py): it is stored with the parent
reference pending and placed under the parent when that arrives, as pending managers are for people; a parent
that would put a unit inside itself is refused. Through DirectorySync, DirectoryService and HRIS events on the
real broker into the real goals-worker."""

import json
import uuid
from datetime import UTC, datetime

import grpc
import kombu
import pytest

from services.goals.directory import Directory
from services.goals.directory_sync import DirectorySync
from services.goals.hris import REJECTED
from services.platform.api.auth import bearer_metadata, mint_dev_token
from services.platform.core.errors import FailedPrecondition
from tests.support.broker import queue_exists
from tests.support.hris import publish
from tests.support.goals import ADMIN, build_org
from tests.support.processes import log_tail, wait_for
from v2mom.v1 import common_pb2, directory_pb2, directory_pb2_grpc

D = directory_pb2


def unit(external_id: str, parent: str, level: str = "ORG_LEVEL_TEAM", **fields) -> dict:
    return {"kind": "unit", "external_id": external_id, "id": external_id, "effective_at": datetime.now(UTC),
            "fields": {"name": f"Unit {external_id}", "level": level, "parent_ref": parent, "leader_ref": "",
                       **fields}}


def org_unit_events(db, unit_id: str) -> list[dict]:
    return [event for event in db.org_units.find_one({"_id": unit_id}).get("outbox", [])
            if event["type"] == "org_unit_upserted"]


def test_a_unit_waits_for_its_parent_and_moves_under_it_when_it_arrives(isolated_goals):
    sync = DirectorySync(Directory(isolated_goals.db, 0))
    key = uuid.uuid4().hex[:6]
    early = unit(f"team-{key}", f"dept-{key}")
    outcome, team = sync.upsert_org_unit(early)
    assert outcome == "CREATED" and (team["parent_id"], team["pending_parent"]) == ("", f"dept-{key}")
    outcome, _ = sync.upsert_org_unit(unit(f"dept-{key}", "acme", level="ORG_LEVEL_DEPARTMENT"))
    assert outcome == "CREATED"
    placed = isolated_goals.db.org_units.find_one({"_id": f"team-{key}"})
    assert (placed["parent_id"], placed["pending_parent"], placed["revision"]) == (f"dept-{key}", None, 2)
    assert len(org_unit_events(isolated_goals.db, f"team-{key}")) == 2  # consumers learn where it now sits
    # Repeating the feed changes nothing; a later restatement keeps the unit where it now sits.
    assert sync.upsert_org_unit(early)[0] == "UNCHANGED"
    assert sync.upsert_org_unit(unit(f"team-{key}", f"dept-{key}"))[1]["parent_id"] == f"dept-{key}"


def test_a_parent_cycle_is_refused_even_through_a_pending_parent(isolated_goals):
    sync = DirectorySync(Directory(isolated_goals.db, 0))
    key = uuid.uuid4().hex[:6]
    sync.upsert_org_unit(unit(f"a-{key}", f"b-{key}"))  # b not known yet: pending
    with pytest.raises(FailedPrecondition, match="inside itself"):
        sync.upsert_org_unit(unit(f"b-{key}", f"a-{key}"))
    assert isolated_goals.db.org_units.count_documents({"_id": f"b-{key}"}) == 0
    with pytest.raises(FailedPrecondition, match="inside itself"):
        sync.upsert_org_unit(unit(f"c-{key}", f"c-{key}"))


def test_upsert_org_unit_takes_a_child_before_its_parent(isolated_goals):
    stub = directory_pb2_grpc.DirectoryServiceStub(isolated_goals.channel)
    metadata = bearer_metadata(mint_dev_token(isolated_goals.settings.auth, ADMIN))
    change = D.OrgUnitChange(external_id="qa-team", name="QA", level=common_pb2.ORG_LEVEL_TEAM, parent_ref="qa")
    answer = stub.UpsertOrgUnit(D.UpsertOrgUnitRequest(org_unit=change), metadata=metadata)
    assert answer.outcome == D.CHANGE_OUTCOME_CREATED and answer.org_unit.parent_id == ""
    stub.UpsertOrgUnit(D.UpsertOrgUnitRequest(org_unit=D.OrgUnitChange(
        external_id="qa", name="Quality", level=common_pb2.ORG_LEVEL_DEPARTMENT, parent_ref="acme")), metadata=metadata)
    assert isolated_goals.directory.org_unit("qa-team")["parent_id"] == "qa"
    with pytest.raises(grpc.RpcError) as refused:
        stub.UpsertOrgUnit(D.UpsertOrgUnitRequest(org_unit=D.OrgUnitChange(
            external_id="qa", name="Quality", level=common_pb2.ORG_LEVEL_DEPARTMENT, parent_ref="qa-team")),
            metadata=metadata)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "inside itself" in refused.value.details()


# --- HRIS events on the real broker ------------------------------------------------------------------------------


@pytest.fixture
def broker_uri(isolated_broker_uri):
    return isolated_broker_uri


QUEUE = "evt-hris-org_unit.upserted--goals_worker.on_org_unit_upserted"


def hris_unit(external_id: str, parent: str, level: str = "ORG_LEVEL_TEAM") -> dict:
    return {"specversion": "1.0", "id": f"hris-{uuid.uuid4().hex}", "source": "/v2mom/hris",
            "type": "org_unit.upserted", "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "datacontenttype": "application/json",
            "data": {"externalId": external_id, "name": f"Unit {external_id}", "level": level, "parentRef": parent}}


def test_hris_units_before_their_parent_are_kept_pending_and_a_cycle_is_dead_lettered(db, connection, goals_worker):
    build_org(db)
    wait_for(lambda: queue_exists(connection, QUEUE) or goals_worker.poll() is not None, 30,
             "goals-worker never declared its HRIS queue")
    assert goals_worker.poll() is None, log_tail(goals_worker)
    publish(connection, hris_unit("robotics-arms", "robotics"))  # the team first, its department after
    wait_for(lambda: db.org_units.find_one({"_id": "robotics-arms"}), 30, "the early team was not kept")
    publish(connection, hris_unit("robotics", "acme", level="ORG_LEVEL_DEPARTMENT"))
    wait_for(lambda: (db.org_units.find_one({"_id": "robotics-arms"}) or {}).get("parent_id") == "robotics", 30,
             "the team never moved under its department")
    loop = hris_unit("robotics", "robotics-arms", level="ORG_LEVEL_DEPARTMENT")
    publish(connection, loop)
    dlq = kombu.Queue(QUEUE + ".dlq")(connection.channel())
    dead = json.loads(wait_for(lambda: dlq.get(no_ack=True), 30, "the cycle was not dead-lettered").body)
    assert dead["id"] == loop["id"] and "inside itself" in db[REJECTED].find_one({"_id": loop["id"]})["reason"]
    assert db.org_units.find_one({"_id": "robotics"})["parent_id"] == "acme"
    assert goals_worker.poll() is None, log_tail(goals_worker)
