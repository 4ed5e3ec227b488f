"""Nothing waits on someone who cannot act (services/goals/approver_changes.py): a leaver's pending approvals go
to their nearest active manager, a moved person's own submission to their new manager, each a recorded system
revision with v2mom_approver_changed; a second run moves nothing."""

import pytest

from services.goals import convert
from services.goals.approver_changes import ApproverChanges
from services.goals.directory import Directory
from services.goals.repository import V2MOMRepository
from tests.support.broker import queue_exists
from tests.support.goals import INDIVIDUAL, MANAGER, OWNER, SKIP, TEAMMATE, build_org, valid_content
from tests.support.processes import log_tail, wait_for
from v2mom.v1 import events_pb2, goals_pb2


def follow(env, person_id: str, previous_manager: str = "") -> int:
    person = convert.person_to_proto(env.db.people.find_one({"_id": person_id}))
    change = events_pb2.PersonEventData(person=person, previous_manager_id=previous_manager or person.manager_id)
    return ApproverChanges(V2MOMRepository(env.db), Directory(env.db, 0)).follow(change)


def outbox_types(env, v2mom_id: str) -> list[str]:
    return [event["type"] for event in env.raw(v2mom_id).get("outbox", [])]


def test_a_leavers_approvals_go_to_their_manager_once(isolated_goals):
    submitted = isolated_goals.submitted(owner=OWNER)
    assert submitted.approver_id == MANAGER
    lee = isolated_goals.directory.person(MANAGER)
    isolated_goals.directory.upsert_person({**lee, "active": False})
    assert follow(isolated_goals, MANAGER) == 1
    stored = isolated_goals.raw(submitted.id)
    assert (stored["approver_id"], stored["state"]) == (SKIP, "V2MOM_STATE_SUBMITTED")
    assert stored["latest_revision"]["action"] == "CHANGE_APPROVER" and "left" in stored["latest_revision"]["reason"]
    assert "v2mom_approver_changed" in outbox_types(isolated_goals, submitted.id)
    pending = isolated_goals.client(SKIP).ListPendingApprovals(goals_pb2.ListPendingApprovalsRequest())
    assert submitted.id in [v.id for v in pending.v2moms]
    assert follow(isolated_goals, MANAGER) == 0, "a redelivery moves nothing"


def test_a_new_manager_approves_the_pending_submission(isolated_goals):
    submitted = isolated_goals.submitted(owner=TEAMMATE)
    otto = isolated_goals.directory.person(TEAMMATE)
    isolated_goals.directory.upsert_person({**otto, "manager_id": "mia", "org_unit_id": "mobile"})
    assert follow(isolated_goals, TEAMMATE, previous_manager=MANAGER) == 1
    assert isolated_goals.raw(submitted.id)["approver_id"] == "mia"


# --- goals-worker as a process: its own person_upserted moves the approvals ---------------------------------


@pytest.fixture
def broker_uri(isolated_broker_uri):
    return isolated_broker_uri


def test_goals_worker_moves_a_leavers_approvals(db, goals_api, connection, goals_worker):
    directory = build_org(db)
    olive = goals_api(OWNER)
    created = olive.CreateV2MOM(goals_pb2.CreateV2MOMRequest(level=INDIVIDUAL, owner_id=OWNER, cycle_id="FY2027",
                                                             content=valid_content()))
    olive.SubmitV2MOM(goals_pb2.SubmitV2MOMRequest(id=created.id))
    wait_for(lambda: queue_exists(connection, "evt-goals-person_upserted--goals_worker.on_person_upserted")
             or goals_worker.poll() is not None, 30, "goals-worker never declared its queue")
    assert goals_worker.poll() is None, log_tail(goals_worker)
    directory.upsert_person({**directory.person(MANAGER), "active": False})
    wait_for(lambda: db.v2moms.find_one({"_id": created.id})["approver_id"] == SKIP, 30,
             "the leaver's approval never moved")
    assert goals_worker.poll() is None, log_tail(goals_worker)


def test_a_leavers_drafts_are_archived_as_left_and_the_published_ones_stay(isolated_goals):
    published = isolated_goals.published(owner=OWNER)
    draft = isolated_goals.create(owner=OWNER, cycle_id=isolated_goals.new_cycle("2028-02-01", "2029-01-31"))
    olive = isolated_goals.directory.person(OWNER)
    isolated_goals.directory.upsert_person({**olive, "active": False})
    follow(isolated_goals, OWNER)
    archived = isolated_goals.raw(draft.id)
    assert archived["state"] == "V2MOM_STATE_ARCHIVED" and archived["latest_revision"]["reason"] == "left"
    assert "slot" not in archived and "v2mom_archived" in outbox_types(isolated_goals, draft.id)
    assert isolated_goals.raw(published.id)["state"] == "V2MOM_STATE_PUBLISHED"
