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
from .follow import _first_line


FLEET_VERSION = 1
RECORDS = "records.jsonl"  # every record of the callback, as it came (line by line)
UNFINISHED = "unfinished.json"  # while a controller works: what it started with (fleet resume recovers from it)
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
    looks = [r for r in results if r.get("register") == REGISTER["look"] and "offset" in r]
    last = looks[-1] if looks else None
    start = next((r for r in reversed(results) if r.get("register") == REGISTER["start"] and r.get("status") == "ok"), None)
    if last is not None and last.get("done"):
        entry.update(_run_outcome(looks))
    elif start is not None or looks:
        entry.update(_unfollowed_outcome(start, looks))
    else:
        entry.update(_trouble_outcome(results))
    database = os.path.join("hosts", host + ".db")
    fetched = last is not None and last.get("done") and last.get("fetched")
    entry["database"] = database if fetched and os.path.isfile(os.path.join(out_dir, database)) else None
    return entry


def _events(looks: Sequence[Mapping[str, Any]]) -> list[dict]:
    return [e for look in looks for e in look.get("events") or [] if isinstance(e, dict)]


def _run_outcome(looks: Sequence[Mapping[str, Any]]) -> dict:
    """Status, exit code, run id and reason of a host whose run was followed to its end."""
    last = looks[-1]
    events = _events(looks)
    finished = next((e for e in reversed(events) if e.get("event") == "run_finished"), None)
    rc = last.get("exit_code")
    if finished is not None and finished.get("status") in RUN_STATUSES:
        status = finished["status"]
    elif rc == EXIT_INVALID and ALREADY_SUCCEEDED in (last.get("output") or ""):
        # a resume of a run that ended well in the background after the controller stopped following it
        return {"status": "succeeded", "exit_code": EXIT_OK, "run_id": None, "reason": None}
    else:
        status = _STATUS_BY_EXIT.get(rc, "failed")
    reason = (finished or {}).get("reason") or (None if rc == 0 else _first_line(last.get("output")) or _first_line(last.get("msg")) or None)
    run_id = (finished or {}).get("run_id") or last.get("run_id")
    return {"status": status, "exit_code": rc, "run_id": run_id, "reason": reason}


UNFOLLOWED = "the controller stopped following this run; it goes on on the host (`playbook fleet resume` picks it up)"


def _unfollowed_outcome(start: Mapping[str, Any] | None, looks: Sequence[Mapping[str, Any]]) -> dict:
    """A host whose run was started in the background but whose end the controller did not see
    (the rollout was interrupted, or the connection lost): aborted as far as this rollout knows;
    the run goes on there, and `fleet resume` follows it again (the job recorded here)."""
    last = looks[-1] if looks else {}
    job = {"job": last.get("job") or (start or {}).get("job"), "bundle": (start or {}).get("bundle"),
           "python": (start or {}).get("python_env") or ""}
    entry = {"status": "aborted", "run_id": last.get("run_id"), "reason": UNFOLLOWED}
    if job["job"] and job["bundle"]:
        entry["job"] = job
    return entry


def _trouble_outcome(results: Sequence[dict]) -> dict:
    """Status and reason of a host whose run never started: the first task that failed or
    found the host unreachable, if any."""
    trouble = next((r for r in results if r.get("status") in ("unreachable", "failed")), None)
    if trouble is None:
        return {}
    return {"status": trouble["status"], "reason": "%s: %s" % (trouble.get("task"), _first_line(trouble.get("msg")))}


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
    write_json(os.path.join(out_dir, "summary.json"), summary)


def write_json(path: str, value: Any) -> None:
    """Write `value` to `path` whole or not at all (a new file moved into place)."""
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=2, sort_keys=True, ensure_ascii=False)
        handle.write("\n")
    os.replace(path + ".tmp", path)


def read_summary(out_dir: str) -> dict:
    path = os.path.join(out_dir, "summary.json")
    try:
        with open(path, encoding="utf-8") as handle:
            summary = json.load(handle)
    except FileNotFoundError:
        if os.path.exists(os.path.join(out_dir, UNFINISHED)):
            raise UsageError("%s: no summary.json yet: its controller is still at work, or ended without writing one "
                             "(`playbook fleet resume %s` then recovers it)" % (out_dir, out_dir)) from None
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
