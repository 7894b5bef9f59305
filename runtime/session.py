"""A run's lifecycle: start it, resume it, hold its lock, hand the plan to the engine, deal with
steps interrupted by a crash, set the final status and say how to resume.

The command line (runtime/cli.py, also inside bundles) only parses arguments and calls
`Session.start()` or `Session.resume()`; the engine only schedules. Everything that happens to a
run *around* the schedule happens here:

- variables resolved (`resolve_values`) and templates bound (`bind`) before anything is recorded;
- `start`: a new run row, then `drive`;
- `resume`: the checks (`find_resumable`), interrupted steps marked, then `drive`;
- `drive`: the run lock, the engine, signals (SIGTERM interrupts; SIGHUP lets the steps in flight
  finish and starts nothing new), the final status, the resume hint; a state-database error
  while driving stops the running steps and leaves the run resumable.

Standard library only (plus the runtime's own modules): this module goes into bundles.
"""

from __future__ import annotations

import os
import signal
import time

from . import engine as engine_mod
from . import errors
from . import variables as var_mod
from .errors import EXIT_ABORTED, EXIT_HANGUP, EXIT_INTERRUPTED, StateError, UsageError
from .plan import Plan, PlanError
from .secrets import Masker, MaskedUI
from .state import Store, backup_hook, whoami

TYPE_CHECKING = False  # typing is not imported at run time (start-up)
if TYPE_CHECKING:
    from typing import Any, Callable, Mapping


# What `resume` says of a run that succeeded (`playbook fleet` recognises it in a host's result).
ALREADY_SUCCEEDED = "succeeded; there is nothing to resume"


# -- configuration and the store -----------------------------------------------------------------

def load_config() -> Any:
    """The effective configuration (files, PLAYBOOK_ENV section, environment variables);
    a bad one stops the command with every problem listed as FILE:LINE (exit 2)."""
    from . import config

    try:
        return config.load()
    except config.ConfigError as exc:
        problems = [p.format() for p in exc.problems]
        raise UsageError(
            "invalid configuration; nothing was done:\n  %s\n(`playbook config --validate` checks the files)"
            % "\n  ".join(problems)
        ) from None


def open_store(state_path: str | None, cfg: Any = None) -> Store:
    """`state_path`, else [database] path (PLAYBOOK_DB_PATH overrides it); [database] timeout is
    SQLite's busy timeout; backup_enabled/backup_count copy the database before a migration."""
    from .private import link_problem, location_problem

    cfg = cfg if cfg is not None else load_config()
    path = state_path or os.path.expanduser(cfg.get("database", "path"))
    # a place not named on the command line (the default under $HOME, the configuration, the
    # environment) may be another user's to choose under `sudo -E`: written only when it is ours
    problem = link_problem(path) if state_path else location_problem(path)
    home = os.path.expanduser("~")
    if problem is None and not state_path and path.startswith(home.rstrip("/") + "/") and not os.path.isdir(home):
        problem = "the home directory %s does not exist, and Playbook does not create it" % home
    if problem is not None:
        where = "--state-path" if state_path else cfg.origin("database", "path")
        raise StateError(
            "the state database %s (%s) is not used: %s; give --state-path a file of your own"
            % (os.path.abspath(path), where, problem)
        )
    backup = backup_hook(cfg.get("database", "backup_count")) if cfg.get("database", "backup_enabled") else None
    store = Store(path, before_migrate=backup, timeout=cfg.get("database", "timeout"))
    errors.set_crash_dir(os.path.dirname(store.path))
    return store


# -- variables and templates ---------------------------------------------------------------------
def resolve_values(plan: Plan, sources: Any, ui: Any, interactive: bool, fixed: Mapping[str, Any] | None = None,
                   recorded_by: str | None = None) -> dict:
    """The run's variable values: given values first (checked before anyone is prompted), then
    prompts (only when `interactive`), then defaults. `fixed`: values that win (those a run
    recorded, when `recorded_by` names it)."""
    specs = dict(plan.variables)
    known = dict(plan.values, **(fixed or {}))
    prompt = None
    if interactive:

        def prompt(name: str, spec: Mapping[str, Any]) -> Any:
            return ui.ask_variable(name, spec)

        prompt.error = ui.error  # type: ignore[attr-defined]
    try:
        recorded = (recorded_by, list(fixed or ())) if recorded_by else None
        values = var_mod.resolve(specs, sources, fixed=known, prompt=prompt, recorded=recorded)
    except EOFError:
        raise UsageError("no answer for a variable (end of input)") from None
    except var_mod.VariableError as exc:
        text = str(exc)
        if not ui.interactive and "missing required" in text:
            text += "\n(there is no terminal to ask on)"
        raise UsageError(text) from None
    errors.register_secrets(secret_values(plan, values))  # error texts from here on are masked
    return values


def bind(plan: Plan, values: Mapping[str, Any]) -> Plan:
    """Render every template that waited for run-time variables. Returns the bound plan."""
    from . import templating

    runbook = dict(plan.runbook)
    problems = []
    for key in runbook.pop("templates", ()):
        try:
            runbook[key] = templating.render(runbook[key], values)
        except templating.TemplateError as exc:
            problems.append("runbook %s: %s" % (key, exc))
    nodes = []
    for node in plan.nodes:
        try:
            nodes.append(templating.render_node(node, values))
        except templating.TemplateError as exc:
            problems.append("node %s: %s" % (node.id, exc))
    if problems:
        raise UsageError("cannot render the runbook with these variables:\n  " + "\n  ".join(problems))
    return Plan(runbook, plan.variables, plan.values, nodes, plan.source, plan.plugin_config)


def secret_values(plan: Plan, values: Mapping[str, Any]) -> list[str]:
    return [str(values[k]) for k, spec in plan.variables.items() if spec.get("secret") and k in values]


def masked_values(plan: Plan, values: Mapping[str, Any]) -> dict:
    """The values as recorded in the state database: secrets replaced by the mask."""
    return var_mod.masked(dict(plan.variables, **{k: {} for k in plan.values}), values)


# -- resume checks -------------------------------------------------------------------------------
def find_resumable(store: Store, run_id: int | None, plan: Plan, force: bool = False, replan: bool = False) -> dict:
    """The run `resume` continues: the one named, else the latest failed/aborted/interrupted run
    of this runbook. Refuses another runbook's run (in every mode), a succeeded run, and a run of
    a changed plan unless `replan` (continue with the plan as it is now) or `force` (continue
    with the recorded plan)."""
    digest = plan.digest()
    identity = plan.runbook.get("id")
    if run_id is not None:
        run = store.get_run(run_id)
        if run is None:
            raise UsageError("no run %d in %s" % (run_id, store.path))
        _same_runbook(run, plan, digest)
    else:
        statuses = ("failed", "aborted", "running", "waiting")
        run = store.latest_run(runbook_id=identity, statuses=statuses) if identity else None
        run = run or store.latest_run(plan_hash=digest, statuses=statuses)  # runs recorded before identities
        if run is None:
            raise UsageError(
                "no failed or aborted run of this runbook (%s) in %s; start one with `run`" % (identity or plan.title, store.path)
            )
        run = store.get_run(run["id"]) or run
    if run["status"] == "succeeded":
        raise UsageError("run %d %s" % (run["id"], ALREADY_SUCCEEDED))
    if run["plan_hash"] != digest and not (force or replan):
        raise UsageError(
            "the runbook changed since run %d started (plan %s… now %s…): resume --replan continues it with the "
            "runbook as it is now (succeeded steps whose definition did not change keep their results); "
            "--force continues the recorded plan" % (run["id"], run["plan_hash"][:12], digest[:12])
        )
    return run


def _same_runbook(run: Mapping[str, Any], plan: Plan, digest: str) -> None:
    """Refuse another runbook's run: another identity, or (a runbook without `[runbook] id`)
    a run started from another file. A run recorded before identities named the file counts
    when its identity is this runbook's former one and it was started from a file of this name."""
    from .plan import derived_identity, runbook_identity

    theirs, ours = run.get("runbook_id"), plan.runbook.get("id")
    name = str(plan.source.get("name") or "")
    try:
        recorded_name = str(Plan.loads(run.get("plan") or "").source.get("name") or "")
    except PlanError:
        recorded_name = ""
    derived = derived_identity(plan)
    if theirs and ours:
        former = derived and theirs == runbook_identity({k: v for k, v in plan.runbook.items() if k != "id"})
        other = theirs != ours and not (former and recorded_name == name)
    else:
        other = run.get("plan_hash") != digest and run.get("title") != plan.title
    if not other and derived and recorded_name and name and recorded_name != name:
        raise UsageError(
            "run %d was started from %s, not %s: a runbook without [runbook] id is known by its title and file name; "
            "nothing was run (give both files an id if they are one runbook)" % (run["id"], recorded_name, name)
        )
    if other:
        raise UsageError(
            "run %d belongs to another runbook: %r (runbook %s), not %r (runbook %s); nothing was run "
            "(`show` lists each runbook's runs)" % (run["id"], run.get("title"), theirs or "?", plan.title, ours or "?")
        )


# The fields that decide what a step does: a succeeded step whose executable definition is
# unchanged keeps its result when a run is continued with a changed runbook (--replan).
EXECUTABLE_FIELDS = (
    "type", "command", "shell", "env", "cwd", "interactive", "plugin", "function", "function_params", "timeout",
)


def executable(node: Any) -> tuple:
    return tuple(getattr(node, field) for field in EXECUTABLE_FIELDS)


def replan_changes(old: Plan, new: Plan, prior: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """What continuing a run recorded with `old` (bound) under `new` (bound) does, given the
    run's final attempts: {"keep": succeeded steps unchanged, "rerun": succeeded steps whose
    definition changed and failed steps, "added": steps new in the runbook, "removed": steps
    no longer in it, "reapprove": steps whose approvals no longer count (`voided_approvals`)}."""
    keep, rerun = [], []
    for node in new.nodes:
        row = prior.get(node.id)
        if row is None:
            continue
        before = old.by_id.get(node.id)
        if row["status"] == "failed" or (
            row["status"] == "succeeded" and (before is None or executable(before) != executable(node))
        ):
            rerun.append(node.id)
        elif row["status"] == "succeeded":
            keep.append(node.id)
    added = [n.id for n in new.nodes if n.id not in old.by_id]
    removed = [n.id for n in old.nodes if n.id not in new.by_id]
    return {"keep": keep, "rerun": rerun, "added": added, "removed": removed, "reapprove": voided_approvals(old, new)}


VOIDED_BY_REPLAN = "approval voided by replan (question or gated steps changed)"


def question_of(node: Any) -> tuple:
    """What a person approves at a step: its question (a Manual step: also its description)."""
    if node.type == "Manual":
        return (node.description or "", node.prompt_after or engine_mod.DEFAULT_PROMPT)
    return (node.prompt_before or "", node.prompt_after or "")


def _below(plan: Plan) -> dict[str, list[str]]:
    """Each step's direct dependents (by dependency, `when` or output read)."""
    below: dict[str, list[str]] = {}
    for other in plan.nodes:
        for up in other.upstream():
            below.setdefault(up, []).append(other.id)
    return below


def gated(plan: Plan, node: Any, below: Mapping[str, list[str]] | None = None) -> list[str]:
    """The steps an approval at `node` lets run: the step itself, and for a Manual step or a
    prompt_after its transitive dependents up to (not past) the next step with a question."""
    from .approvals import has_question

    found = [node.id]
    if node.type != "Manual" and not node.prompt_after:
        return found
    below = _below(plan) if below is None else below
    todo = list(below.get(node.id, ()))
    while todo:
        step = todo.pop()
        if step in found or has_question(plan.by_id[step]):
            continue
        found.append(step)
        todo.extend(below.get(step, ()))
    return sorted(found)


def _definition(node: Any) -> tuple:
    """What a step does and when: its executable fields, its conditions and flags."""
    return executable(node) + (node.when, node.when_value, tuple(d.spec() for d in node.deps), node.skip, node.critical)


def voided_approvals(old: Plan, new: Plan) -> list[str]:
    """The steps with a question whose approvals, given before a replan, no longer count: their
    question changed, or a step they gate was added, removed or changed (`gated`)."""
    from .approvals import has_question

    voided: list[str] = []
    below_new, below_old = _below(new), _below(old)
    for node in new.nodes:
        before = old.by_id.get(node.id)
        if before is None or not has_question(node):
            continue
        if question_of(before) != question_of(node):
            voided.append(node.id)
            continue
        now, then = gated(new, node, below_new), gated(old, before, below_old)
        if now != then or any(_definition(old.by_id[i]) != _definition(new.by_id[i]) for i in now):
            voided.append(node.id)
    return voided


def replan_text(run_id: int, changes: Mapping[str, list[str]]) -> str:
    parts = []
    for key, words in (
        ("keep", "keep their results"),
        ("rerun", "run again (changed or failed)"),
        ("added", "are new"),
        ("removed", "are no longer in the runbook (recorded as removed)"),
        ("reapprove", "are asked again: %s" % VOIDED_BY_REPLAN),
    ):
        if changes.get(key):
            parts.append("  %s: %s" % (words, ", ".join(changes[key])))
    return "run %d with the runbook as it is now:\n%s" % (run_id, "\n".join(parts) or "  (no step changes)")


def recorded_values(run: Mapping[str, Any], plan: Plan) -> dict:
    """The variable values a run recorded (secrets were never stored: they are asked again)."""
    return {k: v for k, v in (run.get("variables") or {}).items() if v != var_mod.MASK and k in plan.variables}


def signed_hint(command: Callable[..., str], run_id: int, node_id: str, run: Mapping[str, Any]) -> str:
    """How to get a signed approval to a host nothing reaches, as commands to paste."""
    return (
        "%s needs a signed approval (run %d, uid %s):\n"
        "  1. here:           %s\n"
        "  2. on a workstation, with the approver's key:\n"
        "                     playbook approval sign request.json --key ~/.ssh/id_ed25519 -o approval.json\n"
        "  3. here:           %s"
        % (node_id, run_id, run.get("uid") or "?", command("approval request", run_id, node_id, "-o", "request.json"),
           command("resume", run_id, "--approval", "approval.json"))
    )


# -- driving a run -------------------------------------------------------------------------------
class _Signals:
    """While a run is driven: SIGTERM is an interrupt like Ctrl-C; SIGHUP (the operator's
    terminal or SSH session is gone) asks nothing more and starts nothing new, lets the steps in
    flight finish within their timeouts, and ends the run aborted ("terminal hung up").

    On SIGHUP the descriptors that were the terminal are pointed at /dev/null: a question being
    asked reads end of input, and nothing written to the dead terminal can fail."""

    def __init__(self, eng: engine_mod.Engine, ui: Any) -> None:
        self.eng = eng
        self.ui = ui
        self.hung_up = False
        self.previous: dict[int, Any] = {}
        self.terminal_fds = [fd for fd in (0, 1, 2) if _isatty(fd)]

    def __enter__(self) -> _Signals:
        for signum, handler in ((signal.SIGTERM, self._terminate), (signal.SIGHUP, self._hang_up)):
            try:
                self.previous[signum] = signal.signal(signum, handler)
            except ValueError:  # not the main thread
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _terminate(self, signum: int, frame: Any) -> None:
        raise engine_mod.Interrupted()

    def _hang_up(self, signum: int, frame: Any) -> None:
        self.hung_up = True
        self.eng.halt(HANGUP_REASON)
        hang_up = getattr(self.ui, "hang_up", None)
        if hang_up is not None:
            hang_up()  # writes nothing more to the dead terminal, asks nothing more
        self.ui.interactive = False
        try:
            devnull = os.open(os.devnull, os.O_RDWR)
        except OSError:
            return
        for fd in self.terminal_fds:
            try:
                os.dup2(devnull, fd)
            except OSError:
                pass
        os.close(devnull)


HANGUP_REASON = "terminal hung up"


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


class Session:
    """Drives runs of one plan against one store, through one UI.

    `command(verb, run_id, *words)` is the copy-pasteable command that continues a run (e.g.
    "playbook resume deploy.playbook.toml 7 --state-path run.db") or approves one of its steps;
    `entry_points` are a bundle's plugins (None: the installed ones)."""

    def __init__(
        self,
        store: Store,
        ui: Any,
        options: engine_mod.Options,
        command: Callable[..., str],
        entry_points: Mapping[str, str] | None = None,
        who: str | None = None,
        runner: Callable[..., Any] | None = None,
        header: str | None = None,
        origin: Mapping[str, Any] | None = None,
        software: str | None = None,
    ) -> None:
        self.store = store
        self.ui = ui
        self.options = options
        self.command = command
        self.entry_points = entry_points
        self.who = who or whoami()
        self.runner = runner
        self.header = header  # shown when a run starts (a bundle's identity)
        self.origin = dict(origin) if origin else None  # the fleet rollout that starts a new run
        self.software = software  # what a new run records as the Playbook that ran it

    def hint(self, run_id: int) -> str:
        return "resume with: %s" % self.command("resume", run_id)

    def _protect(self, plan: Plan, values: Mapping[str, Any]) -> Masker:
        """From here on the run's secret values are masked in everything written."""
        masker = Masker(secret_values(plan, values))
        errors.register_secrets(masker.secrets)
        self.store.set_mask(masker)
        if masker and not isinstance(self.ui, MaskedUI):
            self.ui = MaskedUI(self.ui, masker)
        return masker

    def start(self, plan: Plan, bound: Plan, values: Mapping[str, Any], source: str,
              before: Callable[[int], None] | None = None) -> int:
        """Record a new run of `plan` (bound with `values`) and drive it; `before(run id)` is
        called once the run is recorded, before it is driven (e.g. to record signed approvals
        given with it). Returns the exit code."""
        self._protect(plan, values)
        dumped = plan.dumps()
        run_id = self.store.create_run(
            bound.title,
            source,
            plan.digest(dumped),
            dumped.decode("utf-8"),
            masked_values(plan, values),
            trigger="run",
            runbook_id=plan.runbook.get("id"),
            origin=self.origin,
            approval_signers=self.options.approval_signers,
            software=self.software,
        )
        if before is not None:
            before(run_id)
        return self.drive(run_id, bound, values)

    def resume(
        self,
        run: Mapping[str, Any],
        bound: Plan,
        values: Mapping[str, Any],
        replan: tuple[Plan, Plan] | None = None,
    ) -> int:
        """Continue `run` (see `find_resumable`) with its recorded plan bound to `values`; with
        `replan` = (the runbook's plan now, its bound form) continue it with that plan instead."""
        run_id = run["id"]
        self._protect(bound, values)
        self.store.lock_run(run_id).release()  # refuse early when another process drives it
        self.store.mark_interrupted(run_id)
        prior = self.store.final_attempts(run_id)
        if replan is not None:
            plan, bound, prior = self._replan(run, bound, replan, values, prior)
        self.store.set_run_trigger(run_id, "resume")
        self.store.set_run_status(run_id, "running", ended=False)
        self.store.add_event(run_id, "resume", "resumed", who=self.who)
        return self.drive(run_id, bound, values, prior=prior)

    def _replan(
        self,
        run: Mapping[str, Any],
        old_bound: Plan,
        replan: tuple[Plan, Plan],
        values: Mapping[str, Any],
        prior: Mapping[str, Any],
    ) -> tuple[Plan, Plan, dict]:
        """Record that the run continues with the runbook as it is now; returns the plan, its
        bound form and the attempts that still count."""
        plan, bound = replan
        changes = replan_changes(old_bound, bound, prior)
        kept = {node_id: row for node_id, row in prior.items() if node_id in bound.by_id and node_id not in changes["rerun"]}
        for node_id in changes["reapprove"]:
            self.store.void_approvals(run["id"], node_id, VOIDED_BY_REPLAN)
            self.store.add_event(run["id"], "approval-voided", "%s: %s" % (node_id, VOIDED_BY_REPLAN), who=self.who, node_id=node_id)
            row = kept.get(node_id)
            if row is None or row["status"] != "succeeded":
                continue
            node = bound.by_id[node_id]
            if node.type == "Manual":
                del kept[node_id]  # asked again
            elif node.prompt_after:
                kept[node_id] = dict(row, status="interrupted", decision="approval-missing")  # asked again, not run again
        dumped = plan.dumps()
        digest = plan.digest(dumped)
        self.store.replan_run(run["id"], digest, dumped.decode("utf-8"), masked_values(plan, values))
        detail = "plan %s… → %s…; %s" % (
            run["plan_hash"][:12], digest[:12], replan_text(run["id"], changes).split("\n", 1)[1].strip()
        )
        self.store.add_event(run["id"], "replan", detail, who=self.who)
        for node_id in changes["removed"]:
            self.store.add_event(run["id"], "removed", "%s is no longer in the runbook" % node_id, who=self.who, node_id=node_id)
        return plan, bound, kept

    def drive(self, run_id: int, plan: Plan, values: Mapping[str, Any], prior: Mapping[str, Any] | None = None) -> int:
        """Lock the run, run the engine, record the outcome. Returns the exit code."""
        lock = self.store.lock_run(run_id)
        secrets = self._protect(plan, values).secrets
        host = None
        if any(node.type == "Function" for node in plan.nodes):  # plugins load only when used
            from . import plugins as plugins_mod

            host = plugins_mod.PluginHost(plugins_mod.Registry(entry_points=self.entry_points))
        eng = engine_mod.Engine(
            plan, values, self.store, run_id, self.ui, self.options, plugins=host, who=self.who, secrets=secrets,
            record_process=lock.record_process, verify_approval=self._approval_checker(run_id, plan, values),
            **({"runner": self.runner} if self.runner else {}),
        )
        started = time.monotonic()
        signals = _Signals(eng, self.ui)
        idle = False  # a resume that found every step at its end: nothing to run
        try:
            with lock, signals:
                interrupted = eng.restore(prior) if prior else []
                idle = prior is not None and not interrupted and all(node.id in eng.final for node in plan.nodes)
                self.ui.event("run_started", run_id=run_id, title=plan.title, nodes=len(plan.nodes), resumed=prior is not None)
                if self.header:
                    self.ui.event("message", text=self.header)
                for node_id in interrupted:
                    self._still_running(run_id, plan.by_id[node_id], (prior or {}).get(node_id) or {})
                    self._interrupted_step(eng, run_id, plan.by_id[node_id])
                status, code, reason = eng.run()
        except engine_mod.Stop as stop:  # raised while handling interrupted steps
            status, code, reason = stop.status, EXIT_ABORTED, stop.reason
        except engine_mod.Interrupted:
            return self._interrupted(run_id, plan)
        except StateError as exc:
            # the database failed under the run (locked too long, disk full): the steps in
            # flight were stopped by the engine; the run stays resumable
            raise StateError("%s; then %s" % (exc, self.hint(run_id))) from None
        finally:
            for problem in (host.close() if host is not None else None) or ():
                self.ui.event("message", text="plugin cleanup: %s" % problem)
        if signals.hung_up and not eng.completed:
            status, code, reason = "aborted", EXIT_HANGUP, HANGUP_REASON
            self.store.add_event(run_id, "hangup", "the terminal hung up; the steps in flight finished", who=self.who)
        self.store.set_run_status(run_id, status, exit_code=code)
        hint = self.hint(run_id) if status != "succeeded" and not eng.completed else None
        if status == "waiting" and eng.waiting_for and eng.waiting_signed:
            hint = signed_hint(self.command, run_id, eng.waiting_for, self.store.get_run(run_id) or {})
        elif status == "waiting" and eng.waiting_for:
            hint = "approve with: %s\nthen %s" % (self.command("approve", run_id, eng.waiting_for), hint)
        if idle and status == "failed":
            failed = [node.id for node in plan.nodes if eng.results[node.id].status == "failed"]
            reason = "nothing was left to run: every step reached its end, and %s failed (its failure was handled)" % ", ".join(failed)
            hint = (
                "to run %s again, fix the runbook and: %s; to accept it as it is: %s; or start a new run"
                % (failed[0], self.command("resume", run_id, "--replan"),
                   self.command("set-status", run_id, failed[0], "succeeded", "--reason", "checked by hand"))
            )
        counts: dict[str, int] = {}
        for result in eng.results.values():
            counts[result.status] = counts.get(result.status, 0) + 1
        self.ui.event(
            "run_finished",
            run_id=run_id,
            status=status,
            exit_code=code,
            reason=reason,
            hint=hint,
            counts=counts,
            duration=time.monotonic() - started,
        )
        return code

    def _approval_checker(self, run_id: int, plan: Plan, values: Mapping[str, Any]) -> Callable[..., Any] | None:
        """When the run accepts only signed approvals for its steps with a policy (the bundle
        running it was compiled with --approval-signers, or the one that started it was): the
        check of a signed decision against this run as it is now. None otherwise."""
        run = self.store.get_run(run_id) or {}
        signers = self.options.approval_signers or run.get("approval_signers")
        if not signers:
            return None
        from . import approvals

        digest = approvals.values_digest(masked_values(plan, values))
        expected = approvals.expected(run, signers, digest, self.options.approval_max_valid)

        def check(document: str, node_id: str, question: str, expiry: bool = True) -> Any:
            return approvals.check(document, "the signed approval of %s" % node_id, expected, node_id, question, expiry=expiry)

        return check

    def _interrupted(self, run_id: int, plan: Plan) -> int:
        reason = "interrupted by a signal"
        self.store.mark_interrupted(run_id)
        stopped = [node_id for node_id, row in self.store.final_attempts(run_id).items()
                   if row["status"] == "interrupted" and row.get("decision") != "approval-missing"
                   and node_id in plan.by_id and plan.by_id[node_id].type != "Manual"]
        self.store.set_run_status(run_id, "aborted", exit_code=EXIT_INTERRUPTED)
        self.store.add_event(run_id, "interrupted", reason, who=self.who)
        hint = self.hint(run_id)
        if stopped:  # a pasted hint must work as printed: say the choice a step stopped mid-way needs
            hint = "resume with: %s (it asks what to do with %s, which was stopped while it ran; without a terminal: %s)" % (
                self.command("resume", run_id), ", ".join(stopped), self.command("resume", run_id, "--rerun-interrupted"))
        self.ui.event("run_finished", run_id=run_id, status="aborted", exit_code=EXIT_INTERRUPTED, reason=reason, hint=hint)
        return EXIT_INTERRUPTED

    def _still_running(self, run_id: int, node: Any, row: Mapping[str, Any]) -> None:
        """A step interrupted with its runner may still be running (the runner was killed, or
        lost its terminal): never start it a second time while it does. On a terminal, offer
        to stop it; otherwise stop the resume with how to check."""
        from . import executors

        pgid, ticks = row.get("pgid"), row.get("proc_start")
        if not pgid or not executors.group_alive(pgid, ticks):
            return
        what = "%s's command from before is still running (process group %d)" % (node.id, pgid)
        if self.ui.interactive:
            choices = [("s", "stop it", "end it (SIGTERM, then SIGKILL), then decide"), ("a", "abort", "leave it running; stop here")]
            try:
                choice = self.ui.choose(node, "%s. What now?" % what, choices)
            except EOFError:
                choice = "a"
            if choice == "s":
                stopped = executors.stop_group(pgid, ticks, self.options.kill_grace)
                self.store.add_event(run_id, "decision", "%s: stopped its earlier command (process group %d)" % (node.id, pgid), who=self.who, node_id=node.id)
                if stopped:
                    return
        raise engine_mod.Stop(
            "aborted",
            "%s; it is not started again while it runs: wait for it to end (or stop it: kill -TERM -- -%d), "
            "then resume" % (what, pgid),
        )

    def _interrupted_step(self, eng: engine_mod.Engine, run_id: int, node: Any) -> None:
        """A step found `running` after a crash: re-run, mark succeeded, or abort."""
        if not self.ui.interactive:
            if not self.options.rerun_interrupted:
                raise engine_mod.Stop(
                    "aborted",
                    "%s was interrupted while it ran; check it, then resume with --rerun-interrupted to run it again "
                    "(or on a terminal to choose)" % node.id,
                )
            choice, by = "r", "--rerun-interrupted"
        else:
            choices = [
                ("r", "re-run", "run %s again from the start" % node.id),
                ("m", "mark succeeded", "record that %s finished (you checked it by hand)" % node.id),
                ("a", "abort", "stop here"),
            ]
            question = "%s was interrupted (the runner stopped while it ran). What now?" % node.id
            try:
                choice = self.ui.choose(node, question, choices)
            except EOFError:
                raise engine_mod.Stop("aborted", "no answer at the prompt (end of input)") from None
            by = self.who
        if choice == "m":
            eng.accept_status(node.id, "succeeded", self.who, "marked succeeded after an interruption")
        elif choice == "a":
            raise engine_mod.Stop("aborted", "aborted by %s at interrupted %s" % (self.who, node.id))
        else:
            self.store.add_event(run_id, "decision", "%s: re-run after interruption" % node.id, who=by, node_id=node.id)
