"""`v2mom directory import people.csv [--dry-run]`: an HRIS export into the org directory (ImportDirectory).

The file is checked whole first (a dry run of every row at once), so a manager cycle, an unknown manager or
unit, duplicate ids or emails, or a malformed row rejects the whole file with its line numbers and nothing is
written. Then it is sent in parts, managers before their reports (so each part only names people already
there or in it), with a progress bar; goals keys people on the employee id, so running it again changes
nothing.
"""

import csv
import sys
from datetime import date
from pathlib import Path

from google.type import date_pb2
from tqdm import tqdm

from v2mom.v1 import common_pb2, directory_pb2, directory_pb2_grpc

from .errors import CliError
from .session import Api, Client

DIRECTORY_API = Api("goals API", "--addr / V2MOM_GOALS_ADDR", directory_pb2_grpc.DirectoryServiceStub)
REQUIRED = ("employee_id", "name", "org_unit")
COLUMNS = REQUIRED + ("email", "manager_id", "title", "time_zone", "status", "username", "locale", "start_date",
                      "end_date")
STATUSES = {"": common_pb2.EMPLOYMENT_STATUS_ACTIVE, "active": common_pb2.EMPLOYMENT_STATUS_ACTIVE,
            "on_leave": common_pb2.EMPLOYMENT_STATUS_ON_LEAVE, "leave": common_pb2.EMPLOYMENT_STATUS_ON_LEAVE,
            "terminated": common_pb2.EMPLOYMENT_STATUS_TERMINATED, "inactive": common_pb2.EMPLOYMENT_STATUS_TERMINATED}
# A part of the apply carries at most PART_WRITES rows the dry run said it writes (each a document and its
# event), and at most PART_ROWS rows in all: an unchanged row costs goals-api a read, not a write, so a
# re-import that changes little goes in a few big calls instead of one per 500 rows (each call has a fixed cost
# of reads: the caller, the units, the part's managers). PART_ROWS stays below a quarter of a 10,000-person
# directory, where goals-api reads a part's people as index ranges rather than the whole collection.
PART_WRITES = 500
PART_ROWS = 2000
CALL_TIMEOUT_SECONDS = 300.0  # a whole file's dry run


def directory_client(ctx) -> Client:
    """The logged-in person's client for goals-api's DirectoryService (close it when done)."""
    return Client(ctx.addr, ctx.client.token, DIRECTORY_API)


def import_csv(ctx, args) -> int:
    people, lines, malformed = read_people(Path(args.file))
    if malformed:
        raise CliError(_refusal_text(malformed, "malformed rows"))
    client = directory_client(ctx)
    try:
        diff = _call(client, people, dry_run=True, allow=args.allow_mass_deactivation)
        if diff.refused:
            raise CliError(_refusal_text([(lines[row.index], f"{row.external_id}: {row.reason}")
                                          for row in diff.refused], "the file is rejected"))
        print(describe(diff, lines))
        if args.dry_run:
            print("Dry run: nothing was written.")
            return 0
        _apply_in_parts(client, people, written_rows(diff))
    finally:
        client.close()
    print(f"Imported {len(people)} rows.")
    return 0


def read_people(path: Path) -> tuple[list, list[int], list[tuple[int, str]]]:
    """The rows as PersonChanges, the file line of each, and (line, reason) for each malformed row."""
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as error:
        raise CliError(f"cannot read {path}: {error.strerror}") from None
    with handle:
        reader = csv.DictReader(handle)
        missing = [name for name in REQUIRED if name not in (reader.fieldnames or [])]
        if missing:
            raise CliError(f"{path}: the header lacks {', '.join(missing)} (columns: {', '.join(COLUMNS)})")
        people, lines, malformed = [], [], []
        for row in tqdm(reader, desc="Reading", unit=" rows", file=sys.stderr, disable=None):
            try:
                people.append(person_of(row))
                lines.append(reader.line_num)
            except ValueError as error:
                malformed.append((reader.line_num, str(error)))
    return people, lines, malformed


def person_of(row: dict) -> directory_pb2.PersonChange:
    """One CSV row; ValueError saying what is wrong with it. ``org_unit`` may be a path (acme/eng/platform):
    its last part names the unit."""
    value = {name: (row.get(name) or "").strip() for name in COLUMNS}
    status = value["status"].lower().replace(" ", "_")
    if status not in STATUSES:
        raise ValueError(f"status {value['status']!r} is not active, on leave or terminated")
    person = directory_pb2.PersonChange(
        external_id=value["employee_id"], id=value["username"], display_name=value["name"], email=value["email"],
        title=value["title"], manager_ref=value["manager_id"], org_unit_ref=value["org_unit"].rstrip("/").split("/")[-1],
        time_zone=value["time_zone"], locale=value["locale"], employment_status=STATUSES[status])
    for name in ("start_date", "end_date"):
        if value[name]:
            try:
                day = date.fromisoformat(value[name])
            except ValueError:
                raise ValueError(f"{name} {value[name]!r} is not a date (YYYY-MM-DD)") from None
            getattr(person, name).CopyFrom(date_pb2.Date(
                year=day.year, month=day.month, day=day.day))
    return person


def _call(client: Client, people: list, dry_run: bool, allow: bool) -> directory_pb2.ImportDirectoryResponse:
    request = directory_pb2.ImportDirectoryRequest(people=people, dry_run=dry_run, allow_mass_deactivation=allow)
    return client.call("ImportDirectory", request, attempts=2, timeout=CALL_TIMEOUT_SECONDS)


def written_rows(diff: directory_pb2.ImportDirectoryResponse) -> set[int]:
    """The indexes of the people rows a dry run says applying writes."""
    return {row.index for rows in (diff.created, diff.changed, diff.moved, diff.deactivated) for row in rows
            if row.kind == "person"}


def _apply_in_parts(client: Client, people: list, written: set[int]) -> None:
    with tqdm(total=len(people), desc="Importing", unit=" people", file=sys.stderr, disable=None) as bar:
        for number, part in enumerate(parts(people, written), 1):
            # The whole file passed the mass-deactivation guard in its dry run; a part alone would misjudge it.
            answer = _call(client, part, dry_run=False, allow=True)
            if answer.refused:
                raise CliError(_refusal_text([(0, f"{row.external_id}: {row.reason}") for row in answer.refused],
                                             f"part {number} was refused"))
            bar.update(len(part))


def parts(people: list, written: set[int]) -> list[list]:
    """The rows managers first, cut into parts of at most PART_WRITES rows to write and PART_ROWS rows in all
    (``written``: the indexes of the rows to write). A row the dry run did not list as written (the directory
    changed since) still goes: the server decides every row again."""
    cut, part, writes = [], [], 0
    for index in managers_first(people):
        writes_here = index in written
        if part and (len(part) == PART_ROWS or writes + writes_here > PART_WRITES):
            cut.append(part)
            part, writes = [], 0
        part.append(people[index])
        writes += writes_here
    return cut + ([part] if part else [])


def managers_first(people: list) -> list[int]:
    """The indexes of ``people``, each person after the manager the file names for them (if the file names
    them), so no part sent names a manager a later part brings."""
    by_id = {person.external_id: person for person in people}

    def depth(index: int) -> int:
        seen, ref = 0, people[index].manager_ref
        while ref in by_id and seen <= len(by_id):  # the dry run refused cycles; the bound is a guard
            seen, ref = seen + 1, by_id[ref].manager_ref
        return seen

    return sorted(range(len(people)), key=depth)


def describe(diff: directory_pb2.ImportDirectoryResponse, lines: list[int]) -> str:
    parts = [f"{len(diff.created)} to create, {len(diff.changed)} to change, {len(diff.moved)} to move, "
             f"{len(diff.deactivated)} to deactivate, {diff.unchanged} unchanged"]
    for title, rows in (("create", diff.created), ("change", diff.changed), ("move", diff.moved),
                        ("deactivate", diff.deactivated)):
        for row in rows[:50]:
            detail = f" ({row.detail})" if row.detail else ""
            parts.append(f"  {title:<10} line {lines[row.index]}: {row.external_id} {row.id}{detail}")
        if len(rows) > 50:
            parts.append(f"  ... and {len(rows) - 50} more to {title}")
    return "\n".join(parts)


def _refusal_text(rows: list[tuple[int, str]], what: str) -> str:
    shown = [f"  line {line}: {reason}" if line else f"  {reason}" for line, reason in rows[:100]]
    more = [f"  ... and {len(rows) - 100} more"] if len(rows) > 100 else []
    return "\n".join([f"{what} ({len(rows)}); nothing was written:", *shown, *more])
