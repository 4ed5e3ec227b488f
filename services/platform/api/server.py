"""gRPC server bootstrap: auth, error mapping, health checking and reflection.

Plain grpcio with a thread pool - never inside an eventlet-patched process
(docs/architecture.md, "Process model").
"""

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from pymongo.errors import ConnectionFailure

from .auth import Authenticator, Grant, PeopleLookup, reset_current_caller, set_current_caller
from .tls import TlsSettings, add_port, load_tls, require_secure_listen
from ..core import logs
from ..core.config import AuthSettings, ConfigError, load_or_exit
from ..core.errors import FieldViolation, InvalidArgument, ServiceError, Unavailable, Unimplemented, internal_status
from ..core.ids import new_id

log = logging.getLogger(__name__)

# Infrastructure endpoints that load balancers and grpcurl use without a token.
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class Undecodable:
    """A request body that is not a valid message of the RPC's request type."""


def _lenient(deserialize):
    # grpcio answers a body it cannot parse with INTERNAL before our code runs;
    # it is the client's mistake, so let the guard answer INVALID_ARGUMENT.
    if deserialize is None:
        return None

    def decode(raw):
        try:
            return deserialize(raw)
        except Exception:  # DecodeError, invalid UTF-8 in a string field
            return Undecodable()

    return decode


@dataclass(frozen=True)
class ServiceBinding:
    """One servicer and how to register it: (add_XServicer_to_server, servicer, full name)."""

    add_to_server: Callable
    servicer: object
    full_name: str


class AuthAndErrorsInterceptor(grpc.ServerInterceptor):
    """Authenticates every call and turns exceptions into clean statuses.

    It wraps the handler's behaviour rather than checking in
    intercept_service, because intercept_service runs on grpcio's polling
    thread while the behaviour runs on the pool thread that owns the call.
    """

    def __init__(self, authenticator: Authenticator):
        self.authenticator = authenticator

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(PUBLIC_PREFIXES):
            return handler
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._guard(method, handler.unary_unary),
                request_deserializer=_lenient(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:  # server-streaming RPCs: authenticated and cleaned up alike
            return grpc.unary_stream_rpc_method_handler(
                self._guard_stream(method, handler.unary_stream),
                request_deserializer=_lenient(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return handler

    def _guard_stream(self, method: str, behaviour):
        """As _guard, for a behaviour that yields its responses: a refusal before or during the stream ends it
        with a clean status."""
        authenticator = self.authenticator

        def guarded(request, context):
            with _serving(authenticator, method, request, context):
                yield from _served(behaviour, method, request, context)

        return guarded

    def _guard(self, method: str, behaviour):
        authenticator = self.authenticator

        def guarded(request, context):
            with _serving(authenticator, method, request, context) as started:
                response = _served(behaviour, method, request, context)
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("rpc ok", extra={"rpc": method, "ms": _ms(started)})
                return response

        return guarded


@contextmanager
def _serving(authenticator: Authenticator, method: str, request, context):
    """The caller set for the call's behaviour (yields when it started); every error ends as a clean status."""
    started = time.perf_counter()
    token = None
    try:
        token = set_current_caller(authenticator.caller(context.invocation_metadata(), method))
        if isinstance(request, Undecodable):
            raise InvalidArgument([FieldViolation("request", "is not a valid message for this RPC")])
        yield started
    except Exception as error:  # noqa: BLE001 - every error ends as a clean status
        _abort_cleanly(error, method, context, started)
    finally:
        if token is not None:
            reset_current_caller(token)


def _served(behaviour, method: str, request, context):
    try:
        return behaviour(request, context)
    except NotImplementedError:
        # The generated servicer's answer for an RPC the proto declares and the service does not implement
        # yet: the client asked for something this server cannot do, which is no incident of ours.
        raise Unimplemented(f"{method} is not served by this version of the service") from None


def _abort_cleanly(error: Exception, method: str, context, started: float) -> None:
    """A ServiceError as its status; anything else (but grpcio's own aborts) as INTERNAL with an incident id."""
    if isinstance(error, ConnectionFailure):
        # The store is away (down, paused, electing a primary): the call may be tried again, with its
        # request id where it has one, so it says UNAVAILABLE rather than reporting an incident.
        error = Unavailable(f"the store is unavailable ({type(error).__name__}); try again in a moment")
    if isinstance(error, ServiceError):
        log.info("rpc refused",
                 extra={"rpc": method, "code": error.code.name, "reason": error.message, "ms": _ms(started)})
        context.abort_with_status(error.to_status())
    if isinstance(error, grpc.RpcError) or _is_abort(error):
        raise error
    incident = new_id("inc")
    log.error("rpc failed", exc_info=(type(error), error, error.__traceback__),
              extra={"rpc": method, "incident": incident})
    context.abort_with_status(internal_status(incident))


def _is_abort(error: Exception) -> bool:
    # context.abort() raises a bare Exception subclass private to grpcio.
    return type(error).__module__.startswith("grpc")


def _nobody(person_id: str) -> None:
    return None


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def create_server(
    addr: str,
    bindings: Iterable[ServiceBinding],
    auth: AuthSettings,
    max_workers: int = 16,
    tls: TlsSettings | None = None,
    authenticator: Authenticator | None = None,
) -> tuple[grpc.Server, int, health.HealthServicer]:
    """Builds (but does not start) a server; port 0 in addr picks a free port.

    TLS comes from the environment (GRPC_TLS_CERT, GRPC_TLS_KEY) unless given;
    production refuses plaintext off loopback (api/tls.py).
    """
    tls = load_tls() if tls is None else tls
    require_secure_listen(addr, tls)  # before anything is built, so a refusal leaves nothing behind
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers),
        # Without an authenticator of its own, a server knows no people and grants nothing to any service.
        interceptors=[AuthAndErrorsInterceptor(authenticator or Authenticator(auth, people=_nobody))],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME]
    for binding in bindings:
        binding.add_to_server(binding.servicer, server)
        health_servicer.set(binding.full_name, health_pb2.HealthCheckResponse.SERVING)
        names.append(binding.full_name)
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(names, server)
    port = add_port(server, addr, tls)
    if port == 0:
        raise RuntimeError(f"could not bind gRPC server to {addr}")
    return server, port, health_servicer


def serve_until_signalled(server: grpc.Server, health_servicer, name: str, port: int) -> None:
    """Runs until SIGINT/SIGTERM, then drains in-flight calls for up to 5 s."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    log.info("grpc server started", extra={"grpc_service": name, "port": port})
    stop.wait()
    health_servicer.enter_graceful_shutdown()
    server.stop(grace=5).wait()
    log.info("grpc server stopped", extra={"grpc_service": name})


def create_service_server(addr: str, auth: AuthSettings, servicer, add_to_server: Callable, service_descriptor,
                          people: PeopleLookup, grants: dict[str, Grant] | None = None,
                          more: Iterable[ServiceBinding] = ()) -> tuple[grpc.Server, int]:
    """One service's server, as every api module builds it: returns (server, port), with ``server.health`` kept.

    ``people`` says who a person is (their roles, whether active: the directory); ``grants`` which RPCs each
    calling service may use (auth.py); ``more``: further gRPC services on the same port (goals' directory),
    health-checked and reflected alike.
    """
    binding = ServiceBinding(add_to_server, servicer, service_descriptor.full_name)
    authenticator = Authenticator(auth, people, grants)
    server, port, health_servicer = create_server(addr, [binding, *more], auth, authenticator=authenticator)
    server.health = health_servicer
    return server, port


def run_api(process_name: str, service: str, default_addr: str, create: Callable,
            on_stop: Callable[[grpc.Server], None] | None = None) -> None:
    """The main of every ``<service>-api``: settings, logs, serve until signalled, then ``on_stop``."""
    settings = load_or_exit(service, default_addr)
    logs.configure(process_name, settings.log_level)
    try:
        # Before create() opens the store: a refusal is quick, and says what to set.
        require_secure_listen(settings.grpc_addr, load_tls())
        server, port = create(settings.grpc_addr, settings)
    except ConfigError as error:  # e.g. production without certificates: say what to set, not a traceback
        print(f"{process_name}: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    try:
        serve_until_signalled(server, server.health, process_name, port)
    finally:
        if on_stop is not None:
            on_stop(server)
