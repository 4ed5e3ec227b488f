"""goals-api's SCIM endpoint against an independent compliance checker: scim2-tester (python-scim), which
discovers the server from its ServiceProviderConfig, Schemas and ResourceTypes, then creates, reads, lists,
searches, replaces, patches (add, replace, remove on every attribute the schema publishes, with random
values) and deletes Users through scim2-client over real HTTP.

Skipped on purpose, and only this: ``search_with_attributes`` (POST /.search at the root, a search across
resource types). There is one resource type, so the server answers 501 there, as RFC 7644 3.4.3 allows,
and serves POST /Users/.search instead (tests/goals/test_scim.py); the checker itself marks that SKIPPED.
"""

import pytest
from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

from tests.support.scim import TOKEN, scim_goals

SKIPPED_ON_PURPOSE = {"search_with_attributes"}


@pytest.fixture
def scim(mongo_uri):
    with scim_goals(mongo_uri) as env:
        yield env


def test_scim2_tester_finds_nothing_wrong(scim):
    with Client(base_url=scim.base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=15) as http:
        results = check_server(SyncSCIMClient(http), raise_exceptions=False)
    failed = [f"{r.title} [{r.resource_type}]: {(r.reason or '')[:300]}" for r in results
              if r.status not in (Status.SUCCESS, Status.SKIPPED)]
    skipped = {r.title for r in results if r.status == Status.SKIPPED}
    assert not failed, "\n".join(failed)
    assert skipped <= SKIPPED_ON_PURPOSE, skipped
    passed = {r.title for r in results if r.status == Status.SUCCESS}
    # The whole lifecycle ran, not only discovery.
    assert {"object_creation", "object_query", "object_query_without_id", "object_replacement", "object_deletion",
            "check_add_attribute", "check_remove_attribute", "check_replace_attribute", "random_url"} <= passed
    assert len(results) >= 50


def test_scim2_tester_without_the_token_is_refused(scim):
    with Client(base_url=scim.base, timeout=15) as http:
        results = check_server(SyncSCIMClient(http), raise_exceptions=False)
    assert results and all(r.status != Status.SUCCESS for r in results)
