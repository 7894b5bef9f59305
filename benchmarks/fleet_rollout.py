"""A fleet rollout next to plain Ansible: what `playbook fleet` costs per host.

Builds a small runbook (three Command steps) into a bundle (sources only), writes an inventory of
N local-connection hosts (default 20; each its own remote directory and state database under a
temporary directory), then times, with --forks F (default 10):

  playbook fleet BUNDLE -i INVENTORY --forks F   the whole rollout: copy, start the run in the
                                                 background, follow it (a look every
                                                 playbook_poll_interval, default 2 s; --poll sets
                                                 it), collect it, fetch a consistent copy of every
                                                 state database, summary.json
  ansible all -m command -a "BUNDLE run ..."     the same bundle run directly by Ansible on the
                                                 same hosts (copied there beforehand, untimed)

and prints both totals and the overhead of the rollout per host ((fleet - ansible) / N).
Nothing is measured on a real network: local connections take SSH out of both numbers.

    .venv/bin/python benchmarks/fleet_rollout.py [--hosts 20] [--forks 10] [--runs 3]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from benchenv import PLAYBOOK, bench_env

ANSIBLE = os.path.join(os.path.dirname(sys.executable), "ansible")
RUNBOOK = """\
[runbook]
title = "Fleet benchmark"
description = "three small steps"
version = "1.0.0"
author = "benchmarks"
created_at = 2025-01-20T12:00:00Z

[first]
type = "Command"
command_name = "echo one"
depends_on = []

[second]
type = "Command"
command_name = "echo two"

[third]
type = "Command"
command_name = "echo three"
"""


def inventory(tmp, hosts, poll=None):
    entries = {}
    for i in range(hosts):
        name = "h%02d" % i
        entries[name] = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "playbook_remote_dir": os.path.join(tmp, "remote", name),
            "playbook_state_path": os.path.join(tmp, "state", name + ".db"),
        }
        if poll is not None:
            entries[name]["playbook_poll_interval"] = poll
    path = os.path.join(tmp, "inventory.yml")
    with open(path, "w") as handle:
        json.dump({"all": {"hosts": entries}}, handle)
    return path, entries


def timed(command, env, ok=(0,)):
    start = time.perf_counter()
    done = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode not in ok:
        sys.exit("failed (exit %d): %s\n%s%s" % (done.returncode, " ".join(command), done.stdout[-2000:], done.stderr[-2000:]))
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--forks", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--poll", type=int, help="seconds between looks at a run in progress (default: the playbook's, 2)")
    parser.add_argument("--quick", action="store_true", help="one run of each")
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    if not os.path.exists(ANSIBLE):
        print("ansible-core is not installed here (pip install 'playbook[fleet]'); nothing measured")
        return
    tmp = tempfile.mkdtemp(prefix="fleet-bench-")
    try:
        env = bench_env(tmp)
        env["ANSIBLE_PYTHON_INTERPRETER"] = sys.executable
        source = os.path.join(tmp, "bench.playbook.toml")
        with open(source, "w") as handle:
            handle.write(RUNBOOK)
        bundle = os.path.join(tmp, "bench.pyz")
        timed([PLAYBOOK, "compile", source, "-o", bundle, "--no-bytecode"], env)
        inv, hosts = inventory(tmp, args.hosts, args.poll)
        fleet_times, ansible_times = [], []
        for run in range(runs + 1):  # the first round warms caches and is not counted
            out = os.path.join(tmp, "out-%d" % run)
            fleet = timed([PLAYBOOK, "fleet", bundle, "-i", inv, "--forks", str(args.forks), "--out", out], env)
            # plain Ansible: the bundle already sits in every host's remote dir (the rollout put it there)
            # (`env` first: a free-form argument starting with "{" would be read as JSON)
            command = "env {{ playbook_remote_dir }}/bench.pyz run --json --no-interactive-vars --state-path {{ playbook_state_path }}"
            plain = timed([ANSIBLE, "all", "-i", inv, "--forks", str(args.forks), "-m", "ansible.builtin.command", "-a", command], env)
            if run:
                fleet_times.append(fleet)
                ansible_times.append(plain)
        fleet_median, plain_median = statistics.median(fleet_times), statistics.median(ansible_times)
        print("fleet rollout of a 3-step runbook to %d local-connection hosts, --forks %d, poll interval %s s (median of %d; load %.1f)"
              % (args.hosts, args.forks, args.poll if args.poll is not None else 2, runs, os.getloadavg()[0]))
        print("  %-44s %7.2f s" % ("playbook fleet (copy, run, fetch, summary)", fleet_median))
        print("  %-44s %7.2f s" % ("ansible -m command running the bundle", plain_median))
        print("  %-44s %7.0f ms" % ("overhead per host", 1000 * (fleet_median - plain_median) / args.hosts))
        print("  %-44s %7.0f ms" % ("playbook fleet per host", 1000 * fleet_median / args.hosts))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
