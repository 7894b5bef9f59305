# An Ansible action plugin written beside a generated fleet playbook by `playbook fleet`
# (action_plugins/playbook_start.py): starts a host's run in one call to the host.
#
# The call is one shell command (no Python module is sent): it makes the bundle's directory
# (0700), removes the job directories of runs that have ended, and, when the bundle is there
# under its content-addressed name, makes a job directory, writes the variables into it from
# standard input (never the command line) and starts the bundle detached (`run --detach JOB`,
# or `resume RUN --detach JOB`). Only when the bundle is missing is it uploaded first (one more
# transfer and call). In check mode (`--check`) it runs `plan` instead and changes nothing kept.
from __future__ import annotations

import json
import shlex

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

DOCUMENTATION = """
    name: playbook_start
    short_description: start a Playbook bundle's run on a host, detached (for `playbook fleet`)
"""


def _dir(path):
    """A shell word for a remote directory; a leading ~/ is the remote user's $HOME."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def python_env(task_vars):
    """PLAYBOOK_PYTHON=... when the inventory or ansible.cfg names the host's interpreter
    (ansible_python_interpreter, interpreter_python): the bundle runs with the Python Ansible
    would use. "auto" (the default) leaves the choice to the bundle's launcher."""
    python = task_vars.get("ansible_python_interpreter")
    if not python:
        try:
            from ansible import constants

            python = constants.config.get_config_value("INTERPRETER_PYTHON", variables=task_vars)
        except Exception:  # an older or newer configuration API: the launcher chooses
            python = None
    if isinstance(python, str) and python and not python.startswith("auto") and "{" not in python:
        return "PLAYBOOK_PYTHON=%s; export PLAYBOOK_PYTHON; " % shlex.quote(python)
    return ""


class ActionModule(ActionBase):
    TRANSFERS_FILES = False  # no temporary directory on the host per call: uploads are staged in the bundle's own directory (or, with become, in one made then)
    _VALID_ARGS = frozenset(("bundle", "name", "remote_dir", "host", "argv", "vars", "approvals"))
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = self._task.args
        local = self._find_needle("files", args["bundle"])
        directory = _dir(args["remote_dir"])
        name = shlex.quote(args["name"])
        host = shlex.quote(args["host"])
        staged = self._tmp = None
        for _ in range(2):
            script = self._script(directory, name, host, args, staged, task_vars)
            done = self._low_level_execute_command(script, sudoable=True, in_data=str(args.get("vars") or "").encode("utf-8"))
            stdout = (done.get("stdout") or "").strip().splitlines()
            last = stdout[-1] if stdout else ""
            if done.get("rc") == 0 and last.startswith("playbook-upload "):
                if staged is not None:
                    raise AnsibleActionFail("the bundle was uploaded but is not there: %s" % last)
                staged = self._upload(local, last.split(" ", 1)[1], args["name"])
                result["uploaded"] = True
                continue
            break
        if self._tmp is not None:
            self._remove_tmp_path(self._tmp)
        result["rc"] = done.get("rc")
        if done.get("rc") != 0:
            result.update(failed=True, msg=(done.get("stderr") or done.get("stdout") or "exit %s" % done.get("rc")).strip())
            return result
        if self._task.check_mode:
            result.update(changed=False, plan=done.get("stdout") or "")
            return result
        try:
            started = json.loads(last)
        except ValueError:
            result.update(failed=True, msg="the bundle did not start: %s" % ((done.get("stderr") or "").strip() or last or "no output"))
            return result
        result.update(changed=True, job=started["job"], pid=started["pid"], uploaded=result.get("uploaded", False),
                      bundle=next((line.split(" ", 1)[1] for line in stdout if line.startswith("playbook-bundle ")), ""),
                      python_env=python_env(task_vars))
        return result

    def _upload(self, local, directory, name):
        """Put the bundle on the host; returns where (the start command moves it into place)."""
        if self._connection.become:
            tmp = self._tmp = self._make_tmp_path()
            staged = self._connection._shell.join_path(tmp, name)
            self._transfer_file(local, staged)
            self._fixup_perms2((tmp, staged))
            return staged
        staged = "%s/.%s.upload" % (directory.rstrip("/"), name)
        self._transfer_file(local, staged)
        return staged

    def _script(self, directory, name, host, args, staged, task_vars):
        lines = [
            "umask 077",
            "d=%s" % directory,
            'mkdir -p "$d" && chmod 700 "$d" || exit 1',
            '[ -O "$d" ] || { echo "$d belongs to another user" >&2; exit 1; }',
            "b=\"$d\"/%s" % name,
        ]
        if staged:
            lines.append('cp -- %s "$b.part" && chmod 700 "$b.part" && mv -f -- "$b.part" "$b" || exit 1' % shlex.quote(staged))
            if self._tmp is None:
                lines.append("rm -f -- %s" % shlex.quote(staged))
        lines.append('[ -f "$b" ] || { echo "playbook-upload $(cd "$d" && pwd)"; exit 0; }')
        env = python_env(task_vars)
        if self._task.check_mode:
            lines.append('%sexec "$b" plan --vars-file /dev/stdin' % env)
            return "\n".join(lines)
        lines += [
            'for old in "$d"/%s.job.*; do [ -f "$old/exit" ] && rm -rf -- "$old"; done' % host,
            'j=$(mktemp -d "$d"/%s.job.XXXXXX) || exit 1' % host,
            'cat > "$j/vars.toml" || exit 1',
        ]
        approval_args = []
        for node, document in sorted((args.get("approvals") or {}).items()):
            target = "approval-%s.json" % node
            lines.append('printf %%s %s > "$j"/%s || exit 1' % (shlex.quote(document), shlex.quote(target)))
            approval_args.append('--approval "$j"/%s' % shlex.quote(target))
        argv = " ".join(shlex.quote(str(word)) for word in args["argv"])
        lines.append('echo "playbook-bundle $(cd "$d" && pwd)"/%s' % name)
        lines.append('%sexec "$b" %s --vars-file "$j/vars.toml" %s --detach "$j"' % (env, argv, " ".join(approval_args)))
        return "\n".join(lines)
