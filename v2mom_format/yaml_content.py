"""V2MOM content as YAML: what `create`, `edit` and `lint -f` read and `show --yaml` writes.

    level: individual          # create: individual | team | department | company
    cycle: FY2027              # create: default is the current cycle
    org_unit: eng-platform     # create: the unit, for team/department/company V2MOMs
    owner: me                  # create: individual V2MOMs; admins may name someone else
    parent: unit:eng-platform  # the V2MOM this one aligns to: an id, unit:<unit> or @<person>
    title: My FY2027 V2MOM
    vision: Where this year ends, in one or two concrete sentences.
    values:                    # 3 to 5, each with the behaviour it stands for
      - name: Safety first
        description: We stop and ask when something looks unsafe.
    methods:                   # in priority order: the first matters most
      - title: Ship the fleet health dashboard
        description: Why and how, in a few lines.
        values: [Safety first]            # value names (or ids)
        owner: me                         # people are directory ids; `me` is you
        accountable: priya.raman          # RACI: exactly one Accountable ...
        responsible: [me]                 # ... and any number of R, C and I
        consulted: [li.wei]
        informed: []
        start: 2026-03-01
        due: 2026-06-30
        weight: 40                        # optional; when used, weights total 100
        milestones:
          - {title: Design review, due: 2026-03-31, done: true}
    obstacles:
      - title: What stands in the way
        description: And what you will do about it.
        owner: me
        status: open                      # open | mitigating | resolved
        methods: [Ship the fleet health dashboard]   # method titles (or ids)
    measures:
      - title: Fleet uptime
        kind: lagging                     # leading | lagging
        unit: "%"
        baseline: 98.1
        target: 99.5
        direction: increase               # increase | decrease
        due: 2026-12-31
        owner: me
        methods: [Ship the fleet health dashboard]
        weight: 100                       # optional; when used, weights total 100

Every item may carry an `id:` (`show --yaml` writes them). When editing, an
item without one keeps the id of the item with the same name or title, so
links and check-ins survive; a new item gets an id made from its name.
"""

import re
import sys
from datetime import date

import yaml
from google.type import date_pb2

from v2mom.v1 import common_pb2, goals_pb2

HEADER_KEYS = ("level", "cycle", "org_unit", "owner", "parent")
SECTION_KEYS = ("title", "vision", "values", "methods", "obstacles", "measures")

VALUE_KEYS = ("id", "name", "description")
METHOD_KEYS = (
    "id", "title", "description", "values", "owner", "accountable", "responsible", "consulted",
    "informed", "start", "due", "weight", "milestones", "supports",
)
MILESTONE_KEYS = ("id", "title", "due", "done")
OBSTACLE_KEYS = ("id", "title", "description", "owner", "status", "methods")
MEASURE_KEYS = (
    "id", "title", "kind", "unit", "baseline", "target", "direction", "due", "owner", "methods", "weight",
)

LEVELS = {
    "company": common_pb2.ORG_LEVEL_COMPANY,
    "department": common_pb2.ORG_LEVEL_DEPARTMENT,
    "team": common_pb2.ORG_LEVEL_TEAM,
    "individual": common_pb2.ORG_LEVEL_INDIVIDUAL,
}
STATUSES = {
    "open": goals_pb2.OBSTACLE_STATUS_OPEN,
    "mitigating": goals_pb2.OBSTACLE_STATUS_MITIGATING,
    "resolved": goals_pb2.OBSTACLE_STATUS_RESOLVED,
}
KINDS = {"leading": goals_pb2.MEASURE_KIND_LEADING, "lagging": goals_pb2.MEASURE_KIND_LAGGING}
DIRECTIONS = {"increase": goals_pb2.DIRECTION_INCREASE, "decrease": goals_pb2.DIRECTION_DECREASE}

MAX_ID = 64


class ContentError(ValueError):
    """The file cannot become a V2MOM; the message names the place."""


# --- reading -----------------------------------------------------------------


def load_file(path: str) -> dict:
    """The YAML mapping in path ('-' reads standard input)."""
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    except OSError as error:
        raise ContentError(f"cannot read it: {error.strerror}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ContentError(f"not valid YAML: {error}") from None
    if not isinstance(document, dict):
        raise ContentError("must be a YAML mapping with keys such as title, vision, values, methods")
    _check_keys(document, HEADER_KEYS + SECTION_KEYS, "")
    return document


def level_of(document: dict) -> int:
    return _choice(document.get("level"), LEVELS, "level", required=True)


def update_paths(document: dict) -> list[str]:
    """The UpdateV2MOM field mask for the sections the file contains."""
    paths = [f"content.{key}" for key in SECTION_KEYS if key in document]
    if "parent" in document:
        paths.append("parent_id")
    return paths


def to_content(document: dict, me: str, existing: goals_pb2.V2MOMContent | None = None) -> goals_pb2.V2MOMContent:
    """Builds V2MOMContent from the file.

    When editing, `existing` is the current working copy: items keep their ids,
    and sections the file leaves out are carried over, so links from the file
    to them (a method's values, a measure's methods) still resolve.
    """
    existing = existing or goals_pb2.V2MOMContent()
    _check_keys(document, HEADER_KEYS + SECTION_KEYS, "")
    content = goals_pb2.V2MOMContent()
    content.CopyFrom(existing)
    for key in ("title", "vision"):
        if key in document:
            setattr(content, key, _text(document, key, ""))
    if "values" in document:
        _replace(content.values, _values(document, existing))
    if "methods" in document:
        _replace(content.methods, _methods(document, existing, me, _labels(content.values, "name")))
    method_links = _labels(content.methods, "title")
    if "obstacles" in document:
        _replace(content.obstacles, _obstacles(document, existing, me, method_links))
    if "measures" in document:
        _replace(content.measures, _measures(document, existing, me, method_links))
    return content


def _replace(field, items: list) -> None:
    del field[:]
    field.extend(items)


def _values(document, existing) -> list:
    ids = IdMaker("val", _labels(existing.values, "name"))
    values = []
    for path, item in _items(document, "values", VALUE_KEYS):
        name = _text(item, "name", path, required=True)
        values.append(goals_pb2.Value(id=ids.make(item, name, path), name=name, description=_text(item, "description", path)))
    return values


def _methods(document, existing, me, value_ids) -> list:
    ids = IdMaker("mth", _labels(existing.methods, "title"))
    old_milestones = {m.id: _labels(m.milestones, "title") for m in existing.methods}
    methods = []
    for path, item in _items(document, "methods", METHOD_KEYS):
        title = _text(item, "title", path, required=True)
        method = goals_pb2.Method(
            id=ids.make(item, title, path),
            title=title,
            description=_text(item, "description", path),
            value_ids=_links(item, "values", path, value_ids),
            owner_id=_person(item.get("owner"), me, f"{path}.owner"),
            accountable_id=_person(item.get("accountable"), me, f"{path}.accountable"),
            responsible_ids=_people(item, "responsible", path, me),
            consulted_ids=_people(item, "consulted", path, me),
            informed_ids=_people(item, "informed", path, me),
            weight=_number(item, "weight", path) or 0.0,
            # The parent's method ids (its content is not at hand here): goals-api checks them.
            supports=_links(item, "supports", path, {}),
        )
        _set_date(method.start_date, item, "start", path)
        _set_date(method.due_date, item, "due", path)
        method.milestones.extend(_milestones(item, path, old_milestones.get(method.id, {})))
        methods.append(method)
    return methods


def _milestones(method: dict, method_path: str, old_ids: dict) -> list:
    ids = IdMaker("mil", old_ids)
    milestones = []
    for path, item in _items(method, "milestones", MILESTONE_KEYS, method_path):
        title = _text(item, "title", path, required=True)
        milestone = goals_pb2.Milestone(id=ids.make(item, title, path), title=title, done=_flag(item, "done", path))
        _set_date(milestone.due_date, item, "due", path)
        milestones.append(milestone)
    return milestones


def _obstacles(document, existing, me, method_ids) -> list:
    ids = IdMaker("obs", _labels(existing.obstacles, "title"))
    obstacles = []
    for path, item in _items(document, "obstacles", OBSTACLE_KEYS):
        title = _text(item, "title", path, required=True)
        obstacles.append(
            goals_pb2.Obstacle(
                id=ids.make(item, title, path),
                title=title,
                description=_text(item, "description", path),
                owner_id=_person(item.get("owner"), me, f"{path}.owner"),
                status=_choice(item.get("status"), STATUSES, f"{path}.status"),
                method_ids=_links(item, "methods", path, method_ids),
            )
        )
    return obstacles


def _measures(document, existing, me, method_ids) -> list:
    ids = IdMaker("msr", _labels(existing.measures, "title"))
    measures = []
    for path, item in _items(document, "measures", MEASURE_KEYS):
        title = _text(item, "title", path, required=True)
        measure = goals_pb2.Measure(
            id=ids.make(item, title, path),
            title=title,
            kind=_choice(item.get("kind"), KINDS, f"{path}.kind"),
            unit=_text(item, "unit", path),
            direction=_choice(item.get("direction"), DIRECTIONS, f"{path}.direction"),
            owner_id=_person(item.get("owner"), me, f"{path}.owner"),
            method_ids=_links(item, "methods", path, method_ids),
            weight=_number(item, "weight", path) or 0.0,
        )
        # Unset is not zero: a missing baseline is a lint error, a baseline of 0 is fine.
        for field in ("baseline", "target"):
            number = _number(item, field, path)
            if number is not None:
                setattr(measure, field, number)
        _set_date(measure.due_date, item, "due", path)
        measures.append(measure)
    return measures


class IdMaker:
    """Item ids: explicit, else the previous id of the same label, else one made from the label."""

    def __init__(self, prefix: str, previous: dict[str, str]):
        self.prefix = prefix
        self.previous = previous
        self.taken: set[str] = set()

    def make(self, item: dict, label: str, path: str) -> str:
        explicit = item.get("id")
        if explicit is not None and not isinstance(explicit, str):
            raise ContentError(f"{path}.id must be text")
        previous = self.previous.get(label)
        candidate = explicit or (previous if previous not in self.taken else None) or self._from_label(label)
        self.taken.add(candidate)
        return candidate

    def _from_label(self, label: str) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "item"
        base = f"{self.prefix}-{slug}"[: MAX_ID - 4].rstrip("-")
        candidate, n = base, 2
        while candidate in self.taken or candidate in self.previous.values():
            candidate, n = f"{base}-{n}", n + 1
        return candidate


# --- small readers, each naming the place of a mistake -----------------------


def _check_keys(mapping: dict, allowed: tuple, path: str) -> None:
    unknown = [key for key in mapping if key not in allowed]
    if unknown:
        where = f"{path}: " if path else ""
        raise ContentError(f"{where}unknown key {unknown[0]!r}; allowed: {', '.join(allowed)}")


def _items(mapping: dict, key: str, allowed: tuple, parent: str = ""):
    raw = mapping.get(key) or []
    name = f"{parent}.{key}" if parent else key
    if not isinstance(raw, list):
        raise ContentError(f"{name} must be a list")
    for i, item in enumerate(raw):
        path = f"{name}[{i}]"
        if not isinstance(item, dict):
            raise ContentError(f"{path} must be a mapping (key: value lines)")
        _check_keys(item, allowed, path)
        yield path, item


def _text(mapping: dict, key: str, path: str, required: bool = False) -> str:
    value = mapping.get(key)
    where = f"{path}.{key}" if path else key
    if value is None:
        if required:
            raise ContentError(f"{where} is required")
        return ""
    if isinstance(value, (dict, list)):
        raise ContentError(f"{where} must be text")
    return str(value).strip()


def _number(mapping: dict, key: str, path: str) -> float | None:
    value = mapping.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ContentError(f"{path}.{key} must be a number, got {value!r}")
    return float(value)


def _flag(mapping: dict, key: str, path: str) -> bool:
    value = mapping.get(key, False)
    if not isinstance(value, bool):
        raise ContentError(f"{path}.{key} must be true or false")
    return value


def _choice(value, choices: dict, path: str, required: bool = False) -> int:
    if value is None:
        if required:
            raise ContentError(f"{path} is required: one of {', '.join(choices)}")
        return 0
    key = str(value).strip().lower()
    if key not in choices:
        raise ContentError(f"{path} must be one of {', '.join(choices)}, got {value!r}")
    return choices[key]


def _set_date(target: date_pb2.Date, mapping: dict, key: str, path: str) -> None:
    value = mapping.get(key)
    if value is None:
        return
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value.strip())
        except ValueError:
            raise ContentError(f"{path}.{key} must be a date like 2026-06-30, got {value!r}") from None
    if not isinstance(value, date):
        raise ContentError(f"{path}.{key} must be a date like 2026-06-30, got {value!r}")
    target.CopyFrom(date_pb2.Date(year=value.year, month=value.month, day=value.day))


def _person(value, me: str, path: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ContentError(f"{path} must be a person id")
    return me if value == "me" else value


def _people(mapping: dict, key: str, path: str, me: str) -> list[str]:
    raw = mapping.get(key) or []
    raw = [raw] if isinstance(raw, str) else raw
    if not isinstance(raw, list):
        raise ContentError(f"{path}.{key} must be a list of person ids")
    return [_person(p, me, f"{path}.{key}[{i}]") for i, p in enumerate(raw)]


def _links(mapping: dict, key: str, path: str, ids_by_label: dict[str, str]) -> list[str]:
    raw = mapping.get(key) or []
    raw = [raw] if isinstance(raw, str) else raw
    if not isinstance(raw, list):
        raise ContentError(f"{path}.{key} must be a list")
    # An unknown name passes through as it is: the server then names it in a field violation.
    return [ids_by_label.get(str(link), str(link)) for link in raw]


def _labels(items, field: str) -> dict[str, str]:
    return {getattr(item, field): item.id for item in items}


# --- writing -----------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Writes lists of names on one line and long text as folded paragraphs, as people write them."""


def _represent_list(dumper: yaml.SafeDumper, items: list):
    flow = all(isinstance(item, (str, int, float, date)) for item in items)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", items, flow_style=flow)


def _represent_text(dumper: yaml.SafeDumper, text: str):
    if len(text) > 80 and "\n" not in text:
        style = ">"
    elif "'" in text:
        style = '"'  # reads better than YAML's doubled single quotes
    else:
        style = None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(str, _represent_text)


def to_yaml(v2mom: goals_pb2.V2MOM) -> str:
    """The V2MOM in the format above, ids included, ready for `edit -f`."""
    document = {**_header(v2mom), **content_document(v2mom.content)}
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def _header(v2mom: goals_pb2.V2MOM) -> dict:
    level = _name_of(LEVELS, v2mom.level)
    header = {"level": level, "cycle": v2mom.cycle_id}
    if level == "individual":
        header["owner"] = v2mom.owner_id
    else:
        header["org_unit"] = v2mom.org_unit_id
    if v2mom.parent_id:
        header["parent"] = v2mom.parent_id
    return header


def content_document(content: goals_pb2.V2MOMContent) -> dict:
    value_names = {v.id: v.name for v in content.values}
    method_titles = {m.id: m.title for m in content.methods}
    return _compact({
        "title": content.title,
        "vision": content.vision,
        "values": [_compact({"id": v.id, "name": v.name, "description": v.description}) for v in content.values],
        "methods": [_method_document(m, value_names) for m in content.methods],
        "obstacles": [
            _compact({
                "id": o.id, "title": o.title, "description": o.description, "owner": o.owner_id,
                "status": _name_of(STATUSES, o.status),
                "methods": [method_titles.get(i, i) for i in o.method_ids],
            })
            for o in content.obstacles
        ],
        "measures": [_measure_document(m, method_titles) for m in content.measures],
    })


def _method_document(method: goals_pb2.Method, value_names: dict) -> dict:
    return _compact({
        "id": method.id,
        "title": method.title,
        "description": method.description,
        "values": [value_names.get(i, i) for i in method.value_ids],
        "owner": method.owner_id,
        "accountable": method.accountable_id,
        "responsible": list(method.responsible_ids),
        "consulted": list(method.consulted_ids),
        "informed": list(method.informed_ids),
        "start": _date(method.start_date),
        "due": _date(method.due_date),
        "weight": _whole(method.weight),
        "milestones": [
            _compact({"id": m.id, "title": m.title, "due": _date(m.due_date), "done": m.done or None})
            for m in method.milestones
        ],
        "supports": list(method.supports),
    })


def _measure_document(measure: goals_pb2.Measure, method_titles: dict) -> dict:
    return _compact({
        "id": measure.id,
        "title": measure.title,
        "kind": _name_of(KINDS, measure.kind),
        "unit": measure.unit,
        "baseline": _whole(measure.baseline) if measure.HasField("baseline") else None,
        "target": _whole(measure.target) if measure.HasField("target") else None,
        "direction": _name_of(DIRECTIONS, measure.direction),
        "due": _date(measure.due_date),
        "owner": measure.owner_id,
        "methods": [method_titles.get(i, i) for i in measure.method_ids],
        "weight": _whole(measure.weight),
    }, keep=("baseline", "target"))


def _compact(mapping: dict, keep: tuple = ()) -> dict:
    return {k: v for k, v in mapping.items() if (k in keep and v is not None) or v not in (None, "", [], 0, 0.0)}


def _date(value: date_pb2.Date) -> date | None:
    return date(value.year, value.month, value.day) if value.year else None


def _whole(number: float) -> float | int:
    return int(number) if float(number).is_integer() else number


def _name_of(choices: dict, number: int) -> str | None:
    return next((name for name, value in choices.items() if value == number), None)
