"""No process outlives the test run: a pytest plugin (tests/conftest.py loads it).

Every process the tests start carries the run's id in its environment (``RUN_VARIABLE``, set in this process's
environment when pytest starts; children pass it on to theirs, daemons that detach included). So the run can
find them in /proc whoever started them and however:

- after each test, what the test itself started and left running is ended (SIGTERM, then SIGKILL), failing
  or not, so a failed test's servers do not run on through the rest of the suite;
- when the session ends, after every fixture's teardown, any process still carrying the id is ended;
- either way the run fails, naming each one: a test that passes while leaving a process behind is a bug too.
"""

import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from tests.support.processes import RUN_VARIABLE
STARTED = pytest.StashKey[set]()
LEAKS = pytest.StashKey[list]()
PROC = Path("/proc")


def run_marker() -> bytes:
    return f"{RUN_VARIABLE}={os.environ[RUN_VARIABLE]}".encode()


def pids() -> set[int]:
    return {int(entry.name) for entry in PROC.iterdir() if entry.name.isdigit()}


def _own_line() -> set[int]:
    """This process and its ancestors: they may carry an outer run's id, never this run's, but keep off them."""
    line, pid = set(), os.getpid()
    while pid > 1 and pid not in line:
        line.add(pid)
        try:
            pid = int((PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return line


def marked(candidates: set[int]) -> dict[int, str]:
    """Of ``candidates``, the live processes that carry this run's id: {pid: command line}."""
    found, marker, own = {}, run_marker(), _own_line()
    for pid in sorted(candidates - own):
        try:
            if marker not in (PROC / str(pid) / "environ").read_bytes().split(b"\0"):
                continue
            command = (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if command:  # a zombie has none: it has ended, only its parent has not collected it yet
            found[pid] = command.strip()
    return found


def end(processes: dict[int, str], grace: float = 5.0) -> None:
    """SIGTERM to all, SIGKILL to those still there after ``grace`` seconds."""
    for pid in processes:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while marked(set(processes)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in marked(set(processes)):
        _signal(pid, signal.SIGKILL)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def pytest_configure(config):
    # A fresh id even when an outer run's is inherited (a test that runs pytest), so each run ends only its own.
    os.environ[RUN_VARIABLE] = uuid.uuid4().hex
    config.stash[LEAKS] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    item.stash[STARTED] = pids()  # what runs before the test body; fixtures' processes are already in it
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    try:
        return (yield)
    finally:
        if STARTED in item.stash:
            left = marked(pids() - item.stash[STARTED])
            if left:
                end(left)
                item.config.stash[LEAKS].extend(f"{item.nodeid} left pid {pid}: {cmd}" for pid, cmd in left.items())


@pytest.hookimpl(trylast=True)  # after the runner's own sessionfinish has torn down every fixture
def pytest_sessionfinish(session):
    left = marked(pids())
    if left:
        end(left)
        session.config.stash[LEAKS].extend(f"pid {pid} outlived the run: {cmd}" for pid, cmd in left.items())
    leaks = session.config.stash[LEAKS]
    if leaks:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = ["processes the tests started were still running (now ended):", *leaks]
        for line in lines:
            if reporter:
                reporter.write_line(line, red=True)
            else:
                print(line)
        if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
