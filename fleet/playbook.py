"""DIR/fleet.yml: an ordinary playbook, also for `ansible-playbook` or AWX, rendered from
templates/fleet/fleet.yml.j2. Our placeholders there are `<< value >>` and `<% block %>`; every
`{{ }}` is Ansible's and stays as it is. Values given on the controller go in as YAML that
Ansible never templates (`!unsafe`); secrets never go in (each host reads them from the
controller's environment). The watch script, the state-copy script and the variables file are
files under templates/fleet/ too.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any, Iterable, Mapping, Sequence

from playbook.runtime.errors import UsageError

from .ansible import REGISTER
from .follow import LIVE_EVENTS, WATCH_WINDOW


SECRET_ENV = "PLAYBOOK_FLEET_SECRET_"
DEFAULT_REMOTE_DIR = "~/.cache/playbook"
DEFAULT_STATE_PATH = "~/.config/playbook/run.db"
DEFAULT_RUN_TIMEOUT = 7 * 24 * 3600  # seconds; a run still going then is stopped by Ansible's async wrapper
DEFAULT_POLL_INTERVAL = 2  # seconds between two looks at a host's events file

# The bundle's command line on a host (an Ansible expression: run, or resume its run).
ARGV = (
    "{{ [playbook_remote_bundle, playbook_host_mode]"
    " + ([playbook_resume_runs[inventory_hostname] | string] if playbook_host_mode == 'resume' else [])"
    " + ['--json', '--no-interactive-vars', '--state-path', playbook_host_state, '--vars-file', playbook_host_vars_file]"
    " + (['--replan'] if playbook_replan else [])"
    " + (playbook_approve | map('regex_replace', '^', '--approve=') | list)"
    " + (['--auto-approve'] if playbook_auto_approve else [])"
    " + (['--rollout', playbook_rollout, inventory_hostname] if playbook_host_mode == 'run' else [])"
    " + (playbook_signed_approvals | dict2items | map(attribute='key') | sort"
    " | map('regex_replace', '^', '--approval=' ~ %(remote)s.path ~ '/' ~ inventory_hostname ~ '.approval-')"
    " | map('regex_replace', '$', '.json') | list) }}"
) % REGISTER


def template(name: str) -> str:
    """The text of templates/fleet/NAME."""
    from importlib import resources

    return resources.files("playbook.templates").joinpath("fleet/" + name).read_text(encoding="utf-8")


def _render(name: str, **values: Any) -> str:
    """templates/fleet/NAME with our `<< >>` / `<% %>` placeholders filled in."""
    import jinja2

    env = jinja2.Environment(
        block_start_string="<%", block_end_string="%>", variable_start_string="<<", variable_end_string=">>",
        comment_start_string="<#", comment_end_string="#>", keep_trailing_newline=True, undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    return env.from_string(template(name)).render(**values)


def watch_script() -> str:
    """Follows a run started in the background (an `sh -c` script: the events file, the job's
    record). Prints the number of live events so far, the first run_started event, the last
    WATCH_WINDOW live events, a blank line, then whether the job has ended (Ansible's job record
    says "finished": false/0 until the command has ended)."""
    return _render("watch.sh", window=WATCH_WINDOW, events="|".join(LIVE_EVENTS)).rstrip("\n")


def parse_serial(text: str | None) -> list[Any] | None:
    """--serial 1, 25% or a list 1,10,100% (Ansible's `serial`)."""
    if text is None:
        return None
    items: list[Any] = []
    for part in text.split(","):
        part = part.strip()
        number = part[:-1] if part.endswith("%") else part
        if not number.isdigit() or int(number) < (1 if not part.endswith("%") else 1) or (part.endswith("%") and int(number) > 100):
            raise UsageError("--serial %s: give a number of hosts (1), a percentage (25%%) or a list (1,10,100%%)" % text)
        items.append(part if part.endswith("%") else int(part))
    return items



def _y(value: Any) -> str:
    """A YAML scalar or flow collection (JSON is YAML)."""
    return json.dumps(value, ensure_ascii=False)


def _text(value: str) -> str:
    """A YAML string Ansible never templates: `!unsafe` when it could hold Jinja (only then:
    ansible-core 2.19 reads a tagged "no" as a boolean)."""
    return "!unsafe %s" % _y(value) if "{" in value or "%" in value else _y(value)


def _unsafe(values: Mapping[str, str]) -> str:
    return "{%s}" % ", ".join("%s: %s" % (_y(name), _text(value)) for name, value in sorted(values.items()))


def _block(text: str, indent: int) -> str:
    pad = " " * indent
    return "|\n" + "".join(pad + line + "\n" if line else "\n" for line in text.splitlines())



def playbook_text(title: str, bundle_name: str, values: Mapping[str, str], secrets: Iterable[str],
                  approve: Sequence[str], auto_approve: bool, rollout: str, serial: list[Any] | None,
                  max_fail: int | None, become: bool, confirm_batches: bool, signed: Mapping[str, str] | None = None) -> str:
    """The text of DIR/fleet.yml."""
    secret_map = "{%s}" % ", ".join(
        "%s: %s" % (_y(name), _y("{{ lookup('ansible.builtin.env', '%s%s') }}" % (SECRET_ENV, name))) for name in sorted(secrets)
    )
    return _render(
        "fleet.yml.j2",
        title=" ".join(title.split()),  # a comment line: a title's line break ends nothing
        play_name=_y("Playbook: %s" % title.replace("{", "(").replace("}", ")")),
        serial=_y(serial) if serial is not None else None,
        max_fail=max_fail,
        become=become,
        confirm_batches=confirm_batches,
        bundle=_y(bundle_name),
        fleet_vars=_unsafe(values),
        secrets=secret_map,
        approve=_y(list(approve)),
        auto_approve="true" if auto_approve else "false",
        signed=_unsafe(dict(signed or {})),
        rollout=_y(rollout),
        remote_dir=DEFAULT_REMOTE_DIR,
        state_path=DEFAULT_STATE_PATH,
        run_timeout=DEFAULT_RUN_TIMEOUT,
        poll_interval=DEFAULT_POLL_INTERVAL,
        argv=_y(ARGV),
        copy_script=_block(template("state_copy.py"), 6).rstrip("\n"),
        vars_file=_block(template("vars.toml.j2"), 14).rstrip("\n"),
        watch=_y(watch_script()),
        until=_y("%(watch)s.rc != 0 or (%(watch)s.stdout_lines | last | default('')) == 'playbook-job: done'" % REGISTER),
        reg=SimpleNamespace(**REGISTER),  # << reg.run >> (a dict's own methods would shadow keys like "copy")
    )
