"""Probes for gRPC errors: the call fails with this code, cleanly, naming these fields."""

import re

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def rpc_error(call, request) -> grpc.RpcError:
    """Runs a call that must fail and returns its error."""
    try:
        response = call(request)
    except grpc.RpcError as error:
        return error
    raise AssertionError(f"expected an error, got {type(response).__name__}: {str(response)[:300]}")


def details(error: grpc.RpcError) -> list:
    """The google.rpc status details, unpacked."""
    status = rpc_status.from_call(error)
    if status is None:
        return []
    unpacked = []
    for any_detail in status.details:
        for kind in (error_details_pb2.BadRequest, error_details_pb2.PreconditionFailure):
            if any_detail.Is(kind.DESCRIPTOR):
                message = kind()
                any_detail.Unpack(message)
                unpacked.append(message)
    return unpacked


def field_violations(error: grpc.RpcError) -> list[tuple[str, str]]:
    return [(v.field, v.description) for m in details(error) if isinstance(m, error_details_pb2.BadRequest)
            for v in m.field_violations]


def violated_fields(error: grpc.RpcError) -> set[str]:
    return {field for field, _ in field_violations(error)}


def precondition_violations(error: grpc.RpcError) -> list[tuple[str, str, str]]:
    return [(v.type, v.subject, v.description) for m in details(error)
            if isinstance(m, error_details_pb2.PreconditionFailure) for v in m.violations]


_LEAKS = re.compile(r"Traceback|File \"|\.py\"|line \d+, in|Exception|Error\(|pymongo|bson", re.IGNORECASE)


def assert_clean(error: grpc.RpcError) -> None:
    """Never INTERNAL/UNKNOWN for a client's mistake, and no Python internals in anything the client sees."""
    assert error.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), error.details()
    texts = [error.details() or ""] + [f"{a} {b}" for a, b in field_violations(error)]
    texts += [" ".join(v) for v in precondition_violations(error)]
    for text in texts:
        assert not _LEAKS.search(text), f"internal detail leaked to the client: {text[:300]!r}"


def expect(call, request, code: grpc.StatusCode, *fields: str) -> grpc.RpcError:
    """The call fails with `code`, cleanly; with fields, the BadRequest names each of them."""
    error = rpc_error(call, request)
    assert error.code() == code, f"expected {code.name}, got {error.code().name}: {error.details()}"
    assert_clean(error)
    if fields:
        named = violated_fields(error)
        for field in fields:
            assert field in named, f"no field violation for {field!r}; got {field_violations(error)}"
    return error
