"""Make text safe for a WhatsApp message: the cleaning that templates and variable values share.

Below the engine (which cleans every value it renders) and the sanitizer (which cleans and then
validates a template as it is saved), so neither imports the other.

WhatsApp is plain text, so the goal is not "HTML that is safe to display" but "text with no
markup at all": tags, scripts, iframes, comments, event handlers and script URLs are removed
(bleach does the HTML parsing), while WhatsApp's own formatting (`*bold*`, `_italic_`,
`~strike~`, ```` ``` ````, `` `code` ``, `> quote`) and line breaks are kept.

Decisions worth knowing:

* The output never contains HTML entities: `&` and `<` typed as ordinary text survive as
  `&` and `<` (`"Pix & boleto"`, `"valor < R$ 100"`, `"<3"`). A `<` directly followed by a
  letter, `/`, `!` or `?` could open a tag, so it is markup: a complete tag is removed, and
  an incomplete one loses its `<` (`"a<b"` → `"ab"`, `"<iframe src=x"` → `"iframe src=x"`).
  `<br>` becomes a line break, as do the ends of block elements (`<p>`, `<div>`, `<li>`).
  `R$` is never touched.
* Entities are decoded before cleaning and the cleaning is repeated until the text stops
  changing, so encoded or split payloads (`&lt;script&gt;`, `<<script>script>`) cannot come
  back as a tag once the entities bleach adds are decoded.
* The content of script, style, iframe, object, embed, svg, math, template and noscript
  elements is removed with the element; for other tags only the tag goes and its text stays
  (`<b>Olá</b>` → `Olá`).
* Script pseudo-URLs (`javascript:`, `vbscript:`, `livescript:`, `data:text/html...`), even
  obfuscated with whitespace or entities, are removed with the rest of the word; event-handler
  text (`onerror=`) is removed too. In a template, any other link scheme than http/https
  (`ftp://`, `file://`, ...) is rejected with `unsafe_content` so the author can fix it; in a
  value it is removed (a customer's data must never stop a send).
* Control characters are removed except the newline; tabs become spaces; `\\r\\n` becomes
  `\\n`; bidirectional overrides (used to disguise links) are removed, the zero-width joiner
  that emoji sequences need is kept.
"""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import bleach
from bleach.html5lib_shim import Filter  # type: ignore[attr-defined]  # defined at run time; the stubs omit it

from .errors import TemplateError, position

MAX_VALUE_LENGTH = 1000
# Raw input is cut (values) or refused (templates) beyond this before bleach parses it, so a
# megabyte of HTML costs no more than a short text.
MAX_RAW_FACTOR = 4
_MAX_PASSES = 4

# Elements whose content is code or a nested document, not text for the reader.
_DROP_WITH_CONTENT = frozenset(
    {
        "script",
        "style",
        "iframe",
        "frame",
        "frameset",
        "object",
        "embed",
        "applet",
        "noscript",
        "noembed",
        "noframes",
        "template",
        "svg",
        "math",
        "xml",
        "xmp",
    }
)

_CONTROL_CHARS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff\ufff9-\ufffb]")
_NEWLINES = re.compile(r"\r\n?|[\u2028\u2029\x85]")
_TAG_START = re.compile(r"<(?=[A-Za-z!/?])")
_LINE_BREAK_TAG = re.compile(r"<br\s*/?>", re.IGNORECASE)


def _spaced(word: str) -> str:
    # "javascript" → r"j\s*a\s*v..." so "java\tscript:" and "jav&#x09;ascript:" are caught too.
    return r"\s*".join(re.escape(char) for char in word)


_SCRIPT_URL = re.compile(
    r"(?:" + "|".join(_spaced(word) for word in ("javascript", "vbscript", "livescript", "mocha")) + r")\s*:\S*"
    r"|data\s*:\s*[a-z]+/[a-z0-9.+\-]+\s*[;,]\S*",
    re.IGNORECASE,
)
_EVENT_HANDLER = re.compile(r"\bon[a-z]+\s*=", re.IGNORECASE)
_URL_SCHEME = re.compile(r"\b([a-z][a-z0-9+.\-]{0,30})://\S*", re.IGNORECASE)
_SAFE_SCHEMES = frozenset({"http", "https"})


class _DropContentFilter(Filter):
    """Remove the elements of `_DROP_WITH_CONTENT` together with everything inside them.

    bleach lets those tags through (with no attributes) only so this filter can see where
    they start and end; nothing of them reaches the output.
    """

    def __iter__(self) -> Iterator[dict]:
        depth = 0
        for token in super().__iter__():
            kind = token["type"]
            is_dropped_tag = kind in ("StartTag", "EndTag", "EmptyTag") and token["name"] in _DROP_WITH_CONTENT
            if is_dropped_tag:
                if kind == "StartTag":
                    depth += 1
                elif kind == "EndTag":
                    depth = max(0, depth - 1)
                continue
            if depth == 0:
                yield token


_local = threading.local()  # bleach cleaners keep parser state: one per thread


def _cleaner() -> bleach.Cleaner:
    cleaner = getattr(_local, "cleaner", None)
    if cleaner is None:
        cleaner = bleach.Cleaner(
            tags=_DROP_WITH_CONTENT,
            attributes={},
            protocols=set(),
            strip=True,
            strip_comments=True,
            filters=[_DropContentFilter],
        )
        _local.cleaner = cleaner
    return cleaner


def _strip_markup(text: str) -> str:
    """Remove all HTML from `text` and return it with no entities left."""
    if "<" not in text and "&" not in text:
        return text  # no tag and no entity can be hiding: the common case costs nothing
    for _ in range(_MAX_PASSES):
        decoded = _LINE_BREAK_TAG.sub("\n", html.unescape(text))
        cleaned = html.unescape(_cleaner().clean(decoded))
        if cleaned == text:
            break
        text = cleaned
    else:  # still changing: a payload encoded many times over. Decode what is left (each
        # round shortens the text, so this ends); the guard below removes any tag it reveals.
        while (decoded := html.unescape(text)) != text:
            text = decoded
    # What bleach leaves as text can still look like a tag to the next reader (an unclosed
    # `<iframe src=x`, or a payload still changing after the passes): no tag start may remain.
    return _TAG_START.sub("", text)


def _strip_script_text(text: str) -> str:
    """Remove script URLs and event-handler text until none is left (removing one can join
    the halves of another: `javajavascript:script:`)."""
    for _ in range(_MAX_PASSES):
        cleaned = _EVENT_HANDLER.sub("", _SCRIPT_URL.sub("", text))
        if cleaned == text:
            break
        text = cleaned
    return text


def _normalize(text: str) -> str:
    text = _NEWLINES.sub("\n", text)
    return _CONTROL_CHARS.sub("", text.replace("\t", " "))


def normalize_newlines(text: str) -> str:
    return _NEWLINES.sub("\n", text)


def clean_text(text: str) -> str:
    # Control characters go before and after markup: `java\x00script:` must not survive as
    # two halves, and entities such as `&#0;` only appear once decoded.
    text = _normalize(_strip_markup(_normalize(text)))
    return _strip_script_text(text)


def clean_value(value: Any) -> str:
    """Text of a variable value that is safe to put in a message: no markup, no control
    characters but the newline, no script or non-http(s) URLs, at most `MAX_VALUE_LENGTH`
    characters, surrounding whitespace trimmed. `None` gives `""`.

    A value containing `{{x}}` keeps it literally: the engine never parses values.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        text = value
    elif isinstance(value, Decimal):
        text = format(value, "f")
    elif isinstance(value, (date, datetime)):
        text = value.isoformat()
    else:
        text = str(value)
    text = clean_text(text[: MAX_VALUE_LENGTH * MAX_RAW_FACTOR])
    text = _URL_SCHEME.sub(_drop_unsafe_scheme, text)
    return text.strip()[:MAX_VALUE_LENGTH].strip()


def _drop_unsafe_scheme(match: re.Match[str]) -> str:
    return match.group(0) if match.group(1).lower() in _SAFE_SCHEMES else ""


def reject_unsafe_links(text: str) -> None:
    for match in _URL_SCHEME.finditer(text):
        if match.group(1).lower() not in _SAFE_SCHEMES:
            line, column = position(text, match.start())
            raise TemplateError(
                "unsafe_content",
                f"Only http:// and https:// links are allowed in a message (found '{match.group(1)}://').",
                line=line,
                column=column,
            )
