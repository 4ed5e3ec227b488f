"""`v2mom templates` and `withdraw`, run as subprocesses against a real goals-api with the demo org seeded."""

from pathlib import Path

import pytest

from tests.support.cli import Cli, demo_name

EXAMPLE = Path(__file__).resolve().parents[2] / "v2mom_cli" / "examples" / "individual.yaml"


@pytest.fixture
def cli(seeded_goals, tmp_path):
    return Cli(seeded_goals.address, tmp_path)


def test_an_owner_withdraws_her_submission(cli):
    cli.ok("login", "hannah.berg")
    cli.ok("create", "-f", str(EXAMPLE))
    cli.ok("submit", "me")
    assert "draft again" in cli.ok("withdraw", "me", "--reason", "One more measure")
    again = cli("withdraw", "me")
    assert again.returncode != 0 and "only SUBMITTED" in again.stderr


def test_admins_keep_templates_and_anyone_starts_from_one(cli):
    cli.ok("login", "kofi.mensah")
    assert "Saved template tpl-cli" in cli.ok("templates", "save", "tpl-cli", "-f", str(EXAMPLE), "--name", "One year")
    assert "tpl-cli" in cli.ok("templates", "--level", "individual")
    cli.ok("login", "li.wei")
    refused = cli("templates", "delete", "tpl-cli")
    assert refused.returncode != 0 and "admins" in refused.stderr
    assert "Vision:" in cli.ok("templates", "show", "tpl-cli")
    assert "from template tpl-cli" in cli.ok("create", "--template", "tpl-cli", "--cycle", demo_name("FY2026"))
