# An Ansible stdout callback written next to a generated fleet playbook by `playbook fleet`.
#
# It prints nothing itself: it sends one JSON object per line to the file descriptor named by
# PLAYBOOK_FLEET_RECORDS_FD (the `playbook fleet` process reads them, prints a live line per
# host event and writes summary.json). Ansible's warnings and prompts still reach the terminal.
# Without that variable (the playbook run by hand with this callback) it does nothing.
from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: playbook_fleet
    type: stdout
    short_description: per-host records for `playbook fleet`
    description:
      - Sends one JSON record per task result to the file descriptor in PLAYBOOK_FLEET_RECORDS_FD.
"""

# The results whose fields `playbook fleet` needs (the start of a run, each look at it); of the
# others only the status and message.
KEPT = ("playbook_started", "playbook_look")
FIELDS = ("rc", "stdout", "stderr", "job", "pid", "bundle", "python_env", "uploaded", "plan", "offset", "skipped", "events",
          "done", "run_id", "exit_code", "output", "fetched")


def _part(result, name):
    """A task result's host, task or result dict (public names since ansible-core 2.19)."""
    value = getattr(result, name, None)
    return value if value is not None else getattr(result, "_" + name)


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "playbook_fleet"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        fd = os.environ.get("PLAYBOOK_FLEET_RECORDS_FD")
        self._out = os.fdopen(int(fd), "w", encoding="utf-8", buffering=1) if fd and fd.isdigit() else None

    def _record(self, **data):
        if self._out is not None:
            self._out.write(json.dumps(data, sort_keys=True, default=str) + "\n")

    def v2_playbook_on_play_start(self, play):
        batch, every = [], []
        try:  # this batch, and every host the play targets (after --limit): those never started are reported
            inventory = play._variable_manager._inventory  # no public way to the play's hosts
            batch = [h.get_name() for h in inventory.get_hosts(play.hosts, order=play.order)]
            every = [h.get_name() for h in inventory.get_hosts(play.hosts, order=play.order, ignore_restrictions=True)]
        except Exception:  # an older or newer inventory API: the hosts are then learnt from the results
            pass
        self._record(kind="batch", batch=batch, hosts=every, strategy=getattr(play, "strategy", None))

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._record(kind="task", task=task.get_name())

    def _result(self, result, status):
        task = _part(result, "task")
        data = _part(result, "result")
        register = getattr(task, "register", None)
        record = {"kind": "result", "host": _part(result, "host").get_name(), "task": task.get_name(),
                  "register": register, "status": status, "msg": data.get("msg")}
        if register in KEPT:
            record.update({name: data.get(name) for name in FIELDS if name in data})
        self._record(**record)

    def v2_runner_on_ok(self, result):
        self._result(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result(result, "failed")

    def v2_runner_retry(self, result):  # each look at a run in progress (the follow task's `until` loop)
        self._result(result, "retry")

    def v2_runner_on_unreachable(self, result):
        self._result(result, "unreachable")

    def v2_runner_on_skipped(self, result):
        self._result(result, "skipped")

    def v2_playbook_on_stats(self, stats):
        self._record(kind="stats")
        if self._out is not None:
            self._out.close()
            self._out = None
