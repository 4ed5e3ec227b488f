"""Checks on NotifyService requests that need nothing stored: sizes, formats, enums, secrets, webhook URLs.

Each problem is a field violation (INVALID_ARGUMENT) and a client hears about
all of them at once. Limits are the ones notify.proto names; the shapes (ids,
enums, page sizes) are the kernel's. What needs the store (does this
notification exist, is it the caller's) is the use cases' (service.py).
"""

from dataclasses import dataclass

from services.platform.core.errors import Violations
from services.platform.core.paging import page_size
from services.platform.core.validation import check_enum, check_id

from . import kinds
from .channels import secrets, targets
from v2mom.v1 import notify_pb2

MAX_MARK_READ = 200
MAX_URL = 2000
MAX_OVERLAP_HOURS = 720
DEFAULT_OVERLAP_HOURS = 24
MAX_SECRET = 200  # whsec_ + base64 of 64 bytes is 94 characters; anything far longer is not one
UPDATE_PATHS = ("kinds", "quiet_hours")


# --- inbox -------------------------------------------------------------------------------------------------


def list_notifications(request) -> int:
    """The page size to use."""
    violations = Violations()
    size = page_size(violations, request.page_size)
    violations.raise_if_any()
    return size


def mark_read(request) -> list[str]:
    """The ids to mark (empty with ``all``)."""
    violations = Violations()
    ids = list(request.notification_ids)
    if request.all and ids:
        violations.add("notification_ids", "must be empty when all is true (all marks the whole inbox)")
    elif not request.all and not ids:
        violations.add("notification_ids", "is required: name up to 200 notifications, or set all")
    violations.max_items("notification_ids", ids, MAX_MARK_READ)
    for index, value in enumerate(ids[:MAX_MARK_READ]):
        check_id(violations, f"notification_ids[{index}]", value)
    _no_repeats(violations, "notification_ids", ids)
    violations.raise_if_any()
    return ids


# --- preferences ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreferencesChange:
    """What UpdatePreferences changes: ``kinds`` (stored shape) when the mask names it, ``quiet_hours`` likewise."""

    kinds: dict | None
    quiet_hours: dict | None
    set_kinds: bool
    set_quiet_hours: bool


def update_preferences(request, caller_id: str) -> PreferencesChange:
    violations = Violations()
    paths = list(request.update_mask.paths)
    for index, path in enumerate(paths):
        if path not in UPDATE_PATHS:
            violations.add(f"update_mask.paths[{index}]", f"unknown path {path[:64]!r}; use 'kinds' or 'quiet_hours'")
    _no_repeats(violations, "update_mask.paths", paths)
    if not request.HasField("preferences"):
        violations.add("preferences", "is required")
    chosen = set(paths) or set(UPDATE_PATHS)
    preferences = request.preferences
    if preferences.person_id and preferences.person_id != caller_id:
        violations.add("preferences.person_id", "must be empty or your own id: you change only your own preferences")
    stored_kinds = _kind_preferences(violations, preferences.kinds) if "kinds" in chosen else None
    quiet = _quiet_hours(violations, preferences.quiet_hours) if "quiet_hours" in chosen else None
    violations.raise_if_any()
    return PreferencesChange(stored_kinds, quiet, "kinds" in chosen, "quiet_hours" in chosen)


def _kind_preferences(violations: Violations, entries) -> dict:
    stored = {}
    for index, entry in enumerate(entries):
        field = f"preferences.kinds[{index}]"
        if not _enum_given(violations, f"{field}.kind", notify_pb2.NotificationKind, entry.kind):
            continue
        kind = notify_pb2.NotificationKind.Name(entry.kind)
        if kind in stored:
            violations.add(f"{field}.kind", f"{kind} is listed twice")
            continue
        channels = _channels(violations, f"{field}.channels", entry.channels)
        if kind in kinds.ALWAYS_IN_INBOX and kinds.INBOX not in channels:
            # Refused rather than silently kept: the client should see what it will get.
            violations.add(f"{field}.channels",
                           "approval requests always reach the inbox: CHANNEL_INBOX cannot be removed for "
                           "NOTIFICATION_KIND_APPROVAL_REQUESTED (a V2MOM must never wait unseen)")
        if entry.digest and kind not in kinds.DIGESTIBLE:
            allowed = ", ".join(sorted(kinds.DIGESTIBLE))
            violations.add(f"{field}.digest", f"{kind} cannot be gathered into the digest; only {allowed} can")
        stored[kind] = {"channels": [c for c in kinds.PERSONAL_CHANNELS if c in channels], "digest": entry.digest}
    return stored


def _channels(violations: Violations, field: str, values) -> list[str]:
    chosen = []
    for index, value in enumerate(values):
        if not _enum_given(violations, f"{field}[{index}]", notify_pb2.Channel, value):
            continue
        channel = notify_pb2.Channel.Name(value)
        if channel not in kinds.PERSONAL_CHANNELS:
            violations.add(f"{field}[{index}]", f"{channel} is not a personal channel; webhooks are set up by admins "
                                                "as subscriptions")
        elif channel in chosen:
            violations.add(f"{field}[{index}]", f"{channel} is listed twice")
        else:
            chosen.append(channel)
    return chosen


def _quiet_hours(violations: Violations, quiet) -> dict | None:
    if not quiet.start and not quiet.end:
        return None
    times = {}
    for name in ("start", "end"):
        text = getattr(quiet, name)
        field = f"preferences.quiet_hours.{name}"
        if not text:
            violations.add(field, "is required when the other end of the quiet hours is set (both empty: none)")
            continue
        try:
            times[name] = kinds.parse_local_time(text)
        except ValueError:
            violations.add(field, f"must be a 24-hour local time HH:MM, got {text[:16]!r}")
    if len(times) == 2 and times["start"] == times["end"]:
        violations.add("preferences.quiet_hours.end", "must differ from start")
    return {"start": quiet.start, "end": quiet.end}


# --- admin: deliveries and subscriptions -------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryFilters:
    recipient_id: str
    status: str  # stored name ("" for any)
    channel: str  # proto name ("" for any)


def list_deliveries(request) -> tuple[DeliveryFilters, int]:
    violations = Violations()
    check_id(violations, "recipient_id", request.recipient_id, required=False)
    check_enum(violations, "status", notify_pb2.DeliveryStatus, request.status)
    check_enum(violations, "channel", notify_pb2.Channel, request.channel)
    size = page_size(violations, request.page_size)
    violations.raise_if_any()
    status = notify_pb2.DeliveryStatus.Name(request.status).removeprefix("DELIVERY_STATUS_") if request.status else ""
    channel = notify_pb2.Channel.Name(request.channel) if request.channel else ""
    return DeliveryFilters(request.recipient_id, status, channel), size


def list_subscriptions(request) -> int:
    violations = Violations()
    size = page_size(violations, request.page_size)
    violations.raise_if_any()
    return size


@dataclass(frozen=True)
class NewSubscription:
    org_unit_id: str
    url: str
    format: str
    kinds: list[str]
    secret: str  # "" for formats that are not signed


def create_subscription(request, allow_private: bool, url_problem=None) -> NewSubscription:
    """``url_problem(url, allow_private)``: why a URL is refused, or None (default: ``webhook_url_problem``)."""
    violations = Violations()
    if not request.HasField("subscription"):
        violations.add("subscription", "is required")
    sub = request.subscription
    check_id(violations, "subscription.org_unit_id", sub.org_unit_id, required=False)
    if not sub.url:
        violations.add("subscription.url", "is required")
    elif len(sub.url) > MAX_URL:
        violations.max_len("subscription.url", sub.url, MAX_URL)
    elif (problem := (url_problem or webhook_url_problem)(sub.url, allow_private)) is not None:
        violations.add("subscription.url", problem)
    _enum_given(violations, "subscription.format", notify_pb2.WebhookFormat, sub.format)
    chosen = _kinds(violations, "subscription.kinds", sub.kinds)
    standard = sub.format == notify_pb2.WEBHOOK_FORMAT_STANDARD
    if sub.secret and not standard and sub.format in notify_pb2.WebhookFormat.values():
        violations.add("subscription.secret", "only the standard format is signed; leave it empty for Slack and Teams")
    elif sub.secret:
        check_secret(violations, "subscription.secret", sub.secret)
    violations.raise_if_any()
    secret = (sub.secret or new_secret()) if standard else ""
    return NewSubscription(sub.org_unit_id, sub.url, notify_pb2.WebhookFormat.Name(sub.format), chosen, secret)


def _kinds(violations: Violations, field: str, values) -> list[str]:
    chosen = []
    for index, value in enumerate(values):
        if not _enum_given(violations, f"{field}[{index}]", notify_pb2.NotificationKind, value):
            continue
        name = notify_pb2.NotificationKind.Name(value)
        if name in chosen:
            violations.add(f"{field}[{index}]", f"{name} is listed twice")
        else:
            chosen.append(name)
    return chosen


@dataclass(frozen=True)
class Rotation:
    subscription_id: str
    new_secret: str
    overlap_hours: int


def rotate_secret(request) -> Rotation:
    violations = Violations()
    check_id(violations, "id", request.id)
    if request.new_secret:
        check_secret(violations, "new_secret", request.new_secret)
    if not 0 <= request.overlap_hours <= MAX_OVERLAP_HOURS:
        violations.add("overlap_hours", f"must be from 0 (meaning {DEFAULT_OVERLAP_HOURS}) to {MAX_OVERLAP_HOURS}")
    violations.raise_if_any()
    return Rotation(request.id, request.new_secret or new_secret(), request.overlap_hours or DEFAULT_OVERLAP_HOURS)


def subscription_id(request) -> str:
    violations = Violations()
    check_id(violations, "id", request.id)
    violations.raise_if_any()
    return request.id


# --- secrets and URLs ------------------------------------------------------------------------------------------


def new_secret() -> str:
    return secrets.new_secret()


def check_secret(violations: Violations, field: str, value: str) -> None:
    """A Standard Webhooks secret: "whsec_" + base64 of 24 to 64 bytes (channels/secrets.py)."""
    if len(value) > MAX_SECRET:
        violations.max_len(field, value, MAX_SECRET)
        return
    try:
        secrets.secret_key(value)
    except ValueError as error:
        violations.add(field, f"{error} (\"whsec_\" followed by base64 of 24 to 64 random bytes)")


def webhook_url_problem(url: str, allow_private: bool) -> str | None:
    """Why a webhook URL is refused, or None (channels/targets.py; names are resolved and checked at each send).

    https only, and no loopback, private or link-local address, unless
    NOTIFY_ALLOW_PRIVATE_WEBHOOKS (development): a webhook must not become a way
    into the internal network.
    """
    try:
        targets.validate_subscription_url(url, allow_private)
    except targets.UnsafeTarget as error:
        if not allow_private and url[:7].lower() == "http://":
            return f"{error} (http is allowed only with NOTIFY_ALLOW_PRIVATE_WEBHOOKS=true, for development)"
        return str(error)
    return None


# --- shapes --------------------------------------------------------------------------------------------------


def _enum_given(violations: Violations, field: str, enum_type, value: int) -> bool:
    """True for a known, non-UNSPECIFIED value; a violation otherwise."""
    if value not in enum_type.values():
        violations.add(field, f"unknown value {value}")
        return False
    if value == 0:
        violations.add(field, f"is required (not {enum_type.Name(0)})")
        return False
    return True


def _no_repeats(violations: Violations, field: str, values) -> None:
    seen = set()
    for value in values:
        if value in seen:
            violations.add(field, f"lists {value[:64]!r} twice")
            return
        seen.add(value)
