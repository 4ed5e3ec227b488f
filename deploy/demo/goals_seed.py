"""The demo organisation: Acme Robotics, its people, and V2MOMs in every state.

    python -m deploy.demo.goals_seed [--api HOST:PORT]

The org directory (cycles, org units, people) is written straight into the
goals database with Directory, as an HRIS sync would. The V2MOMs go through
the real GoalService API, every step taken by the person who would take it,
with a token minted for them: the owner creates, submits, edits and
archives; the owner's manager (an admin, for the company V2MOM) approves or
sends back. So every V2MOM has a true history and its outbox events.

Without --api the seed serves the API itself, in process, on a free port.

Running it again changes nothing. Directory writes compare before they write,
creates carry a stable request_id, and each V2MOM's journey resumes from its
revision history. A V2MOM whose history no longer follows its journey
(someone changed it by hand) is left as it is.

The data, and how a V2MOM's journey is written down, is in deploy/demo/goals/.
It was written on 2026-11-27 for FY2027 (with FY2026 archived before it) and
is read moved forward by the whole weeks since (deploy/demo/calendar.py),
so the demo always looks as it did on that day and its running cycle contains today.
"""

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc
from google.protobuf.field_mask_pb2 import FieldMask
from pymongo.database import Database
from tqdm import tqdm

from services.platform.api.auth import bearer_metadata, mint_dev_token
from services.platform.api.tls import PATIENT
from services.platform.core.config import AuthSettings, ConfigError, Settings, load, load_auth
from services.platform.store.mongo import connect, ensure_indexes
from v2mom_format import yaml_content

from services.goals import directory as directory_module
from services.goals import repository as repository_module
from services.goals import templates as templates_module
from services.goals.api import create_server_on
from .goals import DemoDataError, Org, Plan, Step, load_org, load_plans, load_templates
from services.goals.directory import Directory
from services.goals.directory_sync import DirectorySync
from v2mom.v1 import common_pb2, goals_pb2, goals_pb2_grpc

CALL_TIMEOUT = 30.0

# The RPC that takes each step.
RPCS = {
    "submit": "SubmitV2MOM",
    "approve": "ApproveV2MOM",
    "request_changes": "RequestChanges",
    "edit": "UpdateV2MOM",
    "archive": "ArchiveV2MOM",
}


class SeedError(RuntimeError):
    """Seeding stopped; the message says at which V2MOM and step, and why."""


class SlotTaken(Exception):
    """Someone else's V2MOM holds the slot a demo V2MOM would take."""


# --- the org directory ------------------------------------------------------------


def seed_directory(directory: Directory, org: Org) -> int:
    """Writes cycles, units and people; returns how many of them changed."""
    changes = 0
    for cycle in org.cycles:
        stored = directory.cycle(cycle["id"])
        if not stored or (stored["start_date"], stored["end_date"]) != (cycle["start"], cycle["end"]):
            directory.upsert_cycle(cycle["id"], cycle["start"], cycle["end"])
            changes += 1
    changes += sum(directory.upsert_org_unit(unit) for unit in org.units)
    # People an HRIS took over or who left (the demo's reorganisation, deploy/demo/reorg.py) are not the seed's
    # to change: it would move them back, or bring them back.
    kept = directory.people_synced_or_gone()
    written = [person for person in org.people if person["_id"] not in kept and directory.upsert_person(person)]
    # An HRIS path may have named one of them as a manager or unit leader before the seed wrote them.
    DirectorySync(directory).resolve_arrivals(written)
    return changes + len(written)


# --- the V2MOMs and their journeys --------------------------------------------------


@dataclass
class SeedReport:
    directory_changes: int = 0
    people: int = 0
    org_units: int = 0
    v2moms: int = 0
    v2moms_created: int = 0
    steps_run: int = 0
    templates: int = 0
    templates_created: int = 0
    left_alone: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.directory_changes or self.v2moms_created or self.steps_run or self.templates_created)

    def summary(self) -> str:
        org = f"{self.people} people in {self.org_units} org units"
        if not self.changed:
            return f"demo organisation already seeded, nothing changed ({org}, {self.v2moms} V2MOMs)"
        return (
            f"demo organisation seeded: {org} ({self.directory_changes} directory writes), "
            f"{self.v2moms} V2MOMs ({self.v2moms_created} created, {self.steps_run} lifecycle steps), "
            f"{self.templates} templates ({self.templates_created} created)"
        )


class Actors:
    """Call credentials for whoever takes a step, minted from the dev secret."""

    def __init__(self, auth: AuthSettings, org: Org):
        self.auth = auth
        self.org = org
        self._metadata: dict[str, tuple] = {}

    def metadata(self, person_id: str) -> tuple:
        if person_id not in self._metadata:
            token = mint_dev_token(self.auth, person_id, ttl_seconds=3600)  # roles: the directory's
            self._metadata[person_id] = bearer_metadata(token)
        return self._metadata[person_id]

    def admin_other_than(self, person_id: str) -> str:
        # Nobody approves their own V2MOM, admins included.
        return next(a for a in self.org.admins() if a != person_id)


class JourneyRunner:
    """Takes each demo V2MOM through its journey, resuming where an earlier run stopped."""

    def __init__(self, stub: goals_pb2_grpc.GoalServiceStub, actors: Actors, report: SeedReport, bar: tqdm):
        self.stub = stub
        self.actors = actors
        self.report = report
        self.bar = bar
        self.ids: dict[str, str] = {}

    def run(self, plans: list[Plan]) -> None:
        existing = self._existing_slots()
        archives: list[tuple[Plan, goals_pb2.V2MOM, Step]] = []
        for plan in plans:
            self.report.v2moms += 1
            if self._slot(plan) not in existing:
                self.report.v2moms_created += 1
            v2mom, remaining = self._resume(plan)
            for step in remaining:
                if step.action == "archive":
                    archives.append((plan, v2mom, step))
                    continue
                v2mom = self._take(plan, step, v2mom)
        # Archiving comes last, children before parents: a V2MOM cannot align to an archived one.
        for plan, v2mom, step in reversed(archives):
            self._take(plan, step, v2mom)

    def _resume(self, plan: Plan) -> tuple[goals_pb2.V2MOM | None, list[Step]]:
        """The V2MOM (created if need be) and the steps of its journey still to take."""
        v2mom = self._create(plan)
        self.bar.update(1)
        if v2mom is None:
            self.bar.update(len(plan.journey))
            return None, []
        history = self._history(plan.owner, v2mom.id)
        if history != plan.actions[: len(history)]:
            self._leave_alone(plan, f"its history ({', '.join(history)}) no longer follows the demo journey")
            self.bar.update(len(plan.journey))
            return v2mom, []
        self.bar.update(len(history) - 1)
        return v2mom, list(plan.journey[len(history) - 1 :])

    def _create(self, plan: Plan) -> goals_pb2.V2MOM | None:
        request = goals_pb2.CreateV2MOMRequest(
            level=plan.level,
            owner_id=plan.owner if plan.is_individual else "",
            org_unit_id="" if plan.is_individual else plan.document["org_unit"],
            cycle_id=plan.document["cycle"],
            parent_id=self.ids.get(plan.parent_key, ""),
            content=yaml_content.to_content(plan.document, me=plan.owner),
            request_id=plan.key,  # a repeated create returns the V2MOM the first one made
        )
        try:
            v2mom = self._call(plan.owner, "CreateV2MOM", request, plan, "create")
        except SlotTaken:
            self._leave_alone(plan, "someone else's V2MOM already holds its slot")
            return None
        self.ids[plan.key] = v2mom.id
        return v2mom

    def _take(self, plan: Plan, step: Step, v2mom: goals_pb2.V2MOM) -> goals_pb2.V2MOM:
        if step.action in ("approve", "request_changes"):
            actor = v2mom.approver_id or self.actors.admin_other_than(plan.owner)
        else:
            actor = plan.owner
        v2mom = self._call(actor, RPCS[step.action], self._request(step, v2mom, plan), plan, step.action)
        self.report.steps_run += 1
        self.bar.update(1)
        return v2mom

    @staticmethod
    def _request(step: Step, v2mom: goals_pb2.V2MOM, plan: Plan):
        # expected_revision: a concurrent change makes the step fail instead of overwriting it.
        revision = v2mom.revision
        if step.action == "submit":
            return goals_pb2.SubmitV2MOMRequest(id=v2mom.id, expected_revision=revision)
        if step.action == "approve":
            return goals_pb2.ApproveV2MOMRequest(id=v2mom.id, expected_revision=revision, comment=step.text)
        if step.action == "request_changes":
            return goals_pb2.RequestChangesRequest(id=v2mom.id, expected_revision=revision, reason=step.text)
        if step.action == "archive":
            return goals_pb2.ArchiveV2MOMRequest(id=v2mom.id, expected_revision=revision, reason=step.text)
        content = yaml_content.to_content(step.changes, me=plan.owner, existing=v2mom.content)
        return goals_pb2.UpdateV2MOMRequest(
            v2mom=goals_pb2.V2MOM(id=v2mom.id, content=content),
            update_mask=FieldMask(paths=yaml_content.update_paths(step.changes)),
            expected_revision=revision,
            change_reason=step.text,
        )

    def _history(self, owner: str, v2mom_id: str) -> list[str]:
        request = goals_pb2.ListRevisionsRequest(v2mom_id=v2mom_id, page_size=200)
        response = self._call(owner, "ListRevisions", request, None, "read history")
        return [revision.action for revision in response.revisions]

    def _existing_slots(self) -> set[tuple]:
        """What is there before this run, as (cycle, level, unit, owner), seen by an admin."""
        admin = self.actors.org.admins()[0]
        slots, token = set(), ""
        while True:
            request = goals_pb2.ListV2MOMsRequest(page_size=200, page_token=token)
            response = self._call(admin, "ListV2MOMs", request, None, "list")
            slots.update(_slot_of(v.cycle_id, v.level, v.org_unit_id, v.owner_id) for v in response.v2moms)
            token = response.next_page_token
            if not token:
                return slots

    @staticmethod
    def _slot(plan: Plan) -> tuple:
        return _slot_of(plan.document["cycle"], plan.level, plan.document.get("org_unit", ""), plan.owner)

    def _leave_alone(self, plan: Plan, why: str) -> None:
        self.report.left_alone.append(plan.key)
        tqdm.write(f"seed: left {plan.key} as it is: {why}", file=sys.stderr)

    def _call(self, person_id: str, rpc: str, request, plan: Plan | None, what: str):
        try:
            return getattr(self.stub, rpc)(request, metadata=self.actors.metadata(person_id), timeout=CALL_TIMEOUT)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.ALREADY_EXISTS:
                raise SlotTaken() from None
            subject = f"{plan.key} ({plan.path.name})" if plan else "the demo V2MOMs"
            raise SeedError(f"{what} {subject} as {person_id}: {error.code().name}: {error.details()}") from None


def _slot_of(cycle_id: str, level, org_unit_id: str, owner_id: str) -> tuple:
    """One V2MOM per slot: an individual's per owner and cycle, wherever they work now (people move teams)."""
    if level == common_pb2.ORG_LEVEL_INDIVIDUAL:
        return (cycle_id, level, owner_id)
    return (cycle_id, level, org_unit_id)


# --- wiring -----------------------------------------------------------------------


def seed(
    settings_or_db: Settings | Database, goals_api_address: str | None = None, progress: bool | None = True,
    after_directory: Callable[[], None] = lambda: None,
) -> SeedReport:
    """Seeds the demo organisation; goals_api_address=None serves the API in process.

    progress=None shows the progress bar only when stderr is a terminal; ``after_directory`` runs once the
    people exist (so they can call the APIs) and before their V2MOMs' journeys.
    """
    org = load_org()
    plans = load_plans(org)
    with _database(settings_or_db) as (db, auth):
        ensure_indexes(db, repository_module.INDEXES + directory_module.INDEXES + templates_module.INDEXES)
        report = SeedReport(people=len(org.people), org_units=len(org.units))
        # No cache: the API calls below must see the directory written just now.
        report.directory_changes = seed_directory(Directory(db, cache_seconds=0), org)
        after_directory()
        with (_goals_api(db, auth, goals_api_address) as address,
              grpc.insecure_channel(address, options=PATIENT) as channel):  # over every replica it names
            _wait_for(channel, address)
            total = sum(len(plan.actions) for plan in plans)
            disable = None if progress is None else not progress  # tqdm: None means "unless not a terminal"
            with tqdm(total=total, desc="Seeding V2MOMs", unit="step", disable=disable, file=sys.stderr) as bar:
                JourneyRunner(goals_pb2_grpc.GoalServiceStub(channel), Actors(auth, org), report, bar).run(plans)
            seed_templates(goals_pb2_grpc.GoalServiceStub(channel), Actors(auth, org), report)
    return report


# --- templates ---------------------------------------------------------------------


def seed_templates(stub: goals_pb2_grpc.GoalServiceStub, actors: Actors, report: SeedReport) -> None:
    """The demo's templates (deploy/demo/goals/templates), created by an admin through the API; one that
    exists is left as it is (an admin may have changed it since)."""
    admin = actors.org.admins()[0]
    for template in load_templates():
        report.templates += 1
        try:
            stub.CreateTemplate(goals_pb2.CreateTemplateRequest(template=template),
                                metadata=actors.metadata(admin), timeout=CALL_TIMEOUT)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise SeedError(f"creating template {template.id} as {admin}: {error.code().name}: {error.details()}") from None
            continue
        report.templates_created += 1


@contextmanager
def _database(settings_or_db: Settings | Database) -> Iterator[tuple[Database, AuthSettings]]:
    if isinstance(settings_or_db, Database):
        yield settings_or_db, load_auth()
        return
    client = connect(settings_or_db.mongo_uri, "goals-seed")
    try:
        yield client[settings_or_db.database_name], settings_or_db.auth
    finally:
        client.close()


@contextmanager
def _goals_api(db: Database, auth: AuthSettings, address: str | None) -> Iterator[str]:
    if address:
        yield address
        return
    server, port = create_server_on(db, "127.0.0.1:0", auth, directory_cache_seconds=0)
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


def _wait_for(channel: grpc.Channel, address: str, timeout: float = 15.0) -> None:
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        raise SeedError(f"cannot reach goals-api at {address} (waited {timeout:.0f} s)") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", metavar="HOST:PORT", help="a running goals-api (default: serve one in process)")
    args = parser.parse_args(argv)
    try:
        report = seed(load("goals"), goals_api_address=args.api, progress=None)
    except (SeedError, DemoDataError, ConfigError) as error:
        print(f"seed failed: {error}", file=sys.stderr)
        return 1
    print(report.summary())
    for key in report.left_alone:
        print(f"  left as it was: {key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
