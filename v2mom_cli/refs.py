"""Naming a V2MOM without its id.

  v2m_01k...        the id itself
  me                your own individual V2MOM
  @jonas.weber      someone's individual V2MOM
  unit:eng          an org unit's V2MOM (company, department or team)
  <ref>/FY2026      any of these in another cycle (default: the current one)
"""

from datetime import date

import grpc

from v2mom.v1 import common_pb2, goals_pb2

from .errors import CliError
from .session import Client

PAGE_SIZE = 200


def resolve(client: Client, ref: str, me: str, cycle_id: str = "") -> str:
    """The id that ref names; plain ids are returned as they are."""
    base, _, suffix = ref.partition("/")  # ids never contain '/'
    if base == "me":
        base = f"@{me}"
    if base.startswith("@"):
        return _find(client, ref, suffix or cycle_id, owner_id=base[1:])
    if base.startswith("unit:"):
        return _find(client, ref, suffix or cycle_id, org_unit_id=base.removeprefix("unit:"))
    if suffix:
        raise CliError(f"{ref!r}: a /<cycle> suffix goes after me, @<person> or unit:<unit>, not after an id")
    return base


def _find(client: Client, ref: str, cycle_id: str, owner_id: str = "", org_unit_id: str = "") -> str:
    cycle_id = cycle_id or current_cycle(client)
    wants_individual = bool(owner_id)
    request = goals_pb2.ListV2MOMsRequest(owner_id=owner_id, org_unit_id=org_unit_id, cycle_id=cycle_id)
    matches = [
        v for v in list_all(client, "ListV2MOMs", request, "v2moms")
        if (v.level == common_pb2.ORG_LEVEL_INDIVIDUAL) == wants_individual
    ]
    if not matches:
        raise CliError(f"no V2MOM you can see matches {ref!r} in {cycle_id}")
    # One live V2MOM per slot; archived ones only when nothing else is left.
    live = [v for v in matches if v.state != goals_pb2.V2MOM_STATE_ARCHIVED]
    return (live or matches)[-1].id


def current_cycle(client: Client) -> str:
    """The cycle goals calls current (today's, or the one its early close opened); else the latest that has
    started; else the first."""
    try:
        return client.call("GetCurrentCycle", goals_pb2.GetCurrentCycleRequest()).cycle.id
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.NOT_FOUND:
            raise
    cycles = list(client.call("ListCycles", goals_pb2.ListCyclesRequest()).cycles)
    if not cycles:
        raise CliError("the directory has no cycles yet")
    today = date.today()
    started = [c for c in cycles if _date(c.start_date) <= today]
    current = [c for c in started if today <= _date(c.end_date)]
    return (current or started or cycles[:1])[-1].id


def list_all(client: Client, rpc: str, request, field: str) -> list:
    """Every item of a paged list call."""
    items: list = []
    request.page_size = PAGE_SIZE
    while True:
        response = client.call(rpc, request)
        items.extend(getattr(response, field))
        if not response.next_page_token:
            return items
        request.page_token = response.next_page_token


def _date(value) -> date:
    return date(value.year, value.month, value.day)
