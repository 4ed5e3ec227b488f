"""The one process wrapper of the tests: the system's processes (``spawn``), their logs (``log_tail``),
stopping them (``stop``), waiting for a condition (``wait_for``) and free ports."""

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Every process the tests start carries this run's id in this variable (tests/support/leak_guard.py).
RUN_VARIABLE = "V2MOM_TEST_RUN"


def wait_for(predicate, timeout: float = 30.0, message: str = "condition never held", every: float = 0.1):
    """Polls until predicate() is truthy and returns its value; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(every)
    raise AssertionError(message)


ROOT = Path(__file__).resolve().parents[2]


def spawn(args: list[str], env: dict | None = None, log: Path | None = None) -> subprocess.Popen:
    """A process of the system under test, its stderr (where our services log) kept in a file.

    Not a pipe: nobody reads a pipe while the test runs, and once 64 KB of log lines fill it the process
    blocks on its next write and looks stuck. ``log_tail`` reads the file: a temporary one, or ``log`` when
    given (appended to, so a restarted process keeps one log).
    """
    if log is None:
        stream = tempfile.TemporaryFile(mode="w+", prefix="v2mom-test-", suffix=".log")
    else:
        stream = open(log, "a+")
    process = subprocess.Popen(args, cwd=ROOT, env=_with_run_id(env), stdout=subprocess.DEVNULL, stderr=stream, text=True)
    process.log = stream
    process.log_path = log
    return process


def _with_run_id(env: dict | None) -> dict | None:
    """An environment of the test's own still carries the run's id, so the leak guard finds the process."""
    run = os.environ.get(RUN_VARIABLE)
    return env if env is None or run is None else {**env, RUN_VARIABLE: run}


def start_module(module: str, env: dict | None = None, log: Path | None = None) -> subprocess.Popen:
    """``python -m module`` as ``make run`` starts it, with ``env`` added to this process's environment."""
    return spawn([sys.executable, "-m", module], {**os.environ, **(env or {})}, log)


def log_tail(process: subprocess.Popen, size: int = 3000) -> str:
    """The end of what a process ``spawn`` started has logged so far."""
    process.log.flush()
    process.log.seek(0)
    return process.log.read()[-size:]


def stop(process: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM, and SIGKILL if it has not exited within ``timeout`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wire_server(folder: Path, *options: str) -> tuple[subprocess.Popen, str]:
    """Starts the mongoeco wire server (deploy/dev/mongo_server.py) on a free port; returns (process, its URI)."""
    ready = folder / "uri"
    process = spawn([sys.executable, "-m", "deploy.dev.mongo_server", "--port", "0", "--ready-file", str(ready), *options])
    deadline = time.monotonic() + 30
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process, timeout=10)
            raise RuntimeError(f"mongo wire server did not start: {log_tail(process, 2000)}")
        time.sleep(0.05)
    return process, ready.read_text()
