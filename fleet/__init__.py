"""`playbook fleet`: roll a runbook out over many servers, with Ansible as the engine.

Ansible does the distribution (inventories, SSH, forks, `serial`, `max_fail_percentage`,
become); Playbook writes an ordinary playbook (DIR/fleet.yml) that puts the bundle on each
host, starts it there detached (`run --detach`), follows it and brings back a consistent copy of
the host's state database; it gives the approvals once, on the controller, prints a line per
host event and writes DIR/summary.json (rebuilt by `fleet resume` from DIR/records.jsonl and
DIR/unfinished.json when a controller was killed). `playbook fleet report DIR` turns the fetched
databases into one report.

ansible-core is an optional dependency (`pip install 'playbook[fleet]'`). The package, by job:
- cli.py: the command line (`fleet`, `fleet resume`, `fleet report`) and a rollout's course;
- bundle.py: the bundle rolled out (checked, or compiled from a runbook);
- approvals.py: the approvals given on the controller, signed for a rollout where needed;
- playbook.py: DIR/fleet.yml, from templates/fleet/;
- ansible.py: ansible-playbook and ansible-inventory as subprocesses, the callback, and the
  names of the task results the playbook, the callback and the follower share (REGISTER);
- follow.py: the lines printed while the hosts run, from the callback's records;
- summary.py: each host's outcome, summary.json, the exit code;
- report.py: the report of a rollout (HTML, JUnit, JSON).
"""

from __future__ import annotations





