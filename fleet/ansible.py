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
from typing import TYPE_CHECKING, Mapping, Sequence

from playbook.runtime.errors import UsageError

if TYPE_CHECKING:
    from .follow import Rollout


INSTALL_HINT = "pip install 'playbook[fleet]'"
CALLBACK_NAME = "playbook_fleet"

# The `register:` name of each task result the playbook, the callback and the follower share.
REGISTER = {
    "confirm": "playbook_confirm",  # --confirm-batches: the answer
    "start": "playbook_started",  # the run started, detached (or, in check mode, its plan)
    "look": "playbook_look",  # a look at the run; the last one has its end and state database
}
# The action plugins the playbook calls (templates/fleet/NAME.py, written to action_plugins/).
ACTIONS = ("playbook_start", "playbook_follow")
# cryptography's notices of the ciphers it will drop, which importing Ansible's SSH code raises
# on every start: Python warnings (not Ansible's) that tell a fleet's operator nothing.
QUIET = ",".join("ignore:%s" % prefix for prefix in (
    "DSA is deprecated", "TripleDES has been moved", "Blowfish has been deprecated", "CAST5 has been deprecated",
))
# The results whose whole output the callback passes on (the others: status and message only).
KEPT = (REGISTER["start"], REGISTER["look"])
DEFAULT_FORKS = 50  # every host of a batch of up to 50 is followed at once


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


def write_plugins(out_dir: str) -> None:
    """Write our plugins beside the playbook, where ansible-playbook finds them (as it finds a
    user's plugins beside theirs): the stdout callback in callback_plugins/, the actions in
    action_plugins/. Plugin paths from ansible.cfg or the environment stay as they are."""
    from importlib import resources

    for kind, names in (("callback_plugins", {CALLBACK_NAME: "callback.py"}),
                        ("action_plugins", {name: name + ".py" for name in ACTIONS})):
        directory = os.path.join(out_dir, kind)
        os.makedirs(directory, exist_ok=True)
        for name, source in names.items():
            text = resources.files("playbook.templates").joinpath("fleet/" + source).read_text(encoding="utf-8")
            with open(os.path.join(directory, name + ".py"), "w", encoding="utf-8") as handle:
                handle.write(text)



def run_ansible(playbook: str, ansible_args: Sequence[str], env_extra: Mapping[str, str], rollout: Rollout,
                records_log: str) -> int:
    """Run ansible-playbook with our callback and `ansible_args` (inventories, --limit, --forks,
    -e and the connection flags given); feed its records to `rollout`; return its exit code."""
    command = [ansible_playbook(), *ansible_args, playbook]
    read_fd, write_fd = os.pipe()
    env = dict(os.environ)
    env.update(env_extra)
    env.update(
        ANSIBLE_STDOUT_CALLBACK=CALLBACK_NAME,
        PLAYBOOK_FLEET_RECORDS_FD=str(write_fd),
        PLAYBOOK_FLEET_CONTROLLER=str(os.getpid()),  # the follow action looks no more once this process has gone
        ANSIBLE_RETRY_FILES_ENABLED="false",
        PYTHONWARNINGS=",".join(filter(None, [env.get("PYTHONWARNINGS"), QUIET])),
    )
    try:
        proc = subprocess.Popen(command, env=env, pass_fds=(write_fd,))
    except OSError as exc:
        os.close(read_fd)
        os.close(write_fd)
        raise UsageError("cannot start %s: %s (%s)" % (command[0], exc.strerror or exc, INSTALL_HINT)) from None
    os.close(write_fd)
    try:
        with os.fdopen(read_fd, "r", encoding="utf-8") as records, open(records_log, "a", encoding="utf-8", buffering=1) as log:

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


def list_hosts(playbook: str, ansible_args: Sequence[str]) -> list[str]:
    """The hosts the play targets (inventories, --limit), as `ansible-playbook --list-hosts`
    gives them; UsageError with Ansible's own message when it cannot read them."""
    env = dict(os.environ, PYTHONWARNINGS=",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), QUIET])))
    done = subprocess.run([ansible_playbook(), *ansible_args, "--list-hosts", playbook], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise UsageError(ansible_message(done.stderr) or "ansible-playbook --list-hosts: exit %d" % done.returncode)
    hosts: list[str] = []
    listing = False
    for line in done.stdout.splitlines():
        if line.strip().startswith("hosts (") or line.strip().startswith("pattern:"):
            listing = line.strip().startswith("hosts (")
            continue
        if listing and line.strip():
            hosts.append(line.strip())
    return hosts


def ansible_message(stderr: str | None) -> str:
    """Ansible's own error, on one line (ERROR! ... or [ERROR]: ...)."""
    lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("ERROR!", "[ERROR]"))]
    return " ".join((errors or lines[-1:] or [""])[0].split())


def inventory_hostvars(inventory_args: Sequence[str]) -> dict[str, dict]:
    """Every host of the inventories (`-i ...` and vault flags, or ansible.cfg's) with its
    variables, as `ansible-inventory --list` gives them."""
    done = subprocess.run([_program("ansible-inventory"), *inventory_args, "--list"], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise UsageError("ansible-inventory: %s" % (ansible_message(done.stderr) or "exit %d" % done.returncode))
    try:
        listing = json.loads(done.stdout)
    except ValueError as exc:
        raise UsageError("ansible-inventory printed no JSON: %s" % exc) from None
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
