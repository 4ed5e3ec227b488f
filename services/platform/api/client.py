"""Calling another service's gRPC API: this service's own credential, deadlines, retries.

Only UNAVAILABLE is retried (the call never reached a working server);
every other status is the other service's answer and is returned as is.
"""

import logging
import time

import grpc

from .auth import ServiceCredential, bearer_metadata
from .tls import open_channel
from ..core.config import AuthSettings
from ..core.errors import Unavailable

log = logging.getLogger(__name__)


class ServiceClient:
    def __init__(
        self,
        addr: str,
        stub_class,
        auth: AuthSettings,
        callee: str,
        deadline_seconds: float = 2.0,
        attempts: int = 4,
        backoff_seconds: float = 0.1,
    ):
        self.addr = addr
        # TLS when GRPC_TLS_CA is set, or in production off loopback (api/tls.py).
        self.channel = open_channel(addr)
        self.stub = stub_class(self.channel)
        # Signed with this service's own secret for `callee` alone: it yields "svc:<this service>" there, only
        # for the RPCs the callee grants us, and never a person (auth.py).
        self.credential = ServiceCredential(auth, callee)
        self.deadline = deadline_seconds
        self.attempts = attempts
        self.backoff = backoff_seconds

    def _metadata(self):
        return bearer_metadata(self.credential.token())

    def call(self, rpc: str, request):
        method = getattr(self.stub, rpc)
        for attempt in range(1, self.attempts + 1):
            try:
                return method(request, metadata=self._metadata(), timeout=self.deadline)
            except grpc.RpcError as error:
                retriable = error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
                if not retriable:
                    raise
                if attempt == self.attempts:
                    raise Unavailable(f"{rpc} at {self.addr} is unavailable: {error.details() or error.code().name}") from None
                log.info("retrying call", extra={"rpc": rpc, "addr": self.addr, "attempt": attempt})
                time.sleep(self.backoff * 2 ** (attempt - 1))

    def close(self) -> None:
        self.channel.close()
