"""The bare path the goals API is measured against.

A plain grpcio server exposing GoalService.GetV2MOM and CreateV2MOM through the
generated servicer base, and doing only the equivalent raw pymongo call:

- GetV2MOM: ``find_one({"_id": id}, projection)`` (the projection goals-api
  uses) and the stored document turned into the response by a generic walk
  into the message constructors;
- CreateV2MOM: ``insert_one`` of a document with the same shape, elements and
  storage conventions as the one goals-api stores (content, a history entry
  carrying the content, and a pending event carrying it again as protobuf bytes), made from the
  request by a generic walk over its fields.

The stored documents match goals-api's so the store's own cost, which
dominates on mongoeco, is the same on both sides; the generic conversions are
the least code that gets a request into that shape and back.

No authentication, validation, directory look-ups, error mapping, health or
reflection: that is the work our stack adds, and what the benchmark prices.
It uses its own database in the same store, with the same indexes as ours
(bench/goals_api.py creates them), so the store does the same work for both.

    python -m bench.bare_server --mongo-uri URI --db NAME --addr 127.0.0.1:0 --ready-file F
"""

from datetime import UTC, datetime

import grpc
import pymongo
from google.type import date_pb2
from ulid import ULID

from bench.harness import bare_arguments, bare_grpc_server, serve_until_signalled
from v2mom.v1 import common_pb2, events_pb2, goals_pb2, goals_pb2_grpc

COLLECTION = "v2moms"
# The same projection goals-api uses for single reads (services/goals/repository.py SUMMARY).
SUMMARY = {"history": 0, "outbox": 0, "outbox_pending": 0}
MAX_MESSAGE_BYTES = 4 * 1024 * 1024

_CONTENT = goals_pb2.V2MOMContent.DESCRIPTOR
_DATE = date_pb2.Date.DESCRIPTOR
_TIME_FIELDS = (("create_time", "created_at"), ("update_time", "updated_at"))
_PLANS: dict = {}


def _plan(descriptor) -> list[tuple]:
    """Per message type, once: (name, kind, repeated, has presence, field) for every field."""
    plan = _PLANS.get(descriptor)
    if plan is None:
        plan = []
        for field in descriptor.fields:
            if field.message_type is _DATE:
                kind = "date"
            elif field.message_type is not None:
                kind = "message"
            elif field.enum_type is not None:
                kind = "enum"
            else:
                kind = "scalar"
            plan.append((field.name, kind, field.is_repeated, field.has_presence and not field.is_repeated, field))
        _PLANS[descriptor] = plan
    return plan


def to_doc(message) -> dict:
    """A message as a stored document, in goals-api's storage conventions but by a generic walk.

    Every field keyed by its proto name (empty ones too), enums by name, dates
    as 'YYYY-MM-DD', unset optional fields as None: the same elements goals-api
    stores, so the store decodes and scans the same amount for both stacks.
    """
    out = {}
    for name, kind, repeated, presence, field in _plan(message.DESCRIPTOR):
        value = getattr(message, name)
        if repeated:
            if kind == "message":
                value = [to_doc(item) for item in value]
            elif kind == "enum":
                value = [field.enum_type.values_by_number[item].name for item in value]
            else:
                value = list(value)
        elif presence and not message.HasField(name):
            value = None
        elif kind == "date":
            value = f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
        elif kind == "message":
            value = to_doc(value)
        elif kind == "enum":
            value = field.enum_type.values_by_number[value].name
        out[name] = value
    return out


def from_doc(doc: dict, descriptor) -> dict:
    """Constructor keyword arguments from a stored document: the message constructors do the rest."""
    fields = descriptor.fields_by_name
    kwargs = {}
    for key, value in doc.items():
        field = fields.get(key)
        if value is None or field is None:
            continue
        if field.message_type is _DATE:
            kwargs[key] = date_pb2.Date(year=int(value[:4]), month=int(value[5:7]), day=int(value[8:10]))
        elif field.message_type is not None:
            if field.is_repeated:
                kwargs[key] = [from_doc(item, field.message_type) for item in value]
            else:
                kwargs[key] = from_doc(value, field.message_type)
        else:
            kwargs[key] = value  # scalars as they are; enum names are accepted by the constructors
    return kwargs


def _now() -> datetime:
    stamp = datetime.now(UTC)
    return stamp.replace(microsecond=stamp.microsecond // 1000 * 1000)


class BareGoalServicer(goals_pb2_grpc.GoalServiceServicer):
    def __init__(self, collection):
        self.collection = collection

    def GetV2MOM(self, request, context):
        doc = self.collection.find_one({"_id": request.id}, SUMMARY)
        if doc is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "not found")
        message = goals_pb2.V2MOM(
            id=doc["_id"],
            revision=doc["revision"],
            owner_id=doc["owner_id"],
            org_unit_id=doc["org_unit_id"],
            level=doc["level"],
            cycle_id=doc["cycle_id"],
            state=doc["state"],
            content=from_doc(doc["content"], _CONTENT),
        )
        for field, key in _TIME_FIELDS:
            getattr(message, field).FromDatetime(doc[key])
        return message

    def CreateV2MOM(self, request, context):
        stamp = _now()
        content = to_doc(request.content)
        v2mom_id = f"v2m_{str(ULID()).lower()}"
        level_name = common_pb2.OrgLevel.Name(request.level)
        state = "V2MOM_STATE_DRAFT"
        doc = {
            "_id": v2mom_id,
            "revision": 1,
            "owner_id": request.owner_id,
            "org_unit_id": request.org_unit_id,
            "level": level_name,
            "cycle_id": request.cycle_id,
            "parent_id": request.parent_id or None,
            "state": state,
            "content": content,
            "published": None,
            "published_revision": 0,
            "approver_id": None,
            "slot": f"{request.cycle_id}/{level_name}/{request.owner_id}",
            "created_by": request.owner_id,
            "created_at": stamp,
            "updated_at": stamp,
            "history": [
                {
                    "revision": 1,
                    "action": "CREATE",
                    "actor_id": request.owner_id,
                    "at": stamp,
                    "reason": "",
                    "changed_paths": ["content"],
                    "state": state,
                    "content": content,
                }
            ],
            "outbox": [
                {
                    "specversion": "1.0",
                    "id": f"evt_{str(ULID()).lower()}",
                    "source": "/v2mom/bare",
                    "type": "v2mom_created",
                    "subject": v2mom_id,
                    "time": stamp.isoformat(),
                    "datacontenttype": "application/json",
                    # Stored as goals-api stores it: the payload's protobuf bytes,
                    # rendered to JSON only when the relay publishes it.
                    "data_proto": {
                        "type": "v2mom.v1.V2MOMEventData",
                        "value": events_pb2.V2MOMEventData(
                            v2mom_id=v2mom_id,
                            revision=1,
                            owner_id=request.owner_id,
                            org_unit_id=request.org_unit_id,
                            level=request.level,
                            cycle_id=request.cycle_id,
                            state=goals_pb2.V2MOM_STATE_DRAFT,
                            actor_id=request.owner_id,
                            content=request.content,
                        ).SerializeToString(),
                    },
                }
            ],
            "outbox_pending": True,
        }
        self.collection.insert_one(doc)
        message = goals_pb2.V2MOM(
            id=v2mom_id,
            revision=1,
            owner_id=request.owner_id,
            org_unit_id=request.org_unit_id,
            level=request.level,
            cycle_id=request.cycle_id,
            parent_id=request.parent_id,
            state=goals_pb2.V2MOM_STATE_DRAFT,
            content=request.content,
        )
        message.create_time.FromDatetime(stamp)
        message.update_time.FromDatetime(stamp)
        return message


def create_server(addr: str, mongo_uri: str, db_name: str) -> tuple[grpc.Server, int]:
    client = pymongo.MongoClient(mongo_uri, appname="bench-bare", serverSelectionTimeoutMS=5000, tz_aware=True)
    servicer = BareGoalServicer(client[db_name][COLLECTION])
    options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES), ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
    return bare_grpc_server(addr, lambda server: goals_pb2_grpc.add_GoalServiceServicer_to_server(servicer, server), options)


def main() -> None:
    args = bare_arguments(__doc__.splitlines()[0]).parse_args()
    serve_until_signalled(*create_server(args.addr, args.mongo_uri, args.db), args.ready_file)


if __name__ == "__main__":
    main()
