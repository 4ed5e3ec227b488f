"""Calling another service's gRPC API: service token, deadlines, retries.

Only UNAVAILABLE is retried (the call never reached a working server);
every other status is the other service's answer and is returned as is.
"""

import logging
import time

import grpc

from .auth import bearer_metadata, mint_token
from ..core.config import AuthSettings
from ..core.errors import Unavailable

log = logging.getLogger(__name__)


class ServiceClient:
    def __init__(
        self,
        addr: str,
        stub_class,
        auth: AuthSettings,
        service_name: str,
        deadline_seconds: float = 2.0,
        attempts: int = 4,
        backoff_seconds: float = 0.1,
        roles: tuple[str, ...] = ("service",),
    ):
        self.addr = addr
        self.channel = grpc.insecure_channel(addr)
        self.stub = stub_class(self.channel)
        self.auth = auth
        self.identity = f"svc:{service_name}"
        self.deadline = deadline_seconds
        self.attempts = attempts
        self.backoff = backoff_seconds
        # A service acting with more than the 'service' role (a rebuild reading every draft) says so here.
        self.roles = list(roles)
        self._token = ""
        self._token_expires = 0.0

    def _metadata(self):
        # Services mint their own short-lived token; by default it carries the 'service' role only.
        if time.time() > self._token_expires - 60:
            self._token = mint_token(self.auth, self.identity, self.roles, ttl_seconds=900)
            self._token_expires = time.time() + 900
        return bearer_metadata(self._token)

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
