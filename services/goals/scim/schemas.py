"""What the service provider publishes (RFC 7643 5-7) and the attribute definitions PATCH and filters read.

The User schema lists only what the directory keeps, so a client (or a compliance checker) that reads it
never sends an attribute that would be dropped. ``displayName`` and ``active`` are published as required:
a person always has both here (a POST without them is still taken: the name comes from ``name`` or
``userName``, ``active`` defaults to true). ``timezone``, ``locale``, ``emails.type`` and ``department``
publish canonical values: the time zones and locales are suggestions (any IANA zone and BCP 47 tag
is taken), ``department`` the org units' names (it must name one, section "SCIM" of the goals README).
"""

from dataclasses import dataclass, field

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
SPC = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Schema"
RESOURCE_TYPE = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"

MAX_RESULTS = 200
TIME_ZONES = ["UTC", "Europe/London", "Europe/Berlin", "Europe/Paris", "America/New_York", "America/Chicago",
              "America/Los_Angeles", "Asia/Tokyo", "Asia/Kolkata", "Australia/Sydney"]
LOCALES = ["en-US", "en-GB", "de-DE", "fr-FR", "es-ES", "ja-JP"]


@dataclass(frozen=True)
class Attr:
    name: str
    type: str = "string"
    multi: bool = False
    required: bool = False
    mutability: str = "readWrite"
    case_exact: bool = False
    uniqueness: str = "none"
    canonical: tuple = ()
    sub: tuple = ()
    reference_types: tuple = ()
    description: str = ""

    def sub_attr(self, name: str) -> "Attr | None":
        return next((s for s in self.sub if s.name.lower() == name.lower()), None)


# The common attributes (RFC 7643 3.1), then the User's.
COMMON = (
    Attr("id", mutability="readOnly", case_exact=True, uniqueness="server"),
    Attr("externalId", case_exact=True, description="The provisioning client's id of the user"),
)
USER_ATTRS = (
    Attr("userName", required=True, uniqueness="server", description="The sign-in name; unique"),
    Attr("name", type="complex", sub=(Attr("formatted"), Attr("familyName"), Attr("givenName"))),
    Attr("displayName", required=True, description="Shown everywhere; from name or userName when not sent"),
    Attr("title"),
    Attr("timezone", canonical=tuple(TIME_ZONES), description="An IANA time zone"),
    Attr("locale", canonical=tuple(LOCALES), description="A BCP 47 language tag"),
    Attr("active", type="boolean", required=True, description="false: the person has left (terminated)"),
    Attr("emails", type="complex", multi=True, description="One address is kept: the primary (or the first)",
         sub=(Attr("value"), Attr("type", canonical=("work",)), Attr("primary", type="boolean"))),
)
ENTERPRISE_ATTRS = (
    Attr("employeeNumber", description="The HRIS's employee id: the directory's key when SCIM creates the person"),
    Attr("department", description="Names an org unit (external id, id or name): the person's unit"),
    Attr("manager", type="complex", sub=(
        Attr("value", description="The manager's id (or external id)"),
        Attr("$ref", type="reference", reference_types=("User",)),
    )),
)
META_ATTRS = (Attr("resourceType", mutability="readOnly"), Attr("created", type="dateTime", mutability="readOnly"),
              Attr("lastModified", type="dateTime", mutability="readOnly"),
              Attr("location", type="reference", mutability="readOnly"), Attr("version", mutability="readOnly"))
META = Attr("meta", type="complex", mutability="readOnly", sub=META_ATTRS)
SCHEMAS = {USER: USER_ATTRS, ENTERPRISE: ENTERPRISE_ATTRS}


def attribute(schema: str, name: str) -> Attr | None:
    """An attribute by its name, case-insensitively; the core schema also has the common ones and meta."""
    pool = SCHEMAS[schema] + ((*COMMON, META) if schema == USER else ())
    return next((a for a in pool if a.name.lower() == name.lower()), None)


def schema_urn(text: str) -> tuple[str, str]:
    """(schema, rest) of a path that may start with a schema URN ("urn:...:User:name.givenName")."""
    lowered = text.lower()
    for urn in (ENTERPRISE, USER):
        if lowered.startswith(urn.lower() + ":"):
            return urn, text[len(urn) + 1:]
        if lowered == urn.lower():
            return urn, ""
    return USER, text


# --- the discovery documents -------------------------------------------------------------------------------


def _attr_doc(attr: Attr, canonical_extra: dict) -> dict:
    doc = {"name": attr.name, "type": attr.type, "multiValued": attr.multi, "description": attr.description,
           "required": attr.required, "caseExact": attr.case_exact, "mutability": attr.mutability,
           "returned": "always" if attr.name == "id" else "default", "uniqueness": attr.uniqueness}
    values = canonical_extra.get(attr.name, list(attr.canonical))
    if values:
        doc["canonicalValues"] = values
    if attr.reference_types:
        doc["referenceTypes"] = list(attr.reference_types)
    if attr.sub:
        doc["subAttributes"] = [_attr_doc(sub, {}) for sub in attr.sub]
    return doc


def schema_documents(base_url: str, departments: list[str]) -> list[dict]:
    """The Schema resources (RFC 7643 7); ``departments`` are the canonical values of ``department``."""
    def document(urn: str, name: str, description: str, attrs: tuple, extra: dict) -> dict:
        return {"schemas": [SCHEMA], "id": urn, "name": name, "description": description,
                "attributes": [_attr_doc(a, extra) for a in attrs],
                "meta": {"resourceType": "Schema", "location": f"{base_url}/Schemas/{urn}"}}

    return [document(USER, "User", "A person of the directory", USER_ATTRS, {}),
            document(ENTERPRISE, "EnterpriseUser", "Employee number, department (the org unit) and manager",
                     ENTERPRISE_ATTRS, {"department": departments})]


def resource_types(base_url: str) -> list[dict]:
    return [{"schemas": [RESOURCE_TYPE], "id": "User", "name": "User", "endpoint": "/Users",
             "description": "People of the goals directory", "schema": USER,
             "schemaExtensions": [{"schema": ENTERPRISE, "required": False}],
             "meta": {"resourceType": "ResourceType", "location": f"{base_url}/ResourceTypes/User"}}]


def service_provider_config(base_url: str) -> dict:
    return {
        "schemas": [SPC],
        "documentationUri": "https://github.com/v2mom/platform/blob/main/services/goals/README.md#scim-provisioning",
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": False},
        "sort": {"supported": False},
        "etag": {"supported": False},
        "authenticationSchemes": [{"type": "oauthbearertoken", "name": "Bearer token",
                                   "description": "The provisioning token (SCIM_TOKEN) as a bearer token",
                                   "primary": True}],
        "meta": {"resourceType": "ServiceProviderConfig", "location": f"{base_url}/ServiceProviderConfig"},
    }
