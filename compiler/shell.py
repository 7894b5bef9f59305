"""Where each `{{ … }}` of a command stands in the shell's grammar: known exactly, or refused.

`analyse(template, shell)` reads a `command_name` template as the shell will read the rendered
command and returns, for every `{{ … }}` in order, the quoting that makes the command receive
exactly the value (templating.QUOTING), or a problem for each value whose place cannot be
known with certainty. The plan records the quoting (`Node.command_quoting`); the runtime only
applies it (runtime/templating.py).

How the shell text is read:
- A lexer of our own follows the shell's quoting exactly where sh (dash), bash and busybox ash
  agree: words, '…', "…", backslashes, comments, here-documents, `$( )`, backquotes, `${ }`,
  `$(( ))` and `(( ))`, `$'…'` and `$"…"`. It does not guess: a construct where the shells
  differ or where it cannot follow them (a comment, a here-document or `case` inside `$( )`, a
  line continuation or `$( )` in a here-document, …) makes every later value's place unknown,
  and such values are refused.
  A real parser was considered: tree-sitter-bash parses bash only (not dash), recovers from
  errors silently and reads here-documents and `$'…'` its own way; refusing what we do not
  model is more certain. tests/test_shell_oracle.py checks the model against real shells.
- Values are accepted outside quotes, inside '…' and inside "…", at the top level or inside
  `$( )`. Outside quotes a value is single-quoted (WORD), except where it ends an argument (not
  a command's first word, nothing glued after it, nothing before it but plain characters):
  there (PLAIN) a value made only of plain characters stays as it is (`--app=myapp`).
  Values are refused in comments, here-documents (text and delimiter), backquotes, `${ }`,
  arithmetic, `$'…'`, `$"…"`, right after `\\` or `$`, inside bash's `[[ … ]]` (it evaluates
  `-eq` operands as arithmetic), in "…" inside a bash array `( … )` (bash alters \\x01 and
  \\x7f there), in the arguments of `eval`, `trap` and `let`, which run or evaluate them as
  code, and after `alias` (an alias may change how later words read).
- Jinja blocks: every branch of an `{% if %}` is analysed, and all branches must leave the shell
  in the same state (an `{% if %}` without `{% else %}` must leave it as it found it); a
  `{% for %}` body is analysed until its state is stable. Otherwise the values after the block
  are refused. `{% set %}` and `{% with %}` are allowed; other blocks (macro, call, filter,
  include, …) are refused in commands.
- `{{ value | raw }}` is the deliberate opt-out: inserted as it is, anywhere; the author vouches
  that the text leaves the shell's quoting as it found it.
- A command starting with `#!` is a script: a sh/dash/bash/ash script is read as above; in any
  other interpreter (python3, perl, …) there is no shell quoting, so a bare value is refused
  and `{{ value | tojson }}` writes a JSON literal (a valid Python or JavaScript literal too).
  The `#!` line itself must be plain text. A `shell` other than sh, dash, bash or ash is
  treated the same way.
"""

from __future__ import annotations

import functools
import os
import re
import string
from typing import NamedTuple

from jinja2 import nodes

from playbook.runtime import templating
from playbook.runtime.templating import DOUBLE, JSON, PLAIN, RAW, SINGLE, WORD

TYPE_CHECKING = False  # typing names are for the type checker only
if TYPE_CHECKING:
    from typing import Any, Iterable

SHELLS = ("sh", "dash", "bash", "ash")

HINT = (
    'pass the value through env (env = { %(name)s = "{{ %(name)s }}" } and use "$%(name)s") '
    "or mark it | raw deliberately"
)
HEREDOC_HINT = (
    'pass the value through env (env = { %(name)s = "{{ %(name)s }}" }) and write $%(name)s in a here-document '
    "with an unquoted delimiter (<<EOF), or mark it | raw deliberately"
)
SCRIPT_HINT = (
    "write {{ %(name)s | tojson }} where the script expects a JSON (Python, JavaScript) literal, read it from "
    'the environment (env = { %(name)s = "{{ %(name)s }}" }), or mark it | raw deliberately'
)
TEST_HINT = "compare with [ … ] (test) instead, or mark it | raw deliberately"


class Problem(NamedTuple):
    """A value or block that cannot be quoted with certainty: where (in the template) and why."""

    line: int  # in the template, from 1
    col: int | None  # from 1, when known
    offset: int | None  # of the `{{` in the template, when known
    shown: str | None  # the `{{ … }}` as written; None for a block
    message: str
    hint: str | None


class Analysis(NamedTuple):
    quoting: tuple  # one context per `{{ … }}`; () when there are problems
    problems: tuple


@functools.lru_cache(maxsize=8192)
def analyse(template: str, shell: str | None = None, secrets: frozenset = frozenset()) -> Analysis:
    """Where each `{{ … }}` of a command stands, for `shell` (a Command's `shell` setting); cached.
    `secrets`: the runbook's secret variables (see `_Walk.secret`).

    Raises templating.TemplateError when the template does not parse.
    """
    ast = templating.parse(template)
    expressions = list(templating.output_expressions(ast))
    walk = _Walk(expressions)
    if secrets and templating.names_used(ast) & secrets:
        # a name the template binds may hold a secret's value: {% for c in TOKEN %}{{ c }}, and
        # so may a loop's own `loop` (loop.previtem)
        walk.tainted = set(secrets) | {n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param")} | {"loop"}
        walk.secrets = secrets
    skip = 0
    first = _first_text(ast)
    if first is not None and first.data.lstrip().startswith("#!"):
        start = first.data.index("#!")
        end = first.data.find("\n", start)
        line = first.lineno + first.data.count("\n", 0, start)
        if end < 0:
            walk.block_problem(line, "the #! line of a command must be plain text (no {{ }} or {% %})")
            return walk.result(template)
        launcher = first.data[start + 2 : end].split()
        skip = end + 1
    else:
        launcher = _split(shell) if shell else ["sh"]
    interpreter = program(launcher)
    walk.env_cleared = clears_environment(launcher)
    if interpreter in SHELLS:
        lexer = Lexer(at_start=not skip)
    else:
        lexer = None
        walk.foreign = interpreter or "?"
        walk.foreign_is_script = bool(skip)
    walk.skip = (first, skip) if skip else None
    walk.body(ast.body, lexer)
    if lexer is not None:
        lexer.finish()
        walk.plain = lexer.plain
    return walk.result(template)


def clears_environment(words: list) -> bool:
    """Whether a command line run through `env` clears or unsets environment variables first
    (`env -i`, `env -`, `-u NAME`, `--ignore-environment`, `--unset`, also inside `-S "…"`)."""
    words = [part for word in words for part in word.split()]
    while words and os.path.basename(words[0]) == "env":
        words.pop(0)
        while words and (words[0].startswith("-") or "=" in words[0]):
            option = words.pop(0)
            if option == "-" or option.startswith(("--ignore", "--unset")):
                return True
            if option.startswith("-") and not option.startswith("--") and ("i" in option or "u" in option):
                return True
    return False


def program(words: list) -> str:
    """The program a command line runs, past `env` and its options: `/usr/bin/env -S bash -e` → bash."""
    words = list(words)
    while words and os.path.basename(words[0]) == "env":
        words.pop(0)
        while words and (words[0].startswith("-") or "=" in words[0]):
            words.pop(0)
    if not words:
        return ""
    name = os.path.basename(words[0])
    if name == "busybox" and len(words) > 1:
        return os.path.basename(words[1])
    return name


def _split(shell: str) -> list:
    import shlex

    try:
        return shlex.split(shell)
    except ValueError:
        return [shell]


def _first_text(ast: nodes.Template) -> nodes.TemplateData | None:
    """The template's leading text, when it starts with text."""
    if ast.body and isinstance(ast.body[0], nodes.Output) and ast.body[0].nodes:
        first = ast.body[0].nodes[0]
        if isinstance(first, nodes.TemplateData):
            return first
    return None


# -- where each `{{` is in the template ----------------------------------------------------------
_RAW_BEGIN = re.compile(r"\{%[-+]?\s*raw\s*[-+]?%\}")
_RAW_END = re.compile(r"\{%[-+]?\s*endraw\s*[-+]?%\}")
_OPEN = re.compile(r"\{[{%#]")


def placeholder_offsets(source: str) -> list:
    """The offset of each `{{` that starts a Jinja expression, in order (Jinja's default syntax)."""
    found: list[int] = []
    pos = 0
    while True:
        match = _OPEN.search(source, pos)
        if not match:
            return found
        start = match.start()
        kind = source[start + 1]
        if kind == "#":
            end = source.find("#}", start + 2)
            if end < 0:
                return found
            pos = end + 2
            continue
        if kind == "%":
            raw = _RAW_BEGIN.match(source, start)
            if raw:
                close = _RAW_END.search(source, raw.end())
                if not close:
                    return found
                pos = close.end()
                continue
            pos = _tag_end(source, start + 2, "%}")
            continue
        found.append(start)
        pos = _tag_end(source, start + 2, "}}")


def _tag_end(source: str, pos: int, closer: str) -> int:
    depth = 0
    while pos < len(source):
        char = source[pos]
        if char in "'\"":
            pos += 1
            while pos < len(source) and source[pos] != char:
                pos += 2 if source[pos] == "\\" else 1
        elif char in "([{":
            depth += 1
        elif depth and char in ")]}":
            depth -= 1
        elif not depth and source.startswith(closer, pos):
            return pos + 2
        pos += 1
    return pos


# -- the Jinja side: values, branches and loops --------------------------------------------------
_LOOP_LIMIT = 12
_BLOCK_NAMES = {
    "Macro": "macro",
    "CallBlock": "call",
    "FilterBlock": "filter",
    "AssignBlock": "set … endset",
    "Block": "block",
    "Extends": "extends",
    "Include": "include",
    "Import": "import",
    "FromImport": "from … import",
    "ScopedEvalContextModifier": "autoescape",
    "EvalContextModifier": "autoescape",
    "ExprStmt": "do",
    "Continue": "continue",
    "Break": "break",
}


class _Walk:
    """Walks a command template's syntax tree, feeding its text to the lexer."""

    def __init__(self, expressions: list[nodes.Expr]) -> None:
        self.expressions = expressions
        self.index = {id(expression): i for i, expression in enumerate(expressions)}
        self.contexts: list[str | None] = [None] * len(expressions)
        self.refused: dict[int, tuple[str, str | None]] = {}  # index -> (message, hint)
        self.blocks: list[tuple[int, str]] = []  # (template line, message)
        self.foreign: str | None = None  # the interpreter, when it is not a shell we quote for
        self.foreign_is_script = False
        self.skip: tuple[nodes.TemplateData | None, int] | None = None
        self.plain: dict[int, bool] = {}  # index -> whether a WORD value may stand unquoted (Lexer.plain)
        self.tainted: set[str] = set()  # names whose value is (or may come from) a secret
        self.secrets: frozenset = frozenset()  # the secret variables themselves
        self.env_cleared = False  # the command runs through `env -i` (or -u): no variable reaches it

    def block_problem(self, line: int, message: str) -> None:
        self.blocks.append((line, message))

    def body(self, items: Iterable[nodes.Node], lexer: Lexer | None) -> None:
        for item in items:
            if isinstance(item, nodes.Output):
                for child in item.nodes:
                    if isinstance(child, nodes.TemplateData):
                        if lexer is not None:
                            self._text(child, lexer)
                    else:
                        self._value(child, lexer)
            elif isinstance(item, nodes.If):
                self._if(item, lexer)
            elif isinstance(item, nodes.For):
                self._for(item, lexer)
            elif isinstance(item, (nodes.With, nodes.Scope, nodes.OverlayScope)):
                self.body(item.body, lexer)
            elif isinstance(item, nodes.Assign):
                continue
            else:
                name = _BLOCK_NAMES.get(type(item).__name__, type(item).__name__.lower())
                self.block_problem(
                    item.lineno,
                    "{%% %s %%} is not supported in a command: Playbook checks where each value stands, "
                    "through {%% if %%}, {%% for %%}, {%% set %%} and {%% with %%} only" % name,
                )

    def _text(self, data: nodes.TemplateData, lexer: Lexer) -> None:
        text, line = data.data, data.lineno
        if self.skip is not None and self.skip[0] is data:
            text, line = text[self.skip[1] :], line + text.count("\n", 0, self.skip[1])
        lexer.text(text, line)

    def _value(self, expression: nodes.Expr, lexer: Lexer | None) -> None:
        i = self.index[id(expression)]
        name = expression.name if isinstance(expression, nodes.Name) else "VALUE"
        context: str | None  # None once refused (lexer.value, _through_env)
        if templating.is_filtered(expression, "raw"):
            context = RAW
            if lexer is not None:
                lexer.raw_value()
        elif lexer is None:
            if not templating.is_filtered(expression, "tojson"):
                where = "a #! script run by" if self.foreign_is_script else "a command run by"
                self._refuse(
                    i,
                    "%s %s, which Playbook does not quote for (it quotes for %s)" % (where, self.foreign, ", ".join(SHELLS)),
                    SCRIPT_HINT % {"name": name},
                )
                return
            context = JSON
        else:
            context, reason, hint = lexer.value(i)
            if reason:
                self._refuse(i, reason, (hint or HINT) % {"name": name})
                return
        secret = self.secret(expression)
        if secret:
            context = self._through_env(i, context, secret)
            if context is None:
                return
        if self.contexts[i] not in (None, context):
            self._refuse(i, "it stands in different places on different passes of a {% for %} loop", HINT % {"name": name})
        self.contexts[i] = context

    def secret(self, expression: nodes.Expr) -> str | None:
        """The secret variable an expression reads (or a name that may hold one's value), if any."""
        if not self.tainted:
            return None
        names = {n.name for n in expression.find_all(nodes.Name) if n.ctx == "load"}
        if isinstance(expression, nodes.Name):
            names.add(expression.name)
        found = sorted(names & self.secrets) or sorted(names & self.tainted)
        if not found:
            return None
        if found[0] in self.secrets:
            return found[0]
        return "%s (which may hold the value of %s)" % (found[0], ", ".join(sorted(self.secrets)))

    def _through_env(self, i: int, context: str | None, secret: str) -> str | None:
        """The quoting of a value read from a secret: its text is the argv of `sh -c`, which every
        local user can read (ps), so the value travels in a private variable of the command's
        environment and the text refers to it (templating.THROUGH_ENV). A #! script reaches its
        interpreter through a pipe, never argv: its JSON literals and `| raw` stay. Refused (None):
        `| raw` in a command (its text is argv), a `shell` that is not a shell (the text would be
        its argv: python3 -c …), and a #! line or `shell` whose `env -i` would clear the variable."""
        if context in templating.THROUGH_ENV and self.env_cleared:
            self._refuse(i, "the secret %s travels in the command's environment, which `env -i` (or -u) in its #! line or "
                            "`shell` clears: it would arrive empty" % secret,
                         "drop the env option that clears the environment, or pass the value through env deliberately")
            return None
        if context in templating.THROUGH_ENV:
            return templating.THROUGH_ENV[context]
        if context in (JSON, RAW) and self.skip is not None:
            return context  # a #! script reaches its interpreter through a pipe, never argv
        if context == RAW:
            self._refuse(i, "it would insert the secret %s into the command's text as it is: that text is the argv of the "
                            "shell, which every local user can read with ps while the step runs" % secret,
                         "write {{ %s }} without | raw: it then reaches the command through its environment" % secret)
        else:
            self._refuse(i, "the secret %s would stand in the arguments of %s, which every local user can read with ps "
                            "while the step runs" % (secret, self.foreign),
                         'write the command as a #! script (it reaches its interpreter through a pipe), or pass the '
                         'value through env (env = { %s = "{{ %s }}" })' % (secret, secret))
        return None

    def _refuse(self, i: int, message: str, hint: str | None) -> None:
        self.refused.setdefault(i, (message, hint))

    def _if(self, item: nodes.If, lexer: Lexer | None) -> None:
        branches = [item.body] + [branch.body for branch in item.elif_] + [item.else_]
        if lexer is None:
            for branch in branches:
                self.body(branch, None)
            return
        results = []
        for branch in branches:
            state = lexer.copy()
            self.body(branch, state)
            results.append(state)
        merged = results[0]
        for other in results[1:]:
            if not merged.join(other):
                merged.lose("an {% if %} whose branches leave the quoting in different states", item.lineno)
        lexer.assign(merged)

    def _for(self, item: nodes.For, lexer: Lexer | None) -> None:
        if item.recursive:
            self.block_problem(item.lineno, "a recursive {% for %} is not supported in a command")
        if lexer is None:
            self.body(item.body, None)
            self.body(item.else_, None)
            return
        start = lexer.copy()
        state = lexer.copy()
        for _ in range(_LOOP_LIMIT):
            after = state.copy()
            self.body(item.body, after)
            joined = state.copy()
            if not joined.join(after):
                joined.lose("a {% for %} whose body changes the quoting", item.lineno)
            if joined.same(state):
                break
            state = joined
        else:
            state.lose("a {% for %} whose quoting does not settle", item.lineno)
        otherwise = start.copy()
        self.body(item.else_, otherwise)
        if not state.join(otherwise):
            state.lose("a {% for %} whose {% else %} leaves the quoting in another state", item.lineno)
        lexer.assign(state)

    def result(self, template: str) -> Analysis:
        offsets = placeholder_offsets(template)
        if len(offsets) != len(self.expressions):
            offsets = [None] * len(self.expressions)
        problems = []
        for i, (message, hint) in sorted(self.refused.items()):
            offset = offsets[i]
            if offset is None:
                line, col, shown = self.expressions[i].lineno, None, "{{ … }}"
            else:
                line = template.count("\n", 0, offset) + 1
                col = offset - (template.rfind("\n", 0, offset) + 1) + 1
                shown = _shown(template, offset)
            problems.append(Problem(line, col, offset, shown, message, hint))
        for line, message in self.blocks:
            problems.append(Problem(line, None, None, None, message, None))
        if problems:
            return Analysis((), tuple(problems))
        return Analysis(
            tuple(PLAIN if context == WORD and self.plain.get(i) else context for i, context in enumerate(self.contexts)),
            (),
        )


def _shown(template: str, offset: int) -> str:
    end = _tag_end(template, offset + 2, "}}")
    text = " ".join(template[offset:end].split())
    return text if len(text) <= 40 else text[:37] + "…"


# -- the shell side: a lexer that follows the quoting -------------------------------------------
_CODE_COMMANDS = {
    "eval": "it is an argument of eval, which runs it as shell code",
    "trap": "it is an argument of trap, which runs it as shell code",
    "let": "it is an argument of let, which evaluates it as arithmetic",
}
# Reserved words (sh and bash), which count only where a command's first word stands: the word
# after one may be a first word again; after those of the second set, every word up to the end
# of the command may be (`for x in …`, `case x in …`, `time -p …`).
_RESERVED = frozenset(
    "! { } [[ ]] if then else elif fi do done while until case esac in for select function time coproc".split()
)
_RESERVED_ALL = frozenset("case for select function time coproc".split())
_LONGEST = 5  # the longest word that matters here ("alias", "while")
_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "_")
# Characters with no meaning to the shell's reading anywhere in a word (never # or an operator).
_PLAIN_RUN = re.compile(r"[A-Za-z0-9_./,:=+@%^-]+")
_BLANK_RUN = re.compile(r"[ \t]+")
# What may stand before a PLAIN value in its word: nothing that can start an expansion with it
# (no ~, {, quotes or $).
_PREFIX_CHARACTERS = templating.PLAIN_CHARACTERS | frozenset("=")
# Text that changes nothing inside '…', "…" and a comment (a line break in "…" is checked below).
_SKIP = {"sq": re.compile(r"[^']+"), "dq": re.compile(r"[^\"\\$`\n]+"), "comment": re.compile(r"[^\n]+")}
_PARAM_CHARS = _NAME_CHARS | frozenset("@*#?!-:=+%/.,^~[] \t")
_ARITH_CHARS = _NAME_CHARS | frozenset(" \t+-*/%<>=!&|^~?:,[]#@.")
_WORD_ENDS = frozenset(" \t\n;&|)")  # after a plain value: its word ended, nothing else happened
_REFUSED_IN = {
    "comment": ("it stands in a shell comment, where quoting does not apply", None),
    "hbody": ("it stands in a here-document, where quoting does not apply", HEREDOC_HINT),
    "hdelim": ("it would be a here-document delimiter", HEREDOC_HINT),
    "backtick": ("it stands inside `…` (backquotes), which read backslashes once more; use $( ) instead", None),
    "param": ("it stands inside ${…}", None),
    "arith": ("it stands inside shell arithmetic, which evaluates it as code", None),
    "ansi": ("it stands inside $'…', where backslashes are escapes", None),
}
_NAMES = {
    "cmd": "$( )",
    "backtick": "`…`",
    "param": "${…}",
    "arith": "arithmetic",
    "ansi": "$'…'",
    "hdelim": "a here-document delimiter",
    "hbody": "a here-document",
}


# Command text (Lexer._cmd): what the character after a pending one does (`Frame` field `pend`),
# and what a character does otherwise (the rest are word characters: Lexer._literal).
_CMD_AFTER = {
    "\\": "_after_backslash",
    "$": "_after_dollar",
    "$(": "_after_dollar_paren",
    "(": "_after_paren",
    "<": "_after_less",
    "<<": "_after_heredoc",
}
_CMD_CHARS = {
    char: action
    for chars, action in (
        (" \t", "_blank"),
        ("\n", "_newline"),
        (";&|", "_separator"),
        ("(", "_open_paren"),
        (")", "_close_paren"),
        ("<>", "_redirect"),
        ("#", "_hash"),
        ("'\"`", "_quote"),
        ("\\$", "_pend"),
    )
    for char in chars
}


class Word(NamedTuple):
    """What matters about the word being read in command text."""

    text: str | None  # its text while it is plain and at most _LONGEST characters, else None
    assign: int  # 0: a NAME so far, 3: NAME+, 1: an assignment (NAME= or NAME+=), 2: neither
    plain: bool  # only _PREFIX_CHARACTERS so far
    last: str  # its last plain character ("" when there is none)
    opaque: bool  # a part of it is quoted, expanded or a value


NO_WORD = Word("", 0, True, "", False)


def _extend(word: Word, text: str) -> Word:
    value, assign, plain, last, opaque = word
    for char in text:
        if assign == 0:
            if char in _NAME_CHARS and not (last == "" and char.isdigit()):
                pass
            elif char in "=+" and last != "":
                assign = 1 if char == "=" else 3
            else:
                assign = 2
        elif assign == 3:
            assign = 1 if char == "=" else 2
        plain = plain and char in _PREFIX_CHARACTERS
        last = char
    if value is not None:
        value = value + text if len(value) + len(text) <= _LONGEST else None
    return Word(value, assign, plain, last, opaque)


def _opaque(word: Word) -> Word:
    return Word(None, 1 if word.assign == 1 else 2, False, "", True)


class Frame:
    """One level of the shell's reading: command text, a quote, a substitution, …

    `fields` must be equal for two branches of an `{% if %}` to join; the word being read
    (`words`) and whether it may be a command's first word (`cmdpos`) are merged instead.
    """

    __slots__ = ("kind", "fields", "words", "cmdpos")

    def __init__(self, kind: str, words: frozenset[Word] | None = None, cmdpos: int = 0, **fields: Any) -> None:
        self.kind = kind
        self.fields = fields
        # command text only: the set of Words the current one may be. Other frames hold None and
        # never read it; typed as command text has it (`… | None` would flag every read there).
        self.words: frozenset[Word] = words  # type: ignore[assignment]
        self.cmdpos = cmdpos  # command text only: 0 an argument, 1 maybe a first word, 2 so until ;

    def get(self, name: str) -> Any:
        return self.fields[name]

    def set(self, **fields: Any) -> None:
        self.fields.update(fields)

    def copy(self) -> Frame:
        return Frame(self.kind, self.words, self.cmdpos, **self.fields)

    def key(self) -> tuple[Any, ...]:
        return (self.kind,) + tuple(sorted(self.fields.items()))


class Lexer:
    """The shell's reading state, fed the command's text piece by piece.

    The state is a stack of frames. After an `{% if %}` the word being read may be one of several
    (`Frame.words`): that decides whether `#` starts a comment, whether a word is `eval`, `[[` or
    `case`, and whether a value may stand unquoted. Once the reading is lost (`lost` says after
    what and where), every later value is refused.
    """

    def __init__(self, at_start: bool = True) -> None:
        self.frames = [self._command_frame(nested=False)]
        self.lost: str | None = None
        self.at_start: bool | str = at_start  # the output may still be at its start: True, False or "#"
        self.line = 1
        self.pending: int | None = None  # the index of a WORD value that may turn out PLAIN with the next character
        self.plain: dict[int, bool] = {}  # index -> whether every pass found that value PLAIN (shared by all copies)

    @staticmethod
    def _command_frame(nested: bool, array: bool = False) -> Frame:
        return Frame(
            "cmd",
            frozenset([NO_WORD]),
            1,
            nested=nested,
            array=array,
            depth=0,
            pend="",
            heredocs=(),
            dbracket=False,
            special="",
        )

    # -- states of the Jinja walk ------------------------------------------------------------
    def copy(self) -> Lexer:
        self.settle(False)
        other = Lexer.__new__(Lexer)
        other.frames = [frame.copy() for frame in self.frames]
        other.lost, other.at_start, other.line = self.lost, self.at_start, self.line
        other.pending, other.plain = None, self.plain
        return other

    def assign(self, other: Lexer) -> None:
        other.settle(False)
        self.frames, self.lost, self.at_start, self.line = other.frames, other.lost, other.at_start, other.line
        self.pending = None

    def same(self, other: Lexer) -> bool:
        if self.lost or other.lost:
            return self.lost == other.lost
        return (
            self._key() == other._key()
            and self.at_start == other.at_start
            and [(f.words, f.cmdpos) for f in self.frames] == [(f.words, f.cmdpos) for f in other.frames]
        )

    def join(self, other: Lexer) -> bool:
        """Merge the state another branch ends in; False when they differ in more than the word."""
        self.settle(False)
        other.settle(False)
        if self.lost or other.lost:
            self.lost = self.lost or other.lost
            return True
        if self._key() != other._key():
            return False
        for mine, theirs in zip(self.frames, other.frames):
            if mine.words is not None:
                mine.words = mine.words | theirs.words
                mine.cmdpos = max(mine.cmdpos, theirs.cmdpos)
        self.at_start = self.at_start or other.at_start
        return True

    def _key(self) -> tuple[tuple[tuple[Any, ...], ...], bool]:
        return (tuple(frame.key() for frame in self.frames), self.at_start == "#")

    def lose(self, what: str, line: int | None = None) -> None:
        if not self.lost:
            self.lost = "Playbook cannot follow the shell's quoting past %s (line %d)" % (what, line or self.line)

    def settle(self, plain: bool) -> None:
        """Decide a pending PLAIN value: `plain` when its word ended right after it."""
        if self.pending is not None:
            self.plain[self.pending] = self.plain.get(self.pending, True) and plain
            self.pending = None

    def finish(self) -> None:
        """The end of the command."""
        self.settle(True)

    # -- input ---------------------------------------------------------------------------------
    def text(self, data: str, line: int) -> None:
        self.line = line
        pos, end = 0, len(data)
        if data and self.pending is not None:
            self.settle(data[0] in _WORD_ENDS)
        while pos < end and not self.lost:
            frame = self.frames[-1]
            if not self.at_start:
                # Fast paths, with the same effect as the character-by-character reading below:
                # runs of plain word characters or of blanks, the inside of '…', "…" and comments.
                if frame.kind == "cmd" and not frame.fields["pend"]:
                    match = _PLAIN_RUN.match(data, pos)
                    if match:
                        self._literal(frame, match.group())
                        pos = match.end()
                        continue
                    match = _BLANK_RUN.match(data, pos)
                    if match:
                        self._end_word(frame)
                        pos = match.end()
                        continue
                elif frame.kind in _SKIP and not frame.fields.get("pend"):
                    match = _SKIP[frame.kind].match(data, pos)
                    if match and match.end() > pos:
                        self.line += data.count("\n", pos, match.end())
                        pos = match.end()
                        continue
            char = data[pos]
            pos += 1
            if self.at_start:
                self._start(char)
            self._char(char)
            if char == "\n":
                self.line += 1

    def _start(self, char: str) -> None:
        if self.at_start == "#":
            self.at_start = False
            if char == "!":
                self.lose("a #! line that a {% … %} block or a value decides")
        elif not char.isspace():
            self.at_start = "#" if char == "#" else False

    def value(self, index: int) -> tuple[str | None, str | None, str | None]:
        """The `{{ … }}` number `index` here: (quoting, None, None), or (None, why it is refused,
        hint or None). A WORD value may still become PLAIN: see `plain`."""
        self.settle(False)
        if self.lost:
            return None, self.lost, None
        self.at_start = False
        frame, refused = self._before_value()
        if refused:
            return (None,) + refused
        if frame.kind == "cmd":
            if frame.cmdpos == 0 and all(word.plain for word in frame.words):
                self.pending = index
            self._opaque(frame)
            return self._unless_code(WORD)
        if frame.kind == "sq":
            return self._unless_code(SINGLE)
        if frame.kind == "dq":
            if frame.get("locale"):
                return None, 'it stands inside $"…", which bash translates', None
            return self._unless_code(DOUBLE)
        return (None,) + _REFUSED_IN[frame.kind]

    def raw_value(self) -> None:
        """A `{{ … | raw }}` here: the author vouches for it; the reading goes on."""
        self.settle(False)
        if self.lost:
            return
        self.at_start = False
        frame, _ = self._before_value()
        if frame.kind == "cmd":
            self._opaque(frame)
            frame.cmdpos = 2  # it may be anything: any word up to the next ; may be a first word
        elif frame.kind == "hbody":
            frame.set(line=None)

    def _before_value(self) -> tuple[Frame, tuple[str, str | None] | None]:
        """Resolve the look-ahead of the reading before a value: (the frame the value lands in,
        None or (why it is refused, hint))."""
        frame = self.frames[-1]
        if frame.kind not in ("cmd", "dq") or not frame.get("pend"):
            if frame.kind == "hdelim":
                self.lose("a here-document delimiter given by a value")
            return frame, None
        pend = frame.get("pend")
        frame.set(pend="")
        if pend in ("\\", "$"):
            if frame.kind == "cmd":
                self._opaque(frame)
            return frame, ("it stands right after a %s" % ("backslash" if pend == "\\" else "$"), None)
        if pend == "<<":
            self.lose("a here-document delimiter given by a value")
            return frame, _REFUSED_IN["hdelim"]
        if pend == "$(":
            if frame.kind == "cmd":
                self._opaque(frame)
            return self._push_command(), None
        if pend == "(":
            self._subshell(frame)
        return frame, None  # after "<": a redirection's target

    def _unless_code(self, quoting: str) -> tuple[str | None, str | None, str | None]:
        """`quoting`, unless some command around the value runs or evaluates its words as code:
        then even an exact word would run (`eval "$(echo …)"` runs what echo prints)."""
        for frame in self.frames:
            if frame.kind != "cmd":
                continue
            if quoting == DOUBLE and frame.get("array"):
                return None, (
                    'it stands in "…" inside a bash array ( … ), where bash changes the characters \\x01 and \\x7f; '
                    "write it outside quotes or in '…'"
                ), None
            if frame.get("dbracket"):
                return None, "it stands inside [[ … ]], where bash evaluates -eq, -lt … operands as arithmetic", TEST_HINT
            if frame.get("special"):
                return None, _CODE_COMMANDS[frame.get("special")], None
        return quoting, None, None

    # -- the frames ----------------------------------------------------------------------------
    def _push(self, kind: str, **fields: Any) -> Frame:
        frame = Frame(kind, **fields)
        self.frames.append(frame)
        return frame

    def _push_command(self, array: bool = False) -> Frame:
        frame = self._command_frame(nested=True, array=array)
        self.frames.append(frame)
        return frame

    def _char(self, char: str) -> None:
        frame = self.frames[-1]
        if char == "\n" and len(self.frames) > 1 and self.frames[0].get("heredocs"):
            # Quotes may span lines before a here-document's text starts; nothing else may.
            for inner in self.frames[1:]:
                if inner.kind not in ("sq", "dq", "comment", "hdelim"):
                    return self.lose("a line break inside %s on a here-document's line" % _NAMES[inner.kind])
        getattr(self, "_" + frame.kind)(frame, char)

    def _cmd(self, frame: Frame, char: str) -> None:
        pend = frame.get("pend")
        if frame.get("array") and char in ";&|<>(" and pend not in ("$", "$("):
            # A syntax error inside name=( … ) is not fatal to bash: it drops the rest of the line
            # and reads on, so what follows would be read differently from here.
            return self.lose("%r inside a bash array ( … )" % char)
        if pend:
            frame.set(pend="")
            if getattr(self, _CMD_AFTER[pend])(frame, char):
                return None
        return getattr(self, _CMD_CHARS.get(char, "_literal"))(frame, char)

    # -- command text: the character after one that needs the next (`frame.pend`) ---------------
    # Each returns True when it has dealt with the character, False when it is read as usual.
    def _after_backslash(self, frame: Frame, char: str) -> bool:
        if char != "\n":
            self._opaque(frame)
        elif frame.get("heredocs"):
            self.lose("a line continuation on a here-document's line")
        return True  # a quoted character, or a line continuation (removed)

    def _after_dollar(self, frame: Frame, char: str) -> bool:
        self._opaque(frame)
        if char == "(":
            frame.set(pend="$(")
        elif char == "{":
            self._push("param", pend="")
        elif char == "'":
            self._push("ansi")
        elif char == '"':
            self._push("dq", pend="", locale=True)
        elif char == "[":
            self.lose("$[ … ]")
        else:
            return False
        return True

    def _after_dollar_paren(self, frame: Frame, char: str) -> bool:
        if char == "(":
            self._push("arith", depth=0, pend="", command=False)
        else:
            self._push_command()
            self._char(char)
        return True

    def _after_paren(self, frame: Frame, char: str) -> bool:
        if char == "(":
            frame.cmdpos = 1
            self._push("arith", depth=0, pend="", command=True)
            return True
        self._subshell(frame)
        return False

    def _after_less(self, frame: Frame, char: str) -> bool:
        if char == "<":
            frame.set(pend="<<")
            return True
        return False

    def _after_heredoc(self, frame: Frame, char: str) -> bool:
        if char == "<":
            return True  # <<< : a here-string, an ordinary word follows
        if frame.get("nested"):
            self.lose("a here-document inside %s" % _inside(frame))
            return True
        self._push("hdelim", buf="", quoted=False, q="", pend="", started=False, strip=char == "-")
        if char != "-":
            self._char(char)
        return True

    # -- command text: a character read as usual -------------------------------------------------
    def _blank(self, frame: Frame, char: str) -> None:
        self._end_word(frame)

    def _separator(self, frame: Frame, char: str) -> None:
        self._end_word(frame)
        frame.cmdpos = 1
        frame.set(special="")

    def _newline(self, frame: Frame, char: str) -> None:
        self._separator(frame, char)
        heredocs = frame.get("heredocs")
        if heredocs:
            frame.set(heredocs=())
            for delimiter, quoted, strip in reversed(heredocs):
                self._push("hbody", delimiter=delimiter, quoted=quoted, strip=strip, line="", pend="")

    def _open_paren(self, frame: Frame, char: str) -> None:
        array = any(word.assign == 1 and word.last == "=" for word in frame.words)
        self._end_word(frame)
        if array:
            self._push_command(array=True)  # name=( … ): a bash array
        else:
            frame.set(special="", pend="(")

    def _close_paren(self, frame: Frame, char: str) -> None:
        self._separator(frame, char)
        if frame.get("nested"):
            if frame.get("depth") == 0:
                self.frames.pop()
            else:
                frame.set(depth=frame.get("depth") - 1)

    def _redirect(self, frame: Frame, char: str) -> None:
        self._end_word(frame)
        if char == "<":
            frame.set(pend="<")

    def _hash(self, frame: Frame, char: str) -> Any:  # see _char: the value is not used
        if frame.words == {NO_WORD}:
            if frame.get("nested"):
                return self.lose("a comment inside %s" % _inside(frame))
            return self._push("comment")
        if NO_WORD in frame.words:
            return self.lose("a # that starts a comment or not, depending on a {% … %} block")
        return self._literal(frame, char)

    def _quote(self, frame: Frame, char: str) -> None:
        self._opaque(frame)
        if char == "'":
            self._push("sq")
        elif char == '"':
            self._push("dq", pend="", locale=False)
        else:
            self._push("backtick", pend="")

    @staticmethod
    def _pend(frame: Frame, char: str) -> None:
        frame.set(pend=char)

    @staticmethod
    def _subshell(frame: Frame) -> None:
        """After `(` in command text: a first word may follow; count the level inside $( )."""
        frame.cmdpos = 1
        if frame.get("nested"):
            frame.set(depth=frame.get("depth") + 1)

    @staticmethod
    def _literal(frame: Frame, text: str) -> None:
        frame.words = frozenset(_extend(word, text) for word in frame.words)

    @staticmethod
    def _opaque(frame: Frame) -> None:
        frame.words = frozenset(_opaque(word) for word in frame.words)

    def _end_word(self, frame: Frame) -> None:
        cmdpos = None
        for word in frame.words:
            if word == NO_WORD:
                cmdpos = max(frame.cmdpos, cmdpos or 0)
                continue
            text = word.text
            if text == "alias":
                self.lose("alias, which may change how later words read")
            elif text in _CODE_COMMANDS:
                frame.set(special=text)
            elif text == "[[":
                frame.set(dbracket=True)
            elif text == "case" and frame.get("nested"):
                self.lose("case … esac inside %s" % _inside(frame))
            if frame.cmdpos and text in _RESERVED_ALL:
                after = 2
            elif frame.cmdpos and text in _RESERVED:
                after = max(frame.cmdpos, 1)
            elif word.assign == 1:
                after = frame.cmdpos  # NAME=value before a command: the command follows
            else:
                after = 2 if frame.cmdpos == 2 else 0
            cmdpos = max(after, cmdpos or 0)
        if all(word.text == "]]" for word in frame.words):
            frame.set(dbracket=False)
        frame.cmdpos = frame.cmdpos if cmdpos is None else cmdpos
        frame.words = frozenset([NO_WORD])

    def _sq(self, frame: Frame, char: str) -> None:
        if char == "'":
            self.frames.pop()

    def _dq(self, frame: Frame, char: str) -> Any:  # see _char: the value is not used
        pend = frame.get("pend")
        if pend:
            frame.set(pend="")
            if pend == "\\":
                return None
            if pend == "$":
                if char == "(":
                    return frame.set(pend="$(")
                if char == "{":
                    return self._push("param", pend="")
            elif pend == "$(":
                return self._after_dollar_paren(frame, char)
        if frame.get("locale") and char in "\\$`":
            return self.lose('$"…" with \\, $ or ` inside')
        if char == '"':
            self.frames.pop()
        elif char in "\\$":
            frame.set(pend=char)
        elif char == "`":
            self._push("backtick", pend="")
        return None

    def _comment(self, frame: Frame, char: str) -> None:
        if char == "\n":
            self.frames.pop()
            self._char(char)

    def _backtick(self, frame: Frame, char: str) -> None:
        if frame.get("pend") == "$":
            frame.set(pend="")
            if char in "({":
                return self.lose("$( or ${ inside `…`")
        if char == "`":
            self.frames.pop()
        elif char in "\\'\"#\n":
            self.lose("`…` with a backslash, a quote, # or a line break inside")
        elif char == "$":
            frame.set(pend="$")
        return None

    def _param(self, frame: Frame, char: str) -> Frame | None:
        if frame.get("pend") == "$":
            frame.set(pend="")
            if char == "{":
                return self._push("param", pend="")
        if char == "}":
            self.frames.pop()
        elif char == "$":
            frame.set(pend="$")
        elif char not in _PARAM_CHARS:
            self.lose("${…} with %r inside" % char)
        return None

    def _arith(self, frame: Frame, char: str) -> None:
        pend = frame.get("pend")
        if pend == ")":
            frame.set(pend="")
            if char != ")":
                return self.lose("arithmetic whose end is not ))")
            self.frames.pop()
            if frame.get("command"):  # (( … )) is a whole command
                self.frames[-1].words = frozenset([NO_WORD])
            return None
        if pend == "$":
            frame.set(pend="")
            if char in "({'\"`":
                return self.lose("arithmetic with $%s inside" % char)
        if char == "(":
            frame.set(depth=frame.get("depth") + 1)
        elif char == ")":
            if frame.get("depth"):
                frame.set(depth=frame.get("depth") - 1)
            else:
                frame.set(pend=")")
        elif char == "$":
            frame.set(pend="$")
        elif char not in _ARITH_CHARS:
            self.lose("arithmetic with %r inside" % char)
        return None

    def _ansi(self, frame: Frame, char: str) -> None:
        if char == "'":
            self.frames.pop()
        elif char == "\\":
            self.lose("$'…' with a backslash inside (bash and dash read it differently)")

    def _hdelim(self, frame: Frame, char: str) -> None:
        if frame.get("pend"):
            frame.set(pend="")
            if char == "\n":
                return self.lose("a here-document delimiter continued on the next line")
            return frame.set(buf=frame.get("buf") + char, quoted=True, started=True)
        quote = frame.get("q")
        if quote:
            if char == quote:
                frame.set(q="")
            elif char == "\n" or (quote == '"' and char in "\\$`"):
                self.lose("a here-document delimiter with \\, $, ` or a line break")
            else:
                frame.set(buf=frame.get("buf") + char)
            return None
        if char in " \t" and not frame.get("started"):
            return None
        if char in " \t\n;&|()<>":
            if not frame.get("started"):
                return self.lose("<< without a delimiter")
            self.frames.pop()
            command = self.frames[-1]
            command.set(heredocs=command.get("heredocs") + ((frame.get("buf"), frame.get("quoted"), frame.get("strip")),))
            return self._char(char)
        frame.set(started=True)
        if char in "'\"":
            frame.set(q=char, quoted=True)
        elif char == "\\":
            frame.set(pend="\\")
        elif char in "$`":
            self.lose("a here-document delimiter with $ or `")
        else:
            frame.set(buf=frame.get("buf") + char)
        return None

    def _hbody(self, frame: Frame, char: str) -> Any:  # see _char: the value is not used
        line = frame.get("line")
        if not frame.get("quoted"):
            # Expansions are live here; only those that stay on their line can be followed:
            # dash reads `$(`, backquotes and a `${` across lines, bash stops at the delimiter.
            pend = frame.get("pend")
            frame.set(pend="")
            if pend == "\\":
                if char == "\n":
                    return self.lose("a \\ at the end of a here-document line")
                return self._body_text(frame, line, "\\" + char)
            if pend == "$":
                if char == "(":
                    return self.lose("$( ) in a here-document")
                self._body_text(frame, line, "$")
                if char == "{":
                    return self._push("param", pend="")
                line = frame.get("line")
            if char == "`":
                return self.lose("`…` in a here-document")
            if char in "\\$":
                return frame.set(pend=char)
        if char == "\n":
            text = line.lstrip("\t") if (line is not None and frame.get("strip")) else line
            if text == frame.get("delimiter"):
                self.frames.pop()
            else:
                frame.set(line="")
            return None
        return self._body_text(frame, line, char)

    @staticmethod
    def _body_text(frame: Frame, line: str | None, text: str) -> None:
        """Keep the current line only while it may still turn out to be the delimiter."""
        if line is not None:
            line += text
            if not frame.get("delimiter").startswith(line.lstrip("\t") if frame.get("strip") else line):
                line = None
            frame.set(line=line)


def _inside(frame: Frame) -> str:
    return "an array ( … )" if frame.get("array") else "$( )"
