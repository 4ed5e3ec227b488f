"""What each V2MOM and each person contributes to its org unit's aggregates.

Pure functions, no I/O: the worker (event by event) and RebuildAggregates
(from the source services' lists) both build entity states with them, so the
two cannot disagree about a definition.

The idea that keeps everything exact: an entity's *contribution* is a small
vector of numbers per target document, computed from its current state alone
(never from the clock). After each change the ledger computes the contribution
before and after, and sends only the difference as ``$inc``. Increments commute,
so aggregates are sums of contributions whatever order changes arrive in, and
moving a person or a V2MOM is just a contribution leaving one target for another.
Everything that depends on time (windows, ages) is keyed by a date or epoch in
the contribution and evaluated at read time (see ``engagement.py``).
"""

import copy
from datetime import UTC, date, datetime

# --- vocabulary ----------------------------------------------------------------------

DRAFT, SUBMITTED, CHANGES_REQUESTED, PUBLISHED, ARCHIVED = (
    "V2MOM_STATE_DRAFT",
    "V2MOM_STATE_SUBMITTED",
    "V2MOM_STATE_CHANGES_REQUESTED",
    "V2MOM_STATE_PUBLISHED",
    "V2MOM_STATE_ARCHIVED",
)
STATE_LABELS = {
    DRAFT: "draft",
    SUBMITTED: "submitted",
    CHANGES_REQUESTED: "changes_requested",
    PUBLISHED: "published",
    ARCHIVED: "archived",
}
INDIVIDUAL = "ORG_LEVEL_INDIVIDUAL"
MEASURE, METHOD = "ITEM_KIND_MEASURE", "ITEM_KIND_METHOD"
FRESH, STALE, OVERDUE = 0, 1, 2

# Time to approval, seconds: 1 h, 4 h, 1 d, 2 d, 3 d, 1 w, 2 w, 30 d (+Inf implied).
TIME_TO_APPROVAL_BUCKETS = (3600, 14400, 86400, 172800, 259200, 604800, 1209600, 2592000)
TRAILING_WEEKS = 4
CADENCE_DAYS = {"CADENCE_WEEKLY": 7, "CADENCE_BIWEEKLY": 14, "CADENCE_MONTHLY": 30}
DEFAULT_CADENCE_DAYS = 14

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def week_key(moment: datetime) -> str:
    year, week, _ = moment.astimezone(UTC).isocalendar()
    return f"{year}-W{week:02d}"


def week_start(key: str) -> date:
    year, week = key.split("-W")
    return date.fromisocalendar(int(year), int(week), 1)


def day_key(moment: datetime) -> str:
    return moment.astimezone(UTC).date().isoformat()


def tta_bucket(seconds: float) -> str:
    """The smallest bucket holding the observation (stored non-cumulative, summed at read time)."""
    for bound in TIME_TO_APPROVAL_BUCKETS:
        if seconds <= bound:
            return str(bound)
    return "inf"


def cadence_days(cadence: str | int | None) -> int:
    if isinstance(cadence, int):
        cadence = {1: "CADENCE_WEEKLY", 2: "CADENCE_BIWEEKLY", 3: "CADENCE_MONTHLY"}.get(cadence)
    return CADENCE_DAYS.get(cadence or "", DEFAULT_CADENCE_DAYS)


# --- targets -------------------------------------------------------------------------------
# Ids are [A-Za-z0-9_.-]: '|' and ':' cannot occur in them.


def aggregate_target(unit_id: str, cycle_id: str) -> str:
    return f"agg:{unit_id}|{cycle_id}"


def unit_target(unit_id: str) -> str:
    return f"unit:{unit_id}"


def person_target(person_id: str) -> str:
    return f"person:{person_id}"


def parse_target(target: str) -> tuple[str, str]:
    kind, _, key = target.partition(":")
    return kind, key


# --- contributions and their differences ------------------------------------------------

Contribution = dict[str, dict[str, float]]  # target -> field path -> value


def diff(old: Contribution, new: Contribution) -> list[tuple[str, dict[str, float]]]:
    """What to ``$inc`` on each target to turn ``old`` into ``new`` (non-zero entries only)."""
    deltas = []
    for target in sorted(old.keys() | new.keys()):
        before, after = old.get(target, {}), new.get(target, {})
        change = {path: after.get(path, 0) - before.get(path, 0) for path in sorted(before.keys() | after.keys())}
        change = {path: value for path, value in change.items() if value}
        if change:
            deltas.append((target, change))
    return deltas


def add(contribution: Contribution, target: str, values: dict[str, float]) -> None:
    slot = contribution.setdefault(target, {})
    for path, value in values.items():
        if value:
            slot[path] = slot.get(path, 0) + value


# --- V2MOM state ------------------------------------------------------------------------------
#
#   cycle_id, owner_id, org_unit_id, level     identity, from whichever event came first
#   revision, state, submit_time, publish_time lifecycle, from the newest V2MOM event (revision guard)
#   items: [{kind, id, tracked, last, ref, level}]
#       tracked: in the published content (newest approval, items_revision guard)
#       last: newest observation checked in; ref/level: newest staleness claim
#   progress: {revision, own, tree, off_track}  newest progress_changed (revision guard)
#   checkins: {week: n}  recorded check-ins by observation week; last_checkin, cadence_days
#   checkins_as_of: check-ins recorded before this were counted by a rebuild
#   obstacles: [[id, revision, opened epoch s or None]]  the published version's obstacles as last heard,
#       each from the newest event naming it (None: resolved); obstacles_revision: the newest approval's
#       revision, which names them all (an entry older than it no longer counts)


def new_v2mom() -> dict:
    return {
        "cycle_id": "", "owner_id": "", "org_unit_id": "", "level": "",
        "revision": 0, "state": None, "submit_time": None, "publish_time": None,
        "items": [], "items_revision": 0,
        "progress": {"revision": 0, "own": 0.0, "tree": 0.0, "off_track": 0},
        "checkins": {}, "last_checkin": None, "cadence_days": DEFAULT_CADENCE_DAYS, "cadence_time": None,
        "checkins_as_of": None,
        "obstacles": [], "obstacles_revision": 0,
    }


def _fill_identity(state: dict, fact: dict) -> None:
    for key in ("cycle_id", "owner_id", "org_unit_id", "level"):
        if fact.get(key) and not state.get(key):
            state[key] = fact[key]


def _item(state: dict, kind: str, item_id: str) -> dict:
    for item in state["items"]:
        if item["kind"] == kind and item["id"] == item_id:
            return item
    item = {"kind": kind, "id": item_id, "tracked": False, "last": None, "ref": None, "level": FRESH}
    state["items"].append(item)
    return item


def apply_lifecycle(state: dict, fact: dict) -> dict:
    """A V2MOM event (or a listed V2MOM). Older revisions change nothing but fill gaps."""
    state = copy.deepcopy(state)
    _fill_identity(state, fact)
    if fact["revision"] > state["revision"]:
        # Identity is fixed in goals, but the newest event is the authority on it.
        for key in ("cycle_id", "owner_id", "org_unit_id", "level"):
            state[key] = fact[key] or state[key]
        state.update(revision=fact["revision"], state=fact["state"],
                     submit_time=fact["submit_time"], publish_time=fact["publish_time"])
    published_items = fact.get("published_items")
    if published_items is not None and fact["published_revision"] > state["items_revision"]:
        _track(state, published_items)
        state["items_revision"] = fact["published_revision"]
    if fact.get("published_obstacles") is not None:
        _take_obstacles(state, fact["published_obstacles"], fact["obstacles_revision"])
    return state


def _take_obstacles(state: dict, opened: dict[str, float], revision: int) -> None:
    """A published version's unresolved obstacles (id -> opened epoch s) as of ``revision``. It names them all:
    entries older than it go; newer ones (an obstacle_changed that arrived first) stay. An older version
    than the one held changes nothing."""
    if revision <= state.get("obstacles_revision", 0):
        return
    kept = [entry for entry in state.get("obstacles", []) if entry[1] > revision]
    known = {entry[0] for entry in kept}
    state["obstacles"] = kept + [[oid, revision, at] for oid, at in sorted(opened.items()) if oid not in known]
    state["obstacles_revision"] = revision


def apply_obstacle(state: dict, fact: dict) -> dict:
    """obstacle_changed: one obstacle of the published version, opened (epoch s) or resolved (None). One the
    held approval already carries (its revision is newer), or an older change than the one held, changes nothing."""
    state = copy.deepcopy(state)
    _fill_identity(state, fact)
    entries = {entry[0]: entry for entry in state.get("obstacles", [])}
    held = entries.get(fact["obstacle_id"])
    if fact["revision"] <= state.get("obstacles_revision", 0) or (held and held[1] >= fact["revision"]):
        return state
    entries[fact["obstacle_id"]] = [fact["obstacle_id"], fact["revision"], fact["opened_at"]]
    state["obstacles"] = sorted(entries.values())
    return state


def open_obstacles(state: dict) -> list[float]:
    """When each unresolved obstacle of the published version opened (epoch s)."""
    since = state.get("obstacles_revision", 0)
    return [at for _, revision, at in state.get("obstacles", []) if at is not None and revision >= since]


def _track(state: dict, published_items: list[tuple[str, str]]) -> None:
    """Marks the published version's items as tracked.

    A returning item keeps its staleness claim: the check-ins service's clock keeps
    counting from the item's first publication, so it would claim the same again,
    and wiping it here would make the result depend on which event came first.
    """
    wanted = set(published_items)
    for item in state["items"]:
        item["tracked"] = (item["kind"], item["id"]) in wanted
    for kind, item_id in published_items:
        _item(state, kind, item_id)["tracked"] = True


def apply_checkin(state: dict, fact: dict) -> dict:
    """A check-in (recorded or corrected). Only an original, recorded check-in counts;
    every one moves the latest observation forward."""
    state = copy.deepcopy(state)
    _fill_identity(state, fact)
    observed = fact["observe_time"]
    counted_by_rebuild = state["checkins_as_of"] is not None and fact["record_time"] <= state["checkins_as_of"]
    if fact["original"] and not counted_by_rebuild:
        week = week_key(observed)
        state["checkins"][week] = state["checkins"].get(week, 0) + 1
    if state["last_checkin"] is None or observed > state["last_checkin"]:
        state["last_checkin"] = observed
    item = _item(state, fact["kind"], fact["item_id"])
    if item["last"] is None or observed > item["last"]:
        item["last"] = observed
    # The cadence of the newest check-in (ties to the longer cadence, so order never matters).
    newer = (fact["record_time"], fact.get("cadence_days", 0)) > (state["cadence_time"] or EPOCH, state["cadence_days"])
    if fact.get("cadence_days") and newer:
        state.update(cadence_days=fact["cadence_days"], cadence_time=fact["record_time"])
    return state


def apply_progress(state: dict, fact: dict) -> dict:
    state = copy.deepcopy(state)
    _fill_identity(state, fact)
    if fact["revision"] > state["progress"]["revision"]:
        state["progress"] = {key: fact[key] for key in ("revision", "own", "tree", "off_track")}
    return state


def apply_staleness(state: dict, fact: dict) -> dict:
    """A staleness claim: "item went stale (or overdue) counting from ``ref``".

    Claims form a lattice (newer ref wins, then the higher level), so any
    arrival order ends in the same state; a check-in observed after ``ref``
    refutes the claim (see ``item_staleness``).
    """
    state = copy.deepcopy(state)
    _fill_identity(state, fact)
    item = _item(state, fact["kind"], fact["item_id"])
    claim, held = (fact["ref"] or EPOCH, fact["staleness"]), (item["ref"] or EPOCH, item["level"])
    if claim > held:
        item.update(ref=fact["ref"], level=fact["staleness"])
    return state


def item_staleness(item: dict) -> int:
    if item["level"] == FRESH:
        return FRESH
    refuted = item["last"] is not None and item["last"] > (item["ref"] or EPOCH)
    return FRESH if refuted else item["level"]


def is_live(state: dict) -> bool:
    return state["state"] is not None and state["state"] != ARCHIVED


def is_published(state: dict) -> bool:
    """Has a published version people check in against, and is not archived."""
    return is_live(state) and state["publish_time"] is not None


def v2mom_contribution(state: dict, unit_id: str) -> Contribution:
    """What one V2MOM adds to its unit's aggregate for its cycle, and to its owner."""
    contribution: Contribution = {}
    if not unit_id or not state["cycle_id"]:
        return contribution
    target = aggregate_target(unit_id, state["cycle_id"])
    add(contribution, target, {f"checkins.{week}": n for week, n in state["checkins"].items()})
    if state["state"] is None:
        return contribution  # heard of only through check-ins so far
    add(contribution, target, {f"v2moms.{STATE_LABELS[state['state']]}": 1})
    if not is_live(state):
        return contribution
    if state["owner_id"]:
        add(contribution, person_target(state["owner_id"]), {f"live|{state['cycle_id']}": 1})
    add(contribution, target, _approval(state))
    if is_published(state):
        add(contribution, target, _published(state))
    return contribution


def _approval(state: dict) -> dict[str, float]:
    submitted, published = state["submit_time"], state["publish_time"]
    values = {"submitted": 1 if submitted else 0, "approved": 1 if published else 0}
    if state["state"] == SUBMITTED and submitted:
        values[f"pending.{int(submitted.timestamp())}"] = 1
    if submitted and published and published >= submitted:
        # The latest submission was approved: one observation per V2MOM.
        seconds = (published - submitted).total_seconds()
        values.update({f"tta.buckets.{tta_bucket(seconds)}": 1, "tta.sum": seconds, "tta.count": 1})
    return values


def _published(state: dict) -> dict[str, float]:
    tracked = [item for item in state["items"] if item["tracked"]]
    levels = [item_staleness(item) for item in tracked]
    progress = state["progress"]
    values = {
        "published": 1,
        "items": len(tracked),
        "stale": levels.count(STALE),
        "overdue": levels.count(OVERDUE),
        "measures": sum(1 for item in tracked if item["kind"] == MEASURE),
        "off_track": progress["off_track"],
        "progress": progress["own"],
    }
    for opened in open_obstacles(state):
        values[f"open_obstacles.{int(opened)}"] = values.get(f"open_obstacles.{int(opened)}", 0) + 1
    if state["last_checkin"] is not None:
        values[f"covered.{state['cadence_days']}.{day_key(state['last_checkin'])}"] = 1
    if state["level"] and state["level"] != INDIVIDUAL:
        # The unit's own V2MOM: its tree progress is the unit's.
        values.update({"unit_tree": progress["tree"], "unit_v2moms": 1})
    return values


def attributed_unit(state: dict, owner_unit: str | None) -> str:
    """Individual V2MOMs follow their owner's current unit; unit V2MOMs stay with their unit."""
    if state["level"] == INDIVIDUAL or not state["level"]:
        return owner_unit or state["org_unit_id"]
    return state["org_unit_id"]


# --- person state ----------------------------------------------------------------------------
#
#   revision, org_unit_id, active     from the newest person_upserted (revision guard); unit "" = unheard of
#   live: [[cycle_id, n]]             V2MOMs they own that are not archived, by cycle (from V2MOM deltas)


def new_person() -> dict:
    return {"revision": 0, "org_unit_id": "", "active": False, "live": []}


def apply_person(state: dict, fact: dict) -> dict:
    state = copy.deepcopy(state)
    if fact["revision"] > state["revision"]:
        state.update(revision=fact["revision"], org_unit_id=fact["org_unit_id"], active=fact["active"])
    return state


def apply_live_counts(state: dict, increments: dict[str, float]) -> dict:
    """V2MOM deltas for paths ``live|<cycle>``."""
    state = copy.deepcopy(state)
    live = dict(state["live"])
    for path, value in increments.items():
        cycle = path.split("|", 1)[1]
        live[cycle] = live.get(cycle, 0) + value
    state["live"] = sorted([cycle, n] for cycle, n in live.items() if n)
    return state


def person_contribution(state: dict) -> Contribution:
    contribution: Contribution = {}
    unit = state["org_unit_id"]
    if not unit or not state["active"]:
        return contribution
    add(contribution, unit_target(unit), {"members": 1})
    for cycle, n in state["live"]:
        if n > 0:
            add(contribution, aggregate_target(unit, cycle), {"with_v2mom": 1})
    return contribution

