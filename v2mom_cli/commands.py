"""What each `v2mom` command does: one short function per command.

Each takes the Context (connection, who you are) and the parsed arguments,
prints its result and returns the exit status.
"""

import time
import uuid
from pathlib import Path

import grpc
from google.protobuf.field_mask_pb2 import FieldMask

from v2mom.v1 import goals_pb2

from v2mom_format import yaml_content

from . import planning, refs, render
from .errors import CliError
from .session import (
    CHECKINS_API, DEFAULT_CHECKINS_ADDR, DEFAULT_NOTIFY_ADDR, NOTIFY_API, Client, claims_of, load_token,
    login as mint_login, login_with_token, token_path,
)

STATES = {name.removeprefix("V2MOM_STATE_").lower(): value for name, value in goals_pb2.V2MOMState.items() if value}


class Context:
    """The connections and identity a command works with, opened on first use."""

    def __init__(self, addr: str, checkins_addr: str = DEFAULT_CHECKINS_ADDR, notify_addr: str = DEFAULT_NOTIFY_ADDR):
        self.addr = addr
        self.checkins_addr = checkins_addr
        self.notify_addr = notify_addr
        self._client: Client | None = None
        self._checkins: Client | None = None
        self._notify: Client | None = None
        self._names: dict[str, str] = {}
        # One per invocation: every attempt at this command's write carries it, so it is recorded once.
        self.idempotency_key = f"cli-{uuid.uuid4().hex}"

    @property
    def client(self) -> Client:
        """The goals API."""
        if self._client is None:
            self._client = Client(self.addr, load_token())
        return self._client

    @property
    def checkins(self) -> Client:
        """The check-ins API, as the same person."""
        if self._checkins is None:
            self._checkins = Client(self.checkins_addr, self.client.token, CHECKINS_API)
        return self._checkins

    @property
    def notify(self) -> Client:
        """The notify API (inbox, preferences, delivery log), as the same person."""
        if self._notify is None:
            self._notify = Client(self.notify_addr, self.client.token, NOTIFY_API)
        return self._notify

    @property
    def me(self) -> str:
        return claims_of(self.client.token)["sub"]

    def call(self, rpc: str, request):
        return self.client.call(rpc, request)

    def resolve(self, ref: str, cycle_id: str = "") -> str:
        return refs.resolve(self.client, ref, self.me, cycle_id)

    def name_of(self, person_id: str) -> str:
        """A person's display name, or their id when the directory does not know them."""
        if person_id not in self._names:
            try:
                person = self.call("GetPerson", goals_pb2.GetPersonRequest(id=person_id))
                self._names[person_id] = person.display_name
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                self._names[person_id] = person_id
        return self._names[person_id]

    def close(self) -> None:
        for client in (self._client, self._checkins, self._notify):
            if client is not None:
                client.close()


# --- who you are ------------------------------------------------------------------


def login(ctx: Context, args) -> int:
    if args.token:
        person, path, expires = login_with_token(ctx.addr, args.token)
    elif args.person_id:
        person, path, expires = mint_login(ctx.addr, args.person_id)
    else:
        raise CliError("say who: `v2mom login <person-id>` (development) or `v2mom login --token <JWT>`")
    roles = f"; roles: {', '.join(person.roles)}" if person.roles else ""
    print(f"Logged in as {person.display_name} ({person.id}), {person.title}{roles}.")
    print(f"Token saved in {_home_relative(path)}, valid until {_clock(expires)}.")
    return 0


def whoami(ctx: Context, args) -> int:
    claims = claims_of(ctx.client.token)
    person = ctx.call("GetPerson", goals_pb2.GetPersonRequest(id=claims["sub"]))
    print(render.person_card(person, ctx.name_of))
    left = claims.get("exp", 0) - time.time()
    validity = f"valid until {_clock(claims['exp'])}" if left > 0 else "expired: run `v2mom login` again"
    print(f"Token: {_home_relative(token_path())}, {validity}")
    print(f"API: {ctx.addr}")
    return 0


# --- the directory ------------------------------------------------------------------


def people(ctx: Context, args) -> int:
    request = goals_pb2.ListPeopleRequest(org_unit_id=args.unit or "", manager_id=args.manager or "")
    print(render.people_table(refs.list_all(ctx.client, "ListPeople", request, "people")))
    return 0


def units(ctx: Context, args) -> int:
    print(render.units_tree(refs.list_all(ctx.client, "ListOrgUnits", goals_pb2.ListOrgUnitsRequest(), "org_units")))
    return 0


# --- reading V2MOMs --------------------------------------------------------------------


def list_v2moms(ctx: Context, args) -> int:
    owner = ctx.me if args.mine or args.owner == "me" else args.owner or ""
    request = goals_pb2.ListV2MOMsRequest(
        owner_id=owner, org_unit_id=args.unit or "", cycle_id=args.cycle or "", state=_state(args.state),
        parent_changed=args.parent_changed,
    )
    print(render.v2mom_table(refs.list_all(ctx.client, "ListV2MOMs", request, "v2moms")))
    return 0


def show(ctx: Context, args) -> int:
    view = goals_pb2.V2MOM_VIEW_PUBLISHED if args.published else goals_pb2.V2MOM_VIEW_UNSPECIFIED
    v2mom = ctx.call("GetV2MOM", goals_pb2.GetV2MOMRequest(id=ctx.resolve(args.v2mom), view=view))
    if args.yaml:
        print(yaml_content.to_yaml(v2mom), end="")
        return 0
    unit = ctx.call("GetOrgUnit", goals_pb2.GetOrgUnitRequest(id=v2mom.org_unit_id))
    print(render.v2mom_detail(v2mom, ctx.name_of, unit.name, _title_if_visible(ctx, v2mom.parent_id)))
    return 0


def pending(ctx: Context, args) -> int:
    v2moms = refs.list_all(ctx.client, "ListPendingApprovals", goals_pb2.ListPendingApprovalsRequest(), "v2moms")
    print(render.v2mom_table(v2moms))
    if v2moms:
        print(f"\nReview one with `v2mom show <id>`, then `v2mom approve <id>` or `v2mom request-changes <id> --reason ...`.")
    return 0


def history(ctx: Context, args) -> int:
    request = goals_pb2.ListRevisionsRequest(v2mom_id=ctx.resolve(args.v2mom))
    print(render.history_table(refs.list_all(ctx.client, "ListRevisions", request, "revisions")))
    return 0


def tree(ctx: Context, args) -> int:
    root = ctx.call("GetAlignmentTree", goals_pb2.GetAlignmentTreeRequest(id=ctx.resolve(args.v2mom), max_depth=args.depth))
    print(render.alignment_tree(root, methods=args.methods))
    return 0


def lint(ctx: Context, args) -> int:
    if bool(args.v2mom) == bool(args.file):
        raise CliError("lint needs either a V2MOM (v2mom lint <id>) or a file (v2mom lint -f file.yaml)", exit_code=2)
    if args.file:
        request = goals_pb2.LintV2MOMRequest(content=yaml_content.to_content(yaml_content.load_file(args.file), ctx.me))
    else:
        request = goals_pb2.LintV2MOMRequest(id=ctx.resolve(args.v2mom))
    response = ctx.call("LintV2MOM", request)
    print(render.lint_report(response))
    return 0 if response.submittable else 1


# --- changing V2MOMs --------------------------------------------------------------------


def create(ctx: Context, args) -> int:
    if bool(args.template) == bool(args.file):
        raise CliError("say what to start from: -f <file> or --template <id>")
    if args.template:
        return planning.create_from_template(ctx, args)
    document = yaml_content.load_file(args.file)
    cycle_id = str(document.get("cycle") or refs.current_cycle(ctx.client))
    owner = document.get("owner")
    request = goals_pb2.CreateV2MOMRequest(
        level=yaml_content.level_of(document),
        owner_id="" if owner in (None, "me") else str(owner),
        org_unit_id=str(document.get("org_unit") or ""),
        cycle_id=cycle_id,
        parent_id=ctx.resolve(str(document["parent"]), cycle_id) if document.get("parent") else "",
        content=yaml_content.to_content(document, ctx.me),
    )
    v2mom = ctx.call("CreateV2MOM", request)
    print(f"Created {v2mom.id}: {v2mom.content.title or '(untitled)'} ({render.state_name(v2mom.state)}).")
    print(f"Next: v2mom lint {v2mom.id}, then v2mom submit {v2mom.id}")
    return 0


def edit(ctx: Context, args) -> int:
    document = yaml_content.load_file(args.file)
    paths = yaml_content.update_paths(document)
    if not paths:
        raise CliError(f"{args.file} changes nothing: give one of {', '.join(yaml_content.SECTION_KEYS)} or parent")
    v2mom_id = ctx.resolve(args.v2mom)
    current = ctx.call("GetV2MOM", goals_pb2.GetV2MOMRequest(id=v2mom_id, view=goals_pb2.V2MOM_VIEW_WORKING))
    _check_fixed_fields(document, current, ctx.me)
    parent_id = ctx.resolve(str(document["parent"]), current.cycle_id) if document.get("parent") else ""
    request = goals_pb2.UpdateV2MOMRequest(
        v2mom=goals_pb2.V2MOM(id=v2mom_id, parent_id=parent_id, content=yaml_content.to_content(document, ctx.me, current.content)),
        update_mask=FieldMask(paths=paths),
        # The edit was made against this revision; a change in between fails rather than being overwritten.
        expected_revision=current.revision,
        change_reason=args.reason or "",
    )
    updated = ctx.call("UpdateV2MOM", request)
    if updated.revision == current.revision:
        print(f"Nothing changed: {v2mom_id} already says what {args.file} says.")
        return 0
    print(f"Updated {v2mom_id}: revision {updated.revision}, {render.state_label(updated)}.")
    if current.state == goals_pb2.V2MOM_STATE_PUBLISHED:
        print("A new draft is open; everyone else sees the published version until it is approved again.")
    return 0


def submit(ctx: Context, args) -> int:
    v2mom = ctx.call("SubmitV2MOM", goals_pb2.SubmitV2MOMRequest(id=ctx.resolve(args.v2mom)))
    approver = f"{ctx.name_of(v2mom.approver_id)} ({v2mom.approver_id})" if v2mom.approver_id else "an admin"
    print(f"Submitted {v2mom.id}: waiting for {approver} to approve it.")
    return 0


def approve(ctx: Context, args) -> int:
    request = goals_pb2.ApproveV2MOMRequest(id=ctx.resolve(args.v2mom), comment=args.comment or "")
    v2mom = ctx.call("ApproveV2MOM", request)
    print(f"Approved {v2mom.id}: {v2mom.content.title} is published (revision {v2mom.published_revision}).")
    return 0


def request_changes(ctx: Context, args) -> int:
    v2mom = ctx.call("RequestChanges", goals_pb2.RequestChangesRequest(id=ctx.resolve(args.v2mom), reason=args.reason))
    print(f"Sent {v2mom.id} back to {ctx.name_of(v2mom.owner_id)} with your reason.")
    return 0


def archive(ctx: Context, args) -> int:
    v2mom = ctx.call("ArchiveV2MOM", goals_pb2.ArchiveV2MOMRequest(id=ctx.resolve(args.v2mom), reason=args.reason or ""))
    print(f"Archived {v2mom.id}: {v2mom.content.title}.")
    return 0


# --- helpers ----------------------------------------------------------------------------


def _state(name: str | None) -> int:
    if not name:
        return 0
    key = name.lower().replace("-", "_")
    if key not in STATES:
        raise CliError(f"unknown state {name!r}; use one of {', '.join(STATES)}", exit_code=2)
    return STATES[key]


def _check_fixed_fields(document: dict, current: goals_pb2.V2MOM, me: str) -> None:
    """Level, cycle, unit and owner are fixed at creation; `show --yaml` files carry them unchanged."""
    fixed = {
        "level": render.level_name(current.level),
        "cycle": current.cycle_id,
        "org_unit": current.org_unit_id,
        "owner": current.owner_id,
    }
    for key, value in fixed.items():
        given = document.get(key)
        given = me if key == "owner" and given == "me" else given
        if given is not None and str(given).lower() != value.lower():
            raise CliError(f"{key} is {value} and cannot change by edit (the file says {given})")


def _title_if_visible(ctx: Context, v2mom_id: str) -> str:
    if not v2mom_id:
        return ""
    try:
        return ctx.call("GetV2MOM", goals_pb2.GetV2MOMRequest(id=v2mom_id)).content.title
    except grpc.RpcError as error:
        if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED):
            return ""
        raise


def _home_relative(path: Path) -> str:
    try:
        return "~/" + str(path.resolve().relative_to(Path.home().resolve()))
    except ValueError:
        return str(path)


def _clock(epoch_seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch_seconds))
