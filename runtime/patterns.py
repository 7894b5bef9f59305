"""The `pattern` of variables and plugin parameters: `re` syntax, matched in linear time.

Python's `re` backtracks: `(a+)+$` against forty "a"s and a "b" runs for hours. The pattern
comes from a runbook or a plugin, the value from anyone with `--var`, so a value is never
matched with `re` itself. The pattern is parsed by Python's own regular-expression parser and
run as a Thompson automaton (every possible position in the pattern advanced together, one
character at a time): time proportional to the pattern's size times the value's length,
whatever the pattern and the value.

The meaning stays exactly that of `re.fullmatch`: each character test (a literal, a class,
`.`, `\\d`, case-insensitive or not) and each anchor (`^ $ \\A \\Z \\b \\B`) is compiled with
`re` on its own and asked about one position, so Unicode classes and case folding are Python's.

Constructs that need backtracking are refused when the pattern is checked (at validate time
for runbooks), with PatternError: backreferences, lookahead and lookbehind, conditionals,
atomic groups and possessive quantifiers. So are patterns whose repeat counts expand to more
than MAX_STATES states (`(a{1000}){1000}`).

Standard library only: this module goes into bundles.
"""

from __future__ import annotations

import functools
import re

import sys

if sys.version_info >= (3, 11):
    from re import _constants as _sre
    from re import _parser as _sre_parse
else:  # Python 3.9, 3.10
    import sre_constants as _sre
    import sre_parse as _sre_parse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, List, Set, Tuple

MAX_STATES = 20000

# Instructions of the automaton: (CHAR, compiled test) consumes one character the test
# matches; (ASSERT, compiled anchor) passes when the anchor holds here; (SPLIT, a, b) goes on
# at both; (JUMP, a); (MATCH,) is the last instruction.
CHAR, ASSERT, SPLIT, JUMP, MATCH = range(5)

# The flags a single character or anchor depends on.
_ITEM_FLAGS = re.IGNORECASE | re.ASCII | re.DOTALL | re.MULTILINE | re.UNICODE

_ANCHORS = {
    _sre.AT_BEGINNING: "^",
    _sre.AT_BEGINNING_STRING: r"\A",
    _sre.AT_END: "$",
    _sre.AT_END_STRING: r"\Z",
    _sre.AT_BOUNDARY: r"\b",
    _sre.AT_NON_BOUNDARY: r"\B",
}
_CATEGORIES = {
    _sre.CATEGORY_DIGIT: r"\d",
    _sre.CATEGORY_NOT_DIGIT: r"\D",
    _sre.CATEGORY_SPACE: r"\s",
    _sre.CATEGORY_NOT_SPACE: r"\S",
    _sre.CATEGORY_WORD: r"\w",
    _sre.CATEGORY_NOT_WORD: r"\W",
}
# What each refused construct is called in messages (by opcode name: some exist only in 3.11+).
_REFUSED = {
    "GROUPREF": "a backreference (\\1 or (?P=name))",
    "GROUPREF_EXISTS": "a conditional group ((?(1)…|…))",
    "ASSERT": "a lookahead or lookbehind ((?=…) or (?<=…))",
    "ASSERT_NOT": "a negative lookahead or lookbehind ((?!…) or (?<!…))",
    "ATOMIC_GROUP": "an atomic group ((?>…))",
    "POSSESSIVE_REPEAT": "a possessive quantifier (*+, ++, ?+ or {m,n}+)",
}


class PatternError(ValueError):
    """A pattern that is not a regular expression, or that cannot be matched in linear time
    (then `hint` says what to do). The message completes "the pattern …": "is not a valid
    regular expression: …", "uses a backreference …", "is too large: …"."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class Pattern:
    """A compiled pattern; `fullmatch(value)` is `re.fullmatch(pattern, value) is not None`."""

    def __init__(self, text: str) -> None:
        self.text = text
        try:
            parsed = _sre_parse.parse(text)
            self.code: List[Tuple[Any, ...]] = []
            self._sequence(parsed, parsed.state.flags)
        except RecursionError:
            raise PatternError("is not a valid regular expression: groups nested too deeply") from None
        self.code.append((MATCH,))

    def fullmatch(self, value: str) -> bool:
        current = self._closure([0], value, 0)
        for position in range(len(value)):
            advanced = [pc + 1 for pc in current if self.code[pc][0] == CHAR and self.code[pc][1].match(value, position)]
            if not advanced:
                return False
            current = self._closure(advanced, value, position + 1)
        return len(self.code) - 1 in current

    def _closure(self, starts: List[int], value: str, position: int) -> Set[int]:
        """The instructions that consume a character (or MATCH) reachable from `starts`
        without consuming one, at `position`."""
        found: Set[int] = set()
        seen: Set[int] = set()
        pending = list(starts)
        while pending:
            pc = pending.pop()
            if pc in seen:
                continue
            seen.add(pc)
            instruction = self.code[pc]
            kind = instruction[0]
            if kind == SPLIT:
                pending.extend(instruction[1:])
            elif kind == JUMP:
                pending.append(instruction[1])
            elif kind != ASSERT:
                found.add(pc)
            elif instruction[1].match(value, position):
                pending.append(pc + 1)
        return found

    # -- building the automaton -----------------------------------------------------------------
    def _emit(self, *instruction: Any) -> int:
        if len(self.code) >= MAX_STATES:
            raise PatternError(
                "is too large: more than %d states once its repeats are written out" % MAX_STATES,
                "use smaller repeat counts ({m,n})",
            )
        self.code.append(instruction)
        return len(self.code) - 1

    def _patch(self, pc: int, *instruction: Any) -> None:
        self.code[pc] = instruction

    def _sequence(self, items: Any, flags: int) -> None:
        for op, arg in items:
            self._item(op, arg, flags)

    def _item(self, op: Any, arg: Any, flags: int) -> None:
        if op in (_sre.LITERAL, _sre.NOT_LITERAL, _sre.ANY, _sre.IN):
            self._emit(CHAR, re.compile(_char_source(op, arg), flags & _ITEM_FLAGS))
        elif op == _sre.AT:
            self._emit(ASSERT, re.compile(_ANCHORS[arg], flags & _ITEM_FLAGS))
        elif op == _sre.SUBPATTERN:
            _group, add_flags, del_flags, items = arg
            self._sequence(items, (flags | add_flags) & ~del_flags)
        elif op == _sre.BRANCH:
            self._branch(arg[1], flags)
        elif op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT):  # greedy or lazy: the same for a yes/no
            self._repeat(arg, flags)
        else:
            name = str(op)
            raise PatternError(
                "uses %s, which cannot be matched in bounded time" % _REFUSED.get(name, name),
                "write the pattern without it: Playbook matches patterns in time linear in the value, "
                "so that no value can make a check hang",
            )

    def _branch(self, alternatives: Any, flags: int) -> None:
        """a|b|c: SPLIT to each alternative in turn; each jumps to the end."""
        jumps = []
        for alternative in alternatives[:-1]:
            split = self._emit(SPLIT)
            self._sequence(alternative, flags)
            jumps.append(self._emit(JUMP))
            self._patch(split, SPLIT, split + 1, len(self.code))
        self._sequence(alternatives[-1], flags)
        for jump in jumps:
            self._patch(jump, JUMP, len(self.code))

    def _repeat(self, arg: Any, flags: int) -> None:
        """x{m,n}: m copies of x, then n - m optional ones (or a loop when n is unbounded)."""
        low, high, items = arg
        for _ in range(low):
            self._sequence(items, flags)
        if high == _sre.MAXREPEAT:
            loop = self._emit(SPLIT)
            self._sequence(items, flags)
            self._emit(JUMP, loop)
            self._patch(loop, SPLIT, loop + 1, len(self.code))
            return
        splits = []
        for _ in range(high - low):
            splits.append(self._emit(SPLIT))
            self._sequence(items, flags)
        for split in splits:
            self._patch(split, SPLIT, split + 1, len(self.code))


def _char_source(op: Any, arg: Any) -> str:
    """`re` source matching the one character that this parsed item matches."""
    if op == _sre.LITERAL:
        return _code_point(arg)
    if op == _sre.NOT_LITERAL:
        return "[^%s]" % _code_point(arg)
    if op == _sre.ANY:
        return "."
    parts = []
    for kind, value in arg:  # the items of a class […]
        if kind == _sre.NEGATE:
            parts.append("^")
        elif kind == _sre.LITERAL:
            parts.append(_code_point(value))
        elif kind == _sre.RANGE:
            parts.append("%s-%s" % (_code_point(value[0]), _code_point(value[1])))
        else:
            parts.append(_CATEGORIES[value])
    return "[%s]" % "".join(parts)


def _code_point(number: int) -> str:
    return "\\U%08x" % number


@functools.lru_cache(maxsize=256)
def compile_pattern(text: str) -> Pattern:
    """The Pattern of `text`; raises PatternError, whose message completes "the pattern …"."""
    try:
        re.compile(text)
    except re.error as exc:
        raise PatternError("is not a valid regular expression: %s" % exc) from None
    except RecursionError:
        raise PatternError("is not a valid regular expression: groups nested too deeply") from None
    return Pattern(text)


def fullmatch(text: str, value: str) -> bool:
    """Whether the whole of `value` matches the pattern `text`, in linear time."""
    return compile_pattern(text).fullmatch(value)
