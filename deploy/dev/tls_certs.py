"""Development certificates for gRPC over TLS in docker compose: a CA and one server certificate.

    python -m deploy.dev.tls_certs <folder> [--owner UID]

Writes ca.pem (what clients trust: GRPC_TLS_CA), server.pem and server.key
(GRPC_TLS_CERT and GRPC_TLS_KEY) unless they exist already, so restarting the
stack keeps its certificates. The server certificate names every api as
compose's network does (goals-api, checkins-api, ...) and 127.0.0.1, where the
containers' healthchecks connect. For production, mount certificates from
your own CA at the same paths instead.
"""

import argparse
import datetime
import ipaddress
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HOSTS = ("goals-api", "checkins-api", "metrics-api", "notify-api", "localhost")
ADDRESSES = ("127.0.0.1",)
VALID_DAYS = 825  # the longest validity clients accept for a server certificate


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "V2MOM development"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: x509.Name, issuer: x509.Name, key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=VALID_DAYS)))


def issue() -> tuple[bytes, bytes, bytes]:
    """(CA certificate, server certificate, server key) as PEM."""
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("V2MOM development CA")
    ca = (_builder(ca_name, ca_name, ca_key)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    names = [x509.DNSName(host) for host in HOSTS] + [x509.IPAddress(ipaddress.ip_address(a)) for a in ADDRESSES]
    server = (_builder(_name(HOSTS[0]), ca_name, server_key)
              .add_extension(x509.SubjectAlternativeName(names), critical=False)
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .sign(ca_key, hashes.SHA256()))
    key = server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())
    pem = serialization.Encoding.PEM
    return ca.public_bytes(pem), server.public_bytes(pem), key


def write(folder: Path, owner: int | None = None) -> bool:
    """Writes the three files unless all exist; True if it wrote them. ``owner``: who may read the key."""
    files = {name: folder / name for name in ("ca.pem", "server.pem", "server.key")}
    if all(path.exists() for path in files.values()):
        return False
    folder.mkdir(parents=True, exist_ok=True)
    for path, content in zip(files.values(), issue()):
        path.write_bytes(content)
        path.chmod(0o644)
    files["server.key"].chmod(0o600)
    if owner is not None:  # the services run as a user of their own (deploy/Dockerfile)
        os.chown(files["server.key"], owner, owner)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--owner", type=int, help="uid (and gid) to own server.key")
    args = parser.parse_args(argv)
    wrote = write(args.folder, args.owner)
    print(f"{args.folder}: {'new development certificates' if wrote else 'certificates kept'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
