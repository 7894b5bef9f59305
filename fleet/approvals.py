"""The approvals of a rollout, given once on the controller: every question of the runbook
listed and asked on a terminal, or --approve NODE / --auto-approve; for a bundle compiled with
--approval-signers, those of steps with a policy signed here for this rollout and each host's
values (docs/architecture.md, "Approvals").
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Mapping, Sequence

from playbook.runtime.errors import UsageError

from . import ansible


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


def host_values(inventory_args: Sequence[str], plan: Any, plain: Mapping[str, str], secret: Mapping[str, str]) -> dict[str, str]:
    """{host: digest of the values its run will use} for every host of the inventory: the
    controller's values overlaid by the host's playbook_var_NAME, resolved as the host resolves
    them (types, defaults; secrets masked), as runtime/approvals.values_digest computes it."""
    from playbook.runtime import approvals, variables
    from playbook.runtime.session import masked_values
    from playbook.runtime.plan import Plan

    hostvars = ansible.inventory_hostvars(inventory_args)
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
