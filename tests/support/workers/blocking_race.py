"""Many green threads making blocking calls that take a lock from ``threading`` (green here, as grpcio's
channel locks are in a worker) and log, through services.platform.worker.blocking.call_blocking.

Prints "done <n>" when every call came back; eventlet's "Cannot switch to a different thread" would kill
the hub first.
"""

import warnings

warnings.filterwarnings("ignore", message=r"\\s*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()

import logging  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from services.platform.core import logs  # noqa: E402
from services.platform.worker.blocking import call_blocking  # noqa: E402

CALLS = 400
channel_lock = threading.Lock()  # green after monkey_patch, like grpcio's
log = logging.getLogger("blocking-race")


def blocking_call(n: int) -> int:
    with channel_lock:
        time.sleep(0.001)
    if n % 10 == 0:
        log.info("retrying call", extra={"n": n})  # from a real thread, while green threads log too
    return n


def green_work(n: int) -> int:
    log.info("handling", extra={"n": n})
    return call_blocking(blocking_call, n)


if __name__ == "__main__":
    logs.configure("blocking-race")
    results = list(eventlet.GreenPool(20).imap(green_work, range(CALLS)))
    assert results == list(range(CALLS)), results
    print(f"done {len(results)}", flush=True)
