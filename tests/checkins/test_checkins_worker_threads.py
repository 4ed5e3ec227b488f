"""checkins-worker asks goals from eventlet's real OS threads (tpool): what those calls touch must be thread-safe there.

A ``threading.Lock`` made after monkey-patching is a green lock; two OS
threads contending for it kill the eventlet hub ("Cannot switch to a
different thread"), and the worker stops consuming. Run in a subprocess, as
the worker runs: patched before anything else is imported.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import eventlet
eventlet.monkey_patch()
from eventlet import tpool
from services.platform.core.cache import ExpiringCache

cache = ExpiringCache(60.0)

def load():
    return "answer"

def ask(n):
    # Mostly misses (an expired entry each time), so the threads keep writing over one another.
    cache.ttl = 0.0
    return [cache.get(("cycle", (n + i) % 7), load) for i in range(20_000)]

pool = eventlet.GreenPool(16)
answers = [a for batch in pool.imap(lambda n: tpool.execute(ask, n), range(16)) for a in batch]
assert answers == ["answer"] * 16 * 20_000, answers[:5]
cache.clear()
print("ok", len(answers))
"""


def test_goals_answers_are_remembered_safely_from_tpool_threads():
    completed = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0 and completed.stdout.strip() == "ok 320000", completed.stderr[-3000:]
    assert "greenlet.error" not in completed.stderr
