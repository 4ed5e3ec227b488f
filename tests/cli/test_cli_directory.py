"""`v2mom directory import`, run as a subprocess against a real goals-api with the demo org seeded: a dry run
writes nothing, an import is idempotent, and a bad file is rejected whole with its line numbers."""

import uuid

import pytest

from tests.support.cli import Cli

HEADER = "employee_id,name,email,manager_id,org_unit,title,time_zone,status\n"


@pytest.fixture
def cli(seeded_goals, tmp_path):
    return Cli(seeded_goals.address, tmp_path)


def test_an_hris_export_imports_once_and_a_bad_one_not_at_all(cli, seeded_goals, tmp_path):
    tag = uuid.uuid4().hex[:6]
    unit = seeded_goals.db.org_units.find_one({"level": "ORG_LEVEL_TEAM"})
    path = unit["_id"] if unit["parent_id"] is None else f"acme/{unit['parent_id']}/{unit['_id']}"
    good = tmp_path / "people.csv"
    good.write_text(HEADER + f"{tag}-2,Report Two,{tag}2@example.com,{tag}-1,{path},Engineer,Europe/Oslo,active\n"
                    f"{tag}-1,Lead One,{tag}1@example.com,{unit['leader_id']},{path},Lead,,active\n"
                    f"{tag}-3,Leaver Three,{tag}3@example.com,{tag}-1,{path},,,terminated\n")
    cli.ok("login", "kofi.mensah")
    dry = cli.ok("directory", "import", str(good), "--dry-run")
    assert "3 to create" in dry and "nothing was written" in dry
    assert seeded_goals.db.people.count_documents({"external_id": {"$regex": f"^{tag}"}}) == 0
    assert "Imported 3 rows" in cli.ok("directory", "import", str(good))
    report = seeded_goals.db.people.find_one({"external_id": f"{tag}-2"})
    assert report["manager_id"] == f"{tag}-1" and report["time_zone"] == "Europe/Oslo"
    assert "0 to create, 0 to change, 0 to move, 0 to deactivate, 3 unchanged" in cli.ok("directory", "import", str(good))

    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + f"{tag}-8,Eight,{tag}8@example.com,{tag}-9,{path},,,active\n"
                   f"{tag}-9,Nine,{tag}9@example.com,{tag}-8,{path},,,active\n")
    refused = cli("directory", "import", str(bad))
    assert refused.returncode != 0 and "line 2" in refused.stderr and "manager cycle" in refused.stderr
    malformed = tmp_path / "malformed.csv"
    malformed.write_text(HEADER + f"{tag}-7,Seven,,,{path},,,retired\n")
    refused = cli("directory", "import", str(malformed))
    assert refused.returncode != 0 and "line 2" in refused.stderr and "status" in refused.stderr
    cli.ok("login", "hannah.berg")
    assert "hr or admin" in cli("directory", "import", str(good)).stderr
    assert seeded_goals.db.people.count_documents({"external_id": {"$regex": f"^{tag}-[789]"}}) == 0


def test_an_import_waits_for_a_whole_batch_not_a_quick_calls_deadline():
    """A batch of hundreds of rows takes longer than the CLI's 10 s for one-record calls."""
    from v2mom_cli import directory as directory_cli

    asked = {}

    class Recording:
        def call(self, rpc, request, attempts=1, timeout=None):
            asked.update(rpc=rpc, attempts=attempts, timeout=timeout)

    directory_cli._call(Recording(), [], dry_run=True, allow=False)
    assert asked == {"rpc": "ImportDirectory", "attempts": 2, "timeout": directory_cli.CALL_TIMEOUT_SECONDS}
    assert directory_cli.CALL_TIMEOUT_SECONDS >= 300


def test_what_a_leaver_left_is_listed_and_handed_to_a_successor(cli, seeded_goals, tmp_path):
    tag = uuid.uuid4().hex[:6]
    unit = seeded_goals.db.org_units.find_one({"level": "ORG_LEVEL_TEAM"})
    people = tmp_path / "people.csv"
    people.write_text(HEADER + f"{tag}-1,Lead One,{tag}1@example.com,{unit['leader_id']},{unit['_id']},Lead,,active\n"
                      f"{tag}-2,Report Two,{tag}2@example.com,{tag}-1,{unit['_id']},Engineer,,active\n")
    cli.ok("login", "kofi.mensah")
    cli.ok("directory", "import", str(people))
    cli.ok("login", f"{tag}-2")
    cli.ok("create", "-f", "v2mom_cli/examples/individual.yaml")
    v2mom_id = seeded_goals.db.v2moms.find_one({"owner_id": f"{tag}-2"})["_id"]
    people.write_text(HEADER + f"{tag}-2,Report Two,{tag}2@example.com,{tag}-1,{unit['_id']},Engineer,,terminated\n")
    cli.ok("login", "kofi.mensah")
    cli.ok("directory", "import", str(people))

    listed = cli.ok("directory", "orphans")
    assert "SUGGESTED SUCCESSOR" in listed
    line = next(line for line in listed.splitlines() if v2mom_id in line)
    assert line.split()[:2] == ["owner", "left"] and f"{tag}-2" in line and line.rstrip().endswith(f"{tag}-1")

    assert f"Transferred {v2mom_id} to {tag}-1" in cli.ok("directory", "transfer", v2mom_id, "--to", f"{tag}-1",
                                                          "--reason", "Lead One takes it over")
    assert v2mom_id not in cli.ok("directory", "orphans")
    assert seeded_goals.db.v2moms.find_one({"_id": v2mom_id})["owner_id"] == f"{tag}-1"
    assert "nothing changed" in cli.ok("directory", "transfer", v2mom_id, "--to", f"{tag}-1")
    cli.ok("login", "hannah.berg")
    assert "hr or admin" in cli("directory", "orphans").stderr


def test_parts_are_sized_by_the_rows_they_write_and_send_managers_first():
    """A first import (every row written) goes 500 rows a call; a re-import that changes 5% goes in calls of
    up to 2,000 rows, none writing more than 500; every row once, each after the manager the file names."""
    from v2mom_cli import directory as directory_cli
    from v2mom.v1 import directory_pb2

    # E0 leads E1..E99; each of them leads a hundred more (listed before their managers, as files come).
    people = [directory_pb2.PersonChange(external_id=f"E{n}", manager_ref=f"E{n // 100}" if n >= 100 else "E0")
              for n in range(10_000, 100, -1)]
    people += [directory_pb2.PersonChange(external_id=f"E{n}", manager_ref="E0" if n else "") for n in range(101)]

    def check(parts, written: set[int], most_rows: int):
        sent = [person.external_id for part in parts for person in part]
        assert sorted(sent) == sorted(person.external_id for person in people)
        position = {external_id: place for place, external_id in enumerate(sent)}
        assert all(position[p.manager_ref] < position[p.external_id] for p in people if p.manager_ref)
        writes = {people[index].external_id for index in written}
        assert all(len(part) <= most_rows for part in parts)
        assert all(sum(person.external_id in writes for person in part) <= directory_cli.PART_WRITES
                   for part in parts)

    everything = set(range(len(people)))
    first = directory_cli.parts(people, everything)
    check(first, everything, directory_cli.PART_WRITES)
    assert len(first) == 21

    changed = set(range(0, len(people), 20))  # 5%
    again = directory_cli.parts(people, changed)
    check(again, changed, directory_cli.PART_ROWS)
    assert len(again) == 6 and directory_cli.PART_ROWS == 2000
