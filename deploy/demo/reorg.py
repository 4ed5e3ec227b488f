"""The demo's reorganisation: after the seed, HR moves one person to another team and records that another left.

    python -m deploy.demo.reorg [--api HOST:PORT]

It goes the way an HRIS sync would, through goals-api's DirectoryService as the demo's HR partner
(daniel.wright, role ``hr``), each change dated the morning before the demo's day:

- Diego Alvarez moves from Platform (Priya Raman) to Quality & Reliability, reporting to David Cohen. His
  V2MOM, sent back for changes, stays his; when he submits it again it goes to David.
- Omar Haddad (Hardware) leaves. goals-worker follows his ``person_upserted``: the items he was responsible
  for in the Hardware and Engineering V2MOMs pass to their owners (history action ``REASSIGN_ITEMS``, no
  re-approval), and the metrics and notify services stop counting and telling him.

From then on the HRIS owns both records (they carry its external id), so the seed's directory pass leaves
them alone: a second run changes nothing, and a run in a later week dates the same changes a week on,
which the directory finds unchanged.
"""

import argparse
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from services.platform.api.auth import bearer_metadata, mint_dev_token
from services.platform.api.tls import PATIENT
from services.platform.core.config import AuthSettings, ConfigError, load_auth
from v2mom.v1 import common_pb2, directory_pb2, directory_pb2_grpc, goals_pb2, goals_pb2_grpc

from .calendar import WRITTEN_ON, days_ahead

HR = "daniel.wright"
MOVER, NEW_UNIT, NEW_MANAGER = "diego.alvarez", "eng-quality", "david.cohen"
LEAVER = "omar.haddad"
CALL_TIMEOUT = 30.0
OUTCOMES = {
    directory_pb2.CHANGE_OUTCOME_CREATED: "created", directory_pb2.CHANGE_OUTCOME_CHANGED: "changed",
    directory_pb2.CHANGE_OUTCOME_UNCHANGED: "unchanged", directory_pb2.CHANGE_OUTCOME_STALE: "unchanged",
    directory_pb2.CHANGE_OUTCOME_SCHEDULED: "scheduled",
}


class ReorgError(RuntimeError):
    """The reorganisation stopped; the message says at which change and why."""


@dataclass
class ReorgReport:
    outcomes: dict[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return any(outcome != "unchanged" for outcome in self.outcomes.values())

    def summary(self) -> str:
        if not self.changed:
            return f"reorganisation already applied ({MOVER} in {NEW_UNIT}, {LEAVER} left)"
        return (f"reorganisation: {MOVER} moved to {NEW_UNIT} under {NEW_MANAGER} ({self.outcomes[MOVER]}), "
                f"{LEAVER} left ({self.outcomes[LEAVER]}); goals-worker hands on what they held")


def effective_time(today=None) -> Timestamp:
    """09:00 UTC the day before the demo's day, moved on with the rest of the demo's dates."""
    day = WRITTEN_ON - timedelta(days=1) + timedelta(days=days_ahead(today))
    stamp = Timestamp()
    stamp.FromDatetime(datetime.combine(day, time(9), tzinfo=UTC))
    return stamp


def reorganise(goals_api_address: str, auth: AuthSettings | None = None) -> ReorgReport:
    auth = auth or load_auth()
    metadata = bearer_metadata(mint_dev_token(auth, HR, ttl_seconds=600))
    report = ReorgReport()
    with grpc.insecure_channel(goals_api_address, options=PATIENT) as channel:
        goals = goals_pb2_grpc.GoalServiceStub(channel)
        directory = directory_pb2_grpc.DirectoryServiceStub(channel)
        at = effective_time()
        mover = _person(goals, metadata, MOVER)
        moved = _call(directory.UpsertPerson, directory_pb2.UpsertPersonRequest(person=_moved(mover, at)), metadata,
                      f"moving {MOVER}")
        report.outcomes[MOVER] = OUTCOMES.get(moved.outcome, "changed")
        left = _call(directory.DeactivatePerson, directory_pb2.DeactivatePersonRequest(ref=LEAVER, effective_time=at),
                     metadata, f"recording that {LEAVER} left")
        report.outcomes[LEAVER] = OUTCOMES.get(left.outcome, "changed")
    return report


def _moved(person: common_pb2.Person, at: Timestamp) -> directory_pb2.PersonChange:
    """The mover's whole record as an HRIS states it (fields left empty are stored empty), in the new team."""
    change = directory_pb2.PersonChange(
        external_id=person.id, id=person.id, display_name=person.display_name, email=person.email,
        title=person.title, manager_ref=NEW_MANAGER, org_unit_ref=NEW_UNIT, time_zone=person.time_zone,
        locale=person.locale, employment_status=common_pb2.EMPLOYMENT_STATUS_ACTIVE, effective_time=at,
    )
    if person.HasField("start_date"):
        change.start_date.CopyFrom(person.start_date)
    return change


def _person(goals, metadata, person_id: str) -> common_pb2.Person:
    return _call(goals.GetPerson, goals_pb2.GetPersonRequest(id=person_id), metadata, f"reading {person_id}")


def _call(method, request, metadata, what: str):
    try:
        return method(request, metadata=metadata, timeout=CALL_TIMEOUT)
    except grpc.RpcError as error:
        raise ReorgError(f"{what}: {error.code().name}: {error.details()}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", metavar="HOST:PORT", default="127.0.0.1:50051", help="a running goals-api")
    args = parser.parse_args(argv)
    try:
        print(reorganise(args.api).summary())
    except (ReorgError, ConfigError) as error:
        print(f"reorganisation failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
