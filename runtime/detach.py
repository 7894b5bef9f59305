"""A run that outlives the connection that started it, and the looks that follow it.

`playbook fleet` starts each host's run with `run --detach JOB` (or `resume RUN --detach JOB`)
and follows it with `follow JOB --since OFFSET --hold SECONDS`; so can anyone on the host.

JOB is a directory of the user running the bundle, writable by no one else (the caller makes it
0700). It holds what the caller put there (`vars.toml`, signed approvals) and, from the run:

  events.jsonl  every run event, one JSON object per line (--events-file)
  output.log    what the run printed (its errors, when it could not start)
  pid           "PID START_TICKS" of the detached run (the pair names one process)
  state-path    the state database the run uses
  exit          its exit code, written (atomically) when it has ended, after
  state.db      a consistent copy of the state database (SQLite's backup API)

`start` forks twice and the grandchild, in a session of its own with no terminal, runs the
command; the first process returns at once. SIGHUP of the connection cannot reach it, and a
controller that disappears takes nothing with it. `follow` blocks until the run has new events,
has ended, or `hold` seconds passed, and prints one JSON object: the live events after `since`,
the new offset and, once the run has ended, its exit code and the state copy (zlib, base64). A
look removes nothing, so the last one can be repeated: a look whose answer never reached its
reader (a controller killed meanwhile) loses nothing. JOB is removed by whoever has the answer
(`playbook fleet` does, right after the last look) or, once the run has ended, by the next start
of `playbook fleet` on that host.

Standard library only: this module goes into bundles.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import time
import zlib

from .errors import EXIT_STATE, UsageError

TYPE_CHECKING = False  # typing is not imported at run time (start-up)
if TYPE_CHECKING:
    import argparse
    from typing import Any, Callable

EVENTS = "events.jsonl"
OUTPUT = "output.log"
PID = "pid"
STATE_PATH = "state-path"
EXIT = "exit"
STATE_COPY = "state.db"
# The events a look returns (the others stay in the events file): the lines `playbook fleet` prints.
LIVE_EVENTS = ("run_started", "node_finished", "node_skipped", "run_finished")
WINDOW = 200  # at most this many live events per look; older ones are counted, not sent
POLL = 0.1  # seconds between two looks at the events file while a look holds
MAX_HOLD = 300.0

# The `follow` command. A bundle answers it without loading the runtime CLI or the engine
# (runtime/bundle.py), since `playbook fleet` starts one look per host event: about 40 ms less
# per look.
FOLLOW_SUMMARY = "one look at a run started with --detach (as `playbook fleet` follows hosts)"
FOLLOW_DESCRIPTION = (
    "One look at a run started with --detach JOB: waits up to --hold seconds for new events or the run's end, "
    "then prints one JSON object: the step events after byte offset --since, the new offset and, once the run "
    "has ended, its exit code and a copy of the state database (zlib, base64). A look removes nothing: remove JOB "
    "once you have the last one."
)
FOLLOW_EXAMPLE = "%s follow /tmp/job --since 0 --hold 20"
FOLLOW_CODES = (0, 2, EXIT_STATE)


def add_follow_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", metavar="JOB", help="the --detach directory of the run")
    parser.add_argument("--since", type=int, default=0, metavar="OFFSET", help="the offset the previous look returned (default 0)")
    parser.add_argument("--hold", type=float, default=0.0, metavar="SECONDS",
                        help="wait up to this long for news (default 0: look and return; at most 300)")


def follow_command(argv: list[str], prog: str, write: Callable[[str], Any]) -> int:
    """`PROG follow ...` as a bundle answers it: a parser of its own, with the help the runtime
    CLI gives."""
    from . import options

    parser = options.parser(prog + " follow", FOLLOW_DESCRIPTION, [FOLLOW_EXAMPLE % prog], FOLLOW_CODES)
    add_follow_arguments(parser)
    return look(parser.parse_args(argv), write)


def look(args: argparse.Namespace, write: Callable[[str], Any]) -> int:
    write(json.dumps(follow(args.job, args.since, args.hold), ensure_ascii=False, separators=(",", ":")))
    return 0


def job_problem(job: str) -> str | None:
    """Why `job` is not a directory of ours that no one else may write to, or None."""
    try:
        info = os.lstat(job)
    except OSError as exc:
        return exc.strerror or str(exc)
    if not stat.S_ISDIR(info.st_mode):
        return "it is not a directory"
    if info.st_uid != os.geteuid():
        return "it does not belong to this user"
    if info.st_mode & 0o077:
        return "others may use it (mode %o; give a 0700 directory)" % stat.S_IMODE(info.st_mode)
    return None


def _checked(job: str, flag: str) -> str:
    job = os.path.abspath(job)
    problem = job_problem(job)
    if problem is not None:
        raise UsageError("%s %s: %s" % (flag, job, problem))
    return job


def _write(path: str, text: str) -> None:
    """Write `text` to `path` atomically (0600)."""
    temp = "%s.tmp-%d" % (path, os.getpid())
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)


def start(job: str, run: Callable[[], int], state_path: str, write: Callable[[str], Any]) -> int:
    """`run --detach JOB`: start `run` (which returns an exit code) detached from this process,
    its session and its terminal; print {"pid": PID} with `write` and return 0 at once."""
    job = _checked(job, "--detach")
    for name in (EXIT, STATE_COPY, PID):
        if os.path.lexists(os.path.join(job, name)):
            raise UsageError("--detach %s: a run was started there already (%s exists); give a new directory" % (job, name))
    read_end, write_end = os.pipe()
    child = os.fork()
    if child:
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            told = pipe.read().decode("ascii", "replace").strip()
        os.waitpid(child, 0)
        if not told.isdigit():
            raise UsageError("--detach %s: the run could not be started (%s)" % (job, told or "no word from it"))
        write(json.dumps({"pid": int(told), "job": job}))
        return 0
    # the child: a session of its own, then a grandchild that can never regain a terminal
    code = EXIT_STATE
    try:
        os.close(read_end)
        os.setsid()
        if os.fork():
            os._exit(0)
        _detached_io(job)
        from .executors import process_start_ticks

        _write(os.path.join(job, PID), "%d %s\n" % (os.getpid(), process_start_ticks(os.getpid())))
        _write(os.path.join(job, STATE_PATH), state_path + "\n")
        os.write(write_end, b"%d" % os.getpid())
        os.close(write_end)
        from .errors import guard

        code = guard(run)
    except BaseException as exc:  # the grandchild never returns into the caller's code
        try:
            os.write(2, ("cannot start the detached run: %s\n" % exc).encode("utf-8", "replace"))
        except OSError:
            pass
    finally:
        try:
            finish(job, code)
        finally:
            os._exit(code)


def _detached_io(job: str) -> None:
    """Standard input from /dev/null; standard output and error to JOB/output.log."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    log = os.open(os.path.join(job, OUTPUT), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)


def finish(job: str, code: int | None) -> None:
    """The run has ended (or its process is gone): the state copy, then the exit code."""
    copy_state(job)
    _write(os.path.join(job, EXIT), "%s\n" % ("" if code is None else code))


def copy_state(job: str) -> None:
    """JOB/state.db: a consistent copy of the state database named in JOB/state-path."""
    try:
        with open(os.path.join(job, STATE_PATH), encoding="utf-8") as handle:
            source = handle.read().strip()
    except OSError:
        return
    if not source or not os.path.isfile(source):
        return
    from .state import copy_database

    target = os.path.join(job, STATE_COPY)
    temp = target + ".tmp"
    for stale in (target, temp):
        if os.path.lexists(stale):
            os.unlink(stale)
    copy_database(source, temp, timeout=60)
    os.replace(temp, target)


# -- follow ----------------------------------------------------------------------------------------
def _alive(job: str) -> bool:
    """Whether the detached run's process is still running: its pid with its start time, and
    not a zombie (which a container's init may never reap)."""
    from .executors import _live, _stat, process_start_ticks

    try:
        with open(os.path.join(job, PID), encoding="utf-8") as handle:
            pid_text, _, ticks = handle.read().partition(" ")
        pid = int(pid_text)
    except (OSError, ValueError):
        return False
    fields = _stat(pid)
    if fields is not None and not _live(fields):
        return False
    now = process_start_ticks(pid)
    return now is not None and str(now) == ticks.strip()


def _read_events(job: str, since: int) -> tuple[int, list[dict[str, Any]]]:
    """(the offset after the last complete line, the live events between `since` and it)."""
    try:
        with open(os.path.join(job, EVENTS), "rb") as handle:
            handle.seek(since)
            data = handle.read()
    except FileNotFoundError:
        return since, []
    end = data.rfind(b"\n") + 1
    events = []
    for line in data[:end].splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") in LIVE_EVENTS:
            events.append(event)
    return since + end, events


def _events_size(job: str) -> int:
    try:
        return os.stat(os.path.join(job, EVENTS)).st_size
    except OSError:
        return 0


def follow(job: str, since: int = 0, hold: float = 0.0, clock: Callable[[], float] = time.monotonic,
           sleep: Callable[[float], Any] = time.sleep) -> dict[str, Any]:
    """One look at a detached run: waits up to `hold` seconds for news; see the module's text."""
    job = _checked(job, "follow")
    if since < 0:
        raise UsageError("--since %d: give an offset of 0 or more" % since)
    hold = min(max(hold, 0.0), MAX_HOLD)
    deadline = clock() + hold
    while True:
        ended = os.path.exists(os.path.join(job, EXIT))
        if ended or _events_size(job) > since or clock() >= deadline:
            break
        if not _alive(job):  # it will write nothing more: it ended just now, or was killed
            if not os.path.exists(os.path.join(job, EXIT)):  # killed (or the host rebooted)
                finish(job, None)
            ended = True
            break
        sleep(POLL)
    offset, events = _read_events(job, since)
    look: dict[str, Any] = {"offset": offset, "skipped": max(0, len(events) - WINDOW), "events": events[-WINDOW:], "done": ended}
    if ended:
        look.update(_ending(job))
    return look


def _ending(job: str) -> dict[str, Any]:
    with open(os.path.join(job, EXIT), encoding="utf-8") as handle:
        text = handle.read().strip()
    result: dict[str, Any] = {"exit_code": int(text) if text.lstrip("-").isdigit() else None, "state": None}
    try:
        with open(os.path.join(job, STATE_COPY), "rb") as handle:
            result["state"] = base64.b64encode(zlib.compress(handle.read(), 6)).decode("ascii")
    except FileNotFoundError:
        pass
    try:
        with open(os.path.join(job, OUTPUT), "rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - 4096))
            result["output"] = handle.read().decode("utf-8", "replace")
    except OSError:
        result["output"] = ""
    if result["exit_code"] is None:
        result["error"] = "the run's process ended without an exit code (killed, or the host restarted)"
    return result
