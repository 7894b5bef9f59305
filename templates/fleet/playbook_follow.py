# An Ansible action plugin written beside a generated fleet playbook by `playbook fleet`
# (action_plugins/playbook_follow.py): one look at a host's detached run, for an `until` loop.
#
# Each look is one shell command on the host (no Python module is sent): the bundle's
# `follow JOB --since OFFSET --hold SECONDS`, which returns as soon as the run has new events or
# has ended (else after SECONDS). The offset comes from the previous look (the task's registered
# result, which Ansible hands to the next try). The last look brings the run's exit code and a
# copy of its state database, written here to DEST; the task then fails when the run did not
# succeed, so `serial`, `max_fail_percentage` and `any_errors_fatal` keep their meaning.
#
# A look removes nothing on the host; after the last one, JOB is removed (`rm -rf`, one more
# call) only while the controller (`playbook fleet`, PLAYBOOK_FLEET_CONTROLLER) is there to
# record the answer. Ansible's workers outlive a controller killed outright (they run in
# sessions of their own): without it, a worker looks no more, and a look it had under way leaves
# JOB as it was, so `playbook fleet resume` gets the run's end from it.
from __future__ import annotations

import base64
import json
import os
import shlex
import zlib

from ansible.plugins.action import ActionBase

DOCUMENTATION = """
    name: playbook_follow
    short_description: follow a Playbook bundle's detached run on a host (for `playbook fleet`)
"""


CONTROLLER_ENV = "PLAYBOOK_FLEET_CONTROLLER"


def controller_gone():
    """The pid of `playbook fleet` that started this Ansible, when that process has ended
    (None while it runs, or for a playbook run by hand)."""
    pid = os.environ.get(CONTROLLER_ENV, "")
    if not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return pid
    except OSError:  # another user's process of that pid: not ours, but not proof it has gone
        return None
    return None


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("bundle", "job", "hold", "dest", "python"))
    _supports_check_mode = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = self._task.args
        job = args["job"]
        previous = task_vars.get(self._task.register) if self._task.register else None
        previous = previous if isinstance(previous, dict) and previous.get("job") == job else {}
        since = int(previous.get("offset") or 0)
        gone = controller_gone()
        if gone:
            result.update(failed=True, done=True, job=job,
                          msg="the controller (playbook fleet, pid %s) has gone: no more looks; the run goes on" % gone)
            return result
        env = args.get("python") or ""
        command = "%sexec %s follow %s --since %d --hold %s" % (
            env, shlex.quote(args["bundle"]), shlex.quote(job), since, shlex.quote(str(args.get("hold", 20))))
        done = self._low_level_execute_command(command, sudoable=True)
        lines = (done.get("stdout") or "").strip().splitlines()
        try:
            look = json.loads(lines[-1]) if done.get("rc") == 0 and lines else None
        except ValueError:
            look = None
        if not isinstance(look, dict):
            why = (done.get("stderr") or done.get("stdout") or "exit %s" % done.get("rc")).strip()
            result.update(failed=True, done=True, job=job, msg="cannot follow the run: %s" % why, rc=done.get("rc"))
            return result
        run_id = previous.get("run_id")
        for event in look.get("events") or []:
            if event.get("event") == "run_started":
                run_id = event.get("run_id")
        result.update(job=job, offset=look.get("offset", since), skipped=look.get("skipped", 0), events=look.get("events") or [],
                      done=bool(look.get("done")), run_id=run_id, changed=False)
        if not result["done"]:
            return result
        if controller_gone():  # the answer has nobody to go to: JOB stays for the next look
            result.update(failed=True, msg="the controller has gone: the run's end stays on the host for the next look")
            return result
        code = look.get("exit_code")
        result.update(exit_code=code, output=look.get("output") or "", fetched=False)
        if look.get("state"):
            dest = args["dest"]
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            temp = dest + ".part"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(zlib.decompress(base64.b64decode(look["state"])))
            os.replace(temp, dest)
            result["fetched"] = True
        self._low_level_execute_command("rm -rf -- %s" % shlex.quote(job), sudoable=True)
        if code != 0:
            result.update(failed=True, msg=look.get("error") or "the run ended with exit code %s" % code)
        return result
