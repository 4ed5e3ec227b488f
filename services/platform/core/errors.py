"""Errors a service raises on purpose, and how they travel as gRPC statuses.

Domain code raises these; the gRPC bootstrap turns them into a status with
google.rpc details. Anything else becomes INTERNAL with no text from the
exception, so no traceback ever reaches a client.
"""

from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status


class ServiceError(Exception):
    code = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def details(self) -> list:
        return []

    def to_status(self) -> grpc.Status:
        proto = status_pb2.Status(code=self.code.value[0], message=self.message[:MAX_MESSAGE])
        for detail in self.details():
            packed = any_pb2.Any()
            packed.Pack(detail)
            proto.details.append(packed)
        return rpc_status.to_status(proto)


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


# gRPC trailers are limited to 16 KiB: hundreds of violations (of a request, or a
# submission's lint errors) would arrive as a broken stream instead of their status.
MAX_VIOLATIONS = 20
# A description longer than this is cut: a client-sent value quoted in it must not blow the trailer either.
MAX_DESCRIPTION = 300
MAX_MESSAGE = 1000


def _more(hidden: int) -> str:
    return f"... and {hidden} more problems; fix the ones above and send it again"


def _cut(text: str) -> str:
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1] + "…"


def _capped(violations: list, summary) -> list:
    """At most MAX_VIOLATIONS: the first ones, then ``summary(last shown, how many more)`` in the last place."""
    violations = list(violations)
    if len(violations) <= MAX_VIOLATIONS:
        return violations
    hidden = len(violations) - (MAX_VIOLATIONS - 1)
    return [*violations[: MAX_VIOLATIONS - 1], summary(violations[MAX_VIOLATIONS - 1], hidden)]


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, violations: list[FieldViolation], message: str = ""):
        self.violations = _capped(violations, lambda last, hidden: FieldViolation(last.field, _more(hidden)))
        summary = "; ".join(f"{v.field}: {v.description}" for v in self.violations[:5])
        super().__init__(message or f"invalid argument: {summary}")

    def details(self) -> list:
        return [
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=_cut(v.field), description=_cut(v.description))
                    for v in self.violations
                ]
            )
        ]


@dataclass(frozen=True)
class PreconditionViolation:
    type: str
    subject: str
    description: str


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, message: str, violations: list[PreconditionViolation] = ()):
        super().__init__(message)
        self.violations = _capped(
            violations, lambda last, hidden: PreconditionViolation("MORE", last.subject, _more(hidden)))

    def details(self) -> list:
        if not self.violations:
            return []
        return [
            error_details_pb2.PreconditionFailure(
                violations=[
                    error_details_pb2.PreconditionFailure.Violation(
                        type=_cut(v.type), subject=_cut(v.subject), description=_cut(v.description)
                    )
                    for v in self.violations
                ]
            )
        ]


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class PermissionDenied(ServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED


class Aborted(ServiceError):
    """An optimistic-concurrency conflict: re-read and retry."""

    code = grpc.StatusCode.ABORTED


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE


class Unimplemented(ServiceError):
    """An RPC the proto declares and this server does not serve (yet)."""

    code = grpc.StatusCode.UNIMPLEMENTED


def internal_status(incident_id: str) -> grpc.Status:
    proto = status_pb2.Status(
        code=code_pb2.INTERNAL, message=f"internal error (incident {incident_id}); it has been logged"
    )
    return rpc_status.to_status(proto)


class Violations:
    """Collects field violations so a client hears about all of them at once."""

    def __init__(self):
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.items.append(FieldViolation(field, description))

    def require(self, field: str, value) -> bool:
        if value in (None, "", 0) or value == []:
            self.add(field, "is required")
            return False
        return True

    def max_len(self, field: str, value: str, limit: int) -> None:
        if len(value) > limit:
            self.add(field, f"must be at most {limit} characters (got {len(value)})")

    def max_items(self, field: str, values, limit: int) -> None:
        if len(values) > limit:
            self.add(field, f"must have at most {limit} entries (got {len(values)})")

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument(self.items)
