"""The `v2mom` command, run as a subprocess against a real goals-api with the demo org seeded."""

import re
import stat
from pathlib import Path

import pytest

from services.platform.api.auth import mint_dev_token
from tests.support.cli import Cli, demo_name
from tests.support.processes import free_port

EXAMPLE = Path(__file__).resolve().parents[2] / "v2mom_cli" / "examples" / "individual.yaml"
V2MOM_ID = re.compile(r"v2m_[0-9a-z]+")


@pytest.fixture
def cli(seeded_goals, tmp_path):
    return Cli(seeded_goals.address, tmp_path)


def created_id(output: str) -> str:
    match = re.search(r"Created (v2m_[0-9a-z]+)", output)
    assert match, output
    return match.group(1)


def test_a_team_member_writes_a_v2mom_and_her_manager_approves_it(cli):
    # hannah.berg is on the Platform team and has no V2MOM in the demo org yet.
    assert "Logged in as Hannah Berg (hannah.berg)" in cli.ok("login", "hannah.berg")
    assert stat.S_IMODE(cli.token_file.stat().st_mode) == 0o600

    assert "Ready to submit" in cli.ok("lint", "-f", str(EXAMPLE))
    v2mom_id = created_id(cli.ok("create", "-f", str(EXAMPLE)))
    assert "Ready to submit" in cli.ok("lint", v2mom_id)
    assert "waiting for Priya Raman (priya.raman)" in cli.ok("submit", "me")

    shown = cli.ok("show", v2mom_id)
    assert "State: SUBMITTED" in shown
    assert f"Aligned to: {demo_name('Platform FY2027')}" in shown
    # Methods in priority order, each with its RACI and dates.
    first, second = shown.index("1. Write a runbook"), shown.index("2. Turn the five most common fixes")
    assert first < second
    assert "RACI: A Priya Raman · R Hannah Berg · C Li Wei · I David Cohen" in shown
    assert "Owner: Hannah Berg · 2026-02-15 → 2026-06-30" in shown
    assert "[x] Runbook template agreed with on-call" in shown
    assert "40 → 100 % (increase) by 2026-06-30" in shown

    cli.ok("login", "priya.raman")
    assert v2mom_id in cli.ok("pending")
    assert "is published" in cli.ok("approve", "@hannah.berg", "--comment", "Looks good")
    assert "State: PUBLISHED" in cli.ok("show", v2mom_id)

    tree = cli.ok("tree", "unit:eng-platform")
    assert tree.splitlines()[0].startswith(f"{demo_name('Platform FY2027')} [PUBLISHED] · team · priya.raman")
    hers = next(line for line in tree.splitlines() if line.endswith(v2mom_id))
    assert hers.startswith(("├── ", "└── ")), "aligned directly under the team's V2MOM"
    assert "[PUBLISHED] · individual · hannah.berg" in hers
    # The demo names no supports yet: every method of the team's V2MOM is a gap, and no individual's is.
    gaps = tree[tree.index("Methods no V2MOM below supports:"):].splitlines()[1:]
    assert [line.split(":")[0].strip() for line in gaps] == [demo_name("Platform FY2027")]

    history = cli.ok("history", v2mom_id)
    assert [row.split()[3] for row in history.splitlines()[1:]] == ["CREATE", "SUBMIT", "APPROVE"]
    assert "Looks good" in history


def test_a_field_violation_is_one_clear_line_and_a_failure(cli, tmp_path):
    cli.ok("login", "tomasz.nowak")
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("accountable: priya.raman", "accountable: nobody.here", 1))

    result = cli("create", "-f", str(bad))

    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "error: INVALID_ARGUMENT: the request has 1 problem(s):"
    assert lines[1] == "  - content.methods[0].accountable_id: unknown person 'nobody.here'"
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_submit_lists_what_blocks_it(cli):
    # The demo draft of arjun.patel lacks a due date and a baseline.
    cli.ok("login", "arjun.patel")
    result = cli("submit", "me")
    assert result.returncode == 1
    assert "error: FAILED_PRECONDITION:" in result.stderr
    assert "  - content.methods[1].due_date: Method 'Train the low-light detector" in result.stderr
    assert "[method.missing_due_date]" in result.stderr
    assert "  - content.measures[0].baseline: Measure 'Person recall at 20 lux' needs a baseline." in result.stderr

    lint = cli("lint", "me")
    assert lint.returncode == 1
    assert "Not ready to submit: 2 errors" in lint.stdout


def test_editing_a_published_v2mom_opens_a_draft_behind_it(cli, tmp_path):
    cli.ok("login", "jonas.weber")
    exported = cli.ok("show", "me", "--yaml")
    assert "id: val-boring-infrastructure" in exported  # ids travel, so links survive the edit
    edited = tmp_path / "jonas.yaml"
    edited.write_text(exported.replace("by October 2026", "by November 2026"))

    refused = cli("edit", "me", "-f", str(edited))
    assert refused.returncode == 1
    assert "  - change_reason: is required once a V2MOM has been published" in refused.stderr

    output = cli.ok("edit", "me", "-f", str(edited), "--reason", "Handover moved by a month")
    assert "DRAFT (published r3)" in output
    assert "by November 2026" in cli.ok("show", "me")
    assert "by October 2026" in cli.ok("show", "me", "--published")
    assert "Nothing changed" in cli.ok("edit", "me", "-f", str(edited), "--reason", "again")


def test_directory_and_lists(cli):
    cli.ok("login", "priya.raman")
    assert "Priya Raman (priya.raman)\nEngineering Manager, Platform" in cli.ok("whoami")
    people = cli.ok("people", "--unit", "eng-platform").splitlines()
    assert len(people) == 1 + 8 and people[0].split()[:2] == ["ID", "NAME"]
    units = cli.ok("units")
    assert units.splitlines()[0].startswith("Acme Robotics (acme) · company")
    assert "│   ├── Platform (eng-platform) · team · led by priya.raman" in units

    submitted = cli.ok("list", "--unit", "eng-platform", "--state", "submitted")
    assert "li.wei" in submitted and "jonas.weber" not in submitted
    assert cli("list", "--state", "bogus").returncode == 2


def test_no_traceback_when_things_are_missing(cli, tmp_path):
    not_logged_in = cli("whoami")
    assert not_logged_in.returncode == 1
    assert not_logged_in.stderr.strip() == "error: not logged in: run `v2mom login <person-id>`"

    unreachable = cli("--addr", f"127.0.0.1:{free_port()}", "login", "hannah.berg")
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("error: cannot reach the goals API at 127.0.0.1:")

    unknown = cli("login", "no.such.person")
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("error: goals-api does not let no.such.person in: 'no.such.person' is not a "
                                     "person in the org directory")
    assert not cli.token_file.exists()

    typo = tmp_path / "typo.yaml"
    typo.write_text("level: individual\ntitel: Mine\n")
    cli.ok("login", "hannah.berg")
    result = cli("create", "-f", str(typo))
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {typo}: unknown key 'titel'")

    for result in (not_logged_in, unreachable, unknown):
        assert "Traceback" not in result.stderr


def test_login_mints_no_tokens_where_people_sign_in_at_an_identity_provider(cli, seeded_goals):
    result = cli("login", "hannah.berg", env={"OIDC_JWKS_URL": "https://idp.example/.well-known/jwks.json"})
    assert result.returncode == 2
    assert "no development tokens here" in result.stderr and "v2mom login --token" in result.stderr
    assert not cli.token_file.exists()
    # A token the provider issued is saved as it is (here one the dev stack's goals-api accepts).
    issued = mint_dev_token(seeded_goals.settings.auth, "hannah.berg")
    assert "Logged in as Hannah Berg (hannah.berg)" in cli.ok("login", "--token", issued)
    assert cli.token_file.read_text().strip() == issued
