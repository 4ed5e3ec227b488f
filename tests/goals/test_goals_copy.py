"""CopyV2MOM over real gRPC: last year's V2MOM carried into the new cycle as a draft."""

import grpc

from services.platform.bus.events import to_wire
from tests.support.goals import ADMIN, d, MANAGER, OWNER, PEER, TEAM
from tests.support.grpc_errors import expect
from v2mom.v1 import common_pb2, goals_pb2

Code = grpc.StatusCode


def two_years(goals) -> tuple[str, str]:
    """Two fresh cycles a year apart (2026-02-01 and 2027-02-01: 365 days)."""
    return goals.new_cycle("2026-02-01", "2027-01-31"), goals.new_cycle("2027-02-01", "2028-01-31")


def copy(goals, person, source_id, cycle_id, **fields):
    return goals.client(person).CopyV2MOM(goals_pb2.CopyV2MOMRequest(source_id=source_id, cycle_id=cycle_id, **fields))


def test_a_published_v2mom_comes_forward_as_a_draft_aligned_to_the_new_years_team(goals):
    last, this = two_years(goals)
    team_last = goals.published(owner=MANAGER, approver="dana", level=TEAM, org_unit_id="platform", cycle_id=last)
    source = goals.published(cycle_id=last, parent_id=team_last.id)
    team_this = goals.published(owner=MANAGER, approver="dana", level=TEAM, org_unit_id="platform", cycle_id=this)

    copied = copy(goals, OWNER, source.id, this, final_values=[goals_pb2.MeasureFinalValue(measure_id="msr-1", value=2.5)],
                  completed_method_ids=["mth-1"])
    assert (copied.state, copied.cycle_id, copied.parent_id, copied.copied_from_id) == (
        goals_pb2.V2MOM_STATE_DRAFT, this, team_this.id, source.id)
    content = copied.content
    assert [v.copied_from for v in content.values] == ["val-customers", "val-quality", "val-openness"]
    assert not {v.id for v in content.values} & {"val-customers", "val-quality", "val-openness"}  # new ids
    assert [m.copied_from for m in content.methods] == ["mth-0", "mth-2", "mth-3", "mth-4"]  # mth-1 was completed
    new_id_of = {m.copied_from: m.id for m in content.methods}
    assert content.methods[0].value_ids == [content.values[0].id]  # links follow the items
    assert content.methods[0].due_date == d(2027, 3, 28) and content.methods[0].start_date == d(2027, 2, 1)
    assert not content.methods[0].milestones[0].done and content.methods[0].milestones[0].id != "mil-0"
    by_origin = {m.copied_from: m for m in content.measures}
    assert by_origin["msr-1"].baseline == 2.5 and by_origin["msr-2"].baseline == 1  # no final value: kept
    assert list(by_origin["msr-1"].method_ids) == [new_id_of["mth-0"]]  # the link to mth-1 went with it
    assert content.obstacles[0].method_ids == [new_id_of["mth-0"]]

    raw = goals.raw(copied.id)
    event = to_wire(raw["outbox"][-1])
    assert (event["type"], event["data"]["copiedFromId"], event["data"]["cycleId"]) == ("v2mom_created", source.id, this)
    assert raw["latest_revision"]["action"] == "COPY"
    assert goals.raw(source.id)["state"] == "V2MOM_STATE_PUBLISHED"  # the source is untouched


def test_the_owner_chooses_what_comes_along(goals):
    last, this = two_years(goals)
    content = goals.create(cycle_id=last).content
    done = content.methods[2]
    done.milestones[0].done = True  # every milestone done: completed
    goals.client(OWNER).UpdateV2MOM(goals_pb2.UpdateV2MOMRequest(
        v2mom=goals_pb2.V2MOM(id=goals.client(OWNER).ListV2MOMs(goals_pb2.ListV2MOMsRequest(
            owner_id=OWNER, cycle_id=last)).v2moms[0].id, content=content),
        update_mask={"paths": ["content.methods"]}))
    source = goals.client(OWNER).ListV2MOMs(goals_pb2.ListV2MOMsRequest(owner_id=OWNER, cycle_id=last)).v2moms[0]
    copied = copy(goals, OWNER, source.id, this, omit_obstacles=True, omit_measures=True, omit_item_ids=["val-openness"],
                  include_completed_methods=False)
    assert [v.copied_from for v in copied.content.values] == ["val-customers", "val-quality"]
    assert [m.copied_from for m in copied.content.methods] == ["mth-0", "mth-1", "mth-3", "mth-4"]
    assert not copied.content.obstacles and not copied.content.measures
    assert copied.parent_id == ""  # no parent last year, none now
    goals.client(OWNER).ArchiveV2MOM(goals_pb2.ArchiveV2MOMRequest(id=copied.id))
    everything = copy(goals, OWNER, source.id, this, include_completed_methods=True)
    assert len(everything.content.methods) == 5 and len(everything.content.measures) == 2


def test_copy_refuses_with_specific_errors_and_a_replay_returns_the_first_copy(goals):
    last, this = two_years(goals)
    source = goals.published(cycle_id=last)
    draft = goals.create(owner="otto", cycle_id=last)
    expect(goals.client(OWNER).CopyV2MOM, goals_pb2.CopyV2MOMRequest(source_id=source.id, cycle_id=last),
           Code.INVALID_ARGUMENT, "cycle_id")
    expect(goals.client(OWNER).CopyV2MOM, goals_pb2.CopyV2MOMRequest(source_id=source.id, cycle_id="NOPE"),
           Code.INVALID_ARGUMENT, "cycle_id")
    expect(goals.client(OWNER).CopyV2MOM, goals_pb2.CopyV2MOMRequest(source_id="bad id!", cycle_id=this),
           Code.INVALID_ARGUMENT, "source_id")
    expect(goals.client(OWNER).CopyV2MOM, goals_pb2.CopyV2MOMRequest(
        source_id=source.id, cycle_id=this, final_values=[goals_pb2.MeasureFinalValue(measure_id="msr-9", value=1)]),
        Code.INVALID_ARGUMENT, "final_values[0].measure_id")
    expect(goals.client(OWNER).CopyV2MOM, goals_pb2.CopyV2MOMRequest(
        source_id=source.id, cycle_id=this, final_values=[goals_pb2.MeasureFinalValue(measure_id="msr-1", value=float("nan"))]),
        Code.INVALID_ARGUMENT, "final_values[0].value")
    expect(goals.client(PEER).CopyV2MOM, goals_pb2.CopyV2MOMRequest(source_id=draft.id, cycle_id=this), Code.NOT_FOUND)
    expect(goals.client(PEER).CopyV2MOM, goals_pb2.CopyV2MOMRequest(source_id=source.id, cycle_id=this),
           Code.PERMISSION_DENIED)

    first = copy(goals, OWNER, source.id, this, request_id="copy-1")
    assert copy(goals, OWNER, source.id, this, request_id="copy-1").id == first.id
    expect(goals.client(OWNER).CopyV2MOM, goals_pb2.CopyV2MOMRequest(source_id=source.id, cycle_id=this),
           Code.ALREADY_EXISTS)
    assert copy(goals, ADMIN, draft.id, this).owner_id == "otto"  # an admin copies for the owner

    closed = goals.new_cycle("2040-02-01", "2041-01-31")
    goals.db.cycles.update_one({"_id": closed}, {"$set": {"closed_at": goals.raw(source.id)["created_at"]}})
    expect(goals.client(OWNER).CopyV2MOM, goals_pb2.CopyV2MOMRequest(source_id=source.id, cycle_id=closed),
           Code.FAILED_PRECONDITION)
    assert goals.v2mom_count(copied_from_id=source.id) == 1
    assert common_pb2.ORG_LEVEL_INDIVIDUAL == first.level
