"""The one engine: schedules a plan per the README's Runbooks section and records every step.

The engine never prints or reads input: it emits events and asks questions through the `ui`
object it is given (a `UI`, ui.py). Processes, plugins, the clock and the state store are passed
in; one attempt of a Command or Function step is steps.py's.

Run outcome: succeeded (no node ended failed) · failed (a node ended failed, or an unhandled
failure stopped the run) · aborted (operator abort, missing approval, EOF at a prompt, signal).
"""

from __future__ import annotations

import heapq
import os
import threading
import time
from dataclasses import asdict, dataclass

from . import conditions, executors, steps, templating
from .conditions import FAILED, SKIPPED, SUCCEEDED
from .errors import EXIT_ABORTED, EXIT_FAILED, EXIT_OK
from .plan import slotted
from .secrets import Masker, MaskedUI
from .state import now_iso

TYPE_CHECKING = False  # typing is not imported at run time (start-up)
if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor
    from typing import Any, Callable, Iterable, Mapping, NoReturn, Optional, Sequence

if TYPE_CHECKING:
    from .approvals import Policy
    from .plan import Node, Plan
    from .state import Store
    from .ui import UI

    # how an attempt of a step ended: (status, the step's fields, attempt id)
    Outcome = tuple[str, dict[str, Any], int]

DEFAULT_PROMPT = "Continue?"


class Interrupted(BaseException):
    """SIGINT/SIGTERM arrived: stop everything, record, exit 130."""


class Stop(Exception):
    """The run stops here (resumable): `status` is 'failed' or 'aborted'."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class Options:
    """How a run behaves; defaults are the documented ones."""

    max_retries: int = 3  # attempts offered per node when it fails (automatic retries aside)
    parallel: int = 1  # nodes run at once
    auto_approve: bool = False  # approve every question without a terminal (recorded)
    default_timeout: float = 300  # seconds, for Command nodes without `timeout`
    rerun_interrupted: bool = False  # without a terminal, run an interrupted step again
    approve: frozenset[str] = frozenset()  # steps whose question --approve answers yes
    approval_signers: Optional[str] = None  # allowed signers: steps with a policy accept only their signatures
    approval_max_valid: Optional[float] = None  # seconds a signed approval may be valid for (None: 7 days)
    kill_grace: float = 2.0  # seconds between SIGTERM and SIGKILL

    def __post_init__(self) -> None:
        self.max_retries = max(1, int(self.max_retries))
        self.parallel = max(1, int(self.parallel))


@slotted
@dataclass
class StepResult:
    """What a step has come to so far in this run: what the schedule, `when` expressions and
    `previous_node()` see."""

    status: str = "pending"  # pending | succeeded | failed | skipped
    ran: bool = False
    exit_code: Optional[int] = None
    stdout: Optional[str] = None
    stderr: Optional[str] = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    output: Any = None  # a Function node's return value
    error: Optional[str] = None
    reason: Optional[str] = None  # why it was skipped
    attempt: Optional[int] = None
    decision: Optional[str] = None

    def update(self, **fields: Any) -> None:
        for key, value in fields.items():
            setattr(self, key, value)

    def attempt_fields(self) -> dict[str, Any]:
        """The fields of its latest attempt (not the status or skip reason)."""
        return {k: v for k, v in asdict(self).items() if k not in ("status", "reason")}


class StepOutputs(dict):
    """What previous_node(id) gives a step's fields: status, exit_code, stdout, stderr, output.
    A stream the state keeps only the end of is refused when read (exact or refused)."""

    def __init__(self, node_id: str, result: StepResult) -> None:
        super().__init__({k: getattr(result, k) for k in conditions.PREVIOUS_NODE_FIELDS})
        self.node_id = node_id
        self.cut = {s for s in ("stdout", "stderr") if getattr(result, s + "_truncated")}

    def __getitem__(self, key: str) -> Any:
        if key in self.cut:
            raise templating.TemplateError(
                "the %s of %s was longer than the state keeps; only its end is known, so it is not passed on"
                % (key, self.node_id)
            )
        return super().__getitem__(key)


class Engine:
    def __init__(
        self,
        plan: Plan,
        values: Mapping[str, Any],
        store: Store,
        run_id: int,
        ui: UI,
        options: Options | None = None,
        plugins: Any = None,
        who: str = "operator",
        secrets: Iterable[str] = (),
        runner: Callable[..., executors.CommandResult] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        record_process: Callable[[int, int, int | None], None] | None = None,
        verify_approval: Callable[..., Any] | None = None,
    ) -> None:
        self.plan = plan
        self.values = values
        self.store = store
        self.run_id = run_id
        self.options = options or Options()
        self.plugins = plugins
        self.who = who
        # every text that leaves the engine is masked where it leaves: the UI and the store
        self.mask = Masker(secrets)
        self.ui: UI = MaskedUI(ui, self.mask) if self.mask and not isinstance(ui, MaskedUI) else ui
        if self.mask:
            store.set_mask(self.mask)
        self.runner = runner or executors.run_command
        self.sleep = sleep
        # (attempt id, process group, start ticks) of a command that has started: the run's
        # lock file takes it (RunLock.record_process), else the database
        self.record_process = record_process or store.set_attempt_process
        # (signed document, step, question[, expiry=False]) -> approvals.Verified, or raises
        # ApprovalError: set when the run accepts only signed approvals for steps with a policy
        self.verify_approval = verify_approval
        self.nodes = plan.nodes
        self.index = {node.id: i for i, node in enumerate(self.nodes)}
        self.results = {node.id: StepResult() for node in self.nodes}
        self.final: set[str] = set()
        self.attempt_numbers: dict[str, int] | None = None  # node id -> its next attempt number
        self.followed: set[str] = set()
        self.awaiting_approval: dict[str, int] = {}  # node id -> attempt id whose approval is still missing
        self.completed = False  # every node reached a final state
        self.session_attempts: dict[str, int] = {}  # attempts made by this process, for --max-retries
        self._downstream: dict[str, list[str]] = {node.id: [] for node in self.nodes}
        for node in self.nodes:
            for up in node.upstream():
                self._downstream[up].append(node.id)
        self._lock = threading.Lock()
        # node id -> the node rendered at its start (or the TemplateError)
        self._prepared: dict[str, Node | templating.TemplateError] = {}
        # node id -> its node_started event (node, attempt, command, node_finished event held
        # back before it), shown once its command started
        self._announce: dict[str, tuple[Node, int, str | None, dict[str, Any] | None]] = {}
        # A step that succeeded in a chain: its result, written with the next step's row (one
        # commit instead of two) and shown once that is durable; see _drive and _flush_held.
        # ((attempt id, status, fields, ended at), node_finished event)
        self._held: tuple[tuple[int, str, dict[str, Any], str], dict[str, Any]] | None = None
        self.waiting_for: str | None = None  # the step whose approval the run waits for
        self.waiting_signed = False  # ... and whether only a signed approval will do
        self.asked = ""  # the question asked last (as shown)
        self.halted: str | None = None  # why nothing new may start (the terminal hung up), or None

    def halt(self, reason: str) -> None:
        """Start nothing new: the steps in flight finish (within their timeouts) and are
        recorded, then the run stops as aborted with `reason`. Safe from a signal handler."""
        self.halted = reason

    # -- helpers ---------------------------------------------------------------------------
    def _next_attempt(self, node_id: str) -> int:
        numbers = self.attempt_numbers
        if numbers is None:  # the attempts of earlier sessions, read once
            numbers = self.attempt_numbers = {k: n + 1 for k, n in self.store.attempt_numbers(self.run_id).items()}
        number = numbers.get(node_id, 1)
        numbers[node_id] = number + 1
        return number

    def _finish(self, node: Node, status: str, result: Mapping[str, Any] | None = None, reason: str | None = None) -> None:
        data = self.results[node.id]
        data.status = status
        if result is not None:
            data.update(**result)
        if reason:
            data.reason = reason
        self.final.add(node.id)

    # -- resume ----------------------------------------------------------------------------
    def restore(self, attempts: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """Take over the final attempts of an earlier session of this run.

        Succeeded nodes and deliberate decisions (operator skip, followed failure, set-status)
        stay final; skips decided by conditions are evaluated again; the failure that stopped
        the run is tried again. Returns the ids of nodes found `interrupted`.
        """
        interrupted = []
        for node_id, row in attempts.items():
            if node_id not in self.results:
                continue
            status = row["status"]
            decision = row.get("decision") or ""
            data = self.results[node_id]
            data.update(
                status=status,
                ran=status in (SUCCEEDED, FAILED) or row.get("exit_code") is not None,
                exit_code=row.get("exit_code"),
                stdout=row.get("stdout"),
                stderr=row.get("stderr"),
                output=row.get("output"),
            )
            if status == "interrupted" and decision == "approval-missing":
                # the step finished; only its approval is missing: ask for it, do not run it again
                self.awaiting_approval[node_id] = row["id"]
                data.status = "pending"
                continue
            keep = (
                status == SUCCEEDED
                or (status == SKIPPED and decision in ("skip", "set-status"))
                or (status == FAILED and decision in ("follow-failure", "follow-rejection", "set-status"))
            )
            if keep:
                self.final.add(node_id)
                if status == FAILED:
                    self.followed.add(node_id)
                if decision == "follow-rejection":
                    data.decision = "rejected"  # its plain dependents stay skipped
            else:
                if status == "interrupted" and self.plan.by_id[node_id].type != "Manual":
                    interrupted.append(node_id)
                data.status = "pending"
        if self.verify_approval is not None:
            self._check_signed_settlements(attempts)
        return interrupted

    def _check_signed_settlements(self, attempts: Mapping[str, Mapping[str, Any]]) -> None:
        """A run that accepts only signed approvals: a step with a policy that an earlier session
        settled as approved keeps that only while the signed decisions it used verify now (the
        record may have been written by another tool or by hand). Otherwise its question is
        asked again: a Manual step becomes pending, a Command or Function step that ran waits
        for its approval (it is not run again)."""
        from .approvals import has_policy

        for node in self.nodes:
            row = attempts.get(node.id)
            if row is None or node.id not in self.final or self.results[node.id].status != SUCCEEDED:
                continue
            if not has_policy(node) or not (node.type == "Manual" or node.prompt_after):
                continue
            why = self.backed_by_signatures(node)
            if why is None:
                continue
            self.final.discard(node.id)
            self.results[node.id].status = "pending"
            if node.type != "Manual":
                self.awaiting_approval[node.id] = row["id"]
            text = "%s: its approval no longer counts (%s); it is asked again" % (node.id, why)
            self.store.add_event(self.run_id, "approval-voided", text, node_id=node.id)
            self.ui.event("message", text=text)

    def accept_status(self, node_id: str, status: str, who: str, reason: str) -> None:
        """Settle a step by a person's decision (e.g. "it finished, I checked it by hand"):
        recorded with who and why, final for the rest of the run."""
        self.store.set_node_status(self.run_id, node_id, status, who, reason)
        self.results[node_id].status = status
        self.final.add(node_id)
        self.awaiting_approval.pop(node_id, None)

    # -- the schedule ----------------------------------------------------------------------
    def run(self) -> tuple[str, int, str | None]:
        """Drive the run to its end. Returns (status, exit code, reason)."""
        waiting, ready = self._initial()
        running: dict[Future[Outcome], Node] = {}  # future -> node
        pools: list[ThreadPoolExecutor] = []  # the thread pool, made when a second node runs at once
        try:
            while ready or running:
                self._start_ready(waiting, ready, running, pools)
                if running:
                    self._collect(waiting, ready, running)
        except Stop as stop:
            self._drain(running, waiting, ready, quiet=True)
            return stop.status, EXIT_FAILED if stop.status == FAILED else EXIT_ABORTED, self.mask.text(stop.reason)
        except (KeyboardInterrupt, Interrupted):
            executors.terminate_all(self.options.kill_grace)
            for pool in pools:
                pool.shutdown(wait=True)
            raise Interrupted() from None
        except BaseException:
            # the state database failed, or a bug: stop the steps in flight rather than let
            # them run unrecorded; their attempts stay `running` and resume asks about them
            executors.terminate_all(self.options.kill_grace)
            raise
        finally:
            try:
                self._flush_held()  # a success held back is written whatever stops the run
            finally:
                for pool in pools:
                    pool.shutdown(wait=True)
        self.completed = True
        failed = [n.id for n in self.nodes if self.results[n.id].status == FAILED]
        if failed:
            return FAILED, EXIT_FAILED, "failed: %s (every step reached its end)" % ", ".join(failed)
        return SUCCEEDED, EXIT_OK, None

    def _initial(self) -> tuple[dict[str, int], list[int]]:
        """How many unfinished upstream nodes each node waits for, and the heap of those ready
        (by position in the plan)."""
        waiting = {}
        ready = []
        for node in self.nodes:
            if node.id in self.final:
                continue
            count = sum(1 for up in node.upstream() if up not in self.final)
            waiting[node.id] = count
            if count == 0:
                ready.append(self.index[node.id])
        heapq.heapify(ready)
        return waiting, ready

    def _start_ready(
        self, waiting: dict[str, int], ready: list[int], running: dict[Future[Outcome], Node], pools: list[ThreadPoolExecutor]
    ) -> None:
        """Start ready nodes up to --parallel: skip what its conditions skip, run a node with a
        question (or everything, with --parallel 1) here, the others in the pool. A node that is
        the only one that can run (nothing in flight, nothing else ready, so nothing can become
        ready before it ends: a chain) runs here too, without a hand-off to a worker thread."""
        while ready and len(running) < self.options.parallel:
            if self.halted:
                self._flush_held()
                raise Stop("aborted", self.halted)
            node = self.nodes[heapq.heappop(ready)]
            verdict, reason = conditions.decide(node, self.results, self.values)
            if verdict == "skip":
                assert reason is not None  # decide gives the reason of every skip
                self._flush_held()
                self._skip(node, reason)
                self._release(node, waiting, ready)
                continue
            if self.options.parallel > 1 and not self._needs_prompt(node) and (running or ready or node.interactive):
                if not pools:
                    from concurrent.futures import ThreadPoolExecutor

                    pools.append(ThreadPoolExecutor(self.options.parallel, thread_name_prefix="node"))
                attempt = self._begin(node)
                running[pools[0].submit(self._attempts, node, attempt)] = node
                continue
            if running:  # prompts wait until the nodes in flight are done
                self._flush_held()
                heapq.heappush(ready, self.index[node.id])
                return
            self._drive(node)
            self._release(node, waiting, ready)
        self._flush_held()

    def _collect(self, waiting: dict[str, int], ready: list[int], running: dict[Future[Outcome], Node]) -> None:
        """Settle the nodes in flight that have finished."""
        for future in self._wait(running):
            if future not in running:  # settled already by a _drain before a prompt
                continue
            node = running.pop(future)
            outcome = future.result()
            if outcome[0] == FAILED and self._failure_needs_prompt(node) and running:
                self._drain(running, waiting, ready)  # settle prompts once nothing else is in flight
            self._settle(node, outcome)
            self._release(node, waiting, ready)

    def _wait(self, running: Mapping[Future[Outcome], Node]) -> set[Future[Outcome]]:
        from concurrent.futures import FIRST_COMPLETED, wait

        while True:
            done, _ = wait(list(running), timeout=0.5, return_when=FIRST_COMPLETED)
            if done:
                return done

    def _drain(
        self, running: dict[Future[Outcome], Node], waiting: dict[str, int], ready: list[int], quiet: bool = False
    ) -> None:
        """Finish the nodes in flight (used before a prompt and when the run stops)."""
        while running:
            for future in self._wait(running):
                node = running.pop(future)
                outcome = future.result()
                if quiet:
                    self._settle_quietly(node, outcome)
                else:
                    self._settle(node, outcome)
                self._release(node, waiting, ready)

    def _release(self, node: Node, waiting: dict[str, int], ready: list[int]) -> None:
        if node.id not in self.final:
            return
        for down in self._downstream[node.id]:
            if down in waiting:
                waiting[down] -= 1
                if waiting[down] == 0 and down not in self.final:
                    heapq.heappush(ready, self.index[down])

    def _needs_prompt(self, node: Node) -> bool:
        return node.type == "Manual" or bool(node.prompt_before) or bool(node.prompt_after)

    def _failure_needs_prompt(self, node: Node) -> bool:
        return self.ui.interactive

    # -- one node --------------------------------------------------------------------------
    def _skip(self, node: Node, reason: str, decision: str | None = None) -> None:
        self.store.record_skip(self.run_id, node.id, reason, decision=decision, decided_by=self.who if decision else None)
        self._finish(node, SKIPPED, reason=reason)
        self.ui.event("node_skipped", node=node, reason=reason)

    def _drive(self, node: Node) -> None:
        """Run one node in the main thread: approvals, attempts, the failure menu.

        A Command or Function step that succeeds here without an approval after it is held
        (_held): its result is written in one transaction with the next step's row, before
        that step's command starts, and shown when it has started (while it runs); whatever
        else comes first (a skip, a question, the end of the run, an error) writes and shows
        it before anything else happens."""
        if node.type == "Manual" or node.id in self.awaiting_approval or node.prompt_before:
            self._flush_held()
        if node.id in self.awaiting_approval:
            attempt_id = self.awaiting_approval.pop(node.id)
            self.results[node.id].update(status=SUCCEEDED, ran=True)
            self.final.add(node.id)
            self.ui.event("message", text="%s finished earlier; its approval is still needed" % node.id)
            if self._approve(node, "prompt_after", attempt_id=attempt_id):
                self.store.finish_attempt(attempt_id, SUCCEEDED, error=None)
            return
        if node.prompt_before and node.type != "Manual":
            if not self._approve(node, "prompt_before", before=True):
                return
        if node.type == "Manual":
            self._manual(node)
            return
        attempt = self._begin(node, here=True)
        self._settle(node, self._attempts(node, attempt, hold=not node.prompt_after))

    def _begin(self, node: Node, here: bool = False) -> tuple[int, int]:
        """Write the node's attempt row (with a held success before it); ``here``: the node
        runs in this thread, so the held success is shown when its command has started."""
        number = self._next_attempt(node.id)
        self.session_attempts[node.id] = self.session_attempts.get(node.id, 0) + 1
        held, self._held = self._held, None
        try:
            attempt_id = self.store.start_attempt(self.run_id, node.id, number, finished=held and held[0])
        except BaseException:
            self._held = held  # run() tries to write it alone
            raise
        finished = held and held[1]
        prepared = self._prepared[node.id] = self._prepare(node)
        if here and node.type == "Command" and not isinstance(prepared, templating.TemplateError) and not prepared.interactive:
            # shown once its command has started (see _execute): the lines are written while the
            # command runs instead of before it starts, so that they cost the step no time
            self._announce[node.id] = (node, number, prepared.command, finished)
            return attempt_id, number
        if finished:
            self.ui.event("node_finished", **finished)
        if isinstance(prepared, templating.TemplateError):
            self.ui.event("node_started", node=node, attempt=number, command=node.command)
        elif node.type == "Command" and not prepared.interactive:
            self._announce[node.id] = (node, number, prepared.command, None)
        else:
            self.ui.event("node_started", node=node, attempt=number, command=prepared.command)
        return attempt_id, number

    def _flush_held(self) -> None:
        """Write and show a success held back (see _drive), if there is one."""
        held = self._held
        if held is None:
            return
        (attempt_id, status, fields, ended), event = held
        self.store.finish_attempt(attempt_id, status, ended_at=ended, **fields)
        self._held = None
        self.ui.event("node_finished", **event)

    # -- fields rendered when the step starts ----------------------------------------------
    def _prepare(self, node: Node) -> Node | templating.TemplateError:
        """The node with the fields that wait for its start rendered (`runtime_templates`:
        those reading earlier steps' outputs or `runbook_dir`), or the TemplateError."""
        if not node.runtime_templates:
            return node
        try:
            return templating.render_node(node, self._start_values(), at_start=True)
        except templating.TemplateError as exc:
            return exc

    def _start_values(self) -> dict[str, Any]:
        """The variables, `runbook_dir` (the runbook's directory, or the copy of its files a
        bundle provides) and `previous_node(id)`: what a step's fields are rendered with."""
        values = dict(self.values)
        directory = os.environ.get(templating.RUNBOOK_DIR_ENV)
        if directory:
            values["runbook_dir"] = directory
        values["previous_node"] = self._outputs
        return values

    def _outputs(self, node_id: str) -> StepOutputs:
        """previous_node(id) in a step's fields: the step's result. A stream kept only in part
        (longer than the state database keeps) is refused rather than passed on cut."""
        result = self.results.get(node_id)
        if result is None:
            raise templating.TemplateError("previous_node(%r): there is no step %r" % (node_id, node_id))
        return StepOutputs(node_id, result)

    def question_text(self, node: Node, field: str) -> str:
        """The question a step asks (`field`: prompt_before or prompt_after; a Manual step without
        prompt_after asks DEFAULT_PROMPT). A question that reads earlier steps' outputs or
        runbook_dir is rendered now, once; every other one was rendered with the variables when
        the plan was bound, and a value in it is text, never rendered again."""
        question = getattr(node, field) or DEFAULT_PROMPT
        if field not in node.runtime_templates:
            return question
        try:
            return templating.render(question, self._start_values(), shell=templating.QUESTION)
        except templating.TemplateError as exc:
            raise Stop(FAILED, "cannot ask the question of %s: %s" % (node.id, exc)) from None

    def _attempts(self, node: Node, attempt: tuple[int, int], hold: bool = False) -> Outcome:
        """Execute with automatic retries (`retries`, `retry_delay`). Runs in a worker in parallel
        mode. ``hold``: a success is held back (see _drive)."""
        automatic = max(0, int(node.retries or 0))
        while True:
            attempt_id, number = attempt
            outcome = self._execute(node, attempt_id, number, hold)
            if outcome[0] == SUCCEEDED or automatic <= 0 or self.halted:
                return outcome
            automatic -= 1
            self.ui.event("node_retrying", node=node, attempt=number, delay=node.retry_delay or 0)
            if node.retry_delay:
                self.sleep(node.retry_delay)
            attempt = self._begin(node)

    def _execute(self, node: Node, attempt_id: int, number: int, hold: bool = False) -> Outcome:
        """One attempt of a Command or Function node; records it (a success, with ``hold``, is
        held back: see _drive). Returns (status, fields, attempt id)."""
        started = time.monotonic()
        prepared = self._prepared.pop(node.id, None) or self._prepare(node)
        if isinstance(prepared, templating.TemplateError):
            fields: dict[str, Any] = {"error": self.mask.text("cannot render the step when it starts: %s" % prepared)}
            status = FAILED
            self.ui.event("message", text="%s: %s" % (node.id, fields["error"]))
        elif node.type == "Command":
            node = prepared
            announce = [self._announce.pop(node.id, None)]

            def announced() -> None:
                """The node_started event (after the previous step's node_finished, if held
                back), once: when the command has started (or ended without)."""
                event = announce[0]
                if event is not None:
                    announce[0] = None
                    if event[3]:
                        self.ui.event("node_finished", **event[3])
                    self.ui.event("node_started", node=event[0], attempt=event[1], command=event[2])

            def on_start(pgid: int, ticks: int | None) -> None:
                self.record_process(attempt_id, pgid, ticks)
                announced()

            def on_output(stream: str, text: str) -> None:
                if announce[0] is not None:
                    announced()
                self.ui.event("node_output", node=node, stream=stream, text=text)

            try:
                status, fields, interrupted = steps.command(
                    node, self.runner, self.mask, shell=self.plan.runbook.get("shell"),
                    default_timeout=self.options.default_timeout, kill_grace=self.options.kill_grace,
                    on_output=on_output, on_start=on_start,
                )
            except BaseException:
                announced()
                self.store.finish_attempt(attempt_id, "interrupted", error="interrupted by a signal")
                raise
            announced()
            if interrupted:
                self.store.finish_attempt(attempt_id, "interrupted", **fields)
                raise Interrupted()
        else:
            node = prepared
            try:
                config = self.plan.plugin_config.get(node.plugin) if node.plugin is not None else None
                status, fields = steps.function(node, self.plugins, config or {}, self.values, self.mask)
            except (KeyboardInterrupt, Interrupted):
                self.store.finish_attempt(attempt_id, "interrupted", error="interrupted by a signal")
                raise
            if fields.get("output") is not None:
                self.ui.event("node_output", node=node, stream="output", text=str(fields["output"]) + "\n")
        data = dict(fields, ran=True)
        data["attempt"] = number
        event = {"node": node, "status": status, "attempt": number, "duration": time.monotonic() - started, "fields": fields}
        if hold and status == SUCCEEDED:
            self._held = ((attempt_id, status, fields, now_iso()), event)
        else:
            self.store.finish_attempt(attempt_id, status, **fields)
            self.ui.event("node_finished", **event)
        return status, data, attempt_id

    def _settle_quietly(self, node: Node, outcome: Outcome) -> None:
        status, data, _ = outcome
        self._finish(node, status, data)

    def _settle(self, node: Node, outcome: Outcome) -> None:
        """After the automatic attempts: approval after success, or the failure menu."""
        while True:
            status, data, attempt_id = outcome
            if status == SUCCEEDED:
                self._finish(node, SUCCEEDED, data)
                if node.prompt_after:
                    if not self._approve(node, "prompt_after", attempt_id=attempt_id):
                        return
                return
            choice = self._on_failure(node, data, attempt_id)
            if choice == "retry":
                outcome = self._attempts(node, self._begin(node))
                continue
            return

    def _on_failure(self, node: Node, data: Mapping[str, Any], attempt_id: int, rejected: bool = False) -> str | None:
        """Decide what a failed (or rejected) node leads to. Returns 'retry' or None (final).

        A rejection is never skipped: the operator asks again, follows the failure path (when
        handled) or aborts, and plain dependents of a rejected node never run."""
        if rejected:
            data = dict(data, decision="rejected")
        if not self.ui.interactive:
            return self._unattended_failure(node, data, attempt_id, rejected)
        what = "was rejected" if rejected else "failed"
        try:
            choice = self.ui.choose(node, "%s %s. What now?" % (node.id, what), self._menu(node, rejected), critical=bool(node.critical))
        except EOFError:
            self.store.set_attempt_decision(attempt_id, "abort", self.who)
            self._finish(node, FAILED, data)
            raise Stop("aborted", "no answer at the prompt (end of input)") from None
        follow = "follow-rejection" if rejected else "follow-failure"
        decision = {"r": "retry", "f": follow, "s": "skip", "a": "abort"}[choice]
        self.store.set_attempt_decision(attempt_id, decision, self.who)
        self.store.add_event(self.run_id, "decision", "%s: %s" % (node.id, decision), who=self.who, node_id=node.id)
        if choice == "r":
            return "retry"
        if choice == "f":
            self.followed.add(node.id)
            self._finish(node, FAILED, data)
            return None
        if choice == "s":
            self.store.record_skip(self.run_id, node.id, "skipped by the operator after it failed", decision="skip", decided_by=self.who)
            self._next_attempt(node.id)
            self._finish(node, SKIPPED, data, reason="operator")
            self.ui.event("node_skipped", node=node, reason="skipped by the operator after it failed")
            return None
        self._finish(node, FAILED, data)
        raise Stop("aborted", "aborted by %s at %s" % (self.who, node.id))

    def _unattended_failure(self, node: Node, data: Mapping[str, Any], attempt_id: int, rejected: bool) -> str | None:
        """Without a terminal: a handled failure follows its path; an unhandled one stops the run."""
        self._finish(node, FAILED, data)
        if node.handled:
            self.followed.add(node.id)
            follow = "follow-rejection" if rejected else "follow-failure"
            self.store.set_attempt_decision(attempt_id, follow, "automatic")
            self.ui.event("message", text="%s failed; following its failure path" % node.id)
            return None
        what = "was rejected" if rejected else "failed"
        raise Stop(FAILED, "%s %s and nothing handles its failure" % (node.id, what))

    def _menu(self, node: Node, rejected: bool) -> list[tuple[str, str, str]]:
        """The choices after a failure or a rejection (letter, name, what it does)."""
        attempts = self.session_attempts.get(node.id, 1)
        limit = self.options.max_retries
        options: list[tuple[str, str, str]] = []
        if rejected and node.type == "Manual":
            options.append(("r", "ask again", "ask the question of %s again" % node.id))
        elif attempts < limit:
            again = "run %s again and ask again" if rejected else "run %s again"
            options.append(("r", "retry", (again + " (attempt %d of %d)") % (node.id, attempts + 1, limit)))
        if node.handled:
            options.append(("f", "follow failure path", "keep %s failed and run the steps that handle its failure" % node.id))
        if not node.critical and not rejected:
            options.append(("s", "skip", "mark %s skipped and continue as if it was not needed" % node.id))
        options.append(("a", "abort", "stop the run here; it can be resumed later"))
        return options

    # -- questions and approvals ---------------------------------------------------------
    def _question(self, node: Node, field: str) -> tuple[str, str]:
        """The decision on a step's question: ("approved" | "auto-approved" | "rejected", by whom).

        Decisions recorded out of band count first (a rejection wins); then a person at the
        terminal may answer (once), or --approve NODE / --auto-approve give one approval
        without a terminal. When the step's policy still wants more approvals the run stops
        waiting (Stop "waiting"). EOFError: no answer at the terminal.

        A step with a policy in a run that accepts only signed approvals for it (`verify_approval`
        is set) counts signed decisions alone, each checked again here, when it is used: a
        decision written by another tool or by hand counts for nothing, and nobody is asked."""
        question = self.asked = self.question_text(node, field)
        from . import approvals  # loaded only when a step asks a question

        policy = approvals.policy_of(node)
        signed = self.verify_approval is not None and approvals.has_policy(node)
        flagged = False
        while True:
            decisions = self.store.approvals(self.run_id, node.id, unused=True)
            if signed:
                decisions = self._verified(node, question, decisions)
            rejection = next((d for d in decisions if d["decision"] == "rejected"), None)
            if rejection is not None:
                self.store.use_approvals(self.run_id, node.id)
                return "rejected", rejection["who"]
            counted = approvals.approvers_of(decisions, policy)
            if len(counted) >= policy.approvals:
                self.store.use_approvals(self.run_id, node.id)
                auto = all(d["how"] == "auto-approve" for d in decisions if d["decision"] == "approved")
                givers = [d["who"] for d in decisions if d["decision"] == "approved" and approvals.person(d["who"]) in counted]
                return ("auto-approved" if auto else "approved"), ", ".join(dict.fromkeys(givers))
            me = approvals.person(self.who)
            if not signed and self.ui.interactive and policy.allows(me) and me not in counted:
                self._record(node, question, self.ui.confirm(node, question), self.who, "terminal")
                continue
            if not signed and not self.ui.interactive and not flagged and (node.id in self.options.approve or self.options.auto_approve):
                flagged = True
                how = "flag" if node.id in self.options.approve else "auto-approve"
                if policy.allows(me) and me not in counted:
                    self._record(node, question, True, self.who, how)
                    continue
                self.ui.event("message", text="%s: %s does not count: %s may approve it%s" % (
                    node.id, self.who, policy.describe(), ", each person once" if me in counted else ""))
            self._wait_for_approval(node, question, policy, counted, signed)

    def _verified(self, node: Node, question: str, decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The decisions whose signed document still verifies for this run, step and question
        (each as recorded, `who` the signing principal); the others are voided, with why."""
        from .approvals import ApprovalError

        verify = self.verify_approval
        assert verify is not None
        kept = []
        for row in decisions:
            if not row.get("signature"):
                why = "not signed: this bundle accepts only signed approvals for %s" % node.id
            else:
                try:
                    verify(row["signature"], node.id, self.mask.text(question))
                    kept.append(row)
                    continue
                except ApprovalError as exc:
                    why = str(exc)
            self.store.void_approvals(self.run_id, node.id, why, ids=[row["id"]])
            text = "%s: the %s by %s does not count: %s" % (node.id, row["decision"].replace("approved", "approval").replace("rejected", "rejection"), row["who"], why)
            self.store.add_event(self.run_id, "approval-voided", text, node_id=node.id)
            self.ui.event("message", text=text)
        return kept

    def backed_by_signatures(self, node: Node) -> str | None:
        """For a step with a policy that a run accepts only signed approvals for, and that an
        earlier session settled as approved: None when the decisions it used still verify (the
        run, plan, step, question and values they bind; expiry was checked when they were
        used), else why not."""
        from . import approvals

        field = "prompt_before" if node.type != "Manual" and not node.prompt_after else "prompt_after"
        try:
            question = self.mask.text(self.question_text(node, field))
        except Stop as exc:
            return exc.reason
        verify = self.verify_approval
        assert verify is not None
        good = []
        for row in self.store.approvals(self.run_id, node.id, used=True):
            if not row.get("signature"):
                continue
            try:
                verify(row["signature"], node.id, question, expiry=False)
            except approvals.ApprovalError:
                continue
            good.append(row)
        policy = approvals.policy_of(node)
        if any(d["decision"] == "rejected" for d in good) or len(approvals.approvers_of(good, policy)) < policy.approvals:
            return "its signed approvals do not verify for this run as it is now (%s needed)" % policy.describe()
        return None

    def _record(self, node: Node, question: str, approved: bool, who: str, how: str) -> None:
        decision = "approved" if approved else "rejected"
        self.store.add_approval(self.run_id, node.id, decision, who, how)
        word = "auto-approved" if how == "auto-approve" and approved else decision
        detail = "%s: %s: %s" % (node.id, word, question)
        if how not in ("terminal", "auto-approve"):
            detail += " (by %s)" % how
        self.store.add_event(self.run_id, "approval", detail, who=who, node_id=node.id)
        self.ui.event("approval", node=node, decision=decision, who=who, how=how)

    def _wait_for_approval(
        self, node: Node, question: str, policy: Policy, counted: Sequence[str], signed: bool = False
    ) -> NoReturn:
        """Stop the run waiting for the approvals `node` still needs (`counted`: the people whose
        approvals count already)."""
        more = policy.approvals - len(counted)
        given = "; %d of %d given, by %s" % (len(counted), policy.approvals, ", ".join(counted)) if counted else ""
        detail = "%s: needed, no terminal: %s" % (node.id, question) if not self.ui.interactive else "%s: waiting: %s" % (node.id, question)
        self.store.add_event(self.run_id, "approval-needed", detail, node_id=node.id)
        self.waiting_for = node.id
        self.waiting_signed = signed
        self.ui.event("waiting", node=node, question=question, policy=policy.describe(), missing=more, signed=signed)
        wanted = "an approval" if more == 1 else "%d more approvals" % more
        if signed:
            raise Stop(
                "waiting",
                "%s waits for %s (%s%s): this bundle accepts only signed approvals for it"
                % (node.id, "a signed approval" if more == 1 else "%d more signed approvals" % more, policy.describe(), given),
            )
        raise Stop(
            "waiting",
            "%s waits for %s (%s%s): give %s with `approve`, --approve %s or --auto-approve, or on a terminal"
            % (node.id, wanted, policy.describe(), given, "it" if more == 1 else "them", node.id),
        )

    def _approve(self, node: Node, field: str, before: bool = False, attempt_id: int | None = None) -> bool:
        """Ask a Command/Function step's question (`field`: prompt_before or prompt_after). True
        when approved; otherwise the node is settled (or Stop)."""
        try:
            decision, by = self._question(node, field)
        except (EOFError, Stop) as exc:
            if attempt_id is not None:
                # the work is done but not accepted: keep it pending so a resume asks again
                self.results[node.id].status = "pending"
                self.final.discard(node.id)
                if isinstance(exc, Stop):
                    self.store.set_attempt_decision(attempt_id, "approval-missing", None)
                error = "no answer at the prompt" if isinstance(exc, EOFError) else "approval needed: %s" % self.asked
                self.store.finish_attempt(attempt_id, "interrupted", error=error)
            if isinstance(exc, EOFError):
                raise Stop("aborted", "no answer at the prompt (end of input)") from None
            raise
        if decision != "rejected":
            if attempt_id is not None:
                self.store.set_attempt_decision(attempt_id, decision, by)
            return True
        if before:
            return self._declined_before(node, by)
        # rejected after success: the result is not accepted
        assert attempt_id is not None  # asked after the step ran, so its attempt is known
        self.store.finish_attempt(attempt_id, FAILED, decision="rejected", decided_by=by, error="rejected by %s" % by)
        data = self.results[node.id].attempt_fields()
        self.final.discard(node.id)
        self._settle_rejection(node, data, attempt_id)
        return False

    def _declined_before(self, node: Node, by: str) -> bool:
        """Declined before running: do not run it (skip, not for critical steps) or abort."""
        options: list[tuple[str, str, str]] = []
        if not node.critical:
            options.append(("s", "skip", "do not run %s and continue" % node.id))
        options.append(("a", "abort", "stop the run here; it can be resumed later"))
        if not self.ui.interactive:  # declined out of band
            choice = options[0][0]
        else:
            try:
                choice = self.ui.choose(node, "%s was not started. What now?" % node.id, options, critical=bool(node.critical))
            except EOFError:
                raise Stop("aborted", "no answer at the prompt (end of input)") from None
        if choice == "s":
            reason = "skipped by the operator before it ran" if self.ui.interactive else "skipped: %s declined it before it ran" % by
            self._skip(node, reason, decision="skip")
            return False
        raise Stop("aborted", "aborted by %s before %s" % (by, node.id))

    def _settle_rejection(self, node: Node, data: Mapping[str, Any], attempt_id: int) -> None:
        self.results[node.id].status = FAILED
        choice = self._on_failure(node, data, attempt_id, rejected=True)
        if choice == "retry":
            outcome = self._attempts(node, self._begin(node)) if node.type != "Manual" else None
            if outcome is not None:
                self._settle(node, outcome)
            else:
                self._manual(node)

    def _manual(self, node: Node) -> None:
        """A Manual node: show the description, ask prompt_after; record who decided."""
        while True:
            self.ui.event("manual", node=node, description=node.description or "")
            try:
                decision, by = self._question(node, "prompt_after")
            except EOFError:
                attempt_id, _ = self._begin(node)
                self.store.finish_attempt(attempt_id, "interrupted", error="no answer at the prompt")
                raise Stop("aborted", "no answer at the prompt (end of input)") from None
            attempt_id, number = self._begin(node)
            if decision != "rejected":
                self.store.finish_attempt(attempt_id, SUCCEEDED, decision=decision, decided_by=by)
                self._finish(node, SUCCEEDED, {"ran": True, "attempt": number})
                self.ui.event("node_finished", node=node, status=SUCCEEDED, attempt=number, duration=0.0, fields={"decision": decision})
                return
            self.store.finish_attempt(attempt_id, FAILED, decision=decision, decided_by=by, error="rejected by %s" % by)
            self.ui.event("node_finished", node=node, status=FAILED, attempt=number, duration=0.0, fields={"decision": decision})
            data = {"ran": True, "attempt": number}
            if self._on_failure(node, data, attempt_id, rejected=True) != "retry":
                return
