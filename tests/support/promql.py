"""What the Prometheus and Grafana files ask of PromQL, for the tests that run them.

- ``rules()`` / ``alert_signal()``: every recording and alerting rule of
  deploy/prometheus/alerts.yml, and an alert's expression with its threshold
  comparisons and gates taken off (the convention alerts.yml states at its top).
- ``dashboard_queries()``: every PromQL expression of the Grafana dashboards,
  with where it comes from; ``variables()`` their template variables;
  ``substitute()`` puts values in.
- ``metric_names()``: the metric and recorded series names an expression reads.

PromQL is not parsed in full here (Debian's Prometheus 2.42 has no
/api/v1/parse_query): a tokenizer finds operators outside brackets, braces and
strings, which is all that taking a comparison off the top of an expression needs.
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
ALERTS_FILE = PROMETHEUS_DIR / "alerts.yml"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARDS_DIR = GRAFANA_DIR / "dashboards"

# --- tokens -----------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<open>[(\[{])
  | (?P<close>[)\]}])
  | (?P<cmp>==|!=|>=|<=|>|<)
  | (?P<match>=~|!~|=)
  | (?P<word>[A-Za-z_:][A-Za-z0-9_:.]*)
  | (?P<number>[0-9][0-9a-zA-Z.+_]*|\.[0-9]+)
  | (?P<other>[-+*/%^,@$])
    """,
    re.VERBOSE,
)
_PAIRS = {"(": ")", "[": "]", "{": "}"}
SET_OPERATORS = ("and", "unless")
MODIFIERS = ("on", "ignoring", "group_left", "group_right")


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    start: int
    end: int
    depth: int  # brackets open before it


def tokens(expr: str) -> list[Token]:
    found, depth, pos, stack = [], 0, 0, []
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise ValueError(f"cannot read PromQL at {pos}: {expr[pos:pos + 30]!r}")
        kind, text = m.lastgroup, m.group()
        if kind == "close":
            if not stack or _PAIRS[stack.pop()] != text:
                raise ValueError(f"unbalanced {text!r} at {pos} in {expr!r}")
            depth -= 1
        if kind != "space":
            found.append(Token(kind, text, m.start(), m.end(), depth))
        if kind == "open":
            stack.append(text)
            depth += 1
        pos = m.end()
    if stack:
        raise ValueError(f"unclosed {stack[-1]!r} in {expr!r}")
    return found


def _binary_operators(expr: str, toks: list[Token], wanted) -> list[tuple[int, int, str]]:
    """Top-level binary operators accepted by ``wanted(token, next_token)``, each as
    (start, end, text) with its on()/ignoring()/group_*() modifiers included in the span."""
    spans = []
    for i, tok in enumerate(toks):
        if tok.depth != 0 or not wanted(tok, toks[i + 1] if i + 1 < len(toks) else None):
            continue
        end = tok.end
        j = i + 1
        while j < len(toks) and toks[j].depth == 0 and toks[j].kind == "word" and toks[j].text in MODIFIERS:
            j += 1
            if j < len(toks) and toks[j].text == "(":
                while j < len(toks) and not (toks[j].text == ")" and toks[j].depth == 0):
                    j += 1
                end = toks[j].end
                j += 1
            else:
                end = toks[j - 1].end
        spans.append((tok.start, end, expr[tok.start:end]))
    return spans


def _split(expr: str, spans) -> list[str]:
    parts, pos = [], 0
    for start, end, _ in spans:
        parts.append(expr[pos:start].strip())
        pos = end
    parts.append(expr[pos:].strip())
    return parts


def _is_word(*words):
    return lambda tok, _next: tok.kind == "word" and tok.text in words


def _is_filter(tok: Token, following: Token | None) -> bool:
    """A comparison that filters (not ``> bool``, which yields 0 or 1 for every series)."""
    return tok.kind == "cmp" and not (following and following.kind == "word" and following.text == "bool")


def alert_signal(expr: str) -> str:
    """``expr`` with its thresholds and gates taken off, following alerts.yml's convention:

    ``a or b``: the signals of both; ``x and|unless gate``: the signal of x;
    ``x > threshold``: the signal of x; ``(x)``: the signal of x.
    Comparisons inside brackets (a gate's own threshold, a function's argument) stay.
    """
    expr = expr.strip()
    toks = tokens(expr)
    if toks and toks[0].text == "(" and _closing(toks, 0) == len(toks) - 1:
        return alert_signal(expr[1:-1])
    ors = _binary_operators(expr, toks, _is_word("or"))
    if ors:
        parts = [alert_signal(part) for part in _split(expr, ors)]
        out = parts[0]
        for (_, _, op), part in zip(ors, parts[1:]):
            out += f" {op} {part}"
        return out
    gates = _binary_operators(expr, toks, _is_word(*SET_OPERATORS))
    if gates:
        return alert_signal(_split(expr, gates)[0])
    comparisons = _binary_operators(expr, toks, _is_filter)
    if comparisons:
        return alert_signal(_split(expr, comparisons)[0])
    return expr


def _closing(toks: list[Token], index: int) -> int:
    depth = toks[index].depth
    for j in range(index + 1, len(toks)):
        if toks[j].kind == "close" and toks[j].depth == depth:
            return j
    raise ValueError("unbalanced")


_FUNCTIONS_AND_KEYWORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group",
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or", "unless", "inf", "nan",
}


def metric_names(expr: str) -> set[str]:
    """Names of the series an expression selects (metrics and recorded series), not functions or labels."""
    toks = tokens(expr)
    names = set()
    for i, tok in enumerate(toks):
        if tok.kind != "word" or tok.text.lower() in _FUNCTIONS_AND_KEYWORDS:
            continue
        if i > 0 and toks[i - 1].text == "$":
            continue  # a Grafana variable
        following = toks[i + 1] if i + 1 < len(toks) else None
        if following is not None and following.text == "(":
            continue  # a function call
        if _inside_braces_or_grouping(toks, i):
            continue
        names.add(tok.text)
    return names


def _inside_braces_or_grouping(toks: list[Token], index: int) -> bool:
    """Label names (inside {...}, or the parentheses after by/without/on/ignoring/group_*) and
    range or subquery durations (inside [...])."""
    depth = toks[index].depth
    for j in range(index - 1, -1, -1):
        tok = toks[j]
        if tok.kind == "open" and tok.depth == depth - 1:
            if tok.text in "{[":
                return True
            if tok.text == "(" and j > 0 and toks[j - 1].kind == "word" and toks[j - 1].text in (
                    "by", "without", "on", "ignoring", "group_left", "group_right"):
                return True
            return False
    return False


# --- rules ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    group: str
    name: str  # alert name or recorded series
    kind: str  # "alert" or "record"
    expr: str
    spec: dict


def rules(path: Path = ALERTS_FILE) -> list[Rule]:
    found = []
    for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
        for rule in group["rules"]:
            kind = "alert" if "alert" in rule else "record"
            found.append(Rule(group["name"], rule[kind], kind, rule["expr"].strip(), rule))
    return found


# Series RabbitMQ's own exporter serves (the `rabbitmq` job in prometheus.yml). The integration test's
# Prometheus scrapes only our processes: the machine's broker runs without the rabbitmq_prometheus plugin, so
# rules on these are held by their promtool unit tests alone.
BROKER_SERIES_PREFIX = "rabbitmq_"


def reads_only_broker_series(expr: str) -> bool:
    names = metric_names(expr)
    return bool(names) and all(name.startswith(BROKER_SERIES_PREFIX) for name in names)


def rule_queries(path: Path = ALERTS_FILE) -> list[tuple[str, str]]:
    """(where, query) for every rule: a recording rule's expr, an alert's signal."""
    queries = []
    for rule in rules(path):
        if rule.kind == "record":
            queries.append((f"{path.name}: record {rule.name}", rule.expr))
        else:
            queries.append((f"{path.name}: alert {rule.name} (without its threshold)", alert_signal(rule.expr)))
    return queries


# --- Grafana ----------------------------------------------------------------------------------------


def dashboards() -> list[tuple[Path, dict]]:
    return [(path, json.loads(path.read_text(encoding="utf-8"))) for path in sorted(DASHBOARDS_DIR.glob("*.json"))]


def all_panels(dashboard: dict) -> list[dict]:
    """Every panel, those inside collapsed rows included."""
    found = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def dashboard_queries(dashboard: dict) -> list[tuple[str, str]]:
    """(where, expr) for every target of every panel."""
    queries = []
    for panel in all_panels(dashboard):
        for target in panel.get("targets", []):
            if target.get("expr"):
                queries.append((f"{dashboard['title']}: panel {panel['id']} {panel.get('title')!r} "
                                f"target {target.get('refId')}", target["expr"]))
    return queries


def variables(dashboard: dict) -> list[dict]:
    return dashboard.get("templating", {}).get("list", [])


def variable_query(variable: dict) -> str:
    query = variable.get("query")
    return query.get("query", "") if isinstance(query, dict) else (query or "")


GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range", "__interval_ms", "__range_s", "__range_ms"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")


def referenced_variables(text: str) -> set[str]:
    return {next(g for g in m.groups() if g) for m in _VARIABLE.finditer(text)}


def substitute(text: str, values: dict[str, str]) -> str:
    def value_of(m):
        name = next(g for g in m.groups() if g)
        if name not in values:
            raise KeyError(f"no value for ${name} in {text!r}")
        return values[name]

    return _VARIABLE.sub(value_of, text)


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<selector>.+?)\s*,\s*)?(?P<label>\w+)\s*\)\s*$", re.DOTALL)


def parse_label_values(query: str) -> tuple[str | None, str]:
    """label_values(selector, label) -> (selector, label); label_values(label) -> (None, label)."""
    m = _LABEL_VALUES.match(query)
    if not m:
        raise ValueError(f"not a label_values() query: {query!r}")
    return m.group("selector"), m.group("label")
