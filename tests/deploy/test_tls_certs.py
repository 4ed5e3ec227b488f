"""deploy/dev/tls_certs.py: the certificates docker compose serves gRPC over TLS with, used for real."""

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from deploy import grpc_healthcheck
from deploy.dev import tls_certs
from services.platform.api.server import create_server
from services.platform.api.tls import TlsSettings
from services.platform.core.config import AuthSettings


def test_a_server_with_the_development_certificates_is_reached_by_name_and_on_loopback(tmp_path):
    assert tls_certs.write(tmp_path)
    files = {name: (tmp_path / name).read_bytes() for name in ("ca.pem", "server.pem", "server.key")}
    tls = TlsSettings(cert=files["server.pem"], key=files["server.key"], ca=files["ca.pem"], production=True)
    server, port, _ = create_server("0.0.0.0:0", [], AuthSettings(), tls=tls)
    server.start()
    try:
        # As the containers' healthchecks do, over loopback.
        assert grpc_healthcheck.check(f"127.0.0.1:{port}", ca_file=str(tmp_path / "ca.pem"), timeout=3)[0]
        # As checkins-api reaches goals-api, by its compose name.
        credentials = grpc.ssl_channel_credentials(files["ca.pem"])
        options = [("grpc.ssl_target_name_override", "goals-api")]
        with grpc.secure_channel(f"127.0.0.1:{port}", credentials, options) as channel:
            response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
        assert response.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        server.stop(None)
    assert oct((tmp_path / "server.key").stat().st_mode & 0o777) == "0o600"


def test_existing_certificates_are_kept(tmp_path):
    assert tls_certs.write(tmp_path)
    before = (tmp_path / "server.pem").read_bytes()
    assert not tls_certs.write(tmp_path)
    assert (tmp_path / "server.pem").read_bytes() == before
