"""`playbook fleet`: roll a runbook out over many servers, with Ansible as the engine.

Ansible does the distribution (inventories, SSH, forks, `serial`, `max_fail_percentage`,
become); Playbook writes an ordinary playbook (DIR/fleet.yml) that copies the bundle to each host,
runs it there with `--json` and fetches a consistent copy of the host's state database; it gives
the approvals once, on the controller, prints a line per host event and writes DIR/summary.json.
`playbook report --fleet DIR` turns the fetched databases into one report.

ansible-core is an optional dependency (`pip install 'playbook[fleet]'`); its `ansible-playbook`
runs as a subprocess, with a small stdout callback (templates/fleet_callback.py) that sends one
JSON record per task result down a pipe to this process.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import secrets as secrets_mod
import shutil
import signal
import subprocess
import sys
import zipfile
from typing import Any, Iterable, Iterator, Mapping, Sequence

from playbook.runtime.errors import (
    EXIT_ABORTED,
    EXIT_FAILED,
    EXIT_HANGUP,
    EXIT_INVALID,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STATE,
    BundleError,
    PlaybookError,
    UsageError,
)
from playbook.runtime.session import ALREADY_SUCCEEDED
from playbook.runtime.state import whoami

FLEET_VERSION = 1
INSTALL_HINT = "pip install 'playbook[fleet]'"
STATUSES = ("succeeded", "failed", "aborted", "waiting", "unreachable", "not started")
RESUMABLE = ("failed", "aborted", "waiting")
RUN_STATUSES = ("succeeded", "failed", "aborted", "waiting")
DEFAULT_REMOTE_DIR = "~/.cache/playbook"
DEFAULT_STATE_PATH = "~/.config/playbook/run.db"
SECRET_ENV = "PLAYBOOK_FLEET_SECRET_"
CALLBACK_NAME = "playbook_fleet"


# -- Ansible on the controller --------------------------------------------------------------------
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


# -- the bundle -----------------------------------------------------------------------------------
def is_bundle(path: str) -> bool:
    """A bundle is a launcher followed by a zip; a runbook is TOML text."""
    return zipfile.is_zipfile(path)


def read_bundle(path: str) -> tuple[dict, Any]:
    """The manifest and the plan of a bundle (read from its zip, nothing executed)."""
    from playbook.runtime.plan import Plan, PlanError

    try:
        with zipfile.ZipFile(path) as archive:
            manifest = json.loads(archive.read("manifest.json").decode("utf-8"))
            plan = Plan.loads(archive.read("plan.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, PlanError) as exc:
        raise BundleError("%s is not a usable bundle: %s" % (path, exc)) from None
    return manifest, plan


def prepare_bundle(source: str, files_dir: str, allowed_signers: str | None) -> str:
    """Put the bundle to roll out into `files_dir` and return its path there: a bundle is checked
    (its embedded SHA-256, and its signature with `allowed_signers`) and copied; a runbook is
    compiled (nothing baked: the variables are given to each host)."""
    if not os.path.isfile(source):
        raise UsageError("%s: no such runbook or bundle" % source)
    os.makedirs(files_dir, exist_ok=True)
    if not is_bundle(source):
        if allowed_signers:
            raise UsageError("--allowed-signers checks a signed bundle; %s is a runbook (compile it with --sign-key first)" % source)
        return _compile_into(source, files_dir)
    verify = [os.path.abspath(source), "verify"]
    if allowed_signers:
        if not os.path.isfile(allowed_signers):
            raise UsageError("--allowed-signers %s: no such file" % allowed_signers)
        verify += ["--allowed-signers", allowed_signers]
    done = subprocess.run(verify, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        detail = (done.stderr.strip() or done.stdout.strip() or "exit %d" % done.returncode).splitlines()[-1]
        raise BundleError("%s did not verify, nothing was copied: %s" % (source, detail.replace("error: ", "", 1)))
    target = os.path.join(files_dir, os.path.basename(source))
    shutil.copyfile(source, target)
    os.chmod(target, 0o755)
    if os.path.isfile(source + ".sig"):
        shutil.copyfile(source + ".sig", target + ".sig")
    return target


def _compile_into(runbook: str, files_dir: str) -> str:
    from .bundle import BundleError as BuildError
    from .bundle import build, default_output
    from .plan import compile_file
    from .source import CompileError

    try:
        compiled = compile_file(runbook)
    except CompileError as exc:
        for diag in exc.diagnostics:
            sys.stderr.write(diag.format() + "\n")
        raise UsageError("%s does not compile; nothing was rolled out" % runbook) from None
    target = os.path.join(files_dir, os.path.basename(default_output(runbook)))
    try:
        build(compiled, target)
    except BuildError as exc:
        raise PlaybookError(str(exc), exc.code) from None
    return target


# -- approvals ------------------------------------------------------------------------------------
def approval_questions(plan: Any) -> list[tuple[str, str]]:
    """(node, question) for every approval the plan can ask: Manual steps and steps with
    prompt_before / prompt_after, in the plan's order (disabled steps ask nothing)."""
    questions = []
    for node in plan.nodes:
        if node.skip:
            continue
        asks = [q for q in (node.prompt_before, node.prompt_after) if q]
        if node.type == "Manual" and not asks:
            asks = [(node.description or "").strip().splitlines()[0] if (node.description or "").strip() else "approve %s?" % node.title]
        if asks:
            questions.append((node.id, " / ".join(asks)))
    return questions


def gather_approvals(plan: Any, approve: Sequence[str], auto_approve: bool, ask: bool,
                     out: Any = None, read: Any = None) -> list[str]:
    """The approvals to pass to every host. --approve names are checked against the plan; on a
    terminal without flags every question is listed, then asked one by one (y/N)."""
    out = out or sys.stderr
    questions = approval_questions(plan)
    known = [node for node, _ in questions]
    if auto_approve:
        if approve:
            raise UsageError("give --approve NODE or --auto-approve, not both")
        return []
    for node in approve:
        if node not in known:
            from playbook.runtime.suggest import did_you_mean

            hint = did_you_mean(node, known) if known else ""
            raise UsageError("--approve %s: the runbook asks no approval of that name%s (it asks: %s)"
                             % (node, hint, ", ".join(known) or "none"))
    if approve or not questions:
        return list(dict.fromkeys(approve))
    if not ask:
        out.write("note: no approvals given; hosts that reach %s will stop waiting (give --approve NODE or --auto-approve)\n"
                  % ", ".join(known))
        return []
    read = read or input
    out.write("This runbook asks %d question%s on every host:\n" % (len(questions), "" if len(questions) == 1 else "s"))
    for node, question in questions:
        out.write("  %s: %s\n" % (node, question))
    out.write("Answer once here; the answers go to every host (each records them as given by flag, by the user Ansible runs it as).\n")
    out.flush()
    given = []
    for node, question in questions:
        answer = read("Approve %s (%s)? [y/N] " % (node, question)).strip().lower()
        if answer in ("y", "yes"):
            given.append(node)
    return given


def signed_nodes(manifest: Mapping[str, Any], plan: Any, given: Sequence[str], auto_approve: bool) -> list[str]:
    """The approvals given on the controller that a signed-only bundle accepts only as
    signatures: steps with a policy among `given` (or every one, with --auto-approve)."""
    from playbook.runtime.approvals import has_policy, has_question

    if not manifest.get("approval_signers"):
        return []
    return [n.id for n in plan.nodes if has_question(n) and has_policy(n) and (auto_approve or n.id in given)]


def host_values(inventory: str, plan: Any, plain: Mapping[str, str], secret: Mapping[str, str]) -> dict[str, str]:
    """{host: digest of the values its run will use} for every host of the inventory: the
    controller's values overlaid by the host's playbook_var_NAME, resolved as the host resolves
    them (types, defaults; secrets masked), as runtime/approvals.values_digest computes it."""
    from playbook.runtime import approvals, variables
    from playbook.runtime.session import masked_values
    from playbook.runtime.plan import Plan

    hostvars = inventory_hostvars(inventory)
    digests = {}
    for host, found in sorted(hostvars.items()):
        given = dict(plain)
        given.update({k: v for k, v in secret.items() if v != ""})
        for name, value in found.items():
            if name.startswith("playbook_var_") and len(name) > len("playbook_var_"):
                given[name[len("playbook_var_"):]] = value if isinstance(value, str) else json.dumps(value)
        try:
            values = variables.resolve(dict(plan.variables), variables.Sources(file=given), fixed=dict(plan.values))
        except variables.VariableError as exc:
            raise UsageError("host %s: %s; no approval was signed" % (host, exc)) from None
        bound = Plan(plan.runbook, plan.variables, plan.values, [], plan.source, plan.plugin_config)
        digests[host] = approvals.values_digest(masked_values(bound, values))
    return digests


def inventory_hostvars(inventory: str) -> dict[str, dict]:
    """Every host of the inventory with its variables, as `ansible-inventory --list` gives them."""
    program = os.path.join(os.path.dirname(ansible_playbook()), "ansible-inventory")
    if not os.access(program, os.X_OK):
        program = shutil.which("ansible-inventory") or "ansible-inventory"
    done = subprocess.run([program, "-i", inventory, "--list"], stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode != 0:
        raise UsageError("ansible-inventory -i %s: %s" % (inventory, _first_line(done.stderr) or "exit %d" % done.returncode))
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


def sign_rollout(out_dir: str, rollout: str, nodes: Sequence[str], plan_hash: str, digests: Mapping[str, str],
                 key: str | None, principal: str | None, valid_for: str) -> dict[str, str]:
    """Sign, with the controller's key, an approval of each of `nodes` for every host of the
    rollout (each with the digest of its values); written to DIR/approvals/NODE.json and
    returned as {node: document text}."""
    from playbook.runtime import approvals
    from playbook.runtime.state import current_user

    if not nodes:
        return {}
    if not key:
        raise UsageError(
            "this bundle accepts only signed approvals for %s (it was compiled with --approval-signers): give "
            "--approval-key KEY (and --principal NAME) to sign them here for this rollout's hosts" % ", ".join(nodes)
        )
    span = approvals.parse_duration(valid_for)
    documents = {}
    os.makedirs(os.path.join(out_dir, "approvals"), exist_ok=True)
    for node in nodes:
        data = approvals.rollout_payload(rollout, digests, plan_hash, node, "approved", principal or current_user(), span)
        text = approvals.signed_document(data, approvals.sign(data, key))
        with open(os.path.join(out_dir, "approvals", "%s.json" % node), "w", encoding="utf-8") as handle:
            handle.write(text)
        documents[node] = text
    return documents


# -- the generated playbook ------------------------------------------------------------------------
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


COPY_SCRIPT = """\
import os, sqlite3, sys
src, dst = os.path.expanduser(sys.argv[1]), sys.argv[2]
if not os.path.isfile(src):
    print("absent")
    sys.exit(0)
if os.path.exists(dst):
    os.remove(dst)
os.umask(0o077)
con = sqlite3.connect(src, timeout=60)
if hasattr(con, "backup"):
    out = sqlite3.connect(dst)
    con.backup(out)
    out.close()
else:
    con.execute("VACUUM INTO ?", (dst,))
con.close()
print("copied")
"""

# The events `playbook fleet` prints a line for (or needs: run_started has the run id).
LIVE_EVENTS = ("run_started", "node_finished", "node_skipped", "run_finished")
WATCH_WINDOW = 200  # at most this many of the latest live events per look (a long run's file is not sent again and again)
# Follows a run started in the background. Prints the number of live events so far, the first
# run_started event, the last WATCH_WINDOW live events, a blank line, then whether the job has
# ended (Ansible's job record says "finished": false/0 until the command has ended).
WATCH_SCRIPT = (
    '{ [ -f "$1" ] && awk -v n=%d \'/"event": "run_started"/ && !s {s = $0} '
    '/"event": "(%s)"/ {c++; b[c %% n] = $0} '
    'END {print c + 0; print s; for (i = (c > n ? c - n + 1 : 1); i <= c; i++) print b[i %% n]}\' "$1"; } '
    '|| printf \'0\\n\\n\'; echo; '
    'if [ -s "$2" ] && ! grep -Eq \'"finished": *(false|0)[,}]\' "$2"; then echo "playbook-job: done"; '
    'else echo "playbook-job: running"; fi'
) % (WATCH_WINDOW, "|".join(LIVE_EVENTS))
DEFAULT_RUN_TIMEOUT = 7 * 24 * 3600  # seconds; a run still going then is stopped by Ansible's async wrapper
DEFAULT_POLL_INTERVAL = 2  # seconds between two looks at a host's events file

VARS_FILE = """\
# variables of {{ inventory_hostname }}, written by `playbook fleet`
{% set ns = namespace(merged=playbook_fleet_vars | combine(playbook_fleet_secrets | dict2items | rejectattr('value', 'equalto', '') | items2dict)) %}
{% for name in query('ansible.builtin.varnames', '^playbook_var_.+') %}{% set ns.merged = ns.merged | combine({name[13:]: lookup('ansible.builtin.vars', name)}) %}{% endfor %}
{% for name, value in ns.merged.items() %}
{{ name }} = {{ (value if value is string else value | to_json) | to_json(ensure_ascii=False) }}
{% endfor %}
"""

ARGV = (
    "{{ [playbook_remote_bundle, playbook_host_mode]"
    " + ([playbook_resume_runs[inventory_hostname] | string] if playbook_host_mode == 'resume' else [])"
    " + ['--json', '--no-interactive-vars', '--state-path', playbook_host_state, '--vars-file', playbook_host_vars_file]"
    " + (['--replan'] if playbook_replan else [])"
    " + (playbook_approve | map('regex_replace', '^', '--approve=') | list)"
    " + (['--auto-approve'] if playbook_auto_approve else [])"
    " + (['--rollout', playbook_rollout, inventory_hostname] if playbook_host_mode == 'run' else [])"
    " + (playbook_signed_approvals | dict2items | map(attribute='key') | sort"
    " | map('regex_replace', '^', '--approval=' ~ playbook_remote.path ~ '/' ~ inventory_hostname ~ '.approval-')"
    " | map('regex_replace', '$', '.json') | list) }}"
)


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
    """The text of DIR/fleet.yml: an ordinary playbook, also for `ansible-playbook` or AWX."""
    play = ["- name: %s" % _y("Playbook: %s" % title.replace("{", "(").replace("}", ")")), "  hosts: all", "  gather_facts: false"]
    if serial is not None:
        play.append("  serial: %s" % _y(serial))
    if max_fail is not None:
        play.append("  max_fail_percentage: %d" % max_fail)
    if become:
        play.append("  become: true")
    secret_map = "{%s}" % ", ".join(
        "%s: %s" % (_y(name), _y("{{ lookup('ansible.builtin.env', '%s%s') }}" % (SECRET_ENV, name))) for name in sorted(secrets)
    )
    play += [
        "  vars:",
        "    # The bundle, in files/ beside this playbook; `playbook fleet resume` may name a new one.",
        "    playbook_bundle: %s" % _y(bundle_name),
        "    # Variables for every host (a host variable playbook_var_NAME wins for its host).",
        "    playbook_fleet_vars: %s" % _unsafe(values),
        "    # Secret variables are read from the controller's environment, never written here.",
        "    playbook_fleet_secrets: %s" % secret_map,
        "    # Approvals given once on the controller (--approve NODE / --auto-approve); each host records",
        "    # them as given by flag by the user Ansible runs it as. Signed ones (a bundle compiled with",
        "    # --approval-signers) name this rollout and each host, and are checked on the host.",
        "    playbook_approve: %s" % _y(list(approve)),
        "    playbook_auto_approve: %s" % ("true" if auto_approve else "false"),
        "    playbook_signed_approvals: %s" % _unsafe(dict(signed or {})),
        "    # This rollout: each host's run records it and the host's name as its origin.",
        "    playbook_rollout: %s" % _y(rollout),
        "    playbook_mode: run",
        "    # A host resumes its run when it has one to resume; a host not started yet starts one.",
        "    playbook_host_mode: \"{{ 'resume' if playbook_mode == 'resume' and inventory_hostname in playbook_resume_runs else 'run' }}\"",
        "    playbook_resume_runs: {}",
        "    playbook_replan: false",
        "    # Per host: playbook_remote_dir (default %s, made 0700), playbook_state_path" % DEFAULT_REMOTE_DIR,
        "    # (default %s), playbook_python (for the state copy, default python3)," % DEFAULT_STATE_PATH,
        "    # playbook_run_timeout (seconds the run may take, default %d: then it is stopped)," % DEFAULT_RUN_TIMEOUT,
        "    # playbook_poll_interval (seconds between looks at the run's progress, default %d)." % DEFAULT_POLL_INTERVAL,
        "    playbook_remote_bundle: \"{{ playbook_remote.path }}/{{ playbook_bundle }}\"",
        "    playbook_host_state: \"{{ playbook_state_path | default('%s') }}\"" % DEFAULT_STATE_PATH,
        "    playbook_host_vars_file: \"{{ playbook_remote.path }}/{{ inventory_hostname }}.vars.toml\"",
        "    playbook_host_copy: \"{{ playbook_remote.path }}/{{ inventory_hostname }}.state-copy.db\"",
        "    playbook_host_events: \"{{ playbook_remote.path }}/{{ inventory_hostname }}.events.jsonl\"",
        "    playbook_argv: %s" % _y(ARGV),
        "    playbook_copy_script: %s" % _block(COPY_SCRIPT, 6).rstrip("\n"),
        "  tasks:",
    ]
    if confirm_batches:
        later = "ansible_play_hosts_all.index(ansible_play_batch[0]) > 0"
        play += [
            "    - name: Confirm the next batch",
            "      ansible.builtin.pause:",
            "        prompt: \"Start the next batch ({{ ansible_play_batch | join(', ') }})? Type yes to go on\"",
            "      register: playbook_confirm",
            "      run_once: true",
            "      when: %s" % later,
            "    - name: Stop the rollout here (the batch was not confirmed)",
            "      ansible.builtin.meta: end_play",
            "      when: %s and (playbook_confirm.user_input | default('') | trim | lower) not in ['y', 'yes']" % later,
        ]
    play += [
        "    - name: Make the bundle's directory (0700)",
        "      ansible.builtin.file:",
        "        path: \"{{ playbook_remote_dir | default('%s') }}\"" % DEFAULT_REMOTE_DIR,
        "        state: directory",
        "        mode: \"0700\"",
        "      register: playbook_remote",
        "    - name: Copy the bundle (only when its checksum differs)",
        "      ansible.builtin.copy:",
        "        src: \"{{ playbook_bundle }}\"",
        "        dest: \"{{ playbook_remote_bundle }}\"",
        "        mode: \"0700\"",
        "    - name: Run the runbook",
        "      block:",
        "        - name: Write this host's variables (0600, removed after the run)",
        "          ansible.builtin.copy:",
        "            content: %s" % _block(VARS_FILE, 14).rstrip("\n"),
        "            dest: \"{{ playbook_host_vars_file }}\"",
        "            mode: \"0600\"",
        "          no_log: true",
        "        - name: Write the signed approvals (checked by the bundle against this rollout and host)",
        "          ansible.builtin.copy:",
        "            content: \"{{ item.value }}\"",
        "            dest: \"{{ playbook_remote.path }}/{{ inventory_hostname }}.approval-{{ item.key }}.json\"",
        "            mode: \"0600\"",
        "          loop: \"{{ playbook_signed_approvals | dict2items }}\"",
        "          loop_control:",
        "            label: \"{{ item.key }}\"",
        "        - name: Remove the events file of an earlier rollout (the run appends to it)",
        "          ansible.builtin.file:",
        "            path: \"{{ playbook_host_events }}\"",
        "            state: absent",
        "        - name: Start the bundle (in the background, so a lost connection does not stop the run)",
        "          ansible.builtin.command:",
        "            argv: \"{{ playbook_argv + ['--events-file', playbook_host_events] }}\"",
        "          async: \"{{ playbook_run_timeout | default(%d) | int }}\"" % DEFAULT_RUN_TIMEOUT,
        "          poll: 0",
        "          register: playbook_job",
        "          changed_when: true",
        "        - name: Follow the run (the controller prints each step's events as they come)",
        "          ansible.builtin.command:",
        "            argv: [\"sh\", \"-c\", %s, \"sh\", \"{{ playbook_host_events }}\", \"{{ playbook_job.results_file }}\"]" % _y(WATCH_SCRIPT),
        "          register: playbook_watch",
        "          until: %s" % _y("playbook_watch.rc != 0 or (playbook_watch.stdout_lines | last | default('')) == 'playbook-job: done'"),
        "          retries: \"{{ ((playbook_run_timeout | default(%d) | int) / (playbook_poll_interval | default(%d) | int)) | int + 1 }}\""
        % (DEFAULT_RUN_TIMEOUT, DEFAULT_POLL_INTERVAL),
        "          delay: \"{{ playbook_poll_interval | default(%d) | int }}\"" % DEFAULT_POLL_INTERVAL,
        "          changed_when: false",
        "          failed_when: false",
        "        - name: Collect the run's result",
        "          ansible.builtin.async_status:",
        "            jid: \"{{ playbook_job.ansible_job_id }}\"",
        "          vars:  # where the job's record is (a ~ could be resolved to another home)",
        "            ansible_async_dir: \"{{ playbook_job.results_file | dirname }}\"",
        "          register: playbook_run",
        "          failed_when: false",
        "      always:",
        "        - name: Remove the variables file, the events file and the background job's record",
        "          ansible.builtin.command:",
        "            argv: \"{{ ['rm', '-f', '--', playbook_host_vars_file, playbook_host_events] + ([playbook_job.results_file] if playbook_job.results_file is defined else [])"
        " + (playbook_signed_approvals | dict2items | map(attribute='key') | map('regex_replace', '^', playbook_remote.path ~ '/' ~ inventory_hostname ~ '.approval-')"
        " | map('regex_replace', '$', '.json') | list) }}\"",
        "          changed_when: false",
        "    - name: Take a consistent copy of the state database (SQLite backup API)",
        "      ansible.builtin.command:",
        "        argv: [\"{{ playbook_python | default('python3') }}\", \"-c\", \"{{ playbook_copy_script }}\", \"{{ playbook_host_state }}\", \"{{ playbook_host_copy }}\"]",
        "      register: playbook_copy",
        "      changed_when: false",
        "    - name: Fetch the copy",
        "      ansible.builtin.fetch:",
        "        src: \"{{ playbook_host_copy }}\"",
        "        dest: \"{{ playbook_dir }}/hosts/{{ inventory_hostname }}.db\"",
        "        flat: true",
        "      when: playbook_copy.stdout == 'copied'",
        "    - name: Remove the copy from the host",
        "      ansible.builtin.file:",
        "        path: \"{{ playbook_host_copy }}\"",
        "        state: absent",
        "    - name: The run's result",
        "      ansible.builtin.fail:",
        "        msg: \"the run ended with exit code {{ playbook_run.rc | default('none') }}\"",
        "      when: (playbook_run.rc | default(-1)) != 0",
    ]
    head = [
        "# Generated by `playbook fleet` for %s." % title,
        "# Run it by hand:  ansible-playbook -i INVENTORY fleet.yml   (the bundle is in files/)",
        "# Variables per host: playbook_var_NAME; secret ones from PLAYBOOK_FLEET_SECRET_NAME.",
    ]
    return "\n".join(head + play) + "\n"


def write_callback(out_dir: str) -> str:
    """Write the stdout callback beside the playbook; returns its directory."""
    from importlib import resources

    plugins = os.path.join(out_dir, "callback_plugins")
    os.makedirs(plugins, exist_ok=True)
    text = resources.files("playbook.templates").joinpath("fleet_callback.py").read_text(encoding="utf-8")
    with open(os.path.join(plugins, CALLBACK_NAME + ".py"), "w", encoding="utf-8") as handle:
        handle.write(text)
    return plugins


# -- running ansible-playbook -----------------------------------------------------------------------
class Rollout:
    """What Ansible reported, host by host, as it arrived (records from the callback)."""

    def __init__(self, out: Any = None) -> None:
        self.hosts: list[str] = []
        self.results: dict[str, list[dict]] = {}
        self.out = out or sys.stdout
        self.batches = 0
        self.shown: dict[str, int] = {}  # host -> lines of its run already printed
        self.interrupted = False  # Ctrl-C on the controller

    def _host(self, host: str) -> list[dict]:
        if host not in self.results:
            self.results[host] = []
            if host not in self.hosts:
                self.hosts.append(host)
        return self.results[host]

    def feed(self, record: dict) -> None:
        kind = record.get("kind")
        if kind == "batch":
            self.batches += 1
            for host in record.get("hosts") or []:
                if host not in self.hosts:
                    self.hosts.append(host)
            if record.get("batch"):
                self.say("batch %d: %s" % (self.batches, ", ".join(record["batch"])))
            return
        if kind != "result":
            return
        host = record["host"]
        self._host(host).append(record)
        register, status = record.get("register"), record.get("status")
        if register == "playbook_watch" and status in ("ok", "retry"):
            lines = self._followed(host, *watch_view(record.get("stdout")))
        elif register == "playbook_run" and status == "ok":
            events = [e for e in run_events(record.get("stdout")) if e["event"] in LIVE_EVENTS]
            lines = self._followed(host, len(events), None, events)
            if not any(e["event"] == "run_finished" for e in events):
                why = _first_line(record.get("stderr")) or _first_line(record.get("msg")) or "no output"
                lines.append("the bundle did not run (exit %s): %s" % (record.get("rc"), why))
        else:
            lines = live_lines(record)
        for line in lines:
            self.say("%s  %s" % (host, line))

    def _followed(self, host: str, total: int, first: dict | None, window: list[dict]) -> list[str]:
        """The lines of a host's live events not printed yet; `window` holds the last of its
        `total` live events so far (a look at the run may leave out older ones: then one line
        says how many)."""
        shown, start = self.shown.get(host, 0), total - len(window)
        lines = []
        if start > shown:
            lines.append("… %d step event%s not shown here (the report has them)" % (start - shown, "" if start - shown == 1 else "s"))
            shown = start
        lines += event_lines(window[shown - start:])
        self.shown[host] = max(shown, total)
        return lines

    def say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()


def run_events(stdout: str | None) -> list[dict]:
    """The JSON events a bundle printed with --json (other lines are ignored)."""
    events = []
    for line in (stdout or "").splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and "event" in event:
                events.append(event)
    return events


def event_lines(events: Sequence[dict]) -> list[str]:
    """A line per step that finished or was skipped, and one for the end of the run."""
    lines = []
    for event in events:
        kind = event["event"]
        if kind in ("node_finished", "node_skipped"):
            state = event.get("status") or ("skipped" if kind == "node_skipped" else "?")
            detail = []
            if event.get("exit_code") not in (None, 0):
                detail.append("exit %s" % event["exit_code"])
            if event.get("decision"):
                detail.append(str(event["decision"]))
            if event.get("reason"):
                detail.append(_first_line(event["reason"]))
            lines.append("%s  %s%s" % (event.get("node"), state, "  (%s)" % ", ".join(detail) if detail else ""))
        elif kind == "run_finished":
            lines.append("run %s %s (exit %s)%s" % (event.get("run_id"), event.get("status"), event.get("exit_code"),
                                                   "  " + _first_line(event["reason"]) if event.get("reason") else ""))
    return lines


def watch_view(stdout: str | None) -> tuple[int, dict | None, list[dict]]:
    """What one look at a run in progress (WATCH_SCRIPT) printed: the number of live events so
    far, the run's run_started event, and the latest live events."""
    lines = (stdout or "").splitlines()
    if len(lines) < 3 or not lines[0].isdigit() or "" not in lines[2:]:  # not the script's output: nothing seen
        return 0, None, []
    first = run_events(lines[1])
    return int(lines[0]), (first[0] if first else None), run_events("\n".join(lines[2:lines.index("", 2)]))


def live_lines(record: dict) -> list[str]:
    """The lines a task result other than the run's gives: problems, the fetch."""
    status, register = record.get("status"), record.get("register")
    if status == "unreachable":
        return ["unreachable: %s" % _first_line(record.get("msg"))]
    if status == "failed" and record.get("task") != "The run's result":
        return ["%s failed: %s" % (record.get("task"), _first_line(record.get("msg")))]
    if register == "playbook_copy" and status == "ok":
        return ["state database fetched" if (record.get("stdout") or "").strip() == "copied" else "no state database on the host"]
    return []


def _first_line(text: Any) -> str:
    lines = [line for line in str(text or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


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


# -- results --------------------------------------------------------------------------------------
# A host's status from the exit code of its `playbook run`, when the run's own events do not say.
_STATUS_BY_EXIT: dict[int | None, str] = {
    EXIT_OK: "succeeded",
    EXIT_ABORTED: "aborted",
    EXIT_HANGUP: "aborted",
    EXIT_INTERRUPTED: "aborted",
}


def host_outcome(host: str, results: Sequence[dict], out_dir: str) -> dict:
    """One host's entry of summary.json from its task results."""
    entry: dict[str, Any] = {"host": host, "status": "not started", "exit_code": None, "run_id": None, "reason": None}
    run = next((r for r in reversed(results) if r.get("register") == "playbook_run" and r.get("status") == "ok"), None)
    started = any(r.get("register") == "playbook_job" and r.get("status") == "ok" for r in results)
    if run is not None:
        entry.update(_run_outcome(run))
    elif started:
        entry.update(_unfollowed_outcome(results))
    else:
        entry.update(_trouble_outcome(results))
    entry["database"] = _fetched_database(host, results, out_dir)
    return entry


def _run_outcome(run: Mapping[str, Any]) -> dict:
    """Status, exit code, run id and reason of a host whose `playbook run` task completed."""
    events = run_events(run.get("stdout"))
    finished = next((e for e in reversed(events) if e["event"] == "run_finished"), None)
    started = next((e for e in events if e["event"] == "run_started"), None)
    rc = run.get("rc")
    if finished is not None and finished.get("status") in RUN_STATUSES:
        status = finished["status"]
    elif rc == EXIT_INVALID and ALREADY_SUCCEEDED in (run.get("stderr") or ""):
        # a resume of a run that ended well in the background after the controller stopped following it
        return {"status": "succeeded", "exit_code": EXIT_OK, "run_id": None, "reason": None}
    else:
        status = _STATUS_BY_EXIT.get(rc, "failed")
    reason = (finished or {}).get("reason") or (None if rc == 0 else _first_line(run.get("stderr")) or None)
    return {"status": status, "exit_code": rc, "run_id": (finished or started or {}).get("run_id"), "reason": reason}


UNFOLLOWED = "the controller stopped following this run; it goes on on the host (`playbook fleet resume` picks it up)"


def _unfollowed_outcome(results: Sequence[dict]) -> dict:
    """A host whose run was started in the background but whose end the controller did not see
    (the rollout was interrupted): aborted as far as this rollout knows; the run goes on there."""
    looks = [watch_view(r.get("stdout"))[1] for r in results if r.get("register") == "playbook_watch"]
    started = next((e for e in looks if e is not None), None) or {}
    return {"status": "aborted", "run_id": started.get("run_id"), "reason": UNFOLLOWED}


def _trouble_outcome(results: Sequence[dict]) -> dict:
    """Status and reason of a host that never completed its `playbook run`: the first task that
    failed or found the host unreachable, if any."""
    trouble = next((r for r in results if r.get("status") in ("unreachable", "failed")), None)
    if trouble is None:
        return {}
    return {"status": trouble["status"], "reason": "%s: %s" % (trouble.get("task"), _first_line(trouble.get("msg")))}


def _fetched_database(host: str, results: Sequence[dict], out_dir: str) -> str | None:
    """hosts/HOST.db (relative to the rollout directory) when the host's database was fetched."""
    database = os.path.join("hosts", host + ".db")
    fetched = any(r.get("register") == "playbook_copy" and (r.get("stdout") or "").strip() == "copied" for r in results)
    return database if fetched and os.path.isfile(os.path.join(out_dir, database)) else None


def fleet_exit_code(hosts: Sequence[Mapping[str, Any]]) -> int:
    """0 every host succeeded; 1 any failed; 4 any unreachable; 3 any waiting, aborted or not started."""
    statuses = {h["status"] for h in hosts}
    if "failed" in statuses:
        return EXIT_FAILED
    if "unreachable" in statuses:
        return EXIT_STATE
    if statuses - {"succeeded"}:
        return EXIT_ABORTED
    return EXIT_OK


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def write_summary(out_dir: str, summary: dict) -> None:
    hosts = summary["hosts"]
    summary["counts"] = {status: sum(1 for h in hosts if h["status"] == status) for status in STATUSES if any(h["status"] == status for h in hosts)}
    summary["exit_code"] = fleet_exit_code(hosts)
    path = os.path.join(out_dir, "summary.json")
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2, sort_keys=True, ensure_ascii=False)
        handle.write("\n")
    os.replace(path + ".tmp", path)


def read_summary(out_dir: str) -> dict:
    path = os.path.join(out_dir, "summary.json")
    try:
        with open(path, encoding="utf-8") as handle:
            summary = json.load(handle)
    except FileNotFoundError:
        raise UsageError("%s: no summary.json; give the --out DIR of a `playbook fleet` rollout" % out_dir) from None
    except (OSError, ValueError) as exc:
        raise UsageError("%s: cannot read it: %s" % (path, exc)) from None
    if not isinstance(summary, dict) or summary.get("fleet_version") != FLEET_VERSION or not isinstance(summary.get("hosts"), list):
        raise UsageError("%s is not a summary written by this version of `playbook fleet`" % path)
    return summary


def summary_lines(summary: Mapping[str, Any]) -> list[str]:
    hosts = summary["hosts"]
    width = max([len(h["host"]) for h in hosts] + [4])
    lines = ["%-*s  %-11s  %4s  %5s  %s" % (width, "host", "status", "exit", "run", "reason")]
    for h in hosts:
        lines.append("%-*s  %-11s  %4s  %5s  %s" % (width, h["host"], h["status"], "-" if h["exit_code"] is None else h["exit_code"],
                                                   "-" if h["run_id"] is None else h["run_id"], h.get("reason") or ""))
    counts = ", ".join("%d %s" % (n, s) for s, n in summary["counts"].items())
    lines.append("%d host%s: %s (exit %d)" % (len(hosts), "" if len(hosts) == 1 else "s", counts or "none", summary["exit_code"]))
    return lines


# -- the commands -----------------------------------------------------------------------------------
def _controller_values(var_pairs: Sequence[str], vars_file: str | None, plan: Any) -> tuple[dict, dict]:
    """(plain values, secret values) given on the controller, as the strings each host receives."""
    from playbook.runtime import variables

    try:
        sources = variables.Sources.gather(var_pairs, vars_file, None)
    except variables.VariableError as exc:
        raise UsageError(str(exc)) from None
    merged = dict(sources.file)
    merged.update(sources.cli)
    plain: dict[str, str] = {}
    secret: dict[str, str] = {}
    for name, value in merged.items():
        text = value if isinstance(value, str) else json.dumps(value)
        spec = plan.variables.get(name) or {}
        (secret if spec.get("secret") else plain)[name] = text
    return plain, secret


def _check_inventory(inventory: str) -> str:
    if "," in inventory and not os.path.exists(inventory):
        return inventory  # a host list: "web1,web2,"
    if not os.path.exists(inventory):
        raise UsageError("-i %s: no such inventory file or directory" % inventory)
    return os.path.abspath(inventory)


def _default_out(source: str) -> str:
    stem = os.path.basename(source).split(".")[0] or "fleet"
    return "fleet-%s-%s" % (stem, datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def _rollout(out_dir: str, summary: dict, inventory: str, limit: str | None, forks: int | None,
             extra_vars: str | None, secrets: Mapping[str, str], previous: Mapping[str, dict] | None = None) -> int:
    rollout = Rollout()
    env = {SECRET_ENV + name: value for name, value in secrets.items()}
    os.makedirs(os.path.join(out_dir, "hosts"), exist_ok=True)
    code = run_ansible(os.path.join(out_dir, "fleet.yml"), inventory, limit, forks, extra_vars, env, rollout,
                       os.path.join(out_dir, "records.jsonl"))
    hosts = [host_outcome(h, rollout.results.get(h, []), out_dir) for h in rollout.hosts]
    if previous is not None:  # a resume: the hosts not resumed keep their entries
        fresh = {h["host"]: h for h in hosts}
        hosts = [fresh.get(name, entry) for name, entry in previous.items()] + [h for h in hosts if h["host"] not in previous]
    elif not hosts and rollout.interrupted:
        raise KeyboardInterrupt
    elif not hosts and code == 0:
        raise UsageError("no host of %s matches%s" % (inventory, " --limit %s" % limit if limit else ""))
    elif not hosts:
        raise UsageError("ansible-playbook ended with exit %d before any host ran (its message is above)" % code)
    summary["hosts"] = hosts
    summary["ended_at"] = _now()
    summary["ansible_exit_code"] = code
    write_summary(out_dir, summary)
    for line in summary_lines(summary):
        rollout.say(line)
    rollout.say("summary: %s · report: playbook report --fleet %s --html" % (os.path.join(out_dir, "summary.json"), out_dir))
    unstarted = [h["host"] for h in hosts if h["status"] == "not started"]
    if unstarted and not rollout.interrupted:
        rollout.say("not started: %s; start them later with: playbook fleet resume %s --remaining" % (", ".join(unstarted), out_dir))
    if rollout.interrupted:
        going = [h["host"] for h in hosts if h["reason"] == UNFOLLOWED]
        later = "playbook fleet resume %s%s" % (out_dir, " --remaining" if unstarted else "")
        rollout.say("interrupted: no further host was started%s; later: %s" % (
            "; still running in the background: %s" % ", ".join(going) if going else "", later))
        return EXIT_INTERRUPTED
    return int(summary["exit_code"])


def fleet_run(args: argparse.Namespace) -> int:
    ansible_playbook()  # before anything is built or copied
    inventory = _check_inventory(args.inventory)
    serial = parse_serial(args.serial)
    if args.max_fail_percentage is not None and not 0 <= args.max_fail_percentage <= 100:
        raise UsageError("--max-fail-percentage %d: give 0 to 100" % args.max_fail_percentage)
    if args.forks is not None and args.forks < 1:
        raise UsageError("--forks %d: give 1 or more" % args.forks)
    if args.confirm_batches and not sys.stdin.isatty():
        raise UsageError("--confirm-batches asks on the controller's terminal, and there is none")
    out_dir = os.path.abspath(args.out or _default_out(args.source))
    if os.path.exists(os.path.join(out_dir, "summary.json")):
        raise UsageError("%s already holds a rollout: continue it with `playbook fleet resume %s`, or give another --out" % (out_dir, out_dir))
    bundle = prepare_bundle(args.source, os.path.join(out_dir, "files"), args.allowed_signers)
    manifest, plan = read_bundle(bundle)
    plain, secret = _controller_values(args.var, args.vars_file, plan)
    approve = gather_approvals(plan, args.approve, args.auto_approve, ask=_interactive())
    rollout_uid = secrets_mod.token_hex(16)
    signed, approve, auto = _signed_approvals(args, out_dir, manifest, plan, inventory, plain, secret, approve, rollout_uid)
    text = playbook_text(plan.title or os.path.basename(bundle), os.path.basename(bundle), plain, secret, approve,
                         auto, rollout_uid, serial, args.max_fail_percentage, args.become, args.confirm_batches, signed)
    with open(os.path.join(out_dir, "fleet.yml"), "w", encoding="utf-8") as handle:
        handle.write(text)
    write_callback(out_dir)
    summary = {
        "fleet_version": FLEET_VERSION,
        "runbook": {"title": plan.title, "source": (plan.source or {}).get("name"), "sha256": (plan.source or {}).get("sha256")},
        "bundle": os.path.join("files", os.path.basename(bundle)),
        "inventory": inventory,
        "limit": args.limit,
        "forks": args.forks,
        "approvals": {"approve": approve, "auto_approve": auto, "signed": sorted(signed), "given_by": whoami()},
        "rollout": rollout_uid,
        "started_at": _now(),
        "resumes": [],
    }
    return _rollout(out_dir, summary, inventory, args.limit, args.forks, None, secret)


def fleet_resume(args: argparse.Namespace) -> int:
    ansible_playbook()
    out_dir = os.path.abspath(args.dir)
    summary = read_summary(out_dir)
    if args.source and not args.replan:
        raise UsageError("a new runbook or bundle needs --replan (succeeded steps keep their results, changed ones run)")
    bundle = os.path.join(out_dir, summary["bundle"])
    if args.source:
        bundle = prepare_bundle(args.source, os.path.join(out_dir, "files"), args.allowed_signers)
    _, plan = read_bundle(bundle)
    todo = {h["host"]: h["run_id"] for h in summary["hosts"] if h["status"] in RESUMABLE and h.get("run_id") is not None}
    unstarted = [h["host"] for h in summary["hosts"] if h["status"] == "not started"]
    fresh = unstarted if args.remaining else []
    if not todo and not fresh:
        print("nothing to resume in %s: no host's run failed, aborted or waited" % out_dir)
        if unstarted:
            print("%d host%s never started: %s; start them with: playbook fleet resume %s --remaining"
                  % (len(unstarted), "" if len(unstarted) == 1 else "s", ", ".join(unstarted), out_dir))
        return int(summary.get("exit_code", EXIT_OK))
    plain, secret = _controller_values(args.var, args.vars_file, plan)
    approve = gather_approvals(plan, args.approve, args.auto_approve, ask=_interactive())
    manifest, _ = read_bundle(bundle)
    inventory = _check_inventory(args.inventory or summary["inventory"])
    rollout_uid = summary.get("rollout") or ""
    signed, approve, auto = _signed_approvals(args, out_dir, manifest, plan, inventory, plain, secret, approve, rollout_uid)
    extra = {
        "playbook_mode": "resume",
        "playbook_resume_runs": todo,
        "playbook_replan": bool(args.replan),
        "playbook_bundle": os.path.basename(bundle),
        "playbook_approve": approve,
        "playbook_auto_approve": auto,
        "playbook_signed_approvals": signed,
    }
    extra_path = os.path.join(out_dir, "resume-vars.json")
    with open(extra_path, "w", encoding="utf-8") as handle:
        json.dump(extra, handle, indent=2, sort_keys=True)
    summary["bundle"] = os.path.relpath(bundle, out_dir)
    summary["resumes"] = list(summary.get("resumes") or []) + [{"at": _now(), "hosts": sorted(todo), "started": fresh,
                                                                 "replan": bool(args.replan),
                                                                 "approve": approve, "auto_approve": auto, "signed": sorted(signed),
                                                                 "given_by": whoami()}]
    previous = {h["host"]: h for h in summary["hosts"]}
    if todo:
        print("resuming %d host%s: %s" % (len(todo), "" if len(todo) == 1 else "s", ", ".join(sorted(todo))))
    if fresh:
        print("starting %d host%s never started: %s" % (len(fresh), "" if len(fresh) == 1 else "s", ", ".join(fresh)))
    elif unstarted:
        print("not started, left alone (add --remaining to start them): %s" % ", ".join(unstarted))
    hosts = sorted(todo) + fresh
    return _rollout(out_dir, summary, inventory, ",".join(hosts), args.forks or summary.get("forks"), extra_path, secret,
                    previous=previous)


def _signed_approvals(args: argparse.Namespace, out_dir: str, manifest: Mapping[str, Any], plan: Any, inventory: str,
                      plain: Mapping[str, str], secret: Mapping[str, str], approve: Sequence[str],
                      rollout_uid: str) -> tuple[dict[str, str], list[str], bool]:
    """(signed approvals {node: document}, the --approve flags left for the hosts, --auto-approve
    left for them). A signed-only bundle takes the controller's approvals of steps with a policy
    only as signatures bound to this rollout and each host's values (--approval-key)."""
    from playbook.runtime.approvals import has_question

    nodes = signed_nodes(manifest, plan, approve, args.auto_approve)
    if not nodes:
        if args.approval_key:
            raise UsageError("--approval-key signs the approvals a bundle compiled with --approval-signers needs for steps "
                             "with approvers or approvals; none of the approvals given here is one")
        return {}, list(approve), bool(args.auto_approve)
    digests = host_values(inventory, plan, plain, secret)
    signed = sign_rollout(out_dir, rollout_uid, nodes, plan.digest(), digests, args.approval_key, args.principal, args.valid_for)
    if args.auto_approve:
        flags = [n.id for n in plan.nodes if has_question(n) and n.id not in nodes]
    else:
        flags = [n for n in approve if n not in nodes]
    return signed, flags, False


def _approval_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--approve", action="append", default=[], metavar="NODE", help="approve NODE on every host (repeatable)")
    parser.add_argument("--auto-approve", action="store_true", help="approve every approval on every host")
    parser.add_argument(
        "--approval-key", metavar="KEY",
        help="a bundle compiled with --approval-signers: sign the approvals of steps with a policy with this SSH key, "
        "for this rollout and each host (checked on the host)",
    )
    parser.add_argument("--principal", metavar="NAME", help="with --approval-key: your principal in the allowed signers (default: your user name)")
    parser.add_argument("--valid-for", default="2h", metavar="DURATION", help="with --approval-key: how long the approvals stay valid (default 2h, at most 7d)")
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="a variable for every host (repeatable)")
    parser.add_argument("--vars-file", metavar="FILE", help="variables for every host from a TOML file of NAME = value lines")
    parser.add_argument("--forks", type=int, metavar="N", help="hosts Ansible works on at once (default 5)")
    parser.add_argument("--allowed-signers", metavar="FILE", help="verify the bundle's signature against this allowed-signers file first")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="playbook fleet",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Roll a runbook out over the hosts of an Ansible inventory: Ansible copies the bundle and runs it on each\n"
        "host (batches, forks, become); approvals are given once here; every host's state database is fetched.\n"
        "Needs ansible-core 2.15+ on this controller (Python 3.9+): %s.\n"
        "Exit 0 every host succeeded, 1 any failed, 4 any unreachable, 3 any waiting, aborted or not started.\n\n"
        "Continue later:  playbook fleet resume DIR [NEW_RUNBOOK_OR_BUNDLE --replan]" % INSTALL_HINT,
        epilog="example:\n  playbook fleet deploy.pyz -i hosts.ini --serial 1,25%% --max-fail-percentage 0 --var ENVIRONMENT=prod --out rollout\n"
        "  playbook report --fleet rollout --html",
    )
    parser.add_argument("source", metavar="RUNBOOK_OR_BUNDLE", help="a runbook (compiled first) or a bundle (used as it is)")
    parser.add_argument("-i", "--inventory", required=True, metavar="INVENTORY", help="Ansible inventory (file, directory or host,list,)")
    parser.add_argument("--limit", metavar="PATTERN", help="only these hosts (Ansible's host pattern)")
    parser.add_argument("--serial", metavar="N|N%|LIST", help="batch sizes: 1, 25%% or 1,10,100%% (the first batch is the canary)")
    parser.add_argument("--max-fail-percentage", type=int, metavar="P", help="stop when more than P%% of a batch failed (0: the first failure)")
    parser.add_argument("--become", action="store_true", help="run the bundle as root (Ansible's become)")
    parser.add_argument("--confirm-batches", action="store_true", help="ask on this terminal before each batch after the first")
    parser.add_argument("--out", metavar="DIR", help="where fleet.yml, the bundle, hosts/HOST.db and summary.json go (default fleet-NAME-TIME)")
    _approval_args(parser)
    return parser


def build_resume_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="playbook fleet resume",
        description="Resume the hosts of a rollout whose run failed, aborted or waited; succeeded hosts are left alone.",
        epilog="examples:\n  playbook fleet resume rollout --approve approve_production\n"
        "  playbook fleet resume rollout deploy-fixed.pyz --replan",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dir", metavar="DIR", help="the --out directory of the rollout")
    parser.add_argument("source", nargs="?", metavar="RUNBOOK_OR_BUNDLE", help="a new runbook or bundle (needs --replan)")
    parser.add_argument("--replan", action="store_true", help="continue with the new bundle's plan")
    parser.add_argument("--remaining", action="store_true",
                        help="also start the hosts that were never started (stopped by --max-fail-percentage or Ctrl-C)")
    parser.add_argument("-i", "--inventory", metavar="INVENTORY", help="another inventory (default: the rollout's)")
    _approval_args(parser)
    return parser


def main(argv: Sequence[str]) -> int:
    """`playbook fleet ...` and `playbook fleet resume DIR ...`."""
    argv = list(argv)
    if argv and argv[0] == "resume":
        return fleet_resume(build_resume_parser().parse_args(argv[1:]))
    return fleet_run(build_parser().parse_args(argv))


# -- report --fleet ---------------------------------------------------------------------------------
def host_reports(out_dir: str, summary: Mapping[str, Any]) -> Iterator[tuple[dict, Any]]:
    """(summary entry, RunReport or None) per host, from its fetched state database."""
    from playbook.runtime import report
    from playbook.runtime.state import Store

    for entry in summary["hosts"]:
        rep = None
        if entry.get("database") and entry.get("run_id") is not None:
            path = os.path.join(out_dir, entry["database"])
            if os.path.isfile(path):
                store = Store(path)
                try:
                    run = store.get_run(int(entry["run_id"]))
                    if run is not None:
                        rep = report.RunReport(store, run)
                finally:
                    store.close()
        yield dict(entry), rep


def fleet_report_data(out_dir: str) -> dict:
    summary = read_summary(out_dir)
    hosts, steps = [], []
    for entry, rep in host_reports(out_dir, summary):
        entry["nodes"] = rep.to_dict()["nodes"] if rep is not None else []
        entry["run"] = rep.to_dict()["run"] if rep is not None else None
        for node in entry["nodes"]:
            if node["id"] not in steps:
                steps.append(node["id"])
        hosts.append(entry)
    return {"fleet_version": FLEET_VERSION, "generated_at": _now(), "runbook": summary.get("runbook"), "exit_code": summary.get("exit_code"),
            "counts": summary.get("counts"), "started_at": summary.get("started_at"), "ended_at": summary.get("ended_at"),
            "steps": steps, "hosts": hosts}


def fleet_junit(data: Mapping[str, Any]) -> bytes:
    """One <testsuite> per host, one <testcase> per step; a host that has no run is one test case."""
    import xml.etree.ElementTree as ET

    suites = ET.Element("testsuites", name="playbook fleet")
    for host in data["hosts"]:
        suite = ET.SubElement(suites, "testsuite", name=host["host"], hostname=host["host"])
        nodes = host["nodes"] or [{"id": "run", "status": host["status"], "reason": host.get("reason"), "duration": 0}]
        counts = {"tests": len(nodes), "failures": 0, "skipped": 0, "errors": 0}
        for node in nodes:
            case = ET.SubElement(suite, "testcase", classname="playbook.%s" % host["host"], name=node["id"], time="%.3f" % (node.get("duration") or 0))
            status = node["status"]
            message = node.get("reason") or node.get("error") or status
            if status in ("failed", "unreachable"):
                counts["failures"] += 1
                ET.SubElement(case, "failure", message=str(message)).text = node.get("stderr") or None
            elif status != "succeeded":
                counts["skipped"] += 1
                ET.SubElement(case, "skipped", message=str(message))
        for key, value in counts.items():
            suite.set(key, str(value))
    if hasattr(ET, "indent"):
        ET.indent(suites)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="utf-8") + b"\n"


COLOURS = {"succeeded": "#2e7d32", "failed": "#c62828", "skipped": "#9e9e9e", "aborted": "#ef6c00", "waiting": "#f9a825",
           "unreachable": "#6a1b9a", "not started": "#e0e0e0", "not_reached": "#eeeeee", "running": "#1565c0", "interrupted": "#ef6c00"}


def fleet_html(data: Mapping[str, Any]) -> str:
    """One self-contained page: hosts × steps coloured by state, then the details of each host."""
    from html import escape

    def cell(status: str, title: str = "") -> str:
        colour = COLOURS.get(status, "#bdbdbd")
        ink = "#000" if status in ("not started", "not_reached", "waiting", "skipped") else "#fff"
        words = status.replace("_", " ")
        return '<td style="background:%s;color:%s" title="%s">%s</td>' % (colour, ink, escape(title or words), escape(words))

    title = (data.get("runbook") or {}).get("title") or "runbook"
    out = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Fleet: %s</title>' % escape(title),
           "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
           "padding:.3em .6em;font-size:.9em;text-align:left}pre{background:#f5f5f5;padding:.5em;white-space:pre-wrap}</style></head><body>",
           "<h1>Fleet rollout: %s</h1>" % escape(title),
           "<p>%s · exit %s · started %s · ended %s</p>" % (escape(", ".join("%d %s" % (n, s) for s, n in (data.get("counts") or {}).items())),
                                                          escape(str(data.get("exit_code"))), escape(str(data.get("started_at"))), escape(str(data.get("ended_at")))),
           "<h2>Hosts × steps</h2><table><tr><th>host</th><th>host status</th>%s</tr>" % "".join("<th>%s</th>" % escape(s) for s in data["steps"])]
    for host in data["hosts"]:
        by_id = {n["id"]: n for n in host["nodes"]}
        row = ['<tr><th><a href="#host-%s">%s</a></th>' % (escape(host["host"]), escape(host["host"])), cell(host["status"], host.get("reason") or "")]
        for step in data["steps"]:
            node = by_id.get(step)
            row.append(cell(node["status"], node.get("reason") or "") if node else cell("not_reached"))
        out.append("".join(row) + "</tr>")
    out.append("</table><h2>Hosts</h2>")
    for host in data["hosts"]:
        out.append('<h3 id="host-%s">%s: %s</h3><p>exit code %s · run %s%s</p>' % (
            escape(host["host"]), escape(host["host"]), escape(host["status"]), escape(str(host.get("exit_code"))),
            escape(str(host.get("run_id"))), " · " + escape(host["reason"]) if host.get("reason") else ""))
        if not host["nodes"]:
            out.append("<p>No state database was fetched from this host.</p>")
            continue
        out.append("<table><tr><th>step</th><th>status</th><th>attempts</th><th>exit</th><th>decision</th><th>output</th></tr>")
        for node in host["nodes"]:
            decision = " ".join(str(x) for x in (node.get("decision"), node.get("decided_by")) if x)
            output = "\n".join(x for x in (node.get("stdout"), node.get("stderr"), node.get("error")) if x)
            out.append("<tr><td>%s</td>%s<td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>" % (
                escape(node["id"]), cell(node["status"], node.get("reason") or ""), node.get("attempts", 0),
                escape("" if node.get("exit_code") is None else str(node["exit_code"])), escape(decision),
                "<pre>%s</pre>" % escape(output) if output else ""))
        out.append("</table>")
    out.append("</body></html>\n")
    return "\n".join(out)


def report_main(argv: Sequence[str]) -> int:
    """`playbook report --fleet DIR [--html [FILE]] [--junit [FILE]] [--json [FILE]]`."""
    parser = argparse.ArgumentParser(prog="playbook report --fleet", description="Write the report of a fleet rollout: a hosts × steps "
                                     "matrix (HTML), JUnit XML with one test suite per host, or JSON. Without a FILE: DIR/fleet-report.*")
    parser.add_argument("--fleet", required=True, metavar="DIR", help="the --out directory of `playbook fleet`")
    parser.add_argument("--html", nargs="?", const="", metavar="FILE")
    parser.add_argument("--junit", nargs="?", const="", metavar="FILE")
    parser.add_argument("--json", nargs="?", const="", metavar="FILE")
    args = parser.parse_args(list(argv))
    data = fleet_report_data(args.fleet)
    wanted = [(kind, target) for kind, target in (("html", args.html), ("junit", args.junit), ("json", args.json)) if target is not None]
    for kind, target in wanted or [("html", "")]:
        suffix = {"html": "html", "junit": "xml", "json": "json"}[kind]
        path = target or os.path.join(args.fleet, "fleet-report.%s" % suffix)
        if kind == "html":
            content = fleet_html(data).encode("utf-8")
        elif kind == "junit":
            content = fleet_junit(data)
        else:
            content = (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        if path == "-":
            sys.stdout.flush()
            sys.stdout.buffer.write(content)
            continue
        try:
            with open(path, "wb") as handle:
                handle.write(content)
        except OSError as exc:
            raise UsageError("cannot write %s: %s" % (path, exc.strerror or exc), EXIT_STATE) from None
        print("wrote the fleet %s report of %d hosts: %s" % (kind.upper() if kind != "junit" else "JUnit", len(data["hosts"]), path))
    return EXIT_OK

