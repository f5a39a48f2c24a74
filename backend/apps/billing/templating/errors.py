"""The one error family of the template utilities.

Kept in its own module so the engine, the parser and the sanitizer can all raise it without
importing each other. `engine` re-exports both classes: import them from there.
"""

from __future__ import annotations

from collections.abc import Iterable


class TemplateError(ValueError):
    """A template (or a value rendered into one) that cannot be used.

    `code` is machine-readable, for the API and the admin: `unbalanced_block`,
    `unknown_block`, `syntax_error`, `too_deep`, `too_large`, `missing_variables`,
    `unknown_filter`, `invalid_value`, `unsafe_content`, `empty_template`. `line` and
    `column` (1-based) point at the offending tag when there is one.
    """

    def __init__(self, code: str, message: str, *, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.line = line
        self.column = column

    def __str__(self) -> str:
        if self.line is None:
            return self.message
        if self.column is None:
            return f"{self.message} (line {self.line})"
        return f"{self.message} (line {self.line}, column {self.column})"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, "
            f"line={self.line}, column={self.column})"
        )

    def __reduce__(self):  # keyword-only arguments would otherwise be lost when pickled
        return (_rebuild, (type(self), self.__dict__.copy()))


class MissingVariablesError(TemplateError):
    """Rendering needed variables the caller did not supply (or supplied as null).

    `missing` is sorted and unique, so API answers and logs are stable.
    """

    def __init__(self, missing: Iterable[str]) -> None:
        names = sorted(set(missing))
        super().__init__("missing_variables", "Missing variables: " + ", ".join(names))
        self.missing = names


def _rebuild(cls: type[TemplateError], state: dict) -> TemplateError:
    error = cls.__new__(cls)
    ValueError.__init__(error, state.get("message", ""))
    error.__dict__.update(state)
    return error


def position(text: str, offset: int) -> tuple[int, int]:
    """1-based (line, column) of `offset` in `text`. Computed only when an error is raised."""
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column
