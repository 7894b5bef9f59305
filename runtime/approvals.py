"""Approvals: who may answer a step's question, how many people must, and the decisions given
on the terminal, by flag (--approve NODE, --auto-approve), out of band (`playbook approve`) or
signed away from the host (`playbook approval sign` on a workstation, checked on the host with
`ssh-keygen -Y verify` against the allowed signers baked into the bundle).

Policy, on any step with a question (docs/architecture.md, "Approvals"):
- `approvers = ["alice", "@ops"]`: user names, or `@group` for the members of a Unix group on
  the host; empty: anyone;
- `approvals = N`: N distinct people. The same person twice counts once, so with N >= 2 the
  person who started the run counts at most once (four eyes).
A step with either field has a *policy*. A person is the user part of ``user@host``, as the
operating system names the real user (state.current_user), never an environment variable.

Signed approvals (format 2). A bundle compiled with --approval-signers accepts, for a step with
a policy, only a decision signed by a listed principal. The signed payload binds what it
approves:
- the subject: one run, by its random run UID (`run_uid`, 128 bits; run ids restart at 1 in
  every database), or the hosts of one fleet rollout (`rollout`, and `hosts`: each host name
  with the digest of the values its run uses);
- the plan identity (`plan`), the step (`node`), the decision;
- for a run, the digest of the question as rendered (`question`) and of the run's values
  (`values`, secrets masked), so an approval of "restart staging" never approves "restart prod";
- the principal, when it was issued and when it expires (at most MAX_VALID, 7 days; a bundle
  may set a lower bound).
The document's text is stored with the decision, and the engine checks it again, with
`ssh-keygen -Y verify`, when the decision is used: a row written by another tool or by hand
is worth nothing.

Standard library only: this module goes into bundles.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
from dataclasses import dataclass

from .errors import EXIT_INVALID, EXIT_STATE, PlaybookError

TYPE_CHECKING = False  # typing is not imported at run time (start-up)
if TYPE_CHECKING:
    from typing import Any, Iterable, Mapping

SIGN_NAMESPACE = "playbook-approval"
FORMAT = 2  # of the signed payload
REQUEST_FORMAT = 1  # of an exported request (`approval request`)
MAX_VALID = datetime.timedelta(days=7)  # the longest an approval may stay valid
CLOCK_SKEW = datetime.timedelta(minutes=5)  # how far in the future `issued` may be (clocks differ)


class ApprovalError(PlaybookError):
    """An approval that cannot be accepted (exit 2: it does not fit this run, step or policy, or
    has expired; exit 4: its signature does not verify)."""


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


def has_policy(node: Any) -> bool:
    """Whether the step sets `approvers` or `approvals` (a bundle compiled with
    --approval-signers then accepts only signed decisions for it)."""
    return bool(getattr(node, "approvers", None)) or int(getattr(node, "approvals", 0) or 0) >= 1


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


# -- what a signature binds ---------------------------------------------------------------------
def digest(text: str) -> str:
    """SHA-256 (hex) of a question as shown (secrets masked)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def values_digest(values: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a run's values as recorded (secrets masked): canonical JSON."""
    return hashlib.sha256(_canonical(values)).hexdigest()


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _utc(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def _stamp(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def parse_duration(text: str, limit: datetime.timedelta = MAX_VALID, what: str = "--valid-for") -> datetime.timedelta:
    """A validity such as 30m, 2h, 1d: more than nothing, at most `limit` (exit 2 otherwise)."""
    match = re.match(r"^\s*(\d{1,9})\s*([mhd])\s*$", text or "")
    if not match:
        raise ApprovalError("%s takes minutes, hours or days, e.g. 30m, 2h, 1d (got %r)" % (what, text), EXIT_INVALID)
    amount, unit = int(match.group(1)), match.group(2)
    minutes = amount * {"m": 1, "h": 60, "d": 1440}[unit]
    if minutes < 1 or minutes > limit.total_seconds() / 60:
        raise ApprovalError(
            "%s %s: an approval is valid for at least a minute and at most %s" % (what, text.strip(), describe_duration(limit)),
            EXIT_INVALID,
        )
    return datetime.timedelta(minutes=minutes)


def max_valid(seconds: float | None) -> datetime.timedelta:
    """The longest validity a bundle accepts: its own bound (seconds), at most MAX_VALID."""
    if not seconds:
        return MAX_VALID
    return min(MAX_VALID, datetime.timedelta(seconds=float(seconds)))


def describe_duration(span: datetime.timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    for size, unit in ((1440, "day"), (60, "hour"), (1, "minute")):
        if minutes % size == 0:
            count = minutes // size
            return "%d %s%s" % (count, unit, "" if count == 1 else "s")
    return "%d minutes" % minutes


# -- requests: what an approver is asked to sign -------------------------------------------------
def request_document(run: Mapping[str, Any], node: Any, question: str, host: str, bundle: str | None) -> dict:
    """The request `approval request RUN NODE` exports for an approver on another machine: the
    run (its id, UID, host, runbook), the step, its question as shown and the run's values (as
    recorded: secrets masked), with the digests a signature binds, and the policy."""
    values = run.get("variables") or {}
    return {
        "playbook_approval_request": REQUEST_FORMAT,
        "run": run["id"],
        "run_uid": run["uid"],
        "host": host,
        "runbook": {"title": run.get("title"), "id": run.get("runbook_id")},
        "bundle_sha256": bundle,
        "plan": run["plan_hash"],
        "node": node.id,
        "question": question,
        "question_sha256": digest(question),
        "values": values,
        "values_sha256": values_digest(values),
        "policy": policy_of(node).describe(),
    }


def read_request(path: str) -> dict:
    """An exported request, checked for the fields a payload needs (exit 2 otherwise)."""
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
        if not isinstance(document, dict) or document.get("playbook_approval_request") != REQUEST_FORMAT:
            raise ValueError("not an approval request (made by `approval request RUN NODE -o FILE`)")
        for key, kind in (("run_uid", str), ("plan", str), ("node", str), ("question", str), ("values", dict)):
            if not isinstance(document.get(key), kind):
                raise ValueError("it has no %s" % key)
    except (OSError, ValueError) as exc:
        raise ApprovalError("%s: %s" % (path, getattr(exc, "strerror", None) or exc), EXIT_INVALID) from None
    return document


def run_payload(request: Mapping[str, Any], decision: str, principal: str, valid_for: datetime.timedelta, note: str | None = None) -> dict:
    """The payload signing `request` binds. The digests are computed here from the question and
    values the request shows (never copied from it): what is signed is what was shown."""
    subject = {
        "run_uid": request["run_uid"],
        "question": digest(request["question"]),
        "values": values_digest(request["values"]),
    }
    return _payload(subject, request["plan"], request["node"], decision, principal, valid_for, note)


def rollout_payload(rollout: str, hosts: Mapping[str, str], plan: str, node: str, decision: str, principal: str,
                    valid_for: datetime.timedelta, note: str | None = None) -> dict:
    """The payload of a fleet approval: one rollout, each host with the digest of its values."""
    subject = {"rollout": rollout, "hosts": dict(sorted(hosts.items()))}
    return _payload(subject, plan, node, decision, principal, valid_for, note)


def _payload(subject: Mapping[str, Any], plan: str, node: str, decision: str, principal: str,
             valid_for: datetime.timedelta, note: str | None) -> dict:
    issued = _now()
    data = {"namespace": SIGN_NAMESPACE, "format": FORMAT, "plan": plan, "node": node, "decision": decision,
            "principal": principal, "issued": _stamp(issued), "expires": _stamp(issued + valid_for)}
    data.update(subject)
    if note:
        data["note"] = note
    return data


def sign(data: Mapping[str, Any], key: str, ssh_keygen: str = "ssh-keygen") -> str:
    """The `ssh-keygen -Y sign` signature (armored text) of the canonical payload."""
    import subprocess

    try:
        proc = subprocess.run(
            [ssh_keygen, "-Y", "sign", "-q", "-f", key, "-n", SIGN_NAMESPACE],
            input=_canonical(data), capture_output=True, timeout=120,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ApprovalError("cannot run ssh-keygen to sign: %s" % exc, EXIT_STATE) from None
    if proc.returncode != 0:
        raise ApprovalError("ssh-keygen could not sign with %s: %s" % (key, proc.stderr.decode("utf-8", "replace").strip()), EXIT_STATE)
    return proc.stdout.decode("ascii")


def signed_document(data: Mapping[str, Any], signature: str) -> str:
    return json.dumps({"payload": data, "signature": signature}, indent=2, sort_keys=True) + "\n"


# -- checking a signed decision ------------------------------------------------------------------
@dataclass(frozen=True)
class Verified:
    decision: str
    principal: str
    fingerprint: str
    note: str
    node: str
    expires: str


@dataclass(frozen=True)
class Expected:
    """What a signed decision must bind to count in this run (the run as the host knows it)."""

    signers: str  # the allowed-signers text baked into the bundle (or recorded with the run)
    plan: str  # the plan identity the run executes
    run_uid: str
    values: str  # values_digest of the run's values as recorded
    rollout: str | None = None  # the fleet rollout the run was started by, if any
    host: str | None = None  # the host name that rollout gave this run
    max_valid: datetime.timedelta = MAX_VALID


def expected(run: Mapping[str, Any], signers: str, values: str, max_valid_seconds: float | None = None) -> Expected:
    """What a signed decision must bind to count in `run` (a run row), whose values have the
    digest `values`."""
    origin = run.get("origin") or {}
    return Expected(
        signers=signers,
        plan=run["plan_hash"],
        run_uid=run["uid"],
        values=values,
        rollout=origin.get("rollout"),
        host=origin.get("host"),
        max_valid=max_valid(max_valid_seconds),
    )


def load_document(text: str, where: str) -> tuple[dict, str]:
    """(payload, signature) of a signed approval's text (exit 2 when it is not one)."""
    try:
        document = json.loads(text)
        data, signature = document["payload"], document["signature"]
        if not isinstance(data, dict) or not isinstance(signature, str):
            raise ValueError("not an approval document")
    except (ValueError, KeyError, TypeError) as exc:
        raise ApprovalError("%s is not a signed approval: %s" % (where, exc), EXIT_INVALID) from None
    return data, signature


def read_document(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, ValueError) as exc:
        raise ApprovalError("%s: %s" % (path, getattr(exc, "strerror", None) or exc), EXIT_INVALID) from None


def check(text: str, where: str, expected: Expected, node: str | None = None, question: str | None = None,
          expiry: bool = True, ssh_keygen: str = "ssh-keygen") -> Verified:
    """Check a signed decision (the document's `text`) against this run: what it binds (run or
    rollout and host, plan, step, question, values), its expiry (unless `expiry` is False: a
    decision already acted upon while it was valid), then its signature. Raises ApprovalError
    naming the first difference (exit 2) or the failed signature (exit 4)."""
    data, signature = load_document(text, where)
    if data.get("namespace") != SIGN_NAMESPACE:
        raise ApprovalError("%s is not a Playbook approval (namespace %r)" % (where, data.get("namespace")), EXIT_INVALID)
    if data.get("format") != FORMAT:
        raise ApprovalError(
            "%s was signed by an older Playbook (it binds no run UID, question or values); sign the request again" % where,
            EXIT_INVALID,
        )
    if data.get("decision") not in ("approved", "rejected"):
        raise ApprovalError("%s has no decision" % where, EXIT_INVALID)
    node = node if node is not None else str(data.get("node"))
    _bound(where, data, expected, node, question)
    try:
        issued, expires = _utc(str(data.get("issued"))), _utc(str(data.get("expires")))
    except ValueError:
        raise ApprovalError("%s has no valid issue and expiry times" % where, EXIT_INVALID) from None
    if expires - issued > expected.max_valid:
        raise ApprovalError(
            "%s is valid for %s; this bundle accepts at most %s" % (where, expires - issued, describe_duration(expected.max_valid)),
            EXIT_INVALID,
        )
    now = _now()
    if expiry and issued > now + CLOCK_SKEW:
        raise ApprovalError("%s was issued at %s, in the future of this host's clock (%s)" % (where, data["issued"], _stamp(now)), EXIT_INVALID)
    if expiry and now > expires:
        raise ApprovalError("%s expired at %s; sign a new one" % (where, data["expires"]), EXIT_INVALID)
    principal = str(data.get("principal") or "")
    fingerprint = _ssh_verify(expected.signers, principal, data, signature, where, ssh_keygen)
    return Verified(data["decision"], principal, fingerprint, str(data.get("note") or ""), node, str(data["expires"]))


def _bound(where: str, data: Mapping[str, Any], expected: Expected, node: str, question: str | None) -> None:
    """The first way `data` binds something else than this run, step and question, as an error."""

    def differs(label: str, got: Any, want: Any) -> None:
        raise ApprovalError(
            "%s approves %s %s, not this run's %s %s: it does not belong here" % (where, label, _short(got), label, _short(want)),
            EXIT_INVALID,
        )

    if "run_uid" in data:
        if data["run_uid"] != expected.run_uid:
            differs("run uid", data["run_uid"], expected.run_uid)
        values = data.get("values")
    elif "rollout" in data:
        if data["rollout"] != expected.rollout:
            differs("rollout", data["rollout"], expected.rollout or "(none: this run was not started by a fleet rollout)")
        hosts: dict = data["hosts"] if isinstance(data.get("hosts"), dict) else {}
        if expected.host not in hosts:
            raise ApprovalError("%s approves the hosts %s of rollout %s, not %s" % (
                where, ", ".join(sorted(hosts)[:5]) or "(none)", _short(data["rollout"]), expected.host), EXIT_INVALID)
        values = hosts[expected.host]
    else:
        raise ApprovalError("%s names no run uid or rollout" % where, EXIT_INVALID)
    if data.get("plan") != expected.plan:
        differs("plan", data.get("plan"), expected.plan)
    if data.get("node") != node:
        raise ApprovalError("%s approves step %s, not %s" % (where, data.get("node"), node), EXIT_INVALID)
    if values != expected.values:
        differs("values (digest)", values, expected.values)
    if question is not None and "run_uid" in data and data.get("question") != digest(question):
        raise ApprovalError(
            "%s approves another question than %s asks now (%r): sign its request again" % (where, node, question), EXIT_INVALID
        )


def _short(value: Any) -> str:
    text = str(value)
    return text[:16] + "…" if len(text) > 20 else text


def _ssh_verify(allowed_signers: str, principal: str, data: Mapping[str, Any], signature: str, where: str, ssh_keygen: str) -> str:
    """`ssh-keygen -Y verify` of the canonical payload. The allowed signers and the signature reach
    ssh-keygen through anonymous files (/dev/fd/N), never through a directory another user could
    reach ($TMPDIR may be theirs)."""
    import subprocess

    fds = [_anonymous_file(allowed_signers.encode("utf-8")), _anonymous_file(signature.encode("ascii", "replace"))]
    try:
        proc = subprocess.run(
            [ssh_keygen, "-Y", "verify", "-f", "/dev/fd/%d" % fds[0], "-I", principal, "-n", SIGN_NAMESPACE,
             "-s", "/dev/fd/%d" % fds[1]],
            input=_canonical(data), capture_output=True, timeout=60, pass_fds=fds,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ApprovalError("cannot run ssh-keygen to verify %s: %s" % (where, exc), EXIT_STATE) from None
    finally:
        for fd in fds:
            os.close(fd)
    out = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    if proc.returncode != 0:
        reason = out.strip().splitlines()[-1] if out.strip() else "exit %d" % proc.returncode
        raise ApprovalError(
            "%s does not verify for principal %r against the bundle's approval signers (%s): refused" % (where, principal, reason),
            EXIT_STATE,
        )
    match = re.search(r"key (SHA256:\S+)", out)
    return match.group(1) if match else "?"


def _anonymous_file(data: bytes) -> int:
    """A readable descriptor holding `data` and nothing on any file system: a memfd (Linux), else
    an unlinked file in a private directory."""
    if hasattr(os, "memfd_create"):
        try:
            fd = os.memfd_create("playbook-approval", 0)  # not close-on-exec: ssh-keygen reads it
        except OSError:
            fd = -1
        if fd >= 0:
            os.write(fd, data)
            os.lseek(fd, 0, os.SEEK_SET)
            return fd
    from .private import private_tempdir

    directory = private_tempdir("playbook-approval-")
    path = os.path.join(directory, "data")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
    finally:
        try:
            os.unlink(path)
        finally:
            os.rmdir(directory)
    return fd
