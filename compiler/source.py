"""Read a runbook file: TOML 1.1 via tomli, diagnostics with file, line and column.

Line numbers are only needed when something is wrong, so the key → line map is built lazily
on the first diagnostic (a 100,000-node runbook that validates never pays for it).
"""

import datetime
import hashlib
import os
import re

import tomli


class Diagnostic:
    """One message about a source file: `FILE:LINE:COL: error: message` (+ `hint:`)."""

    __slots__ = ("severity", "message", "file", "line", "col", "hint")

    def __init__(self, severity, message, file=None, line=None, col=None, hint=None):
        self.severity = severity
        self.message = message
        self.file = file
        self.line = line
        self.col = col
        self.hint = hint

    def format(self):
        where = self.file or "<input>"
        if self.line:
            where += ":%d:%d" % (self.line, self.col or 1)
        text = "%s: %s: %s" % (where, self.severity, self.message)
        if self.hint:
            text += "\n  hint: %s" % self.hint
        return text

    def to_json(self):
        return {
            "severity": self.severity,
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "hint": self.hint,
        }

    def __repr__(self):
        return "Diagnostic(%r)" % self.format()


class CompileError(Exception):
    """The runbook has errors; `diagnostics` holds all of them (and the warnings)."""

    def __init__(self, diagnostics):
        diagnostics = sorted(diagnostics, key=lambda d: (d.file or "", d.line or 0))
        super().__init__("\n".join(d.format() for d in diagnostics))
        self.diagnostics = diagnostics


class Source:
    """A runbook file's text, parsed data and the place of each key (computed on demand)."""

    def __init__(self, path, text, data, display=None):
        self.path = path
        self.display = display or path
        self.text = text
        self.data = data
        self.sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
        self._where = None
        self.diagnostics = []

    # -- diagnostics -------------------------------------------------------------------------
    def where(self, *path):
        """(line, col) of a table or key path such as ("deploy", "depends_on"); best effort."""
        if self._where is None:
            self._where = locate_keys(self.text)
        path = tuple(path)
        while path:
            if path in self._where:
                return self._where[path]
            path = path[:-1]
        return (1, 1)

    def error(self, message, *path, hint=None, line=None, col=None):
        self._add("error", message, path, hint, line, col)

    def warning(self, message, *path, hint=None, line=None, col=None):
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


def read(path, display=None):
    """Read and parse a runbook; raises CompileError with a located diagnostic on failure."""
    display = display or path
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise CompileError([Diagnostic("error", "cannot read runbook: %s" % reason, display)]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise CompileError([Diagnostic("error", "the file is not valid UTF-8", display, line, 1)]) from None
    return parse(text, path, display)


def parse(text, path="<string>", display=None):
    display = display or path
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        data = tomli.loads(text)
    except RecursionError:
        line = _deepest_line(text)
        raise CompileError(
            [Diagnostic("error", "invalid TOML: arrays or tables nested too deeply", display, line, 1)]
        ) from None
    except tomli.TOMLDecodeError as exc:
        message = getattr(exc, "msg", None) or re.sub(r"\s*\(at .*\)$", "", str(exc))
        line = getattr(exc, "lineno", None)
        col = getattr(exc, "colno", None)
        if line is None:
            match = re.search(r"line (\d+), column (\d+)", str(exc))
            if match:
                line, col = int(match.group(1)), int(match.group(2))
        raise CompileError([Diagnostic("error", "invalid TOML: %s" % message, display, line, col)]) from None
    # TOML dates and times are rare in runbooks: only walk the data when the text has one.
    if _DATE_OR_TIME.search(text):
        data = plain(data)
    return Source(path, text, data, display)


_DATE_OR_TIME = re.compile(r"[=\[,{]\s*(\d{4}-\d\d-\d\d|\d\d:\d\d)")


def _deepest_line(text, limit=100):
    """The line where brackets first nest deeper than `limit` (a rough count, for messages)."""
    depth = 0
    for number, line in enumerate(text.split("\n"), 1):
        for char in line:
            if char in "[{":
                depth += 1
                if depth > limit:
                    return number
            elif char in "]}":
                depth -= 1
    return 1


def plain(value):
    """TOML dates and times become ISO-8601 strings, so the plan stays JSON."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    return value


# -- key locations ---------------------------------------------------------------------------
_BARE = r"[A-Za-z0-9_-]+"
_KEY_PART = r'(?:%s|"(?:[^"\\]|\\.)*"|\'[^\']*\')' % _BARE
_KEY_RE = re.compile(r"\s*(%s(?:\s*\.\s*%s)*)\s*=" % (_KEY_PART, _KEY_PART))
_HEADER_RE = re.compile(r"\s*\[\[?\s*(%s(?:\s*\.\s*%s)*)\s*\]\]?" % (_KEY_PART, _KEY_PART))
_PART_RE = re.compile(_KEY_PART)


def _split_key(key):
    parts = []
    for part in _PART_RE.findall(key):
        if part[:1] in "\"'":
            part = part[1:-1]
        parts.append(part)
    return tuple(parts)


def locate_keys(text):
    """Map key paths to (line, col): tables, keys, dotted keys and keys of inline tables."""
    where = {}
    table = ()
    stack = []  # enclosing inline tables/arrays: key path for tables, None for arrays
    ml_delim = None  # inside a multi-line string: its delimiter
    last_key = None
    for lineno, line in enumerate(text.split("\n"), 1):
        pos = 0
        if ml_delim is not None:
            end = line.find(ml_delim)
            if end < 0:
                continue
            pos = end + 3
            ml_delim = None
        if not stack and pos == 0:
            match = _HEADER_RE.match(line)
            if match and not _KEY_RE.match(line):
                table = _split_key(match.group(1))
                where.setdefault(table, (lineno, line.index("[") + 1))
                continue
        expect_key = pos == 0 and (not stack or stack[-1] is not None)
        context = stack[-1] if stack else table
        while pos <= len(line):
            if expect_key:
                match = _KEY_RE.match(line, pos)
                if match:
                    path = context + _split_key(match.group(1))
                    col = len(line) - len(line[pos:].lstrip()) + 1 if pos == 0 else match.start(1) + 1
                    where.setdefault(path, (lineno, col))
                    last_key = path
                    pos = match.end()
                expect_key = False
            if pos >= len(line):
                break
            ch = line[pos]
            if ch == "#":
                break
            if ch in "\"'":
                triple = line[pos : pos + 3]
                if triple in ('"""', "'''"):
                    end = line.find(triple, pos + 3)
                    if end < 0:
                        ml_delim = triple
                        break
                    pos = end + 3
                    continue
                pos += 1
                while pos < len(line) and line[pos] != ch:
                    pos += 2 if (ch == '"' and line[pos] == "\\") else 1
                pos += 1
                continue
            if ch == "{":
                stack.append(last_key if last_key is not None else context)
                context = stack[-1]
                expect_key = True
            elif ch == "[":
                stack.append(None)
            elif ch in "}]":
                if stack:
                    stack.pop()
                context = stack[-1] if stack and stack[-1] is not None else (table if not stack else context)
            elif ch == ",":
                if stack and stack[-1] is not None:
                    expect_key = True
            pos += 1
    return where


def relative_display(path):
    """A path as shown in messages: relative to the working directory when below it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel
