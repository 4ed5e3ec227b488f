"""A person record as a SCIM User, and a User (posted, put or patched) as what it asks of the directory.

The directory keeps what a person is (directory_rules.PERSON_FIELDS); SCIM adds a few fields of its own,
written by the same use case in the same record (``SCIM_FIELDS``): the userName (and its lowercase key,
which ``userName eq`` reads by index), the client's externalId, the name's parts, the addresses as sent
(the directory keeps one: the primary), the employee number, the department as the client named it, and
``scim_deleted`` (a DELETE: the person is terminated and hidden from SCIM, and a later POST with the same
externalId or userName restores them).

Keys: the directory's ``external_id`` is the HRIS's employee id, so a person SCIM creates takes
``employeeNumber`` as it (when it is a valid id; else their new directory id) and keeps it: the HRIS feed
and SCIM then name the same record. SCIM's ``externalId`` is the provisioning client's own id of the user
(RFC 7643 3.1), kept as ``scim_external_id``: the client may change it, and a POST naming it again
restores the person.
"""

import unicodedata
from datetime import datetime

from . import schemas
from .errors import invalid_value

SCIM_FIELDS = ("user_name", "user_name_key", "scim_external_id", "scim_name", "scim_emails", "employee_number",
               "department", "scim_deleted")
# Directory field names as a SCIM client knows them, for error details.
SCIM_NAMES = {"display_name": "displayName", "email": "emails", "title": "title", "time_zone": "timezone",
              "locale": "locale", "manager_ref": "manager", "org_unit_ref": "department", "external_id": "employeeNumber",
              "id": "userName", "end_date": "active"}
MAX_USER_NAME = 254
MAX_TEXT = 200
MAX_EMAILS = 20
MAX_EMPLOYEE_NUMBER = 64


def to_resource(doc: dict, base_url: str, unit_name) -> dict:
    """``unit_name(unit_id)``: an org unit's name, the department of people SCIM never named one for."""
    resource = {"schemas": [schemas.USER], "id": doc["_id"], "userName": doc.get("user_name") or doc["_id"]}
    if doc.get("scim_external_id"):
        resource["externalId"] = doc["scim_external_id"]
    if doc.get("scim_name"):
        resource["name"] = dict(doc["scim_name"])
    resource["displayName"] = doc.get("display_name") or resource["userName"]
    for attr, name in (("title", "title"), ("timezone", "time_zone"), ("locale", "locale")):
        if doc.get(name):
            resource[attr] = doc[name]
    resource["active"] = doc.get("active", True) is not False
    if doc.get("email"):
        sent = doc.get("scim_emails") or []
        # As the client sent them, while the directory's address is still the one chosen from them.
        resource["emails"] = sent if primary_email(sent) == doc["email"] else \
            [{"value": doc["email"], "type": "work", "primary": True}]
    enterprise = {}
    employee_number = doc["employee_number"] if "employee_number" in doc else doc.get("external_id")
    if employee_number:
        enterprise["employeeNumber"] = employee_number
    department = doc["department"] if "department" in doc else unit_name(doc.get("org_unit_id") or "")
    if department:
        enterprise["department"] = department
    if doc.get("manager_id"):
        enterprise["manager"] = {"value": doc["manager_id"], "$ref": f"{base_url}/Users/{doc['manager_id']}"}
    elif doc.get("pending_manager"):
        enterprise["manager"] = {"value": doc["pending_manager"]}
    if enterprise:
        resource["schemas"].append(schemas.ENTERPRISE)
        resource[schemas.ENTERPRISE] = enterprise
    resource["meta"] = _meta(doc, base_url)
    return resource


def _meta(doc: dict, base_url: str) -> dict:
    modified = doc.get("updated_at")
    times = [v[0] for v in (doc.get("versions") or {}).values() if v]
    created = min(times) if times else None
    meta = {"resourceType": "User", "location": f"{base_url}/Users/{doc['_id']}",
            "version": f'W/"{doc.get("revision", 0)}"'}
    if isinstance(modified, datetime):
        meta["lastModified"] = _rfc3339(modified)
    if created or isinstance(modified, datetime):
        meta["created"] = _rfc3339(datetime.fromisoformat(created)) if created else meta["lastModified"]
    return meta


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- a User to what it asks --------------------------------------------------------------------------------


def normalized(body: dict) -> dict:
    """The attributes of a body under their canonical names (clients vary the case); unknown ones dropped."""
    resource: dict = {}
    for key, value in body.items():
        if not isinstance(key, str):
            continue
        schema, rest = schemas.schema_urn(key)
        if schema == schemas.ENTERPRISE and not rest:
            if value is not None and not isinstance(value, dict):
                raise invalid_value(f"{schemas.ENTERPRISE} is an object")
            extension = resource.setdefault(schemas.ENTERPRISE, {})
            for name, item in (value or {}).items():
                if isinstance(name, str) and name.lower() != "schemas":
                    _put(extension, schemas.ENTERPRISE, name, item)
        elif rest:
            _put(resource.setdefault(schema, {}) if schema == schemas.ENTERPRISE else resource, schema, rest, value)
    return resource


def _put(container: dict, schema: str, name: str, value) -> None:
    attr = schemas.attribute(schema, name) if isinstance(name, str) else None
    if attr is None or attr.mutability == "readOnly":
        return
    if attr.sub and isinstance(value, dict):
        value = {(attr.sub_attr(k).name if attr.sub_attr(k) else k): v for k, v in value.items() if isinstance(k, str)}
    elif attr.sub and isinstance(value, list):
        value = [{(attr.sub_attr(k).name if attr.sub_attr(k) else k): v for k, v in item.items() if isinstance(k, str)}
                 if isinstance(item, dict) else item for item in value]
    container[attr.name] = value


def wanted(resource: dict) -> dict:
    """What a User asks of the directory, with every type checked (``invalidValue`` otherwise)."""
    user_name = _text(resource, "userName", MAX_USER_NAME)
    if not user_name or not user_name.strip():
        raise invalid_value("userName is required")
    if any(unicodedata.category(c).startswith("C") for c in user_name):
        raise invalid_value("userName must not hold control characters")
    name = _name(resource.get("name"))
    display_name = _text(resource, "displayName", MAX_TEXT) or name.get("formatted") \
        or " ".join(filter(None, (name.get("givenName"), name.get("familyName")))) or user_name
    enterprise = resource.get(schemas.ENTERPRISE) or {}
    if not isinstance(enterprise, dict):
        raise invalid_value(f"{schemas.ENTERPRISE} is an object")
    return {
        "user_name": user_name, "external_id": _text(resource, "externalId", 64), "display_name": display_name[:MAX_TEXT],
        "scim_name": name, "title": _text(resource, "title", MAX_TEXT), "time_zone": _text(resource, "timezone", 64),
        "locale": _text(resource, "locale", 35), "active": boolean(resource.get("active"), "active", default=True),
        "emails": _emails(resource.get("emails")),
        "employee_number": _text(enterprise, "employeeNumber", MAX_EMPLOYEE_NUMBER),
        "department": _text(enterprise, "department", MAX_TEXT), "manager_ref": _manager(enterprise.get("manager")),
    }


def boolean(value, field: str, default: bool) -> bool:
    """true/false, and the strings "True"/"False" some clients send."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise invalid_value(f"{field} must be true or false")


def _text(container: dict, field: str, limit: int) -> str:
    value = container.get(field)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise invalid_value(f"{field} must be a string")
    if len(value) > limit:
        raise invalid_value(f"{field} is longer than {limit} characters")
    return value


def _name(value) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid_value("name must be an object")
    return {part: text for part in ("formatted", "familyName", "givenName")
            if (text := _text(value, part, MAX_TEXT))}


def _emails(value) -> list[dict]:
    if value is None:
        return []
    values = [value] if isinstance(value, dict) else value
    if not isinstance(values, list) or len(values) > MAX_EMAILS or not all(isinstance(v, dict) for v in values):
        raise invalid_value(f"emails must be a list of at most {MAX_EMAILS} objects")
    emails = []
    for item in values:
        email = {"value": _text(item, "value", 254)}
        if item.get("type") is not None:
            email["type"] = _text(item, "type", 20)
        if item.get("primary") is not None:
            email["primary"] = boolean(item.get("primary"), "emails.primary", default=False)
        if email["value"]:
            emails.append(email)
    return emails


def primary_email(emails: list[dict]) -> str:
    """The address the directory keeps: the primary one, else the first."""
    return next((e["value"] for e in emails if e.get("primary")), emails[0]["value"] if emails else "")


def _manager(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):  # Entra: the manager's id alone
        return value
    if not isinstance(value, dict):
        raise invalid_value("manager must be an object with a value")
    return _text(value, "value", 64)
