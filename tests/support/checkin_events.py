"""Builders for the events checkins-worker consumes, and readers for what it writes.

Envelopes come out as they travel on the wire (``to_wire``: proto3 JSON
data), so in-process tests feed the handlers exactly what RabbitMQ would.
"""

import uuid
from datetime import UTC, date, datetime, timedelta

from google.type import date_pb2

from services.checkins import events as checkin_events
from services.goals import events as goals_events
from services.platform.core.errors import Unavailable
from services.platform.bus.events import to_wire
from v2mom.v1 import checkins_pb2, common_pb2, events_pb2, goals_pb2

PUBLISHED = goals_pb2.V2MOM_STATE_PUBLISHED
ARCHIVED = goals_pb2.V2MOM_STATE_ARCHIVED
MEASURE = checkins_pb2.ITEM_KIND_MEASURE
METHOD = checkins_pb2.ITEM_KIND_METHOD
ON_TRACK = checkins_pb2.CHECKIN_STATUS_ON_TRACK
OFF_TRACK = checkins_pb2.CHECKIN_STATUS_OFF_TRACK
FY2027 = (date(2026, 2, 1), date(2027, 1, 31))

# A fixed "now" inside FY2027, so weeks and cadences are predictable.
NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)  # a Wednesday


def day(iso: str) -> date_pb2.Date:
    year, month, dd = (int(part) for part in iso.split("-"))
    return date_pb2.Date(year=year, month=month, day=dd)


def content(measures=(("msr-nps", 20, 60, 75), ("msr-ttv", 30, 10, 25)), methods=("mth-guide",)) -> goals_pb2.V2MOMContent:
    """Measures as (id, baseline, target, weight); the direction follows from the numbers."""
    return goals_pb2.V2MOMContent(
        title="Ann FY27",
        measures=[
            goals_pb2.Measure(
                id=measure_id, title=f"Measure {measure_id}", baseline=baseline, target=target, weight=weight,
                direction=goals_pb2.DIRECTION_INCREASE if target >= baseline else goals_pb2.DIRECTION_DECREASE,
                owner_id="rob",
            )
            for measure_id, baseline, target, weight in measures
        ],
        methods=[
            goals_pb2.Method(id=method_id, title=f"Method {method_id}", owner_id="ann", accountable_id="ann",
                             due_date=day("2026-12-31"))
            for method_id in methods
        ],
    )


def v2mom_data(v2mom_id: str, revision: int, content_=None, parent_id: str = "", owner_id: str = "ann",
               org_unit_id: str = "onboarding", cycle_id: str = "FY2027", state=PUBLISHED,
               publish_time: datetime = NOW - timedelta(days=1)) -> events_pb2.V2MOMEventData:
    data = events_pb2.V2MOMEventData(
        v2mom_id=v2mom_id, revision=revision, owner_id=owner_id, org_unit_id=org_unit_id, cycle_id=cycle_id,
        parent_id=parent_id, state=state, content=content_ if content_ is not None else content(),
    )
    data.publish_time.FromDatetime(publish_time)
    return data


def approved(data: events_pb2.V2MOMEventData) -> dict:
    return to_wire(goals_events.v2mom_event(goals_events.V2MOM_APPROVED, data))


def archived(v2mom_id: str, revision: int, **kwargs) -> dict:
    data = v2mom_data(v2mom_id, revision, state=ARCHIVED, **kwargs)
    return to_wire(goals_events.v2mom_event(goals_events.V2MOM_ARCHIVED, data))


def cycle_changed(cycle_id: str, dates: tuple[date, date], quarters: list[tuple[date, date]]) -> dict:
    """goals' cycle_changed for a cycle with those (first, last) days and quarters."""
    def at(value: date) -> date_pb2.Date:
        return day(value.isoformat())
    cycle = common_pb2.Cycle(id=cycle_id, start_date=at(dates[0]), end_date=at(dates[1]), quarters=[
        common_pb2.Quarter(id=f"Q{n}", start_date=at(first), end_date=at(last)) for n, (first, last) in enumerate(quarters, 1)])
    data = events_pb2.CycleEventData(cycle=cycle, actor_id="kofi", revision=2)
    return to_wire(goals_events.cycle_event(goals_events.CYCLE_CHANGED, data))


def checkin_data(v2mom_id: str, item_id: str = "msr-nps", kind=MEASURE, value: float | None = 40.0,
                 progress: float = 0.0, observed: datetime = NOW - timedelta(hours=2), recorded: datetime | None = None,
                 checkin_id: str | None = None, supersedes_id: str = "", status=ON_TRACK, author_id: str = "rob",
                 cadence=checkins_pb2.CADENCE_UNSPECIFIED, cycle_id: str = "FY2027") -> events_pb2.CheckinEventData:
    checkin = checkins_pb2.Checkin(
        id=checkin_id or f"chk_{uuid.uuid4().hex[:12]}", v2mom_id=v2mom_id, item_kind=kind, item_id=item_id,
        author_id=author_id, owner_id="ann", org_unit_id="onboarding", cycle_id=cycle_id,
        progress_percent=progress, status=status, supersedes_id=supersedes_id,
        correction_reason="typo" if supersedes_id else "",
    )
    if value is not None:
        checkin.value = value
    checkin.observe_time.FromDatetime(observed)
    checkin.record_time.FromDatetime(recorded or observed)
    return events_pb2.CheckinEventData(checkin=checkin, item_title=f"Item {item_id}", cadence=cadence)


def recorded(data: events_pb2.CheckinEventData) -> dict:
    return to_wire(checkin_events.checkin_event(checkin_events.CHECKIN_RECORDED, data))


def corrected(data: events_pb2.CheckinEventData) -> dict:
    return to_wire(checkin_events.checkin_event(checkin_events.CHECKIN_CORRECTED, data))


def progress_changed(data: events_pb2.ProgressEventData) -> dict:
    return to_wire(checkin_events.progress_event(data))


def outbox(db, collection: str, event_type: str | None = None) -> list[dict]:
    """Events pending in a collection's outboxes, as they will go on the wire."""
    found = [to_wire(event) for doc in db[collection].find({}, {"outbox": 1}) for event in doc.get("outbox", [])]
    return [event for event in found if event_type is None or event["type"] == event_type]


class FakeGoals:
    """goals-api as the worker asks it: published V2MOMs and cycle dates, or down."""

    def __init__(self, v2moms: dict | None = None, cycles: dict | None = None, quarters: dict | None = None):
        self.v2moms = v2moms or {}
        self.cycles = {"FY2027": FY2027} if cycles is None else cycles
        self.quarters = quarters or {}
        self.down = False
        self.calls: list[str] = []

    def published_v2mom(self, v2mom_id: str):
        self.calls.append(f"GetV2MOM {v2mom_id}")
        if self.down:
            raise Unavailable("goals-api is unavailable")
        return self.v2moms.get(v2mom_id)

    def cycle_dates(self, cycle_id: str):
        self.calls.append(f"ListCycles {cycle_id}")
        if self.down:
            raise Unavailable("goals-api is unavailable")
        return self.cycles.get(cycle_id)

    def cycle_quarters(self, cycle_id: str):
        if self.down:
            raise Unavailable("goals-api is unavailable")
        return self.quarters.get(cycle_id, [])

    def forget_cycles(self):
        self.calls.append("forget cycles")
