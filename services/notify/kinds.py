"""What a person gets, where, and when: notification kinds, channels and each person's preferences (pure rules).

Preferences are stored per person as
``{_id: person_id, kinds: {KIND_NAME: {"channels": [CHANNEL_NAME...], "digest": bool}},
quiet_hours: {"start": "HH:MM", "end": "HH:MM"} | None, unsubscribed: [KIND_NAME...], updated_at}``;
a kind that is not listed uses DEFAULT_CHANNELS. Kinds and channels are stored
by their proto enum names, as every service stores enums.
"""

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from v2mom.v1 import notify_pb2

APPROVAL_REQUESTED = "NOTIFICATION_KIND_APPROVAL_REQUESTED"
APPROVAL_DECIDED = "NOTIFICATION_KIND_APPROVAL_DECIDED"
APPROVAL_OVERDUE = "NOTIFICATION_KIND_APPROVAL_OVERDUE"
CHECKIN_REMINDER = "NOTIFICATION_KIND_CHECKIN_REMINDER"
ITEM_ESCALATION = "NOTIFICATION_KIND_ITEM_ESCALATION"
ATTENTION = "NOTIFICATION_KIND_ATTENTION"
DIGEST = "NOTIFICATION_KIND_DIGEST"
MENTION = "NOTIFICATION_KIND_MENTION"
PARENT_CHANGED = "NOTIFICATION_KIND_PARENT_CHANGED"
KINDS = (APPROVAL_REQUESTED, APPROVAL_DECIDED, APPROVAL_OVERDUE, CHECKIN_REMINDER, ITEM_ESCALATION, ATTENTION, DIGEST,
         MENTION, PARENT_CHANGED)

INBOX = "CHANNEL_INBOX"
EMAIL = "CHANNEL_EMAIL"
WEBHOOK = "CHANNEL_WEBHOOK"
PERSONAL_CHANNELS = (INBOX, EMAIL)  # webhooks belong to subscriptions, not to a person's preferences

DEFAULT_CHANNELS = {
    APPROVAL_REQUESTED: (INBOX, EMAIL),
    APPROVAL_DECIDED: (INBOX, EMAIL),
    APPROVAL_OVERDUE: (INBOX, EMAIL),
    CHECKIN_REMINDER: (INBOX, EMAIL),
    # Escalations start in the inbox; email follows only if it stays unread.
    ITEM_ESCALATION: (INBOX,),
    ATTENTION: (INBOX, EMAIL),
    DIGEST: (EMAIL,),
    # Someone asked the recipient something in a discussion: worth an email, and it may be turned off.
    MENTION: (INBOX, EMAIL),
    # The V2MOM one's own aligns to changed: worth a look, not an email, unless the person asks for one.
    PARENT_CHANGED: (INBOX,),
}
# Kinds whose email carries a one-click unsubscribe (RFC 8058): the recurring ones.
UNSUBSCRIBABLE = frozenset({CHECKIN_REMINDER, DIGEST, ITEM_ESCALATION, ATTENTION, MENTION, PARENT_CHANGED})
# An approval request always reaches at least the inbox: a V2MOM must never wait unseen.
ALWAYS_IN_INBOX = frozenset({APPROVAL_REQUESTED})
# Kinds that may be gathered into the weekly digest instead of going at once.
DIGESTIBLE = frozenset({APPROVAL_DECIDED, CHECKIN_REMINDER, ATTENTION, MENTION})

assert set(KINDS) == {name for name in notify_pb2.NotificationKind.keys() if not name.endswith("UNSPECIFIED")}


def channels_for(preferences: dict | None, kind: str) -> tuple[str, ...]:
    """The personal channels this kind goes to for this person, in a fixed order."""
    stored = ((preferences or {}).get("kinds") or {}).get(kind)
    chosen = set(DEFAULT_CHANNELS[kind] if stored is None else stored.get("channels", ()))
    if kind in set((preferences or {}).get("unsubscribed", ())):
        chosen.discard(EMAIL)
    if kind in ALWAYS_IN_INBOX:
        chosen.add(INBOX)
    return tuple(channel for channel in PERSONAL_CHANNELS if channel in chosen)


def wants_digest(preferences: dict | None, kind: str) -> bool:
    stored = ((preferences or {}).get("kinds") or {}).get(kind)
    return kind in DIGESTIBLE and bool(stored and stored.get("digest"))


def zone(name: str | None) -> ZoneInfo:
    """The person's time zone; UTC until the directory has a valid one."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def parse_local_time(text: str) -> time:
    """ "HH:MM" (24-hour) as a time; ValueError otherwise."""
    hours, sep, minutes = text.partition(":")
    if not sep or len(hours) != 2 or len(minutes) != 2 or not (hours + minutes).isdigit():
        raise ValueError(f"{text!r} is not HH:MM")
    return time(int(hours), int(minutes))


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time

    @classmethod
    def of(cls, preferences: dict | None) -> "QuietHours | None":
        stored = (preferences or {}).get("quiet_hours")
        if not stored or not stored.get("start") or not stored.get("end"):
            return None
        return cls(parse_local_time(stored["start"]), parse_local_time(stored["end"]))

    def contains(self, local: time) -> bool:
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # wraps midnight

    def next_allowed(self, moment: datetime, tz: ZoneInfo) -> datetime:
        """``moment`` if it is outside the quiet hours, else the end of them (as an aware UTC-comparable time)."""
        local = moment.astimezone(tz)
        if not self.contains(local.time().replace(second=0, microsecond=0)):
            return moment
        end = datetime.combine(local.date(), self.end, tzinfo=tz)
        if end <= local:
            end += timedelta(days=1)
        return end.astimezone(moment.tzinfo)


def add_working_days(moment: datetime, days: int, tz: ZoneInfo) -> datetime:
    """``days`` working days (Monday to Friday) after ``moment``, counted in ``tz``: an SLA clock."""
    local = moment.astimezone(tz)
    added = 0
    while added < days:
        local += timedelta(days=1)
        if local.weekday() < 5:
            added += 1
    return local.astimezone(moment.tzinfo)
