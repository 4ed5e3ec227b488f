"""Who you are to the APIs: the saved token, and the connections that carry it.

`v2mom login` mints a development token signed with the shared HS256 secret
(JWT_SECRET, the same one the services verify with). With RS256 the signing
key lives with an identity provider, so the CLI cannot mint one: put a token
from there into the token file instead.
"""

import os
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import jwt

from services.platform.api.auth import bearer_metadata, mint_token
from services.platform.api.tls import open_channel
from services.platform.core.config import AuthSettings, ConfigError, load_auth
from v2mom.v1 import checkins_pb2_grpc, common_pb2, goals_pb2, goals_pb2_grpc, notify_pb2_grpc

from .errors import ApiCallFailed, CliError

DEFAULT_ADDR = "127.0.0.1:50051"
DEFAULT_CHECKINS_ADDR = "127.0.0.1:50052"
DEFAULT_NOTIFY_ADDR = "127.0.0.1:50054"
TOKEN_TTL_SECONDS = 8 * 3600
# Just long enough to look the person up; it never leaves this process.
BOOTSTRAP_TTL_SECONDS = 60
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


def dev_auth() -> AuthSettings:
    if os.environ.get("JWT_ALGORITHM", "HS256") == "RS256":
        raise CliError(
            "`v2mom login` mints development tokens with the shared HS256 secret, but JWT_ALGORITHM is RS256 here. "
            f"Get a token from your identity provider and save it in {token_path()} (or point V2MOM_TOKEN_FILE at it).",
            exit_code=2,
        )
    try:
        return load_auth()
    except ConfigError as error:
        raise CliError(str(error), exit_code=2) from None


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

    def call(self, rpc: str, request, attempts: int = 1):
        """attempts > 1 retries a call that never arrived or whose answer was lost.

        Only for calls that are safe to repeat: reads, and writes carrying an
        idempotency key, which the API answers with the first result.
        """
        for attempt in range(1, attempts + 1):
            try:
                return getattr(self.stub, rpc)(request, metadata=self._metadata, timeout=CALL_TIMEOUT_SECONDS)
            except grpc.RpcError as error:
                if attempt == attempts or error.code() not in RETRIABLE:
                    raise ApiCallFailed(error, self.api.name, self.api.setting, self.addr) from None
                time.sleep(RETRY_PAUSE_SECONDS * attempt)

    def close(self) -> None:
        self.channel.close()


def login(addr: str, person_id: str) -> tuple[common_pb2.Person, Path, int]:
    """Looks the person up and saves a token with their roles: (person, token file, expiry)."""
    auth = dev_auth()
    bootstrap = Client(addr, mint_token(auth, "v2mom-cli-login", ["admin"], ttl_seconds=BOOTSTRAP_TTL_SECONDS))
    try:
        person = bootstrap.call("GetPerson", goals_pb2.GetPersonRequest(id=person_id))
    finally:
        bootstrap.close()
    if not person.active:
        raise CliError(f"{person.display_name} ({person.id}) is no longer active in the directory")
    token = mint_token(auth, person.id, list(person.roles), ttl_seconds=TOKEN_TTL_SECONDS)
    return person, save_token(token), int(time.time()) + TOKEN_TTL_SECONDS
