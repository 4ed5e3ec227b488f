"""Starts nameko services from code (ServiceRunner), not through `nameko run`.

nameko 2.14.1's CLI imports pkg_resources, which setuptools >= 81 removed.
The caller must have run eventlet.monkey_patch() before importing anything
that opens sockets - see the top of each service's worker module.
"""

import gc
import logging
import signal
import sys
import traceback

import eventlet
import greenlet
from nameko.runners import ServiceRunner

from ..core import logs
from ..core.config import load_or_exit

log = logging.getLogger(__name__)


def nameko_config(amqp_uri: str) -> dict:
    return {
        "AMQP_URI": amqp_uri,
        # Our envelopes are CloudEvents JSON; accept them alongside nameko's json.
        "serializer": "json",
        "ACCEPT": ["json", "cloudevents"],
        "max_workers": 10,
    }


def run_services(service_name: str, *service_classes) -> None:
    settings = load_or_exit(service_name)
    logs.configure(f"{service_name}-worker", settings.log_level)
    runner = ServiceRunner(nameko_config(settings.amqp_uri))
    for cls in service_classes:
        runner.add_service(cls)
    stopping = eventlet.event.Event()

    def request_stop(*_):
        if not stopping.ready():
            stopping.send(True)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGUSR1, dump_stacks)
    runner.start()
    log.info("worker started", extra={"services": [cls.name for cls in service_classes]})
    stopping.wait()
    runner.stop()
    log.info("worker stopped")


def dump_stacks(*_) -> None:
    """On SIGUSR1: where every OS thread and every green thread is, to stderr. A stuck worker says why."""
    lines = ["--- stacks (SIGUSR1) ---"]
    for thread_id, frame in sys._current_frames().items():
        lines += [f"thread {thread_id}:", *traceback.format_stack(frame)]
    for green in (obj for obj in gc.get_objects() if isinstance(obj, greenlet.greenlet)):
        if green.gr_frame is not None:
            lines += [f"green thread {green!r}:", *traceback.format_stack(green.gr_frame)]
    print("\n".join(lines), file=sys.stderr, flush=True)
