"""A goals-api with its SCIM endpoint on, over the org of tests.support.goals, and a plain HTTP client for it
(urllib: what a provisioning client sends is on the wire as written)."""

import json
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, replace

import pymongo

from services.goals.api import create_server
from services.goals.scim.http import ScimSettings
from services.platform.core.config import load
from tests.support.goals import build_org
from tests.support.services import served

TOKEN = "test-scim-token-0123456789abcdef0123456789abcdef"
SCIM_JSON = "application/scim+json"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@dataclass
class Response:
    status: int
    headers: dict
    body: object


@dataclass
class ScimEnv:
    base: str
    db: object
    server: object

    def call(self, method: str, path: str, body=None, token: str | None = TOKEN, raw: bytes | None = None,
             headers: dict | None = None) -> Response:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", SCIM_JSON)
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=15) as reply:
                status, reply_headers, payload = reply.status, dict(reply.headers), reply.read()
        except urllib.error.HTTPError as error:
            status, reply_headers, payload = error.code, dict(error.headers), error.read()
        return Response(status, reply_headers, json.loads(payload) if payload else None)

    def create(self, **attributes) -> dict:
        reply = self.call("POST", "/Users", user(**attributes))
        assert reply.status == 201, reply.body
        return reply.body

    def patch(self, user_id: str, *operations: dict) -> Response:
        return self.call("PATCH", f"/Users/{user_id}", {"schemas": [PATCH_OP], "Operations": list(operations)})

    def person(self, person_id: str) -> dict | None:
        return self.db.people.find_one({"_id": person_id})


def user(user_name: str | None = None, **attributes) -> dict:
    return {"schemas": [USER, ENTERPRISE], "userName": user_name or f"u{uuid.uuid4().hex[:10]}", **attributes}


@contextmanager
def scim_goals(mongo_uri: str, token: str = TOKEN, **options):
    """A goals-api serving SCIM on a free port, on a database of its own with the test org; all stopped after.
    ``options``: more ScimSettings (filter_scan_limit)."""
    settings = replace(load("goals"), mongo_uri=mongo_uri, mongo_db=f"goals_scim_{uuid.uuid4().hex[:10]}",
                       directory_cache_seconds=0.0)
    mongo = pymongo.MongoClient(mongo_uri, tz_aware=True)
    db = mongo[settings.database_name]
    try:
        build_org(db)
        with served(create_server, settings, ScimSettings(addr="127.0.0.1:0", token=token, **options)) as (server, _):
            yield ScimEnv(f"http://127.0.0.1:{server.scim.port}/scim/v2", db, server)
    finally:
        mongo.drop_database(settings.database_name)
        mongo.close()
