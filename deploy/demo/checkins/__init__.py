"""The demo organisation's check-in history as data, read from history.yaml.

history.yaml says how each published V2MOM of the goals demo organisation has
been checked in on; plan.py turns that into dated check-ins, and
deploy/demo/checkins_seed.py records them through checkins-api.

    cycle: FY2027            # the cycle whose V2MOMs get a history
    weeks: 8                 # how far back it goes, in whole weeks before this one
    random_seed: 2027        # numbers, authors and days vary, but the same way every run
    admin: grace.kim         # lists the V2MOMs (an admin sees them in every state)
    remarks: {on_track: [...], at_risk: [...], off_track: [...], done: [...]}
    v2moms:
      - unit: eng-platform   # a unit's V2MOM (team, department or company), or
        owner: jonas.weber   # a person's own V2MOM; exactly one of the two
        habit: weekly        # weekly: measures every week, methods every other week;
                             # biweekly: everything every other week
        pace: 1.0            # how far along measures and methods are, against how
                             # far through their time they are (1.0 = on plan)
        noise: 0.015         # week-to-week wobble, as a share of baseline-to-target
        skip: 0.1            # chance of missing any one check-in but the last
        stopped_weeks_ago: 5 # nothing since then: the items go stale, then overdue
        items:               # by measure or method title
          Some measure:
            pace: 0.5        # this one lags
            stuck_at: 85     # methods: progress stops here (past its due date: overdue)
            status: at_risk  # instead of the status the numbers give
            remark: ...      # said in each of its comments
            correction:      # one check-in typed wrong, then corrected
              weeks_ago: 4
              factor: 0.1    # what was typed: the true value times this
              by: someone    # who corrects it (default: who typed it)
              reason: Typed {typed} instead of {value}.

history.yaml names FY2027, the cycle the goals demo files are written for.
It is read moved forward like those files (deploy/demo/calendar.py),
by the whole weeks since 2026-11-27, so the story is always told on the demo's
running cycle, under the name the goals demo gives it.
"""

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import yaml

from deploy.demo import calendar as demo_calendar

DEMO_DIR = Path(__file__).parent
HABITS = {
    # weeks between check-ins: (measures, methods)
    "weekly": (1, 2),
    "biweekly": (2, 2),
}
STATUSES = ("on_track", "at_risk", "off_track")


class StoryError(ValueError):
    """history.yaml contradicts itself; the message says where."""


@dataclass(frozen=True)
class Correction:
    weeks_ago: int
    factor: float
    reason: str
    by: str = ""


@dataclass(frozen=True)
class ItemStory:
    pace: float | None = None
    stuck_at: float | None = None
    status: str | None = None
    remark: str = ""
    correction: Correction | None = None


@dataclass(frozen=True)
class V2MOMStory:
    unit: str
    owner: str
    habit: str
    pace: float = 1.0
    noise: float = 0.015
    skip: float = 0.0
    stopped_weeks_ago: int = 1
    items: dict[str, ItemStory] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """Stable across databases (V2MOM ids are not): what the random choices are keyed on."""
        return f"unit:{self.unit}" if self.unit else f"owner:{self.owner}"

    def item(self, title: str) -> ItemStory:
        return self.items.get(title, ItemStory())


@dataclass(frozen=True)
class Story:
    cycle: str
    weeks: int
    random_seed: int
    admin: str
    remarks: dict[str, list[str]]
    v2moms: list[V2MOMStory]


def load_story(path: Path = DEMO_DIR / "history.yaml", today: date | None = None) -> Story:
    """The story, on the demo cycle running `today` (default: the UTC date)."""
    data = demo_calendar.shift(yaml.safe_load(path.read_text(encoding="utf-8")), demo_calendar.days_ahead(today))
    remarks = {key: list(data["remarks"][key]) for key in (*STATUSES, "done")}
    story = Story(
        cycle=data["cycle"], weeks=int(data["weeks"]), random_seed=int(data["random_seed"]), admin=data["admin"],
        remarks=remarks, v2moms=[_v2mom(entry, path.name) for entry in data["v2moms"]],
    )
    names = [v2mom.name for v2mom in story.v2moms]
    if len(set(names)) != len(names):
        raise StoryError(f"{path.name}: a V2MOM is described twice")
    return story


def _v2mom(entry: dict, where: str) -> V2MOMStory:
    unit, owner = entry.get("unit", ""), entry.get("owner", "")
    if bool(unit) == bool(owner):
        raise StoryError(f"{where}: each V2MOM names exactly one of unit and owner, not {entry}")
    name = unit or owner
    if entry.get("habit") not in HABITS:
        raise StoryError(f"{where}: {name}: habit must be one of {', '.join(HABITS)}")
    items = {title: _item(raw or {}, f"{where}: {name}: {title}") for title, raw in (entry.get("items") or {}).items()}
    return V2MOMStory(
        unit=unit, owner=owner, habit=entry["habit"], pace=float(entry.get("pace", 1.0)),
        noise=float(entry.get("noise", 0.015)), skip=float(entry.get("skip", 0.0)),
        stopped_weeks_ago=int(entry.get("stopped_weeks_ago", 1)), items=items,
    )


def _item(raw: dict, where: str) -> ItemStory:
    status = raw.get("status")
    if status is not None and status not in STATUSES:
        raise StoryError(f"{where}: status must be one of {', '.join(STATUSES)}")
    correction = raw.get("correction")
    return ItemStory(
        pace=raw.get("pace"), stuck_at=raw.get("stuck_at"), status=status, remark=raw.get("remark", ""),
        correction=Correction(
            weeks_ago=int(correction["weeks_ago"]), factor=float(correction["factor"]),
            reason=correction["reason"], by=correction.get("by", ""),
        ) if correction else None,
    )
