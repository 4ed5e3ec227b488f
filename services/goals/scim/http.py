"""goals-api's SCIM endpoint (under /scim/v2), served on goals-api's HTTP side (services/goals/http.py,
SCIM_HTTP_ADDR, default 127.0.0.1:8090) beside /metrics.

Off unless SCIM_TOKEN is set: then every request needs ``Authorization: Bearer <SCIM_TOKEN>`` (401
otherwise), and the holder acts as a provisioning identity with the role ``hr``, the role DirectoryService
writes need. With V2MOM_ENV=production a token that is short (< 32 bytes) or the development one refuses
to start, as the other secrets do (services/platform/core/config.py).
"""

import hmac
import json
import logging
from dataclasses import dataclass
from urllib.parse import parse_qs

from services.platform.api.auth import Caller
from services.platform.core.config import ConfigError, _weak_secret, env_at_least, env_str, is_production
from services.platform.core.errors import ServiceError

from ..directory import Directory
from ..orphans import require_directory_writer
from . import filter as scim_filter
from . import mapping, schemas
from .errors import ScimError, from_service_error
from .users import FILTER_SCAN_LIMIT, ScimUsers, page_bounds

log = logging.getLogger(__name__)

PREFIX = "/scim/v2"
DEFAULT_ADDR = "127.0.0.1:8090"
DEV_TOKEN = "dev-only-scim-token-change-me-in-production"
CONTENT_TYPE = "application/scim+json"
MAX_BODY = 1 << 20
MAX_DRAIN = 8 << 20  # a bigger body is not read: the connection closes under the client
PROVISIONER = Caller(person_id="scim", roles=frozenset({"hr"}))


@dataclass(frozen=True)
class ScimSettings:
    addr: str = DEFAULT_ADDR
    token: str = ""
    default_org_unit: str = ""
    base_url: str = ""  # behind a proxy: the public https://.../scim/v2; else from the request's Host
    # A filter no index serves reads at most this many live people, else answers 400 tooMany (users.py).
    filter_scan_limit: int = FILTER_SCAN_LIMIT


def settings_from_env() -> ScimSettings | None:
    """None (SCIM off) without SCIM_TOKEN; ConfigError for a weak token in production."""
    token = env_str("SCIM_TOKEN", "")
    if not token:
        return None
    if is_production():
        problems = _weak_secret("SCIM_TOKEN", token, DEV_TOKEN)
        if problems:
            raise ConfigError("V2MOM_ENV=production refuses to start: " + "; ".join(problems))
    scan_limit = env_at_least("SCIM_FILTER_SCAN_LIMIT", FILTER_SCAN_LIMIT, 1)
    return ScimSettings(addr=env_str("SCIM_HTTP_ADDR", DEFAULT_ADDR), token=token,
                        default_org_unit=env_str("SCIM_DEFAULT_ORG_UNIT", ""),
                        base_url=env_str("SCIM_BASE_URL", "").rstrip("/"),
                        filter_scan_limit=scan_limit)


# --- the app --------------------------------------------------------------------------------------------------


def make_app(users: ScimUsers, settings: ScimSettings):
    def app(environ, start_response):
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "")
        try:
            if not _authorized(environ, settings.token):
                raise ScimError(401, "a bearer token is required (the SCIM provisioning token)")
            if path != PREFIX and not path.startswith(PREFIX + "/"):
                raise ScimError(404, "not a SCIM endpoint: the base is /scim/v2")
            base_url = settings.base_url or _base_url(environ)
            status, body, headers = _route(users, environ, method, path[len(PREFIX):].rstrip("/"), base_url)
        except ScimError as error:
            status, body, headers = error.status, error.body(), _challenge(error.status)
        except ServiceError as error:
            scim_error = from_service_error(error, mapping.SCIM_NAMES)
            status, body, headers = scim_error.status, scim_error.body(), []
        except Exception:  # a bug or the store down: logged, no traceback to the client
            log.exception("scim request failed", extra={"path": path[:200], "method": method})
            error = ScimError(500, "internal error; it has been logged")
            status, body, headers = 500, error.body(), []
        return _respond(start_response, status, body, headers)

    return app


def _route(users: ScimUsers, environ, method: str, path: str, base_url: str):
    parts = path.split("/")[1:] if path else []  # PATH_INFO comes percent-decoded
    query = _query_params(environ)
    if parts == ["ServiceProviderConfig"]:
        _allow(method, "GET")
        return 200, schemas.service_provider_config(base_url), []
    if parts[:1] == ["Schemas"]:
        _allow(method, "GET")
        return _listed(schemas.schema_documents(base_url, users.departments()), parts[1:], "Schema")
    if parts[:1] == ["ResourceTypes"]:
        _allow(method, "GET")
        return _listed(schemas.resource_types(base_url), parts[1:], "ResourceType")
    if parts == [".search"]:
        raise ScimError(501, "search across resource types is not supported: POST /Users/.search")
    if parts[:1] != ["Users"] or len(parts) > 2:
        raise ScimError(404, "no such endpoint (this service provider serves Users only)")
    if len(parts) == 1:
        if method == "GET":
            return _search(users, query, base_url)
        _allow(method, "POST")
        require_directory_writer(PROVISIONER)
        user, new = users.create(mapping.normalized(_body(environ)))
        resource = users.render(user, base_url)
        return 201, _project(resource, query), [("Location", resource["meta"]["location"])]
    person_id = parts[1]
    if person_id == ".search":
        _allow(method, "POST")
        return _search(users, _search_params(_body(environ)), base_url)
    if method == "GET":
        return 200, _project(users.get(person_id, base_url), query), []
    _allow(method, "PUT", "PATCH", "DELETE")
    require_directory_writer(PROVISIONER)
    if method == "DELETE":
        users.delete(person_id)
        return 204, None, []
    if method == "PUT":
        user = users.replace(person_id, mapping.normalized(_body(environ)))
    else:
        user = users.patch(person_id, _body(environ), base_url)
    return 200, _project(users.render(user, base_url), query), []


def _search(users: ScimUsers, query: dict, base_url: str):
    tree = scim_filter.parse(query["filter"]) if query.get("filter") is not None else None
    start, count = page_bounds(_int(query, "startIndex", 1), _int(query, "count", schemas.MAX_RESULTS))
    total, page = users.search(tree, start, count, base_url)
    return 200, {"schemas": [schemas.LIST], "totalResults": total, "startIndex": start, "itemsPerPage": len(page),
                 "Resources": [_project(r, query) for r in page]}, []


def _search_params(body: dict) -> dict:
    """A SearchRequest's fields as the query parameters they mirror (lists joined)."""
    params = {}
    for name in ("filter", "startIndex", "count", "attributes", "excludedAttributes"):
        value = body.get(name)
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        if value is not None:
            params[name] = value if isinstance(value, str) else str(value) if not isinstance(value, bool) else ""
    return params


def _listed(documents: list[dict], rest: list[str], kind: str):
    if not rest:
        return 200, {"schemas": [schemas.LIST], "totalResults": len(documents), "startIndex": 1,
                     "itemsPerPage": len(documents), "Resources": documents}, []
    found = next((d for d in documents if len(rest) == 1 and d["id"] == rest[0]), None)
    if found is None:
        raise ScimError(404, f"no {kind} {'/'.join(rest)[:100]!r}")
    return 200, found, []


def _project(resource: dict, query: dict) -> dict:
    """``attributes`` / ``excludedAttributes`` (RFC 7644 3.4.2.5): id and schemas are always returned."""
    names = query.get("attributes") or query.get("excludedAttributes")
    if not names:
        return resource
    paths = []
    for name in names.split(","):
        try:
            paths.append(scim_filter.parse_path(name.strip()))
        except ScimError:
            continue  # an attribute this schema does not have is in no response anyway
    if query.get("attributes"):
        kept = {key: resource[key] for key in ("schemas", "id") if key in resource}
        for path in paths:
            _copy(resource, kept, path)
        return kept
    trimmed = json.loads(json.dumps(resource))
    for path in paths:
        container = trimmed.get(path.schema, {}) if path.schema == schemas.ENTERPRISE else trimmed
        if path.attr in ("id", "schemas"):
            continue
        if path.sub and isinstance(container.get(path.attr), dict):
            container[path.attr].pop(path.sub, None)
        elif not path.sub:
            container.pop(path.attr, None)
    return trimmed


def _copy(source: dict, target: dict, path) -> None:
    if path.schema == schemas.ENTERPRISE:
        source, target = source.get(schemas.ENTERPRISE) or {}, target.setdefault(schemas.ENTERPRISE, {})
    if path.attr not in source:
        return
    value = source[path.attr]
    if path.sub and isinstance(value, dict):
        if path.sub in value:
            target.setdefault(path.attr, {})[path.sub] = value[path.sub]
    elif path.sub and isinstance(value, list):
        target[path.attr] = [{path.sub: v[path.sub]} for v in value if isinstance(v, dict) and path.sub in v]
    else:
        target[path.attr] = value


# --- HTTP details -----------------------------------------------------------------------------------------------


def _authorized(environ, token: str) -> bool:
    scheme, _, presented = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode())


def _challenge(status: int) -> list:
    return [("WWW-Authenticate", 'Bearer realm="scim"')] if status == 401 else []


def _allow(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise ScimError(405, f"use {', '.join(allowed)} here")


def _base_url(environ) -> str:
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', '127.0.0.1')}:{environ.get('SERVER_PORT')}"
    return f"{environ.get('wsgi.url_scheme', 'http')}://{host}{PREFIX}"


def _query_params(environ) -> dict:
    return {key: values[0] for key, values in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _int(params: dict, name: str, default: int) -> int:
    raw = params.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise ScimError(400, f"{name} must be an integer", "invalidValue") from None


def _body(environ) -> dict:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise ScimError(400, "Content-Length is not a number", "invalidSyntax") from None
    if length > MAX_BODY:
        _drain(environ["wsgi.input"], length)
        raise ScimError(413, f"the body is larger than {MAX_BODY} bytes")
    try:
        body = json.loads(environ["wsgi.input"].read(length) if length > 0 else b"")
    except (ValueError, UnicodeDecodeError):
        raise ScimError(400, "the body is not JSON", "invalidSyntax") from None
    if not isinstance(body, dict):
        raise ScimError(400, "the body is a JSON object", "invalidSyntax")
    return body


def _drain(stream, length: int) -> None:
    """Reads a refused body away (up to MAX_DRAIN), so the client reads the 413 rather than a reset connection."""
    left = min(length, MAX_DRAIN)
    while left > 0:
        chunk = stream.read(min(left, 65536))
        if not chunk:
            return
        left -= len(chunk)


def _respond(start_response, status: int, body, headers):
    reason = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
              403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
              413: "Payload Too Large", 500: "Internal Server Error", 501: "Not Implemented"}.get(status, "Error")
    payload = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
    start_response(f"{status} {reason}", [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(payload))),
                                          ("Cache-Control", "no-store"), *headers])
    return [payload]


def scim_app(directory: Directory, settings: ScimSettings, cache_seconds: float = 5.0):
    """The SCIM app over the directory (goals-api's HTTP side routes /scim/v2 to it)."""
    return make_app(ScimUsers(directory, settings.default_org_unit, cache_seconds=cache_seconds,
                              filter_scan_limit=settings.filter_scan_limit), settings)
