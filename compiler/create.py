"""`playbook create`: a new runbook.

- Without a terminal (or when the author adds no step): the commented scaffold in templates/.
- On a terminal: the interactive wizard of Playbook 1.x — title, author, description, then one
  node after the other (Manual, Command or Function), with dependencies and `critical`. Each node
  is checked by compiling the runbook so far, so the file written always validates.

Prompts go through click (click.prompt / click.confirm): Ctrl-D or Ctrl-C at any prompt raises
click.Abort, and the caller writes nothing.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
from importlib import resources
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import click

if TYPE_CHECKING:
    from playbook.runtime.plugins import ParameterDef

    from .source import Diagnostic

NODE_KINDS = {"m": "Manual", "c": "Command", "f": "Function"}
RESERVED_IDS = ("runbook", "variables")
DEP_SUFFIXES = ("success", "failure", "done")
NO_DEPS = ("-", "none")
DEFAULT_PROMPT_AFTER = "Continue?"
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def default_name(title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "runbook"
    return "%s.playbook.toml" % slug


def new_identity(title: str) -> str:
    """A fresh `[runbook] id`: the title as a slug and a random suffix (two runbooks written
    with one title still differ)."""
    import secrets

    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40].strip("-") or "runbook"
    return "%s-%s" % (slug, secrets.token_hex(3))


# -- TOML text ---------------------------------------------------------------------------------
def _toml_string(text: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes; TOML also forbids a raw DEL.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_string(key)


def toml_value(value: Any) -> str:
    """A Python value (str, bool, int, float, list, dict) as TOML text (inline)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[%s]" % ", ".join(toml_value(v) for v in value)
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ %s }" % ", ".join("%s = %s" % (toml_key(str(k)), toml_value(v)) for k, v in value.items())
    return _toml_string(str(value))


def _multiline(text: str) -> str:
    """A string field: a basic string, or a multi-line one when the text has line breaks."""
    if "\n" in text and '"""' not in text and "\\" not in text and "\x7f" not in text:
        return '"""\n%s"""' % (text if text.endswith("\n") else text + "\n")
    return _toml_string(text)


def _now(now: datetime.datetime | None = None) -> str:
    now = now or datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return now.isoformat().replace("+00:00", "Z")


# -- the commented scaffold ----------------------------------------------------------------------
def render(title: str, author: str, description: str, now: datetime.datetime | None = None) -> str:
    text = resources.files("playbook.templates").joinpath("create.playbook.toml").read_text("utf-8")
    replacements = {
        "@TITLE_COMMENT@": " ".join(title.split()),
        "@TITLE@": _toml_string(title),
        "@ID@": _toml_string(new_identity(title)),
        "@DESCRIPTION@": _toml_string(description),
        "@AUTHOR@": _toml_string(author),
        "@CREATED_AT@": _toml_string(_now(now)),
    }
    for marker, value in replacements.items():
        text = text.replace(marker, value)
    return text


def write_runbook(path: str, title: str, author: str, description: str) -> None:
    write_text(path, render(title, author, description))


def write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


# -- runbooks made of nodes ----------------------------------------------------------------------
class NodeDraft:
    """One node as the wizard collected it: id, type and its fields in file order."""

    def __init__(self, node_id: str, node_type: str, fields: Mapping[str, Any] | None = None) -> None:
        self.id = node_id
        self.type = node_type
        self.fields = dict(fields or {})


def render_nodes(
    title: str, author: str, description: str, nodes: list[NodeDraft], now: datetime.datetime | None = None
) -> str:
    """The text of a runbook with these nodes (every node states its depends_on)."""
    lines = [
        "# %s" % " ".join(title.split()),
        "#",
        "# Written by `playbook create`. Check it with `playbook validate FILE`, see what will run",
        "# with `playbook plan FILE`, run it with `playbook run FILE`.",
        "",
        "[runbook]",
        "title = %s" % _toml_string(title),
        "id = %s" % _toml_string(new_identity(title)),
        "description = %s" % _toml_string(description),
        'version = "0.1.0"',
        "author = %s" % _toml_string(author),
        "created_at = %s" % _toml_string(_now(now)),
    ]
    for node in nodes:
        lines.append("")
        lines.append("[%s]" % toml_key(node.id))
        lines.append("type = %s" % _toml_string(node.type))
        for key, value in node.fields.items():
            if isinstance(value, str) and key in ("description", "command_name"):
                lines.append("%s = %s" % (key, _multiline(value)))
            else:
                lines.append("%s = %s" % (key, toml_value(value)))
    return "\n".join(lines) + "\n"


def check_text(text: str, path: str = "<new runbook>", registry: Any = None) -> list[Diagnostic]:
    """Compile a runbook text in memory; returns the error diagnostics (empty when valid)."""
    from .plan import compile_source
    from .source import CompileError, parse

    try:
        compile_source(parse(text, path, display=path), registry=registry)
    except CompileError as exc:
        return [d for d in exc.diagnostics if d.severity == "error"]
    return []


# -- answer checks (each raises click.BadParameter, and click asks again) ------------------------
def check_node_id(text: str, taken: Iterable[str]) -> str:
    from .schema import NODE_ID_RE

    node_id = text.strip()
    if not node_id:
        raise click.BadParameter("a node id is needed")
    if not NODE_ID_RE.match(node_id):
        raise click.BadParameter("%r: a node id may only contain letters, digits, '_', '-' and '.'" % node_id)
    if node_id in RESERVED_IDS:
        raise click.BadParameter("%r is reserved for the [%s] table; choose another id" % (node_id, node_id))
    if node_id in taken:
        raise click.BadParameter("there is already a node %r; node ids must be unique" % node_id)
    return node_id


def parse_depends_on(text: str, known: list[str]) -> list[str]:
    """Comma-separated dependencies → a list; `-` or `none` → []. Checked against `known` ids."""
    text = text.strip()
    if text.lower() in NO_DEPS or not text:
        return []
    entries = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        if entry in ("^", "*"):
            if not known:
                raise click.BadParameter("%r needs a node declared before this one" % entry)
            entries.append(entry)
            continue
        target, sep, suffix = entry.partition(":")
        target, suffix = target.strip(), suffix.strip()
        if sep and suffix not in DEP_SUFFIXES:
            raise click.BadParameter(
                "invalid condition %r in %r: use ID, ID:success, ID:failure or ID:done" % (suffix, entry)
            )
        if target not in known:
            hint = ("known nodes: %s" % ", ".join(known)) if known else "there are no nodes before this one"
            raise click.BadParameter("unknown node %r (%s)" % (target, hint))
        entry = "%s:%s" % (target, suffix) if sep else target
        if entry not in entries:
            entries.append(entry)
    return entries


def required_text(what: str) -> Callable[[str], str]:
    def check(text: str) -> str:
        if not text.strip():
            raise click.BadParameter("%s is needed" % what)
        return text.strip()

    return check


def param_value(pdef: ParameterDef, text: str) -> Any:
    """A parameter answer → the typed value written to the file (templates stay text)."""
    from playbook.runtime import plugins, templating

    text = text.strip()
    if templating.is_template(text):
        return text
    kind = plugins.TYPE_ALIASES.get(pdef.type, pdef.type)
    if kind == "any":
        from playbook.runtime import tomlfile

        try:
            return tomlfile.loads("v = %s" % text)["v"]
        except tomlfile.TomlError:
            return text
    try:
        value = plugins.convert_param(pdef, text)
    except plugins.PluginError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


# -- the wizard ----------------------------------------------------------------------------------
class Wizard:
    """Asks for the runbook node by node. `prompt`/`confirm`/`echo` default to click's."""

    def __init__(
        self,
        registry: Any = None,
        prompt: Callable[..., Any] | None = None,
        confirm: Callable[..., bool] | None = None,
        echo: Callable[..., None] | None = None,
    ) -> None:
        from playbook.runtime import plugins

        self.registry = registry or plugins.Registry()
        self.prompt = prompt or click.prompt
        self.confirm = confirm or click.confirm
        self.echo = echo or click.echo
        self.nodes: list[NodeDraft] = []

    # one node --------------------------------------------------------------------------------
    def ask_kind(self) -> str | None:
        default = "d" if self.nodes else "c"
        answer = self.prompt(
            "Add a node? [m]anual/[c]ommand/[f]unction/[d]one",
            default=default,
            type=click.Choice(["m", "c", "f", "d", "manual", "command", "function", "done"], case_sensitive=False),
            show_choices=False,
        )
        answer = answer.lower()[0]
        return None if answer == "d" else NODE_KINDS[answer]

    def ask_node(self, node_type: str, again: NodeDraft | None = None) -> NodeDraft:
        """Ask for one node; `again` is the draft that did not validate (its answers are the
        defaults)."""
        taken = [n.id for n in self.nodes]
        before = again.fields if again else {}
        number = len(self.nodes) + 1
        suggestion = again.id if again else "step_%d" % number
        while suggestion in taken:
            number += 1
            suggestion = "step_%d" % number
        node_id = self.prompt("  Node id", default=suggestion, value_proc=lambda t: check_node_id(t, taken))
        fields = {}
        for key, label in (("name", "  Name (optional)"), ("description", "  Description (optional)")):
            value = self.prompt(label, default=before.get(key, ""), show_default=bool(before.get(key))).strip()
            if value:
                fields[key] = value
        if node_type == "Command":
            fields["command_name"] = self.prompt(
                "  Command to run", default=before.get("command_name"), value_proc=required_text("a command")
            )
        elif node_type == "Function":
            fields.update(self.ask_function())
        previous = taken[-1] if taken else "-"
        self.echo("  Dependencies: comma-separated node ids, ID:success, ID:failure or ID:done; '-' for none.")
        fields["depends_on"] = self.prompt(
            "  Depends on", default=previous, value_proc=lambda t: parse_depends_on(t, taken)
        )
        if self.confirm("  Critical (it cannot be skipped when it fails)?", default=False):
            fields["critical"] = True
        if node_type == "Manual":
            fields["prompt_after"] = self.prompt("  Question to approve the step", default=DEFAULT_PROMPT_AFTER)
        return NodeDraft(node_id, node_type, fields)

    def ask_function(self) -> dict[str, Any]:
        from playbook.runtime import plugins

        def check_plugin(text: str) -> str:
            name = text.strip()
            try:
                self.registry.metadata(name)
            except plugins.PluginError as exc:
                raise click.BadParameter(str(exc)) from None
            return name

        names = ", ".join(self.registry.names())
        plugin = self.prompt("  Plugin (installed: %s)" % names, default="python", value_proc=check_plugin)
        functions = self.registry.metadata(plugin).functions or {}
        for fname, sig in sorted(functions.items()):
            self.echo("    %s%s" % (fname, " — %s" % sig.description if sig.description else ""))

        def check_function(text: str) -> str:
            try:
                self.registry.signature(plugin, text.strip())
            except plugins.PluginError as exc:
                raise click.BadParameter(str(exc)) from None
            return text.strip()

        default = sorted(functions)[0] if len(functions) == 1 else None
        function = self.prompt("  Function", default=default, value_proc=check_function)
        signature = self.registry.signature(plugin, function)
        params = {}
        for pname, pdef in (signature.parameters or {}).items():
            words = [pdef.type]
            words.append("required" if pdef.required else "optional, Enter to leave out")
            label = "  %s (%s)%s" % (pname, ", ".join(words), " — %s" % pdef.description if pdef.description else "")

            def convert(text: str, pdef: ParameterDef = pdef) -> Any:
                if not text.strip():
                    if pdef.required:
                        raise click.BadParameter("this parameter is required")
                    return None
                return param_value(pdef, text)

            if pdef.required:
                value = self.prompt(label, value_proc=convert)
            else:
                value = self.prompt(label, default="", show_default=False, value_proc=convert)
            if value is not None:
                params[pname] = value
        fields = {"plugin": plugin, "function": function}
        if params:
            fields["function_params"] = params
        return fields

    # the whole runbook -----------------------------------------------------------------------
    def run(self, title: str, author: str, description: str, path: str = "<new runbook>") -> str | None:
        """Ask for nodes until [d]one; returns the runbook text, or None when no node was added."""
        self.echo("")
        self.echo("Add the steps in the order they run. [d]one with no step writes a commented example.")
        while True:
            node_type = self.ask_kind()
            if node_type is None:
                break
            node = None
            while True:
                node = self.ask_node(node_type, again=node)
                text = render_nodes(title, author, description, self.nodes + [node])
                errors = check_text(text, path, self.registry)
                if not errors:
                    break
                self.echo("  That node does not validate:", err=True)
                for diag in errors:
                    self.echo("    %s" % diag.message + ("\n      hint: %s" % diag.hint if diag.hint else ""), err=True)
                self.echo("  Enter node %s again." % node.id, err=True)
            self.nodes.append(node)
            deps = node.fields["depends_on"]
            self.echo(
                "  Added %s node %s%s."
                % (node.type, node.id, " after %s" % ", ".join(deps) if deps else " (no dependencies)")
            )
        if not self.nodes:
            return None
        return render_nodes(title, author, description, self.nodes)


def interactive_create(
    title: str | None, author: str | None, description: str | None, output: str | None, force: bool
) -> str:
    """The terminal path of `playbook create`; returns the file written.

    Raises click.Abort on Ctrl-D/Ctrl-C at a prompt (nothing is written then)."""
    if title is None:
        title = click.prompt("Title", default="My runbook")
    if author is None:
        author = click.prompt("Author", default=os.environ.get("USER", "ops"))
    if description is None:
        description = click.prompt("Description (optional)", default="", show_default=False)
    if output is None:

        def free(text: str) -> str:
            path = text.strip()
            if not path:
                raise click.BadParameter("a file name is needed")
            if os.path.exists(path) and not force:
                raise click.BadParameter("%s exists; choose another name (or use --force to overwrite)" % path)
            return path

        output = click.prompt("File", default=default_name(title), value_proc=free)
    text = Wizard().run(title, author, description, path=output)
    if text is None:
        click.echo("No step added: writing the commented example runbook.")
        text = render(title, author, description)
    else:
        errors = check_text(text, output)
        if errors:  # each node was checked already; this guards the file as a whole
            for diag in errors:
                click.echo(diag.format(), err=True)
            raise click.ClickException("the runbook does not validate; nothing was written")
    write_text(output, text)
    return output
