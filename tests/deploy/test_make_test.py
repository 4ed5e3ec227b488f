"""`make test` on a fresh machine: make's setup step provides the tools the suite runs for real
(deploy/dev/test_tools.sh), and .ci/run only starts RabbitMQ and runs `make test`.

The setup script runs here on a PATH of stand-ins (id, sudo, apt-get), so what it would install, and how,
is observed without touching the machine."""

import os
import re
import shlex
import subprocess
from pathlib import Path

from tests.support.processes import ROOT

SCRIPT = ROOT / "deploy" / "dev" / "test_tools.sh"
TOOLS = ("promtool", "prometheus", "docker-compose")


def commands(script: Path) -> list[str]:
    """The script's command lines: no comments, no blank lines, no shell function definitions."""
    lines = [line.strip() for line in script.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_ci_run_starts_rabbitmq_and_runs_make_test_nothing_more():
    lines = commands(ROOT / ".ci" / "run")
    assert lines[-1] == "make test", "make test is the last thing .ci/run does"
    text = "\n".join(lines)
    for other in ("prometheus", "promtool", "docker-compose", "pyenv", "pip", "pytest"):
        assert not re.search(rf"\b{re.escape(other)}\b", text), f".ci/run should leave {other} to make test"
    installs = [line for line in lines if "apt-get install" in line]
    assert all(line.endswith("apt-get install -y -qq rabbitmq-server; }") for line in installs), installs
    assert sum("make" in shlex.split(line)[:1] for line in lines) == 1


def test_make_test_provides_the_tools_before_running_the_suite():
    dry = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    steps = dry.stdout.splitlines()
    setup = steps.index("deploy/dev/test_tools.sh")
    suite = next(i for i, step in enumerate(steps) if "-m pytest" in step)
    assert setup < suite, steps


# Debian's rabbitmqctl, run by anyone but root or rabbitmq.
RABBITMQCTL_REFUSES = 'echo; echo "Only root or rabbitmq should run rabbitmqctl"; echo; exit 1'


def stand_ins(tmp_path: Path, uid: int, have: tuple[str, ...] = (), sudo: bool = True, apt: bool = True,
              rabbitmqctl: str | None = "exit 0") -> Path:
    """A bin folder with only the given tools, an `id` that reports ``uid`` and, when asked, a sudo that runs
    its command and an apt-get that "installs" the tools; both log their arguments to calls.log. rabbitmqctl
    runs ``rabbitmqctl`` as its body (None: there is none)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    executables = {name: "exit 0" for name in have}
    executables["id"] = f"echo {uid}"
    if rabbitmqctl is not None:
        executables["rabbitmqctl"] = rabbitmqctl
    if sudo:
        executables["sudo"] = f'echo "sudo $*" >> {log}; exec "$@"'
    if apt:
        installs = " ".join(f"{bin_dir / tool}" for tool in TOOLS)
        executables["apt-get"] = (f'echo "apt-get $*" >> {log}\n'
                                  f'[ "$1" = install ] || exit 0\n'
                                  f'for tool in {installs}; do echo "exit 0" > "$tool"; /bin/chmod +x "$tool"; done')
    for name, body in executables.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/bash\n{body}\n", encoding="utf-8")
        path.chmod(0o755)
    (bin_dir / "env").symlink_to("/usr/bin/env")  # sudo env DEBIAN_FRONTEND=... apt-get
    return bin_dir


def run_setup(bin_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/bash", str(SCRIPT)], env={"PATH": str(bin_dir)}, capture_output=True, text=True,
                          timeout=60)


def calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls.log"
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


def test_setup_does_nothing_when_the_tools_are_there(tmp_path):
    done = run_setup(stand_ins(tmp_path, uid=1000, have=TOOLS))
    assert done.returncode == 0, done.stderr
    assert calls(tmp_path) == []


def test_setup_apt_installs_what_is_missing_as_root(tmp_path):
    done = run_setup(stand_ins(tmp_path, uid=0, have=("promtool", "prometheus")))
    assert done.returncode == 0, done.stderr
    assert calls(tmp_path) == [
        "apt-get update -qq", "apt-get install -y -qq --no-install-recommends docker-compose"]


def test_setup_goes_through_sudo_when_not_root(tmp_path):
    done = run_setup(stand_ins(tmp_path, uid=1000))
    assert done.returncode == 0, done.stderr
    install = "apt-get install -y -qq --no-install-recommends prometheus docker-compose"
    assert calls(tmp_path) == [
        "sudo apt-get update -qq", "apt-get update -qq",
        f"sudo env DEBIAN_FRONTEND=noninteractive {install}", install]


def test_setup_says_what_to_install_when_it_cannot(tmp_path):
    done = run_setup(stand_ins(tmp_path, uid=1000, have=("docker-compose",), sudo=False))
    assert done.returncode == 1
    assert "not root and sudo is not installed" in done.stderr
    assert "apt-get install prometheus" in done.stderr
    assert calls(tmp_path) == []


def test_setup_fails_clearly_without_apt(tmp_path):
    done = run_setup(stand_ins(tmp_path, uid=0, apt=False))
    assert done.returncode == 1
    assert "apt-get is not available" in done.stderr
    assert "prometheus docker-compose" in done.stderr
    assert os.access(SCRIPT, os.X_OK), "make runs the script directly"


def test_setup_fails_at_once_when_the_suite_could_not_run_rabbitmqctl(tmp_path):
    """A newcomer who is not root: Debian's rabbitmqctl refuses them, and every test that makes a throwaway vhost
    (each worker test) failed one by one. The setup step says why, and what to do, before the suite runs."""
    done = run_setup(stand_ins(tmp_path, uid=1000, have=TOOLS, rabbitmqctl=RABBITMQCTL_REFUSES))
    assert done.returncode == 1
    assert "Only root or rabbitmq should run rabbitmqctl" in done.stderr
    assert "sudo make test" in done.stderr and "rabbitmq-server -detached" in done.stderr


def test_setup_fails_at_once_without_rabbitmq(tmp_path):
    done = run_setup(stand_ins(tmp_path, uid=0, have=TOOLS, rabbitmqctl=None))
    assert done.returncode == 1
    assert "apt-get install rabbitmq-server" in done.stderr


def test_setup_checks_rabbitmqctl_after_installing_the_tools(tmp_path):
    done = run_setup(stand_ins(tmp_path, uid=0, rabbitmqctl=RABBITMQCTL_REFUSES))
    assert done.returncode == 1 and "Only root or rabbitmq should run rabbitmqctl" in done.stderr
    assert calls(tmp_path)[-1] == "apt-get install -y -qq --no-install-recommends prometheus docker-compose"
