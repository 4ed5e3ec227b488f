"""The one way tests serve an API in process: ``served`` starts a service's gRPC server on a free port,
``served_in_process`` adds a factory of per-person clients. The fixtures ``goals_api``, ``checkins_api`` (root
conftest) and the goals tests' ``goals`` all go through it.

A person's token says only who they are: their roles are goals' directory's, so the factory first makes the
person exist there with the roles named (``enroll``, tests/support/people.py). A caller named "svc:<name>" is
that service, with its own service credential, as services call each other."""

from contextlib import contextmanager
from dataclasses import replace

import grpc

from services.platform.api.auth import SERVICE_PREFIX, ServiceCredential, bearer_metadata, mint_dev_token


def token(settings, person_id: str) -> str:
    return mint_dev_token(settings.auth, person_id)


def service_token(settings, caller: str) -> str:
    """A token of service ``caller`` ("svc:checkins") for the service whose settings these are."""
    auth = replace(settings.auth, service=caller.removeprefix(SERVICE_PREFIX))
    return ServiceCredential(auth, settings.service).token()


def metadata_for(settings, person_id: str | None, roles=(), enroll=None) -> tuple:
    """The call metadata of a person (enrolled with ``roles`` first), a "svc:" service, or nobody (None)."""
    if person_id is None:
        return ()
    if person_id.startswith(SERVICE_PREFIX):
        return bearer_metadata(service_token(settings, person_id))
    if enroll is not None:
        enroll(person_id, roles)
    return bearer_metadata(token(settings, person_id))


class Caller:
    """A real gRPC client acting as one person."""

    def __init__(self, stub, metadata):
        self.stub = stub
        self.metadata = metadata

    def __getattr__(self, rpc):
        method = getattr(self.stub, rpc)
        return lambda request, **kw: method(request, metadata=self.metadata, timeout=kw.pop("timeout", 10), **kw)


@contextmanager
def served(create_server, settings, *args):
    """A service's gRPC server, started on a free loopback port: yields (server, port); stopped on exit."""
    server, port = create_server("127.0.0.1:0", settings, *args)
    server.start()
    try:
        yield server, port
    finally:
        server.stop(grace=None)


@contextmanager
def served_in_process(create_server, stub_class, settings, *args, enroll=None):
    """Starts a service's gRPC server on a free port (``args`` go to its create_server); yields a factory of
    per-person clients, ``client_for(person_id, roles=())``; ``enroll`` puts the people in goals' directory."""
    with served(create_server, settings, *args) as (server, port):
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = stub_class(channel)

        def client_for(person_id: str | None, roles=()) -> Caller:
            return Caller(stub, metadata_for(settings, person_id, roles, enroll))

        client_for.port = port
        client_for.server = server
        try:
            yield client_for
        finally:
            channel.close()
