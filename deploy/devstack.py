"""`make run`: the whole system on this machine, with the demo organisation seeded.

    .venv/bin/python -m deploy.devstack

1. MongoDB: MONGO_URI when set; else whatever listens on 127.0.0.1:27017; else
   the mongoeco wire server, started here, keeping its data in var/mongo.sqlite.
2. RabbitMQ at AMQP_URI (default amqp://guest:guest@127.0.0.1:5672/); a local
   rabbitmq-server is started (detached, left running) if it is installed.
3. Every process in SERVICES, in order, each ready before the next starts; then
   notify's dev sinks (deploy/dev/smtp_sink.py on 127.0.0.1:NOTIFY_SMTP_PORT,
   default 2525, unless NOTIFY_SMTP_HOST names a relay of your own;
   deploy/dev/webhook_sink.py on WEBHOOK_SINK_ADDR, default 127.0.0.1:8099), which
   print what they receive, and notify-api and notify-worker (NOTIFY_SERVICES).
   The webhook sink is subscribed (through notify-api, as an admin) to the
   whole organisation's approval notifications. All of it before the seed, so
   the workers' queues exist when its first events leave.
4. The demo organisation (deploy/demo/goals_seed.py), through the goals API, then
   its eight weeks of check-in history (deploy/demo/checkins_seed.py), through the
   check-ins use cases called in this process on the check-ins database (the
   API's own code, minus a gRPC round trip and a token per check-in); the
   check-ins worker rolls them up as it would API calls'. Last, the demo's
   reorganisation (deploy/demo/reorg.py): one person moves team, another
   leaves, through the directory API as an HRIS sync would.

It says how long each phase took, so a slow start shows where the time went.

Each service keeps its own database: goals in MONGO_DB (default "goals"),
check-ins in CHECKINS_MONGO_DB (default "checkins"), metrics in METRICS_MONGO_DB
(default "metrics"), notify in NOTIFY_MONGO_DB (default "notify").

A process that exits after it was ready is restarted, as docker compose's
`restart: unless-stopped` and Kubernetes' `restartPolicy: Always` do, whatever
its status: after a back-off of 1 s, doubling with each exit in a row up to
30 s, and back to 1 s once it had stayed up 60 s (Backoff), with the spec and
environment of its first start. A line says which process exited, how (status
or signal), after how long, the restart's number and the delay; another when
it is ready again (the readiness check of its first start; one not ready within
READY_TIMEOUT is stopped and backs off again). This holds for every process
started here, from its first readiness on, the seed included:

- the mongoeco store too: its data is in var/mongo.sqlite, and the services'
  drivers reconnect once it is back; so do the dev sinks, which keep nothing.
  Not RabbitMQ, nor a MongoDB of MONGO_URI's or one already listening: those
  are not ours to restart.
- during the seed, a restarted worker catches up from its durable queues; an
  API the seed calls fails the seed while it is down, and that stops the stack
  as any seed error does (`make run` again: the seed is idempotent).
  notify-worker, paused on purpose during the check-in history, is not.
- a process that keeps exiting is never given up on (Kubernetes'
  CrashLoopBackOff): it is restarted every 30 s, each exit logged with its
  output and flagged as a crash loop, so fixing its code or what it depends on
  brings it back without restarting the stack.
- but a process that exits before it is ready at its first start stops the
  whole stack at once, with the error it printed and its status: that is a
  configuration error or a bug, which restarts would only repeat.

Ctrl-C or SIGTERM stops every process this started, last started first, at
once: a process waiting out its back-off is not restarted any more.

A new service joins by appending a ProcessSpec to SERVICES.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NoReturn
from urllib.parse import unquote, urlsplit

import amqp
import grpc
import pymongo
from tqdm import tqdm
from v2mom.v1 import notify_pb2, notify_pb2_grpc

from deploy import grpc_healthcheck
from deploy.demo import checkins_seed
from deploy.demo.checkins import StoryError
from deploy.demo.goals import DemoDataError
from deploy.demo.goals_seed import SeedError, seed
from deploy.demo.reorg import ReorgError, reorganise
from deploy.demo.goals import load_org
from services.goals.scim.http import DEV_TOKEN as SCIM_DEV_TOKEN
from services.platform.api.auth import bearer_metadata, mint_dev_token
from services.platform.core.config import ConfigError, is_production, load

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MONGO_URI = "mongodb://127.0.0.1:27017/?directConnection=true"
DEFAULT_AMQP_URI = "amqp://guest:guest@127.0.0.1:5672/"
MONGO_PORT = 27017
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


class StackError(RuntimeError):
    """The stack cannot start; the message says what to do about it."""


class Shutdown(Exception):
    """SIGINT or SIGTERM arrived: stop everything and exit 0."""


# --- what runs ----------------------------------------------------------------------


@dataclass(frozen=True)
class GrpcServing:
    """Ready when the gRPC health service reports SERVING; the address is read from env_var."""

    env_var: str
    default_addr: str
    service: str
    http_env_var: str = ""  # where the process also serves HTTP (/metrics), for the banner
    http_default: str = ""

    @property
    def address(self) -> str:
        return os.environ.get(self.env_var) or self.default_addr

    @property
    def http_address(self) -> str:
        return (os.environ.get(self.http_env_var) or self.http_default) if self.http_env_var else ""

    def check(self, child: "Child") -> bool:
        return grpc_healthcheck.check(self.address, self.service, timeout=1.0)[0]

    def taken(self) -> bool:
        host, _, port = self.address.rpartition(":")
        return port_open(host, int(port))

    def where(self) -> str:
        http = f", http://{self.http_address}" if self.http_address else ""
        return f"{self.address} (gRPC){http}"


@dataclass(frozen=True)
class LogLine:
    """Ready once the process has logged this message (for workers, which serve no port)."""

    message: str
    about: str

    def check(self, child: "Child") -> bool:
        return child.has_logged(self.message)

    def where(self) -> str:
        return self.about


@dataclass(frozen=True)
class PortOpen:
    """Ready once something accepts connections there; `env_var` says how to move it when it is taken."""

    host: str
    port: int
    about: str
    env_var: str = ""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def check(self, child: "Child") -> bool:
        return port_open(self.host, self.port)

    def taken(self) -> bool:
        return port_open(self.host, self.port)

    def where(self) -> str:
        return self.about


@dataclass(frozen=True)
class Database:
    """The service's own database: MONGO_DB for its processes, taken from `env_var` when that is set."""

    env_var: str
    default: str

    def name(self, env: dict[str, str]) -> str:
        return env.get(self.env_var) or self.default


@dataclass(frozen=True)
class ProcessSpec:
    name: str  # the prefix of its log lines
    module: str  # started as `python -m <module>`
    ready: GrpcServing | LogLine | PortOpen
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    database: Database | None = None

    def environment(self, base: dict[str, str]) -> dict[str, str]:
        env = {**base, **self.env, "PYTHONUNBUFFERED": "1"}
        if isinstance(self.ready, GrpcServing):
            env["GRPC_ADDR"] = self.ready.address  # each API listens where the stack expects it
        if self.database:
            env["MONGO_DB"] = self.database.name(base)
        return env


# The v2mom CLI reads V2MOM_GOALS_ADDR and V2MOM_CHECKINS_ADDR too, so one export
# points both the stack and the CLI at another port.
GOALS_API = GrpcServing("V2MOM_GOALS_ADDR", "127.0.0.1:50051", "v2mom.v1.GoalService",
                        "SCIM_HTTP_ADDR", "127.0.0.1:8090")  # /metrics, and SCIM provisioning under /scim/v2
CHECKINS_API = GrpcServing("V2MOM_CHECKINS_ADDR", "127.0.0.1:50052", "v2mom.v1.CheckinService")
METRICS_API = GrpcServing("V2MOM_METRICS_ADDR", "127.0.0.1:50053", "v2mom.v1.MetricsService",
                          "METRICS_HTTP_ADDR", "127.0.0.1:9100")
NOTIFY_API = GrpcServing("V2MOM_NOTIFY_ADDR", "127.0.0.1:50054", "v2mom.v1.NotifyService",
                         "NOTIFY_HTTP_ADDR", "127.0.0.1:9101")
GOALS_DB = Database("MONGO_DB", "goals")
CHECKINS_DB = Database("CHECKINS_MONGO_DB", "checkins")
METRICS_DB = Database("METRICS_MONGO_DB", "metrics")
NOTIFY_DB = Database("NOTIFY_MONGO_DB", "notify")
DEFAULT_SMTP_PORT = 2525
DEFAULT_WEBHOOK_SINK_ADDR = "127.0.0.1:8099"

# Started in this order, stopped in reverse: checkins-api after goals-api, which it
# calls (GOALS_ADDR, see run); each worker after its API; metrics-worker before the
# seed runs, so its queues exist when the first events leave. notify's processes
# follow (NOTIFY_SERVICES), after the sinks they send to.
SERVICES: list[ProcessSpec] = [
    ProcessSpec("goals-api", "services.goals.api", GOALS_API, database=GOALS_DB),
    ProcessSpec("goals-worker", "services.goals.worker", LogLine("worker started", "outbox relay to RabbitMQ"),
                database=GOALS_DB),
    ProcessSpec("checkins-api", "services.checkins.api", CHECKINS_API, database=CHECKINS_DB),
    ProcessSpec("checkins-worker", "services.checkins.worker",
                LogLine("worker started", "outbox relay, progress roll-up, staleness timer"), database=CHECKINS_DB),
    ProcessSpec("metrics-api", "services.metrics.api", METRICS_API, database=METRICS_DB),
    ProcessSpec("metrics-worker", "services.metrics.worker",
                LogLine("worker started", "engagement aggregates from goals and check-ins events"), database=METRICS_DB),
]

# After the sinks (start_notify), before the seed: its approvals are the demo's first notifications.
# notify-worker reaches goals-api (GOALS_ADDR) for people it has not seen yet.
NOTIFY_SERVICES: list[ProcessSpec] = [
    ProcessSpec("notify-api", "services.notify.api", NOTIFY_API, database=NOTIFY_DB),
    ProcessSpec("notify-worker", "services.notify.worker",
                LogLine("worker started", "inbox, email and webhooks from goals and check-ins events"),
                database=NOTIFY_DB),
]


def smtp_sink_spec() -> ProcessSpec | None:
    """The dev mail relay on 127.0.0.1:NOTIFY_SMTP_PORT; None when NOTIFY_SMTP_HOST names a relay of your own."""
    if os.environ.get("NOTIFY_SMTP_HOST"):
        return None
    port = int(os.environ.get("NOTIFY_SMTP_PORT") or DEFAULT_SMTP_PORT)
    return ProcessSpec(
        "smtp-sink", "deploy.dev.smtp_sink",
        PortOpen("127.0.0.1", port, f"127.0.0.1:{port} (SMTP; prints a line per mail)", "NOTIFY_SMTP_PORT"),
        args=("--host", "127.0.0.1", "--port", str(port)),
    )


def webhook_sink_spec() -> ProcessSpec:
    host, _, port = (os.environ.get("WEBHOOK_SINK_ADDR") or DEFAULT_WEBHOOK_SINK_ADDR).rpartition(":")
    return ProcessSpec(
        "webhook-sink", "deploy.dev.webhook_sink",
        PortOpen(host, int(port), f"http://{host}:{port} (prints a line per webhook POST)", "WEBHOOK_SINK_ADDR"),
        args=("--host", host, "--port", port),
    )


def mongo_spec() -> ProcessSpec:
    sqlite = ROOT / "var" / "mongo.sqlite"
    return ProcessSpec(
        "mongo",
        "deploy.dev.mongo_server",
        PortOpen("127.0.0.1", MONGO_PORT, f"{DEFAULT_MONGO_URI.split('/?')[0]} (mongoeco, {sqlite.relative_to(ROOT)})"),
        args=("--host", "127.0.0.1", "--port", str(MONGO_PORT), "--sqlite", str(sqlite)),
    )


# --- log output -----------------------------------------------------------------------------


class Printer:
    """One readable line per log record, prefixed with the process that wrote it."""

    COLOURS = ("36", "35", "33", "32", "34", "31")
    SKIP = ("ts", "level", "msg", "service", "logger")

    def __init__(self, stream=sys.stdout):
        self.stream = stream
        self.colour = stream.isatty() and not os.environ.get("NO_COLOR")
        self.names: dict[str, str] = {}

    def line(self, name: str, text: str) -> None:
        prefix = f"{time.strftime('%H:%M:%S')} {self._paint(name, f'{name:<15}')}|"
        # tqdm.write keeps the seed's progress bar intact while children log.
        tqdm.write(f"{prefix} {self._readable(text)}", file=self.stream)
        self.stream.flush()

    def say(self, text: str) -> None:
        self.line("devstack", text)

    def _readable(self, text: str) -> str:
        try:
            record = json.loads(text)
        except ValueError:
            return text
        if not isinstance(record, dict) or "msg" not in record:
            return text
        extras = " ".join(f"{k}={v}" for k, v in record.items() if k not in self.SKIP and k != "exc")
        readable = f"{record.get('level', 'info'):<7} {record['msg']} {extras}".rstrip()
        if record.get("exc"):
            readable += "\n" + record["exc"]
        return readable

    def _paint(self, name: str, text: str) -> str:
        if not self.colour:
            return text
        colour = self.names.setdefault(name, self.COLOURS[len(self.names) % len(self.COLOURS)])
        return f"\033[{colour}m{text}\033[0m"


# --- the processes ------------------------------------------------------------------------


class Child:
    """A started process and the thread that copies its output, line by line, to the printer.

    ``respawn`` starts its spec again, in the environment of its first start; the fields below are what the
    stack's supervision keeps about it.
    """

    def __init__(self, spec: ProcessSpec, env: dict[str, str], printer: Printer):
        self.spec = spec
        self.environment = spec.environment(env)  # kept: a restart gets the same environment
        self.printer = printer
        self.supervised = False  # restarted when it exits: set once it has been ready, cleared by set_aside
        self.restarts = 0  # how often it was restarted (kubectl's RESTARTS)
        self.failures_in_a_row = 0  # exits (or failed restarts) since it last stayed up Backoff.reset_after
        self.ready_since: float | None = None  # None until this run of it is ready
        self.restart_at: float | None = None  # set while it waits out its back-off
        self._spawn()

    def _spawn(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.spec.module, *self.spec.args],
            cwd=ROOT,
            env=self.environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # Its own session: Ctrl-C reaches only the devstack, which then stops
            # the processes in order (workers before the store they write to).
            start_new_session=True,
        )
        self.started_at = time.monotonic()
        self.ready_since = None
        self._messages: set[str] = set()  # this run's: a restarted worker is ready when it logs it again
        self._pump = threading.Thread(target=self._copy_output, args=(self.process, self._messages), daemon=True)
        self._pump.start()

    def respawn(self) -> None:
        self.restarts += 1
        self.restart_at = None
        self._spawn()

    def _copy_output(self, process: subprocess.Popen, messages: set[str]) -> None:
        for raw in process.stdout:
            text = raw.rstrip("\n")
            if not text:
                continue
            try:
                messages.add(json.loads(text).get("msg", ""))
            except (ValueError, AttributeError):
                pass
            self.printer.line(self.spec.name, text)

    def has_logged(self, message: str) -> bool:
        return message in self._messages

    @property
    def exit_status(self) -> int | None:
        return self.process.poll()

    def reap(self) -> None:
        """After it exited: ends what it left in its process group and prints the rest of its output (its traceback)."""
        self._signal(signal.SIGKILL)
        self.process.wait()
        self._pump.join(timeout=5)

    def stop(self, hurry: Callable[[], bool]) -> None:
        """SIGTERM to its process group, then SIGKILL after STOP_TIMEOUT (or at a second Ctrl-C)."""
        if self.process.poll() is None:
            self._signal(signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT
            while self.process.poll() is None and time.monotonic() < deadline and not hurry():
                time.sleep(0.05)
            if self.process.poll() is None:
                self._signal(signal.SIGKILL)
        self.process.wait()
        self._pump.join(timeout=5)

    def _signal(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass


@dataclass(frozen=True)
class Backoff:
    """The wait before a restart: `first`, doubling with each exit in a row up to `cap`.

    An exit after the process had been ready for `reset_after` seconds starts again at `first`
    (Kubernetes' CrashLoopBackOff does the same, from 10 s up to 5 minutes, reset after 10 minutes).
    """

    first: float = 1.0
    cap: float = 30.0
    reset_after: float = 60.0

    def delay(self, failures_in_a_row: int) -> float:
        return min(self.cap, self.first * 2 ** (failures_in_a_row - 1))


def how_it_ended(status: int) -> str:
    if status >= 0:
        return f"exited with status {status}"
    try:
        return f"was killed by {signal.Signals(-status).name}"
    except ValueError:  # a signal without a name (SIGRTMIN+n)
        return f"was killed by signal {-status}"


class Stack:
    def __init__(self, printer: Printer, backoff: Backoff = Backoff(), ready_timeout: float = READY_TIMEOUT):
        self.printer = printer
        self.children: list[Child] = []
        self.env = dict(os.environ)
        self.external: list[tuple[str, str]] = []  # (name, where) of what runs without us
        self.hurry = False
        self.began = time.monotonic()
        self.backoff = backoff
        self.ready_timeout = ready_timeout
        # The supervisor thread and this one (start, set_aside, stop) change the children under this lock.
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._supervisor_error: BaseException | None = None

    def start(self, spec: ProcessSpec) -> Child:
        """Starts a process and waits until it is ready; from then on it is supervised (restarted when it exits).

        Raises ChildExited when it exits before it is ready: at its first start that is a configuration
        error or a bug, and restarting it would only print the same error again and again.
        """
        if isinstance(spec.ready, GrpcServing | PortOpen) and spec.ready.taken():
            # Otherwise the readiness check would find the other server and call ours ready.
            setting = spec.ready.env_var
            move = f", or set {setting} to a free {'port' if setting.endswith('_PORT') else 'host:port'}" if setting else ""
            raise StackError(f"{spec.ready.address} is in use already (another `make run`?): stop it{move}")
        with self._lock:
            child = Child(spec, self.env, self.printer)
            self.children.append(child)
        deadline = time.monotonic() + self.ready_timeout
        while not spec.ready.check(child):
            if child.exit_status is not None:
                raise ChildExited(child)
            if time.monotonic() > deadline:
                raise StackError(f"{spec.name} was not ready after {self.ready_timeout:.0f} s; its log is above")
            time.sleep(0.1)
        with self._lock:
            child.ready_since = time.monotonic()
            child.supervised = True
        return child

    def set_aside(self, child: Child) -> None:
        """Stops one process on purpose: it is no longer watched, and ``start`` brings its spec back later."""
        self.printer.say(f"pausing {child.spec.name}")
        with self._lock:
            child.supervised = False
            self.children.remove(child)
        child.stop(lambda: self.hurry)

    def first_exited(self) -> Child | None:
        return next((c for c in self.children if c.exit_status is not None), None)

    # --- supervision: restart what exits, as compose's `restart: unless-stopped` and Kubernetes do ---

    def supervise(self) -> None:
        """Starts the thread that restarts supervised processes when they exit (once; ``stop`` ends it)."""
        if self._supervisor is None:
            self._supervisor = threading.Thread(target=self._supervise, name="devstack-supervisor", daemon=True)
            self._supervisor.start()

    def _supervise(self) -> None:
        try:
            while not self._stopping.wait(0.1):
                self.supervise_once()
        except Exception as error:  # a bug here: watch, in the main thread, reports it and the stack stops
            self._supervisor_error = error

    def supervise_once(self) -> None:
        """One look at every supervised process: notes an exit, restarts after the back-off, sees it ready again."""
        for child in list(self.children):
            with self._lock:
                if self._stopping.is_set():
                    return
                if child.supervised and child in self.children:
                    self._tend(child)

    def _tend(self, child: Child) -> None:
        name, now = child.spec.name, time.monotonic()
        if child.restart_at is not None:
            if now >= child.restart_at:
                self._restart(child)
            return
        status = child.exit_status
        if status is None:
            if child.ready_since is not None:
                return
            if child.spec.ready.check(child):
                child.ready_since = time.monotonic()
                self.printer.say(f"{name} is ready again after restart {child.restarts} (pid {child.process.pid})")
            elif now - child.started_at > self.ready_timeout:
                self.printer.say(f"{name} was not ready {self.ready_timeout:g} s after restart {child.restarts}; stopping it")
                child.stop(lambda: self.hurry or self._stopping.is_set())
                self._back_off(child, f"{name} was not ready in time")
            return
        child.reap()
        ran = f"after {now - child.started_at:.1f} s" if child.ready_since is not None else "before it was ready"
        self._back_off(child, f"{name} {how_it_ended(status)} {ran}")

    def _back_off(self, child: Child, what_happened: str) -> None:
        now = time.monotonic()
        if child.ready_since is not None and now - child.ready_since >= self.backoff.reset_after:
            child.failures_in_a_row = 0  # it had been up long enough: this is a new problem, not the old one again
        child.failures_in_a_row += 1
        delay = self.backoff.delay(child.failures_in_a_row)
        child.restart_at = now + delay
        looping = (f" (crash loop: {child.failures_in_a_row} failures in a row, now retried every {self.backoff.cap:g} s;"
                   " its log is above)") if delay >= self.backoff.cap and child.failures_in_a_row > 1 else ""
        self.printer.say(f"{what_happened}; restart {child.restarts + 1} in {delay:g} s{looping}")

    def _restart(self, child: Child) -> None:
        ready = child.spec.ready
        if isinstance(ready, GrpcServing | PortOpen) and ready.taken():
            # Something else listens there now: its readiness would be taken for ours.
            self._back_off(child, f"{child.spec.name} cannot restart: {ready.address} is in use by another process")
            return
        self.printer.say(f"restarting {child.spec.name} (restart {child.restarts + 1})")
        child.respawn()

    def watch(self) -> NoReturn:
        """Blocks while the supervisor keeps everything running; Ctrl-C or SIGTERM (Shutdown) ends it."""
        self.supervise()
        while self._supervisor.is_alive():
            time.sleep(0.2)
        raise StackError(f"supervising the processes failed: {self._supervisor_error!r}")

    def stop(self) -> None:
        """Ends the supervision (a back-off wait included: nothing is restarted any more), then every process."""
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=STOP_TIMEOUT)
        with self._lock:
            children = list(self.children)
        for child in reversed(children):
            if child.exit_status is None:
                self.printer.say(f"stopping {child.spec.name}")
            child.stop(lambda: self.hurry)


class ChildExited(Exception):
    """A process exited before it was ready at its first start: the stack stops with its status."""

    def __init__(self, child: Child):
        super().__init__(child.spec.name)
        self.child = child

    @property
    def how(self) -> str:
        return how_it_ended(self.child.exit_status or 0)

    @property
    def stack_status(self) -> int:
        status = self.child.exit_status or 0
        if status < 0:
            return 128 - status  # killed by a signal: the shell's convention
        return status or 1  # a service that exits at all, even cleanly, has failed the stack


# --- infrastructure ----------------------------------------------------------------------


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def ensure_mongo(stack: Stack) -> str:
    """The MongoDB URI the services use; starts the wire server when nothing else is there."""
    configured = os.environ.get("MONGO_URI")
    if configured:
        _require_mongo(configured, "MONGO_URI")
        stack.external.append(("mongo", f"{_redact(configured)} (from MONGO_URI)"))
        return configured
    if port_open("127.0.0.1", MONGO_PORT):
        _require_mongo(DEFAULT_MONGO_URI, f"whatever listens on 127.0.0.1:{MONGO_PORT}")
        stack.printer.say(f"using the MongoDB already listening on 127.0.0.1:{MONGO_PORT}")
        stack.external.append(("mongo", f"127.0.0.1:{MONGO_PORT} (already running)"))
        return DEFAULT_MONGO_URI
    stack.start(mongo_spec())
    return DEFAULT_MONGO_URI


def _require_mongo(uri: str, source: str) -> None:
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=3000)
    try:
        client.admin.command("ping")
    except pymongo.errors.PyMongoError as error:
        raise StackError(f"{source} does not answer as MongoDB: {error}") from None
    finally:
        client.close()


def ensure_rabbitmq(printer: Printer) -> str:
    uri = os.environ.get("AMQP_URI") or DEFAULT_AMQP_URI
    problem = broker_problem(uri)
    if problem is None:
        return uri
    host = urlsplit(uri).hostname or ""
    if "refused" in problem and host in ("127.0.0.1", "localhost") and shutil.which("rabbitmq-server"):
        printer.say("RabbitMQ is not running: starting it with `rabbitmq-server -detached` (it keeps running after)")
        subprocess.run(["rabbitmq-server", "-detached"], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_TIMEOUT
        while (problem := broker_problem(uri)) is not None and time.monotonic() < deadline:
            time.sleep(1)
        if problem is None:
            return uri
    raise StackError(
        f"RabbitMQ is not usable at {_redact(uri)}: {problem}\n"
        "  Get one running, then `make run` again:\n"
        "    sudo apt-get install rabbitmq-server      (Debian/Ubuntu; it starts by itself)\n"
        "    docker run -d --name rabbitmq -p 5672:5672 rabbitmq:3.13-management\n"
        "  or point AMQP_URI at a broker you have."
    )


def broker_problem(uri: str) -> str | None:
    """None when the broker accepts our credentials, else what went wrong."""
    parts = urlsplit(uri)
    connection = amqp.Connection(
        host=f"{parts.hostname or '127.0.0.1'}:{parts.port or 5672}",
        userid=unquote(parts.username or "guest"),
        password=unquote(parts.password or "guest"),
        virtual_host=unquote(parts.path[1:]) or "/",
        connect_timeout=3,
    )
    try:
        connection.connect()
    except amqp.exceptions.AccessRefused:
        return "it refused the user name and password"
    except ConnectionRefusedError:
        return "connection refused"
    except (OSError, amqp.exceptions.AMQPError) as error:
        return str(error) or type(error).__name__
    else:
        return None
    finally:
        try:
            connection.close()
        except Exception:  # a half-open connection may fail to close; it is gone either way
            pass


def _redact(uri: str) -> str:
    parts = urlsplit(uri)
    if not parts.password:
        return uri
    return uri.replace(f":{parts.password}@", ":***@", 1)


# --- the run ------------------------------------------------------------------------------


def run(stack: Stack) -> NoReturn:
    if is_production():
        raise StackError("`make run` is the development stack (development tokens, the demo's people): "
                         "unset V2MOM_ENV, or run production with docker compose")
    stack.supervise()  # from here on, a process that was ready and exits is restarted (Stack.start, Backoff)
    mongo_uri = ensure_mongo(stack)
    amqp_uri = ensure_rabbitmq(stack.printer)
    stack.external.append(("rabbitmq", _redact(amqp_uri)))
    # GOALS_ADDR: where the check-ins processes and notify-worker reach goals-api.
    # CHECKINS_ADDR: where metrics-api reads check-ins for RebuildAggregates.
    stack.env.update(MONGO_URI=mongo_uri, AMQP_URI=amqp_uri, GOALS_ADDR=GOALS_API.address, CHECKINS_ADDR=CHECKINS_API.address)
    # SCIM on goals-api with the development token (production refuses it; services/goals/README.md).
    stack.env.update(SCIM_HTTP_ADDR=GOALS_API.http_address, SCIM_TOKEN=os.environ.get("SCIM_TOKEN") or SCIM_DEV_TOKEN)
    started = time.monotonic()
    for spec in SERVICES:
        stack.start(spec)
    notify_worker, webhook_url = start_notify(stack)
    timings = {"start the services": time.monotonic() - started}
    # notify-worker sees the organisation's submissions and decisions as they happen, then waits out the
    # eight weeks of check-in history: its durable queues keep those events, and it catches up after the
    # banner instead of competing with the seed for the one embedded store (which doubled the first start).
    # The sink is subscribed by the demo's admin, a person of the directory, so once the seed has written it.
    summary = seed_demo(mongo_uri, timings, before_history=lambda: stack.set_aside(notify_worker),
                        after_directory=lambda: stack.printer.say(subscribe_webhook_sink(webhook_url)))
    stack.printer.say("took " + ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in timings.items())
                      + f"; ready {time.monotonic() - stack.began:.1f} s after `make run` began")
    stack.start(notify_worker.spec)
    stack.printer.say("notify-worker is catching up on the check-in history's events in the background")
    print(banner(stack, summary), flush=True)
    stack.watch()


def start_notify(stack: Stack) -> tuple[Child, str]:
    """The sinks notify-worker sends to, notify-api and notify-worker.

    Returns notify-worker's process and the URL to subscribe the webhook sink at."""
    smtp = smtp_sink_spec()
    if smtp is None:
        relay = f"{os.environ['NOTIFY_SMTP_HOST']}:{os.environ.get('NOTIFY_SMTP_PORT') or DEFAULT_SMTP_PORT}"
        stack.external.append(("smtp", f"{relay} (from NOTIFY_SMTP_HOST)"))
    else:
        stack.start(smtp)
        stack.env.update(NOTIFY_SMTP_HOST=smtp.ready.host, NOTIFY_SMTP_PORT=str(smtp.ready.port))
    webhooks = webhook_sink_spec()
    stack.start(webhooks)
    stack.env.setdefault("NOTIFY_HTTP_ADDR", NOTIFY_API.http_address)
    # Unsubscribe links in the mail point at notify-api's HTTP side, wherever it listens.
    stack.env.setdefault("NOTIFY_PUBLIC_URL", f"http://{stack.env['NOTIFY_HTTP_ADDR']}")
    # The webhook sink is plain http on loopback, which only this development switch allows.
    stack.env["NOTIFY_ALLOW_PRIVATE_WEBHOOKS"] = "true"
    children = [stack.start(spec) for spec in NOTIFY_SERVICES]
    return children[-1], f"http://{webhooks.ready.address}/v2mom"


def subscribe_webhook_sink(url: str) -> str:
    """Subscribes `url` (Standard Webhooks) to the whole organisation's approval notifications; says what it did.

    Idempotent: a second `make run` finds the subscription there already.
    """
    try:
        auth = load("notify").auth
    except ConfigError as error:
        raise StackError(f"subscribing the webhook sink failed: {error}") from None
    subscription = notify_pb2.Subscription(
        url=url, format=notify_pb2.WEBHOOK_FORMAT_STANDARD,
        kinds=[notify_pb2.NOTIFICATION_KIND_APPROVAL_REQUESTED, notify_pb2.NOTIFICATION_KIND_APPROVAL_DECIDED],
    )
    # Subscriptions are an admin's to make: the demo's first admin (roles come from the directory, not the token).
    metadata = bearer_metadata(mint_dev_token(auth, load_org().admins()[0], ttl_seconds=300))
    with grpc.insecure_channel(NOTIFY_API.address) as channel:
        try:
            notify_pb2_grpc.NotifyServiceStub(channel).CreateSubscription(
                notify_pb2.CreateSubscriptionRequest(subscription=subscription), metadata=metadata, timeout=10)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise StackError(f"subscribing the webhook sink failed: {error.code().name}: {error.details()}") from None
            return f"the webhook sink was subscribed to approval notifications already ({url})"
    return f"subscribed the webhook sink to the organisation's approval notifications ({url})"


def seed_demo(mongo_uri: str, timings: dict[str, float], before_history: Callable[[], None] = lambda: None,
              after_directory: Callable[[], None] = lambda: None) -> str:
    """Seeds the organisation, then its check-in history; returns what each did, a line each.

    Adds the seconds each phase took to `timings`; calls `before_history` between the two.
    """
    started = time.monotonic()
    try:
        settings = replace(load("goals"), mongo_uri=mongo_uri)
        # The check-ins API's own settings, on its database and with the goals-api it uses.
        checkins_settings = replace(
            load("checkins"), mongo_uri=mongo_uri, mongo_db=CHECKINS_DB.name(dict(os.environ)),
            goals_addr=GOALS_API.address,
        )
        # A progress bar on a terminal; none in a log file.
        goals = seed(settings, goals_api_address=GOALS_API.address, progress=None,
                     after_directory=after_directory).summary()
    except (SeedError, DemoDataError, ConfigError) as error:
        raise StackError(f"seeding the demo organisation failed: {error}") from None
    timings["seed the organisation"] = time.monotonic() - started
    before_history()
    try:
        report = checkins_seed.seed(settings.auth, GOALS_API.address, checkins_settings, progress=None)
    except (checkins_seed.SeedError, StoryError) as error:
        raise StackError(f"seeding the demo check-in history failed: {error}") from None
    timings.update(report.timings)
    started = time.monotonic()
    try:
        # Last: the check-in history was recorded by the people as they were.
        reorg = reorganise(GOALS_API.address, settings.auth).summary()
    except ReorgError as error:
        raise StackError(f"the demo's reorganisation failed: {error}") from None
    timings["reorganise"] = time.monotonic() - started
    return f"{goals}.\n      {report.summary()}\n      {reorg}"


WALKTHROUGH = [
    ("login hannah.berg", "an engineer on the Platform team"),
    ("list --unit eng-platform", ""),
    ("show unit:eng-platform", "her team's V2MOM"),
    ("tree unit:acme", "company > departments > teams > people"),
    ("lint -f v2mom_cli/examples/individual.yaml", ""),
    ("create -f v2mom_cli/examples/individual.yaml", ""),
    ("submit me", "to her manager"),
    ("login priya.raman", "her manager"),
    ("pending", ""),
    ('approve @hannah.berg --comment "Looks good"', ""),
]

# Against checkins-api (V2MOM_CHECKINS_ADDR); the seed left eight weeks of history to look at.
CHECKIN_WALKTHROUGH = [
    ("login jonas.weber", "a Platform engineer who checks in every week"),
    ("progress unit:eng-platform --tree", "his team, and the V2MOMs aligned to it"),
    ("progress-history unit:eng-platform", "one point a week, rising"),
    ("checkins me", "his own check-ins, newest first"),
    ('checkin me msr-robots-reporting-telemetry --value 100 --status on-track --confidence 9 --comment "R1 robots report too"', ""),
    ("stale --owner me", "nothing: he is up to date"),
    ("stale --unit eng-autonomy", "a team that stopped checking in five weeks ago"),
    ("progress unit:sales", "an off-track measure"),
]


# Against notify-api (V2MOM_NOTIFY_ADDR). The seed's submissions and decisions were the first notifications:
# li.wei's V2MOM waits for priya.raman (deploy/demo/goals/v2moms/fy27-li.wei.yaml).
NOTIFY_WALKTHROUGH = [
    ("login priya.raman", "Li Wei's V2MOM waits for her approval"),
    ("inbox", "the approval request; smtp-sink printed its email above"),
    ("prefs", "where each kind of notification goes"),
    ("login kofi.mensah", "an admin"),
    ("deliveries", "every delivery: inbox, email, webhook"),
]


def metrics_http_addr() -> str:
    # metrics-api serves /metrics here (services/metrics/api.py reads the same variable).
    return METRICS_API.http_address


def banner(stack: Stack, seed_summary: str) -> str:
    rows = [(c.spec.name, c.spec.ready.where(), f"pid {c.process.pid}") for c in stack.children]
    rows += [(name, where, "(not started by the devstack)") for name, where in stack.external]
    width = max(len(where) for _, where, _ in rows)
    processes = "\n".join(f"  {name:<16}{where:<{width}}  {pid}" for name, where, pid in rows)
    exports = "".join(
        f"  export {api.env_var}={api.address}\n" for api in (GOALS_API, CHECKINS_API, NOTIFY_API)
        if api.address != api.default_addr
    )
    return (
        f"\nV2MOM dev stack is ready.\n\n{processes}\n\nSeed: {seed_summary}.\n\n"
        f"Try the CLI in another terminal:\n{exports}{commands(WALKTHROUGH)}\n\n"
        f"Check-ins (the staleness timer looks every minute, so stale items show up a minute or two after the seed):\n"
        f"{commands(CHECKIN_WALKTHROUGH)}\n\n"
        f"Notifications (smtp-sink and webhook-sink print a line for each email and webhook notify-worker sends):\n"
        f"{commands(NOTIFY_WALKTHROUGH)}\n\n"
        f"Engagement gauges for Prometheus: curl -s http://{metrics_http_addr()}/metrics | grep ^v2mom_creation_ratio\n\n"
        f"Press Ctrl-C to stop everything.\n"
    )


def commands(walkthrough: list[tuple[str, str]]) -> str:
    """One CLI command a line, its note aligned after it; a command too long for the column stands alone."""
    lines = [f".venv/bin/v2mom {command}" for command, _ in walkthrough]
    column = max(len(line) for line, (_, note) in zip(lines, walkthrough) if note) + 2
    return "\n".join(
        f"  {line:<{column}}# {note}" if note else f"  {line}" for line, (_, note) in zip(lines, walkthrough)
    )


def main() -> int:
    printer = Printer()
    stack = Stack(printer)

    def request_stop(signum, frame):
        signal.signal(signal.SIGINT, hurry_stop)
        signal.signal(signal.SIGTERM, hurry_stop)
        raise Shutdown()

    def hurry_stop(signum, frame):
        stack.hurry = True  # a second Ctrl-C: stop waiting for graceful exits

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        return run_and_report(stack)
    except Shutdown:  # the signal came while a failure was being reported
        return 0
    finally:
        # From here on a signal only hurries the cleanup along.
        signal.signal(signal.SIGINT, hurry_stop)
        signal.signal(signal.SIGTERM, hurry_stop)
        stack.stop()


def run_and_report(stack: Stack) -> int:
    try:
        run(stack)
    except Shutdown:
        stack.printer.say("stopping the stack")
        return 0
    except ChildExited as exited:
        stack.printer.say(f"{exited.child.spec.name} {exited.how}; stopping the stack")
        return exited.stack_status
    except StackError as error:
        stack.printer.say(f"cannot run the stack: {error}")
        crashed = stack.first_exited()
        return ChildExited(crashed).stack_status if crashed else 1


if __name__ == "__main__":
    sys.exit(main())
