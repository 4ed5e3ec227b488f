"""Blocking calls from an eventlet worker (services/platform/worker/blocking.py), in a real worker-like process."""

import subprocess
import sys

from tests.support.processes import ROOT


def test_concurrent_blocking_calls_and_their_logging_never_kill_the_hub():
    # Before call_blocking serialized them, plain tpool.execute calls contending for a green lock killed
    # the hub ("greenlet.error: Cannot switch to a different thread") and checkins-worker stopped consuming.
    completed = subprocess.run([sys.executable, "-m", "tests.support.workers.blocking_race"], cwd=ROOT,
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.strip() == "done 400"
    assert "Cannot switch to a different thread" not in completed.stderr
    assert completed.stderr.count('"msg": "retrying call"') == 40
