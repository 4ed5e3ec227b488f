"""Who you are to the APIs: the saved token, and the connections that carry it.

`v2mom login <person-id>` mints a development token signed with the shared
HS256 secret (JWT_SECRET, the same one the services verify with). It says only
who you are: your roles are the directory's. In production (V2MOM_ENV=
production) or wherever tokens come from an identity provider (OIDC_*), there
are no development tokens: `v2mom login --token <JWT>` saves one from there.
"""

import os
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import jwt

from services.platform.api.auth import bearer_metadata, mint_dev_token
from services.platform.api.tls import open_channel
from services.platform.core.config import AuthSettings, ConfigError, load_auth
from v2mom.v1 import checkins_pb2_grpc, common_pb2, goals_pb2, goals_pb2_grpc, notify_pb2_grpc

from .errors import ApiCallFailed, CliError

DEFAULT_ADDR = "127.0.0.1:50051"
DEFAULT_CHECKINS_ADDR = "127.0.0.1:50052"
DEFAULT_NOTIFY_ADDR = "127.0.0.1:50054"
TOKEN_TTL_SECONDS = 8 * 3600
CALL_TIMEOUT_SECONDS = 10.0
# A call that never arrived, or whose answer was lost, is worth another try.
RETRIABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
RETRY_PAUSE_SECONDS = 0.5


@dataclass(frozen=True)
class Api:
    """One of the APIs the CLI talks to, and how people point it elsewhere."""

    name: str
    setting: str
    stub_class: type


GOALS_API = Api("goals API", "--addr / V2MOM_GOALS_ADDR", goals_pb2_grpc.GoalServiceStub)
CHECKINS_API = Api("check-ins API", "--checkins-addr / V2MOM_CHECKINS_ADDR", checkins_pb2_grpc.CheckinServiceStub)
NOTIFY_API = Api("notify API", "--notify-addr / V2MOM_NOTIFY_ADDR", notify_pb2_grpc.NotifyServiceStub)


def token_path() -> Path:
    configured = os.environ.get("V2MOM_TOKEN_FILE")
    return Path(configured) if configured else Path.home() / ".config" / "v2mom" / "token"


def save_token(token: str) -> Path:
    path = token_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Created 0600: the token speaks for its person for hours.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(token + "\n")
    return path


def load_token() -> str:
    path = token_path()
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        raise CliError("not logged in: run `v2mom login <person-id>`") from None
    except OSError as error:
        raise CliError(f"cannot read the token in {path}: {error.strerror}") from None
    if not token:
        raise CliError(f"{path} is empty: run `v2mom login <person-id>`")
    return token


def claims_of(token: str) -> dict:
    """The token's claims, unverified: the server verifies; this is only for display."""
    try:
        return jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        raise CliError(f"{token_path()} does not hold a token: run `v2mom login <person-id>`") from None


def check_environment() -> AuthSettings:
    """The identity settings, or a CliError saying what to fix (production refuses a development secret)."""
    try:
        return load_auth()
    except ConfigError as error:
        raise CliError(str(error), exit_code=2) from None


def dev_auth() -> AuthSettings:
    auth = check_environment()
    if auth.production or auth.oidc:
        raise CliError(
            "there are no development tokens here: people sign in at the identity provider. Get a token there "
            "and run `v2mom login --token <JWT>` (or save it in V2MOM_TOKEN_FILE).",
            exit_code=2,
        )
    return auth


class Client:
    """A gRPC connection to one API that sends one person's token with every call.

    A failed call raises ApiCallFailed, a grpc.RpcError that also says which
    API failed, so the message can name the right address to fix.
    """

    def __init__(self, addr: str, token: str, api: Api = GOALS_API):
        self.addr = addr
        self.api = api
        self.token = token
        try:
            # TLS with GRPC_TLS_CA's roots when set (services/platform/api/tls.py).
            self.channel = open_channel(addr)
        except ConfigError as error:  # an unreadable GRPC_TLS_CA
            raise CliError(str(error), exit_code=2) from None
        self.stub = api.stub_class(self.channel)
        self._metadata = bearer_metadata(token)

    def call(self, rpc: str, request, attempts: int = 1, timeout: float = CALL_TIMEOUT_SECONDS):
        """attempts > 1 retries a call that never arrived or whose answer was lost; ``timeout`` is each
        attempt's deadline in seconds.

        Only for calls that are safe to repeat: reads, and writes carrying an
        idempotency key, which the API answers with the first result.
        """
        for attempt in range(1, attempts + 1):
            try:
                return getattr(self.stub, rpc)(request, metadata=self._metadata, timeout=timeout)
            except grpc.RpcError as error:
                if attempt == attempts or error.code() not in RETRIABLE:
                    raise ApiCallFailed(error, self.api.name, self.api.setting, self.addr) from None
                time.sleep(RETRY_PAUSE_SECONDS * attempt)

    def stream(self, rpc: str, request, timeout: float = 600.0):
        """A server stream's responses as they arrive; ApiCallFailed when it fails, before or midway."""
        try:
            yield from getattr(self.stub, rpc)(request, metadata=self._metadata, timeout=timeout)
        except grpc.RpcError as error:
            raise ApiCallFailed(error, self.api.name, self.api.setting, self.addr) from None

    def close(self) -> None:
        self.channel.close()


def login(addr: str, person_id: str) -> tuple[common_pb2.Person, Path, int]:
    """Mints a development token for the person and checks it with goals-api: (person, token file, expiry).

    The token names the person only; goals-api says who they are (roles, active) from its directory.
    """
    token = mint_dev_token(dev_auth(), person_id, ttl_seconds=TOKEN_TTL_SECONDS)
    person = whose(addr, token, person_id)
    return person, save_token(token), int(time.time()) + TOKEN_TTL_SECONDS


def login_with_token(addr: str, token: str) -> tuple[common_pb2.Person, Path, int]:
    """Saves a token from the identity provider once goals-api accepts it: (person, token file, expiry)."""
    check_environment()
    claims = claims_of(token)
    person = whose(addr, token, str(claims.get("sub", "")))
    return person, save_token(token), int(claims.get("exp", 0))


def whose(addr: str, token: str, person_id: str) -> common_pb2.Person:
    """The person behind the token, as the directory has them; a CliError when the APIs refuse them."""
    client = Client(addr, token)
    try:
        person = client.call("GetPerson", goals_pb2.GetPersonRequest(id=person_id))
    except ApiCallFailed as error:
        if error.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            raise CliError(f"goals-api does not let {person_id} in: {error.details()}") from None
        raise
    finally:
        client.close()
    return person
