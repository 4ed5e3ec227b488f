"""From the story and the published V2MOMs to dated check-ins: pure, no I/O.

Every number, author and day comes from a random generator keyed on the
story's seed and on names that are the same in every database (the V2MOM's
unit or owner, the item's title, the week), so a plan depends only on the
story, the published content and the week it is made in.

How far along an item is: its pace times the share of its time that has
passed (from the cycle's start, or a method's start date, to its due date),
plus a little weekly wobble. A pace of 1.0 is on plan; the status a check-in
reports compares the two (see `status_of`).

Weeks are whole ISO weeks before the current one: week k starts on the
Monday k weeks before this week's, and each person checks in on their own
weekday. So nothing is observed in the future, and a check-in's week (its
idempotency key names it) stays the same all week, whenever the seed runs.
"""

import hashlib
import random
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta

from v2mom.v1 import goals_pb2

from services.checkins.progress import week_start
from . import HABITS, Story, V2MOMStory

MEASURE, METHOD = "measure", "method"
ON_TRACK, AT_RISK, OFF_TRACK = "on_track", "at_risk", "off_track"
CONFIDENCE = {ON_TRACK: (7, 9), AT_RISK: (4, 6), OFF_TRACK: (2, 4)}
# Units of things counted one by one: never a fraction of one.
COUNTED = {"robots", "customers", "people", "services", "incidents", "defects", "meetings", "stops", "sites",
           "corrections", "requests/month"}


@dataclass(frozen=True)
class Item:
    """A measure or method of a published V2MOM, as the planner needs it."""

    kind: str
    id: str
    title: str
    owner: str
    start: date
    due: date
    # Measures: the scale. Methods: who else may record (Accountable, Responsible) and the milestones.
    unit: str = ""
    baseline: float = 0.0
    target: float = 0.0
    others: tuple[str, ...] = ()
    milestones: tuple[tuple[str, date, bool], ...] = ()


@dataclass(frozen=True)
class Fix:
    """A correction of the planned check-in, right after it."""

    author: str
    value: float
    reason: str
    key: str


@dataclass(frozen=True)
class Planned:
    weeks_ago: int
    v2mom_id: str
    kind: str
    item_id: str
    author: str
    observe_time: datetime
    status: str
    comment: str
    key: str
    value: float | None = None  # measures
    confidence: int | None = None  # measures
    progress: float | None = None  # methods
    milestone_ids: tuple[str, ...] = ()
    fix: Fix | None = None


# --- the plan --------------------------------------------------------------------------


def plan(story: Story, v2moms: list[tuple[V2MOMStory, goals_pb2.V2MOM]], cycle: tuple[date, date],
         now: datetime) -> list[Planned]:
    """Every check-in of the history, oldest week first, then in the story's order of V2MOMs and items.

    Week by week across all V2MOMs: the worker keeps one progress snapshot
    per week of observation, so the history must arrive in the order it happened.
    """
    planned = []
    for order, (told, v2mom) in enumerate(v2moms):
        for position, item in enumerate(items_of(v2mom, cycle)):
            timeline = Timeline(story, told, v2mom, item, cycle, now)
            planned += [(-entry.weeks_ago, order, position, entry) for entry in timeline.entries()]
    return [entry for *_, entry in sorted(planned, key=lambda row: row[:3])]


def items_of(v2mom: goals_pb2.V2MOM, cycle: tuple[date, date]) -> list[Item]:
    content, owner = v2mom.content, v2mom.owner_id
    measures = [
        Item(MEASURE, m.id, m.title, m.owner_id or owner, cycle[0], _day(m.due_date) or cycle[1],
             unit=m.unit, baseline=m.baseline, target=m.target)
        for m in content.measures
    ]
    methods = [
        Item(METHOD, m.id, m.title, m.owner_id or m.accountable_id or owner, _day(m.start_date) or cycle[0],
             _day(m.due_date) or cycle[1], others=_unique([m.accountable_id, *m.responsible_ids, owner]),
             milestones=tuple((s.id, _day(s.due_date) or cycle[1], s.done) for s in m.milestones))
        for m in content.methods
    ]
    return measures + methods


class Timeline:
    """One item's check-ins over the weeks, each knowing the one before (for "up from ...")."""

    def __init__(self, story: Story, told: V2MOMStory, v2mom: goals_pb2.V2MOM, item: Item,
                 cycle: tuple[date, date], now: datetime):
        self.story, self.told, self.v2mom, self.item, self.cycle, self.now = story, told, v2mom, item, cycle, now
        self.about = told.item(item.title)
        self.pace = self.about.pace if self.about.pace is not None else told.pace + self._rng("pace").uniform(-0.05, 0.05)

    def entries(self) -> list[Planned]:
        entries, previous = [], None
        for weeks_ago in self.weeks():
            entry = self.entry(weeks_ago, previous)
            if entry is None:
                continue
            entries.append(entry)
            previous = entry.fix.value if entry.fix else (entry.value if self.item.kind == MEASURE else entry.progress)
        return entries

    def weeks(self) -> list[int]:
        """The weeks ago this item is checked in, oldest first."""
        every = HABITS[self.told.habit][0 if self.item.kind == MEASURE else 1]
        last = self.told.stopped_weeks_ago
        due = [k for k in range(self.story.weeks, last - 1, -1) if (k - last) % every == 0]
        # Neither end is skipped: the oldest starts the trend line (an item without a check-in counts
        # as 0%), and when the newest was is the story (fresh, stale or overdue).
        ends = {due[0], due[-1]} if due else set()
        kept = [k for k in due if k in ends or self._rng("skip", k).random() >= self.told.skip]
        correction = self.about.correction
        if correction and correction.weeks_ago not in kept and last <= correction.weeks_ago <= self.story.weeks:
            kept = sorted({*kept, correction.weeks_ago}, reverse=True)
        return kept

    def entry(self, weeks_ago: int, previous: float | None) -> Planned | None:
        author = self._author(weeks_ago)
        observed = self._observe_time(weeks_ago, author)
        if not self._in_cycle(observed):
            return None
        rng = self._rng("week", weeks_ago)
        key = idempotency_key(self.v2mom.id, self.item, observed)
        if self.item.kind == MEASURE:
            return self._measure(weeks_ago, author, observed, previous, rng, key)
        return self._method(weeks_ago, author, observed, rng, key)

    # --- measures

    def _measure(self, weeks_ago, author, observed, previous, rng, key) -> Planned:
        item = self.item
        share = self._share(observed.date(), rng)
        value = rounded(item.baseline + share * (item.target - item.baseline), item)
        status = self.about.status or status_of(self._progress(value), elapsed(item.start, item.due, observed.date()))
        remark = self.about.remark or rng.choice(self.story.remarks[status])
        planned = Planned(
            weeks_ago, self.v2mom.id, MEASURE, item.id, author, observed, status,
            f"{movement(value, previous, item)}. {remark}", key, value=value, confidence=rng.randint(*CONFIDENCE[status]),
        )
        correction = self.about.correction
        if correction is None or correction.weeks_ago != weeks_ago:
            return planned
        return self._mistyped(planned, correction)

    def _mistyped(self, planned: Planned, correction) -> Planned:
        """The check-in as it was typed, carrying the correction that puts it right."""
        typed = rounded(planned.value * correction.factor, self.item)
        if typed == planned.value:
            typed = planned.value + 10 ** -decimals(self.item)  # a typo must differ from the truth
        shown = {"typed": plain(typed), "value": plain(planned.value)}
        fix = Fix(correction.by or planned.author, planned.value, correction.reason.format(**shown), f"{planned.key}.fix")
        comment = planned.comment.replace(show(planned.value, self.item), show(typed, self.item), 1)
        return replace(planned, value=typed, comment=comment, fix=fix)

    def _progress(self, value: float) -> float:
        """Share of the way from baseline to target, 0-1."""
        span = self.item.target - self.item.baseline
        return clamp((value - self.item.baseline) / span) if span else 1.0

    # --- methods

    def _method(self, weeks_ago, author, observed, rng, key) -> Planned:
        item, day = self.item, observed.date()
        progress = min(100.0, 5 * round(20 * self._share(day, rng)))  # people report methods in steps of 5%
        if self.about.stuck_at is not None:
            progress = min(progress, float(self.about.stuck_at))
        done = [milestone_id for milestone_id, due, finished in item.milestones if finished and due <= day]
        if progress >= 100:
            status, comment = ON_TRACK, rng.choice(self.story.remarks["done"])
        else:
            status = self.about.status or status_of(progress / 100, elapsed(item.start, item.due, day))
            comment = f"{progress:.0f}% done. {self.about.remark or rng.choice(self.story.remarks[status])}"
        return Planned(weeks_ago, self.v2mom.id, METHOD, item.id, author, observed, status, comment, key,
                       progress=progress, milestone_ids=tuple(done))

    # --- shared

    def _share(self, day: date, rng: random.Random) -> float:
        wobble = rng.uniform(-self.told.noise, self.told.noise)
        return clamp(self.pace * elapsed(self.item.start, self.item.due, day) + wobble)

    def _author(self, weeks_ago: int) -> str:
        """Mostly the item's owner; now and then the V2MOM's owner, or for a method an A or R person."""
        rng = self._rng("author", weeks_ago)
        if rng.random() < 0.8:
            return self.item.owner
        others = self.item.others if self.item.kind == METHOD else (self.v2mom.owner_id,)
        return rng.choice(others or (self.item.owner,))

    def _observe_time(self, weeks_ago: int, author: str) -> datetime:
        monday = week_start(self.now) - timedelta(weeks=weeks_ago)
        person = random.Random(f"{self.story.random_seed}:{author}")
        weekday, hour = person.randrange(5), person.randrange(8, 17)  # each person has their day
        minute = self._rng("minute", weeks_ago).randrange(60)
        return datetime.combine(monday, time(hour, minute), tzinfo=UTC) + timedelta(days=weekday)

    def _in_cycle(self, observed: datetime) -> bool:
        start = datetime.combine(self.cycle[0], time(), tzinfo=UTC)
        end = datetime.combine(self.cycle[1] + timedelta(days=1), time(), tzinfo=UTC)
        return start <= observed < end and observed <= self.now

    def _rng(self, *parts) -> random.Random:
        return random.Random(":".join(map(str, (self.story.random_seed, self.told.name, self.item.title, *parts))))


# --- small rules ------------------------------------------------------------------------


def elapsed(start: date, due: date, day: date) -> float:
    """Share of an item's time that has passed on `day`, 0-1."""
    length = (due - start).days
    return clamp((day - start).days / length) if length > 0 else 1.0


def status_of(progress: float, time_passed: float) -> str:
    """On track when at least 90% as far along as the time passed says it should be; at risk from 70%."""
    if time_passed <= 0:
        return ON_TRACK
    ratio = progress / time_passed
    return ON_TRACK if ratio >= 0.9 else AT_RISK if ratio >= 0.7 else OFF_TRACK


def idempotency_key(v2mom_id: str, item: Item, observed: datetime) -> str:
    """Stable per item and ISO week: a second run in the same week replays instead of recording."""
    year, week, _ = observed.isocalendar()
    digest = hashlib.sha256(f"{v2mom_id}/{item.kind}/{item.id}".encode()).hexdigest()[:16]
    return f"demo.{year}W{week:02d}.{digest}"


def decimals(item: Item) -> int:
    span = abs(item.target - item.baseline)
    if item.unit in COUNTED:
        return 0
    if item.unit == "USD M":
        return 1
    return 0 if span >= 20 else 1 if span >= 1 else 2


def rounded(value: float, item: Item) -> float:
    return round(value, decimals(item))


def plain(value: float) -> str:
    return f"{value:g}"


def show(value: float, item: Item) -> str:
    if item.unit == "%":
        return f"{plain(value)}%"
    if item.unit == "USD M":
        return f"${plain(value)}M"
    return f"{plain(value)} {item.unit}".rstrip()


def movement(value: float, previous: float | None, item: Item) -> str:
    if previous is None or previous == value:
        return show(value, item) + ("" if previous is None else ", no change")
    return f"{show(value, item)}, {'up' if value > previous else 'down'} from {show(previous, item)}"


def clamp(share: float) -> float:
    return min(1.0, max(0.0, share))


def _day(value) -> date | None:
    return date(value.year, value.month, value.day) if value.year else None


def _unique(people) -> tuple[str, ...]:
    return tuple(dict.fromkeys(person for person in people if person))
