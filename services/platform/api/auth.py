"""Who is calling: people, identified by their identity provider, and services, by their own credential.

Every call carries ``authorization: Bearer <JWT>``. Two kinds are accepted
(docs/architecture.md, "Security"):

- A person's token, from the OIDC identity provider (verified with its JWKS,
  jwks.py) or, outside production, an HS256 development token. It says only
  WHO the caller is (``sub``). Their roles, and whether they are still active,
  come from the org directory (goals owns it); someone the directory does not
  know is refused, whatever the token claims.
- A service's token, signed with that service's own secret for one callee
  (``aud``). It only ever yields a service principal ("svc:checkins"), never
  a person, and the callee accepts it only for the RPCs it granted that
  service (``Grant``).

The interceptor in server.py calls ``Authenticator.caller`` and makes the
result available to handlers through ``current_caller()``.
"""

import contextvars
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import jwt

from ..core.cache import ExpiringCache
from ..core.config import AuthSettings, ConfigError
from ..core.errors import PermissionDenied, Unauthenticated
from .jwks import ALGORITHMS, JwksKeys

SERVICE_ISSUER = "v2mom-service"
SERVICE_PREFIX = "svc:"
SERVICE_TOKEN_SECONDS = 300
DEV_TOKEN_SECONDS = 8 * 3600


@dataclass(frozen=True)
class Caller:
    """A person (``person_id`` is their directory id) or a service (``service`` set, ``person_id`` 'svc:<name>')."""

    person_id: str
    roles: frozenset[str]
    service: str = ""

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    @property
    def is_service(self) -> bool:
        return bool(self.service)

    def has_role(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True)
class PersonRecord:
    """What the directory says about a person: their roles, and whether they still work here."""

    roles: frozenset[str]
    active: bool


@dataclass(frozen=True)
class Grant:
    """What a callee lets one calling service do: these RPCs (method names), with these roles."""

    rpcs: frozenset[str]
    roles: frozenset[str] = frozenset()


def grant(*rpcs: str, roles: tuple[str, ...] = ()) -> Grant:
    return Grant(frozenset(rpcs), frozenset(roles))


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


def bearer_token(metadata) -> str:
    header = next((value for key, value in metadata if key == "authorization"), None)
    if not header:
        raise Unauthenticated("missing authorization metadata: send 'authorization: Bearer <JWT>'")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("authorization metadata must be 'Bearer <JWT>'")
    return token.strip()


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


# --- people's tokens -----------------------------------------------------------------------------


class UserTokens:
    """Verifies a person's token and returns its subject: the IdP's (JWKS) or, in development, HS256."""

    def __init__(self, auth: AuthSettings, keys: JwksKeys | None = None):
        self.auth = auth
        self.keys = keys or (JwksKeys(auth.jwks_url, auth.jwks_file, auth.jwks_refetch_seconds) if auth.oidc else None)
        if self.keys is None and auth.production:
            raise ConfigError("V2MOM_ENV=production needs OIDC_JWKS_URL or OIDC_JWKS_FILE")

    def subject(self, token: str) -> tuple[str, float]:
        """(sub, exp) of a valid token; Unauthenticated otherwise."""
        claims = _decode(token, *self._key_and_algorithms(token), audience=self.auth.audience,
                         issuer=self.auth.issuer, leeway=self.auth.leeway_seconds)
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise Unauthenticated("invalid token: sub must be a non-empty string")
        if subject.startswith(SERVICE_PREFIX):
            raise Unauthenticated("invalid token: a person's token cannot name a service")
        return subject, float(claims["exp"])

    def _key_and_algorithms(self, token: str):
        if self.keys is None:
            return self.auth.secret, ["HS256"]
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as error:
            raise Unauthenticated(f"invalid token: {error}") from None
        key = self.keys.key_for(header.get("kid"))
        return key, [key.algorithm_name]


def mint_dev_token(auth: AuthSettings, person_id: str, ttl_seconds: int = DEV_TOKEN_SECONDS, **claims) -> str:
    """A development token for a person (the dev CLI, the demo seed, tests); production has none."""
    if auth.production or auth.oidc:
        raise ConfigError("development tokens do not exist here: people sign in at the identity provider")
    now = int(time.time())
    body = {"sub": person_id, "iat": now, "exp": now + ttl_seconds, "iss": auth.issuer, "aud": auth.audience}
    return jwt.encode({**body, **claims}, auth.secret, algorithm="HS256")


# --- services' tokens ----------------------------------------------------------------------------


def service_audience(callee: str) -> str:
    return f"{SERVICE_PREFIX}{callee}"


class ServiceCredential:
    """This service's tokens for one callee, signed with its own secret; renewed a minute before they expire."""

    def __init__(self, auth: AuthSettings, callee: str):
        self.auth, self.callee = auth, callee
        self._token, self._expires = "", 0.0

    def token(self) -> str:
        if not self.auth.service:
            raise ConfigError("a service credential needs the calling service's name (settings.auth.service)")
        if time.time() > self._expires - 60:
            now = int(time.time())
            claims = {"iss": SERVICE_ISSUER, "sub": f"{SERVICE_PREFIX}{self.auth.service}",
                      "aud": service_audience(self.callee), "iat": now, "exp": now + SERVICE_TOKEN_SECONDS}
            self._token = jwt.encode(claims, self.auth.own_service_secret(), algorithm="HS256")
            self._expires = now + SERVICE_TOKEN_SECONDS
        return self._token


class ServiceTokens:
    """Verifies the tokens of the services this one grants something to."""

    def __init__(self, auth: AuthSettings, grants: Mapping[str, Grant]):
        self.auth, self.grants = auth, dict(grants)
        missing = [name for name in self.grants if not auth.caller_key(name)]
        if missing:
            keys = ",".join(f"{name}=<its SERVICE_SECRET>" for name in missing)
            raise ConfigError(f"{auth.service} accepts calls from {', '.join(missing)} but does not know their "
                              f"credentials: set SERVICE_KEYS={keys}")

    def service(self, token: str) -> tuple[str, float]:
        """(calling service, exp) of a valid service token; Unauthenticated otherwise."""
        subject = str(_unverified_claims(token).get("sub", ""))
        name = subject.removeprefix(SERVICE_PREFIX)
        if not subject.startswith(SERVICE_PREFIX) or name not in self.grants:
            raise Unauthenticated(f"invalid token: {self.auth.service} takes no calls from service {subject!r}")
        claims = _decode(token, self.auth.caller_key(name), ["HS256"], audience=service_audience(self.auth.service),
                         issuer=SERVICE_ISSUER, leeway=self.auth.leeway_seconds)
        if claims["sub"] != subject:
            raise Unauthenticated("invalid token: subject changed under verification")
        return name, float(claims["exp"])

    def caller(self, name: str, rpc: str) -> Caller:
        granted = self.grants[name]
        if rpc not in granted.rpcs:
            raise PermissionDenied(f"{SERVICE_PREFIX}{name} may not call {rpc} on {self.auth.service}; "
                                   f"it may call {', '.join(sorted(granted.rpcs))}")
        return Caller(f"{SERVICE_PREFIX}{name}", granted.roles | {"service"}, service=name)


def _unverified_claims(token: str) -> dict:
    try:
        return jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError as error:
        raise Unauthenticated(f"invalid token: {error}") from None


def _decode(token: str, key, algorithms: list[str], audience: str, issuer: str, leeway: float) -> dict:
    try:
        return jwt.decode(token, key, algorithms=algorithms, audience=audience, issuer=issuer, leeway=leeway,
                          options={"require": ["sub", "exp"]})
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("token expired") from None
    except jwt.InvalidTokenError as error:
        raise Unauthenticated(f"invalid token: {error}") from None


# --- both, at the server -------------------------------------------------------------------------

PeopleLookup = Callable[[str], PersonRecord | None]


class Authenticator:
    """Turns a call's metadata into a Caller: a person the directory knows and lets in, or a granted service.

    Verified tokens are remembered (a portal sends the same token on every
    call, and checking its signature each time cost a tenth of a read) for at
    most CACHE_SECONDS and never past their expiry. The directory's answer is
    not remembered here: ``people`` caches it for as long as it may be trusted.
    """

    CACHE_SECONDS = 60
    CACHE_SIZE = 4096

    def __init__(self, auth: AuthSettings, people: PeopleLookup, grants: Mapping[str, Grant] | None = None,
                 user_tokens: UserTokens | None = None):
        self.users = user_tokens or UserTokens(auth)
        self.services = ServiceTokens(auth, grants or {})
        self.people = people
        self._verified = ExpiringCache(self.CACHE_SECONDS, self.CACHE_SIZE, clock=time.time)

    def caller(self, metadata, method: str) -> Caller:
        """``method`` is the full gRPC method name, '/v2mom.v1.GoalService/GetPerson'."""
        token = bearer_token(metadata)
        kind, name = self._verified_identity(token)
        if kind == "service":
            return self.services.caller(name, method.rsplit("/", 1)[-1])
        return self._person(name)

    def _verified_identity(self, token: str) -> tuple[str, str]:
        kind, name, usable_until = self._verified.get(token, lambda: self._verify(token))
        if usable_until <= time.time():
            raise Unauthenticated("token expired")
        return kind, name

    def _verify(self, token: str) -> tuple[str, str, float]:
        if _unverified_claims(token).get("iss") == SERVICE_ISSUER:
            kind, (name, expires) = "service", self.services.service(token)
        else:
            kind, (name, expires) = "person", self.users.subject(token)
        return kind, name, expires + self.users.auth.leeway_seconds

    def _person(self, person_id: str) -> Caller:
        return person_caller(self.people, person_id)


def person_caller(people: PeopleLookup, person_id: str) -> Caller:
    """The person as the directory has them: refused when it does not know them or marks them inactive."""
    record = people(person_id)
    if record is None:
        raise Unauthenticated(f"{person_id!r} is not a person in the org directory; ask HR to add them")
    if not record.active:
        raise PermissionDenied(f"{person_id} is no longer active in the directory")
    return Caller(person_id, record.roles)
