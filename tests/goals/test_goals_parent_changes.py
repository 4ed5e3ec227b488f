"""Parent changes reach children: a published V2MOM approved again with changed content sends
v2mom_parent_changed naming the V2MOMs aligned beneath, in the approval's own write; goals-worker marks each
child not edited since, and ListV2MOMs(parent_changed) finds them until their next edit."""

from datetime import timedelta

import pytest

from services.goals.repository import V2MOMRepository
from services.platform.bus.events import to_wire
from tests.support.catalogue import validate_event
from tests.support.goals import INDIVIDUAL, MANAGER, OWNER, SKIP, TEAM, build_org, valid_content
from tests.support.processes import log_tail, wait_for
from v2mom.v1 import goals_pb2


def reapprove(goals, v2mom, vision):
    edited = goals.edit(v2mom, reason="The year moved on", vision=vision)
    goals.submit(edited)
    return goals.approve(edited, SKIP)


def outbox_types(goals, v2mom_id):
    return [to_wire(e)["type"] for e in goals.raw(v2mom_id)["outbox"]]


def changed_children(goals, person, cycle):
    listed = goals.client(person).ListV2MOMs(goals_pb2.ListV2MOMsRequest(cycle_id=cycle, parent_changed=True))
    return [v.id for v in listed.v2moms]


@pytest.fixture
def family(goals, cycle):
    team = goals.published(owner=MANAGER, approver=SKIP, level=TEAM, org_unit_id="platform", cycle_id=cycle,
                           content=valid_content(MANAGER, title="Platform FY"))
    olive = goals.published(cycle_id=cycle, parent_id=team.id)
    return team, olive


def test_reapproving_a_changed_parent_lists_its_children_in_the_same_write(goals, cycle, family):
    team, olive = family
    assert "v2mom_parent_changed" not in outbox_types(goals, team.id)  # a first approval changes no one's parent
    reapproved = reapprove(goals, team, "Cut invoice errors from 4% to 0.5% by December 2026")
    raw = goals.raw(team.id)
    event = to_wire(raw["outbox"][-1])
    assert (event["type"], to_wire(raw["outbox"][-2])["type"]) == ("v2mom_parent_changed", "v2mom_approved")
    validate_event(event)  # matches docs/events.asyncapi.yaml
    data = event["data"]
    assert (data["childIds"], data["changedPaths"], data["revision"], data["previousRevision"]) == (
        [olive.id], ["content.vision"], str(reapproved.published_revision), str(team.published_revision))
    assert data["childOwnerIds"] == [olive.owner_id]  # whom notify tells


def test_a_reapproval_that_changed_nothing_published_tells_nobody(goals, cycle, family):
    team, _ = family
    edited = goals.edit(team, reason="Try a vision", vision="Cut invoice errors from 4% to 2% by December 2026")
    back = goals.edit(edited, reason="Back to the old one", vision=team.content.vision)
    goals.submit(back)
    goals.approve(back, SKIP)
    assert "v2mom_parent_changed" not in outbox_types(goals, team.id)


def test_marked_children_are_listed_until_their_next_edit(goals, cycle, family):
    team, olive = family
    repository = V2MOMRepository(goals.db)
    changed_at = goals.raw(olive.id)["updated_at"] + timedelta(seconds=1)
    assert repository.mark_parent_changed([olive.id], changed_at) == 1
    assert repository.mark_parent_changed([olive.id], changed_at + timedelta(seconds=1)) == 0  # the first mark stays
    assert changed_children(goals, OWNER, cycle) == [olive.id]
    assert changed_children(goals, "pete", cycle) == [olive.id]  # a reader of the published version too
    shown = goals.client(OWNER).GetV2MOM(goals_pb2.GetV2MOMRequest(id=olive.id))
    assert shown.parent_change_time.ToDatetime().replace(tzinfo=changed_at.tzinfo) == changed_at.replace(microsecond=changed_at.microsecond // 1000 * 1000)

    goals.edit(olive, reason="Followed the team", vision="Cut invoice errors from 4% to 0.5% by December 2026")
    assert changed_children(goals, OWNER, cycle) == []
    assert not goals.client(OWNER).GetV2MOM(goals_pb2.GetV2MOMRequest(id=olive.id)).HasField("parent_change_time")
    edited_at = goals.raw(olive.id)["updated_at"]
    assert repository.mark_parent_changed([olive.id], edited_at - timedelta(milliseconds=1)) == 0  # a late event


# --- goals-worker as a process: its own event marks the children -------------------------------------------


@pytest.fixture
def broker_uri(isolated_broker_uri):
    return isolated_broker_uri


def test_goals_worker_marks_the_children_of_a_changed_parent(db, goals_api, connection, goals_worker):
    from tests.support.broker import queue_exists

    build_org(db)
    lee, dana, olive_client = goals_api(MANAGER), goals_api(SKIP), goals_api(OWNER)
    team = lee.CreateV2MOM(goals_pb2.CreateV2MOMRequest(level=TEAM, org_unit_id="platform", cycle_id="FY2027",
                                                         content=valid_content(MANAGER)))
    lee.SubmitV2MOM(goals_pb2.SubmitV2MOMRequest(id=team.id))
    dana.ApproveV2MOM(goals_pb2.ApproveV2MOMRequest(id=team.id))
    olive = olive_client.CreateV2MOM(goals_pb2.CreateV2MOMRequest(level=INDIVIDUAL, owner_id=OWNER, cycle_id="FY2027",
                                                                  parent_id=team.id, content=valid_content()))
    wait_for(lambda: queue_exists(connection, "evt-goals-v2mom_parent_changed--goals_worker.on_v2mom_parent_changed")
             or goals_worker.poll() is not None, 30, "goals-worker never declared its queue")
    assert goals_worker.poll() is None, log_tail(goals_worker)

    lee.UpdateV2MOM(goals_pb2.UpdateV2MOMRequest(
        v2mom=goals_pb2.V2MOM(id=team.id, content=goals_pb2.V2MOMContent(vision="Cut invoice errors to 0.5% by 2027")),
        update_mask={"paths": ["content.vision"]}, change_reason="Sharper"))
    lee.SubmitV2MOM(goals_pb2.SubmitV2MOMRequest(id=team.id))
    dana.ApproveV2MOM(goals_pb2.ApproveV2MOMRequest(id=team.id))

    def listed():
        return [v.id for v in olive_client.ListV2MOMs(goals_pb2.ListV2MOMsRequest(parent_changed=True)).v2moms]
    wait_for(lambda: listed() == [olive.id], 30, "the child was never marked")
