"""PATCH (RFC 7644 3.5.2) on a User as rendered: add, replace and remove, with or without a path.

Works on plain JSON, so what the operations leave is mapped back to the directory like a PUT
(users.py). What real clients send is taken: ``"op": "Replace"`` in any case, no ``path`` (the value is an
object of attributes, whose keys may be ``name.givenName`` or an extension's URN), a value path
(``emails[type eq "work"].value``) that matches nothing on add (the element is made), ``null`` as a value
(removes it), and Entra's manager given as its id rather than an object.
"""

import copy
import re

from . import filter as scim_filter
from . import schemas
from .errors import ScimError, invalid_value

MAX_OPERATIONS = 100
_PATH = re.compile(r"^([^\[\].]+)(?:\[(.+)\])?(?:\.([^\[\].]+))?$", re.S)


def bad_path(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidPath")


def no_target(detail: str) -> ScimError:
    return ScimError(400, detail, "noTarget")


def operations_of(body: dict) -> list[dict]:
    if schemas.PATCH_OP not in (body.get("schemas") or []):
        raise ScimError(400, f"a PATCH body names the schema {schemas.PATCH_OP}", "invalidSyntax")
    operations = body.get("Operations", body.get("operations"))
    if not isinstance(operations, list) or not operations:
        raise ScimError(400, "Operations must be a non-empty list", "invalidSyntax")
    if len(operations) > MAX_OPERATIONS:
        raise ScimError(400, f"at most {MAX_OPERATIONS} operations in one PATCH", "invalidSyntax")
    return operations


def apply(resource: dict, operations: list) -> dict:
    """The resource after the operations, in order; ``resource`` is left as it was."""
    patched = copy.deepcopy(resource)
    for operation in operations:
        if not isinstance(operation, dict) or not isinstance(operation.get("op"), str):
            raise ScimError(400, "each operation is an object with an op", "invalidSyntax")
        op = operation["op"].strip().lower()
        if op not in ("add", "replace", "remove"):
            raise ScimError(400, f"unknown op {operation['op'][:20]!r}", "invalidSyntax")
        path = operation.get("path")
        if path is not None and not isinstance(path, str):
            raise bad_path("path must be a string")
        _apply(patched, op, (path or "").strip(), operation.get("value"))
    return patched


def _apply(resource: dict, op: str, path: str, value) -> None:
    if not path:
        if op == "remove":
            raise no_target("remove needs a path")
        if not isinstance(value, dict):
            raise invalid_value("without a path, the value is an object of attributes")
        for key, item in value.items():
            if not isinstance(key, str) or key.lower() == "schemas":
                continue
            _apply(resource, op, key, item)
        return
    schema, rest = schemas.schema_urn(path)
    container = resource.setdefault(schema, {}) if schema == schemas.ENTERPRISE else resource
    if not rest:  # the extension as a whole
        if schema != schemas.ENTERPRISE:
            raise bad_path(f"{path[:80]!r} names no attribute")
        if op == "remove" or value is None:
            container.clear()
            return
        if not isinstance(value, dict):
            raise invalid_value("the extension's value is an object of its attributes")
        for key, item in value.items():
            if isinstance(key, str) and key.lower() != "schemas":
                _apply(resource, op, f"{schema}:{key}", item)
        return
    match = _PATH.match(rest)
    attr = schemas.attribute(schema, match.group(1)) if match else None
    if attr is None:
        raise bad_path(f"{path[:80]!r} names no attribute of the User")
    if attr.mutability == "readOnly":
        raise ScimError(400, f"{attr.name} is read-only", "mutability")
    sub = None
    if match.group(3):
        sub = attr.sub_attr(match.group(3))
        if sub is None:
            raise bad_path(f"{path[:80]!r} names no sub-attribute of {attr.name}")
    if match.group(2):
        if not attr.multi:
            raise bad_path(f"{attr.name} is not multi-valued: it takes no filter")
        _filtered(container, op, attr, scim_filter.parse(match.group(2), within=attr.name), sub, value)
        return
    if op == "remove" or value is None:
        _remove(container, attr, sub)
    elif sub is not None:
        _set_sub(container, op, attr, sub, value)
    else:
        _set(container, op, attr, value)


def _remove(container: dict, attr, sub) -> None:
    if sub is None:
        container.pop(attr.name, None)
        return
    current = container.get(attr.name)
    for element in current if isinstance(current, list) else [current]:
        if isinstance(element, dict):
            element.pop(sub.name, None)
    if isinstance(current, dict) and not current:
        container.pop(attr.name, None)


def _set_sub(container: dict, op: str, attr, sub, value) -> None:
    current = container.get(attr.name)
    if attr.multi:
        elements = current if isinstance(current, list) and current else None
        if elements is None:
            container[attr.name] = [{sub.name: value}]
        for element in elements or []:
            if isinstance(element, dict):
                element[sub.name] = value
        return
    container[attr.name] = {**(current if isinstance(current, dict) else {}), sub.name: value}


def _set(container: dict, op: str, attr, value) -> None:
    if attr.name == "manager" and isinstance(value, str):  # Entra sends the manager's id alone
        value = {"value": value}
    if attr.multi:
        values = value if isinstance(value, list) else [value]
        if op == "add":
            existing = container.get(attr.name) if isinstance(container.get(attr.name), list) else []
            values = existing + [v for v in values if v not in existing]
        container[attr.name] = values
    elif attr.type == "complex" and isinstance(value, dict):
        current = container.get(attr.name)
        container[attr.name] = {**(current if isinstance(current, dict) else {}), **value}
    else:
        container[attr.name] = value


def _filtered(container: dict, op: str, attr, tree, sub, value) -> None:
    current = container.get(attr.name)
    elements = current if isinstance(current, list) else []
    matched = [e for e in elements if isinstance(e, dict) and scim_filter.element_matches(tree, e)]
    if op == "remove":
        if not matched:
            raise no_target(f"no {attr.name} value matches the filter")
        if sub is None:
            container[attr.name] = [e for e in elements if not any(e is m for m in matched)]
        for element in matched if sub is not None else []:
            element.pop(sub.name, None)
        return
    if not matched:
        made = _element_from_filter(tree)
        if made is None:
            raise no_target(f"no {attr.name} value matches the filter")
        made.update({sub.name: value} if sub is not None else (value if isinstance(value, dict) else {}))
        container[attr.name] = elements + [made]
        return
    for element in matched:
        if sub is not None:
            element[sub.name] = value
        elif isinstance(value, dict):
            element.update(value)
        else:
            raise invalid_value(f"the value for {attr.name}[...] is an object")


def _element_from_filter(tree) -> dict | None:
    """``type eq "work"`` (Entra's way of adding an address) makes the element it describes."""
    if isinstance(tree, scim_filter.Compare) and tree.op == "eq" and tree.path.sub:
        return {tree.path.sub: tree.value}
    return None
