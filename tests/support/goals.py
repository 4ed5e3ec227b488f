"""Builders for the goals API tests: a small org, V2MOM content, clients per person, a goals-api over the org.

The org (roles as the permission tests name them):

    acme (company, leader ceo)
    ├── eng (department, leader dana)          dana  = SKIP-level manager of olive
    │   ├── platform (team, leader lee)        lee   = MANAGER of olive
    │   │     olive (OWNER), otto (teammate)
    │   └── mobile (team, leader mia)
    │         pete (PEER: same level, another team)
    └── sales (department, leader sam)
    ada: admin, reports to the CEO, so not in olive's chain (ADMIN)

The fixtures ``goals``, ``isolated_goals`` and ``cycle`` (tests/goals/conftest.py) start a ``GoalsEnv``.
"""

import time
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace

import grpc
import jwt
import pymongo
from google.protobuf import field_mask_pb2
from google.type import date_pb2

from services.goals.api import create_server
from services.goals.directory import Directory
from services.platform.api.auth import bearer_metadata, mint_dev_token
from services.platform.core.config import load
from tests.support.services import served
from v2mom.v1 import common_pb2, goals_pb2, goals_pb2_grpc

OWNER, MANAGER, SKIP, PEER, ADMIN, ANON = "olive", "lee", "dana", "pete", "ada", None
TEAMMATE, CEO, OTHER_LEAD = "otto", "ceo", "mia"

INDIVIDUAL = common_pb2.ORG_LEVEL_INDIVIDUAL
TEAM = common_pb2.ORG_LEVEL_TEAM
DEPARTMENT = common_pb2.ORG_LEVEL_DEPARTMENT
COMPANY = common_pb2.ORG_LEVEL_COMPANY

FY2027, FY2028 = "FY2027", "FY2028"

UNITS = [
    {"_id": "acme", "name": "Acme", "level": "ORG_LEVEL_COMPANY", "parent_id": None, "leader_id": "ceo"},
    {"_id": "eng", "name": "Engineering", "level": "ORG_LEVEL_DEPARTMENT", "parent_id": "acme", "leader_id": "dana"},
    {"_id": "sales", "name": "Sales", "level": "ORG_LEVEL_DEPARTMENT", "parent_id": "acme", "leader_id": "sam"},
    {"_id": "platform", "name": "Platform", "level": "ORG_LEVEL_TEAM", "parent_id": "eng", "leader_id": "lee"},
    {"_id": "mobile", "name": "Mobile", "level": "ORG_LEVEL_TEAM", "parent_id": "eng", "leader_id": "mia"},
]
# id: (display name, org unit, manager, roles)
PEOPLE = {
    "ceo": ("Cleo CEO", "acme", None, []),
    "ada": ("Ada Admin", "acme", "ceo", ["admin"]),
    "dana": ("Dana Head of Eng", "eng", "ceo", []),
    "sam": ("Sam Head of Sales", "sales", "ceo", []),
    "lee": ("Lee Platform Lead", "platform", "dana", []),
    "mia": ("Mia Mobile Lead", "mobile", "dana", []),
    "olive": ("Olive Owner", "platform", "lee", []),
    "otto": ("Otto Teammate", "platform", "lee", []),
    "pete": ("Pete Peer", "mobile", "mia", []),
}


def build_org(db) -> Directory:
    directory = Directory(db, cache_seconds=0)
    directory.upsert_cycle(FY2027, "2026-02-01", "2027-01-31")
    directory.upsert_cycle(FY2028, "2027-02-01", "2028-01-31")
    for unit in UNITS:
        directory.upsert_org_unit(unit)
    for person_id, (name, unit, manager, roles) in PEOPLE.items():
        directory.upsert_person(
            {"_id": person_id, "display_name": name, "email": f"{person_id}@acme.test", "title": name.split(" ", 1)[1],
             "org_unit_id": unit, "manager_id": manager, "roles": roles}
        )
    return directory


# --- content builders -----------------------------------------------------------


def d(year: int, month: int, day: int) -> date_pb2.Date:
    return date_pb2.Date(year=year, month=month, day=day)


def valid_content(owner: str = OWNER, title: str | None = None, vision: str | None = None) -> goals_pb2.V2MOMContent:
    """Three values, five methods, an obstacle and two weighted measures: lint finds nothing at all."""
    values = [
        goals_pb2.Value(id="val-customers", name="Customers first", description="We talk to 5 customers every week"),
        goals_pb2.Value(id="val-quality", name="Quality", description="Every change ships with tests and a rollback plan"),
        goals_pb2.Value(id="val-openness", name="Openness", description="Decisions are written down within 2 days"),
    ]
    value_for = ["val-customers", "val-quality", "val-openness", "val-customers", "val-quality"]
    methods = [
        goals_pb2.Method(
            id=f"mth-{i}", title=f"Ship milestone {i} of the billing rewrite by Q{1 + i % 4}",
            description="Plain, concrete work", value_ids=[value_for[i]], owner_id=owner, accountable_id=owner,
            responsible_ids=[owner], start_date=d(2026, 2, 1), due_date=d(2026, 3 + i, 28),
            milestones=[goals_pb2.Milestone(id=f"mil-{i}", title=f"Design review {i} done", due_date=d(2026, 2, 20))],
        )
        for i in range(5)
    ]
    return goals_pb2.V2MOMContent(
        title=title or f"{owner} FY2027",
        vision=vision or "Cut invoice errors from 4% to 1% by December 2026",
        values=values,
        methods=methods,
        obstacles=[
            goals_pb2.Obstacle(id="obs-1", title="Legacy billing data is inconsistent", owner_id=owner,
                               status=goals_pb2.OBSTACLE_STATUS_OPEN, method_ids=["mth-0"]),
        ],
        measures=[
            goals_pb2.Measure(id="msr-1", title="Invoice error rate at 1%", kind=goals_pb2.MEASURE_KIND_LAGGING, unit="%",
                              baseline=4, target=1, direction=goals_pb2.DIRECTION_DECREASE, due_date=d(2026, 12, 31),
                              method_ids=["mth-0", "mth-1"], owner_id=owner, weight=60),
            goals_pb2.Measure(id="msr-2", title="Customer calls held: 5 a week", kind=goals_pb2.MEASURE_KIND_LEADING,
                              unit="calls", baseline=1, target=5, direction=goals_pb2.DIRECTION_INCREASE,
                              due_date=d(2026, 6, 30), method_ids=["mth-3", "mth-2"], owner_id=owner, weight=40),
        ],
    )


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


# --- clients ----------------------------------------------------------------------------------


STREAMING = {name for name, method in goals_pb2.DESCRIPTOR.services_by_name["GoalService"].methods_by_name.items()
             if method.server_streaming}


class Client:
    """A real gRPC client acting as one person: client.GetV2MOM(request)."""

    def __init__(self, stub, metadata, person_id: str | None):
        self.stub = stub
        self.metadata = metadata
        self.person_id = person_id

    def __getattr__(self, rpc: str):
        method = getattr(self.stub, rpc)
        if rpc in STREAMING:  # a server stream is read whole, so its status (and any refusal) is known here
            return lambda request, timeout=15: list(method(request, metadata=self.metadata, timeout=timeout))
        return lambda request, timeout=15: method(request, metadata=self.metadata, timeout=timeout)


@dataclass
class GoalsEnv:
    settings: object
    db: object
    directory: Directory
    server: object
    channel: grpc.Channel
    stub: goals_pb2_grpc.GoalServiceStub
    running: ExitStack = field(default_factory=ExitStack)

    def client(self, person_id: str | None) -> Client:
        """A client for a person of the org (their roles are the directory's) or ANON (None: no token at all)."""
        if person_id is None:
            return Client(self.stub, (), None)
        return Client(self.stub, bearer_metadata(mint_dev_token(self.settings.auth, person_id)), person_id)

    @contextmanager
    def roles(self, person_id: str, roles: list[str]):
        """The person holds these roles in the directory for a while (HR gives them, then takes them back)."""
        before = self.directory.person(person_id)
        self.directory.upsert_person({**before, "roles": roles})
        try:
            yield self.client(person_id)
        finally:
            self.directory.upsert_person(before)

    def bad_token_clients(self) -> dict[str, Client]:
        """Callers whose token must be refused, each for a different reason."""
        auth = self.settings.auth
        wrong_key = mint_dev_token(replace(auth, secret="not-the-server-secret-but-long-enough-for-hs256"), OWNER)
        expired = mint_dev_token(auth, OWNER, ttl_seconds=-120)  # past the 30 s leeway
        wrong_audience = mint_dev_token(replace(auth, audience="someone-else"), OWNER)
        unsigned = jwt.encode({"sub": OWNER, "exp": int(time.time()) + 600,
                               "iss": auth.issuer, "aud": auth.audience}, key=None, algorithm="none")
        no_subject = jwt.encode({"exp": int(time.time()) + 600, "iss": auth.issuer,
                                 "aud": auth.audience}, auth.secret, algorithm="HS256")
        cases = {
            "no_token": (),
            "wrong_signature": bearer_metadata(wrong_key),
            "expired": bearer_metadata(expired),
            "wrong_audience": bearer_metadata(wrong_audience),
            "alg_none": bearer_metadata(unsigned),
            "no_subject": bearer_metadata(no_subject),
            "garbage": bearer_metadata("not.a.jwt"),
            "basic_scheme": (("authorization", "Basic b2xpdmU6cGFzc3dvcmQ="),),
        }
        return {name: Client(self.stub, metadata, None) for name, metadata in cases.items()}

    def new_cycle(self, start: str = "2026-02-01", end: str = "2027-01-31") -> str:
        """A fresh cycle, so a test gets empty V2MOM slots without a database of its own."""
        cycle_id = f"T{uuid.uuid4().hex[:12]}"
        self.directory.upsert_cycle(cycle_id, start, end)
        return cycle_id

    # --- V2MOM shortcuts (each step through the real API) ---------------------------------

    def create(self, owner: str = OWNER, cycle_id: str = FY2027, level: int = INDIVIDUAL, org_unit_id: str = "",
               content: goals_pb2.V2MOMContent | None = None, parent_id: str = "", as_person: str | None = None,
               **extra) -> goals_pb2.V2MOM:
        request = goals_pb2.CreateV2MOMRequest(
            level=level, owner_id=owner if level == INDIVIDUAL else "", org_unit_id=org_unit_id, cycle_id=cycle_id,
            parent_id=parent_id, content=content if content is not None else valid_content(owner), **extra,
        )
        return self.client(as_person or owner).CreateV2MOM(request)

    def submit(self, v2mom: goals_pb2.V2MOM, as_person: str | None = None) -> goals_pb2.V2MOM:
        return self.client(as_person or v2mom.owner_id).SubmitV2MOM(goals_pb2.SubmitV2MOMRequest(id=v2mom.id))

    def approve(self, v2mom: goals_pb2.V2MOM, approver: str) -> goals_pb2.V2MOM:
        return self.client(approver).ApproveV2MOM(goals_pb2.ApproveV2MOMRequest(id=v2mom.id))

    def published(self, approver: str = MANAGER, **create_args) -> goals_pb2.V2MOM:
        v2mom = self.create(**create_args)
        self.submit(v2mom)
        return self.approve(v2mom, approver)

    def submitted(self, **create_args) -> goals_pb2.V2MOM:
        return self.submit(self.create(**create_args))

    def edit(self, v2mom: goals_pb2.V2MOM, as_person: str | None = None, reason: str = "", expected: int = 0,
             **content_fields) -> goals_pb2.V2MOM:
        """Sets top-level content fields (title=..., vision=...) through UpdateV2MOM."""
        content = goals_pb2.V2MOMContent(**content_fields)
        return self.client(as_person or v2mom.owner_id).UpdateV2MOM(goals_pb2.UpdateV2MOMRequest(
            v2mom=goals_pb2.V2MOM(id=v2mom.id, content=content),
            update_mask=mask(*(f"content.{k}" for k in content_fields)),
            change_reason=reason, expected_revision=expected,
        ))

    # --- the store, read directly -------------------------------------------------------------

    def raw(self, v2mom_id: str) -> dict | None:
        """The whole stored document, history and outbox included."""
        return self.db.v2moms.find_one({"_id": v2mom_id})

    def v2mom_count(self, **query) -> int:
        return self.db.v2moms.count_documents(query)

    def close(self) -> None:
        self.channel.close()
        self.running.close()


def start_env(mongo_uri: str) -> GoalsEnv:
    settings = replace(load("goals"), mongo_uri=mongo_uri, mongo_db=f"goals_test_{uuid.uuid4().hex[:10]}",
                       directory_cache_seconds=0.0)
    mongo = pymongo.MongoClient(mongo_uri, tz_aware=True)
    db = mongo[settings.database_name]
    directory = build_org(db)
    running = ExitStack()
    server, port = running.enter_context(served(create_server, settings))
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    grpc.channel_ready_future(channel).result(timeout=10)
    return GoalsEnv(settings, db, directory, server, channel, goals_pb2_grpc.GoalServiceStub(channel), running)


def stop_env(env: GoalsEnv) -> None:
    env.close()
    env.db.client.drop_database(env.db.name)
    env.db.client.close()
