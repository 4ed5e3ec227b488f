"""The events the goals service publishes, and their payloads.

Payloads travel as the proto3 JSON form of the messages in protos/v2mom/v1/events.proto,
so every consumer can parse them with generated code or plain JSON.
docs/events.asyncapi.yaml documents each type.
"""

from services.platform.bus.events import envelope
from v2mom.v1 import events_pb2

SERVICE = "goals"

V2MOM_CREATED = "v2mom_created"
V2MOM_UPDATED = "v2mom_updated"
V2MOM_SUBMITTED = "v2mom_submitted"
V2MOM_CHANGES_REQUESTED = "v2mom_changes_requested"
V2MOM_APPROVED = "v2mom_approved"
V2MOM_ARCHIVED = "v2mom_archived"
V2MOM_WITHDRAWN = "v2mom_withdrawn"
MILESTONES_COMPLETED = "milestones_completed"
PERSON_UPSERTED = "person_upserted"
ORG_UNIT_UPSERTED = "org_unit_upserted"
CYCLE_CHANGED = "cycle_changed"
CYCLE_CLOSED = "cycle_closed"
OBSTACLE_CHANGED = "obstacle_changed"
COMMENT_ADDED = "comment_added"
V2MOM_PARENT_CHANGED = "v2mom_parent_changed"
# A submitted V2MOM's approver changed because the directory did (approver_changes.py).
V2MOM_APPROVER_CHANGED = "v2mom_approver_changed"
# A leaver's items in someone else's V2MOM passed to its owner (handover.py), no re-approval.
V2MOM_ITEMS_REASSIGNED = "v2mom_items_reassigned"
# TransferV2MOM, or a unit's new leader (transfers.py): the V2MOM has a new owner.
V2MOM_TRANSFERRED = "v2mom_transferred"

V2MOM_EVENT_TYPES = (
    V2MOM_CREATED,
    V2MOM_UPDATED,
    V2MOM_SUBMITTED,
    V2MOM_CHANGES_REQUESTED,
    V2MOM_APPROVED,
    V2MOM_ARCHIVED,
    V2MOM_WITHDRAWN,
    MILESTONES_COMPLETED,
    V2MOM_APPROVER_CHANGED,
    V2MOM_ITEMS_REASSIGNED,
    V2MOM_TRANSFERRED,
)
CYCLE_EVENT_TYPES = (CYCLE_CHANGED, CYCLE_CLOSED)
EVENT_TYPES = V2MOM_EVENT_TYPES + (PERSON_UPSERTED, ORG_UNIT_UPSERTED) + CYCLE_EVENT_TYPES + (OBSTACLE_CHANGED, COMMENT_ADDED) + (V2MOM_PARENT_CHANGED,)


def v2mom_event(event_type: str, data: events_pb2.V2MOMEventData) -> dict:
    return envelope(SERVICE, event_type, subject=data.v2mom_id, data=data)


def person_event(data: events_pb2.PersonEventData) -> dict:
    return envelope(SERVICE, PERSON_UPSERTED, subject=data.person.id, data=data)


def org_unit_event(data: events_pb2.OrgUnitEventData) -> dict:
    return envelope(SERVICE, ORG_UNIT_UPSERTED, subject=data.org_unit.id, data=data)


def cycle_event(event_type: str, data: events_pb2.CycleEventData) -> dict:
    return envelope(SERVICE, event_type, subject=data.cycle.id, data=data)


def obstacle_event(data: events_pb2.ObstacleEventData) -> dict:
    return envelope(SERVICE, OBSTACLE_CHANGED, subject=data.v2mom_id, data=data)


def comment_event(data: events_pb2.CommentEventData) -> dict:
    return envelope(SERVICE, COMMENT_ADDED, subject=data.comment.v2mom_id, data=data)


def parent_changed_event(data: events_pb2.ParentChangedEventData) -> dict:
    return envelope(SERVICE, V2MOM_PARENT_CHANGED, subject=data.v2mom_id, data=data)
