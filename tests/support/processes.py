"""Test helpers shared across services: waiting for a condition, processes the tests start, broker queues, the
commands a client sends."""

import subprocess
import tempfile
import time
from pathlib import Path

from pymongo import monitoring


def wait_for(predicate, timeout: float = 30.0, message: str = "condition never held", every: float = 0.1):
    """Polls until predicate() is truthy and returns its value; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(every)
    raise AssertionError(message)


ROOT = Path(__file__).resolve().parents[1]


def spawn(args: list[str], env: dict | None = None) -> subprocess.Popen:
    """A process of the system under test, its stderr (where our services log) kept in a temporary file.

    Not a pipe: nobody reads a pipe while the test runs, and once 64 KB of log lines fill it the process
    blocks on its next write and looks stuck. ``log_tail`` reads the file.
    """
    log = tempfile.TemporaryFile(mode="w+", prefix="v2mom-test-", suffix=".log")
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log, text=True)
    process.log = log
    return process


def log_tail(process: subprocess.Popen, size: int = 3000) -> str:
    """The end of what a process ``spawn`` started has logged so far."""
    process.log.flush()
    process.log.seek(0)
    return process.log.read()[-size:]


def queue_exists(connection, name: str) -> bool:
    """Whether a queue is declared on the broker (a passive declare fails, and closes its channel, if not)."""
    try:
        connection.channel().queue_declare(name, passive=True)
        return True
    except Exception:
        return False


class Commands(monitoring.CommandListener):
    """(command, collection, filter) of everything sent while recording."""

    def __init__(self):
        self.recording = False
        self.seen: list[tuple[str, str, dict]] = []

    def started(self, event):
        if not self.recording or event.command_name not in ("find", "update", "insert", "delete", "aggregate", "count"):
            return
        command = event.command
        collection = command[event.command_name]
        if event.command_name == "update":
            self.seen.extend(("update", collection, update["q"]) for update in command["updates"])
        else:
            self.seen.append((event.command_name, collection, command.get("filter", {})))

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass

    def during(self, action) -> list[tuple[str, str, dict]]:
        self.seen, self.recording = [], True
        try:
            action()
        finally:
            self.recording = False
        return self.seen
