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
  for a non-interactive command. A timeout terminates the command's process only (its group is
  the caller's own).
- **Stopping everything.** ``terminate_all(grace)`` ends every command ``run_command`` is running
  in any thread (for a caller whose worker threads run commands while the main thread takes the
  Ctrl-C); each of those ``run_command`` calls then returns a result with ``interrupted=True``.
- A command that cannot start (missing interpreter or working directory, ...) gives
  ``exit_code=None`` and ``error="cannot start: ..."``.
"""

import codecs
import collections
import os
import selectors
import shlex
import signal
import subprocess
import threading
import time

__all__ = ["CommandResult", "run_command", "terminate_group", "terminate_all", "DRAIN_SECONDS"]

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
_RUNNING = set()  # the _Run of every command being supervised, for terminate_all
_RUNNING_LOCK = threading.RLock()  # re-entrant: terminate_all may run in a signal handler
_SCRIPT = object()  # selector key data: the pipe feeding a #! script


class CommandResult:
    """What happened to one command. ``ok`` is the single success test."""

    __slots__ = (
        "exit_code",
        "stdout",
        "stderr",
        "stdout_truncated",
        "stderr_truncated",
        "timed_out",
        "interrupted",
        "error",
        "duration",
        "note",
    )

    def __init__(
        self,
        exit_code=None,
        stdout="",
        stderr="",
        stdout_truncated=False,
        stderr_truncated=False,
        timed_out=False,
        interrupted=False,
        error=None,
        duration=0.0,
        note=None,
    ):
        self.exit_code = exit_code  # int, negative signal number, or None (never started/reaped)
        self.stdout = stdout  # tail of stdout, at most tail_bytes bytes (decoded)
        self.stderr = stderr
        self.stdout_truncated = stdout_truncated
        self.stderr_truncated = stderr_truncated
        self.timed_out = timed_out
        self.interrupted = interrupted
        self.error = error  # one line, or None
        self.duration = duration  # seconds
        self.note = note  # one line of extra information (not a failure), or None

    @property
    def ok(self):
        return (
            self.exit_code == 0
            and not self.timed_out
            and not self.interrupted
            and self.error is None
        )

    def to_dict(self):
        return {name: getattr(self, name) for name in self.__slots__}

    def __eq__(self, other):
        return isinstance(other, CommandResult) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return "CommandResult(%s)" % ", ".join(
            "%s=%r" % (name, getattr(self, name)) for name in self.__slots__
        )


class _StartError(Exception):
    pass


# --------------------------------------------------------------------------- output capture


class _Stream:
    """One captured stream: the callback, the incremental decoder, the byte tail."""

    __slots__ = ("name", "fd", "limit", "callback", "decoder", "chunks", "size", "dropped", "done")

    def __init__(self, name, fd, limit, callback):
        self.name = name
        self.fd = fd
        self.limit = limit
        self.callback = callback
        self.decoder = _Utf8Decoder("replace") if callback is not None else None
        self.chunks = collections.deque()
        self.size = 0
        self.dropped = False
        self.done = False

    def feed(self, data):
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
        if self.callback is not None:
            text = self.decoder.decode(data)
            if text:
                self.callback(self.name, text)

    def finish(self):
        """End of stream: flush an incomplete character to the callback (as U+FFFD)."""
        if self.done:
            return
        self.done = True
        if self.callback is not None:
            text = self.decoder.decode(b"", True)
            if text:
                self.callback(self.name, text)

    def text(self):
        data = b"".join(self.chunks)
        if self.dropped:
            # The cut may have landed inside a multi-byte character: drop its continuation bytes.
            skip = 0
            while skip < 3 and skip < len(data) and (data[skip] & 0xC0) == 0x80:
                skip += 1
            data = data[skip:]
        return data.decode("utf-8", "replace")


# --------------------------------------------------------------------------- process groups


def _group_has_live_member(pgid):
    """True if a process of group ``pgid`` is alive (zombies do not count), per /proc.

    Zombies matter: a zombie stays in its group until its parent reaps it, and an init
    that does not reap (some containers) would make ``killpg(pgid, 0)`` succeed forever.
    """
    try:
        names = os.listdir("/proc")
    except OSError:
        return True  # cannot tell: assume alive
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                data = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ..."; comm may contain spaces and parentheses.
        fields = data[data.rfind(b")") + 2 :].split()
        try:
            if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
                return True
        except (IndexError, ValueError):
            continue
    return False


def _wait_group(pgid, deadline, proc=None):
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


def _killpg(pgid, sig):
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def terminate_group(pgid, grace=2.0, proc=None):
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


def terminate_all(grace=2.0):
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


def _wait_process(proc, deadline):
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


def _argv_for(command, shell):
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
            raise _StartError("cannot start: invalid shell %r: %s" % (shell, e))
        if not argv:
            argv = ["/bin/sh"]
    else:
        argv = ["/bin/sh"]
    argv.extend(("-c", command))
    return argv, None


_fd_dir_cache = []


def _fd_dir():
    """``/dev/fd`` (or ``/proc/self/fd``) if this system has it, else None."""
    if not _fd_dir_cache:
        for path in ("/dev/fd", "/proc/self/fd"):
            if os.path.isdir(path):
                _fd_dir_cache.append(path)
                break
        else:
            return None
    return _fd_dir_cache[0]


def _start_error(exc, argv, cwd):
    if isinstance(exc, ValueError):  # e.g. an embedded NUL byte
        return "cannot start: %s" % exc
    reason = exc.strerror or str(exc)
    if cwd is not None and exc.filename == cwd:
        return "cannot start: working directory %s: %s" % (cwd, reason)
    if isinstance(exc, FileNotFoundError):
        return "cannot start: %s not found" % argv[0]
    return "cannot start: %s: %s" % (argv[0], reason)


def _close(fds):
    for fd in fds:
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


def _seconds(value):
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def _signal_name(number):
    try:
        return signal.Signals(number).name
    except ValueError:
        return "signal %d" % number


if hasattr(os, "waitid"):

    def _exited(proc):
        """Has the child exited? Does not reap it (the zombie keeps its pid and group)."""
        try:
            flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
            return os.waitid(os.P_PID, proc.pid, flags) is not None
        except ChildProcessError:
            return True

else:  # macOS (a workstation running `playbook run`): reap right away

    def _exited(proc):
        return proc.poll() is not None


# --------------------------------------------------------------------------- running


def run_command(
    command,
    shell=None,
    env=None,
    cwd=None,
    timeout=None,
    interactive=False,
    on_output=None,
    tail_bytes=65536,
    kill_grace=2.0,
):
    """Run ``command`` and return a :class:`CommandResult` (see the module docstring)."""
    started = time.monotonic()
    timeout = float(timeout) if timeout is not None else 0.0
    kill_grace = max(float(kill_grace), 0.0)
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

    if interactive:
        saved_handlers = _ignore_terminal_signals()
        try:
            return _start(argv, script, full_env, cwd, timeout, True, on_output, tail_bytes,
                          kill_grace, started)
        finally:
            _restore_signals(saved_handlers)
    return _start(argv, script, full_env, cwd, timeout, False, on_output, tail_bytes,
                  kill_grace, started)


def _start(argv, script, full_env, cwd, timeout, interactive, on_output, tail_bytes,
           kill_grace, started):
    script_r = script_w = out_r = out_w = err_r = err_w = None
    pass_fds = ()
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
    try:
        proc = subprocess.Popen(
            argv,
            stdin=None if interactive else subprocess.DEVNULL,
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

    run = _Run(proc, None if interactive else proc.pid, on_output, tail_bytes, kill_grace)
    run.timeout = timeout if timeout > 0 else None
    with _RUNNING_LOCK:
        _RUNNING.add(run)
    try:
        return run.supervise(started, out_r, err_r, script_w, script)
    finally:
        with _RUNNING_LOCK:
            _RUNNING.discard(run)


class _Run:
    """The supervision of one started process (see run_command)."""

    def __init__(self, proc, pgid, on_output, tail_bytes, kill_grace):
        self.proc = proc
        self.pgid = pgid  # None when interactive: the process shares our group
        self.on_output = on_output
        self.tail_bytes = tail_bytes
        self.kill_grace = kill_grace
        self.timeout = None
        self.streams = []
        self.timed_out = False
        self.term_at = None  # when SIGTERM was sent (timeout)
        self.killed = False  # SIGKILL sent
        self.held_open = False  # pipes still open after the main process exited
        self.stop_requested = False  # terminate_all was called
        self.fds = []

    def send_signal(self, sig):
        """Signal the command: its group, or just its process when interactive."""
        # The main process is never reaped before the loop ends, so its pid (and group id)
        # cannot have been reused.
        try:
            if self.pgid is not None:
                os.killpg(self.pgid, sig)
            else:
                os.kill(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def supervise(self, started, out_r, err_r, script_w, script):
        sel = selectors.DefaultSelector()
        pidfd = None
        try:
            for name, fd in (("stdout", out_r), ("stderr", err_r)):
                if fd is not None:
                    self.fds.append(fd)
                    os.set_blocking(fd, False)
                    stream = _Stream(name, fd, self.tail_bytes, self.on_output)
                    self.streams.append(stream)
                    sel.register(fd, selectors.EVENT_READ, stream)
            if script_w is not None:
                self.fds.append(script_w)
                os.set_blocking(script_w, False)
                sel.register(script_w, selectors.EVENT_WRITE, _SCRIPT)
            pidfd = _open_pidfd(self.proc.pid)
            if pidfd is not None:
                self.fds.append(pidfd)
                sel.register(pidfd, selectors.EVENT_READ, _PIDFD)
            self._loop(sel, started, pidfd, memoryview(script) if script else None)
            for stream in self.streams:
                stream.finish()
            sel.close()
            _close(self.fds)  # leftovers still writing get EPIPE while they are terminated
            self.fds = []
            result = self._finish(started)
        except BaseException as exc:
            result = self._abort(exc, started)
            try:
                exc.command_result = result
            except Exception:
                pass
            raise
        finally:
            sel.close()
            _close(self.fds)
            self.fds = []
        if self.pgid is None and result.exit_code == -signal.SIGINT:
            result.interrupted = True
            result.error = "interrupted (SIGINT)"
            exc = KeyboardInterrupt()
            exc.command_result = result
            raise exc
        return result

    def _loop(self, sel, started, pidfd, script):
        """Pump output (and the script) until the main process has exited and output is done."""
        proc = self.proc
        reading = len(self.streams)
        written = 0
        exited = False
        drain_until = None
        deadline = started + self.timeout if self.timeout is not None else None
        kill_at = None
        poll = _POLL_MIN
        while True:
            # How long to wait for the next event.
            if exited:
                wait = drain_until - time.monotonic()
            else:
                wait = None
                if kill_at is not None:
                    wait = kill_at - time.monotonic()
                elif deadline is not None:
                    wait = deadline - time.monotonic()
                if pidfd is None:
                    wait = poll if wait is None else min(wait, poll)
                    poll = min(poll * 2, _POLL_MAX)
            if wait is not None and wait < 0:
                wait = 0
            if sel.get_map():
                events = sel.select(wait)
            else:  # polling, nothing left to read: sleep (epoll would round up to 1 ms)
                time.sleep(wait if wait is not None else _POLL_MAX)
                events = ()
            if events:
                poll = _POLL_MIN  # something happened: the exit may follow soon
            for key, _ in events:
                data = key.data
                if data is _PIDFD:
                    exited = True
                elif data is _SCRIPT:
                    try:
                        written += os.write(key.fd, script[written : written + _CHUNK])
                    except BlockingIOError:
                        continue
                    except OSError:  # BrokenPipeError: the interpreter stopped reading
                        written = len(script)
                    if written >= len(script):
                        self._drop(sel, key.fd)
                else:
                    try:
                        chunk = os.read(key.fd, _CHUNK)
                    except BlockingIOError:
                        continue
                    if chunk:
                        data.feed(chunk)
                    else:
                        self._drop(sel, key.fd)
                        data.finish()
                        reading -= 1
            if not exited and pidfd is None:
                exited = _exited(proc)
            if exited:
                if reading == 0:
                    return
                now = time.monotonic()
                if drain_until is None:
                    drain_until = now + DRAIN_SECONDS
                    if pidfd is not None:
                        self._drop(sel, pidfd)
                    if script is not None and written < len(script):
                        # Nobody will read the rest of the script.
                        for key in list(sel.get_map().values()):
                            if key.data is _SCRIPT:
                                self._drop(sel, key.fd)
                elif now >= drain_until:
                    self.held_open = True
                    return
                continue
            if deadline is None:
                continue
            now = time.monotonic()
            if kill_at is None and not self.killed:
                if now >= deadline:
                    self.timed_out = True
                    self.send_signal(signal.SIGTERM)
                    self.term_at = now
                    kill_at = now + self.kill_grace
            elif kill_at is not None and now >= kill_at:
                self.send_signal(signal.SIGKILL)
                self.killed = True
                kill_at = None
                deadline = now + _REAP_LIMIT  # re-used as "give up waiting" below
            elif self.killed and now >= deadline:
                return  # the process ignores SIGKILL (uninterruptible sleep): give up

    def _drop(self, sel, fd):
        try:
            sel.unregister(fd)
        except (KeyError, ValueError):
            pass
        if fd in self.fds:
            self.fds.remove(fd)
            _close((fd,))

    def _finish(self, started):
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
        exit_code = _reap(proc, _REAP_LIMIT if self.killed else None)
        group_killed = self.killed
        if pgid is not None and not _wait_group(pgid, group_deadline):
            _killpg(pgid, signal.SIGKILL)
            group_killed = True
        error = note = None
        interrupted = self.stop_requested
        if interrupted:
            what = "process group" if pgid is not None else "process"
            how = "killed" if group_killed or exit_code == -signal.SIGKILL else "terminated"
            error = "interrupted (%s %s)" % (what, how)
        elif self.timed_out:
            what = "process group" if pgid is not None else "process"
            how = "killed" if group_killed else "terminated"
            error = "timed out after %s s (%s %s)" % (_seconds(self.timeout), what, how)
            if exit_code is None:
                error = "timed out after %s s (process did not die after SIGKILL)" % (
                    _seconds(self.timeout)
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

    def _abort(self, exc, started):
        """An exception while the command ran: end the command, then describe what we have."""
        proc = self.proc
        how = "terminated"
        try:
            if self.pgid is not None:
                if not terminate_group(self.pgid, self.kill_grace, proc):
                    how = "killed"
            elif proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(self.kill_grace)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    how = "killed"
        except BaseException:  # a second Ctrl-C: no more grace
            how = "killed"
            if self.pgid is not None:
                _killpg(self.pgid, signal.SIGKILL)
            else:
                try:
                    proc.kill()
                except OSError:
                    pass
        exit_code = _reap(proc, _REAP_LIMIT)
        what = "process group" if self.pgid is not None else "process"
        return self._result(
            exit_code,
            started,
            interrupted=True,
            error="interrupted by %s (%s %s)" % (type(exc).__name__, what, how),
        )

    def _result(self, exit_code, started, **fields):
        result = CommandResult(exit_code=exit_code, duration=time.monotonic() - started, **fields)
        for stream in self.streams:
            setattr(result, stream.name, stream.text())
            setattr(result, stream.name + "_truncated", stream.dropped)
        return result


def _reap(proc, limit):
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


def _open_pidfd(pid):
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


def _swallow_signal(signum, frame):
    pass


def _ignore_terminal_signals():
    """Let SIGINT/SIGQUIT pass the runner by (system(3) style); returns what to restore.

    A no-op Python handler rather than SIG_IGN: the handler is in place before the child is
    started (no window where Ctrl-C would hit the runner) and, unlike SIG_IGN, it is not
    inherited through exec — the command gets the default behaviour.
    """
    saved = []
    if threading.current_thread() is not threading.main_thread():
        return saved
    try:
        for sig in (signal.SIGINT, signal.SIGQUIT):
            saved.append((sig, signal.signal(sig, _swallow_signal)))
    except (ValueError, OSError):
        pass
    return saved


def _restore_signals(saved):
    for sig, handler in saved:
        try:
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        except (ValueError, OSError, TypeError):
            pass
