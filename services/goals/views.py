"""What a caller is shown of a V2MOM: its working copy, or only its published version."""

from services.platform.api.auth import Caller
from services.platform.core.clock import to_timestamp, utc_now
from services.platform.core.config import env_int

from . import convert, obstacles
from .access import Access
from .lifecycle import ARCHIVED
from v2mom.v1 import goals_pb2

# Unresolved for longer than this on the published version: flagged stale (computed on read).
STALE_DAYS = env_int("OBSTACLE_STALE_DAYS", obstacles.DEFAULT_STALE_DAYS)


def render(doc: dict, show_published: bool) -> goals_pb2.V2MOM:
    message = convert.v2mom_to_proto(doc, show_published)
    if show_published and doc["state"] != ARCHIVED:
        # The reader sees the published version; the draft behind it is not theirs to know about.
        message.state = goals_pb2.V2MOM_STATE_PUBLISHED
        message.revision = doc["published"]["revision"]
        message.ClearField("changes_requested_reason")
        message.ClearField("submit_time")
        message.approver_id = ""
    _mark_live_obstacles(doc, message)
    return message


def _mark_live_obstacles(doc: dict, message: goals_pb2.V2MOM) -> None:
    """Each obstacle shown gets the time its published self opened, and whether that is too long ago.

    Only the published version's obstacles are live; one shown unresolved in a draft carries the time of
    the published obstacle it came from, one resolved in the draft carries none."""
    live = {o.get("id"): o for o in ((doc.get("published") or {}).get("content") or {}).get("obstacles") or []}
    now = utc_now()
    for shown in message.content.obstacles:
        published = live.get(shown.id) or {}
        if shown.status == goals_pb2.OBSTACLE_STATUS_RESOLVED or not published.get("opened_at"):
            continue
        shown.open_time.CopyFrom(to_timestamp(published["opened_at"]))
        shown.stale = obstacles.is_stale(published, now, STALE_DAYS)


def render_for(access: Access, caller: Caller, doc: dict) -> goals_pb2.V2MOM:
    """The working copy to those who may see it, the published version to everyone else."""
    return render(doc, show_published=not access.sees_working_copy(caller, doc))


def parent_shown(access: Access, caller: Caller, doc: dict) -> str | None:
    """The parent of the version the caller is shown: a draft's re-alignment is news only to its readers."""
    if access.sees_working_copy(caller, doc):
        return doc.get("parent_id")
    return (doc.get("published") or {}).get("parent_id")
