"""`v2mom directory orphans` and `v2mom directory transfer`: what waits on someone who can no longer act, and
handing it to a successor (ListOrphans, TransferV2MOM on goals-api's DirectoryService)."""

from v2mom.v1 import directory_pb2

from . import refs, render
from .directory import directory_client

KINDS = {
    directory_pb2.Orphan.KIND_OWNER_GONE: "owner left",
    directory_pb2.Orphan.KIND_APPROVER_GONE: "approver left",
    directory_pb2.Orphan.KIND_UNIT_RETIRED: "unit retired",
}


def orphans(ctx, args) -> int:
    client = directory_client(ctx)
    try:
        found = refs.list_all(client, "ListOrphans", directory_pb2.ListOrphansRequest(), "orphans")
    finally:
        client.close()
    rows = [[KINDS.get(o.kind, "?"), o.v2mom_id, o.person_id or "-", o.org_unit_id or "-", o.successor_id or "(an admin)"]
            for o in found]
    print(render.table(["WHY", "V2MOM", "WHO", "UNIT", "SUGGESTED SUCCESSOR"], rows))
    return 0


def transfer(ctx, args) -> int:
    request = directory_pb2.TransferV2MOMRequest(v2mom_id=ctx.resolve(args.v2mom), successor_id=args.to,
                                                 reason=args.reason or "")
    client = directory_client(ctx)
    try:
        response = client.call("TransferV2MOM", request)
    finally:
        client.close()
    if not response.transferred:
        print(f"{response.v2mom.id} is {args.to}'s already: nothing changed.")
    else:
        print(f"Transferred {response.v2mom.id} to {args.to} (revision {response.v2mom.revision}).")
    return 0
