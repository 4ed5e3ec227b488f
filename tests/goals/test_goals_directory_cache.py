"""goals-api's directory cache keeps what it found, never what it did not find."""

from dataclasses import replace

import grpc
import pytest

from services.goals.api import create_server
from services.goals.directory import PEOPLE, Directory
from tests.support.services import served_in_process
from v2mom.v1 import goals_pb2, goals_pb2_grpc


def test_a_person_written_by_another_process_is_found_at_once_despite_the_cache(settings, enroll):
    # The seed and HRIS feeds write people beside goals-api; a lookup of someone not written yet used
    # to be remembered for the whole TTL, and the V2MOM naming them was refused as "unknown person".
    cached = replace(settings, directory_cache_seconds=60.0)
    with served_in_process(create_server, goals_pb2_grpc.GoalServiceStub, cached, enroll=enroll) as client_for:
        reader = client_for("reader")
        with pytest.raises(grpc.RpcError) as missing:
            reader.GetPerson(goals_pb2.GetPersonRequest(id="late.hire"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        enroll("late.hire")
        assert reader.GetPerson(goals_pb2.GetPersonRequest(id="late.hire")).id == "late.hire"


def test_the_directory_cache_is_bounded_and_forgets_the_least_recently_used(db):
    """Issue 12, finding 6: goals-api's directory cache once kept every answer until the process ended."""
    directory = Directory(db, cache_seconds=600.0)
    assert directory.cache.max_entries <= 10_000  # the bound goals-api runs with
    directory.cache.max_entries = 50
    db[PEOPLE].insert_many([{"_id": f"p{i:03}", "display_name": f"P {i}", "org_unit_id": "u"} for i in range(120)])
    for i in range(120):
        assert directory.person(f"p{i:03}")["display_name"] == f"P {i}"
        directory.person("p000")  # kept in use: the least recently used go first, not it
    assert len(directory.cache) == 50
    assert directory.cache.last(("person", "p000")) is not None and directory.cache.last(("person", "p001")) is None
