"""checkins-api: the CheckinService gRPC server (plain grpcio, no eventlet).

Run it with ``python -m services.checkins.api``; GRPC_ADDR (default
127.0.0.1:50052), MONGO_URI, MONGO_DB (default ``checkins``), GOALS_ADDR and
the identity settings (OIDC_*, SERVICE_*) configure it (services/platform/core/config.py).
"""

import functools

from services.platform.api.auth import current_caller, grant
from services.platform.api.event_log import event_log_binding
from services.platform.api.server import create_service_server, run_api
from services.platform.core.config import Settings, load
from services.platform.store.mongo import connect, drop_retired_indexes, ensure_indexes

from . import clock_store, events, progress_store, repository, structures
from .goals_client import GoalsClient
from .progress_reader import ProgressReader
from .repository import CheckinRepository, CycleSettingsRepository
from .service import CheckinsService
from .structures import StructureCache
from v2mom.v1 import checkins_pb2, checkins_pb2_grpc

SERVICE_NAME = "checkins"
DEFAULT_ADDR = "127.0.0.1:50052"
# How long a cycle's cadence is remembered for the events of new check-ins (CycleSettingsRepository): a change
# made through another replica reaches this one's events within that long.
CADENCE_SECONDS = 10.0

# The services that call checkins-api, and all they may call (auth.Grant): metrics' rebuild reads every
# check-in, superseded ones too, as an admin would.
CALLERS = {
    "metrics": grant("ListCheckins", "GetProgress", "ListStaleItems", "GetCycleSettings", roles=("admin",)),
}


def _authorization(context) -> str:
    """The caller's own bearer header: goals may be asked as them whether they may see a draft."""
    return next((value for key, value in context.invocation_metadata() if key == "authorization"), "")


class CheckinServicer(checkins_pb2_grpc.CheckinServiceServicer):
    """Thin: every RPC hands the authenticated caller (a person goals' directory knows as active, or a granted
    service) and request to CheckinsService."""

    def __init__(self, service: CheckinsService):
        self.service = service

    def RecordMeasureCheckin(self, request, context):
        return self.service.record_measure(current_caller(), request, _authorization(context))

    def RecordMethodCheckin(self, request, context):
        return self.service.record_method(current_caller(), request, _authorization(context))

    def CorrectCheckin(self, request, context):
        return self.service.correct(current_caller(), request, _authorization(context))

    def ListCheckins(self, request, context):
        return self.service.list_checkins(current_caller(), request)

    def GetProgress(self, request, context):
        return self.service.progress(current_caller(), request)

    def GetProgressHistory(self, request, context):
        return self.service.progress_history(current_caller(), request)

    def ListStaleItems(self, request, context):
        return self.service.stale_items(current_caller(), request)

    def GetCycleSettings(self, request, context):
        return self.service.get_cycle_settings(current_caller(), request)

    def UpdateCycleSettings(self, request, context):
        return self.service.update_cycle_settings(current_caller(), request)


def build_service(settings: Settings, progress_reader=None) -> CheckinsService:
    """progress_reader: stands in for the worker's ProgressReader (tests); by default that, over this database."""
    db = connect(settings.mongo_uri, "checkins-api")[settings.database_name]
    drop_retired_indexes(db, repository.RETIRED_INDEXES)
    # The reader's indexes too: the API may start before the worker that also creates them.
    ensure_indexes(db, repository.INDEXES + structures.INDEXES + progress_store.INDEXES + clock_store.INDEXES)
    goals = GoalsClient(settings.goals_addr, settings.auth)
    return CheckinsService(
        CheckinRepository(db), CycleSettingsRepository(db, CADENCE_SECONDS), StructureCache(db, goals), goals,
        progress_reader or ProgressReader(db), functools.partial(clock_store.reschedule_cycle, db),
    )


def create_server(addr: str, settings: Settings | None = None, progress_reader=None):
    """Returns (server, port); bind to port 0 in tests to get a free one."""
    settings = settings or load(SERVICE_NAME, DEFAULT_ADDR)
    service = build_service(settings, progress_reader)
    return create_service_server(
        addr, settings.auth, CheckinServicer(service),
        checkins_pb2_grpc.add_CheckinServiceServicer_to_server, checkins_pb2.DESCRIPTOR.services_by_name["CheckinService"],
        people=service.goals.people, grants=CALLERS,
        more=[event_log_binding(service.checkins.collection.database, SERVICE_NAME, events.EVENT_TYPES, settings.amqp_uri)],
    )


def main() -> None:
    run_api("checkins-api", SERVICE_NAME, DEFAULT_ADDR, create_server)


if __name__ == "__main__":
    main()
