"""The shared gRPC bootstrap: auth, error mapping, health checking, reflection."""

from dataclasses import replace

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from services.platform.api.auth import TokenVerifier, bearer_metadata, mint_token
from services.platform.core.config import AuthSettings, ConfigError, load
from services.platform.core.errors import InvalidArgument, FieldViolation
from services.platform.api.server import ServiceBinding, create_server
from v2mom.v1 import goals_pb2, goals_pb2_grpc

AUTH = AuthSettings()


class ExplodingServicer(goals_pb2_grpc.GoalServiceServicer):
    """Stands in for a service: one RPC fails on purpose, one crashes."""

    def GetPerson(self, request, context):
        raise InvalidArgument([FieldViolation("id", "is required")])

    def GetOrgUnit(self, request, context):
        raise KeyError("secret internal detail /srv/app/x.py line 12")

    def ListCycles(self, request, context):
        from services.platform.api.auth import current_caller

        caller = current_caller()
        return goals_pb2.ListCyclesResponse(cycles=[{"id": caller.person_id + ("-admin" if caller.is_admin else "")}])


@pytest.fixture(scope="module")
def channel():
    binding = ServiceBinding(goals_pb2_grpc.add_GoalServiceServicer_to_server, ExplodingServicer(), "v2mom.v1.GoalService")
    server, port, _ = create_server("127.0.0.1:0", [binding], AUTH)
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel
    server.stop(None)


def call(channel, rpc, request, metadata=()):
    return getattr(goals_pb2_grpc.GoalServiceStub(channel), rpc)(request, metadata=metadata, timeout=5)


def test_caller_comes_from_the_token(channel):
    token = mint_token(AUTH, "ann", ["admin"])
    response = call(channel, "ListCycles", goals_pb2.ListCyclesRequest(), bearer_metadata(token))
    assert response.cycles[0].id == "ann-admin"


@pytest.mark.parametrize(
    "metadata, reason",
    [
        ((), "missing authorization"),
        ((("authorization", "Basic abc"),), "Bearer"),
        ((("authorization", "Bearer not-a-jwt"),), "invalid token"),
        ((("authorization", "Bearer " + mint_token(AUTH, "ann", ttl_seconds=-10)),), "expired"),
        ((("authorization", "Bearer " + mint_token(replace(AUTH, secret="another-secret-that-is-long-enough-1234"), "ann")),), "Signature"),
        ((("authorization", "Bearer " + mint_token(replace(AUTH, audience="elsewhere"), "ann")),), "audience"),
    ],
)
def test_bad_tokens_are_unauthenticated(channel, metadata, reason):
    with pytest.raises(grpc.RpcError) as raised:
        call(channel, "ListCycles", goals_pb2.ListCyclesRequest(), metadata)
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason.lower() in raised.value.details().lower()


def test_service_errors_carry_field_violations(channel):
    with pytest.raises(grpc.RpcError) as raised:
        call(channel, "GetPerson", goals_pb2.GetPersonRequest(), bearer_metadata(mint_token(AUTH, "ann")))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(raised.value)
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [("id", "is required")]


def test_crashes_are_internal_without_any_internal_text(channel):
    with pytest.raises(grpc.RpcError) as raised:
        call(channel, "GetOrgUnit", goals_pb2.GetOrgUnitRequest(id="x"), bearer_metadata(mint_token(AUTH, "ann")))
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in raised.value.details() and "Traceback" not in raised.value.details()
    assert "incident inc_" in raised.value.details()


def test_health_and_reflection_need_no_token(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "v2mom.v1.GoalService"):
        response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"v2mom.v1.GoalService", "grpc.health.v1.Health"} <= names


def rsa_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private.decode(), public.decode()


def test_rs256_verifies_with_the_public_key_and_refuses_hs256_forgeries():
    private, public = rsa_pair()
    production = AuthSettings(algorithm="RS256", public_key=public, private_key=private)
    verifier = TokenVerifier(replace(production, private_key=""))
    assert verifier.verify(mint_token(production, "ann")).person_id == "ann"
    # The classic confusion attack: an HS256 token signed with the public key as secret.
    forged = jwt.encode({"sub": "eve", "exp": 2**31, "iss": AUTH.issuer, "aud": AUTH.audience}, "x" * 32, algorithm="HS256")
    with pytest.raises(Exception, match="invalid token"):
        verifier.verify(forged)


def test_config_fails_fast_on_bad_values(monkeypatch):
    monkeypatch.setenv("JWT_ALGORITHM", "RS256")
    monkeypatch.delenv("JWT_PUBLIC_KEY", raising=False)
    with pytest.raises(ConfigError, match="JWT_PUBLIC_KEY"):
        load("goals")
    monkeypatch.setenv("JWT_ALGORITHM", "HS256")
    monkeypatch.setenv("RELAY_BATCH_SIZE", "lots")
    with pytest.raises(ConfigError, match="RELAY_BATCH_SIZE"):
        load("goals")


def test_remembered_tokens_still_expire():
    import time

    import jwt

    verifier = TokenVerifier(AUTH)
    # exp is whole seconds from a truncated now: a 1 s token minted late in a second lives a few ms, so 2 s.
    token = mint_token(AUTH, "ann", ttl_seconds=2)
    assert verifier.verify_cached(token).person_id == "ann"
    assert verifier.verify_cached(token).person_id == "ann"  # served from memory
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    time.sleep(max(0.0, expires - time.time()) + 0.2)
    with pytest.raises(Exception, match="expired"):
        verifier.verify_cached(token)


def test_undecodable_request_bodies_are_invalid_argument(channel):
    raw = channel.unary_unary("/v2mom.v1.GoalService/GetPerson")  # bytes in, bytes out
    for body in (b"\xff\xff\xff\xff", b"\x0a\x02\xc3\x28"):  # truncated varint; invalid UTF-8 in field 1
        with pytest.raises(grpc.RpcError) as raised:
            raw(body, metadata=bearer_metadata(mint_token(AUTH, "ann")), timeout=5)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid message" in raised.value.details()
