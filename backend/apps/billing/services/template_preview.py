"""Checking and previewing template content for people editing templates (admin, API).

A thin adapter over `templating.sanitizer` and `templating.engine`: it turns their
`TemplateError` into one error type with a readable message (with line and column), so the
model's `clean()` and the admin preview speak the same language.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from apps.billing.templating.engine import (
    BillingTemplateEngine,
    MissingVariablesError,
    TemplateError,
    sample_variables,
)
from apps.billing.templating.sanitizer import TemplateSanitizer


class TemplateContentError(ValueError):
    """Content that cannot be saved: `code`, `message`, and where (`line`, `column`) if known."""

    def __init__(self, code: str, message: str, line: int | None = None, column: int | None = None) -> None:
        self.code = code
        self.message = message
        self.line = line
        self.column = column
        super().__init__(self.describe())

    @classmethod
    def from_template_error(cls, exc: TemplateError) -> TemplateContentError:
        return cls(
            code=str(getattr(exc, "code", "template_error") or "template_error"),
            message=str(getattr(exc, "message", "") or exc),
            line=getattr(exc, "line", None),
            column=getattr(exc, "column", None),
        )

    def describe(self) -> str:
        if self.line is not None and self.column is not None:
            return f"{self.message} (line {self.line}, column {self.column})"
        if self.line is not None:
            return f"{self.message} (line {self.line})"
        return self.message

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "line": self.line, "column": self.column}


def clean_template_content(content: str) -> str:
    """Sanitised content, checked by the engine; raises `TemplateContentError`."""
    try:
        cleaned = TemplateSanitizer.clean_template(content)
        BillingTemplateEngine.validate(cleaned)
    except TemplateError as exc:
        raise TemplateContentError.from_template_error(exc) from exc
    return cleaned


@dataclass
class PreviewResult:
    ok: bool
    rendered: str = ""
    error: dict[str, Any] | None = None
    missing: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def render_preview(content: str, template_type: str, variables: Mapping[str, Any] | None = None) -> PreviewResult:
    """Render `content` against the sample variables of `template_type` (plus `variables`).

    Never raises for bad content: the error (with line/column) is part of the result, which
    is what an editor wants to show next to the text.
    """
    sample = dict(sample_variables(template_type))
    sample.update(variables or {})
    try:
        cleaned = clean_template_content(content)
    except TemplateContentError as exc:
        return PreviewResult(ok=False, error=exc.as_dict())
    try:
        rendered = BillingTemplateEngine.render(cleaned, sample)
    except MissingVariablesError as exc:
        error = TemplateContentError.from_template_error(exc)
        return PreviewResult(ok=False, error=error.as_dict(), missing=list(getattr(exc, "missing", []) or []))
    except TemplateError as exc:
        return PreviewResult(ok=False, error=TemplateContentError.from_template_error(exc).as_dict())
    return PreviewResult(ok=True, rendered=rendered)
