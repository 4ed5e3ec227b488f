"""goals-api: the GoalService gRPC server (plain grpcio, no eventlet).

Run it with ``python -m services.goals.api``; GRPC_ADDR, MONGO_URI and the
JWT_* variables configure it (services/platform/core/config.py). Its HTTP side
(SCIM_HTTP_ADDR, default 127.0.0.1:8090) serves ``/metrics`` and, with
SCIM_TOKEN, SCIM provisioning (http.py).
"""

import grpc
from pymongo.database import Database

from services.platform.api.auth import current_caller, grant
from services.platform.api.event_log import event_log_binding
from services.platform.api.server import ServiceBinding, create_service_server, run_api
from services.platform.core.config import AuthSettings, Settings, load
from services.platform.store.mongo import connect, drop_retired_indexes, ensure_indexes

from . import collector as collector_module
from . import directory as directory_module
from . import events as events_module
from . import hris_rejected
from . import http as goals_http
from . import repository as repository_module
from .access import Access
from . import checkin_projection
from .checkin_projection import CheckinProjection
from .authoring import Authoring
from .copying import Copying
from .cycle_admin import CycleAdmin
from .directory import Directory
from .directory_api import DirectoryServicer
from .directory_reads import DirectoryReads
from . import comments as comments_module
from .comments import CommentStore
from .discussion import Discussion
from .export import Export
from .obstacle_updates import ObstacleUpdates
from . import templates as templates_module
from .reads import Reads
from .repository import V2MOMRepository
from .scim import http as scim_http, users as scim_users
from .template_admin import Templates
from .templates import TemplateStore
from .workflow import Workflow
from v2mom.v1 import directory_pb2, directory_pb2_grpc, goals_pb2, goals_pb2_grpc

SERVICE_NAME = "goals"
DEFAULT_ADDR = "127.0.0.1:50051"

# The services that call goals-api, and all they may call (auth.Grant): reading published V2MOMs and the
# directory. metrics' rebuild counts drafts too, which goals lists only to admins, hence its role. notify-worker
# lists cycles to learn the quarters of those created before it consumed cycle events.
CALLERS = {
    "checkins": grant("GetV2MOM", "GetPerson", "ListCycles", "ListOrgUnits"),
    "metrics": grant("GetPerson", "ListCycles", "ListOrgUnits", "ListPeople", "ListV2MOMs", "GetV2MOM",
                     roles=("admin",)),
    "notify": grant("GetPerson", "ListCycles"),
}


class GoalServicer(goals_pb2_grpc.GoalServiceServicer):
    """Thin: every RPC hands the authenticated caller (a known, active person, or a granted service) and the
    request to its use case."""

    def __init__(self, repository: V2MOMRepository, directory: Directory, templates: TemplateStore,
                 comments: CommentStore, checkins: CheckinProjection):
        self.directory = directory
        self.access = Access(directory)
        self.templates = Templates(templates, directory)
        self.authoring = Authoring(repository, directory, self.access, self.templates)
        self.copying = Copying(repository, directory, self.access, self.authoring)
        self.workflow = Workflow(repository, self.access)
        self.reads = Reads(repository, self.access)
        self.directory_reads = DirectoryReads(directory)
        self.cycles = CycleAdmin(repository, directory)
        self.obstacles = ObstacleUpdates(repository, directory, self.access)
        self.discussion = Discussion(comments, repository, directory, self.access)
        self.exports = Export(repository, directory, self.access, checkins)

    def _caller(self):
        return current_caller()

    def ExportV2MOMs(self, request, context):
        return self.exports.export(self._caller(), request)

    def CreateV2MOM(self, request, context):
        return self.authoring.create(self._caller(), request)

    def UpdateV2MOM(self, request, context):
        return self.authoring.update(self._caller(), request)

    def LintV2MOM(self, request, context):
        return self.authoring.lint(self._caller(), request)

    def SubmitV2MOM(self, request, context):
        return self.workflow.submit(self._caller(), request)

    def ApproveV2MOM(self, request, context):
        return self.workflow.approve(self._caller(), request)

    def RequestChanges(self, request, context):
        return self.workflow.request_changes(self._caller(), request)

    def ArchiveV2MOM(self, request, context):
        return self.workflow.archive(self._caller(), request)

    def WithdrawSubmission(self, request, context):
        return self.workflow.withdraw(self._caller(), request)

    def GetV2MOM(self, request, context):
        return self.reads.get(self._caller(), request)

    def ListV2MOMs(self, request, context):
        return self.reads.list_v2moms(self._caller(), request)

    def ListPendingApprovals(self, request, context):
        return self.reads.pending_approvals(self._caller(), request)

    def GetAlignmentTree(self, request, context):
        return self.reads.alignment_tree(self._caller(), request)

    def ListRevisions(self, request, context):
        return self.reads.revisions(self._caller(), request)

    def GetPerson(self, request, context):
        return self.directory_reads.get_person(self._caller(), request)

    def ListPeople(self, request, context):
        return self.directory_reads.list_people(self._caller(), request)

    def GetOrgUnit(self, request, context):
        return self.directory_reads.get_org_unit(self._caller(), request)

    def ListOrgUnits(self, request, context):
        return self.directory_reads.list_org_units(self._caller(), request)

    def ListCycles(self, request, context):
        return self.directory_reads.list_cycles(self._caller(), request)

    def CreateCycle(self, request, context):
        return self.cycles.create(self._caller(), request)

    def UpdateCycle(self, request, context):
        return self.cycles.update(self._caller(), request)

    def GetCurrentCycle(self, request, context):
        return self.cycles.current(self._caller(), request)

    def CloseCycle(self, request, context):
        return self.cycles.close(self._caller(), request)

    def CopyV2MOM(self, request, context):
        return self.copying.copy(self._caller(), request)

    def ListTemplates(self, request, context):
        return self.templates.list(self._caller(), request)

    def GetTemplate(self, request, context):
        return self.templates.get(self._caller(), request)

    def CreateTemplate(self, request, context):
        return self.templates.create(self._caller(), request)

    def UpdateTemplate(self, request, context):
        return self.templates.update(self._caller(), request)

    def DeleteTemplate(self, request, context):
        return self.templates.delete(self._caller(), request)

    def UpdateObstacle(self, request, context):
        return self.obstacles.update(self._caller(), request)

    def AddComment(self, request, context):
        return self.discussion.add(self._caller(), request)

    def ListComments(self, request, context):
        return self.discussion.list(self._caller(), request)

    def EditComment(self, request, context):
        return self.discussion.edit(self._caller(), request)

    def DeleteComment(self, request, context):
        return self.discussion.delete(self._caller(), request)


def create_server(addr: str, settings: Settings | None = None, scim: scim_http.ScimSettings | None = None,
                  http_addr: str | None = None) -> tuple[grpc.Server, int]:
    """Returns (server, port), not started; bind to port 0 in tests to get a free one. With ``http_addr`` (or
    ``scim``: at its ``addr``), the HTTP side listens at once (``server.http``: /metrics, and SCIM with
    ``scim``, then also ``server.scim``) and stops with the server."""
    settings = settings or load(SERVICE_NAME, DEFAULT_ADDR)
    db = connect(settings.mongo_uri, "goals-api")[settings.database_name]
    scim_users.release_duplicate_user_names(db)  # before its unique index is built
    ensure_indexes(db, repository_module.INDEXES + directory_module.INDEXES + templates_module.INDEXES
                   + comments_module.INDEXES + scim_users.INDEXES + hris_rejected.INDEXES
                   + checkin_projection.INDEXES)
    drop_retired_indexes(db, scim_users.RETIRED_INDEXES)
    repository_module.migrate(db)  # V2MOMs stored by older versions (make run keeps var/)
    server, port = create_server_on(db, addr, settings.auth, settings.directory_cache_seconds, settings.amqp_uri)
    server.http = server.scim = None
    http_addr = http_addr or (scim.addr if scim is not None else None)
    if http_addr is not None:
        cache = settings.directory_cache_seconds
        scim_app = scim_http.scim_app(Directory(db, cache), scim, cache) if scim is not None else None
        goals_http.attach(server, http_addr, collector_module.registry_for(db), scim_app)
    return server, port


def create_server_on(db: Database, addr: str, auth: AuthSettings, directory_cache_seconds: float,
                     amqp_uri: str | None = None) -> tuple[grpc.Server, int]:
    """The server over a database already open and indexed (the demo seed serves one in process). With
    ``amqp_uri``, it also serves EventLogService: goals' events replayed through that broker."""
    servicer = GoalServicer(V2MOMRepository(db), Directory(db, directory_cache_seconds), TemplateStore(db),
                            CommentStore(db), CheckinProjection(db))
    directory_service = ServiceBinding(directory_pb2_grpc.add_DirectoryServiceServicer_to_server,
                                       DirectoryServicer(servicer.directory),
                                       directory_pb2.DESCRIPTOR.services_by_name["DirectoryService"].full_name)
    return create_service_server(
        addr, auth, servicer, goals_pb2_grpc.add_GoalServiceServicer_to_server,
        goals_pb2.DESCRIPTOR.services_by_name["GoalService"], people=servicer.access.person_record, grants=CALLERS,
        more=[directory_service, *([event_log_binding(db, SERVICE_NAME, events_module.EVENT_TYPES, amqp_uri)]
                                   if amqp_uri else [])],
    )


def main() -> None:
    # SCIM's settings are read inside run_api's create, so a refused SCIM_TOKEN ends with a message. The HTTP
    # side always listens (/metrics); SCIM on it only with SCIM_TOKEN.
    run_api("goals-api", SERVICE_NAME, DEFAULT_ADDR,
            lambda addr, settings: create_server(addr, settings, scim=scim_http.settings_from_env(),
                                                 http_addr=goals_http.addr_from_env()))


if __name__ == "__main__":
    main()
