"""Alignment: a V2MOM may name a parent it supports, and the parents form a tree.

A parent must be one the caller can see, in the same cycle, and not archived;
re-parenting must not make the tree loop back on itself. A tree is shown at
most MAX_TREE_DEPTH levels deep, and a child the caller may not see hides
everything aligned below it. Pure rules: the store is reached through the
functions passed in.
"""

from collections.abc import Callable

from services.platform.core.errors import FailedPrecondition, FieldViolation, InvalidArgument

from .lifecycle import ARCHIVED

MAX_TREE_DEPTH = 10
MAX_PARENT_HOPS = 64  # a loop already in the store must not hang a request


def require_parent(parent_id: str, visible_parent: dict | None, cycle_id: str, field: str) -> None:
    """visible_parent: the parent if it exists and the caller may see it, else None."""
    if visible_parent is None:
        raise InvalidArgument([FieldViolation(field, f"unknown v2mom {parent_id!r}")])
    if visible_parent["cycle_id"] != cycle_id:
        raise InvalidArgument(
            [FieldViolation(field, f"parent is in cycle {visible_parent['cycle_id']}, this V2MOM in {cycle_id}")]
        )
    if visible_parent["state"] == ARCHIVED:
        raise FailedPrecondition(f"parent v2mom {parent_id!r} is archived")


def require_no_loop(child_id: str, parent_id: str, parent_of: Callable[[str], str | None], field: str) -> None:
    """Walks up from the new parent: meeting the child on the way means a loop."""
    cursor, hops = parent_id, 0
    while cursor and hops <= MAX_PARENT_HOPS:
        if cursor == child_id:
            raise InvalidArgument([FieldViolation(field, "would make the alignment tree loop back on itself")])
        cursor, hops = parent_of(cursor), hops + 1


def tree_depth(max_depth: int) -> int:
    """The depth asked for (0: the most there is); INVALID_ARGUMENT beyond it."""
    if not 0 <= max_depth <= MAX_TREE_DEPTH:
        raise InvalidArgument([FieldViolation("max_depth", f"must be between 1 and {MAX_TREE_DEPTH}")])
    return max_depth or MAX_TREE_DEPTH


def visible_children(
    root_id: str,
    depth: int,
    children_of: Callable[[list[str]], list[dict]],
    may_see: Callable[[dict], bool],
    parent_shown: Callable[[dict], str | None],
) -> dict[str, list[dict]]:
    """Each shown V2MOM's id -> its children the caller may see, level by level down to ``depth``.

    A child hangs under the parent of the version the caller is shown (``parent_shown``): a draft that
    re-aligns moves only for those who see the draft, and for everyone else at its approval.
    """
    shown: dict[str, list[dict]] = {}
    frontier, seen = [root_id], {root_id}
    for _ in range(depth):
        if not frontier:
            break
        level = set(frontier)
        children = [c for c in children_of(frontier) if c["_id"] not in seen]
        frontier = []
        for child in children:
            parent_id = parent_shown(child) if may_see(child) else None
            if parent_id not in level:
                continue  # hidden drafts (and all below them), and children shown under another parent
            seen.add(child["_id"])
            shown.setdefault(parent_id, []).append(child)
            frontier.append(child["_id"])
    return shown
