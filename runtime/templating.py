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

TEMPLATE_MARKERS = ("{{", "{%", "{#")
_SINGLE_EXPR = re.compile(r"^\s*\{\{-?(?P<expr>.*?)-?\}\}\s*$", re.S)

# Names every template may use without declaring them (Jinja's own globals).
JINJA_GLOBALS = frozenset(("range", "dict", "lipsum", "cycler", "joiner", "namespace", "true", "false", "none", "True", "False", "None"))


# Fields that may read earlier steps' outputs (`previous_node('x').stdout`) and the runbook's
# directory (`runbook_dir`): they stay templates until the step is about to start.
RUN_TIME_FIELDS = ("command", "env", "cwd", "function_params", "prompt_before", "prompt_after")
RUN_TIME_KEYS = "command_name, env, cwd, function_params, prompt_before and prompt_after"
RUN_TIME_NAMES = frozenset(("previous_node", "runbook_dir"))
RUNBOOK_DIR_ENV = "PLAYBOOK_RUNBOOK_DIR"  # the runbook's directory, in every command's environment


class TemplateError(Exception):
    """A template that cannot be parsed or rendered."""

    lineno: int | None = None  # the line of a syntax error, within the template


class Raw(str):
    """A value marked `| raw`: inserted into a shell command without quoting."""


def is_template(value):
    return isinstance(value, str) and any(marker in value for marker in TEMPLATE_MARKERS)


def _text(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _finalize_text(value):
    return _text(value)


def _finalize_shell(value):
    # Every value of a command goes through one of the quoting filters below, as the plan
    # records; any other value reaching the output means the template and the plan disagree.
    if isinstance(value, Quoted):
        return str(value)
    raise TemplateError("a value of this command has no recorded quoting; compile the runbook again")


def _raw(value):
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
QUOTING = (WORD, PLAIN, SINGLE, DOUBLE, RAW, JSON)
# Characters a PLAIN value may consist of to stand unquoted: shlex.quote's safe set without "=",
# so that no value can make its word an assignment (`set -k` takes NAME=value from anywhere).
PLAIN_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+:,./-")


class Quoted(str):
    """A command value after its quoting: the only kind of value a command's output accepts."""


def _command_text(value):
    text = _text(value)
    if "\x00" in text:
        raise TemplateError("a value of this command contains a NUL character, which no command can receive")
    return text


def _quote_word(value):
    return Quoted("'%s'" % _command_text(value).replace("'", "'\\''"))


def _quote_plain(value):
    text = _command_text(value)
    if text and all(char in PLAIN_CHARACTERS for char in text):
        return Quoted(text)
    return _quote_word(text)


def _quote_single(value):
    return Quoted(_command_text(value).replace("'", "'\\''"))


def _quote_double(value):
    text = _command_text(value)
    for char in ("\\", '"', "$", "`"):
        text = text.replace(char, "\\" + char)
    return Quoted(text)


def _quote_raw(value):
    return Quoted(_command_text(value))


def _quote_json(value):
    _command_text(value)
    return Quoted(json.dumps(value, ensure_ascii=False))


_QUOTE_FILTERS = {
    WORD: "_quote_word",
    PLAIN: "_quote_plain",
    SINGLE: "_quote_single",
    DOUBLE: "_quote_double",
    RAW: "_quote_raw",
    JSON: "_quote_json",
}


def output_expressions(ast):
    """Every `{{ … }}` expression of a parsed template, in the order they appear in the text."""
    from jinja2 import nodes

    for output in ast.find_all(nodes.Output):
        for child in output.nodes:
            if not isinstance(child, nodes.TemplateData):
                yield child


def is_filtered(expression, name):
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


def _quote_outputs(ast, quoting):
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
            if context in (RAW, JSON) and not is_filtered(child, "raw" if context == RAW else "tojson"):
                raise TemplateError("the plan's quoting does not match this command; compile the runbook again")
            if context == JSON:
                child = child.node  # JSON is written by _quote_json itself, not by `tojson`
            output.nodes[position] = nodes.Filter(
                child, _QUOTE_FILTERS[context], [], [], None, None, lineno=child.lineno
            )
    return ast


@functools.lru_cache(maxsize=None)
def environment(shell=False):
    """The sandboxed environment (cached): `shell=True` accepts only quoted command values."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined,
        finalize=_finalize_shell if shell else _finalize_text,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["raw"] = _raw
    for name in _QUOTE_FILTERS.values():
        env.filters[name] = globals()[name]
    env.filters["shell_quote"] = lambda v: shlex.quote(_text(v))
    env.filters["tojson"] = lambda v: json.dumps(v)
    return env


def _describe(exc):
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


def syntax_error_line(exc):
    """The line (1-based, within the template) of a Jinja syntax error, if known."""
    return getattr(exc, "lineno", None)


@functools.lru_cache(maxsize=4096)
def _compile(source, shell, quoting=()):
    try:
        env = environment(shell)
        if shell:
            return env.from_string(_quote_outputs(env.parse(source), quoting))
        return env.from_string(source)
    except Exception as exc:  # TemplateSyntaxError and friends
        raise TemplateError(_describe(exc)) from None


@functools.lru_cache(maxsize=8192)
def parse(source):
    """Parse a template and return its AST (cached and shared: never modify it); raises
    TemplateError with a one-line message."""
    try:
        return environment(False).parse(source)
    except Exception as exc:
        err = TemplateError(_describe(exc))
        err.lineno = syntax_error_line(exc)
        raise err from None


@functools.lru_cache(maxsize=8192)
def analyze(source):
    """(names read from the context, names called as functions) of a template; cached."""
    from jinja2 import nodes

    ast = parse(source)
    called = frozenset(
        call.node.name for call in ast.find_all(nodes.Call) if isinstance(call.node, nodes.Name)
    )
    return frozenset(names_used(ast)), called - JINJA_GLOBALS


def names_used(ast):
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


def calls(ast, functions):
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


def output_fields(ast):
    """The field named right after each `previous_node(…)` call (`.stdout`, `['stdout']`)."""
    from jinja2 import nodes

    for access in ast.find_all((nodes.Getattr, nodes.Getitem)):
        call = access.node
        if isinstance(call, nodes.Call) and isinstance(call.node, nodes.Name) and call.node.name == "previous_node":
            if isinstance(access, nodes.Getattr):
                yield access.attr
            elif isinstance(access.arg, nodes.Const) and isinstance(access.arg.value, str):
                yield access.arg.value


def outputs_read(node, field):
    """The ids of the steps whose outputs a field of a plan node reads (for `plan`: "from
    build's output"); empty when the field reads none."""
    if field not in node.runtime_templates:
        return []
    found = []
    for text in strings(getattr(node, field)):
        if is_template(text):
            for _, arg in calls(parse(text), ("previous_node",)):
                if arg not in found:
                    found.append(arg)
    return found


def render(source, values, shell=False, quoting=()):
    """Render one template string with `values`; raises TemplateError.

    `shell=True` renders a command: `quoting` gives, for each `{{ … }}` in order, where it
    stands (WORD, SINGLE, DOUBLE, RAW or JSON), as the compiler recorded it in the plan.
    """
    if not is_template(source):
        return source
    template = _compile(source, shell, tuple(quoting) if shell else ())
    try:
        return template.render(values)
    except Exception as exc:
        raise TemplateError(_describe(exc)) from None


def render_native(source, values):
    """Like render, but a field that is a single `{{ expr }}` keeps the expression's type."""
    if not is_template(source):
        return source
    match = _SINGLE_EXPR.match(source)
    if match and "{{" not in match.group("expr") and "}}" not in match.group("expr"):
        return evaluate(match.group("expr"), values)
    return render(source, values)


@functools.lru_cache(maxsize=4096)
def _expression(source):
    try:
        return environment(False).compile_expression(source, undefined_to_none=False)
    except Exception as exc:
        raise TemplateError(_describe(exc)) from None


def evaluate(expression, values):
    """Evaluate a Jinja expression (no braces) and return its value."""
    compiled = _expression(expression.strip())
    try:
        result = compiled(values)
        if type(result).__name__ == "StrictUndefined":
            str(result)  # raises UndefinedError naming the variable
        return result
    except Exception as exc:
        raise TemplateError(_describe(exc)) from None


def strings(value):
    """Every string inside a field's value (a string, or lists and dicts of them)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)


def render_value(value, values, shell=False, native=False):
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


def strip_braces(source):
    """`{{ expr }}` → `expr`; an expression written without braces is returned as is."""
    match = _SINGLE_EXPR.match(source)
    if match:
        return match.group("expr").strip()
    return source.strip()


def render_field(node, field, values):
    """Render one templated field of a plan node, converted to the field's type."""
    value = getattr(node, field)
    if field == "command":
        return render(value, values, shell=True, quoting=node.command_quoting)
    if field in ("function_params", "plugin_config"):
        return render_value(value, values, native=True)
    if field == "timeout":
        return _typed(render_native(value, values), "float", field)
    if field == "critical":
        return _typed(render_native(value, values), "bool", field)
    return render_value(value, values)


def _typed(value, kind, field):
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


def render_node(node, values, at_start=False):
    """A copy of `node` with every field still holding a template rendered: those that wait
    for run-time variables, or with `at_start` those rendered when the step starts
    (`runtime_templates`: `values` then also holds `runbook_dir` and `previous_node`)."""
    key = "runtime_templates" if at_start else "templates"
    pending = getattr(node, key)
    if not pending:
        return node
    changes = {field: render_field(node, field, values) for field in pending}
    changes[key] = ()
    return node.copy(**changes)
