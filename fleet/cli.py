"""The command line of `playbook fleet` (rolling out, `resume`, `report`) and the course of a
rollout: the bundle, the approvals, the playbook written, Ansible run and followed, the
summary.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import secrets as secrets_mod
import sys
from typing import Any, Mapping, Sequence

from playbook.runtime.errors import (
    EXIT_ABORTED,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_STATE,
    UsageError,
)
from playbook.runtime.state import whoami

from .ansible import DEFAULT_FORKS, INSTALL_HINT, ansible_playbook, list_hosts, run_ansible, write_plugins
from .approvals import gather_approvals, signed_nodes, host_values, sign_rollout
from .bundle import prepare_bundle, read_bundle
from .follow import Rollout
from .playbook import SECRET_ENV, parse_serial, playbook_text, remote_name
from .report import report_main
from .summary import (
    FLEET_VERSION,
    RECORDS,
    RESUMABLE,
    UNFINISHED,
    UNFOLLOWED,
    _now,
    host_outcome,
    read_summary,
    summary_lines,
    write_json,
    write_summary,
)


def _controller_values(var_pairs: Sequence[str], vars_file: str | None, plan: Any, vars_env: str | None = None) -> tuple[dict, dict]:
    """(plain values, secret values) given on the controller, as the strings each host receives
    (--var over --vars-file over --vars-env, as for a run)."""
    from playbook.runtime import variables

    try:
        sources = variables.Sources.gather(var_pairs, vars_file, vars_env)
    except variables.VariableError as exc:
        raise UsageError(str(exc)) from None
    merged = dict(sources.env)
    merged.update(sources.file)
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


def _inventories(given: Sequence[str]) -> list[str]:
    """The -i values (each checked, repeatable, in order); none: ansible.cfg's `inventory`."""
    return [_check_inventory(inventory) for inventory in given]


# Ansible's own flags, passed to ansible-playbook as given: (flags, what argparse stores).
PASSTHROUGH = (
    (("-u", "--user"), dict(metavar="REMOTE_USER", help="connect as this user")),
    (("--private-key", "--key-file"), dict(metavar="FILE", help="use this file to authenticate the connection")),
    (("-k", "--ask-pass"), dict(action="store_true", help="ask for the connection password")),
    (("-K", "--ask-become-pass"), dict(action="store_true", help="ask for the privilege escalation password")),
    (("--become-user",), dict(metavar="USER", help="run the bundle as this user (with --become; default root)")),
    (("--become-method",), dict(metavar="METHOD", help="privilege escalation method (sudo, su, ...)")),
    (("-c", "--connection"), dict(metavar="CONNECTION", help="connection type (ssh, local, ...)")),
    (("-T", "--timeout"), dict(metavar="SECONDS", help="connection timeout")),
    (("--ssh-common-args",), dict(metavar="ARGS", help="extra arguments for sftp, scp and ssh")),
    (("--ssh-extra-args",), dict(metavar="ARGS", help="extra arguments for ssh only")),
    (("--vault-id",), dict(action="append", metavar="ID", help="the vault identity to use (repeatable)")),
    (("--vault-password-file", "--vault-pass-file"), dict(action="append", metavar="FILE", help="vault password file (repeatable)")),
    (("-J", "--ask-vault-password", "--ask-vault-pass"), dict(action="store_true", help="ask for the vault password")),
)


def _passthrough(args: argparse.Namespace) -> list[str]:
    """The Ansible flags given, as ansible-playbook takes them."""
    words: list[str] = []
    for flags, spec in PASSTHROUGH:
        value = getattr(args, flags[-1].lstrip("-").replace("-", "_"))
        if spec.get("action") == "store_true":
            words += [flags[-1]] if value else []
        elif spec.get("action") == "append":
            for item in value or []:
                words += [flags[-1], item]
        elif value is not None:
            words += [flags[-1], value]
    return words + (["-" + "v" * args.verbose] if args.verbose else [])


def _vault_args(args: argparse.Namespace) -> list[str]:
    words = _passthrough(args)
    keep = {"--vault-id", "--vault-password-file", "--ask-vault-pass"}
    return [w for i, w in enumerate(words) if w in keep or (i and words[i - 1] in keep - {"--ask-vault-pass"})]


def _ansible_args(args: argparse.Namespace, inventories: Sequence[str], limit: str | None, forks: int | None,
                  extra_vars: Sequence[str] = ()) -> list[str]:
    words: list[str] = []
    for inventory in inventories:
        words += ["-i", inventory]
    if limit:
        words += ["--limit", limit]
    words += ["--forks", str(forks or DEFAULT_FORKS)]
    for extra in list(getattr(args, "extra_vars", None) or []) + list(extra_vars):
        words += ["-e", extra]
    return words + _passthrough(args)


def _default_out(source: str) -> str:
    stem = os.path.basename(source).split(".")[0] or "fleet"
    return "fleet-%s-%s" % (stem, datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def _rollout(out_dir: str, summary: dict, ansible_args: Sequence[str], secrets: Mapping[str, str],
             previous: Mapping[str, dict] | None = None, check: bool = False) -> int:
    rollout = Rollout()
    env = {SECRET_ENV + name: value for name, value in secrets.items()}
    os.makedirs(os.path.join(out_dir, "hosts"), exist_ok=True)
    records = os.path.join(out_dir, RECORDS)
    if not check:
        write_json(os.path.join(out_dir, UNFINISHED), {
            "summary": summary, "previous": list(previous.values()) if previous is not None else None,
            "records_from": os.path.getsize(records) if os.path.exists(records) else 0, "pid": os.getpid(), "started_at": _now()})
    code = run_ansible(os.path.join(out_dir, "fleet.yml"), list(ansible_args) + (["--check"] if check else []), env, rollout, records)
    if check:
        failed = [h for h in rollout.hosts if any(r.get("status") in ("failed", "unreachable") for r in rollout.results.get(h, []))]
        rollout.say("check: %d host%s planned, nothing was run%s" % (
            len(rollout.hosts) - len(failed), "" if len(rollout.hosts) - len(failed) == 1 else "s",
            "; no plan from: %s" % ", ".join(failed) if failed else ""))
        return EXIT_FAILED if failed or code else EXIT_OK
    try:
        hosts = _hosts(rollout, out_dir, previous)
        _refuse_vault_trouble(hosts)
        if previous is None and not hosts and rollout.interrupted:
            raise KeyboardInterrupt
        if previous is None and not hosts and code == 0:
            raise UsageError("no host of the inventory matches%s" % (" --limit %s" % summary["limit"] if summary.get("limit") else ""))
        if previous is None and not hosts:
            raise UsageError("ansible-playbook ended with exit %d before any host ran (its message is above)" % code)
    except (UsageError, KeyboardInterrupt):
        os.unlink(os.path.join(out_dir, UNFINISHED))  # no host was started: nothing to recover
        raise
    summary["hosts"] = hosts
    summary["ended_at"] = _now()
    summary["ansible_exit_code"] = code
    write_summary(out_dir, summary)
    os.unlink(os.path.join(out_dir, UNFINISHED))
    for line in summary_lines(summary):
        rollout.say(line)
    rollout.say("summary: %s · report: playbook fleet report %s --html" % (os.path.join(out_dir, "summary.json"), out_dir))
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


def _hosts(rollout: Rollout, out_dir: str, previous: Mapping[str, dict] | None) -> list[dict]:
    """Each host's entry of summary.json from what Ansible reported; on a resume, the hosts not
    resumed keep their entries."""
    hosts = [host_outcome(h, rollout.results.get(h, []), out_dir) for h in rollout.hosts]
    if previous is None:
        return hosts
    fresh = {h["host"]: h for h in hosts}
    return [fresh.get(name, entry) for name, entry in previous.items()] + [h for h in hosts if h["host"] not in previous]


class _ControllerLock:
    """One controller per rollout directory at a time: an exclusive lock on DIR/.controller.lock,
    held while `playbook fleet` or `fleet resume` works on DIR (the system drops it when the
    process ends, however it ends)."""

    def __init__(self, out_dir: str) -> None:
        self.path = os.path.join(out_dir, ".controller.lock")

    def __enter__(self) -> _ControllerLock:
        import fcntl

        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise UsageError("%s: another `playbook fleet` is working on this rollout now; wait until it ends"
                             % os.path.dirname(self.path)) from None
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def _recover(out_dir: str) -> dict | None:
    """The summary of a rollout whose controller ended without writing one (killed, or its
    machine lost power): rebuilt from DIR/unfinished.json (what that controller started with)
    and the records Ansible had reported (DIR/records.jsonl, written line by line). The hosts it
    left running are "aborted" with their job, so the resume follows them again. None when
    every controller of DIR ended as it should."""
    import io

    marker = os.path.join(out_dir, UNFINISHED)
    try:
        with open(marker, encoding="utf-8") as handle:
            unfinished = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UsageError("%s: cannot read it: %s" % (marker, exc)) from None
    rollout = Rollout(io.StringIO())
    with open(os.path.join(out_dir, RECORDS), encoding="utf-8", errors="replace") as handle:
        handle.seek(unfinished["records_from"])
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:  # the line the controller was writing when it died
                continue
            if isinstance(record, dict):
                rollout.feed(record)
    previous = unfinished["previous"]
    summary = unfinished["summary"]
    hosts = _hosts(rollout, out_dir, {h["host"]: h for h in previous} if previous is not None else None)
    if not hosts:
        os.unlink(marker)
        raise UsageError("%s: its controller ended before Ansible named any host, so no host was started; "
                         "start the rollout again with another --out" % out_dir)
    summary["hosts"] = hosts
    summary["ended_at"] = _now()
    summary["ansible_exit_code"] = None
    summary["recovered"] = list(summary.get("recovered") or []) + [
        {"at": _now(), "controller_pid": unfinished.get("pid"), "controller_started_at": unfinished.get("started_at")}]
    write_summary(out_dir, summary)
    os.unlink(marker)
    print("the controller of this rollout (pid %s, started %s) ended without writing its summary; recovered it from %s:"
          % (unfinished.get("pid"), unfinished.get("started_at"), RECORDS))
    for line in summary_lines(summary):
        print("  " + line)
    return summary


def _checked_numbers(args: argparse.Namespace) -> None:
    if getattr(args, "max_fail_percentage", None) is not None and not 0 <= args.max_fail_percentage <= 100:
        raise UsageError("--max-fail-percentage %d: give 0 to 100" % args.max_fail_percentage)
    if args.forks is not None and args.forks < 1:
        raise UsageError("--forks %d: give 1 or more" % args.forks)


def batches(hosts: Sequence[str], serial: Sequence[Any] | None) -> list[list[str]]:
    """The batches Ansible makes of `hosts` with `serial` (numbers or percentages; the last
    size repeats; a percentage of the hosts, at least 1)."""
    if not serial:
        return [list(hosts)] if hosts else []
    sizes = [max(1, len(hosts) * int(item[:-1]) // 100) if isinstance(item, str) else int(item) for item in serial]
    result, at, index = [], 0, 0
    while at < len(hosts):
        size = sizes[min(index, len(sizes) - 1)]
        result.append(list(hosts[at:at + size]))
        at += size
        index += 1
    return result


def fleet_list_hosts(args: argparse.Namespace, inventories: Sequence[str], serial: list[Any] | None) -> int:
    """--list-hosts: the hosts the rollout would start, batch by batch (nothing is built or run)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="playbook-fleet-") as scratch:
        play = os.path.join(scratch, "hosts.yml")
        with open(play, "w", encoding="utf-8") as handle:
            handle.write("- hosts: all\n  gather_facts: false\n  tasks: []\n")
        hosts = list_hosts(play, _ansible_args(args, inventories, args.limit, args.forks))
    if not hosts:
        raise UsageError("no host of the inventory matches%s" % (" --limit %s" % args.limit if args.limit else ""))
    groups = batches(hosts, serial)
    for number, batch in enumerate(groups, 1):
        print("batch %d (%d host%s): %s" % (number, len(batch), "" if len(batch) == 1 else "s", ", ".join(batch)))
    forks = args.forks or DEFAULT_FORKS
    widest = max(len(b) for b in groups)
    print("%d host%s in %d batch%s; --forks %d%s" % (
        len(hosts), "" if len(hosts) == 1 else "s", len(groups), "" if len(groups) == 1 else "es", forks,
        "" if forks >= widest else ": a batch has more hosts than forks, so hosts beyond %d are followed when a fork is free "
        "(every host of a batch is started first)" % forks))
    return EXIT_OK


VAULT_TROUBLE = ("vault secrets", "Decryption failed", "vault password", "undecryptable")


def _refuse_vault_trouble(hosts: Sequence[Mapping[str, Any]]) -> None:
    """No run started because Ansible could not decrypt a vaulted variable: invalid input
    (exit 2) in Ansible's own words, and no summary (the same command with the password may
    follow)."""
    if not hosts or any(h["status"] != "failed" or h.get("run_id") is not None for h in hosts):
        return
    vault = [h for h in hosts if any(word in (h.get("reason") or "") for word in VAULT_TROUBLE)]
    if len(vault) == len(hosts):
        message = (vault[0]["reason"] or "").split(": ", 1)[-1]
        raise UsageError("%s (give --vault-password-file, --vault-id or --ask-vault-pass); no host was started" % message)


def fleet_run(args: argparse.Namespace) -> int:
    ansible_playbook()  # before anything is built or copied
    inventories = _inventories(args.inventory)
    serial = parse_serial(args.serial)
    _checked_numbers(args)
    if args.list_hosts:
        return fleet_list_hosts(args, inventories, serial)
    if args.confirm_batches and not sys.stdin.isatty():
        raise UsageError("--confirm-batches asks on the controller's terminal, and there is none")
    out_dir = os.path.abspath(args.out or _default_out(args.source))
    os.makedirs(out_dir, exist_ok=True)
    with _ControllerLock(out_dir):
        return _fleet_run(args, out_dir, inventories, serial)


def _fleet_run(args: argparse.Namespace, out_dir: str, inventories: list[str], serial: list[Any] | None) -> int:
    if os.path.exists(os.path.join(out_dir, "summary.json")) or os.path.exists(os.path.join(out_dir, UNFINISHED)):
        raise UsageError("%s already holds a rollout: continue it with `playbook fleet resume %s`, or give another --out" % (out_dir, out_dir))
    bundle = prepare_bundle(args.source, os.path.join(out_dir, "files"), args.allowed_signers)
    manifest, plan = read_bundle(bundle)
    plain, secret = _controller_values(args.var, args.vars_file, plan, args.vars_env)
    approve = [] if args.check else gather_approvals(plan, args.approve, args.auto_approve, ask=_interactive())
    rollout_uid = secrets_mod.token_hex(16)
    inventory_args = [w for i in inventories for w in ("-i", i)] + _vault_args(args)
    signed, approve, auto = ({}, approve, False) if args.check else _signed_approvals(
        args, out_dir, manifest, plan, inventory_args, plain, secret, approve, rollout_uid)
    text = playbook_text(plan.title or os.path.basename(bundle), os.path.basename(bundle), plain, secret, approve,
                         auto, rollout_uid, serial, args.max_fail_percentage, args.become, args.confirm_batches, signed,
                         remote=remote_name(bundle))
    with open(os.path.join(out_dir, "fleet.yml"), "w", encoding="utf-8") as handle:
        handle.write(text)
    write_plugins(out_dir)
    ansible_args = _ansible_args(args, inventories, args.limit, args.forks)
    if args.check:
        return _rollout(out_dir, {}, ansible_args, secret, check=True)
    summary = {
        "fleet_version": FLEET_VERSION,
        "runbook": {"title": plan.title, "source": (plan.source or {}).get("name"), "sha256": (plan.source or {}).get("sha256")},
        "bundle": os.path.join("files", os.path.basename(bundle)),
        "inventory": inventories,
        "limit": args.limit,
        "forks": args.forks,
        "extra_vars": list(args.extra_vars or []),
        "approvals": {"approve": approve, "auto_approve": auto, "signed": sorted(signed), "given_by": whoami()},
        "rollout": rollout_uid,
        "started_at": _now(),
        "resumes": [],
    }
    return _rollout(out_dir, summary, ansible_args, secret)


def fleet_resume(args: argparse.Namespace) -> int:
    ansible_playbook()
    out_dir = os.path.abspath(args.dir)
    if not os.path.isdir(out_dir):
        read_summary(out_dir)  # the one message for a directory that holds no rollout
    with _ControllerLock(out_dir):
        return _fleet_resume(args, out_dir, _recover(out_dir) or read_summary(out_dir))


def _fleet_resume(args: argparse.Namespace, out_dir: str, summary: dict) -> int:
    _checked_numbers(args)
    if args.source and not args.replan:
        raise UsageError("a new runbook or bundle needs --replan (succeeded steps keep their results, changed ones run)")
    bundle = os.path.join(out_dir, summary["bundle"])
    if args.source:
        bundle = prepare_bundle(args.source, os.path.join(out_dir, "files"), args.allowed_signers)
    _, plan = read_bundle(bundle)
    # a run the controller stopped following is followed again (it may have ended meanwhile);
    # one that failed, aborted or waits is resumed
    follow = {h["host"]: h["job"] for h in summary["hosts"] if h.get("reason") == UNFOLLOWED and h.get("job") and not args.source}
    todo = {h["host"]: h["run_id"] for h in summary["hosts"]
            if h["status"] in RESUMABLE and h.get("run_id") is not None and h["host"] not in follow}
    unstarted = [h["host"] for h in summary["hosts"] if h["status"] == "not started"]
    fresh = unstarted if args.remaining else []
    if not todo and not fresh and not follow:
        print("nothing to resume in %s: no host's run failed, aborted or waited" % out_dir)
        if unstarted:
            print("%d host%s never started: %s; start them with: playbook fleet resume %s --remaining"
                  % (len(unstarted), "" if len(unstarted) == 1 else "s", ", ".join(unstarted), out_dir))
        return int(summary.get("exit_code", EXIT_OK))
    plain, secret = _controller_values(args.var, args.vars_file, plan, args.vars_env)
    approve = gather_approvals(plan, args.approve, args.auto_approve, ask=_interactive())
    manifest, _ = read_bundle(bundle)
    inventories = _inventories(args.inventory) if args.inventory else _stored_inventories(summary)
    rollout_uid = summary.get("rollout") or ""
    inventory_args = [w for i in inventories for w in ("-i", i)] + _vault_args(args)
    signed, approve, auto = _signed_approvals(args, out_dir, manifest, plan, inventory_args, plain, secret, approve, rollout_uid)
    extra = {
        "playbook_mode": "resume",
        "playbook_resume_runs": todo,
        "playbook_follow_jobs": follow,
        "playbook_replan": bool(args.replan),
        "playbook_bundle": os.path.basename(bundle),
        "playbook_bundle_name": remote_name(bundle),
        "playbook_approve": approve,
        "playbook_auto_approve": auto,
        "playbook_signed_approvals": signed,
    }
    extra_path = os.path.join(out_dir, "resume-vars.json")
    with open(extra_path, "w", encoding="utf-8") as handle:
        json.dump(extra, handle, indent=2, sort_keys=True)
    summary["bundle"] = os.path.relpath(bundle, out_dir)
    summary["resumes"] = list(summary.get("resumes") or []) + [{"at": _now(), "hosts": sorted(todo), "followed": sorted(follow),
                                                                 "started": fresh, "replan": bool(args.replan),
                                                                 "approve": approve, "auto_approve": auto, "signed": sorted(signed),
                                                                 "given_by": whoami()}]
    previous = {h["host"]: h for h in summary["hosts"]}
    if follow:
        print("following again %d run%s the controller left going: %s" % (len(follow), "" if len(follow) == 1 else "s", ", ".join(sorted(follow))))
    if todo:
        print("resuming %d host%s: %s" % (len(todo), "" if len(todo) == 1 else "s", ", ".join(sorted(todo))))
    if fresh:
        print("starting %d host%s never started: %s" % (len(fresh), "" if len(fresh) == 1 else "s", ", ".join(fresh)))
    elif unstarted:
        print("not started, left alone (add --remaining to start them): %s" % ", ".join(unstarted))
    hosts = sorted(follow) + sorted(todo) + fresh
    extra_vars = list(summary.get("extra_vars") or []) + ["@" + extra_path]
    ansible_args = _ansible_args(args, inventories, ",".join(hosts), args.forks or summary.get("forks"), extra_vars)
    return _rollout(out_dir, summary, ansible_args, secret, previous=previous)


def _stored_inventories(summary: Mapping[str, Any]) -> list[str]:
    stored = summary.get("inventory")
    return [stored] if isinstance(stored, str) else list(stored or [])


def _signed_approvals(args: argparse.Namespace, out_dir: str, manifest: Mapping[str, Any], plan: Any, inventory_args: Sequence[str],
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
    digests = host_values(inventory_args, plan, plain, secret)
    signed = sign_rollout(out_dir, rollout_uid, nodes, plan.digest(), digests, args.approval_key, args.principal, args.valid_for)
    if args.auto_approve:
        flags = [n.id for n in plan.nodes if has_question(n) and n.id not in nodes]
    else:
        flags = [n for n in approve if n not in nodes]
    return signed, flags, False


FLEET_EXIT_MEANINGS = {
    EXIT_OK: "every host succeeded",
    EXIT_FAILED: "a host failed",
    EXIT_INVALID: "invalid input (flags, inventory, vault, runbook; Ansible missing)",
    EXIT_ABORTED: "no host failed or was unreachable; a host is waiting, aborted or was not started",
    EXIT_STATE: "no host failed, a host was unreachable",
    EXIT_INTERRUPTED: "interrupted on the controller (the runs started go on on their hosts)",
}
FLEET_CODES = (EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_ABORTED, EXIT_STATE, EXIT_INTERRUPTED)


def _approval_args(parser: argparse.ArgumentParser) -> None:
    from playbook.runtime import options

    parser.add_argument("--approve", action="append", default=[], metavar="NODE", help="approve NODE on every host (repeatable)")
    parser.add_argument("--auto-approve", action="store_true", help="approve every approval on every host")
    parser.add_argument(
        "--approval-key", metavar="KEY",
        help="a bundle compiled with --approval-signers: sign the approvals of steps with a policy with this SSH key, "
        "for this rollout and each host (checked on the host)",
    )
    parser.add_argument("--principal", metavar="NAME", help="with --approval-key: your principal in the allowed signers (default: your user name)")
    parser.add_argument("--valid-for", default="2h", metavar="DURATION", help="with --approval-key: how long the approvals stay valid (default 2h, at most 7d)")
    options.add_variable_args(parser, interactive=False)
    parser.add_argument("--forks", type=int, metavar="N",
                        help="hosts followed at once (default %d; every host of a batch is started first)" % DEFAULT_FORKS)
    parser.add_argument("--allowed-signers", metavar="FILE", help="verify the bundle's signature against this allowed-signers file first")
    _ansible_flags(parser)


def _ansible_flags(parser: argparse.ArgumentParser) -> None:
    """Ansible's flags, meaning what they mean to ansible-playbook."""
    group = parser.add_argument_group("Ansible's flags (passed to ansible-playbook)")
    group.add_argument("-e", "--extra-vars", action="append", default=[], metavar="VARS",
                       help="extra variables, key=value, JSON or @FILE (repeatable); -e playbook_var_NAME=VALUE gives "
                       "a runbook variable to every host")
    for flags, spec in PASSTHROUGH:
        group.add_argument(*flags, dest=flags[-1].lstrip("-").replace("-", "_"), **spec)  # type: ignore[arg-type]
    group.add_argument("-v", "--verbose", action="count", default=0, help="Ansible's verbosity (-vvv: connection detail)")


def build_parser() -> argparse.ArgumentParser:
    from playbook.runtime import options

    parser = options.parser(
        "playbook fleet",
        "Roll a runbook out over the hosts of an Ansible inventory: Ansible copies the bundle and runs it on each\n"
        "host (batches, forks, become); approvals are given once here; every host's state database is fetched.\n"
        "Needs ansible-core 2.15+ on this controller (Python 3.9+): %s.\n\n"
        "Continue later:  playbook fleet resume DIR [NEW_RUNBOOK_OR_BUNDLE --replan]\n"
        "Its report:      playbook fleet report DIR --html" % INSTALL_HINT,
        ["playbook fleet deploy.pyz -i hosts.ini --serial 1,25% --max-fail-percentage 0 --var ENVIRONMENT=prod --out rollout",
         "playbook fleet deploy.pyz -i hosts.ini --serial 1,25% --list-hosts",
         "playbook fleet deploy.pyz -i hosts.ini -u deploy --become -K --vault-password-file ~/.vault --check",
         "playbook fleet report rollout --html"],
        FLEET_CODES, FLEET_EXIT_MEANINGS,
    )
    parser.add_argument("source", metavar="RUNBOOK_OR_BUNDLE", help="a runbook (compiled first) or a bundle (used as it is)")
    parser.add_argument("-i", "--inventory", action="append", default=[], metavar="INVENTORY",
                        help="Ansible inventory: file, directory or host,list, (repeatable; default: ansible.cfg's inventory)")
    parser.add_argument("--list-hosts", action="store_true", help="list the hosts batch by batch, and do nothing else")
    parser.add_argument("--check", action="store_true",
                        help="run `plan` on each host with its variables, and change nothing there (no run, no state)")
    parser.add_argument("--limit", metavar="PATTERN", help="only these hosts (Ansible's host pattern)")
    parser.add_argument("--serial", metavar="N|N%|LIST", help="batch sizes: 1, 25%% or 1,10,100%% (the first batch is the canary)")
    parser.add_argument("--max-fail-percentage", type=int, metavar="P", help="stop when more than P%% of a batch failed (0: the first failure)")
    parser.add_argument("--become", action="store_true", help="run the bundle as root (Ansible's become)")
    parser.add_argument("--confirm-batches", action="store_true", help="ask on this terminal before each batch after the first")
    parser.add_argument("--out", metavar="DIR", help="where fleet.yml, the bundle, hosts/HOST.db and summary.json go (default fleet-NAME-TIME)")
    _approval_args(parser)
    return parser


def build_resume_parser() -> argparse.ArgumentParser:
    from playbook.runtime import options

    parser = options.parser(
        "playbook fleet resume",
        "Resume the hosts of a rollout whose run failed, aborted or waited; succeeded hosts are left alone "
        "(--remaining also starts those never started). Runs a stopped controller left going are followed again; "
        "a rollout whose controller was killed before it wrote summary.json is first rebuilt from DIR/records.jsonl.",
        ["playbook fleet resume rollout --approve approve_production", "playbook fleet resume rollout deploy-fixed.pyz --replan",
         "playbook fleet resume rollout --remaining"],
        FLEET_CODES, FLEET_EXIT_MEANINGS,
    )
    parser.add_argument("dir", metavar="DIR", help="the --out directory of the rollout")
    parser.add_argument("source", nargs="?", metavar="RUNBOOK_OR_BUNDLE", help="a new runbook or bundle (needs --replan)")
    parser.add_argument("--replan", action="store_true", help="continue with the new bundle's plan")
    parser.add_argument("--remaining", action="store_true",
                        help="also start the hosts that were never started (stopped by --max-fail-percentage or Ctrl-C)")
    parser.add_argument("-i", "--inventory", action="append", default=[], metavar="INVENTORY",
                        help="another inventory (repeatable; default: the rollout's)")
    _approval_args(parser)
    return parser


def main(argv: Sequence[str]) -> int:
    """`playbook fleet ...`, `playbook fleet resume DIR ...` and `playbook fleet report DIR ...`."""
    argv = list(argv)
    if argv and argv[0] == "resume":
        return fleet_resume(build_resume_parser().parse_args(argv[1:]))
    if argv and argv[0] == "report":
        return report_main(argv[1:])
    return fleet_run(build_parser().parse_args(argv))
