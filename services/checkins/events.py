"""The events the check-ins service publishes (exchange ``checkins.events``).

Payloads are the messages in protos/v2mom/v1/events.proto, rendered to
proto3 JSON by the relay. docs/events.asyncapi.yaml documents each type.
"""

from services.platform.bus.events import envelope
from v2mom.v1 import events_pb2

SERVICE = "checkins"

CHECKIN_RECORDED = "checkin_recorded"
CHECKIN_CORRECTED = "checkin_corrected"
PROGRESS_CHANGED = "progress_changed"
ITEM_BECAME_STALE = "item_became_stale"
ITEM_OVERDUE = "item_overdue"

EVENT_TYPES = (CHECKIN_RECORDED, CHECKIN_CORRECTED, PROGRESS_CHANGED, ITEM_BECAME_STALE, ITEM_OVERDUE)


def checkin_event(event_type: str, data: events_pb2.CheckinEventData) -> dict:
    return envelope(SERVICE, event_type, subject=data.checkin.id, data=data)


def progress_event(data: events_pb2.ProgressEventData) -> dict:
    return envelope(SERVICE, PROGRESS_CHANGED, subject=data.v2mom_id, data=data)


def staleness_event(event_type: str, data: events_pb2.ItemStalenessEventData) -> dict:
    return envelope(SERVICE, event_type, subject=f"{data.item.v2mom_id}/{data.item.item_id}", data=data)
