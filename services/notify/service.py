"""The NotifyService use cases: what each RPC means, independent of gRPC plumbing.

Everyone reads and changes only their own inbox and preferences: the caller's
id is part of every query, so another person's notification is simply not
found (NOT_FOUND, never PERMISSION_DENIED). The delivery log and webhook
subscriptions are for admins. Request checks are in validation.py, the
queries in inbox.py, preferences.py, subscriptions.py and delivery_log.py,
the messages in convert.py; what is left here is the order of the steps.
"""

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from services.platform.api.auth import Caller
from services.platform.core import paging
from services.platform.core.clock import utc_now
from services.platform.core.errors import AlreadyExists, Aborted, FailedPrecondition, NotFound, PermissionDenied
from services.platform.core.errors import PreconditionViolation
from services.platform.core.ids import new_id

from . import convert, inbox, kinds, validation
from .delivery_log import DeliveryLog
from .inbox import Inbox
from .preferences import PreferenceStore
from .subscriptions import SubscriptionStore
from v2mom.v1 import notify_pb2

log = logging.getLogger(__name__)

# The lists' names in their page tokens: a token of one list is refused by another.
INBOX_LIST = "notifications"
DELIVERIES_LIST = "deliveries"
SUBSCRIPTIONS_LIST = "subscriptions"
ROTATION_TRIES = 3


class NotifyService:
    def __init__(self, inbox_store: Inbox, preferences: PreferenceStore, subscriptions: SubscriptionStore,
                 delivery_log: DeliveryLog, allow_private_webhooks: bool = False,
                 url_problem: Callable[[str, bool], str | None] | None = None,
                 clock: Callable[[], datetime] = utc_now):
        self.inbox = inbox_store
        self.preferences = preferences
        self.subscriptions = subscriptions
        self.delivery_log = delivery_log
        self.allow_private_webhooks = allow_private_webhooks
        self.url_problem = url_problem or validation.webhook_url_problem
        self.clock = clock

    # --- the inbox ----------------------------------------------------------------------------------

    def list_notifications(self, caller: Caller, request) -> notify_pb2.ListNotificationsResponse:
        size = validation.list_notifications(request)
        filters = {"recipient": caller.person_id, "unread_only": request.unread_only}
        after = _position(request.page_token, INBOX_LIST, filters)
        rows = self.inbox.page(caller.person_id, request.unread_only, after, size + 1)
        return notify_pb2.ListNotificationsResponse(
            notifications=[convert.notification(doc) for doc in rows[:size]],
            next_page_token=paging.next_token(INBOX_LIST, filters, rows, size, inbox.position),
        )

    def mark_read(self, caller: Caller, request) -> notify_pb2.MarkReadResponse:
        ids = validation.mark_read(request)
        if ids:
            # All or nothing: an id that is not the caller's stops the call before anything is marked.
            owned = self.inbox.owned(caller.person_id, ids)
            missing = [i for i in ids if i not in owned]
            if missing:
                raise NotFound(f"notification {missing[0]} not found")
        marked = self.inbox.mark_read(caller.person_id, ids or None, self.clock())
        return notify_pb2.MarkReadResponse(marked=marked, unread_count=self.inbox.unread_count(caller.person_id))

    def unread_count(self, caller: Caller, request) -> notify_pb2.GetUnreadCountResponse:
        return notify_pb2.GetUnreadCountResponse(unread_count=self.inbox.unread_count(caller.person_id))

    # --- preferences -----------------------------------------------------------------------------------

    def get_preferences(self, caller: Caller, request) -> notify_pb2.Preferences:
        return self._preferences_of(caller.person_id)

    def update_preferences(self, caller: Caller, request) -> notify_pb2.Preferences:
        change = validation.update_preferences(request, caller.person_id)
        fields, resubscribed = {}, []
        if change.set_kinds:
            fields["kinds"] = change.kinds
            # Choosing email again for a kind undoes an earlier one-click unsubscribe of it.
            resubscribed = [k for k, v in change.kinds.items() if kinds.EMAIL in v["channels"]]
        if change.set_quiet_hours:
            fields["quiet_hours"] = change.quiet_hours
        self.preferences.update(caller.person_id, fields, resubscribed, self.clock())
        log.info("preferences updated", extra={"person_id": caller.person_id, "fields": sorted(fields)})
        return self._preferences_of(caller.person_id)

    def _preferences_of(self, person_id: str) -> notify_pb2.Preferences:
        return convert.preferences(person_id, self.preferences.get(person_id), self.preferences.time_zone(person_id))

    def unsubscribe(self, person_id: str, kind: str) -> bool:
        """One-click unsubscribe (http.py): email off for this kind; False if it already was."""
        changed = self.preferences.unsubscribe(person_id, kind, self.clock())
        log.info("unsubscribed", extra={"person_id": person_id, "kind": kind, "changed": changed})
        return changed

    # --- admin: the delivery log -----------------------------------------------------------------------

    def list_deliveries(self, caller: Caller, request) -> notify_pb2.ListDeliveriesResponse:
        _require_admin(caller)
        filters, size = validation.list_deliveries(request)
        token_filters = [filters.recipient_id, filters.status, filters.channel]
        after = _position(request.page_token, DELIVERIES_LIST, token_filters)
        rows = self.delivery_log.page(filters.recipient_id, filters.status, filters.channel, after, size + 1)
        return notify_pb2.ListDeliveriesResponse(
            deliveries=[convert.delivery(doc) for doc in rows[:size]],
            next_page_token=paging.next_token(DELIVERIES_LIST, token_filters, rows, size, inbox.position),
        )

    # --- admin: webhook subscriptions ------------------------------------------------------------------

    def create_subscription(self, caller: Caller, request) -> notify_pb2.Subscription:
        _require_admin(caller)
        new = validation.create_subscription(request, self.allow_private_webhooks, self.url_problem)
        existing = self.subscriptions.same_target(new.org_unit_id, new.url, new.format)
        if existing is not None:
            raise AlreadyExists(f"subscription {existing['_id']} already sends {new.format} to this URL "
                                f"for this org unit")
        doc = self.subscriptions.insert({
            "_id": new_id("sub"), "org_unit_id": new.org_unit_id, "url": new.url, "format": new.format,
            "kinds": new.kinds, "secret": new.secret, "previous_secret": "", "previous_secret_expires_at": None,
            "disabled_at": None, "disabled_reason": "", "created_at": self.clock(), "created_by": caller.person_id,
        })
        log.info("subscription created", extra={"subscription_id": doc["_id"], "format": new.format,
                                                "org_unit_id": new.org_unit_id, "by": caller.person_id})
        return convert.subscription(doc, reveal_secret=True)

    def list_subscriptions(self, caller: Caller, request) -> notify_pb2.ListSubscriptionsResponse:
        _require_admin(caller)
        size = validation.list_subscriptions(request)
        after = paging.decode_token(request.page_token, SUBSCRIPTIONS_LIST, [], str)
        rows = self.subscriptions.page(after, size + 1)
        return notify_pb2.ListSubscriptionsResponse(
            subscriptions=[convert.subscription(doc) for doc in rows[:size]],
            next_page_token=paging.next_token(SUBSCRIPTIONS_LIST, [], rows, size, lambda doc: doc["_id"]),
        )

    def delete_subscription(self, caller: Caller, request) -> notify_pb2.DeleteSubscriptionResponse:
        _require_admin(caller)
        subscription_id = validation.subscription_id(request)
        if not self.subscriptions.delete(subscription_id):
            raise NotFound(f"subscription {subscription_id} not found")
        log.info("subscription deleted", extra={"subscription_id": subscription_id, "by": caller.person_id})
        return notify_pb2.DeleteSubscriptionResponse()

    def rotate_secret(self, caller: Caller, request) -> notify_pb2.Subscription:
        _require_admin(caller)
        rotation = validation.rotate_secret(request)
        for _ in range(ROTATION_TRIES):
            doc = self.subscriptions.get(rotation.subscription_id)
            if doc is None:
                raise NotFound(f"subscription {rotation.subscription_id} not found")
            if doc.get("format") != "WEBHOOK_FORMAT_STANDARD":
                raise FailedPrecondition("only standard-format subscriptions are signed", [PreconditionViolation(
                    "FORMAT", rotation.subscription_id, f"{doc.get('format')} subscriptions have no secret")])
            expires = self.clock() + timedelta(hours=rotation.overlap_hours)
            rotated = self.subscriptions.rotate(doc["_id"], doc.get("secret") or "", rotation.new_secret, expires)
            if rotated is not None:
                log.info("subscription secret rotated", extra={"subscription_id": doc["_id"], "by": caller.person_id,
                                                               "overlap_hours": rotation.overlap_hours})
                return convert.subscription(rotated, reveal_secret=True)
        raise Aborted("another rotation of this subscription's secret won the race; try again")


def _require_admin(caller: Caller) -> None:
    if not caller.is_admin:
        raise PermissionDenied("only admins may read the delivery log and manage webhook subscriptions")


def _position(token: str, list_name: str, filters) -> tuple[datetime, str] | None:
    position = paging.decode_token(token, list_name, filters, list)
    if position is None:
        return None
    parsed = inbox.parse_position(position)
    if parsed is None:
        raise paging.bad_token()
    return parsed
