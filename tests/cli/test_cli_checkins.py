"""The `v2mom` check-in commands, run as a subprocess against a real goals-api and checkins-api.

The demo organisation is seeded through goals-api once per module; a
checkins-api on its own database points at it. Instead of a checkins-worker
process, the worker's handlers run in process (``InProcessWorker``): they are
fed goals' approvals and the check-in service's own events straight from the
outboxes, the way the worker's queues would deliver them, so progress and
staleness are real without waiting on RabbitMQ.

Each test acts as a different person of the demo org, so the tests do not
depend on each other's check-ins.
"""

import re
import uuid
from concurrent import futures
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import date, timedelta

import grpc
import pymongo
import pytest
from google.protobuf import json_format

from services.checkins.api import create_server as create_checkins_server
from services.checkins.goals_client import GoalsClient
from services.checkins.handlers import Projection
from services.checkins.clock_store import advance_due
from services.goals.milestone_completions import MilestoneCompletions
from services.goals.repository import V2MOMRepository
from services.platform.core.clock import utc_now
from deploy.demo.goals import load_org
from services.platform.core.config import load
from deploy.demo.calendar import current_cycle
from services.platform.bus.events import to_wire
from tests.support.cli import Cli, demo_name
from tests.support.processes import free_port
from tests.support.services import served
from v2mom.v1 import checkins_pb2, events_pb2, goals_pb2
from v2mom_cli import items
from v2mom_cli.errors import CliError

CHECKIN_ID = re.compile(r"Check-in (chk_[0-9a-z]+)")
TODAY = date.today().isoformat()


class InProcessWorker:
    """checkins-worker's handlers, fed from the outboxes instead of RabbitMQ; each event once."""

    OUTBOXES = ("checkins", "progress")  # item_clocks' staleness events have no handler in the worker

    def __init__(self, projection: Projection, goals_db):
        self.projection = projection
        self.goals_db = goals_db
        self.seen: set[str] = set()
        self.handlers = {
            "v2mom_approved": projection.v2mom_approved,
            "v2mom_archived": projection.v2mom_archived,
            "checkin_recorded": projection.checkin_recorded,
            "checkin_corrected": projection.checkin_corrected,
            "progress_changed": projection.progress_changed,
        }

    def learn_approvals(self) -> None:
        """goals' v2mom_approved / v2mom_archived events, still in its outbox (no goals-worker runs here)."""
        self._deliver(event for doc in self.goals_db.v2moms.find({}, {"outbox": 1}) for event in doc.get("outbox", []))

    def run(self) -> None:
        """Delivers the check-ins service's new events until none are left (a roll-up makes more)."""
        while self._deliver(
            event for name in self.OUTBOXES
            for doc in self.projection.db[name].find({}, {"outbox": 1}) for event in doc.get("outbox", [])
        ):
            pass

    def _deliver(self, events) -> int:
        delivered = 0
        for event in [to_wire(event) for event in events]:
            if event["id"] not in self.seen and event["type"] in self.handlers:
                self.seen.add(event["id"])
                self.handlers[event["type"]](event)
                delivered += 1
        return delivered


def goals_worker_takes_milestones(stack, checkin_id: str) -> None:
    """goals-worker's part: the check-in's checkin_recorded, from checkins' outbox, marks its milestones done."""
    doc = stack.db.checkins.find_one({"_id": checkin_id}, {"outbox": 1})
    [event] = [to_wire(e) for e in doc["outbox"] if to_wire(e)["type"] == "checkin_recorded"]
    data = json_format.ParseDict(event["data"], events_pb2.CheckinEventData(), ignore_unknown_fields=True)
    assert MilestoneCompletions(V2MOMRepository(stack.worker.goals_db)).take(data.checkin)


@dataclass
class Stack:
    goals_address: str
    checkins_address: str
    db: pymongo.database.Database
    worker: InProcessWorker


@pytest.fixture(scope="module")
def stack(seeded_goals, mongo_uri):
    settings = replace(
        load("checkins", "127.0.0.1:0"), mongo_uri=mongo_uri, mongo_db=f"checkins_cli_{uuid.uuid4().hex[:10]}",
        goals_addr=seeded_goals.address,
    )
    running = ExitStack()
    _, port = running.enter_context(served(create_checkins_server, settings))
    client = pymongo.MongoClient(mongo_uri, tz_aware=True)
    db = client[settings.database_name]
    goals = GoalsClient(seeded_goals.address, settings.auth)
    worker = InProcessWorker(Projection(db, goals), seeded_goals.db)
    worker.learn_approvals()
    try:
        yield Stack(seeded_goals.address, f"127.0.0.1:{port}", db, worker)
    finally:
        goals.close()
        running.close()
        client.drop_database(settings.database_name)
        client.close()


@pytest.fixture
def cli(stack, tmp_path):
    cli = Cli(stack.goals_address, tmp_path)
    cli.env["V2MOM_CHECKINS_ADDR"] = stack.checkins_address
    return cli


def row(output: str, *words: str) -> str:
    """The one line of output that holds every word."""
    lines = [line for line in output.splitlines() if all(word in line for word in words)]
    assert len(lines) == 1, f"expected one line with {words} in:\n{output}"
    return lines[0]


def checkin_id(output: str) -> str:
    match = CHECKIN_ID.search(output)
    assert match, output
    return match.group(1)


# --- recording, and what progress makes of it ---------------------------------------------------


def test_check_ins_on_a_measure_and_a_method_show_up_in_progress_and_the_tree(cli, stack):
    cli.ok("login", "jonas.weber")
    measure = cli.ok("checkin", "me", "robots reporting", "--value", "40", "--status", "on-track",
                     "--confidence", "7", "--comment", "Every R2 robot reports")
    assert ("Checked in on measure 'Robots reporting telemetry': 40 (40.0% of the way), on track; confidence 7/10."
            in measure)
    method = cli.ok("checkin", "me", "Ship the telemetry", "--progress", "80", "--status", "at-risk",
                    "--milestone", "5% canary")
    assert "Checked in on method 'Ship the telemetry agent to every R2 and R3 robot': 80.0% done, at risk" in method
    assert "milestones done: " in method

    stack.worker.run()

    progress = cli.ok("progress", "me")
    # Measures weighted 50/30/20: only the first has a check-in, at 40 %.
    assert "Own progress     20.0%" in progress and "With its tree    20.0%" in progress
    assert "on track" in row(progress, "measure", "Robots reporting telemetry", "40.0%", TODAY)
    assert "never" in row(progress, "measure", "Telemetry delay")
    # Values from the measures behind their methods, weighted alike: (50 x 40 + 30 x 0) / 80; nobody checked in
    # on the one measure behind "Write it down".
    assert row(progress, "Boring infrastructure", "25.0%").endswith("2 measures")
    assert row(progress, "Write it down", "0.0%").endswith("1 measure")
    # Due on 2026-05-31 as written, half a year before the demo's moment however far its dates have moved, and
    # not at 100 %: overdue, however fresh the check-in.
    assert row(progress, "method", "Ship the telemetry agent", "at risk", "80.0%", TODAY).endswith("overdue")

    team = cli.ok("progress", "unit:eng-platform", "--tree")
    tree = team[team.index("TREE"):]
    assert tree.splitlines()[1].startswith(f"{demo_name('Platform FY2027')} · priya.raman · ")
    jonas = row(tree, demo_name("Jonas Weber FY2027"))
    assert jonas.startswith(("├── ", "└── ")) and jonas.endswith("· jonas.weber · 20.0% · 20.0%")

    listed = cli.ok("checkins", "me")
    assert len(listed.splitlines()) == 1 + 2
    only_measure = cli.ok("checkins", "me", "--item", "robots")
    assert "Every R2 robot reports" in row(only_measure, "Robots reporting telemetry", "40 (40.0% of the way)", "7")
    assert len(only_measure.splitlines()) == 1 + 1

    history = cli.ok("progress-history", "me")
    week = date.today() - timedelta(days=date.today().weekday())
    assert row(history, week.isoformat(), "20.0%", "████")
    assert "Trend (own, oldest first): ▂" in history


def test_a_correction_replaces_a_check_in_and_keeps_it_in_the_history(cli, stack):
    cli.ok("login", "mei.tanaka")
    first = checkin_id(
        cli.ok("checkin", "me", "First-try", "--value", "85", "--status", "on-track", "--confidence", "6")
    )

    corrected = cli.ok("correct", first, "--reason", "Read the wrong dashboard", "--value", "90.5")
    assert f"Corrected {first}: " in corrected and "90.5 (50.0% of the way), on track" in corrected

    current = cli.ok("checkins", "me")
    assert len(current.splitlines()) == 1 + 1  # the correction stands in for the check-in it corrects
    assert row(current, "90.5 (50.0% of the way)", f"corrects {first}")
    history = cli.ok("checkins", "me", "--all")
    assert row(history, first, "corrected by chk_")

    again = cli("correct", first, "--reason", "twice", "--value", "91")
    assert again.returncode == 1
    assert again.stderr.startswith(f"error: FAILED_PRECONDITION: check-in {first!r} was already corrected by ")
    assert f"  - {first}: superseded by chk_" in again.stderr and "[SUPERSEDED]" in again.stderr


def test_field_violations_and_refusals_are_clear_lines_and_a_failure(cli, stack):
    cli.ok("login", "mei.tanaka")
    bad = cli("checkin", "me", "Engineers able", "--value", "2", "--status", "at-risk", "--confidence", "12",
              "--comment", "x" * 2001)
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.splitlines() == [
        "error: INVALID_ARGUMENT: the request has 2 problem(s):",
        "  - confidence: must be from 0 to 10",
        "  - comment: must be at most 2000 characters (got 2001)",
    ]

    cycle = next(c for c in load_org().cycles if c["id"] == current_cycle())  # the demo's running cycle
    before = (date.fromisoformat(cycle["start"]) - timedelta(days=17)).isoformat()
    before_cycle = cli("checkin", "me", "Engineers able", "--value", "2", "--status", "at-risk", "--confidence", "5",
                       "--observed", before)
    assert before_cycle.returncode == 1
    assert f"  - observe_time: is before cycle {cycle['id']} starts ({cycle['start']})" in before_cycle.stderr

    # Wrong flags for the kind of item, an unknown item, a V2MOM not published: said before anything is sent.
    assert "is a measure: --progress is not for measures" in cli(
        "checkin", "me", "Engineers able", "--progress", "50", "--status", "on-track").stderr
    unknown = cli("checkin", "me", "Happy robots", "--value", "1", "--status", "on-track")
    assert unknown.returncode == 2 and "no measure or method is called 'Happy robots'; there are: " in unknown.stderr
    cli.ok("login", "li.wei")  # her V2MOM waits for approval
    not_published = cli("checkin", "me", "anything", "--value", "1", "--status", "on-track")
    assert not_published.returncode == 1
    assert not_published.stderr.startswith("error: NOT_FOUND: v2mom 'v2m_")
    assert "has no published version" in not_published.stderr

    for result in (bad, before_cycle, unknown, not_published):
        assert "Traceback" not in result.stderr


def test_items_are_named_by_id_or_by_a_title_prefix_that_names_one():
    content = goals_pb2.V2MOMContent(
        measures=[goals_pb2.Measure(id="msr-ship", title="Shipped robots"),
                  goals_pb2.Measure(id="msr-2", title="Ship dates met")],
        methods=[goals_pb2.Method(id="Ship", title="Hire two engineers",
                                  milestones=[goals_pb2.Milestone(id="mil-1", title="Offer signed")])],
    )
    assert items.find_item(content, "Ship").title == "Hire two engineers"  # an id wins over a title
    assert items.find_item(content, "  shipped ").id == "msr-ship"
    method = items.find_item(content, "hire")
    assert (method.kind, items.find_milestone(method, "offer")) == ("method", "mil-1")
    with pytest.raises(CliError, match="'ship ' could be any of: Shipped robots; Ship dates met"):
        items.find_item(content, "ship ")


# --- staleness ------------------------------------------------------------------------------------


def test_stale_lists_what_needs_a_check_in_for_a_person_or_a_unit(cli, stack):
    cli.ok("login", "oliver.grant")
    cli.ok("checkin", "me", "Gross renewal", "--value", "90", "--status", "on-track", "--confidence", "8")
    assert "Nothing stale" in cli.ok("stale")

    stack.worker.run()
    advance_due(stack.db, utc_now() + timedelta(days=15))  # the timer, fifteen days on: one biweekly cadence

    mine = cli.ok("stale")
    assert row(mine, "stale", "measure", "Gross renewal rate of my accounts", "oliver.grant", TODAY)
    assert row(mine, "stale", "measure", "Robots in service at my accounts", "never")
    unit = cli.ok("stale", "--unit", "sales-success")
    assert "Gross renewal rate of my accounts" in unit
    assert cli.ok("stale", "--owner", "@oliver.grant") == mine

    both = cli("stale", "--owner", "me", "--unit", "sales-success")
    assert both.returncode == 2 and both.stderr.strip() == "error: give --owner or --unit, not both"


# --- retries, and an API that is not there ---------------------------------------------------------


class LoseFirstAnswer(grpc.GenericRpcHandler):
    """A proxy in front of checkins-api that loses the first answer to one RPC, as a timeout would.

    The call reaches the API and is recorded; the CLI hears UNAVAILABLE and tries again.
    """

    def __init__(self, target: str, method: str):
        self.channel = grpc.insecure_channel(target)
        self.method = method
        self.requests: list[bytes] = []

    def service(self, details):
        forward = self.channel.unary_unary(details.method)  # no (de)serializers: bytes both ways
        ours = details.method.endswith("/" + self.method)

        def handle(request: bytes, context):
            metadata = [(k, v) for k, v in context.invocation_metadata() if k == "authorization"]
            if ours:
                self.requests.append(request)
            response = forward(request, metadata=metadata, timeout=10)
            if ours and len(self.requests) == 1:
                context.abort(grpc.StatusCode.UNAVAILABLE, "connection reset by peer")
            return response

        return grpc.unary_unary_rpc_method_handler(handle)


@pytest.fixture
def lossy(stack):
    proxy = LoseFirstAnswer(stack.checkins_address, "RecordMeasureCheckin")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((proxy,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    proxy.address = f"127.0.0.1:{port}"
    yield proxy
    server.stop(grace=None)
    proxy.channel.close()


def test_a_retry_after_a_lost_answer_records_once_and_each_invocation_has_its_own_key(cli, stack, lossy):
    cli.ok("login", "grace.kim")
    args = ("checkin", "me", "Employees who confirmed", "--value", "120", "--status", "on-track", "--confidence", "9")

    output = cli.ok(*args, "--checkins-addr", lossy.address)

    keys = [checkins_pb2.RecordMeasureCheckinRequest.FromString(request).idempotency_key for request in lossy.requests]
    assert len(keys) == 2 and keys[0] == keys[1] and keys[0].startswith("cli-")
    stored = list(stack.db.checkins.find({"author_id": "grace.kim"}))
    assert [doc["_id"] for doc in stored] == [checkin_id(output)]  # the retry got the first check-in back

    cli.ok(*args)  # another invocation is another check-in
    assert stack.db.checkins.count_documents({"author_id": "grace.kim"}) == 2


def test_an_unreachable_checkins_api_is_named_with_how_to_point_at_another(cli):
    cli.ok("login", "tyler.reed")
    result = cli("progress", "me", "--checkins-addr", f"127.0.0.1:{free_port()}")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: cannot reach the check-ins API at 127.0.0.1:")
    assert lines[1] == "  start it with `make run`, or point --checkins-addr / V2MOM_CHECKINS_ADDR at a running one"
    assert "Traceback" not in result.stderr


# --- export: goals' stream merged with check-ins' progress, as CSV and XLSX ---------------------------------------


def test_export_writes_a_subtrees_v2moms_with_progress_as_csv_and_xlsx(cli, stack, tmp_path):
    import csv
    import zipfile
    from xml.etree import ElementTree

    cli.ok("login", "jonas.weber")
    cli.ok("checkin", "me", "Engineers who have released", "--value", "2", "--status", "on-track", "--confidence", "6")
    stack.worker.run()

    written = cli.ok("export", "--unit", "eng-platform", "--format", "csv", "-o", str(tmp_path / "platform.csv"))
    assert re.search(r"Wrote \d+ V2MOMs \(\d+ rows\) of eng-platform in FY\d{4} to ", written)
    with (tmp_path / "platform.csv").open(encoding="utf-8-sig") as sheet:
        rows = list(csv.DictReader(sheet))
    jonas = [r for r in rows if r["Owner id"] == "jonas.weber"]
    assert {r["Item kind"] for r in jonas} == {"Vision", "Value", "Method", "Measure", "Obstacle"}
    engineers = next(r for r in jonas if r["Item"].startswith("Engineers who have released"))
    assert (engineers["Item status"], engineers["Latest check-in by"]) == ("on track", "jonas.weber")
    assert float(engineers["Item progress %"]) == 50.0 and engineers["Latest check-in on"].startswith("Engineers")
    assert {r["Org unit"] for r in rows} == {"Platform"}  # one team, no units below it

    cli.ok("export", "--unit", "eng-platform", "--format", "xlsx", "-o", str(tmp_path / "platform.xlsx"))
    with zipfile.ZipFile(tmp_path / "platform.xlsx") as book:
        assert "xl/workbook.xml" in book.namelist()
        sheet = ElementTree.fromstring(book.read("xl/worksheets/sheet1.xml"))
    ns = {"s": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
    first = [t.text for t in sheet.find("s:sheetData/s:row", ns).iterfind(".//s:t", ns)]
    assert first[:4] == ["Cycle", "Org unit", "V2MOM", "V2MOM id"]
    assert len(sheet.findall("s:sheetData/s:row", ns)) == len(rows) + 1  # the same rows, and the header


# --- milestones a method check-in completes are done in the V2MOM ------------------------------------------


def test_a_milestone_a_check_in_completes_is_done_in_the_v2mom_without_a_new_approval(cli, stack):
    cli.ok("login", "tyler.reed")
    assert "[ ] 14 customers signed" in cli.ok("show", "me")
    method = cli.ok("checkin", "me", "Sign 14 third-party", "--progress", "90", "--status", "on-track",
                    "--milestone", "14 customers")
    assert "milestones done: " in method

    goals_worker_takes_milestones(stack, checkin_id(method))
    shown = cli.ok("show", "me")  # the V2MOM itself says so now
    assert "[x] 14 customers signed" in shown and "State: PUBLISHED" in shown
    last = cli.ok("history", "me").splitlines()[-1]
    # A system revision of its own, no approval; who checked in, and the check-in, are in its note.
    assert last.split()[3:5] == ["COMPLETE_MILESTONES", "system"]
    assert checkin_id(method) in last and last.rstrip().endswith("of tyler.reed")


# --- copy forward: last cycle's final values become the copy's baselines --------------------------------------


def test_copy_takes_baselines_from_the_last_check_ins_and_leaves_completed_methods_behind(cli, stack, tmp_path):
    import yaml

    running = stack.worker.goals_db.cycles.find_one({"_id": demo_name("FY2027")})
    start = date.fromisoformat(running["end_date"]) + timedelta(days=1)
    cli.ok("login", "kofi.mensah")  # an admin opens the next year
    cli.ok("cycles", "create", "FYCOPY", "--start", start.isoformat(),
           "--end", (start + timedelta(days=364)).isoformat())

    cli.ok("login", "tyler.reed")
    cli.ok("checkin", "me", "Customers signed", "--value", "9", "--status", "on-track", "--confidence", "8")
    cli.ok("checkin", "me", "Publish two customer case studies", "--progress", "100", "--status", "on-track")
    stack.worker.run()

    copied = cli.ok("copy", "me", "--to", "FYCOPY")
    assert "1 baseline(s) from last cycle's final values" in copied, copied
    copy_id = re.search(r"as draft (v2m_[0-9a-z]+)", copied).group(1)
    document = yaml.safe_load(cli.ok("show", copy_id, "--yaml"))
    baselines = {m["title"]: m["baseline"] for m in document["measures"]}
    assert baselines["Customers signed"] == 9  # the last check-in's value, not the 0 it started from
    assert baselines["Forecast accuracy of my commit"] == 75  # never checked in: kept
    titles = [m["title"] for m in document["methods"]]
    assert not any(t.startswith("Publish two customer case studies") for t in titles)  # done at 100 %
    assert any(t.startswith("Run 20 paid pilots") for t in titles)


def test_export_draws_a_progress_bar_on_a_terminal_and_none_into_a_pipe(cli, tmp_path):
    cli.ok("login", "rafael.okafor")  # leads Engineering: a tree of departments' teams and people
    args = ["export", "--unit", "eng", "--format", "csv", "-o", str(tmp_path / "eng.csv")]
    piped = cli(*args)
    assert piped.returncode == 0 and "Exporting" not in piped.stderr  # nothing drawn where nobody watches
    count = int(re.search(r"Wrote (\d+) V2MOMs", piped.stdout).group(1))
    assert count > 5

    watched = cli.on_terminal(*args)
    assert watched.returncode == 0, watched.stdout
    assert "Exporting" in watched.stderr and f"{count}/{count}" in watched.stderr, watched.stderr
