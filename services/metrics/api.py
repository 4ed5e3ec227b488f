"""metrics-api: the MetricsService gRPC server and the Prometheus exposition (plain process, no eventlet).

Run it with ``python -m services.metrics.api``. GRPC_ADDR (default
127.0.0.1:50053) serves MetricsService; METRICS_HTTP_ADDR (default
127.0.0.1:9100) serves ``/metrics`` (exposition.py), from a copy of the
engagement text that follows the metrics database (rendered.py:
METRICS_FOLLOW_SECONDS, METRICS_RECONCILE_SECONDS, METRICS_CHANGE_OVERLAP_SECONDS).
GOALS_ADDR and
CHECKINS_ADDR are where RebuildAggregates reads from; cycle dates come from
GOALS_ADDR too (cached, see cycles.py).
"""

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from prometheus_client import ProcessCollector

from services.platform.api.auth import current_caller
from services.platform.api.people import directory_people
from services.platform.api.server import create_service_server, run_api
from services.platform.core.clock import utc_now
from services.platform.core.config import Settings, env_float, env_str, load
from services.platform.store.mongo import connect, ensure_indexes
from v2mom.v1 import goals_pb2, goals_pb2_grpc, metrics_pb2, metrics_pb2_grpc

from . import rebuild, store
from .collector import CascadeCollector, CycleCollector, EngagementCopyCollector, PipelineCollector
from .cycles import CycleCalendar
from .exposition import Exposition, start_http_server
from .rendered import RenderedEngagement
from .service import MetricsService
from .sources import CheckinsSource, GoalsSource

log = logging.getLogger(__name__)

SERVICE_NAME = "metrics"
DEFAULT_ADDR = "127.0.0.1:50053"
DEFAULT_HTTP_ADDR = "127.0.0.1:9100"
DEFAULT_CHECKINS_ADDR = "127.0.0.1:50052"


class MetricsServicer(metrics_pb2_grpc.MetricsServiceServicer):
    """Thin: every RPC hands the authenticated caller and request to MetricsService."""

    def __init__(self, service: MetricsService):
        self.service = service

    def GetEngagement(self, request, context):
        return self.service.get_engagement(current_caller(), request)

    def ListEngagement(self, request, context):
        return self.service.list_engagement(current_caller(), request)

    def GetEngagementHistory(self, request, context):
        return self.service.engagement_history(current_caller(), request)

    def RebuildAggregates(self, request, context):
        return self.service.rebuild_aggregates(current_caller(), request)


@dataclass(frozen=True)
class Sources:
    goals_addr: str
    checkins_addr: str
    grace_seconds: float = 2.0


@dataclass(frozen=True)
class Following:
    """How metrics-api keeps its copy of the engagement text current (rendered.py)."""

    every: float = 5.0  # catch up in the background this often, so scrapes find little to do
    reconcile_every: float = 600.0  # read everything again this often, in case a write escaped the overlap
    overlap: float = 5.0  # re-read changes this much older than the newest seen: writes commit out of order

    @classmethod
    def from_env(cls) -> "Following":
        return cls(env_float("METRICS_FOLLOW_SECONDS", cls.every),
                   env_float("METRICS_RECONCILE_SECONDS", cls.reconcile_every),
                   env_float("METRICS_CHANGE_OVERLAP_SECONDS", cls.overlap))


def exposition_for(db, clock: Callable[[], datetime] = utc_now, calendar: CycleCalendar | None = None,
                   following: Following = Following()) -> Exposition:
    """What /metrics serves: engagement (kept rendered, rendered.py), pipeline health, cycle dates and this
    process."""
    rendered = RenderedEngagement(db, timedelta(seconds=following.overlap))
    others = [PipelineCollector(db), CascadeCollector(db)]
    if calendar is not None:
        others.append(CycleCollector(calendar))
    others += [EngagementCopyCollector(rendered), ProcessCollector(registry=None)]
    return Exposition(db, clock, others, rendered)


def _rebuild_from(db, settings: Settings, sources: Sources) -> rebuild.Summary:
    goals = GoalsSource(sources.goals_addr, settings.auth)
    checkins = CheckinsSource(sources.checkins_addr, settings.auth)
    try:
        return rebuild.rebuild(db, goals, checkins, grace_seconds=sources.grace_seconds)
    finally:
        goals.close()
        checkins.close()


def create_server(addr: str, settings: Settings | None = None, http_addr: str | None = None,
                  sources: Sources | None = None, clock: Callable[[], datetime] = utc_now):
    """Returns (server, port); ``server.http_port`` is the exposition's port when ``http_addr`` is given.

    Bind to port 0 (gRPC and HTTP) in tests to get free ones; ``clock`` pins the
    moment windows and ages are computed at.
    """
    settings = settings or load(SERVICE_NAME, DEFAULT_ADDR)
    db = connect(settings.mongo_uri, "metrics-api")[settings.database_name]
    ensure_indexes(db, store.INDEXES)
    sources = sources or Sources(settings.goals_addr, env_str("CHECKINS_ADDR", DEFAULT_CHECKINS_ADDR))
    service = MetricsService(db, partial(_rebuild_from, db, settings, sources), clock)
    server, port = create_service_server(addr, settings.auth, MetricsServicer(service),
                                         metrics_pb2_grpc.add_MetricsServiceServicer_to_server,
                                         metrics_pb2.DESCRIPTOR.services_by_name["MetricsService"],
                                         people=directory_people(settings.goals_addr, goals_pb2_grpc.GoalServiceStub,
                                                                goals_pb2.GetPersonRequest, settings.auth))
    server.http_port = None
    if http_addr is not None:
        host, _, http_port = http_addr.rpartition(":")
        calendar = CycleCalendar.from_goals(sources.goals_addr, settings.auth)
        following = Following.from_env()
        exposition = exposition_for(db, clock, calendar, following)
        stop_following = threading.Event()
        exposition.rendered.follow(clock, following.every, following.reconcile_every, stop_following)
        httpd, _thread = start_http_server(int(http_port), host or "0.0.0.0", exposition)
        server.http_port = httpd.server_address[1]
        server.http = HttpExposition(httpd, stop_following)
        log.info("metrics exposition listening", extra={"addr": http_addr, "port": server.http_port})
    return server, port


@dataclass(frozen=True)
class HttpExposition:
    """The /metrics server and the thread keeping its copy current: they stop together."""

    httpd: object
    stop_following: threading.Event

    def shutdown(self) -> None:
        self.stop_following.set()
        self.httpd.shutdown()


def main() -> None:
    http_addr = env_str("METRICS_HTTP_ADDR", DEFAULT_HTTP_ADDR)
    run_api("metrics-api", SERVICE_NAME, DEFAULT_ADDR, partial(create_server, http_addr=http_addr),
            on_stop=lambda server: server.http.shutdown())


if __name__ == "__main__":
    main()
