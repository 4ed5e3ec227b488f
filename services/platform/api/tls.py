"""gRPC over TLS: certificates from the environment, secure ports and channels.

Servers serve TLS when GRPC_TLS_CERT and GRPC_TLS_KEY name PEM files (the
certificate chain and its key); clients trust the roots in GRPC_TLS_CA. In
production mode (V2MOM_ENV=production) a server refuses to listen in
plaintext anywhere but loopback, and a client reaching a host that is not
loopback uses TLS even without GRPC_TLS_CA (the system's roots), since such a
server cannot be plaintext (docs/architecture.md, "Security").
"""

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

import grpc

from ..core.config import ConfigError, env_str, is_production


@dataclass(frozen=True)
class TlsSettings:
    cert: bytes = b""  # the server's certificate chain, PEM
    key: bytes = b""  # its private key, PEM
    ca: bytes = b""  # the roots a client trusts, PEM
    production: bool = False

    @property
    def serves_tls(self) -> bool:
        return bool(self.cert)


def _read_pem(variable: str) -> bytes:
    path = env_str(variable, "")
    if not path:
        return b""
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"{variable} names {path!r}, which cannot be read: {error.strerror}") from None


def load_tls() -> TlsSettings:
    """GRPC_TLS_CERT / GRPC_TLS_KEY (servers) and GRPC_TLS_CA (clients): paths of PEM files."""
    tls = TlsSettings(_read_pem("GRPC_TLS_CERT"), _read_pem("GRPC_TLS_KEY"), _read_pem("GRPC_TLS_CA"), is_production())
    if bool(tls.cert) != bool(tls.key):
        raise ConfigError("GRPC_TLS_CERT and GRPC_TLS_KEY go together: set both (PEM files) or neither")
    return tls


def is_loopback(addr: str) -> bool:
    """Whether host:port names only this machine; an empty host or 0.0.0.0 is every interface."""
    host = addr.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name or '': reachable from elsewhere as far as we can tell
        return False


def require_secure_listen(addr: str, tls: TlsSettings) -> None:
    """Production never serves tokens in plaintext over a network."""
    if tls.production and not tls.serves_tls and not is_loopback(addr):
        raise ConfigError(
            f"V2MOM_ENV=production refuses to serve gRPC in plaintext on {addr}: set GRPC_TLS_CERT and "
            "GRPC_TLS_KEY to the server's certificate chain and key (PEM files), or listen on loopback (127.0.0.1)"
        )


def add_port(server: grpc.Server, addr: str, tls: TlsSettings) -> int:
    """Binds addr, over TLS when a certificate is configured; returns the port (0 if it could not bind)."""
    if tls.serves_tls:
        return server.add_secure_port(addr, grpc.ssl_server_credentials([(tls.key, tls.cert)]))
    return server.add_insecure_port(addr)


def uses_tls(addr: str, tls: TlsSettings) -> bool:
    return bool(tls.ca) or (tls.production and not is_loopback(addr))


# Calls spread over every address the target resolves to (a Kubernetes headless Service's pods under
# dns:///name:port, or "ipv4:host:port,host:port"), and leave one that stopped answering; gRPC's default,
# pick_first, would put every call on one replica for the channel's whole life.
BALANCED = (("grpc.lb_policy_name", "round_robin"),)

# BALANCED, and while no replica is reachable (all restarting, say) a call waits for one, within its
# deadline, instead of failing at once; it is sent only once connected, so nothing is sent twice. For batch
# clients (the demo seeds); services fail fast instead and retry themselves (client.py), so that a caller
# hears UNAVAILABLE in under a second rather than after every deadline.
PATIENT = (("grpc.service_config", json.dumps({
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [{"name": [{}], "waitForReady": True}],
})),)


def open_channel(addr: str, tls: TlsSettings | None = None, options=None) -> grpc.Channel:
    """A channel to addr, balanced over its replicas: TLS with GRPC_TLS_CA's roots (or the system's, see the
    module doc), else plaintext."""
    tls = load_tls() if tls is None else tls
    options = [*BALANCED, *(options or ())]
    if uses_tls(addr, tls):
        return grpc.secure_channel(addr, grpc.ssl_channel_credentials(root_certificates=tls.ca or None), options)
    return grpc.insecure_channel(addr, options)
