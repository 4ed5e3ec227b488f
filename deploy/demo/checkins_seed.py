"""Eight weeks of check-in history on the demo organisation's published V2MOMs of its running cycle.

    python -m deploy.demo.checkins_seed [--api HOST:PORT] [--goals HOST:PORT]

Run it after the goals demo seed (deploy/demo/goals_seed.py), with goals-api,
checkins-api and checkins-worker running. It reads the published V2MOMs from
goals-api and records each planned check-in through checkins-api, as the
person who would record it (the item's owner, a Responsible or Accountable
person, the V2MOM's owner) with a token minted for them; corrections too.
Observation times lie in the past, week by week: all of the oldest week's
check-ins first, then the next week's, because the worker keeps one progress
snapshot per week of observation and the trend lines must come out in the
order things happened.

Who checks in how often, and what goes wrong, is in deploy/demo/checkins/.
The running cycle is FY2027 as the files name it; like the goals demo, the
story is read moved forward by the whole weeks since 2026-11-27 (and renamed
FY2028 and so on once that cycle ends in a later year), so both agree.

Running it again records nothing new: each check-in carries an idempotency
key made of its item and ISO week, so a repeat returns the first one. (A
run in a later week adds that week's check-ins.)

Before recording, it makes sure the check-ins side knows every V2MOM (the
API keeps a copy of each structure it is asked about; the worker's
projection normally has it from goals' approval events). Afterwards it
waits, for a bounded time, until the worker's projection shows every item's
latest check-in, so that progress read right after the seed is complete.
"""

import argparse
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import grpc
from tqdm import tqdm

from services.platform.api.tls import PATIENT
from services.platform.api.auth import bearer_metadata, mint_dev_token, person_caller
from services.platform.core.config import AuthSettings, ConfigError, Settings, load
from services.platform.core.errors import ServiceError

from services.checkins.api import DEFAULT_ADDR, build_service
from services.checkins.service import CheckinsService
from .checkins import Story, StoryError, V2MOMStory, load_story
from .checkins.plan import MEASURE, Planned, plan
from services.platform.core.clock import utc_now
from v2mom.v1 import checkins_pb2, checkins_pb2_grpc, common_pb2, goals_pb2, goals_pb2_grpc

CALL_TIMEOUT = 30.0
CONNECT_TIMEOUT = 15.0
# The worker learns published structures from goals' approval events within a second or so.
STRUCTURES_WAIT = 20.0
# ...and works through a few hundred check-ins, and their roll-ups, in well under a minute.
CATCH_UP_WAIT = 180.0
POLL_INTERVAL = 0.5

STATUS = {
    "on_track": checkins_pb2.CHECKIN_STATUS_ON_TRACK,
    "at_risk": checkins_pb2.CHECKIN_STATUS_AT_RISK,
    "off_track": checkins_pb2.CHECKIN_STATUS_OFF_TRACK,
}


class SeedError(RuntimeError):
    """Seeding stopped; the message says at which check-in and why."""


@dataclass
class SeedReport:
    v2moms: int = 0
    planned: int = 0
    recorded: int = 0  # new in this run
    corrected: int = 0  # new in this run
    weeks: int = 0
    left_alone: list[str] = field(default_factory=list)
    caught_up: bool | None = None  # None: not waited for
    cycle_ended: bool = False
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase

    @property
    def changed(self) -> bool:
        return bool(self.recorded or self.corrected)

    def summary(self) -> str:
        if self.cycle_ended:
            return "check-in history: the cycle has ended, so no check-ins were seeded"
        scope = f"{self.planned} check-ins over {self.weeks} weeks on {self.v2moms} published V2MOMs"
        if not self.changed:
            return f"check-in history already seeded, nothing new ({scope})"
        lag = "" if self.caught_up is not False else "; checkins-worker is still catching up"
        return f"check-in history seeded: {self.recorded} recorded and {self.corrected} corrected ({scope}){lag}"


class Actors:
    """Call credentials for whoever records a check-in, minted from the configured secret."""

    def __init__(self, auth: AuthSettings, admin: str):
        self.auth = auth
        self.admin = admin
        self._metadata: dict[str, tuple] = {}

    def metadata(self, person_id: str) -> tuple:
        if person_id not in self._metadata:
            # Who they are only: their roles come from goals' directory, where the seed put them.
            token = mint_dev_token(self.auth, person_id, ttl_seconds=3600)
            self._metadata[person_id] = bearer_metadata(token)
        return self._metadata[person_id]


class Refused(Exception):
    """checkins refused a call: the status code's name and its message."""

    def __init__(self, code: str, details: str):
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details


class ThroughApi:
    """checkins-api over gRPC: each call as its author, with a token minted for them."""

    def __init__(self, stub: checkins_pb2_grpc.CheckinServiceStub, actors: Actors):
        self.stub = stub
        self.actors = actors

    def call(self, person_id: str, rpc: str, request):
        try:
            return getattr(self.stub, rpc)(request, metadata=self.actors.metadata(person_id), timeout=CALL_TIMEOUT)
        except grpc.RpcError as error:
            raise Refused(error.code().name, error.details()) from None


class InProcess:
    """The check-ins use cases themselves (CheckinsService, wired as checkins-api wires it, on the
    check-ins database), called in this process: the same validation, authorisation, documents and
    outbox events as through checkins-api, without a gRPC round trip and a token per call.

    The interceptor's part is kept too: the caller is who goals' directory says, and must be active there.
    """

    RPCS = {
        "RecordMeasureCheckin": CheckinsService.record_measure,
        "RecordMethodCheckin": CheckinsService.record_method,
        "CorrectCheckin": CheckinsService.correct,
    }

    def __init__(self, service: CheckinsService, actors: Actors):
        self.service = service
        self.actors = actors

    def call(self, person_id: str, rpc: str, request):
        try:
            caller = person_caller(self.service.goals.people, person_id)
            if rpc in self.RPCS:
                return self.RPCS[rpc](self.service, caller, request)
            if rpc == "GetProgress":
                return self.service.progress(caller, request)
        except ServiceError as error:
            raise Refused(error.code.name, error.message) from None
        raise ValueError(f"no in-process call for {rpc}")


def call(stub, rpc: str, request, metadata, what: str):
    try:
        return getattr(stub, rpc)(request, metadata=metadata, timeout=CALL_TIMEOUT)
    except grpc.RpcError as error:
        raise SeedError(f"{what}: {error.code().name}: {error.details()}") from None


# --- what goals has published ---------------------------------------------------------------


class PublishedV2MOMs:
    """The story's V2MOMs as goals-api publishes them (content = the published version)."""

    def __init__(self, stub: goals_pb2_grpc.GoalServiceStub, actors: Actors):
        self.stub = stub
        self.admin = actors.metadata(actors.admin)

    def matching(self, story: Story) -> list[tuple[V2MOMStory, goals_pb2.V2MOM]]:
        """Each story V2MOM that has a live published version, in the story's order; others are skipped."""
        listed = [v for v in self._listed(story.cycle) if v.published_revision > 0
                  and v.state != goals_pb2.V2MOM_STATE_ARCHIVED]
        found = []
        for told in story.v2moms:
            match = next((v for v in listed if _is(told, v)), None)
            if match is not None:
                request = goals_pb2.GetV2MOMRequest(id=match.id, view=goals_pb2.V2MOM_VIEW_PUBLISHED)
                found.append((told, call(self.stub, "GetV2MOM", request, self.admin, f"read {told.name}")))
        return found

    def cycle_dates(self, cycle_id: str) -> tuple[date, date]:
        response = call(self.stub, "ListCycles", goals_pb2.ListCyclesRequest(), self.admin, "list cycles")
        cycle = next((c for c in response.cycles if c.id == cycle_id), None)
        if cycle is None:
            raise SeedError(f"goals-api does not know cycle {cycle_id}: seed the goals demo first")
        return _day(cycle.start_date), _day(cycle.end_date)

    def _listed(self, cycle_id: str) -> Iterator[goals_pb2.V2MOM]:
        token = ""
        while True:
            request = goals_pb2.ListV2MOMsRequest(cycle_id=cycle_id, page_size=200, page_token=token)
            response = call(self.stub, "ListV2MOMs", request, self.admin, "list V2MOMs")
            yield from response.v2moms
            token = response.next_page_token
            if not token:
                return


def _is(told: V2MOMStory, v2mom: goals_pb2.V2MOM) -> bool:
    if told.owner:
        return v2mom.level == common_pb2.ORG_LEVEL_INDIVIDUAL and v2mom.owner_id == told.owner
    return v2mom.level != common_pb2.ORG_LEVEL_INDIVIDUAL and v2mom.org_unit_id == told.unit


def _day(value) -> date:
    return date(value.year, value.month, value.day)


# --- recording ------------------------------------------------------------------------------


class Recorder:
    """Records planned check-ins (through checkins-api, or in process) and remembers each item's latest answer."""

    def __init__(self, checkins: ThroughApi | InProcess, report: SeedReport):
        self.checkins = checkins
        self.report = report
        self.latest: dict[tuple[str, str, str], checkins_pb2.Checkin] = {}

    def record(self, planned: Planned) -> None:
        rpc, request = _request(planned)
        checkin, new = self._call(planned.author, rpc, request, planned)
        self.report.recorded += new
        self._remember(planned, checkin)
        if planned.fix is not None:
            self._correct(planned, checkin)

    def _correct(self, planned: Planned, original: checkins_pb2.Checkin) -> None:
        fix = planned.fix
        request = checkins_pb2.CorrectCheckinRequest(
            checkin_id=original.id, reason=fix.reason, value=fix.value, idempotency_key=fix.key
        )
        try:
            correction, new = self._call(fix.author, "CorrectCheckin", request, planned)
        except _AlreadyCorrected:
            # Someone corrected it by hand since the last run: theirs stands.
            self.report.left_alone.append(f"{planned.v2mom_id}/{planned.item_id} ({planned.weeks_ago} weeks ago)")
            self.latest.pop((planned.v2mom_id, planned.kind, planned.item_id), None)
            return
        self.report.corrected += new
        self._remember(planned, correction)

    def _call(self, person_id: str, rpc: str, request, planned: Planned) -> tuple[checkins_pb2.Checkin, bool]:
        """The check-in, and whether this call recorded it (False: an earlier run's, replayed by its key)."""
        started = utc_now()
        try:
            checkin = self.checkins.call(person_id, rpc, request)
        except Refused as refusal:
            if rpc == "CorrectCheckin" and refusal.code == "FAILED_PRECONDITION":
                raise _AlreadyCorrected() from None
            raise SeedError(
                f"{rpc} on {planned.v2mom_id}/{planned.item_id}, {planned.weeks_ago} weeks ago, as {person_id}: {refusal}"
            ) from None
        # The API stamps record_time when the call arrives, so a replay carries an earlier one.
        return checkin, checkin.record_time.ToDatetime(tzinfo=UTC) >= started

    def _remember(self, planned: Planned, checkin: checkins_pb2.Checkin) -> None:
        key = (planned.v2mom_id, planned.kind, planned.item_id)
        if checkin.superseded_by_id:
            self.latest.pop(key, None)  # corrected by hand since: what the projection shows is not ours to predict
        else:
            self.latest[key] = checkin


class _AlreadyCorrected(Exception):
    pass


def _request(planned: Planned):
    common = {
        "v2mom_id": planned.v2mom_id, "status": STATUS[planned.status], "comment": planned.comment,
        "idempotency_key": planned.key,
    }
    if planned.kind == MEASURE:
        request = checkins_pb2.RecordMeasureCheckinRequest(
            measure_id=planned.item_id, value=planned.value, confidence=planned.confidence, **common
        )
        rpc = "RecordMeasureCheckin"
    else:
        request = checkins_pb2.RecordMethodCheckinRequest(
            method_id=planned.item_id, progress_percent=planned.progress,
            completed_milestone_ids=planned.milestone_ids, **common
        )
        rpc = "RecordMethodCheckin"
    request.observe_time.FromDatetime(planned.observe_time)
    return rpc, request


# --- waiting for the check-ins side ------------------------------------------------------------


class Projection:
    """What checkins-api answers from the worker's projection, polled until it shows what we expect."""

    def __init__(self, checkins: ThroughApi | InProcess, reader: str):
        self.checkins = checkins
        self.reader = reader

    def progress(self, v2mom_id: str) -> checkins_pb2.Progress:
        request = checkins_pb2.GetProgressRequest(v2mom_id=v2mom_id)
        try:
            return self.checkins.call(self.reader, "GetProgress", request)
        except Refused as refusal:
            raise SeedError(f"read the progress of {v2mom_id}: {refusal}") from None

    def wait_for_structures(self, v2mom_ids: list[str], timeout: float) -> list[str]:
        """Every V2MOM must be readable (the API fetches and keeps a structure it lacks); returns those
        the worker's projection still lacks after `timeout` (their first check-in teaches it)."""
        missing = list(v2mom_ids)
        deadline = time.monotonic() + timeout
        while True:
            # update_time is set only on a projection; the API's stand-in before it has none.
            missing = [v2mom_id for v2mom_id in missing if not self.progress(v2mom_id).HasField("update_time")]
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(POLL_INTERVAL)

    def wait_until_shown(self, latest: dict[tuple, checkins_pb2.Checkin], timeout: float, bar: tqdm) -> bool:
        """True once every item shows its latest check-in (observation time and value); False at the timeout."""
        pending = dict(latest)
        deadline = time.monotonic() + timeout
        while pending:
            for v2mom_id in {key[0] for key in pending}:
                for item in self.progress(v2mom_id).items:
                    key = (v2mom_id, MEASURE if item.kind == checkins_pb2.ITEM_KIND_MEASURE else "method", item.item_id)
                    if key in pending and _shows(item, pending[key]):
                        del pending[key]
                        bar.update(1)
            if pending and time.monotonic() > deadline:
                return False
            if pending:
                time.sleep(POLL_INTERVAL)
        return True


def _shows(item: checkins_pb2.ItemProgress, checkin: checkins_pb2.Checkin) -> bool:
    if item.last_checkin_time != checkin.observe_time:
        return False
    if checkin.HasField("value"):
        return item.HasField("value") and item.value == checkin.value
    return item.progress_percent == checkin.progress_percent


# --- wiring -----------------------------------------------------------------------------


def seed(
    auth: AuthSettings, goals_address: str, checkins: str | Settings, progress: bool | None = True,
    now: datetime | None = None, catch_up_wait: float = CATCH_UP_WAIT,
) -> SeedReport:
    """Records the demo's check-in history; progress=None shows the bars only on a terminal.

    checkins: checkins-api's address, to record through it; or check-ins Settings (MongoDB,
    database, goals-api, JWT), to call its use cases in this process on that database.
    catch_up_wait=0 returns as soon as everything is recorded, without waiting for checkins-worker.
    """
    now = now or utc_now()
    story = load_story(today=now.date())  # the story's cycle is the one running at `now`
    actors = Actors(auth, story.admin)
    report = SeedReport(weeks=story.weeks)
    disable = None if progress is None else not progress  # tqdm: None means "unless not a terminal"
    clock = Stopwatch(report.timings)
    with connected(goals_address, "goals-api") as goals_channel, _checkins(checkins, actors) as recording:
        goals = PublishedV2MOMs(goals_pb2_grpc.GoalServiceStub(goals_channel), actors)
        v2moms = goals.matching(story)
        cycle = goals.cycle_dates(story.cycle)
        planned = plan(story, v2moms, cycle, now)
        report.v2moms, report.planned = len(v2moms), len(planned)
        if now.date() > cycle[1]:
            report.cycle_ended = True  # checkins-api takes no new check-ins then
            return report
        projection = Projection(recording, story.admin)
        _wait_for_structures(projection, [v2mom.id for _, v2mom in v2moms])
        clock.lap("read published V2MOMs")
        recorder = Recorder(recording, report)
        with tqdm(total=len(planned), desc="Seeding check-ins", unit="check-in", disable=disable, file=sys.stderr) as bar:
            for entry in planned:
                recorder.record(entry)
                bar.update(1)
        clock.lap("record check-ins")
        if catch_up_wait > 0 and recorder.latest:
            with tqdm(total=len(recorder.latest), desc="Waiting for checkins-worker", unit="item", disable=disable,
                      file=sys.stderr) as bar:
                report.caught_up = projection.wait_until_shown(recorder.latest, catch_up_wait, bar)
            clock.lap("wait for checkins-worker")
    return report


class Stopwatch:
    """Seconds per phase, into `timings`, in the order the phases ran."""

    def __init__(self, timings: dict[str, float]):
        self.timings = timings
        self.last = time.monotonic()

    def lap(self, phase: str) -> None:
        now = time.monotonic()
        self.timings[phase] = now - self.last
        self.last = now


@contextmanager
def _checkins(checkins: str | Settings, actors: Actors) -> Iterator[ThroughApi | InProcess]:
    if isinstance(checkins, str):
        with connected(checkins, "checkins-api") as channel:
            yield ThroughApi(checkins_pb2_grpc.CheckinServiceStub(channel), actors)
        return
    service = build_service(checkins)
    try:
        yield InProcess(service, actors)
    finally:
        service.goals.close()
        service.checkins.collection.database.client.close()


def _wait_for_structures(projection: Projection, v2mom_ids: list[str]) -> None:
    missing = projection.wait_for_structures(v2mom_ids, STRUCTURES_WAIT)
    if missing:
        tqdm.write(
            f"seed: checkins-worker has no projection of {len(missing)} V2MOMs yet (did it miss goals' approvals?); "
            "their first check-in teaches it", file=sys.stderr,
        )


@contextmanager
def connected(address: str, name: str) -> Iterator[grpc.Channel]:
    """An insecure channel to a service, once it accepts connections."""
    channel = grpc.insecure_channel(address, options=PATIENT)  # over every replica the address names
    try:
        try:
            grpc.channel_ready_future(channel).result(timeout=CONNECT_TIMEOUT)
        except grpc.FutureTimeoutError:
            raise SeedError(f"cannot reach {name} at {address} (waited {CONNECT_TIMEOUT:.0f} s)") from None
        yield channel
    finally:
        channel.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", metavar="HOST:PORT", default=DEFAULT_ADDR, help="checkins-api (default %(default)s)")
    parser.add_argument("--goals", metavar="HOST:PORT", help="goals-api (default: GOALS_ADDR, else 127.0.0.1:50051)")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for checkins-worker to catch up")
    args = parser.parse_args(argv)
    try:
        settings = load("checkins", DEFAULT_ADDR)
        report = seed(settings.auth, args.goals or settings.goals_addr, args.api, progress=None,
                      catch_up_wait=0 if args.no_wait else CATCH_UP_WAIT)
    except (SeedError, StoryError, ConfigError) as error:
        print(f"seed failed: {error}", file=sys.stderr)
        return 1
    print(report.summary())
    for where in report.left_alone:
        print(f"  left as it was (corrected by someone else): {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
