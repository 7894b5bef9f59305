"""Bundle size and start-up time, per interpreter, next to the installed tool.

Builds the deployment example twice — with bytecode for every CPython 3.9-3.13 found (the
default) and with `--no-bytecode` — then times, as the median of N runs (wall-clock and CPU
time), each in a bare environment (HOME a fresh directory, PATH=/usr/bin:/bin, PLAYBOOK_PYTHON
set, which the launcher checks like any candidate it finds on PATH):

  python -c pass                     the interpreter alone
  ./deploy.pyz --version             launcher + integrity check + manifest
  ./deploy.pyz plan --var ...        + the runtime, Jinja and the plan
  python -I -S deploy.pyz --version  the same without the sh launcher's interpreter probe

and, in the same run, the installed `playbook --version` and `playbook plan FILE --var ...`
(the virtual environment's interpreter; `plan` there also compiles the TOML file), and what the
bundle's identity costs where it is shown (verify, inspect, the run header): reading and
hashing the file, in this process.
Targets (issue 4): with bytecode within 50 ms of the installed tool; without under 1 s; size
under 6 MB with five bytecode trees.

Then the launcher's interpreter search (issue 13), `./deploy.pyz --version` without
PLAYBOOK_PYTHON: with the machine's real PATH (where pyenv or asdf shims may come first), with a
PATH of slow fake shims (shell scripts that sleep 0.15 s, as a pyenv shim takes to say "command
not found") in front of /usr/bin:/bin, and with PLAYBOOK_PYTHON set to the interpreter the search
picks, the floor (target: the search costs at most 5 ms). `--compare OLD.pyz` times another
bundle (e.g. one built before a change) in the same rounds; `--discovery-only` skips the table.

    .venv/bin/python benchmarks/bundle_startup.py [--runs 15] [--compare OLD.pyz] [--discovery-only]
"""

import argparse
import glob
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXAMPLE = os.path.join(ROOT, "examples", "deploy.playbook.toml")
PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "playbook")
PYENV = os.path.join(os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv"), "versions")


def interpreters():
    found = []
    for minor in range(9, 14):
        versions = sorted(glob.glob(os.path.join(PYENV, "3.%d.*" % minor, "bin", "python3")))
        if versions:
            found.append(("3.%d" % minor, versions[-1]))
    if not found:
        found.append(("%d.%d" % sys.version_info[:2], sys.executable))
    return found


def run_once(cmd, env, cwd):
    """(wall-clock s, CPU s) of one run. CPU time (user + system of the process and the children
    it waited for, e.g. the launcher's probe) is less disturbed by other load than wall-clock."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit("failed: %s\n%s" % (" ".join(cmd), proc.stderr.decode(errors="replace")))
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def measure(commands, runs, cwd):
    """{key: (median wall ms, median CPU ms)}. Rounds go over every command in turn, so that a
    burst of load elsewhere on the machine hits all of them alike; one warm-up round first."""
    samples = {key: [] for key in commands}
    for round_number in range(runs + 1):
        for key, (cmd, env) in commands.items():
            result = run_once(cmd, env, cwd)
            if round_number:
                samples[key].append(result)
    return {
        key: (statistics.median(w for w, _ in values) * 1000, statistics.median(c for _, c in values) * 1000)
        for key, values in samples.items()
    }


def cell(value):
    return "%.0f/%.0f" % value


def identity_cost(path, runs):
    """Median ms of computing a bundle's identity (the SHA-256 of the file) the first time."""
    from playbook.runtime.bundle import open_bundle

    samples = []
    for _ in range(runs):
        bundle = open_bundle(path)
        start = time.perf_counter()
        assert bundle.identity
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def build(out, *extra):
    cmd = [PLAYBOOK, "compile", EXAMPLE, "-o", out] + list(extra)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return os.path.getsize(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="rounds of measurements (medians are reported)")
    parser.add_argument("--compare", metavar="OLD.pyz", help="also time the interpreter search of this bundle")
    parser.add_argument("--discovery-only", action="store_true", help="only the interpreter search")
    args = parser.parse_args()
    if not os.path.exists(PLAYBOOK):
        raise SystemExit("run with the virtual environment's python (.venv/bin/python): %s not found" % PLAYBOOK)
    work = tempfile.mkdtemp(prefix="playbook-bench-")
    try:
        report(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(args, work):
    home = os.path.join(work, "home")
    os.mkdir(home)
    fast = os.path.join(work, "deploy.pyz")
    slow = os.path.join(work, "deploy-nobytecode.pyz")
    if args.discovery_only:
        build(fast)
        discovery(args, work, home, fast)
        return
    start = time.perf_counter()
    size_fast = build(fast)
    built = time.perf_counter() - start
    size_slow = build(slow, "--no-bytecode")
    plan_args = ["plan", "--var", "ENVIRONMENT=staging"]

    print("Bundle of examples/deploy.playbook.toml (median of %d runs, ms; machine: %d CPUs)" % (args.runs, os.cpu_count() or 0))
    print("  with bytecode for every interpreter found: %.2f MB (built in %.1f s)" % (size_fast / 1e6, built))
    print("  sources only (--no-bytecode):              %.2f MB" % (size_slow / 1e6))
    print()
    env = dict(os.environ, NO_COLOR="1")
    commands = {
        "tool --version": ([PLAYBOOK, "--version"], env),
        "tool plan": ([PLAYBOOK, "plan", EXAMPLE] + plan_args[1:], env),
    }
    found = interpreters()
    columns = ("-c pass", "--version", "plan", "direct -I -S", "--version (src)", "plan (src)")
    for label, python in found:
        bare = {"HOME": home, "PATH": "/usr/bin:/bin", "PLAYBOOK_PYTHON": python}
        for column, cmd in zip(
            columns,
            (
                [python, "-c", "pass"],
                [fast, "--version"],
                [fast] + plan_args,
                [python, "-I", "-S", fast, "--version"],
                [slow, "--version"],
                [slow] + plan_args,
            ),
        ):
            commands[(label, column)] = (cmd, bare)
    results = measure(commands, args.runs, work)
    tool_version, tool_plan = results["tool --version"], results["tool plan"]
    print("installed tool (%s, Python %d.%d): playbook --version %s · playbook plan %s"
          % (os.path.relpath(PLAYBOOK, ROOT), sys.version_info[0], sys.version_info[1], cell(tool_version), cell(tool_plan)))
    print()
    header = "%-6s %9s %11s %11s %13s %16s %11s" % (("python",) + columns)
    print(header)
    print("-" * len(header))
    worst = []
    worst_src = []
    for label, _ in found:
        row = [results[(label, column)] for column in columns]
        worst.append((row[1][0] - tool_version[0], row[1][1] - tool_version[1], "%s --version" % label))
        worst.append((row[2][0] - tool_plan[0], row[2][1] - tool_plan[1], "%s plan" % label))
        worst_src.append((max(row[4][0], row[5][0]), label))
        print("%-6s %9s %11s %11s %13s %16s %11s" % tuple([label] + [cell(v) for v in row]))
    print("(milliseconds: median wall-clock / median CPU time; the (src) columns use the --no-bytecode bundle)")
    print()
    print("with bytecode, against the installed tool (target: within 50 ms): at most %+.0f ms wall-clock (%s), "
          "%+.0f ms CPU time (%s)" % (max(worst)[0], max(worst)[2], max(worst, key=lambda w: w[1])[1], max(worst, key=lambda w: w[1])[2]))
    print("sources only: slowest start %.0f ms (%s) (target: under 1000 ms)" % max(worst_src))
    print("size: %.2f MB (target: under 6 MB with five bytecode trees)" % (size_fast / 1e6))
    print("identity (bundle sha256, computed when first shown): %.1f ms for the %.1f MB bundle" % (identity_cost(fast, args.runs), size_fast / 1e6))
    print()
    discovery(args, work, home, fast)


def chosen_interpreter(bundle, env):
    """The interpreter the launcher picks with this environment, from a traced dry run."""
    trace = subprocess.run(["sh", "-x", bundle, "--version"], env=env, capture_output=True, text=True).stderr
    picked = [line.split()[2] for line in trace.splitlines() if line.startswith("+ exec ") and " -I -S -c " in line]
    return picked[-1] if picked else None


def fake_shims(work):
    """A directory of slow shell-script shims, like pyenv's with the system Python selected:
    after 0.15 s, python3 and python run the system python3, python3.X say "command not found"."""
    shims = os.path.join(work, "fake-pyenv", "shims")
    os.makedirs(shims)
    system = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    for name in ["python3", "python"] + ["python3.%d" % minor for minor in range(9, 14)]:
        path = os.path.join(shims, name)
        with open(path, "w") as handle:
            handle.write("#!/bin/sh\nsleep 0.15\n")
            if name in ("python3", "python"):
                handle.write('exec %s "$@"\n' % system)
            handle.write('echo "pyenv: $0: command not found" >&2\nexit 127\n')
        os.chmod(path, 0o755)
    return shims


def discovery(args, work, home, bundle):
    """The launcher's interpreter search: real PATH, a PATH of slow shims, an explicit one."""
    real_path = os.environ.get("PATH", "")
    shims = fake_shims(work)
    bundles = [("this build", bundle)] + ([("--compare", os.path.abspath(args.compare))] if args.compare else [])
    paths = [("real PATH", real_path), ("slow shims first", shims + ":/usr/bin:/bin")]
    commands = {}
    for label, path in paths:
        env = {"HOME": home, "PATH": path}
        python = chosen_interpreter(bundle, env)
        if python:
            commands[(label, "PLAYBOOK_PYTHON")] = ([bundle, "--version"], dict(env, PLAYBOOK_PYTHON=python))
        for name, path_ in bundles:
            commands[(label, name)] = ([path_, "--version"], env)
    results = measure(commands, args.runs, work)
    print("Interpreter search: ./deploy.pyz --version without PLAYBOOK_PYTHON (median of %d, ms wall/CPU)" % args.runs)
    print("  real PATH: %s" % (real_path if len(real_path) < 100 else real_path[:97] + "..."))
    for label, path in paths:
        python = chosen_interpreter(bundle, {"HOME": home, "PATH": path})
        explicit = results.get((label, "PLAYBOOK_PYTHON"))
        cells = ["%s %s" % (name, cell(results[(label, name)])) for name, _ in bundles]
        if explicit:
            cells.append("PLAYBOOK_PYTHON=%s %s" % (python, cell(explicit)))
            mine = results[(label, "this build")]
            cells.append("search costs %+.1f ms wall, %+.1f ms CPU" % (mine[0] - explicit[0], mine[1] - explicit[1]))
        print("  %-17s %s" % (label + ":", " · ".join(cells)))
    print("(target: the search within 5 ms of PLAYBOOK_PYTHON)")


if __name__ == "__main__":
    main()
