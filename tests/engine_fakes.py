"""Fakes and a harness for driving `playbook.runtime.engine.Engine` in-process (tests/test_engine.py).

Only what cannot run here is faked: the process runner (scripted `CommandResult`s), the sleep
between automatic retries (recorded, never slept) and the operator (a scripted UI). The plan comes
from TOML text through the real compiler, the state is a real SQLite file, Function nodes call the
real built-in `python` plugin. This module holds no tests.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

from playbook.compiler import source
from playbook.compiler.plan import compile_source
from playbook.runtime import engine, executors, state, templating
from playbook.runtime import variables as var_mod
from playbook.runtime.plan import Plan
from playbook.runtime.plugins import PluginHost, Registry

WHO = "alice@ops-host"  # the operator the engine records as deciding
RUNBOOK_NAME = "engine.playbook.toml"
ROW_COLUMNS = "node_id, attempt, status, skip_reason, decision, decided_by"  # Run.rows() by default

# What a scripted command does: an exit code, a whole CommandResult, or a callable that gets the
# engine's on_output callback (to stream text) and returns a CommandResult or an exit code.
Outcome = Union[int, executors.CommandResult, Callable[[Any], Any]]


class FakeRunner:
    """A stand-in for `executors.run_command`: outcomes scripted per command, every call recorded.

    A command that is not scripted (or whose script is used up) succeeds with exit code 0.
    Thread-safe: in parallel mode the engine calls it from worker threads.
    """

    def __init__(self) -> None:
        self.script: dict[str, list[Outcome]] = {}
        self.calls: list[dict[str, Any]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()

    def on(self, command: str, *outcomes: Outcome) -> FakeRunner:
        self.script.setdefault(command, []).extend(outcomes)
        return self

    @property
    def commands(self) -> list[str]:
        return [call["command"] for call in self.calls]

    def __call__(
        self,
        command,
        shell=None,
        env=None,
        cwd=None,
        timeout=None,
        interactive=False,
        on_output=None,
        tail_bytes=65536,
        kill_grace=2.0,
        on_start=None,
    ):
        with self._lock:
            self.calls.append(
                dict(command=command, shell=shell, env=env, cwd=cwd, timeout=timeout, interactive=interactive)
            )
            queue = self.script.get(command) or []
            outcome = queue.pop(0) if queue else 0
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            streamed = callable(outcome)
            if streamed:
                outcome = outcome(on_output)  # it streams its own output
            if isinstance(outcome, int):
                outcome = executors.CommandResult(exit_code=outcome)
            if on_output is not None and not streamed:
                for stream in ("stdout", "stderr"):
                    text = getattr(outcome, stream)
                    if text:
                        on_output(stream, text)
            return outcome
        finally:
            with self._lock:
                self.in_flight -= 1


def result(exit_code: int = 0, stdout: str = "", stderr: str = "", **fields: Any) -> executors.CommandResult:
    return executors.CommandResult(exit_code=exit_code, stdout=stdout, stderr=stderr, **fields)


class ScriptedUI:
    """The operator: records every event and question, answers from a queue.

    `confirm` takes a bool from the queue, `choose` a key that must be among the offered ones,
    `ask_variable` a string. An empty queue raises EOFError (the terminal closed). Without a
    terminal (`interactive=False`) the engine must never ask: asking raises AssertionError.
    """

    def __init__(self, *answers: Any, interactive: bool = True) -> None:
        self.interactive = interactive
        self.answers = list(answers)
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.asked: list[tuple] = []
        self.on_question: Optional[Callable[[], None]] = None  # called at every question
        self.on_event: Optional[Callable[[str, dict], None]] = None  # called at every event

    def event(self, kind: str, **data: Any) -> None:
        self.events.append((kind, data))
        if self.on_event is not None:
            self.on_event(kind, data)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [data for k, data in self.events if k == kind]

    def _next(self, what: str) -> Any:
        if not self.interactive:
            raise AssertionError("the engine asked (%s) without a terminal" % what)
        if self.on_question is not None:
            self.on_question()
        if not self.answers:
            raise EOFError()
        return self.answers.pop(0)

    def confirm(self, node, question):
        self.asked.append(("confirm", node.id, question))
        answer = self._next("confirm %s" % node.id)
        assert isinstance(answer, bool), "scripted answer %r to a yes/no question" % (answer,)
        return answer

    def choose(self, node, question, options, critical=False):
        keys = [option[0] for option in options]
        self.asked.append(("choose", node.id, question, keys))
        answer = self._next("choose %s" % node.id)
        assert answer in keys, "scripted answer %r is not among the offered %r" % (answer, keys)
        return answer

    def ask_variable(self, name, spec):
        self.asked.append(("variable", name))
        answer = self._next("variable %s" % name)
        assert isinstance(answer, str), "scripted answer %r to a variable prompt" % (answer,)
        return answer

    def error(self, text: str) -> None:
        self.events.append(("error", {"text": text}))

    def menus(self) -> list[list[str]]:
        """The keys offered by every `choose`, in order."""
        return [entry[3] for entry in self.asked if entry[0] == "choose"]


# -- runbooks as TOML text, written by small builders -------------------------------------------
def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string
    if isinstance(value, (list, tuple)):
        return "[%s]" % ", ".join(toml_value(v) for v in value)
    if isinstance(value, dict):
        return "{%s}" % ", ".join("%s = %s" % (k, toml_value(v)) for k, v in value.items())
    raise TypeError("no TOML for %r" % (value,))


def table(name: str, **keys: Any) -> str:
    return "[%s]\n%s\n" % (name, "".join("%s = %s\n" % (k, toml_value(v)) for k, v in keys.items()))


def variables(**specs: Any) -> str:
    return table("variables", **specs)


def command(node_id: str, depends_on: Optional[list] = None, **fields: Any) -> str:
    """A Command node running `run <id>` (unless command_name is given). Without depends_on it
    follows the node declared before it (the 1.x rule); depends_on=[] means no dependency."""
    fields.setdefault("command_name", "run %s" % node_id)
    return node(node_id, "Command", depends_on, **fields)


def manual(node_id: str, depends_on: Optional[list] = None, **fields: Any) -> str:
    return node(node_id, "Manual", depends_on, **fields)


def function(node_id: str, name: str, depends_on: Optional[list] = None, **params: Any) -> str:
    """A Function node calling the built-in `python` plugin's `name` with `params`."""
    return node(node_id, "Function", depends_on, plugin="python", function=name, function_params=params)


def node(node_id: str, node_type: str, depends_on: Optional[list] = None, **fields: Any) -> str:
    if depends_on is not None:
        fields["depends_on"] = depends_on
    return table(node_id, type=node_type, **fields)


class Run:
    """One run of a runbook: the real compiler, a real SQLite store, a fresh Engine per session."""

    def __init__(self, directory: Path, body: str, var: Iterable[str] = (), header: str = "") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        text = '[runbook]\ntitle = "engine"\n%s\n%s' % (header, body)
        self.sources = var_mod.Sources.gather(list(var))
        self.plan = compile_source(source.parse(text, RUNBOOK_NAME), self.sources, bake=True).plan
        self.db_path = directory / "state.db"
        self.store = state.Store(self.db_path)
        self.run_id = self.store.create_run(
            self.plan.title, RUNBOOK_NAME, self.plan.digest(), self.plan.dumps().decode("utf-8"), {}
        )
        self.runner = FakeRunner()
        self.sleeps: list[float] = []
        self.engine: Optional[engine.Engine] = None
        self.plugins = PluginHost(Registry(entry_points={}))  # built-in plugins only
        self.record_process = None  # the engine's default: the database (a session passes its lock's)

    def session(self, ui: ScriptedUI, options: Optional[engine.Options] = None, secrets=(), resume: bool = False):
        """A new Engine for this run, as `run` (or `resume` with resume=True) builds it.
        Returns the engine, and with resume=True also the node ids `restore` found interrupted."""
        values = var_mod.resolve(
            self.plan.variables,
            self.sources,
            fixed=self.plan.values,
            prompt=ui.ask_variable if ui.interactive else None,
        )
        nodes = [templating.render_node(node, values) for node in self.plan.nodes]
        plan = self.plan
        bound = Plan(plan.runbook, plan.variables, plan.values, nodes, plan.source, plan.plugin_config)
        self.engine = engine.Engine(
            bound,
            values,
            self.store,
            self.run_id,
            ui,
            options or engine.Options(),
            plugins=self.plugins,
            who=WHO,
            secrets=secrets,
            runner=self.runner,
            sleep=self.sleeps.append,
            record_process=self.record_process,
        )
        if not resume:
            return self.engine
        self.store.mark_interrupted(self.run_id)
        return self.engine, self.engine.restore(self.store.final_attempts(self.run_id))

    def go(self, ui: ScriptedUI, options: Optional[engine.Options] = None, secrets=(), resume: bool = False):
        """Drive one session to its end; returns the engine's (status, exit code, reason)."""
        if resume:
            eng, interrupted = self.session(ui, options, secrets, resume=True)
            assert interrupted == [], "unexpected interrupted nodes %r" % interrupted
        else:
            eng = self.session(ui, options, secrets)
        return eng.run()

    # -- what the engine holds and what SQLite holds ------------------------------------------
    def statuses(self) -> dict[str, str]:
        assert self.engine is not None
        return {node_id: data.status for node_id, data in self.engine.results.items()}

    def rows(self, node_id: Optional[str] = None, columns: str = ROW_COLUMNS) -> list[tuple]:
        """Attempt rows read back from the SQLite file with a separate connection."""
        sql = "SELECT %s FROM attempts WHERE run_id = ?" % columns
        params: list[Any] = [self.run_id]
        if node_id is not None:
            sql += " AND node_id = ?"
            params.append(node_id)
        with sqlite3.connect(str(self.db_path)) as con:
            return [tuple(row) for row in con.execute(sql + " ORDER BY id", params)]

    def events(self, kind: Optional[str] = None) -> list[tuple]:
        """(kind, node_id, who, detail) of the run's audit events, from the SQLite file."""
        with sqlite3.connect(str(self.db_path)) as con:
            rows = con.execute("SELECT kind, node_id, who, detail FROM events WHERE run_id = ? ORDER BY id", (self.run_id,))
            return [tuple(row) for row in rows if kind is None or row[0] == kind]

    def close(self) -> None:
        self.plugins.close()
        self.store.close()
