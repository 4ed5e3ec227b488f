"""WithdrawSubmission over real gRPC: the owner takes a submission back to DRAFT, with its event."""

import grpc

from services.platform.bus.events import to_wire
from tests.support.goals import ADMIN, MANAGER, OWNER, PEER
from tests.support.grpc_errors import expect
from v2mom.v1 import goals_pb2

Code = grpc.StatusCode


def withdraw(goals, person, v2mom_id, **fields):
    return goals.client(person).WithdrawSubmission(goals_pb2.WithdrawSubmissionRequest(id=v2mom_id, **fields))


def test_owner_withdraws_a_submission_back_to_draft_and_the_approver_is_told(goals, cycle):
    submitted = goals.submitted(cycle_id=cycle)
    draft = withdraw(goals, OWNER, submitted.id, expected_revision=submitted.revision, reason="Adding a measure first")
    assert (draft.state, draft.revision, draft.approver_id) == (goals_pb2.V2MOM_STATE_DRAFT, submitted.revision + 1, "")
    raw = goals.raw(submitted.id)
    event = to_wire(raw["outbox"][-1])
    assert event["type"] == "v2mom_withdrawn"
    assert (event["data"]["approverId"], event["data"]["previousState"], event["data"]["reason"]) == (
        MANAGER, "V2MOM_STATE_SUBMITTED", "Adding a measure first")
    assert raw["latest_revision"]["action"] == "WITHDRAW"
    pending = goals.client(MANAGER).ListPendingApprovals(goals_pb2.ListPendingApprovalsRequest())
    assert submitted.id not in [v.id for v in pending.v2moms]
    assert goals.submit(draft).state == goals_pb2.V2MOM_STATE_SUBMITTED  # and it can go again


def test_withdraw_refuses_the_wrong_person_state_or_revision(goals, cycle):
    submitted = goals.submitted(cycle_id=cycle)
    expect(goals.client(MANAGER).WithdrawSubmission, goals_pb2.WithdrawSubmissionRequest(id=submitted.id),
           Code.PERMISSION_DENIED)
    expect(goals.client(PEER).WithdrawSubmission, goals_pb2.WithdrawSubmissionRequest(id=submitted.id), Code.NOT_FOUND)
    expect(goals.client(OWNER).WithdrawSubmission, goals_pb2.WithdrawSubmissionRequest(id=submitted.id, expected_revision=1),
           Code.ABORTED)
    expect(goals.client(OWNER).WithdrawSubmission, goals_pb2.WithdrawSubmissionRequest(id="bad id!"),
           Code.INVALID_ARGUMENT, "id")
    withdraw(goals, ADMIN, submitted.id)  # an admin may, as for every editor's action
    error = expect(goals.client(OWNER).WithdrawSubmission, goals_pb2.WithdrawSubmissionRequest(id=submitted.id),
                   Code.FAILED_PRECONDITION)
    assert "only SUBMITTED" in error.details()  # a replay after success says why, not INTERNAL
    published = goals.published(cycle_id=goals.new_cycle())
    expect(goals.client(OWNER).WithdrawSubmission, goals_pb2.WithdrawSubmissionRequest(id=published.id),
           Code.FAILED_PRECONDITION)
