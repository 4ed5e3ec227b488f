"""The ``hris_rejected`` collection: one document per HRIS event goals-worker dead-lettered (``_id`` the event id,
``type``, ``reason``, ``at``; written by hris.py), and its count by type for goals-api's /metrics (collector.py).

Apart from hris.py so that goals-api, which counts, imports nothing of the worker's (eventlet).
"""

from pymongo.database import Database

from services.platform.store.mongo import Index

HIRED, UPDATED, TERMINATED = "employee.hired", "employee.updated", "employee.terminated"
UNIT_UPSERTED, UNIT_RETIRED = "org_unit.upserted", "org_unit.retired"
TYPES = (HIRED, UPDATED, TERMINATED, UNIT_UPSERTED, UNIT_RETIRED)  # the routing keys goals-worker takes
REJECTED = "hris_rejected"

# The rejections of each type, counted on every scrape: MongoDB counts the index's keys alone.
INDEXES = [Index(REJECTED, [("type", 1)], name="hris_rejected_by_type")]


def rejected_counts(db: Database) -> dict[str, int]:
    """The events rejected so far, by type: one count on ``hris_rejected_by_type`` per type. goals-worker takes
    only these five types (worker.py), so every document has one of them."""
    return {kind: db[REJECTED].count_documents({"type": kind}) for kind in TYPES}
