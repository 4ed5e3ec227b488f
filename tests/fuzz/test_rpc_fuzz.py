"""No INTERNAL on any input: generated requests, well-formed and hostile, to every RPC of every service, as an
admin, a manager, a plain member, a stranger, someone the directory does not know and nobody at all. Any
INTERNAL or UNKNOWN fails.

The RPCs come from the service descriptors (tests.support.fuzz.rpcs), so a new one is fuzzed without being
listed here; the requests from the request descriptors, field by field, reusing the ids and page tokens the
running system issued (harvested first, as each role) so that requests also get past validation and reach the
code behind it. Examples are derandomized: a run is reproducible, and a failure names the request."""

import os
import time
from dataclasses import replace

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from google.protobuf import text_format
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.support.fuzz import base_requests, declared_rpcs, one_bad_field, requests, rpcs

# DirectoryService last: its random writes deactivate and move the people the other RPCs are called as (the
# admin excepted: nobody terminates themselves), so every other RPC is fuzzed against the seeded directory.
DIRECTORY = "v2mom.v1.DirectoryService"
RPCS = sorted(rpcs(), key=lambda rpc: rpc.service == DIRECTORY)
# A service served by more than one api is fuzzed at each: each replays its own event log and types.
ALSO_SERVED_AT = {"v2mom.v1.EventLogService": ("checkins-api", "notify-api")}
TARGETS = sorted(RPCS + [replace(rpc, server=api) for rpc in RPCS for api in ALSO_SERVED_AT.get(rpc.service, ())],
                 key=lambda rpc: rpc.service == DIRECTORY)
# FUZZ_SCALE=10 searches ten times as long (a run before a release, or after a change to request handling).
SCALE = float(os.environ.get("FUZZ_SCALE", "1"))
EXAMPLES = int(150 * SCALE)  # per RPC, at most; with the sweep below, ~67 targets take a few minutes
SECONDS_PER_RPC = 1.0 * SCALE  # fewer examples for an RPC whose accepted request takes long (RebuildAggregates)
BROKEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
# Half the calls as the admin, whom no access rule stops: that is how a spoilt request reaches the deepest code.
CALLERS = st.one_of(st.just("admin"), st.sampled_from(["manager", "member", "stranger", "anonymous", "ghost"]))


def test_every_declared_rpc_is_fuzzed_and_every_service_is_running(system):
    assert RPCS, "the services' RPCs, read from the descriptors"
    assert {str(rpc) for rpc in RPCS} == declared_rpcs(), "every rpc of every .proto, no more and no fewer"
    assert {rpc.served_at for rpc in TARGETS} == set(system.channels), "a service without a server in tests/fuzz"
    # Every service every api serves (its health service names them) is fuzzed there.
    for api, address in system.apis.items():
        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in {rpc.service for rpc in RPCS}:
                try:
                    health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
                except grpc.RpcError as error:
                    assert error.code() == grpc.StatusCode.NOT_FOUND, (api, service, error.code())
                    continue
                fuzzed_at = {system.addresses[key] for key in system.addresses if key.split("@")[0] == service}
                assert address in fuzzed_at, f"{api} serves {service} and is not fuzzed there"
    assert set(system.metadata) == {"admin", "manager", "member", "stranger", "anonymous", "ghost"}


def describe(request) -> str:
    text = text_format.MessageToString(request, as_utf8=True)
    return text if len(text) < 2000 else text[:2000] + f"... ({len(text)} characters)"


def examples_for(system, rpc, pool) -> int:
    """As many examples as fit SECONDS_PER_RPC at the cost of one accepted request, within 10..EXAMPLES."""
    started = time.monotonic()
    accepted_base(system, rpc, pool)
    cost = time.monotonic() - started
    return max(10, min(EXAMPLES, int(SECONDS_PER_RPC / max(cost, 1e-3))))


@pytest.mark.parametrize("rpc", TARGETS, ids=str)
def test_no_rpc_answers_internal_or_unknown(rpc, system, pool):
    @settings(max_examples=examples_for(system, rpc, pool), deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(role=CALLERS, request=requests(rpc.request, pool))
    def call(role, request):
        answer = system.call(rpc, role, request)
        if isinstance(answer, grpc.RpcError):
            assert answer.code() not in BROKEN, (
                f"{rpc} as {role} answered {answer.code().name}: {answer.details()}\nrequest: {describe(request)}")

    call()


def accepted_base(system, rpc, pool):
    """The first plausible request the system accepts from the admin (one that reaches past the look-ups and
    checks), else the most plausible one."""
    candidates = base_requests(rpc.request, pool)
    for request in candidates:
        if not isinstance(system.call(rpc, "admin", request), grpc.RpcError):
            return request
    return candidates[0]


@pytest.mark.parametrize("rpc", TARGETS, ids=str)
def test_no_rpc_answers_internal_or_unknown_to_one_bad_field(rpc, system, pool):
    """A request the system accepts, as the admin, with one field missing or bad at a time: each bad value
    reaches the code that reads that field, whatever the random search above happens to draw."""
    broken = []
    for spoilt, request in one_bad_field(accepted_base(system, rpc, pool), pool):
        answer = system.call(rpc, "admin", request)
        if isinstance(answer, grpc.RpcError) and answer.code() in BROKEN:
            broken.append(f"{spoilt}: {answer.code().name} {answer.details()}\n  request: {describe(request)}")
    assert not broken, f"{rpc} as admin:\n" + "\n".join(broken)
