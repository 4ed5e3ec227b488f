"""Index upkeep against the wire Mongo server."""

from services.checkins import repository
from services.platform.store.mongo import Index, drop_retired_indexes, ensure_indexes


def index_names(db, collection: str) -> set[str]:
    return {index["name"] for index in db[collection].list_indexes()}


def test_retired_indexes_are_dropped_and_declared_ones_stay(db):
    ensure_indexes(db, [
        Index("things", [("owner", 1), ("key", 1)], name="old_unique", unique=True, partial={"key": {"$exists": True}}),
        Index("things", [("owner", 1)], name="by_owner"),
    ])
    db.things.insert_one({"_id": 1, "owner": "ann", "key": "k"})

    drop_retired_indexes(db, {"things": ["old_unique", "never_existed"]})
    drop_retired_indexes(db, {"things": ["old_unique"]})  # again, as on every start

    assert index_names(db, "things") == {"_id_", "by_owner"}
    db.things.insert_one({"_id": 2, "owner": "ann", "key": "k"})  # the unique rule is gone with it
    assert db.things.count_documents({}) == 2


def test_checkins_never_retire_an_index_they_still_declare():
    declared = {(index.collection, index.name) for index in repository.INDEXES}
    retired = {(collection, name) for collection, names in repository.RETIRED_INDEXES.items() for name in names}
    assert not declared & retired
