"""The process runner for Command nodes.

Standard library only, Python 3.9 syntax, Linux (POSIX): this module goes into bundles.

``run_command(command, ...)`` runs one command and returns a :class:`CommandResult`; it never
raises for a command that fails, cannot start or times out. What it guarantees:

- **How the command is started.** ``/bin/sh -c COMMAND`` by default; ``shell`` (``"/bin/bash"``,
  ``"bash -eu"``, split with shlex) replaces ``/bin/sh``. The command text is passed untouched:
  the shell expands it, so ``echo '$HOME'`` prints ``$HOME``. A command whose first non-blank
  characters are ``#!`` is a script: the ``#!`` line names the interpreter (split like the kernel
  does: the interpreter, then at most one argument — ``#!/usr/bin/env bash``, ``#!/bin/bash -e``)
  and ``shell`` is ignored. The script is never written to disk (``/tmp`` may be ``noexec``, the
  home directory read-only): it is fed through an inherited pipe and the interpreter is given
  ``/dev/fd/N`` as the script path, so ``$0`` / ``sys.argv[0]`` is ``/dev/fd/N``.
- **stdin** is ``/dev/null``: a step never waits for input nobody will type, and never reads
  what the operator types at a prompt (``interactive=True`` hands it the terminal instead);
  ``env`` is merged over ``os.environ`` (a ``None`` value removes the
  variable); ``cwd`` must exist.
- **Process group.** Unless ``interactive``, the command runs in a session and process group of
  its own. When the command's main process has exited, whatever it left running in its group
  (background jobs, ``cmd &``) is terminated — SIGTERM, then SIGKILL after ``kill_grace`` — so
  nothing a node starts outlives the node. A background job that still holds stdout/stderr
  open does not make the runner wait: after the main process exits, output is drained for
  ``DRAIN_SECONDS`` (0.2 s), then the pipes are closed and the group is terminated. A process
  meant to outlive its node must leave the group on purpose (``setsid``, a service manager).
- **Output** is read from both pipes concurrently (one selector, no threads), handed to
  ``on_output(stream, text)`` (``"stdout"``/``"stderr"``, text decoded incrementally as UTF-8,
  invalid bytes as U+FFFD, nothing interpreted) in order per stream, and the last ``tail_bytes``
  bytes of each stream are kept in the result (``*_truncated`` tells that earlier output was
  dropped; a tail never starts in the middle of a UTF-8 character).
- **Timeout** (seconds; ``None`` or ``<= 0`` means no limit): the whole group gets SIGTERM, then
  SIGKILL after ``kill_grace`` seconds; ``timed_out`` is set and ``exit_code`` is what the
  process reported (negative signal number, as in :mod:`subprocess`).
- **Interrupts.** A ``KeyboardInterrupt`` (or any other exception, e.g. raised by ``on_output``
  or by a SIGTERM handler of the caller) while the command runs terminates the group, then is
  re-raised; the partial result (``interrupted=True``, the output tail so far) is attached to
  the exception as ``exc.command_result``.
- **Interactive** (``interactive=True``): the terminal is handed to the command — stdin, stdout
  and stderr inherited, nothing captured (``note`` says so), no new session, so job control and
  Ctrl-C reach the command as in a shell. Like ``system(3)``, the runner ignores SIGINT and
  SIGQUIT while the command runs (main thread only): Ctrl-C is the command's to handle. If the
  command dies of SIGINT, ``KeyboardInterrupt`` is raised (with ``command_result`` attached) as
  for a non-interactive command. Its group is the caller's own, so a timeout (or
  ``terminate_all``) signals the command's process and its descendants, found through /proc
  when the signal is sent (and again, with those found before, for SIGKILL); what it left
  running after a normal exit is not touched.
- **Process identity.** ``on_start(pgid, start_ticks)`` is called once a non-interactive command
  has started, before any waiting: its process-group id (its own pid) and the group leader's
  start time (:func:`process_start_ticks`), for a caller that records them so that a later
  runner can tell whether the command outlived a crashed one — :func:`group_alive` — and stop
  it — :func:`stop_group`. An exception from ``on_start`` ends the command like one from
  ``on_output``. It is not called for an interactive command (which has no group of its own)
  nor for one that could not start.
- **Stopping everything.** ``terminate_all(grace)`` ends every command ``run_command`` is running
  in any thread (for a caller whose worker threads run commands while the main thread takes the
  Ctrl-C); each of those ``run_command`` calls then returns a result with ``interrupted=True``.
- A command that cannot start (missing interpreter or working directory, ...) gives
  ``exit_code=None`` and ``error="cannot start: ..."``.
"""

from __future__ import annotations

import codecs
import collections
import dataclasses
import math
import os
import select
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable

TYPE_CHECKING = False  # typing is not imported at run time (start-up)
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any, Iterable, Sequence

    # what signal.signal installs and returns (typeshed's signal._HANDLER)
    _Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None

__all__ = [
    "CommandResult",
    "run_command",
    "terminate_group",
    "terminate_all",
    "process_start_ticks",
    "group_alive",
    "stop_group",
    "DRAIN_SECONDS",
]

DRAIN_SECONDS = 0.2  # how long output is still read after the main process has exited
_CHUNK = 65536  # bytes per read / write
_POLL_MIN = 0.00005  # first sleep between checks when polling (no pidfd); doubles ...
_POLL_MAX = 0.05  # ... up to this
_REAP_LIMIT = 5.0  # how long to wait for a SIGKILLed process before giving up on it

# pidfd (Linux 5.3+) tells the selector when the main process exits; older kernels
# (RHEL 8's 4.18) fall back to polling with os.waitid(WNOWAIT). Tests flip this flag.
_USE_PIDFD = hasattr(os, "pidfd_open")

_Utf8Decoder = codecs.getincrementaldecoder("utf-8")
_PIDFD = object()  # selector key data: the pidfd
_RUNNING: set[_Run] = set()  # the _Run of every command being supervised, for terminate_all
_RUNNING_LOCK = threading.RLock()  # re-entrant: terminate_all may run in a signal handler


@dataclasses.dataclass
class CommandResult:
    """What happened to one command. ``ok`` is the single success test."""

    exit_code: int | None = None  # negative signal number, or None (never started / not reaped)
    stdout: str = ""  # tail of stdout, at most tail_bytes bytes (decoded)
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    timed_out: bool = False
    interrupted: bool = False
    error: str | None = None  # one line, or None
    duration: float = 0.0  # seconds
    note: str | None = None  # one line of extra information (not a failure), or None

    @property
    def ok(self) -> bool:
        return (
            self.exit_code == 0
            and not self.timed_out
            and not self.interrupted
            and self.error is None
        )

    def to_dict(self) -> dict[str, object]:
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


class _StartError(Exception):
    pass


# --------------------------------------------------------------------------- output capture


class _Stream:
    """One captured stream: the callback, the incremental decoder, the byte tail."""

    __slots__ = ("name", "fd", "limit", "callback", "decoder", "chunks", "size", "dropped", "done")

    def __init__(self, name: str, fd: int, limit: int, callback: Callable[[str, str], object] | None) -> None:
        self.name = name
        self.fd = fd
        self.limit = limit
        self.callback = callback
        self.decoder = _Utf8Decoder("replace") if callback is not None else None
        self.chunks: collections.deque[bytes] = collections.deque()
        self.size = 0
        self.dropped = False
        self.done = False

    def feed(self, data: bytes) -> None:
        limit = self.limit
        if limit > 0:
            chunks = self.chunks
            chunks.append(data)
            self.size += len(data)
            if self.size > limit:
                self.dropped = True
                while self.size - len(chunks[0]) >= limit:
                    self.size -= len(chunks.popleft())
                excess = self.size - limit
                if excess:
                    chunks[0] = chunks[0][excess:]
                    self.size = limit
        else:
            self.dropped = True
        callback, decoder = self.callback, self.decoder
        if callback is not None and decoder is not None:
            text = decoder.decode(data)
            if text:
                callback(self.name, text)

    def finish(self) -> None:
        """End of stream: flush an incomplete character to the callback (as U+FFFD)."""
        if self.done:
            return
        self.done = True
        callback, decoder = self.callback, self.decoder
        if callback is not None and decoder is not None:
            text = decoder.decode(b"", True)
            if text:
                callback(self.name, text)

    def text(self) -> str:
        data = b"".join(self.chunks)
        if self.dropped:
            # The cut may have landed inside a multi-byte character: drop its continuation bytes.
            skip = 0
            while skip < 3 and skip < len(data) and (data[skip] & 0xC0) == 0x80:
                skip += 1
            data = data[skip:]
        return data.decode("utf-8", "replace")


# --------------------------------------------------------------------------- process groups


_PROC = "/proc"


def _stat(pid: int) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (the state first), or None.

    ``[0]`` state, ``[1]`` ppid, ``[2]`` process group, ``[3]`` session, ``[19]`` start time
    (field 22).
    """
    try:
        fd = os.open("%s/%d/stat" % (_PROC, pid), os.O_RDONLY | os.O_CLOEXEC)
    except (OSError, ValueError):
        return None
    try:  # plain reads: this runs once per command started
        data = piece = os.read(fd, 4096)
        while piece and not data.endswith(b"\n"):  # the line is complete: no second read
            piece = os.read(fd, 4096)
            data += piece
    except OSError:
        return None
    finally:
        os.close(fd)
    # "pid (comm) state ppid pgrp ..."; comm may contain spaces and parentheses.
    fields = data[data.rfind(b")") + 2 :].split()
    return fields if len(fields) > 19 else None


def _all_stats() -> list[tuple[int, list[bytes]]] | None:
    """(pid, stat fields) of every process, or None without /proc."""
    try:
        names = os.listdir(_PROC)
    except OSError:
        return None
    found = []
    for name in names:
        if name.isdigit():
            fields = _stat(int(name))
            if fields is not None:
                found.append((int(name), fields))
    return found


def _live(fields: list[bytes]) -> bool:
    return fields[0] not in (b"Z", b"X")  # a zombie has exited: only its parent has to reap it


def _group_has_live_member(pgid: int) -> bool:
    """True if a process of group ``pgid`` is alive (zombies do not count), per /proc.

    Zombies matter: a zombie stays in its group until its parent reaps it, and an init
    that does not reap (some containers) would make ``killpg(pgid, 0)`` succeed forever.
    """
    stats = _all_stats()
    if stats is None:
        return True  # cannot tell: assume alive
    return any(int(fields[2]) == pgid and _live(fields) for _, fields in stats)


def _descendants(pid: int) -> list[tuple[int, int]]:
    """(pid, start ticks) of every live descendant of ``pid`` in our session, per /proc (none
    without it): one that left the session (``setsid``) did so to outlive its parent."""
    session = str(os.getsid(0)).encode()
    children: dict[int, list[tuple[int, list[bytes]]]] = {}
    for child, fields in _all_stats() or ():
        children.setdefault(int(fields[1]), []).append((child, fields))
    found = []
    todo = [pid]
    while todo:
        for child, fields in children.pop(todo.pop(), ()):
            if _live(fields) and fields[3] == session:
                found.append((child, int(fields[19])))
            todo.append(child)
    return found


def process_start_ticks(pid: int) -> int | None:
    """When process ``pid`` started: clock ticks since boot (/proc/PID/stat field 22).

    Together with the pid it names one process, whatever pid is reused later. On a system
    without /proc (a macOS workstation) it is the start time reported by ``ps`` in seconds
    since the epoch. None if there is no such process or it cannot be told.
    """
    fields = _stat(pid)
    if fields is not None:
        return int(fields[19])
    if os.path.isdir(_PROC):
        return None  # /proc works: there is no such process
    return _ps_start_time(pid)


# The start time of a command we just started, without reading /proc (which costs tens of
# microseconds a command): /proc's field 22 is the boot-time clock at the fork, in clock ticks,
# rounded down. Read the same clock just before and just after the fork: when both readings fall
# in one tick, that tick is the start time. Trusted only once /proc has confirmed it (the first
# command, then every _RECHECK_EVERY-th); one disagreement and /proc is read for good.
_BOOT_CLOCK = getattr(time, "CLOCK_BOOTTIME", None)
try:
    _NS_PER_TICK = 1_000_000_000 // os.sysconf("SC_CLK_TCK") if 1_000_000_000 % os.sysconf("SC_CLK_TCK") == 0 else 0
except (AttributeError, ValueError, OSError):
    _NS_PER_TICK = 0
_RECHECK_EVERY = 64


class _ClockTrust:
    """Has /proc confirmed the clock (``confirmed``), or contradicted it once (``never``: read
    /proc from then on); how many start times the clock gave since /proc was last asked."""

    def __init__(self) -> None:
        self.confirmed = False
        self.never = False
        self.since_check = 0


_clock_trust = _ClockTrust()
_clock_lock = threading.Lock()


def _boot_ns() -> int | None:
    return time.clock_gettime_ns(_BOOT_CLOCK) if _BOOT_CLOCK is not None and _NS_PER_TICK else None


def _start_ticks(pid: int, before: int | None, after: int | None) -> int | None:
    """process_start_ticks(pid) of a child forked between the boot-clock readings ``before``
    and ``after`` (see above): from the clock when it is certain, else from /proc."""
    trust = _clock_trust
    if before is None or after is None or trust.never:
        return process_start_ticks(pid)
    tick = before // _NS_PER_TICK
    if tick != after // _NS_PER_TICK:  # the fork may have been in either tick
        return process_start_ticks(pid)
    with _clock_lock:
        if trust.confirmed and trust.since_check < _RECHECK_EVERY:
            trust.since_check += 1
            return tick
    ticks = process_start_ticks(pid)
    with _clock_lock:
        trust.since_check = 0
        if ticks == tick:
            trust.confirmed = True
        else:
            trust.confirmed, trust.never = False, True
    return ticks


def _ps_start_time(pid: int) -> int | None:
    """Start of ``pid`` in whole seconds since the epoch, from ``ps -o lstart=``."""
    try:
        out = subprocess.run(
            ["ps", "-o", "lstart=", "-p", str(pid)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=dict(os.environ, LC_ALL="C"),
            timeout=10,
        ).stdout.decode("ascii", "replace")
        return int(time.mktime(time.strptime(" ".join(out.split()), "%a %b %d %H:%M:%S %Y")))
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def group_alive(pgid: int, start_ticks: int | None) -> bool:
    """May the process group of a command started earlier (``run_command``'s ``on_start``)
    still have live processes?

    True while its leader — that very process: same pid, same start time — is alive, or,
    once the leader has gone, while any process of the group is (a group id cannot be reused
    while a member holds it). False when the leader's pid now names another process (pid
    reuse: that group ended long ago), or nothing of the group is alive. Without /proc, or
    without ``start_ticks``, a group that can be signalled counts as alive: when in doubt,
    the answer is "alive" (the caller then does not start the command a second time).
    """
    if not isinstance(pgid, int) or pgid <= 1 or pgid == os.getpgrp():
        return False  # not a group a command of ours ran in
    if not os.path.isdir(_PROC):
        now = _ps_start_time(pgid) if start_ticks is not None else None
        if now is not None and now != start_ticks:
            return False
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    leader = _stat(pgid)
    if leader is not None:
        if start_ticks is not None and int(leader[19]) != start_ticks:
            return False
        if _live(leader) and int(leader[2]) == pgid:
            return True
    return _group_has_live_member(pgid)


def stop_group(pgid: int, start_ticks: int | None, grace: float = 2.0) -> bool:
    """Stop the process group of a command started earlier, if :func:`group_alive` says it may
    still run: SIGTERM, then SIGKILL after ``grace`` seconds. True once nothing of it is left
    (False: something survived even SIGKILL, e.g. a process in uninterruptible sleep)."""
    if not group_alive(pgid, start_ticks):
        return True
    if terminate_group(pgid, grace):
        return True
    return _wait_group(pgid, time.monotonic() + _REAP_LIMIT)


def _wait_group(pgid: int, deadline: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    """Wait until group ``pgid`` has no live process or ``deadline`` passes; True if gone."""
    delay = 0.001
    checks = 0
    while True:
        if proc is not None and proc.returncode is None:
            proc.poll()
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # members we may not signal: alive as far as we can tell
        else:
            # Something is still in the group; after a few quick checks ask /proc whether
            # it is only zombies.
            if checks >= 3 and not _group_has_live_member(pgid):
                return True
        now = time.monotonic()
        if now >= deadline:
            return False
        time.sleep(min(delay, deadline - now))
        delay = min(delay * 2, _POLL_MAX)
        checks += 1


def _killpg(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def terminate_group(pgid: int, grace: float = 2.0, proc: subprocess.Popen[bytes] | None = None) -> bool:
    """SIGTERM process group ``pgid``, wait up to ``grace`` seconds for it to end, then SIGKILL.

    ``proc`` (the group leader's ``Popen``, optional) is reaped while waiting, so that the
    leader's zombie does not count as alive. Returns True if the group ended within the grace
    period, False if SIGKILL had to be sent. Processes that left the group (``setsid``) are
    not affected.
    """
    if not _killpg(pgid, signal.SIGTERM):
        return True
    if _wait_group(pgid, time.monotonic() + max(grace, 0.0), proc):
        return True
    _killpg(pgid, signal.SIGKILL)
    return False


def terminate_all(grace: float = 2.0) -> int:
    """End every command that ``run_command`` is supervising, in any thread.

    Each command's group (or, for an interactive command, its process) gets SIGTERM; whatever
    is still alive after ``grace`` seconds gets SIGKILL. The ``run_command`` calls concerned
    return results with ``interrupted=True``. Returns the number of commands signalled.
    """
    with _RUNNING_LOCK:
        runs = list(_RUNNING)
    now = time.monotonic()
    for run in runs:
        run.stop_requested = True
        if run.term_at is None:
            run.term_at = now
        run.send_signal(signal.SIGTERM)
    deadline = now + max(float(grace), 0.0)
    for run in runs:
        if run.pgid is not None:
            gone = _wait_group(run.pgid, deadline)
        else:
            gone = _wait_process(run.proc, deadline)
        if not gone:
            run.send_signal(signal.SIGKILL)
    return len(runs)


def _wait_process(proc: subprocess.Popen[bytes], deadline: float) -> bool:
    """Wait (without reaping) until ``proc`` has exited or ``deadline`` passes."""
    delay = 0.001
    while not _exited(proc):
        now = time.monotonic()
        if now >= deadline:
            return False
        time.sleep(min(delay, deadline - now))
        delay = min(delay * 2, _POLL_MAX)
    return True


# --------------------------------------------------------------------------- starting


def _argv_for(command: str, shell: str | Sequence[str] | None) -> tuple[list[str], bytes | None]:
    """(argv, script bytes or None) for ``command``; see the module docstring."""
    stripped = command.lstrip()
    if stripped.startswith("#!"):
        line = stripped.split("\n", 1)[0][2:].strip()
        if not line:
            raise _StartError("cannot start: the #! line names no interpreter")
        # Like the kernel: the interpreter, then the rest of the line as one argument.
        return line.split(None, 1), stripped.encode("utf-8", "surrogateescape")
    if shell:
        try:
            argv = shlex.split(shell) if isinstance(shell, str) else [str(a) for a in shell]
        except ValueError as e:
            raise _StartError("cannot start: invalid shell %r: %s" % (shell, e)) from None
        if not argv:
            argv = ["/bin/sh"]
    else:
        argv = ["/bin/sh"]
    argv.extend(("-c", command))
    return argv, None


_fd_dir_cache: list[str] = []


def _fd_dir() -> str | None:
    """``/dev/fd`` (or ``/proc/self/fd``) if this system has it, else None."""
    if not _fd_dir_cache:
        for path in ("/dev/fd", "/proc/self/fd"):
            if os.path.isdir(path):
                _fd_dir_cache.append(path)
                break
        else:
            return None
    return _fd_dir_cache[0]


_devnull_fd: list[int] = []


def _devnull() -> int:
    """A descriptor of /dev/null for the commands' stdin, opened once (as subprocess.DEVNULL
    does, read-write, but not once per command: it is never inherited beyond the dup2)."""
    if not _devnull_fd:
        fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        with _RUNNING_LOCK:
            if _devnull_fd:  # another thread was first
                os.close(fd)
            else:
                _devnull_fd.append(fd)
    return _devnull_fd[0]


def _start_error(exc: OSError | ValueError, argv: Sequence[str], cwd: str | None) -> str:
    if isinstance(exc, ValueError):  # e.g. an embedded NUL byte
        return "cannot start: %s" % exc
    reason = exc.strerror or str(exc)
    if cwd is not None and exc.filename == cwd:
        return "cannot start: working directory %s: %s" % (cwd, reason)
    if isinstance(exc, FileNotFoundError):
        return "cannot start: %s not found" % argv[0]
    return "cannot start: %s: %s" % (argv[0], reason)


def _close(fds: Iterable[int | None]) -> None:
    for fd in fds:
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


def _seconds(value: float) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "signal %d" % number


if hasattr(os, "waitid"):

    def _exited(proc: subprocess.Popen[bytes]) -> bool:
        """Has the child exited? Does not reap it (the zombie keeps its pid and group)."""
        try:
            flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
            return os.waitid(os.P_PID, proc.pid, flags) is not None
        except ChildProcessError:
            return True

else:  # macOS (a workstation running `playbook run`): reap right away

    def _exited(proc: subprocess.Popen[bytes]) -> bool:
        return proc.poll() is not None


# --------------------------------------------------------------------------- running


def run_command(
    command: str,
    shell: str | list[str] | None = None,
    env: dict[str, str | None] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
    interactive: bool = False,
    on_output: Callable[[str, str], object] | None = None,
    tail_bytes: int = 65536,
    kill_grace: float = 2.0,
    on_start: Callable[[int, int | None], object] | None = None,
) -> CommandResult:
    """Run ``command`` and return a :class:`CommandResult` (see the module docstring)."""
    started = time.monotonic()
    try:
        argv, script = _argv_for(command, shell)
    except _StartError as e:
        return CommandResult(error=str(e), duration=time.monotonic() - started)

    full_env = None
    if env:
        full_env = dict(os.environ)
        for key, value in env.items():
            if value is None:
                full_env.pop(key, None)
            else:
                full_env[key] = str(value)
    if cwd is not None:
        cwd = os.fspath(cwd)
        if not os.path.isdir(cwd):
            what = "is not a directory" if os.path.exists(cwd) else "does not exist"
            return CommandResult(
                error="cannot start: working directory %s %s" % (cwd, what),
                duration=time.monotonic() - started,
            )

    timeout = float(timeout) if timeout is not None else 0.0
    run = _Run(on_output, on_start, tail_bytes, max(float(kill_grace), 0.0), timeout)
    if interactive:
        saved_handlers = _ignore_terminal_signals()
        try:
            return run.start(argv, script, full_env, cwd, True, started)
        finally:
            _restore_signals(saved_handlers)
    return run.start(argv, script, full_env, cwd, False, started)


class _Script:
    """A #! script on its way into the pipe the interpreter reads it from."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.written = 0

    def write(self, fd: int) -> bool:
        """Write the next piece (the pipe is ready); True when nothing more is to be written."""
        try:
            self.written += os.write(fd, self.data[self.written : self.written + _CHUNK])
        except BlockingIOError:
            return False
        except OSError:  # BrokenPipeError: the interpreter stopped reading
            return True
        return self.written >= len(self.data)


class _Run:
    """The supervision of one command (see run_command)."""

    def __init__(
        self,
        on_output: Callable[[str, str], object] | None,
        on_start: Callable[[int, int | None], object] | None,
        tail_bytes: int,
        kill_grace: float,
        timeout: float,
    ) -> None:
        self.on_output = on_output
        self.on_start = on_start
        self.tail_bytes = tail_bytes
        self.kill_grace = kill_grace
        self.timeout = timeout if timeout > 0 else None
        self.proc: subprocess.Popen[bytes]  # set by start()
        self.pgid: int | None = None  # the command's own group; None when interactive (shares ours)
        self.streams: list[_Stream] = []  # per captured output
        self.fds: list[int] = []  # descriptors to close at the end
        self.reading = 0  # captured streams still open
        self.exited = False  # the main process has exited (not reaped yet)
        self.drain_until: float | None = None  # after the exit: how long output is still read
        self.alarm: float | None = None  # when the timeout acts next: SIGTERM, SIGKILL, give up
        self.timed_out = False
        self.term_at: float | None = None  # when SIGTERM was sent (timeout or terminate_all)
        self.killed = False  # SIGKILL sent
        self.held_open = False  # pipes still open after the main process exited
        self.stop_requested = False  # terminate_all was called
        self.tree: dict[int, int] = {}  # interactive: pid -> start ticks of the processes signalled
        self.fork_window: tuple[int | None, int | None] = (None, None)  # boot clock around the fork

    # -- starting ------------------------------------------------------------------------

    def start(
        self,
        argv: list[str],
        script: bytes | None,
        full_env: dict[str, str] | None,
        cwd: str | None,
        interactive: bool,
        started: float,
    ) -> CommandResult:
        """Start the command and supervise it to the end."""
        script_r = script_w = out_r = out_w = err_r = err_w = None
        pass_fds: tuple[int, ...] = ()
        if script is not None:
            fd_dir = _fd_dir()
            if fd_dir is None:
                return CommandResult(
                    error="cannot start: #! scripts need /dev/fd, which this system lacks",
                    duration=time.monotonic() - started,
                )
            script_r, script_w = os.pipe()
            argv.append("%s/%d" % (fd_dir, script_r))
            pass_fds = (script_r,)
        if not interactive:
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
        before = _boot_ns() if not interactive else None
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=None if interactive else _devnull(),
                stdout=out_w,
                stderr=err_w,
                env=full_env,
                cwd=cwd,
                start_new_session=not interactive,
                pass_fds=pass_fds,
            )
        except (OSError, ValueError) as e:
            _close((out_r, err_r, script_w))
            return CommandResult(
                error=_start_error(e, argv, cwd), duration=time.monotonic() - started
            )
        finally:
            _close((out_w, err_w, script_r))
        if not interactive:
            self.pgid = self.proc.pid
            self.fork_window = (before, _boot_ns())
        with _RUNNING_LOCK:
            _RUNNING.add(self)
        try:
            return self.supervise(started, out_r, err_r, script_w, script)
        finally:
            with _RUNNING_LOCK:
                _RUNNING.discard(self)

    def send_signal(self, sig: int) -> None:
        """Signal the command: its group, or when interactive its process and descendants."""
        # The main process is never reaped before the loop ends, so its pid (and group id)
        # cannot have been reused.
        if self.pgid is not None:
            _killpg(self.pgid, sig)
            return
        # An interactive command shares our group: signal the processes it started, found
        # through /proc now, and those found before (orphans once the shell has died).
        self.tree.update(_descendants(self.proc.pid))
        try:
            os.kill(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        for pid, ticks in list(self.tree.items()):
            if process_start_ticks(pid) == ticks:
                try:
                    os.kill(pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass

    # -- supervising ---------------------------------------------------------------------

    def supervise(
        self, started: float, out_r: int | None, err_r: int | None, script_w: int | None, script: bytes | None
    ) -> CommandResult:
        # poll(2) itself, not epoll or the selectors module: registering costs no system call,
        # and a command has at most four descriptors to watch
        self.poller = select.poll()
        self.watched: dict[int, object] = {}  # fd -> its _Stream, _Script or _PIDFD
        try:
            pidfd = self._register(out_r, err_r, script_w, script)
            if self.on_start is not None and self.pgid is not None:
                self.on_start(self.pgid, _start_ticks(self.pgid, *self.fork_window))
            self._loop(pidfd, started)
            for stream in self.streams:
                stream.finish()
            _close(self.fds)  # leftovers still writing get EPIPE while they are terminated
            self.fds = []
            result = self._finish(started)
        except BaseException as exc:
            result = self._abort(exc, started)
            try:
                setattr(exc, "command_result", result)  # noqa: B010 (any exception type)
            except Exception:
                pass
            raise
        finally:
            _close(self.fds)
            self.fds = []
        if self.pgid is None and result.exit_code == -signal.SIGINT:
            result.interrupted = True
            result.error = "interrupted (SIGINT)"
            interrupt = KeyboardInterrupt()
            setattr(interrupt, "command_result", result)  # noqa: B010
            raise interrupt
        return result

    def _watch(self, fd: int, what: object, events: int) -> None:
        self.fds.append(fd)
        self.watched[fd] = what
        self.poller.register(fd, events)

    def _register(self, out_r: int | None, err_r: int | None, script_w: int | None, script: bytes | None) -> int | None:
        """Watch the output pipes, the script pipe and (pidfd) the exit; returns the pidfd."""
        # The output pipes stay blocking: each is read only when poll says it has data or has
        # ended, and only by us, so a read never waits.
        # (start makes the two output pipes together, and the script pipe only for a script: the
        # ignores below are for those pairs, which mypy cannot relate)
        if out_r is not None:
            self.streams = [
                _Stream("stdout", out_r, self.tail_bytes, self.on_output),
                _Stream("stderr", err_r, self.tail_bytes, self.on_output),  # type: ignore[arg-type]
            ]
            self._watch(out_r, self.streams[0], select.POLLIN)
            self._watch(err_r, self.streams[1], select.POLLIN)  # type: ignore[arg-type]
        self.reading = len(self.streams)
        if script_w is not None:
            os.set_blocking(script_w, False)  # written a piece at a time, as the pipe has room
            self._watch(script_w, _Script(script), select.POLLOUT)  # type: ignore[arg-type]
        pidfd = _open_pidfd(self.proc.pid)
        if pidfd is not None:
            self._watch(pidfd, _PIDFD, select.POLLIN)
        return pidfd

    def _loop(self, pidfd: int | None, started: float) -> None:
        """Pump output (and the script) until the main process has exited and output is done.

        Without a pidfd the exit is polled, at intervals doubling from _POLL_MIN to _POLL_MAX
        (back to _POLL_MIN whenever something happens: the exit may follow soon).
        """
        if self.timeout is not None:
            self.alarm = started + self.timeout
        poll = _POLL_MIN if pidfd is None else None
        while True:
            events = self._wait(poll)
            if poll is not None:
                poll = _POLL_MIN if events else min(poll * 2, _POLL_MAX)
            for fd, _ in events:
                self._handle(fd)
            if not self.exited and pidfd is None:
                self.exited = _exited(self.proc)
            if self.exited:
                if self._drained(pidfd):
                    return
            elif self._enforce_timeout():
                return

    def _wait(self, poll: float | None) -> Sequence[tuple[int, int]]:
        """The next events, waiting at most until the next thing to do."""
        until = self.drain_until if self.exited else self.alarm
        wait = None if until is None else max(until - time.monotonic(), 0)
        if poll is not None and not self.exited:
            wait = poll if wait is None else min(wait, poll)
        if self.watched:
            # milliseconds, rounded up: a timeout never returns before its time
            return self.poller.poll(None if wait is None else math.ceil(wait * 1000))
        # polling, nothing left to read: sleep (poll would round up to 1 ms)
        time.sleep(wait if wait is not None else _POLL_MAX)
        return ()

    def _handle(self, fd: int) -> None:
        """One ready descriptor: the exit (pidfd), the script pipe, or output."""
        what = self.watched.get(fd)
        if what is None:  # dropped while handling an earlier event of this round
            return
        if what is _PIDFD:
            self.exited = True
        elif isinstance(what, _Script):
            if what.write(fd):
                self._drop(fd)
        else:
            try:
                chunk = os.read(fd, _CHUNK)
            except BlockingIOError:
                return
            if chunk:
                what.feed(chunk)  # type: ignore[attr-defined]
            else:
                self._drop(fd)
                what.finish()  # type: ignore[attr-defined]
                self.reading -= 1

    def _drained(self, pidfd: int | None) -> bool:
        """After the main process exited: True once its output has ended, or DRAIN_SECONDS
        later (something it left running holds the pipes open)."""
        if self.reading == 0:
            return True
        now = time.monotonic()
        if self.drain_until is None:
            self.drain_until = now + DRAIN_SECONDS
            if pidfd is not None:
                self._drop(pidfd)
            for fd, what in list(self.watched.items()):
                if isinstance(what, _Script):  # nobody will read the rest of the script
                    self._drop(fd)
            return False
        if now >= self.drain_until:
            self.held_open = True
            return True
        return False

    def _enforce_timeout(self) -> bool:
        """At the alarm: SIGTERM (the timeout), then SIGKILL after kill_grace, then, after
        _REAP_LIMIT, give up on a process that ignores even SIGKILL (uninterruptible sleep):
        True means stop waiting."""
        now = time.monotonic()
        if self.alarm is None or now < self.alarm:
            return False
        if not self.timed_out:
            self.timed_out = True
            self.send_signal(signal.SIGTERM)
            self.term_at = now
            self.alarm = now + self.kill_grace
        elif not self.killed:
            self.send_signal(signal.SIGKILL)
            self.killed = True
            self.alarm = now + _REAP_LIMIT
        else:
            return True
        return False

    def _drop(self, fd: int) -> None:
        if self.watched.pop(fd, None) is not None:
            self.poller.unregister(fd)
        if fd in self.fds:
            self.fds.remove(fd)
            _close((fd,))

    # -- the result ----------------------------------------------------------------------

    def _finish(self, started: float) -> CommandResult:
        """After the loop: end the group's leftovers, reap, build the result."""
        proc = self.proc
        pgid = self.pgid
        kill_grace = self.kill_grace
        group_deadline = None
        if pgid is not None:
            # Whatever the command left running in its group ends with it. The leader is
            # not reaped yet, so the group id cannot have been reused.
            if self.term_at is None:
                _killpg(pgid, signal.SIGTERM)
                group_deadline = time.monotonic() + kill_grace
            else:
                group_deadline = self.term_at + kill_grace
        # The loop returns once the main process has exited, or after SIGKILL plus
        # _REAP_LIMIT seconds (a process stuck in uninterruptible sleep).
        if self.exited and not self.killed:
            exit_code = _reap_exited(proc)
        else:
            exit_code = _reap(proc, _REAP_LIMIT if self.killed else None)
        group_killed = self.killed
        # group_deadline is set above whenever pgid is (mypy cannot relate the two)
        if pgid is not None and not _wait_group(pgid, group_deadline):  # type: ignore[arg-type]
            _killpg(pgid, signal.SIGKILL)
            group_killed = True
        error = note = None
        interrupted = self.stop_requested
        if interrupted:
            what = "process group" if pgid is not None else "process"
            how = "killed" if group_killed or exit_code == -signal.SIGKILL else "terminated"
            error = "interrupted (%s %s)" % (what, how)
        elif self.timed_out:  # only a command with a timeout times out: self.timeout is a float
            what = "process group" if pgid is not None else "process"
            how = "killed" if group_killed else "terminated"
            error = "timed out after %s s (%s %s)" % (_seconds(self.timeout), what, how)  # type: ignore[arg-type]
            if exit_code is None:
                error = "timed out after %s s (process did not die after SIGKILL)" % (
                    _seconds(self.timeout)  # type: ignore[arg-type]
                )
        elif exit_code is not None and exit_code < 0:
            error = "killed by %s" % _signal_name(-exit_code)
        if pgid is None:
            note = "output not captured: interactive command used the terminal"
        elif self.held_open:
            note = (
                "background processes still held the output open after the command "
                "exited; they were terminated"
            )
        return self._result(
            exit_code,
            started,
            timed_out=self.timed_out,
            interrupted=interrupted,
            error=error,
            note=note,
        )

    def _abort(self, exc: BaseException, started: float) -> CommandResult:
        """An exception while the command ran: end the command, then describe what we have."""
        proc = self.proc
        how = "terminated"
        try:
            if self.pgid is not None:
                if not terminate_group(self.pgid, self.kill_grace, proc):
                    how = "killed"
            elif proc.poll() is None:
                self.send_signal(signal.SIGTERM)
                try:
                    proc.wait(self.kill_grace)
                except subprocess.TimeoutExpired:
                    self.send_signal(signal.SIGKILL)
                    how = "killed"
        except BaseException:  # a second Ctrl-C: no more grace
            how = "killed"
            if proc.returncode is None:
                self.send_signal(signal.SIGKILL)
        exit_code = _reap(proc, _REAP_LIMIT)
        what = "process group" if self.pgid is not None else "process"
        return self._result(
            exit_code,
            started,
            interrupted=True,
            error="interrupted by %s (%s %s)" % (type(exc).__name__, what, how),
        )

    def _result(self, exit_code: int | None, started: float, **fields: Any) -> CommandResult:
        for stream in self.streams:
            fields[stream.name] = stream.text()
            fields[stream.name + "_truncated"] = stream.dropped
        return CommandResult(exit_code=exit_code, duration=time.monotonic() - started, **fields)


def _reap_exited(proc: subprocess.Popen[bytes]) -> int | None:
    """Reap ``proc``, which has exited (so this does not wait): what Popen.wait does, minus its
    lock and timeout machinery, which nothing here needs (no other thread reaps our children)."""
    if proc.returncode is None:
        try:
            _, status = os.waitpid(proc.pid, 0)
        except ChildProcessError:  # reaped already (SIGCHLD ignored?): as Popen.wait would say
            return _reap(proc, None)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode


def _reap(proc: subprocess.Popen[bytes], limit: float | None) -> int | None:
    """Reap ``proc``; with a ``limit`` give up after that many seconds (exit code None)."""
    if proc.returncode is not None:
        return proc.returncode
    try:
        while True:
            try:
                return proc.wait(limit)
            except KeyboardInterrupt:  # reaping a dead or SIGKILLed child takes no time
                limit = _REAP_LIMIT
                continue
    except subprocess.TimeoutExpired:
        return None


def _open_pidfd(pid: int) -> int | None:
    global _USE_PIDFD
    if not _USE_PIDFD:
        return None
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None  # cannot happen for an unreaped child; poll instead
    except OSError:
        _USE_PIDFD = False  # ENOSYS (kernel before 5.3) or forbidden by seccomp
        return None


def _swallow_signal(signum: int, frame: FrameType | None) -> None:
    pass


def _ignore_terminal_signals() -> list[tuple[int, _Handler]]:
    """Let SIGINT/SIGQUIT pass the runner by (system(3) style); returns what to restore.

    A no-op Python handler rather than SIG_IGN: the handler is in place before the child is
    started (no window where Ctrl-C would hit the runner) and, unlike SIG_IGN, it is not
    inherited through exec — the command gets the default behaviour.
    """
    saved: list[tuple[int, _Handler]] = []
    if threading.current_thread() is not threading.main_thread():
        return saved
    try:
        for sig in (signal.SIGINT, signal.SIGQUIT):
            saved.append((sig, signal.signal(sig, _swallow_signal)))
    except (ValueError, OSError):
        pass
    return saved


def _restore_signals(saved: Iterable[tuple[int, _Handler]]) -> None:
    for sig, handler in saved:
        try:
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        except (ValueError, OSError, TypeError):
            pass
