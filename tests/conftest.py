"""Shared fixtures: the one way tests start `playbook`, and the 1.x compatibility corpus.

Starting `playbook` (the installed console script, a real process):
- `playbook(*args, cwd=None, env=None, input=None, ...)` runs it to the end and returns a `Ran`
  (returncode, stdout, stderr; `.text` is both): stdin is `input` or /dev/null, the cwd defaults
  to the test's tmp_path, the environment is `clean_env` (HOME in tmp_path, no colour, no
  PLAYBOOK_* or DISPLAY from outside) plus `env` (a None value removes a variable). `exe=` runs
  another executable the same way (a bundle).
- `playbook_start(*args, ...)` starts it in the background (a Popen, stdin /dev/null, stdout and
  stderr piped); `spawn_playbook(*args, ...)` starts it on a real pseudo-terminal (pexpect).
  Both are stopped after the test if still alive: SIGTERM first (the runner then stops the
  commands it supervises), SIGKILL if it lingers, so no test leaves a process behind.

The corpus (`../shared/compat-runbooks`, laid beside the checkout by CI and by the project's
machines): `compat_dir` or `compat_path(name)` skip a test when it is absent; at the end of the run
one line says how many tests that left out.

Processes: every process a test starts carries PYTEST_SESSION_TAG in its environment; at the end
of the run one line names each one still running, with the test that started it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Optional, Sequence

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
FIXTURES_DIR = TESTS_DIR / "fixtures"
# The checkout has ../shared beside it (CI lays shared/ beside the clone the same way).
COMPAT_DIR = REPO_ROOT.parent / "shared" / "compat-runbooks"
# Every skip for a missing corpus says "compat corpus" (the end-of-run line counts them).
COMPAT_MARK = "compat corpus"

TIMEOUT = 120  # seconds a whole `playbook` process may take before the test gives up
PTY_TIMEOUT = 20  # seconds pexpect waits for one expected text
STOP_GRACE = 5  # seconds a process left running gets after SIGTERM, before SIGKILL


# -- starting `playbook` ------------------------------------------------------------------------
def playbook_command() -> list[str]:
    """argv prefix that runs the `playbook` console script installed for this interpreter."""
    script = Path(sys.executable).parent / "playbook"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "playbook.compiler.main"]


def clean_env(home: Optional[Path], extra: Optional[dict] = None, path_first: Optional[Path] = None) -> dict:
    """The environment for a `playbook` process: this one without PLAYBOOK_*, DISPLAY and
    COLUMNS, with HOME=`home` (created; None keeps HOME), NO_COLOR, TERM=dumb, the interpreter's
    bin directory (then `path_first`) ahead on PATH, and `extra` on top (None removes a variable)."""
    drop = ("DISPLAY", "WAYLAND_DISPLAY", "COLUMNS", "LINES")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAYBOOK_") and k not in drop}
    if home is not None:
        Path(home).mkdir(parents=True, exist_ok=True)
        env["HOME"] = str(home)
    env.update(NO_COLOR="1", TERM="dumb", PYTHONDONTWRITEBYTECODE="1")
    parts = [str(Path(sys.executable).parent), env.get("PATH", "/usr/bin:/bin")]
    if path_first is not None:
        parts.insert(0, str(path_first))
    env["PATH"] = os.pathsep.join(parts)
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


class Ran(NamedTuple):
    """A finished `playbook` process; unpacks as (returncode, stdout, stderr)."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def text(self) -> str:
        return self.stdout + self.stderr


def _argv(exe: Optional[Any], args: Sequence[Any]) -> list[str]:
    return ([str(exe)] if exe is not None else playbook_command()) + [str(a) for a in args]


def run_playbook(args, cwd=None, env=None, input=None, timeout=TIMEOUT, exe=None, home=None, path_first=None) -> Ran:
    """Run `playbook ARGS` (or `exe ARGS`) to its end without a terminal: stdin is `input` or
    /dev/null, the environment `clean_env(home, env, path_first)`. Tests use the `playbook`
    fixture, which passes the test's tmp_path as cwd and home."""
    proc = subprocess.run(
        _argv(exe, args),
        cwd=str(cwd) if cwd is not None else None,
        env=clean_env(home, env, path_first),
        input=(input if input is not None else "").encode("utf-8"),
        capture_output=True,
        timeout=timeout,
    )
    return Ran(proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))


def _stop(alive: Callable[[], bool], send: Callable[[int], None], wait: Callable[[float], Any]) -> None:
    """SIGTERM (the runner then stops the commands it supervises), SIGKILL after STOP_GRACE s."""
    if not alive():
        return
    send(signal.SIGTERM)
    wait(STOP_GRACE)
    if alive():
        send(signal.SIGKILL)
        wait(STOP_GRACE)


def stop_process(proc: subprocess.Popen) -> None:
    """Stop a process started by `playbook_start` if it still runs (what its teardown does)."""

    def wait(seconds: float) -> None:
        try:
            proc.wait(seconds)
        except subprocess.TimeoutExpired:
            pass

    _stop(lambda: proc.poll() is None, proc.send_signal, wait)


@pytest.fixture
def playbook(tmp_path) -> Callable[..., Ran]:
    """`playbook(*args, cwd=tmp_path, env=None, input=None, timeout=120, exe=None, path_first=None)`
    runs `playbook ARGS` (or `exe ARGS`) to its end without a terminal; returns a Ran."""

    def run(*args, cwd=None, env=None, input=None, timeout=TIMEOUT, exe=None, path_first=None) -> Ran:
        cwd = cwd if cwd is not None else tmp_path
        return run_playbook(args, cwd, env, input, timeout, exe, home=tmp_path / "home", path_first=path_first)

    return run


@pytest.fixture
def playbook_start(tmp_path) -> Iterator[Callable[..., subprocess.Popen]]:
    """`playbook_start(*args, cwd=tmp_path, env=None, exe=None, path_first=None)` starts
    `playbook ARGS` in the background without a terminal; returns the Popen (stdout/stderr piped,
    bytes). Stopped after the test if still running."""
    started: list[subprocess.Popen] = []

    def start(*args, cwd=None, env=None, exe=None, path_first=None) -> subprocess.Popen:
        proc = subprocess.Popen(
            _argv(exe, args),
            cwd=str(cwd if cwd is not None else tmp_path),
            env=clean_env(tmp_path / "home", env, path_first),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        stop_process(proc)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def spawn_playbook(tmp_path) -> Iterator[Callable[..., Any]]:
    """`spawn_playbook(*args, cwd=tmp_path, env=None, exe=None, path_first=None,
    dimensions=(50, 200), timeout=20)` starts `playbook ARGS` on a real pseudo-terminal and
    returns the pexpect child (text mode). Stopped after the test if still alive."""
    pexpect = pytest.importorskip("pexpect")
    children: list[Any] = []

    def spawn(*args, cwd=None, env=None, exe=None, path_first=None, dimensions=(50, 200), timeout=PTY_TIMEOUT):
        argv = _argv(exe, args)
        child = pexpect.spawn(
            argv[0],
            argv[1:],
            cwd=str(cwd if cwd is not None else tmp_path),
            env=clean_env(tmp_path / "home", env, path_first),
            encoding="utf-8",
            codec_errors="replace",
            timeout=timeout,
            dimensions=dimensions,
        )
        children.append(child)
        return child

    yield spawn
    for child in children:

        def wait(seconds, child=child):
            try:
                child.expect(pexpect.EOF, timeout=seconds)
            except pexpect.TIMEOUT:
                pass

        _stop(child.isalive, child.kill, wait)
        child.close(force=True)


@pytest.fixture(autouse=True)
def _stop_started() -> Iterator[None]:
    """After each test: stop what cli_support.pb_start started and is still running."""
    yield
    started = getattr(sys.modules.get("cli_support"), "STARTED", [])  # none when no test imported it
    while started:
        proc = started.pop()
        stop_process(proc)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def playbook_inprocess(tmp_path, monkeypatch, capfd) -> Callable[..., Ran]:
    """`playbook_inprocess(*args, cwd=tmp_path, env=None)`: the `playbook` dispatcher run in
    this process, with its one error handler, under the same environment policy as a process
    (HOME in tmp_path, no PLAYBOOK_*): for tests of exit codes and messages, without the cost
    of starting Python. Returns a Ran."""
    from playbook.compiler.main import dispatch
    from playbook.runtime.errors import guard

    def run(*args, cwd=None, env=None) -> Ran:
        with monkeypatch.context() as patch:
            for key in list(os.environ):
                patch.delenv(key)
            for key, value in clean_env(tmp_path / "home", env).items():
                patch.setenv(key, value)
            patch.chdir(cwd if cwd is not None else tmp_path)
            capfd.readouterr()
            try:
                code = guard(lambda: dispatch([str(a) for a in args]))
            except SystemExit as exc:  # argparse: --help, a usage error
                code = exc.code if isinstance(exc.code, int) else 2
            out, err = capfd.readouterr()
        return Ran(code, out, err)

    return run


@pytest.fixture
def playbook_cli(tmp_path) -> Callable[..., Ran]:
    """`playbook_cli(args, cwd=None, env=None, input=None)`: `run_playbook` with HOME in the
    test's tmp_path (the list-taking form of the `playbook` fixture)."""

    def run(args, cwd=None, env=None, input=None, timeout=TIMEOUT):
        return run_playbook(args, cwd=cwd, env=env, input=input, timeout=timeout, home=tmp_path / "home")

    return run


# -- the 1.x compatibility corpus ---------------------------------------------------------------
def compat_path(name: Optional[str] = None) -> Path:
    """The corpus directory (or a file in it); skips the test when it is absent."""
    path = COMPAT_DIR / name if name else COMPAT_DIR
    if not COMPAT_DIR.is_dir():
        pytest.skip("%s not found: the checkout needs ../shared/compat-runbooks beside it" % COMPAT_MARK)
    if not path.exists():
        raise FileNotFoundError("%s has no %s" % (COMPAT_DIR, name))
    return path


@pytest.fixture
def compat_dir() -> Path:
    """The Playbook 1.x compatibility corpus (../shared/compat-runbooks); skipped when absent."""
    return compat_path()


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


# -- processes left behind ----------------------------------------------------------------------
# Every process the tests start inherits this variable (clean_env keeps it), so the end of the run
# can name the ones still alive, with the test that started them.
SESSION_TAG = "PYTEST_SESSION_TAG"


def pytest_configure(config):
    os.environ[SESSION_TAG] = "%d-%d" % (os.getpid(), time.time_ns())


def leftover_processes() -> list[tuple[int, str, str]]:
    """(pid, command line, test that started it) of the live processes carrying this session's tag."""
    tag = ("%s=%s" % (SESSION_TAG, os.environ.get(SESSION_TAG, ""))).encode()
    found = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open("/proc/%s/environ" % entry, "rb") as f:
                environ = f.read().split(b"\0")
            with open("/proc/%s/stat" % entry, "rb") as f:
                state = f.read().rpartition(b")")[2].split()[0]
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                argv = f.read().rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if tag not in environ or state == b"Z":
            continue
        test = next((v[len(b"PYTEST_CURRENT_TEST="):] for v in environ if v.startswith(b"PYTEST_CURRENT_TEST=")), b"?")
        found.append((int(entry), argv, test.decode("utf-8", "replace")))
    return found


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """After the short summary: one line counting the tests left out for a missing corpus, and
    one line per process the tests left running."""
    result = yield
    if not COMPAT_DIR.is_dir():
        skipped = terminalreporter.stats.get("skipped", [])
        missing = [r for r in skipped if COMPAT_MARK in _skip_reason(r) or "../shared" in _skip_reason(r)]
        if missing:
            terminalreporter.write_line(
                "%d test%s need ../shared/compat-runbooks, which is absent (%s): not run"
                % (len(missing), "" if len(missing) == 1 else "s", COMPAT_DIR),
                yellow=True,
                bold=True,
            )
    for pid, argv, test in leftover_processes():
        terminalreporter.write_line("left running: pid %d `%s`, started by %s" % (pid, argv, test), red=True, bold=True)
    return result


# On a machine set up by .ci/run (CI set), every declared test dependency is installed: Graphviz
# `dot`, Chromium, ssh-keygen, sshd, dash, bash, jsonschema, ansible-core and mitogen. A test that skips for want of one
# of them there hides lost coverage, so it fails instead. Other skips (an interpreter pyenv does not
# have, the compat corpus beside the checkout, a kernel feature) say what they leave out and stay skips.
DECLARED_DEPENDENCY_SKIPS = (
    "Graphviz `dot` is not installed",
    "chromium is not installed",
    "ssh-keygen is not installed",
    "sshd is not installed",
    "dash is not installed",
    "bash is not installed",
    "'jsonschema'",
    "ansible-core is in the test extra",
    "mitogen is in the test extra",
)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report)
        if any(mark in reason for mark in DECLARED_DEPENDENCY_SKIPS):
            report.outcome = "failed"
            report.longrepr = "skipped under CI, where .ci/run installs every declared test dependency: %s" % reason
    return report


# Property tests explore at random while developing; in CI (CI=true) they are derandomized, so a
# run on the same code always checks the same examples.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("ci-derandomized", derandomize=True, deadline=None, database=None)
if os.environ.get("CI"):
    _hypothesis_settings.load_profile("ci-derandomized")
