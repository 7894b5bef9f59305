"""DIR/fleet.yml: an ordinary playbook, also for `ansible-playbook` or AWX, rendered from
templates/fleet/fleet.yml.j2. Our placeholders there are `<< value >>` and `<% block %>`; every
`{{ }}` is Ansible's and stays as it is. Values given on the controller go in as YAML that
Ansible never templates (`!unsafe`); secrets never go in (each host reads them from the
controller's environment). The variables file is a template under templates/fleet/ too; the
action plugins the playbook calls (playbook_start, playbook_follow) are written beside it.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any, Iterable, Mapping, Sequence

from playbook.runtime.errors import UsageError

from .ansible import REGISTER


SECRET_ENV = "PLAYBOOK_FLEET_SECRET_"
DEFAULT_REMOTE_DIR = "~/.cache/playbook"
DEFAULT_STATE_PATH = "~/.config/playbook/run.db"
DEFAULT_HOLD = 20  # seconds a look at a quiet run waits on the host for news before it answers

# The bundle's command line on a host (an Ansible expression: run, or resume its run); the
# start action adds --vars-file, --approval and --detach.
ARGV = (
    "{{ [playbook_host_mode]"
    " + ([playbook_resume_runs[inventory_hostname] | string] if playbook_host_mode == 'resume' else [])"
    " + ['--no-interactive-vars', '--state-path', playbook_host_state]"
    " + (['--replan'] if playbook_replan else [])"
    " + (playbook_approve | map('regex_replace', '^', '--approve=') | list)"
    " + (['--auto-approve'] if playbook_auto_approve else [])"
    " + (['--rollout', playbook_rollout, inventory_hostname] if playbook_host_mode == 'run' else []) }}"
)


def remote_name(bundle: str) -> str:
    """The bundle's name on the hosts: NAME-<first 12 hex digits of its SHA-256>.pyz."""
    import hashlib
    import os

    digest = hashlib.sha256()
    with open(bundle, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    stem = os.path.basename(bundle)
    stem = stem[:-4] if stem.endswith(".pyz") else stem
    return "%s-%s.pyz" % (stem, digest.hexdigest()[:12])


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



def playbook_text(title: str, bundle: str, values: Mapping[str, str], secrets: Iterable[str],
                  approve: Sequence[str], auto_approve: bool, rollout: str, serial: list[Any] | None,
                  max_fail: int | None, become: bool, confirm_batches: bool, signed: Mapping[str, str] | None = None,
                  remote: str | None = None) -> str:
    """The text of DIR/fleet.yml; `bundle` is the bundle's name in files/, `remote` its
    content-addressed name on the hosts (remote_name)."""
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
        bundle=_y(bundle),
        bundle_name=_y(remote or bundle),
        fleet_vars=_unsafe(values),
        secrets=secret_map,
        approve=_y(list(approve)),
        auto_approve="true" if auto_approve else "false",
        signed=_unsafe(dict(signed or {})),
        rollout=_y(rollout),
        remote_dir=DEFAULT_REMOTE_DIR,
        state_path=DEFAULT_STATE_PATH,
        hold=DEFAULT_HOLD,
        argv=_y(ARGV),
        vars_file=_block(template("vars.toml.j2"), 10).rstrip("\n"),
        reg=SimpleNamespace(**REGISTER),  # << reg.run >> (a dict's own methods would shadow keys like "copy")
    )
