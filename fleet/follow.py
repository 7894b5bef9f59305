"""What the controller prints while the hosts run: the callback's records (one per task result,
and one per look at a run in progress) turned into a line per host event.

A look (templates/fleet/playbook_follow.py) carries the step events after the previous look's
offset, so each line is printed once, in the order of the host's run.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Mapping, Sequence

from .ansible import REGISTER


class Rollout:
    """What Ansible reported, host by host, as it arrived (records from the callback)."""

    def __init__(self, out: Any = None) -> None:
        self.hosts: list[str] = []
        self.results: dict[str, list[dict]] = {}
        self.out = out or sys.stdout
        self.batches = 0
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
        if register == REGISTER["look"] and status in ("ok", "retry", "failed") and "offset" in record:
            lines = look_lines(record)
        elif register == REGISTER["start"] and status == "ok" and record.get("plan") is not None:
            lines = ["plan (check mode, nothing was run):"] + ["  " + line for line in str(record["plan"]).splitlines()]
        else:
            lines = live_lines(record)
        for line in lines:
            self.say("%s  %s" % (host, line))

    def say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()


def look_lines(record: Mapping[str, Any]) -> list[str]:
    """The lines of one look at a host's run: its new step events (a count of those a look left
    out, if any) and, at the end, what became of the run and its state database."""
    lines = []
    skipped = int(record.get("skipped") or 0)
    if skipped:
        lines.append("… %d step event%s not shown here (the report has them)" % (skipped, "" if skipped == 1 else "s"))
    events = [e for e in record.get("events") or [] if isinstance(e, dict)]
    lines += event_lines(events)
    if record.get("done"):
        if record.get("exit_code") not in (0, None) and not any(e.get("event") == "run_finished" for e in events):
            lines.append("the bundle did not run (exit %s): %s" % (record.get("exit_code"), _first_line(record.get("output")) or "no output"))
        elif record.get("exit_code") is None and record.get("msg"):
            lines.append(_first_line(record.get("msg")))
        lines.append("state database fetched" if record.get("fetched") else "no state database came back from the host")
    return lines


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


def live_lines(record: dict) -> list[str]:
    """The lines a task result other than a look gives: problems."""
    status = record.get("status")
    if status == "unreachable":
        return ["unreachable: %s" % _first_line(record.get("msg"))]
    if status == "failed":
        return ["%s failed: %s" % (record.get("task"), _first_line(record.get("msg")))]
    return []


def _first_line(text: Any) -> str:
    lines = [line for line in str(text or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
