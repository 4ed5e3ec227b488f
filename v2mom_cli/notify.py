"""The notification commands: your inbox, your notification preferences, and (admins) the delivery log.

They talk to the notify API (--notify-addr). Kinds and channels are named as
people say them: approval-requested, checkin-reminder, ...; inbox, email.
"""

from google.protobuf.field_mask_pb2 import FieldMask

from v2mom.v1 import notify_pb2

from . import render_notify
from .checkins import person_id
from .errors import CliError

# approval-requested, ..., digest: the proto names without their prefix, in the proto's order.
KINDS = {render_notify.kind_name(value): value for value in notify_pb2.NotificationKind.values() if value}
# Only these are a person's own; webhooks are subscriptions an admin sets up.
PERSONAL_CHANNELS = {"inbox": notify_pb2.CHANNEL_INBOX, "email": notify_pb2.CHANNEL_EMAIL}
NO_CHANNELS = ("none", "off")  # --channels none: this kind goes nowhere
DELIVERY_STATUSES = {
    render_notify.status_name(value): value for value in notify_pb2.DeliveryStatus.values() if value
}
DELIVERY_CHANNELS = {render_notify.channel_name(value): value for value in notify_pb2.Channel.values() if value}
PAGE_SIZE_MAX = 200  # the API's largest page
# Marking read and replacing preferences come out the same however often they arrive: safe to retry.
WRITE_ATTEMPTS = 3


# --- the inbox -------------------------------------------------------------------------------------


def inbox(ctx, args) -> int:
    limit = _limit(args.limit)
    request = notify_pb2.ListNotificationsRequest(unread_only=args.unread)
    notifications, more = _newest(ctx, "ListNotifications", request, "notifications", limit)
    unread = ctx.notify.call("GetUnreadCount", notify_pb2.GetUnreadCountRequest()).unread_count
    print(render_notify.inbox(notifications, unread, unread_only=args.unread, more=more))
    return 0


def mark_read(ctx, args) -> int:
    if args.all == bool(args.ids):
        raise CliError("name the notifications to mark read (their ids, see `v2mom inbox`), or give --all; "
                       "not both", exit_code=2)
    request = notify_pb2.MarkReadRequest(notification_ids=args.ids, all=args.all)
    answer = ctx.notify.call("MarkRead", request, attempts=WRITE_ATTEMPTS)
    print(render_notify.marked(answer, len(args.ids)))
    return 0


# --- preferences ----------------------------------------------------------------------------------


def show_preferences(ctx, args) -> int:
    print(render_notify.preferences(ctx.notify.call("GetPreferences", notify_pb2.GetPreferencesRequest())))
    return 0


def set_kind(ctx, args) -> int:
    kind = kind_value(args.kind)
    channels = channel_values(args.channels) if args.channels is not None else None
    if channels is None and args.digest is None:
        raise CliError("say what to change: --channels inbox,email (or none), and/or --digest / --no-digest",
                       exit_code=2)
    # UpdatePreferences replaces the whole list of kinds (an unlisted kind goes back to its default), so every
    # kind is sent back as it is now, with only this one changed.
    current = ctx.notify.call("GetPreferences", notify_pb2.GetPreferencesRequest())
    entries = {entry.kind: entry for entry in current.kinds}
    if kind not in entries and channels is None:
        raise CliError(f"the notify API did not say where {args.kind} goes now: give --channels too", exit_code=2)
    entry = entries.setdefault(kind, notify_pb2.KindPreference(kind=kind))
    if channels is not None:
        entry.ClearField("channels")
        entry.channels.extend(channels)
    if args.digest is not None:
        entry.digest = args.digest
    preferences = notify_pb2.Preferences(kinds=list(entries.values()))
    updated = _update(ctx, preferences, "kinds")
    print(render_notify.kind_changed(next(e for e in updated.kinds if e.kind == kind)))
    return 0


def set_quiet_hours(ctx, args) -> int:
    if args.start.lower() == "off" and args.end is None:
        quiet = notify_pb2.QuietHours()
    elif args.end is not None and args.start.lower() != "off":
        quiet = notify_pb2.QuietHours(start=args.start, end=args.end)
    else:
        raise CliError("give the start and the end of your quiet hours (HH:MM HH:MM, for example 22:00 07:00), "
                       "or off", exit_code=2)
    updated = _update(ctx, notify_pb2.Preferences(quiet_hours=quiet), "quiet_hours")
    print(render_notify.quiet_changed(updated))
    return 0


def _update(ctx, preferences: notify_pb2.Preferences, path: str) -> notify_pb2.Preferences:
    request = notify_pb2.UpdatePreferencesRequest(preferences=preferences, update_mask=FieldMask(paths=[path]))
    return ctx.notify.call("UpdatePreferences", request, attempts=WRITE_ATTEMPTS)


# --- the delivery log (admins) --------------------------------------------------------------------


def deliveries(ctx, args) -> int:
    limit = _limit(args.limit)
    request = notify_pb2.ListDeliveriesRequest(
        recipient_id=person_id(ctx, args.recipient) if args.recipient else "",
        status=DELIVERY_STATUSES[args.status] if args.status else 0,
        channel=DELIVERY_CHANNELS[args.channel] if args.channel else 0,
    )
    found, more = _newest(ctx, "ListDeliveries", request, "deliveries", limit)
    print(render_notify.deliveries(found, more=more))
    return 0


# --- names ------------------------------------------------------------------------------------------


def kind_value(name: str) -> int:
    """approval-requested, APPROVAL_REQUESTED or NOTIFICATION_KIND_APPROVAL_REQUESTED: the enum value."""
    key = name.strip().lower().replace("_", "-").removeprefix("notification-kind-")
    if key not in KINDS:
        raise CliError(f"unknown notification kind {name!r}; use one of {', '.join(KINDS)}", exit_code=2)
    return KINDS[key]


def channel_values(text: str) -> list[int]:
    """"inbox,email" (or "none"): the channels, in the order given."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not names or (len(names) == 1 and names[0] in NO_CHANNELS):
        return []
    chosen: list[int] = []
    for name in names:
        if name not in PERSONAL_CHANNELS:
            why = " (webhooks are subscriptions an admin sets up)" if name == "webhook" else ""
            raise CliError(f"unknown channel {name!r}{why}; use inbox, email, both (inbox,email) or none",
                           exit_code=2)
        if PERSONAL_CHANNELS[name] not in chosen:
            chosen.append(PERSONAL_CHANNELS[name])
    return chosen


def _limit(limit: int) -> int:
    if limit < 1:
        raise CliError(f"--limit must be at least 1 (got {limit})", exit_code=2)
    return limit


def _newest(ctx, rpc: str, request, field: str, limit: int) -> tuple[list, bool]:
    """Up to `limit` entries of a newest-first paged list, and whether there are more."""
    found: list = []
    while True:
        request.page_size = min(PAGE_SIZE_MAX, limit - len(found))
        response = ctx.notify.call(rpc, request)
        found.extend(getattr(response, field))
        if not response.next_page_token:
            return found, False
        if len(found) >= limit:
            return found, True
        request.page_token = response.next_page_token
