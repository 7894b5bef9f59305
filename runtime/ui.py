"""Everything the runtime shows people: the plan in words, run progress, prompts.

Plain lines without a terminal, rich on a terminal (imported only then), JSON events on request.
"""

from . import conditions


def plan_text(plan, values=None):
    """The plan in execution order, each node with its command and run condition in words."""
    lines = []
    title = plan.title
    lines.append("Plan: %s — %d node%s" % (title, len(plan.nodes), "" if len(plan.nodes) == 1 else "s"))
    if plan.values:
        lines.append("Given: %s" % ", ".join("%s=%s" % (k, _short(v)) for k, v in sorted(plan.values.items())))
    pending = sorted(k for k in plan.variables if k not in plan.values)
    if pending:
        lines.append("Resolved when run: %s" % ", ".join(pending))
    width = len(str(len(plan.nodes)))
    for number, node in enumerate(plan.nodes, 1):
        flags = []
        if node.critical is True:
            flags.append("critical")
        elif node.critical not in (False, None):
            flags.append("critical: %s" % node.critical)
        if node.timeout is not None:
            flags.append("timeout %ss" % node.timeout)
        if node.retries:
            flags.append("retries %d" % node.retries)
        if node.handled:
            flags.append("failure handled")
        head = "%*d. %s [%s]" % (width, number, node.id, node.type)
        if node.name:
            head += " %s" % node.name
        if flags:
            head += " (%s)" % ", ".join(flags)
        lines.append(head)
        indent = " " * (width + 2)
        if node.type == "Command":
            text = node.command.strip("\n")
            note = "  (template: completed when run)" if "command" in node.templates else ""
            first, *rest = text.split("\n")
            lines.append("%s$ %s%s" % (indent, first, note if not rest else ""))
            for extra in rest[:12]:
                lines.append("%s  %s" % (indent, extra))
            if len(rest) > 12:
                lines.append("%s  … %d more lines%s" % (indent, len(rest) - 12, note))
        elif node.type == "Function":
            lines.append("%s%s.%s(%s)" % (indent, node.plugin, node.function, _params(node.function_params)))
        else:
            lines.append("%sasks: %s" % (indent, node.prompt_after or "Continue?"))
        lines.append("%s%s" % (indent, conditions.in_words(node)))
    return "\n".join(lines)


def _short(value, limit=60):
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _params(params):
    if not params:
        return ""
    return ", ".join("%s=%s" % (k, _short(v if not isinstance(v, str) else repr(v))) for k, v in params.items())


# -- run output ---------------------------------------------------------------------------------
import json as _json
import sys as _sys
import time as _time

SYMBOLS = {"succeeded": "✓", "failed": "✗", "skipped": "-", "interrupted": "!"}

# [ui] color_theme: the styles the UI uses, for dark and light terminal backgrounds
# ("auto" keeps the terminal's own palette; "none" turns styling off).
THEMES = {
    "dark": {"green": "bright_green", "red": "bright_red", "cyan": "bright_cyan", "yellow": "bright_yellow", "dim": "grey62"},
    "light": {"green": "dark_green", "red": "red3", "cyan": "dark_cyan", "yellow": "dark_orange3", "dim": "grey42"},
}


class PromptTimeout(EOFError):
    """No answer within [execution] interactive_timeout: handled like end of input (abort, resumable)."""

    def __init__(self, timeout):
        super().__init__("no answer within %s s" % ("%g" % timeout))
        self.timeout = timeout


class PlainUI:
    """Line-oriented output for logs and pipes: timestamped, one line per event, never prompts."""

    interactive = False

    def __init__(self, out=None, err=None, parallel=False, show_output=True, timestamps=True):
        self.out = out or _sys.stdout
        self.err = err or _sys.stderr
        self.parallel = parallel
        self.show_output = show_output
        self.timestamps = timestamps
        self._partial = {}

    # output primitives (TerminalUI overrides these)
    def write(self, text):
        """Write to the output; a reader that went away (`| head`) never stops the run."""
        try:
            self.out.write(text)
            self.out.flush()
        except BrokenPipeError:
            import os

            was_stdout = self.out is _sys.stdout
            self.out = open(os.devnull, "w")
            if was_stdout:
                _sys.stdout = self.out

    def line(self, text, style=None):
        stamp = _time.strftime("%H:%M:%S ") if self.timestamps else ""
        self.write("%s%s\n" % (stamp, text))

    def output_line(self, node, stream, text):
        prefix = "[%s] " % node.id if self.parallel else "  │ "
        if stream == "stderr":
            prefix += "! " if not self.parallel else "stderr: "
        self.write("%s%s\n" % (prefix, text))

    def error(self, text):
        self.err.write("error: %s\n" % text)
        self.err.flush()

    # events from the engine
    def event(self, kind, **data):
        handler = getattr(self, "on_" + kind, None)
        if handler is not None:
            handler(**data)

    def on_run_started(self, run_id, title, nodes, resumed=False, **_):
        self.line("%s run %d: %s (%d nodes)" % ("resuming" if resumed else "starting", run_id, title, nodes), "bold")

    def on_node_started(self, node, attempt, command=None, **_):
        what = node.type if attempt == 1 else "%s, attempt %d" % (node.type, attempt)
        text = "▶ %s (%s)" % (node.id, what)
        if node.name:
            text += " %s" % node.name
        if command and node.type == "Command":
            first = command.strip().split("\n", 1)[0]
            text += ": %s%s" % (first[:120], " …" if len(first) > 120 or "\n" in command.strip() else "")
        if node.type != "Manual":
            self.line(text, "cyan")

    def on_node_output(self, node, stream, text, **_):
        if not self.show_output:
            return
        key = (node.id, stream)
        buffered = self._partial.pop(key, "") + text
        *lines, rest = buffered.split("\n")
        for item in lines:
            self.output_line(node, stream, item)
        if rest:
            self._partial[key] = rest

    def _flush_partial(self, node):
        for key in [k for k in self._partial if k[0] == node.id]:
            self.output_line(node, key[1], self._partial.pop(key))

    def on_node_finished(self, node, status, attempt, duration, fields=None, **_):
        self._flush_partial(node)
        fields = fields or {}
        text = "%s %s %s" % (SYMBOLS.get(status, "?"), node.id, status)
        if node.type != "Manual":
            text += " in %.2fs" % duration
        if fields.get("exit_code") not in (None, 0):
            text += " (exit code %s)" % fields["exit_code"]
        if fields.get("error"):
            text += ": %s" % fields["error"]
        if fields.get("decision"):
            text += " (%s)" % fields["decision"]
        self.line(text, "green" if status == "succeeded" else "red")

    def on_node_skipped(self, node, reason, **_):
        self.line("- %s skipped: %s" % (node.id, reason), "dim")

    def on_node_retrying(self, node, attempt, delay, **_):
        self.line("↻ %s failed (attempt %d); retrying%s" % (node.id, attempt, " in %ss" % delay if delay else ""), "yellow")

    def on_manual(self, node, description, **_):
        self.line("▶ %s (Manual)%s" % (node.id, " " + node.name if node.name else ""), "cyan")
        for text in (description or "").strip("\n").split("\n"):
            if text.strip():
                self.write("    %s\n" % text)

    def on_message(self, text, **_):
        self.line(text, "yellow")

    def on_run_finished(self, run_id, status, exit_code, reason=None, hint=None, counts=None, duration=None, **_):
        parts = ["run %d %s" % (run_id, status)]
        if counts:
            parts.append(", ".join("%d %s" % (n, s) for s, n in sorted(counts.items()) if n))
        if duration is not None:
            parts.append("%.1fs" % duration)
        self.line(" — ".join(parts), "green" if status == "succeeded" else "red")
        if reason and status != "succeeded":
            self.line("  %s" % reason)
        if hint:
            self.line("  %s" % hint)

    # questions (never asked by the plain UI: the engine checks `interactive`)
    def confirm(self, node, question):
        raise EOFError("no terminal")

    def choose(self, node, question, options, critical=False):
        raise EOFError("no terminal")

    def ask_variable(self, name, spec):
        raise EOFError("no terminal")


class TerminalUI(PlainUI):
    """On a terminal: colour (rich; NO_COLOR honoured) and prompts read from stdin."""

    interactive = True

    def __init__(self, parallel=False, show_output=True, timestamps=False, color=True, theme="auto", progress=False, prompt_timeout=0):
        super().__init__(parallel=parallel, show_output=show_output, timestamps=timestamps)
        from rich.console import Console

        self.console = Console(
            highlight=False, no_color=not color or None, soft_wrap=True, color_system=None if theme == "none" else "auto"
        )
        self.styles = THEMES.get(theme, {})
        self.progress = progress
        self.prompt_timeout = prompt_timeout or 0
        self._timed_out = None
        self._total = 0
        self._settled = set()

    def _style(self, style):
        return " ".join(self.styles.get(part, part) for part in (style or "").split())

    def line(self, text, style=None):
        from rich.text import Text

        stamp = _time.strftime("%H:%M:%S ") if self.timestamps else ""
        self.console.print(Text(stamp + text, style=self._style(style)))

    def output_line(self, node, stream, text):
        from rich.text import Text

        prefix = "[%s] " % node.id if self.parallel else "  │ "
        # command output is text, never markup: Text() does not interpret [/] or similar
        self.console.print(Text(prefix, style=self._style("dim")) + Text(text, style=self._style("red") if stream == "stderr" else ""))

    # [ui] progress_style = "bar": a progress line after each step settles
    def on_run_started(self, run_id, title, nodes, resumed=False, **data):
        super().on_run_started(run_id, title, nodes, resumed=resumed, **data)
        self._total = nodes
        self._settled = set()
        self._resumed = resumed

    def on_node_finished(self, node, status, attempt, duration, fields=None, **data):
        super().on_node_finished(node, status, attempt, duration, fields=fields, **data)
        self._advance(node)

    def on_node_skipped(self, node, reason, **data):
        super().on_node_skipped(node, reason, **data)
        self._advance(node)

    def _advance(self, node):
        if not self.progress or not self._total:
            return
        self._settled.add(node.id)
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        done = len(self._settled)
        grid = Table.grid(padding=(0, 1))
        grid.add_row(
            Text("  "),
            ProgressBar(total=self._total, completed=done, width=30, complete_style=self._style("green") or "bar.complete"),
            Text("%d/%d steps%s" % (done, self._total, " this session" if getattr(self, "_resumed", False) else ""), style=self._style("dim")),
        )
        self.console.print(grid)

    def on_run_finished(self, run_id, status, exit_code, reason=None, hint=None, counts=None, duration=None, **data):
        if self._timed_out is not None and reason and "no answer at the prompt" in reason:
            reason = "no answer within %s s (interactive_timeout); the run stopped and can be resumed" % ("%g" % self._timed_out)
        super().on_run_finished(run_id, status, exit_code, reason=reason, hint=hint, counts=counts, duration=duration, **data)

    def on_manual(self, node, description, **_):
        from rich.panel import Panel
        from rich.text import Text

        body = Text((description or "").strip("\n") or "(no description)")
        self.console.print(Panel(body, title="%s — %s" % (node.id, node.name or "Manual step"), expand=False, border_style="cyan"))

    def _input(self, prompt):
        self.console.print(prompt, end="", markup=False, highlight=False)
        if not self.prompt_timeout:
            answer = input()
            return answer.strip()
        # [execution] interactive_timeout: wait at most that long for a line on the terminal
        import select

        ready, _, _ = select.select([_sys.stdin], [], [], self.prompt_timeout)
        if not ready:
            self._timed_out = self.prompt_timeout
            self.console.print()
            self.console.print(
                "no answer within %s s (interactive_timeout); stopping" % ("%g" % self.prompt_timeout), style=self._style("yellow")
            )
            raise PromptTimeout(self.prompt_timeout)
        answer = _sys.stdin.readline()
        if not answer:
            raise EOFError()
        return answer.strip()

    def confirm(self, node, question):
        while True:
            answer = self._input("%s [y/n] " % question).lower()
            if answer in ("y", "yes"):
                return True
            if answer in ("n", "no"):
                return False
            self.console.print("please answer y or n", style=self._style("yellow"))

    def choose(self, node, question, options, critical=False):
        from rich.text import Text

        self.console.print(Text(question, style=self._style("bold red")))
        if critical:
            self.console.print(Text("  %s is critical: it cannot be skipped" % node.id, style=self._style("yellow")))
        for key, label, consequence in options:
            self.console.print(Text("  %s) %-20s %s" % (key, label, consequence)))
        keys = [key for key, _, _ in options]
        while True:
            answer = self._input("Choose [%s]: " % "/".join(keys)).lower()
            for key, label, _ in options:
                if answer in (key, label):
                    return key
            if answer == "s" and critical:
                self.console.print("%s is critical and cannot be skipped" % node.id, style=self._style("yellow"))
            else:
                self.console.print("please answer one of %s" % ", ".join(keys), style=self._style("yellow"))

    def ask_variable(self, name, spec):
        text = "Value for %s" % name
        if spec.get("description"):
            text += " (%s)" % spec["description"]
        if spec.get("choices"):
            text += " [%s]" % "/".join(str(c) for c in spec["choices"])
        if "default" in spec:
            text += " [default: %s]" % ("***" if spec.get("secret") else spec["default"])
        text += ": "
        if spec.get("secret"):
            import getpass

            return getpass.getpass(text)
        return self._input(text)

    def error(self, text):
        from rich.text import Text

        self.console.print(Text("error: %s" % text, style=self._style("bold red")))




class JsonUI(PlainUI):
    """One JSON object per line on stdout, for machines. Never prompts."""

    def __init__(self, out=None, err=None):
        super().__init__(out=out, err=err)

    def emit(self, event, **data):
        data["event"] = event
        data["time"] = _time.time()
        self.write(_json.dumps(data, sort_keys=True, default=str) + "\n")

    def event(self, kind, **data):
        node = data.pop("node", None)
        if node is not None:
            data["node"] = node.id
            data["type"] = node.type
        if "fields" in data:
            data.update({k: v for k, v in (data.pop("fields") or {}).items() if k not in ("stdout", "stderr")})
        self.emit(kind, **data)

    def error(self, text):
        self.emit("error", message=text)
        super().error(text)


def make_ui(json_mode=False, parallel=False, interactive=None, color=True, timestamps=True, theme="auto",
            progress=False, show_output=True, prompt_timeout=0):
    """The UI for a run; the keyword arguments after `interactive` are the [ui] configuration
    (and [execution] interactive_timeout for `prompt_timeout`). --json ignores them."""
    if json_mode:
        ui = JsonUI()
        ui.show_output = show_output
        return ui
    if interactive is None:
        # prompts need a person at a terminal; output may still go to a pipe (`| tee run.log`)
        interactive = _sys.stdin.isatty()
    if interactive:
        return TerminalUI(parallel=parallel, color=color, timestamps=timestamps, theme=theme, progress=progress,
                          show_output=show_output, prompt_timeout=prompt_timeout)
    return PlainUI(parallel=parallel, timestamps=timestamps, show_output=show_output)
