"""Live obstacles and discussion: `v2mom obstacle`, `v2mom comment add|edit|delete`, `v2mom comments`.

Obstacles and items are named by id or by the start of their title, people by
me, @person or their id.
"""

from google.protobuf.field_mask_pb2 import FieldMask

from v2mom.v1 import goals_pb2

from . import items, refs, render
from .errors import CliError

STATUSES = {name.removeprefix("OBSTACLE_STATUS_").lower(): value
            for name, value in goals_pb2.ObstacleStatus.items() if value}
PARTS = (("value", "values", "name"), ("method", "methods", "title"), ("measure", "measures", "title"),
         ("obstacle", "obstacles", "title"))


# --- obstacles ------------------------------------------------------------------------------------


def obstacle(ctx, args) -> int:
    """Shows an obstacle of the published version, or changes its status, owner or methods (no re-approval)."""
    v2mom_id = ctx.resolve(args.v2mom)
    published = ctx.call("GetV2MOM", goals_pb2.GetV2MOMRequest(id=v2mom_id, view=goals_pb2.V2MOM_VIEW_PUBLISHED))
    found = items.pick(args.obstacle, [(o.id, o.title, o) for o in published.content.obstacles], "obstacle")
    change, paths = _obstacle_change(ctx, args, published.content)
    if paths:
        request = goals_pb2.UpdateObstacleRequest(v2mom_id=v2mom_id, obstacle_id=found.id, obstacle=change,
                                                  update_mask=FieldMask(paths=paths), reason=args.reason or "")
        shown = ctx.call("UpdateObstacle", request)
        found = next(o for o in shown.content.obstacles if o.id == found.id)
        print(f"Updated {', '.join(paths)} of obstacle {found.id}; no approval needed.")
    print(obstacle_card(found, published.content, ctx.name_of))
    return 0


def _obstacle_change(ctx, args, content) -> tuple[goals_pb2.Obstacle, list[str]]:
    change, paths = goals_pb2.Obstacle(), []
    if args.status:
        change.status = STATUSES[args.status]
        paths.append("status")
    if args.owner is not None:
        change.owner_id = "" if args.owner == "none" else _person(ctx, args.owner)
        paths.append("owner_id")
    if args.methods is not None:
        names = [name.strip() for name in args.methods.split(",") if name.strip()]
        methods = [(m.id, m.title, m.id) for m in content.methods]
        change.method_ids.extend(items.pick(name, methods, "method") for name in names)
        paths.append("method_ids")
    if args.reason and not paths:
        raise CliError("--reason goes with a change: --status, --owner or --methods", exit_code=2)
    return change, paths


def obstacle_card(found: goals_pb2.Obstacle, content, name_of) -> str:
    status = goals_pb2.ObstacleStatus.Name(found.status).removeprefix("OBSTACLE_STATUS_").lower()
    titles = {m.id: m.title for m in content.methods}
    since = f", open since {render.time_text(found.open_time)}" if found.HasField("open_time") else ""
    lines = [f"{found.title} ({found.id})", f"  status: {status}{since}{'  STALE' if found.stale else ''}",
             f"  owner: {name_of(found.owner_id) if found.owner_id else '(nobody)'}",
             "  blocks: " + ("; ".join(titles.get(m, m) for m in found.method_ids) or "(no method)")]
    return "\n".join(lines)


# --- comments -------------------------------------------------------------------------------------


def add_comment(ctx, args) -> int:
    v2mom_id = ctx.resolve(args.v2mom)
    view = goals_pb2.V2MOM_VIEW_PUBLISHED if args.published else goals_pb2.V2MOM_VIEW_UNSPECIFIED
    item_id = _item_id(ctx, v2mom_id, args.item, args.published) if args.item else ""
    request = goals_pb2.AddCommentRequest(
        v2mom_id=v2mom_id, item_id=item_id, reply_to=args.reply_to or "", text=args.text, view=view,
        mention_ids=[_person(ctx, ref) for ref in args.mention or []], request_id=ctx.idempotency_key,
    )
    added = ctx.call("AddComment", request)
    where = "the published version" if added.on_published else "the working copy (its readers only)"
    mentioned = f"; told {', '.join(map(ctx.name_of, added.mention_ids))}" if added.mention_ids else ""
    print(f"Commented {added.id} on {where}{mentioned}.")
    return 0


def edit_comment(ctx, args) -> int:
    edited = ctx.call("EditComment", goals_pb2.EditCommentRequest(id=args.comment_id, text=args.text))
    print(f"Edited {edited.id} (revision {edited.revision}); the earlier text is kept.")
    return 0


def delete_comment(ctx, args) -> int:
    deleted = ctx.call("DeleteComment", goals_pb2.DeleteCommentRequest(id=args.comment_id))
    print(f"Deleted {deleted.id}; its place in the thread stays.")
    return 0


def comments(ctx, args) -> int:
    v2mom_id = ctx.resolve(args.v2mom)
    item_id = _item_id(ctx, v2mom_id, args.item, False) if args.item else ""
    listed = refs.list_all(ctx.client, "ListComments", goals_pb2.ListCommentsRequest(v2mom_id=v2mom_id, item_id=item_id),
                           "comments")
    print(thread_text(listed, ctx.name_of) if listed else "No comments yet.")
    return 0


def thread_text(listed, name_of) -> str:
    """Threads oldest first, each reply under what it answers."""
    ids = {c.id for c in listed}
    replies: dict[str, list] = {}
    for comment in listed:
        replies.setdefault(comment.reply_to if comment.reply_to in ids else "", []).append(comment)
    return render.tree_text(replies.get("", []), lambda c: replies.get(c.id, []), lambda c: _comment_label(c, name_of))


def _comment_label(comment, name_of) -> str:
    about = f" on {comment.item_id}" if comment.item_id else ""
    draft = " (draft)" if not comment.on_published else ""
    edited = " (edited)" if comment.edits else ""
    text = "[deleted]" if comment.deleted else " ".join(comment.text.split())
    return f"{name_of(comment.author_id)}, {render.time_text(comment.create_time)}{about}{draft}{edited} [{comment.id}]: {text}"


def _item_id(ctx, v2mom_id: str, name: str, published: bool) -> str:
    view = goals_pb2.V2MOM_VIEW_PUBLISHED if published else goals_pb2.V2MOM_VIEW_UNSPECIFIED
    content = ctx.call("GetV2MOM", goals_pb2.GetV2MOMRequest(id=v2mom_id, view=view)).content
    choices = [(item.id, getattr(item, label), item.id) for _, part, label in PARTS for item in getattr(content, part)]
    return items.pick(name, choices, "value, method, measure or obstacle")


def _person(ctx, ref: str) -> str:
    return ctx.me if ref == "me" else ref.removeprefix("@")
