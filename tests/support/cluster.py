"""The whole system with every api and worker as N replica processes, for the replica and chaos tests.

Each replica is a real process (``python -m services.<name>.<api|worker>``) on the test's wire store and
broker vhost, as a Deployment's pods would be: the APIs on ports of their own, clients and the check-ins
processes reaching goals-api through one target naming every replica ("ipv4:host:a,host:b", balanced by
gRPC's round_robin, see services/platform/api/tls.py). metrics-api runs in process (its clock pinned for
the exactness comparison, tests/support/metrics_service.py). ``kill`` and ``restart`` are what a chaos loop
needs; ``stop`` ends every process, however the test went.
"""

import signal
import subprocess
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.platform.api.tls import BALANCED
from tests.support.processes import free_port, log_tail, start_module, stop
from tests.support.services import Caller, metadata_for

# Every kind of process, the database it owns and how it is started. Workers before APIs is no rule: each
# replica declares its queues on start, and the test waits for every one to be ready before loading.
WORKERS = {"goals": "services.goals.worker", "checkins": "services.checkins.worker",
           "metrics": "services.metrics.worker", "notify": "services.notify.worker"}
APIS = {"goals": "services.goals.api", "checkins": "services.checkins.api"}
READY_TIMEOUT = 60.0


@dataclass
class Replica:
    name: str  # "goals-worker-2"
    module: str
    env: dict
    log: Path
    port: int | None = None  # an API's gRPC port
    process: object = None

    def start(self) -> None:
        # One log file across restarts: this life's lines are those after where the file ended.
        self._log_from = self.log.stat().st_size if self.log.exists() else 0
        self.process = start_module(self.module, self.env, log=self.log)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """An API answers its health check; a worker has logged that it started (its queues are declared)."""
        deadline = time.monotonic() + timeout
        while not self._ready():
            assert self.alive(), f"{self.name} exited: {log_tail(self.process)}"
            assert time.monotonic() < deadline, f"{self.name} never became ready: {log_tail(self.process)}"
            time.sleep(0.1)

    def _ready(self) -> bool:
        if self.port is None:
            return self._logged_since_start("worker started")
        try:
            with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
                status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
            return status.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.RpcError:
            return False

    def _logged_since_start(self, message: str) -> bool:
        with open(self.log, encoding="utf-8", errors="replace") as log:
            log.seek(self._log_from)
            return message in log.read()

    def kill(self) -> None:
        """SIGKILL: no clean stop, no lease released, nothing acked that was in flight."""
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)


@dataclass
class Cluster:
    mongo_uri: str
    amqp_uri: str
    folder: Path
    replicas_each: int = 2
    extra_env: dict = field(default_factory=dict)
    # A broker user per service (deploy/rabbitmq's definitions), by service; amqp_uri for the others.
    amqp_uris: dict = field(default_factory=dict)
    databases: dict = field(init=False)
    replicas: list = field(init=False, default_factory=list)

    def __post_init__(self):
        suffix = uuid.uuid4().hex[:8]
        self.databases = {service: f"{service}_cluster_{suffix}" for service in ("goals", "checkins", "metrics", "notify")}
        self.api_ports = {service: [free_port() for _ in range(self.replicas_each)] for service in APIS}

    def target(self, service: str) -> str:
        """One gRPC target naming every replica of an API."""
        return "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in self.api_ports[service])

    def env_of(self, service: str) -> dict:
        return {
            "MONGO_URI": self.mongo_uri, "MONGO_DB": self.databases[service],
            "AMQP_URI": self.amqp_uris.get(service, self.amqp_uri),
            "GOALS_ADDR": self.target("goals"), "RELAY_INTERVAL_SECONDS": "0.05", "LOG_LEVEL": "INFO",
            "DIRECTORY_CACHE_SECONDS": "0", "STALENESS_INTERVAL_SECONDS": "0.5", "LEASE_SECONDS": "5",
            # A second goals-api on this machine must not fight the first for SCIM's fixed port.
            "SCIM_HTTP_ADDR": "127.0.0.1:0",
            **self.extra_env,
        }

    def start(self) -> "Cluster":
        for service, module in WORKERS.items():
            for n in range(1, self.replicas_each + 1):
                self._add(f"{service}-worker-{n}", module, self.env_of(service))
        for service, module in APIS.items():
            for n, port in enumerate(self.api_ports[service], start=1):
                self._add(f"{service}-api-{n}", module, {**self.env_of(service), "GRPC_ADDR": f"127.0.0.1:{port}"},
                          port=port)
        for replica in self.replicas:
            replica.wait_ready()
        return self

    def _add(self, name: str, module: str, env: dict, port: int | None = None) -> None:
        replica = Replica(name, module, env, self.folder / f"{name}.log", port)
        self.replicas.append(replica)
        replica.start()

    def of(self, kind: str) -> list[Replica]:
        """The replicas of one kind: "goals-worker", "checkins-api", ..."""
        return [r for r in self.replicas if r.name.rsplit("-", 1)[0] == kind]

    def restart(self, replica: Replica) -> None:
        replica.stop()
        replica.start()
        replica.wait_ready()

    def logs(self, size: int = 1500) -> str:
        return "\n".join(f"--- {r.name}\n{log_tail(r.process, size)}" for r in self.replicas if r.process)

    def stop(self) -> None:
        for replica in reversed(self.replicas):
            replica.stop()


def balanced_clients(settings, target: str, stub_class):
    """A factory of per-person clients over one channel balanced across every replica of an API."""
    channel = grpc.insecure_channel(target, options=BALANCED)
    stub = stub_class(channel)

    def client_for(person_id: str, roles=()) -> Caller:
        return Caller(stub, metadata_for(settings, person_id, roles))

    client_for.close = channel.close
    return client_for


def _list_queues(amqp_uri: str, column: str) -> dict[str, int]:
    vhost = urllib.parse.unquote(urllib.parse.urlparse(amqp_uri).path.lstrip("/")) or "/"
    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", column], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    return {parts[0]: int(parts[1]) for parts in (line.split() for line in out.splitlines())
            if len(parts) == 2 and parts[1].isdigit()}


def consumers_per_queue(amqp_uri: str) -> dict[str, int]:
    """Consumers of every queue that carries live events (not dead letters, not unrouted events)."""
    return {name: n for name, n in _list_queues(amqp_uri, "consumers").items()
            if not name.endswith((".dlq", ".unrouted"))}


def queue_depths(amqp_uri: str) -> dict[str, int]:
    """Messages ready or unacknowledged in every queue of the vhost."""
    return _list_queues(amqp_uri, "messages")
