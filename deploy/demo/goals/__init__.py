"""The demo organisation as data: Acme Robotics' org chart and its V2MOMs, read from YAML.

org.yaml holds the org tree, the people and the cycles. v2moms/ holds one file
per V2MOM, in the format `v2mom create -f` reads, plus a `seed:` section: the
V2MOM's key (stable across runs), the key of the V2MOM it aligns to, and its
journey, the lifecycle steps deploy/demo/goals_seed.py takes through the API:

    seed:
      key: fy27-sales
      parent: fy27-company
      journey:
        - submit                               # by the owner
        - request_changes: Tie this to ARR.    # by the approver
        - edit: {reason: ..., vision: ...}     # by the owner; replaces the sections given
        - submit
        - approve: Clear numbers now.          # by the approver (an admin for the company)
        - archive: Superseded.                 # by the owner; only ever the last step

The files were written on 2026-11-27 for the fiscal year FY2027
(2026-02-01..2027-01-31), with FY2026 as the archived year before it. They are
read moved forward by the whole weeks since then
(deploy/demo/calendar.py), so the demo always looks as it did on
that day: every date moves on by the same days, and once FY2027's last day
has moved into 2028, FY2026/FY2027, fy26/fy27 in ids, keys and titles read a
year later, and so on.
"""

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import yaml

from deploy.demo import calendar as demo_calendar
from v2mom_format import yaml_content
from v2mom.v1 import goals_pb2

DEMO_DIR = Path(__file__).parent


class DemoDataError(ValueError):
    """The demo files contradict themselves; the message names the file."""


# Each journey step leaves one revision with this action (goals.proto, Revision.action).
ACTIONS = {
    "submit": "SUBMIT",
    "approve": "APPROVE",
    "request_changes": "REQUEST_CHANGES",
    "edit": "UPDATE",
    "archive": "ARCHIVE",
}


# --- the org chart ---------------------------------------------------------------


@dataclass(frozen=True)
class Org:
    cycles: list[dict]
    units: list[dict]
    people: list[dict]
    # How many days demo_calendar moved the files on; the V2MOMs are read the same way, to match.
    days_ahead: int = 0

    def roles(self, person_id: str) -> list[str]:
        return next((p["roles"] for p in self.people if p["_id"] == person_id), [])

    def leader(self, unit_id: str) -> str:
        return next(u["leader_id"] for u in self.units if u["_id"] == unit_id)

    def admins(self) -> list[str]:
        return [p["_id"] for p in self.people if "admin" in p["roles"]]


def load_org(path: Path = DEMO_DIR / "org.yaml", today: date | None = None) -> Org:
    """Reads the org tree; reporting lines follow it (see the comment in org.yaml).

    The dates are moved on by the whole weeks from 2026-11-27 to `today` (default: the UTC date), so the last
    cycle runs and the demo is where its files left it.
    """
    days = demo_calendar.days_ahead(today)
    data = demo_calendar.shift(yaml.safe_load(path.read_text(encoding="utf-8")), days)
    domain = data["email_domain"]
    units: list[dict] = []
    people: list[dict] = []

    def add_unit(node: dict, level: str, parent_id: str | None, manager_id: str | None) -> str:
        leader = node["leader"]
        units.append({"_id": node["id"], "name": node["name"], "level": level, "parent_id": parent_id, "leader_id": leader["id"]})
        people.append(_person(leader, node["id"], manager_id, domain))
        return leader["id"]

    company = data["company"]
    ceo = add_unit(company, "ORG_LEVEL_COMPANY", None, None)
    for department in company["departments"]:
        head = add_unit(department, "ORG_LEVEL_DEPARTMENT", company["id"], ceo)
        for team in department["teams"]:
            lead = add_unit(team, "ORG_LEVEL_TEAM", department["id"], head)
            people.extend(_person(member, team["id"], lead, domain) for member in team["members"])
    cycles = [{"id": c["id"], "start": str(c["start"]), "end": str(c["end"])} for c in data["cycles"]]
    return Org(cycles=cycles, units=units, people=people, days_ahead=days)


def _person(entry: dict, unit_id: str, manager_id: str | None, domain: str) -> dict:
    return {
        "_id": entry["id"],
        "display_name": entry["name"],
        "email": f"{entry['id']}@{domain}",
        "title": entry["title"],
        "manager_id": manager_id,
        "org_unit_id": unit_id,
        "roles": list(entry.get("roles", [])),
        "active": True,
    }


# --- the V2MOMs and their journeys ------------------------------------------------


@dataclass(frozen=True)
class Step:
    action: str  # a key of ACTIONS
    text: str = ""  # the approver's comment, or the reason
    changes: dict = field(default_factory=dict)  # for edit: the sections it replaces


@dataclass(frozen=True)
class Plan:
    key: str
    path: Path
    document: dict  # the V2MOM file without its seed section
    owner: str
    parent_key: str | None
    journey: tuple[Step, ...]

    @property
    def level(self) -> int:
        return yaml_content.level_of(self.document)

    @property
    def is_individual(self) -> bool:
        return self.level == yaml_content.LEVELS["individual"]

    @property
    def actions(self) -> list[str]:
        """The revision history this plan produces, once complete."""
        return ["CREATE", *(ACTIONS[step.action] for step in self.journey)]


def load_plans(org: Org, folder: Path = DEMO_DIR / "v2moms") -> list[Plan]:
    """Every demo V2MOM, parents before the V2MOMs aligned to them, moved on as far as `org` was."""
    plans = {plan.key: plan for plan in (_load_plan(path, org) for path in sorted(folder.glob("*.yaml")))}
    for plan in plans.values():
        if plan.parent_key and plan.parent_key not in plans:
            raise DemoDataError(f"{plan.path.name}: parent {plan.parent_key!r} is not the key of any demo V2MOM")

    def depth(plan: Plan) -> int:
        return 0 if not plan.parent_key else 1 + depth(plans[plan.parent_key])

    return sorted(plans.values(), key=lambda plan: (depth(plan), plan.key))


def _load_plan(path: Path, org: Org) -> Plan:
    # Shifted by the org's days, not today's: plans read a moment later still fit the org's cycles.
    document = demo_calendar.shift(yaml.safe_load(path.read_text(encoding="utf-8")), org.days_ahead)
    script = document.pop("seed")
    is_individual = yaml_content.level_of(document) == yaml_content.LEVELS["individual"]
    owner = document["owner"] if is_individual else org.leader(document["org_unit"])
    journey = tuple(_step(raw, path) for raw in script.get("journey") or [])
    if any(step.action == "archive" for step in journey[:-1]):
        raise DemoDataError(f"{path.name}: archive can only be the last step of a journey")
    return Plan(script["key"], path, document, owner, script.get("parent"), journey)


def _step(raw, path: Path) -> Step:
    action, argument = (raw, None) if isinstance(raw, str) else next(iter(raw.items()))
    if action not in ACTIONS:
        raise DemoDataError(f"{path.name}: unknown journey step {action!r}; use one of {', '.join(ACTIONS)}")
    if action == "edit":
        changes = dict(argument)
        return Step(action, changes.pop("reason", ""), changes)
    return Step(action, argument or "")


# --- templates --------------------------------------------------------------------


def load_templates(folder: Path = DEMO_DIR / "templates") -> list[goals_pb2.Template]:
    """The demo's templates, one file each (named by the template's id): the V2MOM format plus a `template:`
    header with its name and description. Templates name no people and no dates: they fit any owner and cycle."""
    return [_load_template(path) for path in sorted(folder.glob("*.yaml"))]


def _load_template(path: Path) -> goals_pb2.Template:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    header = document.pop("template", None)
    if not isinstance(header, dict) or not header.get("name"):
        raise DemoDataError(f"{path.name}: needs a `template:` header with a name")
    try:
        content = yaml_content.to_content(document, me="")
        level = yaml_content.level_of(document)
    except yaml_content.ContentError as error:
        raise DemoDataError(f"{path.name}: {error}") from None
    return goals_pb2.Template(id=path.stem, name=header["name"], description=header.get("description", "").strip(),
                              level=level, content=content)
