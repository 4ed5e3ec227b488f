"""Between stored documents (plain dicts, dates as 'YYYY-MM-DD') and protobuf messages."""

from datetime import datetime

from google.type import date_pb2

from services.platform.core.clock import from_date_proto, to_date_proto, to_timestamp
from v2mom.v1 import common_pb2, events_pb2, goals_pb2

# --- scalars -----------------------------------------------------------------


def _stored_date(value: date_pb2.Date) -> str | None:
    """Dates are stored as 'YYYY-MM-DD'; None when unset. Only for validated requests."""
    day = from_date_proto(value)
    return day.isoformat() if day else None


stored_date = _stored_date  # for the other modules that store a validated request's dates


def _set_date(message, field: str, value: str | None) -> None:
    # Left unset rather than set to an empty Date: clients test presence with HasField.
    if value:
        getattr(message, field).CopyFrom(to_date_proto(value))


def _set_time(message, field: str, value: datetime | None) -> None:
    if value is not None:
        getattr(message, field).CopyFrom(to_timestamp(value))


set_time = _set_time  # for the other modules that render stored times


def enum_name(enum_type, number: int) -> str:
    return enum_type.Name(number)


# --- content: proto -> document ----------------------------------------------


def content_to_doc(content: goals_pb2.V2MOMContent) -> dict:
    return {
        "title": content.title,
        "vision": content.vision,
        "values": [value_to_doc(v) for v in content.values],
        "methods": [method_to_doc(m) for m in content.methods],
        "obstacles": [obstacle_to_doc(o) for o in content.obstacles],
        "measures": [measure_to_doc(m) for m in content.measures],
    }


def value_to_doc(value: goals_pb2.Value) -> dict:
    return {"id": value.id, "name": value.name, "description": value.description, **_copied_from(value)}


def _copied_from(item) -> dict:
    # Stored only when set: content written before copies existed compares equal to content sent back.
    return {"copied_from": item.copied_from} if item.copied_from else {}


def method_to_doc(method: goals_pb2.Method) -> dict:
    return {
        "id": method.id,
        "title": method.title,
        "description": method.description,
        "value_ids": list(method.value_ids),
        "owner_id": method.owner_id,
        "accountable_id": method.accountable_id,
        "responsible_ids": list(method.responsible_ids),
        "consulted_ids": list(method.consulted_ids),
        "informed_ids": list(method.informed_ids),
        "start_date": _stored_date(method.start_date),
        "due_date": _stored_date(method.due_date),
        "milestones": [
            {"id": m.id, "title": m.title, "due_date": _stored_date(m.due_date), "done": m.done}
            for m in method.milestones
        ],
        "weight": method.weight,
        **_copied_from(method),
        # Stored only when set, like copied_from: older content compares equal to content sent back.
        **({"supports": list(method.supports)} if method.supports else {}),
    }


def obstacle_to_doc(obstacle: goals_pb2.Obstacle) -> dict:
    status = obstacle.status or goals_pb2.OBSTACLE_STATUS_OPEN
    return {
        "id": obstacle.id,
        "title": obstacle.title,
        "description": obstacle.description,
        "owner_id": obstacle.owner_id,
        "status": enum_name(goals_pb2.ObstacleStatus, status),
        "method_ids": list(obstacle.method_ids),
        **_copied_from(obstacle),
    }


def measure_to_doc(measure: goals_pb2.Measure) -> dict:
    return {
        "id": measure.id,
        "title": measure.title,
        "kind": enum_name(goals_pb2.MeasureKind, measure.kind),
        "unit": measure.unit,
        "baseline": measure.baseline if measure.HasField("baseline") else None,
        "target": measure.target if measure.HasField("target") else None,
        "direction": enum_name(goals_pb2.Direction, measure.direction),
        "due_date": _stored_date(measure.due_date),
        "method_ids": list(measure.method_ids),
        "owner_id": measure.owner_id,
        "weight": measure.weight,
        **_copied_from(measure),
    }


# --- content: document -> proto ----------------------------------------------


def content_from_doc(doc: dict) -> goals_pb2.V2MOMContent:
    content = goals_pb2.V2MOMContent(title=doc.get("title", ""), vision=doc.get("vision", ""))
    content.values.extend(goals_pb2.Value(**v) for v in doc.get("values", []))
    content.methods.extend(method_from_doc(m) for m in doc.get("methods", []))
    content.obstacles.extend(obstacle_from_doc(o) for o in doc.get("obstacles", []))
    content.measures.extend(measure_from_doc(m) for m in doc.get("measures", []))
    return content


def method_from_doc(doc: dict) -> goals_pb2.Method:
    method = goals_pb2.Method(
        id=doc["id"],
        title=doc["title"],
        description=doc["description"],
        value_ids=doc["value_ids"],
        owner_id=doc["owner_id"],
        accountable_id=doc["accountable_id"],
        responsible_ids=doc["responsible_ids"],
        consulted_ids=doc["consulted_ids"],
        informed_ids=doc["informed_ids"],
        weight=doc["weight"],
        copied_from=doc.get("copied_from", ""),
        supports=doc.get("supports", []),
    )
    _set_date(method, "start_date", doc["start_date"])
    _set_date(method, "due_date", doc["due_date"])
    for m in doc["milestones"]:
        milestone = method.milestones.add(id=m["id"], title=m["title"], done=m["done"])
        _set_date(milestone, "due_date", m["due_date"])
    return method


def obstacle_from_doc(doc: dict) -> goals_pb2.Obstacle:
    obstacle = goals_pb2.Obstacle(
        id=doc["id"],
        title=doc["title"],
        description=doc["description"],
        owner_id=doc["owner_id"],
        status=goals_pb2.ObstacleStatus.Value(doc["status"]),
        method_ids=doc["method_ids"],
        copied_from=doc.get("copied_from", ""),
    )
    _set_time(obstacle, "open_time", doc.get("opened_at"))  # published obstacles only (obstacles.py)
    return obstacle


def measure_from_doc(doc: dict) -> goals_pb2.Measure:
    measure = goals_pb2.Measure(
        id=doc["id"],
        title=doc["title"],
        kind=goals_pb2.MeasureKind.Value(doc["kind"]),
        unit=doc["unit"],
        direction=goals_pb2.Direction.Value(doc["direction"]),
        method_ids=doc["method_ids"],
        owner_id=doc["owner_id"],
        weight=doc["weight"],
        copied_from=doc.get("copied_from", ""),
    )
    if doc["baseline"] is not None:
        measure.baseline = doc["baseline"]
    if doc["target"] is not None:
        measure.target = doc["target"]
    _set_date(measure, "due_date", doc["due_date"])
    return measure


# --- aggregates ----------------------------------------------------------------


def v2mom_to_proto(doc: dict, show_published: bool, content_message: goals_pb2.V2MOMContent | None = None) -> goals_pb2.V2MOM:
    """content_message: the working content already converted, to save doing it twice on a write."""
    published = doc.get("published")
    content = published["content"] if show_published else doc["content"]
    shown_parent = published.get("parent_id") if show_published else doc.get("parent_id")
    message = goals_pb2.V2MOM(
        id=doc["_id"],
        revision=doc["revision"],
        owner_id=doc["owner_id"],
        org_unit_id=doc["org_unit_id"],
        level=common_pb2.OrgLevel.Value(doc["level"]),
        cycle_id=doc["cycle_id"],
        parent_id=shown_parent or "",
        state=goals_pb2.V2MOMState.Value(doc["state"]),
        content=content_message if content_message is not None and not show_published else content_from_doc(content),
        published_revision=published["revision"] if published else 0,
        approver_id=doc.get("approver_id") or "",
        changes_requested_reason=doc.get("changes_requested_reason") or "",
        showing_published=show_published,
        copied_from_id=doc.get("copied_from_id") or "",
    )
    for field, key in (
        ("create_time", "created_at"),
        ("update_time", "updated_at"),
        ("submit_time", "submitted_at"),
        ("publish_time", "published_at"),
        ("archive_time", "archived_at"),
        ("parent_change_time", "parent_changed_at"),
    ):
        _set_time(message, field, doc.get(key))
    return message


def revision_to_proto(entry: dict) -> goals_pb2.Revision:
    message = goals_pb2.Revision(
        revision=entry["revision"],
        action=entry["action"],
        actor_id=entry["actor_id"],
        reason=entry.get("reason") or "",
        changed_paths=entry.get("changed_paths", []),
        state=goals_pb2.V2MOMState.Value(entry["state"]),
        content=content_from_doc(entry["content"]),
    )
    _set_time(message, "time", entry["at"])
    return message


def event_data(
    doc: dict, actor_id: str, previous_state: str, content_message: goals_pb2.V2MOMContent | None = None, **extra
) -> events_pb2.V2MOMEventData:
    data = events_pb2.V2MOMEventData(
        v2mom_id=doc["_id"],
        revision=doc["revision"],
        owner_id=doc["owner_id"],
        org_unit_id=doc["org_unit_id"],
        level=common_pb2.OrgLevel.Value(doc["level"]),
        cycle_id=doc["cycle_id"],
        parent_id=doc.get("parent_id") or "",
        state=goals_pb2.V2MOMState.Value(doc["state"]),
        previous_state=goals_pb2.V2MOMState.Value(previous_state) if previous_state else 0,
        actor_id=actor_id,
        approver_id=doc.get("approver_id") or "",
        content=content_message if content_message is not None else content_from_doc(doc["content"]),
        copied_from_id=doc.get("copied_from_id") or "",
        **extra,
    )
    for field, key in (
        ("create_time", "created_at"),
        ("submit_time", "submitted_at"),
        ("publish_time", "published_at"),
        ("archive_time", "archived_at"),
    ):
        _set_time(data, field, doc.get(key))
    return data


def person_to_proto(doc: dict) -> common_pb2.Person:
    return common_pb2.Person(
        id=doc["_id"],
        display_name=doc["display_name"],
        email=doc.get("email", ""),
        title=doc.get("title", ""),
        manager_id=doc.get("manager_id") or "",
        org_unit_id=doc["org_unit_id"],
        roles=doc.get("roles", []),
        active=doc.get("active", True),
        external_id=doc.get("external_id") or "",
        time_zone=doc.get("time_zone") or "",
        locale=doc.get("locale") or "",
        employment_status=common_pb2.EmploymentStatus.Value(
            f"EMPLOYMENT_STATUS_{doc.get('employment_status') or 'UNSPECIFIED'}"),
        pending_manager_external_id=doc.get("pending_manager") or "",
        # Set only when known: an unset date is left out of events rather than sent as an empty object.
        **{name: to_date_proto(doc[name]) for name in ("start_date", "end_date") if doc.get(name)},
    )


def org_unit_to_proto(doc: dict) -> common_pb2.OrgUnit:
    return common_pb2.OrgUnit(
        id=doc["_id"],
        name=doc["name"],
        level=common_pb2.OrgLevel.Value(doc["level"]),
        parent_id=doc.get("parent_id") or "",
        leader_id=doc.get("leader_id") or "",
        external_id=doc.get("external_id") or "",
        retired=bool(doc.get("retired")),
        pending_parent_external_id=doc.get("pending_parent") or "",
        pending_leader_external_id=doc.get("pending_leader") or "",
    )


def cycle_to_proto(doc: dict) -> common_pb2.Cycle:
    cycle = common_pb2.Cycle(id=doc["_id"], next_cycle_id=doc.get("next_cycle_id") or "")
    _set_date(cycle, "start_date", doc["start_date"])
    _set_date(cycle, "end_date", doc["end_date"])
    cycle.quarters.extend(quarter_to_proto(quarter) for quarter in doc.get("quarters") or [])
    _set_time(cycle, "close_time", doc.get("closed_at"))
    return cycle


def quarter_to_proto(quarter: dict) -> common_pb2.Quarter:
    message = common_pb2.Quarter(id=quarter["id"])
    _set_date(message, "start_date", quarter["start_date"])
    _set_date(message, "end_date", quarter["end_date"])
    return message


def quarters_to_doc(quarters) -> list[dict]:
    """Validated quarters as stored: ids and ISO dates."""
    return [{"id": q.id, "start_date": _stored_date(q.start_date), "end_date": _stored_date(q.end_date)}
            for q in quarters]


def template_to_proto(doc: dict) -> goals_pb2.Template:
    template = goals_pb2.Template(
        id=doc["_id"], name=doc["name"], description=doc.get("description", ""),
        level=common_pb2.OrgLevel.Value(doc["level"]), content=content_from_doc(doc["content"]),
        revision=doc["revision"],
    )
    _set_time(template, "update_time", doc.get("updated_at"))
    return template
