"""The demo keeps the moment it was written in: 2026-11-27, ten months into FY2027.

Pure: every test pins `today`. The demo files are written for FY2027
(2026-02-01..2027-01-31); the loaders move every date on by the whole weeks
since 2026-11-27, and rename the fiscal years after the calendar year the
moved FY2027 ends in. The goals and check-ins demos must agree on what they read.
"""

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
import yaml

from deploy.demo.checkins import load_story
from deploy.demo.goals import load_org, load_plans
from deploy.demo import calendar as demo_calendar
from deploy.demo.calendar import current_cycle, days_ahead, label_years, rename_labels, shift

AS_WRITTEN = date(2026, 11, 27)  # a Friday: the demo exactly as its files say
FY2027_END = date(2027, 1, 31)
A_YEAR_ON = date(2027, 11, 27)  # 52 weeks on: the moved FY2027 ends on 2028-01-30, so it is called FY2028


# --- how far, and which cycle ------------------------------------------------------------------


@pytest.mark.parametrize(("today", "days", "cycle"), [
    (date(2025, 6, 1), 0, "FY2027"),  # before the demo was written: no going back
    (AS_WRITTEN, 0, "FY2027"),
    (date(2026, 11, 28), 0, "FY2027"),
    (date(2026, 12, 3), 0, "FY2027"),  # six days on: still the week it was written in
    (date(2026, 12, 4), 7, "FY2027"),  # seven: a week on
    (date(2027, 2, 10), 70, "FY2027"),  # FY2027 as written is over; moved on ten weeks it ends on 2027-04-11
    (date(2027, 3, 1), 91, "FY2027"),
    (date(2027, 10, 28), 329, "FY2027"),  # its moved end: 2027-12-26
    (date(2027, 10, 29), 336, "FY2028"),  # its moved end: 2028-01-02
    (A_YEAR_ON, 364, "FY2028"),
    (date(2028, 6, 15), 560, "FY2028"),
    (date(2028, 11, 2), 700, "FY2028"),  # its moved end: 2028-12-31
    (date(2028, 11, 3), 707, "FY2029"),
    (date(2028, 11, 27), 728, "FY2029"),  # two years on, less the days that whole weeks leave out
])
def test_the_demo_moves_by_whole_weeks_and_is_named_after_the_year_fy2027_ends_in(today, days, cycle):
    assert days_ahead(today) == days and days % 7 == 0
    assert current_cycle(today) == cycle == f"FY{(FY2027_END + timedelta(days=days)).year}"
    if today >= AS_WRITTEN:
        moment = today - timedelta(days=days)  # today, as the demo files see it
        assert AS_WRITTEN <= moment <= date(2026, 12, 3) and moment.weekday() == today.weekday()


def test_the_names_change_exactly_when_the_moved_fy2027_ends_in_a_new_year():
    changes = []
    for week in range(1, 52 * 6):
        before, after = (current_cycle(AS_WRITTEN + timedelta(weeks=n)) for n in (week - 1, week))
        if before != after:
            changes.append((week, after))
            assert int(after[2:]) == int(before[2:]) + 1, "one year at a time"
        ends = [FY2027_END + timedelta(weeks=n) for n in (week - 1, week)]
        assert (before != after) == (ends[0].year != ends[1].year)
    assert changes[:2] == [(48, "FY2028"), (101, "FY2029")]  # the weeks of 2027-10-29 and 2028-11-03
    assert [label_years(days) for days in (0, 329, 336, 700, 707)] == [0, 0, 1, 1, 2]


def test_today_defaults_to_the_utc_date(monkeypatch):
    monkeypatch.setattr(demo_calendar, "utc_today", lambda: A_YEAR_ON)
    assert (days_ahead(), current_cycle()) == (364, "FY2028")
    assert load_org().days_ahead == 364 and load_story().cycle == "FY2028"


# --- moving dates and labels -------------------------------------------------------------------


@pytest.mark.parametrize(("text", "renamed"), [
    ("Engineering FY2027", "Engineering FY2028"),
    ("fy27-eng-platform", "fy28-eng-platform"),
    ("fy26-company", "fy27-company"),
    ("FY26 and FY27", "FY27 and FY28"),
    # One pass: FY2026 becomes FY2027 and is not then moved again as if it had been FY2027.
    ("FY2026 closed; see the FY2027 Engineering V2MOM.", "FY2027 closed; see the FY2028 Engineering V2MOM."),
    ("FY2099", "FY2100"),
    ("fy99-x", "fy00-x"),
    # Not labels: a bare year, part of a word, too few or too many digits.
    ("Due 2027, 30 September 2026", "Due 2027, 30 September 2026"),
    ("AFY27 FY202 FY20271", "AFY27 FY202 FY20271"),
])
def test_fiscal_year_labels_move_with_the_dates(text, renamed):
    assert rename_labels(text, 1) == renamed


def test_a_document_is_moved_everywhere_but_numbers_stay():
    document = {
        "cycle": "FY2027", "random_seed": 2027, "weeks": 8, "done": True, "pace": 0.5,
        "fy27-key": [{"due": date(2026, 6, 30), "at": datetime(2026, 6, 1, 12, tzinfo=UTC)}, "fy26-company"],
    }
    assert shift(document, 364) == {
        "cycle": "FY2028", "random_seed": 2027, "weeks": 8, "done": True, "pace": 0.5,
        "fy28-key": [{"due": date(2027, 6, 29), "at": datetime(2027, 5, 31, 12, tzinfo=UTC)}, "fy27-company"],
    }
    assert document["cycle"] == "FY2027", "the document read is left as it was"
    assert shift(document, 0) is document
    # A few weeks on, FY2027 still ends in 2027 (on 2027-02-28): the dates move, the names stay.
    moment = datetime(2026, 6, 1, 9, 30, tzinfo=timezone(timedelta(hours=2)))
    assert shift({"fy27-key": {"due": date(2026, 2, 28), "at": moment}}, 28) == {
        "fy27-key": {"due": date(2026, 3, 28), "at": datetime(2026, 6, 29, 9, 30, tzinfo=timezone(timedelta(hours=2)))}}


# --- the demo as the loaders read it --------------------------------------------------------------


@pytest.mark.parametrize("today", [AS_WRITTEN, date(2026, 12, 3)])
def test_in_the_week_it_was_written_the_demo_is_read_exactly_as_its_files_say(today):
    org = load_org(today=today)
    assert org.days_ahead == 0
    assert org.cycles == [
        {"id": "FY2026", "start": "2025-02-01", "end": "2026-01-31"},
        {"id": "FY2027", "start": "2026-02-01", "end": "2027-01-31"},
    ]
    for plan in load_plans(org):
        raw = yaml.safe_load(plan.path.read_text(encoding="utf-8"))
        assert raw.pop("seed")["key"] == plan.key
        assert plan.document == raw, plan.path.name
    assert load_story(today=today).cycle == "FY2027"


def test_a_year_on_the_demo_is_52_weeks_later_and_fy2027_is_called_fy2028():
    org = load_org(today=A_YEAR_ON)
    assert org.days_ahead == 364
    assert org.cycles == [
        {"id": "FY2027", "start": "2026-01-31", "end": "2027-01-30"},
        {"id": "FY2028", "start": "2027-01-31", "end": "2028-01-30"},
    ]
    plans = {plan.key: plan for plan in load_plans(org)}
    eng = plans["fy28-eng"]
    assert (eng.parent_key, eng.document["cycle"], eng.document["title"]) == ("fy28-company", "FY2028", "Engineering FY2028")
    assert eng.document["methods"][0]["start"] == date(2027, 1, 31)  # 2026-02-01, a Sunday, 52 weeks on
    assert plans["fy27-eng"].document["title"] == "Engineering FY2027"  # written as FY2026: now last year's
    assert plans["fy27-eng"].journey[-1].text == "FY2027 closed; see the FY2028 Engineering V2MOM."


@pytest.mark.parametrize("today", [
    AS_WRITTEN, date(2026, 12, 4), date(2027, 2, 10), date(2027, 3, 1), date(2027, 10, 28), date(2027, 10, 29),
    date(2028, 2, 29), date(2028, 6, 15), date(2028, 11, 2), date(2031, 7, 4),
])
def test_the_loaders_agree_whatever_the_day(today):
    org = load_org(today=today)
    days = org.days_ahead
    cycles = {c["id"]: (date.fromisoformat(c["start"]), date.fromisoformat(c["end"])) for c in org.cycles}
    last_year, running = (c["id"] for c in org.cycles)
    start, end = cycles[running]
    assert running == current_cycle(today) and cycles[last_year][1] + timedelta(days=1) == start, "no gap"
    assert (start, end) == (date(2026, 2, 1) + timedelta(days=days), FY2027_END + timedelta(days=days))
    story = load_story(today=today)
    monday = today - timedelta(days=today.weekday())
    assert start <= monday - timedelta(weeks=story.weeks) and today <= end, "the whole history fits in the cycle"

    plans = load_plans(org)  # raises if a parent key does not resolve
    as_written = {rename_labels(plan.key, label_years(days)): plan for plan in load_plans(load_org(today=AS_WRITTEN))}
    assert len(plans) == 22 and {plan.key for plan in plans} == set(as_written)
    for plan in plans:
        assert plan.document["cycle"] in cycles and plan.key.startswith(f"fy{plan.document['cycle'][-2:]}-")
        first, last = cycles[plan.document["cycle"]]
        moved = [day + timedelta(days=days) for day in _dates(as_written[plan.key].document)]
        assert list(_dates(plan.document)) == moved and all(first <= day <= last for day in moved), plan.key
        assert all(first <= day <= last for step in plan.journey for day in _dates(step.changes)), plan.key

    assert story.cycle == running
    published = [plan for plan in plans if plan.document["cycle"] == running
                 and "APPROVE" in plan.actions and "ARCHIVE" not in plan.actions]
    for told in story.v2moms:
        assert any(_tells_of(told, plan) for plan in published), f"{told.name} has no published {running} V2MOM"


def test_plans_follow_their_org_even_when_read_after_midnight(monkeypatch):
    org = load_org(today=date(2027, 10, 28))  # the last day the moved FY2027 is still called FY2027
    monkeypatch.setattr(demo_calendar, "utc_today", lambda: date(2027, 10, 29))  # a week on, and FY2028
    cycles = {c["id"]: c for c in org.cycles}
    assert set(cycles) == {"FY2026", "FY2027"}
    for plan in load_plans(org):
        cycle = cycles[plan.document["cycle"]]
        assert all(cycle["start"] <= day.isoformat() <= cycle["end"] for day in _dates(plan.document)), plan.key


def _tells_of(told, plan) -> bool:
    if told.owner:
        return plan.is_individual and plan.owner == told.owner
    return not plan.is_individual and plan.document["org_unit"] == told.unit


def _dates(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _dates(item)
    elif isinstance(value, list):
        for item in value:
            yield from _dates(item)
    elif isinstance(value, date):
        yield value
