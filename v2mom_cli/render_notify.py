"""Plain-text views of the inbox, notification preferences and the delivery log."""

from v2mom.v1 import notify_pb2

from .render import clip, table, time_text

UNREAD = "●"
TITLE_WIDTH = 48
ERROR_WIDTH = 60


def _friendly(enum_type, prefix: str, value: int) -> str:
    """CHECKIN_REMINDER as people write it: checkin-reminder ("-" when unset, the number when unknown)."""
    if not value:
        return "-"
    try:
        return enum_type.Name(value).removeprefix(prefix).lower().replace("_", "-")
    except ValueError:  # a newer API's value this CLI does not know yet
        return str(value)


def kind_name(kind: int) -> str:
    return _friendly(notify_pb2.NotificationKind, "NOTIFICATION_KIND_", kind)


def channel_name(channel: int) -> str:
    return _friendly(notify_pb2.Channel, "CHANNEL_", channel)


def status_name(status: int) -> str:
    return _friendly(notify_pb2.DeliveryStatus, "DELIVERY_STATUS_", status)


def channels_text(channels) -> str:
    return ", ".join(channel_name(c) for c in channels) or "none (off)"


# --- the inbox -------------------------------------------------------------------------------------


def inbox(notifications, unread: int, unread_only: bool, more: bool) -> str:
    if not notifications:
        return "Nothing unread." if unread_only else "Your inbox is empty."
    rows = [
        ["" if n.HasField("read_time") else UNREAD, time_text(n.create_time), kind_name(n.kind), clip(n.title, TITLE_WIDTH),
         n.id, n.link]
        for n in notifications
    ]
    lines = [table(["", "WHEN", "KIND", "TITLE", "ID", "LINK"], rows), ""]
    if more:
        lines.append(f"The newest {len(notifications)} shown; see more with --limit.")
    lines.append(f"{unread} unread." if unread else "Nothing unread.")
    if unread:
        lines.append("Mark read: v2mom inbox read <id>... (or --all)")
    return "\n".join(lines)


def marked(answer: notify_pb2.MarkReadResponse, asked: int) -> str:
    already = f" ({asked - answer.marked} already were)" if asked > answer.marked else ""
    return f"Marked {answer.marked} read{already}; {answer.unread_count} unread left."


# --- preferences ----------------------------------------------------------------------------------


def preferences(prefs: notify_pb2.Preferences) -> str:
    rows = [[kind_name(k.kind), channels_text(k.channels), "yes" if k.digest else "no"] for k in prefs.kinds]
    lines = [
        f"Notification preferences of {prefs.person_id} (time zone {prefs.time_zone or 'UTC'})",
        "",
        table(["KIND", "CHANNELS", "WEEKLY DIGEST"], rows),
        "",
        quiet_text(prefs),
    ]
    if prefs.HasField("update_time"):
        lines.append(f"Last changed {time_text(prefs.update_time)}.")
    lines += [
        "",
        "Change with: v2mom prefs set <kind> --channels inbox,email|inbox|email|none [--digest | --no-digest]",
        "             v2mom prefs quiet HH:MM HH:MM | off",
    ]
    return "\n".join(lines)


def quiet_text(prefs: notify_pb2.Preferences) -> str:
    quiet = prefs.quiet_hours
    if not quiet.start and not quiet.end:
        return "Quiet hours: none."
    return (f"Quiet hours: {quiet.start} to {quiet.end} ({prefs.time_zone or 'UTC'}): "
            "email waits until they end; the inbox gets everything at once.")


def kind_changed(entry: notify_pb2.KindPreference) -> str:
    where = f"goes to {channels_text(entry.channels)}" if entry.channels else "is turned off (no channels)"
    when = "gathered into the weekly digest" if entry.digest else "sent at once"
    return f"{kind_name(entry.kind)} now {where}, {when}."


def quiet_changed(prefs: notify_pb2.Preferences) -> str:
    if not prefs.quiet_hours.start and not prefs.quiet_hours.end:
        return "Quiet hours off: email goes out at any hour."
    return quiet_text(prefs)


# --- the delivery log ---------------------------------------------------------------------------


def deliveries(found, more: bool) -> str:
    if not found:
        return "No deliveries match."
    rows = [
        [time_text(d.create_time), status_name(d.status), channel_name(d.channel), kind_name(d.kind), d.recipient_id,
         d.target, str(d.tries), _when_next(d), clip(" ".join(d.last_error.split()), ERROR_WIDTH), d.id]
        for d in found
    ]
    lines = [table(["CREATED", "STATUS", "CHANNEL", "KIND", "RECIPIENT", "TARGET", "TRIES", "SENT / NEXT TRY",
                    "LAST ERROR", "ID"], rows)]
    if more:
        lines += ["", f"The newest {len(found)} shown; see more with --limit."]
    return "\n".join(lines)


def _when_next(delivery: notify_pb2.Delivery) -> str:
    if delivery.status == notify_pb2.DELIVERY_STATUS_SENT:
        return time_text(delivery.sent_time)
    if delivery.status == notify_pb2.DELIVERY_STATUS_PENDING:
        return time_text(delivery.next_try_time)
    return ""
