"""From protobuf messages (event payloads, or the source services' list answers) to plain facts.

The worker parses each event's ``data`` into its events.proto message and the
rebuild receives goals/checkins messages; both end here, so an event and a
listed record of the same thing become the same fact.
A payload that does not fit its schema raises ``InvalidFact``; the worker turns
that into a dead letter instead of retrying something that can never work.
"""

from datetime import UTC, date, datetime

from google.protobuf import json_format
from google.protobuf.message import Message

from services.platform.core.clock import from_timestamp
from v2mom.v1 import checkins_pb2, common_pb2, events_pb2, goals_pb2

from . import model


class InvalidFact(ValueError):
    """The payload does not describe what its type says it does."""


STALENESS_LEVELS = {checkins_pb2.STALENESS_STALE: model.STALE, checkins_pb2.STALENESS_OVERDUE: model.OVERDUE}


def parse_payload(data: dict, message_class: type[Message]) -> Message:
    try:
        return json_format.ParseDict(data, message_class(), ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, ValueError) as error:
        raise InvalidFact(f"data is not a valid {message_class.DESCRIPTOR.name}: {str(error)[:200]}") from None


def require(condition: bool, what: str) -> None:
    if not condition:
        raise InvalidFact(what)


def event_time(raw: str) -> datetime:
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        raise InvalidFact(f"time {str(raw)[:40]!r} is not RFC 3339") from None
    require(moment.tzinfo is not None, "time must carry a UTC offset")
    return moment.astimezone(UTC)


def _time(message: Message, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    return from_timestamp(getattr(message, field))


def _items(content: goals_pb2.V2MOMContent) -> list[tuple[str, str]]:
    return [(model.MEASURE, m.id) for m in content.measures] + [(model.METHOD, m.id) for m in content.methods]


# --- goals -------------------------------------------------------------------------------------


UNRESOLVED = (goals_pb2.OBSTACLE_STATUS_OPEN, goals_pb2.OBSTACLE_STATUS_MITIGATING)


def _opened_at(obstacle: goals_pb2.Obstacle, fallback: datetime | None) -> float | None:
    """When an unresolved obstacle opened (epoch s): its open time, or for content published before goals kept
    one, the publication's; None when resolved."""
    if obstacle.status not in UNRESOLVED:
        return None
    opened = _time(obstacle, "open_time") or fallback
    return float(int(opened.timestamp())) if opened else None


def _open_obstacles(content: goals_pb2.V2MOMContent, published_at: datetime | None) -> dict[str, float]:
    opened = {o.id: _opened_at(o, published_at) for o in content.obstacles}
    return {obstacle_id: at for obstacle_id, at in opened.items() if at is not None}


def _lifecycle(v2mom_id, revision, owner_id, org_unit_id, level, cycle_id, state, submit_time, publish_time,
               published_items, published_revision, published_obstacles=None, obstacles_revision=0) -> dict:
    require(bool(v2mom_id) and bool(cycle_id), "a V2MOM fact needs v2mom_id and cycle_id")
    require(revision > 0, "a V2MOM fact needs a positive revision")
    require(state in model.STATE_LABELS, f"unknown V2MOM state {state!r}")
    return {
        "v2mom_id": v2mom_id, "revision": revision, "owner_id": owner_id, "org_unit_id": org_unit_id,
        "level": level, "cycle_id": cycle_id, "state": state,
        "submit_time": submit_time, "publish_time": publish_time,
        "published_items": published_items, "published_revision": published_revision,
        "published_obstacles": published_obstacles, "obstacles_revision": obstacles_revision,
    }


def lifecycle_from_event(data: events_pb2.V2MOMEventData) -> dict:
    published = data.state == goals_pb2.V2MOM_STATE_PUBLISHED
    return _lifecycle(
        data.v2mom_id, data.revision, data.owner_id, data.org_unit_id, common_pb2.OrgLevel.Name(data.level),
        data.cycle_id, goals_pb2.V2MOMState.Name(data.state), _time(data, "submit_time"), _time(data, "publish_time"),
        # Only an event that leaves the V2MOM published carries the published content.
        _items(data.content) if published else None, data.revision,
        _open_obstacles(data.content, _time(data, "publish_time")) if published else None, data.revision,
    )


def lifecycle_from_v2mom(v2mom: goals_pb2.V2MOM, published_content: goals_pb2.V2MOMContent | None) -> dict:
    return _lifecycle(
        v2mom.id, v2mom.revision, v2mom.owner_id, v2mom.org_unit_id, common_pb2.OrgLevel.Name(v2mom.level),
        v2mom.cycle_id, goals_pb2.V2MOMState.Name(v2mom.state), _time(v2mom, "submit_time"), _time(v2mom, "publish_time"),
        _items(published_content) if published_content is not None else None, v2mom.published_revision,
        # The published content as read now: obstacle changes since the approval are in it.
        _open_obstacles(published_content, _time(v2mom, "publish_time")) if published_content is not None else None,
        v2mom.revision,
    )


def obstacle_from_event(data: events_pb2.ObstacleEventData, event_at: datetime) -> dict:
    require(bool(data.v2mom_id) and bool(data.cycle_id) and bool(data.obstacle.id),
            "obstacle_changed needs v2mom_id, cycle_id and obstacle.id")
    require(data.revision > 0, "obstacle_changed needs a positive revision")
    return {
        "v2mom_id": data.v2mom_id, "revision": data.revision, "owner_id": data.owner_id,
        "org_unit_id": data.org_unit_id, "level": common_pb2.OrgLevel.Name(data.level), "cycle_id": data.cycle_id,
        "obstacle_id": data.obstacle.id, "opened_at": _opened_at(data.obstacle, event_at),
    }


def person_from_event(data: events_pb2.PersonEventData) -> dict:
    require(bool(data.person.id), "person.id is required")
    require(data.revision > 0, "revision must be positive")
    return {"person_id": data.person.id, "revision": data.revision,
            "org_unit_id": data.person.org_unit_id, "active": data.person.active}


def person_from_listing(person: common_pb2.Person, revision: int) -> dict:
    return {"person_id": person.id, "revision": revision, "org_unit_id": person.org_unit_id, "active": person.active}


def unit_from_event(data: events_pb2.OrgUnitEventData) -> dict:
    require(bool(data.org_unit.id), "org_unit.id is required")
    require(data.revision > 0, "revision must be positive")
    return unit_from_listing(data.org_unit, data.revision)


def unit_from_listing(unit: common_pb2.OrgUnit, revision: int) -> dict:
    require(unit.id != unit.parent_id, "an org unit cannot be its own parent")
    return {"unit_id": unit.id, "revision": revision, "name": unit.name,
            "level": common_pb2.OrgLevel.Name(unit.level), "parent_id": unit.parent_id}


def cycle_from_event(data: events_pb2.CycleEventData) -> dict:
    require(data.revision > 0, "revision must be positive")
    return cycle_from_listing(data.cycle, data.revision)


def cycle_from_listing(cycle: common_pb2.Cycle, revision: int) -> dict:
    """A cycle's quarters as (first, last) UTC day keys, both inclusive, in order; ``revision`` 0 for a listed
    cycle (lists carry none), which only fills a cycle no event has named."""
    require(bool(cycle.id), "cycle.id is required")
    quarters = []
    for quarter in cycle.quarters:
        try:
            first, last = (date(d.year, d.month, d.day) for d in (quarter.start_date, quarter.end_date))
        except ValueError:
            raise InvalidFact(f"quarter {quarter.id!r} needs real start and end dates") from None
        require(first <= last, f"quarter {quarter.id!r} ends before it starts")
        quarters.append([first.isoformat(), last.isoformat()])
    return {"cycle_id": cycle.id, "revision": revision, "quarters": sorted(quarters)}


# --- checkins ----------------------------------------------------------------------------------


def checkin(message: checkins_pb2.Checkin, cadence: int = 0) -> dict:
    observed, recorded = _time(message, "observe_time"), _time(message, "record_time")
    require(bool(message.id) and bool(message.v2mom_id) and bool(message.item_id), "checkin needs id, v2mom_id and item_id")
    require(observed is not None and recorded is not None, "checkin needs observe_time and record_time")
    require(message.item_kind in (checkins_pb2.ITEM_KIND_MEASURE, checkins_pb2.ITEM_KIND_METHOD), "unknown item_kind")
    return {
        "checkin_id": message.id, "v2mom_id": message.v2mom_id,
        "kind": checkins_pb2.ItemKind.Name(message.item_kind), "item_id": message.item_id,
        "owner_id": message.owner_id, "org_unit_id": message.org_unit_id, "cycle_id": message.cycle_id,
        "level": "", "observe_time": observed, "record_time": recorded,
        # A correction replaces a check-in; only the original counts as one.
        "original": not message.supersedes_id,
        "cadence_days": model.cadence_days(cadence) if cadence else 0,
    }


def checkin_from_event(data: events_pb2.CheckinEventData) -> dict:
    return checkin(data.checkin, data.cadence)


def progress_from_event(data: events_pb2.ProgressEventData) -> dict:
    require(bool(data.v2mom_id), "v2mom_id is required")
    require(data.revision > 0, "revision must be positive")
    return {
        "v2mom_id": data.v2mom_id, "revision": data.revision, "owner_id": data.owner_id,
        "org_unit_id": data.org_unit_id, "cycle_id": data.cycle_id, "level": "",
        "own": data.progress_percent, "tree": data.tree_progress_percent, "off_track": data.off_track_measures,
    }


def progress_from_listing(progress: checkins_pb2.Progress, revision: int) -> dict:
    off_track = sum(
        1 for item in progress.items
        if item.kind == checkins_pb2.ITEM_KIND_MEASURE and item.status == checkins_pb2.CHECKIN_STATUS_OFF_TRACK
    )
    return {
        "v2mom_id": progress.v2mom_id, "revision": revision, "owner_id": progress.owner_id,
        "org_unit_id": progress.org_unit_id, "cycle_id": progress.cycle_id, "level": "",
        "own": progress.progress_percent, "tree": progress.tree_progress_percent, "off_track": off_track,
    }


def staleness(item: checkins_pb2.StaleItem) -> dict:
    require(bool(item.v2mom_id) and bool(item.item_id), "item needs v2mom_id and item_id")
    require(item.staleness in STALENESS_LEVELS, "item.staleness must be STALE or OVERDUE")
    require(item.kind in (checkins_pb2.ITEM_KIND_MEASURE, checkins_pb2.ITEM_KIND_METHOD), "unknown item kind")
    return {
        "v2mom_id": item.v2mom_id, "kind": checkins_pb2.ItemKind.Name(item.kind), "item_id": item.item_id,
        "owner_id": "", "org_unit_id": item.org_unit_id, "cycle_id": item.cycle_id, "level": "",
        "ref": _time(item, "last_checkin_time"), "staleness": STALENESS_LEVELS[item.staleness],
    }


def staleness_from_event(data: events_pb2.ItemStalenessEventData) -> dict:
    fact = staleness(data.item)
    fact["owner_id"] = data.v2mom_owner_id
    return fact
