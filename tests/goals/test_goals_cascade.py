"""Method-level alignment (cascading) over real gRPC: a method names the parent's methods it supports, checked
against the parent's published version; the tree shows who supports each method and which nobody does; lint
warns about a method that supports nothing in the parent."""

import grpc
import pytest

from tests.support.goals import ADMIN, INDIVIDUAL, MANAGER, OWNER, PEER, SKIP, TEAM, TEAMMATE, mask, valid_content
from tests.support.grpc_errors import expect
from v2mom.v1 import goals_pb2

Code = grpc.StatusCode


def content_supporting(owner: str, supports: dict[str, list[str]]) -> goals_pb2.V2MOMContent:
    """valid_content with each method id's supports set."""
    content = valid_content(owner)
    for method in content.methods:
        method.supports.extend(supports.get(method.id, []))
    return content


@pytest.fixture
def team(goals, cycle):
    """The platform team's published V2MOM: methods mth-0 to mth-4."""
    return goals.published(owner=MANAGER, approver=SKIP, level=TEAM, org_unit_id="platform", cycle_id=cycle,
                           content=valid_content(MANAGER, title="Platform FY"))


def test_methods_name_the_parent_methods_they_support_and_the_tree_shows_them(goals, cycle, team):
    olive = goals.published(cycle_id=cycle, parent_id=team.id,
                            content=content_supporting(OWNER, {"mth-0": ["mth-0"], "mth-1": ["mth-0", "mth-2"]}))
    assert list(olive.content.methods[1].supports) == ["mth-0", "mth-2"]
    goals.create(owner=TEAMMATE, cycle_id=cycle, parent_id=team.id,  # a draft only its readers see
                 content=content_supporting(TEAMMATE, {"mth-3": ["mth-3"]}))

    def cascade(person):
        root = goals.client(person).GetAlignmentTree(goals_pb2.GetAlignmentTreeRequest(id=team.id))
        by = {m.method_id: sorted((s.v2mom_id, s.method_id, s.owner_id) for s in m.supported_by) for m in root.methods}
        return by, list(root.unsupported_method_ids)

    by, unsupported = cascade(PEER)  # sees the published versions only
    assert by["mth-0"] == [(olive.id, "mth-0", OWNER), (olive.id, "mth-1", OWNER)]
    assert by["mth-2"] == [(olive.id, "mth-1", OWNER)]
    assert unsupported == ["mth-1", "mth-3", "mth-4"]
    by, unsupported = cascade(MANAGER)  # also sees otto's draft below his team
    assert by["mth-3"][0][2] == TEAMMATE and unsupported == ["mth-1", "mth-4"]

    leaf = goals.client(PEER).GetAlignmentTree(goals_pb2.GetAlignmentTreeRequest(id=team.id, max_depth=1)).children[0]
    assert leaf.id == olive.id and len(leaf.methods) == 5
    assert list(leaf.unsupported_method_ids) == []  # its children were not read: nothing to say


def test_supports_must_be_methods_of_the_parents_published_version(goals, cycle, team):
    error = expect(goals.client(OWNER).CreateV2MOM, goals_pb2.CreateV2MOMRequest(
        level=INDIVIDUAL, owner_id=OWNER, cycle_id=cycle, parent_id=team.id,
        content=content_supporting(OWNER, {"mth-2": ["mth-9"]})), Code.INVALID_ARGUMENT, "content.methods[2].supports[0]")
    assert "not a method of parent" in error.details()
    expect(goals.client(OWNER).CreateV2MOM, goals_pb2.CreateV2MOMRequest(
        level=INDIVIDUAL, owner_id=OWNER, cycle_id=cycle, content=content_supporting(OWNER, {"mth-0": ["mth-0"]})),
        Code.INVALID_ARGUMENT, "content.methods[0].supports[0]")  # no parent to support
    expect(goals.client(OWNER).CreateV2MOM, goals_pb2.CreateV2MOMRequest(
        level=INDIVIDUAL, owner_id=OWNER, cycle_id=cycle, parent_id=team.id,
        content=content_supporting(OWNER, {"mth-0": ["mth-0", "mth-0"]})), Code.INVALID_ARGUMENT, "content.methods[0].supports")

    olive = goals.create(cycle_id=cycle, parent_id=team.id)
    methods = content_supporting(OWNER, {"mth-4": ["mth-4", "nope"]})
    expect(goals.client(OWNER).UpdateV2MOM, goals_pb2.UpdateV2MOMRequest(
        v2mom=goals_pb2.V2MOM(id=olive.id, content=methods), update_mask=mask("content.methods")),
        Code.INVALID_ARGUMENT, "v2mom.content.methods[4].supports[1]")
    fine = content_supporting(OWNER, {"mth-4": ["mth-4"]})
    updated = goals.client(OWNER).UpdateV2MOM(goals_pb2.UpdateV2MOMRequest(
        v2mom=goals_pb2.V2MOM(id=olive.id, content=fine), update_mask=mask("content.methods")))
    assert list(updated.content.methods[4].supports) == ["mth-4"]
    # Leaving the parent strands the supports: refused until they go too.
    expect(goals.client(OWNER).UpdateV2MOM, goals_pb2.UpdateV2MOMRequest(
        v2mom=goals_pb2.V2MOM(id=olive.id, parent_id=""), update_mask=mask("parent_id")),
        Code.INVALID_ARGUMENT, "v2mom.content.methods[4].supports[0]")


def test_a_parent_with_no_published_version_has_nothing_to_support(goals, cycle):
    draft_team = goals.create(owner=MANAGER, level=TEAM, org_unit_id="platform", cycle_id=cycle)
    error = expect(goals.client(ADMIN).CreateV2MOM, goals_pb2.CreateV2MOMRequest(
        level=INDIVIDUAL, owner_id=OWNER, cycle_id=cycle, parent_id=draft_team.id,
        content=content_supporting(OWNER, {"mth-0": ["mth-0"]})), Code.INVALID_ARGUMENT, "content.methods[0].supports[0]")
    assert "no published version" in error.details()


def test_lint_warns_about_methods_supporting_nothing_in_the_parent(goals, cycle, team):
    olive = goals.create(cycle_id=cycle, parent_id=team.id,
                         content=content_supporting(OWNER, {f"mth-{i}": [f"mth-{i}"] for i in range(4)}))
    response = goals.client(OWNER).LintV2MOM(goals_pb2.LintV2MOMRequest(id=olive.id))
    assert [(f.severity, f.field_path, f.code) for f in response.findings] == [
        (goals_pb2.SEVERITY_WARNING, "content.methods[4].supports", "method.supports_nothing")]
    assert response.submittable
    alone = goals.create(owner=PEER, cycle_id=cycle)  # no parent: nothing to support, nothing said
    assert goals.client(PEER).LintV2MOM(goals_pb2.LintV2MOMRequest(id=alone.id)).findings == []
