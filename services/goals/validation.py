"""Structural checks on V2MOM content: sizes, links inside it, and people references.

These are INVALID_ARGUMENT (the request can never succeed as sent); quality
advice lives in lint.py. The shapes (ids, text, enums, numbers, dates) are the
kernel's (services/platform/core/validation.py); the limits here are the ones
named in goals.proto.
"""

from services.platform.core.errors import Violations
from services.platform.core.ids import new_id
from services.platform.core.validation import check_date, check_enum, check_id, check_number, check_text, is_id

from v2mom.v1 import goals_pb2

MAX_TITLE = 200
MAX_NAME = 120
MAX_VISION = 2000
MAX_VALUE_DESCRIPTION = 2000
MAX_DESCRIPTION = 4000
MAX_UNIT = 32
MAX_REASON = 1000
MAX_VALUES = 5
MAX_ITEMS = 20
MAX_SUPPORTED = 5  # parent methods one method carries out
MAX_LINKED_VALUES = 5
MAX_PEOPLE_PER_ROLE = 20


def require_id(field: str, value: str) -> None:
    """INVALID_ARGUMENT now unless value is a well-formed id."""
    violations = Violations()
    check_id(violations, field, value)
    violations.raise_if_any()


def mask_paths(mask, allowed: tuple[str, ...]) -> list[str]:
    """The paths of an update mask, each once; INVALID_ARGUMENT when none or one not in ``allowed``."""
    paths = list(dict.fromkeys(mask.paths))
    violations = Violations()
    check_mask(violations, paths, allowed)
    violations.raise_if_any()
    return paths


def check_mask(violations: Violations, paths: list[str], allowed) -> None:
    """An update mask names at least one path, and only allowed ones."""
    if not paths:
        violations.add("update_mask", "name at least one field to update")
    unknown = [p for p in paths if p not in allowed]
    if unknown:
        # One violation, however many paths: a mask of thousands must not overflow the trailers.
        named = ", ".join(repr(p[:100]) for p in unknown[:3])
        if len(unknown) > 3:
            named += f" and {len(unknown) - 3} more"
        violations.add("update_mask", f"cannot update {named}; allowed: {', '.join(allowed)}")


def require_reason(field: str, text: str, required: bool) -> None:
    """INVALID_ARGUMENT now for a missing (when required) or oversized reason."""
    violations = Violations()
    check_text(violations, field, text, MAX_REASON, required=required)
    violations.raise_if_any()


def check_content(violations: Violations, content: goals_pb2.V2MOMContent, person_exists, prefix: str = "content") -> None:
    """Sizes, formats, unique ids, links inside the V2MOM, and people references.

    prefix is where the content sits in the request ("v2mom.content" in an update),
    so each violation names the field the client actually sent.
    """
    check_text(violations, f"{prefix}.title", content.title, MAX_TITLE)
    check_text(violations, f"{prefix}.vision", content.vision, MAX_VISION)
    violations.max_items(f"{prefix}.values", content.values, MAX_VALUES)
    for name in ("methods", "obstacles", "measures"):
        violations.max_items(f"{prefix}.{name}", getattr(content, name), MAX_ITEMS)
    if violations:
        return  # item checks on an oversized list would only add noise
    value_ids = _check_item_ids(violations, f"{prefix}.values", content.values)
    method_ids = _check_item_ids(violations, f"{prefix}.methods", content.methods)
    _check_item_ids(violations, f"{prefix}.obstacles", content.obstacles)
    _check_item_ids(violations, f"{prefix}.measures", content.measures)
    for i, value in enumerate(content.values):
        check_text(violations, f"{prefix}.values[{i}].name", value.name, MAX_NAME, required=True)
        check_text(violations, f"{prefix}.values[{i}].description", value.description, MAX_VALUE_DESCRIPTION)
    for i, method in enumerate(content.methods):
        _check_method(violations, f"{prefix}.methods[{i}]", method, value_ids, person_exists)
    for i, obstacle in enumerate(content.obstacles):
        _check_obstacle(violations, f"{prefix}.obstacles[{i}]", obstacle, method_ids, person_exists)
    for i, measure in enumerate(content.measures):
        _check_measure(violations, f"{prefix}.measures[{i}]", measure, method_ids, person_exists)


def _check_item_ids(violations: Violations, path: str, items) -> set[str]:
    seen: set[str] = set()
    for i, item in enumerate(items):
        if item.id:
            check_id(violations, f"{path}[{i}].id", item.id)
            if item.id in seen:
                violations.add(f"{path}[{i}].id", f"duplicate id {item.id!r}")
            seen.add(item.id)
        if getattr(item, "copied_from", ""):  # milestones have none
            check_id(violations, f"{path}[{i}].copied_from", item.copied_from)
    return seen


def _check_links(violations: Violations, field: str, ids, known: set[str], noun: str, limit: int) -> None:
    violations.max_items(field, ids, limit)
    for link in ids:
        if link not in known:
            violations.add(field, f"links to unknown {noun} {link[:64]!r}; use the id of a {noun} in this V2MOM")
    if len(set(ids)) != len(ids):
        violations.add(field, "lists the same id twice")


def _check_supports(violations: Violations, field: str, ids) -> None:
    """Their form only: whether each is a method of the parent's published version is cascade.py's to say."""
    violations.max_items(field, ids, MAX_SUPPORTED)
    for j, method_id in enumerate(ids[:MAX_SUPPORTED]):
        check_id(violations, f"{field}[{j}]", method_id)
    if len(set(ids)) != len(ids):
        violations.add(field, "lists the same id twice")


def _check_person(violations: Violations, field: str, person_id: str, person_exists) -> None:
    if not person_id:
        return
    check_id(violations, field, person_id)
    if is_id(person_id) and not person_exists(person_id):
        violations.add(field, f"unknown person {person_id!r}")


def _check_method(violations, path, method: goals_pb2.Method, value_ids, person_exists) -> None:
    check_text(violations, f"{path}.title", method.title, MAX_TITLE, required=True)
    check_text(violations, f"{path}.description", method.description, MAX_DESCRIPTION)
    _check_links(violations, f"{path}.value_ids", method.value_ids, value_ids, "value", MAX_LINKED_VALUES)
    _check_supports(violations, f"{path}.supports", method.supports)
    _check_person(violations, f"{path}.owner_id", method.owner_id, person_exists)
    _check_person(violations, f"{path}.accountable_id", method.accountable_id, person_exists)
    for role in ("responsible_ids", "consulted_ids", "informed_ids"):
        people = getattr(method, role)
        violations.max_items(f"{path}.{role}", people, MAX_PEOPLE_PER_ROLE)
        for j, person_id in enumerate(people[:MAX_PEOPLE_PER_ROLE]):
            _check_person(violations, f"{path}.{role}[{j}]", person_id, person_exists)
    start = check_date(violations, f"{path}.start_date", method.start_date)
    due = check_date(violations, f"{path}.due_date", method.due_date)
    if start and due and start > due:
        violations.add(f"{path}.due_date", "must not be before start_date")
    violations.max_items(f"{path}.milestones", method.milestones, MAX_ITEMS)
    _check_item_ids(violations, f"{path}.milestones", method.milestones)
    for j, milestone in enumerate(method.milestones[:MAX_ITEMS]):
        check_text(violations, f"{path}.milestones[{j}].title", milestone.title, MAX_TITLE, required=True)
        check_date(violations, f"{path}.milestones[{j}].due_date", milestone.due_date)
    check_number(violations, f"{path}.weight", method.weight, 0, 100)


def _check_obstacle(violations, path, obstacle: goals_pb2.Obstacle, method_ids, person_exists) -> None:
    check_text(violations, f"{path}.title", obstacle.title, MAX_TITLE, required=True)
    check_text(violations, f"{path}.description", obstacle.description, MAX_DESCRIPTION)
    _check_person(violations, f"{path}.owner_id", obstacle.owner_id, person_exists)
    check_enum(violations, f"{path}.status", goals_pb2.ObstacleStatus, obstacle.status)
    _check_links(violations, f"{path}.method_ids", obstacle.method_ids, method_ids, "method", MAX_ITEMS)


def _check_measure(violations, path, measure: goals_pb2.Measure, method_ids, person_exists) -> None:
    check_text(violations, f"{path}.title", measure.title, MAX_TITLE, required=True)
    check_text(violations, f"{path}.unit", measure.unit, MAX_UNIT)
    check_enum(violations, f"{path}.kind", goals_pb2.MeasureKind, measure.kind)
    check_enum(violations, f"{path}.direction", goals_pb2.Direction, measure.direction)
    for field in ("baseline", "target"):
        if measure.HasField(field):
            check_number(violations, f"{path}.{field}", getattr(measure, field))
    check_date(violations, f"{path}.due_date", measure.due_date)
    _check_links(violations, f"{path}.method_ids", measure.method_ids, method_ids, "method", MAX_ITEMS)
    _check_person(violations, f"{path}.owner_id", measure.owner_id, person_exists)
    check_number(violations, f"{path}.weight", measure.weight, 0, 100)


def assign_ids(content: dict) -> dict:
    """Gives every new item a stable id; existing ids are kept so links and check-ins survive edits."""
    for key, prefix in (("values", "val"), ("methods", "mth"), ("obstacles", "obs"), ("measures", "msr")):
        for item in content[key]:
            item["id"] = item["id"] or new_id(prefix)
    for method in content["methods"]:
        for milestone in method["milestones"]:
            milestone["id"] = milestone["id"] or new_id("mil")
    return content

