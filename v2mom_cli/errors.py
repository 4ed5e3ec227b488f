"""What the CLI tells people when something goes wrong: one clear line, then the details.

A gRPC error prints its code and message, then each field violation or
failed precondition from the google.rpc status details, so people see what
to fix without reading a traceback.
"""

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


class CliError(Exception):
    """A failure to report as it is, with the exit status to leave with."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class ApiCallFailed(grpc.RpcError):
    """A failed gRPC call, and which API it went to: the CLI talks to two.

    Still a grpc.RpcError with the call's code, details and trailers, so
    code that handles one status (a NOT_FOUND that is fine) needs no change.
    """

    def __init__(self, error: grpc.RpcError, api_name: str, setting: str, addr: str):
        super().__init__(error.details())
        self.error = error
        self.api_name = api_name
        self.setting = setting
        self.addr = addr

    def code(self):
        return self.error.code()

    def details(self):
        return self.error.details()

    def trailing_metadata(self):
        return self.error.trailing_metadata()


HINTS = {
    grpc.StatusCode.UNAUTHENTICATED: "log in again: v2mom login <person-id>",
    grpc.StatusCode.ABORTED: "someone changed it meanwhile: run the command again",
}


def describe_rpc_error(error: grpc.RpcError, addr: str) -> list[str]:
    """The lines to print for a failed call; `addr` is the goals API's, for an error that does not say."""
    api, setting = "goals API", "--addr / V2MOM_GOALS_ADDR"
    if isinstance(error, ApiCallFailed):
        api, setting, addr = error.api_name, error.setting, error.addr
    code = error.code()
    # An API that answers UNAVAILABLE itself (it cannot reach one it depends on) says why; show that.
    if code == grpc.StatusCode.UNAVAILABLE and not _answered(error):
        return [
            f"error: cannot reach the {api} at {addr}",
            f"  start it with `make run`, or point {setting} at a running one",
        ]
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return [f"error: the {api} at {addr} did not answer in time"]
    violations, details = _detail_lines(error)
    if violations:
        # The message only summarises the field violations listed below it.
        lines = [f"error: {code.name}: the request has {len(details)} problem(s):"]
    else:
        lines = [f"error: {code.name}: {error.details()}"]
    lines += [f"  - {line}" for line in details]
    if code in HINTS:
        lines.append(f"  hint: {HINTS[code]}")
    return lines


def _answered(error: grpc.RpcError) -> bool:
    """Whether the status came from the service (its errors carry google.rpc details), not from the transport."""
    try:
        return rpc_status.from_call(error) is not None
    except ValueError:
        return False


def _detail_lines(error: grpc.RpcError) -> tuple[bool, list[str]]:
    """(whether there were field violations, one line per violation or failed precondition)."""
    try:
        status = rpc_status.from_call(error)
    except ValueError:  # the trailer disagrees with the call's own status: trust the call
        return False, []
    if status is None:
        return False, []
    field_violations: list[str] = []
    preconditions: list[str] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            field_violations += [f"{v.field}: {v.description}" for v in bad_request.field_violations]
        elif detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            failure = error_details_pb2.PreconditionFailure()
            detail.Unpack(failure)
            preconditions += [f"{v.subject}: {v.description} [{v.type}]" for v in failure.violations]
    return bool(field_violations), field_violations + preconditions
