"""TOML files: the one reader and the one key-to-line locator.

Runbooks (compiler/source.py), ``--vars-file`` files (runtime/variables.py) and configuration
files (runtime/config.py) are all parsed here, with tomli (TOML 1.1: multi-line inline tables)
on every Python version, so a file that parses in one place parses in all of them.

- ``loads(text)`` returns the data, or raises ``TomlError`` with the message and its line and
  column. Data nested deeper than ``MAX_DEPTH`` levels (tables, dotted keys, arrays together)
  is refused: nothing later has to walk a structure deep enough to exhaust Python's stack.
- ``plain(data)`` turns TOML dates and times into ISO-8601 strings (plans stay JSON).
- ``locate_keys(text)`` maps key paths to (line, column) for messages. It scans the text
  line by line; it does not parse values, so it is best effort (and exact for real files).

Standard library and tomli only: this module goes into bundles.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False  # typing is not imported at run time (start-up of bundles)
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple

    Path = Tuple[str, ...]
    Place = Tuple[int, int]

# Deeper than any real runbook or configuration, far below what exhausts the stack of the
# code that walks the data (templating, JSON, the plan).
MAX_DEPTH = 100


class TomlError(ValueError):
    """Text that is not UTF-8 or not TOML, or nests deeper than MAX_DEPTH. `message` says so in
    one line ("invalid TOML: …"); `line` and `col` (1-based) say where, when known."""

    def __init__(self, message: str, line: Optional[int] = None, col: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.col = col

    def where(self) -> str:
        """' (at line L, column C)' as tomli writes it, or '' when the place is unknown."""
        if self.line is None:
            return ""
        return " (at line %d, column %d)" % (self.line, self.col or 1)


def decode(raw: bytes) -> str:
    """UTF-8 bytes of a file → its text (a leading byte-order mark dropped). A byte that is not
    UTF-8 raises TomlError naming its line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise TomlError("not valid UTF-8 text (%s)" % exc.reason, line, 1) from None
    return text[1:] if text.startswith("\ufeff") else text


def loads(text: str) -> Dict[str, Any]:
    """Parse TOML 1.1 text; raises TomlError."""
    import tomli  # only when a file is read: most runs read none

    try:
        data = tomli.loads(text)
    except RecursionError:  # tomli's own limits on nesting and key length
        raise TomlError("invalid TOML: arrays or tables nested too deeply", _crowded_line(text), 1) from None
    except tomli.TOMLDecodeError as exc:
        raise _error_of(exc) from None
    except ValueError:  # Python 3.11+ refuses to convert an integer of more than 4300 digits
        digits = re.search(r"\d{4300}", text)
        line = text.count("\n", 0, digits.start() if digits else len(text)) + 1
        raise TomlError("invalid TOML: an integer with thousands of digits", line, 1) from None
    too_deep = _too_deep(data)
    if too_deep is not None:
        line, col = find(locate_keys(text), too_deep)
        raise TomlError("invalid TOML: tables and arrays nested more than %d levels deep" % MAX_DEPTH, line, col)
    return data


def _error_of(exc: ValueError) -> TomlError:
    """The message and place of a tomli error (tomli >= 2.1 has them as attributes)."""
    message = getattr(exc, "msg", None) or re.sub(r"\s*\(at .*\)$", "", str(exc))
    line = getattr(exc, "lineno", None)
    col = getattr(exc, "colno", None)
    if line is None:
        match = re.search(r"line (\d+), column (\d+)", str(exc))
        if match:
            line, col = int(match.group(1)), int(match.group(2))
    return TomlError("invalid TOML: %s" % message, line, col)


def _crowded_line(text: str) -> int:
    """The line where brackets first nest deeper than MAX_DEPTH, or else the line with the
    longest dotted key (a rough count, for messages)."""
    depth = 0
    dots = []
    for number, line in enumerate(text.split("\n"), 1):
        for char in line:
            if char in "[{":
                depth += 1
                if depth > MAX_DEPTH:
                    return number
            elif char in "]}":
                depth -= 1
        dots.append((line.count("."), -number))
    return -max(dots)[1] if dots else 1


def _too_deep(data: Dict[str, Any]) -> Optional[Path]:
    """The key path of a table or array nested more than MAX_DEPTH levels deep, or None."""
    pending: List[Tuple[Any, int]] = [(data, 0)]
    while pending:
        value, depth = pending.pop()
        for item in value.values() if isinstance(value, dict) else value:
            if isinstance(item, (dict, list)):
                if depth >= MAX_DEPTH:
                    return _path_deeper_than(data, MAX_DEPTH)
                pending.append((item, depth + 1))
    return None


def _path_deeper_than(data: Dict[str, Any], limit: int) -> Path:
    """The keys leading to the first container nested deeper than `limit` (one exists)."""
    pending: List[Tuple[Any, Path, int]] = [(data, (), 0)]
    while True:
        value, path, depth = pending.pop()
        if depth > limit:
            return path
        pairs = value.items() if isinstance(value, dict) else ((None, item) for item in value)
        for key, item in pairs:
            if isinstance(item, (dict, list)):
                pending.append((item, path if key is None else path + (key,), depth + 1))


def plain(value: Any) -> Any:
    """A copy with TOML dates and times as ISO-8601 strings. Iterative: any depth is fine."""
    import datetime

    root: List[Any] = [None]
    pending: List[Tuple[Any, Any, Any]] = [(value, root, 0)]  # (value, container, key) to fill
    while pending:
        item, container, key = pending.pop()
        if isinstance(item, dict):
            copy: Any = dict.fromkeys(item)  # keys in their order; values filled in below
            pending.extend((v, copy, k) for k, v in item.items())
        elif isinstance(item, list):
            copy = [None] * len(item)
            pending.extend((v, copy, i) for i, v in enumerate(item))
        elif isinstance(item, (datetime.datetime, datetime.date, datetime.time)):
            copy = item.isoformat()
        else:
            copy = item
        container[key] = copy
    return root[0]


# -- where keys are ------------------------------------------------------------------------------
# Regular expressions as text: re compiles (and caches) them on first use, not at start-up.
_BARE = r"[A-Za-z0-9_-]+"
_KEY_PART = r'(?:%s|"(?:[^"\\]|\\.)*"|\'[^\']*\')' % _BARE
_DOTTED = r"%s(?:\s*\.\s*%s)*" % (_KEY_PART, _KEY_PART)
_KEY = r"\s*(%s)\s*=" % _DOTTED
_HEADER = r"\s*\[\[?\s*(%s)\s*\]\]?" % _DOTTED
_PART = r'(%s)|"((?:[^"\\]|\\.)*)"|\'([^\']*)\'' % _BARE
# A string on one line, from its opening quote (unterminated: to the end of the line).
_STRING = {'"': r'"(?:[^"\\]|\\.)*"?', "'": r"'[^']*'?"}
_INTERESTING = r"[#\"'{}\[\],]"


def split_key(key: str) -> Path:
    """`a . "b.c" . 'd'` → ("a", "b.c", "d") (quoted parts as written, escapes kept)."""
    return tuple(bare or basic or literal for bare, basic, literal in re.findall(_PART, key))


def table_header(line: str) -> Optional[Path]:
    """The table path of a `[table]` or `[[array.of.tables]]` header line, else None."""
    match = re.match(_HEADER, line)
    if match is None or re.match(_KEY, line):
        return None
    return split_key(match.group(1))


def find(where: Dict[Path, Place], path: Path) -> Place:
    """The place of `path`, else of its nearest enclosing table, else (1, 1)."""
    while path:
        if path in where:
            return where[path]
        path = path[:-1]
    return (1, 1)


def locate_keys(text: str) -> Dict[Path, Place]:
    """{key path: (line, column)} of tables, keys, dotted keys and keys of inline tables.

    A table or key written out is placed where it is written; a table that is only implied
    (`[a.b]` implies `a`, `x.y = 1` implies `x`) is placed at its first mention."""
    scanner = _KeyScanner()
    for number, line in enumerate(text.split("\n"), 1):
        scanner.line(number, line)
    for path, place in scanner.implied.items():
        scanner.where.setdefault(path, place)
    return scanner.where


class _KeyScanner:
    """The state of locate_keys between lines."""

    def __init__(self) -> None:
        self.where: Dict[Path, Place] = {}
        self.implied: Dict[Path, Place] = {}
        self.table: Path = ()  # the current [table]
        self.open: List[Tuple[str, Path]] = []  # open inline tables and arrays: ("{" or "[", key path)
        self.closing: Optional[str] = None  # the delimiter ending the multi-line string we are in
        self.last_key: Optional[Path] = None
        self.key_re = re.compile(_KEY)
        self.interesting_re = re.compile(_INTERESTING)

    def line(self, number: int, line: str) -> None:
        start = self._after_multiline_string(line)
        if start is None:
            return
        if start == 0 and not self.open and self._header(number, line):
            return
        self._scan(number, line, start)

    def _after_multiline_string(self, line: str) -> Optional[int]:
        """Where the line's TOML starts: None when it is all inside a multi-line string."""
        if self.closing is None:
            return 0
        end = line.find(self.closing)
        if end < 0:
            return None
        self.closing = None
        return end + 3

    def _header(self, number: int, line: str) -> bool:
        table = table_header(line)
        if table is None:
            return False
        self.table = table
        self._add(table, (number, line.index("[") + 1))
        return True

    def _scan(self, number: int, line: str, pos: int) -> None:
        """Keys where a key may stand (line start, after `{` or `,` in an inline table);
        brackets and strings elsewhere."""
        expect_key = pos == 0 and self._in_table()
        while pos < len(line):
            if expect_key:
                pos = self._key(number, line, pos)
            match = self.interesting_re.search(line, pos)
            if match is None:
                return
            pos, expect_key = self._token(line, match.start())

    def _in_table(self) -> bool:
        return not self.open or self.open[-1][0] == "{"

    def _key(self, number: int, line: str, pos: int) -> int:
        match = self.key_re.match(line, pos)
        if match is None:
            return pos
        context = self.open[-1][1] if self.open else self.table
        self.last_key = context + split_key(match.group(1))
        self._add(self.last_key, (number, match.start(1) + 1), len(context))
        return match.end()

    def _add(self, path: Path, place: Place, known: int = 0) -> None:
        """Record `path` at `place`; the tables it implies (beyond the first `known`) too."""
        self.where.setdefault(path, place)
        for size in range(max(known, 1), len(path)):
            self.implied.setdefault(path[:size], place)

    def _token(self, line: str, pos: int) -> Tuple[int, bool]:
        """Step over the character at `pos`; (next position, whether a key may follow)."""
        char = line[pos]
        if char == "#":
            return len(line), False
        if char in "\"'":
            return self._string(line, pos), False
        if char in "{[":
            self._open(char)
            return pos + 1, char == "{"
        if char in "}]":
            if self.open:
                self.open.pop()
            return pos + 1, False
        return pos + 1, self._in_table() and bool(self.open)  # a comma

    def _string(self, line: str, pos: int) -> int:
        triple = line[pos : pos + 3]
        if triple in ('"""', "'''"):
            end = line.find(triple, pos + 3)
            if end < 0:
                self.closing = triple
                return len(line)
            return end + 3
        string = re.compile(_STRING[line[pos]]).match(line, pos)
        return string.end() if string else len(line)  # (it always matches: the quote is at pos)

    def _open(self, bracket: str) -> None:
        """An inline table or array: the keys inside belong to the key it is the value of
        (for an inline table inside an array, the array's key)."""
        if self.open and self.open[-1][0] == "[":
            path: Optional[Path] = self.open[-1][1]
        else:
            path = self.last_key
        if path is None:
            path = self.open[-1][1] if self.open else self.table
        self.open.append((bracket, path))
