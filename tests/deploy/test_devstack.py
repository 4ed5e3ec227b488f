"""`make run`'s devstack as a real process: ready, healthy, idempotent on restart, and leaves nothing behind.

The whole stack, notify and its dev sinks included, on the test wire server with ports of its own; the
demo seed's pending approval reaches the approver's inbox and, through the SMTP sink, her mailbox.

Its supervision (a process that exits is restarted with back-off) on small real children: `devstack_child`,
a module written to the test's folder whose runs exit or stay up as the test plans, `http.server` for a
port, and a real goals-worker killed with SIGKILL; the back-off small, so they take seconds."""

import io
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import grpc
import pymongo
import pytest
from v2mom.v1 import goals_pb2, goals_pb2_grpc, notify_pb2, notify_pb2_grpc

from deploy import devstack, grpc_healthcheck
from deploy.demo.calendar import current_cycle
from deploy.devstack import Backoff, ChildExited, LogLine, PortOpen, ProcessSpec
from services.platform.api.auth import bearer_metadata, mint_dev_token
from services.platform.core.config import load
from tests.support.processes import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
READY = "V2MOM dev stack is ready."
# deploy/demo/goals/v2moms/fy27-li.wei.yaml: submitted, never decided; her manager approves.
WAITING_NAME, APPROVER = "Li Wei", "priya.raman"
MAIL_TIMEOUT = 90.0  # after the banner: notify-worker dispatches every half second, behind the check-in history's events


class DevStack:
    """`python -m deploy.devstack` (or `args` instead of `-m deploy.devstack`) with its output collected line by line."""

    def __init__(self, env: dict[str, str], args: tuple[str, ...] = ("-m", "deploy.devstack")):
        self.process = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self.lines: list[str] = []
        self._new: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            self._new.put(line)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    # Generous: the seed records eight weeks of check-ins through the real APIs.
    def wait_for(self, text: str, timeout: float = 360.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.process.poll() is not None and self._new.empty():
                pytest.fail(f"devstack exited with {self.process.returncode} before {text!r}:\n{self.output}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {text!r} after {timeout:.0f} s:\n{self.output}")
            try:
                self._new.get(timeout=0.5)
            except queue.Empty:
                pass

    def children(self) -> dict[int, str]:
        """pid -> command line of the devstack's child processes."""
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if ppid == self.process.pid:
                    found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, IndexError, ValueError):
                continue  # it exited while we looked
        return found

    def exit_status(self, timeout: float = 60.0) -> int:
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def stack_env(sqlite_mongo_uri, isolated_broker_uri):
    """Environment for a devstack on the test wire server's SQLite engine (as `make run` keeps var/): fresh
    databases, free ports, a vhost of its own.

    Its workers' queues have fixed names, so on a shared vhost another stack's
    workers (or a test's) would take its events.
    """
    suffix = uuid.uuid4().hex[:10]
    databases = {"MONGO_DB": f"goals_devstack_{suffix}", "CHECKINS_MONGO_DB": f"checkins_devstack_{suffix}",
                 "METRICS_MONGO_DB": f"metrics_devstack_{suffix}", "NOTIFY_MONGO_DB": f"notify_devstack_{suffix}"}
    env = {
        **os.environ,
        **databases,
        "MONGO_URI": sqlite_mongo_uri,
        "AMQP_URI": isolated_broker_uri,
        "V2MOM_GOALS_ADDR": f"127.0.0.1:{free_port()}",
        "SCIM_HTTP_ADDR": f"127.0.0.1:{free_port()}",
        "V2MOM_CHECKINS_ADDR": f"127.0.0.1:{free_port()}",
        "V2MOM_METRICS_ADDR": f"127.0.0.1:{free_port()}",
        "METRICS_HTTP_ADDR": f"127.0.0.1:{free_port()}",
        "V2MOM_NOTIFY_ADDR": f"127.0.0.1:{free_port()}",
        "NOTIFY_HTTP_ADDR": f"127.0.0.1:{free_port()}",
        "NOTIFY_SMTP_PORT": str(free_port()),
        "WEBHOOK_SINK_ADDR": f"127.0.0.1:{free_port()}",
    }
    env.pop("NOTIFY_SMTP_HOST", None)  # set, it would name a relay of one's own and no sink would start
    yield env
    client = pymongo.MongoClient(sqlite_mongo_uri)
    for database in databases.values():
        client.drop_database(database)
    client.close()


@pytest.fixture
def start_stack(stack_env):
    started: list[DevStack] = []

    def start(**overrides) -> DevStack:
        stack = DevStack({**stack_env, **overrides})
        started.append(stack)
        return stack

    yield start
    for stack in started:
        stack.kill()


def inbox(notify_addr: str, person_id: str) -> list:
    token = mint_dev_token(load("notify").auth, person_id)
    with grpc.insecure_channel(notify_addr) as channel:
        return list(notify_pb2_grpc.NotifyServiceStub(channel).ListNotifications(
            notify_pb2.ListNotificationsRequest(), metadata=bearer_metadata(token), timeout=10).notifications)


def wait_for_approval_request(stack: DevStack, notify_addr: str) -> list:
    """The approver's inbox once it holds the request and the SMTP sink has printed its email."""
    mailed = f"to={APPROVER}@acmerobotics.example subject="
    deadline = time.monotonic() + MAIL_TIMEOUT
    while True:
        found = [n for n in inbox(notify_addr, APPROVER) if n.kind == notify_pb2.NOTIFICATION_KIND_APPROVAL_REQUESTED]
        sunk = [line for line in stack.lines if "smtp-sink" in line and mailed in line]
        if found and sunk:
            return found
        assert time.monotonic() < deadline, (
            f"after {MAIL_TIMEOUT:.0f} s: {len(found)} approval requests in {APPROVER}'s inbox, "
            f"{len(sunk)} mails to her at the SMTP sink:\n{stack.output[-6000:]}")
        time.sleep(1)


def wait_for_handover(goals_addr: str, unit: str = "eng-hardware") -> list[str]:
    """The unit's V2MOM's history once goals-worker has passed the leaver's items on (the demo's reorganisation)."""
    metadata = bearer_metadata(mint_dev_token(load("goals").auth, "kofi.mensah"))
    deadline = time.monotonic() + MAIL_TIMEOUT
    with grpc.insecure_channel(goals_addr) as channel:
        goals = goals_pb2_grpc.GoalServiceStub(channel)
        v2mom = next(v for v in goals.ListV2MOMs(goals_pb2.ListV2MOMsRequest(org_unit_id=unit, page_size=50),
                                                 metadata=metadata, timeout=10).v2moms
                     if v.cycle_id == current_cycle())
        while True:
            actions = [r.action for r in goals.ListRevisions(goals_pb2.ListRevisionsRequest(v2mom_id=v2mom.id),
                                                             metadata=metadata, timeout=10).revisions]
            if "REASSIGN_ITEMS" in actions or time.monotonic() > deadline:
                return actions
            time.sleep(1)


@pytest.mark.timeout(600)  # two stacks, the first seeding the whole demo
def test_ctrl_c_stops_everything_and_a_restart_seeds_nothing_new(start_stack, stack_env):
    address, checkins = stack_env["V2MOM_GOALS_ADDR"], stack_env["V2MOM_CHECKINS_ADDR"]
    notify = stack_env["V2MOM_NOTIFY_ADDR"]
    stack = start_stack()
    stack.wait_for(READY)
    assert grpc_healthcheck.check(address, "v2mom.v1.GoalService")[0]
    assert grpc_healthcheck.check(checkins, "v2mom.v1.CheckinService")[0]
    assert grpc_healthcheck.check(notify, "v2mom.v1.NotifyService")[0]
    assert f"export V2MOM_NOTIFY_ADDR={notify}" in stack.output
    assert f"http://{stack_env['NOTIFY_HTTP_ADDR']}" in stack.output
    for command in (f"login {APPROVER}", "inbox", "prefs", "login kofi.mensah", "deliveries"):
        assert f".venv/bin/v2mom {command}" in stack.output, command
    assert "subscribed the webhook sink to the organisation's approval notifications" in stack.output

    requests = wait_for_approval_request(stack, notify)
    assert any(n.title.startswith(f"{WAITING_NAME} asks you to approve") for n in requests), requests
    # A first start logs no error: every relay poll of a still empty outbox once failed in the store, and
    # the stack worked on regardless, so only its log showed it.
    errors = [line for line in stack.lines if re.search(r"\| error\s", line)]
    assert not errors, "\n".join(errors[:10])
    print(stack.output[stack.output.index(READY):])  # the banner, for -rP
    assert "Seed: demo organisation seeded: 60 people in 12 org units" in stack.output
    assert "check-in history seeded: " in stack.output and "over 8 weeks on 14 published V2MOMs" in stack.output
    assert "reorganisation: diego.alvarez moved to eng-quality under david.cohen (changed), omar.haddad left (changed)" \
        in stack.output
    assert "REASSIGN_ITEMS" in wait_for_handover(address), "omar.haddad's items never passed to the V2MOM's owner"
    assert f"export V2MOM_GOALS_ADDR={address}" in stack.output
    assert f"export V2MOM_CHECKINS_ADDR={checkins}" in stack.output
    for command in ("progress unit:eng-platform --tree", "progress-history unit:eng-platform", "checkins me",
                    "checkin me msr-robots-reporting-telemetry --value", "stale --unit eng-autonomy"):
        assert f".venv/bin/v2mom {command}" in stack.output, command
    children = stack.children()
    assert sorted(cmd.split(" -m ")[1].split()[0] for cmd in children.values()) == [
        "deploy.dev.smtp_sink", "deploy.dev.webhook_sink", "services.checkins.api", "services.checkins.worker",
        "services.goals.api", "services.goals.worker", "services.metrics.api", "services.metrics.worker",
        "services.notify.api", "services.notify.worker",
    ]  # MONGO_URI is set, so no wire server of its own

    # A process that dies is restarted (here: supervision is on in the real run), and Ctrl-C ends the new one too.
    worker = next(pid for pid, cmd in children.items() if "services.goals.worker" in cmd)
    os.kill(worker, signal.SIGKILL)
    stack.wait_for("goals-worker is ready again after restart 1", timeout=60)
    assert re.search(r"goals-worker was killed by SIGKILL after \d+\.\d s; restart 1 in 1 s$", stack.output, re.M)
    children.update(stack.children())
    assert sum("services.goals.worker" in cmd for pid, cmd in children.items() if alive(pid)) == 1

    stack.process.send_signal(signal.SIGINT)

    assert stack.exit_status() == 0
    assert not [pid for pid in children if alive(pid)]
    assert not grpc_healthcheck.check(address, timeout=1)[0]
    assert not grpc_healthcheck.check(notify, timeout=1)[0]
    stopped = [line.split("stopping ", 1)[1] for line in stack.lines if "devstack" in line and "| stopping " in line]
    assert stopped.index("checkins-worker") < stopped.index("checkins-api") < stopped.index("goals-api"), stopped
    assert stopped.index("notify-worker") < stopped.index("notify-api") < stopped.index("goals-api"), stopped
    assert stopped.index("notify-worker") < stopped.index("smtp-sink"), stopped

    again = start_stack()
    again.wait_for(READY)
    seeded = again.output[again.output.index(READY):].split("\n\n")[2]  # the banner's Seed: lines
    assert "Seed: demo organisation already seeded, nothing changed" in again.output, seeded
    assert "check-in history already seeded, nothing new" in again.output
    assert "reorganisation already applied" in again.output
    assert "the webhook sink was subscribed to approval notifications already" in again.output
    again.process.send_signal(signal.SIGTERM)
    assert again.exit_status() == 0


def test_no_broker_is_a_clear_message_not_a_hang(start_stack):
    # 127.0.0.2 is not where a local rabbitmq-server would come up, so none is started.
    stack = start_stack(AMQP_URI=f"amqp://guest:guest@127.0.0.2:{free_port()}/")
    assert stack.exit_status(timeout=30) == 1
    assert "RabbitMQ is not usable at amqp://guest:***@127.0.0.2:" in stack.output
    assert "apt-get install rabbitmq-server" in stack.output
    assert not stack.children()


def test_make_run_stays_in_development_mode(monkeypatch):
    monkeypatch.setenv("V2MOM_ENV", "production")
    stack = devstack.Stack(devstack.Printer())
    with pytest.raises(devstack.StackError, match="`make run` is the development stack"):
        devstack.run(stack)
    assert stack.children == []  # refused before anything started


# --- supervision: a process that exits is restarted with back-off --------------------------------------

CHILD = """\
\"\"\"python -m devstack_child RUNS PLAN: one entry of PLAN (comma-separated) per run, the last one repeating.

fail:N   exits with status N at once, never ready
up:S:N   logs "worker started" (ready), exits with status N after S seconds
serve    logs "worker started" and runs until it is stopped
\"\"\"
import json, os, sys, time
from pathlib import Path

runs = Path(sys.argv[1])
run = int(runs.read_text()) + 1 if runs.exists() else 1
Path(f"{runs}.new").write_text(str(run))
os.replace(f"{runs}.new", runs)  # whole: the test reads it meanwhile
plan = sys.argv[2].split(",")
kind, *values = plan[min(run, len(plan)) - 1].split(":")
print(f"run {run}: {kind}, MARK={os.environ.get('MARK')}", flush=True)
if kind == "fail":
    sys.exit(int(values[0]))
print(json.dumps({"msg": "worker started"}), flush=True)
if kind == "serve":
    while True:
        time.sleep(60)
time.sleep(float(values[0]))
sys.exit(int(values[1]))
"""


class Recorded(devstack.Printer):
    """Keeps each line, with when it came, instead of printing it."""

    def __init__(self):
        super().__init__(io.StringIO())
        self.lines: list[tuple[float, str, str]] = []

    def line(self, name: str, text: str) -> None:
        self.lines.append((time.monotonic(), name, text))

    def said(self) -> list[str]:
        """The devstack's own lines."""
        return [text for _, name, text in list(self.lines) if name == "devstack"]

    def text(self) -> str:
        return "\n".join(f"{name:<12}| {text}" for _, name, text in list(self.lines))


@pytest.fixture
def child_folder(tmp_path):
    (tmp_path / "devstack_child.py").write_text(CHILD)
    return tmp_path


@pytest.fixture
def supervised(child_folder):
    """A Stack of the test's own, its supervision on; stopped (every process it started ended) after the test."""
    stacks: list[devstack.Stack] = []

    def make(backoff: Backoff, env: dict[str, str] | None = None) -> devstack.Stack:
        stack = devstack.Stack(Recorded(), backoff=backoff)
        stack.env = {**(env or stack.env), "PYTHONPATH": str(child_folder)}  # for `python -m devstack_child`
        stacks.append(stack)
        stack.supervise()
        return stack

    yield make
    for stack in stacks:
        stack.stop()


def child_spec(folder: Path, plan: str, name: str = "flaky") -> ProcessSpec:
    return ProcessSpec(name, "devstack_child", LogLine("worker started", "a test child"),
                       args=(str(folder / f"{name}.runs"), plan))


def runs(folder: Path, name: str = "flaky") -> int:
    return int((folder / f"{name}.runs").read_text())


def test_the_backoff_doubles_up_to_its_cap():
    assert [Backoff().delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert [Backoff(first=0.5, cap=60).delay(n) for n in range(1, 10)] == [0.5, 1, 2, 4, 8, 16, 32, 60, 60]


def test_a_child_that_exits_is_restarted_with_backoff_same_environment_each_restart_logged(supervised, child_folder):
    stack = supervised(Backoff(first=0.2, cap=0.8, reset_after=30))
    stack.env["MARK"] = "first"
    child = stack.start(child_spec(child_folder, "up:0.5:3,up:0.5:3,fail:2,fail:2,serve"))
    stack.env["MARK"] = "changed"  # a restart keeps the environment of the first start

    wait_for(lambda: any("ready again after restart 4" in line for line in stack.printer.said()), timeout=20,
             message=f"no restart 4:\n{stack.printer.text()}")

    expected = [
        (r"^flaky exited with status 3 after \d+\.\d s; restart 1 in 0\.2 s$", 0.2),
        (r"^restarting flaky \(restart 1\)$", None),
        (r"^flaky is ready again after restart 1 \(pid \d+\)$", None),
        (r"^flaky exited with status 3 after \d+\.\d s; restart 2 in 0\.4 s$", 0.4),
        (r"^restarting flaky \(restart 2\)$", None),  # run 3 fails at once, as run 4 does
        (r"^flaky exited with status 2 before it was ready; restart 3 in 0\.8 s "
         r"\(crash loop: 3 failures in a row, now retried every 0\.8 s; its log is above\)$", 0.8),
        (r"^restarting flaky \(restart 3\)$", None),
        (r"^flaky exited with status 2 before it was ready; restart 4 in 0\.8 s \(crash loop: 4 failures", 0.8),
        (r"^restarting flaky \(restart 4\)$", None),
        (r"^flaky is ready again after restart 4 \(pid \d+\)$", None),
    ]
    said = stack.printer.said()
    assert len(said) == len(expected), stack.printer.text()
    for line, (pattern, _) in zip(said, expected):
        assert re.search(pattern, line), f"{line!r} !~ {pattern!r}\n{stack.printer.text()}"
    # Each restart waited out its delay (and not much more: the supervisor looks every 0.1 s).
    exits = [at for at, name, text in stack.printer.lines if name == "devstack" and " restart " in text and " in " in text]
    restarts = [at for at, name, text in stack.printer.lines if name == "devstack" and text.startswith("restarting")]
    for (pattern, delay), exited, restarted in zip([e for e in expected if e[1]], exits, restarts):
        assert delay - 0.02 <= restarted - exited < delay + 1.0, (pattern, restarted - exited)

    assert runs(child_folder) == 5 and child.restarts == 4 and stack.children == [child]
    started = [text for _, name, text in stack.printer.lines if name == "flaky" and text.startswith("run ")]
    assert started == [f"run {n}: {kind}, MARK=first" for n, kind in
                       enumerate(("up", "up", "fail", "fail", "serve"), start=1)], started
    assert child.exit_status is None


def test_the_backoff_starts_again_once_the_child_stayed_up(supervised, child_folder):
    stack = supervised(Backoff(first=0.2, cap=10, reset_after=1.0))
    stack.start(child_spec(child_folder, "up:0.3:1,up:0.3:1,up:1.8:1,serve"))

    wait_for(lambda: runs(child_folder) == 4 and "ready again after restart 3" in stack.printer.text(), timeout=20,
             message=f"no restart 3:\n{stack.printer.text()}")

    delays = [re.search(r"restart \d in (\S+) s$", line).group(1) for line in stack.printer.said() if "exited" in line]
    assert delays == ["0.2", "0.4", "0.2"], stack.printer.text()  # the third run was up 1.8 s: a fresh start


def test_a_killed_server_is_restarted_once_its_port_is_free(supervised):
    stack = supervised(Backoff(first=0.5, cap=4))
    port = free_port()
    child = stack.start(ProcessSpec("web", "http.server", PortOpen("127.0.0.1", port, "a test server"),
                                    args=(str(port), "--bind", "127.0.0.1")))
    first = child.process.pid

    os.kill(first, signal.SIGKILL)
    wait_for(lambda: child.process.pid != first or child.exit_status is not None, timeout=5)
    # Something else takes the port before the restart: the readiness check would take it for ours.
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        wait_for(lambda: any("cannot restart" in line for line in stack.printer.said()), timeout=5,
                 message=stack.printer.text())
    wait_for(lambda: any("web is ready again" in line for line in stack.printer.said()), timeout=10,
             message=stack.printer.text())

    assert stack.printer.said() == [
        stack.printer.said()[0],
        f"web cannot restart: 127.0.0.1:{port} is in use by another process; restart 1 in 1 s",
        "restarting web (restart 1)",
        f"web is ready again after restart 1 (pid {child.process.pid})",
    ], stack.printer.text()
    assert re.fullmatch(r"web was killed by SIGKILL after \d+\.\d s; restart 1 in 0\.5 s", stack.printer.said()[0])
    assert child.process.pid != first and child.exit_status is None


def test_a_real_worker_killed_comes_back(supervised, stack_env):
    stack = supervised(Backoff(), env=stack_env)
    worker = stack.start(next(spec for spec in devstack.SERVICES if spec.name == "goals-worker"))
    first = worker.process.pid

    os.kill(first, signal.SIGKILL)

    wait_for(lambda: "goals-worker is ready again after restart 1" in stack.printer.text(), timeout=30,
             message=stack.printer.text())
    assert re.fullmatch(r"goals-worker was killed by SIGKILL after \d+\.\d s; restart 1 in 1 s",
                        stack.printer.said()[0]), stack.printer.text()
    assert not alive(first) and alive(worker.process.pid) and worker.process.pid != first
    assert sum(text == "worker started" or '"worker started"' in text
               for _, name, text in stack.printer.lines if name == "goals-worker") == 2


def test_a_child_that_exits_before_it_is_ready_at_first_start_is_not_restarted(supervised, child_folder):
    stack = supervised(Backoff(first=0.1))
    with pytest.raises(ChildExited) as exited:
        stack.start(child_spec(child_folder, "fail:2"))
    assert (exited.value.how, exited.value.stack_status) == ("exited with status 2", 2)
    time.sleep(0.5)
    assert runs(child_folder) == 1 and stack.printer.said() == [], stack.printer.text()


# `make run` itself (main: its signal handlers and exit status) with one test child instead of the whole stack.
STACK_OF_ONE = """\
import sys
from deploy import devstack

def run(stack):
    stack.backoff = devstack.Backoff(first=30)
    stack.env["PYTHONPATH"] = sys.argv[1]
    stack.supervise()
    stack.start(devstack.ProcessSpec("flaky", "devstack_child", devstack.LogLine("worker started", "a test child"),
                                     args=(sys.argv[1] + "/flaky.runs", sys.argv[2])))
    print("the stack of one is ready", flush=True)
    stack.watch()

devstack.run = run
sys.exit(devstack.main())
"""


@pytest.fixture
def start_stack_of_one(child_folder):
    started: list[DevStack] = []

    def start(plan: str) -> DevStack:
        stack = DevStack(dict(os.environ), args=("-c", STACK_OF_ONE, str(child_folder), plan))
        started.append(stack)
        return stack

    yield start
    for stack in started:
        stack.kill()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_a_backoff_stops_the_stack_at_once(start_stack_of_one, child_folder, signum):
    stack = start_stack_of_one("up:0.3:1,serve")
    stack.wait_for("flaky exited with status 1 after", timeout=30)
    assert re.search(r"restart 1 in 30 s$", stack.output, re.M), stack.output
    children = stack.children()

    began = time.monotonic()
    stack.process.send_signal(signum)

    assert stack.exit_status(timeout=10) == 0
    assert time.monotonic() - began < 3, stack.output
    assert "stopping the stack" in stack.output and "restarting" not in stack.output
    assert runs(child_folder) == 1 and not [pid for pid in children if alive(pid)]


def test_a_config_error_at_first_start_stops_the_stack_with_its_status(start_stack_of_one, child_folder):
    stack = start_stack_of_one("fail:2")
    assert stack.exit_status(timeout=30) == 2
    assert "flaky exited with status 2; stopping the stack" in stack.output
    assert "restart" not in stack.output and runs(child_folder) == 1
