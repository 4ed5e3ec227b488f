"""Exactness: the engagement gauges recomputed independently from the source services' APIs, and the wait for a
quiet pipeline. Used by the metrics exactness test and by the replica and chaos tests (tests/scale).

The expected values are computed here, plainly, from GoalService (ListOrgUnits, ListPeople, ListV2MOMs,
GetV2MOM's published view) and CheckinService (ListCheckins, GetProgress, ListStaleItems, GetCycleSettings), read
as an admin, following the definitions in services/metrics/README.md. Nothing from services/metrics is used.
"""

import subprocess
import time
import urllib.parse
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.type import date_pb2
from prometheus_client.parser import text_string_to_metric_families

from services.goals.directory import Directory
from tests.support.metrics_service import scrape
from v2mom.v1 import checkins_pb2, common_pb2, directory_pb2, directory_pb2_grpc, goals_pb2

# The demo organisation's admin (deploy/demo/goals/org.yaml): roles are the directory's, never a token's.
DEMO_ADMIN = "kofi.mensah"

CHECKINS_WORKER_QUEUES = (
    "evt-goals-v2mom_approved--checkins_worker.on_v2mom_approved",
    "evt-checkins-checkin_recorded--checkins_worker.on_checkin_recorded",
)
QUIET_TIMEOUT = 90.0

LEVEL = {common_pb2.ORG_LEVEL_COMPANY: "company", common_pb2.ORG_LEVEL_DEPARTMENT: "department",
         common_pb2.ORG_LEVEL_TEAM: "team", common_pb2.ORG_LEVEL_INDIVIDUAL: "individual"}
STATE = {goals_pb2.V2MOM_STATE_DRAFT: "draft", goals_pb2.V2MOM_STATE_SUBMITTED: "submitted",
         goals_pb2.V2MOM_STATE_CHANGES_REQUESTED: "changes_requested",
         goals_pb2.V2MOM_STATE_PUBLISHED: "published", goals_pb2.V2MOM_STATE_ARCHIVED: "archived"}
CADENCE_DAYS = {checkins_pb2.CADENCE_WEEKLY: 7, checkins_pb2.CADENCE_BIWEEKLY: 14, checkins_pb2.CADENCE_MONTHLY: 30}
HOUR, DAY = 3600, 86400
TTA_BOUNDS = [HOUR, 4 * HOUR, DAY, 2 * DAY, 3 * DAY, 7 * DAY, 14 * DAY, 30 * DAY]  # README: 1h 4h 1d 2d 3d 7d 14d 30d

# Every engagement family the exposition has; a new one must be added here (and computed) to pass.
FAMILIES = {
    "v2mom_headcount", "v2mom_people_with_v2mom", "v2mom_creation_ratio", "v2mom_v2moms", "v2mom_submitted_v2moms",
    "v2mom_approved_v2moms", "v2mom_approval_ratio", "v2mom_pending_approvals",
    "v2mom_oldest_pending_approval_age_seconds", "v2mom_time_to_approval_seconds", "v2mom_trailing_checkins",
    "v2mom_checkins_week_to_date", "v2mom_checkins_per_member_per_week", "v2mom_published_v2moms",
    "v2mom_checked_in_v2moms", "v2mom_checkin_coverage_ratio", "v2mom_tracked_items", "v2mom_stale_items",
    "v2mom_overdue_items", "v2mom_progress_ratio", "v2mom_tree_progress_ratio", "v2mom_measures",
    "v2mom_off_track_measures", "v2mom_off_track_measures_ratio", "v2mom_open_obstacles",
    "v2mom_oldest_open_obstacle_age_seconds", "v2mom_unsupported_parent_methods",
}
AGE = "v2mom_oldest_pending_approval_age_seconds"
OBSTACLE_AGE = "v2mom_oldest_open_obstacle_age_seconds"
UNRESOLVED = (goals_pb2.OBSTACLE_STATUS_OPEN, goals_pb2.OBSTACLE_STATUS_MITIGATING)


# --- reading the sources ----------------------------------------------------------------------------------


def pages(call, request, items: str) -> list:
    found = []
    while True:
        response = call(request)
        found.extend(getattr(response, items))
        if not response.next_page_token:
            return found
        request.page_token = response.next_page_token


def when(timestamp) -> datetime | None:
    return timestamp.ToDatetime(tzinfo=UTC) if timestamp.seconds or timestamp.nanos else None


def read_sources(goals, checkins) -> dict:
    units = pages(goals.ListOrgUnits, goals_pb2.ListOrgUnitsRequest(page_size=200), "org_units")
    people = pages(goals.ListPeople, goals_pb2.ListPeopleRequest(page_size=200), "people")
    v2moms = pages(goals.ListV2MOMs, goals_pb2.ListV2MOMsRequest(page_size=200), "v2moms")
    published_content, published_parent, checkins_of, progress_of = {}, {}, {}, {}
    for v2mom in v2moms:
        if v2mom.published_revision and v2mom.state != goals_pb2.V2MOM_STATE_ARCHIVED:
            view = goals.GetV2MOM(goals_pb2.GetV2MOMRequest(id=v2mom.id, view=goals_pb2.V2MOM_VIEW_PUBLISHED))
            published_content[v2mom.id] = view.content
            published_parent[v2mom.id] = view.parent_id  # the approved parent, whatever a draft says
        checkins_of[v2mom.id] = pages(checkins.ListCheckins, checkins_pb2.ListCheckinsRequest(
            v2mom_id=v2mom.id, include_superseded=True, page_size=200), "checkins")
        try:
            progress_of[v2mom.id] = checkins.GetProgress(checkins_pb2.GetProgressRequest(v2mom_id=v2mom.id))
        except grpc.RpcError as error:
            assert error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION), error
    roots = [u.id for u in units if u.parent_id not in {other.id for other in units}]
    stale = []
    for root in roots:
        stale.extend(pages(checkins.ListStaleItems, checkins_pb2.ListStaleItemsRequest(org_unit_id=root, page_size=200),
                           "items"))
    cadence = {}
    for cycle in {v.cycle_id for v in v2moms}:
        try:
            cadence[cycle] = checkins.GetCycleSettings(checkins_pb2.GetCycleSettingsRequest(cycle_id=cycle)).cadence
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.NOT_FOUND, error
            cadence[cycle] = 0
    return {"units": units, "people": people, "v2moms": v2moms, "published_content": published_content,
            "published_parent": published_parent,
            "checkins": checkins_of, "progress": progress_of, "stale": stale, "cadence": cadence}


# --- the independent computation --------------------------------------------------------------------------


def new_counts() -> dict:
    return {"headcount": 0, "with_v2mom": 0, "states": defaultdict(int), "submitted": 0, "approved": 0,
            "pending": 0, "oldest_pending": None, "tta": [], "trailing": 0, "week": 0, "published": 0, "covered": 0,
            "items": 0, "stale": 0, "overdue": 0, "measures": 0, "off_track": 0, "progress": 0.0,
            "own_tree": 0.0, "own_v2moms": 0, "obstacles": 0, "oldest_obstacle": None}


def expected_samples(src: dict, now: datetime) -> dict:
    units = {u.id: u for u in src["units"]}
    people = {p.id: p for p in src["people"]}
    children = defaultdict(list)
    for unit in units.values():
        if unit.parent_id in units:
            children[unit.parent_id].append(unit.id)
    cycles = sorted({v.cycle_id for v in src["v2moms"]})
    direct = {(unit_id, cycle): new_counts() for unit_id in units for cycle in cycles}

    # The week (Monday 00:00 UTC) now falls in, and the four whole weeks before it.
    this_week = datetime(now.year, now.month, now.day, tzinfo=UTC) - timedelta(days=now.weekday())
    trailing_from = this_week - timedelta(weeks=4)

    for person in people.values():
        if person.active and person.org_unit_id in units:
            for cycle in cycles:
                direct[(person.org_unit_id, cycle)]["headcount"] += 1
                owns = any(v.owner_id == person.id and v.cycle_id == cycle and v.state != goals_pb2.V2MOM_STATE_ARCHIVED
                           for v in src["v2moms"])
                direct[(person.org_unit_id, cycle)]["with_v2mom"] += owns

    stale_items = {(s.v2mom_id, s.kind, s.item_id): s.staleness for s in src["stale"]}
    for v2mom in src["v2moms"]:
        # An individual V2MOM counts in its owner's current unit; a unit's V2MOM in its unit.
        owner = people.get(v2mom.owner_id)
        if v2mom.level == common_pb2.ORG_LEVEL_INDIVIDUAL and owner is not None and owner.org_unit_id:
            unit_id = owner.org_unit_id
        else:
            unit_id = v2mom.org_unit_id
        counts = direct[(unit_id, v2mom.cycle_id)]
        counts["states"][STATE[v2mom.state]] += 1
        if v2mom.state == goals_pb2.V2MOM_STATE_ARCHIVED:
            continue  # archived V2MOMs count only by state
        submitted, published = when(v2mom.submit_time), when(v2mom.publish_time)
        counts["submitted"] += submitted is not None
        counts["approved"] += published is not None
        if v2mom.state == goals_pb2.V2MOM_STATE_SUBMITTED:
            counts["pending"] += 1
            if counts["oldest_pending"] is None or submitted < counts["oldest_pending"]:
                counts["oldest_pending"] = submitted
        if submitted and published and published >= submitted:
            counts["tta"].append((published - submitted).total_seconds())
        checkins = src["checkins"][v2mom.id]
        for checkin in checkins:
            if checkin.supersedes_id:
                continue  # a correction replaces a check-in; it is not another one
            observed = when(checkin.observe_time)
            counts["trailing"] += trailing_from <= observed < this_week
            counts["week"] += this_week <= observed
        if published is None:
            continue
        counts["published"] += 1
        if checkins:
            latest = max(when(c.observe_time) for c in checkins)
            days = CADENCE_DAYS.get(src["cadence"][v2mom.cycle_id], 14)
            counts["covered"] += latest.date() >= (now - timedelta(days=days - 1)).date()
        content = src["published_content"][v2mom.id]
        tracked = ([(checkins_pb2.ITEM_KIND_MEASURE, m.id) for m in content.measures]
                   + [(checkins_pb2.ITEM_KIND_METHOD, m.id) for m in content.methods])
        counts["items"] += len(tracked)
        counts["measures"] += len(content.measures)
        for obstacle in content.obstacles:  # unresolved in the published version, since its open time
            if obstacle.status in UNRESOLVED:
                counts["obstacles"] += 1
                opened = when(obstacle.open_time) or published
                if counts["oldest_obstacle"] is None or opened < counts["oldest_obstacle"]:
                    counts["oldest_obstacle"] = opened
        levels = [stale_items.get((v2mom.id, kind, item_id)) for kind, item_id in tracked]
        counts["stale"] += levels.count(checkins_pb2.STALENESS_STALE)
        counts["overdue"] += levels.count(checkins_pb2.STALENESS_OVERDUE)
        progress = src["progress"].get(v2mom.id)
        if progress is not None:
            counts["progress"] += progress.progress_percent
            counts["off_track"] += sum(1 for item in progress.items if item.kind == checkins_pb2.ITEM_KIND_MEASURE
                                       and item.status == checkins_pb2.CHECKIN_STATUS_OFF_TRACK)
        if v2mom.level != common_pb2.ORG_LEVEL_INDIVIDUAL:
            counts["own_v2moms"] += 1
            counts["own_tree"] += progress.tree_progress_percent if progress is not None else 0.0

    def subtree_of(unit_id: str) -> list[str]:
        found, stack = [], [unit_id]
        while stack:
            found.append(stack.pop())
            stack.extend(children[found[-1]])
        return found

    samples = {}
    for cycle in cycles:
        for unit_id, unit in units.items():
            for scope in ("direct", "subtree"):
                members = [unit_id] if scope == "direct" else subtree_of(unit_id)
                parts = [direct[(m, cycle)] for m in members]
                total = lambda key: sum(p[key] for p in parts)  # noqa: E731
                labels = {"org_unit": unit_id, "org_unit_name": unit.name, "level": LEVEL.get(unit.level, "unspecified"),
                          "cycle": cycle, "scope": scope}

                def put(name, value, **extra):
                    if value is not None:
                        samples[(name, frozenset({**labels, **extra}.items()))] = float(value)

                def share(numerator, denominator):
                    return numerator / denominator if denominator else None

                headcount, submitted, published, measures = (total("headcount"), total("submitted"),
                                                             total("published"), total("measures"))
                put("v2mom_headcount", headcount)
                put("v2mom_people_with_v2mom", total("with_v2mom"))
                put("v2mom_creation_ratio", share(total("with_v2mom"), headcount))
                for state in STATE.values():
                    put("v2mom_v2moms", sum(p["states"][state] for p in parts), state=state)
                put("v2mom_submitted_v2moms", submitted)
                put("v2mom_approved_v2moms", total("approved"))
                put("v2mom_approval_ratio", share(total("approved"), submitted))
                put("v2mom_pending_approvals", total("pending"))
                oldest = [p["oldest_pending"] for p in parts if p["oldest_pending"] is not None]
                put(AGE, (now - min(oldest)).total_seconds() if oldest else 0)
                observations = [seconds for p in parts for seconds in p["tta"]]
                for bound in TTA_BOUNDS:
                    put("v2mom_time_to_approval_seconds_bucket", sum(1 for s in observations if s <= bound),
                        le=str(float(bound)))
                put("v2mom_time_to_approval_seconds_bucket", len(observations), le="+Inf")
                put("v2mom_time_to_approval_seconds_count", len(observations))
                put("v2mom_time_to_approval_seconds_sum", sum(observations))
                put("v2mom_trailing_checkins", total("trailing"))
                put("v2mom_checkins_week_to_date", total("week"))
                put("v2mom_checkins_per_member_per_week", share(total("trailing"), 4 * headcount))
                put("v2mom_published_v2moms", published)
                put("v2mom_checked_in_v2moms", total("covered"))
                put("v2mom_checkin_coverage_ratio", share(total("covered"), published))
                put("v2mom_tracked_items", total("items"))
                put("v2mom_stale_items", total("stale"))
                put("v2mom_overdue_items", total("overdue"))
                put("v2mom_progress_ratio", share(total("progress") / 100, published))
                put("v2mom_measures", measures)
                put("v2mom_off_track_measures", total("off_track"))
                put("v2mom_off_track_measures_ratio", share(total("off_track"), measures))
                put("v2mom_open_obstacles", total("obstacles"))
                opened = [p["oldest_obstacle"] for p in parts if p["oldest_obstacle"] is not None]
                put(OBSTACLE_AGE, (now - min(opened)).total_seconds() if opened else 0)
                if scope == "subtree":  # the unit's own V2MOM's tree progress
                    own = direct[(unit_id, cycle)]
                    put("v2mom_tree_progress_ratio", share(own["own_tree"] / 100, own["own_v2moms"]))
    samples.update(unsupported_parent_methods(src))
    return samples


def unsupported_parent_methods(src: dict) -> dict:
    """Methods of published company, department and team V2MOMs that no published child supports, summed per
    the V2MOM's org unit and cycle; no sample where there are none."""
    content, parent_of = src["published_content"], src["published_parent"]
    supported = defaultdict(set)
    for child_id, parent_id in parent_of.items():
        supported[parent_id].update(s for method in content[child_id].methods for s in method.supports)
    totals = defaultdict(int)
    for v2mom in src["v2moms"]:
        if v2mom.id not in content or v2mom.level == common_pb2.ORG_LEVEL_INDIVIDUAL:
            continue
        gaps = sum(1 for method in content[v2mom.id].methods if method.id not in supported[v2mom.id])
        totals[(v2mom.org_unit_id, v2mom.cycle_id)] += gaps
    return {("v2mom_unsupported_parent_methods", frozenset({"org_unit": unit, "cycle": cycle}.items())): float(count)
            for (unit, cycle), count in totals.items() if count}


# --- the scrape -------------------------------------------------------------------------------------------


def engagement(text: str) -> tuple[set[str], dict]:
    families, samples = set(), {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("v2mom_") or family.name.startswith(("v2mom_metrics_", "v2mom_cycle_")):
            continue
        families.add(family.name)
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return families, samples


def describe(key) -> str:
    name, labels = key
    return name + "{" + ",".join(f"{k}={v}" for k, v in sorted(labels)) + "}"


# --- quiet ------------------------------------------------------------------------------------------------


def outbox_pending(db) -> int:
    return sum(db[name].count_documents({"outbox_pending": True}) for name in db.list_collection_names())


def queued(amqp_uri: str) -> int:
    """Messages ready or unacknowledged in the vhost's queues, aside from dead letters and unrouted events: both
    are parked, not on their way (events only notify consumes end unrouted here, notify-worker not running)."""
    vhost = urllib.parse.unquote(urllib.parse.urlparse(amqp_uri).path.lstrip("/")) or "/"
    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "messages"], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    total = 0
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and not parts[0].endswith((".dlq", ".unrouted")):
            total += int(parts[1])
    return total


def wait_quiet(port: int, databases: list, amqp_uri: str, timeout: float = QUIET_TIMEOUT) -> str:
    """Until the outboxes and queues are empty and two consecutive scrapes are equal."""
    deadline, previous = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        busy = sum(outbox_pending(db) for db in databases) + queued(amqp_uri)
        body = scrape(port)
        current = engagement(body)[1]
        if not busy and current == previous:
            return body
        previous = None if busy else current
        time.sleep(0.5)
    pending = {f"{db.name}.{name}": db[name].count_documents({"outbox_pending": True})
               for db in databases for name in db.list_collection_names()}
    raise AssertionError(f"the pipeline never went quiet: outboxes {({k: n for k, n in pending.items() if n})}, "
                         f"{queued(amqp_uri)} messages queued, gauges still moving: {previous is None}")


# --- a scripted week on top of the demo -----------------------------------------------------------------------


def scripted_week(goals_db, goals_api, with_leaver: bool = True, with_transfer: bool = False,
                  with_planning: bool = False) -> dict:
    """A submission, an approval, a request for changes, a move, (``with_transfer``) a V2MOM transferred to
    someone in another team, (``with_planning``) a submission withdrawn and sent again, obstacles changed on
    published V2MOMs and a V2MOM copied forward into a new cycle, and (``with_leaver``) a leaver, through goals'
    own paths. ``with_transfer`` needs ``goals_api`` to be the in-process goals-api's client factory (it has
    ``port``)."""
    done = {}
    goals = goals_api(DEMO_ADMIN)
    v2moms = pages(goals.ListV2MOMs, goals_pb2.ListV2MOMsRequest(page_size=200), "v2moms")
    by_state = defaultdict(list)
    for v2mom in sorted(v2moms, key=lambda v: v.id):
        by_state[v2mom.state].append(v2mom)

    def as_(person, roles=()):
        return goals_api(person, roles)

    submitted = list(by_state[goals_pb2.V2MOM_STATE_SUBMITTED])
    if submitted:
        first = submitted.pop(0)
        as_(first.approver_id or DEMO_ADMIN).ApproveV2MOM(
            goals_pb2.ApproveV2MOMRequest(id=first.id))
        done["approved"] = first.id
    if submitted:
        second = submitted.pop(0)
        as_(second.approver_id or DEMO_ADMIN).RequestChanges(
            goals_pb2.RequestChangesRequest(id=second.id, reason="Measures need baselines"))
        done["changes_requested"] = second.id
    for v2mom in by_state[goals_pb2.V2MOM_STATE_DRAFT] + by_state[goals_pb2.V2MOM_STATE_CHANGES_REQUESTED]:
        try:
            as_(v2mom.owner_id).SubmitV2MOM(goals_pb2.SubmitV2MOMRequest(id=v2mom.id))
        except grpc.RpcError:
            continue  # lint errors block some drafts: try the next
        done["submitted"] = v2mom.id
        break
    if with_planning:
        done.update(planning_steps(goals_api, done.get("submitted"), by_state[goals_pb2.V2MOM_STATE_PUBLISHED]))

    # HR moves the owner of a checked-in individual V2MOM to another team, and someone else leaves.
    directory = Directory(goals_db, cache_seconds=0)
    teams = sorted(u["_id"] for u in goals_db.org_units.find({"level": "ORG_LEVEL_TEAM"}))
    published = [v for v in by_state[goals_pb2.V2MOM_STATE_PUBLISHED] if v.level == common_pb2.ORG_LEVEL_INDIVIDUAL]
    mover = goals_db.people.find_one({"_id": published[0].owner_id}) if published else None
    if mover is not None:
        target = next(t for t in teams if t != mover["org_unit_id"])
        directory.upsert_person({**mover, "org_unit_id": target})
        done["moved"] = (mover["_id"], mover["org_unit_id"], target)
    successor = None
    if with_transfer:
        transferred = a_transfer(goals_db, goals_api, v2moms, published[1:], {mover and mover["_id"]})
        done.update(transferred)
        successor = transferred.get("transferred", (None, None, None))[2]
    if with_leaver:
        done.update(a_leaver(goals_db, {v.owner_id for v in v2moms} - {mover and mover["_id"], successor}))
    return done


def planning_steps(goals_api, submitted_id: str | None, published: list) -> dict:
    """The submission withdrawn by its owner and sent again; the first unresolved obstacle of a published V2MOM
    resolved and the first resolved one reopened (UpdateObstacle, no re-approval); an admin opens the year after
    the last one and copies a published individual V2MOM into it (CopyV2MOM: a creation in the new cycle)."""
    done = {}
    admin = goals_api(DEMO_ADMIN)
    if submitted_id:
        owner = goals_api(admin.GetV2MOM(goals_pb2.GetV2MOMRequest(id=submitted_id)).owner_id)
        owner.WithdrawSubmission(goals_pb2.WithdrawSubmissionRequest(id=submitted_id, reason="One more measure"))
        owner.SubmitV2MOM(goals_pb2.SubmitV2MOMRequest(id=submitted_id))
        done["withdrawn"] = submitted_id
    for wanted, new_status in ((UNRESOLVED, goals_pb2.OBSTACLE_STATUS_RESOLVED),
                               ((goals_pb2.OBSTACLE_STATUS_RESOLVED,), goals_pb2.OBSTACLE_STATUS_OPEN)):
        found = next(((v, o) for v in published for o in v.content.obstacles if o.status in wanted), None)
        if found:
            v2mom, obstacle = found
            admin.UpdateObstacle(goals_pb2.UpdateObstacleRequest(
                v2mom_id=v2mom.id, obstacle_id=obstacle.id, obstacle=goals_pb2.Obstacle(status=new_status),
                update_mask={"paths": ["status"]}, reason="the week's review"))
            done.setdefault("obstacles_changed", []).append((v2mom.id, obstacle.id))
    last = max(admin.ListCycles(goals_pb2.ListCyclesRequest()).cycles, key=lambda c: (c.end_date.year,
                                                                                      c.end_date.month, c.end_date.day))
    start = datetime(last.end_date.year, last.end_date.month, last.end_date.day) + timedelta(days=1)
    new_cycle = common_pb2.Cycle(id="FYEXACT", start_date=_date(start), end_date=_date(start + timedelta(days=364)))
    admin.CreateCycle(goals_pb2.CreateCycleRequest(cycle=new_cycle))
    source = next(v for v in published if v.level == common_pb2.ORG_LEVEL_INDIVIDUAL)
    copied = admin.CopyV2MOM(goals_pb2.CopyV2MOMRequest(source_id=source.id, cycle_id=new_cycle.id))
    done["copied"] = (source.id, copied.id, new_cycle.id)
    return done


def _date(day: datetime) -> date_pb2.Date:
    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


def a_transfer(goals_db, goals_api, v2moms: list, candidates: list, busy: set) -> dict:
    """An admin transfers a published individual V2MOM (TransferV2MOM) to an active person of another team who has
    no individual V2MOM in its cycle: it must stop counting for its owner and unit and count for theirs."""
    with grpc.insecure_channel(f"127.0.0.1:{goals_api.port}") as channel:
        return _transfer_one(goals_db, directory_pb2_grpc.DirectoryServiceStub(channel),
                             goals_api(DEMO_ADMIN).metadata, v2moms, candidates, busy)


def _transfer_one(goals_db, directory, metadata, v2moms: list, candidates: list, busy: set) -> dict:
    holders = {(v.owner_id, v.cycle_id) for v in v2moms if v.level == common_pb2.ORG_LEVEL_INDIVIDUAL}
    people = list(goals_db.people.find({"active": True}, {"org_unit_id": 1}).sort("_id", 1))
    for v2mom in candidates:
        if v2mom.owner_id in busy:
            continue
        owner_unit = next((p["org_unit_id"] for p in people if p["_id"] == v2mom.owner_id), None)
        for person in people:
            if (person["_id"] in busy or person["org_unit_id"] == owner_unit
                    or (person["_id"], v2mom.cycle_id) in holders):
                continue
            try:
                directory.TransferV2MOM(directory_pb2.TransferV2MOMRequest(
                    v2mom_id=v2mom.id, successor_id=person["_id"], reason="exactness: a transfer"),
                    metadata=metadata, timeout=10)
            except grpc.RpcError:
                continue  # a successor goals refuses (a unit they cannot take): try the next
            return {"transferred": (v2mom.id, v2mom.owner_id, person["_id"])}
    return {}


def a_leaver(goals_db, owners: set[str]) -> dict:
    """HR marks one of ``owners`` (not an admin) as gone."""
    leaver = goals_db.people.find_one({"_id": {"$in": sorted(owners)}, "active": True, "roles": {"$ne": "admin"}})
    if leaver is None:
        return {}
    Directory(goals_db, cache_seconds=0).upsert_person({**leaver, "active": False})
    return {"left": leaver["_id"]}


def mismatches(expected: dict, scraped: dict) -> list[str]:
    """What a scrape has missing, extra or wrong against the recomputation (ages within a second)."""
    missing = sorted(f"{describe(k)}: missing, expected {expected[k]!r}" for k in expected.keys() - scraped.keys())
    extra = sorted(f"{describe(k)}: extra, scraped {scraped[k]!r}" for k in scraped.keys() - expected.keys())
    wrong = sorted(
        f"{describe(k)}: scraped {scraped[k]!r}, expected {expected[k]!r}" for k in expected.keys() & scraped.keys()
        if scraped[k] != pytest.approx(expected[k], rel=1e-9, abs=1.0 if k[0] in (AGE, OBSTACLE_AGE) else 1e-9)
    )
    return missing + extra + wrong
