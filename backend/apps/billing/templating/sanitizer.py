"""Clean a template as it is saved: markup out, then the engine's full validation.

Above the engine: it needs the engine's filter names and limits, while the engine needs only the
value cleaning of `text_cleaning`. The rules of what "safe" means live in `text_cleaning`.
"""

from __future__ import annotations

from .engine import BillingTemplateEngine
from .errors import TemplateError
from .parser import MAX_TEMPLATE_LENGTH, parse
from .text_cleaning import (
    MAX_RAW_FACTOR,
    MAX_VALUE_LENGTH,
    clean_text,
    clean_value,
    normalize_newlines,
    reject_unsafe_links,
)


class TemplateSanitizer:
    """Entry points: `clean_template` when a template or variation is saved, `clean_value` for
    every variable value at render time (the engine calls it)."""

    MAX_VALUE_LENGTH = MAX_VALUE_LENGTH
    clean_value = staticmethod(clean_value)

    @staticmethod
    def clean_template(content: str) -> str:
        """Return the template as it should be stored, or raise `TemplateError`.

        Block structure is checked on the text as typed (so line/column match what the author
        sees), then again after cleaning, with the engine's full limits.
        """
        if not isinstance(content, str):
            raise TypeError(f"template must be str, not {type(content).__name__}")
        content = normalize_newlines(content)
        raw_limit = MAX_TEMPLATE_LENGTH * MAX_RAW_FACTOR
        parse(content, known_filters=BillingTemplateEngine.FILTER_NAMES, max_length=raw_limit)
        cleaned = clean_text(content).strip()
        reject_unsafe_links(cleaned)
        if not cleaned:
            raise TemplateError("empty_template", "Template is empty once HTML and scripts are removed.")
        BillingTemplateEngine.validate(cleaned)
        return cleaned
