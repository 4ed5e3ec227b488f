"""`make run`'s devstack as a real process: ready, healthy, idempotent on restart, and leaves nothing behind.

The whole stack, notify and its dev sinks included, on the test wire server with ports of its own; the
demo seed's pending approval reaches the approver's inbox and, through the SMTP sink, her mailbox."""

import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import grpc
import pymongo
import pytest
from v2mom.v1 import notify_pb2, notify_pb2_grpc

from deploy import grpc_healthcheck
from services.platform.api.auth import bearer_metadata, mint_dev_token
from services.platform.core.config import load
from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
READY = "V2MOM dev stack is ready."
# deploy/demo/goals/v2moms/fy27-li.wei.yaml: submitted, never decided; her manager approves.
WAITING_NAME, APPROVER = "Li Wei", "priya.raman"
MAIL_TIMEOUT = 90.0  # after the banner: notify-worker dispatches every half second, behind the check-in history's events


class DevStack:
    """`python -m deploy.devstack` with its output collected line by line."""

    def __init__(self, env: dict[str, str]):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "deploy.devstack"], cwd=ROOT, env=env, text=True,
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
def stack_env(mongo_uri, isolated_broker_uri):
    """Environment for a devstack on the test wire server: fresh databases, free ports, a vhost of its own.

    Its workers' queues have fixed names, so on a shared vhost another stack's
    workers (or a test's) would take its events.
    """
    suffix = uuid.uuid4().hex[:10]
    databases = {"MONGO_DB": f"goals_devstack_{suffix}", "CHECKINS_MONGO_DB": f"checkins_devstack_{suffix}",
                 "METRICS_MONGO_DB": f"metrics_devstack_{suffix}", "NOTIFY_MONGO_DB": f"notify_devstack_{suffix}"}
    env = {
        **os.environ,
        **databases,
        "MONGO_URI": mongo_uri,
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
    client = pymongo.MongoClient(mongo_uri)
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
    print(stack.output[stack.output.index(READY):])  # the banner, for -rP
    assert "Seed: demo organisation seeded: 60 people in 12 org units" in stack.output
    assert "check-in history seeded: " in stack.output and "over 8 weeks on 14 published V2MOMs" in stack.output
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
    assert "Seed: demo organisation already seeded, nothing changed" in again.output
    assert "check-in history already seeded, nothing new" in again.output
    assert "the webhook sink was subscribed to approval notifications already" in again.output
    again.process.send_signal(signal.SIGTERM)
    assert again.exit_status() == 0


def test_a_crashing_child_stops_the_stack_with_its_status(start_stack):
    stack = start_stack()
    stack.wait_for(READY)
    children = stack.children()
    worker = next(pid for pid, cmd in children.items() if "services.goals.worker" in cmd)

    os.kill(worker, signal.SIGKILL)

    assert stack.exit_status() == 128 + signal.SIGKILL
    assert "goals-worker was killed by SIGKILL; stopping the stack" in stack.output
    assert not [pid for pid in children if alive(pid)]


def test_no_broker_is_a_clear_message_not_a_hang(start_stack):
    # 127.0.0.2 is not where a local rabbitmq-server would come up, so none is started.
    stack = start_stack(AMQP_URI=f"amqp://guest:guest@127.0.0.2:{free_port()}/")
    assert stack.exit_status(timeout=30) == 1
    assert "RabbitMQ is not usable at amqp://guest:***@127.0.0.2:" in stack.output
    assert "apt-get install rabbitmq-server" in stack.output
    assert not stack.children()


def test_make_run_stays_in_development_mode(monkeypatch):
    from deploy import devstack

    monkeypatch.setenv("V2MOM_ENV", "production")
    stack = devstack.Stack(devstack.Printer())
    with pytest.raises(devstack.StackError, match="`make run` is the development stack"):
        devstack.run(stack)
    assert stack.children == []  # refused before anything started
