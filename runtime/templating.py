"""Sandboxed Jinja for runbook fields.

- Every template runs in an ``ImmutableSandboxedEnvironment`` with strict undefined names.
- In commands every ``{{ … }}`` value is quoted for the place it stands, as the compiler found
  and the plan records (``Node.command_quoting``): the command receives exactly the value, and
  a value can never add a second command. ``| raw`` inserts a value as it is, deliberately.
- A field that is one single ``{{ expression }}`` keeps the expression's type (a list stays a
  list), which function parameters then convert to their declared types.
"""

from __future__ import annotations

import functools
import json
import re
import shlex

from .errors import PlaybookError

TYPE_CHECKING = False  # typing is not imported at run time (start-up)
if TYPE_CHECKING:
    from types import CodeType
    from typing import Any, Callable, Container, Iterable, Iterator, Mapping, Sequence, TypeGuard, TypeVar

    from jinja2 import nodes
    from jinja2.environment import Environment, Template, TemplateExpression
    from jinja2.runtime import Context

    from .plan import Node, Plan

    _Function = TypeVar("_Function", bound=Callable[..., Any])
    _Tree = TypeVar("_Tree", bound=nodes.Node)

    class _ValueFilter(nodes.Filter):
        """A filter applied to a value (`{{ value | name }}`), not a `{% filter %}` block."""

        node: nodes.Expr

    # What `_load` makes of a store: ({key: marshalled code or generated Python source}, {key: reads})
    _Entries = tuple[dict[str, bytes | str], dict[str, Any]]

TEMPLATE_MARKERS = ("{{", "{%", "{#")
_SINGLE_EXPR = re.compile(r"^\s*\{\{-?(?P<expr>.*?)-?\}\}\s*$", re.S)

# Names every template may use without declaring them (Jinja's own globals).
JINJA_GLOBALS = frozenset(("range", "dict", "lipsum", "cycler", "joiner", "namespace", "true", "false", "none", "True", "False", "None"))


# Fields that may read earlier steps' outputs (`previous_node('x').stdout`) and the runbook's
# directory (`runbook_dir`): they stay templates until the step is about to start.
RUN_TIME_FIELDS = ("command", "env", "cwd", "function_params", "prompt_before", "prompt_after")
RUN_TIME_KEYS = "command_name, env, cwd, function_params, prompt_before and prompt_after"
RUN_TIME_NAMES = frozenset(("previous_node", "runbook_dir"))
QUESTION_FIELDS = ("prompt_before", "prompt_after")  # rendered as questions (QUESTION)
RUNBOOK_DIR_ENV = "PLAYBOOK_RUNBOOK_DIR"  # the runbook's directory, in every command's environment


class TemplateError(PlaybookError):
    """A template that cannot be parsed or rendered."""

    lineno: int | None = None  # the line of a syntax error, within the template


class Raw(str):
    """A value marked `| raw`: inserted into a shell command without quoting."""


def is_template(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and any(marker in value for marker in TEMPLATE_MARKERS)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _finalize_text(value: object) -> str:
    return _text(value)


QUESTION = "question"  # the rendering of a question: a value in it stays on its line
_LINE_BREAKS = {ord("\r"): "\u240d", ord("\n"): "\u2424"}  # ␍ ␤


def _finalize_question(value: object) -> str:
    # a value's line breaks are shown, not obeyed: it cannot draw a line of its own (a fake
    # answer, a fake second question) into the question a person reads and approves
    return _text(value).translate(_LINE_BREAKS)


def _finalize_shell(value: object) -> str:
    # Every value of a command goes through one of the quoting filters below, as the plan
    # records; any other value reaching the output means the template and the plan disagree.
    if isinstance(value, Quoted):
        return str(value)
    raise TemplateError("a value of this command has no recorded quoting; compile the runbook again")


def _raw(value: object) -> Raw:
    return Raw(_text(value))


# -- quoting of command values -------------------------------------------------------------------
# The compiler (compiler/shell.py) finds where each `{{ … }}` of a command stands and records it
# in the plan (`Node.command_quoting`), one entry per `{{ … }}` in the order they appear:
WORD = "word"  # outside quotes: the value becomes one single-quoted piece of the word
PLAIN = "plain"  # outside quotes, ending an argument: as it is when plain, else as WORD
SINGLE = "single"  # inside '…' written by the author
DOUBLE = "double"  # inside "…" written by the author
RAW = "raw"  # `{{ value | raw }}`: inserted as it is, deliberately
JSON = "json"  # `{{ value | tojson }}` in a #! script of another language: a JSON literal
# A value read from a secret variable never stands in the command's text, which is the argv of
# `sh -c` (every local user reads it with ps): the text holds a reference to a private variable
# of the command's environment, in the form for its place, and the value goes there alone.
ENV_WORD = "env-word"  # outside quotes: "$PLAYBOOK_SECRET_1"
ENV_SINGLE = "env-single"  # inside '…': '"$PLAYBOOK_SECRET_1"' (the quote is closed around it)
ENV_DOUBLE = "env-double"  # inside "…": ${PLAYBOOK_SECRET_1}
QUOTING = (WORD, PLAIN, SINGLE, DOUBLE, RAW, JSON, ENV_WORD, ENV_SINGLE, ENV_DOUBLE)
THROUGH_ENV = {WORD: ENV_WORD, PLAIN: ENV_WORD, SINGLE: ENV_SINGLE, DOUBLE: ENV_DOUBLE}  # the form a secret takes
SECRET_ENV_PREFIX = "PLAYBOOK_SECRET_"  # the command's private variables; no runbook env may use the prefix
_SECRET_ENV = "__playbook_secret_env__"  # the render context's collector of those variables
# Characters a PLAIN value may consist of to stand unquoted: shlex.quote's safe set without "=",
# so that no value can make its word an assignment (`set -k` takes NAME=value from anywhere).
PLAIN_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+:,./-")


class Quoted(str):
    """A command value after its quoting: the only kind of value a command's output accepts."""


def _command_text(value: object) -> str:
    text = _text(value)
    if "\x00" in text:
        raise TemplateError("a value of this command contains a NUL character, which no command can receive")
    return text


def _quote_word(value: object) -> Quoted:
    return Quoted("'%s'" % _command_text(value).replace("'", "'\\''"))


def _quote_plain(value: object) -> Quoted:
    text = _command_text(value)
    if text and all(char in PLAIN_CHARACTERS for char in text):
        return Quoted(text)
    return _quote_word(text)


def _quote_single(value: object) -> Quoted:
    return Quoted(_command_text(value).replace("'", "'\\''"))


def _quote_double(value: object) -> Quoted:
    text = _command_text(value)
    for char in ("\\", '"', "$", "`"):
        text = text.replace(char, "\\" + char)
    return Quoted(text)


def _quote_raw(value: object) -> Quoted:
    return Quoted(_command_text(value))


def _quote_json(value: object) -> Quoted:
    _command_text(value)
    return Quoted(json.dumps(value, ensure_ascii=False))


def _secret_reference(context: Context, value: object, form: str) -> Quoted:
    """Put `value` into the command's private environment (the collector the render context
    carries) and return the reference to it in `form`."""
    text = _command_text(value)
    collected = context.get(_SECRET_ENV)
    if not isinstance(collected, dict):
        raise TemplateError("a secret value of this command has nowhere to go but its text; it is not rendered")
    name = "%s%d" % (SECRET_ENV_PREFIX, len(collected) + 1)
    collected[name] = text
    return Quoted(form % name)


def _pass_context(function: _Function) -> _Function:
    from jinja2 import pass_context

    return pass_context(function)


def _quote_env_word(context: Context, value: object) -> Quoted:
    return _secret_reference(context, value, '"$%s"')


def _quote_env_single(context: Context, value: object) -> Quoted:
    return _secret_reference(context, value, "'\"$%s\"'")


def _quote_env_double(context: Context, value: object) -> Quoted:
    return _secret_reference(context, value, "${%s}")


_QUOTE_FILTERS = {
    WORD: "_quote_word",
    PLAIN: "_quote_plain",
    SINGLE: "_quote_single",
    DOUBLE: "_quote_double",
    RAW: "_quote_raw",
    JSON: "_quote_json",
    ENV_WORD: "_quote_env_word",
    ENV_SINGLE: "_quote_env_single",
    ENV_DOUBLE: "_quote_env_double",
}
_CONTEXT_FILTERS = frozenset(("_quote_env_word", "_quote_env_single", "_quote_env_double"))


def output_expressions(ast: nodes.Node) -> Iterator[nodes.Expr]:
    """Every `{{ … }}` expression of a parsed template, in the order they appear in the text."""
    from jinja2 import nodes

    for output in ast.find_all(nodes.Output):
        for child in output.nodes:
            if not isinstance(child, nodes.TemplateData):
                yield child


def is_filtered(expression: nodes.Node, name: str) -> TypeGuard[_ValueFilter]:
    """Whether `expression` is `… | name`, as its outermost operation and without arguments."""
    from jinja2 import nodes

    return (
        isinstance(expression, nodes.Filter)
        and expression.name == name
        and expression.node is not None
        and not expression.args
        and not expression.kwargs
        and expression.dyn_args is None
        and expression.dyn_kwargs is None
    )


def _quote_outputs(ast: nodes.Template, quoting: Sequence[str]) -> nodes.Template:
    """Wrap each `{{ … }}` of a parsed command in the quoting filter the plan records for it."""
    from jinja2 import nodes

    if sum(1 for _ in output_expressions(ast)) != len(quoting):
        raise TemplateError(
            "the plan does not record how to quote the values of this command; compile the runbook again"
        )
    contexts = iter(quoting)
    for output in list(ast.find_all(nodes.Output)):
        for position, child in enumerate(output.nodes):
            if isinstance(child, nodes.TemplateData):
                continue
            context = next(contexts)
            if context not in _QUOTE_FILTERS:
                raise TemplateError("the plan records an unknown quoting %r for a command value" % (context,))
            if context in (RAW, JSON):
                if not is_filtered(child, "raw" if context == RAW else "tojson"):
                    raise TemplateError("the plan's quoting does not match this command; compile the runbook again")
                if context == JSON:
                    child = child.node  # JSON is written by _quote_json itself, not by `tojson`
            output.nodes[position] = nodes.Filter(
                child, _QUOTE_FILTERS[context], [], [], None, None, lineno=child.lineno
            )
    return ast


@functools.lru_cache(maxsize=None)
def environment(shell: bool | str = False) -> Environment:
    """The sandboxed environment (cached): `shell=True` accepts only quoted command values;
    `shell=QUESTION` shows a value's line breaks as symbols."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined,
        finalize=_finalize_shell if shell is True else _finalize_question if shell == QUESTION else _finalize_text,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["raw"] = _raw
    for name in _QUOTE_FILTERS.values():
        env.filters[name] = _pass_context(globals()[name]) if name in _CONTEXT_FILTERS else globals()[name]
    env.filters["shell_quote"] = lambda v: shlex.quote(_text(v))
    env.filters["tojson"] = lambda v: json.dumps(v)
    return env


def _describe(exc: BaseException) -> str:
    """One line for a Jinja exception."""
    if isinstance(exc, TemplateError):
        return str(exc)
    name = type(exc).__name__
    message = getattr(exc, "message", None) or str(exc)
    if name == "UndefinedError":
        return message
    if name == "TemplateSyntaxError":
        return "template syntax error: %s" % message
    if name == "SecurityError":
        return "not allowed in a runbook template: %s" % message
    return "%s: %s" % (name, message)


def syntax_error_line(exc: BaseException) -> int | None:
    """The line (1-based, within the template) of a Jinja syntax error, if known."""
    return getattr(exc, "lineno", None)


@functools.lru_cache(maxsize=4096)
def _compile(source: str, shell: bool | str, quoting: tuple[str, ...] = ()) -> Template:
    try:
        env = environment(shell)
        template = _precompiled_template(env, TEMPLATE, source, shell, quoting)
        if template is not None:
            return template
        return env.from_string(_template_ast(env, source, shell, quoting))
    except Exception as exc:  # TemplateSyntaxError and friends
        raise TemplateError(_describe(exc)) from None


def _template_ast(env: Environment, source: str, shell: bool | str, quoting: Sequence[str]) -> nodes.Template:
    """The syntax tree a template is compiled from: a copy of the one `parse` keeps (the same
    source is lexed and parsed once in a process, whether the compiler or the runtime asks
    first), and for a command each value wrapped in the quoting the plan records."""
    ast = _copy_tree(parse(source), env)
    if shell is True:
        return _quote_outputs(ast, quoting)
    return ast


def _copy_tree(node: _Tree, env: Environment) -> _Tree:
    """A copy of a parsed syntax tree for `env` (the parser's environments differ only in what
    code generation uses). Jinja's code generation folds constants in place and the quoting
    wraps values, so the tree `parse` shares is never compiled itself; copying costs a fifth to
    a tenth of parsing again."""
    from jinja2.nodes import Node

    copy = object.__new__(type(node))
    fields = {}
    for name, value in node.__dict__.items():
        if isinstance(value, Node):
            value = _copy_tree(value, env)
        elif type(value) is list:
            value = [_copy_tree(item, env) if isinstance(item, Node) else item for item in value]
        fields[name] = value
    if "environment" in fields:
        fields["environment"] = env
    copy.__dict__.update(fields)
    return copy


def _expression_ast(env: Environment, source: str) -> nodes.Template:
    """The template Jinja's `compile_expression` builds for an expression: `result = (expr)`."""
    from jinja2 import nodes
    from jinja2.exceptions import TemplateSyntaxError
    from jinja2.parser import Parser

    parser = Parser(env, source, state="variable")
    expr = parser.parse_expression()
    if not parser.stream.eos:
        raise TemplateSyntaxError("chunk after expression", parser.stream.current.lineno, None, None)
    expr.set_environment(env)
    return nodes.Template([nodes.Assign(nodes.Name("result", "store"), expr, lineno=1)], lineno=1)


@functools.lru_cache(maxsize=8192)
def parse(source: str) -> nodes.Template:
    """Parse a template and return its AST (cached and shared: never modify it); raises
    TemplateError with a one-line message."""
    try:
        return environment(False).parse(source)
    except Exception as exc:
        err = TemplateError(_describe(exc))
        err.lineno = syntax_error_line(exc)
        raise err from None


@functools.lru_cache(maxsize=8192)
def analyze(source: str) -> tuple[frozenset[str], frozenset[str]]:
    """(names read from the context, names called as functions) of a template; cached."""
    from jinja2 import nodes

    ast = parse(source)
    called = frozenset(
        call.node.name for call in ast.find_all(nodes.Call) if isinstance(call.node, nodes.Name)
    )
    return frozenset(names_used(ast)), called - JINJA_GLOBALS


def names_used(ast: nodes.Node) -> set[str]:
    """Variables a parsed template reads from its context.

    A direct walk of the syntax tree: names read, less names the template sets itself (loop
    variables, `set`, macro parameters). jinja2.meta would generate the template's Python code
    just to answer this, which costs several times more.
    """
    from jinja2 import nodes

    loaded: set[str] = set()
    stored: set[str] = set()
    for name in ast.find_all(nodes.Name):
        (loaded if name.ctx == "load" else stored).add(name.name)
    return loaded - stored - JINJA_GLOBALS


def calls(ast: nodes.Node, functions: Container[str]) -> list[tuple[str, Any]]:
    """(function, first argument) for every call of one of `functions` with a constant argument.

    A call with a non-constant argument gives (function, None).
    """
    from jinja2 import nodes

    found = []
    for call in ast.find_all(nodes.Call):
        if isinstance(call.node, nodes.Name) and call.node.name in functions:
            arg = call.args[0] if call.args else None
            found.append((call.node.name, arg.value if isinstance(arg, nodes.Const) else None))
    return found


def output_fields(ast: nodes.Node) -> Iterator[str]:
    """The field named right after each `previous_node(…)` call (`.stdout`, `['stdout']`)."""
    from jinja2 import nodes

    kinds: tuple[type[nodes.Getattr | nodes.Getitem], ...] = (nodes.Getattr, nodes.Getitem)
    for access in ast.find_all(kinds):
        call = access.node
        if isinstance(call, nodes.Call) and isinstance(call.node, nodes.Name) and call.node.name == "previous_node":
            if isinstance(access, nodes.Getattr):
                yield access.attr
            elif isinstance(access.arg, nodes.Const) and isinstance(access.arg.value, str):
                yield access.arg.value


def outputs_read(node: Node, field: str) -> list[str | None]:
    """The ids of the steps whose outputs a field of a plan node reads (for `plan`: "from
    build's output"); empty when the field reads none."""
    if field not in node.runtime_templates:
        return []
    found = []
    for text in strings(getattr(node, field)):
        if is_template(text):
            for arg in _previous_nodes(text):
                if arg not in found:
                    found.append(arg)
    return found


@functools.lru_cache(maxsize=4096)
def _previous_nodes(text: str) -> tuple[str | None, ...]:
    """The first argument of each `previous_node(…)` call of a template (None when not constant)."""
    if _precompiled is not None:
        found = _precompiled.reads(_key(READS, text))
        if found is not None:
            return found
    return tuple(arg for _, arg in calls(parse(text), ("previous_node",)))


def render(source: str, values: Mapping[str, Any], shell: bool | str = False, quoting: Sequence[str] = ()) -> str:
    """Render one template string with `values`; raises TemplateError.

    `shell=True` renders a command: `quoting` gives, for each `{{ … }}` in order, where it
    stands (WORD, SINGLE, DOUBLE, RAW or JSON), as the compiler recorded it in the plan.
    """
    if not is_template(source):
        return source
    template = _compile(source, shell, tuple(quoting) if shell is True else ())
    try:
        return template.render(values)
    except Exception as exc:
        raise TemplateError(_describe(exc)) from None


def render_command(source: str, values: Mapping[str, Any], quoting: Sequence[str] = ()) -> tuple[str, dict[str, str]]:
    """Render a command: (its text, the private environment it needs). A secret's value goes
    into that environment alone (ENV_WORD, ENV_SINGLE, ENV_DOUBLE); the text refers to it
    (render_node keeps the two together as a CommandText)."""
    if not is_template(source):
        return source, {}
    collected: dict[str, str] = {}
    text = render(source, dict(values, **{_SECRET_ENV: collected}), shell=True, quoting=quoting)
    return text, collected


def render_native(source: str, values: Mapping[str, Any]) -> Any:
    """Like render, but a field that is a single `{{ expr }}` keeps the expression's type."""
    if not is_template(source):
        return source
    match = _SINGLE_EXPR.match(source)
    if match and "{{" not in match.group("expr") and "}}" not in match.group("expr"):
        return evaluate(match.group("expr"), values)
    return render(source, values)


@functools.lru_cache(maxsize=4096)
def _expression(source: str) -> TemplateExpression:
    try:
        from jinja2.environment import TemplateExpression

        env = environment(False)
        template = _precompiled_template(env, EXPRESSION, source)
        if template is None:
            template = env.from_string(_expression_ast(env, source))
        return TemplateExpression(template, False)  # as compile_expression(undefined_to_none=False)
    except Exception as exc:
        raise TemplateError(_describe(exc)) from None


def evaluate(expression: str, values: Mapping[str, Any]) -> Any:
    """Evaluate a Jinja expression (no braces) and return its value."""
    compiled = _expression(expression.strip())
    try:
        result = compiled(values)
        if type(result).__name__ == "StrictUndefined":
            str(result)  # raises UndefinedError naming the variable
        return result
    except Exception as exc:
        raise TemplateError(_describe(exc)) from None


def strings(value: object) -> Iterator[str]:
    """Every string inside a field's value (a string, or lists and dicts of them)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)


def render_value(value: Any, values: Mapping[str, Any], shell: bool | str = False, native: bool = False) -> Any:
    """Render templates inside strings, lists and dicts (keys stay as written)."""
    if isinstance(value, str):
        if native:
            return render_native(value, values)
        return render(value, values, shell=shell)
    if isinstance(value, list):
        return [render_value(v, values, shell, native) for v in value]
    if isinstance(value, dict):
        return {k: render_value(v, values, shell, native) for k, v in value.items()}
    return value


def strip_braces(source: str) -> str:
    """`{{ expr }}` → `expr`; an expression written without braces is returned as is."""
    match = _SINGLE_EXPR.match(source)
    if match:
        return match.group("expr").strip()
    return source.strip()


def render_field(node: Node, field: str, values: Mapping[str, Any]) -> Any:
    """Render one templated field of a plan node, converted to the field's type."""
    value = getattr(node, field)
    if field == "command":
        return render_command(value, values, node.command_quoting)[0]  # secrets: the references alone
    if field in ("function_params", "plugin_config"):
        return render_value(value, values, native=True)
    if field == "timeout":
        return _typed(render_native(value, values), "float", field)
    if field == "critical":
        return _typed(render_native(value, values), "bool", field)
    if field in QUESTION_FIELDS:
        return render(value, values, shell=QUESTION) if isinstance(value, str) else value
    return render_value(value, values)


def _typed(value: Any, kind: str, field: str) -> Any:
    from .variables import VariableError, coerce

    try:
        result = coerce({"type": kind}, value)
    except VariableError as exc:
        raise TemplateError("%s: %s" % (field, exc)) from None
    if kind == "float":
        from .durations import DurationError, check_duration

        try:
            check_duration(result, field)
        except DurationError as exc:  # finite, positive, at most the documented maximum
            raise TemplateError(str(exc)) from None
        if result.is_integer():
            result = int(result)
    return result


def render_node(node: Node, values: Mapping[str, Any], at_start: bool = False) -> Node:
    """A copy of `node` with every field still holding a template rendered: those that wait
    for run-time variables, or with `at_start` those rendered when the step starts
    (`runtime_templates`: `values` then also holds `runbook_dir` and `previous_node`). A
    command with secrets becomes a CommandText (see command_env)."""
    key = "runtime_templates" if at_start else "templates"
    pending = getattr(node, key)
    if not pending:
        return node
    changes: dict[str, Any] = {}
    for field in pending:
        if field == "command":
            # `command` is listed in `pending` only when it holds a template, so it is a str here
            # (Node.command is Optional for the steps that have no command)
            text, private = render_command(node.command, values, node.command_quoting)  # type: ignore[arg-type]
            changes[field] = CommandText(text, private) if private else text
        else:
            changes[field] = render_field(node, field, values)
    changes[key] = ()
    return node.copy(**changes)


class CommandText(str):
    """A rendered command whose secrets wait in `private_env` (name -> value) for the command's
    environment: the text, which is what plans, events and `sh -c` see, holds only references.
    The value is never a field of its own, so nothing that writes a node out can carry it."""

    private_env: dict[str, str]

    def __new__(cls, text: str, private_env: Mapping[str, str]) -> CommandText:
        self = super().__new__(cls, text)
        self.private_env = dict(private_env)
        return self


def command_env(node: Node) -> dict[str, str] | None:
    """The environment a Command step's command gets from its node: `env`, plus the private
    variables its secrets travel in (CommandText)."""
    private = getattr(node.command, "private_env", None)
    if not private:
        return node.env
    return dict(node.env or {}, **private)


# -- templates compiled when a bundle is built ---------------------------------------------------
# `playbook compile` puts into the bundle the Python code Jinja generates for every template and
# expression the host may compile for the plan (`precompile`): as source (PRECOMPILED_SOURCES,
# JSON) and, for each bytecode tree, compiled by that tree's interpreter (PRECOMPILED_CODE,
# marshal, which is only read by the interpreter version that wrote it). The host then skips
# Jinja's lexer, parser and code generator. An entry is keyed by the SHA-256 of what it was
# compiled from (kind, source, shell, quoting); a store holds the signature of the environments
# it was compiled for (Jinja's version and the sandbox's settings, filters and finalize). A store
# with another signature is not used; an entry that is missing or does not load is compiled from
# its source here, as without a store.
PRECOMPILED_FORMAT = 1
PRECOMPILED_SOURCES = "precompiled/templates.json"  # in the archive
PRECOMPILED_CODE = "precompiled/templates.marshal"  # in each bytecode tree (py39/…)
TEMPLATE = "template"  # a field's template; shell and quoting as `_compile`
EXPRESSION = "expression"  # an expression as `evaluate` compiles it (`when`, single `{{ … }}`)
READS = "reads"  # the steps a run-time template reads the outputs of (`outputs_read`)

_precompiled = None  # the running bundle's Precompiled, if any


def _key(kind: str, source: str, shell: bool | str = False, quoting: Iterable[str] = ()) -> str:
    import hashlib

    return hashlib.sha256(json.dumps([kind, source, shell, list(quoting)]).encode("utf-8")).hexdigest()


def precompiled_signature() -> str:
    """What generated code depends on besides a template's own source: Jinja's version and the
    settings of both environments. A store compiled for another signature is never used."""
    import hashlib

    import jinja2

    parts: list = [PRECOMPILED_FORMAT, jinja2.__version__]
    for shell in (False, True, QUESTION):
        env = environment(shell)
        parts.append(
            (
                "%s.%s" % (type(env).__module__, type(env).__qualname__),
                env.undefined.__name__,
                getattr(env.finalize, "__name__", None),
                env.autoescape,
                env.optimized,
                env.is_async,
                env.keep_trailing_newline,
                env.trim_blocks,
                env.lstrip_blocks,
                env.newline_sequence,
                env.block_start_string,
                env.block_end_string,
                env.variable_start_string,
                env.variable_end_string,
                env.comment_start_string,
                env.comment_end_string,
                env.line_statement_prefix,
                env.line_comment_prefix,
                sorted(env.filters),
                sorted(env.tests),
                sorted(env.extensions),
            )
        )
    return hashlib.sha256(repr(parts).encode("utf-8")).hexdigest()


class Precompiled:
    """The templates a bundle carries compiled. `read(name)` returns an archive member's bytes;
    `tree` is the bytecode tree the running interpreter uses (None: no tree, or not its
    version). The store is read when first asked for an entry, each entry loaded when asked for."""

    def __init__(self, read: Callable[[str], bytes], tree: str | None = None) -> None:
        self._read = read
        self._tree = tree
        # ({key: marshalled code (bytes) or generated Python source (str)}, {key: reads}) once read
        self._loaded: _Entries | None = None

    def _entries(self) -> _Entries:
        if self._loaded is None:
            self._loaded = self._load()
        return self._loaded

    def _load(self) -> _Entries:
        signature = precompiled_signature()
        loaders = [self._load_sources]
        if self._tree:
            loaders.insert(0, self._load_code)
        for load in loaders:
            try:
                store = load()
                if store["format"] == PRECOMPILED_FORMAT and store["signature"] == signature:
                    return dict(store["code"]), dict(store["reads"])
            except Exception:  # absent or damaged: the next one, else none
                continue
        return {}, {}

    def _load_code(self) -> Any:
        import marshal

        return marshal.loads(self._read("%s/%s" % (self._tree, PRECOMPILED_CODE)))

    def _load_sources(self) -> Any:
        return json.loads(self._read(PRECOMPILED_SOURCES).decode("utf-8"))

    def code(self, key: str) -> CodeType | None:
        """The code object of an entry, or None (missing, or it does not load)."""
        found = self._entries()[0].get(key)
        try:
            if isinstance(found, bytes):
                import marshal

                code = marshal.loads(found)
            elif isinstance(found, str):
                code = compile(found, "<template>", "exec", dont_inherit=True)
            else:
                return None
        except Exception:
            return None
        import types

        return code if isinstance(code, types.CodeType) else None

    def reads(self, key: str) -> tuple[str | None, ...] | None:
        """The `previous_node` arguments of a run-time template (a tuple), or None."""
        found = self._entries()[1].get(key)
        if isinstance(found, (list, tuple)) and all(arg is None or isinstance(arg, str) for arg in found):
            return tuple(found)
        return None


def use_precompiled(store: Precompiled | None) -> None:
    """Compile templates from `store` (a Precompiled; None: from their sources) from now on."""
    global _precompiled
    _precompiled = store
    _compile.cache_clear()
    _expression.cache_clear()
    _previous_nodes.cache_clear()


def _precompiled_template(
    env: Environment, kind: str, source: str, shell: bool | str = False, quoting: Sequence[str] = ()
) -> Template | None:
    """The template of a precompiled entry, or None (no store, no entry, or it does not load)."""
    if _precompiled is None:
        return None
    code = _precompiled.code(_key(kind, source, shell, quoting))
    if code is None:
        return None
    try:
        return env.template_class.from_code(env, code, env.make_globals(None), None)
    except Exception:  # compiled from the source instead
        return None


def precompile(plan: Plan) -> dict[str, Any]:
    """What a bundle of `plan` carries for its host: {"format", "signature", "code": {key:
    Python source generated by Jinja}, "reads": {key: [previous_node arguments]}} for every
    template and expression of the plan that is compiled there (what `render_field`, `bind`,
    `evaluate` and `outputs_read` meet). One that does not compile is left out: the host then
    reports its error as it would without a store."""
    wanted: dict[str, tuple[str, str, bool | str, tuple[str, ...]]] = {}

    def text(source: object, shell: bool | str = False, quoting: Iterable[str] = ()) -> None:
        if is_template(source):
            wanted[_key(TEMPLATE, source, shell, quoting)] = (TEMPLATE, source, shell, tuple(quoting))

    def native(value: object) -> None:
        for source in strings(value):
            match = _SINGLE_EXPR.match(source) if is_template(source) else None
            if match and "{{" not in match.group("expr") and "}}" not in match.group("expr"):
                expression(match.group("expr"))
            else:
                text(source)

    def expression(source: str) -> None:
        wanted[_key(EXPRESSION, source.strip())] = (EXPRESSION, source.strip(), False, ())

    for key in plan.runbook.get("templates", ()):
        text(plan.runbook.get(key))
    native(plan.plugin_config)
    reads: dict[str, list[str | None]] = {}
    for node in plan.nodes:
        for field in tuple(node.templates) + tuple(node.runtime_templates):
            value = getattr(node, field)
            if field == "command":
                text(value, True, node.command_quoting)
            elif field in ("function_params", "plugin_config", "timeout", "critical"):
                native(value)
            elif field in QUESTION_FIELDS:
                text(value, QUESTION)
            else:
                for source in strings(value):
                    text(source)
        for field in node.runtime_templates:
            for source in strings(getattr(node, field)):
                if is_template(source):
                    try:
                        reads[_key(READS, source)] = list(_previous_nodes(source))
                    except TemplateError:
                        pass
        if node.when is not None and node.when_value is None:
            expression(node.when)
    code: dict[str, str] = {}
    for key, (kind, source, shell, quoting) in wanted.items():
        try:
            env = environment(shell)
            ast = _expression_ast(env, source) if kind == EXPRESSION else _template_ast(env, source, shell, quoting)
            code[key] = env.compile(ast, raw=True)
        except Exception:
            continue
    return {
        "format": PRECOMPILED_FORMAT,
        "signature": precompiled_signature(),
        "code": dict(sorted(code.items())),
        "reads": dict(sorted(reads.items())),
    }
