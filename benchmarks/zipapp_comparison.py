"""Our bundle against the extraction-based zipapps shiv and pex, in one sitting on this machine.

In a temporary directory it creates a throwaway virtual environment, pip-installs shiv and pex
there (from PyPI; when that fails the shiv and pex rows are skipped), and builds:

  bundle            `playbook compile examples/deploy.playbook.toml` (bytecode for every CPython
                    3.9-3.13 found, the default), run as `./x.pyz ...`
  bundle (src)      the same with `--no-bytecode`
  shiv              `shiv -c playbook <copy of the repository>` (dependencies resolved by pip)
  pex               `pex <copy of the repository> -c playbook`, default (zipapp) layout

shiv and pex build from a copy of the repository (without .git, .venv and caches), so that the
build leaves nothing in the working tree. Every artifact runs with the same interpreter: the
base interpreter of the project's .venv (the bundle through PLAYBOOK_PYTHON, shiv and pex
through their shebang). Each command runs in a minimal environment (PATH=/usr/bin:/bin, HOME
and TMPDIR fresh directories per case, nothing else) and is timed with time.perf_counter around
subprocess.run. Measured:

  size              of the artifact
  cold --version    the first run with a fresh, empty HOME (median of --cold first runs, each
                    with its own HOME); the operating system's file cache is warm by then
  warm --version    median of --runs runs once the first run has happened
  warm plan         the same for `plan --var ENVIRONMENT=staging` (shiv and pex: `playbook plan
                    examples/deploy.playbook.toml --var ...`, which also compiles the TOML file;
                    the bundle carries the compiled plan)
  read-only HOME    `plan`, run twice, with HOME an empty read-only file system (as root: a
                    read-only tmpfs mounted over HOME in a private mount namespace, `unshare -m`;
                    otherwise HOME chmod 0555; when neither works, HOME a path below a regular
                    file, which cannot be created): whether it succeeded, both times (including
                    the unshare wrapper, whose own cost is printed), the first line of any error
                    (for a traceback, its last line: the exception) and what was left in TMPDIR
  left on disk      what the first cold run left in HOME and TMPDIR (du-style, files)

Warm runs go in rounds over every command in turn (one untimed warm-up round first), so a burst
of load elsewhere hits all of them alike. Prints a table and the load average; no assertions.

    .venv/bin/python benchmarks/zipapp_comparison.py [--quick] [--runs 10] [--cold 3]
"""

import argparse
import glob
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXAMPLE = os.path.join(ROOT, "examples", "deploy.playbook.toml")
VENV_PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
PLAYBOOK = os.path.join(ROOT, ".venv", "bin", "playbook")
if not os.path.exists(PLAYBOOK):
    PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "playbook")
PLAN_VARS = ["--var", "ENVIRONMENT=staging"]
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "venv", "__pycache__", "*.egg-info", "build", "dist", ".pytest_cache",
    ".hypothesis", ".mypy_cache", ".ruff_cache", "*.pyz", "*.pyz.sig", "*.shiv", "*.pex",
)
BUILD_TIMEOUT = 900
RUN_TIMEOUT = 300


# --------------------------------------------------------------------------------------------
# Interpreter and tools
# --------------------------------------------------------------------------------------------


def base_interpreter():
    """The system interpreter the artifacts target: the base of the project's .venv."""
    for python in (VENV_PYTHON, sys.executable):
        if os.path.exists(python):
            proc = subprocess.run(
                [python, "-c", "import sys; print(getattr(sys, '_base_executable', '') or sys.executable)"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )
            found = proc.stdout.strip()
            if proc.returncode == 0 and found and os.path.exists(found):
                return os.path.realpath(found)
    pyenv = os.path.join(os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv"), "versions")
    candidates = sorted(glob.glob(os.path.join(pyenv, "3.11.*", "bin", "python3")))
    if candidates:
        return os.path.realpath(candidates[-1])
    return os.path.realpath(sys.executable)


def python_version(python):
    proc = subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"], stdout=subprocess.PIPE, text=True)
    return proc.stdout.strip()


def build_env(work):
    """Environment for building (not timed): the caller's (pip configuration, certificates),
    with every cache and HOME inside the temporary directory."""
    home = os.path.join(work, "build-home")
    os.makedirs(home, exist_ok=True)
    env = dict(os.environ)
    env.update(
        HOME=home,
        XDG_CACHE_HOME=os.path.join(home, ".cache"),
        PIP_CACHE_DIR=os.path.join(work, "pip-cache"),
        PEX_ROOT=os.path.join(work, "pex-build-root"),
        SHIV_ROOT=os.path.join(work, "shiv-build-root"),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PLAYBOOK_PYTHON"):
        env.pop(name, None)
    return env


def step(description, cmd, env, cwd):
    """Run a build step; (ok, seconds, last lines of its output)."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, timeout=BUILD_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as error:
        print("  %s: failed (%s)" % (description, error))
        return False, time.perf_counter() - start
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = proc.stdout.decode(errors="replace").strip().splitlines()[-5:]
        print("  %s: failed (exit %d)" % (description, proc.returncode))
        for line in tail:
            print("    | " + line)
        return False, seconds
    return True, seconds


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------


class Case:
    """A fresh HOME and TMPDIR for one or more runs."""

    counter = 0

    def __init__(self, work, extra_env):
        Case.counter += 1
        self.dir = os.path.join(work, "case-%03d" % Case.counter)
        self.home = os.path.join(self.dir, "home")
        self.tmp = os.path.join(self.dir, "tmp")
        os.makedirs(self.home)
        os.makedirs(self.tmp)
        self.env = {"PATH": "/usr/bin:/bin", "HOME": self.home, "TMPDIR": self.tmp}
        self.env.update(extra_env)


def run(cmd, env, cwd):
    """(wall-clock seconds, exit code, stderr text) of one run."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        return time.perf_counter() - start, -1, "timed out after %d s" % RUN_TIMEOUT
    return time.perf_counter() - start, proc.returncode, proc.stderr.decode(errors="replace")


def error_line(stderr):
    """The first line of an error; for a Python traceback, its last line (the exception); for a
    warning, from its category on (`FILE:LINE: XWarning: text` -> `XWarning: text`)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if not lines:
        return ""
    if any(line.startswith("Traceback (most recent call last)") for line in lines):
        return lines[-1]
    match = re.match(r"^\S+:\d+: (\w*Warning: .*)$", lines[0])
    return match.group(1) if match else lines[0]


def disk_usage(*paths):
    """(bytes as du counts them, number of files) under the paths."""
    seen = set()
    total = files = 0
    for top in paths:
        for folder, dirs, names in os.walk(top):
            for name in dirs + names:
                try:
                    info = os.lstat(os.path.join(folder, name))
                except OSError:
                    continue
                if (info.st_dev, info.st_ino) in seen:
                    continue
                seen.add((info.st_dev, info.st_ino))
                total += info.st_blocks * 512
                if name in names:
                    files += 1
    return total, files


def readonly_method(work):
    """How to give a command a read-only HOME: 'unshare' (root: a read-only tmpfs over HOME in a
    private mount namespace), 'chmod' (not root: HOME mode 0555) or 'file' (HOME below a regular
    file, so it cannot be created)."""
    if os.geteuid() != 0:
        return "chmod"
    probe = os.path.join(work, "ro-probe")
    os.makedirs(probe)
    try:
        proc = subprocess.run(
            ["unshare", "-m", "sh", "-c",
             'mount -t tmpfs -o ro,size=1m tmpfs "$1" && ! touch "$1/probe" 2>/dev/null', "sh", probe],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30,
        )
        if proc.returncode == 0 and not os.listdir(probe):
            return "unshare"
    except (OSError, subprocess.TimeoutExpired):
        pass
    return "file"


def readonly_command(method, case, cmd):
    """(command, env) running cmd with a read-only HOME by the given method."""
    env = dict(case.env)
    if method == "unshare":
        wrapper = ["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o ro,size=1m tmpfs "$HOME" && exec "$@"', "sh"]
        return wrapper + cmd, env
    if method == "chmod":
        os.chmod(case.home, 0o555)
        return cmd, env
    blocker = os.path.join(case.dir, "not-a-directory")
    with open(blocker, "w"):
        pass
    env["HOME"] = os.path.join(blocker, "home")
    env["XDG_CACHE_HOME"] = os.path.join(blocker, "home", ".cache")
    return cmd, env


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 warm runs and 1 cold run per artifact")
    parser.add_argument("--runs", type=int, default=None, help="warm rounds (medians are reported; default 10)")
    parser.add_argument("--cold", type=int, default=None, help="first runs, each with a fresh HOME (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory and print its path")
    args = parser.parse_args()
    args.runs = args.runs or (3 if args.quick else 10)
    args.cold = args.cold or (1 if args.quick else 3)
    if not os.path.exists(PLAYBOOK):
        raise SystemExit("the project's playbook command was not found (%s): run `make test` or `make demo` first" % PLAYBOOK)
    work = tempfile.mkdtemp(prefix="playbook-zipapps-")
    try:
        report(args, work)
    finally:
        if args.keep:
            print("kept: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)


def build_all(args, work, python):
    """{name: (path, extra env)} of the artifacts that could be built, and notes."""
    artifacts = {}
    notes = []
    env = build_env(work)
    out = os.path.join(work, "artifacts")
    os.makedirs(out)
    ours_env = {"PLAYBOOK_PYTHON": python}

    print("Building (not timed in the table):")
    bundle = os.path.join(out, "x.pyz")
    ok, seconds = step("playbook compile", [PLAYBOOK, "compile", EXAMPLE, "-o", bundle], env, work)
    if ok:
        artifacts["bundle"] = (bundle, ours_env)
        print("  bundle (bytecode for every CPython 3.9-3.13 found): %.1f s" % seconds)
    source_only = os.path.join(out, "x-src.pyz")
    ok, seconds = step("playbook compile --no-bytecode", [PLAYBOOK, "compile", EXAMPLE, "-o", source_only, "--no-bytecode"], env, work)
    if ok:
        artifacts["bundle (src)"] = (source_only, ours_env)
        print("  bundle --no-bytecode: %.1f s" % seconds)

    venv = os.path.join(work, "tools-venv")
    ok, seconds = step("python -m venv", [python, "-m", "venv", venv], env, work)
    tools = os.path.join(venv, "bin")
    if ok:
        ok, seconds = step("pip install shiv pex", [os.path.join(tools, "python"), "-m", "pip", "install", "-q", "shiv", "pex"], env, work)
    if not ok:
        print("  shiv and pex could not be installed: their rows are skipped")
        return artifacts, notes
    versions = subprocess.run(
        [os.path.join(tools, "python"), "-c",
         "from importlib.metadata import version; print(version('shiv'), version('pex'))"],
        stdout=subprocess.PIPE, text=True,
    ).stdout.split()
    print("  throwaway venv with shiv %s and pex %s: %.1f s" % (versions[0], versions[1], seconds))
    notes.append("shiv %s, pex %s (default settings: shiv extracts to ~/.shiv, pex to ~/.cache/pex)" % tuple(versions))

    source = os.path.join(work, "src")
    shutil.copytree(ROOT, source, ignore=COPY_IGNORE, symlinks=True)
    shiv_out = os.path.join(out, "pb.shiv")
    ok, seconds = step("shiv", [os.path.join(tools, "shiv"), "-c", "playbook", "-p", python, "-o", shiv_out, source], env, work)
    if ok:
        artifacts["shiv"] = (shiv_out, {})
        print("  shiv -c playbook: %.1f s" % seconds)
    pex_out = os.path.join(out, "pb.pex")
    ok, seconds = step("pex", [os.path.join(tools, "pex"), source, "-c", "playbook", "--python-shebang", python, "-o", pex_out], env, work)
    if ok:
        artifacts["pex"] = (pex_out, {})
        print("  pex -c playbook: %.1f s" % seconds)
    return artifacts, notes


def commands_for(name, path):
    """(--version command, plan command) of an artifact."""
    if name.startswith("bundle"):
        return [path, "--version"], [path, "plan"] + PLAN_VARS
    return [path, "--version"], [path, "plan", EXAMPLE] + PLAN_VARS


def report(args, work):
    python = base_interpreter()
    load_before = os.getloadavg()
    print("Zipapps of Playbook on this machine: %d CPUs, Python %s (%s)" % (os.cpu_count() or 0, python_version(python), python))
    artifacts, notes = build_all(args, work, python)
    if not artifacts:
        raise SystemExit("nothing could be built")
    print()

    # Cold: first runs, each with a fresh HOME; the first one's leftovers are measured.
    cold = {name: [] for name in artifacts}
    left = {}
    failures = {}
    for repetition in range(args.cold):
        for name, (path, extra) in artifacts.items():
            case = Case(work, extra)
            version_cmd, _ = commands_for(name, path)
            seconds, code, stderr = run(version_cmd, case.env, work)
            if code != 0:
                failures.setdefault(name, "cold --version: exit %d: %s" % (code, error_line(stderr)))
                continue
            cold[name].append(seconds)
            if repetition == 0:
                left[name] = disk_usage(case.home, case.tmp)

    # Warm: one HOME per artifact, one untimed warm-up round, then rounds over every command.
    warm_cases = {name: Case(work, extra) for name, (_, extra) in artifacts.items()}
    commands = {}
    for name, (path, _) in artifacts.items():
        version_cmd, plan_cmd = commands_for(name, path)
        commands[(name, "version")] = (version_cmd, warm_cases[name].env)
        commands[(name, "plan")] = (plan_cmd, warm_cases[name].env)
    samples = {key: [] for key in commands}
    for round_number in range(args.runs + 1):
        for key, (cmd, env) in commands.items():
            seconds, code, stderr = run(cmd, env, work)
            if code != 0:
                failures.setdefault(key[0], "warm %s: exit %d: %s" % (key[1], code, error_line(stderr)))
                continue
            if round_number:
                samples[key].append(seconds)

    # Read-only HOME: `plan`, each artifact with a fresh (empty) read-only HOME.
    method = readonly_method(work)
    readonly = {}
    for name, (path, extra) in artifacts.items():
        case = Case(work, extra)
        _, plan_cmd = commands_for(name, path)
        cmd, env = readonly_command(method, case, plan_cmd)
        first, code, stderr = run(cmd, env, work)
        second, _, _ = run(cmd, env, work)
        message = error_line(stderr).replace(case.home, "$HOME").replace(case.tmp, "$TMPDIR").replace(work, "$WORK")
        readonly[name] = (code, (first, second), message, disk_usage(case.tmp))
    wrapper_cost = None
    if method == "unshare":
        case = Case(work, {})
        wrapper_cmd, env = readonly_command(method, case, ["true"])
        wrapper_cost = statistics.median(run(wrapper_cmd, env, work)[0] for _ in range(5))

    load_after = os.getloadavg()

    def ms(values):
        return "%.0f" % (statistics.median(values) * 1000) if values else "-"

    header = "%-13s %8s %10s %10s %10s %19s %20s" % (
        "artifact", "size MB", "cold ver.", "warm ver.", "warm plan", "read-only HOME plan", "left after 1st run")
    print("Times in ms: cold = first run with a fresh empty HOME (median of %d), warm = median of %d runs"
          % (args.cold, args.runs))
    print()
    print(header)
    print("-" * len(header))
    for name, (path, _) in artifacts.items():
        code, seconds, _, _ = readonly[name]
        ro = ("ok %.0f, %.0f" % (seconds[0] * 1000, seconds[1] * 1000)) if code == 0 else ("FAILS (exit %d)" % code)
        if name in left:
            used, files = left[name]
            disk = "%.1f MB, %d files" % (used / 1e6, files) if files else "nothing"
        else:
            disk = "-"
        print("%-13s %8.2f %10s %10s %10s %19s %20s" % (
            name, os.path.getsize(path) / 1e6, ms(cold[name]), ms(samples[(name, "version")]),
            ms(samples[(name, "plan")]), ro, disk))
    print()
    print("read-only HOME, plan run twice (%s):" % {
        "unshare": "empty read-only tmpfs over HOME, unshare -m; the wrapper alone takes %.0f ms" % ((wrapper_cost or 0) * 1000),
        "chmod": "HOME mode 0555",
        "file": "HOME below a regular file, cannot be created",
    }[method])
    for name in artifacts:
        code, _, message, (tmp_used, tmp_files) = readonly[name]
        status = "succeeded" if code == 0 else "failed, exit %d" % code
        line = "  %-12s %s" % (name, status)
        if message:
            line += ": " + (message if len(message) <= 240 else message[:237] + "...")
        line += " [left in TMPDIR after 2 runs: %s]" % ("%.1f MB, %d files" % (tmp_used / 1e6, tmp_files) if tmp_files else "nothing")
        print(line)
    if failures:
        print()
        print("failures:")
        for name, message in failures.items():
            print("  %-12s %s" % (name, message))
    print()
    for note in notes:
        print(note)
    print("the bundle runs through its sh launcher (interpreter probe included); shiv and pex plan also compile the TOML file")
    print("load average: %.2f %.2f %.2f before, %.2f %.2f %.2f after" % (load_before + load_after))


if __name__ == "__main__":
    main()
