"""A fleet rollout next to plain Ansible: what `playbook fleet` costs, and how late its lines are.

Builds a small runbook (three Command steps, `echo one`, `echo two`, `echo three`; with
--step-seconds S each sleeps S seconds first) into a bundle
(`playbook compile`, as a user ships it: bytecode for every CPython found), writes two inventories
of N hosts each (default 20), every host with its own `playbook_remote_dir` and
`playbook_state_path` under one temporary directory:

  local  `ansible_connection: local`, `ansible_python_interpreter` this Python;
  ssh    throwaway sshds started here (root, keys generated here; one per 16 addresses) on 127.0.0.2 ...
         127.0.0.(N+1), one address per host, `ansible_python_interpreter: /usr/bin/python3`, and
         SSH as a user sets it up: `-o ControlMaster=auto -o ControlPersist=60s
         -o ControlPath=TMP/cm-%C` (one master connection per host, reused across commands).
         bash run by sshd reads ~/.bashrc even for `ssh host CMD`, and root's on this machine
         runs `pyenv init` (0.2 s of CPU per session, more than the session itself): sshd runs in
         a mount namespace of its own where that file reads empty, as on a plain server
         (`--keep-bashrc` leaves it; nothing outside sshd's namespace changes either way).

Ansible's settings are its defaults apart from the inventory's (the controller's temporary
directory goes under the temporary directory; the hosts' stays ~/.ansible/tmp, where Ansible makes
and removes one directory per task that needs one, after asking the host for its home).

An untimed warm-up rollout per connection puts the bundle on every host (and opens the SSH
masters, and fills the controller's bytecode cache). Then, for each connection, each --forks
value (default 10 and 5) and each round (default 3), it times:

  playbook fleet, unchanged   `playbook fleet BUNDLE -i INV --forks F --out DIR`: the bundle is
                              on the hosts already (the start action and the follow looks)
  playbook fleet, changed     the same with a bundle built just before the round with another
                              title (other content, other content address): uploaded to every
                              host first (removed from the hosts again afterwards, untimed)
  ansible -m command          `ansible all -i INV -f F -m command -a "env PLAYBOOK_PYTHON=PY
                              DIR/BUNDLE run --no-interactive-vars --state-path PATH"`: the same
                              bundle, already on the hosts, run by plain Ansible (what the start
                              action sets, PLAYBOOK_PYTHON, is set here too)
  ... , pipelining            the same with ANSIBLE_PIPELINING=True
  ansible -m raw              the same command line through `-m raw` (no Python module)

The cases are interleaved: every round runs each case once, forward in one round and in reverse
order in the next, local and ssh alternating, so that drift of the machine's speed (a shared VM)
hits all cases alike. For each case it prints:

  wall      median wall time over the rounds (and every round's value);
  CPU       the controller's CPU seconds: user+system of the waited-for children
            (resource.getrusage(RUSAGE_CHILDREN) deltas around the command: playbook fleet,
            ansible-playbook and its workers, ssh clients), plus, for ssh, the CPU the
            ControlPersist masters (daemons, never waited for) used meanwhile, read from /proc.
            For local hosts this includes the short host-side commands (start, follow looks; for
            ansible also the run itself); the detached run of `playbook fleet` is not a child
            and is not counted. For ssh nothing on the host side (sshd's children) is counted;
  ×cmd      the rollout's wall time over `ansible -m command`'s (same connection and forks);
  +/host    the overhead per host, (fleet − ansible -m command) / N;
  line      for `playbook fleet`, the line delay: for each printed step line ("HOST  STEP
            succeeded"), the time the controller printed it (stdout read line by line, each
            stamped with time.time() as it arrives) minus when the step ended on the host
            (attempts.ended_at of the host's run in the fetched DIR/hosts/HOST.db, ISO-8601 UTC
            with milliseconds); median and 95th percentile over every line of every round.

Targets, printed beside the numbers (never checked): the rollout at most 1.3× `ansible -m command`
(aim 1.0×), overhead per host under 0.3 s, median line delay under 0.5 s. The load average is
printed before and after, and the 1-minute load at the start of each timed command. Everything (inventories, hosts' directories, state, keys, sshd, SSH
control sockets) is under one temporary directory, removed at the end, after sshd and every SSH
master have been stopped.

    .venv/bin/python benchmarks/fleet_rollout.py [--hosts 20] [--rounds 3] [--forks 10,5] [--no-ssh] [--keep-bashrc]
    .venv/bin/python benchmarks/fleet_rollout.py --quick    # 6 local hosts, one round
"""

import argparse
import datetime
import functools
import hashlib
import json
import math
import os
import pwd
import re
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

from benchenv import PLAYBOOK, bench_env

BIN = os.path.dirname(sys.executable)
ANSIBLE = os.path.join(BIN, "ansible")
SSHD = "/usr/sbin/sshd"
HOST_PYTHON = "/usr/bin/python3"  # the ssh hosts' interpreter (Ansible's modules and the bundle)
STEPS = ("first", "second", "third")
RUNBOOK = """\
[runbook]
title = "%(title)s"
description = "three small steps"
version = "1.0.0"
author = "benchmarks"
created_at = 2025-01-20T12:00:00Z

[first]
type = "Command"
command_name = "%(pause)secho one"
depends_on = []

[second]
type = "Command"
command_name = "%(pause)secho two"

[third]
type = "Command"
command_name = "%(pause)secho three"
"""
STEP_SECONDS = [0.0]  # --step-seconds: each step sleeps this long first
KINDS = (
    ("fleet", "playbook fleet, unchanged"),
    ("fleet-changed", "playbook fleet, changed"),
    ("command", "ansible -m command"),
    ("pipelining", "ansible -m command, pipelining"),
    ("raw", "ansible -m raw"),
)
STEP_LINE = re.compile(r"^(\S+)  (%s)  (\w+)" % "|".join(STEPS))
RUN_LINE = re.compile(r"^(\S+)  run (\d+) (\w+)")


class Failed(Exception):
    pass


# -- the bundle ---------------------------------------------------------------------------------------
def build_bundle(tmp, name, title, env):
    """Compile the runbook with `title` into TMP/NAME/bench.pyz (the name on the hosts is
    bench-<sha12>.pyz whatever the directory)."""
    directory = os.path.join(tmp, name)
    os.makedirs(directory)
    source = os.path.join(directory, "bench.playbook.toml")
    with open(source, "w") as handle:
        pause = "sleep %g; " % STEP_SECONDS[0] if STEP_SECONDS[0] else ""
        handle.write(RUNBOOK % {"title": title, "pause": pause})
    bundle = os.path.join(directory, "bench.pyz")
    run_checked([PLAYBOOK, "compile", source, "-o", bundle], env, tmp)
    return bundle


@functools.lru_cache(maxsize=None)
def remote_name(bundle):
    """The bundle's name on the hosts, as fleet/playbook.py remote_name() makes it."""
    digest = hashlib.sha256()
    with open(bundle, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "bench-%s.pyz" % digest.hexdigest()[:12]


def run_checked(command, env, cwd):
    done = subprocess.run(command, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        raise Failed("exit %d: %s\n%s" % (done.returncode, " ".join(command), done.stdout[-3000:]))
    return done.stdout


# -- the hosts ----------------------------------------------------------------------------------------
def write_inventory(tmp, connection, hosts, extra):
    entries = {}
    for i in range(hosts):
        name = "%s%02d" % (connection[0], i)
        entries[name] = {
            "playbook_remote_dir": os.path.join(tmp, connection, "remote", name),
            "playbook_state_path": os.path.join(tmp, connection, "state", name + ".db"),
        }
        entries[name].update(extra(i))
    path = os.path.join(tmp, "inventory-%s.yml" % connection)
    with open(path, "w") as handle:
        json.dump({"all": {"hosts": entries}}, handle, indent=1)  # JSON is YAML
    return path, entries


class Sshd:
    """A throwaway sshd on 127.0.0.2 ... 127.0.0.(N+1), keys and config under TMP/ssh."""

    def __init__(self, tmp, hosts, keep_bashrc=False):
        self.keep_bashrc = keep_bashrc
        self.hidden_bashrc = None
        self.dir = os.path.join(tmp, "ssh")
        os.makedirs(self.dir)
        self.addresses = ["127.0.0.%d" % (2 + i) for i in range(hosts)]
        self.procs = []
        self.made_privsep = False
        self.control = os.path.join(tmp, "cm-")  # control sockets: TMP/cm-<%C>

    def start(self):
        if os.geteuid() != 0:
            raise Failed("the ssh hosts need root (sshd as a throwaway server; give --no-ssh)")
        if not os.path.exists(SSHD) or not os.path.exists(HOST_PYTHON):
            raise Failed("the ssh hosts need %s and %s (give --no-ssh)" % (SSHD, HOST_PYTHON))
        for name in ("host_key", "user_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(self.dir, name)], check=True)
        shutil.copyfile(os.path.join(self.dir, "user_key.pub"), os.path.join(self.dir, "authorized_keys"))
        with socket.socket() as sock:
            sock.bind(("127.0.0.2", 0))
            self.port = sock.getsockname()[1]
        sftp = next((p for p in ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server") if os.path.exists(p)), "internal-sftp")
        host_key = open(os.path.join(self.dir, "host_key.pub")).read().split()
        with open(os.path.join(self.dir, "known_hosts"), "w") as handle:
            handle.write("".join("[%s]:%d %s %s\n" % (a, self.port, host_key[0], host_key[1]) for a in self.addresses))
        if not os.path.isdir("/run/sshd"):  # sshd's privilege separation directory
            os.makedirs("/run/sshd", mode=0o755)
            self.made_privsep = True
        self.log = open(os.path.join(self.dir, "sshd.log"), "wb")
        prefix = []
        bashrc = os.path.join(pwd.getpwuid(0).pw_dir, ".bashrc")
        if not self.keep_bashrc and os.path.isfile(bashrc) and shutil.which("unshare"):
            # bash run by sshd reads ~/.bashrc, even for `ssh host CMD`; this machine's runs
            # `pyenv init` (0.2 s of CPU per session). sshd gets a mount namespace of its own in
            # which that file reads empty, as on a server: nothing outside it changes.
            hidden = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                      'mount --bind /dev/null "$1" && shift && exec "$@"', "sh", bashrc]
            if subprocess.run(hidden + ["true"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
                prefix = hidden
                self.hidden_bashrc = bashrc
        # one sshd listens on at most 16 addresses (MAX_LISTEN_SOCKS): one per 16 hosts, same port
        for number, at in enumerate(range(0, len(self.addresses), 16)):
            config = os.path.join(self.dir, "sshd_config.%d" % number)
            with open(config, "w") as handle:
                handle.write("\n".join(["Port %d" % self.port] + ["ListenAddress %s" % a for a in self.addresses[at:at + 16]] + [
                    "HostKey %s" % os.path.join(self.dir, "host_key"),
                    "AuthorizedKeysFile %s" % os.path.join(self.dir, "authorized_keys"),
                    "PidFile %s" % os.path.join(self.dir, "sshd.%d.pid" % number),
                    "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password",
                    "StrictModes no", "UsePAM no", "MaxStartups 100", "Subsystem sftp %s" % sftp, "",
                ]))
            self.procs.append(subprocess.Popen(prefix + [SSHD, "-D", "-e", "-f", config], stdin=subprocess.DEVNULL,
                                               stdout=subprocess.DEVNULL, stderr=self.log))
        deadline = time.monotonic() + 10
        for address in self.addresses:
            while True:
                try:
                    socket.create_connection((address, self.port), timeout=1).close()
                    break
                except OSError:
                    if any(proc.poll() is not None for proc in self.procs) or time.monotonic() > deadline:
                        raise Failed("sshd did not start: %s" % open(self.log.name, errors="replace").read()[-1000:]) from None
                    time.sleep(0.05)

    def host(self, i):
        return {
            "ansible_host": self.addresses[i],
            "ansible_port": self.port,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": os.path.join(self.dir, "user_key"),
            "ansible_ssh_args": "-o ControlMaster=auto -o ControlPersist=60s -o ControlPath=%s%%C" % self.control,
            "ansible_ssh_common_args": "-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o ConnectTimeout=10"
                                       % os.path.join(self.dir, "known_hosts"),
            "ansible_python_interpreter": HOST_PYTHON,
        }

    def masters(self):
        """{pid: CPU seconds so far} of the live SSH processes that name our control path: between
        two commands, only the ControlPersist masters."""
        found = {}
        tick = os.sysconf("SC_CLK_TCK")
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as handle:
                    if self.control.encode() not in handle.read():
                        continue
                with open("/proc/%s/stat" % entry) as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            found[int(entry)] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        return found

    def stop(self):
        """Every SSH master (`ssh -O exit` per control socket, then any left by pid), then sshd."""
        directory, prefix = os.path.split(self.control)
        for name in sorted(os.listdir(directory)):
            if name.startswith(prefix):
                subprocess.run(["ssh", "-O", "exit", "-o", "ControlPath=%s" % os.path.join(directory, name), "bench"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
        deadline = time.monotonic() + 5
        while self.masters() and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in self.masters():
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.procs:
            self.log.close()
        if self.made_privsep:
            try:
                os.rmdir("/run/sshd")
            except OSError:
                pass


# -- measuring ----------------------------------------------------------------------------------------
def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measured(command, env, cwd, sshd=None, lines=False):
    """Run `command`: (wall seconds, controller CPU seconds, [(time.time() at arrival, line)])."""
    before_masters = sshd.masters() if sshd else {}
    cpu = children_cpu()
    start = time.perf_counter()
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(command, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors)
        stamped = []
        if lines:
            for raw in iter(proc.stdout.readline, b""):
                stamped.append((time.time(), raw.decode("utf-8", "replace").rstrip("\n")))
        output = proc.stdout.read()
        proc.stdout.close()
        code = proc.wait()
        wall = time.perf_counter() - start
        cpu = children_cpu() - cpu
        if code != 0:
            errors.seek(0)
            text = "\n".join(line for _, line in stamped) + output.decode("utf-8", "replace")
            raise Failed("exit %d: %s\n%s\n%s" % (code, " ".join(command), text[-3000:], errors.read().decode("utf-8", "replace")[-3000:]))
    if sshd:
        after = sshd.masters()
        cpu += sum(seconds - before_masters.get(pid, 0.0) for pid, seconds in after.items())
    return wall, cpu, stamped


def iso_seconds(text):
    """attempts.ended_at (runtime/state.py now_iso: 2026-11-29T04:18:05.123Z) as seconds since the epoch."""
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()


def line_delays(stamped, out, hosts):
    """For each step line the controller printed: when it printed it minus when the step ended on
    the host (the host's run, named by its "HOST  run N ..." line, in the fetched DIR/hosts/HOST.db)."""
    runs = {}
    for _, line in stamped:
        match = RUN_LINE.match(line)
        if match:
            runs[match.group(1)] = int(match.group(2))
    delays = []
    for at, line in stamped:
        match = STEP_LINE.match(line)
        if not match:
            continue
        host, step = match.group(1), match.group(2)
        if host not in runs:
            raise Failed("no run line for %s in the rollout's output" % host)
        con = sqlite3.connect(os.path.join(out, "hosts", host + ".db"))
        try:
            row = con.execute("SELECT ended_at FROM attempts WHERE run_id = ? AND node_id = ? ORDER BY id DESC LIMIT 1",
                              (runs[host], step)).fetchone()
        finally:
            con.close()
        if row is None or row[0] is None:
            raise Failed("%s: no ended attempt of %s in run %d" % (host, step, runs[host]))
        delays.append(at - iso_seconds(row[0]))
    if len(delays) != len(STEPS) * hosts:
        raise Failed("%d step lines for %d hosts of %d steps:\n%s" % (len(delays), hosts, len(STEPS), "\n".join(l for _, l in stamped)))
    return delays


def uploads(out):
    """How many hosts the start action uploaded the bundle to (from the rollout's records)."""
    count = 0
    with open(os.path.join(out, "records.jsonl")) as handle:
        for line in handle:
            record = json.loads(line)
            if record.get("register") == "playbook_started" and record.get("uploaded"):
                count += 1
    return count


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


# -- the cases ----------------------------------------------------------------------------------------
class Connection:
    def __init__(self, name, inventory, hosts, sshd=None):
        self.name, self.inventory, self.hosts, self.sshd = name, inventory, hosts, sshd


def run_case(tmp, env, conn, forks, kind, bundles, label, expect_uploads):
    """One timed command: (wall, cpu, line delays or None)."""
    if kind.startswith("fleet"):
        bundle = bundles[forks] if kind == "fleet-changed" else bundles["base"]
        out = os.path.join(tmp, "out-%s" % label)
        wall, cpu, stamped = measured([PLAYBOOK, "fleet", bundle, "-i", conn.inventory, "--forks", str(forks), "--out", out],
                                      env, tmp, conn.sshd, lines=True)
        delays = line_delays(stamped, out, len(conn.hosts))
        uploaded = uploads(out)
        if uploaded != expect_uploads * len(conn.hosts):
            raise Failed("%s: the bundle was uploaded to %d hosts, expected %d" % (label, uploaded, expect_uploads * len(conn.hosts)))
        shutil.rmtree(out)
        if kind == "fleet-changed":  # 5.8 MB a host a round: off the hosts again (untimed)
            for host in conn.hosts.values():
                os.remove(os.path.join(host["playbook_remote_dir"], remote_name(bundle)))
        return wall, cpu, delays
    command = ("env PLAYBOOK_PYTHON={{ ansible_python_interpreter }} {{ playbook_remote_dir }}/%s run --no-interactive-vars "
               "--state-path {{ playbook_state_path }}" % remote_name(bundles["base"]))
    module = "raw" if kind == "raw" else "command"
    case_env = dict(env, ANSIBLE_PIPELINING="True") if kind == "pipelining" else env
    wall, cpu, _ = measured([ANSIBLE, "all", "-i", conn.inventory, "-f", str(forks), "-m", module, "-a", command],
                            case_env, tmp, conn.sshd)
    return wall, cpu, None


def fmt_case(name, samples, base_wall, hosts):
    walls = [s[0] for s in samples]
    wall = statistics.median(walls)
    cpu = statistics.median(s[1] for s in samples)
    every = " ".join("%.2f" % w for w in walls)
    ratio = over = delay = ""
    if base_wall is not None:
        ratio = "%.2f×" % (wall / base_wall)
        over = "%+.3f" % ((wall - base_wall) / hosts)
        delays = [d for s in samples for d in s[2]]
        delay = "%.2f / %.2f" % (statistics.median(delays), percentile(delays, 0.95))
    return "  %-31s %7.2f  %-22s %6.2f  %6s  %8s  %s" % (name, wall, every, cpu, ratio, over, delay)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, help="hosts per connection (default 20; 6 with --quick)")
    parser.add_argument("--rounds", type=int, help="timed rounds (default 3; 1 with --quick)")
    parser.add_argument("--forks", default="10,5", help="--forks values, comma-separated (default 10,5)")
    parser.add_argument("--no-ssh", action="store_true", help="local-connection hosts only")
    parser.add_argument("--keep-bashrc", action="store_true",
                        help="let the ssh sessions read root's ~/.bashrc (by default sshd sees it empty, see the code)")
    parser.add_argument("--quick", action="store_true", help="6 local hosts, one round (a smoke run)")
    parser.add_argument("--step-seconds", type=float, default=0.0,
                        help="each step sleeps this long first (default 0): with 1 or more, the runs are still going when "
                        "the controller starts following them, and the line delay is that of a run being followed")
    args = parser.parse_args()
    STEP_SECONDS[0] = args.step_seconds
    hosts = args.hosts or (6 if args.quick else 20)
    rounds = args.rounds or (1 if args.quick else 3)
    forks_list = [int(f) for f in args.forks.split(",")]
    use_ssh = not (args.no_ssh or args.quick)
    if use_ssh and not 1 <= hosts <= 253:
        parser.error("--hosts %d: the ssh hosts are 127.0.0.2 to 127.0.0.254 (give 1 to 253, or --no-ssh)" % hosts)
    if not os.path.exists(ANSIBLE):
        print("ansible-core is not installed here (pip install 'playbook[fleet]'); nothing measured")
        return
    tmp = tempfile.mkdtemp(prefix="fleet-bench-")
    sshd = None
    load_before = os.getloadavg()
    began = time.monotonic()
    try:
        env = bench_env(tmp)
        # The controller's temporary directory in TMP. The hosts' stays the default, ~/.ansible/tmp
        # (Ansible makes and removes a directory there per task that needs one): a path under ~
        # costs a round trip that asks the host for its home first, and Ansible refuses "~/..".
        env.update(ANSIBLE_LOCAL_TEMP=os.path.join(tmp, "ansible-local"), ANSIBLE_PYTHON_INTERPRETER=sys.executable)
        env.pop("ANSIBLE_REMOTE_TEMP", None)
        env.pop("ANSIBLE_PIPELINING", None)
        bundles = {"base": build_bundle(tmp, "bundle-base", "Fleet benchmark", env)}
        connections = []
        inventory, entries = write_inventory(tmp, "local", hosts, lambda i: {"ansible_connection": "local",
                                                                             "ansible_python_interpreter": sys.executable})
        connections.append(Connection("local", inventory, entries))
        if use_ssh:
            sshd = Sshd(tmp, hosts, args.keep_bashrc)
            sshd.start()
            inventory, entries = write_inventory(tmp, "ssh", hosts, sshd.host)
            connections.append(Connection("ssh", inventory, entries, sshd))
        # untimed: the bundle onto every host, SSH masters open, the controller's caches warm
        for conn in connections:
            run_case(tmp, env, conn, max(forks_list), "fleet", bundles, "warm-%s" % conn.name, expect_uploads=1)
            run_case(tmp, env, conn, max(forks_list), "command", bundles, "warm-%s" % conn.name, expect_uploads=0)
        cases = [(forks, kind, conn) for forks in forks_list for kind, _ in KINDS for conn in connections]
        results, loads = {}, []
        for number in range(rounds):
            for forks in forks_list:  # a fresh bundle per forks value (both connections' hosts lack it)
                bundles[forks] = build_bundle(tmp, "bundle-r%d-f%d" % (number, forks), "Fleet benchmark, round %d, forks %d" % (number, forks), env)
            order = cases if number % 2 == 0 else cases[::-1]
            for forks, kind, conn in order:
                label = "r%d-%s-f%d-%s" % (number, conn.name, forks, kind)
                loads.append(os.getloadavg()[0])
                sample = run_case(tmp, env, conn, forks, kind, bundles, label, expect_uploads=1 if kind == "fleet-changed" else 0)
                results.setdefault((conn.name, forks, kind), []).append(sample)
                print("  round %d: %-5s --forks %-2d %-15s %6.2f s" % (number + 1, conn.name, forks, kind, sample[0]), file=sys.stderr, flush=True)
            for forks in forks_list:
                shutil.rmtree(os.path.dirname(bundles.pop(forks)))
        load_after = os.getloadavg()
        print()
        print("fleet rollout of a 3-step runbook (bundle %.1f MB) to %d hosts per connection, median of %d round%s, interleaved"
              % (os.path.getsize(bundles["base"]) / 1e6, hosts, rounds, "" if rounds == 1 else "s"))
        print("load average before %.2f %.2f %.2f, after %.2f %.2f %.2f (2 CPUs); %.0f s in all"
              % (load_before + load_after + (time.monotonic() - began,)))
        print("1-minute load average at the start of the timed commands: min %.2f, median %.2f, max %.2f"
              % (min(loads), statistics.median(loads), max(loads)))
        if sshd is not None:
            print("ssh: sshd on 127.0.0.2-%s port %d, one master per host; the sessions' shell %s"
                  % (sshd.addresses[-1].rsplit(".", 1)[1], sshd.port,
                     "reads an empty %s (hidden in sshd's mount namespace)" % sshd.hidden_bashrc if sshd.hidden_bashrc
                     else "reads root's ~/.bashrc as it is"))
        print()
        print("  %-31s %7s  %-22s %6s  %6s  %8s  %s" % ("", "wall s", "every round (s)", "CPU s", "×cmd", "+/host s", "line delay med / p95 s"))
        for conn in connections:
            for forks in forks_list:
                print("%s, %d hosts, --forks %d" % ({"local": "local connection", "ssh": "ssh to 127.0.0.x (ControlPersist)"}[conn.name],
                                                    hosts, forks))
                base = statistics.median(s[0] for s in results[(conn.name, forks, "command")])
                for kind, name in KINDS:
                    samples = results[(conn.name, forks, kind)]
                    print(fmt_case(name, samples, base if kind.startswith("fleet") else None, hosts))
        print()
        print("CPU s: the controller's CPU (user+system of playbook fleet / ansible and every process they waited for; ssh: plus the")
        print("       ControlPersist masters). For local hosts it includes the short host-side commands (start, follow looks; for ansible")
        print("       the run itself); the detached run of `playbook fleet` is not counted. For ssh the host side (sshd) is not counted.")
        print("×cmd, +/host: the rollout against `ansible -m command` of the same bundle, same connection and forks; +/host = difference / hosts.")
        print("line delay: when the controller printed a step's line minus when the step ended on the host (attempts.ended_at).")
        print("targets (not checked): rollout ≤ 1.3× ansible -m command (aim 1.0×); overhead per host < 0.3 s; median line delay < 0.5 s")
    except Failed as exc:
        print("failed: %s" % exc, file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        if sshd is not None:
            sshd.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
