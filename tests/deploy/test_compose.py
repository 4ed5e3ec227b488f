"""docker-compose.yml, deploy/Dockerfile and the healthcheck scripts.

No Docker engine runs where these tests run, so the stack cannot be started
here. What can be checked is checked for real: the compose file with a real
Compose implementation (Debian's `docker-compose` package, installed by
make test), the conventions the stack relies on with PyYAML, and the
healthcheck scripts by running them against real sockets.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
from concurrent import futures
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
HEALTHCHECK_SCRIPT = ROOT / "deploy" / "grpc_healthcheck.py"
APP_SERVICES = (
    "goals-api", "goals-worker", "checkins-api", "checkins-worker", "metrics-api", "metrics-worker", "notify-api",
    "notify-worker",
)
# What compose requires (`${VAR:?...}`): production mode has no weak defaults. Strong enough for its checks.
REQUIRED = {
    "OIDC_JWKS_URL": "https://idp.example/.well-known/jwks.json",
    "OIDC_ISSUER": "https://idp.example",
    **{f"{name}_SERVICE_SECRET": f"{name.lower()}-service-secret-from-the-environment-0123456789"
       for name in ("GOALS", "CHECKINS", "METRICS", "NOTIFY")},
    "NOTIFY_UNSUBSCRIBE_SECRET": "unsubscribe-secret-from-the-environment-0123456789",
    "GRAFANA_ADMIN_PASSWORD": "grafana-password-from-the-environment",
    **{f"RABBITMQ_{name}_PASSWORD": f"{name.lower()}-broker-password-from-the-environment"
       for name in ("ADMIN", "GOALS", "CHECKINS", "METRICS", "NOTIFY", "HRIS")},
}

INSTALL_HINT = (
    "No Compose implementation found to validate docker-compose.yml. "
    "Install Debian's package: `apt-get update && apt-get install -y docker-compose` "
    "(make test does this), or the Docker Compose v2 plugin (`docker compose`)."
)


@pytest.fixture(scope="module")
def compose_cli(tmp_path_factory):
    """Runs the Compose CLI on a compose file: run(*args, compose_file=..., env=...)."""
    # Debian's docker-compose (1.29) first: it is what CI installs. The v2
    # plugin is accepted so developers with Docker Desktop need nothing extra.
    if shutil.which("docker-compose"):
        cli = ["docker-compose"]
    elif shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        cli = ["docker", "compose"]
    else:
        cli = None  # each test that needs it fails (not errors, not skips) with INSTALL_HINT
    # An empty env file, so a developer's own .env cannot change the outcome
    # (docker-compose 1.29 refuses /dev/null here).
    empty_env_file = tmp_path_factory.mktemp("compose") / "empty.env"
    empty_env_file.write_text("", encoding="utf-8")

    def run(*args: str, compose_file: Path = COMPOSE_FILE, env: dict | None = None, required: bool = True):
        if cli is None:
            pytest.fail(INSTALL_HINT)
        # Nor may exported JWT_*/OIDC_*/RABBITMQ_*/LOG_LEVEL/COMPOSE_* variables or the required ones;
        # ``required`` puts those in, as an operator must.
        clean_env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("COMPOSE_", "JWT_", "OIDC_", "RABBITMQ_"))
            and key not in ("LOG_LEVEL", "V2MOM_ENV", *REQUIRED)
        }
        clean_env.update(REQUIRED if required else {})
        clean_env.update(env or {})
        return subprocess.run(
            [*cli, "--env-file", str(empty_env_file), "--project-directory", str(ROOT), "-f", str(compose_file), *args],
            capture_output=True,
            text=True,
            env=clean_env,
            cwd=ROOT,
            timeout=120,
        )

    run.name = " ".join(cli or ["(none)"])
    return run


@pytest.fixture(scope="module")
def compose() -> dict:
    with COMPOSE_FILE.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


# --- the real validator ------------------------------------------------------------


def test_compose_file_is_valid(compose_cli):
    # Full `config`, not `config -q`: docker-compose 1.29 checks durations
    # such as `interval: 10s` only while printing the resolved file.
    result = compose_cli("config")
    assert result.returncode == 0, f"{compose_cli.name} config rejected docker-compose.yml:\n{result.stderr}"


def test_validator_rejects_an_invalid_file(compose_cli, tmp_path):
    # Proves the validator validates: a misspelt key must fail, so a pass above means something.
    broken = COMPOSE_FILE.read_text(encoding="utf-8").replace("    healthcheck:\n", "    healthchek:\n", 1)
    assert broken != COMPOSE_FILE.read_text(encoding="utf-8")
    path = tmp_path / "docker-compose.yml"
    path.write_text(broken, encoding="utf-8")
    result = compose_cli("config", compose_file=path)
    assert result.returncode != 0, "a compose file with an unknown key passed validation"
    assert "healthchek" in result.stderr


def resolved(compose_cli, env: dict | None = None) -> dict:
    result = compose_cli("config", env=env)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def test_interpolation_defaults_apply_when_unset(compose_cli):
    services = resolved(compose_cli)
    for name in APP_SERVICES:
        environment = services[name]["environment"]
        assert environment["V2MOM_ENV"] == "production"
        assert (environment["OIDC_JWKS_URL"], environment["OIDC_AUDIENCE"]) == (REQUIRED["OIDC_JWKS_URL"], "v2mom")
        assert environment["SERVICE_SECRET"] == REQUIRED[f"{name.split('-')[0].upper()}_SERVICE_SECRET"]
        assert environment["MONGO_URI"] == "mongodb://mongo:27017,mongo-2:27017,mongo-3:27017/?replicaSet=rs0"
        # Its own broker user, with its password from the environment.
        user = name.rsplit("-", 1)[0]
        assert environment["AMQP_URI"] == f"amqp://{user}:{REQUIRED[f'RABBITMQ_{user.upper()}_PASSWORD']}@rabbitmq:5672/"
    assert services["goals-api"]["environment"]["GRPC_ADDR"] == "0.0.0.0:50051"


def test_interpolation_takes_values_from_the_environment(compose_cli):
    services = resolved(compose_cli, env={"OIDC_AUDIENCE": "from-the-environment", "LOG_LEVEL": "DEBUG"})
    for name in APP_SERVICES:
        assert services[name]["environment"]["OIDC_AUDIENCE"] == "from-the-environment"
        assert services[name]["environment"]["LOG_LEVEL"] == "DEBUG"


def test_without_a_required_secret_compose_stops_and_names_it(compose_cli):
    for missing in REQUIRED:
        result = compose_cli("config", required=False, env={k: v for k, v in REQUIRED.items() if k != missing})
        assert result.returncode != 0, f"compose started without {missing}"
        assert f"set {missing}" in result.stderr, result.stderr


def test_each_service_knows_the_credentials_of_those_it_grants_calls(compose_cli):
    from services.checkins.api import CALLERS as CHECKINS_CALLERS
    from services.goals.api import CALLERS as GOALS_CALLERS
    from services.platform.core.config import parse_service_keys

    services = resolved(compose_cli)
    for api, callers in (("goals-api", GOALS_CALLERS), ("checkins-api", CHECKINS_CALLERS)):
        keys = dict(parse_service_keys(services[api]["environment"]["SERVICE_KEYS"]))
        assert set(keys) == set(callers), api
        for caller, secret in keys.items():  # the very secret the caller signs with
            assert secret == services[f"{caller}-api"]["environment"]["SERVICE_SECRET"]


def test_its_settings_pass_production_mode(compose_cli, monkeypatch):
    from deploy.rabbitmq import definitions
    from services.platform.core.config import load

    passwords = {definitions.password_variable(user): f"{user}-password-from-env"
                 for user in (*definitions.SERVICES, *definitions.EXTERNAL_PUBLISHERS)}
    services = resolved(compose_cli, env=passwords)
    for name in APP_SERVICES:
        for key, value in services[name]["environment"].items():
            monkeypatch.setenv(key, str(value))
        settings = load(name.split("-")[0])  # refuses anything weak (tests/platform/test_platform_production.py)
        assert settings.auth.production and settings.auth.oidc, name


def readme_production_commands() -> str:
    """The README's "Production mode" shell block, without its last line (`docker compose up --build`)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Production mode", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL).group(1)
    lines = block.strip().splitlines()
    assert lines[-1].startswith("docker compose up"), lines[-1]
    return "\n".join(lines[:-1])


def test_the_readmes_production_commands_set_everything_compose_and_the_broker_need(compose_cli, compose, tmp_path):
    """What an operator following the README exports is enough: compose resolves, the broker's definitions job
    takes every password, and every process passes production mode. (RABBITMQ_HRIS_PASSWORD was missing from
    the README, so compose stopped at the first step.)"""
    from deploy.rabbitmq import definitions

    # `openssl rand -hex N` stands in as Python's, so the test needs no openssl binary.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "openssl").write_text(
        f"#!/bin/sh\nexec {sys.executable} -c 'import secrets, sys; print(secrets.token_hex(int(sys.argv[3])))' \"$@\"\n",
        encoding="utf-8")
    (bin_dir / "openssl").chmod(0o755)
    done = subprocess.run(["/bin/bash", "-euo", "pipefail", "-c", readme_production_commands() + "\nenv -0"],
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    exported = dict(item.split("=", 1) for item in done.stdout.split("\0") if "=" in item)
    exported = {key: value for key, value in exported.items() if key not in ("PATH", "PWD", "SHLVL", "_", "OLDPWD")}
    result = compose_cli("config", required=False, env=exported)
    assert result.returncode == 0, f"compose stops with only what the README exports:\n{result.stderr}"
    assert definitions.passwords_from_environment(exported).keys() == set(definitions.USERS)
    # Every variable compose requires is one the README sets.
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", yaml.safe_dump(compose)))  # not what its comments say
    assert required <= set(exported), sorted(required - set(exported))


# --- conventions the stack relies on ----------------------------------------------------


def one_shot_jobs(services) -> set[str]:
    """Services that run to completion before others start (certificates, broker definitions): no healthcheck."""
    return {dependency for service in services.values() for dependency, rule in service.get("depends_on", {}).items()
            if rule.get("condition") == "service_completed_successfully"}


def test_every_service_has_a_healthcheck(services):
    jobs = one_shot_jobs(services)
    assert all(services[job].get("restart") == "no" for job in jobs), "a one-shot job must not be restarted"
    for name, service in services.items():
        if name in jobs:
            continue
        check = service.get("healthcheck")
        assert check, f"service {name} has no healthcheck"
        assert not check.get("disable"), f"service {name} disables its healthcheck"
        assert check.get("test") and check["test"][0] in ("CMD", "CMD-SHELL"), f"service {name}: healthcheck needs a test"


def test_every_dependency_waits_for_a_condition(services):
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        # The short (list) form starts a service as soon as its dependency's container exists.
        assert isinstance(depends_on, dict), f"service {name}: depends_on must be a mapping with conditions"
        for dependency, rule in depends_on.items():
            assert dependency in services, f"service {name} depends on unknown service {dependency}"
            assert isinstance(rule, dict) and rule.get("condition") in (
                "service_healthy",
                "service_completed_successfully",
            ), f"service {name}: depends_on.{dependency} needs condition: service_healthy"


def test_app_services_wait_for_healthy_infrastructure(services):
    for name in APP_SERVICES:
        depends_on = services[name]["depends_on"]
        assert depends_on["mongo"]["condition"] == "service_healthy"
        assert depends_on["rabbitmq"]["condition"] == "service_healthy"


def test_mongo_runs_as_a_three_member_replica_set_that_initiates_itself(services):
    members = [services[name] for name in ("mongo", "mongo-2", "mongo-3")]
    for member in members:
        assert member["image"].startswith("mongo:7")
        command = member["command"]
        assert "--replSet" in command and command[command.index("--replSet") + 1] == "rs0"
        assert any(volume.endswith(":/data/db") for volume in member["volumes"]), "each member keeps its own data"
    assert len({next(v for v in m["volumes"] if v.endswith(":/data/db")) for m in members}) == 3
    check = " ".join(services["mongo"]["healthcheck"]["test"])
    assert "rs.initiate" in check and "_id:'rs0'" in check
    # Each member's host must be the name other containers resolve, or the
    # driver (replicaSet=rs0) discovers an address it cannot reach.
    for host in ("mongo:27017", "mongo-2:27017", "mongo-3:27017"):
        assert f"host:'{host}'" in check
    assert "db.hello().primary" in check, "healthy once the set has a primary, wherever it is"
    assert set(services["mongo"]["depends_on"]) == {"mongo-2", "mongo-3"}, "the initiator starts after its peers"


def test_rabbitmq_healthcheck_uses_diagnostics(services):
    rabbitmq = services["rabbitmq"]
    assert rabbitmq["image"].startswith("rabbitmq:3.13-management")
    assert rabbitmq["healthcheck"]["test"][1] == "rabbitmq-diagnostics"


def test_app_services_share_one_image_built_from_deploy_dockerfile(services):
    for name in APP_SERVICES:
        build = services[name]["build"]
        assert (ROOT / build["context"]).resolve() == ROOT, f"{name}: build context must be the repo root"
        assert build["dockerfile"] == "deploy/Dockerfile", f"{name}: must build from deploy/Dockerfile"
    assert services["goals-api"]["image"] == services["goals-worker"]["image"]


@pytest.mark.parametrize(("service", "module"), [(name, "services." + name.replace("-", ".")) for name in APP_SERVICES])
def test_app_command_runs_an_existing_module(services, service, module):
    assert services[service]["command"] == ["python", "-m", module]
    assert (ROOT / Path(*module.split("."))).with_suffix(".py").is_file(), f"{module} does not exist"


@pytest.mark.parametrize(("name", "port", "grpc_service"), [
    ("goals-api", 50051, "v2mom.v1.GoalService"),
    ("checkins-api", 50052, "v2mom.v1.CheckinService"),
    ("metrics-api", 50053, "v2mom.v1.MetricsService"),
    ("notify-api", 50054, "v2mom.v1.NotifyService"),
])
def test_grpc_apis_are_reachable_and_check_their_own_health(services, name, port, grpc_service):
    api = services[name]
    assert api["environment"]["GRPC_ADDR"] == f"0.0.0.0:{port}", "127.0.0.1 inside a container is unreachable"
    assert f"{port}:{port}" in api["ports"]
    test = api["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"]
    # The Dockerfile copies the repo to /app, so the script is at this path in the image.
    script = test[2]
    assert script.startswith("/app/") and (ROOT / script.removeprefix("/app/")).is_file(), f"{script} not in the repo"
    # Its own service by name: the overall status says SERVING before the servicer is registered.
    assert test[3:5] == [f"127.0.0.1:{port}", grpc_service]


def test_each_service_keeps_its_own_database(services):
    databases: dict[str, set] = {}
    for name in APP_SERVICES:
        databases.setdefault(name.rsplit("-", 1)[0], set()).add(services[name]["environment"]["MONGO_DB"])
    assert all(len(names) == 1 for names in databases.values()), f"an api and its worker must share one database: {databases}"
    owned = [next(iter(names)) for names in databases.values()]
    assert len(set(owned)) == len(owned), f"no two services may share a database: {databases}"
    assert databases["checkins"] == {"checkins"}
    assert databases["notify"] == {"notify"}


@pytest.mark.parametrize("name", ["checkins-api", "checkins-worker"])
def test_checkins_reach_goals_api_once_it_is_healthy(services, name):
    service = services[name]
    # Both ask goals-api for published structures and cycles (the worker when an event arrives before its approval).
    assert service["environment"]["GOALS_ADDR"] == "goals-api:50051"
    assert service["depends_on"]["goals-api"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", ["notify-api", "notify-worker"])
def test_notify_reaches_goals_api_once_it_is_healthy(services, name):
    # Both look people up in goals-api (the api for inbox owners and subscriptions, the worker for recipients).
    service = services[name]
    assert service["environment"]["GOALS_ADDR"] == "goals-api:50051"
    assert service["depends_on"]["goals-api"]["condition"] == "service_healthy"


def test_notify_api_serves_metrics_and_unsubscribe_on_9101(services):
    api = services["notify-api"]
    assert api["environment"]["NOTIFY_HTTP_ADDR"] == "0.0.0.0:9101", "127.0.0.1 inside a container is unreachable"
    assert "9101:9101" in api["ports"]
    # The worker's mail links must reach that port from a browser on the host.
    assert api["environment"]["NOTIFY_PUBLIC_URL"] == services["notify-worker"]["environment"]["NOTIFY_PUBLIC_URL"]


def test_notify_processes_agree_on_mail_and_the_unsubscribe_secret(compose_cli):
    services = resolved(compose_cli, env={"NOTIFY_UNSUBSCRIBE_SECRET": "from-the-environment"})
    api, worker = services["notify-api"]["environment"], services["notify-worker"]["environment"]
    # The api verifies the unsubscribe links the worker signs.
    assert api["NOTIFY_UNSUBSCRIBE_SECRET"] == worker["NOTIFY_UNSUBSCRIBE_SECRET"] == "from-the-environment"
    assert (worker["NOTIFY_SMTP_HOST"], worker["NOTIFY_SMTP_PORT"]) == ("mailpit", "1025")
    assert resolved(compose_cli)["notify-worker"]["environment"]["NOTIFY_PUBLIC_URL"] == "http://localhost:9101"


def test_mailpit_catches_the_mail_and_shows_it(services):
    mailpit = services["mailpit"]
    assert mailpit["image"].startswith("axllent/mailpit:")
    assert {"1025:1025", "8025:8025"} <= {port.split(" ")[0] for port in mailpit["ports"]}
    assert mailpit["healthcheck"]["test"] == ["CMD", "/mailpit", "readyz"]


def test_stop_order_keeps_what_a_process_needs_until_it_has_stopped(services):
    # Compose stops a service before what it depends on: notify-worker before the relay it sends
    # through, both notify processes before goals-api, Prometheus before the apis it scrapes.
    assert services["notify-worker"]["depends_on"]["mailpit"]["condition"] == "service_healthy"
    for name in ("notify-api", "notify-worker"):
        assert set(services[name]["depends_on"]) >= {"mongo", "rabbitmq", "goals-api"}
    assert {"metrics-api", "notify-api"} <= set(services["prometheus"]["depends_on"])


def test_secrets_come_from_the_environment_and_none_has_a_default(compose):
    # Read the raw text: the parsed file cannot tell a literal from a default.
    raw = COMPOSE_FILE.read_text(encoding="utf-8")
    assert "dev-only" not in raw and "JWT_" not in raw, "no development secret, no development tokens"
    for name in REQUIRED:
        assert f"${{{name}:?set {name}" in raw, f"{name} must be required, not defaulted"
    assert "V2MOM_ENV: ${V2MOM_ENV:-production}" in raw


def test_data_lives_in_named_volumes(compose, services):
    declared = set(compose.get("volumes") or {})
    for name, target in (("mongo", "/data/db"), ("rabbitmq", "/var/lib/rabbitmq")):
        mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in services[name]["volumes"]}
        assert target in mounts, f"{name} must keep {target} in a volume"
        assert mounts[target] in declared, f"{name}: {mounts[target]} is not a declared named volume"


# --- the image (static: nothing can be built here) --------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    joined = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line.strip() for line in joined.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]  # type: ignore[misc]


def test_dockerfile_generates_protos_before_installing():
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.13-slim")
    runs = " && ".join(arg for op, arg in instructions if op == "RUN")
    protogen = runs.find("python -m deploy.dev.protogen")
    install = runs.find("pip install --no-deps .")
    assert protogen != -1 and install != -1, "the image must run protogen and pip install ."
    assert protogen < install, "setuptools packages v2mom from protos/: generate the code first"


def test_dockerfile_runs_as_non_root():
    users = [arg for op, arg in dockerfile_instructions() if op == "USER"]
    assert users, "the image must switch to a non-root user"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_dockerfile_default_command_is_the_goals_api():
    commands = [arg for op, arg in dockerfile_instructions() if op == "CMD"]
    assert commands[-1] == '["python", "-m", "services.goals.api"]'


def test_dockerignore_keeps_local_state_out_of_the_image():
    patterns = set((ROOT / ".dockerignore").read_text(encoding="utf-8").split())
    for required in (".git", ".venv", "var", "**/__pycache__"):
        assert required in patterns, f".dockerignore must exclude {required}"


# --- the healthcheck scripts, run for real ------------------------------------------------


@pytest.fixture
def health_server():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    servicer.set("v2mom.v1.GoalService", health_pb2.HealthCheckResponse.SERVING)
    yield f"127.0.0.1:{port}", servicer, server
    server.stop(grace=None)


def grpc_healthcheck(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK_SCRIPT), *args, "--timeout", "2"],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_grpc_healthcheck_passes_when_serving(health_server):
    address, _, _ = health_server
    for args in ((address,), (address, "v2mom.v1.GoalService")):
        result = grpc_healthcheck(*args)
        assert result.returncode == 0, result.stderr
        assert "SERVING" in result.stdout


def test_grpc_healthcheck_fails_when_not_serving(health_server):
    address, servicer, _ = health_server
    servicer.enter_graceful_shutdown()  # what serve_until_signalled does on SIGTERM
    result = grpc_healthcheck(address, "v2mom.v1.GoalService")
    assert result.returncode == 1
    assert "NOT_SERVING" in result.stderr


def test_grpc_healthcheck_fails_for_an_unknown_service(health_server):
    address, _, _ = health_server
    result = grpc_healthcheck(address, "v2mom.v1.NoSuchService")
    assert result.returncode == 1
    assert "NOT_FOUND" in result.stderr


def test_grpc_healthcheck_fails_when_nothing_listens():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    result = grpc_healthcheck(f"127.0.0.1:{free_port}")
    assert result.returncode == 1
    assert "UNAVAILABLE" in result.stderr


def worker_healthcheck_script(services, worker: str, cmdline_file: Path) -> str:
    test = services[worker]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    script = textwrap.dedent(test[3])
    assert "/proc/1/cmdline" in script
    return script.replace("/proc/1/cmdline", str(cmdline_file))


@pytest.fixture
def connection_to_port_27017():
    """An established TCP connection to 127.0.0.1:27017: our own listener, or the server already there."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", 27017))
        listener.listen(1)
    except OSError:
        listener.close()
        listener = None  # a local MongoDB (or mongoeco) holds the port: connect to it instead
    client = socket.create_connection(("127.0.0.1", 27017), timeout=5)
    accepted = listener.accept()[0] if listener else None
    yield
    for sock in (client, accepted, listener):
        if sock is not None:
            sock.close()


WORKERS = ["goals-worker", "checkins-worker", "metrics-worker", "notify-worker"]


@pytest.mark.parametrize("worker", WORKERS)
def test_worker_healthcheck_passes_for_a_connected_worker(services, worker, tmp_path, connection_to_port_27017):
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"python\0-m\0" + services[worker]["command"][-1].encode() + b"\0")
    script = worker_healthcheck_script(services, worker, cmdline)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("worker", WORKERS)
def test_worker_healthcheck_fails_when_pid_1_is_not_the_worker(services, worker, tmp_path, connection_to_port_27017):
    cmdline = tmp_path / "cmdline"
    api = services[worker]["command"][-1].replace(".worker", ".api")
    cmdline.write_bytes(b"python\0-m\0" + api.encode() + b"\0")
    script = worker_healthcheck_script(services, worker, cmdline)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1, result.stderr


# --- the locked-down bus and gRPC over TLS -------------------------------------------------------------


def test_each_service_talks_to_the_broker_as_its_own_user(compose_cli):
    from deploy.rabbitmq import definitions

    passwords = {definitions.password_variable(user): f"{user}-password-from-env"
                 for user in (*definitions.SERVICES, *definitions.EXTERNAL_PUBLISHERS)}
    services = resolved(compose_cli, env=passwords)
    for name in APP_SERVICES:
        service = name.rsplit("-", 1)[0]
        assert service in definitions.SERVICES, f"{name}: no broker user in deploy/rabbitmq/definitions.py"
        assert services[name]["environment"]["AMQP_URI"] == f"amqp://{service}:{service}-password-from-env@rabbitmq:5672/"
    job = services["rabbitmq-definitions"]
    assert job["command"] == ["python", "-m", "deploy.rabbitmq.definitions", "/definitions/definitions.json"]
    assert set(passwords) <= set(job["environment"]) and "RABBITMQ_ADMIN_PASSWORD" in job["environment"]


def test_guest_is_nowhere_and_the_broker_loads_the_definitions(services):
    assert "guest" not in COMPOSE_FILE.read_text(encoding="utf-8")
    rabbitmq = services["rabbitmq"]
    assert rabbitmq["depends_on"]["rabbitmq-definitions"]["condition"] == "service_completed_successfully"
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in rabbitmq["volumes"]}
    assert mounts["/etc/rabbitmq/definitions"] == "rabbitmq-definitions"
    conf = (ROOT / mounts["/etc/rabbitmq/conf.d/20-v2mom.conf"]).read_text(encoding="utf-8")
    assert "load_definitions = /etc/rabbitmq/definitions/definitions.json" in conf
    assert "loopback_users.guest = true" in conf


@pytest.mark.parametrize("name", [name for name in APP_SERVICES if name.endswith("-api")])
def test_grpc_servers_serve_tls_and_every_process_trusts_its_ca(services, name):
    environment = services[name]["environment"]
    assert environment["GRPC_TLS_CERT"] == "/run/v2mom-tls/server.pem"
    assert environment["GRPC_TLS_KEY"] == "/run/v2mom-tls/server.key"
    for process in (name, name.replace("-api", "-worker")):
        assert services[process]["environment"]["GRPC_TLS_CA"] == "/run/v2mom-tls/ca.pem"
        assert "grpc-tls:/run/v2mom-tls:ro" in services[process]["volumes"]
    # The healthcheck inherits GRPC_TLS_CA, so it checks over TLS, and the certificate names 127.0.0.1.
    assert services[name]["healthcheck"]["test"][3].startswith("127.0.0.1:")
    assert services["tls-certs"]["command"][:3] == ["python", "-m", "deploy.dev.tls_certs"]
