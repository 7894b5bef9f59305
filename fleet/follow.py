"""What the controller prints while the hosts run: the callback's records (one per task result,
and one per look at a run in progress) turned into a line per host event.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Sequence

from .ansible import REGISTER


# The events `playbook fleet` prints a line for (or needs: run_started has the run id).
LIVE_EVENTS = ("run_started", "node_finished", "node_skipped", "run_finished")
WATCH_WINDOW = 200  # at most this many of the latest live events per look (a long run's file is not sent again and again)


class Rollout:
    """What Ansible reported, host by host, as it arrived (records from the callback)."""

    def __init__(self, out: Any = None) -> None:
        self.hosts: list[str] = []
        self.results: dict[str, list[dict]] = {}
        self.out = out or sys.stdout
        self.batches = 0
        self.shown: dict[str, int] = {}  # host -> lines of its run already printed
        self.interrupted = False  # Ctrl-C on the controller

    def _host(self, host: str) -> list[dict]:
        if host not in self.results:
            self.results[host] = []
            if host not in self.hosts:
                self.hosts.append(host)
        return self.results[host]

    def feed(self, record: dict) -> None:
        kind = record.get("kind")
        if kind == "batch":
            self.batches += 1
            for host in record.get("hosts") or []:
                if host not in self.hosts:
                    self.hosts.append(host)
            if record.get("batch"):
                self.say("batch %d: %s" % (self.batches, ", ".join(record["batch"])))
            return
        if kind != "result":
            return
        host = record["host"]
        self._host(host).append(record)
        register, status = record.get("register"), record.get("status")
        if register == REGISTER["watch"] and status in ("ok", "retry"):
            lines = self._followed(host, *watch_view(record.get("stdout")))
        elif register == REGISTER["run"] and status == "ok":
            events = [e for e in run_events(record.get("stdout")) if e["event"] in LIVE_EVENTS]
            lines = self._followed(host, len(events), None, events)
            if not any(e["event"] == "run_finished" for e in events):
                why = _first_line(record.get("stderr")) or _first_line(record.get("msg")) or "no output"
                lines.append("the bundle did not run (exit %s): %s" % (record.get("rc"), why))
        else:
            lines = live_lines(record)
        for line in lines:
            self.say("%s  %s" % (host, line))

    def _followed(self, host: str, total: int, first: dict | None, window: list[dict]) -> list[str]:
        """The lines of a host's live events not printed yet; `window` holds the last of its
        `total` live events so far (a look at the run may leave out older ones: then one line
        says how many)."""
        shown, start = self.shown.get(host, 0), total - len(window)
        lines = []
        if start > shown:
            lines.append("… %d step event%s not shown here (the report has them)" % (start - shown, "" if start - shown == 1 else "s"))
            shown = start
        lines += event_lines(window[shown - start:])
        self.shown[host] = max(shown, total)
        return lines

    def say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()


def run_events(stdout: str | None) -> list[dict]:
    """The JSON events a bundle printed with --json (other lines are ignored)."""
    events = []
    for line in (stdout or "").splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and "event" in event:
                events.append(event)
    return events


def event_lines(events: Sequence[dict]) -> list[str]:
    """A line per step that finished or was skipped, and one for the end of the run."""
    lines = []
    for event in events:
        kind = event["event"]
        if kind in ("node_finished", "node_skipped"):
            state = event.get("status") or ("skipped" if kind == "node_skipped" else "?")
            detail = []
            if event.get("exit_code") not in (None, 0):
                detail.append("exit %s" % event["exit_code"])
            if event.get("decision"):
                detail.append(str(event["decision"]))
            if event.get("reason"):
                detail.append(_first_line(event["reason"]))
            lines.append("%s  %s%s" % (event.get("node"), state, "  (%s)" % ", ".join(detail) if detail else ""))
        elif kind == "run_finished":
            lines.append("run %s %s (exit %s)%s" % (event.get("run_id"), event.get("status"), event.get("exit_code"),
                                                   "  " + _first_line(event["reason"]) if event.get("reason") else ""))
    return lines


def watch_view(stdout: str | None) -> tuple[int, dict | None, list[dict]]:
    """What one look at a run in progress (WATCH_SCRIPT) printed: the number of live events so
    far, the run's run_started event, and the latest live events."""
    lines = (stdout or "").splitlines()
    if len(lines) < 3 or not lines[0].isdigit() or "" not in lines[2:]:  # not the script's output: nothing seen
        return 0, None, []
    first = run_events(lines[1])
    return int(lines[0]), (first[0] if first else None), run_events("\n".join(lines[2:lines.index("", 2)]))


def live_lines(record: dict) -> list[str]:
    """The lines a task result other than the run's gives: problems, the fetch."""
    status, register = record.get("status"), record.get("register")
    if status == "unreachable":
        return ["unreachable: %s" % _first_line(record.get("msg"))]
    if status == "failed" and record.get("task") != "The run's result":
        return ["%s failed: %s" % (record.get("task"), _first_line(record.get("msg")))]
    if register == REGISTER["copy"] and status == "ok":
        return ["state database fetched" if (record.get("stdout") or "").strip() == "copied" else "no state database on the host"]
    return []


def _first_line(text: Any) -> str:
    lines = [line for line in str(text or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
