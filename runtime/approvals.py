"""Approvals: who may answer a step's question, how many people must, and the decisions given
on the terminal, by flag (--approve NODE, --auto-approve), out of band (`playbook approve`) or
signed away from the host (`playbook approval sign` on a workstation, checked here with
`ssh-keygen -Y verify` against the allowed signers baked into the bundle).

Policy, on any step with a question:
- `approvers = ["alice", "@ops"]`: user names, or `@group` for the members of a Unix group on
  the host; empty: anyone;
- `approvals = N`: N distinct people. The same person twice counts once, so with N >= 2 the
  person who started the run counts at most once (four eyes).

A person is the user part of ``user@host``; behind sudo it is the login that ran sudo.

Standard library only: this module goes into bundles.
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass

from .errors import EXIT_INVALID, EXIT_STATE, PlaybookError

TYPE_CHECKING = False  # typing is not imported at run time (start-up)
if TYPE_CHECKING:
    from typing import Any, Iterable, Mapping

SIGN_NAMESPACE = "playbook-approval"


class ApprovalError(PlaybookError):
    """An approval that cannot be accepted (exit 2: it does not fit this run, node or policy;
    exit 4: its signature does not verify)."""


@dataclass(frozen=True)
class Policy:
    approvers: tuple[str, ...] = ()
    approvals: int = 1

    def allows(self, person: str) -> bool:
        if not self.approvers:
            return True
        return any(person in group_members(a[1:]) if a.startswith("@") else person == a for a in self.approvers)

    def describe(self) -> str:
        who = ", ".join(self.approvers) if self.approvers else "anyone"
        return "%d approval%s by %s" % (self.approvals, "" if self.approvals == 1 else "s", who)


def policy_of(node: Any) -> Policy:
    return Policy(tuple(getattr(node, "approvers", None) or ()), max(1, int(getattr(node, "approvals", 1) or 1)))


def has_question(node: Any) -> bool:
    return node.type == "Manual" or bool(node.prompt_before) or bool(node.prompt_after)


def group_members(group: str) -> set[str]:
    """Members of a Unix group on this host (its listed members and the users whose primary
    group it is); empty when there is no such group."""
    import grp
    import pwd

    try:
        entry = grp.getgrnam(group)
    except KeyError:
        return set()
    members = set(entry.gr_mem)
    members.update(p.pw_name for p in pwd.getpwall() if p.pw_gid == entry.gr_gid)
    return members


def person(who: str) -> str:
    """The person of ``user@host``."""
    return who.rsplit("@", 1)[0]


def real_user() -> str:
    """The login behind sudo where known, else the current user."""
    from .state import current_user

    if os.geteuid() == 0 and os.environ.get("SUDO_USER"):
        return os.environ["SUDO_USER"]
    return current_user()


def real_who() -> str:
    from .state import current_host

    return "%s@%s" % (real_user(), current_host())


def approvers_of(decisions: Iterable[Mapping[str, Any]], policy: Policy) -> list[str]:
    """The distinct people whose approvals count under `policy`, in the order they gave them."""
    seen: list[str] = []
    for d in decisions:
        name = person(d["who"])
        if d["decision"] == "approved" and policy.allows(name) and name not in seen:
            seen.append(name)
    return seen


def missing(policy: Policy, decisions: Iterable[Mapping[str, Any]]) -> int:
    """How many more people must approve."""
    return max(0, policy.approvals - len(approvers_of(decisions, policy)))


# -- signed approvals ---------------------------------------------------------------------------
def _utc(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def parse_duration(text: str) -> datetime.timedelta:
    """--valid-for: 30m, 2h, 1d."""
    match = re.match(r"^\s*(\d+)\s*([mhd])\s*$", text or "")
    if not match:
        raise ApprovalError("--valid-for takes minutes, hours or days, e.g. 30m, 2h, 1d (got %r)" % text)
    amount, unit = int(match.group(1)), match.group(2)
    return datetime.timedelta(minutes=amount * {"m": 1, "h": 60, "d": 1440}[unit])


def payload(plan_hash: str, run_id: int, node: str, decision: str, principal: str, valid_for: datetime.timedelta) -> dict:
    issued = _now()
    return {
        "namespace": SIGN_NAMESPACE,
        "plan": plan_hash,
        "run": int(run_id),
        "node": node,
        "decision": decision,
        "principal": principal,
        "issued": issued.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "expires": (issued + valid_for).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _canonical(data: Mapping[str, Any]) -> bytes:
    import json

    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")


def sign(data: Mapping[str, Any], key: str, ssh_keygen: str = "ssh-keygen") -> str:
    """The `ssh-keygen -Y sign` signature (armored text) of the canonical payload."""
    import subprocess

    try:
        proc = subprocess.run(
            [ssh_keygen, "-Y", "sign", "-q", "-f", key, "-n", SIGN_NAMESPACE],
            input=_canonical(data), capture_output=True, timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ApprovalError("cannot run ssh-keygen to sign: %s" % exc, EXIT_STATE) from None
    if proc.returncode != 0:
        raise ApprovalError("ssh-keygen could not sign with %s: %s" % (key, proc.stderr.decode("utf-8", "replace").strip()), EXIT_STATE)
    return proc.stdout.decode("ascii")


def signed_document(data: Mapping[str, Any], signature: str) -> str:
    import json

    return json.dumps({"payload": data, "signature": signature}, indent=2, sort_keys=True) + "\n"


@dataclass(frozen=True)
class Verified:
    decision: str
    principal: str
    fingerprint: str
    note: str


def verify(
    path: str, allowed_signers: str, plan_hash: str, run_id: int, node: str, ssh_keygen: str = "ssh-keygen"
) -> Verified:
    """Check a signed approval file for this run's plan, run and node; raises ApprovalError."""
    import json

    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
        data, signature = document["payload"], document["signature"]
        if not isinstance(data, dict) or not isinstance(signature, str):
            raise ValueError("not an approval document")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ApprovalError("%s is not a signed approval: %s" % (path, exc), EXIT_INVALID) from None
    fields = (data.get("namespace"), data.get("plan"), data.get("run"), data.get("node"))
    if fields[0] != SIGN_NAMESPACE:
        raise ApprovalError("%s is not a Playbook approval (namespace %r)" % (path, fields[0]), EXIT_INVALID)
    if data.get("decision") not in ("approved", "rejected"):
        raise ApprovalError("%s has no decision" % path, EXIT_INVALID)
    for label, got, want in (("plan", fields[1], plan_hash), ("run", fields[2], run_id), ("node", fields[3], node)):
        if got != want:
            raise ApprovalError("%s approves %s %s, not %s %s: it does not belong to this run" % (path, label, got, label, want), EXIT_INVALID)
    try:
        expired = _now() > _utc(str(data.get("expires")))
    except ValueError:
        raise ApprovalError("%s has no valid expiry time" % path, EXIT_INVALID) from None
    if expired:
        raise ApprovalError("%s expired at %s; sign a new one" % (path, data["expires"]), EXIT_INVALID)
    principal = str(data.get("principal") or "")
    fingerprint = _ssh_verify(allowed_signers, principal, data, signature, path, ssh_keygen)
    return Verified(data["decision"], principal, fingerprint, str(data.get("note") or ""))


def _ssh_verify(allowed_signers: str, principal: str, data: Mapping[str, Any], signature: str, path: str, ssh_keygen: str) -> str:
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="playbook-approval-") as tmp:
        signers = os.path.join(tmp, "allowed_signers")
        sig = os.path.join(tmp, "approval.sig")
        with open(signers, "w", encoding="utf-8") as handle:
            handle.write(allowed_signers)
        with open(sig, "w", encoding="ascii", errors="replace") as handle:
            handle.write(signature)
        try:
            proc = subprocess.run(
                [ssh_keygen, "-Y", "verify", "-f", signers, "-I", principal, "-n", SIGN_NAMESPACE, "-s", sig],
                input=_canonical(data), capture_output=True, timeout=60,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise ApprovalError("cannot run ssh-keygen to verify %s: %s" % (path, exc), EXIT_STATE) from None
    out = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    if proc.returncode != 0:
        reason = out.strip().splitlines()[-1] if out.strip() else "exit %d" % proc.returncode
        raise ApprovalError(
            "%s does not verify for principal %r against the bundle's approval signers (%s): refused" % (path, principal, reason),
            EXIT_STATE,
        )
    match = re.search(r"key (SHA256:\S+)", out)
    return match.group(1) if match else "?"
