"""`v2mom obstacle`, `v2mom comment` and `v2mom comments`, run as subprocesses against a real goals-api with the
demo org seeded."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.cli import Cli

EXAMPLE = Path(__file__).resolve().parents[2] / "v2mom_cli" / "examples" / "individual.yaml"


@pytest.fixture
def cli(seeded_goals, tmp_path):
    return Cli(seeded_goals.address, tmp_path)


def published_by(cli, owner: str, manager: str) -> None:
    cli.ok("login", owner)
    cli.ok("create", "-f", str(EXAMPLE))
    cli.ok("submit", "me")
    cli.ok("login", manager)
    cli.ok("approve", f"@{owner}")


def test_an_owner_mitigates_and_hands_over_an_obstacle_without_a_new_approval(cli, seeded_goals):
    published_by(cli, "tomasz.nowak", "priya.raman")
    cli.ok("login", "tomasz.nowak")
    shown = cli.ok("obstacle", "me", "Alert owners")
    assert "status: open, open since" in shown and "blocks: Write a runbook" in shown
    assert "STALE" not in shown
    long_ago = datetime.now(UTC) - timedelta(days=30)  # past goals-api's OBSTACLE_STALE_DAYS (14)
    seeded_goals.db.v2moms.update_one({"owner_id": "tomasz.nowak", "state": "V2MOM_STATE_PUBLISHED"},
                                      {"$set": {"published.content.obstacles.0.opened_at": long_ago}})
    assert "STALE" in cli.ok("obstacle", "me", "Alert owners")
    changed = cli.ok("obstacle", "me", "Alert owners", "--status", "mitigating", "--owner", "@li.wei",
                     "--reason", "Li owns the alert audit")
    assert "no approval needed" in changed and "status: mitigating" in changed and "owner: Li Wei" in changed
    assert "UPDATE_OBSTACLE" in cli.ok("history", "me")
    cli.ok("login", "amara.nwosu")
    refused = cli("obstacle", "@tomasz.nowak", "Alert owners", "--status", "resolved")
    assert refused.returncode != 0 and "obstacle's owner" in refused.stderr


def test_a_thread_with_a_mention_a_reply_an_edit_and_a_delete(cli):
    published_by(cli, "amara.nwosu", "priya.raman")
    cli.ok("login", "priya.raman")  # her manager sees the working copy: her remark stays with its readers
    assert "working copy" in cli.ok("comment", "add", "@amara.nwosu", "Draft remark for Amara")
    cli.ok("login", "jonas.weber")  # a teammate sees the published version
    added = cli.ok("comment", "add", "@amara.nwosu", "Can @amara.nwosu share the alert list?", "--item", "Alert owners")
    assert "told Amara Nwosu" in added and "published version" in added
    first = added.split("Commented ", 1)[1].split(" ", 1)[0]
    cli.ok("login", "amara.nwosu")
    reply = cli.ok("comment", "add", "@amara.nwosu", "Yes, this week", "--reply-to", first)
    second = reply.split("Commented ", 1)[1].split(" ", 1)[0]
    cli.ok("comment", "edit", second, "Yes, by Friday")
    listed = cli.ok("comments", "@amara.nwosu")
    assert listed.index(first) < listed.index(second) and "└── Amara Nwosu" in listed and "(edited)" in listed
    assert "Draft remark" in listed  # the owner reads her working copy's discussion
    refused = cli("comment", "delete", first)
    assert refused.returncode != 0 and "author" in refused.stderr
    cli.ok("comment", "delete", second)
    cli.ok("login", "jonas.weber")
    seen = cli.ok("comments", "@amara.nwosu", "--item", "Alert owners")
    assert "[deleted]" in seen and "Draft remark" not in cli.ok("comments", "@amara.nwosu")
