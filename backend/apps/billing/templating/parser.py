"""Tokenizer and parser of billing templates: text → an immutable tree of nodes.

Separate from the engine so the sanitizer can check block balance without importing the
renderer (which itself uses the sanitizer for values).

Why this cannot be made to hang: the size of the input is checked before anything else; the
scanner moves forward with `str.find` inside a window of bounded width, so each character is
looked at a constant number of times; each tag body is at most `MAX_TAG_LENGTH` characters and
is matched by anchored regular expressions with no nested quantifiers; nesting depth and the
number of tags are capped while parsing, so the tree (and the renderer's recursion) is bounded
before it is built. There are no loops (`#each`) and no partials, so rendering visits each node
once and output can never grow beyond the template plus one bounded value per tag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import TemplateError

MAX_TEMPLATE_LENGTH = 4096  # WhatsApp texts are short; the longest real billing text is ~1,000.
MAX_DEPTH = 10
MAX_TAGS = 256
MAX_TAG_LENGTH = 200  # characters between `{{` and `}}`

BLOCK_KEYWORDS = ("if", "unless")

_OPEN_TAG = re.compile(r"#\s*(\w+)(?:\s+(.*))?", re.DOTALL)
_CLOSE_TAG = re.compile(r"/\s*(\w+)")
_NAME = re.compile(r"[^\W\d]\w*(?:\.\w+)*")
_FILTER_NAME = re.compile(r"[^\W\d]\w*")


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Var:
    """`{{name}}`, `{{name?}}`, `{{name|filter|filter}}`."""

    name: str
    optional: bool
    filters: tuple[str, ...]
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Block:
    """`{{#if name}}body{{else}}orelse{{/if}}` (or `#unless`)."""

    keyword: str
    name: str
    body: tuple[Node, ...]
    orelse: tuple[Node, ...]
    line: int
    column: int


Node = Text | Var | Block


@dataclass(slots=True)
class _Token:
    kind: str  # "text", "var", "open", "else", "close"
    value: str  # text, or the stripped tag body
    line: int
    column: int
    keyword: str = ""
    name: str = ""
    optional: bool = False
    filters: tuple[str, ...] = ()


def parse(content: str, *, known_filters: frozenset[str], max_length: int = MAX_TEMPLATE_LENGTH) -> tuple[Node, ...]:
    """Parse `content` or raise `TemplateError` with the line and column of the first problem.

    `known_filters` comes from the engine (the parser does not know what filters do).
    `max_length` is raised only by the sanitizer, which checks raw pasted input before its
    HTML is stripped.
    """
    if not isinstance(content, str):
        raise TypeError(f"template must be str, not {type(content).__name__}")
    if len(content) > max_length:
        raise TemplateError(
            "too_large", f"Template is too long ({len(content)} characters; the maximum is {max_length})."
        )
    tokens = _tokenize(content, known_filters)
    _trim_standalone_lines(tokens)
    return _build_tree(tokens)


class _Cursor:
    """Line and column of a forward-only position, updated incrementally so that positions
    of all tags together cost one pass over the text."""

    __slots__ = ("content", "offset", "line", "line_start")

    def __init__(self, content: str) -> None:
        self.content = content
        self.offset = 0
        self.line = 1
        self.line_start = 0

    def advance(self, offset: int) -> tuple[int, int]:
        newlines = self.content.count("\n", self.offset, offset)
        if newlines:
            self.line += newlines
            self.line_start = self.content.rfind("\n", self.offset, offset) + 1
        self.offset = offset
        return self.line, offset - self.line_start + 1


def _fail(code: str, message: str, line: int, column: int) -> TemplateError:
    return TemplateError(code, message, line=line, column=column)


def _tokenize(content: str, known_filters: frozenset[str]) -> list[_Token]:
    tokens: list[_Token] = []
    cursor = _Cursor(content)
    tag_count = 0
    length = len(content)
    while cursor.offset < length:
        text_start = cursor.offset
        start = content.find("{{", text_start)
        if start < 0:
            tokens.append(_Token("text", content[text_start:], *cursor.advance(text_start)))
            break
        if start > text_start:
            tokens.append(_Token("text", content[text_start:start], *cursor.advance(text_start)))
        line, column = cursor.advance(start)
        # The closing `}}` is only looked for within one tag's length: an unclosed `{{` costs
        # a bounded amount of work instead of a scan to the end of the template.
        end = content.find("}}", start + 2, min(length, start + 2 + MAX_TAG_LENGTH + 2))
        if end < 0:
            raise _fail("syntax_error", "Tag opened with '{{' is not closed with '}}' (or is too long).", line, column)
        if content.find("{{", start + 2, end) >= 0:
            raise _fail("syntax_error", "Tag opened with '{{' is not closed before the next '{{'.", line, column)
        tag_count += 1
        if tag_count > MAX_TAGS:
            raise _fail("too_large", f"Template has more than {MAX_TAGS} tags.", line, column)
        tokens.append(_classify(content[start + 2 : end].strip(), line, column, known_filters))
        cursor.advance(end + 2)
    return tokens


def _classify(body: str, line: int, column: int, known_filters: frozenset[str]) -> _Token:
    if not body:
        raise _fail("syntax_error", "Empty tag '{{}}'.", line, column)
    if body == "else":
        return _Token("else", body, line, column)
    if body.startswith("#"):
        match = _OPEN_TAG.fullmatch(body)
        if not match:
            raise _fail("syntax_error", f"Malformed block tag '{{{{{body}}}}}'.", line, column)
        keyword, argument = match.group(1), (match.group(2) or "").strip()
        if keyword not in BLOCK_KEYWORDS:
            raise _fail("unknown_block", f"Unknown block '#{keyword}' (supported: #if, #unless).", line, column)
        if not _NAME.fullmatch(argument):
            message = f"'#{keyword}' needs one variable name, e.g. '{{{{#{keyword} name}}}}'."
            raise _fail("syntax_error", message, line, column)
        return _Token("open", body, line, column, keyword=keyword, name=argument)
    if body.startswith("/"):
        match = _CLOSE_TAG.fullmatch(body)
        if not match:
            raise _fail("syntax_error", f"Malformed closing tag '{{{{{body}}}}}'.", line, column)
        keyword = match.group(1)
        if keyword not in BLOCK_KEYWORDS:
            raise _fail("unknown_block", f"Unknown block '/{keyword}' (supported: /if, /unless).", line, column)
        return _Token("close", body, line, column, keyword=keyword)
    name, *filters = (part.strip() for part in body.split("|"))
    optional = name.endswith("?")
    if optional:
        name = name[:-1].rstrip()
    if not _NAME.fullmatch(name):
        raise _fail("syntax_error", f"'{{{{{body}}}}}' is not a variable name.", line, column)
    for filter_name in filters:
        if not _FILTER_NAME.fullmatch(filter_name):
            raise _fail("syntax_error", f"Malformed filter in '{{{{{body}}}}}'.", line, column)
        if filter_name not in known_filters:
            available = ", ".join(sorted(known_filters))
            raise _fail("unknown_filter", f"Unknown filter '{filter_name}' (available: {available}).", line, column)
    return _Token("var", body, line, column, name=name, optional=optional, filters=tuple(filters))


def _trim_standalone_lines(tokens: list[_Token]) -> None:
    """A block tag alone on its line (`{{#if x}}`, `{{else}}`, `{{/if}}`) takes its whole line
    with it, as in Handlebars, so multi-line templates do not leave blank lines behind.

    Standalone-ness is decided on the original texts first, then all trims are applied, so
    consecutive standalone lines sharing one text token are handled correctly.
    """
    trims: dict[int, list[bool]] = {}  # token index → [trim line head, trim line tail]
    last = len(tokens) - 1
    for index, token in enumerate(tokens):
        if token.kind not in ("open", "else", "close"):
            continue
        before = tokens[index - 1] if index > 0 else None
        after = tokens[index + 1] if index < last else None
        if before is not None and not _ends_blank_line(before, is_first=index - 1 == 0):
            continue
        if after is not None and not _starts_blank_line(after, is_last=index + 1 == last):
            continue
        if before is not None:
            trims.setdefault(index - 1, [False, False])[1] = True
        if after is not None:
            trims.setdefault(index + 1, [False, False])[0] = True
    for index, (trim_head, trim_tail) in trims.items():
        text = tokens[index].value
        first_newline, last_newline = text.find("\n"), text.rfind("\n")
        if first_newline < 0:  # blank text at the template's edge: it belongs to the tag's line
            tokens[index].value = ""
            continue
        start = first_newline + 1 if trim_head else 0  # drop the rest of the tag's line
        end = last_newline + 1 if trim_tail else len(text)  # drop the indentation before the tag
        tokens[index].value = text[start:end] if start <= end else ""


def _ends_blank_line(token: _Token, *, is_first: bool) -> bool:
    if token.kind != "text":
        return False
    newline = token.value.rfind("\n")
    if newline < 0 and not is_first:
        return False
    return not token.value[newline + 1 :].strip(" \t\r")


def _starts_blank_line(token: _Token, *, is_last: bool) -> bool:
    if token.kind != "text":
        return False
    newline = token.value.find("\n")
    if newline < 0 and not is_last:
        return False
    return not token.value[: newline if newline >= 0 else None].strip(" \t\r")


@dataclass(slots=True)
class _Frame:
    """An open block while its tags are being read."""

    opener: _Token
    body: list[Node]
    orelse: list[Node] | None = None  # set once `{{else}}` is seen

    @property
    def branch(self) -> list[Node]:
        return self.body if self.orelse is None else self.orelse


def _build_tree(tokens: list[_Token]) -> tuple[Node, ...]:
    root: list[Node] = []
    stack: list[_Frame] = []
    for token in tokens:
        current = stack[-1].branch if stack else root
        if token.kind == "text":
            if token.value:
                current.append(Text(token.value))
        elif token.kind == "var":
            current.append(Var(token.name, token.optional, token.filters, token.line, token.column))
        elif token.kind == "open":
            if len(stack) >= MAX_DEPTH:
                message = f"Blocks are nested more than {MAX_DEPTH} levels deep."
                raise _fail("too_deep", message, token.line, token.column)
            stack.append(_Frame(token, []))
        elif token.kind == "else":
            if not stack:
                message = "'{{else}}' outside an '{{#if}}' or '{{#unless}}' block."
                raise _fail("unbalanced_block", message, token.line, token.column)
            if stack[-1].orelse is not None:
                message = f"Second '{{{{else}}}}' in the same '#{stack[-1].opener.keyword}' block."
                raise _fail("syntax_error", message, token.line, token.column)
            stack[-1].orelse = []
        else:
            _close(stack, token, root)
    if stack:
        opener = stack[-1].opener
        message = f"'{{{{#{opener.keyword} {opener.name}}}}}' is never closed with '{{{{/{opener.keyword}}}}}'."
        raise _fail("unbalanced_block", message, opener.line, opener.column)
    return tuple(root)


def _close(stack: list[_Frame], token: _Token, root: list[Node]) -> None:
    if not stack:
        message = f"'{{{{/{token.keyword}}}}}' has no matching '{{{{#{token.keyword}}}}}'."
        raise _fail("unbalanced_block", message, token.line, token.column)
    frame = stack.pop()
    opener = frame.opener
    if opener.keyword != token.keyword:
        message = (
            f"'{{{{/{token.keyword}}}}}' closes '{{{{#{opener.keyword}}}}}' opened at line {opener.line}, "
            f"column {opener.column}; expected '{{{{/{opener.keyword}}}}}'."
        )
        raise _fail("unbalanced_block", message, token.line, token.column)
    block = Block(opener.keyword, opener.name, tuple(frame.body), tuple(frame.orelse or ()), opener.line, opener.column)
    (stack[-1].branch if stack else root).append(block)
