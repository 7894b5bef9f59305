"""`playbook test`: how fast scenarios are rehearsed (compiler/rehearse.py), in one process.

Two measurements, each printed as a table (numbers only: nothing passes or fails here):

  many scenarios   the deployment example with N scenarios (default 1,000): the 12 scenarios
                   of examples/deploy.scenarios.toml repeated under new names, in one file.
                   "total" is `rehearse()` as `playbook test` calls it: compile the runbook,
                   read and check the file (every scenario's variables resolved and bound),
                   rehearse every scenario through the real engine and compare its
                   expectations; "rehearse" is the last part alone. Target: 1,000 in under 2 s.
  one big runbook  one scenario of a runbook of N steps (1,000 to 10,000): a chain in which
                   every 10th step has a `when`, every 25th a `:failure` handler that the
                   scenario takes, every 50th a Manual approval. Compile and rehearsal are timed
                   apart; the rehearsal's time per step should stay flat as N grows (linear).

Also the same 1,000 scenarios through `python -m playbook.compiler.rehearse` as a process (the
start-up of the command included), once the in-process numbers are known.

Writes only under a temporary directory, which it removes.

    .venv/bin/python benchmarks/rehearse_speed.py [--scenarios 1000] [--sizes 1000,2000,5000,10000] [--quick]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchenv import bench_env

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "examples" / "deploy.playbook.toml"
DEPLOY_SCENARIOS = REPO / "examples" / "deploy.scenarios.toml"


def many_scenarios(count: int) -> str:
    """The example's scenarios repeated to `count`, each under a new name."""
    text = DEPLOY_SCENARIOS.read_text("utf-8")
    head, *blocks = re.split(r"(?m)^\[\[scenario\]\]\n", text)
    out = [head]
    for i in range(count):
        block = re.sub(r'(?m)^name = "(.*)"$', r'name = "\1 #%d"' % i, blocks[i % len(blocks)], count=1)
        out.append("[[scenario]]\n" + block)
    return "".join(out)


def big_runbook(steps: int) -> tuple:
    """(runbook text, scenarios text) of a chain of `steps` steps with every shape in it."""
    parts = ['[runbook]\ntitle = "big"\n\n[variables]\nENV = { default = "prod", choices = ["dev", "prod"] }\n']
    answers = []
    outcomes = []
    previous = None
    for i in range(steps):
        node = "s%05d" % i
        deps = "[]" if previous is None else '["%s"]' % previous
        if i % 50 == 49:
            parts.append('[%s]\ntype = "Manual"\nprompt_after = "Go on at %d in {{ ENV }}?"\ndepends_on = %s\n' % (node, i, deps))
            answers.append('%s = "approve"' % node)
        elif i % 25 == 24:
            parts.append('[%s]\ntype = "Command"\ncommand_name = "deploy {{ ENV }} part %d"\ndepends_on = %s\n' % (node, i, deps))
            parts.append('[%s_undo]\ntype = "Command"\ncommand_name = "undo %d"\ndepends_on = ["%s:failure"]\n' % (node, i, node))
            outcomes.append("%s = 1" % node)
            answers.append('%s = "follow"' % node)
            # the chain goes on once the step has ended, whatever it came to
            parts.append('[%s_next]\ntype = "Command"\ncommand_name = "true"\ndepends_on = ["%s:done"]\n' % (node, node))
            previous = node + "_next"
            continue
        elif i % 10 == 9:
            parts.append('[%s]\ntype = "Command"\ncommand_name = "step %d"\ndepends_on = %s\nwhen = "{{ ENV == \'prod\' }}"\n' % (node, i, deps))
        else:
            parts.append('[%s]\ntype = "Command"\ncommand_name = "echo {{ ENV }} %d"\ndepends_on = %s\n' % (node, i, deps))
        previous = node
    scenario = ['[[scenario]]', 'name = "all of it"', 'vars = { ENV = "prod" }']
    scenario += ["outcomes.%s" % o for o in outcomes] + ["answers.%s" % a for a in answers]
    scenario += ["", "[scenario.expect]", 'status = "failed"']
    return "\n".join(parts), "\n".join(scenario) + "\n"


def measure_many(directory: Path, count: int, rounds: int) -> None:
    from playbook.compiler import rehearse

    path = directory / "many.scenarios.toml"
    path.write_text(many_scenarios(count), "utf-8")
    totals, runs = [], []
    for _ in range(rounds):
        began = time.perf_counter()
        suite = rehearse.rehearse(str(DEPLOY), str(path))
        totals.append(time.perf_counter() - began)
        runs.append(suite.seconds)
        assert suite.failed == 0, "a scenario failed"
    total, run = statistics.median(totals), statistics.median(runs)
    print()
    print("%d scenarios of the deployment example (median of %d rounds)" % (count, rounds))
    print("%-38s %10s %14s" % ("", "seconds", "ms/scenario"))
    print("%-38s %10.3f %14.3f" % ("total: compile, read, check, rehearse", total, total * 1e3 / count))
    print("%-38s %10.3f %14.3f" % ("rehearse and compare alone", run, run * 1e3 / count))
    print("%-38s %10.3f %14.3f" % ("compile, read and check", total - run, (total - run) * 1e3 / count))
    env = bench_env(directory)
    env["PYTHONPATH"] = str(REPO.parent) + os.pathsep + env.get("PYTHONPATH", "")
    command = [sys.executable, "-m", "playbook.compiler.rehearse", str(DEPLOY), "--scenarios", str(path)]
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=False)  # warm the bytecode cache
    began = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=False)
    print("%-38s %10.3f %14.3f   (exit %d)" % ("as a process (start-up included)", time.perf_counter() - began,
                                              (time.perf_counter() - began) * 1e3 / count, done.returncode))


def measure_big(directory: Path, sizes: list) -> None:
    from playbook.compiler import rehearse

    print()
    print("one scenario of an N-step runbook")
    print("%8s %8s %12s %14s %14s %16s" % ("steps", "nodes", "compile s", "rehearse s", "ms/node", "µs/node (rehearse)"))
    for size in sizes:
        runbook_text, scenario_text = big_runbook(size)
        runbook = directory / ("big%d.playbook.toml" % size)
        runbook.write_text(runbook_text, "utf-8")
        began = time.perf_counter()
        plan, display, _ = rehearse.compile_runbook(str(runbook))
        compiled = time.perf_counter() - began
        loaded = rehearse.load_scenarios(None, plan, text=scenario_text, display="big.scenarios.toml")
        rehearsal = rehearse.Rehearsal(plan, display)
        rehearsal.bind(loaded.scenarios[0])  # the values bound once, as the file check does
        began = time.perf_counter()
        result = rehearsal.run(loaded.scenarios[0])
        ran = time.perf_counter() - began
        rehearsal.close()
        assert result.passed, rehearse.result_lines(result, loaded.locate, "big")
        nodes = len(plan.nodes)
        print("%8d %8d %12.3f %14.3f %14.4f %16.1f" % (size, nodes, compiled, ran, (compiled + ran) * 1e3 / nodes, ran * 1e6 / nodes))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenarios", type=int, default=1000, help="scenarios of the deployment example (default 1000)")
    parser.add_argument("--sizes", default="1000,2000,5000,10000", help="steps of the big runbooks")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the many-scenarios case (median)")
    parser.add_argument("--quick", action="store_true", help="200 scenarios, one round, runbooks of 1,000 and 2,000 steps")
    args = parser.parse_args()
    if args.quick:
        args.scenarios, args.rounds, args.sizes = 200, 1, "1000,2000"
    sys.path.insert(0, str(REPO.parent))
    import playbook

    print("playbook package: %s" % os.path.dirname(playbook.__file__))
    print("python %s, %d CPUs, load average %.2f %.2f %.2f" % ((sys.version.split()[0], os.cpu_count() or 0) + os.getloadavg()))
    directory = Path(tempfile.mkdtemp(prefix="rehearse-bench-"))
    try:
        measure_many(directory, args.scenarios, args.rounds)
        measure_big(directory, [int(s) for s in args.sizes.split(",") if s])
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print()
    print("(load average at end %.2f %.2f %.2f)" % os.getloadavg())
    return 0


if __name__ == "__main__":
    sys.exit(main())
