"""The one way tests serve an API in process: ``served`` starts a service's gRPC server on a free port,
``served_in_process`` adds a factory of per-person clients. The fixtures ``goals_api``, ``checkins_api`` (root
conftest) and the goals tests' ``goals`` all go through it."""

from contextlib import contextmanager

import grpc

from services.platform.api.auth import bearer_metadata, mint_token


def token(settings, person_id: str, roles=()) -> str:
    return mint_token(settings.auth, person_id, roles)


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
def served_in_process(create_server, stub_class, settings, *args):
    """Starts a service's gRPC server on a free port (``args`` go to its create_server); yields a factory of
    per-person clients."""
    with served(create_server, settings, *args) as (server, port):
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = stub_class(channel)

        def client_for(person_id: str | None, roles=()) -> Caller:
            metadata = bearer_metadata(token(settings, person_id, roles)) if person_id else ()
            return Caller(stub, metadata)

        client_for.port = port
        client_for.server = server
        try:
            yield client_for
        finally:
            channel.close()
