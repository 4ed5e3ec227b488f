"""The ``/metrics`` endpoint: the engagement families rendered straight to text, the rest by prometheus_client.

At 10,000 org units the engagement families hold 750,000 samples (75 per unit and
cycle). Built as prometheus_client ``Sample`` objects and rendered by its
``generate_latest``, which validates, escapes and formats every label of every
sample, they cost ~1.8 ms per unit. Here each (unit, cycle, scope) label set is
escaped once, values are formatted once per distinct value, and each family is
one ``str.join``: the same text, byte for byte, as ``generate_latest`` gives for
``collector.EngagementCollector`` (tests/metrics/test_metrics_exposition.py holds the
two equal, in the text format and in OpenMetrics).

The other families (pipeline health, cycle dates, ``process_*``) are few and stay
with prometheus_client: a registry without the engagement collector renders
them, and its text follows the engagement families', as it did when one registry
held all of them (OpenMetrics' ``# EOF`` stays last). The HTTP side mirrors
``prometheus_client.make_wsgi_app``: any path, ``OPTIONS``, 405 for other
methods, content negotiation (text 0.0.4, text 1.0.0, OpenMetrics) and gzip when
accepted. The gzip answer is one member built from each piece's deflate segment
(``Piece``, ``gzip_member``), so the families rendered.py kept since the last
scrape are not compressed again. Every request is served from that copy: ``name[]``
filters pick its families (and a histogram's lines), and the ``dots`` escaping
rewrites its metric and label names (``restricted``, ``escaped``); neither reads the
store or recounts anything. Requests are served by a pool of ``HTTP_THREADS``
threads (``services.platform.api.wsgi``), not a thread each.
"""

import threading
import zlib
from itertools import accumulate, compress, repeat
from math import copysign, isnan
from operator import attrgetter as _of, is_not, methodcaller
from typing import NamedTuple
from collections.abc import Callable
from datetime import datetime
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.utils import floatToGoString
from pymongo.database import Database

from services.platform.api import wsgi

from . import engagement, model
from .collector import GAUGES, STATES, TIME_TO_APPROVAL, TREE_PROGRESS, EngagementCollector
from .engagement import DIRECT, SUBTREE, Snapshot

# Name escapings that leave legacy-valid names (all of ours) as they are; "dots" doubles their underscores.
_FAST_ESCAPINGS = (openmetrics.UNDERSCORES, openmetrics.ALLOWUTF8, openmetrics.VALUES)
_BUCKET_BOUNDS = [str(float(bound)) for bound in model.TIME_TO_APPROVAL_BUCKETS] + ["+Inf"]
_SCOPES = (DIRECT, SUBTREE)
# The text is so repetitive that level 9 (prometheus_client's) shrinks it little more, at seconds more at 10k units.
GZIP_LEVEL = 1
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no time, unknown OS
# Scrapes served at once; more wait in the listen backlog. A scrape at 10k units is CPU-bound for a while.
HTTP_THREADS = 4


def _label_value(text: str) -> str:
    """As prometheus_client escapes a label value, in both formats."""
    return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _header(name: str, documentation: str, kind: str, openmetrics_format: bool) -> str:
    if openmetrics_format:
        text = _label_value(documentation)
    else:
        text = documentation.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {text}\n# TYPE {name} {kind}\n"


class _IntTexts(dict):
    """``floatToGoString`` of ints and a newline, each worked out once (most values are small counts shared by
    many units)."""

    def __missing__(self, value: int) -> str:
        text = self[value] = floatToGoString(value) + "\n"
        return text


class _FloatTexts(dict):
    """``repr`` of floats and a newline, each worked out once; only for values known finite, below 1e6 and
    without a sign bit (0.0 and -0.0 are one key but print differently)."""

    def __missing__(self, value: float) -> str:
        text = self[value] = repr(value) + "\n"
        return text


def _float_text(value) -> str:
    """``floatToGoString`` of a value that is not an int: ``repr`` unless large, infinite or NaN (or not a float)."""
    if type(value) is float and -1e6 < value < 1e6:
        return repr(value) + "\n"  # what floatToGoString gives for these, signed zeros included
    return floatToGoString(value) + "\n"


def _texts(values: list, ints: _IntTexts, floats: _FloatTexts) -> list[str]:
    """``floatToGoString`` of every value (None excluded) with a newline, at C speed for the usual all-int or
    all-float columns."""
    kinds = set(map(type, values))
    if kinds == {int}:
        return list(map(ints.__getitem__, values))
    if (kinds == {float} and not any(map(isnan, values)) and max(values) < 1e6
            and -1.0 not in map(copysign, repeat(1.0), values)):  # none negative, -0.0 included
        return list(map(floats.__getitem__, values))
    return [ints[v] if type(v) is int else _float_text(v) for v in values]


def _per_view(*columns) -> list[str]:
    """Each view's lines from pieces: every column holds one piece per view (a ``repeat`` for the fixed pieces),
    and a view's run of lines is its pieces of several columns in order."""
    return list(map("".join, zip(*columns)))


def family_headers(openmetrics_format: bool = False) -> list[str]:
    """``# HELP`` and ``# TYPE`` of every engagement family, in the order they are served."""
    gauges = [(name, documentation, "gauge") for name, documentation, _ in GAUGES]
    return [_header(name, documentation, kind, openmetrics_format)
            for name, documentation, kind in gauges + [(*TREE_PROGRESS, "gauge"), (*STATES, "gauge"),
                                                        (*TIME_TO_APPROVAL, "histogram")]]


class LabelSets(NamedTuple):
    """Each view's label set, in three cuts: whole and closed (``…scope="direct"} ``), and split around where a
    histogram bucket's ``le`` goes (``cycle`` sorts before it, the rest after)."""

    closed: list[str]
    cycle: list[str]
    rest: list[str]

    @classmethod
    def of(cls, tree, keys: list[tuple[str, str]]) -> "LabelSets":
        """For the views of ``keys`` ((unit, cycle) pairs), direct then subtree for each."""
        cycle_labels, rest_labels = [], []
        for unit_id, cycle in keys:
            unit = tree.units[unit_id]
            cycle_label = f'cycle="{_label_value(cycle)}"'
            unit_labels = (f'level="{_label_value(unit.level_label)}",org_unit="{_label_value(unit_id)}",'
                           f'org_unit_name="{_label_value(unit.name)}",scope="')
            for scope in _SCOPES:
                cycle_labels.append(cycle_label)
                rest_labels.append(f'{unit_labels}{scope}"}} ')
        return cls(list(map("%s,%s".__mod__, zip(cycle_labels, rest_labels))), cycle_labels, rest_labels)


class Texts:
    """Value texts, each distinct value formatted once."""

    def __init__(self):
        self.ints, self.floats = _IntTexts(), _FloatTexts()

    def __call__(self, values: list) -> list[str]:
        return _texts(values, self.ints, self.floats)


def gauge_lines(name: str, labels: list[str], values: list, texts: Texts) -> list[str]:
    """One line per view, or "" where the value is None (left out, as the collector leaves it out)."""
    if None not in values:
        return _per_view(repeat(name + "{"), labels, texts(values))
    present = list(map(is_not, values, repeat(None)))
    lines = iter(_per_view(repeat(name + "{"), compress(labels, present), texts(list(compress(values, present)))))
    return [next(lines) if kept else "" for kept in present]


def family_lines(views: list[engagement.View], labels: LabelSets, texts: Texts) -> list[list[str]]:
    """Per engagement family (``family_headers``' order), each view's lines, as ``EngagementCollector`` has them."""
    families = [gauge_lines(name, labels.closed, list(map(value_of, views)), texts) for name, _, value_of in GAUGES]
    families.append(gauge_lines(TREE_PROGRESS[0], labels.closed,
                                [view.rates.tree_progress if view.scope == SUBTREE else None for view in views], texts))

    # v2mom_v2moms: a label set's states one after another, as the collector adds them.
    name, label_sets = STATES[0], [label[:-2] for label in labels.closed]  # without "} ", to add the state
    by_state = list(map(_of("counts.v2moms"), views))
    columns = []
    for state in model.STATE_LABELS.values():
        columns += [repeat(name + "{"), label_sets, repeat(f',state="{state}"}} '),
                    texts(list(map(methodcaller("get", state, 0), by_state)))]
    families.append(_per_view(*columns))

    # The histogram: per label set the cumulative buckets, then _count (the +Inf bucket's), then _sum.
    name = TIME_TO_APPROVAL[0]
    cumulative = list(map(list, map(accumulate, map(_of("counts.tta_buckets"), views))))
    buckets = [texts(list(column)) for column in zip(*cumulative)] or [[] for _ in _BUCKET_BOUNDS]
    columns = []
    for bound, values in zip(_BUCKET_BOUNDS, buckets):
        columns += [repeat(f"{name}_bucket{{"), labels.cycle, repeat(f',le="{bound}",'), labels.rest, values]
    sums = texts(list(map(_of("counts.tta_sum"), views)))
    columns += [repeat(f"{name}_count{{"), labels.closed, buckets[-1], repeat(f"{name}_sum{{"), labels.closed, sums]
    families.append(_per_view(*columns))
    return families


def snapshot_keys(snapshot: Snapshot) -> list[tuple[str, str]]:
    """(unit, cycle) in the collector's order: cycle, then unit in tree order."""
    units = snapshot.tree.everything()
    return [(unit_id, cycle) for cycle in snapshot.cycles for unit_id in units]


def snapshot_views(snapshot: Snapshot, keys: list[tuple[str, str]]) -> list[engagement.View]:
    return [snapshot.view(unit_id, cycle, scope) for unit_id, cycle in keys for scope in _SCOPES]


def render_engagement(snapshot: Snapshot, openmetrics_format: bool = False) -> str:
    """The engagement families exactly as ``generate_latest`` renders ``EngagementCollector``'s for ``snapshot``."""
    return "".join(engagement_chunks(snapshot, openmetrics_format))


def engagement_chunks(snapshot: Snapshot, openmetrics_format: bool = False) -> list[str]:
    """``render_engagement``'s text in pieces (two per family), so that nothing joins all 90 MB at 10k units.

    Same families in the same order, samples in the same order (cycle, unit in
    tree order, scope), the same values left out. Lines are joined from their
    pieces (name, label set, value) at C level, so no Python runs per sample
    beyond picking the value.
    """
    keys = snapshot_keys(snapshot)
    lines = family_lines(snapshot_views(snapshot, keys), LabelSets.of(snapshot.tree, keys), Texts())
    out: list[str] = []
    for header, family in zip(family_headers(openmetrics_format), lines):
        out += [header, "".join(family)]
    return out


def family_names() -> list[str]:
    """The engagement families' names, in ``family_headers``' order."""
    return [name for name, _, _ in GAUGES] + [TREE_PROGRESS[0], STATES[0], TIME_TO_APPROVAL[0]]


def _sample_names(family: str) -> tuple[str, ...]:
    if family == TIME_TO_APPROVAL[0]:
        return (f"{family}_bucket", f"{family}_count", f"{family}_sum")
    return (family,)


# The engagement families' label names, as LabelSets and family_lines write them.
_LABEL_NAMES = ("cycle", "level", "org_unit", "org_unit_name", "scope", "state", "le")


def restricted(pieces: list["Piece"], names: set[str], openmetrics_format: bool) -> list["Piece"]:
    """The engagement pieces as prometheus_client's ``restricted_registry(names)`` renders them: a family only
    when one of its sample names is asked for, with only those samples (a histogram's ``_bucket`` alone)."""
    kept = []
    for piece, header, family in zip(pieces, family_headers(openmetrics_format), family_names()):
        wanted = [sample for sample in _sample_names(family) if sample in names]
        if len(wanted) < len(_sample_names(family)) and wanted:
            lines = piece.raw.decode()[len(header):].splitlines(keepends=True)
            piece = Piece(header + "".join(line for line in lines if line.split("{", 1)[0] in wanted))
        if wanted and len(piece.raw) > len(header.encode()):  # a family without samples is left out
            kept.append(piece)
    return kept


def escaped(piece: "Piece", escaping: str) -> "Piece":
    """An engagement piece with its metric and label names escaped as ``escaping`` asks (``dots``).

    Names are replaced where only names stand: after a line start or ``# HELP ``/``# TYPE ``, and before
    ``{``, or, for labels, after ``{`` or ``",`` and before ``="``. An escaped label value has ``\\"`` for
    every quote and ``\\n`` for every newline, so none of those patterns occurs inside one.
    """
    text = "\n" + piece.raw.decode()
    for family in family_names():
        name = openmetrics.escape_metric_name(family, escaping)
        for marker in ("\n# HELP ", "\n# TYPE "):
            text = text.replace(f"{marker}{family} ", f"{marker}{name} ")
        for sample in _sample_names(family):
            text = text.replace(f"\n{sample}{{", f"\n{openmetrics.escape_metric_name(sample, escaping)}{{")
    for label in _LABEL_NAMES:
        name = openmetrics.escape_label_name(label, escaping)
        for before in ("{", '",'):
            text = text.replace(f'{before}{label}="', f'{before}{name}="')
    return Piece(text[1:])


class Piece:
    """Part of a scrape's body: its bytes, and their deflate segment, made when first asked for.

    Segments end in a full flush, so any run of them is one deflate stream: a gzip answer compresses only
    the families that changed since the last scrape (``gzip_member``).
    """

    __slots__ = ("raw", "_deflated")

    def __init__(self, text: str | bytes):
        self.raw = text.encode("utf-8") if isinstance(text, str) else text
        self._deflated: bytes | None = None

    def deflated(self) -> bytes:
        if self._deflated is None:  # two threads may both make it: the same bytes, so either may win
            packer = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
            self._deflated = packer.compress(self.raw) + packer.flush(zlib.Z_FULL_FLUSH)
        return self._deflated


def gzip_member(pieces: list[Piece]) -> list[bytes]:
    """One gzip member (RFC 1952) of the pieces in order: their deflate segments, a final empty block, and the
    CRC-32 and size of everything. Any gzip reader reads it as if compressed in one go."""
    crc, size = 0, 0
    for piece in pieces:
        crc, size = zlib.crc32(piece.raw, crc), size + len(piece.raw)
    finish = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS).flush(zlib.Z_FINISH)
    trailer = crc.to_bytes(4, "little") + (size & 0xFFFFFFFF).to_bytes(4, "little")
    return [_GZIP_HEADER, *(piece.deflated() for piece in pieces), finish, trailer]


class Exposition:
    """What ``/metrics`` serves: the engagement families (rendered here), then those of ``others``.

    ``full`` is one prometheus_client registry of all of them (engagement first),
    as metrics-api served before: the reference the tests compare with, never
    served. ``others`` holds only the other families, so no family appears twice.
    """

    def __init__(self, db: Database, clock: Callable[[], datetime], others: list[Collector], rendered):
        """``rendered`` serves the engagement text (rendered.RenderedEngagement, which renders with this
        module's functions)."""
        self.db = db
        self.clock = clock
        self.rendered = rendered
        self.full = _registry([EngagementCollector(db, clock), *others])
        self.others = _registry(others)

    def render(self, accept: str | None, params: dict | None = None) -> tuple[list[Piece], str]:
        """(body in pieces, Content-Type) for a request's Accept header and query parameters, as prometheus_client
        answers them."""
        encoder, content_type = choose_encoder(accept or "")
        escaping = getattr(encoder, "keywords", {}).get("escaping", openmetrics.UNDERSCORES)
        is_openmetrics = getattr(encoder, "func", encoder) is openmetrics.generate_latest
        names = set((params or {}).get("name[]") or ())
        pieces = self.rendered.pieces(self.clock(), is_openmetrics)
        if names:
            pieces = restricted(pieces, names, is_openmetrics)
        if escaping not in _FAST_ESCAPINGS:
            pieces = [escaped(piece, escaping) for piece in pieces]
        others = self.others.restricted_registry(names) if names else self.others
        return [*pieces, Piece(encoder(others))], content_type

    def body(self, accept: str | None = None, params: dict | None = None) -> bytes:
        """The whole body, uncompressed (for tests)."""
        return b"".join(piece.raw for piece in self.render(accept, params)[0])


def _registry(collectors: list[Collector]) -> CollectorRegistry:
    # No describe, so registering reads nothing; and so that name[] restrictions find them all the same.
    registry = CollectorRegistry(support_collectors_without_names=True)
    for collector in collectors:
        registry.register(collector)
    return registry


def make_wsgi_app(exposition: Exposition, disable_compression: bool = False) -> Callable:
    """prometheus_client's ``make_wsgi_app``, serving ``exposition``."""

    def app(environ, start_response):
        method = environ["REQUEST_METHOD"]
        if method == "OPTIONS":
            status, headers, output = "200 OK", [("Allow", "OPTIONS,GET")], b""
        elif method != "GET":
            status = "405 Method Not Allowed"
            headers = [("Allow", "OPTIONS,GET")]
            output = f"# HTTP {status}: {method}; use OPTIONS or GET\n".encode()
        elif environ["PATH_INFO"] == "/favicon.ico":
            status, headers, output = "200 OK", [], b""
        else:  # like prometheus_client, any other path serves the metrics
            params = parse_qs(environ.get("QUERY_STRING", ""))
            pieces, content_type = exposition.render(environ.get("HTTP_ACCEPT"), params)
            status, headers = "200 OK", [("Content-Type", content_type)]
            if not disable_compression and gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING")):
                chunks = gzip_member(pieces)
                headers.append(("Content-Encoding", "gzip"))
            else:
                chunks = [piece.raw for piece in pieces]
            headers.append(("Content-Length", str(sum(map(len, chunks)))))
            start_response(status, headers)
            return chunks
        start_response(status, headers)
        return [output]

    return app


def start_http_server(port: int, addr: str, exposition: Exposition) -> tuple[WSGIServer, threading.Thread]:
    """Serves ``exposition`` on a daemon thread, ``HTTP_THREADS`` requests at a time."""
    return wsgi.serve(addr, port, make_wsgi_app(exposition), HTTP_THREADS, "metrics")
