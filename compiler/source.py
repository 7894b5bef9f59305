"""Read a runbook file: TOML 1.1 (runtime/tomlfile.py), diagnostics with file, line and column.

Line numbers are only needed when something is wrong, so the key → line map is built lazily
on the first diagnostic (a 100,000-node runbook that validates never pays for it).
"""

from __future__ import annotations

import bisect
import hashlib
import os
import re

from playbook.runtime import tomlfile
from playbook.runtime.errors import EXIT_INVALID, PlaybookError

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


class CompileError(PlaybookError):
    """The runbook has errors; `diagnostics` holds all of them (and the warnings). Exit 2; an
    entry point prints each diagnostic (`file:line:col: error: …`) and the count."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        diagnostics = sorted(diagnostics, key=lambda d: (d.file or "", d.line or 0))
        super().__init__("\n".join(d.format() for d in diagnostics), EXIT_INVALID)
        self.diagnostics = diagnostics

    def report(self) -> str:
        errors = [d for d in self.diagnostics if d.severity == "error"]
        where = self.diagnostics[0].file if self.diagnostics else "the runbook"
        return "\n".join([d.format() for d in self.diagnostics] + ["%s: %d error%s" % (where, len(errors), "" if len(errors) == 1 else "s")])


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

    def _add(
        self, severity: str, message: str, path: tuple[str, ...], hint: str | None, line: int | None, col: int | None
    ) -> None:
        if line is None:
            line, col = self.where(*path) if path else (None, None)
        self.diagnostics.append(Diagnostic(severity, message, self.display, line, col, hint))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    def string_places(self, path: tuple[str, ...], value: str) -> list[tuple[int, int]] | None:
        """(line, col) of each character of the string `value` at key `path`; see string_places."""
        return string_places(self, path, value)


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


# -- where each character of a TOML string is written ------------------------------------------
def string_places(source: Source, path: tuple[str, ...], value: str) -> list[tuple[int, int]] | None:
    """(line, col) in the file of each character of the TOML string at `path` (and one past the
    end), or None when the string cannot be found there as written. This small scanner of TOML
    strings maps a character of a value (one a diagnostic points at) back to where it is written,
    through escapes and line-ending backslashes."""
    line, col = source.where(*path)
    text = source.text
    starts = [0]
    for text_line in text.split("\n"):
        starts.append(starts[-1] + len(text_line) + 1)
    if line > len(starts) - 1:
        return None
    opening = _string_opening(text, starts[line - 1] + col - 1)
    read = None if opening is None else _string_body(text, *opening)
    if read is None or read[0] != value:
        return None
    places = []
    for offset in read[1]:
        row = bisect.bisect_right(starts, offset) - 1
        places.append((row + 1, offset - starts[row] + 1))
    return places


def _string_opening(text: str, pos: int) -> tuple[int, str] | None:
    """(where the string's text starts, its quote) for the `key = "…"` found from `pos`, or None."""
    pos = text.find("=", pos)
    if pos < 0:
        return None
    pos += 1
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    quote = text[pos : pos + 3] if text[pos : pos + 3] in ('"""', "'''") else text[pos : pos + 1]
    if quote not in ('"', "'", '"""', "'''"):
        return None
    pos += len(quote)
    if len(quote) == 3 and text.startswith("\n", pos):
        pos += 1
    elif len(quote) == 3 and text.startswith("\r\n", pos):
        pos += 2
    return pos, quote


def _string_body(text: str, pos: int, quote: str) -> tuple[str, list[int]] | None:
    """(the value of the TOML string whose text starts at `pos`, the offset each of its characters
    comes from and that of the closing quote), or None for an escape it does not know."""
    decoded: list[str] = []
    offsets: list[int] = []
    basic = quote[0] == '"'
    while pos < len(text) and not text.startswith(quote, pos):
        if text.startswith("\r\n", pos):
            pos += 1  # TOML reads CRLF as a line break
            continue
        if basic and text[pos] == "\\":
            escape = _escape(text, pos, multiline=len(quote) == 3)
            if escape is None:
                return None
            char, end = escape
            if char:  # "" for a line-ending backslash: the line break and blanks are dropped
                decoded.append(char)
                offsets.append(pos)
            pos = end
            continue
        decoded.append(text[pos])
        offsets.append(pos)
        pos += 1
    offsets.append(pos)
    return "".join(decoded), offsets


_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", "e": "\x1b", '"': '"', "\\": "\\"}
_HEX_ESCAPES = {"u": 4, "U": 8, "x": 2}  # the number of hex digits after \u, \U and \x


def _escape(text: str, pos: int, multiline: bool) -> tuple[str, int] | None:
    """The backslash at `pos` of a basic TOML string: (the character it stands for, or "" for a
    line-ending backslash; where the string goes on), or None when it is not understood."""
    follow = text[pos + 1 : pos + 2]
    if follow in _ESCAPES:
        return _ESCAPES[follow], pos + 2
    width = _HEX_ESCAPES.get(follow)
    if width:
        try:
            return chr(int(text[pos + 2 : pos + 2 + width], 16)), pos + 2 + width
        except ValueError:
            return None
    if multiline:
        end = pos + 1
        while end < len(text) and text[end] in " \t\r\n":
            end += 1
        if "\n" in text[pos + 1 : end]:
            return "", end
    return None
