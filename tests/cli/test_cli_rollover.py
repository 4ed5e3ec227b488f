"""`v2mom cycles` and `copy`: an admin rolls the demo's year over as the README walks through it, as subprocesses
against a real goals-api with the demo org seeded. A module of its own: closing the year changes the whole
seeded organisation (seeded_goals is per module)."""

import re
from datetime import date, timedelta

import pytest

from tests.support.cli import Cli, demo_name


@pytest.fixture
def cli(seeded_goals, tmp_path):
    return Cli(seeded_goals.address, tmp_path)


def copied_id(output: str) -> str:
    match = re.search(r"as draft (v2m_[0-9a-z]+)", output)
    assert match, output
    return match.group(1)


def test_an_admin_rolls_the_year_over_and_leaders_copy_their_v2moms_forward(cli, seeded_goals):
    running = demo_name("FY2027")
    stored = seeded_goals.db.cycles.find_one({"_id": running})
    start = date.fromisoformat(stored["end_date"]) + timedelta(days=1)
    end = date(start.year + 1, start.month, 1) - timedelta(days=1)
    following = "FYNEXT"

    cli.ok("login", "kofi.mensah")
    assert f"{running}" in cli.ok("cycles") and "(current)" in cli.ok("cycles")
    created = cli.ok("cycles", "create", following, "--start", start.isoformat(), "--end", end.isoformat(), "--quarters")
    assert "quarters: Q1, Q2, Q3, Q4" in created
    assert cli.ok("cycles", "current").startswith(f"{running}: ")  # today is still in the running year
    assert "quarters" not in cli.ok("cycles", "update", following, "--no-quarters")
    again = cli.ok("cycles", "update", following, "--quarters")
    assert again.startswith(f"Updated {following}") and "quarters: Q1, Q2, Q3, Q4" in again
    stored = seeded_goals.db.cycles.find_one({"_id": following})
    assert [q["id"] for q in stored["quarters"]] == ["Q1", "Q2", "Q3", "Q4"]
    assert stored["quarters"][0]["start_date"] == start.isoformat() and stored["quarters"][-1]["end_date"] == end.isoformat()

    company = copied_id(cli.ok("copy", f"unit:acme/{running}", "--to", following, "--no-baselines"))
    engineering = cli.ok("copy", f"unit:eng/{running}", "--to", following, "--no-baselines")
    assert f"aligned to {company}" in engineering
    platform = cli.ok("copy", f"unit:eng-platform/{running}", "--to", following, "--no-baselines",
                      "--omit", "obstacles")
    assert f"aligned to {copied_id(engineering)}" in platform and " 0 obstacles" in platform
    shown = cli.ok("show", copied_id(platform))
    assert "State: DRAFT" in shown

    refused = cli("copy", f"unit:eng-platform/{running}", "--to", following, "--no-baselines", "--omit", "vision")
    assert refused.returncode != 0 and "--omit takes" in refused.stderr

    closed = cli.ok("cycles", "close", running, "--next", following, "--reason", f"{running} is over")
    assert re.search(r"Closed \S+: [1-9][0-9]* V2MOM\(s\) still in progress archived", closed), closed
    assert f"closed, then {following}" in cli.ok("cycles")
