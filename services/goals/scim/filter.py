"""SCIM filters (RFC 7644 3.4.2.2): parsed into a small tree, evaluated against a User as rendered.

Grammar: ``attrPath op value``, ``attrPath pr``, ``attrPath[filter]`` (a value path over a multi-valued
attribute), ``not (filter)``, ``and`` binding tighter than ``or``, parentheses. Operators: eq ne co sw ew
gt ge lt le pr. Attribute names and operators are case-insensitive; strings compare case-insensitively
unless the attribute is caseExact (id, externalId). Anything else is ``invalidFilter``, never an error of
ours. ``narrowing`` turns the parts the store can answer by index (``userName eq``, ``externalId eq``,
``id eq``) into a query, so the common look-ups a client makes read one record.
"""

import json
import re
from dataclasses import dataclass

from . import schemas
from .errors import ScimError

MAX_FILTER = 4096
MAX_DEPTH = 32
OPERATORS = {"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"}
_TOKEN = re.compile(r'\s*(?:(\()|(\))|(\[)|(\])|("(?:[^"\\]|\\.)*")|([^\s()\[\]"]+))')


@dataclass(frozen=True)
class Path:
    schema: str
    attr: str        # canonical name
    sub: str = ""    # canonical sub-attribute name, or ""


@dataclass(frozen=True)
class Compare:
    path: Path
    op: str
    value: object = None


@dataclass(frozen=True)
class Logical:
    op: str  # "and", "or"
    left: object
    right: object


@dataclass(frozen=True)
class Not:
    inner: object


@dataclass(frozen=True)
class ValuePath:
    path: Path
    inner: object


def bad(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidFilter")


def parse_path(text: str, allow_sub: bool = True) -> Path:
    """An attribute path (``emails.value``, ``urn:...:enterprise:2.0:User:manager.value``) of the schema."""
    schema, rest = schemas.schema_urn(text)
    name, _, sub = rest.partition(".")
    attr = schemas.attribute(schema, name) if name else None
    if attr is None:
        raise bad(f"unknown attribute {text[:80]!r}")
    if sub:
        sub_attr = attr.sub_attr(sub) if allow_sub else None
        if sub_attr is None:
            raise bad(f"unknown attribute {text[:80]!r}")
        return Path(schema, attr.name, sub_attr.name)
    return Path(schema, attr.name)


def parse(text: str, within: str = ""):
    """The filter's tree; ``within``: the multi-valued attribute a value filter (a PATCH path's) is about."""
    if not isinstance(text, str) or not text.strip():
        raise bad("the filter is empty")
    if len(text) > MAX_FILTER:
        raise bad(f"the filter is longer than {MAX_FILTER} characters")
    tokens = _tokens(text)
    parser = _Parser(tokens)
    tree = parser.expression(0, within)
    if parser.position != len(tokens):
        raise bad(f"unexpected {tokens[parser.position][1][:40]!r}")
    return tree


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise bad(f"cannot read the filter at character {position + 1}")
        kinds = ("(", ")", "[", "]", "string", "word")
        kind = next(k for k, g in zip(kinds, match.groups()) if g is not None)
        tokens.append((kind, match.group(match.lastindex)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, tokens):
        self.tokens = tokens
        self.position = 0

    def peek(self, offset: int = 0):
        index = self.position + offset
        return self.tokens[index] if index < len(self.tokens) else ("end", "")

    def take(self, kind: str):
        token = self.peek()
        if token[0] != kind:
            raise bad(f"expected {kind!r}, found {token[1][:40] or 'the end'!r}")
        self.position += 1
        return token[1]

    def expression(self, depth: int, prefix: str = ""):
        if depth > MAX_DEPTH:
            raise bad("the filter is nested too deeply")
        return self._chain("or", lambda: self._chain("and", lambda: self.term(depth, prefix)))

    def _chain(self, word: str, operand):
        """``operand (word operand)*``, left to right: "and" binds tighter because it is the inner chain."""
        left = operand()
        while self.peek()[0] == "word" and self.peek()[1].lower() == word:
            self.position += 1
            left = Logical(word, left, operand())
        return left

    def term(self, depth: int, prefix: str):
        kind, text = self.peek()
        if kind == "(":
            self.position += 1
            inner = self.expression(depth + 1, prefix)
            self.take(")")
            return inner
        if kind == "word" and text.lower() == "not":
            self.position += 1
            self.take("(")
            inner = self.expression(depth + 1, prefix)
            self.take(")")
            return Not(inner)
        if kind != "word":
            raise bad(f"expected an attribute, found {text[:40] or 'the end'!r}")
        self.position += 1
        if self.peek()[0] == "[":
            if prefix:
                raise bad("a value path cannot hold another")
            self.position += 1
            path = parse_path(text, allow_sub=False)
            inner = self.expression(depth + 1, prefix=path.attr)
            self.take("]")
            return ValuePath(path, inner)
        path = _inner_path(prefix, text) if prefix else parse_path(text)
        op = self.take("word").lower()
        if op == "pr":
            return Compare(path, "pr")
        if op not in OPERATORS:
            raise bad(f"unknown operator {op[:20]!r}")
        return Compare(path, op, self.value())

    def value(self):
        kind, text = self.peek()
        self.position += 1
        if kind == "string":
            try:
                return json.loads(text)
            except ValueError:
                raise bad("a string in the filter is malformed") from None
        if kind == "word":
            lowered = text.lower()
            if lowered in ("true", "false"):
                return lowered == "true"
            if lowered == "null":
                return None
            try:
                return float(text) if any(c in text for c in ".eE") else int(text)
            except ValueError:
                pass
        raise bad(f"expected a value, found {text[:40] or 'the end'!r}")


def _inner_path(parent: str, text: str) -> Path:
    """A sub-attribute inside a value path: ``emails[type eq "work"]``."""
    attr = schemas.attribute(schemas.USER, parent) or schemas.attribute(schemas.ENTERPRISE, parent)
    sub = attr.sub_attr(text) if attr else None
    if sub is None:
        raise bad(f"unknown attribute {parent}.{text[:60]!r}")
    return Path(schemas.USER if schemas.attribute(schemas.USER, parent) else schemas.ENTERPRISE, attr.name, sub.name)


# --- evaluation ---------------------------------------------------------------------------------------------


def matches(tree, resource: dict) -> bool:
    if isinstance(tree, Logical):
        if tree.op == "and":
            return matches(tree.left, resource) and matches(tree.right, resource)
        return matches(tree.left, resource) or matches(tree.right, resource)
    if isinstance(tree, Not):
        return not matches(tree.inner, resource)
    if isinstance(tree, ValuePath):
        elements = _container(tree.path, resource).get(tree.path.attr)
        elements = elements if isinstance(elements, list) else [elements] if isinstance(elements, dict) else []
        return any(element_matches(tree.inner, element) for element in elements if isinstance(element, dict))
    return _compare_path(tree, resource)


def _container(path: Path, resource: dict) -> dict:
    return resource.get(path.schema) or {} if path.schema == schemas.ENTERPRISE else resource


def _compare_path(tree: Compare, resource: dict) -> bool:
    value = _container(tree.path, resource).get(tree.path.attr)
    values = value if isinstance(value, list) else [value]
    if tree.path.sub:
        values = [v.get(tree.path.sub) for v in values if isinstance(v, dict)]
    elif any(isinstance(v, dict) for v in values):  # a complex attribute without a sub-attribute: its "value"
        values = [v.get("value") for v in values if isinstance(v, dict)]
    return any(_test(tree, v) for v in values)


def element_matches(tree, element: dict) -> bool:
    """A filter inside a value path, on one element of the multi-valued attribute."""
    if isinstance(tree, Logical):
        both = (element_matches(tree.left, element), element_matches(tree.right, element))
        return all(both) if tree.op == "and" else any(both)
    if isinstance(tree, Not):
        return not element_matches(tree.inner, element)
    return _test(tree, element.get(tree.path.sub))


def _test(tree: Compare, actual) -> bool:
    if tree.op == "pr":
        return actual not in (None, "", [], {})
    expected = tree.value
    if isinstance(actual, bool) or isinstance(expected, bool) or expected is None:
        if tree.op not in ("eq", "ne"):
            raise bad(f"{tree.op} does not apply to a boolean or null")
        equal = actual == expected if expected is not None else actual in (None, "")
        return equal if tree.op == "eq" else not equal
    if actual is None:
        return tree.op == "ne"
    if isinstance(expected, (int, float)) != isinstance(actual, (int, float)) and tree.op not in ("eq", "ne"):
        return False
    if isinstance(actual, str) and isinstance(expected, str) and not _case_exact(tree.path):
        actual, expected = actual.lower(), expected.lower()
    return _OPS[tree.op](actual, expected)


def _safe(compare):
    def run(actual, expected):
        try:
            return compare(actual, expected)
        except TypeError:  # a number against a string: no match
            return False
    return run


_OPS = {
    "eq": lambda a, e: a == e, "ne": lambda a, e: a != e,
    "co": _safe(lambda a, e: str(e) in str(a)), "sw": _safe(lambda a, e: str(a).startswith(str(e))),
    "ew": _safe(lambda a, e: str(a).endswith(str(e))),
    "gt": _safe(lambda a, e: a > e), "ge": _safe(lambda a, e: a >= e),
    "lt": _safe(lambda a, e: a < e), "le": _safe(lambda a, e: a <= e),
}


def _case_exact(path: Path) -> bool:
    attr = schemas.attribute(path.schema, path.attr)
    if attr is None:
        return False
    return (attr.sub_attr(path.sub) or attr).case_exact if path.sub else attr.case_exact


# What an index answers (users.py): equality on these three, and a prefix of the two compared case-exactly
# (a userName prefix is not: people SCIM never named answer to their id, in any case).
INDEXED = {"eq": ("userName", "externalId", "id"), "sw": ("externalId", "id")}


def narrowing(tree) -> list[Compare]:
    """The indexed tests (``INDEXED``) every match must pass (the top-level ``and`` of the filter)."""
    if isinstance(tree, Logical) and tree.op == "and":
        return narrowing(tree.left) + narrowing(tree.right)
    if isinstance(tree, Compare) and tree.path.attr in INDEXED.get(tree.op, ()) and isinstance(tree.value, str) \
            and not tree.path.sub and tree.path.schema == schemas.USER:
        return [tree]
    return []
