"""GetAlignmentTree: company → department → team → individual, as each caller may see it."""

import grpc
import pytest

from tests.support.goals import (
    ADMIN, CEO, COMPANY, DEPARTMENT, INDIVIDUAL, MANAGER, mask, OWNER, PEER, SKIP, TEAM, TEAMMATE, valid_content,
)
from tests.support.grpc_errors import expect
from v2mom.v1 import goals_pb2

PUBLISHED, DRAFT = goals_pb2.V2MOM_STATE_PUBLISHED, goals_pb2.V2MOM_STATE_DRAFT


@pytest.fixture(scope="module")
def tree(goals):
    """acme ← eng ← {platform ← {olive (published), otto (draft)}, mobile (draft) ← pete (published)}."""
    c = goals.new_cycle()
    company = goals.published(owner=CEO, approver=ADMIN, level=COMPANY, org_unit_id="acme", cycle_id=c,
                              content=valid_content(CEO, title="Acme FY"))
    dept = goals.published(owner=SKIP, approver=CEO, level=DEPARTMENT, org_unit_id="eng", cycle_id=c,
                           parent_id=company.id, content=valid_content(SKIP, title="Eng FY"))
    platform = goals.published(owner=MANAGER, approver=SKIP, level=TEAM, org_unit_id="platform", cycle_id=c,
                               parent_id=dept.id, content=valid_content(MANAGER, title="Platform FY"))
    mobile = goals.create(owner="mia", level=TEAM, org_unit_id="mobile", cycle_id=c, parent_id=dept.id,
                          content=valid_content("mia", title="Mobile draft"))
    olive = goals.published(cycle_id=c, parent_id=platform.id, content=valid_content(OWNER, title="Olive FY"))
    otto = goals.create(owner=TEAMMATE, cycle_id=c, parent_id=platform.id, content=valid_content(TEAMMATE, title="Otto draft"))
    # Pete cannot see his lead's draft, so an admin aligns his V2MOM under it: a published
    # V2MOM below a node that most callers cannot see.
    pete = goals.published(owner=PEER, approver="mia", cycle_id=c, parent_id=mobile.id, as_person=ADMIN,
                           content=valid_content(PEER, title="Pete FY"))
    return {"company": company, "dept": dept, "platform": platform, "mobile": mobile, "olive": olive, "otto": otto,
            "pete": pete}


def shape(node) -> dict:
    """{title: {child title: {...}}} with children sorted, for readable comparisons."""
    return {node.title: {k: v for child in sorted(node.children, key=lambda n: n.title) for k, v in shape(child).items()}}


def tree_as(goals, person, root_id, max_depth=0):
    return goals.client(person).GetAlignmentTree(goals_pb2.GetAlignmentTreeRequest(id=root_id, max_depth=max_depth))


def test_admin_sees_the_whole_tree(goals, tree):
    assert shape(tree_as(goals, ADMIN, tree["company"].id)) == {
        "Acme FY": {"Eng FY": {
            "Mobile draft": {"Pete FY": {}},
            "Platform FY": {"Olive FY": {}, "Otto draft": {}},
        }}
    }


def test_node_fields(goals, tree):
    root = tree_as(goals, ADMIN, tree["company"].id)
    assert (root.id, root.owner_id, root.org_unit_id, root.level, root.state) == (
        tree["company"].id, CEO, "acme", COMPANY, PUBLISHED)
    dept = root.children[0]
    platform = next(c for c in dept.children if c.id == tree["platform"].id)
    olive = next(c for c in platform.children if c.id == tree["olive"].id)
    assert (dept.level, platform.level, olive.level) == (DEPARTMENT, TEAM, INDIVIDUAL)
    assert (olive.owner_id, olive.org_unit_id) == (OWNER, "platform")


def test_peers_do_not_see_hidden_drafts(goals, tree):
    # The mobile draft is hidden from olive, and so is what hangs below it.
    assert shape(tree_as(goals, OWNER, tree["company"].id)) == {
        "Acme FY": {"Eng FY": {"Platform FY": {"Olive FY": {}}}}
    }
    assert shape(tree_as(goals, MANAGER, tree["company"].id)) == {
        "Acme FY": {"Eng FY": {"Platform FY": {"Olive FY": {}, "Otto draft": {}}}}
    }


def test_a_draft_root_is_not_found_for_peers(goals, tree):
    expect(goals.client(OWNER).GetAlignmentTree, goals_pb2.GetAlignmentTreeRequest(id=tree["mobile"].id),
           grpc.StatusCode.NOT_FOUND)
    assert shape(tree_as(goals, "mia", tree["mobile"].id)) == {"Mobile draft": {"Pete FY": {}}}


def test_tree_under_any_v2mom(goals, tree):
    assert shape(tree_as(goals, PEER, tree["platform"].id)) == {"Platform FY": {"Olive FY": {}}}
    assert shape(tree_as(goals, PEER, tree["olive"].id)) == {"Olive FY": {}}


@pytest.mark.parametrize("depth, expected", [
    (1, {"Acme FY": {"Eng FY": {}}}),
    (2, {"Acme FY": {"Eng FY": {"Mobile draft": {}, "Platform FY": {}}}}),
    (3, {"Acme FY": {"Eng FY": {"Mobile draft": {"Pete FY": {}}, "Platform FY": {"Olive FY": {}, "Otto draft": {}}}}}),
    (10, {"Acme FY": {"Eng FY": {"Mobile draft": {"Pete FY": {}}, "Platform FY": {"Olive FY": {}, "Otto draft": {}}}}}),
])
def test_max_depth_counts_levels_below_the_root(goals, tree, depth, expected):
    assert shape(tree_as(goals, ADMIN, tree["company"].id, max_depth=depth)) == expected


def test_peers_see_the_published_title_of_a_reworked_v2mom(goals):
    c = goals.new_cycle()
    team = goals.published(owner=MANAGER, approver=SKIP, level=TEAM, org_unit_id="platform", cycle_id=c,
                           content=valid_content(MANAGER, title="Platform v1"))
    goals.edit(team, title="Platform v2 (draft)", reason="rework")
    as_peer = tree_as(goals, PEER, team.id)
    assert (as_peer.title, as_peer.state) == ("Platform v1", PUBLISHED)
    as_owner = tree_as(goals, MANAGER, team.id)
    assert (as_owner.title, as_owner.state) == ("Platform v2 (draft)", DRAFT)


def two_teams(goals) -> tuple[str, goals_pb2.V2MOM, goals_pb2.V2MOM]:
    """A fresh cycle with two published team V2MOMs, A (platform) and B (mobile), to align to."""
    c = goals.new_cycle()
    a = goals.published(owner=MANAGER, approver=SKIP, level=TEAM, org_unit_id="platform", cycle_id=c,
                        content=valid_content(MANAGER, title="A"))
    b = goals.published(owner="mia", approver=SKIP, level=TEAM, org_unit_id="mobile", cycle_id=c,
                        content=valid_content("mia", title="B"))
    return c, a, b


def test_realigning_moves_a_subtree(goals, tree):
    c, a, b = two_teams(goals)
    child = goals.create(cycle_id=c, parent_id=a.id, content=valid_content(OWNER, title="Child"))
    moved = goals.client(OWNER).UpdateV2MOM(goals_pb2.UpdateV2MOMRequest(
        v2mom=goals_pb2.V2MOM(id=child.id, parent_id=b.id), update_mask=mask("parent_id")))
    assert moved.parent_id == b.id
    assert shape(tree_as(goals, ADMIN, a.id)) == {"A": {}}
    assert shape(tree_as(goals, ADMIN, b.id)) == {"B": {"Child": {}}}
    history = goals.client(OWNER).ListRevisions(goals_pb2.ListRevisionsRequest(v2mom_id=child.id)).revisions
    assert list(history[-1].changed_paths) == ["parent_id"]


def test_a_draft_that_realigns_moves_only_for_its_readers_until_approved(goals):
    """Issue 12, finding 5: the published view showed the working copy's parent, and the tree followed it."""
    c, a, b = two_teams(goals)
    child = goals.published(cycle_id=c, parent_id=a.id, content=valid_content(OWNER, title="Child"))
    goals.client(OWNER).UpdateV2MOM(goals_pb2.UpdateV2MOMRequest(
        v2mom=goals_pb2.V2MOM(id=child.id, parent_id=b.id), update_mask=mask("parent_id"), change_reason="move to B"))

    def parent_seen_by(person):
        return goals.client(person).GetV2MOM(goals_pb2.GetV2MOMRequest(id=child.id)).parent_id

    listed = goals.client(PEER).ListV2MOMs(goals_pb2.ListV2MOMsRequest(cycle_id=c, owner_id=OWNER)).v2moms
    assert (parent_seen_by(PEER), [v.parent_id for v in listed]) == (a.id, [a.id])
    assert (shape(tree_as(goals, PEER, a.id)), shape(tree_as(goals, PEER, b.id))) == ({"A": {"Child": {}}}, {"B": {}})
    assert parent_seen_by(OWNER) == b.id  # the draft's readers see the draft
    assert (shape(tree_as(goals, OWNER, a.id)), shape(tree_as(goals, OWNER, b.id))) == ({"A": {}}, {"B": {"Child": {}}})
    published = goals.client(OWNER).GetV2MOM(goals_pb2.GetV2MOMRequest(id=child.id, view=goals_pb2.V2MOM_VIEW_PUBLISHED))
    assert published.parent_id == a.id

    goals.approve(goals.submit(goals.client(OWNER).GetV2MOM(goals_pb2.GetV2MOMRequest(id=child.id))), MANAGER)
    assert parent_seen_by(PEER) == b.id
    assert (shape(tree_as(goals, PEER, a.id)), shape(tree_as(goals, PEER, b.id))) == ({"A": {}}, {"B": {"Child": {}}})
