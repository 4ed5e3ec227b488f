"""Reading the goals and check-ins services through their list RPCs, for RebuildAggregates.

The metrics service never reads another service's database: a rebuild asks
the owners, with metrics' own credential. goals and checkins grant it these
reads as an admin (their CALLERS), because goals lists drafts only to admins
and creation rates count drafts.
"""

from collections.abc import Iterator

import grpc

from services.platform.core.config import AuthSettings
from services.platform.api.client import ServiceClient
from v2mom.v1 import checkins_pb2, checkins_pb2_grpc, goals_pb2, goals_pb2_grpc

PAGE = 200


def _pages(client: ServiceClient, rpc: str, request, items: str) -> Iterator:
    while True:
        response = client.call(rpc, request)
        yield from getattr(response, items)
        if not response.next_page_token:
            return
        request.page_token = response.next_page_token


class GoalsSource:
    def __init__(self, addr: str, auth: AuthSettings):
        self.client = ServiceClient(addr, goals_pb2_grpc.GoalServiceStub, auth, "goals", deadline_seconds=10.0)

    def org_units(self) -> Iterator:
        return _pages(self.client, "ListOrgUnits", goals_pb2.ListOrgUnitsRequest(page_size=PAGE), "org_units")

    def people(self) -> Iterator:
        return _pages(self.client, "ListPeople", goals_pb2.ListPeopleRequest(page_size=PAGE), "people")

    def v2moms(self) -> Iterator:
        return _pages(self.client, "ListV2MOMs", goals_pb2.ListV2MOMsRequest(page_size=PAGE), "v2moms")

    def cycles(self) -> Iterator:
        """Every cycle with its quarters (a handful: goals lists them unpaged)."""
        return iter(self.client.call("ListCycles", goals_pb2.ListCyclesRequest()).cycles)

    def published_content(self, v2mom: goals_pb2.V2MOM) -> goals_pb2.V2MOMContent | None:
        """What people check in against: the published version, which a newer draft may hide."""
        if not v2mom.published_revision:
            return None
        if v2mom.state == goals_pb2.V2MOM_STATE_PUBLISHED:
            return v2mom.content
        request = goals_pb2.GetV2MOMRequest(id=v2mom.id, view=goals_pb2.V2MOM_VIEW_PUBLISHED)
        return self.client.call("GetV2MOM", request).content

    def close(self) -> None:
        self.client.close()


class CheckinsSource:
    def __init__(self, addr: str, auth: AuthSettings):
        self.client = ServiceClient(addr, checkins_pb2_grpc.CheckinServiceStub, auth, "checkins",
                                    deadline_seconds=10.0)

    def checkins(self, v2mom_id: str) -> Iterator:
        # Superseded ones too: a correction's chain tells which check-in was the original.
        request = checkins_pb2.ListCheckinsRequest(v2mom_id=v2mom_id, include_superseded=True, page_size=PAGE)
        return _pages(self.client, "ListCheckins", request, "checkins")

    def progress(self, v2mom_id: str) -> checkins_pb2.Progress | None:
        try:
            return self.client.call("GetProgress", checkins_pb2.GetProgressRequest(v2mom_id=v2mom_id))
        except grpc.RpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                return None  # nothing recorded yet
            raise

    def stale_items(self, org_unit_id: str) -> Iterator:
        request = checkins_pb2.ListStaleItemsRequest(org_unit_id=org_unit_id, page_size=PAGE)
        return _pages(self.client, "ListStaleItems", request, "items")

    def cadence(self, cycle_id: str) -> int:
        try:
            settings = self.client.call("GetCycleSettings", checkins_pb2.GetCycleSettingsRequest(cycle_id=cycle_id))
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return 0
            raise
        return settings.cadence

    def close(self) -> None:
        self.client.close()
