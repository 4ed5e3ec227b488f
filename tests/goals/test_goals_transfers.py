"""What someone leaves behind finds a new holder (services/goals/handover.py, transfers.py): the items a leaver
held in others' V2MOMs pass to each V2MOM's owner with no re-approval, TransferV2MOM moves a V2MOM to a
successor, and a unit's V2MOMs follow its new leader. Each is a recorded revision with its event; repeats change
nothing."""

import json

import grpc
import pytest

from services.goals import convert
from services.goals.approver_changes import ApproverChanges
from services.goals.directory import Directory
from services.goals.repository import V2MOMRepository
from services.platform.api.auth import bearer_metadata, mint_dev_token
from services.platform.bus.events import to_wire
from tests.support.catalogue import validate_event
from tests.support.broker import queue_exists
from tests.support.goals import (ADMIN, MANAGER, OTHER_LEAD, OWNER, PEER, SKIP, TEAM, TEAMMATE, build_org,
                                 valid_content)
from tests.support.processes import log_tail, wait_for
from v2mom.v1 import directory_pb2, directory_pb2_grpc, events_pb2, goals_pb2

D = directory_pb2


def leaves(env, person_id: str) -> int:
    """The person leaves, and goals-worker's person_upserted handler runs (in process here)."""
    env.directory.upsert_person({**env.directory.person(person_id), "active": False})
    person = convert.person_to_proto(env.db.people.find_one({"_id": person_id}))
    change = events_pb2.PersonEventData(person=person, previous_manager_id=person.manager_id)
    return ApproverChanges(V2MOMRepository(env.db), Directory(env.db, 0)).follow(change)


def unit_changed(env, unit_id: str) -> int:
    """goals-worker's handler of its own org_unit_upserted, in process."""
    unit = convert.org_unit_to_proto(env.db.org_units.find_one({"_id": unit_id}))
    return ApproverChanges(V2MOMRepository(env.db), Directory(env.db, 0)).follow_unit(
        events_pb2.OrgUnitEventData(org_unit=unit))


def outbox(env, v2mom_id: str, event_type: str) -> list[dict]:
    """The V2MOM's events of that type as the relay sends them (validated against the catalogue)."""
    found = [to_wire(event) for event in env.raw(v2mom_id).get("outbox", []) if event["type"] == event_type]
    for event in found:
        validate_event(json.loads(json.dumps(event)))
    return found


def transfer(env, caller: str, **fields):
    stub = directory_pb2_grpc.DirectoryServiceStub(env.channel)
    metadata = bearer_metadata(mint_dev_token(env.settings.auth, caller))
    return stub.TransferV2MOM(D.TransferV2MOMRequest(**fields), metadata=metadata, timeout=15)


def refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as error:
        call()
    return error.value


def team_content_held_by(person_id: str) -> goals_pb2.V2MOMContent:
    """Lee's team V2MOM in which ``person_id`` owns a method, is the Accountable of another, owns a measure and
    the obstacle."""
    content = valid_content(MANAGER, title="Platform FY2027")
    content.methods[0].owner_id = person_id
    content.methods[1].accountable_id = person_id
    content.measures[0].owner_id = person_id
    content.obstacles[0].owner_id = person_id
    return content


HELD_PATHS = {"content.methods[mth-0].owner_id", "content.methods[mth-1].accountable_id",
              "content.measures[msr-1].owner_id", "content.obstacles[obs-1].owner_id"}


def holders(content: dict) -> set:
    return ({m["owner_id"] for m in content["methods"]} | {m["accountable_id"] for m in content["methods"]}
            | {m["owner_id"] for m in content["measures"]} | {o["owner_id"] for o in content["obstacles"]})


# --- a leaver's items ------------------------------------------------------------------------------------


def test_a_leavers_items_in_others_v2moms_pass_to_their_owners_with_no_reapproval(isolated_goals):
    env = isolated_goals
    team = env.published(approver=SKIP, owner=MANAGER, level=TEAM, org_unit_id="platform",
                         content=team_content_held_by(OWNER))
    draft = env.edit(team, title="Platform FY2027, re-planned", reason="Q3 re-plan")  # a draft is open over it
    own = env.published(owner=OWNER)
    before = env.raw(team.id)

    assert leaves(env, OWNER) >= 1
    after = env.raw(team.id)
    assert OWNER not in holders(after["published"]["content"]) | holders(after["content"])
    assert MANAGER in holders(after["published"]["content"])
    assert after["content"]["title"] == "Platform FY2027, re-planned", "the draft keeps its own edits"
    # In place: no new approval, the state and the published revision stay.
    assert (after["state"], after["published_revision"]) == (before["state"], before["published_revision"])
    assert after["revision"] == draft.revision + 1
    entry = after["latest_revision"]
    assert (entry["action"], entry["actor_id"]) == ("REASSIGN_ITEMS", "system")
    assert entry["reason"].startswith("owner left") and set(entry["changed_paths"]) == HELD_PATHS
    [event] = outbox(env, team.id, "v2mom_items_reassigned")
    data = event["data"]
    assert data["content"]["methods"][0]["ownerId"] == MANAGER and data["publishTime"]
    assert data["content"]["title"] == "Platform FY2027", "the event carries the published version"
    # Everyone reads the new holders at once; the leaver's own V2MOM is not handed over item by item.
    shown = env.client(PEER).GetV2MOM(goals_pb2.GetV2MOMRequest(id=team.id))
    assert shown.content.methods[0].owner_id == MANAGER and shown.content.obstacles[0].owner_id == MANAGER
    assert env.raw(own.id)["content"]["methods"][0]["owner_id"] == OWNER
    revisions = env.client(MANAGER).ListRevisions(goals_pb2.ListRevisionsRequest(v2mom_id=team.id)).revisions
    assert revisions[-1].reason.startswith("owner left")
    assert leaves(env, OWNER) == 0, "a redelivery hands over nothing"
    assert len(outbox(env, team.id, "v2mom_items_reassigned")) == 1


def test_a_leavers_items_in_a_submitted_or_never_published_v2mom_change_in_the_working_copy(isolated_goals):
    env = isolated_goals
    content = team_content_held_by(TEAMMATE)
    submitted = env.submitted(owner=MANAGER, level=TEAM, org_unit_id="platform", content=content)
    leaves(env, TEAMMATE)
    after = env.raw(submitted.id)
    assert after["state"] == "V2MOM_STATE_SUBMITTED" and after.get("published") is None
    assert TEAMMATE not in holders(after["content"])
    [event] = outbox(env, submitted.id, "v2mom_items_reassigned")
    assert "publishTime" not in event["data"] and event["data"]["content"]["obstacles"][0]["ownerId"] == MANAGER


def test_the_leavers_own_drafts_are_archived_as_left(isolated_goals):
    draft = isolated_goals.create(owner=TEAMMATE)
    leaves(isolated_goals, TEAMMATE)
    archived = isolated_goals.raw(draft.id)
    assert archived["state"] == "V2MOM_STATE_ARCHIVED" and archived["latest_revision"]["reason"] == "left"


# --- TransferV2MOM ---------------------------------------------------------------------------------------


def test_a_former_manager_transfers_a_leavers_v2mom_to_a_successor(isolated_goals):
    env = isolated_goals
    v2mom = env.published(owner=OWNER)
    leaves(env, OWNER)
    [orphan] = [o for o in transfer_orphans(env) if o.v2mom_id == v2mom.id]
    assert (orphan.kind, orphan.successor_id) == (D.Orphan.KIND_OWNER_GONE, MANAGER)

    answer = transfer(env, MANAGER, v2mom_id=v2mom.id, successor_id=TEAMMATE, reason="Otto carries on Olive's work")
    assert answer.transferred and answer.v2mom.owner_id == TEAMMATE
    stored = env.raw(v2mom.id)
    assert (stored["owner_id"], stored["org_unit_id"], stored["state"]) == (TEAMMATE, "platform", "V2MOM_STATE_PUBLISHED")
    assert stored["slot"].endswith(f"/{TEAMMATE}")
    entry = stored["latest_revision"]
    assert (entry["action"], entry["actor_id"], entry["reason"]) == ("TRANSFER", MANAGER, "Otto carries on Olive's work")
    assert entry["changed_paths"][0] == "owner_id"
    # What the leaver held in it passes with it.
    assert holders(stored["content"]) == {TEAMMATE} and holders(stored["published"]["content"]) == {TEAMMATE}
    [event] = outbox(env, v2mom.id, "v2mom_transferred")
    assert (event["data"]["ownerId"], event["data"]["previousOwnerId"]) == (TEAMMATE, OWNER)
    assert v2mom.id not in [o.v2mom_id for o in transfer_orphans(env)]
    again = transfer(env, MANAGER, v2mom_id=v2mom.id, successor_id=TEAMMATE)
    assert not again.transferred and len(outbox(env, v2mom.id, "v2mom_transferred")) == 1
    # Otto's now: he edits it, and his manager approves it.
    assert env.edit(v2mom, as_person=TEAMMATE, title="Otto FY2027", reason="mine now").owner_id == TEAMMATE


def test_a_transferred_submission_waits_on_the_successors_manager(isolated_goals):
    env = isolated_goals
    submitted = env.submitted(owner=OWNER)
    with env.roles(SKIP, ["hr"]):
        answer = transfer(env, SKIP, v2mom_id=submitted.id, successor_id="pete")
    stored = env.raw(submitted.id)
    assert answer.transferred and (stored["owner_id"], stored["org_unit_id"]) == ("pete", "mobile")
    assert (stored["state"], stored["approver_id"]) == ("V2MOM_STATE_SUBMITTED", OTHER_LEAD)
    assert "approver_id" in stored["latest_revision"]["changed_paths"]
    # notify stops lee's reminders and asks mia, as when an approver leaves.
    [changed] = outbox(env, submitted.id, "v2mom_approver_changed")
    assert (changed["data"]["approverId"], changed["data"]["revision"]) == (OTHER_LEAD, str(stored["revision"]))


def test_transfer_refuses_bad_requests_with_specific_errors(isolated_goals):
    env = isolated_goals
    v2mom = env.published(owner=OWNER)
    team = env.published(approver=SKIP, owner=MANAGER, level=TEAM, org_unit_id="platform")
    env.published(owner=TEAMMATE)  # Otto already has one in FY2027

    cases = [
        (dict(v2mom_id="v2m_nope", successor_id=TEAMMATE), ADMIN, grpc.StatusCode.NOT_FOUND, "not found"),
        (dict(v2mom_id="bad id!", successor_id=TEAMMATE), ADMIN, grpc.StatusCode.INVALID_ARGUMENT, "v2mom_id"),
        (dict(v2mom_id=v2mom.id), ADMIN, grpc.StatusCode.INVALID_ARGUMENT, "successor_id"),
        (dict(v2mom_id=v2mom.id, successor_id="nobody"), ADMIN, grpc.StatusCode.INVALID_ARGUMENT, "unknown person"),
        (dict(v2mom_id=v2mom.id, successor_id="pete"), PEER, grpc.StatusCode.PERMISSION_DENIED, "managers"),
        (dict(v2mom_id=v2mom.id, successor_id="pete"), OWNER, grpc.StatusCode.PERMISSION_DENIED, "managers"),
        (dict(v2mom_id=v2mom.id, successor_id=TEAMMATE), ADMIN, grpc.StatusCode.ALREADY_EXISTS, "already has"),
        (dict(v2mom_id=team.id, successor_id=TEAMMATE), ADMIN, grpc.StatusCode.FAILED_PRECONDITION, "leader"),
        (dict(v2mom_id=v2mom.id, successor_id="pete", expected_revision=1), ADMIN, grpc.StatusCode.ABORTED,
         "revision"),
        (dict(v2mom_id=v2mom.id, successor_id="pete", reason="x" * 1001), ADMIN, grpc.StatusCode.INVALID_ARGUMENT,
         "reason"),
    ]
    for fields, caller, code, words in cases:
        error = refused(lambda: transfer(env, caller, **fields))
        assert (error.code(), words in error.details()) == (code, True), (fields, caller, error.details())

    env.directory.upsert_person({**env.directory.person("pete"), "active": False})
    error = refused(lambda: transfer(env, ADMIN, v2mom_id=v2mom.id, successor_id="pete"))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "has left" in error.details()
    env.client(OWNER).ArchiveV2MOM(goals_pb2.ArchiveV2MOMRequest(id=v2mom.id, reason="done"))
    error = refused(lambda: transfer(env, ADMIN, v2mom_id=v2mom.id, successor_id=SKIP))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "archived" in error.details()
    assert env.raw(v2mom.id)["owner_id"] == OWNER


# --- a unit's new leader -----------------------------------------------------------------------------------


def test_a_units_v2mom_follows_its_new_leader_through_the_same_transfer(isolated_goals):
    env = isolated_goals
    team = env.published(approver=SKIP, owner=MANAGER, level=TEAM, org_unit_id="platform")
    individual = env.published(owner=OWNER)
    unit = env.directory.org_unit("platform")
    env.directory.upsert_org_unit({**unit, "leader_id": TEAMMATE})

    assert unit_changed(env, "platform") == 1
    stored = env.raw(team.id)
    assert (stored["owner_id"], stored["org_unit_id"], stored["state"]) == (TEAMMATE, "platform", "V2MOM_STATE_PUBLISHED")
    entry = stored["latest_revision"]
    assert (entry["action"], entry["actor_id"]) == ("TRANSFER", "system") and entry["reason"].startswith("leader changed")
    assert outbox(env, team.id, "v2mom_transferred")[0]["data"]["previousOwnerId"] == MANAGER
    assert env.raw(individual.id)["owner_id"] == OWNER, "people's own V2MOMs stay theirs"
    assert unit_changed(env, "platform") == 0, "a redelivery moves nothing"
    # A leader who left takes nothing over.
    env.directory.upsert_person({**env.directory.person(PEER), "active": False})
    env.directory.upsert_org_unit({**env.directory.org_unit("platform"), "leader_id": PEER})
    assert unit_changed(env, "platform") == 0 and env.raw(team.id)["owner_id"] == TEAMMATE


def transfer_orphans(env) -> list:
    stub = directory_pb2_grpc.DirectoryServiceStub(env.channel)
    metadata = bearer_metadata(mint_dev_token(env.settings.auth, ADMIN))
    return list(stub.ListOrphans(D.ListOrphansRequest(), metadata=metadata).orphans)


# --- ListOrphans pages ---------------------------------------------------------------------------------------


def test_list_orphans_pages_through_every_kind_in_order(isolated_goals):
    env = isolated_goals
    stub = directory_pb2_grpc.DirectoryServiceStub(env.channel)
    metadata = bearer_metadata(mint_dev_token(env.settings.auth, ADMIN))
    ids = set()
    for owner in (OWNER, TEAMMATE, "pete"):
        ids.add(env.published(approver=MANAGER if owner != "pete" else OTHER_LEAD, owner=owner).id)
        ids.add(env.published(approver=MANAGER if owner != "pete" else OTHER_LEAD, owner=owner,
                              cycle_id=env.new_cycle()).id)
    pending = env.submitted(owner="pete", cycle_id=env.new_cycle())  # waits on mia, who leaves next
    for person in (OWNER, TEAMMATE, "pete"):
        env.directory.upsert_person({**env.directory.person(person), "active": False})
    env.directory.upsert_person({**env.directory.person(OTHER_LEAD), "active": False})

    whole = stub.ListOrphans(D.ListOrphansRequest(), metadata=metadata)
    assert not whole.next_page_token and not whole.truncated
    seen, token, pages = [], "", 0
    while True:
        page = stub.ListOrphans(D.ListOrphansRequest(page_size=2, page_token=token), metadata=metadata)
        assert len(page.orphans) <= 2 and page.truncated == bool(page.next_page_token)
        seen += list(page.orphans)
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == list(whole.orphans) and pages == (len(seen) + 1) // 2
    kinds = [o.kind for o in seen]
    assert kinds == sorted(kinds)
    assert {o.v2mom_id for o in seen if o.kind == D.Orphan.KIND_OWNER_GONE} >= ids
    assert (D.Orphan.KIND_APPROVER_GONE, pending.id) in {(o.kind, o.v2mom_id) for o in seen}
    for token in ("garbage", whole.next_page_token + "x"):
        error = refused(lambda: stub.ListOrphans(D.ListOrphansRequest(page_size=2, page_token=token),
                                                 metadata=metadata))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in error.details()
    error = refused(lambda: stub.ListOrphans(D.ListOrphansRequest(page_size=-1), metadata=metadata))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- goals-worker as a process: its own person_upserted and org_unit_upserted drive both -------------------------


@pytest.fixture
def broker_uri(isolated_broker_uri):
    return isolated_broker_uri


OWN_QUEUES = ("evt-goals-person_upserted--goals_worker.on_person_upserted",
              "evt-goals-org_unit_upserted--goals_worker.on_own_org_unit_upserted")


def test_goals_worker_hands_a_leavers_items_over_and_moves_a_units_v2mom_to_its_new_leader(db, goals_api, connection,
                                                                                           goals_worker):
    directory = build_org(db)
    lee = goals_api(MANAGER)
    created = lee.CreateV2MOM(goals_pb2.CreateV2MOMRequest(level=TEAM, org_unit_id="platform", cycle_id="FY2027",
                                                           content=team_content_held_by(OWNER)))
    lee.SubmitV2MOM(goals_pb2.SubmitV2MOMRequest(id=created.id))
    goals_api(SKIP).ApproveV2MOM(goals_pb2.ApproveV2MOMRequest(id=created.id))
    wait_for(lambda: all(queue_exists(connection, queue) for queue in OWN_QUEUES) or goals_worker.poll() is not None,
             30, "goals-worker never declared its queues")
    assert goals_worker.poll() is None, log_tail(goals_worker)

    directory.upsert_person({**directory.person(OWNER), "active": False})
    handed = wait_for(lambda: (lambda doc: doc if OWNER not in holders(doc["published"]["content"]) else None)(
        db.v2moms.find_one({"_id": created.id})), 30, "the leaver's items never passed to the V2MOM's owner")
    assert handed["latest_revision"]["action"] == "REASSIGN_ITEMS" and handed["state"] == "V2MOM_STATE_PUBLISHED"

    # DirectoryService.UpsertOrgUnit, an import or org_unit.upserted all end in this write and its event.
    directory.upsert_org_unit({**directory.org_unit("platform"), "leader_id": TEAMMATE})
    moved = wait_for(lambda: (lambda doc: doc if doc["owner_id"] == TEAMMATE else None)(
        db.v2moms.find_one({"_id": created.id})), 30, "the team's V2MOM never followed its new leader")
    assert moved["latest_revision"]["action"] == "TRANSFER" and moved["latest_revision"]["actor_id"] == "system"
    # Both events leave through the relay, so check-ins and notify hear of them.
    wait_for(lambda: not db.v2moms.find_one({"_id": created.id}).get("outbox"), 30, "the events never left")
    assert goals_worker.poll() is None, log_tail(goals_worker)
