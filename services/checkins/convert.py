"""Between stored documents (plain dicts, enums by name) and protobuf messages."""

from services.platform.core.clock import to_timestamp

from .cycles import DEFAULT_CADENCE
from .progress import MEASURE, METHOD
from .progress_doc import ProgressDoc, take_structure
from .published import PublishedV2MOM
from .structures import ITEM_LISTS
from v2mom.v1 import checkins_pb2, events_pb2


def checkin_to_proto(doc: dict) -> checkins_pb2.Checkin:
    message = checkins_pb2.Checkin(
        id=doc["_id"],
        v2mom_id=doc["v2mom_id"],
        item_kind=checkins_pb2.ItemKind.Value(doc["item_kind"]),
        item_id=doc["item_id"],
        author_id=doc["author_id"],
        owner_id=doc["owner_id"],
        org_unit_id=doc["org_unit_id"],
        cycle_id=doc["cycle_id"],
        progress_percent=doc["progress_percent"],
        status=checkins_pb2.CheckinStatus.Value(doc["status"]),
        comment=doc["comment"],
        completed_milestone_ids=doc["completed_milestone_ids"],
        observe_time=to_timestamp(doc["observe_time"]),
        record_time=to_timestamp(doc["record_time"]),
        supersedes_id=doc.get("supersedes_id", ""),
        correction_reason=doc.get("correction_reason", ""),
        superseded_by_id=doc.get("superseded_by_id", ""),
    )
    if doc.get("value") is not None:
        message.value = doc["value"]
    if doc.get("confidence") is not None:
        message.confidence = doc["confidence"]
    return message


def checkin_event_data(
    doc: dict, item_title: str, parent_v2mom_id: str | None, cadence: str
) -> events_pb2.CheckinEventData:
    return events_pb2.CheckinEventData(
        checkin=checkin_to_proto(doc),
        item_title=item_title,
        parent_v2mom_id=parent_v2mom_id or "",
        cadence=checkins_pb2.Cadence.Value(cadence),
    )


def cycle_settings(cycle_id: str, cadence: str | None) -> checkins_pb2.CycleSettings:
    return checkins_pb2.CycleSettings(cycle_id=cycle_id, cadence=checkins_pb2.Cadence.Value(cadence or DEFAULT_CADENCE))


def progress_before_any_checkin(structure: dict) -> checkins_pb2.Progress:
    """A published V2MOM nobody has checked in on (or whose projection is not written yet): all at 0."""
    progress = checkins_pb2.Progress(
        v2mom_id=structure["_id"],
        owner_id=structure.get("owner_id", ""),
        org_unit_id=structure.get("org_unit_id", ""),
        cycle_id=structure.get("cycle_id", ""),
    )
    for kind in (MEASURE, METHOD):
        for item in structure.get(ITEM_LISTS[kind], []):
            progress.items.add(
                kind=checkins_pb2.ItemKind.Value(kind), item_id=item["id"], title=item["title"],
                owner_id=item["owner_id"], weight=item["weight"],
            )
    # The values at 0 with the items behind them, as the projection will show them (progress_doc.py).
    doc = ProgressDoc(structure["_id"])
    take_structure(doc, PublishedV2MOM.from_structure_copy(structure))
    progress.values.extend(value_progress_to_proto(entry) for entry in doc.value_progress())
    return progress


def value_progress_to_proto(entry: dict) -> checkins_pb2.ValueProgress:
    """One of ProgressDoc.value_progress()'s entries."""
    items = entry["items"]
    return checkins_pb2.ValueProgress(
        value_id=entry["value"]["id"], name=entry["value"].get("name", ""), progress_percent=entry["percent"],
        kind=checkins_pb2.ItemKind.Value(items[0]["kind"]) if items else 0, item_ids=[i["item_id"] for i in items],
    )
