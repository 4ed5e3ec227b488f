"""Structured JSON logs on stderr, one object per line."""

import json
import logging
import sys
import time

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        # Anything passed through `extra=` becomes a field of its own.
        entry.update({k: v for k, v in vars(record).items() if k not in _RESERVED})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    _real_lock_under_eventlet(handler)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # kombu and nameko are chatty at INFO about reconnects we already log.
    logging.getLogger("kombu").setLevel(max(logging.WARNING, root.level))


def _real_lock_under_eventlet(handler: logging.Handler) -> None:
    """In an eventlet worker the handler's lock would be green, yet real threads log too (tpool threads: a
    client's retries), and a green lock contended from two OS threads kills the hub. A real lock is held only
    for one write."""
    patcher = sys.modules.get("eventlet.patcher")
    if patcher is not None and patcher.is_monkey_patched("thread"):
        handler.lock = patcher.original("threading").RLock()
