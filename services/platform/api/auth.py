"""JWT authentication for gRPC servers and clients.

Every call carries ``authorization: Bearer <JWT>`` with claims ``sub`` (the
person id) and ``roles``. The interceptor in server.py verifies it and
makes the caller available to handlers through ``current_caller()``.
"""

import contextvars
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import jwt

from ..core.config import AuthSettings
from ..core.errors import Unauthenticated


@dataclass(frozen=True)
class Caller:
    person_id: str
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    def has_role(self, role: str) -> bool:
        return role in self.roles


_current: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("caller", default=None)


def current_caller() -> Caller:
    caller = _current.get()
    if caller is None:
        raise Unauthenticated("no authenticated caller")
    return caller


def set_current_caller(caller: Caller | None) -> contextvars.Token:
    return _current.set(caller)


def reset_current_caller(token: contextvars.Token) -> None:
    _current.reset(token)


class TokenVerifier:
    """Verifies bearer tokens, remembering recent verdicts.

    A portal sends the same token on every call; verifying its signature each
    time was a tenth of a read's CPU. A remembered token is trusted for at
    most CACHE_SECONDS and never past its own expiry.
    """

    CACHE_SECONDS = 60
    CACHE_SIZE = 4096

    def __init__(self, settings: AuthSettings):
        self.settings = settings
        self._verified: OrderedDict[str, tuple[Caller, float]] = OrderedDict()
        self._lock = threading.Lock()

    def caller_from_metadata(self, metadata) -> Caller:
        header = next((value for key, value in metadata if key == "authorization"), None)
        if not header:
            raise Unauthenticated("missing authorization metadata: send 'authorization: Bearer <JWT>'")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("authorization metadata must be 'Bearer <JWT>'")
        return self.verify_cached(token.strip())

    def verify_cached(self, token: str) -> Caller:
        now = time.time()
        with self._lock:
            hit = self._verified.get(token)
            if hit is not None and hit[1] > now:
                self._verified.move_to_end(token)
                return hit[0]
        caller, expires = self._verify_with_expiry(token)
        with self._lock:
            self._verified[token] = (caller, min(expires, now + self.CACHE_SECONDS))
            while len(self._verified) > self.CACHE_SIZE:
                self._verified.popitem(last=False)
        return caller

    def verify(self, token: str) -> Caller:
        return self._verify_with_expiry(token)[0]

    def _verify_with_expiry(self, token: str) -> tuple[Caller, float]:
        try:
            claims = jwt.decode(
                token,
                self.settings.verify_key,
                algorithms=[self.settings.algorithm],
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                options={"require": ["sub", "exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except jwt.InvalidTokenError as error:
            raise Unauthenticated(f"invalid token: {error}") from None
        roles = claims.get("roles", [])
        if not isinstance(claims["sub"], str) or not isinstance(roles, list):
            raise Unauthenticated("invalid token: sub must be a string and roles a list")
        return Caller(person_id=claims["sub"], roles=frozenset(str(r) for r in roles)), float(claims["exp"])


def mint_token(settings: AuthSettings, person_id: str, roles=(), ttl_seconds: int = 8 * 3600) -> str:
    """A signed token, for the dev CLI, service-to-service calls and tests."""
    now = int(time.time())
    claims = {
        "sub": person_id,
        "roles": list(roles),
        "iat": now,
        "exp": now + ttl_seconds,
        "iss": settings.issuer,
        "aud": settings.audience,
    }
    return jwt.encode(claims, settings.signing_key, algorithm=settings.algorithm)


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)
