"""The embedded store for local runs and tests: mongoeco's wire server.

Real pymongo talks to it over a real socket, as it would to MongoDB. With
``--sqlite PATH`` the data survives restarts; without it, it lives in memory.

    python -m deploy.dev.mongo_server --port 27017 --sqlite var/mongo.sqlite
"""

import argparse
import asyncio
import copy
import logging
import signal
import threading
import time
from pathlib import Path

import mongoeco.engines.results as mongoeco_results
import mongoeco.engines.sqlite as mongoeco_sqlite
from mongoeco.core.filtering import QueryEngine
from mongoeco.core.operation_context import ChangePublicationPolicy
from mongoeco.core.query_plan import (
    AndCondition,
    EqualsCondition,
    ExistsCondition,
    GreaterThanCondition,
    GreaterThanOrEqualCondition,
    InCondition,
    LessThanCondition,
    LessThanOrEqualCondition,
    NotEqualsCondition,
    NotInCondition,
    OrCondition,
    QueryNode,
    SizeCondition,
)
from mongoeco.engines import MemoryEngine, SQLiteEngine
from mongoeco.wire import AsyncMongoEcoProxyServer

from services.platform.bus.outbox import PENDING_FIELD
from services.platform.core import logs

log = logging.getLogger(__name__)

# How often the SQLite engine hands committed changes to its change-stream hub.
CHANGE_DISPATCH_SECONDS = 1.0


# Conditions matched in Python beside an _id lookup (see _by_id): plain comparisons only, nothing
# that needs the command's variables ($expr), a collation or an index of its own.
PLAIN_CONDITIONS = (
    EqualsCondition, NotEqualsCondition, GreaterThanCondition, GreaterThanOrEqualCondition, LessThanCondition,
    LessThanOrEqualCondition, InCondition, NotInCondition, ExistsCondition, SizeCondition,
)


def _plain(plan: QueryNode) -> bool:
    if isinstance(plan, AndCondition | OrCondition):
        return all(_plain(clause) for clause in plan.clauses)
    return isinstance(plan, PLAIN_CONDITIONS)


def _by_id(plan: QueryNode) -> EqualsCondition | None:
    """The top-level ``_id`` equality of an ``$and`` of plain conditions, else None."""
    if not isinstance(plan, AndCondition) or not _plain(plan):
        return None
    return next((clause for clause in plan.clauses
                 if isinstance(clause, EqualsCondition) and clause.field == "_id"), None)


_stock_append_change = mongoeco_sqlite._sqlite_append_change


def _append_change(conn, *, context, full_document, **change):
    """mongoeco's change-outbox append, minus serialising the document into a gap entry.

    With no change stream open (nothing here calls ``watch()``), every write
    records a gap: an entry without payload, whose effect (the whole
    document, encoded) only feeds a fingerprint for retried operations. That
    encoding was a third of a progress document's update. The fingerprint is
    now taken without the document, the same way on every attempt.
    """
    if context is not None and context.publication is ChangePublicationPolicy.RECORD_GAP:
        full_document = None
    return _stock_append_change(conn, context=context, full_document=full_document, **change)


# The engine calls this module-level name for every insert, update and delete; replacing it is the only hook.
mongoeco_sqlite._sqlite_append_change = _append_change


def _already_a_copy(value):
    return value


def share_outcome_images(share: bool = True) -> None:
    """mongoeco's write outcomes keep the images they are given, instead of copying them again.

    Every outcome (mongoeco/engines/results.py) deep-copies the documents it
    is built with, and the SQLite engine builds it with documents it has just
    copied itself or decoded from storage for this one write. An update
    copied its document nine times, four of them in its outcome: the before
    and after images when it was built, and again when the engine rebuilt it
    to add its commit number. On metrics' V2MOM documents, a read and a
    guarded update took 8.1 ms of the store's CPU, 6.8 ms without those four.
    Only with the SQLite engine: the in-memory engine's images may be its
    stored documents. ``share=False`` puts the copies back.
    """
    mongoeco_results.deepcopy = _already_a_copy if share else copy.deepcopy


class BatchedDispatchSQLiteEngine(SQLiteEngine):
    """mongoeco's SQLite engine with local-run shortcuts: a write naming ``_id`` reads one
    document, committed changes reach change streams at most once a second, and a query neither
    scans its collection for Decimal128 values first nor opens a connection of its own.

    A single-document update or delete whose filter is ``_id`` *and* something
    more (a revision guard ``{_id, revision: 3}``, an idempotency guard
    ``{_id, recent: {$ne: id}}``, a lease's ``$or``) made the stock engine
    translate the whole filter to SQL and scan the collection, decoding every
    document: about 30 ms per write at 1,000 documents against 3 ms for ``_id``
    alone. Here the document is fetched by its ``_id`` and the rest of the
    filter is matched against it with mongoeco's own matcher, which is what
    the filter means anyway; at most one document has that ``_id``.

    An insert (or upsert) also decoded every document of the collection, to
    find an existing ``_id`` equal to the new one under BSON's rules though
    stored under another key (``1`` and ``1.0``). A string ``_id``, which
    every service uses, equals only itself, and the lookup of its own key
    that precedes the scan already finds it; so a string ``_id`` skips the
    scan, as mongoeco's updates already do for any non-numeric ``_id``.

    The stock engine dispatches after every write: it takes a lease in SQLite,
    starts a heartbeat thread, checkpoints and compacts, each with its own
    commit. That was 40% of the store's CPU during a first `make run` and made
    every write 2.5x slower. Nothing here reads change streams (no ``watch()``),
    so changes are dispatched in batches instead; the changes of the last
    second wait in the engine's own outbox until the next write.

    Before translating a query to SQL, the stock engine looked for a
    Decimal128 in each field the query names, one scan of the collection per
    field and decimal flavour (three), to fall back to Python's comparison if
    one is there. Its answer is cached only until the next write, so on a
    busy store nearly every query paid the three scans: a relay's empty poll
    of ``{outbox_pending: true}`` right after a write took 2x as long. No
    service stores a Decimal128 (numbers are doubles), so only a Decimal128
    in the query itself sends it to Python here.

    A query that may return more than one document opened a SQLite
    connection of its own (and read the catalogue again) so that a long scan
    need not hold the engine's lock: about 1 ms per query, a third of an empty
    relay poll. The dev store's queries are short; they share the engine's
    connection, as mongoeco's in-memory SQLite does.

    A relay's poll, ``{outbox_pending: true}``, was a SQL scan of the whole
    collection: the engine plans an equality on a field with an index of its
    own through that index only for ``explain``. Here the poll takes that
    plan, and skips the scan that asks whether the flag is ever an array (it
    never is, and its answer lasts only until the next write): an empty poll
    costs the same at 100 and 4,000 documents (about 1 ms), where it cost
    about 5 ms at 4,000 and grew with the collection.

    Every write also encoded the whole document into the change outbox's gap
    entry only to fingerprint it (see ``_append_change`` above): without
    that, a guarded update of a 25-item document takes 1.8 ms of CPU instead
    of 2.9 ms.
    """

    _last_dispatch = 0.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._planning = threading.local()  # per thread: the engine plans reads on its executor's threads

    def _select_first_document_for_plan(self, db_name, coll_name, plan, *, hint=None, context=None):
        by_id = _by_id(plan) if hint is None else None
        if by_id is None:
            return super()._select_first_document_for_plan(db_name, coll_name, plan, hint=hint, context=context)
        found = super()._select_first_document_for_plan(db_name, coll_name, by_id, context=context)
        if found is None or not QueryEngine.match_plan(found[1], plan):
            return None
        return found

    def _validate_document_against_unique_indexes(self, db_name, coll_name, document, *, exclude_storage_key=None,
                                                  skip_id_check=False, scan_payload_id=False):
        if scan_payload_id and isinstance(document.get("_id"), str):
            scan_payload_id = False
        super()._validate_document_against_unique_indexes(
            db_name, coll_name, document, exclude_storage_key=exclude_storage_key, skip_id_check=skip_id_check,
            scan_payload_id=scan_payload_id,
        )

    def _plan_requires_python_for_decimal_numeric(self, db_name, coll_name, plan) -> bool:
        return self._plan_contains_decimal_operand(plan)

    def _compile_read_execution_plan(self, db_name, coll_name, semantics, *, select_clause="document", hint=None):
        if (select_clause == "document" and hint is None and isinstance(semantics.query_plan, EqualsCondition)
                and semantics.query_plan.field == PENDING_FIELD and not getattr(self._planning, "poll", False)):
            # The planner comes back here when the index cannot answer (no index, or an empty collection):
            # that second call takes the stock plan, instead of recursing until Python gives up.
            self._planning.poll = True
            try:
                return self._plan_find_semantics_sync(db_name, coll_name, semantics)
            finally:
                self._planning.poll = False
        return super()._compile_read_execution_plan(db_name, coll_name, semantics, select_clause=select_clause,
                                                    hint=hint)

    def _field_is_top_level_array_in_collection(self, db_name, coll_name, field) -> bool:
        if field == PENDING_FIELD:
            return False
        return super()._field_is_top_level_array_in_collection(db_name, coll_name, field)

    def _can_use_dedicated_reader(self, context) -> bool:
        self._ensure_session_can_use_engine(context)
        return False

    def dispatch_committed_changes(self, consumer_id, consumer) -> None:
        now = time.monotonic()
        if now - self._last_dispatch < CHANGE_DISPATCH_SECONDS:
            return
        self._last_dispatch = now
        super().dispatch_committed_changes(consumer_id, consumer)


async def serve(host: str, port: int, sqlite_path: str | None, ready_file: str | None) -> None:
    if sqlite_path:
        Path(sqlite_path).parent.mkdir(parents=True, exist_ok=True)
        share_outcome_images()
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
