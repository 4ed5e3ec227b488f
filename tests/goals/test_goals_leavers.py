"""People who left lose access even while their token is still valid."""

import grpc
import pytest

from services.goals.directory import Directory
from v2mom.v1 import goals_pb2


def test_inactive_person_is_refused_on_every_call(db, goals_api):
    directory = Directory(db, cache_seconds=0)
    directory.upsert_org_unit({"_id": "acme", "name": "Acme", "level": "ORG_LEVEL_COMPANY", "leader_id": "ceo"})
    directory.upsert_person({"_id": "ceo", "display_name": "Cleo", "org_unit_id": "acme"})
    directory.upsert_person({"_id": "leo", "display_name": "Leo", "org_unit_id": "acme", "manager_id": "ceo"})
    leo = goals_api("leo")
    assert leo.GetPerson(goals_pb2.GetPersonRequest(id="ceo")).id == "ceo"

    directory.upsert_person({"_id": "leo", "display_name": "Leo", "org_unit_id": "acme", "manager_id": "ceo", "active": False})
    for rpc, request in (("GetPerson", goals_pb2.GetPersonRequest(id="ceo")), ("ListCycles", goals_pb2.ListCyclesRequest())):
        with pytest.raises(grpc.RpcError) as refused:
            getattr(leo, rpc)(request)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "no longer active" in refused.value.details()
    # Services and people still employed are unaffected.
    assert goals_api("svc:checkins", ("service",)).GetPerson(goals_pb2.GetPersonRequest(id="leo")).active is False
    assert goals_api("ceo").GetPerson(goals_pb2.GetPersonRequest(id="leo")).id == "leo"
