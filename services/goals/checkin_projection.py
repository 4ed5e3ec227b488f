"""goals' own copy of what check-ins reports, for ExportV2MOMs: each V2MOM's progress and each item's latest
check-in, kept by goals-worker from checkins' events (goals calls no other service).

- ``checkin_progress``: one document per V2MOM (``_id`` its id), from ``progress_changed``. Each event carries
  the V2MOM's ``revision``; a write happens only over an older one, so a replay or a late event changes nothing.
- ``item_checkins``: one document per item (``_id`` ``<v2mom>/<kind>/<item>``: a measure and a method may share
  an id), the item's latest check-in, from ``checkin_recorded`` and ``checkin_corrected``. The latest is the one
  with the latest observe time, then record time, then id (checkins' ListCheckins order), kept as one sortable
  string ``order``; a check-in replaces the stored one only when later, or when it corrects it. ``superseded``
  remembers the ids corrections replaced, so the original arriving after its correction is not taken back.
  Index ``item_checkins_by_v2mom``: an export reads a V2MOM's items in one query.

Each event is one conditional upsert of one document; losing the condition on an existing document is a
duplicate key on ``_id``, which means "what is stored is newer". Only a correction that does not become the
latest writes a second time, to remember what it superseded. Known gap: a correction that moves the latest
check-in back before another check-in of the item shows the correction until the item's next check-in, since
the one before it was never kept.
"""

from datetime import datetime

from pymongo.database import Database

from services.platform.core.clock import from_timestamp
from services.platform.store.mongo import Index, find_in, upsert_if
from v2mom.v1 import checkins_pb2, events_pb2

PROGRESS = "checkin_progress"
ITEM_CHECKINS = "item_checkins"
BY_V2MOM = "item_checkins_by_v2mom"

INDEXES = [Index(ITEM_CHECKINS, [("v2mom_id", 1), ("_id", 1)], name=BY_V2MOM)]


def item_key(checkin: checkins_pb2.Checkin) -> str:
    return f"{checkin.v2mom_id}/{checkins_pb2.ItemKind.Name(checkin.item_kind)}/{checkin.item_id}"


def order(observed: datetime, recorded: datetime, checkin_id: str) -> str:
    """Sorts as checkins' newest-first order does, as one string (fixed width up to the id)."""
    return f"{observed:%Y-%m-%dT%H:%M:%S.%f}|{recorded:%Y-%m-%dT%H:%M:%S.%f}|{checkin_id}"


class CheckinProjection:
    def __init__(self, db: Database):
        self.progress = db[PROGRESS]
        self.items = db[ITEM_CHECKINS]

    def take_progress(self, data: events_pb2.ProgressEventData) -> bool:
        """Stores the V2MOM's progress unless a newer revision is stored; True when it wrote."""
        fields = {"revision": data.revision, "progress_percent": data.progress_percent,
                  "tree_progress_percent": data.tree_progress_percent,
                  "off_track_measures": data.off_track_measures, "measures": data.measures}
        return upsert_if(self.progress, {"_id": data.v2mom_id, "revision": {"$lt": data.revision}}, {"$set": fields})

    def take_checkin(self, checkin: checkins_pb2.Checkin) -> bool:
        """Stores the item's check-in if it is the latest seen, or corrects the one stored; True when it wrote."""
        observed, recorded = from_timestamp(checkin.observe_time), from_timestamp(checkin.record_time)
        later = {"order": {"$lt": order(observed, recorded, checkin.id)}}
        newer = {"$or": [later, {"checkin_id": checkin.supersedes_id}]} if checkin.supersedes_id else later
        update = {"$set": {"v2mom_id": checkin.v2mom_id, "order": order(observed, recorded, checkin.id),
                           "checkin_id": checkin.id, "checkin": _stored(checkin, observed, recorded)}}
        if checkin.supersedes_id:
            update["$addToSet"] = {"superseded": checkin.supersedes_id}
        key = item_key(checkin)
        if upsert_if(self.items, {"_id": key, "superseded": {"$ne": checkin.id}, **newer}, update):
            return True
        if checkin.supersedes_id:  # not the latest, but its original must never come back
            self.items.update_one({"_id": key}, {"$addToSet": {"superseded": checkin.supersedes_id}})
        return False

    def read(self, v2mom_ids: list[str]) -> dict[str, dict]:
        """Per V2MOM id: ``progress`` (or None) and ``items`` (each item's latest check-in, stored fields)."""
        found = {v2mom_id: {"progress": None, "items": []} for v2mom_id in v2mom_ids}
        for doc in find_in(self.progress, "_id", v2mom_ids):
            found[doc["_id"]]["progress"] = doc
        for doc in find_in(self.items, "v2mom_id", v2mom_ids, projection={"checkin": 1, "order": 1, "v2mom_id": 1},
                           sort=("v2mom_id", "_id"), index=BY_V2MOM):
            found[doc["v2mom_id"]]["items"].append(doc)
        return found


def _stored(checkin: checkins_pb2.Checkin, observed: datetime, recorded: datetime) -> dict:
    stored = {"id": checkin.id, "item_kind": checkins_pb2.ItemKind.Name(checkin.item_kind), "item_id": checkin.item_id,
              "author_id": checkin.author_id, "progress_percent": checkin.progress_percent,
              "status": checkins_pb2.CheckinStatus.Name(checkin.status), "comment": checkin.comment,
              "observe_time": observed, "record_time": recorded}
    if checkin.HasField("value"):
        stored["value"] = checkin.value
    if checkin.HasField("confidence"):
        stored["confidence"] = checkin.confidence
    return stored
