"""Ansible on the controller: `ansible-playbook` run with our stdout callback (whose records
reach this process through a pipe), `ansible-inventory` for the hosts' variables, and REGISTER,
the names of the task results that the playbook (templates/fleet/fleet.yml.j2), the callback
(templates/fleet/callback.py, its KEPT) and the follower (follow.py) agree on.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from typing import TYPE_CHECKING, Mapping

from playbook.runtime.errors import UsageError

if TYPE_CHECKING:
    from .follow import Rollout


INSTALL_HINT = "pip install 'playbook[fleet]'"
CALLBACK_NAME = "playbook_fleet"

# The `register:` name of each task result the playbook, the callback and the follower share.
REGISTER = {
    "remote": "playbook_remote",  # the bundle's directory on the host
    "confirm": "playbook_confirm",  # --confirm-batches: the answer
    "job": "playbook_job",  # the run started in the background
    "watch": "playbook_watch",  # a look at the run in progress
    "run": "playbook_run",  # the run's result
    "copy": "playbook_copy",  # the state database's consistent copy
}
# cryptography's notices of the ciphers it will drop, which importing Ansible's SSH code raises
# on every start: Python warnings (not Ansible's) that tell a fleet's operator nothing.
QUIET = ",".join("ignore:%s" % prefix for prefix in (
    "DSA is deprecated", "TripleDES has been moved", "Blowfish has been deprecated", "CAST5 has been deprecated",
))
# The results whose whole output the callback passes on (the others: status and message only).
KEPT = (REGISTER["run"], REGISTER["watch"], REGISTER["copy"])


def ansible_playbook() -> str:
    """The `ansible-playbook` program: beside this Python (a virtual environment), else on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("ansible-playbook")
    if found:
        return found
    raise UsageError(
        "playbook fleet needs Ansible (ansible-core 2.15 or newer, on a controller with Python 3.9 or newer): "
        "install it with: %s" % INSTALL_HINT
    )



def _program(name: str) -> str:
    """An Ansible program beside ansible-playbook (a virtual environment), else on PATH."""
    beside = os.path.join(os.path.dirname(ansible_playbook()), name)
    if os.access(beside, os.X_OK):
        return beside
    return shutil.which(name) or name


def write_callback(out_dir: str) -> str:
    """Write the stdout callback beside the playbook; returns its directory."""
    from importlib import resources

    plugins = os.path.join(out_dir, "callback_plugins")
    os.makedirs(plugins, exist_ok=True)
    text = resources.files("playbook.templates").joinpath("fleet/callback.py").read_text(encoding="utf-8")
    with open(os.path.join(plugins, CALLBACK_NAME + ".py"), "w", encoding="utf-8") as handle:
        handle.write(text)
    return plugins



def run_ansible(playbook: str, inventory: str, limit: str | None, forks: int | None, extra_vars: str | None,
                env_extra: Mapping[str, str], rollout: Rollout, records_log: str) -> int:
    """Run ansible-playbook with our callback; feed its records to `rollout`; return its exit code."""
    command = [ansible_playbook(), "-i", inventory, playbook]
    if limit:
        command += ["--limit", limit]
    if forks:
        command += ["--forks", str(forks)]
    if extra_vars:
        command += ["-e", "@" + extra_vars]
    read_fd, write_fd = os.pipe()
    env = dict(os.environ)
    env.update(env_extra)
    env.update(
        ANSIBLE_CALLBACK_PLUGINS=os.path.join(os.path.dirname(playbook), "callback_plugins"),
        ANSIBLE_STDOUT_CALLBACK=CALLBACK_NAME,
        PLAYBOOK_FLEET_RECORDS_FD=str(write_fd),
        ANSIBLE_RETRY_FILES_ENABLED="false",
        PYTHONWARNINGS=",".join(filter(None, [env.get("PYTHONWARNINGS"), QUIET])),
    )
    env.setdefault("ANSIBLE_PYTHON_INTERPRETER", "auto_silent")
    try:
        proc = subprocess.Popen(command, env=env, pass_fds=(write_fd,))
    except OSError as exc:
        os.close(read_fd)
        os.close(write_fd)
        raise UsageError("cannot start %s: %s (%s)" % (command[0], exc.strerror or exc, INSTALL_HINT)) from None
    os.close(write_fd)
    try:
        with os.fdopen(read_fd, "r", encoding="utf-8") as records, open(records_log, "a", encoding="utf-8") as log:

            def follow() -> None:
                for line in records:
                    log.write(line)
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    rollout.feed(record)

            try:
                follow()
            except KeyboardInterrupt:
                # Ctrl-C reaches ansible-playbook too (one process group); a SIGINT sent to this
                # process alone is passed on. Ansible stops starting tasks and ends; its last
                # records are still read. The runs already started go on on their hosts.
                rollout.interrupted = True
                try:
                    proc.wait(2)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGINT)
                follow()
    finally:
        code = proc.wait()
    return code


def inventory_hostvars(inventory: str) -> dict[str, dict]:
    """Every host of the inventory with its variables, as `ansible-inventory --list` gives them."""
    done = subprocess.run([_program("ansible-inventory"), "-i", inventory, "--list"], stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode != 0:
        raise UsageError("ansible-inventory -i %s: %s" % (inventory, (done.stderr.strip().splitlines() or [""])[-1] or "exit %d" % done.returncode))
    try:
        listing = json.loads(done.stdout)
    except ValueError as exc:
        raise UsageError("ansible-inventory -i %s printed no JSON: %s" % (inventory, exc)) from None
    hostvars = (listing.get("_meta") or {}).get("hostvars") or {}
    hosts: dict[str, dict] = {}

    def walk(group: str, seen: set) -> None:
        if group in seen:
            return
        seen.add(group)
        entry = listing.get(group) or {}
        for host in entry.get("hosts") or []:
            hosts.setdefault(host, dict(hostvars.get(host) or {}))
        for child in entry.get("children") or []:
            walk(child, seen)

    walk("all", set())
    return hosts
