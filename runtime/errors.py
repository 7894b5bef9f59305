"""Errors and exit codes: the only place the exit codes are defined.

Every anticipated failure is a `PlaybookError` carrying its exit code; an entry point (the
`playbook` console script, a bundle) catches it once in `guard()`, prints one line and exits
with the code. Anything else is a bug: `guard()` writes the traceback to a file and prints one
line saying where (secrets masked), and the run it interrupted stays resumable.

Standard library only: this module goes into bundles (CPython 3.9-3.13).
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time

TYPE_CHECKING = False  # typing is not imported at run time (start-up)
if TYPE_CHECKING:
    from typing import Callable, Iterable

EXIT_OK = 0  # the run succeeded (no step ended failed); a command did what it was asked
EXIT_FAILED = 1  # the run failed (a step ended failed)
EXIT_INVALID = 2  # invalid input: runbook, variables, configuration, usage
EXIT_ABORTED = 3  # aborted by the operator, or waiting for an approval (resumable)
EXIT_STATE = 4  # state database, bundle or environment problem; also an internal error
EXIT_HANGUP = 129  # the operator's terminal hung up (SIGHUP); resumable
EXIT_INTERRUPTED = 130  # SIGINT / SIGTERM; resumable

# What each code means, as every --help lists it (and the README's table begins each row with).
EXIT_MEANINGS = {
    EXIT_OK: "success: the command did what it was asked (a run: no step ended failed)",
    EXIT_FAILED: "failed: a step of the run failed; for test and compile --test, a scenario failed",
    EXIT_INVALID: "invalid input: runbook, variables, flags, configuration, or a program it needs is missing",
    EXIT_ABORTED: "aborted, or waiting for an approval (resumable)",
    EXIT_STATE: "state or bundle problem: the database, the disk, a damaged bundle; also an internal error",
    EXIT_HANGUP: "the terminal hung up (resumable)",
    EXIT_INTERRUPTED: "interrupted by SIGINT or SIGTERM (resumable)",
}


def exit_codes(*codes: int, meanings: dict[int, str] | None = None) -> str:
    """The "exit codes:" paragraph of a command's --help, for `codes`."""
    meanings = meanings or EXIT_MEANINGS
    width = max(len(str(code)) for code in codes)
    return "exit codes:\n" + "\n".join("  %*d  %s" % (width, code, meanings[code]) for code in codes)



class PlaybookError(Exception):
    """An anticipated failure: one line for the user and the exit code it leads to."""

    exit_code = EXIT_INVALID

    def __init__(self, message: str = "", code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.exit_code = code

    @property
    def code(self) -> int:
        return self.exit_code

    def report(self) -> str:
        """What the entry point prints for it (one line; a compiler error: its diagnostics)."""
        return "error: %s" % self


class UsageError(PlaybookError):
    """A bad argument, variable or runbook given on the command line (exit 2)."""


class StateError(PlaybookError):
    """A problem with the state database (exit 4)."""

    exit_code = EXIT_STATE


class LockedError(StateError):
    """Another process is driving the run."""


class BundleError(PlaybookError):
    """A damaged, unreadable or unverifiable bundle (exit 4)."""

    exit_code = EXIT_STATE


# -- SQLite errors once the database is open ---------------------------------------------------
def database_error(path: str, exc: sqlite3.Error, resume_hint: str | None = None) -> StateError:
    """One line naming the database, what went wrong and the cure."""
    text = str(exc)
    lowered = text.lower()
    then = "; then %s" % resume_hint if resume_hint else ""
    if "locked" in lowered or "busy" in lowered:
        holders = lock_holders(path)
        who = "held by %s" % ", ".join(holders) if holders else "held by another process"
        return StateError(
            "the state database %s is locked (%s) for longer than the [database] timeout; "
            "wait for it to finish or stop it%s" % (path, who, then)
        )
    if "full" in lowered or "no space" in lowered:
        return StateError(
            "the disk holding the state database %s is full; free some space%s" % (path, then)
        )
    if "readonly" in lowered or "read-only" in lowered:
        return StateError("the state database %s is read-only (%s); choose a writable --state-path" % (path, text))
    if "disk i/o" in lowered:
        return StateError("the state database %s could not be written (disk I/O error)%s" % (path, then))
    return StateError("state database %s: %s%s" % (path, text, then))


def lock_holders(path: str) -> list[str]:
    """Processes (other than this one) that have the database file open: "pid 12 (sqlite3)".

    Linux only (/proc); an empty list where that cannot be known."""
    found: list[str] = []
    wanted = {os.path.realpath(path), os.path.realpath(path) + "-wal", os.path.realpath(path) + "-shm"}
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]
    except OSError:
        return found
    for pid in pids:
        try:
            fds = os.listdir("/proc/%s/fd" % pid)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink("/proc/%s/fd/%s" % (pid, fd))
            except OSError:
                continue
            if target in wanted:
                found.append("pid %s (%s)" % (pid, _process_name(pid)))
                break
    return found


def _process_name(pid: str) -> str:
    try:
        with open("/proc/%s/comm" % pid, encoding="utf-8", errors="replace") as handle:
            return handle.read().strip() or "?"
    except OSError:
        return "?"


# -- secrets in crash reports ------------------------------------------------------------------
_secrets: set[str] = set()


def register_secrets(values: Iterable[str]) -> None:
    """Values that must never reach a crash report (the run's secret variables)."""
    _secrets.update(v for v in values if isinstance(v, str) and v)


def mask(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


# -- the one handler of an entry point ---------------------------------------------------------
_crash_dir: str | None = None


def set_crash_dir(path: str | None) -> None:
    """Where a traceback goes when something unexpected happens (beside the state database,
    or the run-event log's folder); the temporary directory when never set."""
    global _crash_dir
    _crash_dir = path


def _temp_base() -> str:
    """A temporary directory no other user controls (runtime/private.py)."""
    from .private import trusted_base

    return trusted_base()


def write_crash_report(exc: BaseException) -> str | None:
    """Write the traceback of `exc` (secrets masked) to a file; returns its path, or None."""
    import traceback

    text = mask("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    name = "playbook-crash-%s-%d.txt" % (time.strftime("%Y%m%dT%H%M%S", time.gmtime()), os.getpid())
    folders = [_crash_dir] if _crash_dir else []
    try:
        folders.append(_temp_base())
    except OSError:
        pass
    for folder in folders:
        path = os.path.join(folder, name)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            return path
        except OSError:
            continue
    return None


def _say(text: str) -> None:
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr is gone (closed terminal): nothing to tell
        pass


def guard(main: Callable[[], int]) -> int:
    """Run an entry point's `main()`; every failure becomes one line and an exit code."""
    try:
        return main()
    except PlaybookError as exc:
        _say(mask(exc.report()))
        return exc.exit_code
    except sqlite3.Error as exc:  # a database error that no store call translated
        _say("error: %s" % mask(str(database_error("the state database", exc))))
        return EXIT_STATE
    except KeyboardInterrupt:
        _say("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `playbook show | head`: the reader has gone
        _quiet_stdout()
        return EXIT_OK
    except Exception as exc:
        path = write_crash_report(exc)
        where = "the traceback is in %s" % path if path else "the traceback could not be written"
        _say(
            "error: internal error (%s: %s); %s. Any run it was driving is resumable."
            % (type(exc).__name__, mask(str(exc))[:200], where)
        )
        return EXIT_STATE


def _quiet_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so Python's exit flush does not complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
