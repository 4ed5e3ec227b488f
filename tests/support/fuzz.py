"""Requests for any RPC, generated from the protobuf descriptors (hypothesis strategies), and the RPCs themselves.

``rpcs()`` lists every method of every service the generated v2mom.v1 modules declare, so a new RPC is fuzzed
without anyone listing it. What the running system answers goes into a ``Pool`` (``harvest``): ids, page
tokens and whole messages, and per thing (a V2MOM) the ids that belong together. ``requests(descriptor, pool)``
draws a well-formed request from it (issued values, sane numbers, declared enums, times near now), and half
the time spoils a field or two: missing, empty, huge, odd unicode, negative, NaN, infinite, out of range, an
enum value nobody declared, a page token that decodes to nonsense, duplicates. ``one_bad_field`` does the same
deterministically, one field at a time, starting from a request the system accepts (``base_requests``).
"""

import base64
import importlib
import pkgutil
import re
import time
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import strategies as st

import v2mom.v1

PROTO_DIR = Path(v2mom.v1.__file__).parent
MAX_DEPTH = 3  # nested messages deeper than this stay empty: the requests' own shapes are at most this deep


@dataclass(frozen=True)
class Rpc:
    service: str  # full name, "v2mom.v1.GoalService"
    name: str
    request: Descriptor
    response: Descriptor
    streams: bool = False  # a server stream (ExportV2MOMs)
    server: str = ""  # the api that serves it, where more than one does (EventLogService: "checkins-api")

    def request_class(self):
        return message_factory.GetMessageClass(self.request)

    def response_class(self):
        return message_factory.GetMessageClass(self.response)

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"

    @property
    def served_at(self) -> str:
        """The service's full name, with ``@server`` when one of several apis serving it is meant."""
        return f"{self.service}@{self.server}" if self.server else self.service

    def __str__(self) -> str:
        return f"{self.service.rsplit('.', 1)[-1]}.{self.name}" + (f"@{self.server}" if self.server else "")


def pb2_modules() -> list:
    """Every generated *_pb2 module of v2mom.v1."""
    names = sorted(m.name for m in pkgutil.iter_modules([str(PROTO_DIR)]) if m.name.endswith("_pb2"))
    return [importlib.import_module(f"v2mom.v1.{name}") for name in names]


def rpcs() -> list[Rpc]:
    """Every RPC of every service in the generated code, in declaration order."""
    return [Rpc(service.full_name, method.name, method.input_type, method.output_type, method.server_streaming)
            for module in pb2_modules() for service in module.DESCRIPTOR.services_by_name.values()
            for method in service.methods]


def declared_rpcs() -> set[str]:
    """"Service.Rpc" for every rpc the .proto sources declare: what rpcs() must match."""
    declared = set()
    for proto in PROTO_DIR.glob("*.proto"):
        service = None
        for line in proto.read_text(encoding="utf-8").splitlines():
            if found := re.match(r"\s*service\s+(\w+)", line):
                service = found.group(1)
            elif found := re.match(r"\s*rpc\s+(\w+)", line):
                declared.add(f"{service}.{found.group(1)}")
    return declared


def field_names() -> list[str]:
    """Every field name of every message in the package: what a FieldMask path may name."""
    names = set()

    def walk(message: Descriptor):
        names.update(field.name for field in message.fields)
        for nested in message.nested_types:
            walk(nested)

    for module in pb2_modules():
        for message in module.DESCRIPTOR.message_types_by_name.values():
            walk(message)
    return sorted(names)


HOSTILE_STRINGS = [
    "", " ", "\x00", "\t\n", "²", "٣", "Ⅻ", "🚀" * 3, "\u202eevil", "e\u0301", "ﬁ", "İ", "$where", "$gt", "{'$ne': 1}",
    "a.b", "a$b", "../../etc/passwd", "null", "None", "NaN", "-1", "0", "1e309", "9" * 40, "%s%n", "<script>",
    "'; DROP TABLE v2moms; --", "unit:", "@", "me", "/FY2026", "v2m_", "x" * 70_000, "é" * 20_000,
]
# Page tokens that decode to text no list issued: "wrI=" is "²" (isdigit() but not int()), the others
# neither a number nor valid UTF-8 nor base64 at all.
HOSTILE_TOKENS = ["wrI=", base64.urlsafe_b64encode("٣".encode()).decode(), "LTE=", "OTk5OTk5OTk5OTk5OTk5OTk5OTk5",
                  "//79", "====", "not base64!", "AA==", base64.urlsafe_b64encode(b'{"p": -5}').decode()]
INT_BOUNDS = {
    FieldDescriptor.TYPE_INT32: (-2**31, 2**31 - 1), FieldDescriptor.TYPE_SINT32: (-2**31, 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-2**31, 2**31 - 1), FieldDescriptor.TYPE_INT64: (-2**63, 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-2**63, 2**63 - 1), FieldDescriptor.TYPE_SFIXED64: (-2**63, 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1), FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1), FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


class Pool(dict):
    """What responses issued, for requests to reuse (``harvest``): strings by field name, messages by type, and
    ``contexts``: the strings of one thing each (a V2MOM: its id, its items' ids, its owner...), so a request can
    name things that belong together. ``context`` is the one a request is being drawn within."""

    def __init__(self, *args):
        super().__init__(*args)
        self.contexts: list[dict[str, list[str]]] = []
        self.context: dict[str, list[str]] = {}

    def within(self, context: dict) -> "Pool":
        """This pool with one thing's values first: a request drawn from it names that thing's parts."""
        scoped = Pool(self)
        scoped.contexts, scoped.context = self.contexts, {**self.context, **context}
        return scoped

    def __repr__(self) -> str:  # hypothesis shows the strategies' arguments: not a megabyte of values
        return f"Pool({len(self)} kinds)"


PLAIN = st.text("abcdefghijklmnopqrstuvwxyz0123456789 .-", min_size=1, max_size=30)
SEEN_PER_TYPE = 20  # messages of one type kept from responses


def kind_of(message_name: str) -> str:
    """What a message is about, for matching ids: "GetOrgUnitRequest" and "OrgUnit" are both "orgunit"."""
    if message_name.endswith("Request"):
        message_name = re.sub(r"^[A-Z][a-z]+", "", message_name.removesuffix("Request"))
    return message_name.lower()


def issued(owner: str, name: str, pool: Pool) -> list[str]:
    """Values the system issued that fit field ``name`` of message ``owner``, from the pool's context first:
    an "id" the ids of that kind of thing, a "v2mom_id" those of V2MOMs and whatever responses carried under
    that name; else any id."""
    return fitting(owner, name, pool.context) or fitting(owner, name, pool) or pool.get("id", [])


def fitting(owner: str, name: str, values: dict) -> list[str]:
    if name.endswith("page_token"):
        return values.get("page_token", [])
    if name == "id":
        kind = kind_of(owner)
    else:
        kind = re.sub(r"_ids?$", "", name).replace("_", "") if re.search(r"_ids?$", name) else ""
    return values.get(f"{kind}.id", []) + values.get(name, []) if kind else values.get(name, [])


def strings(owner: str, name: str, pool: dict, hostile: bool) -> st.SearchStrategy[str]:
    """A string field: a value the system issued that fits it (``issued``), or plain text; when hostile, also
    odd, huge and malformed ones (page tokens that decode to nonsense)."""
    fitting = issued(owner, name, pool)
    if not hostile:  # a first page, or a list's own token; an issued value, or plain text when none fits
        if name.endswith("page_token"):
            return st.one_of(st.just(""), st.sampled_from(fitting)) if fitting else st.just("")
        return st.sampled_from(fitting) if fitting else PLAIN
    odd = [st.sampled_from(HOSTILE_STRINGS), st.text(max_size=40),
           st.text(st.characters(codec="utf-8", categories=["Cf", "Mn", "Nd", "No", "Zs", "So"]), max_size=12)]
    if name.endswith("page_token"):  # mostly tokens that decode to something no list issued
        return st.integers(0, 3).flatmap(lambda n: st.one_of(odd) if n == 3 else st.sampled_from(HOSTILE_TOKENS))
    return st.one_of(odd + ([st.sampled_from(fitting)] if fitting else []))  # an id of the wrong kind, too


def numbers(field: FieldDescriptor, hostile: bool) -> st.SearchStrategy:
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        if not hostile:
            return st.floats(0, 100)
        width = 32 if field.type == FieldDescriptor.TYPE_FLOAT else 64
        return st.one_of(st.sampled_from([0.0, -0.0, -1.0, 1e308, -1e308, 5e-324]), st.floats(width=width))
    low, high = INT_BOUNDS[field.type]
    if not hostile:
        return st.integers(max(low, 0), min(high, 100))
    edges = [v for v in (0, 1, -1, 7, 100, 10**6, low, high) if low <= v <= high]
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


def scalars(field: FieldDescriptor, pool: dict, hostile: bool) -> st.SearchStrategy:
    if field.type == FieldDescriptor.TYPE_STRING:
        return strings(field.containing_type.name, field.name, pool, hostile)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type == FieldDescriptor.TYPE_ENUM:
        declared = st.sampled_from([value.number for value in field.enum_type.values])
        return st.one_of(declared, st.sampled_from([-1, 99, 2**31 - 1])) if hostile else declared  # open enums
    return numbers(field, hostile)


def values(field: FieldDescriptor, pool: dict, depth: int, hostile: bool) -> st.SearchStrategy:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return messages(field.message_type, pool, hostile, depth + 1)
    return scalars(field, pool, hostile)


def repeated(field: FieldDescriptor, pool: dict, depth: int, hostile: bool) -> st.SearchStrategy[list]:
    """A short list; when hostile, maybe with an item twice (duplicates are a case of their own)."""
    items = st.lists(values(field, pool, depth, hostile), max_size=4 if hostile else 3)
    return st.one_of(items, items.filter(bool).map(lambda found: found + found[:1])) if hostile else items


def fill(message, field: FieldDescriptor, value) -> None:
    message.ClearField(field.name)
    target = getattr(message, field.name) if field.is_repeated or field.message_type else None
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        for entry in value:
            if field.message_type.fields_by_name["value"].message_type:
                target[entry.key].CopyFrom(entry.value)
            else:
                target[entry.key] = entry.value
    elif field.is_repeated:
        target.extend(value)
    elif field.message_type:
        target.CopyFrom(value)
    else:
        setattr(message, field.name, value)


def field_value(draw, field: FieldDescriptor, pool: dict, depth: int, hostile: bool):
    return draw(repeated(field, pool, depth, hostile) if field.is_repeated else values(field, pool, depth, hostile))


def masked(descriptor: Descriptor, pool: Pool) -> Pool:
    """Within a message with a FieldMask beside a message field (an update), the mask's paths name that
    message's fields."""
    fields = [f for f in descriptor.fields if f.message_type is not None]
    if not any(f.message_type.full_name == "google.protobuf.FieldMask" for f in fields):
        return pool
    paths = [inner.name for f in fields if f.message_type.full_name != "google.protobuf.FieldMask"
             for inner in f.message_type.fields]
    return pool.within({"paths": paths}) if paths else pool


@st.composite
def messages(draw, descriptor: Descriptor, pool: dict, hostile: bool, depth: int = 0):
    """A message of ``descriptor``'s type: one the system returned with a field or two redrawn, or one drawn
    field by field (well-formed: most fields there; hostile: any may be missing); nothing below MAX_DEPTH."""
    message = message_factory.GetMessageClass(descriptor)()
    if descriptor.full_name == "google.protobuf.Timestamp" and not hostile:
        message.seconds = int(time.time()) - draw(st.integers(-30, 60)) * 86_400  # most within the last two months
        return message
    pool = masked(descriptor, pool)
    seen = pool.get(descriptor.full_name)
    if seen and draw(st.booleans()):
        message.CopyFrom(draw(st.sampled_from(seen)))
        changed = draw(st.lists(st.sampled_from(list(descriptor.fields)), max_size=2, unique_by=lambda f: f.number))
    elif depth > MAX_DEPTH:
        return message
    else:
        # Hypothesis leans to small draws: 0 must mean "there", or well-formed requests would lack most fields.
        present = st.booleans() if hostile else st.integers(0, 3).map(lambda n: n != 3)
        changed = [field for field in descriptor.fields if draw(present)]
    for field in changed:
        fill(message, field, field_value(draw, field, pool, depth, hostile))
    return message


def spoil(draw, message, pool: dict, depth: int = 0) -> None:
    """Makes one or two fields of a well-formed message hostile: missing, odd, or spoilt further down."""
    fields = list(message.DESCRIPTOR.fields)
    if not fields:
        return
    for field in draw(st.lists(st.sampled_from(fields), min_size=1, max_size=2, unique_by=lambda f: f.number)):
        nested = field.message_type is not None and not field.is_repeated and depth < MAX_DEPTH
        action = draw(st.sampled_from(["odd", "missing", "deeper"] if nested else ["odd", "missing"]))
        if action == "missing":
            message.ClearField(field.name)
        elif action == "deeper":
            spoil(draw, getattr(message, field.name), pool, depth + 1)
        else:
            fill(message, field, field_value(draw, field, pool, depth, hostile=True))


@st.composite
def requests(draw, descriptor: Descriptor, pool: dict):
    """A request: well-formed (issued values, often of one thing; sane numbers, declared enums, times near now),
    or that with a field or two spoilt."""
    if pool.contexts and draw(st.booleans()):
        pool = pool.within(draw(st.sampled_from(pool.contexts)))
    message = draw(messages(descriptor, pool, hostile=False))
    if draw(st.booleans()):
        spoil(draw, message, pool)
    return message


MAX_CONTEXTS = 300


def harvest(message, pool: Pool) -> None:
    """Keeps what a response carries for requests to reuse: strings by field name (ids under "id" and "<kind>.id"
    as well), up to SEEN_PER_TYPE messages of each type by its full name, and a context per thing with an id.
    A server stream's answer (a list) gives each of its messages."""
    if isinstance(message, list):
        for each in message:
            harvest(each, pool)
        return
    for key, values in _walk(message, pool).items():
        known = pool.setdefault(key, [])
        known.extend(value for value in values if value not in known)


def _walk(message, pool: Pool) -> dict[str, list[str]]:
    """The strings of ``message`` and all it holds, by key; keeps its messages and contexts on the way."""
    kept = pool.setdefault(message.DESCRIPTOR.full_name, [])
    if len(kept) < SEEN_PER_TYPE and message not in kept:
        kept.append(message)
    found: dict[str, list[str]] = {}
    for field, value in message.ListFields():
        for item in value if field.is_repeated else [value]:
            if field.message_type and not field.message_type.GetOptions().map_entry:
                for key, values in _walk(item, pool).items():
                    found.setdefault(key, []).extend(values)
            elif field.type == FieldDescriptor.TYPE_STRING and item and len(item) <= 200:
                for key in _keys(message.DESCRIPTOR.name, field.name):
                    found.setdefault(key, []).append(item)
    if "id" in message.DESCRIPTOR.fields_by_name and len(found) > 1 and len(pool.contexts) < MAX_CONTEXTS:
        context = {key: list(dict.fromkeys(values)) for key, values in found.items()}
        if context not in pool.contexts:  # each role's answers name the same things again
            pool.contexts.append(context)
    return found


def _keys(owner: str, name: str) -> list[str]:
    if name == "id":
        return [name, f"{kind_of(owner)}.id"]
    return [name, "id"] if re.search(r"_ids?$", name) else [name]


# --- one bad field at a time: a deterministic sweep beside the random search ----------------------------------

BAD_STRINGS = ["", " ", "\x00", "²", "٣", "\u202eevil", "🚀", "$gt", "{'$ne': 1}", "a.b", "../../etc/passwd",
               "hannah.berg", "x" * 70_000]
BAD_NUMBERS = [-1, 0, 10**6, float("nan"), float("inf"), float("-inf"), -0.0, 1e308]


def base_request(descriptor: Descriptor, pool: dict, depth: int = 0):
    """A plausible message of ``descriptor``'s type, the same every time: one the system returned if any, else
    each field from the first issued value that fits (ids), 1, the first declared enum value, and so on."""
    message = message_factory.GetMessageClass(descriptor)()
    if descriptor.full_name == "google.protobuf.Timestamp":
        message.GetCurrentTime()
        return message
    if pool.get(descriptor.full_name):
        message.CopyFrom(pool[descriptor.full_name][0])
        return message
    pool = masked(descriptor, pool)
    for field in descriptor.fields if depth <= MAX_DEPTH else ():
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            continue
        value = plain_value(descriptor, field, pool, depth)
        if value is not None:
            fill(message, field, [value] if field.is_repeated else value)
    return message


def plain_value(owner: Descriptor, field: FieldDescriptor, pool: dict, depth: int):
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return base_request(field.message_type, pool, depth + 1)
    if field.type == FieldDescriptor.TYPE_STRING:
        fitting = issued(owner.name, field.name, pool)
        return None if field.name.endswith("page_token") else (fitting[0] if fitting else "fuzz")
    if field.type == FieldDescriptor.TYPE_ENUM:
        return ([v.number for v in field.enum_type.values if v.number] or [0])[0]
    return {FieldDescriptor.TYPE_BOOL: True, FieldDescriptor.TYPE_BYTES: b"x"}.get(field.type, 1)


def bad_values(field: FieldDescriptor) -> list:
    """What to put in one field: values of its type that no valid request carries."""
    if field.type == FieldDescriptor.TYPE_STRING:
        return BAD_STRINGS + (HOSTILE_TOKENS if field.name.endswith("page_token") else [])
    if field.type == FieldDescriptor.TYPE_ENUM:
        return [-1, 99, 2**31 - 1]
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return BAD_NUMBERS
    if field.type in INT_BOUNDS:
        low, high = INT_BOUNDS[field.type]
        return sorted({v for v in (-1, 0, 10**6, low, high) if low <= v <= high})
    return []


def base_requests(descriptor: Descriptor, pool: Pool, most: int = 40):
    """Plausible requests, each within one of the contexts that can fill most of its string fields (the
    best first), then one from the whole pool."""
    strings = [f.name for f in descriptor.fields if f.type == FieldDescriptor.TYPE_STRING]

    def fills(context: dict) -> int:
        return sum(bool(fitting(descriptor.name, name, context)) for name in strings)

    ranked = sorted((c for c in pool.contexts if fills(c)), key=fills, reverse=True)[:most]
    return [base_request(descriptor, pool.within(context)) for context in ranked] + [base_request(descriptor, pool)]


def one_bad_field(base, pool: Pool, depth: int = 0):
    """(what was spoilt, request) for each field of ``base``: missing, each bad value, for a list of strings
    also one long list of distinct values and one with duplicates, and the same one level down in each message
    field (a time's seconds, say)."""
    for field in base.DESCRIPTOR.fields:
        for label, spoil_field in _bad_variants(base, field, pool):
            request = type(base)()
            request.CopyFrom(base)
            spoil_field(request)
            yield f"{field.name}{label}", request
        if field.message_type is not None and not field.is_repeated and depth == 0:
            for label, inner in one_bad_field(getattr(base, field.name), pool, depth + 1):
                request = type(base)()
                request.CopyFrom(base)
                getattr(request, field.name).CopyFrom(inner)
                yield f"{field.name}.{label}", request


def _bad_variants(base, field: FieldDescriptor, pool: Pool):
    """(label, what does it to a copy of ``base``) for one field."""
    values = [(repr(v)[:30], [v] if field.is_repeated else v) for v in bad_values(field)]
    if field.is_repeated and field.type == FieldDescriptor.TYPE_STRING:
        first = issued(base.DESCRIPTOR.name, field.name, pool)[:1] or ["fuzz"]
        values += [("600 values", [f"v{i}" for i in range(600)]), ("duplicates", first * 3)]
    yield " missing", lambda request: request.ClearField(field.name)
    for label, value in values:
        yield f"={label}", lambda request, value=value: fill(request, field, value)
