"""BillingTemplateEngine: the small, safe template language of billing messages.

Syntax
------
* `{{name}}` — a variable. Dotted names read nested values: `{{customer.name}}` reads
  `variables["customer"]["name"]` (a flat key `"customer.name"` is tried first; a numeric
  part indexes a list: `{{installments.0.amount}}`).
* `{{name?}}` — an **optional** variable: renders as an empty string when missing. A plain
  `{{name}}` that is missing, `None` or blank is an error: rendering raises
  `MissingVariablesError` listing every such name, so a customer never receives
  "Olá, !" or "R$ None".
* `{{name|filter}}`, chained `{{name|first_name|upper}}`, also `{{name?|money}}`. Filters:
  `money` (`R$ 1.234,56`), `date` (`dd/mm/aaaa`), `first_name` ("MARIA da silva" → "Maria"),
  `title` ("MARIA DA SILVA" → "Maria da Silva"), `days` (`1 dia`, `5 dias`), `upper`,
  `lower`. An unknown filter is an error when the template is validated.
* `{{#if name}}...{{else}}...{{/if}}` and `{{#unless name}}...{{else}}...{{/unless}}`,
  nested up to `MAX_DEPTH` levels. A condition is false when the variable is missing,
  `None`, `False`, zero, blank or empty, so variables used only in conditions are optional.
  A block tag alone on its line removes that line from the output (as in Handlebars).

Output: every string value passes through `text_cleaning.clean_value` before any filter
(no markup, no control characters, no script URLs, at most 1,000 characters); numbers, dates
and booleans are formatted (dates as `dd/mm/aaaa`, decimals with a comma, booleans as
`sim`/`não`). Values are never parsed as templates: a name containing `{{x}}` is printed as
`{{x}}`. The rendered text is trimmed and runs of blank lines are collapsed to one.

There is no way to write a literal `{{` and deliberately no loops, partials or expressions:
see `parser` for why rendering is linear and bounded.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from . import formatting
from .default_templates import sample_variables
from .errors import MissingVariablesError, TemplateError
from .parser import MAX_DEPTH, MAX_TAGS, MAX_TEMPLATE_LENGTH, Block, Node, Text, Var, parse
from .text_cleaning import clean_value

__all__ = [
    "BillingTemplateEngine",
    "CompiledTemplate",
    "MissingVariablesError",
    "TemplateError",
    "sample_variables",
]

COMPILE_CACHE_SIZE = 256

_MISSING = object()
_BLANK_LINES = re.compile(r"\n(?:[ \t]*\n){2,}")


def _to_text(value: Any) -> str:
    """Default text of a prepared value (strings are already clean)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "sim" if value else "não"
    if isinstance(value, date):
        return formatting.format_date(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (float, Decimal)):
        number = formatting.to_decimal(value)
        return format(number, "f").replace(".", ",")
    raise ValueError("it is a group of values, not a single value")


def _text_filter(function: Callable[[str], str]) -> Callable[[Any], str]:
    return lambda value: function(_to_text(value))


_FILTERS: dict[str, Callable[[Any], str]] = {
    "money": formatting.format_money,
    "date": formatting.format_date,
    "days": formatting.format_days,
    "first_name": _text_filter(formatting.first_name),
    "title": _text_filter(formatting.title_name),
    "upper": _text_filter(str.upper),
    "lower": _text_filter(str.lower),
}


def _prepare(raw: Any) -> Any:
    """Clean a value once per render: strings through the sanitizer; numbers, dates and
    booleans are kept typed for the filters (they cannot carry markup); groups of values are
    kept for conditions; anything else is printed as its cleaned text."""
    if raw is _MISSING or raw is None:
        return _MISSING
    if isinstance(raw, str):
        return clean_value(raw)
    if isinstance(raw, (bool, int, float, Decimal, date, Mapping, list, tuple, set, frozenset)):
        return raw
    return clean_value(raw)


def _lookup(variables: Mapping[str, Any], name: str) -> Any:
    if name in variables:
        return variables[name]
    if "." not in name:
        return _MISSING
    current: Any = variables
    for part in name.split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, (list, tuple)) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return _MISSING
    return current


def _is_blank(value: Any) -> bool:
    return value is _MISSING or (isinstance(value, str) and not value.strip())


def _truthy(value: Any) -> bool:
    if _is_blank(value):
        return False
    return bool(value)


class _Context:
    __slots__ = ("variables", "values", "missing")

    def __init__(self, variables: Mapping[str, Any] | None) -> None:
        self.variables = variables or {}
        self.values: dict[str, Any] = {}
        self.missing: set[str] = set()

    def value(self, name: str) -> Any:
        if name not in self.values:
            self.values[name] = _prepare(_lookup(self.variables, name))
        return self.values[name]


def _walk(nodes: tuple[Node, ...], context: _Context, out: list[str] | None) -> None:
    """Render `nodes` into `out`; with `out=None` only collect missing variables."""
    for node in nodes:
        if isinstance(node, Text):
            if out is not None:
                out.append(node.text)
        elif isinstance(node, Var):
            value = context.value(node.name)
            if _is_blank(value):
                if not node.optional:
                    context.missing.add(node.name)
                continue
            if out is not None:
                out.append(_format(node, value))
        else:
            taken = _truthy(context.value(node.name)) != (node.keyword == "unless")
            _walk(node.body if taken else node.orelse, context, out)


def _format(node: Var, value: Any) -> str:
    step: str | None = None
    try:
        for step in node.filters:
            value = _FILTERS[step](value)
        step = None
        return _to_text(value)
    except ValueError as exc:
        how = f"with '{step}'" if step else "as text"
        raise TemplateError(
            "invalid_value",
            f"Variable '{node.name}' cannot be formatted {how}: {exc}.",
            line=node.line,
            column=node.column,
        ) from exc


def _required(nodes: tuple[Node, ...]) -> set[str]:
    """Names printed without `?` on every path through `nodes`."""
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, Var) and not node.optional:
            names.add(node.name)
        elif isinstance(node, Block):
            names |= _required(node.body) & _required(node.orelse)
    return names


def _referenced(nodes: tuple[Node, ...]) -> tuple[set[str], int]:
    names: set[str] = set()
    count = 0
    for node in nodes:
        count += 1
        if isinstance(node, Var):
            names.add(node.name)
        elif isinstance(node, Block):
            names.add(node.name)
            for branch in (node.body, node.orelse):
                branch_names, branch_count = _referenced(branch)
                names |= branch_names
                count += branch_count
    return names, count


@dataclass(frozen=True, eq=False)
class CompiledTemplate:
    """A parsed template: parse once per variation, render once per contact. Immutable, so
    one instance is shared by every thread through the compile cache."""

    source: str
    nodes: tuple[Node, ...]
    variables_used: frozenset[str]  # printed without `?` on every path: a render always needs them
    referenced_variables: frozenset[str]  # every name the template mentions, conditions included
    node_count: int

    @classmethod
    def from_source(cls, content: str) -> CompiledTemplate:
        nodes = parse(content, known_filters=BillingTemplateEngine.FILTER_NAMES)
        referenced, count = _referenced(nodes)
        return cls(content, nodes, frozenset(_required(nodes)), frozenset(referenced), count)

    def render(self, variables: Mapping[str, Any] | None) -> str:
        """The message text, or `MissingVariablesError` / `TemplateError(invalid_value)`."""
        context = _Context(variables)
        out: list[str] = []
        _walk(self.nodes, context, out)
        if context.missing:
            raise MissingVariablesError(context.missing)
        return _BLANK_LINES.sub("\n\n", "".join(out)).strip()

    def missing_variables(self, variables: Mapping[str, Any] | None) -> list[str]:
        """What `render(variables)` would report as missing (sorted), without formatting."""
        context = _Context(variables)
        _walk(self.nodes, context, None)
        return sorted(context.missing)


@functools.lru_cache(maxsize=COMPILE_CACHE_SIZE)
def _compile_cached(content: str) -> CompiledTemplate:
    return CompiledTemplate.from_source(content)


class BillingTemplateEngine:
    """Stateless facade used by the API, the admin and the send worker."""

    MAX_TEMPLATE_LENGTH = MAX_TEMPLATE_LENGTH
    MAX_DEPTH = MAX_DEPTH
    MAX_TAGS = MAX_TAGS
    FILTER_NAMES = frozenset(_FILTERS)

    @staticmethod
    def compile(content: str) -> CompiledTemplate:
        """Parse (or fetch from a bounded LRU cache keyed by the content) or raise TemplateError."""
        if not isinstance(content, str):
            raise TypeError(f"template must be str, not {type(content).__name__}")
        return _compile_cached(content)

    @staticmethod
    def validate(content: str) -> None:
        """Raise TemplateError (with line and column) if `content` is not a usable template."""
        BillingTemplateEngine.compile(content)

    @staticmethod
    def render(content: str, variables: Mapping[str, Any] | None) -> str:
        return BillingTemplateEngine.compile(content).render(variables)

    @staticmethod
    def variables_used(content: str) -> set[str]:
        """Names every render of `content` needs: printed without `?` outside conditional
        blocks (or in both branches of one). A request without one of these can never render,
        so the API can refuse it up front. Names needed only inside a block depend on the
        contact's data: check them per contact with `missing_variables`."""
        return set(BillingTemplateEngine.compile(content).variables_used)

    @staticmethod
    def referenced_variables(content: str) -> set[str]:
        """Every name the template mentions (printed, optional or in a condition)."""
        return set(BillingTemplateEngine.compile(content).referenced_variables)

    @staticmethod
    def missing_variables(content: str, variables: Mapping[str, Any] | None) -> list[str]:
        """Exactly the names `render(content, variables)` would report as missing."""
        return BillingTemplateEngine.compile(content).missing_variables(variables)

    sample_variables = staticmethod(sample_variables)
