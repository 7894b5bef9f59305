"""[logging]: a rotating log file of run events (imported only when a log file is configured)."""

from __future__ import annotations

import logging
import logging.handlers
import os

from .config import Config, ConfigError, Problem

TYPE_CHECKING = False  # typing is not imported at run time (start-up)
if TYPE_CHECKING:
    from io import TextIOWrapper
    from typing import Any, Callable, Mapping, Sequence

    from .plan import Node
    from .ui import UI

    # an event's log lines: (node id, node, event data, who) -> [(level, text)]
    EventLines = Callable[[str | None, Node | None, Mapping[str, Any], str], list[tuple[int, str]]]


class _RotatingLog(logging.handlers.RotatingFileHandler):
    """Rotation at max_size_mb; with backup_count = 0 the file is emptied instead of growing.
    A log that cannot be written never stops a run (one warning on stderr)."""

    warned = False

    def _open(self) -> TextIOWrapper:
        """The file, never through a symbolic link, and only when it is the effective user's own
        (made 0600): runtime/private.py."""
        from .private import open_own_file

        fd = open_own_file(self.baseFilename, "the log file")
        return os.fdopen(fd, "a", encoding=self.encoding, errors=getattr(self, "errors", None))

    def doRollover(self) -> None:
        if self.backupCount > 0:
            return super().doRollover()
        if self.stream is None:
            self.stream = self._open()
        self.stream.flush()
        os.ftruncate(self.stream.fileno(), 0)  # emptied through the open file, not its name

    def handleError(self, record: logging.LogRecord) -> None:
        if not self.warned:
            self.warned = True
            import sys

            try:
                sys.stderr.write("warning: cannot write the log file %s; the run goes on\n" % self.baseFilename)
            except Exception:
                pass


def open_run_log(cfg: Config) -> logging.Logger | None:
    """A logger writing run events to [logging] file_path, or None when file_path is empty."""
    path = cfg.get("logging", "file_path")
    if not path:
        return None
    path = os.path.abspath(os.path.expanduser(path))
    max_bytes = int(float(cfg.get("logging", "max_size_mb")) * 1024 * 1024)
    from .private import location_problem

    try:
        problem = location_problem(path)
        if problem is not None:
            raise OSError(0, "not used: %s" % problem)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handler = _RotatingLog(path, maxBytes=max_bytes, backupCount=int(cfg.get("logging", "backup_count")), encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(cfg.origin("logging", "file_path"), None,
                                   "logging.file_path %s cannot be opened: %s" % (path, exc.strerror or exc))]) from None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.Logger("playbook.run")  # not registered: no global logging state touched
    logger.setLevel(getattr(logging, cfg.get("logging", "level")))
    logger.addHandler(handler)
    logger.propagate = False
    return logger


class LoggingUI:
    """Forwards everything to the real UI and writes run events to the log.

    INFO: run started/finished, node started/finished/skipped, approvals, decisions, messages.
    WARNING: failures only (failed nodes, retries, runs that failed or were aborted, prompts
    left unanswered). DEBUG adds the commands and the questions asked. Output never goes in."""

    def __init__(self, ui: Any, logger: logging.Logger, who: str | None = None) -> None:
        self.__dict__.update(_ui=ui, _log=logger, _who=who or "operator", _run=None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ui, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._ui, name, value)

    def _write(self, level: int, text: str) -> None:
        try:
            prefix = "run %s: " % self._run if self._run is not None else ""
            self._log.log(level, prefix + text)
        except Exception:  # the log never stops a run
            pass

    def event(self, kind: str, **data: Any) -> Any:
        try:
            self._record(kind, data)
        except Exception:
            pass
        return self._ui.event(kind, **data)

    def _record(self, kind: str, data: Mapping[str, Any]) -> None:
        """Log one engine event (events without a line of their own are not logged)."""
        describe = _EVENT_LINES.get(kind)
        if describe is None:
            return
        if kind == "run_started":
            self.__dict__["_run"] = data.get("run_id")
        node = data.get("node")
        for level, text in describe(getattr(node, "id", node), node, data, self._who):
            self._write(level, text)

    def _no_answer(self, node: Node, exc: EOFError) -> None:
        seconds = getattr(exc, "timeout", None)
        why = "no answer within %s s (interactive_timeout)" % _seconds(seconds) if seconds else "no answer (end of input)"
        self._write(logging.WARNING, "%s: %s" % (getattr(node, "id", "prompt"), why))

    def confirm(self, node: Node, question: str) -> bool:
        self._write(logging.DEBUG, "%s asks: %s" % (node.id, question))
        try:
            answer = self._ui.confirm(node, question)
        except EOFError as exc:
            self._no_answer(node, exc)
            raise
        self._write(logging.INFO, "%s approval %r: %s by %s" % (node.id, question, "approved" if answer else "rejected", self._who))
        return answer

    def choose(self, node: Node, question: str, options: Sequence[tuple[str, str, str]], critical: bool = False) -> str:
        self._write(logging.DEBUG, "%s asks: %s [%s]" % (node.id, question, "/".join(k for k, _, _ in options)))
        try:
            choice = self._ui.choose(node, question, options, critical=critical)
        except EOFError as exc:
            self._no_answer(node, exc)
            raise
        label = next((label for key, label, _ in options if key == choice), choice)
        self._write(logging.INFO, "%s decision: %s by %s" % (node.id, label, self._who))
        return choice


# Each event's log lines: kind -> function(node id, node, event data, who) -> [(level, text)].
def _run_started(nid: str | None, node: Node | None, data: Mapping[str, Any], who: str) -> list[tuple[int, str]]:
    verb = "resumed" if data.get("resumed") else "started"
    nodes = data.get("nodes") or 0
    return [(logging.INFO, "%s %r (%d step%s) by %s" % (verb, data.get("title"), nodes, "" if nodes == 1 else "s", who))]


def _run_finished(nid: str | None, node: Node | None, data: Mapping[str, Any], who: str) -> list[tuple[int, str]]:
    status = data.get("status")
    text = "finished %s (exit code %s)" % (status, data.get("exit_code"))
    if data.get("counts"):
        text += ": " + ", ".join("%d %s" % (n, s) for s, n in sorted(data["counts"].items()) if n)
    if data.get("duration") is not None:
        text += " in %.1fs" % data["duration"]
    if data.get("reason") and status != "succeeded":
        text += " — %s" % data["reason"]
    return [(logging.INFO if status == "succeeded" else logging.WARNING, text)]


def _node_started(nid: str | None, node: Node | None, data: Mapping[str, Any], who: str) -> list[tuple[int, str]]:
    lines = [(logging.INFO, "%s started (%s, attempt %s)" % (nid, getattr(node, "type", "?"), data.get("attempt")))]
    if data.get("command") and getattr(node, "type", None) == "Command":
        lines.append((logging.DEBUG, "%s command: %s" % (nid, data["command"])))
    return lines


def _node_finished(nid: str | None, node: Node | None, data: Mapping[str, Any], who: str) -> list[tuple[int, str]]:
    fields = data.get("fields") or {}
    status = data.get("status")
    text = "%s %s (attempt %s" % (nid, status, data.get("attempt"))
    if data.get("duration") is not None and getattr(node, "type", None) != "Manual":
        text += ", %.2fs" % data["duration"]
    text += ")"
    if fields.get("exit_code") not in (None, 0):
        text += " exit code %s" % fields["exit_code"]
    if fields.get("error"):
        text += ": %s" % fields["error"]
    if fields.get("decision"):
        text += " [%s]" % fields["decision"]
    return [(logging.INFO if status != "failed" else logging.WARNING, text)]


_EVENT_LINES: dict[str, EventLines] = {
    "run_started": _run_started,
    "run_finished": _run_finished,
    "node_started": _node_started,
    "node_finished": _node_finished,
    "node_skipped": lambda nid, node, data, who: [(logging.INFO, "%s skipped: %s" % (nid, data.get("reason")))],
    "node_retrying": lambda nid, node, data, who: [
        (logging.WARNING, "%s failed (attempt %s); retrying automatically" % (nid, data.get("attempt")))
    ],
    "manual": lambda nid, node, data, who: [(logging.INFO, "%s waits for an approval (Manual)" % nid)],
    "message": lambda nid, node, data, who: [(logging.INFO, str(data.get("text")))],
}


def _seconds(value: float) -> str:
    return ("%g" % value) if isinstance(value, float) else str(value)


if TYPE_CHECKING:  # what the engine takes: checked by mypy, never run
    _UIS: tuple[type[UI], ...] = (LoggingUI,)
