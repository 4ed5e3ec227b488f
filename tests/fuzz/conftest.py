"""The whole system for the fuzz test, as `make run` has it: goals-api over the demo organisation, and
checkins-api, metrics-api and notify-api beside it, all in process, each on a database of its own in the wire
server's SQLite engine (which refuses queries the memory engine takes); ``system`` calls any RPC by name as
one of a few people of the directory."""

import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field, replace

import grpc
import pymongo
import pytest

from services.platform.api.auth import bearer_metadata
from services.platform.core.config import load
from tests.support.fuzz import Pool, Rpc, base_requests, field_names, harvest, issued, rpcs
from tests.support.services import served, token

# Who calls: people of the seeded directory (deploy/demo/goals/org.yaml), so the test needs nothing from a
# token but who the caller is. A stranger is someone with no line to the Platform team's V2MOMs.
PEOPLE = {"admin": "kofi.mensah", "manager": "priya.raman", "member": "hannah.berg", "stranger": "omar.haddad"}
GHOST = "nobody.known"
DIRECTORY = "v2mom.v1.DirectoryService"  # writes the directory the callers come from: fuzzed last  # a well-signed token of someone who is not in the directory


@dataclass
class System:
    """Channels to the four APIs by service name (``name@api`` for a service more than one serves), tokens by
    role, and the values responses issued (``pool``)."""

    channels: dict[str, grpc.Channel]  # by Rpc.served_at
    metadata: dict[str, tuple]
    apis: dict[str, str]  # every api's address by its name ("checkins-api")
    addresses: dict[str, str]  # the address behind each channel
    pool: Pool = field(default_factory=Pool)

    def call(self, rpc: Rpc, role: str, request, timeout: float = 30):
        """The response, or the grpc.RpcError the API answered with."""
        channel = self.channels[rpc.served_at]
        kind = channel.unary_stream if rpc.streams else channel.unary_unary
        method = kind(rpc.path, request_serializer=type(request).SerializeToString,
                      response_deserializer=rpc.response_class().FromString)
        try:
            answer = method(request, metadata=self.metadata[role], timeout=timeout)
            return list(answer) if rpc.streams else answer  # a stream read whole: its status comes at its end
        except grpc.RpcError as error:
            return error


def _roles(db) -> dict[str, tuple]:
    """Metadata per role: a token that says who the caller is (the directory says what they may do);
    "anonymous" carries none, "ghost" names nobody the directory knows."""
    settings = load("goals")
    assert db.people.find_one({"_id": GHOST}) is None
    metadata = {"anonymous": (), "ghost": bearer_metadata(token(settings, GHOST))}
    for role, person_id in PEOPLE.items():
        person = db.people.find_one({"_id": person_id})
        assert person is not None, f"{person_id} ({role}) is not in the seeded directory any more"
        assert ("admin" in person.get("roles", [])) == (role == "admin"), f"{person_id} is no longer a {role}"
        metadata[role] = bearer_metadata(token(settings, person_id))
    return metadata


def _settings(service: str, mongo_uri: str, goals_address: str):
    return replace(load(service, "127.0.0.1:0"), mongo_uri=mongo_uri, goals_addr=goals_address,
                   mongo_db=f"{service}_fuzz_{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="module")
def system(sqlite_mongo_uri):
    """All four APIs running; goals over the demo organisation."""
    from deploy.demo.goals_seed import seed
    from services.checkins.api import create_server as checkins_server
    from services.goals.api import create_server as goals_server
    from services.metrics.api import Sources, create_server as metrics_server
    from services.notify.api import create_server as notify_server

    client, uri = pymongo.MongoClient(sqlite_mongo_uri), sqlite_mongo_uri
    with ExitStack() as running:
        goals = replace(_settings("goals", uri, ""), directory_cache_seconds=0.0)
        _, goals_port = running.enter_context(served(goals_server, goals))
        goals_address = f"127.0.0.1:{goals_port}"
        seed(goals, goals_api_address=goals_address, progress=False)
        checkins = _settings("checkins", uri, goals_address)
        _, checkins_port = running.enter_context(served(checkins_server, checkins))
        metrics = _settings("metrics", uri, goals_address)
        metrics_api, metrics_port = running.enter_context(served(
            metrics_server, metrics, "127.0.0.1:0", Sources(goals_address, f"127.0.0.1:{checkins_port}", 1.0)))
        running.callback(metrics_api.http.shutdown)
        notify = _settings("notify", uri, goals_address)
        notify_api, notify_port = running.enter_context(served(notify_server, notify, "127.0.0.1:0"))
        running.callback(notify_api.http.shutdown)
        for settings in (goals, checkins, metrics, notify):
            running.callback(client.drop_database, settings.database_name)
        # EventLogService is served by goals-api, checkins-api and notify-api alike, each over its own event log
        # and event types: fuzzed at each (goals-api's under the plain name).
        apis = {"goals-api": goals_address, "checkins-api": f"127.0.0.1:{checkins_port}",
                "metrics-api": f"127.0.0.1:{metrics_port}", "notify-api": f"127.0.0.1:{notify_port}"}
        addresses = {"v2mom.v1.GoalService": goals_address, "v2mom.v1.DirectoryService": goals_address,
                     "v2mom.v1.EventLogService": goals_address,
                     "v2mom.v1.EventLogService@checkins-api": apis["checkins-api"],
                     "v2mom.v1.EventLogService@notify-api": apis["notify-api"],
                     "v2mom.v1.CheckinService": apis["checkins-api"],
                     "v2mom.v1.MetricsService": apis["metrics-api"],
                     "v2mom.v1.NotifyService": apis["notify-api"]}
        channels = {name: running.enter_context(grpc.insecure_channel(address)) for name, address in addresses.items()}
        yield System(channels, _roles(client[goals.database_name]), apis, addresses)
    client.close()


def _harvest(system: System, rpc: Rpc, role: str, request) -> None:
    answer = system.call(rpc, role, request)
    if not isinstance(answer, grpc.RpcError):
        harvest(answer, system.pool)


@pytest.fixture(scope="module")
def pool(system):
    """What the system issues, for the fuzz to reuse: answers to empty requests and one-item pages as each role,
    then the admin's reads by the ids those carried (a V2MOM's item ids, say)."""
    system.pool["paths"] = field_names()  # what a FieldMask may name
    system.pool["url"] = ["https://hooks.example.com/v2mom"]  # webhooks must be https
    for role in system.metadata:
        for rpc in rpcs():
            _harvest(system, rpc, role, rpc.request_class()())
            if "page_size" in rpc.request.fields_by_name:
                _harvest(system, rpc, role, rpc.request_class()(page_size=1))
    for rpc in (rpc for rpc in rpcs() if rpc.name.startswith(("Get", "List"))):
        for name in (field.name for field in rpc.request.fields if field.type == field.TYPE_STRING):
            for value in issued(rpc.request.name, name, system.pool)[:6]:
                _harvest(system, rpc, "admin", rpc.request_class()(**{name: value}))
    # The directory's writes are left out: one could deactivate a role's person, or move them, for every test.
    for rpc in (rpc for rpc in rpcs() if rpc.service != DIRECTORY):
        # writes too: a check-in, a subscription, a V2MOM of the admin's, for later requests to name
        for request in base_requests(rpc.request, system.pool, most=10):
            if not isinstance(answer := system.call(rpc, "admin", request), grpc.RpcError):
                harvest(answer, system.pool)
                break
    return system.pool
