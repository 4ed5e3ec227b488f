"""Who gets what, said how (pure rules: no I/O).

An event (or a schedule coming due) becomes ``Planned`` notifications: a
recipient, a kind, a title and body, a link, and the facts a channel may
show. Ids are derived from what caused them (``notification_id``,
``delivery_id``), so a redelivered event or a re-fired schedule names the
documents it wrote before and writes nothing new.

The handlers (handlers.py) look people and V2MOMs up and store what these
functions plan; the schedules' due times are computed in schedules.py.
"""

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from . import kinds

TITLE_MAX = 200
BODY_MAX = 4000

# The states of a V2MOM, as goals stores them (events carry them as proto enum names).
PUBLISHED = "V2MOM_STATE_PUBLISHED"
CHANGES_REQUESTED = "V2MOM_STATE_CHANGES_REQUESTED"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def notification_id(cause_id: str, recipient_id: str, kind: str) -> str:
    """Stable per (cause, recipient, kind): the cause is an event id or a schedule id."""
    return f"ntf_{_digest(cause_id, recipient_id, kind)}"


def delivery_id(notification_id_: str, channel: str, target: str) -> str:
    """Stable per (notification, channel, target): retries keep it, and Message-ID / webhook-id come from it."""
    return f"dlv_{_digest(notification_id_, channel, target)}"


def link(template: str, v2mom_id: str, item_id: str = "") -> str:
    if not v2mom_id:
        return ""
    try:
        return template.format(v2mom_id=v2mom_id, item_id=item_id)
    except (KeyError, IndexError, ValueError):
        return template  # a template with other placeholders: better an unfilled link than none


@dataclass(frozen=True)
class Person:
    """What notify knows of someone: from the people copy (directory.py)."""

    id: str
    name: str = ""
    email: str = ""
    manager_id: str = ""
    org_unit_id: str = ""
    time_zone: str = "UTC"
    active: bool = True

    @property
    def called(self) -> str:
        return self.name or self.id


@dataclass(frozen=True)
class Planned:
    """A notification to create: its id is derived from the cause, the recipient and the kind."""

    cause_id: str
    recipient_id: str
    kind: str
    title: str
    body: str
    link: str = ""
    v2mom_id: str = ""
    item_id: str = ""
    org_unit_id: str = ""
    facts: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return notification_id(self.cause_id, self.recipient_id, self.kind)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def planned(cause_id: str, recipient: str, kind: str, title: str, body: str, **rest) -> Planned:
    return Planned(cause_id, recipient, kind, _clip(title, TITLE_MAX), _clip(body, BODY_MAX), **rest)


# --- the V2MOM as the events carry it (proto3 JSON: lowerCamelCase) ------------------------------------


def content_title(content: dict) -> str:
    return (content or {}).get("title") or "a V2MOM"


def lint_summary(content: dict) -> dict:
    """Counts the approver sees at a glance: what the V2MOM holds, and what obviously lacks an owner or a date.

    Computed from the content the event carries, so asking goals-api (LintV2MOM) is not needed on the
    event's path; the portal link shows goals' full guidance.
    """
    content = content or {}
    methods = content.get("methods") or []
    measures = content.get("measures") or []
    return {
        "values": len(content.get("values") or []),
        "methods": len(methods),
        "measures": len(measures),
        "obstacles": len(content.get("obstacles") or []),
        "methods_without_accountable": sum(1 for m in methods if not m.get("accountableId")),
        "measures_without_due_date": sum(1 for m in measures if not _has_date(m.get("dueDate"))),
    }


def _has_date(value) -> bool:
    return bool(value) and any((value or {}).get(part) for part in ("year", "month", "day"))


def summary_text(summary: dict) -> str:
    text = (f"{summary['values']} values, {summary['methods']} methods, {summary['measures']} measures, "
            f"{summary['obstacles']} obstacles")
    gaps = []
    if summary["methods_without_accountable"]:
        gaps.append(f"{summary['methods_without_accountable']} methods without an Accountable")
    if summary["measures_without_due_date"]:
        gaps.append(f"{summary['measures_without_due_date']} measures without a due date")
    return text + (f"; {', '.join(gaps)}" if gaps else "")


def accountable_for(content: dict, item_kind: str, item_id: str) -> str:
    """The Accountable of a method; for a measure, the Accountable of its first method, else its owner."""
    content = content or {}
    methods = {m.get("id"): m for m in content.get("methods") or []}
    if item_kind.endswith("METHOD"):
        method = methods.get(item_id) or {}
        return method.get("accountableId") or method.get("ownerId") or ""
    for measure in content.get("measures") or []:
        if measure.get("id") == item_id:
            for method_id in measure.get("methodIds") or []:
                accountable = (methods.get(method_id) or {}).get("accountableId")
                if accountable:
                    return accountable
            return measure.get("ownerId") or ""
    return ""


def item_title(content: dict, item_kind: str, item_id: str) -> str:
    items = (content or {}).get("methods" if item_kind.endswith("METHOD") else "measures") or []
    return next((i.get("title") or "" for i in items if i.get("id") == item_id), "")


# --- approvals -----------------------------------------------------------------------------------------


def approval_requested(event_id: str, v2mom: dict, approver: Person, owner: Person, portal: str) -> Planned:
    """v2mom_submitted: the approver is asked, with the lint summary and a link."""
    title = content_title(v2mom.get("content"))
    summary = lint_summary(v2mom.get("content"))
    return planned(
        event_id, approver.id, kinds.APPROVAL_REQUESTED,
        f"{owner.called} asks you to approve \u201c{title}\u201d",
        f"{owner.called} submitted the V2MOM \u201c{title}\u201d for your approval.\n"
        f"It holds {summary_text(summary)}.",
        link=link(portal, v2mom["v2mom_id"]), v2mom_id=v2mom["v2mom_id"], org_unit_id=v2mom.get("org_unit_id", ""),
        facts={"v2mom_id": v2mom["v2mom_id"], "owner_id": owner.id, "owner_name": owner.called,
               "v2mom_title": title, "lint": summary},
    )


def approval_decided(event_id: str, v2mom: dict, owner: Person, approver: Person | None, approved: bool,
                     comment: str, portal: str) -> Planned:
    """v2mom_approved / v2mom_changes_requested: the owner hears the decision and the approver's comment."""
    title = content_title(v2mom.get("content"))
    who = approver.called if approver else "Your approver"
    verdict = "approved" if approved else "asked for changes to"
    body = f"{who} {verdict} your V2MOM \u201c{title}\u201d."
    if comment:
        body += f"\n\nComment: {comment}"
    return planned(
        event_id, owner.id, kinds.APPROVAL_DECIDED,
        f"{who} {verdict} \u201c{title}\u201d",
        body, link=link(portal, v2mom["v2mom_id"]), v2mom_id=v2mom["v2mom_id"],
        org_unit_id=v2mom.get("org_unit_id", ""),
        facts={"v2mom_id": v2mom["v2mom_id"], "decision": "approved" if approved else "changes_requested",
               "comment": comment, "approver_id": approver.id if approver else "", "v2mom_title": title},
    )


def approval_overdue(schedule_id: str, v2mom: dict, recipient: Person, approver: Person, owner: Person,
                     skip_level: bool, working_days: int, portal: str) -> Planned:
    title = v2mom.get("title") or "a V2MOM"
    if skip_level:
        text = (f"\u201c{title}\u201d by {owner.called} has waited {working_days} working days "
                f"for {approver.called}'s approval.")
        heading = f"Approval waiting on {approver.called}: \u201c{title}\u201d"
    else:
        text = f"\u201c{title}\u201d by {owner.called} has waited {working_days} working days for your approval."
        heading = f"Reminder: \u201c{title}\u201d waits for your approval"
    return planned(
        schedule_id, recipient.id, kinds.APPROVAL_OVERDUE, heading, text,
        link=link(portal, v2mom["v2mom_id"]), v2mom_id=v2mom["v2mom_id"], org_unit_id=v2mom.get("org_unit_id", ""),
        facts={"v2mom_id": v2mom["v2mom_id"], "approver_id": approver.id, "skip_level": skip_level,
               "working_days": working_days},
    )


# --- items and progress -----------------------------------------------------------------------------------

ESCALATION_TIERS = ("owner", "accountable", "manager")


def item_escalation(cause_id: str, item: dict, recipient: Person, tier: str, staleness: str, portal: str) -> Planned:
    """An item went stale or overdue: its owner first, then the Accountable, then the V2MOM owner's manager."""
    title = item.get("title") or "an item"
    state = "overdue for a check-in" if staleness.endswith("OVERDUE") else "due for a check-in (stale)"
    if tier == "owner":
        body = f"\u201c{title}\u201d is {state}. A check-in takes a minute."
    else:
        body = (f"\u201c{title}\u201d (owned by {item.get('owner_name') or item.get('owner_id')}) is {state} "
                f"and has not been checked in since the owner was reminded.")
    return planned(
        cause_id, recipient.id, kinds.ITEM_ESCALATION, f"Check in on \u201c{title}\u201d", body,
        link=link(portal, item["v2mom_id"], item["item_id"]), v2mom_id=item["v2mom_id"], item_id=item["item_id"],
        org_unit_id=item.get("org_unit_id", ""),
        facts={"v2mom_id": item["v2mom_id"], "item_id": item["item_id"], "item_kind": item.get("kind", ""),
               "staleness": staleness, "tier": tier},
    )


def attention(event_id: str, progress: dict, recipient: Person, v2mom_title: str, before: int, portal: str) -> Planned:
    """progress_changed with more measures off track than before."""
    now_off = progress["off_track_measures"]
    return planned(
        event_id, recipient.id, kinds.ATTENTION,
        f"Off track: {now_off} of {progress['measures']} measures in \u201c{v2mom_title}\u201d",
        f"{now_off - before} more measure{'s' if now_off - before != 1 else ''} of \u201c{v2mom_title}\u201d went "
        f"off track ({now_off} of {progress['measures']} now).",
        link=link(portal, progress["v2mom_id"], progress.get("item_id", "")), v2mom_id=progress["v2mom_id"],
        item_id=progress.get("item_id", ""), org_unit_id=progress.get("org_unit_id", ""),
        facts={"v2mom_id": progress["v2mom_id"], "off_track_measures": now_off, "previous_off_track_measures": before,
               "measures": progress["measures"]},
    )


def v2mom_transferred(event_id: str, v2mom: dict, recipient: Person, previous_owner: Person | None,
                      reason: str, portal: str) -> Planned:
    """A V2MOM is now the recipient's (TransferV2MOM, or they became the unit's leader): ATTENTION, so it reaches
    them as their preferences say (inbox and email by default; the digest if they chose it)."""
    title = v2mom.get("title") or "a V2MOM"
    before = f" from {previous_owner.called}" if previous_owner and previous_owner.id else ""
    return planned(
        f"{event_id}/transferred", recipient.id, kinds.ATTENTION,
        f"\u201c{title}\u201d is now yours",
        f"\u201c{title}\u201d was transferred to you{before}"
        + (f" ({reason})" if reason else "") + ". Its check-ins, reminders and approvals come to you from now on.",
        link=link(portal, v2mom["v2mom_id"]), v2mom_id=v2mom["v2mom_id"], org_unit_id=v2mom.get("org_unit_id", ""),
        facts={"v2mom_id": v2mom["v2mom_id"], "previous_owner_id": previous_owner.id if previous_owner else "",
               "transferred": True},
    )


OPEN_OBSTACLE = "OBSTACLE_STATUS_OPEN"


def open_obstacle_ids(content: dict | None) -> set[str]:
    return {o.get("id") for o in (content or {}).get("obstacles") or [] if o.get("status") == OPEN_OBSTACLE}


def opened_obstacles(before: dict | None, after: dict | None) -> list[dict]:
    """Obstacles open in the newly published content that were not open in the one before it."""
    was_open = open_obstacle_ids(before)
    return [o for o in (after or {}).get("obstacles") or []
            if o.get("status") == OPEN_OBSTACLE and o.get("id") and o.get("id") not in was_open]


def obstacle_recipients(content: dict, obstacle: dict, owner_id: str) -> list[str]:
    """The V2MOM's owner and the Accountable of every method the obstacle blocks, once each."""
    accountable = [accountable_for(content, "ITEM_KIND_METHOD", method_id) for method_id in obstacle.get("methodIds") or []]
    return [person for person in dict.fromkeys([owner_id, *accountable]) if person]


def obstacle_opened(event_id: str, v2mom: dict, obstacle: dict, recipient: Person, portal: str) -> Planned:
    """An obstacle newly open in a published V2MOM."""
    title = v2mom.get("title") or "a V2MOM"
    return planned(
        f"{event_id}/obstacle/{obstacle['id']}", recipient.id, kinds.ATTENTION,
        f"Obstacle opened in \u201c{title}\u201d: {obstacle.get('title') or obstacle['id']}",
        f"\u201c{obstacle.get('title') or obstacle['id']}\u201d is open in \u201c{title}\u201d"
        + (f": {obstacle['description']}" if obstacle.get("description") else "."),
        link=link(portal, v2mom["v2mom_id"]), v2mom_id=v2mom["v2mom_id"], org_unit_id=v2mom.get("org_unit_id", ""),
        facts={"v2mom_id": v2mom["v2mom_id"], "obstacle_id": obstacle["id"],
               "method_ids": list(obstacle.get("methodIds") or [])},
    )


def obstacle_reopened(obstacle: dict, previous_status: str) -> bool:
    """obstacle_changed: the obstacle (proto3 JSON) is OPEN now and was not before - news, as a publication opening it."""
    return obstacle.get("status") == OPEN_OBSTACLE and previous_status != OPEN_OBSTACLE


def mentioned(event_id: str, comment: dict, v2mom: dict, recipient: Person, author: Person, portal: str) -> Planned:
    """Someone mentioned the recipient in a comment (proto3 JSON) on a V2MOM or one of its items. goals let only
    people who see the version commented on be mentioned, so the text may go to them."""
    title = v2mom.get("title") or "a V2MOM"
    item_id = comment.get("itemId") or ""
    return planned(
        f"{event_id}/mention", recipient.id, kinds.MENTION,
        f"{author.called} mentioned you on “{title}”",
        f"{author.called} wrote on “{title}”" + (f" ({item_id})" if item_id else "") + f":\n\n{comment.get('text', '')}",
        link=link(portal, comment["v2momId"], item_id), v2mom_id=comment["v2momId"], item_id=item_id,
        org_unit_id=v2mom.get("org_unit_id", ""),
        facts={"v2mom_id": comment["v2momId"], "comment_id": comment["id"], "author_id": author.id,
               "reply_to": comment.get("replyTo") or ""},
    )


PARENT_PARTS = {"content.title": "title", "content.vision": "vision", "content.values": "values",
                "content.methods": "methods", "content.obstacles": "obstacles", "content.measures": "measures"}


def parent_changed_recipients(data: dict) -> list[str]:
    """v2mom_parent_changed (proto3 JSON): the owners of the V2MOMs aligned beneath, each once; not whoever made
    the change (the parent's owner, its approver), who know."""
    made_it = {data.get("ownerId"), data.get("actorId")}
    return [owner for owner in dict.fromkeys(data.get("childOwnerIds") or []) if owner and owner not in made_it]


def parent_changed(event_id: str, data: dict, recipient: Person, portal: str) -> Planned:
    """The V2MOM the recipient's own aligns to was approved again with other content: what changed, and a link."""
    title = data.get("title") or "a V2MOM"
    parts = ", ".join(PARENT_PARTS.get(path, path) for path in data.get("changedPaths") or []) or "its content"
    return planned(
        f"{event_id}/parent", recipient.id, kinds.PARENT_CHANGED, f"“{title}”, which yours aligns to, changed",
        f"“{title}” was approved again with new {parts} (revision {data.get('revision', '')}). "
        "Your V2MOM aligned beneath it may need to follow.",
        link=link(portal, data["v2momId"]), v2mom_id=data["v2momId"], org_unit_id=data.get("orgUnitId", ""),
        facts={"v2mom_id": data["v2momId"], "revision": str(data.get("revision", "")),
               "changed_paths": list(data.get("changedPaths") or []), "child_ids": list(data.get("childIds") or [])},
    )


def attention_recipients(owner_id: str, accountable_id: str) -> list[str]:
    return [person for person in dict.fromkeys([owner_id, accountable_id]) if person]


# --- webhooks -------------------------------------------------------------------------------------------------


def subscription_wants(subscription: dict, kind: str, org_unit_id: str) -> bool:
    """Whether a webhook subscription gets this notification: its org unit (or org-wide) and its kinds."""
    if subscription.get("disabled_at"):
        return False
    unit = subscription.get("org_unit_id") or ""
    if unit and unit != org_unit_id:
        return False
    wanted = subscription.get("kinds") or []
    # Digests, mentions and parent changes are one person's: a channel gets them only when it names their kind.
    return kind in wanted if wanted else kind not in (kinds.DIGEST, kinds.MENTION, kinds.PARENT_CHANGED)


# --- check-in reminders and the weekly digest ---------------------------------------------------------------

CADENCE_WORDS = {"CADENCE_WEEKLY": "weekly", "CADENCE_BIWEEKLY": "every two weeks", "CADENCE_MONTHLY": "monthly"}
DIGEST_LINES_MAX = 20  # per section; the rest is counted


@dataclass(frozen=True)
class QuarterTurn:
    """An item due because its quarter ended: the quarter that began then, and the one its last check-in counted
    for (goals' quarter ids; empty when not known, e.g. the cycle's last quarter ended)."""
    began: str = ""
    last_checkin_in: str = ""


def checkin_reminder(cause_id: str, item: dict, recipient: Person, due_at, cadence: str, cadence_known: bool,
                     portal: str, turn: QuarterTurn | None = None) -> Planned:
    """An item of the recipient is due for a check-in under its cycle's cadence, or because its quarter ended
    (``turn``): a check-in counts for its own quarter only, so a date "due by" would read as already missed."""
    title = item.get("title") or "an item"
    last = item.get("last_checkin_at")
    if turn is None:
        since = f"last checked in on {last:%a %d %b}" if last else "not checked in since it was published"
        body = (f"\u201c{title}\u201d is due for a check-in by {due_at:%a %d %b %H:%M} UTC (check-ins are "
                f"{CADENCE_WORDS.get(cadence, cadence)}; it was {since}).")
    else:
        body = _quarter_turn_words(title, last, due_at, turn)
    return planned(
        cause_id, recipient.id, kinds.CHECKIN_REMINDER, f"Time to check in on \u201c{title}\u201d",
        f"{body} A check-in takes a minute.",
        link=link(portal, item["v2mom_id"], item["item_id"]), v2mom_id=item["v2mom_id"], item_id=item["item_id"],
        org_unit_id=item.get("org_unit_id", ""),
        facts={"v2mom_id": item["v2mom_id"], "item_id": item["item_id"], "item_kind": item.get("item_kind", ""),
               "item_title": title, "due_date": due_at.isoformat().replace("+00:00", "Z"), "cadence": cadence,
               "cadence_assumed": not cadence_known},
    )


def _quarter_turn_words(title: str, last, began_at, turn: QuarterTurn) -> str:
    """E.g. "Q2 has begun (Wed 01 Jul): your last check-in on “Ship it” (Fri 26 Jun) counted for Q1; check in for
    Q2." """
    began = turn.began or "a new quarter"
    opening = f"{turn.began or 'A new quarter'} has begun ({began_at:%a %d %b})"
    if last:
        counted = f"counted for {turn.last_checkin_in}" if turn.last_checkin_in else "counted for an earlier quarter"
        return (f"{opening}: your last check-in on \u201c{title}\u201d ({last:%a %d %b}) {counted}; "
                f"check in for {began}.")
    return f"{opening}: \u201c{title}\u201d has no check-in yet; check in for {began}."


def _section(heading: str, lines: list[str]) -> str:
    shown = lines[:DIGEST_LINES_MAX]
    more = len(lines) - len(shown)
    return "\n".join([f"{heading} ({len(lines)}):", *(f"- {line}" for line in shown),
                      *([f"- and {more} more"] if more else [])])


def digest(cause_id: str, recipient: Person, since, until, checkins: list[dict], off_track: list[dict],
           approvals: list[dict], held: list[dict]) -> Planned | None:
    """The weekly digest: the team's check-ins, what went off track, approvals waiting, and the held mail.

    ``checkins`` / ``off_track``: ``{who, item_title, status, progress}``; ``approvals``: ``{title, owner}``;
    ``held``: the held notifications (``{_id, title, link}``). None when there is nothing to say.
    """
    if not (checkins or off_track or approvals or held):
        return None
    sections = []
    if checkins:
        sections.append(_section("Check-ins from your team", [
            f"{c['who']} on \u201c{c['item_title']}\u201d: {c['status']}, {c['progress']:.0f}%" for c in checkins]))
    if off_track:
        sections.append(_section("Went off track", [f"\u201c{c['item_title']}\u201d ({c['who']})" for c in off_track]))
    if approvals:
        sections.append(_section("Waiting on your approval", [
            f"\u201c{a['title']}\u201d by {a['owner']}" for a in approvals]))
    if held:
        sections.append(_section("Held for this digest", [
            n["title"] + (f" ({n['link']})" if n.get("link") else "") for n in held]))
    counts = (f"{len(checkins)} check-ins, {len(off_track)} off track, {len(approvals)} approvals waiting, "
              f"{len(held)} held")
    return planned(
        cause_id, recipient.id, kinds.DIGEST, f"Your week in V2MOMs, to {until:%a %d %b}",
        f"The week from {since:%a %d %b %H:%M} to {until:%a %d %b %H:%M} UTC: {counts}.\n\n" + "\n\n".join(sections),
        facts={"since": since.isoformat().replace("+00:00", "Z"), "until": until.isoformat().replace("+00:00", "Z"),
               "checkins": len(checkins), "off_track": len(off_track), "approvals_waiting": len(approvals),
               "held_notification_ids": [n["_id"] for n in held]},
    )


def item_due_at(due_date: dict | None):
    """The end (UTC) of an item's due date as the events carry it (google.type.Date as JSON), or None."""
    if not _has_date(due_date):
        return None
    try:
        return datetime(due_date["year"], due_date["month"], due_date["day"], tzinfo=UTC) + timedelta(days=1)
    except (KeyError, TypeError, ValueError):
        return None


def published_items(v2mom_id: str, content: dict, v2mom_owner_id: str) -> list[dict]:
    """Each method and measure of a published V2MOM as the ``items`` copy keeps it (an owner: its own, else the
    V2MOM owner's). Measures have no Informed people; methods name theirs."""
    found = []
    for kind, name in (("ITEM_KIND_METHOD", "methods"), ("ITEM_KIND_MEASURE", "measures")):
        for item in (content or {}).get(name) or []:
            if not item.get("id"):
                continue
            found.append({
                "_id": f"{v2mom_id}/{kind}/{item['id']}", "v2mom_id": v2mom_id, "item_kind": kind,
                "item_id": item["id"], "title": item.get("title") or "",
                "owner_id": item.get("ownerId") or v2mom_owner_id,
                "informed_ids": list(item.get("informedIds") or []) if kind == "ITEM_KIND_METHOD" else [],
                "due_at": item_due_at(item.get("dueDate")),
            })
    return found
