"""gRPC over TLS with real certificates (trustme): servers, ServiceClient, the CLI's client, the healthcheck,
and production mode's refusal to serve plaintext off loopback."""

import os
import socket
import subprocess
import sys
from dataclasses import replace

import grpc
import pytest
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc

from deploy import grpc_healthcheck
from services.platform.api.client import ServiceClient
from services.platform.api.server import ServiceBinding, create_server
from services.platform.api.tls import TlsSettings, is_loopback, load_tls
from services.platform.core.config import AuthSettings, ConfigError
from services.platform.core.errors import Unavailable
from v2mom_cli.session import Client
from v2mom.v1 import goals_pb2, goals_pb2_grpc

AUTH = AuthSettings()


class Cycles(goals_pb2_grpc.GoalServiceServicer):
    def ListCycles(self, request, context):
        return goals_pb2.ListCyclesResponse(cycles=[{"id": "FY2027"}])


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1 signed by it, and the files GRPC_TLS_* name."""
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    files = {"cert": folder / "server.pem", "key": folder / "server.key", "ca": folder / "ca.pem"}
    files["cert"].write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(files["key"]))
    ca.cert_pem.write_to_path(str(files["ca"]))
    return files


@pytest.fixture
def tls_env(pki, monkeypatch):
    monkeypatch.setenv("GRPC_TLS_CERT", str(pki["cert"]))
    monkeypatch.setenv("GRPC_TLS_KEY", str(pki["key"]))
    monkeypatch.setenv("GRPC_TLS_CA", str(pki["ca"]))
    monkeypatch.delenv("V2MOM_ENV", raising=False)
    return pki


@pytest.fixture
def tls_server(tls_env):
    """A server started the way every api starts (create_server), with TLS taken from the environment."""
    binding = ServiceBinding(goals_pb2_grpc.add_GoalServiceServicer_to_server, Cycles(), "v2mom.v1.GoalService")
    server, port, _ = create_server("127.0.0.1:0", [binding], AUTH)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


def test_a_service_client_calls_over_tls(tls_server):
    # checkins calling goals, with checkins' own credential (health checking needs none, but it is sent).
    client = ServiceClient(tls_server, health_pb2_grpc.HealthStub, replace(AUTH, service="checkins"), "goals", attempts=1)
    try:
        response = client.call("Check", health_pb2.HealthCheckRequest(service="v2mom.v1.GoalService"))
    finally:
        client.close()
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_the_cli_client_calls_over_tls(tls_server):
    client = Client(tls_server, token="unused-by-list-cycles-here")
    try:
        # The servicer answers without looking at the caller; the interceptor still checks the token.
        with pytest.raises(grpc.RpcError) as raised:
            client.call("ListCycles", goals_pb2.ListCyclesRequest())
    finally:
        client.close()
    # UNAUTHENTICATED is the server's answer, so the TLS handshake succeeded; a failed one is UNAVAILABLE.
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_plaintext_client_is_refused(tls_server):
    with grpc.insecure_channel(tls_server) as channel:
        with pytest.raises(grpc.RpcError) as raised:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_client_that_trusts_another_ca_is_refused(tls_server, tmp_path):
    stranger = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(stranger))
    serving, reason = grpc_healthcheck.check(tls_server, timeout=3, ca_file=str(stranger))
    assert not serving and "UNAVAILABLE" in reason


def test_the_healthcheck_checks_over_tls(tls_server, tls_env):
    assert grpc_healthcheck.check(tls_server, "v2mom.v1.GoalService", timeout=3, ca_file=str(tls_env["ca"])) == (
        True, f"{tls_server} v2mom.v1.GoalService: SERVING")
    assert grpc_healthcheck.main([tls_server, "--tls-ca", str(tls_env["ca"])]) == 0
    assert grpc_healthcheck.main([tls_server, "--tls-ca", ""]) == 1  # plaintext against TLS


@pytest.mark.parametrize("addr", ["0.0.0.0:0", "[::]:0", ":50051", "goals-api:50051", "10.1.2.3:50051"])
def test_production_refuses_plaintext_off_loopback(addr):
    binding = ServiceBinding(goals_pb2_grpc.add_GoalServiceServicer_to_server, Cycles(), "v2mom.v1.GoalService")
    with pytest.raises(ConfigError) as raised:
        create_server(addr, [binding], AUTH, tls=TlsSettings(production=True))
    message = str(raised.value)
    assert "V2MOM_ENV=production refuses to serve gRPC in plaintext on " + addr in message
    assert "GRPC_TLS_CERT" in message and "GRPC_TLS_KEY" in message


def test_production_reads_the_mode_from_the_environment(monkeypatch):
    monkeypatch.setenv("V2MOM_ENV", "production")
    for name in ("GRPC_TLS_CERT", "GRPC_TLS_KEY", "GRPC_TLS_CA"):
        monkeypatch.delenv(name, raising=False)
    binding = ServiceBinding(goals_pb2_grpc.add_GoalServiceServicer_to_server, Cycles(), "v2mom.v1.GoalService")
    with pytest.raises(ConfigError, match="plaintext on 0.0.0.0:0"):
        create_server("0.0.0.0:0", [binding], AUTH)
    server, port, _ = create_server("127.0.0.1:0", [binding], AUTH)  # loopback stays allowed
    server.stop(None)
    assert port > 0


def test_production_serves_tls_off_loopback(tls_env, monkeypatch):
    monkeypatch.setenv("V2MOM_ENV", "production")
    binding = ServiceBinding(goals_pb2_grpc.add_GoalServiceServicer_to_server, Cycles(), "v2mom.v1.GoalService")
    server, port, _ = create_server("0.0.0.0:0", [binding], AUTH)
    server.start()
    try:
        assert grpc_healthcheck.check(f"127.0.0.1:{port}", timeout=3, ca_file=str(tls_env["ca"]))[0]
    finally:
        server.stop(None)


def test_in_production_a_client_speaks_tls_to_anything_off_loopback_even_without_a_ca(monkeypatch):
    """The client half of "TLS in production for anything not on loopback": a ServiceClient never sends a
    token in plaintext to a host name. Against a plaintext server reached by this machine's name the handshake
    fails; the same name answers in development, and loopback answers in production."""
    for name in ("GRPC_TLS_CERT", "GRPC_TLS_KEY", "GRPC_TLS_CA"):
        monkeypatch.delenv(name, raising=False)
    binding = ServiceBinding(goals_pb2_grpc.add_GoalServiceServicer_to_server, Cycles(), "v2mom.v1.GoalService")
    server, port, _ = create_server("0.0.0.0:0", [binding], AUTH, tls=TlsSettings())  # plaintext, every interface
    server.start()
    by_name, on_loopback = f"{socket.gethostname()}:{port}", f"127.0.0.1:{port}"

    def check(addr: str):
        client = ServiceClient(addr, health_pb2_grpc.HealthStub, replace(AUTH, service="checkins"), "goals",
                               deadline_seconds=3, attempts=1)
        try:
            return client.call("Check", health_pb2.HealthCheckRequest(service="v2mom.v1.GoalService")).status
        finally:
            client.close()

    try:
        monkeypatch.delenv("V2MOM_ENV", raising=False)
        assert check(by_name) == health_pb2.HealthCheckResponse.SERVING, "the name reaches the server"
        monkeypatch.setenv("V2MOM_ENV", "production")
        assert not is_loopback(by_name)
        with pytest.raises(Unavailable):
            check(by_name)  # TLS to a plaintext server: no handshake, nothing sent in the clear
        assert check(on_loopback) == health_pb2.HealthCheckResponse.SERVING
    finally:
        server.stop(None)


def test_half_a_certificate_and_unreadable_files_are_refused(tls_env, monkeypatch, tmp_path):
    monkeypatch.delenv("GRPC_TLS_KEY")
    with pytest.raises(ConfigError, match="GRPC_TLS_CERT and GRPC_TLS_KEY go together"):
        load_tls()
    monkeypatch.setenv("GRPC_TLS_KEY", str(tmp_path / "missing.key"))
    with pytest.raises(ConfigError, match="GRPC_TLS_KEY names .*missing.key"):
        load_tls()


@pytest.mark.parametrize("addr, loopback", [
    ("127.0.0.1:1", True), ("localhost:1", True), ("[::1]:1", True), ("127.8.0.1:1", True),
    ("0.0.0.0:1", False), ("[::]:1", False), (":1", False), ("goals-api:1", False),
])
def test_loopback(addr, loopback):
    assert is_loopback(addr) is loopback


def test_an_api_process_in_production_refuses_plaintext_off_loopback_and_says_what_to_set():
    drop = ("JWT_SECRET", "JWT_ALGORITHM", "GRPC_TLS_CERT", "GRPC_TLS_KEY", "GRPC_TLS_CA", "SERVICE_KEYS")
    env = {name: value for name, value in os.environ.items() if name not in drop}
    env.update({
        # Sound identity and broker settings, so that what stops it is the listen address.
        "V2MOM_ENV": "production", "OIDC_JWKS_URL": "https://idp.example/jwks.json", "OIDC_ISSUER": "https://idp.example",
        "SERVICE_SECRET": "5e" * 24, "AMQP_URI": "amqp://goals:not-guest@127.0.0.1:5672/",
        "GRPC_ADDR": "0.0.0.0:0",
    })
    done = subprocess.run([sys.executable, "-m", "services.goals.api"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert ("V2MOM_ENV=production refuses to serve gRPC in plaintext on 0.0.0.0:0: set GRPC_TLS_CERT and "
            "GRPC_TLS_KEY") in done.stderr
    assert "Traceback" not in done.stderr
