"""ExportV2MOMs over real gRPC: a server stream of every V2MOM of an org unit's subtree in a cycle that the
caller may see, as GetV2MOM shows it to them, with its owner and its place in the export."""

import grpc
import pytest

from tests.support.goals import ANON, MANAGER, OWNER, PEER, SKIP, TEAM, TEAMMATE, valid_content
from tests.support.grpc_errors import expect
from v2mom.v1 import goals_pb2

Code = grpc.StatusCode


def export(goals, person, **fields) -> list[goals_pb2.ExportedV2MOM]:
    return goals.client(person).ExportV2MOMs(goals_pb2.ExportV2MOMsRequest(**fields))  # the stream, read whole


def streamed(goals, person):
    return goals.client(person).ExportV2MOMs


@pytest.fixture
def platform(goals, cycle):
    """In the platform team (under eng): the team's and olive's published V2MOMs, otto's draft."""
    team = goals.published(owner=MANAGER, approver=SKIP, level=TEAM, org_unit_id="platform", cycle_id=cycle,
                           content=valid_content(MANAGER, title="Platform FY"))
    olive = goals.published(cycle_id=cycle, parent_id=team.id)
    otto = goals.create(owner=TEAMMATE, cycle_id=cycle, parent_id=team.id, content=valid_content(TEAMMATE))
    return team, olive, otto


def test_the_export_holds_what_the_caller_may_see_of_the_subtree(goals, cycle, platform):
    team, olive, otto = platform
    seen = export(goals, PEER, org_unit_id="eng", cycle_id=cycle)
    assert sorted(e.v2mom.id for e in seen) == sorted([team.id, olive.id])  # not otto's draft
    assert [(e.index, e.total) for e in seen] == [(1, 2), (2, 2)]
    mine = next(e for e in seen if e.v2mom.id == olive.id)
    assert (mine.owner.id, mine.owner.display_name, mine.org_unit_name) == (OWNER, "Olive Owner", "Platform")
    assert len(mine.v2mom.content.methods) == 5 and mine.v2mom.content.measures[0].id == "msr-1"

    managed = export(goals, MANAGER, org_unit_id="platform", cycle_id=cycle)
    assert otto.id in {e.v2mom.id for e in managed}  # his manager sees the draft
    assert export(goals, PEER, org_unit_id="sales", cycle_id=cycle) == []


def test_archived_ones_only_when_asked(goals, cycle, platform):
    _, olive, _ = platform
    goals.client(OWNER).ArchiveV2MOM(goals_pb2.ArchiveV2MOMRequest(id=olive.id))
    assert olive.id not in {e.v2mom.id for e in export(goals, PEER, org_unit_id="platform", cycle_id=cycle)}
    assert olive.id in {e.v2mom.id for e in export(goals, PEER, org_unit_id="platform", cycle_id=cycle,
                                                   include_archived=True)}


def test_refusals_are_clean_statuses(goals, cycle):
    request = goals_pb2.ExportV2MOMsRequest
    expect(streamed(goals, PEER), request(org_unit_id="nowhere", cycle_id=cycle), Code.NOT_FOUND)
    expect(streamed(goals, PEER), request(org_unit_id="eng", cycle_id="FY1999"), Code.NOT_FOUND)
    expect(streamed(goals, PEER), request(cycle_id=cycle), Code.INVALID_ARGUMENT, "org_unit_id")
    expect(streamed(goals, PEER), request(org_unit_id="eng", cycle_id="a/b"), Code.INVALID_ARGUMENT, "cycle_id")
    expect(streamed(goals, ANON), request(org_unit_id="eng", cycle_id=cycle), Code.UNAUTHENTICATED)


def test_a_draft_behind_a_published_version_is_exported_only_to_its_readers(goals, cycle, platform):
    team, _, _ = platform
    goals.edit(team, as_person=MANAGER, reason="Sharper", vision="Every invoice right the first time by June 2027")

    def team_as(person):
        return next(e.v2mom for e in export(goals, person, org_unit_id="platform", cycle_id=cycle)
                    if e.v2mom.id == team.id)

    public = team_as(PEER)
    assert (public.content.vision, public.state) == (team.content.vision, goals_pb2.V2MOM_STATE_PUBLISHED)
    assert public == goals.client(PEER).GetV2MOM(goals_pb2.GetV2MOMRequest(id=team.id))  # as GetV2MOM shows it
    working = team_as(MANAGER)
    assert (working.content.vision, working.state) == (
        "Every invoice right the first time by June 2027", goals_pb2.V2MOM_STATE_DRAFT)
    assert team_as(SKIP).content.vision == working.content.vision  # the chain above reads the draft too
