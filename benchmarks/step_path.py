"""The per-step hot path in one process: the state writes, the engine and the spawn, each on its own.

`engine_overhead.py` times whole `playbook run`s; this splits one Command step into its parts
and times each in a loop inside one Python process (no start-up), wall-clock and CPU per step:

  state      what the engine writes per step of a chain: start_attempt with the previous
             step's result in the same transaction (committed before the command starts) and
             the process group, appended to the run's lock file while the command runs
             (RunLock.record_process), on a real SQLite file in a temporary directory (the
             attempt numbers are read once per session, not per step); "state, apart" writes
             the same with the result committed on its own (finish_attempt), as a step that is
             not followed at once does
  engine     Engine.run of a chain of Command steps whose runner starts nothing (it reports a
             process group and exit code 0 at once): scheduling, events to the plain UI (written
             to /dev/null) and the state writes above; the same store, the run locked as a
             session locks it
  spawn      executors.run_command("true") as the engine calls it (with on_start, so the
             process group's start time is worked out): the runner's way of starting and
             supervising a command (process group, pipes for stdout and stderr, pidfd, poll)
  floor      subprocess.run(["sh", "-c", "true"]) in a loop: the bare spawn

So per step, the runner adds about engine + (spawn − floor) to the bare spawn; part of it (the
process-group write, the start line) happens while the command runs. CPU time is given for the
runner itself and for the children it reaped (the shells) apart: the runner's CPU is what the
runner can change, and other load disturbs it much less than wall time.
Rounds alternate between the cases, so that other load hits them alike; medians are reported.
To compare a change, run this file once with the tree under test and once with another checkout
first on PYTHONPATH (it prints which `playbook` package it measured).

    .venv/bin/python benchmarks/step_path.py [--steps 500] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def timed(function, steps: int) -> tuple:
    """(wall, CPU of this process, CPU of the children it reaped), ms per step of `function(i)`."""
    before = (_cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN))
    start = time.perf_counter()
    for i in range(steps):
        function(i)
    wall = time.perf_counter() - start
    after = (_cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN))
    return wall * 1e3 / steps, (after[0] - before[0]) * 1e3 / steps, (after[1] - before[1]) * 1e3 / steps


RESULT = {"exit_code": 0, "stdout": "", "stderr": "", "stdout_truncated": False, "stderr_truncated": False, "error": None}


def state_case(store, run_id: int, lock):
    """A chain's writes: each step's row goes with the previous step's result."""
    previous = [None]

    def step(i: int) -> None:
        finished = previous[0] and (previous[0], "succeeded", RESULT, "2026-11-30T00:00:00.000Z")
        attempt = store.start_attempt(run_id, "n%d" % i, 1, finished=finished)
        lock.record_process(attempt, 100000 + i, 123456)
        previous[0] = attempt

    return step


def state_apart_case(store, run_id: int, lock):
    def step(i: int) -> None:
        attempt = store.start_attempt(run_id, "n%d" % i, 1)
        lock.record_process(attempt, 100000 + i, 123456)
        store.finish_attempt(attempt, "succeeded", **RESULT)

    return step


def engine_case(store, steps: int, devnull):
    """One Engine.run of a chain of `steps` Command nodes per call (timed as one call per step)."""
    from playbook.runtime import engine, executors, ui
    from playbook.runtime.plan import Dep, Node, Plan

    nodes = [Node("n%d" % i, "Command", [Dep("n%d" % (i - 1))] if i else [], command="true") for i in range(steps)]
    plan = Plan({"title": "bench"}, {}, {}, nodes)

    def runner(command, on_start=None, **_):
        if on_start is not None:
            on_start(100000, 123456)
        return executors.CommandResult(exit_code=0)

    def run_all() -> None:
        run_id = store.create_run("bench", None, "hash", "{}", {})
        quiet = ui.PlainUI(out=devnull, err=devnull, show_output=False)
        with store.lock_run(run_id) as lock:
            eng = engine.Engine(plan, {}, store, run_id, quiet, engine.Options(), runner=runner, record_process=lock.record_process)
            assert eng.run()[0] == "succeeded"

    return run_all


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=500, help="steps per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (medians are reported)")
    args = parser.parse_args()

    import playbook
    from playbook.runtime.executors import run_command
    from playbook.runtime.state import Store

    print("playbook package: %s" % os.path.dirname(playbook.__file__))
    print("python %s, %d CPUs, load average %.2f %.2f %.2f" % ((sys.version.split()[0], os.cpu_count() or 0) + os.getloadavg()))
    with tempfile.TemporaryDirectory(prefix="playbook-bench-") as tmp:
        store = Store(os.path.join(tmp, "state.db"))
        devnull = open(os.devnull, "w")
        engine_run = engine_case(store, args.steps, devnull)
        locks = []  # one per state case and round, released at the end
        cases = {
            "state": None,  # made for each round, on a run of its own
            "state, apart": None,
            "engine": lambda i: engine_run() if i == 0 else None,
            "spawn": lambda i: run_command("true", timeout=60, on_start=lambda pgid, ticks: None),
            "floor": lambda i: subprocess.run(["sh", "-c", "true"], stdin=subprocess.DEVNULL),
        }
        samples: dict = {name: [] for name in cases}
        for round_number in range(args.rounds + 1):
            for name, function in cases.items():
                if name.startswith("state"):
                    run_id = store.create_run("bench", None, "hash", "{}", {})
                    locks.append(store.lock_run(run_id))
                    function = (state_case if name == "state" else state_apart_case)(store, run_id, locks[-1])
                result = timed(function, args.steps)
                if round_number:  # the first round warms up
                    samples[name].append(result)
        for lock in locks:
            lock.release()
        store.close()
        devnull.close()
    print()
    print("%-12s %12s %12s %15s" % ("case", "wall ms/step", "CPU ms/step", "children's CPU"))
    medians = {}
    for name, values in samples.items():
        medians[name] = tuple(statistics.median(v[k] for v in values) for k in range(3))
        print("%-12s %12.3f %12.3f %15.3f" % ((name,) + medians[name]))
    print()
    print("run_command above the floor: %+.3f ms wall, %+.3f ms CPU of the runner per step" % (
        medians["spawn"][0] - medians["floor"][0], medians["spawn"][1] - medians["floor"][1]))
    print("state + run_command above the floor: %+.3f ms wall, %+.3f ms CPU of the runner per step" % (
        medians["state"][0] + medians["spawn"][0] - medians["floor"][0], medians["state"][1] + medians["spawn"][1] - medians["floor"][1]))
    print("engine + run_command above the floor: %+.3f ms wall, %+.3f ms CPU of the runner per step" % (
        medians["engine"][0] + medians["spawn"][0] - medians["floor"][0], medians["engine"][1] + medians["spawn"][1] - medians["floor"][1]))
    print("(%d steps per round, median of %d rounds; load average at end %.2f %.2f %.2f)" % ((args.steps, args.rounds) + os.getloadavg()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
