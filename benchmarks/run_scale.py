"""`playbook run` at scale: 1,000 and 10,000 Command steps, time and peak memory (issue 13).

Two shapes of N Command nodes running `true`, as subprocesses (stdin /dev/null, `--no-output`,
a fresh `--state-path` per run in a temporary directory):

  chain        each node depends on the previous one (runs one at a time)
  independent  `depends_on = []` everywhere, run with `--parallel 8`

For each it prints the wall time, ms per step, the runner's peak RSS (`ru_maxrss` of the
`playbook` process, from wait4) and the CPU time of the runner and its shells. Beside them, the
floor measured in the same sitting: a Python loop spawning N `sh -c true` one at a time (for the
chain) and the same spread over 8 threads (for `--parallel 8`), and the peak RSS of `playbook
validate` on the same file (the compiled runbook alone). The runs should be linear in time (ms
per step the same at 1,000 and 10,000) and running should add no memory per step: the peak of
the run stays next to the peak of compiling.

    .venv/bin/python benchmarks/run_scale.py                 # 1,000 and 10,000, one run each
    .venv/bin/python benchmarks/run_scale.py --sizes 1000    # quicker
    .venv/bin/python benchmarks/run_scale.py --compare ../other-checkout   # both builds, case by case
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchenv import PLAYBOOK, bench_env

from engine_overhead import write_runbook


def run(argv: list, env: dict) -> tuple:
    """(wall s, CPU s of the process and its reaped children, peak RSS MB) of one command."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise SystemExit("failed: %s\n%s" % (" ".join(argv), err.read().decode(errors="replace")[-2000:]))
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0


def spawn_floor(n: int, threads: int) -> float:
    """Seconds to run `sh -c true` n times from this process, in `threads` threads."""
    def worker(count: int) -> None:
        for _ in range(count):
            subprocess.run(["sh", "-c", "true"], stdin=subprocess.DEVNULL)

    shares = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]
    start = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(share,)) for share in shares]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1000, 10000], help="comma-separated step counts")
    parser.add_argument("--parallel", type=int, default=8, help="--parallel for the independent shape")
    parser.add_argument("--compare", metavar="DIR", help="also run the `playbook` package found in DIR (another "
                        "checkout, put first on PYTHONPATH), right after this one's run of each case")
    args = parser.parse_args()
    print("playbook: %s%s" % (PLAYBOOK, " (PYTHONPATH=%s)" % os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else ""))
    print("python %s, %d CPUs, load average %.2f %.2f %.2f (a shared machine: compare rows of one sitting)"
          % ((sys.version.split()[0], os.cpu_count() or 0) + os.getloadavg()))
    print()
    header = "%-12s %7s %8s %7s %9s %8s %9s %11s %11s %12s" % (
        "shape", "steps", "parallel", "build", "total s", "ms/step", "peak MB", "CPU ms/step", "floor ms/st", "validate MB")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="playbook-bench-") as tmp:
        tmp_path = Path(tmp)
        builds = {"this": bench_env(tmp_path)}
        if args.compare:
            builds["compare"] = dict(builds["this"], PYTHONPYCACHEPREFIX=str(tmp_path / "pycache-compare"), PYTHONPATH=os.pathsep.join(
                filter(None, [os.path.abspath(args.compare), os.environ.get("PYTHONPATH")])))
        warm = write_runbook(tmp_path / "warm.playbook.toml", 3, "independent")
        for name, env in builds.items():  # bytecode caches
            run([PLAYBOOK, "run", str(warm), "--state-path", str(tmp_path / ("warm-%s.db" % name)), "--no-output"], env)
        for n in args.sizes:
            for shape, parallel in (("chain", 1), ("independent", args.parallel)):
                path = write_runbook(tmp_path / ("%s-%d.playbook.toml" % (shape, n)), n, shape)
                for name, env in builds.items():
                    state = tmp_path / ("%s-%d-%s.db" % (shape, n, name))
                    argv = [PLAYBOOK, "run", str(path), "--state-path", str(state), "--no-output"]
                    if parallel != 1:
                        argv += ["--parallel", str(parallel)]
                    wall, cpu, peak = run(argv, env)
                    floor = spawn_floor(n, parallel)
                    compiled = run([PLAYBOOK, "validate", str(path)], env)[2]
                    print("%-12s %7d %8d %7s %9.2f %8.2f %9.1f %11.2f %11.2f %12.1f" % (
                        shape, n, parallel, name, wall, wall / n * 1e3, peak, cpu / n * 1e3, floor / n * 1e3, compiled))
                    sys.stdout.flush()
    print()
    print("floor: a Python loop of subprocess.run([\"sh\", \"-c\", \"true\"]) for the same number of steps, in as many")
    print("threads as --parallel, measured right after each run. validate MB: the peak RSS of `playbook validate`")
    print("of the same file, i.e. what holding the compiled runbook costs before anything runs.")
    print("Load average at end: %.2f %.2f %.2f." % os.getloadavg())
    return 0


if __name__ == "__main__":
    sys.exit(main())
