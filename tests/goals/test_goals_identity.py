"""Who a caller is (issue 12, finding 1): the token names a person and goals' directory gives their roles. A
token that claims admin for someone the directory does not know, or for someone who is not an admin, lists no
one's drafts."""

import grpc

from services.platform.api.auth import bearer_metadata, mint_dev_token
from tests.support.goals import ADMIN, OWNER, PEER, Client
from tests.support.grpc_errors import expect
from v2mom.v1 import goals_pb2

DRAFT = goals_pb2.V2MOM_STATE_DRAFT


def claiming_admin(goals, person_id: str) -> Client:
    return Client(goals.stub, bearer_metadata(mint_dev_token(goals.settings.auth, person_id, roles=["admin"])), person_id)


def drafts_listed(client, cycle) -> set[str]:
    response = client.ListV2MOMs(goals_pb2.ListV2MOMsRequest(cycle_id=cycle, state=DRAFT))
    return {v.id for v in response.v2moms}


def test_an_admin_claim_for_no_person_is_refused(goals, cycle):
    goals.create(cycle_id=cycle)  # olive's draft
    refused = expect(claiming_admin(goals, "nobody-at-all").ListV2MOMs, goals_pb2.ListV2MOMsRequest(cycle_id=cycle),
                     grpc.StatusCode.UNAUTHENTICATED)
    assert "'nobody-at-all' is not a person in the org directory" in refused.details()


def test_an_admin_claim_by_a_person_who_is_no_admin_counts_for_nothing(goals, cycle):
    draft = goals.create(cycle_id=cycle)
    assert drafts_listed(claiming_admin(goals, PEER), cycle) == set()  # pete is no admin: olive's draft stays hers
    assert drafts_listed(goals.client(ADMIN), cycle) == {draft.id}  # ada is one, in the directory
    assert drafts_listed(goals.client(OWNER), cycle) == {draft.id}
