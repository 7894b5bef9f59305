"""Start-up: how long the everyday commands take on a small runbook.

Median (and minimum) wall time of 10 runs each, as subprocesses with stdin /dev/null and output
discarded, of:

  playbook --version
  playbook validate examples/deploy.playbook.toml --var ENVIRONMENT=staging
  playbook plan     examples/deploy.playbook.toml --var ENVIRONMENT=staging
  playbook run      <a one-node runbook running `true`> --state-path <temp> --no-output
  python -c pass    (the floor: the interpreter alone)

Each command is measured twice: with a warm bytecode cache kept in the temporary directory
(PYTHONPYCACHEPREFIX, filled by an untimed first run: the steady state of a normal install), and
with the environment as it is (where PYTHONDONTWRITEBYTECODE is set, any module whose .pyc is
missing or stale is recompiled on every start). Prints numbers only; it never judges them.

Target (issues 2 and 3): each playbook command under 150 ms on a small runbook.

    .venv/bin/python benchmarks/startup.py            # 10 runs per command
    .venv/bin/python benchmarks/startup.py --quick    # 3 runs per command
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
from benchenv import PLAYBOOK, bench_env  # noqa: E402
EXAMPLE = REPO / "examples" / "deploy.playbook.toml"


def timed(argv, env, stderr_path):
    """(wall seconds, user+system CPU seconds of the process and the children it reaped)."""
    with open(stderr_path, "w+b") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        if code != 0:
            err.seek(0)
            raise RuntimeError("%s exited %d:\n%s" % (" ".join(argv), code, err.read().decode(errors="replace")[-2000:]))
    return wall, usage.ru_utime + usage.ru_stime


def load():
    return "%.2f %.2f %.2f" % os.getloadavg()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 runs per command instead of 10")
    parser.add_argument("--repeat", type=int, help="runs per command (default 10, 3 with --quick)")
    args = parser.parse_args()
    repeat = args.repeat or (3 if args.quick else 10)

    with tempfile.TemporaryDirectory(prefix="playbook-bench-") as tmp:
        tmp = Path(tmp)
        err = tmp / "stderr.txt"
        one = tmp / "one.playbook.toml"
        one.write_text('[runbook]\ntitle = "one"\n\n[only]\ntype = "Command"\ncommand_name = "true"\n')
        state = str(tmp / "state" / "run.db")
        variables = ["--var", "ENVIRONMENT=staging"]
        cases = [
            ("playbook --version", [PLAYBOOK, "--version"]),
            ("playbook validate (deploy example)", [PLAYBOOK, "validate", str(EXAMPLE)] + variables),
            ("playbook plan (deploy example)", [PLAYBOOK, "plan", str(EXAMPLE)] + variables),
            ("playbook run (one-node runbook)", [PLAYBOOK, "run", str(one), "--state-path", state, "--no-output"]),
            ("python -c pass", [sys.executable, "-c", "pass"]),
        ]
        envs = [("warm cache", bench_env(tmp)), ("env as is", None)]

        print("playbook: %s" % PLAYBOOK)
        print("python:   %s (%s), %d CPUs; %d runs per command" % (sys.executable, sys.version.split()[0], os.cpu_count() or 0, repeat))
        print("PYTHONDONTWRITEBYTECODE=%s; load average at start %s" % (os.environ.get("PYTHONDONTWRITEBYTECODE", "(unset)"), load()))
        print()
        header = ("command", "warm median ms", "min ms", "cpu ms", "as-is median ms", "min ms", "cpu ms")
        fmt = "%-36s %14s %7s %7s %15s %7s %7s"
        print(fmt % header)
        print(fmt % tuple("-" * len(h) for h in header))
        for _, argv in cases:  # untimed: fills the cache, creates the state database
            timed(argv, envs[0][1], err)
        for label, argv in cases:
            cells = []
            for _, env in envs:
                runs = [timed(argv, env, err) for _ in range(repeat)]
                walls = [w for w, _ in runs]
                cpu = statistics.median(c for _, c in runs)
                cells += ["%.1f" % (statistics.median(walls) * 1e3), "%.1f" % (min(walls) * 1e3), "%.1f" % (cpu * 1e3)]
            print(fmt % tuple([label] + cells))
            sys.stdout.flush()
        print()
        print("cpu: median user+system CPU of the command (and its children); load average at end %s." % load())
        print("Target (issues 2 and 3): every playbook command above under 150 ms (median).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
