"""Building blocks for the metrics tests: events exactly as the producers put them on the wire,
V2MOM journeys that give both their events and their final listed record, and a
CheckinService stand-in serving the same check-ins the events announce; a small org of them
(``SmallOrg``) and a bench-shaped one, applied straight to a metrics database.

Events are made with the producers' own modules (services.goals.events,
services.checkins.events) and rendered with services.platform.bus.events.to_wire,
so the metrics service is tested on the bytes it will really receive.
"""

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import grpc
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.checkins import events as checkin_events
from services.goals import events as goal_events
from services.metrics import consume, store
from services.metrics.collector import EngagementCollector
from services.platform.bus.events import envelope, to_wire
from services.platform.core.clock import to_date_proto
from v2mom.v1 import checkins_pb2, checkins_pb2_grpc, common_pb2, events_pb2, goals_pb2

# A Thursday, in ISO week 2026-W48: the trailing window is W44-W47.
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CYCLE = "FY2027"

LEVELS = {"company": 1, "department": 2, "team": 3, "individual": 4}
STATES = {"draft": 1, "submitted": 2, "changes_requested": 3, "published": 4, "archived": 5}
EVENT_OF = {
    "draft": "v2mom_created", "submitted": "v2mom_submitted", "changes_requested": "v2mom_changes_requested",
    "published": "v2mom_approved", "archived": "v2mom_archived", "edited": "v2mom_updated",
    "withdrawn": "v2mom_withdrawn",
}
_ids = itertools.count(1)


def ago(**delta) -> datetime:
    return NOW - timedelta(**delta)


def _stamp(message, field_name: str, moment: datetime | None) -> None:
    if moment is not None:
        getattr(message, field_name).FromDatetime(moment)


def at(event: dict, moment: datetime) -> dict:
    """The event as if published at ``moment`` (its CloudEvents time)."""
    return {**event, "time": moment.isoformat().replace("+00:00", "Z")}


def org_unit(unit_id, name, level, parent="", revision=1, leader="") -> dict:
    unit = common_pb2.OrgUnit(id=unit_id, name=name, level=LEVELS[level], parent_id=parent, leader_id=leader)
    return to_wire(goal_events.org_unit_event(events_pb2.OrgUnitEventData(org_unit=unit, revision=revision)))


def person(person_id, unit, active=True, revision=1, manager="") -> dict:
    data = events_pb2.PersonEventData(
        person=common_pb2.Person(id=person_id, display_name=person_id.title(), org_unit_id=unit, active=active,
                                 manager_id=manager),
        revision=revision,
    )
    return to_wire(goal_events.person_event(data))


def listed_unit(event: dict) -> common_pb2.OrgUnit:
    unit = event["data"]["orgUnit"]
    return common_pb2.OrgUnit(id=unit["id"], name=unit["name"], level=common_pb2.OrgLevel.Value(unit["level"]),
                              parent_id=unit["parentId"])


def listed_person(event: dict) -> common_pb2.Person:
    who = event["data"]["person"]
    return common_pb2.Person(id=who["id"], org_unit_id=who["orgUnitId"], active=who["active"])


@dataclass
class Journey:
    """One V2MOM's life: the events it published, and how goals lists it at the end."""

    v2mom_id: str
    owner: str
    unit: str
    level: str
    measures: tuple = ("m1",)
    methods: tuple = ("x1",)
    cycle: str = CYCLE
    events: list[dict] = field(default_factory=list)
    revision: int = 0
    state: str = ""
    submit_time: datetime | None = None
    publish_time: datetime | None = None
    published: goals_pb2.V2MOMContent | None = None

    def content(self) -> goals_pb2.V2MOMContent:
        return goals_pb2.V2MOMContent(
            title=f"{self.v2mom_id}",
            measures=[goals_pb2.Measure(id=m, title=m) for m in self.measures],
            methods=[goals_pb2.Method(id=x, title=x) for x in self.methods],
        )

    def step(self, state: str, moment: datetime) -> "Journey":
        """``state`` is the state after the step; ``edited`` edits (published -> draft)."""
        self.revision += 1
        event_type = EVENT_OF[state]
        self.state = {"edited": "draft", "withdrawn": "draft"}.get(state, state)
        if state == "submitted":
            self.submit_time = moment
        if state == "published":
            self.publish_time = moment
            self.published = self.content()
        data = events_pb2.V2MOMEventData(
            v2mom_id=self.v2mom_id, revision=self.revision, owner_id=self.owner, org_unit_id=self.unit,
            level=LEVELS[self.level], cycle_id=self.cycle, state=STATES[self.state], content=self.content(),
        )
        _stamp(data, "create_time", moment)
        _stamp(data, "submit_time", self.submit_time)
        _stamp(data, "publish_time", self.publish_time)
        self.events.append(at(to_wire(goal_events.v2mom_event(event_type, data)), moment))
        return self

    def listed(self) -> goals_pb2.V2MOM:
        message = goals_pb2.V2MOM(
            id=self.v2mom_id, revision=self.revision, owner_id=self.owner, org_unit_id=self.unit,
            level=LEVELS[self.level], cycle_id=self.cycle, state=STATES[self.state], content=self.content(),
            published_revision=self._published_revision(),
        )
        _stamp(message, "submit_time", self.submit_time)
        _stamp(message, "publish_time", self.publish_time)
        return message

    def _published_revision(self) -> int:
        revision = 0
        for number, event in enumerate(self.events, start=1):
            if event["type"] == "v2mom_approved":
                revision = number
        return revision


@dataclass
class CheckinLog:
    """Check-ins as the check-ins service holds them, and the events that announced them."""

    checkins: list[checkins_pb2.Checkin] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    progress: dict[str, checkins_pb2.Progress] = field(default_factory=dict)
    stale: dict[tuple[str, str], checkins_pb2.StaleItem] = field(default_factory=dict)
    cadence: int = checkins_pb2.CADENCE_BIWEEKLY

    def record(self, journey: Journey, item: str, observed: datetime, recorded: datetime | None = None,
               kind: int = checkins_pb2.ITEM_KIND_MEASURE, status: int = checkins_pb2.CHECKIN_STATUS_ON_TRACK,
               corrects: str = "") -> checkins_pb2.Checkin:
        checkin = checkins_pb2.Checkin(
            id=f"chk_{next(_ids):05d}", v2mom_id=journey.v2mom_id, item_kind=kind, item_id=item,
            author_id=journey.owner, owner_id=journey.owner, org_unit_id=journey.unit, cycle_id=journey.cycle,
            status=status, progress_percent=50.0, supersedes_id=corrects,
        )
        _stamp(checkin, "observe_time", observed)
        _stamp(checkin, "record_time", recorded or observed)
        if corrects:
            original = next(c for c in self.checkins if c.id == corrects)
            original.superseded_by_id = checkin.id
        self.checkins.append(checkin)
        event_type = "checkin_corrected" if corrects else "checkin_recorded"
        data = events_pb2.CheckinEventData(checkin=checkin, cadence=self.cadence)
        self.events.append(at(to_wire(checkin_events.checkin_event(event_type, data)), recorded or observed))
        return checkin

    def set_progress(self, journey: Journey, revision: int, own: float, tree: float, off_track: int = 0) -> dict:
        measures = len(journey.measures)
        progress = checkins_pb2.Progress(
            v2mom_id=journey.v2mom_id, owner_id=journey.owner, org_unit_id=journey.unit, cycle_id=journey.cycle,
            progress_percent=own, tree_progress_percent=tree,
            items=[checkins_pb2.ItemProgress(
                kind=checkins_pb2.ITEM_KIND_MEASURE, item_id=m,
                status=checkins_pb2.CHECKIN_STATUS_OFF_TRACK if i < off_track else checkins_pb2.CHECKIN_STATUS_ON_TRACK,
            ) for i, m in enumerate(journey.measures)],
        )
        self.progress[journey.v2mom_id] = progress
        data = events_pb2.ProgressEventData(
            v2mom_id=journey.v2mom_id, owner_id=journey.owner, org_unit_id=journey.unit, cycle_id=journey.cycle,
            progress_percent=own, tree_progress_percent=tree, revision=revision, cause="checkin",
            off_track_measures=off_track, measures=measures,
        )
        event = to_wire(checkin_events.progress_event(data))
        self.events.append(event)
        return event

    def go_stale(self, journey: Journey, item: str, last_checkin: datetime | None, overdue: bool = False,
                 kind: int = checkins_pb2.ITEM_KIND_MEASURE) -> dict:
        stale = checkins_pb2.StaleItem(
            v2mom_id=journey.v2mom_id, kind=kind, item_id=item, title=item, owner_id=journey.owner,
            org_unit_id=journey.unit, cycle_id=journey.cycle,
            staleness=checkins_pb2.STALENESS_OVERDUE if overdue else checkins_pb2.STALENESS_STALE,
        )
        _stamp(stale, "last_checkin_time", last_checkin)
        self.stale[(journey.v2mom_id, item)] = stale
        event_type = "item_overdue" if overdue else "item_became_stale"
        data = events_pb2.ItemStalenessEventData(item=stale, cadence=self.cadence, v2mom_owner_id=journey.owner)
        event = to_wire(checkin_events.staleness_event(event_type, data))
        self.events.append(event)
        return event

    def freshen(self, journey: Journey, item: str) -> None:
        """A check-in after the item went stale: the check-ins service no longer lists it."""
        self.stale.pop((journey.v2mom_id, item), None)


def raw_event(source: str, event_type: str, data: dict) -> dict:
    """An envelope carrying whatever ``data`` it is given: for malformed payloads."""
    return envelope(source, event_type, subject="bad", data=data)


# --- sources for RebuildAggregates ----------------------------------------------------------------


class FakeGoals:
    """GoalsSource's interface over listed records (unit tests; the API test uses a real goals-api)."""

    def __init__(self, units, people, journeys, cycles=()):
        self._units, self._people, self._journeys, self._cycles = units, people, journeys, cycles

    def cycles(self):
        return iter(self._cycles)

    def org_units(self):
        return iter(self._units)

    def people(self):
        return iter(self._people)

    def v2moms(self):
        return (journey.listed() for journey in self._journeys)

    def published_content(self, v2mom):
        return next(j for j in self._journeys if j.v2mom_id == v2mom.id).published

    def close(self):
        pass


class CheckinStore:
    """What both the fake CheckinService server and the in-process source answer from."""

    def __init__(self, log: CheckinLog):
        self.log = log

    def checkins(self, v2mom_id: str, include_superseded: bool = True):
        return [c for c in self.log.checkins if c.v2mom_id == v2mom_id and (include_superseded or not c.superseded_by_id)]

    def progress(self, v2mom_id: str):
        return self.log.progress.get(v2mom_id)

    def stale_items(self, org_unit_id: str):
        return list(self.log.stale.values())

    def cadence(self, cycle_id: str) -> int:
        return self.log.cadence

    def close(self):
        pass


class FakeCheckinService(checkins_pb2_grpc.CheckinServiceServicer):
    """The CheckinService contract (protos/v2mom/v1/checkins.proto), answered from a CheckinStore."""

    def __init__(self, store: CheckinStore):
        self.store = store

    def ListCheckins(self, request, context):
        rows = self.store.checkins(request.v2mom_id, request.include_superseded)
        rows.sort(key=lambda c: (c.observe_time.ToDatetime(), c.record_time.ToDatetime()), reverse=True)
        start = int(request.page_token or 0)
        size = request.page_size or 50
        page = rows[start:start + size]
        token = str(start + size) if start + size < len(rows) else ""
        return checkins_pb2.ListCheckinsResponse(checkins=page, next_page_token=token)

    def GetProgress(self, request, context):
        progress = self.store.progress(request.v2mom_id)
        if progress is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no progress for {request.v2mom_id}")
        return progress

    def ListStaleItems(self, request, context):
        return checkins_pb2.ListStaleItemsResponse(items=self.store.stale_items(request.org_unit_id))

    def GetCycleSettings(self, request, context):
        return checkins_pb2.CycleSettings(cycle_id=request.cycle_id, cadence=self.store.cadence(request.cycle_id))


# --- a small org, applied to a metrics database -----------------------------------------------------


class SmallOrg:
    def __init__(self):
        self.units = [
            org_unit("acme", "Acme", "company"),
            org_unit("eng", "Engineering", "department", parent="acme"),
            org_unit("platform", "Platform", "team", parent="eng"),
            org_unit("sales", "Sales", "team", parent="acme"),
        ]
        self.people = [
            person("ceo", "acme"), person("vp", "eng"), person("ann", "platform"), person("bob", "platform"),
            person("cat", "platform", active=False), person("dan", "sales"), person("eve", "sales"),
        ]
        self.acme = (Journey("v-acme", "ceo", "acme", "company", measures=("m1",), methods=("x1",))
                     .step("draft", ago(days=12)).step("submitted", ago(days=10)).step("published", ago(days=9)))
        self.ann = (Journey("v-ann", "ann", "platform", "individual", measures=("ma", "mb"), methods=("xa",))
                    .step("draft", ago(days=40)).step("submitted", ago(days=39))
                    .step("published", ago(days=39) + timedelta(hours=2)))
        self.bob = Journey("v-bob", "bob", "platform", "individual").step("draft", ago(days=4)).step("submitted", ago(days=3))
        self.dan = Journey("v-dan", "dan", "sales", "individual").step("draft", ago(days=2))
        self.eve = Journey("v-eve", "eve", "sales", "individual").step("draft", ago(days=7)).step("archived", ago(days=6))
        self.vp = (Journey("v-vp", "vp", "eng", "department").step("draft", ago(days=4))
                   .step("submitted", ago(days=2)).step("changes_requested", ago(days=1)))
        self.journeys = [self.acme, self.ann, self.bob, self.dan, self.eve, self.vp]
        self.log = CheckinLog()
        log, ann, acme = self.log, self.ann, self.acme
        log.record(ann, "ma", ago(days=36))                 # W43: outside the window
        log.record(ann, "ma", ago(days=29))                 # W44
        log.record(acme, "m1", ago(days=20))                # W45
        log.record(ann, "mb", ago(days=20))                 # W45
        log.set_progress(ann, 1, own=10, tree=10)
        log.record(ann, "ma", ago(days=15))                 # W46
        second = log.record(ann, "ma", ago(days=8))         # W47
        log.record(ann, "ma", ago(days=8), recorded=ago(days=7), corrects=second.id)  # counts no more
        log.go_stale(acme, "m1", last_checkin=ago(days=20))
        log.go_stale(acme, "x1", last_checkin=None, overdue=True, kind=checkins_pb2.ITEM_KIND_METHOD)
        log.go_stale(ann, "mb", last_checkin=ago(days=20))
        log.go_stale(ann, "xa", last_checkin=None, overdue=True, kind=checkins_pb2.ITEM_KIND_METHOD)
        log.set_progress(acme, 2, own=20, tree=30)
        log.record(ann, "ma", ago(days=1))                  # W48: this week
        log.record(ann, "mb", ago(hours=5))                 # W48, and mb is fresh again
        log.freshen(ann, "mb")
        log.set_progress(ann, 3, own=50, tree=50, off_track=1)

    def events(self) -> list[dict]:
        lifecycle = [event for journey in self.journeys for event in journey.events]
        return self.units + self.people + lifecycle + self.log.events

    def goals_source(self) -> FakeGoals:
        return FakeGoals([listed_unit(u) for u in self.units], [listed_person(p) for p in self.people], self.journeys)


def apply_all(db, events):
    for event in events:
        consume.apply(db, event["source"].rsplit("/", 1)[1], event)


def scrape(db, now=NOW) -> dict:
    """{(name, frozenset(labels)): value} from a registry of the test's own."""
    registry = CollectorRegistry()
    registry.register(EngagementCollector(db, clock=lambda: now))
    samples = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def bench_shaped_org(db, n_units: int = 120) -> None:
    """Units and aggregates as bench/metrics.py loads them: departments of teams, every counter set."""
    from bench.metrics import aggregate_document, org, unit_document

    units = org(n_units)
    db[store.UNITS].insert_many([unit_document(unit, False) for unit in units])
    db[store.AGGREGATES].insert_many([aggregate_document(unit[0], NOW, False) for unit in units])


def value(samples, name, unit, scope="direct", **labels):
    """A gauge's value for one unit of the SmallOrg (acme, eng, platform, sales) in CYCLE, or None."""
    names = {"acme": "Acme", "eng": "Engineering", "platform": "Platform", "sales": "Sales"}
    levels = {"acme": "company", "eng": "department", "platform": "team", "sales": "team"}
    key = {"org_unit": unit, "org_unit_name": names[unit], "level": levels[unit], "cycle": CYCLE, "scope": scope, **labels}
    return samples.get((name, frozenset(key.items())))


# --- quarters (issue 14): FY2027 cut into quarters, and a team whose last check-in falls in Q3 ---------------

# FY2027 as four quarters; Q4 starts two days before NOW (Thursday 26 November 2026).
QUARTERS = (("2026-02-01", "2026-04-30"), ("2026-05-01", "2026-07-31"), ("2026-08-01", "2026-11-23"),
            ("2026-11-24", "2027-01-31"))


def listed_cycle(quarters=QUARTERS) -> common_pb2.Cycle:
    return common_pb2.Cycle(id=CYCLE, start_date=to_date_proto("2026-02-01"), end_date=to_date_proto("2027-01-31"),
                            quarters=[common_pb2.Quarter(id=f"Q{n}", start_date=to_date_proto(first),
                                                         end_date=to_date_proto(last))
                                      for n, (first, last) in enumerate(quarters, start=1)])


def cycle_event(quarters=QUARTERS, revision=1, event_type=goal_events.CYCLE_CHANGED) -> dict:
    return to_wire(goal_events.cycle_event(event_type, events_pb2.CycleEventData(
        cycle=listed_cycle(quarters), actor_id="admin", revision=revision)))


def quarter_team() -> tuple[list[dict], CheckinLog, Journey]:
    """Ann's V2MOM on the platform team, published long ago, last checked in three days ago: in Q3."""
    ann = (Journey("v-ann", "ann", "platform", "individual").step("draft", ago(days=40))
           .step("submitted", ago(days=39)).step("published", ago(days=38)))
    log = CheckinLog()
    log.record(ann, "m1", ago(days=3))
    events = [org_unit("acme", "Acme", "company"), org_unit("platform", "Platform", "team", parent="acme"),
              person("ann", "platform"), *ann.events, *log.events]
    return events, log, ann


def coverage(db, now=NOW) -> tuple:
    s = scrape(db, now)
    return value(s, "v2mom_checked_in_v2moms", "platform"), value(s, "v2mom_checkin_coverage_ratio", "platform")
