"""notify-api: the NotifyService gRPC server and its HTTP side (plain grpcio, no eventlet).

Run it with ``python -m services.notify.api``. GRPC_ADDR (default
127.0.0.1:50054) serves NotifyService; NOTIFY_HTTP_ADDR (default
127.0.0.1:9101) serves ``/metrics`` and ``/unsubscribe`` (http.py).
MONGO_URI, MONGO_DB (default ``notify``), GOALS_ADDR (who callers are) and the
identity settings as every service (services/platform/core/config.py); NOTIFY_UNSUBSCRIBE_SECRET signs
unsubscribe links, NOTIFY_ALLOW_PRIVATE_WEBHOOKS (development) lets webhook
subscriptions use http and private addresses.
"""

import logging
from collections.abc import Callable
from datetime import datetime
from functools import partial

from prometheus_client import CollectorRegistry

from services.platform.api.auth import current_caller
from services.platform.api.event_log import event_log_binding
from services.platform.api.people import directory_people
from services.platform.api.server import create_service_server, run_api
from services.platform.core.clock import utc_now
from services.platform.core.config import ConfigError, Settings, env_str, load
from services.platform.store.mongo import connect, ensure_indexes

from . import events, http, store, unsubscribe
from .collector import DeliveryCollector
from .delivery_log import DeliveryLog
from .inbox import Inbox
from .preferences import PreferenceStore
from .service import NotifyService
from .subscriptions import SubscriptionStore
from v2mom.v1 import goals_pb2, goals_pb2_grpc, notify_pb2, notify_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = "notify"
DEFAULT_ADDR = "127.0.0.1:50054"
DEFAULT_HTTP_ADDR = "127.0.0.1:9101"


class NotifyServicer(notify_pb2_grpc.NotifyServiceServicer):
    """Thin: every RPC hands the authenticated caller and request to NotifyService."""

    def __init__(self, service: NotifyService):
        self.service = service

    def ListNotifications(self, request, context):
        return self.service.list_notifications(current_caller(), request)

    def MarkRead(self, request, context):
        return self.service.mark_read(current_caller(), request)

    def GetUnreadCount(self, request, context):
        return self.service.unread_count(current_caller(), request)

    def GetPreferences(self, request, context):
        return self.service.get_preferences(current_caller(), request)

    def UpdatePreferences(self, request, context):
        return self.service.update_preferences(current_caller(), request)

    def ListDeliveries(self, request, context):
        return self.service.list_deliveries(current_caller(), request)

    def CreateSubscription(self, request, context):
        return self.service.create_subscription(current_caller(), request)

    def ListSubscriptions(self, request, context):
        return self.service.list_subscriptions(current_caller(), request)

    def DeleteSubscription(self, request, context):
        return self.service.delete_subscription(current_caller(), request)

    def RotateSubscriptionSecret(self, request, context):
        return self.service.rotate_secret(current_caller(), request)


def allow_private_webhooks() -> bool:
    raw = env_str("NOTIFY_ALLOW_PRIVATE_WEBHOOKS", "false").strip().lower()
    if raw not in ("true", "false", "1", "0", ""):
        raise ConfigError(f"NOTIFY_ALLOW_PRIVATE_WEBHOOKS must be true or false, got {raw!r}")
    return raw in ("true", "1")


def registry_for(db, clock: Callable[[], datetime] = utc_now) -> CollectorRegistry:
    """What /metrics serves: notify's collectors over the stored counters, in a registry of their own."""
    registry = CollectorRegistry()
    registry.register(DeliveryCollector(db, clock))
    return registry


def create_server(addr: str, settings: Settings | None = None, http_addr: str | None = None,
                  clock: Callable[[], datetime] = utc_now):
    """Returns (server, port); with ``http_addr``, ``server.http`` is the running HTTP side (``server.http.port``).

    Bind to port 0 (gRPC and HTTP) in tests to get free ones.
    """
    settings = settings or load(SERVICE_NAME, DEFAULT_ADDR)
    # Before anything opens: production refuses a missing or public signing key, saying what to set.
    unsubscribe_secret = unsubscribe.secret_from_env() if http_addr is not None else ""
    db = connect(settings.mongo_uri, "notify-api")[settings.database_name]
    ensure_indexes(db, store.INDEXES)
    service = NotifyService(Inbox(db), PreferenceStore(db), SubscriptionStore(db), DeliveryLog(db),
                            allow_private_webhooks=allow_private_webhooks(), clock=clock)
    # Who calls: goals' directory (GOALS_ADDR), asked with notify's own credential.
    people = directory_people(settings.goals_addr, goals_pb2_grpc.GoalServiceStub, goals_pb2.GetPersonRequest,
                              settings.auth)
    server, port = create_service_server(addr, settings.auth, NotifyServicer(service),
                                         notify_pb2_grpc.add_NotifyServiceServicer_to_server,
                                         notify_pb2.DESCRIPTOR.services_by_name["NotifyService"], people=people,
                                         more=[event_log_binding(db, SERVICE_NAME, events.EVENT_TYPES,
                                                                 settings.amqp_uri)])
    server.http = None
    if http_addr is not None:
        app = http.make_app(registry_for(db, clock), unsubscribe_secret, service.unsubscribe)
        server.http = http.start(http_addr, app)
        log.info("notify http listening", extra={"addr": http_addr, "port": server.http.port})
    return server, port


def _stop_http(server) -> None:
    if server.http is not None:
        server.http.shutdown()


def main() -> None:
    http_addr = env_str("NOTIFY_HTTP_ADDR", DEFAULT_HTTP_ADDR)
    run_api("notify-api", SERVICE_NAME, DEFAULT_ADDR, partial(create_server, http_addr=http_addr), on_stop=_stop_http)


if __name__ == "__main__":
    main()
