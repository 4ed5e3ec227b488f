"""The embedded store for local runs and tests: mongoeco's wire server.

Real pymongo talks to it over a real socket, as it would to MongoDB. With
``--sqlite PATH`` the data survives restarts; without it, it lives in memory.

    python -m deploy.dev.mongo_server --port 27017 --sqlite var/mongo.sqlite
"""

import argparse
import asyncio
import logging
import signal
import time
from pathlib import Path

from mongoeco.engines import MemoryEngine, SQLiteEngine
from mongoeco.wire import AsyncMongoEcoProxyServer

from services.platform.core import logs

log = logging.getLogger(__name__)

# How often the SQLite engine hands committed changes to its change-stream hub.
CHANGE_DISPATCH_SECONDS = 1.0


class BatchedDispatchSQLiteEngine(SQLiteEngine):
    """mongoeco's SQLite engine, handing committed changes to change streams at most once a second.

    The stock engine dispatches after every write: it takes a lease in SQLite,
    starts a heartbeat thread, checkpoints and compacts, each with its own
    commit. That was 40% of the store's CPU during a first `make run` and made
    every write 2.5x slower. Nothing here reads change streams (no ``watch()``),
    so changes are dispatched in batches instead; the changes of the last
    second wait in the engine's own outbox until the next write.
    """

    _last_dispatch = 0.0

    def dispatch_committed_changes(self, consumer_id, consumer) -> None:
        now = time.monotonic()
        if now - self._last_dispatch < CHANGE_DISPATCH_SECONDS:
            return
        self._last_dispatch = now
        super().dispatch_committed_changes(consumer_id, consumer)


async def serve(host: str, port: int, sqlite_path: str | None, ready_file: str | None) -> None:
    if sqlite_path:
        Path(sqlite_path).parent.mkdir(parents=True, exist_ok=True)
        engine = BatchedDispatchSQLiteEngine(sqlite_path)
    else:
        engine = MemoryEngine()
    server = AsyncMongoEcoProxyServer(engine=engine, host=host, port=port)
    address = await server.start()
    log.info("mongo wire server listening", extra={"uri": address.uri, "sqlite": sqlite_path or "memory"})
    if ready_file:
        # Tests asking for port 0 learn the real port from this file.
        Path(ready_file).write_text(address.uri)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.close()
    log.info("mongo wire server stopped")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=27017)
    parser.add_argument("--sqlite", help="SQLite file to keep data in (default: memory)")
    parser.add_argument("--ready-file", help="write the connection URI here once listening")
    args = parser.parse_args()
    logs.configure("mongo-wire")
    asyncio.run(serve(args.host, args.port, args.sqlite, args.ready_file))


if __name__ == "__main__":
    main()
