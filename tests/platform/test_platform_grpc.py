"""The shared gRPC bootstrap: auth, error mapping, health checking, reflection."""

from dataclasses import replace

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from services.platform.api.auth import Authenticator, PersonRecord, bearer_metadata, mint_dev_token
from services.platform.core.config import AuthSettings, ConfigError, load
from services.platform.core.errors import InvalidArgument, FieldViolation
from services.platform.api.server import ServiceBinding, create_server
from v2mom.v1 import goals_pb2, goals_pb2_grpc

AUTH = AuthSettings(service="goals")
# The directory of these tests: roles are its, never a token's.
PEOPLE = {"ann": PersonRecord(frozenset({"admin"}), True), "bob": PersonRecord(frozenset(), True)}


class ExplodingServicer(goals_pb2_grpc.GoalServiceServicer):
    """Stands in for a service: one RPC fails on purpose, one crashes."""

    def GetPerson(self, request, context):
        raise InvalidArgument([FieldViolation("id", "is required")])

    def GetOrgUnit(self, request, context):
        raise KeyError("secret internal detail /srv/app/x.py line 12")

    def ListPeople(self, request, context):
        from pymongo.errors import ServerSelectionTimeoutError

        raise ServerSelectionTimeoutError("127.0.0.1:27017: [Errno 111] Connection refused")

    def ListCycles(self, request, context):
        from services.platform.api.auth import current_caller

        caller = current_caller()
        return goals_pb2.ListCyclesResponse(cycles=[{"id": caller.person_id + ("-admin" if caller.is_admin else "")}])


@pytest.fixture(scope="module")
def channel():
    binding = ServiceBinding(goals_pb2_grpc.add_GoalServiceServicer_to_server, ExplodingServicer(), "v2mom.v1.GoalService")
    server, port, _ = create_server("127.0.0.1:0", [binding], AUTH, authenticator=Authenticator(AUTH, PEOPLE.get))
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel
    server.stop(None)


def call(channel, rpc, request, metadata=()):
    return getattr(goals_pb2_grpc.GoalServiceStub(channel), rpc)(request, metadata=metadata, timeout=5)


def test_the_caller_is_who_the_token_names_with_the_directorys_roles(channel):
    for person, roles_claimed, seen_as in (("ann", [], "ann-admin"), ("bob", ["admin"], "bob")):
        token = mint_dev_token(AUTH, person, roles=roles_claimed)
        assert call(channel, "ListCycles", goals_pb2.ListCyclesRequest(), bearer_metadata(token)).cycles[0].id == seen_as


@pytest.mark.parametrize(
    "metadata, reason",
    [
        ((), "missing authorization"),
        ((("authorization", "Basic abc"),), "Bearer"),
        ((("authorization", "Bearer not-a-jwt"),), "invalid token"),
        ((("authorization", "Bearer " + mint_dev_token(AUTH, "ann", ttl_seconds=-40)),), "expired"),  # past 30 s leeway
        ((("authorization", "Bearer " + mint_dev_token(replace(AUTH, secret="another-secret-that-is-long-enough-1234"), "ann")),), "Signature"),
        ((("authorization", "Bearer " + mint_dev_token(replace(AUTH, audience="elsewhere"), "ann")),), "audience"),
        ((("authorization", "Bearer " + mint_dev_token(AUTH, "eve", roles=["admin"])),), "not a person"),
    ],
)
def test_bad_tokens_are_unauthenticated(channel, metadata, reason):
    with pytest.raises(grpc.RpcError) as raised:
        call(channel, "ListCycles", goals_pb2.ListCyclesRequest(), metadata)
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason.lower() in raised.value.details().lower()


def test_service_errors_carry_field_violations(channel):
    with pytest.raises(grpc.RpcError) as raised:
        call(channel, "GetPerson", goals_pb2.GetPersonRequest(), bearer_metadata(mint_dev_token(AUTH, "ann")))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(raised.value)
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [("id", "is required")]


def test_crashes_are_internal_without_any_internal_text(channel):
    with pytest.raises(grpc.RpcError) as raised:
        call(channel, "GetOrgUnit", goals_pb2.GetOrgUnitRequest(id="x"), bearer_metadata(mint_dev_token(AUTH, "ann")))
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in raised.value.details() and "Traceback" not in raised.value.details()
    assert "incident inc_" in raised.value.details()


def test_a_store_that_is_away_is_unavailable_not_an_incident(channel):
    """Down, paused or electing a primary: the caller may try again (with its request id), nothing is broken."""
    with pytest.raises(grpc.RpcError) as raised:
        call(channel, "ListPeople", goals_pb2.ListPeopleRequest(), bearer_metadata(mint_dev_token(AUTH, "ann")))
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "store is unavailable" in raised.value.details() and "27017" not in raised.value.details()


def test_health_and_reflection_need_no_token(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "v2mom.v1.GoalService"):
        response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"v2mom.v1.GoalService", "grpc.health.v1.Health"} <= names


def test_config_fails_fast_on_bad_values(monkeypatch):
    monkeypatch.setenv("JWT_ALGORITHM", "RS256")  # the old RS256 mode, which could not work: it says what replaced it
    monkeypatch.delenv("JWT_PUBLIC_KEY", raising=False)
    with pytest.raises(ConfigError, match="OIDC_JWKS_URL"):
        load("goals")
    monkeypatch.setenv("JWT_ALGORITHM", "HS256")
    monkeypatch.setenv("RELAY_BATCH_SIZE", "lots")
    with pytest.raises(ConfigError, match="RELAY_BATCH_SIZE"):
        load("goals")


def test_remembered_tokens_still_expire():
    import time

    import jwt

    auth = replace(AUTH, leeway_seconds=0.0)
    authenticator = Authenticator(auth, PEOPLE.get)
    # exp is whole seconds from a truncated now: a 1 s token minted late in a second lives a few ms, so 2 s.
    token = mint_dev_token(auth, "ann", ttl_seconds=2)
    metadata, method = bearer_metadata(token), "/v2mom.v1.GoalService/ListCycles"
    assert authenticator.caller(metadata, method).person_id == "ann"
    assert authenticator.caller(metadata, method).person_id == "ann"  # served from memory
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    time.sleep(max(0.0, expires - time.time()) + 0.2)
    with pytest.raises(Exception, match="expired"):
        authenticator.caller(metadata, method)


def test_undecodable_request_bodies_are_invalid_argument(channel):
    raw = channel.unary_unary("/v2mom.v1.GoalService/GetPerson")  # bytes in, bytes out
    for body in (b"\xff\xff\xff\xff", b"\x0a\x02\xc3\x28"):  # truncated varint; invalid UTF-8 in field 1
        with pytest.raises(grpc.RpcError) as raised:
            raw(body, metadata=bearer_metadata(mint_dev_token(AUTH, "ann")), timeout=5)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid message" in raised.value.details()


def test_an_rpc_the_service_does_not_serve_yet_is_unimplemented_not_internal(channel):
    """The fuzz test found every RPC the proto declared ahead of its code (CopyV2MOM, the templates) answering
    INTERNAL: the generated servicer raises NotImplementedError."""
    with pytest.raises(grpc.RpcError) as refused:
        call(channel, "GetV2MOM", goals_pb2.GetV2MOMRequest(id="v2m_1"), bearer_metadata(mint_dev_token(AUTH, "bob")))
    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert refused.value.details() == "/v2mom.v1.GoalService/GetV2MOM is not served by this version of the service"
