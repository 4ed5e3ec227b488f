"""Cascading through the CLI: `v2mom tree --methods` shows which methods below carry out each method, and
`v2mom list --parent-changed` / `v2mom show` tell a child's owner that the parent was re-approved with changes.

Subprocesses against a real goals-api with the demo org seeded (a module of its own: it re-approves Platform's
V2MOM). goals-worker's part, marking the children its own v2mom_parent_changed names, runs in process on the event
the approval wrote, as the worker's handler does (tests/goals/test_goals_parent_changes.py runs the worker itself).
"""

import pytest
import yaml
from google.protobuf import json_format

from services.goals.repository import V2MOMRepository
from services.platform.bus.events import to_wire
from services.platform.core.clock import from_timestamp
from tests.support.cli import Cli, demo_name
from v2mom.v1 import events_pb2


@pytest.fixture
def cli(seeded_goals, tmp_path):
    return Cli(seeded_goals.address, tmp_path)


def lines_after(text: str, heading: str) -> list[str]:
    """The indented lines of the section that starts with ``heading``."""
    tail = text[text.index(heading):].splitlines()[1:]
    return [line for line in tail[:next((i for i, line in enumerate(tail) if not line.startswith(" ")), len(tail))]]


def revised(cli, v2mom: str, path, vision: str) -> None:
    """The V2MOM's YAML with another vision, written to ``path`` for `v2mom edit -f`."""
    document = yaml.safe_load(cli.ok("show", v2mom, "--yaml"))
    path.write_text(yaml.safe_dump({**document, "vision": vision}, sort_keys=False))


def test_the_tree_shows_which_methods_below_carry_out_each_method(cli):
    cli.ok("login", "rafael.okafor")  # leads Engineering
    plain = cli.ok("tree", "unit:eng")
    assert "Methods and the methods below" not in plain  # only when asked

    shown = cli.ok("tree", "unit:eng", "--methods")
    support = lines_after(shown, "Methods and the methods below that carry them out:")
    assert f"  {demo_name('Engineering FY2027')}" in support
    carried = [line for line in support if line.startswith("      <- ") and "nobody below" not in line]
    assert carried, shown  # the demo's teams name Engineering methods they carry out
    assert any(line.strip() == "<- nobody below" for line in support), shown  # and Engineering's own hiring, none
    # The gaps the tree ends with are the methods no one below carries out, as before.
    assert "Methods no V2MOM below supports:" in shown


def test_children_learn_that_their_parent_changed_until_their_next_edit(cli, seeded_goals, tmp_path):
    cli.ok("login", "jonas.weber")  # his V2MOM aligns to Platform's
    assert "jonas.weber" not in cli.ok("list", "--parent-changed")
    assert "Parent changed" not in cli.ok("show", "me")

    cli.ok("login", "priya.raman")  # leads Platform, whose V2MOM she re-words and sends up again
    revised(cli, "unit:eng-platform", tmp_path / "platform.yaml",
            "Every robot reports its health within a minute, all year round")
    cli.ok("edit", "unit:eng-platform", "-f", str(tmp_path / "platform.yaml"), "--reason", "A sharper vision")
    cli.ok("submit", "unit:eng-platform")
    cli.ok("login", "rafael.okafor")
    cli.ok("approve", "unit:eng-platform", "--comment", "Sharper")

    platform = seeded_goals.db.v2moms.find_one({"org_unit_id": "eng-platform", "state": "V2MOM_STATE_PUBLISHED",
                                                "cycle_id": demo_name("FY2027")})
    changed = [to_wire(e) for e in platform["outbox"] if to_wire(e)["type"] == "v2mom_parent_changed"]
    assert len(changed) == 1
    data = json_format.ParseDict(changed[0]["data"], events_pb2.ParentChangedEventData())
    jonas = seeded_goals.db.v2moms.find_one({"owner_id": "jonas.weber", "cycle_id": demo_name("FY2027")})
    assert jonas["_id"] in data.child_ids
    V2MOMRepository(seeded_goals.db).mark_parent_changed(list(data.child_ids), from_timestamp(data.change_time))

    cli.ok("login", "jonas.weber")
    listed = cli.ok("list", "--parent-changed")
    assert jonas["_id"] in listed and "PUBLISHED" in listed
    assert "Parent changed: re-approved with changes " in cli.ok("show", "me")

    revised(cli, "me", tmp_path / "me.yaml", "Telemetry from every robot within a minute, as Platform now asks")
    cli.ok("edit", "me", "-f", str(tmp_path / "me.yaml"), "--reason", "Followed Platform's new vision")
    assert jonas["_id"] not in cli.ok("list", "--parent-changed")  # his edit answered it
    assert "Parent changed" not in cli.ok("show", "me")
