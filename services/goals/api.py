"""goals-api: the GoalService gRPC server (plain grpcio, no eventlet).

Run it with ``python -m services.goals.api``; GRPC_ADDR, MONGO_URI and the
JWT_* variables configure it (services/platform/core/config.py).
"""

from services.platform.core import logs
from services.platform.api.auth import current_caller
from services.platform.core.config import Settings, load
from services.platform.api.server import ServiceBinding, create_server as create_grpc_server, serve_until_signalled
from services.platform.store.mongo import connect, ensure_indexes

from . import directory as directory_module
from . import repository as repository_module
from .directory import Directory
from .repository import V2MOMRepository
from .service import GoalsService
from v2mom.v1 import goals_pb2, goals_pb2_grpc

SERVICE_NAME = "goals"
DEFAULT_ADDR = "127.0.0.1:50051"


class GoalServicer(goals_pb2_grpc.GoalServiceServicer):
    """Thin: every RPC hands the authenticated caller and request to GoalsService."""

    def __init__(self, service: GoalsService):
        self.service = service

    def _caller(self):
        return self.service.active_caller(current_caller())

    def CreateV2MOM(self, request, context):
        return self.service.create(self._caller(), request)

    def GetV2MOM(self, request, context):
        return self.service.get(self._caller(), request)

    def UpdateV2MOM(self, request, context):
        return self.service.update(self._caller(), request)

    def ListV2MOMs(self, request, context):
        return self.service.list_v2moms(self._caller(), request)

    def SubmitV2MOM(self, request, context):
        return self.service.submit(self._caller(), request)

    def ApproveV2MOM(self, request, context):
        return self.service.approve(self._caller(), request)

    def RequestChanges(self, request, context):
        return self.service.request_changes(self._caller(), request)

    def ArchiveV2MOM(self, request, context):
        return self.service.archive(self._caller(), request)

    def GetAlignmentTree(self, request, context):
        return self.service.alignment_tree(self._caller(), request)

    def ListPendingApprovals(self, request, context):
        return self.service.pending_approvals(self._caller(), request)

    def ListRevisions(self, request, context):
        return self.service.revisions(self._caller(), request)

    def LintV2MOM(self, request, context):
        return self.service.lint(self._caller(), request)

    def GetPerson(self, request, context):
        return self.service.get_person(self._caller(), request)

    def ListPeople(self, request, context):
        return self.service.list_people(self._caller(), request)

    def GetOrgUnit(self, request, context):
        return self.service.get_org_unit(self._caller(), request)

    def ListOrgUnits(self, request, context):
        return self.service.list_org_units(self._caller(), request)

    def ListCycles(self, request, context):
        return self.service.list_cycles(self._caller(), request)


def build_service(settings: Settings) -> GoalsService:
    db = connect(settings.mongo_uri, "goals-api")[settings.database_name]
    ensure_indexes(db, repository_module.INDEXES + directory_module.INDEXES)
    return GoalsService(V2MOMRepository(db), Directory(db, settings.directory_cache_seconds))


def create_server(addr: str, settings: Settings | None = None):
    """Returns (server, port); bind to port 0 in tests to get a free one."""
    settings = settings or load(SERVICE_NAME, DEFAULT_ADDR)
    binding = ServiceBinding(
        goals_pb2_grpc.add_GoalServiceServicer_to_server,
        GoalServicer(build_service(settings)),
        goals_pb2.DESCRIPTOR.services_by_name["GoalService"].full_name,
    )
    server, port, health = create_grpc_server(addr, [binding], settings.auth)
    server.health = health
    return server, port


def main() -> None:
    settings = load(SERVICE_NAME, DEFAULT_ADDR)
    logs.configure("goals-api", settings.log_level)
    server, port = create_server(settings.grpc_addr, settings)
    serve_until_signalled(server, server.health, "goals-api", port)


if __name__ == "__main__":
    main()
