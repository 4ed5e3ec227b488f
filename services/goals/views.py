"""What a caller is shown of a V2MOM: its working copy, or only its published version."""

from services.platform.api.auth import Caller

from . import convert
from .access import Access
from .lifecycle import ARCHIVED
from v2mom.v1 import goals_pb2


def render(doc: dict, show_published: bool) -> goals_pb2.V2MOM:
    message = convert.v2mom_to_proto(doc, show_published)
    if show_published and doc["state"] != ARCHIVED:
        # The reader sees the published version; the draft behind it is not theirs to know about.
        message.state = goals_pb2.V2MOM_STATE_PUBLISHED
        message.revision = doc["published"]["revision"]
        message.ClearField("changes_requested_reason")
        message.ClearField("submit_time")
        message.approver_id = ""
    return message


def render_for(access: Access, caller: Caller, doc: dict) -> goals_pb2.V2MOM:
    """The working copy to those who may see it, the published version to everyone else."""
    return render(doc, show_published=not access.sees_working_copy(caller, doc))


def parent_shown(access: Access, caller: Caller, doc: dict) -> str | None:
    """The parent of the version the caller is shown: a draft's re-alignment is news only to its readers."""
    if access.sees_working_copy(caller, doc):
        return doc.get("parent_id")
    return (doc.get("published") or {}).get("parent_id")
