"""Sandboxed Jinja for runbook fields.

- Every template runs in an ``ImmutableSandboxedEnvironment`` with strict undefined names.
- In shell commands every ``{{ … }}`` value is shell-quoted unless marked ``| raw``, so a
  variable can never add a second command.
- A field that is one single ``{{ expression }}`` keeps the expression's type (a list stays a
  list), which function parameters then convert to their declared types.
"""

import functools
import json
import re
import shlex

TEMPLATE_MARKERS = ("{{", "{%", "{#")
_SINGLE_EXPR = re.compile(r"^\s*\{\{-?(?P<expr>.*?)-?\}\}\s*$", re.S)

# Names every template may use without declaring them (Jinja's own globals).
JINJA_GLOBALS = frozenset(("range", "dict", "lipsum", "cycler", "joiner", "namespace", "true", "false", "none", "True", "False", "None"))


class TemplateError(Exception):
    """A template that cannot be parsed or rendered."""


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
    if isinstance(value, Raw):
        return str(value)
    return shlex.quote(_text(value))


def _raw(value):
    return Raw(_text(value))


def _in_single_quotes(value):
    return Raw(_text(value).replace("'", "'\\''"))


def _in_double_quotes(value):
    text = _text(value)
    for char in ("\\", '"', "$", "`"):
        text = text.replace(char, "\\" + char)
    return Raw(text)


_PIECES = re.compile(r"(\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\})", re.S)
_EXPR = re.compile(r"^\{\{(-?)(.*?)(-?)\}\}$", re.S)
_RAW_AT_END = re.compile(r"\|\s*raw\s*$")


def shell_source(source):
    """Make every `{{ … }}` of a command safe where it stands.

    Outside quotes a value is shell-quoted (by `finalize`); inside '…' or "…" that the author
    wrote, the value is escaped for that kind of quote instead, so no value can end the quote
    and run a second command. `| raw` values are inserted as they are.
    """
    out = []
    state = None  # None, "'" or '"'
    escaped = False
    for piece in _PIECES.split(source):
        if piece.startswith("{{"):
            match = _EXPR.match(piece)
            if match and state and not _RAW_AT_END.search(match.group(2)):
                kind = "_in_single_quotes" if state == "'" else "_in_double_quotes"
                piece = "{{%s (%s) | %s %s}}" % (match.group(1), match.group(2).strip(), kind, match.group(3))
            out.append(piece)
            escaped = False
            continue
        if piece.startswith("{%") or piece.startswith("{#"):
            out.append(piece)
            continue
        for char in piece:
            if escaped:
                escaped = False
            elif state is None:
                if char == "\\":
                    escaped = True
                elif char in "'\"":
                    state = char
            elif state == "'":
                if char == "'":
                    state = None
            elif char == "\\":
                escaped = True
            elif char == '"':
                state = None
        out.append(piece)
    return "".join(out)


@functools.lru_cache(maxsize=None)
def environment(shell=False):
    """The sandboxed environment (cached): `shell=True` quotes every output value."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined,
        finalize=_finalize_shell if shell else _finalize_text,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["raw"] = _raw
    env.filters["_in_single_quotes"] = _in_single_quotes
    env.filters["_in_double_quotes"] = _in_double_quotes
    env.filters["shell_quote"] = lambda v: shlex.quote(_text(v))
    env.filters["tojson"] = lambda v: json.dumps(v)
    return env


def _describe(exc):
    """One line for a Jinja exception."""
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
def _compile(source, shell):
    try:
        return environment(shell).from_string(shell_source(source) if shell else source)
    except Exception as exc:  # TemplateSyntaxError and friends
        raise TemplateError(_describe(exc)) from None


def parse(source):
    """Parse a template and return its AST; raises TemplateError with a one-line message."""
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

    loaded = set()
    stored = set()
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


def render(source, values, shell=False):
    """Render one template string with `values`; raises TemplateError."""
    if not is_template(source):
        return source
    template = _compile(source, shell)
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
        return render(value, values, shell=True)
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
        if result <= 0:
            raise TemplateError("%s must be a positive number of seconds, got %s" % (field, value))
        if result.is_integer():
            result = int(result)
    return result


def render_node(node, values):
    """A copy of `node` with every field still holding a template rendered."""
    if not node.templates:
        return node
    changes = {field: render_field(node, field, values) for field in node.templates}
    changes["templates"] = ()
    return node.copy(**changes)
