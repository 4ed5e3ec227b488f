"""Between stored documents (plain dicts, enums by name; store.py) and NotifyService messages."""

from services.platform.core.clock import to_timestamp

from . import kinds
from .channels.secrets import mask
from v2mom.v1 import notify_pb2



def notification(doc: dict) -> notify_pb2.Notification:
    message = notify_pb2.Notification(
        id=doc["_id"],
        recipient_id=doc["recipient_id"],
        kind=_enum(notify_pb2.NotificationKind, doc.get("kind")),
        title=doc.get("title") or "",
        body=doc.get("body") or "",
        link=doc.get("link") or "",
        v2mom_id=doc.get("v2mom_id") or "",
        item_id=doc.get("item_id") or "",
        create_time=to_timestamp(doc["created_at"]),
    )
    if doc.get("read_at"):
        message.read_time.CopyFrom(to_timestamp(doc["read_at"]))
    return message


def preferences(person_id: str, doc: dict | None, time_zone: str) -> notify_pb2.Preferences:
    """Every kind with the channels it really goes to (kinds.channels_for: defaults, unsubscribes, the inbox rule)."""
    message = notify_pb2.Preferences(person_id=person_id, time_zone=time_zone)
    for kind in kinds.KINDS:
        message.kinds.add(
            kind=notify_pb2.NotificationKind.Value(kind),
            channels=[notify_pb2.Channel.Value(c) for c in kinds.channels_for(doc, kind)],
            digest=kinds.wants_digest(doc, kind),
        )
    quiet = (doc or {}).get("quiet_hours")
    if quiet:
        message.quiet_hours.start, message.quiet_hours.end = quiet["start"], quiet["end"]
    if doc and doc.get("updated_at"):
        message.update_time.CopyFrom(to_timestamp(doc["updated_at"]))
    return message


def delivery(doc: dict) -> notify_pb2.Delivery:
    status = doc.get("status") or ""
    message = notify_pb2.Delivery(
        id=doc["_id"],
        notification_id=doc.get("notification_id") or "",
        recipient_id=doc.get("recipient_id") or "",
        kind=_enum(notify_pb2.NotificationKind, doc.get("kind")),
        channel=_enum(notify_pb2.Channel, doc.get("channel")),
        target=doc.get("target") or "",
        status=_enum(notify_pb2.DeliveryStatus, status if status.startswith("DELIVERY_STATUS_")
                     else f"DELIVERY_STATUS_{status}"),
        tries=doc.get("tries") or 0,
        last_error=(doc.get("last_error") or "")[:2000],
    )
    for field, key in (("create_time", "created_at"), ("next_try_time", "next_try_at"), ("sent_time", "sent_at")):
        if doc.get(key):
            getattr(message, field).CopyFrom(to_timestamp(doc[key]))
    return message


def subscription(doc: dict, reveal_secret: bool = False) -> notify_pb2.Subscription:
    """The secret in full only when ``reveal_secret`` (Create and Rotate answers); masked otherwise."""
    secret = doc.get("secret") or ""
    message = notify_pb2.Subscription(
        id=doc["_id"],
        org_unit_id=doc.get("org_unit_id") or "",
        url=doc["url"],
        format=_enum(notify_pb2.WebhookFormat, doc.get("format")),
        kinds=[notify_pb2.NotificationKind.Value(k) for k in doc.get("kinds") or ()],
        secret=secret if reveal_secret else mask(secret),
        disabled_reason=doc.get("disabled_reason") or "",
        create_time=to_timestamp(doc["created_at"]),
    )
    if doc.get("disabled_at"):
        message.disable_time.CopyFrom(to_timestamp(doc["disabled_at"]))
    if doc.get("previous_secret") and doc.get("previous_secret_expires_at"):
        message.previous_secret_expire_time.CopyFrom(to_timestamp(doc["previous_secret_expires_at"]))
    return message


def _enum(enum_type, name: str | None) -> int:
    # A name this build does not know (a newer worker wrote it) reads as UNSPECIFIED rather than failing the list.
    value = enum_type.DESCRIPTOR.values_by_name.get(name or "")
    return value.number if value is not None else 0
