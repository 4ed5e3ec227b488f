"""Resolving a caller's person through goals-api's directory, for the services that do not own it.

checkins, metrics and notify ask goals-api ``GetPerson`` with their own
service credential and remember each answer for ``ttl_seconds`` (a leaver
keeps access for at most that long after HR marks them inactive). While
goals-api is unreachable the last answer about a person stands, however old;
about someone never asked, the call gets UNAVAILABLE: nobody is let in on a
guess about who they are or what they may do.
"""

import logging
from collections.abc import Callable

import grpc

from .auth import PersonRecord
from .client import ServiceClient
from ..core.cache import ExpiringCache
from ..core.config import AuthSettings
from ..core.errors import Unavailable
from ..core.validation import is_id

DEFAULT_TTL_SECONDS = 30.0
DEFAULT_MAX_ENTRIES = 10_000
GOALS_DOWN = "goals-api is unavailable, so who you are cannot be checked now; try again in a moment"
# The directory does not take this service's credential: a deployment's keys disagree; its operators must fix it.
CREDENTIAL_REFUSED = ("the directory does not accept this service's credential (SERVICE_SECRET here, SERVICE_KEYS "
                      "at goals-api), so who you are cannot be checked now; try again later")
_UNKNOWN = object()

log = logging.getLogger(__name__)


def record_of(person) -> PersonRecord:
    """A directory Person message (common_pb2.Person) as the kernel needs it."""
    return PersonRecord(frozenset(person.roles), bool(person.active))


def get_person_via(client: ServiceClient, request_type) -> Callable[[str], PersonRecord | None]:
    """A fetch of one person through the directory's GetPerson; None when the directory does not know them."""
    def fetch(person_id: str) -> PersonRecord | None:
        try:
            return record_of(client.call("GetPerson", request_type(id=person_id)))
        except grpc.RpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            log.error("the directory refused GetPerson", extra={"code": error.code().name, "reason": error.details()})
            if error.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                raise Unavailable(CREDENTIAL_REFUSED) from None
            raise Unavailable(f"the directory could not say who you are ({error.code().name}); try again later") from None
        except Unavailable:
            raise Unavailable(GOALS_DOWN) from None

    return fetch


class RemotePeople:
    """A PeopleLookup (auth.Authenticator) over a fetch, remembered in a bounded, expiring cache."""

    def __init__(self, fetch: Callable[[str], PersonRecord | None], ttl_seconds: float = DEFAULT_TTL_SECONDS,
                 max_entries: int = DEFAULT_MAX_ENTRIES):
        self.fetch = fetch
        self.cache = ExpiringCache(ttl_seconds, max_entries)

    def __call__(self, person_id: str) -> PersonRecord | None:
        if not is_id(person_id):
            return None  # not a directory id: the directory cannot know them, and would refuse to look
        try:
            return self.cache.get(person_id, lambda: self.fetch(person_id))
        except Unavailable:
            known = self.cache.last(person_id, default=_UNKNOWN)
            if known is _UNKNOWN:
                raise
            return known


def directory_people(addr: str, stub_class, request_type, auth: AuthSettings, callee: str = "goals",
                     ttl_seconds: float = DEFAULT_TTL_SECONDS) -> RemotePeople:
    """People as the directory at ``addr`` has them (its GetPerson), asked with this service's own credential."""
    client = ServiceClient(addr, stub_class, auth, callee)
    return RemotePeople(get_person_via(client, request_type), ttl_seconds)
