"""Read a runbook file: TOML 1.1 (runtime/tomlfile.py), diagnostics with file, line and column.

Line numbers are only needed when something is wrong, so the key → line map is built lazily
on the first diagnostic (a 100,000-node runbook that validates never pays for it).
"""

from __future__ import annotations

import hashlib
import os
import re

from playbook.runtime import tomlfile

TYPE_CHECKING = False  # typing is not imported at run time (start-up)
if TYPE_CHECKING:
    from typing import Any, Iterable


class Diagnostic:
    """One message about a source file: `FILE:LINE:COL: error: message` (+ `hint:`)."""

    __slots__ = ("severity", "message", "file", "line", "col", "hint")

    def __init__(
        self,
        severity: str,
        message: str,
        file: str | None = None,
        line: int | None = None,
        col: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.severity = severity
        self.message = message
        self.file = file
        self.line = line
        self.col = col
        self.hint = hint

    def format(self) -> str:
        where = self.file or "<input>"
        if self.line:
            where += ":%d:%d" % (self.line, self.col or 1)
        text = "%s: %s: %s" % (where, self.severity, self.message)
        if self.hint:
            text += "\n  hint: %s" % self.hint
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "hint": self.hint,
        }

    def __repr__(self) -> str:
        return "Diagnostic(%r)" % self.format()


class CompileError(Exception):
    """The runbook has errors; `diagnostics` holds all of them (and the warnings)."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        diagnostics = sorted(diagnostics, key=lambda d: (d.file or "", d.line or 0))
        super().__init__("\n".join(d.format() for d in diagnostics))
        self.diagnostics = diagnostics


class Source:
    """A runbook file's text, parsed data and the place of each key (computed on demand)."""

    def __init__(self, path: str, text: str, data: dict[str, Any], display: str | None = None) -> None:
        self.path = path
        self.display = display or path
        self.text = text
        self.data = data
        self.sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
        self._where: dict[tuple[str, ...], Any] | None = None
        self.diagnostics: list[Diagnostic] = []

    # -- diagnostics -------------------------------------------------------------------------
    def where(self, *path: str) -> tuple[int, int]:
        """(line, col) of a table or key path such as ("deploy", "depends_on"); best effort."""
        if self._where is None:
            self._where = tomlfile.locate_keys(self.text)
        return tomlfile.find(self._where, tuple(path))

    def error(self, message: str, *path: str, hint: str | None = None, line: int | None = None, col: int | None = None) -> None:
        self._add("error", message, path, hint, line, col)

    def warning(self, message: str, *path: str, hint: str | None = None, line: int | None = None, col: int | None = None) -> None:
        self._add("warning", message, path, hint, line, col)

    def _add(self, severity, message, path, hint, line, col):
        if line is None:
            line, col = self.where(*path) if path else (None, None)
        self.diagnostics.append(Diagnostic(severity, message, self.display, line, col, hint))

    @property
    def errors(self):
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self):
        return [d for d in self.diagnostics if d.severity == "warning"]


def read(path: str, display: str | None = None) -> Source:
    """Read and parse a runbook; raises CompileError with a located diagnostic on failure."""
    display = display or path
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise CompileError([Diagnostic("error", "cannot read runbook: %s" % reason, display)]) from None
    try:
        text = tomlfile.decode(raw)
    except tomlfile.TomlError as exc:
        raise CompileError([Diagnostic("error", "the file is not valid UTF-8", display, exc.line, 1)]) from None
    return parse(text, path, display)


def parse(text: str, path: str = "<string>", display: str | None = None) -> Source:
    display = display or path
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        data = tomlfile.loads(text)
    except tomlfile.TomlError as exc:
        raise CompileError([Diagnostic("error", exc.message, display, exc.line, exc.col)]) from None
    # TOML dates and times are rare in runbooks: only walk the data when the text has one.
    if _DATE_OR_TIME.search(text):
        data = tomlfile.plain(data)
    return Source(path, text, data, display)


_DATE_OR_TIME = re.compile(r"[=\[,{]\s*(\d{4}-\d\d-\d\d|\d\d:\d\d)")


def relative_display(path: str) -> str:
    """A path as shown in messages: relative to the working directory when below it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel
