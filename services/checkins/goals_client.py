"""What the check-ins service asks goals-api, and what it remembers of the answers.

Goals is the single owner of V2MOMs, people, org units and cycles. Calls go
through services.platform.api.client.ServiceClient: checkins' own credential
(it is "svc:checkins" at goals-api, for the RPCs goals grants it), a
deadline, and retries with backoff on UNAVAILABLE. Who a caller is - their
roles, whether they are still active - is asked here too (``people``).
When goals-api stays unreachable, every method here raises
UNAVAILABLE with a message a client can act on.
"""

import logging
from datetime import date

import grpc

from services.platform.api.client import ServiceClient
from services.platform.api.people import RemotePeople, get_person_via
from services.platform.core.cache import ExpiringCache
from services.platform.core.clock import from_date_proto
from services.platform.core.config import AuthSettings
from services.platform.core.errors import Unavailable

from v2mom.v1 import goals_pb2, goals_pb2_grpc

log = logging.getLogger(__name__)

GOALS_DOWN = "goals-api is unavailable, so this cannot be checked now; nothing was recorded. Try again in a moment"
# goals-api does not take checkins' credential: a deployment's keys disagree, which its operators must fix.
CREDENTIAL_REFUSED = ("goals-api does not accept check-ins' service credential (SERVICE_SECRET here, SERVICE_KEYS "
                      "there), so this cannot be checked now; nothing was recorded. Try again later")
CYCLES_SECONDS = 60.0
ORG_UNITS_SECONDS = 30.0
# How long goals' word about a person (active, roles) is trusted: a leaver keeps
# access to checkins-api for at most this long after HR marks them inactive.
PERSON_SECONDS = 30.0
# 200 pages of 200: far beyond any org, and a bound if goals ever returned tokens forever.
MAX_ORG_UNIT_PAGES = 200


class GoalsRefused(RuntimeError):
    """goals-api answered with an error that is our fault (a bad request; a refused credential is UNAVAILABLE).

    Not the client's mistake and not transient: it surfaces as INTERNAL with
    an incident id, and the log says what goals said.
    """


class GoalsClient:
    def __init__(self, addr: str, auth: AuthSettings):
        self.client = ServiceClient(addr, goals_pb2_grpc.GoalServiceStub, auth, "goals")
        # ExpiringCache is lock-free: checkins-worker calls goals from eventlet's real OS threads (tpool).
        self._cycles = ExpiringCache(CYCLES_SECONDS)
        self._org_units = ExpiringCache(ORG_UNITS_SECONDS)
        # Who calls checkins-api (auth.PeopleLookup): goals' directory, remembered PERSON_SECONDS.
        self.people = RemotePeople(get_person_via(self.client, goals_pb2.GetPersonRequest), PERSON_SECONDS)

    def published_v2mom(self, v2mom_id: str) -> goals_pb2.V2MOM | None:
        """The published version (state PUBLISHED or ARCHIVED); None when unknown or never published.

        The service caller is an ordinary non-owner to goals: it sees
        published versions only, so a draft and an unknown id look alike here.
        """
        request = goals_pb2.GetV2MOMRequest(id=v2mom_id, view=goals_pb2.V2MOM_VIEW_PUBLISHED)
        return self._call("GetV2MOM", request)

    def v2mom_seen_by(self, authorization: str, v2mom_id: str) -> goals_pb2.V2MOM | None:
        """The V2MOM as the person behind `authorization` sees it; None when they may not see it.

        Asked with the caller's own token, so goals applies its own visibility
        rules: a draft is reported only to those who may know it exists.
        """
        if not authorization:
            return None
        request = goals_pb2.GetV2MOMRequest(id=v2mom_id)
        try:
            return self.client.stub.GetV2MOM(
                request, metadata=(("authorization", authorization),), timeout=self.client.deadline
            )
        except grpc.RpcError as error:
            if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise Unavailable(GOALS_DOWN) from None
            return None  # NOT_FOUND, or a caller goals no longer lets in: either way, not theirs to see

    def cycle_dates(self, cycle_id: str) -> tuple[date, date] | None:
        """(start, end) of a cycle, both inclusive; None when goals does not know it."""
        known = self._cycle(cycle_id)
        return known[:2] if known else None

    def cycle_quarters(self, cycle_id: str) -> list[tuple[date, date]]:
        """The cycle's quarters as (first, last) days, in order; [] when it has none or goals does not know it."""
        known = self._cycle(cycle_id)
        return list(known[2]) if known else []

    def forget_cycles(self) -> None:
        """goals announced a cycle change: the next lookup asks again."""
        self._cycles.clear()

    def _cycle(self, cycle_id: str) -> tuple | None:
        cycles = self._cycles.get("all", self._load_cycles)
        if cycle_id not in cycles:
            cycles = self._cycles.refresh("all", self._load_cycles)  # a cycle created since we last asked
        return cycles.get(cycle_id)

    def org_subtree(self, org_unit_id: str) -> list[str] | None:
        """The org unit and every unit below it, breadth first; None when goals does not know it."""
        children: dict[str, list[str]] = self._org_units.get("all", self._load_org_tree)
        if org_unit_id not in children:
            children = self._org_units.refresh("all", self._load_org_tree)  # a unit created since we last asked
        if org_unit_id not in children:
            return None
        subtree, frontier, seen = [], [org_unit_id], {org_unit_id}
        while frontier:
            unit = frontier.pop(0)
            subtree.append(unit)
            for child in children.get(unit, []):
                if child not in seen:  # a loop in the directory must not loop us
                    seen.add(child)
                    frontier.append(child)
        return subtree

    def close(self) -> None:
        self.client.close()

    # --- calls ------------------------------------------------------------------------------

    def _call(self, rpc: str, request):
        try:
            return self.client.call(rpc, request)
        except Unavailable:
            raise Unavailable(GOALS_DOWN) from None
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            log.error(
                "goals-api refused a call", extra={"rpc": rpc, "code": error.code().name, "reason": error.details()}
            )
            if error.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                raise Unavailable(CREDENTIAL_REFUSED) from None
            raise GoalsRefused(f"goals-api refused {rpc}: {error.code().name}") from None

    def _load_cycles(self) -> dict[str, tuple]:
        """Each cycle's (start, end, ((quarter start, quarter end), ...)), days inclusive."""
        response = self._call("ListCycles", goals_pb2.ListCyclesRequest())
        return {
            cycle.id: (from_date_proto(cycle.start_date), from_date_proto(cycle.end_date),
                       tuple((from_date_proto(q.start_date), from_date_proto(q.end_date)) for q in cycle.quarters))
            for cycle in response.cycles
        }

    def _load_org_tree(self) -> dict[str, list[str]]:
        """Every org unit id mapped to its children's ids (read once, all pages)."""
        parents: dict[str, str] = {}
        token = ""
        for _ in range(MAX_ORG_UNIT_PAGES):
            page = self._call("ListOrgUnits", goals_pb2.ListOrgUnitsRequest(page_size=200, page_token=token))
            parents.update((unit.id, unit.parent_id) for unit in page.org_units)
            token = page.next_page_token
            if not token:
                break
        children: dict[str, list[str]] = {unit_id: [] for unit_id in parents}
        for unit_id, parent_id in parents.items():
            if parent_id in children:
                children[parent_id].append(unit_id)
        return children
