"""Compiler scale: validate / plan / compile_file time and peak memory for large runbooks.

Generates runbooks of 1,000, 10,000 and 100,000 Command nodes in four shapes:

  chain      node i depends_on node i-1, declared in order
  reverse    the same chain, declared last node first
  fanout     one root, every other node depends on it, plus a final join with depends_on = ["*"]
  templated  a chain whose commands are templates `echo {{ X }} nI`, compiled with --var X=1
             (rendering costs more, so it is reported separately)

For each it measures, as subprocesses: `playbook validate FILE` and `playbook plan --json FILE`
(stdout to /dev/null), wall time and peak RSS (ru_maxrss from os.wait4); and, in this process,
`playbook.compiler.plan.compile_file(..., bake=True)` (what both commands run). Time per node
(µs) shows whether growth is linear. Prints numbers only; it never judges them.

Target (issue 2): 10,000 nodes validated in under 1 s, time growing linearly.

    .venv/bin/python benchmarks/compile_scale.py            # 1k, 10k, 100k; median of 3 (1 for 100k)
    .venv/bin/python benchmarks/compile_scale.py --quick    # 1k and 10k, one run each
"""

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchenv import PLAYBOOK, bench_env
ENV = None  # set by main(): see bench_env



SHAPES = ("chain", "reverse", "fanout", "templated")


def node(f, node_id, deps, command="true"):
    f.write('\n[%s]\ntype = "Command"\ncommand_name = "%s"\ndepends_on = [%s]\n' % (node_id, command, ", ".join('"%s"' % d for d in deps)))


def generate(path, shape, n):
    with open(path, "w") as f:
        if shape == "templated":
            f.write('[variables]\nX = { required = true, description = "a value for every command" }\n\n')
        f.write('[runbook]\ntitle = "%s of %d nodes"\n' % (shape, n))
        if shape == "chain":
            for i in range(n):
                node(f, "n%d" % i, ["n%d" % (i - 1)] if i else [])
        elif shape == "reverse":
            for i in reversed(range(n)):
                node(f, "n%d" % i, ["n%d" % (i - 1)] if i else [])
        elif shape == "fanout":
            node(f, "root", [])
            for i in range(1, n - 1):
                node(f, "n%d" % i, ["root"])
            node(f, "join", ["*"])
        elif shape == "templated":
            for i in range(n):
                node(f, "n%d" % i, ["n%d" % (i - 1)] if i else [], command="echo {{ X }} n%d" % i)
        else:
            raise ValueError(shape)


def var_args(shape):
    return ["--var", "X=1"] if shape == "templated" else []


class TimedOut(Exception):
    pass


def run_measured(argv, stdout, stderr_path, timeout):
    """Wall seconds and peak RSS (MiB) of one subprocess; TimedOut after `timeout` seconds.

    The child is started from this small driver process (nothing heavy imported here): on Linux
    a child's ru_maxrss starts from its parent's RSS at fork, so the driver must stay small.
    """
    with open(stderr_path, "w+b") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=ENV, stdin=subprocess.DEVNULL, stdout=stdout, stderr=err)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if wall >= timeout and proc.returncode < 0:
            raise TimedOut()
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError("%s exited %d:\n%s" % (" ".join(argv), proc.returncode, err.read().decode(errors="replace")[-2000:]))
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    rss = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    return wall, rss


def compile_once(path, shape):
    """Child mode: time compile_file(bake=True) after the imports; print the seconds."""
    from playbook.compiler.plan import compile_file
    from playbook.runtime.variables import Sources

    sources = Sources(cli={"X": "1"}) if shape == "templated" else Sources()
    gc.collect()
    start = time.perf_counter()
    compile_file(path, sources, bake=True)
    print("%.6f" % (time.perf_counter() - start))


def compile_measured(path, shape, stderr_path, timeout):
    with tempfile.TemporaryFile() as out:
        run_measured([sys.executable, __file__, "--compile-once", str(path), shape], out, stderr_path, timeout)
        out.seek(0)
        return float(out.read())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 and 10,000 nodes, one run each")
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], help="comma-separated node counts")
    parser.add_argument("--shapes", type=lambda s: s.split(","), default=list(SHAPES), help="subset of: " + ",".join(SHAPES))
    parser.add_argument("--repeat", type=int, help="runs per measurement (median reported)")
    parser.add_argument("--timeout", type=float, default=180, help="give up on one command after this many seconds (default 180)")
    parser.add_argument("--compile-once", nargs=2, metavar=("FILE", "SHAPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compile_once:
        compile_once(*args.compile_once)
        return 0
    sizes = args.sizes or ([1000, 10000] if args.quick else [1000, 10000, 100000])
    for shape in args.shapes:
        if shape not in SHAPES:
            parser.error("unknown shape %r (one of %s)" % (shape, ", ".join(SHAPES)))

    print("playbook: %s" % PLAYBOOK)
    print("python:   %s (%s), %d CPUs, load average %s" % (
        sys.executable, sys.version.split()[0], os.cpu_count() or 0, "%.2f %.2f %.2f" % os.getloadavg()))
    print("bytecode: warm cache in the temp directory (PYTHONPYCACHEPREFIX); sizes %s, %s" % (
        ", ".join("{:,}".format(n) for n in sizes), "1 run each" if args.quick else "median of %s runs (1 at 100,000)" % (args.repeat or 3)))
    print()
    header = ("shape", "nodes", "file MB", "validate s", "µs/node", "RSS MB", "plan s", "µs/node", "RSS MB", "compile s", "µs/node")
    fmt = "%-9s %7s %7s %10s %8s %7s %8s %8s %7s %9s %8s"
    print(fmt % header)
    print(fmt % tuple("-" * len(h) for h in header))
    results = {}
    with tempfile.TemporaryDirectory(prefix="playbook-bench-") as tmp:
        global ENV
        tmp = Path(tmp)
        ENV = bench_env(tmp)
        err_path = tmp / "stderr.txt"
        # Untimed warm-up: fills the bytecode cache for every code path measured below.
        warm = tmp / "warm.playbook.toml"
        for shape in SHAPES:
            generate(warm, shape, 3)
            with open(os.devnull, "wb") as devnull:
                for kind in ("validate", "plan"):
                    argv = [PLAYBOOK, kind] + (["--json"] if kind == "plan" else []) + [str(warm)] + var_args(shape)
                    run_measured(argv, devnull, err_path, args.timeout)
            compile_measured(warm, shape, err_path, args.timeout)
        for shape in args.shapes:
            for n in sizes:
                repeat = args.repeat or (1 if args.quick or n >= 100000 else 3)
                path = tmp / ("%s-%d.playbook.toml" % (shape, n))
                generate(path, shape, n)
                size_mb = path.stat().st_size / 1e6
                cells = []
                timed_out = False
                for kind in ("validate", "plan", "compile"):
                    times, rss = [], []
                    gave_up = False
                    for _ in range(repeat):
                        if timed_out:
                            break
                        try:
                            if kind == "compile":
                                times.append(compile_measured(path, shape, err_path, args.timeout))
                                continue
                            argv = [PLAYBOOK, kind] + (["--json"] if kind == "plan" else []) + [str(path)] + var_args(shape)
                            with open(os.devnull, "wb") as devnull:
                                t, r = run_measured(argv, devnull, err_path, args.timeout)
                            times.append(t)
                            rss.append(r)
                        except TimedOut:
                            # Skip the rest of this row: it would time out too.
                            timed_out = gave_up = True
                    if times:
                        t = statistics.median(times)
                        results[shape, n, kind] = t
                        cells += ["%.3f" % t, "%.1f" % (t / n * 1e6)]
                    else:
                        cells += ["> %g" % args.timeout if gave_up else "-", "-"]
                    if kind != "compile":
                        cells.append("%.0f" % max(rss) if rss else "-")
                print(fmt % tuple([shape, "{:,}".format(n), "%.1f" % size_mb] + cells))
                sys.stdout.flush()
                path.unlink()
    print()
    print("validate / plan: wall time of the whole command (start-up included), median of the runs;")
    print("RSS: peak resident set size of that subprocess; compile: compile_file(bake=True) alone, timed")
    print("inside a Python process after its imports (no CLI start-up, no output). '> T': gave up after T s.")
    print("Load average at end: %.2f %.2f %.2f." % os.getloadavg())
    print("Target (issue 2): 10,000 nodes validated in < 1 s, time per node roughly constant.")
    at_10k = ["%s %.3f s" % (shape, results[shape, 10000, "validate"]) for shape in args.shapes if (shape, 10000, "validate") in results]
    if at_10k:
        print("validate at 10,000 nodes: " + ", ".join(at_10k))
    return 0


if __name__ == "__main__":
    sys.exit(main())
