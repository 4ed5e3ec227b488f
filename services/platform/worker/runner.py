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
from ..core.config import Settings, load_or_exit
from .consumer import QueueMismatch

log = logging.getLogger(__name__)


def nameko_config(settings: Settings) -> dict:
    """nameko's config for a worker: the broker, and the queue and consumer settings CloudEventHandler reads."""
    return {
        "AMQP_URI": settings.amqp_uri,
        # Our envelopes are CloudEvents JSON; accept them alongside nameko's json.
        "serializer": "json",
        "ACCEPT": ["json", "cloudevents"],
        # The container's pool: how many handlers (and timer ticks) run at once, across all of its entrypoints.
        "max_workers": settings.worker_concurrency,
        # Read by services.platform.worker.consumer; nameko itself would prefetch max_workers per consumer.
        "AMQP_PREFETCH": settings.prefetch_count,
        "AMQP_QUEUE_TYPE": settings.queue_type,
        "AMQP_DELIVERY_LIMIT": settings.delivery_limit,
    }


def run_services(service_name: str, *service_classes) -> None:
    settings = load_or_exit(service_name)
    logs.configure(f"{service_name}-worker", settings.log_level)
    runner = ServiceRunner(nameko_config(settings))
    for cls in service_classes:
        runner.add_service(cls)
    stopping = eventlet.event.Event()

    def request_stop(*_):
        if not stopping.ready():
            stopping.send(True)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGUSR1, dump_stacks)
    try:
        runner.start()
    except QueueMismatch as error:
        # Restarting cannot help: say what to do (consumer.QueueMismatch) and stop with a status of its own.
        log.error(f"worker cannot start: {error}", extra={"queue": error.queue})
        runner.kill()
        raise SystemExit(3) from None
    log.info("worker started", extra={"services": [cls.name for cls in service_classes],
                                      "queue_type": settings.queue_type, "concurrency": settings.worker_concurrency,
                                      "prefetch": settings.prefetch_count})
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
