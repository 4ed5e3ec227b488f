"""People in goals' directory for tests: roles come from the directory, never from a token.

``Enroll`` makes a person a test names exist in a goals database (roles as
given, active), unless they are there already; it writes the people
collection directly, as HR sync would, without an event, so tests that count
goals' events see only their own.
"""

import pymongo

from services.platform.core.clock import utc_now


class Enroll:
    def __init__(self, mongo_uri: str, goals_db: str):
        self.client = pymongo.MongoClient(mongo_uri, tz_aware=True)
        self.people = self.client[goals_db]["people"]

    def __call__(self, person_id: str, roles=()) -> None:
        """Creates the person when missing; gives them ``roles`` when some are named and they lack them."""
        existing = self.people.find_one({"_id": person_id}, {"roles": 1})
        if existing is None:
            self.people.insert_one({
                "_id": person_id, "display_name": person_id, "email": f"{person_id}@test.example", "title": "",
                "manager_id": None, "org_unit_id": None, "roles": list(roles), "active": True, "revision": 1,
                "updated_at": utc_now(),
            })
        elif roles and set(roles) != set(existing.get("roles") or ()):
            self.people.update_one({"_id": person_id}, {"$set": {"roles": list(roles)}, "$inc": {"revision": 1}})

    def close(self) -> None:
        self.client.close()
