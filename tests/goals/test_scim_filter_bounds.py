"""What a SCIM filter may cost (services/goals/scim/users.py): ``eq`` on userName, externalId or id and ``sw``
on externalId or id read by index; any other filter reads the live people, at most SCIM_FILTER_SCAN_LIMIT of
them, else answers 400 ``tooMany``. Over real HTTP against a served goals-api, on both wire engines."""

import urllib.parse
import uuid

import pytest

from services.goals.scim.http import settings_from_env
from services.goals.scim.users import FILTER_SCAN_LIMIT
from services.platform.core.config import ConfigError
from tests.support.scim import scim_goals

LIMIT = 12  # the test org's nine people and a few more


@pytest.fixture(params=["memory", "sqlite"])
def scim(request, mongo_uri, sqlite_mongo_uri):
    with scim_goals(mongo_uri if request.param == "memory" else sqlite_mongo_uri, filter_scan_limit=LIMIT) as env:
        yield env


def found(scim, text: str):
    reply = scim.call("GET", f"/Users?filter={urllib.parse.quote(text)}&count=200")
    return reply.status, (sorted(r["id"] for r in reply.body["Resources"]) if reply.status == 200 else reply.body)


def test_indexed_filters_answer_past_the_limit_and_others_are_too_many(scim):
    key = uuid.uuid4().hex[:6]
    made = [scim.create(user_name=f"b{n}.{key}@acme.test", externalId=f"grp-{key}-{n}") for n in range(5)]
    ids = sorted(user["id"] for user in made)
    assert scim.db.people.count_documents({}) > LIMIT  # more people than a scan may read
    assert found(scim, f'userName eq "B0.{key}@ACME.test"') == (200, [made[0]["id"]])
    assert found(scim, f'externalId eq "grp-{key}-1"') == (200, [made[1]["id"]])
    assert found(scim, f'externalId sw "grp-{key}-"') == (200, ids)
    assert found(scim, f'externalId sw "GRP-{key}"') == (200, [])  # externalId is case-exact
    assert found(scim, 'externalId sw ""') == (200, ids)  # the range holds the people SCIM named only
    assert found(scim, f'externalId sw "grp-{key}-" and active eq true and title pr') == (200, [])
    assert found(scim, f'id sw "{made[2]["id"]}"') == (200, [made[2]["id"]])
    for text in ('displayName co "b"', "userName pr", f'userName sw "b0.{key}"', f'not (userName eq "b0.{key}")',
                 f'userName eq "b0.{key}@acme.test" or displayName co "x"', 'id sw ""'):
        status, body = found(scim, text)
        assert (status, body["scimType"]) == (400, "tooMany"), (text, status, body)
        assert "userName eq" in body["detail"]
    deleted = made[3]["id"]
    assert scim.call("DELETE", f"/Users/{deleted}").status == 204
    assert deleted not in found(scim, f'externalId sw "grp-{key}-"')[1]


def test_the_scan_limit_is_a_setting_of_at_least_one(monkeypatch):
    monkeypatch.setenv("SCIM_TOKEN", "a-test-token")
    assert settings_from_env().filter_scan_limit == FILTER_SCAN_LIMIT
    monkeypatch.setenv("SCIM_FILTER_SCAN_LIMIT", "50")
    assert settings_from_env().filter_scan_limit == 50
    for bad in ("0", "many"):
        monkeypatch.setenv("SCIM_FILTER_SCAN_LIMIT", bad)
        with pytest.raises(ConfigError, match="SCIM_FILTER_SCAN_LIMIT"):
            settings_from_env()
