"""Everything the runtime shows people: the plan in words, run progress, prompts.

Plain lines without a terminal, rich on a terminal (imported only then), JSON events on request.

Command output is shown, never obeyed: it goes through :mod:`.terminal` (colour kept on a
terminal that shows colour, every other control sequence removed or made visible), line by
line; a line longer than ``LINE_LIMIT`` characters is shown in pieces of that length, so the
time spent is linear in the output and the memory held per stream is bounded, whatever the
output looks like. JSON events carry the output as it came (JSON escapes every control
character).

A console that goes away — the terminal hung up (EIO, ENXIO) or the reader of a pipe left
(EPIPE) — never stops the run: the UI stops writing to it, points the file descriptor at
/dev/null (so that no later write or flush anywhere in the process fails), asks nothing more
(``interactive`` becomes False) and sets ``output_lost``.
"""

from __future__ import annotations

import errno as _errno
import json as _json
import os as _os
import sys as _sys
import time as _time

from . import conditions, terminal

TYPE_CHECKING = False  # typing is not imported at run time (start-up)
if TYPE_CHECKING:
    from typing import IO, Any, Callable, Iterable, Mapping, Protocol, Sequence

    from .plan import Node, Plan

    class UI(Protocol):
        """What the engine uses of the `ui` it is given (engine.py); PlainUI, TerminalUI, JsonUI,
        EventsFileUI, runlog.LoggingUI and secrets.MaskedUI are UIs. For type checking only."""

        @property
        def interactive(self) -> bool:
            """Whether a person at a terminal may be asked (it may turn False during a run: the
            terminal went away)."""

        def event(self, kind: str, **data: Any) -> None:
            """A run event (run_started, node_started, node_output, node_retrying, node_finished,
            node_skipped, manual, approval, waiting, message, run_finished) with its fields."""

        def confirm(self, node: Node, question: str) -> bool:
            """Ask `question` of `node`: True approved, False rejected; EOFError: no answer."""

        def choose(self, node: Node, question: str, options: list[tuple[str, str, str]], critical: bool = False) -> str:
            """Ask `question` with `options` (letter, name, what it does): the letter chosen;
            EOFError: no answer."""


def plan_text(
    plan: Plan,
    values: Mapping[str, Any] | None = None,
    origins: Mapping[str, str] | None = None,
    default_timeout: float | None = None,
    timeout_origin: str = "default",
) -> str:
    """The plan in execution order, each node with its command, effective timeout and run
    condition in words.

    `values` are the variable values a run would use (default: the plan's baked ones) and
    `origins` where each comes from (runtime/variables.origins): given values are listed
    first, then those from defaults, marked "(default)"; secrets are masked everywhere.
    `default_timeout` (seconds, from [execution] default_timeout, which `timeout_origin`
    names) is shown on every Command step without its own timeout, marked "default".
    """
    from . import preview

    values = dict(plan.values if values is None else values)
    origins = origins or {}
    default_timeout = preview.DEFAULT_TIMEOUT if default_timeout is None else default_timeout
    lines = ["Plan: %s — %d node%s" % (plan.title, len(plan.nodes), "" if len(plan.nodes) == 1 else "s")]
    secrets = preview.secret_texts(plan, values)
    shown = preview.shown_values(plan, values)
    by_default = sorted(k for k in shown if origins.get(k) == "default")
    given = sorted(k for k in shown if k not in by_default)
    if shown:
        lines.append("Values: %s" % ", ".join(
            ["%s=%s" % (k, _value_text(shown[k])) for k in given]
            + ["%s=%s (default)" % (k, _value_text(shown[k])) for k in by_default]
        ))
    unset = sorted(k for k in plan.variables if k not in values)
    pending = [k for k in unset if not plan.variables[k].get("optional")]
    if pending:
        lines.append("Resolved when run: %s" % ", ".join(pending))
    absent = [k for k in unset if plan.variables[k].get("optional")]
    if absent:
        lines.append("Not given (may be absent): %s" % ", ".join(absent))
    width = len(str(len(plan.nodes)))
    for number, node in enumerate(plan.nodes, 1):
        head = "%*d. %s [%s]" % (width, number, node.id, node.type)
        if node.name:
            head += " %s" % node.name
        flags = _plan_flags(node, default_timeout, timeout_origin)
        if flags:
            head += " (%s)" % ", ".join(flags)
        lines.append(head)
        lines.extend(_plan_body(node, " " * (width + 2), secrets))
    return preview.mask("\n".join(lines), secrets)


def _plan_flags(node: Node, default_timeout: float, timeout_origin: str) -> list[str]:
    from . import preview

    flags = []
    if node.critical is True:
        flags.append("critical")
    elif node.critical not in (False, None):
        flags.append("critical: %s" % node.critical)
    limit = preview.effective_timeout(node, default_timeout)
    if limit is not None and limit[1] == "step":
        flags.append("timeout %ss" % limit[0])
    elif limit is not None:
        where = "" if timeout_origin == "default" else " from %s" % timeout_origin
        flags.append("default timeout %ss%s" % (_seconds(limit[0]), where))
    if node.retries:
        flags.append("retries %d" % node.retries)
    if node.handled:
        flags.append("failure handled")
    return flags


def _value_text(value: object) -> str:
    """A variable's value in the plan's header: text as it is, anything else as JSON."""
    return _short(value if isinstance(value, str) else _json.dumps(value, ensure_ascii=False))


def _seconds(value: object) -> str:
    return "%g" % value if isinstance(value, (int, float)) else str(value)


def _plan_body(node: Node, indent: str, secrets: list[str]) -> list[str]:
    from . import preview, templating

    lines = []
    if node.type == "Command":
        assert node.command is not None  # schema.py requires the command of a Command node
        text = node.command.strip("\n")
        note = "  (template: completed when run)" if "command" in node.templates else ""
        read = templating.outputs_read(node, "command")
        if read:
            note = "  (from %s output: rendered when the step starts)" % ", ".join("%s's" % n for n in read)
        first, *rest = text.split("\n")
        lines.append("%s$ %s%s" % (indent, first, note if not rest else ""))
        for extra in rest[:12]:
            lines.append("%s  %s" % (indent, extra))
        if len(rest) > 12:
            lines.append("%s  … %d more lines%s" % (indent, len(rest) - 12, note))
    elif node.type == "Function":
        params = preview.mask(node.function_params, secrets)  # before repr() escapes them
        lines.append("%s%s.%s(%s)" % (indent, node.plugin, node.function, _params(params)))
    else:
        lines.append("%sasks: %s" % (indent, node.prompt_after or "Continue?"))
    for when, question in (("before it runs", node.prompt_before), ("after it ran", node.prompt_after)):
        if question and node.type != "Manual":
            lines.append("%sasks %s: %s" % (indent, when, question))
    if node.approvers or node.approvals:
        who = ", ".join(node.approvers) if node.approvers else "anyone"
        count = max(1, node.approvals)
        lines.append("%sapproval: %d approval%s by %s" % (indent, count, "" if count == 1 else "s", who))
    lines.append("%s%s" % (indent, conditions.in_words(node)))
    return lines


def _short(value: object, limit: int = 60) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _params(params: Mapping[str, Any] | None) -> str:
    if not params:
        return ""
    return ", ".join("%s=%s" % (k, _short(v if not isinstance(v, str) else repr(v))) for k, v in params.items())


# -- run output ---------------------------------------------------------------------------------

SYMBOLS = {"succeeded": "✓", "failed": "✗", "skipped": "-", "interrupted": "!"}
LINE_LIMIT = 16384  # characters: a longer line of command output is shown in pieces this long
_GONE = (_errno.EIO, _errno.EPIPE, _errno.ENXIO)  # write errors of a console that went away

# [ui] color_theme: the styles the UI uses, for dark and light terminal backgrounds
# ("auto" keeps the terminal's own palette; "none" turns styling off).
THEMES = {
    "dark": {"green": "bright_green", "red": "bright_red", "cyan": "bright_cyan", "yellow": "bright_yellow", "dim": "grey62"},
    "light": {"green": "dark_green", "red": "red3", "cyan": "dark_cyan", "yellow": "dark_orange3", "dim": "grey42"},
}


class PromptTimeout(EOFError):
    """No answer within [execution] interactive_timeout: handled like end of input (abort, resumable)."""

    def __init__(self, timeout: float) -> None:
        super().__init__("no answer within %s s" % ("%g" % timeout))
        self.timeout = timeout


def _cut(text: str) -> tuple[list[str], str]:
    """``(pieces of LINE_LIMIT characters, the rest)``: the rest is at most LINE_LIMIT long.

    A cut never splits a colour sequence (the only escape sequences left in cleaned text).
    """
    pieces = []
    start = 0
    while len(text) - start > LINE_LIMIT:
        end = start + LINE_LIMIT
        esc = text.rfind("\x1b", end - 80, end)
        if esc > start and text.find("m", esc, end) < 0:
            end = esc
        pieces.append(text[start:end])
        start = end
    return pieces, text[start:]


class _Lines:
    """One stream of command output on its way to the console: cleaned, cut into lines."""

    __slots__ = ("cleaner", "parts", "size")

    def __init__(self, keep_sgr: bool) -> None:
        self.cleaner = terminal.Cleaner(keep_sgr)
        self.parts: list[str] = []  # the line being received, in pieces (joined once it is complete or long)
        self.size = 0

    def feed(self, text: str) -> list[str]:
        """The lines (or pieces of a long line) completed by ``text``."""
        text = self.cleaner.feed(text)
        if not text:
            return []
        *complete, rest = text.split("\n")
        shown = []
        if complete:
            complete[0] = "".join(self.parts) + complete[0]
            self.parts = []
            self.size = 0
            for line in complete:
                if len(line) > LINE_LIMIT:
                    pieces, line = _cut(line)
                    shown.extend(pieces)
                shown.append(line)
        if rest:
            self.parts.append(rest)
            self.size += len(rest)
            if self.size > LINE_LIMIT:
                pieces, last = _cut("".join(self.parts))
                shown.extend(pieces)
                self.parts = [last]
                self.size = len(last)
        return shown

    def flush(self) -> list[str]:
        """End of the stream: the last, unfinished line."""
        shown = self.feed(self.cleaner.flush())
        if self.parts:
            shown.append("".join(self.parts))
            self.parts = []
            self.size = 0
        return shown


_last_stamp = [(-1, "")]  # (the last whole second, its "HH:MM:SS " text), replaced whole


def _stamp() -> str:
    """The local time as ``HH:MM:SS `` (formatted once a second: steps come many a second)."""
    now = int(_time.time())
    last = _last_stamp[0]
    if last[0] != now:
        last = _last_stamp[0] = (now, _time.strftime("%H:%M:%S ", _time.localtime(now)))
    return last[1]


def _silence(stream: IO[str]) -> None:
    """Point the file descriptor under ``stream`` at /dev/null, if it has one: nothing written or
    flushed to it later (print(), buffered text at exit) can fail any more."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = _os.open(_os.devnull, _os.O_WRONLY)
    try:
        _os.dup2(devnull, fd)
    except OSError:
        pass
    finally:
        _os.close(devnull)


def _is_terminal(stream: IO[str]) -> bool:
    """Is ``stream`` a terminal, one that has hung up included? (isatty() then says no: every
    terminal operation on a hung-up terminal fails with EIO, unlike on a file or pipe.)"""
    import termios

    try:
        termios.tcgetattr(stream.fileno())
    except (AttributeError, OSError, ValueError):  # no descriptor
        return False
    except termios.error as exc:
        return exc.args[0] == _errno.EIO
    return True


def _shown(renderable: Any) -> Any:
    """A string or rich Text as it may be shown (terminal.clean); other renderables as they are."""
    if isinstance(renderable, str):
        return terminal.clean(renderable)
    plain = getattr(renderable, "plain", None)
    if plain is None or terminal.clean(plain) == plain:
        return renderable
    from rich.text import Text

    return Text(terminal.clean(plain), style=renderable.style)


class PlainUI:
    """Line-oriented output for logs and pipes: timestamped, one line per event, never prompts."""

    interactive = False

    def __init__(
        self,
        out: IO[str] | None = None,
        err: IO[str] | None = None,
        parallel: bool = False,
        show_output: bool = True,
        timestamps: bool = True,
    ) -> None:
        self.out = out or _sys.stdout
        self.err = err or _sys.stderr
        self.parallel = parallel
        self.show_output = show_output
        self.timestamps = timestamps
        self.output_lost = False  # the output went away: nothing is written or asked any more
        self._gone: set[int] = set()  # id() of the streams that went away
        self._lines: dict[tuple[str, str], _Lines] = {}  # (node id, stream) -> _Lines

    @property
    def keep_sgr(self) -> bool:
        """Does command output keep its colour? Not in plain output (see the module docstring)."""
        return False

    # output primitives (TerminalUI overrides these)
    def write(self, text: str) -> None:
        """Write to the output: text from outside (ids, variables, errors, command output) shown,
        never obeyed; a console that went away (`| head`, a hung-up terminal) never stops the
        run."""
        self._write(self.out, terminal.clean(text))

    def _write(self, stream: IO[str], text: str) -> None:
        if id(stream) in self._gone:
            return
        try:
            stream.write(text)
            stream.flush()
        except OSError as exc:
            if exc.errno not in _GONE:
                raise
            self._gone_away(stream)

    def _gone_away(self, stream: IO[str]) -> None:
        """``stream`` went away: write nothing more to it; if it is the output, ask nothing more."""
        self._gone.add(id(stream))
        _silence(stream)
        if stream is self.out:
            self.output_lost = True
            self.interactive = False

    def hang_up(self) -> None:
        """The terminal hung up (SIGHUP): write nothing more to it and ask nothing more.
        Output redirected to a file or pipe goes on."""
        self.interactive = False
        for stream in (self.out, self.err):
            if _is_terminal(stream):
                self._gone_away(stream)

    def line(self, text: str, style: str | None = None) -> None:
        stamp = _stamp() if self.timestamps else ""
        self.write("%s%s\n" % (stamp, text))

    def output_lines(self, node: Node, stream: str, lines: Iterable[str]) -> None:
        """Lines of command output (cleaned already), written at once."""
        prefix = "[%s] " % node.id if self.parallel else "  │ "
        if stream == "stderr":
            prefix += "! " if not self.parallel else "stderr: "
        prefix = terminal.clean(prefix)
        self._write(self.out, "".join(prefix + line + "\n" for line in lines))

    def error(self, text: str) -> None:
        self._write(self.err, terminal.clean("error: %s\n" % text))

    # events from the engine
    def event(self, kind: str, **data: Any) -> None:
        handler = getattr(self, "on_" + kind, None)
        if handler is not None:
            handler(**data)

    def on_run_started(self, run_id: int, title: str, nodes: int, resumed: bool = False, **_: Any) -> None:
        self.line("%s run %d: %s (%d step%s)" % ("resuming" if resumed else "starting", run_id, title, nodes, "" if nodes == 1 else "s"), "bold")

    def on_node_started(self, node: Node, attempt: int, command: str | None = None, **_: Any) -> None:
        what = node.type if attempt == 1 else "%s, attempt %d" % (node.type, attempt)
        text = "▶ %s (%s)" % (node.id, what)
        if node.name:
            text += " %s" % node.name
        if command and node.type == "Command":
            first = command.strip().split("\n", 1)[0]
            text += ": %s%s" % (first[:120], " …" if len(first) > 120 or "\n" in command.strip() else "")
        if node.type != "Manual":
            self.line(text, "cyan")

    def on_node_output(self, node: Node, stream: str, text: str, **_: Any) -> None:
        if not self.show_output:
            return
        lines = self._lines.get((node.id, stream))
        if lines is None:
            lines = self._lines[(node.id, stream)] = _Lines(self.keep_sgr)
        shown = lines.feed(text)
        if shown:
            self.output_lines(node, stream, shown)

    def _flush_partial(self, node: Node) -> None:
        for key in [k for k in self._lines if k[0] == node.id]:
            shown = self._lines.pop(key).flush()
            if shown:
                self.output_lines(node, key[1], shown)

    def on_node_finished(
        self, node: Node, status: str, attempt: int, duration: float, fields: Mapping[str, Any] | None = None, **_: Any
    ) -> None:
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

    def on_node_skipped(self, node: Node, reason: str, **_: Any) -> None:
        self.line("- %s skipped: %s" % (node.id, reason), "dim")

    def on_node_retrying(self, node: Node, attempt: int, delay: float, **_: Any) -> None:
        self.line("↻ %s failed (attempt %d); retrying%s" % (node.id, attempt, " in %ss" % delay if delay else ""), "yellow")

    def on_manual(self, node: Node, description: str, **_: Any) -> None:
        self.line("▶ %s (Manual)%s" % (node.id, " " + node.name if node.name else ""), "cyan")
        for text in (description or "").strip("\n").split("\n"):
            if text.strip():
                self.write("    %s\n" % text)

    def on_message(self, text: str, **_: Any) -> None:
        self.line(text, "yellow")

    def on_run_finished(
        self,
        run_id: int,
        status: str,
        exit_code: int,
        reason: str | None = None,
        hint: str | None = None,
        counts: Mapping[str, int] | None = None,
        duration: float | None = None,
        **_: Any,
    ) -> None:
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
    def confirm(self, node: Node, question: str) -> bool:
        raise EOFError("no terminal")

    def choose(self, node: Node, question: str, options: Sequence[tuple[str, str, str]], critical: bool = False) -> str:
        raise EOFError("no terminal")

    def ask_variable(self, name: str, spec: Mapping[str, Any]) -> str:
        raise EOFError("no terminal")


class TerminalUI(PlainUI):
    """On a terminal: colour (rich; NO_COLOR honoured) and prompts read from stdin."""

    interactive = True

    def __init__(
        self,
        parallel: bool = False,
        show_output: bool = True,
        timestamps: bool = False,
        color: bool = True,
        theme: str = "auto",
        progress: bool = False,
        prompt_timeout: float = 0,
        out: IO[str] | None = None,
    ) -> None:
        super().__init__(out=out, parallel=parallel, show_output=show_output, timestamps=timestamps)
        from rich.console import Console

        self.console = Console(
            file=out, highlight=False, no_color=not color or None, soft_wrap=True, color_system=None if theme == "none" else "auto"
        )
        # rich's own answer to EPIPE is SystemExit(1); here the run goes on
        setattr(self.console, "on_broken_pipe", lambda: self._gone_away(self.console.file))  # noqa: B010
        self.styles = THEMES.get(theme, {})
        self.progress = progress
        self.prompt_timeout = prompt_timeout or 0
        self._timed_out: float | None = None
        self._total = 0
        self._settled: set[str] = set()
        # (node id or None, stream) -> (head, tail) of an output line
        self._frames: dict[tuple[str | None, str], tuple[str, str]] = {}

    @property
    def keep_sgr(self) -> bool:
        """Command output keeps its colour when the console shows colour."""
        return self.console.color_system is not None and not self.console.no_color

    def _print(self, *objects: Any, **options: Any) -> None:
        """console.print of text shown, never obeyed, unless the terminal went away (see the
        module docstring)."""
        if self.output_lost:
            return
        try:
            self.console.print(*map(_shown, objects), **options)
        except OSError as exc:
            if exc.errno not in _GONE:
                raise
            self._gone_away(self.console.file)

    def _gone_away(self, stream: IO[str]) -> None:
        if stream is self.console.file:
            self.console.quiet = True  # rich drops what it still holds
            self.output_lost = True
            self.interactive = False
        super()._gone_away(stream)

    def _style(self, style: str | None) -> str:
        return " ".join(self.styles.get(part, part) for part in (style or "").split())

    def line(self, text: str, style: str | None = None) -> None:
        from rich.text import Text

        stamp = _stamp() if self.timestamps else ""
        self._print(Text(stamp + text, style=self._style(style)))

    def output_lines(self, node: Node, stream: str, lines: Iterable[str]) -> None:
        """Lines of command output (cleaned already: text, and colour if kept), written at once
        in a frame rendered by rich once per node and stream: rich's work per line would cost
        more than the command's output is worth."""
        if self.output_lost:
            return
        head, tail = self._frame(node.id if self.parallel else None, stream)
        self._write(self.console.file, "".join(
            head + line + ("\x1b[0m" if "\x1b" in line else "") + tail for line in lines
        ))

    def _frame(self, node_id: str | None, stream: str) -> tuple[str, str]:
        """(what comes before a line of output, what comes after it): prefix, styles, newline."""
        frame = self._frames.get((node_id, stream))
        if frame is None:
            from rich.text import Text

            prefix = terminal.clean("[%s] " % node_id if node_id is not None else "  │ ")
            body = Text("\0", style=self._style("red") if stream == "stderr" else "")
            with self.console.capture() as captured:
                self.console.print(Text(prefix, style=self._style("dim")) + body)
            head, _, tail = captured.get().partition("\0")
            frame = self._frames[(node_id, stream)] = (head, tail)
        return frame

    # [ui] progress_style = "bar": a progress line after each step settles
    def on_run_started(self, run_id: int, title: str, nodes: int, resumed: bool = False, **data: Any) -> None:
        super().on_run_started(run_id, title, nodes, resumed=resumed, **data)
        self._total = nodes
        self._settled = set()
        self._resumed = resumed

    def on_node_finished(
        self, node: Node, status: str, attempt: int, duration: float, fields: Mapping[str, Any] | None = None, **data: Any
    ) -> None:
        super().on_node_finished(node, status, attempt, duration, fields=fields, **data)
        self._advance(node)

    def on_node_skipped(self, node: Node, reason: str, **data: Any) -> None:
        super().on_node_skipped(node, reason, **data)
        self._advance(node)

    def _advance(self, node: Node) -> None:
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
        self._print(grid)

    def on_run_finished(
        self,
        run_id: int,
        status: str,
        exit_code: int,
        reason: str | None = None,
        hint: str | None = None,
        counts: Mapping[str, int] | None = None,
        duration: float | None = None,
        **data: Any,
    ) -> None:
        if self._timed_out is not None and reason and "no answer at the prompt" in reason:
            reason = "no answer within %s s (interactive_timeout); the run stopped and can be resumed" % ("%g" % self._timed_out)
        super().on_run_finished(run_id, status, exit_code, reason=reason, hint=hint, counts=counts, duration=duration, **data)

    def on_manual(self, node: Node, description: str, **_: Any) -> None:
        from rich.panel import Panel
        from rich.text import Text

        body = Text(terminal.clean((description or "").strip("\n")) or "(no description)")
        title = terminal.clean("%s — %s" % (node.id, node.name or "Manual step"))
        self._print(Panel(body, title=title, expand=False, border_style="cyan"))

    def _input(self, prompt: str) -> str:
        self._print(prompt, end="", markup=False, highlight=False)
        return self._answer(self._read_line)

    def _answer(self, read: Callable[..., str], *args: Any) -> str:
        """``read(*args)``; a terminal that went away (before or while waiting) is end of input."""
        if self.output_lost:
            raise EOFError("the terminal went away")
        try:
            return read(*args)
        except OSError as exc:
            if exc.errno not in _GONE:
                raise
            raise EOFError("the terminal went away") from exc

    def _read_line(self) -> str:
        if not self.prompt_timeout:
            answer = input()
            return answer.strip()
        # [execution] interactive_timeout: wait at most that long for a line on the terminal
        import select

        ready, _, _ = select.select([_sys.stdin], [], [], self.prompt_timeout)
        if not ready:
            self._timed_out = self.prompt_timeout
            self._print()
            self._print(
                "no answer within %s s (interactive_timeout); stopping" % ("%g" % self.prompt_timeout), style=self._style("yellow")
            )
            raise PromptTimeout(self.prompt_timeout)
        answer = _sys.stdin.readline()
        if not answer:
            raise EOFError()
        return answer.strip()

    def confirm(self, node: Node, question: str) -> bool:
        while True:
            answer = self._input("%s [y/n] " % question).lower()
            if answer in ("y", "yes"):
                return True
            if answer in ("n", "no"):
                return False
            self._print("please answer y or n", style=self._style("yellow"))

    def choose(self, node: Node, question: str, options: Sequence[tuple[str, str, str]], critical: bool = False) -> str:
        from rich.text import Text

        self._print(Text(question, style=self._style("bold red")))
        if critical:
            self._print(Text("  %s is critical: it cannot be skipped" % node.id, style=self._style("yellow")))
        for key, label, consequence in options:
            self._print(Text("  %s) %-20s %s" % (key, label, consequence)))
        keys = [key for key, _, _ in options]
        while True:
            answer = self._input("Choose [%s]: " % "/".join(keys)).lower()
            for key, label, _ in options:
                if answer in (key, label):
                    return key
            if answer == "s" and critical:
                self._print("%s is critical and cannot be skipped" % node.id, style=self._style("yellow"))
            else:
                self._print("please answer one of %s" % ", ".join(keys), style=self._style("yellow"))

    def ask_variable(self, name: str, spec: Mapping[str, Any]) -> str:
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

            return self._answer(getpass.getpass, text)
        return self._input(text)

    def error(self, text: str) -> None:
        from rich.text import Text

        self._print(Text("error: %s" % text, style=self._style("bold red")))


class JsonUI(PlainUI):
    """One JSON object per line on stdout, for machines. Never prompts."""

    def __init__(self, out: IO[str] | None = None, err: IO[str] | None = None) -> None:
        super().__init__(out=out, err=err)

    def emit(self, event: str, **data: Any) -> None:
        self.write(json_line(event, data))

    def event(self, kind: str, **data: Any) -> None:
        self.write(json_line(kind, event_fields(data)))

    def error(self, text: str) -> None:
        self.emit("error", message=text)
        super().error(text)


def event_fields(data: dict[str, Any]) -> dict[str, Any]:
    """An engine event's data as JSON fields: the node as its id and type, the result's fields
    (without the output, which is recorded in the state database) flattened in."""
    node = data.pop("node", None)
    if node is not None:
        data["node"] = node.id
        data["type"] = node.type
    if "fields" in data:
        data.update({k: v for k, v in (data.pop("fields") or {}).items() if k not in ("stdout", "stderr")})
    return data


def json_line(event: str, data: dict[str, Any]) -> str:
    """One event as a line of JSON (the --json and --events-file format)."""
    data["event"] = event
    data["time"] = _time.time()
    return _json.dumps(data, sort_keys=True, default=str) + "\n"


class EventsFileUI:
    """--events-file FILE: forwards everything to the real UI and appends every run event to FILE
    as it happens, one JSON object per line (the --json format), each line one write(2) to a file
    opened O_APPEND, so a reader polling the file (`playbook fleet`) sees whole lines. Command output
    is not written (it is in the state database). A file that
    cannot be written any more (full disk) never stops the run: one warning, then it is dropped."""

    def __init__(self, ui: Any, fd: int) -> None:
        self.__dict__.update(_ui=ui, _fd=fd)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ui, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._ui, name, value)

    def _append(self, line: str) -> None:
        fd = self._fd
        if fd is None:
            return
        data = line.encode("utf-8", "surrogateescape")
        try:
            while data:
                data = data[_os.write(fd, data):]
        except OSError as exc:
            self.__dict__["_fd"] = None
            try:
                _os.close(fd)
            except OSError:
                pass
            try:
                _sys.stderr.write("warning: cannot write the events file any more (%s); the run goes on\n" % (exc.strerror or exc))
            except OSError:
                pass

    def event(self, kind: str, **data: Any) -> None:
        if kind != "node_output":  # output is recorded in the state database, not here
            self._append(json_line(kind, event_fields(dict(data))))
        return self._ui.event(kind, **data)

    def error(self, text: str) -> None:
        self._append(json_line("error", {"message": text}))
        return self._ui.error(text)


def open_events_file(path: str) -> int:
    """The descriptor of an events file opened for appending: never through a symbolic link,
    created 0600, or an existing file of the effective user's own made 0600 (runtime/private.py);
    OSError as is."""
    from .private import open_own_file

    return open_own_file(path, "--events-file")


def make_ui(
    json_mode: bool = False,
    parallel: bool = False,
    interactive: bool | None = None,
    color: bool = True,
    timestamps: bool = True,
    theme: str = "auto",
    progress: bool = False,
    show_output: bool = True,
    prompt_timeout: float = 0,
) -> UI:
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


if TYPE_CHECKING:  # the UIs made here are what the engine takes: checked by mypy, never run
    _UIS: tuple[type[UI], ...] = (PlainUI, TerminalUI, JsonUI, EventsFileUI)
