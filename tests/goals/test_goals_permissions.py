"""Who may call what: every GoalService RPC × every kind of caller, on drafts and published V2MOMs.

The V2MOMs belong to olive (OWNER). Her manager is lee, her skip-level manager
dana; pete (PEER) is in another team; ada (ADMIN) is an admin outside olive's
chain; anonymous calls carry no token.

Codes: OK succeeds (for list RPCs: and the target is in the list), EMPTY
succeeds without the target in the list, NF NOT_FOUND, PD PERMISSION_DENIED,
FP FAILED_PRECONDITION, UA UNAUTHENTICATED.

Targets: `draft` never published, `submitted` waiting for lee, `published`
approved, `content` (LintV2MOM on unsaved content) and `-` (no V2MOM involved).
"""

import itertools
import re

import grpc
import pytest

from tests.support.goals import ADMIN, ANON, d, INDIVIDUAL, MANAGER, mask, OWNER, PEER, SKIP, valid_content
from tests.support.grpc_errors import expect
from v2mom.v1 import common_pb2, goals_pb2

CALLERS = {"owner": OWNER, "manager": MANAGER, "skip": SKIP, "peer": PEER, "admin": ADMIN, "anonymous": ANON}

MATRIX = """
rpc                    target     owner  manager  skip   peer   admin  anonymous
CreateV2MOM            -          OK     PD       PD     PD     OK     UA
GetV2MOM               draft      OK     OK       OK     NF     OK     UA
GetV2MOM               submitted  OK     OK       OK     NF     OK     UA
GetV2MOM               published  OK     OK       OK     OK     OK     UA
UpdateV2MOM            draft      OK     PD       PD     NF     OK     UA
UpdateV2MOM            submitted  FP     PD       PD     NF     FP     UA
UpdateV2MOM            published  OK     PD       PD     PD     OK     UA
ListV2MOMs             draft      OK     OK       OK     EMPTY  OK     UA
ListV2MOMs             published  OK     OK       OK     OK     OK     UA
SubmitV2MOM            draft      OK     PD       PD     NF     OK     UA
SubmitV2MOM            published  FP     PD       PD     PD     FP     UA
ApproveV2MOM           draft      PD     FP       PD     NF     FP     UA
ApproveV2MOM           submitted  PD     OK       PD     NF     OK     UA
ApproveV2MOM           published  PD     FP       PD     PD     FP     UA
RequestChanges         draft      PD     FP       PD     NF     FP     UA
RequestChanges         submitted  PD     OK       PD     NF     OK     UA
RequestChanges         published  PD     FP       PD     PD     FP     UA
ArchiveV2MOM           draft      OK     PD       PD     NF     OK     UA
ArchiveV2MOM           published  OK     PD       PD     PD     OK     UA
GetAlignmentTree       draft      OK     OK       OK     NF     OK     UA
GetAlignmentTree       published  OK     OK       OK     OK     OK     UA
ListPendingApprovals   submitted  EMPTY  OK       EMPTY  EMPTY  EMPTY  UA
ListRevisions          draft      OK     OK       OK     NF     OK     UA
ListRevisions          published  OK     OK       OK     PD     OK     UA
LintV2MOM              draft      OK     OK       OK     NF     OK     UA
LintV2MOM              published  OK     OK       OK     PD     OK     UA
LintV2MOM              content    OK     OK       OK     OK     OK     UA
GetPerson              -          OK     OK       OK     OK     OK     UA
ListPeople             -          OK     OK       OK     OK     OK     UA
GetOrgUnit             -          OK     OK       OK     OK     OK     UA
ListOrgUnits           -          OK     OK       OK     OK     OK     UA
ListCycles             -          OK     OK       OK     OK     OK     UA
CreateCycle            -          PD     PD       PD     PD     OK     UA
UpdateCycle            -          PD     PD       PD     PD     OK     UA
GetCurrentCycle        -          OK     OK       OK     OK     OK     UA
CloseCycle             -          PD     PD       PD     PD     OK     UA
CopyV2MOM              draft      OK     PD       PD     NF     OK     UA
CopyV2MOM              published  OK     PD       PD     PD     OK     UA
WithdrawSubmission     draft      FP     PD       PD     NF     FP     UA
WithdrawSubmission     submitted  OK     PD       PD     NF     OK     UA
ListTemplates          -          OK     OK       OK     OK     OK     UA
GetTemplate            -          OK     OK       OK     OK     OK     UA
CreateTemplate         -          PD     PD       PD     PD     OK     UA
UpdateTemplate         -          PD     PD       PD     PD     OK     UA
DeleteTemplate         -          PD     PD       PD     PD     OK     UA
UpdateObstacle         draft      FP     FP       FP     NF     FP     UA
UpdateObstacle         published  OK     OK       OK     PD     OK     UA
AddComment             draft      OK     OK       OK     NF     OK     UA
AddComment             published  OK     OK       OK     OK     OK     UA
ListComments           draft      OK     OK       OK     NF     OK     UA
ListComments           published  OK     OK       OK     OK     OK     UA
EditComment            draft      OK     PD       PD     NF     PD     UA
EditComment            published  OK     PD       PD     PD     PD     UA
DeleteComment          draft      OK     PD       PD     NF     PD     UA
DeleteComment          published  OK     PD       PD     PD     PD     UA
ExportV2MOMs           draft      OK     OK       OK     EMPTY  OK     UA
ExportV2MOMs           published  OK     OK       OK     OK     OK     UA
"""

CODES = {
    "NF": grpc.StatusCode.NOT_FOUND,
    "PD": grpc.StatusCode.PERMISSION_DENIED,
    "FP": grpc.StatusCode.FAILED_PRECONDITION,
    "UA": grpc.StatusCode.UNAUTHENTICATED,
}
# RPCs that change what they act on get a fresh target per cell; the others share one per module.
CHANGING = {"CreateV2MOM", "UpdateV2MOM", "SubmitV2MOM", "ApproveV2MOM", "RequestChanges", "ArchiveV2MOM",
            "WithdrawSubmission", "UpdateObstacle", "EditComment", "DeleteComment"}
# Cycles the matrix creates lie far in the future, a year each, so they never overlap one another.
FUTURE_YEARS = itertools.count(3000)


def parse_matrix(text: str) -> list[tuple[str, str, str, str]]:
    lines = [line.split() for line in text.strip().splitlines()]
    header, rows = lines[0], lines[1:]
    return [(row[0], row[1], caller, expected) for row in rows for caller, expected in zip(header[2:], row[2:], strict=True)]


CELLS = parse_matrix(MATRIX)


def test_the_matrix_covers_every_rpc_and_every_caller():
    rpcs = set(goals_pb2.DESCRIPTOR.services_by_name["GoalService"].methods_by_name)
    assert {rpc for rpc, *_ in CELLS} == rpcs
    assert {caller for _, _, caller, _ in CELLS} == set(CALLERS)


def make_target(goals, kind: str) -> goals_pb2.V2MOM | None:
    cycle_id = goals.new_cycle()
    if kind == "draft":
        return goals.create(cycle_id=cycle_id)
    if kind == "submitted":
        return goals.submitted(cycle_id=cycle_id)
    if kind == "published":
        return goals.published(cycle_id=cycle_id)
    return None


@pytest.fixture(scope="module")
def shared_targets(goals):
    return {kind: make_target(goals, kind) for kind in ("draft", "submitted", "published")}


def request_for(rpc: str, target: goals_pb2.V2MOM | None, goals):
    """A request that would succeed for a caller with every right."""
    target_id = target.id if target else ""
    new_vision = "Cut invoice errors from 4% to 2% by June 2026"
    requests = {
        "CreateV2MOM": lambda: goals_pb2.CreateV2MOMRequest(
            level=INDIVIDUAL, owner_id=OWNER, cycle_id=goals.new_cycle(), content=valid_content()),
        "GetV2MOM": lambda: goals_pb2.GetV2MOMRequest(id=target_id),
        "UpdateV2MOM": lambda: goals_pb2.UpdateV2MOMRequest(
            v2mom=goals_pb2.V2MOM(id=target_id, content=goals_pb2.V2MOMContent(vision=new_vision)),
            update_mask=mask("content.vision"), change_reason="sharper target"),
        "ListV2MOMs": lambda: goals_pb2.ListV2MOMsRequest(cycle_id=target.cycle_id),
        "SubmitV2MOM": lambda: goals_pb2.SubmitV2MOMRequest(id=target_id),
        "ApproveV2MOM": lambda: goals_pb2.ApproveV2MOMRequest(id=target_id),
        "RequestChanges": lambda: goals_pb2.RequestChangesRequest(id=target_id, reason="needs a retention measure"),
        "ArchiveV2MOM": lambda: goals_pb2.ArchiveV2MOMRequest(id=target_id),
        "GetAlignmentTree": lambda: goals_pb2.GetAlignmentTreeRequest(id=target_id),
        "ListPendingApprovals": lambda: goals_pb2.ListPendingApprovalsRequest(page_size=200),
        "ListRevisions": lambda: goals_pb2.ListRevisionsRequest(v2mom_id=target_id),
        "LintV2MOM": lambda: goals_pb2.LintV2MOMRequest(id=target_id) if target else goals_pb2.LintV2MOMRequest(content=valid_content()),
        "GetPerson": lambda: goals_pb2.GetPersonRequest(id=OWNER),
        "ListPeople": lambda: goals_pb2.ListPeopleRequest(org_unit_id="platform"),
        "GetOrgUnit": lambda: goals_pb2.GetOrgUnitRequest(id="platform"),
        "ListOrgUnits": lambda: goals_pb2.ListOrgUnitsRequest(parent_id="eng"),
        "ListCycles": lambda: goals_pb2.ListCyclesRequest(),
        "CreateCycle": lambda: goals_pb2.CreateCycleRequest(cycle=future_cycle()),
        "UpdateCycle": lambda: goals_pb2.UpdateCycleRequest(cycle=future_cycle(stored=goals), update_mask=mask("end_date")),
        "GetCurrentCycle": lambda: goals_pb2.GetCurrentCycleRequest(),
        "CloseCycle": lambda: goals_pb2.CloseCycleRequest(
            cycle_id=future_cycle(stored=goals).id, reason="the year is over", next_cycle=future_cycle()),
        "CopyV2MOM": lambda: goals_pb2.CopyV2MOMRequest(source_id=target_id, cycle_id=goals.new_cycle()),
        "WithdrawSubmission": lambda: goals_pb2.WithdrawSubmissionRequest(id=target_id),
        "ListTemplates": lambda: goals_pb2.ListTemplatesRequest(),
        "GetTemplate": lambda: goals_pb2.GetTemplateRequest(id=stored_template(goals)),
        "CreateTemplate": lambda: goals_pb2.CreateTemplateRequest(template=template(f"tpl-{next(FUTURE_YEARS)}")),
        "UpdateTemplate": lambda: goals_pb2.UpdateTemplateRequest(
            template=goals_pb2.Template(id=stored_template(goals), name="Renamed"), update_mask=mask("name")),
        "DeleteTemplate": lambda: goals_pb2.DeleteTemplateRequest(id=stored_template(goals)),
        "UpdateObstacle": lambda: goals_pb2.UpdateObstacleRequest(
            v2mom_id=target_id, obstacle_id="obs-1", obstacle=goals_pb2.Obstacle(status=goals_pb2.OBSTACLE_STATUS_MITIGATING),
            update_mask=mask("status")),
        "AddComment": lambda: goals_pb2.AddCommentRequest(v2mom_id=target_id, text="Looks right to me"),
        "ListComments": lambda: goals_pb2.ListCommentsRequest(v2mom_id=target_id),
        "EditComment": lambda: goals_pb2.EditCommentRequest(id=owners_comment(goals, target), text="Edited"),
        "DeleteComment": lambda: goals_pb2.DeleteCommentRequest(id=owners_comment(goals, target)),
        "ExportV2MOMs": lambda: goals_pb2.ExportV2MOMsRequest(org_unit_id="platform", cycle_id=target.cycle_id),
    }
    return requests[rpc]()


def future_cycle(stored=None) -> common_pb2.Cycle:
    """A year of its own, far ahead; stored (through the directory, as the seed does) when a GoalsEnv is given."""
    year = next(FUTURE_YEARS)
    cycle = common_pb2.Cycle(id=f"P{year}", start_date=d(year, 2, 1), end_date=d(year + 1, 1, 31))
    if stored is not None:
        stored.directory.upsert_cycle(cycle.id, f"{year}-02-01", f"{year + 1}-01-31")
        cycle.end_date.CopyFrom(d(year + 1, 1, 30))  # what UpdateCycle then changes
    return cycle


def template(template_id: str) -> goals_pb2.Template:
    return goals_pb2.Template(id=template_id, name="A team's year", level=INDIVIDUAL,
                              content=goals_pb2.V2MOMContent(title="My year"))


def stored_template(goals) -> str:
    """A template an admin just made, for a call that needs one to exist."""
    made = goals.client(ADMIN).CreateTemplate(goals_pb2.CreateTemplateRequest(template=template(f"tpl-{next(FUTURE_YEARS)}")))
    return made.id


def owners_comment(goals, target: goals_pb2.V2MOM) -> str:
    """A comment of the owner's on the target: on its published version when it has one, so everyone sees it."""
    view = goals_pb2.V2MOM_VIEW_PUBLISHED if target.published_revision else goals_pb2.V2MOM_VIEW_WORKING
    return goals.client(OWNER).AddComment(goals_pb2.AddCommentRequest(v2mom_id=target.id, text="Mine", view=view)).id


def listed_ids(response) -> set[str]:
    return {v.id for v in getattr(response, "v2moms", [])}


@pytest.mark.parametrize("rpc, target_kind, caller, expected", CELLS, ids=[f"{r}-{t}-{c}" for r, t, c, _ in CELLS])
def test_permission_matrix(goals, shared_targets, rpc, target_kind, caller, expected):
    if target_kind in ("-", "content"):
        target = None
    elif rpc in CHANGING:
        target = make_target(goals, target_kind)
    else:
        target = shared_targets[target_kind]
    before = goals.raw(target.id) if target else None
    client = goals.client(CALLERS[caller])
    call = getattr(client, rpc)
    request = request_for(rpc, target, goals)

    if expected in CODES:
        expect(call, request, CODES[expected])
        if target is not None:
            assert goals.raw(target.id) == before, "a refused call changed the V2MOM"
        return
    response = call(request)
    if rpc in ("ListV2MOMs", "ListPendingApprovals"):
        assert (target.id in listed_ids(response)) == (expected == "OK")
    elif rpc == "ExportV2MOMs":
        assert (target.id in {e.v2mom.id for e in response}) == (expected == "OK")
    elif target is not None and rpc in ("GetV2MOM", "GetAlignmentTree"):
        assert response.id == target.id


def test_every_rpc_refuses_every_bad_token(goals, shared_targets):
    published = shared_targets["published"]
    bad_clients = goals.bad_token_clients()
    assert len(bad_clients) >= 8
    rpcs = goals_pb2.DESCRIPTOR.services_by_name["GoalService"].methods_by_name
    for rpc in rpcs:
        for name, client in bad_clients.items():
            error = expect(getattr(client, rpc), request_for(rpc, published, goals), grpc.StatusCode.UNAUTHENTICATED)
            assert OWNER not in error.details(), f"{rpc} with {name}: the refusal talks about the claimed person"


# --- never leak existence ---------------------------------------------------------------------


def test_a_hidden_draft_is_indistinguishable_from_a_missing_id(goals, shared_targets):
    hidden = shared_targets["draft"].id
    missing = "v2m_" + "0" * len(hidden[4:])
    peer = goals.client(PEER)
    probes = {
        "GetV2MOM": lambda i: goals_pb2.GetV2MOMRequest(id=i),
        "UpdateV2MOM": lambda i: goals_pb2.UpdateV2MOMRequest(
            v2mom=goals_pb2.V2MOM(id=i, content=goals_pb2.V2MOMContent(title="x")), update_mask=mask("content.title")),
        "SubmitV2MOM": lambda i: goals_pb2.SubmitV2MOMRequest(id=i),
        "ApproveV2MOM": lambda i: goals_pb2.ApproveV2MOMRequest(id=i),
        "RequestChanges": lambda i: goals_pb2.RequestChangesRequest(id=i, reason="x"),
        "ArchiveV2MOM": lambda i: goals_pb2.ArchiveV2MOMRequest(id=i),
        "GetAlignmentTree": lambda i: goals_pb2.GetAlignmentTreeRequest(id=i),
        "ListRevisions": lambda i: goals_pb2.ListRevisionsRequest(v2mom_id=i),
        "LintV2MOM": lambda i: goals_pb2.LintV2MOMRequest(id=i),
    }
    for rpc, build in probes.items():
        call = getattr(peer, rpc)
        on_hidden = expect(call, build(hidden), grpc.StatusCode.NOT_FOUND)
        on_missing = expect(call, build(missing), grpc.StatusCode.NOT_FOUND)
        assert on_hidden.details().replace(hidden, "ID") == on_missing.details().replace(missing, "ID"), rpc
        assert on_hidden.trailing_metadata() is not None


def test_a_hidden_draft_cannot_be_probed_as_a_parent(goals):
    hidden = goals.create(owner=PEER, cycle_id=goals.new_cycle(), content=valid_content(PEER))
    missing = "v2m_" + "0" * len(hidden.id[4:])
    owner = goals.client(OWNER)
    texts = []
    for parent in (hidden.id, missing):
        error = expect(owner.CreateV2MOM, goals_pb2.CreateV2MOMRequest(
            level=INDIVIDUAL, cycle_id=hidden.cycle_id, parent_id=parent), grpc.StatusCode.INVALID_ARGUMENT, "parent_id")
        texts.append(error.details().replace(parent, "ID"))
    assert texts[0] == texts[1]


def test_peer_lists_published_only(goals):
    cycle_id = goals.new_cycle()
    draft = goals.create(cycle_id=cycle_id)
    published = goals.published(owner="otto", cycle_id=cycle_id, content=valid_content("otto"))
    reworked = goals.published(owner="mia", approver=SKIP, cycle_id=cycle_id, content=valid_content("mia"))
    goals.edit(reworked, vision="Secret new direction for 2027", reason="rethink")

    def listing(person):
        response = goals.client(person).ListV2MOMs(goals_pb2.ListV2MOMsRequest(cycle_id=cycle_id))
        return {v.id: v for v in response.v2moms}

    peer = listing(PEER)
    assert set(peer) == {published.id, reworked.id}
    assert peer[reworked.id].state == goals_pb2.V2MOM_STATE_PUBLISHED
    assert peer[reworked.id].content.vision != "Secret new direction for 2027"
    assert set(listing(OWNER)) == {draft.id, published.id, reworked.id}
    assert set(listing(MANAGER)) == {draft.id, published.id, reworked.id}
    assert listing(ADMIN)[reworked.id].content.vision == "Secret new direction for 2027"
    assert listing(SKIP)[reworked.id].state == goals_pb2.V2MOM_STATE_DRAFT  # mia reports to dana


def test_peer_state_filter_matches_what_the_peer_sees(goals):
    """A peer filtering on PUBLISHED finds published V2MOMs with a draft behind them, and DRAFT finds nothing."""
    cycle_id = goals.new_cycle()
    reworked = goals.published(cycle_id=cycle_id)
    goals.edit(reworked, vision="A new draft on top", reason="rethink")

    def ids(person, state):
        response = goals.client(person).ListV2MOMs(goals_pb2.ListV2MOMsRequest(cycle_id=cycle_id, state=state))
        return {v.id for v in response.v2moms}

    assert ids(PEER, goals_pb2.V2MOM_STATE_PUBLISHED) == {reworked.id}
    assert ids(PEER, goals_pb2.V2MOM_STATE_DRAFT) == set()  # the draft behind it is not the peer's to know about
    assert ids(OWNER, goals_pb2.V2MOM_STATE_DRAFT) == {reworked.id}
    assert ids(OWNER, goals_pb2.V2MOM_STATE_PUBLISHED) == set()


def test_unauthenticated_says_how_to_authenticate(goals):
    error = expect(goals.client(ANON).GetV2MOM, goals_pb2.GetV2MOMRequest(id="v2m_x"), grpc.StatusCode.UNAUTHENTICATED)
    assert re.search(r"Bearer", error.details())
