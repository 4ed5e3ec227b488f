"""Identity as a deployment has it (issue 12, finding 2): people sign in at an OIDC provider and nothing in the
system holds a key that can mint them; checkins-api calls goals-api with its own credential, which goals
accepts only for the reads it granted checkins, and which never makes anyone a person.

The old RS256 mode had every service mint its service token with the private key: with only JWT_PUBLIC_KEY
set, checkins-api failed every check-in with INTERNAL (it could not sign its call to goals)."""

from dataclasses import replace

import grpc
import jwt
import pytest

from services.checkins.api import create_server as create_checkins_server
from services.goals.api import create_server as create_goals_server
from services.platform.api.auth import ServiceCredential, bearer_metadata
from services.platform.core.config import dev_service_secret
from tests.support.checkins_requests import Code, measure_request
from tests.support.grpc_errors import expect
from tests.support.idp import AUDIENCE, ISSUER, IdentityProvider
from tests.support.services import Caller, served
from v2mom.v1 import checkins_pb2, checkins_pb2_grpc, common_pb2, goals_pb2, goals_pb2_grpc


@pytest.fixture
def idp(tmp_path):
    return IdentityProvider(tmp_path)


@pytest.fixture
def deployed(goals_world, settings, checkins_settings, idp):
    """goals-api and checkins-api over the world's databases, trusting only the provider's keys (its JWKS file):
    yields (goals stub, checkins stub)."""
    goals_settings = replace(settings, auth=idp.auth_settings(settings.auth))
    with served(create_goals_server, goals_settings) as (_, goals_port):
        checkins = replace(checkins_settings, goals_addr=f"127.0.0.1:{goals_port}",
                           auth=idp.auth_settings(checkins_settings.auth))
        with served(create_checkins_server, checkins) as (_, checkins_port), \
                grpc.insecure_channel(f"127.0.0.1:{goals_port}") as to_goals, \
                grpc.insecure_channel(f"127.0.0.1:{checkins_port}") as to_checkins:
            yield goals_pb2_grpc.GoalServiceStub(to_goals), checkins_pb2_grpc.CheckinServiceStub(to_checkins)


def test_checkins_work_with_only_the_providers_public_keys(goals_world, deployed, idp, store):
    _, checkins = deployed
    ann = Caller(checkins, bearer_metadata(idp.token("ann")))
    # Needs goals twice, with checkins' own credential: who ann is (GetPerson) and the V2MOM (GetV2MOM).
    recorded = ann.RecordMeasureCheckin(measure_request(goals_world.ann_v2mom_id, "msr-ttv", value=20))
    assert (recorded.author_id, recorded.progress_percent) == ("ann", 50)
    assert store.count() == 1


def test_a_token_claiming_admin_for_no_person_is_refused_everywhere(goals_world, deployed, idp):
    goals, checkins = deployed
    nobody = bearer_metadata(idp.token("intruder", roles=["admin"]))
    for call, request in ((Caller(goals, nobody).ListV2MOMs, goals_pb2.ListV2MOMsRequest()),
                          (Caller(checkins, nobody).ListCheckins,
                           checkins_pb2.ListCheckinsRequest(v2mom_id=goals_world.ann_v2mom_id))):
        refused = expect(call, request, Code.UNAUTHENTICATED)
        assert "'intruder' is not a person in the org directory" in refused.details()


def test_checkins_credential_is_good_for_its_granted_reads_only(goals_world, deployed, checkins_settings):
    goals, _ = deployed
    as_checkins = Caller(goals, bearer_metadata(ServiceCredential(checkins_settings.auth, "goals").token()))
    published = as_checkins.GetV2MOM(goals_pb2.GetV2MOMRequest(id=goals_world.ann_v2mom_id))
    assert published.owner_id == "ann"
    request = goals_pb2.CreateV2MOMRequest(level=common_pb2.ORG_LEVEL_INDIVIDUAL, owner_id="ann", cycle_id="FY2027")
    refused = expect(as_checkins.CreateV2MOM, request, Code.PERMISSION_DENIED)
    assert "svc:checkins may not call CreateV2MOM on goals" in refused.details()
    # As a service it is an ordinary reader: someone's draft does not exist for it.
    expect(as_checkins.GetV2MOM, goals_pb2.GetV2MOMRequest(id=goals_world.draft_v2mom_id), Code.NOT_FOUND)


def test_checkins_credential_cannot_impersonate_a_person(goals_world, deployed):
    goals, _ = deployed
    secret = dev_service_secret("checkins")  # all checkins holds: its own secret
    forgeries = {
        "a service token naming ann": {"iss": "v2mom-service", "sub": "ann", "aud": "svc:goals"},
        "a person's token signed with it": {"iss": ISSUER, "sub": "ann", "aud": AUDIENCE},
    }
    for what, claims in forgeries.items():
        token = jwt.encode({**claims, "exp": 2_000_000_000}, secret, algorithm="HS256")
        refused = expect(Caller(goals, bearer_metadata(token)).ListV2MOMs, goals_pb2.ListV2MOMsRequest(),
                         Code.UNAUTHENTICATED)
        assert "invalid token" in refused.details(), what


def test_a_credential_goals_does_not_take_is_unavailable_not_internal(goals_world, settings, checkins_settings, idp,
                                                                      store):
    # A deployment whose keys disagree: checkins signs with a secret goals-api does not know.
    goals_settings = replace(settings, auth=idp.auth_settings(settings.auth))
    with served(create_goals_server, goals_settings) as (_, goals_port):
        auth = replace(idp.auth_settings(checkins_settings.auth), service_secret="not-what-goals-knows-" + "x" * 20)
        checkins = replace(checkins_settings, goals_addr=f"127.0.0.1:{goals_port}", auth=auth)
        with served(create_checkins_server, checkins) as (_, port), grpc.insecure_channel(f"127.0.0.1:{port}") as to:
            ann = Caller(checkins_pb2_grpc.CheckinServiceStub(to), bearer_metadata(idp.token("ann")))
            refused = expect(ann.ListCheckins, checkins_pb2.ListCheckinsRequest(v2mom_id=goals_world.ann_v2mom_id),
                             Code.UNAVAILABLE)
    assert "does not accept this service's credential" in refused.details()
    assert store.count() == 0
