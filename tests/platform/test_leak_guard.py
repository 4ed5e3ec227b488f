"""The leak guard (tests/support/leak_guard.py): a run of pytest with it ends every process its tests started,
a failing test's included, and fails when any was left running.

Each case runs pytest on a small test file of its own in a subprocess, then looks in /proc for any process
still carrying that inner run's id."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support.leak_guard import PROC
from tests.support.processes import ROOT, RUN_VARIABLE

SLEEPER = "[sys.executable, '-c', 'import time; time.sleep(600)']"


def run_pytest(tmp_path: Path, source: str) -> subprocess.CompletedProcess:
    """pytest with the guard on ``source``; the inner tests write their run's id to ``run_id``."""
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(source), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:nameko", "-p", "no:cacheprovider", "-p",
         "tests.support.leak_guard", "test_inner.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def survivors(tmp_path: Path) -> list[int]:
    """Live processes (not zombies) that carry the inner run's id."""
    marker = f"{RUN_VARIABLE}={(tmp_path / 'run_id').read_text()}".encode()
    found = []
    for entry in PROC.iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "environ").read_bytes().split(b"\0") \
                    and (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def alive(pid: int) -> bool:
    try:
        return bool((PROC / str(pid) / "cmdline").read_bytes())  # a zombie's is empty
    except OSError:
        return False


def test_a_failing_tests_server_is_ended_and_the_run_names_it(tmp_path):
    done = run_pytest(tmp_path, f"""
        import os, pathlib, sys
        from tests.support.processes import spawn

        def test_fails_with_its_server_running():
            pathlib.Path("run_id").write_text(os.environ["{RUN_VARIABLE}"])
            server = spawn([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "0"])
            pathlib.Path("pid").write_text(str(server.pid))
            assert False, "fails before it stops its server"

        def test_next_runs_without_it():
            pid = pathlib.Path("pid").read_text()
            assert not pathlib.Path(f"/proc/{{pid}}/cmdline").exists() or not pathlib.Path(f"/proc/{{pid}}/cmdline").read_bytes()
    """)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed, 1 passed" in done.stdout, "ended at the failing test's teardown, before the next test"
    pid = int((tmp_path / "pid").read_text())
    assert f"test_fails_with_its_server_running left pid {pid}" in done.stdout
    assert not alive(pid)
    assert survivors(tmp_path) == []


def test_a_passing_run_fails_when_a_process_outlives_it(tmp_path):
    done = run_pytest(tmp_path, f"""
        import os, pathlib, subprocess, sys
        import pytest

        @pytest.fixture(scope="session")
        def daemon():
            # Its own session and never stopped: only the sweep at the end of the run can find it.
            process = subprocess.Popen({SLEEPER}, start_new_session=True)
            pathlib.Path("pid").write_text(str(process.pid))
            return process

        def test_passes(daemon):
            pathlib.Path("run_id").write_text(os.environ["{RUN_VARIABLE}"])
            assert daemon.poll() is None
    """)
    assert "1 passed" in done.stdout, done.stdout + done.stderr
    assert done.returncode == 1, "the run fails although its test passed"
    pid = int((tmp_path / "pid").read_text())
    assert f"pid {pid} outlived the run" in done.stdout
    assert not alive(pid)
    assert survivors(tmp_path) == []


def test_a_passing_test_that_leaves_a_process_fails_the_run(tmp_path):
    done = run_pytest(tmp_path, f"""
        import os, pathlib, subprocess, sys

        def test_forgets_its_process():
            pathlib.Path("run_id").write_text(os.environ["{RUN_VARIABLE}"])
            subprocess.Popen({SLEEPER})

        def test_after_it():
            pass
    """)
    assert "2 passed" in done.stdout, done.stdout + done.stderr
    assert done.returncode == 1
    assert "test_forgets_its_process left pid" in done.stdout
    assert "test_after_it" not in done.stdout.split("now ended")[-1]
    assert survivors(tmp_path) == []


def test_a_run_that_cleans_up_passes(tmp_path):
    done = run_pytest(tmp_path, f"""
        import os, pathlib, sys
        from tests.support.processes import spawn, stop

        def test_stops_its_server():
            pathlib.Path("run_id").write_text(os.environ["{RUN_VARIABLE}"])
            stop(spawn({SLEEPER}))
    """)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "still running" not in done.stdout
    assert survivors(tmp_path) == []
