"""SCIM errors (RFC 7644 3.12): a status, an optional scimType and a detail, sent as application/scim+json."""

from services.platform.core.errors import (AlreadyExists, FailedPrecondition, InvalidArgument, NotFound,
                                           PermissionDenied, ServiceError)

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
MAX_DETAIL = 500


class ScimError(Exception):
    def __init__(self, status: int, detail: str, scim_type: str = ""):
        super().__init__(detail)
        self.status = status
        self.detail = detail[:MAX_DETAIL]
        self.scim_type = scim_type

    def body(self) -> dict:
        body = {"schemas": [ERROR_SCHEMA], "status": str(self.status), "detail": self.detail}
        if self.scim_type:
            body["scimType"] = self.scim_type
        return body


def invalid_value(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidValue")


def from_service_error(error: ServiceError, names: dict[str, str]) -> ScimError:
    """A directory use case's refusal as SCIM says it; ``names`` turns directory field names into SCIM's."""
    if isinstance(error, InvalidArgument):
        detail = "; ".join(f"{_scim_name(v.field, names)}: {v.description}" for v in error.violations[:5])
        return invalid_value(detail)
    if isinstance(error, AlreadyExists):
        return ScimError(409, error.message, "uniqueness")
    if isinstance(error, NotFound):
        return ScimError(404, error.message)
    if isinstance(error, FailedPrecondition):  # an unknown unit or manager loop: the value cannot apply
        return invalid_value(error.message)
    if isinstance(error, PermissionDenied):
        return ScimError(403, error.message)
    return ScimError(409, f"{error.message}; try again")  # Aborted: the record kept changing underneath


def _scim_name(field: str, names: dict[str, str]) -> str:
    return names.get(field, field)
