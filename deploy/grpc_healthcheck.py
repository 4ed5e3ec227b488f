"""Container healthcheck: exit 0 only when a gRPC server reports SERVING.

    python deploy/grpc_healthcheck.py 127.0.0.1:50051 [v2mom.v1.GoalService]

Uses the standard grpc.health.v1 service, which every server here registers
and which needs no token (services/platform/api/server.py). Without a
service name it asks about the server as a whole (""). During graceful
shutdown the server flips to NOT_SERVING, so the container turns unhealthy
before it stops accepting calls.

Standalone on purpose: it imports only grpcio and grpcio-health-checking, so
it runs in a fresh interpreter without loading the service's settings. When
the server serves TLS, pass --tls-ca (default: GRPC_TLS_CA, the same roots the
services trust); the certificate must name the address checked (compose's
certificate names 127.0.0.1).
"""

import argparse
import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _channel(address: str, ca_file: str) -> grpc.Channel:
    if not ca_file:
        return grpc.insecure_channel(address)
    return grpc.secure_channel(address, grpc.ssl_channel_credentials(Path(ca_file).read_bytes()))


def check(address: str, service: str = "", timeout: float = 3.0, ca_file: str = "") -> tuple[bool, str]:
    """(serving?, a one-line reason for the healthcheck log); TLS when ca_file names the roots to trust."""
    with _channel(address, ca_file) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as error:
            # NOT_FOUND: the server runs but does not know this service name.
            return False, f"{address} {service or '(server)'}: {error.code().name} {error.details() or ''}".rstrip()
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return response.status == health_pb2.HealthCheckResponse.SERVING, f"{address} {service or '(server)'}: {status}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", help="host:port of the gRPC server, e.g. 127.0.0.1:50051")
    parser.add_argument("service", nargs="?", default="", help="fully qualified service name; empty = whole server")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer (default 3)")
    parser.add_argument("--tls-ca", default=os.environ.get("GRPC_TLS_CA", ""),
                        help="PEM file of the roots to trust: check over TLS (default: GRPC_TLS_CA; unset = plaintext)")
    args = parser.parse_args(argv)
    serving, reason = check(args.address, args.service, args.timeout, args.tls_ca)
    print(reason, file=sys.stdout if serving else sys.stderr)
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(main())
