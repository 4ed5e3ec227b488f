"""The bare path checkins-api's RecordMeasureCheckin is measured against.

A plain grpcio server exposing CheckinService.RecordMeasureCheckin through
the generated servicer base and doing only the equivalent raw pymongo call:
one ``insert_one`` of a check-in document with the same fields, values and
storage conventions as the one checkins-api stores, carrying its pending
``checkin_recorded`` event (the payload as protobuf bytes, as ours keeps it
until the relay renders it).

What it leaves out is what the benchmark prices: authentication, validation,
the replayed-key look-up, the published structure and cycle look-ups, the
access rule, the cadence look-up, error mapping, health and reflection. It
knows each V2MOM's owner, unit, cycle, revision and measures from a JSON
file the harness writes (``--structures``), so its documents match ours
byte for byte in shape and nearly so in size without reading anything.

It uses its own database in the same store, with the same indexes as ours
(bench/checkins.py creates them), so the store does the same work for both.

    python -m bench.bare_checkins_server --mongo-uri URI --db NAME --structures FILE --ready-file F
"""

import json
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pymongo

from bench.harness import bare_arguments, bare_grpc_server, serve_until_signalled
from services.platform.bus.events import envelope
from services.platform.core.ids import new_id
from v2mom.v1 import checkins_pb2, checkins_pb2_grpc, events_pb2

COLLECTION = "checkins"


def _now() -> datetime:
    stamp = datetime.now(UTC)
    return stamp.replace(microsecond=stamp.microsecond // 1000 * 1000)


def progress_percent(measure: dict, value: float) -> float:
    span = measure["target"] - measure["baseline"]
    share = (value - measure["baseline"]) / span if span else 1.0
    return 100.0 * min(1.0, max(0.0, share))


class BareCheckinServicer(checkins_pb2_grpc.CheckinServiceServicer):
    def __init__(self, collection, structures: dict):
        self.collection = collection
        self.structures = structures

    def RecordMeasureCheckin(self, request, context):
        v2mom = self.structures[request.v2mom_id]
        measure = v2mom["measures"][request.measure_id]
        stamp = _now()
        doc = {
            "_id": new_id("chk"),
            "v2mom_id": request.v2mom_id,
            "item_kind": "ITEM_KIND_MEASURE",
            "item_id": request.measure_id,
            "author_id": v2mom["owner_id"],
            "owner_id": v2mom["owner_id"],
            "org_unit_id": v2mom["org_unit_id"],
            "cycle_id": v2mom["cycle_id"],
            "structure_revision": v2mom["revision"],
            "value": request.value,
            "progress_percent": progress_percent(measure, request.value),
            "status": checkins_pb2.CheckinStatus.Name(request.status),
            "confidence": request.confidence,
            "comment": request.comment,
            "completed_milestone_ids": [],
            "observe_time": stamp,
            "record_time": stamp,
        }
        if request.idempotency_key:
            doc["idempotency_key"] = request.idempotency_key
        checkin = checkins_pb2.Checkin(
            id=doc["_id"], v2mom_id=doc["v2mom_id"], item_kind=checkins_pb2.ITEM_KIND_MEASURE, item_id=doc["item_id"],
            author_id=doc["author_id"], owner_id=doc["owner_id"], org_unit_id=doc["org_unit_id"],
            cycle_id=doc["cycle_id"], value=doc["value"], progress_percent=doc["progress_percent"],
            status=request.status, confidence=request.confidence, comment=request.comment,
        )
        checkin.observe_time.FromDatetime(stamp)
        checkin.record_time.FromDatetime(stamp)
        data = events_pb2.CheckinEventData(
            checkin=checkin, item_title=measure["title"], parent_v2mom_id=v2mom["parent_id"],
            cadence=checkins_pb2.CADENCE_BIWEEKLY,
        )
        event = envelope("checkins", "checkin_recorded", subject=doc["_id"], data=data)
        self.collection.insert_one({**doc, "outbox": [event], "outbox_pending": True})
        return checkin


def create_server(addr: str, mongo_uri: str, db_name: str, structures: dict) -> tuple[grpc.Server, int]:
    client = pymongo.MongoClient(mongo_uri, appname="bench-bare-checkins", serverSelectionTimeoutMS=5000, tz_aware=True)
    servicer = BareCheckinServicer(client[db_name][COLLECTION], structures)
    return bare_grpc_server(addr, lambda server: checkins_pb2_grpc.add_CheckinServiceServicer_to_server(servicer, server))


def main() -> None:
    parser = bare_arguments(__doc__.splitlines()[0])
    parser.add_argument("--structures", required=True, type=Path, help="JSON: v2mom id -> owner, unit, cycle, measures")
    args = parser.parse_args()
    server, port = create_server(args.addr, args.mongo_uri, args.db, json.loads(args.structures.read_text()))
    serve_until_signalled(server, port, args.ready_file)


if __name__ == "__main__":
    main()
