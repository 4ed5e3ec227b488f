"""The V2MOM lifecycle over real gRPC: DRAFT → SUBMITTED → PUBLISHED, changes, revisions, archive."""

import base64
import threading
from contextlib import nullcontext

import grpc
import pytest

from tests.support.goals import (
    ADMIN, CEO, COMPANY, DEPARTMENT, FY2027, FY2028, INDIVIDUAL, MANAGER, mask, OWNER, PEER, SKIP, TEAM, TEAMMATE,
    valid_content,
)
from tests.support.grpc_errors import expect, precondition_violations
from v2mom.v1 import goals_pb2

Code = grpc.StatusCode
DRAFT, SUBMITTED, CHANGES, PUBLISHED, ARCHIVED = (
    goals_pb2.V2MOM_STATE_DRAFT, goals_pb2.V2MOM_STATE_SUBMITTED, goals_pb2.V2MOM_STATE_CHANGES_REQUESTED,
    goals_pb2.V2MOM_STATE_PUBLISHED, goals_pb2.V2MOM_STATE_ARCHIVED,
)


def get(goals, person, v2mom_id, view=0):
    return goals.client(person).GetV2MOM(goals_pb2.GetV2MOMRequest(id=v2mom_id, view=view))


def revisions(goals, person, v2mom_id, page_size=0, page_token=""):
    return goals.client(person).ListRevisions(
        goals_pb2.ListRevisionsRequest(v2mom_id=v2mom_id, page_size=page_size, page_token=page_token)
    )


# --- the happy paths --------------------------------------------------------------------


def test_draft_submit_publish(goals, cycle):
    v2mom = goals.create(cycle_id=cycle)
    assert (v2mom.state, v2mom.revision, v2mom.published_revision) == (DRAFT, 1, 0)
    assert v2mom.owner_id == OWNER and v2mom.org_unit_id == "platform" and v2mom.cycle_id == cycle
    assert v2mom.HasField("create_time") and not v2mom.HasField("publish_time")
    assert all(v.id for v in v2mom.content.values) and all(m.id for m in v2mom.content.methods)

    submitted = goals.submit(v2mom)
    assert (submitted.state, submitted.revision, submitted.approver_id) == (SUBMITTED, 2, MANAGER)
    assert submitted.HasField("submit_time")

    published = goals.approve(v2mom, MANAGER)
    assert (published.state, published.revision, published.published_revision) == (PUBLISHED, 3, 3)
    assert published.HasField("publish_time")
    seen_by_peer = get(goals, PEER, v2mom.id)
    assert seen_by_peer.state == PUBLISHED and seen_by_peer.content == published.content


def test_changes_requested_then_edit_resubmit_publish(goals, cycle):
    v2mom = goals.submitted(cycle_id=cycle)
    manager = goals.client(MANAGER)
    expect(manager.RequestChanges, goals_pb2.RequestChangesRequest(id=v2mom.id), Code.INVALID_ARGUMENT, "reason")
    expect(manager.RequestChanges, goals_pb2.RequestChangesRequest(id=v2mom.id, reason="   "), Code.INVALID_ARGUMENT, "reason")

    sent_back = manager.RequestChanges(goals_pb2.RequestChangesRequest(id=v2mom.id, reason="Add a retention measure"))
    assert sent_back.state == CHANGES
    assert sent_back.changes_requested_reason == "Add a retention measure"
    # Nothing to approve while the owner works on it.
    expect(manager.ApproveV2MOM, goals_pb2.ApproveV2MOMRequest(id=v2mom.id), Code.FAILED_PRECONDITION)

    edited = goals.edit(v2mom, vision="Cut invoice errors from 4% to 1% and keep churn under 2% by Q4")
    assert edited.state == CHANGES and edited.revision == sent_back.revision + 1  # no reason needed: never published
    resubmitted = goals.submit(v2mom)
    assert resubmitted.state == SUBMITTED
    assert resubmitted.changes_requested_reason == ""  # "set while CHANGES_REQUESTED" only
    published = goals.approve(v2mom, MANAGER)
    assert published.state == PUBLISHED and "churn" in published.content.vision


def test_editing_published_opens_a_draft_and_peers_keep_the_published_version(goals, cycle):
    published = goals.published(cycle_id=cycle)
    old_vision = published.content.vision

    draft = goals.edit(published, vision="Cut invoice errors from 4% to 0.5% by December 2026", reason="new target")
    assert (draft.state, draft.revision, draft.published_revision) == (DRAFT, published.revision + 1, published.revision)
    assert not draft.showing_published

    peer_view = get(goals, PEER, published.id)
    assert peer_view.content.vision == old_vision
    assert (peer_view.state, peer_view.revision, peer_view.showing_published) == (PUBLISHED, published.revision, True)
    assert peer_view.approver_id == "" and peer_view.changes_requested_reason == ""
    # The owner sees the draft, and can still ask for the published version.
    assert get(goals, OWNER, published.id).content.vision.endswith("0.5% by December 2026")
    assert get(goals, OWNER, published.id, view=goals_pb2.V2MOM_VIEW_PUBLISHED).content.vision == old_vision
    expect(goals.client(PEER).GetV2MOM, goals_pb2.GetV2MOMRequest(id=published.id, view=goals_pb2.V2MOM_VIEW_WORKING),
           Code.PERMISSION_DENIED)

    goals.submit(published)
    sent_back = goals.client(MANAGER).RequestChanges(goals_pb2.RequestChangesRequest(id=published.id, reason="too bold"))
    assert get(goals, PEER, published.id).content.vision == old_vision  # still, while changes are requested
    assert sent_back.published_revision == published.revision

    goals.edit(published, vision="Cut invoice errors from 4% to 0.8% by December 2026", reason="manager feedback")
    goals.submit(published)
    approved = goals.approve(published, MANAGER)
    assert approved.published_revision == approved.revision > published.revision
    now_public = get(goals, PEER, published.id)
    assert now_public.content.vision.endswith("0.8% by December 2026") and now_public.revision == approved.revision


def test_change_reason_required_only_after_first_publication(goals, cycle):
    v2mom = goals.create(cycle_id=cycle)
    goals.edit(v2mom, title="No reason needed in a first draft")
    goals.submit(v2mom)
    goals.approve(v2mom, MANAGER)
    owner = goals.client(OWNER)
    for reason in ("", "  \n "):
        request = goals_pb2.UpdateV2MOMRequest(
            v2mom=goals_pb2.V2MOM(id=v2mom.id, content=goals_pb2.V2MOMContent(title="New title")),
            update_mask=mask("content.title"), change_reason=reason,
        )
        expect(owner.UpdateV2MOM, request, Code.INVALID_ARGUMENT, "change_reason")
    assert get(goals, OWNER, v2mom.id).state == PUBLISHED  # the refused edits opened no draft
    goals.edit(v2mom, title="New title", reason="renamed with the team")
    # Still required on the second draft: the V2MOM has been published once.
    expect(owner.UpdateV2MOM, goals_pb2.UpdateV2MOMRequest(
        v2mom=goals_pb2.V2MOM(id=v2mom.id, content=goals_pb2.V2MOMContent(title="Again")), update_mask=mask("content.title"),
    ), Code.INVALID_ARGUMENT, "change_reason")


def test_an_edit_that_changes_nothing_is_not_a_revision(goals, cycle):
    v2mom = goals.create(cycle_id=cycle)
    same = goals.edit(v2mom, title=v2mom.content.title)
    assert same.revision == v2mom.revision
    assert len(revisions(goals, OWNER, v2mom.id).revisions) == 1


# --- revisions -----------------------------------------------------------------------------------


def test_revisions_record_actor_time_reason_and_changed_paths(goals, cycle):
    v2mom = goals.create(cycle_id=cycle)
    goals.edit(v2mom, title="Renamed", vision="Cut invoice errors from 4% to 2% by June 2026")
    goals.submit(v2mom)
    goals.client(MANAGER).RequestChanges(goals_pb2.RequestChangesRequest(id=v2mom.id, reason="one more value"))
    goals.edit(v2mom, title="Renamed again")
    goals.submit(v2mom)
    goals.client(MANAGER).ApproveV2MOM(goals_pb2.ApproveV2MOMRequest(id=v2mom.id, comment="great"))
    goals.edit(v2mom, title="Post-publication", reason="the team picked a better name")
    goals.client(OWNER).ArchiveV2MOM(goals_pb2.ArchiveV2MOMRequest(id=v2mom.id, reason="reorg"))

    history = revisions(goals, SKIP, v2mom.id).revisions  # the manager chain may read history
    summary = [(r.revision, r.action, r.actor_id, r.reason, list(r.changed_paths), r.state) for r in history]
    assert summary == [
        (1, "CREATE", OWNER, "", ["content"], DRAFT),
        (2, "UPDATE", OWNER, "", ["content.title", "content.vision"], DRAFT),
        (3, "SUBMIT", OWNER, "", [], SUBMITTED),
        (4, "REQUEST_CHANGES", MANAGER, "one more value", [], CHANGES),
        (5, "UPDATE", OWNER, "", ["content.title"], CHANGES),
        (6, "SUBMIT", OWNER, "", [], SUBMITTED),
        (7, "APPROVE", MANAGER, "great", [], PUBLISHED),
        (8, "UPDATE", OWNER, "the team picked a better name", ["content.title"], DRAFT),
        (9, "ARCHIVE", OWNER, "reorg", [], ARCHIVED),
    ]
    times = [r.time.ToDatetime() for r in history]
    assert all(r.HasField("time") for r in history) and times == sorted(times)
    assert history[0].content.title == v2mom.content.title and history[7].content.title == "Post-publication"


def test_revisions_page_through_without_gaps_or_duplicates(goals, cycle):
    v2mom = goals.create(cycle_id=cycle)
    for i in range(6):
        goals.edit(v2mom, title=f"Title {i}")
    seen, token, pages = [], "", 0
    while True:
        page = revisions(goals, OWNER, v2mom.id, page_size=3, page_token=token)
        assert len(page.revisions) <= 3
        seen += [r.revision for r in page.revisions]
        token, pages = page.next_page_token, pages + 1
        if not token:
            break
    assert seen == list(range(1, 8)) and pages == 3
    for token in ("bm90LWEtcmV2aXNpb24", base64.urlsafe_b64encode(b"not-a-revision").decode()):
        expect(goals.client(OWNER).ListRevisions, goals_pb2.ListRevisionsRequest(v2mom_id=v2mom.id, page_token=token),
               Code.INVALID_ARGUMENT, "page_token")


# --- ARCHIVED is terminal ----------------------------------------------------------------------------


def test_archived_is_terminal(goals, cycle):
    v2mom = goals.submitted(cycle_id=cycle)
    archived = goals.client(OWNER).ArchiveV2MOM(goals_pb2.ArchiveV2MOMRequest(id=v2mom.id, reason="team dissolved"))
    assert archived.state == ARCHIVED and archived.HasField("archive_time")
    owner, admin, manager = goals.client(OWNER), goals.client(ADMIN), goals.client(MANAGER)
    attempts = [
        (owner.UpdateV2MOM, goals_pb2.UpdateV2MOMRequest(
            v2mom=goals_pb2.V2MOM(id=v2mom.id, content=goals_pb2.V2MOMContent(title="x")), update_mask=mask("content.title"))),
        (admin.UpdateV2MOM, goals_pb2.UpdateV2MOMRequest(
            v2mom=goals_pb2.V2MOM(id=v2mom.id, parent_id=""), update_mask=mask("parent_id"), change_reason="x")),
        (owner.SubmitV2MOM, goals_pb2.SubmitV2MOMRequest(id=v2mom.id)),
        (manager.ApproveV2MOM, goals_pb2.ApproveV2MOMRequest(id=v2mom.id)),
        (admin.ApproveV2MOM, goals_pb2.ApproveV2MOMRequest(id=v2mom.id)),
        (manager.RequestChanges, goals_pb2.RequestChangesRequest(id=v2mom.id, reason="why")),
        (owner.ArchiveV2MOM, goals_pb2.ArchiveV2MOMRequest(id=v2mom.id)),
        (admin.ArchiveV2MOM, goals_pb2.ArchiveV2MOMRequest(id=v2mom.id)),
    ]
    before = goals.raw(v2mom.id)
    for call, request in attempts:
        expect(call, request, Code.FAILED_PRECONDITION)
    assert goals.raw(v2mom.id) == before


def test_archived_published_v2mom_stays_readable_for_everyone(goals, cycle):
    v2mom = goals.published(cycle_id=cycle)
    goals.client(OWNER).ArchiveV2MOM(goals_pb2.ArchiveV2MOMRequest(id=v2mom.id))
    seen = get(goals, PEER, v2mom.id)
    assert seen.state == ARCHIVED and seen.content == v2mom.content


# --- who approves ---------------------------------------------------------------------------------------


def test_approver_is_the_owners_manager(goals, cycle):
    team = goals.create(owner="lee", level=TEAM, org_unit_id="platform", cycle_id=cycle, content=valid_content("lee"))
    assert goals.submit(team).approver_id == SKIP  # lee's manager
    expect(goals.client(MANAGER).ApproveV2MOM, goals_pb2.ApproveV2MOMRequest(id=team.id), Code.PERMISSION_DENIED)
    expect(goals.client(CEO).ApproveV2MOM, goals_pb2.ApproveV2MOMRequest(id=team.id), Code.PERMISSION_DENIED)
    assert goals.approve(team, SKIP).state == PUBLISHED

    individual = goals.submitted(cycle_id=cycle)
    expect(goals.client(SKIP).ApproveV2MOM, goals_pb2.ApproveV2MOMRequest(id=individual.id), Code.PERMISSION_DENIED)
    expect(goals.client(SKIP).RequestChanges, goals_pb2.RequestChangesRequest(id=individual.id, reason="x"),
           Code.PERMISSION_DENIED)
    assert goals.approve(individual, MANAGER).state == PUBLISHED


def test_company_v2mom_is_approved_by_an_admin(goals, cycle):
    company = goals.create(owner=CEO, level=COMPANY, org_unit_id="acme", cycle_id=cycle, content=valid_content(CEO))
    assert company.owner_id == CEO and company.org_unit_id == "acme" and company.level == COMPANY
    submitted = goals.submit(company)
    assert submitted.approver_id == ""  # any admin
    # A department head is not in the CEO's chain: the pending company V2MOM does not exist for them.
    expect(goals.client(SKIP).ApproveV2MOM, goals_pb2.ApproveV2MOMRequest(id=company.id), Code.NOT_FOUND)
    assert goals.approve(company, ADMIN).state == PUBLISHED


def test_someone_without_a_manager_is_approved_by_an_admin(goals, cycle):
    mine = goals.submitted(owner=CEO, cycle_id=cycle, content=valid_content(CEO))  # the CEO's individual V2MOM
    assert mine.approver_id == ""
    admin_pending = goals.client(ADMIN).ListPendingApprovals(goals_pb2.ListPendingApprovalsRequest(page_size=200))
    assert mine.id in {v.id for v in admin_pending.v2moms}
    assert goals.approve(mine, ADMIN).state == PUBLISHED


def test_nobody_approves_their_own(goals, cycle):
    # The CEO is an admin too here: admin rights do not let anyone approve their own V2MOM.
    company = goals.create(owner=CEO, level=COMPANY, org_unit_id="acme", cycle_id=cycle, content=valid_content(CEO))
    goals.submit(company)
    with goals.roles(CEO, ["admin"]) as ceo_admin:
        expect(ceo_admin.ApproveV2MOM, goals_pb2.ApproveV2MOMRequest(id=company.id), Code.PERMISSION_DENIED)
        expect(ceo_admin.RequestChanges, goals_pb2.RequestChangesRequest(id=company.id, reason="self"),
               Code.PERMISSION_DENIED)

    mine = goals.create(owner=ADMIN, cycle_id=cycle, content=valid_content(ADMIN))
    goals.submit(mine)
    expect(goals.client(ADMIN).ApproveV2MOM, goals_pb2.ApproveV2MOMRequest(id=mine.id), Code.PERMISSION_DENIED)
    assert goals.approve(mine, CEO).state == PUBLISHED  # ada's manager


def test_pending_approvals_for_manager_and_admins(isolated_goals):
    goals = isolated_goals
    olive = goals.submitted(cycle_id=FY2027)
    otto = goals.submitted(owner=TEAMMATE, cycle_id=FY2027, content=valid_content(TEAMMATE))
    goals.create(owner="pete", cycle_id=FY2027, content=valid_content("pete"))  # a draft: not pending
    team = goals.submitted(owner="lee", level=TEAM, org_unit_id="platform", cycle_id=FY2027, content=valid_content("lee"))
    company = goals.submitted(owner=CEO, level=COMPANY, org_unit_id="acme", cycle_id=FY2027, content=valid_content(CEO))

    def pending(person, roles=None):
        with goals.roles(person, roles) if roles else nullcontext(goals.client(person)) as client:
            return {v.id for v in client.ListPendingApprovals(goals_pb2.ListPendingApprovalsRequest()).v2moms}

    assert pending(MANAGER) == {olive.id, otto.id}
    assert pending(SKIP) == {team.id}
    assert pending(CEO) == set()  # the company V2MOM waits for admins, and it is the CEO's own
    assert pending(ADMIN) == {company.id}
    assert pending(CEO, roles=["admin"]) == set()  # never one's own
    assert pending(PEER) == set()
    assert pending(OWNER) == set()

    goals.approve(olive, MANAGER)
    assert pending(MANAGER) == {otto.id}
    page = goals.client(MANAGER).ListPendingApprovals(goals_pb2.ListPendingApprovalsRequest(page_size=1))
    assert len(page.v2moms) == 1 and page.next_page_token == ""


def test_pending_approvals_paging(isolated_goals):
    goals = isolated_goals
    ids = {goals.submitted(cycle_id=goals.new_cycle()).id for _ in range(5)}
    seen, token = [], ""
    while True:
        page = goals.client(MANAGER).ListPendingApprovals(goals_pb2.ListPendingApprovalsRequest(page_size=2, page_token=token))
        seen += [v.id for v in page.v2moms]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))


# --- submission checks --------------------------------------------------------------------------------------


def test_submission_refused_with_lint_errors(goals, cycle):
    content = valid_content()
    content.vision = ""
    content.methods[1].owner_id = ""
    content.methods[2].ClearField("due_date")
    content.measures[0].ClearField("baseline")
    v2mom = goals.create(cycle_id=cycle, content=content)
    before = goals.raw(v2mom.id)
    error = expect(goals.client(OWNER).SubmitV2MOM, goals_pb2.SubmitV2MOMRequest(id=v2mom.id), Code.FAILED_PRECONDITION)
    subjects = {(kind, subject) for kind, subject, _ in precondition_violations(error)}
    assert subjects == {
        ("vision.missing", "content.vision"),
        ("method.missing_owner", "content.methods[1].owner_id"),
        ("method.missing_due_date", "content.methods[2].due_date"),
        ("measure.missing_baseline", "content.measures[0].baseline"),
    }
    assert goals.raw(v2mom.id) == before  # still a draft, no event

    # Warnings alone do not block: two values instead of 3-5, vague wording.
    warned = valid_content()
    del warned.values[2]
    for method in warned.methods:
        method.value_ids[:] = [v for v in method.value_ids if v != "val-openness"] or ["val-customers"]
    warned.vision = "Make billing better"
    fine = goals.create(owner=TEAMMATE, cycle_id=cycle, content=warned)
    assert goals.submit(fine).state == SUBMITTED


def test_submit_only_from_draft_or_changes_requested(goals, cycle):
    v2mom = goals.submitted(cycle_id=cycle)
    expect(goals.client(OWNER).SubmitV2MOM, goals_pb2.SubmitV2MOMRequest(id=v2mom.id), Code.FAILED_PRECONDITION)
    goals.approve(v2mom, MANAGER)
    error = expect(goals.client(OWNER).SubmitV2MOM, goals_pb2.SubmitV2MOMRequest(id=v2mom.id), Code.FAILED_PRECONDITION)
    assert precondition_violations(error)[0][:2] == ("STATE", v2mom.id)
    # Approve and request changes need a pending submission.
    expect(goals.client(MANAGER).ApproveV2MOM, goals_pb2.ApproveV2MOMRequest(id=v2mom.id), Code.FAILED_PRECONDITION)
    expect(goals.client(MANAGER).RequestChanges, goals_pb2.RequestChangesRequest(id=v2mom.id, reason="x"),
           Code.FAILED_PRECONDITION)


def test_a_submitted_v2mom_cannot_be_edited(goals, cycle):
    v2mom = goals.submitted(cycle_id=cycle)
    request = goals_pb2.UpdateV2MOMRequest(
        v2mom=goals_pb2.V2MOM(id=v2mom.id, content=goals_pb2.V2MOMContent(title="sneaky")), update_mask=mask("content.title"))
    expect(goals.client(OWNER).UpdateV2MOM, request, Code.FAILED_PRECONDITION)


# --- slots and idempotent create -------------------------------------------------------------------------------


def test_one_v2mom_per_slot_until_archived(goals, cycle):
    first = goals.create(cycle_id=cycle)
    expect(goals.client(OWNER).CreateV2MOM, goals_pb2.CreateV2MOMRequest(
        level=INDIVIDUAL, cycle_id=cycle, content=valid_content()), Code.ALREADY_EXISTS)
    # The admin creating it for olive hits the same slot.
    expect(goals.client(ADMIN).CreateV2MOM, goals_pb2.CreateV2MOMRequest(
        level=INDIVIDUAL, owner_id=OWNER, cycle_id=cycle), Code.ALREADY_EXISTS)
    # Other slots are free: another cycle, another person, the team level.
    goals.create(cycle_id=goals.new_cycle())
    goals.create(owner=TEAMMATE, cycle_id=cycle, content=valid_content(TEAMMATE))
    team = goals.create(owner="lee", level=TEAM, org_unit_id="platform", cycle_id=cycle, content=valid_content("lee"))
    expect(goals.client(ADMIN).CreateV2MOM, goals_pb2.CreateV2MOMRequest(
        level=TEAM, org_unit_id="platform", cycle_id=cycle), Code.ALREADY_EXISTS)
    assert team.owner_id == "lee"

    goals.client(OWNER).ArchiveV2MOM(goals_pb2.ArchiveV2MOMRequest(id=first.id))
    second = goals.create(cycle_id=cycle)
    assert second.id != first.id and second.state == DRAFT


def test_create_request_id_replay_returns_the_same_v2mom(goals, cycle):
    owner = goals.client(OWNER)
    request = goals_pb2.CreateV2MOMRequest(level=INDIVIDUAL, cycle_id=cycle,
                                           content=valid_content(), request_id="req-7f3a")
    first = owner.CreateV2MOM(request)
    again = owner.CreateV2MOM(request)
    assert again.id == first.id and again.revision == 1
    assert goals.v2mom_count(cycle_id=cycle) == 1
    assert len(goals.raw(first.id)["outbox"]) == 1  # one v2mom_created, not two
    # Replayed after the V2MOM moved on: still the same one, as it is now.
    goals.submit(first)
    assert owner.CreateV2MOM(request).id == first.id
    # The key belongs to its caller: the same key from someone else is a new request.
    other = goals.client(TEAMMATE).CreateV2MOM(goals_pb2.CreateV2MOMRequest(
        level=INDIVIDUAL, cycle_id=cycle, request_id="req-7f3a"))
    assert other.id != first.id and other.owner_id == TEAMMATE


def test_concurrent_replays_of_one_create_make_one_v2mom(goals, cycle):
    owner = goals.client(OWNER)
    request = goals_pb2.CreateV2MOMRequest(level=INDIVIDUAL, cycle_id=cycle,
                                           content=valid_content(), request_id="retry-storm")
    results, errors = [], []

    def call():
        try:
            results.append(owner.CreateV2MOM(request).id)
        except grpc.RpcError as error:
            errors.append(error.code())

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(set(results)) == 1
    assert goals.v2mom_count(cycle_id=cycle) == 1


@pytest.mark.parametrize("level, unit, leader", [(TEAM, "platform", "lee"), (DEPARTMENT, "eng", SKIP), (COMPANY, "acme", CEO)])
def test_unit_v2mom_is_owned_by_the_units_leader(goals, cycle, level, unit, leader):
    made = goals.create(owner=leader, level=level, org_unit_id=unit, cycle_id=cycle, content=valid_content(leader),
                        as_person=ADMIN)
    assert (made.owner_id, made.org_unit_id, made.level) == (leader, unit, level)
    # Only the leader or an admin may create it.
    expect(goals.client(TEAMMATE).CreateV2MOM, goals_pb2.CreateV2MOMRequest(
        level=level, org_unit_id=unit, cycle_id=goals.new_cycle()), Code.PERMISSION_DENIED)


def test_list_cycles_and_directory_reads(goals):
    client = goals.client(PEER)
    cycles = {c.id: c for c in client.ListCycles(goals_pb2.ListCyclesRequest()).cycles}
    assert cycles[FY2027].start_date.year == 2026 and cycles[FY2027].end_date.month == 1
    assert FY2028 in cycles
    person = client.GetPerson(goals_pb2.GetPersonRequest(id=OWNER))
    assert (person.manager_id, person.org_unit_id, person.active) == (MANAGER, "platform", True)
    unit = client.GetOrgUnit(goals_pb2.GetOrgUnitRequest(id="platform"))
    assert (unit.parent_id, unit.leader_id, unit.level) == ("eng", "lee", TEAM)
    expect(client.GetPerson, goals_pb2.GetPersonRequest(id="nobody"), Code.NOT_FOUND)
    expect(client.GetOrgUnit, goals_pb2.GetOrgUnitRequest(id="nowhere"), Code.NOT_FOUND)
