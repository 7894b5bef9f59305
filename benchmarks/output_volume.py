"""Output volume: time and peak memory of `playbook run` for a step that prints a lot (issue 9).

One Command node prints N bytes, in one of two shapes:

  one line  N bytes of `a` and no newline at all (`head -c N /dev/zero | tr '\\0' a`)
  lines     80-byte lines (`yes <79 characters> | head -c N`)

for N = 10 MB and 50 MB, shown two ways:

  plain     stdin and stdout not terminals (/dev/null): the plain UI, as under cron or `| tee`
  terminal  stdin and stdout a pseudo-terminal, read and thrown away as fast as it comes:
            the rich UI an operator sees (colour on, TERM=xterm-256color)

It reports the wall time of the whole `playbook run` and the peak RSS of the runner (ru_maxrss
from wait4; the `head`/`tr` processes are far smaller). The state database is in a temporary
directory. Each case runs once unless --repeat is given (the median is shown). Prints numbers
only; it never judges them.

Targets (issue 9): time linear in the output size, memory bounded by the tail kept per stream
(64 KiB) plus a constant, whatever the line structure. Before this work one 50 MB line took
22.5 s and 215 MB, 50 MB of ordinary lines 1.8 s and 20 MB.

    .venv/bin/python benchmarks/output_volume.py             # 10 and 50 MB, both shapes, both UIs
    .venv/bin/python benchmarks/output_volume.py --quick     # 10 MB only
    .venv/bin/python benchmarks/output_volume.py --playbook OTHER/bin/playbook   # another build
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchenv import PLAYBOOK, bench_env

MB = 1000 * 1000
COMMANDS = {
    "one line": "head -c %d /dev/zero | tr '\\\\0' a",
    "lines": "yes %s | head -c %%d" % ("a" * 79),
}


def write_runbook(path, shape, size):
    command = COMMANDS[shape] % size
    path.write_text('[runbook]\ntitle = "output"\n\n[out]\ntype = "Command"\ncommand_name = "%s"\n' % command)
    return path


def _drain(fd):
    """Read a pty master until the other side is closed."""
    while True:
        try:
            if not os.read(fd, 1 << 16):
                return
        except OSError:  # EIO: every slave end closed
            return


def run_once(playbook, book, db, ui, env):
    """(wall seconds, peak RSS in MB) of one `playbook run`; raises if it fails."""
    argv = [playbook, "run", str(book), "--state-path", str(db)]
    master = None
    if ui == "terminal":
        master, slave = os.openpty()
        stdin = stdout = slave
        env = dict(env, TERM="xterm-256color")
        env.pop("NO_COLOR", None)
    else:
        stdin = stdout = subprocess.DEVNULL
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE)
    reader = None
    if master is not None:
        os.close(slave)
        reader = threading.Thread(target=_drain, args=(master,))
        reader.start()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    if reader is not None:
        reader.join()
        os.close(master)
    if proc.returncode != 0:
        raise RuntimeError("%s exited %d: %s" % (" ".join(argv), proc.returncode, err.decode(errors="replace")[-2000:]))
    return wall, usage.ru_maxrss / 1024.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 MB only")
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], help="comma-separated sizes in MB")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case (median reported)")
    parser.add_argument("--ui", choices=("plain", "terminal", "both"), default="both")
    parser.add_argument("--playbook", default=PLAYBOOK, help="the playbook command to measure")
    args = parser.parse_args()
    sizes = args.sizes or ([10] if args.quick else [10, 50])
    uis = ("plain", "terminal") if args.ui == "both" else (args.ui,)

    print("playbook: %s" % args.playbook)
    print("python:   %s (%s), %d CPUs, load average %s" % (
        sys.executable, sys.version.split()[0], os.cpu_count() or 0, "%.2f %.2f %.2f" % os.getloadavg()))
    print()
    with tempfile.TemporaryDirectory(prefix="pb-output-") as tmp:
        tmp = Path(tmp)
        env = bench_env(tmp)
        env["HOME"] = str(tmp)
        # warm-up (untimed): fills the bytecode cache
        run_once(args.playbook, write_runbook(tmp / "warm.toml", "lines", 1000), tmp / "warm.db", "plain", env)
        fmt = "%-9s %-9s %6s %9s %9s %9s"
        header = ("ui", "shape", "MB", "seconds", "s per MB", "peak MB")
        print(fmt % header)
        print(fmt % tuple("-" * len(h) for h in header))
        for ui in uis:
            for shape in COMMANDS:
                for size in sizes:
                    book = write_runbook(tmp / "out.toml", shape, size * MB)
                    runs = [run_once(args.playbook, book, tmp / "state.db", ui, env) for _ in range(args.repeat)]
                    wall = statistics.median(w for w, _ in runs)
                    rss = statistics.median(r for _, r in runs)
                    print(fmt % (ui, shape, size, "%.2f" % wall, "%.3f" % (wall / size), "%.1f" % rss))
        print()
        print("Load average at end: %.2f %.2f %.2f." % os.getloadavg())


if __name__ == "__main__":
    main()
