"""A rollout's outcome: each host's status (succeeded, failed, aborted, waiting, unreachable,
not started), exit code and run id from its task results, DIR/summary.json, and the rollout's
exit code.
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any, Mapping, Sequence

from playbook.runtime.errors import (
    EXIT_ABORTED,
    EXIT_FAILED,
    EXIT_HANGUP,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_STATE,
    UsageError,
)
from playbook.runtime.session import ALREADY_SUCCEEDED

from .ansible import REGISTER
from .follow import _first_line, run_events, watch_view


FLEET_VERSION = 1
STATUSES = ("succeeded", "failed", "aborted", "waiting", "unreachable", "not started")
RESUMABLE = ("failed", "aborted", "waiting")
RUN_STATUSES = ("succeeded", "failed", "aborted", "waiting")


# A host's status from the exit code of its `playbook run`, when the run's own events do not say.
_STATUS_BY_EXIT: dict[int | None, str] = {
    EXIT_OK: "succeeded",
    EXIT_ABORTED: "aborted",
    EXIT_HANGUP: "aborted",
    EXIT_INTERRUPTED: "aborted",
}


def host_outcome(host: str, results: Sequence[dict], out_dir: str) -> dict:
    """One host's entry of summary.json from its task results."""
    entry: dict[str, Any] = {"host": host, "status": "not started", "exit_code": None, "run_id": None, "reason": None}
    run = next((r for r in reversed(results) if r.get("register") == REGISTER["run"] and r.get("status") == "ok"), None)
    started = any(r.get("register") == REGISTER["job"] and r.get("status") == "ok" for r in results)
    if run is not None:
        entry.update(_run_outcome(run))
    elif started:
        entry.update(_unfollowed_outcome(results))
    else:
        entry.update(_trouble_outcome(results))
    entry["database"] = _fetched_database(host, results, out_dir)
    return entry


def _run_outcome(run: Mapping[str, Any]) -> dict:
    """Status, exit code, run id and reason of a host whose `playbook run` task completed."""
    events = run_events(run.get("stdout"))
    finished = next((e for e in reversed(events) if e["event"] == "run_finished"), None)
    started = next((e for e in events if e["event"] == "run_started"), None)
    rc = run.get("rc")
    if finished is not None and finished.get("status") in RUN_STATUSES:
        status = finished["status"]
    elif rc == EXIT_INVALID and ALREADY_SUCCEEDED in (run.get("stderr") or ""):
        # a resume of a run that ended well in the background after the controller stopped following it
        return {"status": "succeeded", "exit_code": EXIT_OK, "run_id": None, "reason": None}
    else:
        status = _STATUS_BY_EXIT.get(rc, "failed")
    reason = (finished or {}).get("reason") or (None if rc == 0 else _first_line(run.get("stderr")) or None)
    return {"status": status, "exit_code": rc, "run_id": (finished or started or {}).get("run_id"), "reason": reason}


UNFOLLOWED = "the controller stopped following this run; it goes on on the host (`playbook fleet resume` picks it up)"


def _unfollowed_outcome(results: Sequence[dict]) -> dict:
    """A host whose run was started in the background but whose end the controller did not see
    (the rollout was interrupted): aborted as far as this rollout knows; the run goes on there."""
    looks = [watch_view(r.get("stdout"))[1] for r in results if r.get("register") == REGISTER["watch"]]
    started = next((e for e in looks if e is not None), None) or {}
    return {"status": "aborted", "run_id": started.get("run_id"), "reason": UNFOLLOWED}


def _trouble_outcome(results: Sequence[dict]) -> dict:
    """Status and reason of a host that never completed its `playbook run`: the first task that
    failed or found the host unreachable, if any."""
    trouble = next((r for r in results if r.get("status") in ("unreachable", "failed")), None)
    if trouble is None:
        return {}
    return {"status": trouble["status"], "reason": "%s: %s" % (trouble.get("task"), _first_line(trouble.get("msg")))}


def _fetched_database(host: str, results: Sequence[dict], out_dir: str) -> str | None:
    """hosts/HOST.db (relative to the rollout directory) when the host's database was fetched."""
    database = os.path.join("hosts", host + ".db")
    fetched = any(r.get("register") == REGISTER["copy"] and (r.get("stdout") or "").strip() == "copied" for r in results)
    return database if fetched and os.path.isfile(os.path.join(out_dir, database)) else None


def fleet_exit_code(hosts: Sequence[Mapping[str, Any]]) -> int:
    """0 every host succeeded; 1 any failed; 4 any unreachable; 3 any waiting, aborted or not started."""
    statuses = {h["status"] for h in hosts}
    if "failed" in statuses:
        return EXIT_FAILED
    if "unreachable" in statuses:
        return EXIT_STATE
    if statuses - {"succeeded"}:
        return EXIT_ABORTED
    return EXIT_OK


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def write_summary(out_dir: str, summary: dict) -> None:
    hosts = summary["hosts"]
    summary["counts"] = {status: sum(1 for h in hosts if h["status"] == status) for status in STATUSES if any(h["status"] == status for h in hosts)}
    summary["exit_code"] = fleet_exit_code(hosts)
    path = os.path.join(out_dir, "summary.json")
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2, sort_keys=True, ensure_ascii=False)
        handle.write("\n")
    os.replace(path + ".tmp", path)


def read_summary(out_dir: str) -> dict:
    path = os.path.join(out_dir, "summary.json")
    try:
        with open(path, encoding="utf-8") as handle:
            summary = json.load(handle)
    except FileNotFoundError:
        raise UsageError("%s: no summary.json; give the --out DIR of a `playbook fleet` rollout" % out_dir) from None
    except (OSError, ValueError) as exc:
        raise UsageError("%s: cannot read it: %s" % (path, exc)) from None
    if not isinstance(summary, dict) or summary.get("fleet_version") != FLEET_VERSION or not isinstance(summary.get("hosts"), list):
        raise UsageError("%s is not a summary written by this version of `playbook fleet`" % path)
    return summary


def summary_lines(summary: Mapping[str, Any]) -> list[str]:
    hosts = summary["hosts"]
    width = max([len(h["host"]) for h in hosts] + [4])
    lines = ["%-*s  %-11s  %4s  %5s  %s" % (width, "host", "status", "exit", "run", "reason")]
    for h in hosts:
        lines.append("%-*s  %-11s  %4s  %5s  %s" % (width, h["host"], h["status"], "-" if h["exit_code"] is None else h["exit_code"],
                                                   "-" if h["run_id"] is None else h["run_id"], h.get("reason") or ""))
    counts = ", ".join("%d %s" % (n, s) for s, n in summary["counts"].items())
    lines.append("%d host%s: %s (exit %d)" % (len(hosts), "" if len(hosts) == 1 else "s", counts or "none", summary["exit_code"]))
    return lines
