"""Obstacles as live objects: what UpdateObstacle may change, when an obstacle opened, when it is stale.

Pure rules on the stored (document) form. An obstacle is *unresolved* while
OPEN or MITIGATING. Only the published version's unresolved obstacles carry
``opened_at``: when they last became unresolved there (by an approval or an
UpdateObstacle). The working copy never carries it, so content sent back by
a client compares equal to the stored one.
"""

from datetime import datetime, timedelta

RESOLVED = "OBSTACLE_STATUS_RESOLVED"
UNRESOLVED = ("OBSTACLE_STATUS_OPEN", "OBSTACLE_STATUS_MITIGATING")
UPDATABLE = ("status", "owner_id", "method_ids")
DEFAULT_STALE_DAYS = 14


def is_unresolved(obstacle: dict) -> bool:
    return obstacle.get("status") in UNRESOLVED


def find(content: dict, obstacle_id: str) -> dict | None:
    return next((o for o in content.get("obstacles") or [] if o.get("id") == obstacle_id), None)


def stamp_opened(content: dict, before: dict | None, stamp: datetime) -> dict:
    """``content`` (to be published) with each unresolved obstacle's ``opened_at``: the time it has in
    ``before`` (the version it replaces) when unresolved there too, else ``stamp``."""
    previous = {o.get("id"): o.get("opened_at") for o in (before or {}).get("obstacles") or [] if is_unresolved(o)}
    return {**content, "obstacles": [_opened(o, previous.get(o.get("id")) or stamp) for o in content.get("obstacles") or []]}


def _opened(obstacle: dict, opened_at: datetime) -> dict:
    plain = {k: v for k, v in obstacle.items() if k != "opened_at"}
    return {**plain, "opened_at": opened_at} if is_unresolved(obstacle) else plain


def changed_paths(obstacle: dict, fields: dict) -> list[str]:
    """The fields of ``fields`` whose value differs from the obstacle's."""
    return [name for name, value in fields.items() if obstacle.get(name) != value]


def updated(content: dict, obstacle_id: str, fields: dict, stamp: datetime | None) -> dict:
    """``content`` with the obstacle changed. ``stamp``: keep ``opened_at`` (the published version) - set
    when it becomes unresolved, dropped when resolved; None for the working copy, which carries none.
    Links to methods the content does not have are dropped (a draft may have removed them)."""
    method_ids = {m.get("id") for m in content.get("methods") or []}
    obstacles = []
    for obstacle in content.get("obstacles") or []:
        if obstacle.get("id") == obstacle_id:
            new = {**obstacle, **fields}
            if "method_ids" in fields:
                new["method_ids"] = [m for m in fields["method_ids"] if m in method_ids]
            obstacle = _opened(new, obstacle.get("opened_at") or stamp) if stamp else new
        obstacles.append(obstacle)
    return {**content, "obstacles": obstacles}


def is_stale(obstacle: dict, now: datetime, stale_days: int) -> bool:
    """Unresolved for longer than ``stale_days`` since it opened on the published version."""
    opened_at = obstacle.get("opened_at")
    return bool(is_unresolved(obstacle) and opened_at and now - opened_at > timedelta(days=stale_days))


def accountable_ids(content: dict, obstacle: dict) -> list[str]:
    """The Accountable of each method the obstacle blocks, once each, in the obstacle's order."""
    accountable = {m.get("id"): m.get("accountable_id") for m in content.get("methods") or []}
    return list(dict.fromkeys(a for a in (accountable.get(m) for m in obstacle.get("method_ids") or []) if a))
