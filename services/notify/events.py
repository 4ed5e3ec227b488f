"""The events the notify service publishes (exchange ``notify.events``).

One event per delivery (services/notify/deliveries.py writes it into the
delivery's outbox with the transition): ``notification_sent`` when it was
sent (an inbox delivery is sent as it is created), ``notification_failed``
when its last try failed or the receiver refused it for good. Retries,
deferrals and skips publish nothing.

Payloads are ``DeliveryEventData`` in protos/v2mom/v1/events.proto, rendered
to proto3 JSON by the relay. docs/events.asyncapi.yaml documents each type.
"""

from services.platform.bus.events import envelope
from v2mom.v1 import events_pb2, notify_pb2

SERVICE = "notify"

NOTIFICATION_SENT = "notification_sent"
NOTIFICATION_FAILED = "notification_failed"

EVENT_TYPES = (NOTIFICATION_SENT, NOTIFICATION_FAILED)

# The longest error an event (and a delivery's last_error) carries.
ERROR_MAX = 500


def delivery_data(delivery: dict, tries: int, error: str = "") -> events_pb2.DeliveryEventData:
    """The payload for a delivery document (store.py's shape) after its ``tries``-th try."""
    return events_pb2.DeliveryEventData(
        delivery_id=delivery["_id"],
        notification_id=delivery["notification_id"],
        recipient_id=delivery.get("recipient_id") or "",
        kind=notify_pb2.NotificationKind.Value(delivery["kind"]),
        channel=notify_pb2.Channel.Value(delivery["channel"]),
        tries=tries,
        error=error[:ERROR_MAX],
        cause_event_id=delivery.get("cause_event_id") or "",
        v2mom_id=delivery.get("v2mom_id") or "",
    )


def delivery_envelope(event_type: str, data: events_pb2.DeliveryEventData) -> dict:
    return envelope(SERVICE, event_type, subject=data.delivery_id, data=data)


def delivery_event(event_type: str, delivery: dict, tries: int, error: str = "") -> dict:
    """The ``notification_sent`` / ``notification_failed`` event of a delivery document."""
    return delivery_envelope(event_type, delivery_data(delivery, tries, error))
