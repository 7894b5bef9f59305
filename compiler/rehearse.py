"""`playbook test`: rehearse every path of a runbook in CI, without running anything.

A runbook is a DAG with declared conditions, so its paths can be rehearsed exactly: each
scenario goes through the real compiler, the real variable checks, the real engine
(`runtime/engine.py`: dependencies, `when`, retries, the failure menu, approvals), the real
templating and the real shell quoting. Only three things are stand-ins, passed to the engine
the way a run passes the real ones:

- the command runner returns a `CommandResult` made from the scenario's outcome; no process
  is ever started;
- the plugin host checks and converts a Function step's parameters as a run does, then
  returns the scenario's value or raises its error; it calls the real plugin function only
  when the plugin declares it `rehearse_safe` (`FunctionSignature`, runtime/plugins.py), and
  then only when the scenario gives that step no outcome;
- the operator answers the engine's questions and menus from the scenario's `answers`.

Retry delays pass on a virtual clock. Runs are recorded in an SQLite database in memory
(`Store(":memory:")`), so no state file is written; `--state-path DB` records them in a file
to look at with `playbook show --state-path DB`.

Scenarios file
--------------

`deploy.scenarios.toml` beside `deploy.playbook.toml` (or `--scenarios FILE`); its JSON Schema
is `schema/scenarios.schema.json`::

    [defaults]                      # optional: merged under every scenario (the scenario wins per key)
    vars = { APP_NAME = "myapp" }

    [[scenario]]
    name = "prod: the health check fails, the rollback runs"
    description = "…"               # optional
    vars = { ENVIRONMENT = "prod" } # variables, typed and checked as --var values are
    outcomes.health_check = { exit_code = 1, stderr = "HTTP 503" }
    answers.approve_production = "approve"
    answers.health_check = "follow" # the failure menu: follow the failure path

    [scenario.expect]
    status = "failed"               # succeeded | failed | aborted | waiting
    exit_code = 1
    ran = ["build_app", "run_tests", "security_scan", "approve_production",
           "deploy_application", "health_check", "rollback", "notify_failure"]
    skipped = ["notify_success"]
    failed = ["health_check"]

    [scenario.expect.commands]
    deploy_application = { pattern = "echo deploying .* to prod .*" }

Scenario keys (every one optional but `name`):

- `vars`: NAME = value. A required variable must be given (a secret one a stand-in value,
  never a real secret: texts in reports are masked as in a run).
- `outcomes.STEP`: what a Command or Function step does, each time it runs. A table, for a
  Command `{ exit_code = 0, stdout = "", stderr = "", duration = 0, timeout = false }` (a
  `duration` longer than the step's timeout, or `timeout = true`, is a timeout: killed after
  its `timeout`, else 300 s, the built-in default; configuration files are not read), for a
  Function `{ return = VALUE }` or `{ error = "message" }`;
  or a shorthand: an integer exit code, "success", "failure" (exit code 1, or an error) or
  "timeout". An array is a sequence: automatic `retries` and "retry" answers take the next
  one, and the last one repeats. Without an outcome a step succeeds with empty output (a
  `rehearse_safe` function is called). Manual steps take answers, not outcomes.
- `answers.STEP`: what the operator answers at that step, in order (a string or an array):
  "approve" / "reject" a question (a Manual step, `prompt_before`, `prompt_after`);
  "retry", "follow" (the failure path), "skip", "abort" at the menu after a failure or a
  rejection ("retry" after a rejection of a Manual step asks again), "skip" / "abort" after
  a declined `prompt_before`. A question with no answer left is an error naming the question
  (nothing waits), and an answer the menu does not offer (skip on a critical step) is one too.
  An answer or outcome the run never used fails the scenario.
- `interactive` (default true): false rehearses a run without a terminal (CI, cron): nothing is
  asked, a handled failure follows its path, an unhandled one stops the run, and approvals
  come from `approve = ["STEP"]` (--approve) or `auto_approve = true`.
- `who` (default "operator"): the person at the terminal, for `approvers` policies;
  `approved_by.STEP = ["alice", "bob"]`: approvals given out of band before the run
  (`playbook approve`). `max_retries` (default 3): attempts the failure menu offers.
- `expect`: what the run must come to; every key optional.
  `status`, `exit_code`, `reason` (why it stopped);
  `ran` (the steps that started: ran a command or function, or asked a Manual step's
  question; in the order they started), `skipped`, `failed`, `succeeded`, `pending` (by final
  status; order ignored): an array is the exact list, `{ includes = [...], excludes = [...] }`
  a partial check (`includes` of `ran` in order);
  `steps.STEP = { status, attempts, reason, exit_code }`;
  `commands.STEP` (the command text as `sh -c` gets it: values quoted, secrets as
  "$PLAYBOOK_SECRET_N"), `env.STEP = { NAME = … }` (the whole environment the runbook gives it,
  secrets included), `cwd.STEP` ("" for none), of the last attempt; `params.STEP = { NAME = … }`
  (a Function step's parameters, converted);
  `questions.STEP`: the question as rendered (an array: every time it was asked);
  `outputs.STEP = { status, exit_code, stdout, stderr, output }`: what `previous_node(STEP)`
  gives later steps;
  `approvals`: the decisions given on questions during the run (at the terminal, by `approve`
  or `auto_approve`; not those of `approved_by`) and the questions the run stopped waiting on,
  in order, each "STEP" or `{ step = "STEP", decision = "approved" | "rejected" | "waiting" }`.
  A string is exact, or `{ pattern = "…" }`: the runbook's own `pattern` syntax (Python `re`,
  the whole text must match, in linear time).

A scenario that names an unknown step, variable or answer, or gives a value a variable does
not accept, is a `file:line:col` error like any runbook error (exit 2), before anything runs.

Coverage (`--coverage [FILE]`, `--min-coverage N`): every step that never started, every
`:success` / `:failure` / `:done` edge never taken (its condition held and its step ran),
every `when` never true or never false, and every question never rejected, over the
scenarios rehearsed; a table, and JSON in FILE.

Generation (`--generate [-o FILE] [--max-scenarios N]`): see `generate`.
"""

from __future__ import annotations

import argparse
import difflib
import functools
import hashlib
import json
import os
import re
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from playbook.runtime import approvals as approvals_mod
from playbook.runtime import engine as engine_mod
from playbook.runtime import executors, options, patterns, session, templating, tomlfile
from playbook.runtime import plugins as plugins_mod
from playbook.runtime import variables as var_mod
from playbook.runtime.conditions import FAILED, SKIPPED, SUCCEEDED
from playbook.runtime.errors import EXIT_FAILED, EXIT_INVALID, EXIT_OK, UsageError
from playbook.runtime.plan import Node, Plan
from playbook.runtime.secrets import Masker
from playbook.runtime.state import MEMORY, Store
from playbook.runtime.suggest import did_you_mean

from . import source as source_mod
from .source import CompileError, Diagnostic

Path = Tuple[Any, ...]  # a key path in the scenarios file: ("scenario", 3, "answers", "deploy")

ANSWERS = ("approve", "reject", "retry", "follow", "skip", "abort")
MENU_KEYS = {"retry": "r", "follow": "f", "skip": "s", "abort": "a"}
RUN_STATUSES = ("succeeded", "failed", "aborted", "waiting")
STEP_STATUSES = ("succeeded", "failed", "skipped", "pending")
LISTS = ("ran", "skipped", "failed", "succeeded", "pending")
OUTPUT_FIELDS = ("status", "exit_code", "stdout", "stderr", "output")
DECISIONS = ("approved", "rejected", "waiting")
SETTINGS = ("vars", "outcomes", "answers", "interactive", "approve", "auto_approve", "approved_by", "who", "max_retries")
SCENARIO_KEYS = ("name", "description", "expect") + SETTINGS
EXPECT_KEYS = ("status", "exit_code", "reason") + LISTS + (
    "steps", "commands", "env", "cwd", "params", "questions", "outputs", "approvals",
)
DEFAULT_TIMEOUT = 300.0  # seconds: a run's [execution] default_timeout when nothing configures it
DEFAULT_WHO = "operator"
HOST = "rehearsal"  # the host part of every person in a rehearsal (`who`@rehearsal)
SOFTWARE = "playbook test (a rehearsal: no command ran)"
TAIL_BYTES = 65536  # what a run keeps of each stream (executors.run_command's tail)
DEFAULT_MAX_SCENARIOS = 40


class ScenarioError(UsageError):
    """The runbook or the scenarios file is invalid: `diagnostics` says where (exit 2).
    `report()` is what an entry point prints: each `file:line:col: error: …`, then the count."""

    def __init__(self, diagnostics: Sequence[Diagnostic], summary: str) -> None:
        super().__init__(summary)
        self.diagnostics = sorted(diagnostics, key=lambda d: (d.file or "", d.line or 0, d.col or 0))

    def report(self) -> str:
        return "\n".join([d.format() for d in self.diagnostics] + ["error: %s" % self])


class ScenarioProblem(Exception):
    """A rehearsal that cannot go on as the scenario says: a question without an answer, an
    answer the menu does not offer. The scenario fails with this message."""


# -- the scenario model ---------------------------------------------------------------------------
@dataclass
class Outcome:
    """What one execution of a Command or Function step does in a rehearsal."""

    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0
    timeout: bool = False
    returns: Any = None  # a Function's return value
    has_return: bool = False
    error: Optional[str] = None  # a Function's failure
    given: bool = True  # False: the default (success, empty output; a safe function is called)

    def to_toml(self, node_type: str) -> Any:
        """The shortest way to write it in a scenarios file."""
        if node_type == "Function":
            if self.error is not None:
                return {"error": self.error}
            return {"return": self.returns} if self.has_return else "success"
        table: Dict[str, Any] = {}
        if self.timeout:
            table["timeout"] = True
        elif self.exit_code:
            table["exit_code"] = self.exit_code
        for key in ("stdout", "stderr"):
            if getattr(self, key):
                table[key] = getattr(self, key)
        if self.duration:
            table["duration"] = self.duration
        if list(table) == ["exit_code"]:
            return self.exit_code
        if list(table) == ["timeout"]:
            return "timeout"
        return table or "success"


@dataclass
class Matcher:
    """An expected value: exact, or a `pattern` the whole text must match (linear time)."""

    value: Any = None
    pattern: Optional[str] = None

    def matches(self, actual: Any) -> bool:
        if self.pattern is not None:
            return isinstance(actual, str) and _fullmatch(self.pattern, actual)
        if isinstance(self.value, bool) or isinstance(actual, bool):
            return type(self.value) is type(actual) and self.value == actual
        return bool(self.value == actual)

    def shown(self) -> str:
        return "pattern %s" % json.dumps(self.pattern, ensure_ascii=False) if self.pattern is not None else _show(self.value)

    def to_json(self) -> Any:
        return {"pattern": self.pattern} if self.pattern is not None else self.value


@functools.lru_cache(maxsize=4096)
def _fullmatch(pattern: str, text: str) -> bool:
    """The runbook's linear-time matcher; scenarios repeat the same texts, so it is asked once."""
    return patterns.fullmatch(pattern, text)


@dataclass
class StepList:
    """An expected list of steps: exact (`exact`), or `includes` / `excludes`."""

    exact: Optional[List[str]] = None
    includes: List[str] = field(default_factory=list)
    excludes: List[str] = field(default_factory=list)


@dataclass
class Expect:
    status: Optional[str] = None
    exit_code: Optional[int] = None
    reason: Optional[Matcher] = None
    lists: Dict[str, StepList] = field(default_factory=dict)
    steps: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # step -> {status, attempts, reason, exit_code}
    commands: Dict[str, Matcher] = field(default_factory=dict)
    env: Dict[str, Dict[str, Matcher]] = field(default_factory=dict)
    cwd: Dict[str, Matcher] = field(default_factory=dict)
    params: Dict[str, Dict[str, Matcher]] = field(default_factory=dict)
    questions: Dict[str, List[Matcher]] = field(default_factory=dict)
    question_every: Dict[str, bool] = field(default_factory=dict)  # a single matcher: every time it was asked
    outputs: Dict[str, Dict[str, Matcher]] = field(default_factory=dict)
    approvals: Optional[List[Tuple[str, Optional[str]]]] = None


@dataclass
class Scenario:
    name: str
    index: int  # its position among the file's [[scenario]] tables
    description: str = ""
    vars: Dict[str, Any] = field(default_factory=dict)
    outcomes: Dict[str, List[Outcome]] = field(default_factory=dict)
    answers: Dict[str, List[str]] = field(default_factory=dict)
    interactive: bool = True
    approve: List[str] = field(default_factory=list)
    auto_approve: bool = False
    approved_by: Dict[str, List[str]] = field(default_factory=dict)
    who: str = DEFAULT_WHO
    max_retries: int = 3
    expect: Expect = field(default_factory=Expect)
    origin: Dict[Path, Path] = field(default_factory=dict)  # ("answers", step) -> where it is written
    own: set = field(default_factory=set)  # ("answers", step) / ("outcomes", step) given by the scenario itself

    def path(self, *keys: Any) -> Path:
        """Where `keys` of this scenario are written in the file (the defaults' place for what
        came from [defaults])."""
        return self.origin.get(tuple(keys), ("scenario", self.index) + tuple(keys))


@dataclass
class ScenarioFile:
    path: Optional[str]
    display: str
    sha256: str
    scenarios: List[Scenario]
    locate: Callable[[Path], Tuple[int, int]]


# -- reading a scenarios file ---------------------------------------------------------------------
_SCENARIO_HEADER = re.compile(r"\s*\[\[\s*scenario\s*\]\]\s*(#.*)?$")


def _locator(text: str) -> Callable[[Path], Tuple[int, int]]:
    """(line, col) of a key path, scenario by scenario: the file is scanned with the runbook's
    key locator (runtime/tomlfile.py), restarted at each `[[scenario]]` header so that the keys
    of the third scenario are found in the third one. The scan happens on the first question
    (only a message needs a place: a file whose scenarios all pass never pays for it)."""
    top: Dict[Tuple[str, ...], Tuple[int, int]] = {}
    maps: List[Dict[Tuple[str, ...], Tuple[int, int]]] = []
    scanned = [False]

    def locate(path: Path) -> Tuple[int, int]:
        if not scanned[0]:
            _scan_keys(text, top, maps)
            scanned[0] = True
        keys = tuple(str(p) for p in path if not isinstance(p, int))
        if len(path) >= 2 and path[0] == "scenario" and isinstance(path[1], int) and path[1] < len(maps):
            return tomlfile.find(maps[path[1]], keys)
        return tomlfile.find(top, keys)

    return locate


def _scan_keys(text: str, top: Dict[Tuple[str, ...], Tuple[int, int]], maps: List[Dict[Tuple[str, ...], Tuple[int, int]]]) -> None:
    scanner = tomlfile._KeyScanner()
    target: Optional[Dict[Tuple[str, ...], Tuple[int, int]]] = None

    def flush(done: Any, into: Optional[Dict[Tuple[str, ...], Tuple[int, int]]]) -> None:
        for path, place in done.implied.items():
            done.where.setdefault(path, place)
        for path, place in done.where.items():
            if into is not None and path[:1] == ("scenario",):
                into.setdefault(path, place)
            else:
                top.setdefault(path, place)

    for number, line in enumerate(text.split("\n"), 1):
        if scanner.closing is None and not scanner.open and _SCENARIO_HEADER.match(line):
            flush(scanner, target)
            scanner = tomlfile._KeyScanner()
            target = {}
            maps.append(target)
        scanner.line(number, line)
    flush(scanner, target)


def _show_path(path: Path) -> str:
    """`answers.deploy` for ("scenario", 3, "answers", "deploy"); `[defaults] vars.X`."""
    keys = list(path)
    prefix = ""
    if keys[:1] == ["scenario"] and len(keys) > 1 and isinstance(keys[1], int):
        keys = keys[2:]
    elif keys[:1] == ["defaults"]:
        prefix, keys = "[defaults] ", keys[1:]
    text = ""
    for key in keys:
        if isinstance(key, int):
            text += "[%d]" % key
        else:
            shown = key if re.match(r"^[A-Za-z0-9_-]+$", key) else json.dumps(key, ensure_ascii=False)
            text += ("." if text else "") + shown
    return prefix + text


class _Reader:
    """Checks a scenarios file against the runbook's plan; every problem is a Diagnostic."""

    def __init__(self, display: str, text: str, plan: Plan) -> None:
        self.display = display
        self.plan = plan
        self.nodes = plan.by_id
        self.diagnostics: List[Diagnostic] = []
        self.locate = _locator(text)
        self.bad: set = set()  # the scenarios (by index) with an error

    def error(self, message: str, path: Path, hint: Optional[str] = None) -> None:
        line, col = self.locate(path)
        self.diagnostics.append(Diagnostic("error", message, self.display, line, col, hint))
        if len(path) > 1 and path[0] == "scenario" and isinstance(path[1], int):
            self.bad.add(path[1])
        elif path[:1] == ("defaults",):
            self.bad.add(-1)

    def table(self, value: Any, path: Path, allowed: Sequence[str], what: str) -> Dict[str, Any]:
        if not isinstance(value, dict):
            self.error("%s must be a table, not %s" % (_show_path(path) or what, _type(value)), path)
            return {}
        for key in value:
            if key not in allowed:
                self.error(
                    "unknown key %r in %s" % (key, what), path + (key,),
                    hint=did_you_mean(key, allowed) or "accepted: %s" % ", ".join(allowed),
                )
        return {k: v for k, v in value.items() if k in allowed}

    def step(self, step: str, path: Path, what: str = "step") -> Optional[Node]:
        node = self.nodes.get(step)
        if node is None:
            hint = did_you_mean(step, self.nodes) or "the runbook's steps: %s" % _listing(self.nodes)
            self.error("unknown %s %r: the runbook has no step of that name" % (what, step), path, hint=hint)
        return node

    def steps(self, value: Any, path: Path) -> List[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.error("%s must be an array of step names" % _show_path(path), path)
            return []
        return [v for i, v in enumerate(value) if self.step(v, path + (i,)) is not None]

    def text(self, value: Any, path: Path) -> Optional[str]:
        if not isinstance(value, str):
            self.error("%s must be text, not %s" % (_show_path(path), _type(value)), path)
            return None
        return value

    def boolean(self, value: Any, path: Path) -> Optional[bool]:
        if not isinstance(value, bool):
            self.error("%s must be true or false, not %s" % (_show_path(path), _type(value)), path)
            return None
        return value

    def integer(self, value: Any, path: Path, least: Optional[int] = None) -> Optional[int]:
        if isinstance(value, bool) or not isinstance(value, int):
            self.error("%s must be an integer, not %s" % (_show_path(path), _type(value)), path)
            return None
        if least is not None and value < least:
            self.error("%s must be at least %d" % (_show_path(path), least), path)
            return None
        return value

    def matcher(self, value: Any, path: Path, text_only: bool = True) -> Optional[Matcher]:
        if isinstance(value, dict):
            if list(value) != ["pattern"] or not isinstance(value["pattern"], str):
                self.error("%s: a table here is { pattern = \"…\" }" % _show_path(path), path)
                return None
            try:
                patterns.compile_pattern(value["pattern"])
            except patterns.PatternError as exc:
                self.error("%s: the pattern %s" % (_show_path(path), exc), path + ("pattern",), hint=exc.hint)
                return None
            return Matcher(pattern=value["pattern"])
        if text_only and not isinstance(value, str):
            self.error("%s must be text or { pattern = \"…\" }, not %s" % (_show_path(path), _type(value)), path)
            return None
        return Matcher(value=value)

    # -- the file ------------------------------------------------------------------------------
    def read(self, data: Mapping[str, Any]) -> List[Scenario]:
        top = self.table(data, (), ("scenario", "defaults"), "the scenarios file")
        defaults = Scenario(name="", index=-1)
        if "defaults" in top:
            table = self.table(top["defaults"], ("defaults",), SETTINGS, "[defaults]")
            self.settings(defaults, table, ("defaults",))
        raw = top.get("scenario")
        if raw is None:
            self.error("no [[scenario]] table: the file rehearses nothing", ())
            return []
        if not isinstance(raw, list):
            self.error("scenario must be an array of tables: write each as [[scenario]]", ("scenario",))
            return []
        scenarios = []
        names: Dict[str, int] = {}
        for index, item in enumerate(raw):
            path: Path = ("scenario", index)
            table = self.table(item, path, SCENARIO_KEYS, "a [[scenario]]")
            name = table.get("name")
            if not isinstance(name, str) or not name.strip():
                self.error("every [[scenario]] needs a name (text)", path + (("name",) if "name" in table else ()))
                name = "scenario %d" % (index + 1)
            elif name in names:
                self.error("two scenarios are named %r (the other is scenario %d)" % (name, names[name] + 1), path + ("name",))
            names.setdefault(name, index)
            scenario = Scenario(name=name, index=index)
            if "description" in table:
                scenario.description = self.text(table["description"], path + ("description",)) or ""
            _inherit(scenario, defaults)
            self.settings(scenario, table, path)
            self.check_consistency(scenario)
            if "expect" in table:
                scenario.expect = self.expect(table["expect"], path + ("expect",))
            scenarios.append(scenario)
        return scenarios

    def settings(self, scenario: Scenario, table: Mapping[str, Any], path: Path) -> None:
        """vars, outcomes, answers and the run's settings of a scenario (or of [defaults])."""
        own = scenario.index >= 0
        if "vars" in table and not isinstance(table["vars"], dict):
            self.error("vars must be a table: vars = { NAME = value }", path + ("vars",))
        elif "vars" in table:
            for name, value in table["vars"].items():
                if name not in self.plan.variables:
                    hint = did_you_mean(name, self.plan.variables) or "the runbook's variables: %s" % (_listing(self.plan.variables) or "none")
                    self.error("unknown variable %r: the runbook does not declare it" % name, path + ("vars", name), hint=hint)
                    continue
                scenario.vars[name] = value
                scenario.origin[("vars", name)] = path + ("vars", name)
        if "outcomes" in table and isinstance(table["outcomes"], dict):
            for step, value in table["outcomes"].items():
                where = path + ("outcomes", step)
                node = self.step(step, where)
                if node is None:
                    continue
                if node.type == "Manual":
                    self.error("%s is a Manual step: it takes answers, not outcomes" % step, where, hint="answers.%s = \"approve\"" % step)
                    continue
                sequence = value if isinstance(value, list) else [value]
                if not sequence:
                    self.error("outcomes.%s is an empty array" % step, where)
                    continue
                outcomes = [self.outcome(item, where + ((i,) if isinstance(value, list) else ()), node) for i, item in enumerate(sequence)]
                if all(o is not None for o in outcomes):
                    scenario.outcomes[step] = [o for o in outcomes if o is not None]
                    scenario.origin[("outcomes", step)] = where
                    if own:
                        scenario.own.add(("outcomes", step))
        elif "outcomes" in table:
            self.error("outcomes must be a table: outcomes.STEP = …", path + ("outcomes",))
        if "answers" in table and isinstance(table["answers"], dict):
            for step, value in table["answers"].items():
                where = path + ("answers", step)
                node = self.step(step, where)
                if node is None:
                    continue
                words = value if isinstance(value, list) else [value]
                if not words:
                    self.error("answers.%s is an empty array" % step, where)
                    continue
                good = [self.answer(word, where + ((i,) if isinstance(value, list) else ()), node) for i, word in enumerate(words)]
                if all(g is not None for g in good):
                    scenario.answers[step] = [g for g in good if g is not None]
                    scenario.origin[("answers", step)] = where
                    if own:
                        scenario.own.add(("answers", step))
        elif "answers" in table:
            self.error("answers must be a table: answers.STEP = \"approve\"", path + ("answers",))
        if "interactive" in table:
            value = self.boolean(table["interactive"], path + ("interactive",))
            if value is not None:
                scenario.interactive = value
                scenario.origin[("interactive",)] = path + ("interactive",)
        if "auto_approve" in table:
            value = self.boolean(table["auto_approve"], path + ("auto_approve",))
            if value is not None:
                scenario.auto_approve = value
                scenario.origin[("auto_approve",)] = path + ("auto_approve",)
        if "approve" in table:
            steps = self.steps(table["approve"], path + ("approve",))
            for i, step in enumerate(steps):
                if not approvals_mod.has_question(self.nodes[step]):
                    self.error("%s asks no question: there is nothing to approve" % step, path + ("approve", i))
            scenario.approve = steps
            scenario.origin[("approve",)] = path + ("approve",)
        if "approved_by" in table and isinstance(table["approved_by"], dict):
            for step, names in table["approved_by"].items():
                where = path + ("approved_by", step)
                node = self.step(step, where)
                if node is None:
                    continue
                if not approvals_mod.has_question(node):
                    self.error("%s asks no question: there is nothing to approve" % step, where)
                elif not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
                    self.error("approved_by.%s must be an array of user names" % step, where)
                else:
                    scenario.approved_by[step] = list(names)
                    scenario.origin[("approved_by", step)] = where
        elif "approved_by" in table:
            self.error("approved_by must be a table: approved_by.STEP = [\"alice\"]", path + ("approved_by",))
        if "who" in table:
            who = self.text(table["who"], path + ("who",))
            if who is not None and (not who.strip() or "@" in who):
                self.error("who must be a user name (without @host)", path + ("who",))
            elif who is not None:
                scenario.who = who
        if "max_retries" in table:
            number = self.integer(table["max_retries"], path + ("max_retries",), least=1)
            if number is not None:
                scenario.max_retries = number

    def check_consistency(self, scenario: Scenario) -> None:
        if not scenario.interactive:
            for step in scenario.answers:
                self.error(
                    "answers are given at a terminal, and this scenario has interactive = false",
                    scenario.path("answers", step), hint="without a terminal approvals come from approve = [...] or auto_approve = true",
                )
                break
        else:
            for key in ("approve", "auto_approve"):
                if (key == "approve" and scenario.approve) or (key == "auto_approve" and scenario.auto_approve):
                    self.error(
                        "%s applies to a run without a terminal: add interactive = false (or answer the question in answers)" % key,
                        scenario.path(key),
                    )

    def outcome(self, value: Any, path: Path, node: Node) -> Optional[Outcome]:
        command = node.type == "Command"
        if isinstance(value, bool) or (isinstance(value, int) and not command):
            self.error("%s: a %s step's outcome is %s" % (_show_path(path), node.type, _OUTCOME_FORMS[node.type]), path)
            return None
        if isinstance(value, int):
            return Outcome(exit_code=value)
        if isinstance(value, str):
            if value == "success":
                return Outcome()
            if value == "failure":
                return Outcome(exit_code=1) if command else Outcome(error="failed (rehearsed)")
            if value == "timeout" and command:
                return Outcome(timeout=True)
            words = ("success", "failure", "timeout") if command else ("success", "failure")
            hint = did_you_mean(value, words) or "a %s step's outcome is %s" % (node.type, _OUTCOME_FORMS[node.type])
            if value == "timeout":
                hint = "a Function step has no timeout; give { error = \"…\" }"
            self.error("%s: unknown outcome %r" % (_show_path(path), value), path, hint=hint)
            return None
        keys = ("exit_code", "stdout", "stderr", "duration", "timeout") if command else ("return", "error", "duration")
        table = self.table(value, path, keys, "the outcome of %s step %s" % (node.type, node.id))
        if not isinstance(value, dict):
            return None
        outcome = Outcome()
        for key, item in table.items():
            where = path + (key,)
            if key == "exit_code":
                number = self.integer(item, where)
                if number is not None and not -64 <= number <= 255:
                    self.error("%s must be an exit code (0 to 255, or minus a signal number)" % _show_path(where), where)
                elif number is not None:
                    outcome.exit_code = number
            elif key in ("stdout", "stderr"):
                text = self.text(item, where)
                if text is not None:
                    setattr(outcome, key, text)
            elif key == "duration":
                if isinstance(item, bool) or not isinstance(item, (int, float)) or not 0 <= item <= 7 * 86400:
                    self.error("%s must be a number of seconds (0 to 604800)" % _show_path(where), where)
                else:
                    outcome.duration = float(item)
            elif key == "timeout":
                flag = self.boolean(item, where)
                outcome.timeout = bool(flag)
            elif key == "return":
                outcome.returns, outcome.has_return = item, True
            elif key == "error":
                text = self.text(item, where)
                if text is not None and not text.strip():
                    self.error("%s must say what failed" % _show_path(where), where)
                elif text is not None:
                    outcome.error = text
        if outcome.error is not None and outcome.has_return:
            self.error("%s: give return or error, not both" % _show_path(path), path)
        return outcome

    def answer(self, word: Any, path: Path, node: Node) -> Optional[str]:
        if word not in ANSWERS:
            hint = did_you_mean(str(word), ANSWERS) or "answers: %s" % ", ".join(ANSWERS)
            self.error("%s: unknown answer %r" % (_show_path(path), word), path, hint=hint)
            return None
        asks = approvals_mod.has_question(node)
        if word in ("approve", "reject") and not asks:
            self.error(
                "%s: %s asks no question, so there is nothing to %s" % (_show_path(path), node.id, word), path,
                hint="its answers are for the menu after it fails: retry, follow, skip, abort",
            )
            return None
        if word == "follow" and not node.handled:
            self.error(
                "%s: nothing handles the failure of %s, so the menu never offers follow" % (_show_path(path), node.id), path,
                hint="a step with depends_on = [\"%s:failure\"] (or :done, or has_failed) handles it" % node.id,
            )
            return None
        if word == "skip" and node.critical is True and not node.prompt_before:
            self.error("%s: %s is critical, so skip is never offered" % (_show_path(path), node.id), path)
            return None
        return str(word)

    # -- expect --------------------------------------------------------------------------------
    def expect(self, value: Any, path: Path) -> Expect:
        table = self.table(value, path, EXPECT_KEYS, "expect")
        expect = Expect()
        for key, item in table.items():
            where = path + (key,)
            if key == "status":
                if item not in RUN_STATUSES:
                    self.error("expect.status: unknown run status %r" % (item,), where, hint=did_you_mean(str(item), RUN_STATUSES) or "one of %s" % ", ".join(RUN_STATUSES))
                else:
                    expect.status = item
            elif key == "exit_code":
                expect.exit_code = self.integer(item, where)
            elif key == "reason":
                expect.reason = self.matcher(item, where)
            elif key in LISTS:
                steps = self.step_list(item, where)
                if steps is not None:
                    expect.lists[key] = steps
            elif key == "steps":
                for step, spec in self.step_table(item, where).items():
                    checked = self.step_expect(spec, where + (step,))
                    expect.steps[step] = checked
            elif key in ("commands", "cwd"):
                for step, spec in self.step_table(item, where, "Command").items():
                    found = self.matcher(spec, where + (step,))
                    if found is not None:
                        getattr(expect, key)[step] = found
            elif key in ("env", "params", "outputs"):
                kind = {"env": "Command", "params": "Function", "outputs": None}[key]
                for step, spec in self.step_table(item, where, kind).items():
                    spot = where + (step,)
                    if not isinstance(spec, dict):
                        self.error("expect.%s.%s must be a table" % (key, step), spot)
                        continue
                    allowed = list(spec) if key != "outputs" else OUTPUT_FIELDS
                    found_table: Dict[str, Matcher] = {}
                    for name, wanted in self.table(spec, spot, allowed, "expect.%s.%s" % (key, step)).items():
                        found = self.matcher(wanted, spot + (name,), text_only=key == "env")
                        if found is not None:
                            found_table[name] = found
                    getattr(expect, key)[step] = found_table
            elif key == "questions":
                for step, spec in self.step_table(item, where).items():
                    spot = where + (step,)
                    if not approvals_mod.has_question(self.nodes[step]):
                        self.error("expect.questions.%s: %s asks no question" % (step, step), spot)
                        continue
                    many = isinstance(spec, list)
                    found_list = [self.matcher(q, spot + ((i,) if many else ())) for i, q in enumerate(spec if many else [spec])]
                    if all(f is not None for f in found_list):
                        expect.questions[step] = [f for f in found_list if f is not None]
                        expect.question_every[step] = not many
            elif key == "approvals":
                expect.approvals = self.approvals(item, where)
        return expect

    def step_list(self, value: Any, path: Path) -> Optional[StepList]:
        if isinstance(value, list):
            return StepList(exact=self.steps(value, path))
        table = self.table(value, path, ("includes", "excludes"), "expect.%s" % path[-1])
        if not isinstance(value, dict):
            return None
        return StepList(
            includes=self.steps(table.get("includes", []), path + ("includes",)),
            excludes=self.steps(table.get("excludes", []), path + ("excludes",)),
        )

    def step_table(self, value: Any, path: Path, kind: Optional[str] = None) -> Dict[str, Any]:
        if not isinstance(value, dict):
            self.error("expect.%s must be a table of steps" % path[-1], path)
            return {}
        found = {}
        for step, spec in value.items():
            node = self.step(step, path + (step,))
            if node is None:
                continue
            if kind is not None and node.type != kind:
                self.error("expect.%s.%s: %s is a %s step; only %s steps have %s" % (path[-1], step, step, node.type, kind, path[-1]), path + (step,))
                continue
            found[step] = spec
        return found

    def step_expect(self, spec: Any, path: Path) -> Dict[str, Any]:
        table = self.table(spec, path, ("status", "attempts", "reason", "exit_code"), "expect.steps.%s" % path[-1])
        checked: Dict[str, Any] = {}
        for key, item in table.items():
            where = path + (key,)
            if key == "status":
                if item not in STEP_STATUSES:
                    self.error("%s: unknown step status %r" % (_show_path(where), item), where, hint=did_you_mean(str(item), STEP_STATUSES) or "one of %s" % ", ".join(STEP_STATUSES))
                else:
                    checked[key] = item
            elif key in ("attempts", "exit_code"):
                number = self.integer(item, where, least=0 if key == "attempts" else None)
                if number is not None:
                    checked[key] = number
            else:
                found = self.matcher(item, where)
                if found is not None:
                    checked[key] = found
        return checked

    def approvals(self, value: Any, path: Path) -> Optional[List[Tuple[str, Optional[str]]]]:
        if not isinstance(value, list):
            self.error("expect.approvals must be an array", path)
            return None
        found: List[Tuple[str, Optional[str]]] = []
        for i, item in enumerate(value):
            where = path + (i,)
            if isinstance(item, str):
                if self.step(item, where) is not None:
                    found.append((item, None))
                continue
            table = self.table(item, where, ("step", "decision"), "an approval")
            step = table.get("step")
            if not isinstance(step, str):
                self.error("an approval names its step: { step = \"…\", decision = \"approved\" }", where)
                continue
            if self.step(step, where + ("step",)) is None:
                continue
            decision = table.get("decision")
            if decision is not None and decision not in DECISIONS:
                self.error("unknown decision %r" % (decision,), where + ("decision",), hint=did_you_mean(str(decision), DECISIONS) or "one of %s" % ", ".join(DECISIONS))
                continue
            found.append((step, decision))
        return found


_OUTCOME_FORMS = {
    "Command": "an exit code, \"success\", \"failure\", \"timeout\" or { exit_code, stdout, stderr, duration, timeout }",
    "Function": "\"success\", \"failure\", { return = … } or { error = \"…\" }",
}


def _inherit(scenario: Scenario, defaults: Scenario) -> None:
    """Start a scenario from [defaults] (copies: the scenario's own keys replace them)."""
    scenario.vars = dict(defaults.vars)
    scenario.outcomes = dict(defaults.outcomes)
    scenario.answers = {k: list(v) for k, v in defaults.answers.items()}
    scenario.interactive = defaults.interactive
    scenario.approve = list(defaults.approve)
    scenario.auto_approve = defaults.auto_approve
    scenario.approved_by = dict(defaults.approved_by)
    scenario.who = defaults.who
    scenario.max_retries = defaults.max_retries
    scenario.origin = dict(defaults.origin)


def _type(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "text", list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


def _listing(names: Any, limit: int = 12) -> str:
    names = list(names)
    return ", ".join(names[:limit]) + (" …" if len(names) > limit else "")


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def load_scenarios(path: Optional[str], plan: Plan, text: Optional[str] = None, display: Optional[str] = None,
                   check: Optional[Callable[[ScenarioFile, Scenario], List[Diagnostic]]] = None) -> ScenarioFile:
    """Read and check a scenarios file (or `text`) against `plan`; raises ScenarioError with
    every problem at its file:line:col. `check(file, scenario)`: more problems of a scenario
    that reads well (its variables' values, see Prepared)."""
    display = display or (source_mod.relative_display(path) if path else "<scenarios>")
    if text is None:
        assert path is not None
        try:
            with open(path, "rb") as handle:
                raw = handle.read()
        except OSError as exc:
            raise ScenarioError([Diagnostic("error", "cannot read scenarios: %s" % (exc.strerror or exc), display)], "cannot read %s" % display) from None
        try:
            text = tomlfile.decode(raw)
        except tomlfile.TomlError as exc:
            raise ScenarioError([Diagnostic("error", exc.message, display, exc.line, exc.col)], "%s is not valid" % display) from None
    else:
        raw = text.encode("utf-8")
    try:
        data = tomlfile.plain(tomlfile.loads(text))
    except tomlfile.TomlError as exc:
        raise ScenarioError([Diagnostic("error", exc.message, display, exc.line, exc.col)], "%s is not valid TOML" % display) from None
    reader = _Reader(display, text, plan)
    scenarios = reader.read(data)
    loaded = ScenarioFile(path, display, hashlib.sha256(raw).hexdigest(), scenarios, reader.locate)
    problems = list(reader.diagnostics)
    if check is not None and -1 not in reader.bad:
        for scenario in scenarios:
            if scenario.index not in reader.bad:
                problems.extend(check(loaded, scenario))
    if problems:
        raise ScenarioError(problems, _errors_summary(display, problems))
    return loaded


def _errors_summary(display: str, diagnostics: Sequence[Diagnostic]) -> str:
    count = sum(1 for d in diagnostics if d.severity == "error")
    return "%s has %d error%s; no scenario was rehearsed" % (display, count, "" if count == 1 else "s")


# -- one rehearsal --------------------------------------------------------------------------------
@dataclass
class Call:
    """What a step's execution was given: a command, or a function call."""

    command: Optional[str] = None
    env: Optional[Dict[str, str]] = None
    cwd: Optional[str] = None
    shell: Any = None
    timeout: Optional[float] = None
    params: Optional[Dict[str, Any]] = None


@dataclass
class Asked:
    """One question or menu the engine put to the operator."""

    step: str
    kind: str  # "question" | "menu"
    text: str
    answer: str
    offered: List[str] = field(default_factory=list)


class _Log:
    """What happened during one rehearsal, as the engine showed it."""

    def __init__(self) -> None:
        self.started: List[str] = []
        self.attempts: Dict[str, int] = {}
        self.skipped: List[str] = []
        self.calls: Dict[str, List[Call]] = {}
        self.questions: Dict[str, List[str]] = {}
        self.asked: List[Asked] = []
        self.approvals: List[Dict[str, Any]] = []
        self.current: Optional[str] = None
        self.clock = 0.0  # virtual seconds: outcomes' durations and retry delays

    def start(self, step: str) -> None:
        self.current = step
        if step not in self.attempts:
            self.started.append(step)
            self.attempts[step] = 0
        self.attempts[step] += 1

    def sleep(self, seconds: float) -> None:
        self.clock += float(seconds)


class _Queues:
    """A scenario's outcomes: each step's sequence, the last one repeating; what was used."""

    def __init__(self, outcomes: Mapping[str, List[Outcome]]) -> None:
        self.outcomes = outcomes
        self.used: Dict[str, int] = {}

    def take(self, step: str) -> Outcome:
        sequence = self.outcomes.get(step)
        if not sequence:
            return Outcome(given=False)
        number = self.used.get(step, 0)
        self.used[step] = number + 1
        return sequence[min(number, len(sequence) - 1)]


class _Operator:
    """The person at the terminal, answering from the scenario (interactive), or nobody."""

    def __init__(self, log: _Log, answers: Mapping[str, List[str]], interactive: bool,
                 explore: Optional[Callable[[str, str, str, List[str]], str]] = None) -> None:
        self.log = log
        self.pending = {step: list(words) for step, words in answers.items()}
        self.interactive = interactive
        self.explore = explore  # when generating: the answer to give when the scenario has none
        self.engine: Optional[engine_mod.Engine] = None

    def event(self, kind: str, **data: Any) -> None:
        node: Any = data.get("node")
        if kind == "manual" or (kind == "node_started" and node.type != "Manual"):  # (a Manual step: both)
            self.log.start(node.id)
        elif kind == "node_skipped":
            self.log.skipped.append(node.id)
        elif kind == "approval":
            self.log.approvals.append({"step": node.id, "decision": data["decision"], "how": data.get("how"), "who": data.get("who")})
            if data.get("how") != "terminal" and self.engine is not None:  # --approve, --auto-approve
                self.log.questions.setdefault(node.id, []).append(self.engine.mask.text(self.engine.asked))
        elif kind == "waiting":
            self.log.approvals.append({"step": node.id, "decision": "waiting", "how": None, "who": None})
            if not self.interactive:
                self.log.questions.setdefault(node.id, []).append(data.get("question") or "")

    def _next(self, node: Any, kind: str, text: str, offered: List[str]) -> str:
        queue = self.pending.get(node.id)
        if queue:
            return queue.pop(0)
        if self.explore is not None:
            return self.explore(node.id, kind, text, offered)
        expected = "approve or reject" if kind == "question" else " or ".join(offered)
        used = " (its answers were all used)" if node.id in self.pending else ""
        raise ScenarioProblem(
            "no answer for the %s of %s%s: %r; give answers.%s (%s)" % (kind, node.id, used, text, node.id, expected)
        )

    def confirm(self, node: Any, question: str) -> bool:
        self.log.questions.setdefault(node.id, []).append(question)
        answer = self._next(node, "question", question, ["approve", "reject"])
        self.log.asked.append(Asked(node.id, "question", question, answer, ["approve", "reject"]))
        if answer not in ("approve", "reject"):
            raise ScenarioProblem(
                "answers.%s: %r does not answer the question %r (approve or reject)" % (node.id, answer, question)
            )
        return answer == "approve"

    def choose(self, node: Any, question: str, options: List[Any], critical: bool = False) -> str:
        keys = {option[0]: option[1] for option in options}
        offered = [word for word, key in MENU_KEYS.items() if key in keys]
        answer = self._next(node, "menu", question, offered)
        self.log.asked.append(Asked(node.id, "menu", question, answer, offered))
        key = MENU_KEYS.get(answer)
        if key is None or key not in keys:
            raise ScenarioProblem(
                "answers.%s: %r is not offered at %r (offered: %s)" % (node.id, answer, question, ", ".join(offered))
            )
        return key

    def ask_variable(self, name: str, spec: Any) -> str:
        raise EOFError()

    def error(self, text: str) -> None:
        pass


class _NoTerminal:
    """The `ui` resolve_values is given: it never prompts."""

    interactive = False

    def error(self, text: str) -> None:
        pass


class _Runner:
    """The engine's command runner in a rehearsal: starts nothing, returns the outcome.

    `execute`: instead, a real runner to delegate to (the property test compares a rehearsal
    with a real run through the same operator)."""

    def __init__(self, log: _Log, queues: _Queues, execute: Optional[Callable[..., executors.CommandResult]] = None) -> None:
        self.log = log
        self.queues = queues
        self.execute = execute

    def __call__(
        self,
        command: str,
        shell: Any = None,
        env: Optional[Dict[str, Any]] = None,
        cwd: Optional[str] = None,
        timeout: Optional[float] = None,
        interactive: bool = False,
        on_output: Optional[Callable[[str, str], object]] = None,
        tail_bytes: int = TAIL_BYTES,
        kill_grace: float = 2.0,
        on_start: Optional[Callable[[int, Optional[int]], object]] = None,
    ) -> executors.CommandResult:
        call = Call(command=str(command), env=dict(env) if env else {}, cwd=cwd, shell=shell, timeout=timeout)
        if self.execute is not None:
            def started(pgid: int, ticks: Optional[int]) -> None:
                if on_start is not None:
                    on_start(pgid, ticks)  # the engine records the process and announces the step
                self.log.calls.setdefault(self.log.current or "?", []).append(call)

            return self.execute(command, shell=shell, env=env, cwd=cwd, timeout=timeout, interactive=interactive,
                                on_output=on_output, tail_bytes=tail_bytes, kill_grace=kill_grace, on_start=started)
        if on_start is not None:
            on_start(0, None)  # as a started command does: the engine announces the step
        step = self.log.current or "?"
        self.log.calls.setdefault(step, []).append(call)
        outcome = self.queues.take(step)
        limit = DEFAULT_TIMEOUT if timeout is None else float(timeout)
        if outcome.timeout or outcome.duration > limit:
            self.log.clock += limit
            return executors.CommandResult(
                exit_code=outcome.exit_code if outcome.exit_code else -15,
                stdout=_tail(outcome.stdout, tail_bytes)[0], stderr=_tail(outcome.stderr, tail_bytes)[0],
                timed_out=True, duration=limit,
                error="timed out after %s s (process group terminated)" % _seconds(limit),
            )
        self.log.clock += outcome.duration
        stdout, out_cut = _tail(outcome.stdout, tail_bytes)
        stderr, err_cut = _tail(outcome.stderr, tail_bytes)
        error = None
        if outcome.exit_code < 0:
            error = "killed by %s" % _signal_name(-outcome.exit_code)
        return executors.CommandResult(
            exit_code=outcome.exit_code, stdout=stdout, stderr=stderr, stdout_truncated=out_cut,
            stderr_truncated=err_cut, error=error, duration=outcome.duration,
        )


def _tail(text: str, limit: int) -> Tuple[str, bool]:
    """What a run keeps of a stream: its last `limit` bytes, and whether that cut it."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text, False
    return data[-limit:].decode("utf-8", "ignore"), True


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return "signal %d" % number


class _Functions:
    """The plugin host of a rehearsal. Parameters are checked and converted as a run does; then
    the scenario's outcome decides, or the real function runs when its plugin declares it
    `rehearse_safe`; any other function never runs (success, no output)."""

    def __init__(self, registry: plugins_mod.Registry, host: plugins_mod.PluginHost, log: _Log, queues: _Queues) -> None:
        self.registry = registry
        self.host = host
        self.log = log
        self.queues = queues

    def call(self, plugin: str, function: str, params: Optional[Dict[str, Any]] = None,
             config: Optional[Dict[str, Any]] = None, where: Optional[str] = None) -> Any:
        step = where[5:] if where and where.startswith("node ") else (self.log.current or "?")
        signature = self.registry.signature(plugin, function)
        converted, problems = plugins_mod.check_params(signature, params)
        self.log.calls.setdefault(step, []).append(Call(params=converted))
        if problems:
            raise plugins_mod.PluginError("%s.%s: %s" % (plugin, function, "; ".join(problems)))
        outcome = self.queues.take(step)
        self.log.clock += outcome.duration
        if outcome.error is not None:
            raise plugins_mod.PluginError(outcome.error)
        if outcome.has_return:
            return outcome.returns
        if not outcome.given and getattr(signature, "rehearse_safe", False):
            return self.host.call(plugin, function, params, config, where)
        return None


@dataclass
class StepView:
    """A step at the end of a rehearsal: what previous_node() would give, and how it ended."""

    status: str
    reason: Optional[str]
    exit_code: Optional[int]
    stdout: Optional[str]
    stderr: Optional[str]
    output: Any
    attempts: int


@dataclass
class Mismatch:
    """One expectation the rehearsal did not meet (or an unused answer, or a problem)."""

    path: Path
    what: str  # `expect.commands.deploy` or a sentence
    lines: List[str]  # the diff, already masked

    def to_json(self, locate: Callable[[Path], Tuple[int, int]]) -> Dict[str, Any]:
        line, col = locate(self.path)
        return {"key": self.what, "line": line, "col": col, "diff": self.lines}


@dataclass
class Result:
    scenario: Scenario
    status: str
    exit_code: int
    reason: Optional[str]
    steps: Dict[str, StepView]
    started: List[str]
    calls: Dict[str, List[Call]]
    questions: Dict[str, List[str]]
    approvals: List[Dict[str, Any]]
    asked: List[Asked]
    masker: Masker
    problem: Optional[str] = None  # the rehearsal could not go on (no answer, …)
    unused: List[Mismatch] = field(default_factory=list)
    mismatches: List[Mismatch] = field(default_factory=list)
    seconds: float = 0.0  # wall time
    clock: float = 0.0  # virtual time the run would have taken (durations and retry delays)
    run_id: int = 0
    rendered: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # --generate: the texts it can check

    @property
    def passed(self) -> bool:
        return self.problem is None and not self.mismatches and not self.unused

    def by_status(self, status: str) -> List[str]:
        return [step for step, view in self.steps.items() if view.status == status]

    def path_signature(self) -> Tuple[Any, ...]:
        return (self.status, tuple(self.started), tuple((s, v.status) for s, v in self.steps.items()),
                tuple((a["step"], a["decision"]) for a in self.approvals))

    def to_json(self, locate: Callable[[Path], Tuple[int, int]]) -> Dict[str, Any]:
        mask = self.masker.value
        return mask({
            "name": self.scenario.name,
            "line": locate(("scenario", self.scenario.index))[0],
            "passed": self.passed,
            "status": self.status,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "problem": self.problem,
            "ran": self.started,
            "skipped": self.by_status(SKIPPED),
            "failed": self.by_status(FAILED),
            "pending": self.by_status("pending"),
            "approvals": [{"step": a["step"], "decision": a["decision"]} for a in self.approvals],
            "mismatches": [m.to_json(locate) for m in self.unused + self.mismatches],
            "seconds": round(self.seconds, 6),
            "rehearsed_seconds": round(self.clock, 3),
        })


@contextmanager
def _runbook_dir(directory: Optional[str]) -> Iterator[None]:
    """{{ runbook_dir }} is the runbook's directory while it is rehearsed, as in `run FILE`."""
    if directory is None:
        yield
        return
    before = os.environ.get(templating.RUNBOOK_DIR_ENV)
    os.environ[templating.RUNBOOK_DIR_ENV] = directory
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(templating.RUNBOOK_DIR_ENV, None)
        else:
            os.environ[templating.RUNBOOK_DIR_ENV] = before


def _ignore_process(attempt_id: int, pgid: int, ticks: Optional[int]) -> None:
    """No process ever starts in a rehearsal: there is no process group to record."""


class Rehearsal:
    """Rehearses scenarios of one compiled runbook through the real engine.

    `store`: where runs are recorded (default: an SQLite database in memory, one for all the
    scenarios); `runbook_dir`: what {{ runbook_dir }} is."""

    def __init__(self, plan: Plan, source: str = "", store: Optional[Store] = None, runbook_dir: Optional[str] = None,
                 registry: Optional[plugins_mod.Registry] = None) -> None:
        self.plan = plan
        self.source = source
        self.store = store if store is not None else Store(MEMORY)
        self.runbook_dir = runbook_dir
        self.registry = registry or plugins_mod.Registry()
        self.host = plugins_mod.PluginHost(self.registry)
        self._dumped = plan.dumps()
        self._digest = plan.digest(self._dumped)
        self._plan_text = self._dumped.decode("utf-8")
        self._bound: Dict[str, Tuple[Dict[str, Any], Plan]] = {}

    def close(self) -> None:
        self.host.close()
        self.store.close()

    def bind(self, scenario: Scenario) -> Tuple[Dict[str, Any], Plan]:
        """The scenario's values and the plan bound with them (session.resolve_values and
        session.bind, as `run` does); raises UsageError. Bound plans are shared between
        scenarios with the same values."""
        key = json.dumps(scenario.vars, sort_keys=True, default=str)
        found = self._bound.get(key)
        if found is None:
            sources = var_mod.Sources(cli=dict(scenario.vars))
            values = session.resolve_values(self.plan, sources, _NoTerminal(), False)
            found = self._bound[key] = (values, session.bind(self.plan, values))
        return found

    def run(self, scenario: Scenario, execute: Optional[Callable[..., executors.CommandResult]] = None,
            store: Optional[Store] = None, record_process: Optional[Callable[[int, int, Optional[int]], None]] = None,
            explore: Optional[Callable[[str, str, str, List[str]], str]] = None) -> Result:
        """Rehearse one scenario. `execute` (with `store` and `record_process`): run the
        commands for real instead, with the same operator (the property test)."""
        began = time.perf_counter()
        values, bound = self.bind(scenario)
        secrets = session.secret_values(self.plan, values)
        masker = Masker(secrets)
        store = store if store is not None else self.store
        store.set_mask(masker if masker else None)
        run_id = store.create_run(
            bound.title, self.source, self._digest, self._plan_text, session.masked_values(self.plan, values),
            runbook_id=self.plan.runbook.get("id"), software=SOFTWARE, host=HOST, user=scenario.who,
        )
        for step, names in scenario.approved_by.items():
            for name in names:
                store.add_approval(run_id, step, "approved", "%s@%s" % (name, HOST), "out-of-band")
        log = _Log()
        queues = _Queues(scenario.outcomes)
        operator = _Operator(log, scenario.answers, scenario.interactive, explore)
        options = engine_mod.Options(
            max_retries=scenario.max_retries, auto_approve=scenario.auto_approve, approve=frozenset(scenario.approve),
            default_timeout=DEFAULT_TIMEOUT,
        )
        eng = engine_mod.Engine(
            bound, values, store, run_id, operator, options,
            plugins=_Functions(self.registry, self.host, log, queues),
            who="%s@%s" % (scenario.who, HOST), secrets=secrets,
            runner=_Runner(log, queues, execute), sleep=log.sleep,
            record_process=record_process or (_ignore_process if execute is None else None),
        )
        operator.engine = eng
        problem = None
        with _runbook_dir(self.runbook_dir):
            try:
                status, code, reason = eng.run()
            except ScenarioProblem as exc:
                status, code, reason, problem = "error", EXIT_FAILED, str(exc), str(exc)
        store.set_run_status(run_id, status if status in RUN_STATUSES else "aborted", exit_code=code)
        steps = {}
        for node in bound.nodes:
            data = eng.results[node.id]
            steps[node.id] = StepView(
                data.status, data.reason, data.exit_code, data.stdout, data.stderr, data.output, log.attempts.get(node.id, 0),
            )
        result = Result(
            scenario=scenario, status=status, exit_code=code, reason=reason, steps=steps, started=log.started,
            calls=log.calls, questions=log.questions, approvals=log.approvals, asked=log.asked, masker=masker,
            problem=masker.text(problem) if problem else None, clock=log.clock, run_id=run_id,
        )
        if problem is None:
            result.unused = _unused(scenario, operator, queues, masker)
            result.mismatches = compare(scenario.expect, result)
        result.seconds = time.perf_counter() - began
        return result


def _unused(scenario: Scenario, operator: _Operator, queues: _Queues, masker: Masker) -> List[Mismatch]:
    """The scenario's own answers and outcomes that the run never came to: each one says the
    scenario does not do what its author thinks."""
    found = []
    for step, left in operator.pending.items():
        if left and ("answers", step) in scenario.own:
            given = len(scenario.answers[step])
            what = "answers.%s" % step
            found.append(Mismatch(scenario.path("answers", step), what, [
                "%s: %s never asked for (%d of %d answers used): %s"
                % (what, "the answer was" if len(left) == 1 else "these answers were", given - len(left), given, masker.text(", ".join(left)))
            ]))
    for step, sequence in scenario.outcomes.items():
        if ("outcomes", step) not in scenario.own:
            continue
        used = queues.used.get(step, 0)
        if used == 0:
            found.append(Mismatch(scenario.path("outcomes", step), "outcomes.%s" % step, [
                "outcomes.%s: never used: %s did not run" % (step, step)]))
        elif used < len(sequence):
            found.append(Mismatch(scenario.path("outcomes", step), "outcomes.%s" % step, [
                "outcomes.%s: %s ran %d time%s; only %d of its %d outcomes were used"
                % (step, step, used, "" if used == 1 else "s", used, len(sequence))]))
    return found


# -- expectations ---------------------------------------------------------------------------------
def compare(expect: Expect, result: Result) -> List[Mismatch]:
    """Every expectation `result` does not meet, with a readable diff."""
    found: List[Mismatch] = []
    scenario = result.scenario
    mask = result.masker.text

    def add(keys: Path, lines: List[str]) -> None:
        what = "expect." + _show_path(keys)
        found.append(Mismatch(scenario.path("expect", *keys), what, [mask(line) for line in lines]))

    if expect.status is not None and expect.status != result.status:
        add(("status",), _value_diff(expect.status, result.status, result.reason))
    if expect.exit_code is not None and expect.exit_code != result.exit_code:
        add(("exit_code",), _value_diff(expect.exit_code, result.exit_code))
    if expect.reason is not None and not expect.reason.matches(result.reason or ""):
        add(("reason",), _text_diff(expect.reason, result.reason or ""))
    for key, wanted in expect.lists.items():
        steps = result.started if key == "ran" else result.by_status(key)
        found_lines = _list_diff(wanted, steps, ordered=key == "ran")
        if found_lines:
            add((key,), found_lines)
    for step, checks in expect.steps.items():
        view = result.steps[step]
        for key, want in checks.items():
            value = {"status": view.status, "attempts": view.attempts, "reason": view.reason or "", "exit_code": view.exit_code}[key]
            if isinstance(want, Matcher):
                if not want.matches(value):
                    add(("steps", step, key), _text_diff(want, value))
            elif want != value:
                add(("steps", step, key), _value_diff(want, value))
    for key in ("commands", "cwd"):
        for step, want in getattr(expect, key).items():
            calls = result.calls.get(step) or []
            if not calls:
                add((key, step), ["%s never ran its command (it ended %s)" % (step, result.steps[step].status)])
                continue
            text = calls[-1].command if key == "commands" else (calls[-1].cwd or "")
            if not want.matches(text):
                add((key, step), _text_diff(want, text or ""))
    for key in ("env", "params"):
        for step, wanted in getattr(expect, key).items():
            calls = result.calls.get(step) or []
            if not calls:
                add((key, step), ["%s never ran (it ended %s)" % (step, result.steps[step].status)])
                continue
            actual_map = (calls[-1].env if key == "env" else calls[-1].params) or {}
            lines = _map_diff(wanted, actual_map, exact_keys=key == "env")
            if lines:
                add((key, step), lines)
    for step, wanted_list in expect.questions.items():
        asked = result.questions.get(step) or []
        if not asked:
            add(("questions", step), ["%s's question was never asked (it ended %s)" % (step, result.steps[step].status)])
        elif expect.question_every.get(step):
            for text in asked:
                if not wanted_list[0].matches(text):
                    add(("questions", step), _text_diff(wanted_list[0], text))
                    break
        else:
            lines = _matcher_list_diff(wanted_list, asked)
            if lines:
                add(("questions", step), lines)
    for step, fields in expect.outputs.items():
        view = result.steps[step]
        for name, want in fields.items():
            actual = getattr(view, name)
            if not want.matches(actual):
                add(("outputs", step, name), _text_diff(want, actual) if isinstance(actual, str) or want.pattern else _value_diff(want.value, actual))
    if expect.approvals is not None:
        actual_pairs = [(a["step"], a["decision"]) for a in result.approvals]
        ok = len(actual_pairs) == len(expect.approvals) and all(
            step == a_step and (decision is None or decision == a_decision)
            for (step, decision), (a_step, a_decision) in zip(expect.approvals, actual_pairs)
        )
        if not ok:
            shown_expected = [s if d is None else "%s: %s" % (s, d) for s, d in expect.approvals]
            shown_actual = ["%s: %s" % pair for pair in actual_pairs]
            add(("approvals",), _sequence_diff(shown_expected, shown_actual))
    return found


def _value_diff(expected: Any, actual: Any, why: Optional[str] = None) -> List[str]:
    lines = ["expected: %s" % _show(expected), "actual:   %s" % _show(actual)]
    if why:
        lines.append("(%s)" % why)
    return lines


def _text_diff(want: Matcher, actual: Any) -> List[str]:
    if want.pattern is not None:
        return ["expected to match: %s" % want.pattern, "actual:            %s" % _show(actual)]
    expected = want.value
    if not isinstance(expected, str) or not isinstance(actual, str):
        return _value_diff(expected, actual)
    if "\n" in expected.rstrip("\n") or "\n" in actual.rstrip("\n"):
        lines = ["(- expected, + actual)"]
        for line in difflib.unified_diff(expected.split("\n"), actual.split("\n"), lineterm="", n=2):
            if line.startswith(("---", "+++")):
                continue
            lines.append(line)
        return lines
    at = next((i for i, (a, b) in enumerate(zip(expected, actual)) if a != b), min(len(expected), len(actual)))
    return [
        "expected: %s" % json.dumps(expected, ensure_ascii=False)[1:-1],
        "actual:   %s" % json.dumps(actual, ensure_ascii=False)[1:-1],
        "          %s^ from here" % (" " * len(json.dumps(expected[:at], ensure_ascii=False)[1:-1])),
    ]


def _sequence_diff(expected: List[str], actual: List[str]) -> List[str]:
    lines = ["(- expected, + actual)"]
    matcher = difflib.SequenceMatcher(None, expected, actual, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            items = expected[i1:i2]
            if len(items) > 4:
                lines.extend("  %s" % s for s in items[:1])
                lines.append("  … %d more" % (len(items) - 2))
                lines.extend("  %s" % s for s in items[-1:])
            else:
                lines.extend("  %s" % s for s in items)
            continue
        lines.extend("- %s" % s for s in expected[i1:i2])
        lines.extend("+ %s" % s for s in actual[j1:j2])
    return lines


def _list_diff(wanted: StepList, actual: List[str], ordered: bool) -> List[str]:
    if wanted.exact is not None:
        if ordered:
            return _sequence_diff(wanted.exact, actual) if wanted.exact != actual else []
        missing = [s for s in wanted.exact if s not in actual]
        extra = [s for s in actual if s not in wanted.exact]
        lines = ["missing: %s" % ", ".join(missing)] if missing else []
        return lines + (["not expected: %s" % ", ".join(extra)] if extra else [])
    lines = []
    if ordered:
        position = 0
        for step in wanted.includes:
            try:
                position = actual.index(step, position) + 1
            except ValueError:
                where = "did not run" if step not in actual else "ran, but not after %s" % wanted.includes[wanted.includes.index(step) - 1]
                lines.append("includes %s: it %s" % (step, where))
                break
    else:
        missing = [s for s in wanted.includes if s not in actual]
        if missing:
            lines.append("missing: %s" % ", ".join(missing))
    present = [s for s in wanted.excludes if s in actual]
    if present:
        lines.append("excluded, but there: %s" % ", ".join(present))
    if lines:
        lines.append("actual: %s" % (", ".join(actual) or "(none)"))
    return lines


def _map_diff(wanted: Mapping[str, Matcher], actual: Mapping[str, Any], exact_keys: bool) -> List[str]:
    lines = []
    for name, want in wanted.items():
        if name not in actual:
            lines.append("%s: missing (expected %s)" % (name, want.shown()))
        elif not want.matches(actual[name]):
            lines.extend("%s: %s" % (name, line) for line in _text_diff(want, actual[name]))
    if exact_keys:
        for name in actual:
            if name not in wanted:
                lines.append("%s: not expected (%s)" % (name, _show(actual[name])))
    return lines


def _matcher_list_diff(wanted: List[Matcher], actual: List[str]) -> List[str]:
    if len(wanted) == len(actual) and all(w.matches(a) for w, a in zip(wanted, actual)):
        return []
    return _sequence_diff([w.shown() for w in wanted], actual)


# -- many scenarios -------------------------------------------------------------------------------
@dataclass
class Suite:
    """A runbook, its scenarios and what rehearsing them gave."""

    runbook: str
    display: str
    runbook_sha256: str
    scenarios: ScenarioFile
    plan: Plan
    results: List[Result]
    seconds: float

    @property
    def passed(self) -> int:
        return sum(1 for r in self.results if r.passed)

    @property
    def failed(self) -> int:
        return len(self.results) - self.passed

    def summary(self) -> Dict[str, Any]:
        return {
            "runbook": self.display,
            "runbook_sha256": self.runbook_sha256,
            "scenarios_file": self.scenarios.display,
            "scenarios_sha256": self.scenarios.sha256,
            "total": len(self.results),
            "passed": self.passed,
            "failed": self.failed,
            "seconds": round(self.seconds, 6),
            "results": [r.to_json(self.scenarios.locate) for r in self.results],
        }


def compile_runbook(path: str) -> Tuple[Plan, str, str]:
    """(plan, display name, sha256) of a runbook, compiled as `run FILE` does (nothing baked;
    warnings to standard error); raises ScenarioError with the runbook's diagnostics."""
    from .plan import compile_file

    display = source_mod.relative_display(path)
    try:
        compiled = compile_file(path, None, bake=False)
    except CompileError as exc:
        raise ScenarioError(exc.diagnostics, _errors_summary(display, exc.diagnostics)) from None
    for diagnostic in compiled.warnings:
        sys.stderr.write(diagnostic.format() + "\n")
    return compiled.plan, display, compiled.source.sha256


def default_scenarios_path(runbook: str) -> str:
    """`deploy.scenarios.toml` beside `deploy.playbook.toml` (`x.toml` → `x.scenarios.toml`)."""
    directory, name = os.path.split(runbook)
    for suffix in (".playbook.toml", ".toml"):
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return os.path.join(directory, name + ".scenarios.toml")


class Prepared:
    """A runbook compiled, its scenarios read and checked (variables too), ready to rehearse."""

    def __init__(self, runbook: str, scenarios_path: Optional[str] = None, select: Sequence[str] = (),
                 state_path: Optional[str] = None) -> None:
        from .files import runbook_dir

        self.runbook = runbook
        self.plan, self.display, self.digest = compile_runbook(runbook)
        path = scenarios_path or default_scenarios_path(runbook)
        if scenarios_path is None and not os.path.exists(path):
            raise UsageError(
                "no scenarios for %s: %s does not exist (write one, or start with `playbook test %s --generate`)"
                % (self.display, source_mod.relative_display(path), self.display)
            )
        store = session.open_store(state_path) if state_path else None
        self.rehearsal = Rehearsal(self.plan, self.display, store=store, runbook_dir=runbook_dir(runbook))
        try:
            self.loaded = load_scenarios(path, self.plan, check=self._check_values)
        except BaseException:
            self.rehearsal.close()
            raise
        chosen = self.loaded.scenarios
        if select:
            words = [s.lower() for s in select]
            chosen = [s for s in chosen if any(w in s.name.lower() for w in words)]
            if not chosen:
                self.rehearsal.close()
                raise UsageError("no scenario of %s matches -k %s" % (self.loaded.display, " -k ".join(select)))
        self.chosen = chosen

    def _check_values(self, loaded: ScenarioFile, scenario: Scenario) -> List[Diagnostic]:
        """The scenario's variables resolved and the plan bound with them, as `run` does."""
        try:
            self.rehearsal.bind(scenario)
        except UsageError as exc:
            return _variable_diagnostics(loaded, scenario, str(exc))
        return []

    def run(self, stream: Optional[Callable[[Result], None]] = None) -> Suite:
        began = time.perf_counter()
        results = []
        try:
            for scenario in self.chosen:
                result = self.rehearsal.run(scenario)
                results.append(result)
                if stream is not None:
                    stream(result)
        finally:
            self.rehearsal.close()
        return Suite(self.runbook, self.display, self.digest, self.loaded, self.plan, results, time.perf_counter() - began)


def rehearse(runbook: str, scenarios_path: Optional[str] = None, select: Sequence[str] = (), state_path: Optional[str] = None,
             stream: Optional[Callable[[Result], None]] = None) -> Suite:
    """Compile `runbook`, read its scenarios, rehearse those whose name contains one of
    `select` (all when empty). Raises ScenarioError (exit 2) for an invalid runbook or file."""
    return Prepared(runbook, scenarios_path, select, state_path).run(stream)


def _variable_diagnostics(loaded: ScenarioFile, scenario: Scenario, text: str) -> List[Diagnostic]:
    """The variable problems of a scenario (session.resolve_values, bind) at their keys."""
    found = []

    def add(message: str, path: Path, hint: Optional[str] = None) -> None:
        line, col = loaded.locate(path)
        found.append(Diagnostic("error", message, loaded.display, line, col, hint))

    lines = text.split("\n")
    rest = []
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        given = re.match(r"^(\w+) \(from --var\): (.*)$", line)
        if given:
            add("vars.%s: %s" % given.groups(), scenario.path("vars", given.group(1)))
        elif line.startswith("missing required variable"):
            names = []
            while i < len(lines) and lines[i].startswith("  "):
                names.append(lines[i].split()[0])
                i += 1
            add("scenario %r: missing required variable%s %s" % (scenario.name, "s" if len(names) > 1 else "", ", ".join(names)),
                ("scenario", scenario.index, "vars"),
                hint="give %s in vars (a secret one a stand-in value, never a real secret), or in [defaults] vars" % (
                    "them" if len(names) > 1 else "it"))
        elif line.strip() and not line.startswith("(there is no terminal"):
            rest.append(line.strip())
    if rest:
        add("scenario %r: %s" % (scenario.name, " ".join(rest)), ("scenario", scenario.index, "vars"))
    return found


def rehearse_file(runbook_path: str, scenarios_path: Optional[str] = None) -> Dict[str, Any]:
    """Rehearse every scenario of a runbook: {runbook, runbook_sha256, scenarios_file,
    scenarios_sha256, total, passed, failed, seconds, results}. For `playbook compile --test`.
    Raises ScenarioError (a UsageError, exit 2, with `diagnostics`) for invalid input."""
    return rehearse(runbook_path, scenarios_path).summary()


# -- coverage -------------------------------------------------------------------------------------
_HOLDS = {
    "success": lambda status: status == SUCCEEDED,
    "failure": lambda status: status == FAILED,
    "done": lambda status: status in (SUCCEEDED, FAILED),
}


def coverage_items(plan: Plan) -> Dict[str, List[str]]:
    """Everything coverage counts, by kind, in plan order."""
    items: Dict[str, List[str]] = {"steps": [], "edges": [], "when": [], "rejections": []}
    for node in plan.nodes:
        items["steps"].append(node.id)
        for dep in node.deps:
            if dep.on != "plain":
                items["edges"].append("%s -> %s" % (dep.spec(), node.id))
        if node.when is not None:
            items["when"].extend(["%s: when true" % node.id, "%s: when false" % node.id])
        if approvals_mod.has_question(node):
            items["rejections"].append(node.id)
    return items


def covered_by(plan: Plan, result: Result) -> set:
    """The coverage items one rehearsal covered."""
    found = set()
    started = set(result.started)
    asked = {a.step for a in result.asked}
    for node in plan.nodes:
        if node.id in started:
            found.add(("steps", node.id))
        for dep in node.deps:
            if dep.on != "plain" and node.id in started and _HOLDS[dep.on](result.steps[dep.node].status):
                found.add(("edges", "%s -> %s" % (dep.spec(), node.id)))
        if node.when is not None:
            reason = result.steps[node.id].reason or ""
            if result.steps[node.id].status == SKIPPED and reason.startswith("condition") and not reason.startswith("condition not met"):
                found.add(("when", "%s: when false" % node.id))
            elif node.id in started or node.id in asked:
                found.add(("when", "%s: when true" % node.id))
    for approval in result.approvals:
        if approval["decision"] == "rejected":
            found.add(("rejections", approval["step"]))
    return found


def coverage(plan: Plan, results: Sequence[Result]) -> Dict[str, Any]:
    items = coverage_items(plan)
    covered: set = set()
    for result in results:
        covered |= covered_by(plan, result)
    report: Dict[str, Any] = {"scenarios": len(results)}
    total = hit = 0
    for kind, names in items.items():
        never = [name for name in names if (kind, name) not in covered]
        report[kind] = {"total": len(names), "covered": len(names) - len(never), "never": never}
        total += len(names)
        hit += len(names) - len(never)
    report["total"] = total
    report["covered"] = hit
    report["percent"] = round(100.0 * hit / total, 1) if total else 100.0
    return report


_COVERAGE_WORDS = {
    "steps": ("steps", "never ran"),
    "edges": (":success/:failure/:done edges", "never taken"),
    "when": ("when branches", "never taken"),
    "rejections": ("questions rejected", "never rejected"),
}


def coverage_table(report: Mapping[str, Any]) -> str:
    lines = ["coverage: %.1f%% (%d of %d) over %d scenario%s" % (
        report["percent"], report["covered"], report["total"], report["scenarios"], "" if report["scenarios"] == 1 else "s")]
    width = max(len(words[0]) for words in _COVERAGE_WORDS.values())
    for kind, (label, never_word) in _COVERAGE_WORDS.items():
        part = report[kind]
        line = "  %-*s  %4d of %-4d" % (width, label, part["covered"], part["total"])
        if part["never"]:
            line += "  %s: %s" % (never_word, ", ".join(part["never"]))
        lines.append(line.rstrip())
    return "\n".join(lines)


# -- output ---------------------------------------------------------------------------------------
def result_lines(result: Result, locate: Callable[[Path], Tuple[int, int]], display: str) -> List[str]:
    """PASS NAME, or FAIL NAME and the diff of each unmet expectation."""
    if result.passed:
        return ["PASS  %s  (%s, %d step%s ran)" % (result.scenario.name, result.status, len(result.started), "" if len(result.started) == 1 else "s")]
    lines = ["FAIL  %s  (%s:%d)" % (result.scenario.name, display, locate(("scenario", result.scenario.index))[0])]
    if result.problem is not None:
        lines.append("      error: %s" % result.problem)
    for mismatch in result.unused + result.mismatches:
        line, col = locate(mismatch.path)
        lines.append("      %s:%d:%d: %s" % (display, line, col, mismatch.what))
        lines.extend("        " + text for text in mismatch.lines)
    return lines


def _xml_text(text: Any) -> str:
    """Text XML 1.0 may hold (control characters shown as \\xNN)."""
    return re.sub("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]", lambda m: "\\x%02x" % ord(m.group(0)), str(text))


def junit_xml(suite: Suite) -> bytes:
    """A JUnit XML report: one testcase per scenario, a failure with the diff for each one that
    did not pass (an error when the rehearsal could not go on)."""
    import xml.etree.ElementTree as ET

    failures = sum(1 for r in suite.results if not r.passed and r.problem is None)
    errors = sum(1 for r in suite.results if r.problem is not None)
    total_time = "%.6f" % sum(r.seconds for r in suite.results)
    root = ET.Element("testsuites", name="playbook test", tests=str(len(suite.results)), failures=str(failures), errors=str(errors), time=total_time)
    stem = os.path.basename(default_scenarios_path(suite.display))[: -len(".scenarios.toml")]
    testsuite = ET.SubElement(root, "testsuite", name=_xml_text(suite.display), tests=str(len(suite.results)),
                              failures=str(failures), errors=str(errors), skipped="0", time=total_time)
    properties = ET.SubElement(testsuite, "properties")
    for name, value in (("runbook", suite.display), ("runbook_sha256", suite.runbook_sha256),
                        ("scenarios", suite.scenarios.display), ("scenarios_sha256", suite.scenarios.sha256)):
        ET.SubElement(properties, "property", name=name, value=_xml_text(value))
    for result in suite.results:
        case = ET.SubElement(testsuite, "testcase", classname=_xml_text("playbook." + stem), name=_xml_text(result.scenario.name),
                             file=_xml_text(suite.scenarios.display), line=str(suite.scenarios.locate(("scenario", result.scenario.index))[0]), time="%.6f" % result.seconds)
        if result.passed:
            continue
        body = "\n".join(result_lines(result, suite.scenarios.locate, suite.scenarios.display)[1:])
        if result.problem is not None:
            element = ET.SubElement(case, "error", message=_xml_text(result.problem), type="ScenarioProblem")
        else:
            count = len(result.unused) + len(result.mismatches)
            element = ET.SubElement(case, "failure", message="%d expectation%s not met" % (count, "" if count == 1 else "s"), type="ExpectationMismatch")
        element.text = _xml_text(body)
        out = ET.SubElement(case, "system-out")
        out.text = _xml_text("status %s, exit code %d; ran: %s" % (result.status, result.exit_code, ", ".join(result.started) or "nothing"))
    ET.indent(root)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8") + b"\n"


def _write(path: str, data: bytes) -> None:
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        with open(path, "wb") as handle:
            handle.write(data)
    except OSError as exc:
        raise UsageError("cannot write %s: %s" % (path, exc.strerror or exc)) from None


# -- generate -------------------------------------------------------------------------------------
def _domains(plan: Plan) -> Tuple[Dict[str, Any], Dict[str, List[Any]], List[str]]:
    """(base values, the values worth trying per variable, notes for the file)."""
    base: Dict[str, Any] = {}
    domains: Dict[str, List[Any]] = {}
    notes = []
    for name, spec in plan.variables.items():
        kind = spec.get("type", "str")
        choices = spec.get("choices")
        has_default = "default" in spec and not spec.get("secret")
        if spec.get("secret"):
            if var_mod.needs_value(spec):
                base[name] = "stand-in-%s" % name.lower().replace("_", "-")
                notes.append("%s is secret: a stand-in value, never a real secret" % name)
            continue
        if choices:
            values = list(choices)
            first = spec["default"] if has_default and spec["default"] in values else values[0]
            values = [first] + [v for v in values if v != first]
        elif kind == "bool":
            first = bool(spec["default"]) if has_default else False
            values = [first, not first]
        elif has_default:
            values = [spec["default"]]
        elif not var_mod.needs_value(spec):
            continue
        else:
            values = [_example(name, spec)]
            notes.append("%s is required: %r is an example value; put a real one" % (name, values[0]))
        domains[name] = values
        if var_mod.needs_value(spec) or not has_default:
            base[name] = values[0]
    return base, domains, notes


def _example(name: str, spec: Mapping[str, Any]) -> Any:
    kind = spec.get("type", "str")
    if kind in ("int", "float"):
        low = spec.get("min", 1)
        return low if kind == "int" else float(low)
    if kind == "list":
        return []
    if kind == "dict":
        return {}
    for candidate in ("example", name.lower(), "x", "1", "a1", "example-1"):
        try:
            var_mod.check(name, spec, candidate)
            return candidate
        except var_mod.VariableError:
            continue
    return "example"


@dataclass
class _Candidate:
    name: str
    vars: Dict[str, Any]
    outcomes: Dict[str, List[Outcome]] = field(default_factory=dict)
    planned: Dict[str, List[str]] = field(default_factory=dict)  # answers given on purpose

    people: Tuple[str, Dict[str, List[str]]] = (DEFAULT_WHO, {})  # who, approved_by

    def scenario(self, index: int) -> Scenario:
        return Scenario(name=self.name, index=index, vars=dict(self.vars), outcomes=dict(self.outcomes),
                        answers={k: list(v) for k, v in self.planned.items()}, who=self.people[0],
                        approved_by={k: list(v) for k, v in self.people[1].items()})


def _people(plan: Plan) -> Tuple[str, Dict[str, List[str]]]:
    """For steps with an approval policy: who is at the terminal (the first approver named by
    user name) and who approved out of band, so that each policy is met (`approvals` people)."""
    named = [a for node in plan.nodes for a in node.approvers if not a.startswith("@")]
    who = named[0] if named else DEFAULT_WHO
    approved_by: Dict[str, List[str]] = {}
    for node in plan.nodes:
        if not approvals_mod.has_policy(node) or not approvals_mod.has_question(node):
            continue
        policy = approvals_mod.policy_of(node)
        if policy.approvers:
            others = [a for a in policy.approvers if not a.startswith("@") and a != who]
        else:
            others = ["approver-%d" % n for n in range(2, policy.approvals + 1)]
        need = policy.approvals - (1 if who in policy.approvers or not policy.approvers else 0)
        if need > 0 and others:
            approved_by[node.id] = others[:need]
    return who, approved_by


def _explorer(plan: Plan) -> Callable[[str, str, str, List[str]], str]:
    """The operator of a generated scenario where it has no planned answer: approve every
    question; after a failure or rejection follow its path when something handles it, else
    skip a declined step, else abort."""

    def answer(step: str, kind: str, text: str, offered: List[str]) -> str:
        if kind == "question":
            return "approve"
        for word in ("follow", "skip", "abort"):
            if word in offered:
                return word
        return offered[-1]

    return answer


def generate(plan: Plan, rehearsal: Rehearsal, max_scenarios: int = DEFAULT_MAX_SCENARIOS) -> Tuple[List[Result], List[str], Dict[str, Any]]:
    """Scenarios for the distinct paths of a runbook, as it behaves today: (results, notes,
    coverage). Candidates, in this order:

    1. variables: the happy path with the values that run the most steps (a required variable
       without choices gets an example value, a secret a stand-in), then each other value of a
       variable with `choices` or of type bool, one variable at a time (then two at a time
       while a `when` branch is still not taken);
    2. each handled failure (a step whose failure something handles: `:failure`, `:done`,
       `has_failed`), on the first kept scenario that reaches the step, its path followed;
       then, for a `when` still never true or false, a failure of a step it reads that nothing
       handles (the operator skips it, or aborts); then a step that fails as the runbook is
       today (a safe function that raises) succeeding, for its `:success` edges;
    3. each question rejected (then its failure path followed when handled, else aborted).

    Every operator answer is approve, or follow / skip / abort after a failure; steps with an
    approval policy get an approver at the terminal and the others out of band (`approved_by`).
    How the number stays reasonable: a candidate is kept only when it covers something no kept
    scenario covers (a step, an edge, a `when` branch, a rejection) and its path differs from
    every kept one, so each scenario has a reason to exist and the count grows with the
    runbook's branches, not its size; at most `max_scenarios` are kept (default 40) and at most
    ten times that are rehearsed, so a 10,000-step runbook costs at most 400 rehearsals of
    about a second each. When the limit stops it, the file says so and what coverage it got."""
    base, domains, notes = _domains(plan)
    people = _people(plan)
    explore = _explorer(plan)
    kept: List[Tuple[_Candidate, Result]] = []
    signatures: set = set()  # the paths of the kept scenarios
    covered: set = set()
    tries = [0]
    budget = max(1, max_scenarios) * 10
    readers = [step for step in dict.fromkeys(dep for node in plan.nodes for dep in node.output_nodes)]
    # what each step's failure and success lead to (edges below it), and the `when` branches
    below: Dict[str, Dict[str, List[Tuple[str, str]]]] = {}
    for node in plan.nodes:
        for dep in node.deps:
            if dep.on != "plain":
                below.setdefault(dep.node, {}).setdefault(dep.on, []).append(("edges", "%s -> %s" % (dep.spec(), node.id)))

    def open_items(step: str, *kinds: str) -> bool:
        """Whether an edge of these kinds below `step` is still never taken (True without any)."""
        items = [item for kind in kinds for item in below.get(step, {}).get(kind, [])]
        return not items or any(item not in covered for item in items)

    def when_open(node: Node) -> bool:
        return node.when is not None and any(
            ("when", "%s: when %s" % (node.id, side)) not in covered for side in ("true", "false"))


    def trial_run(candidate: _Candidate) -> Optional[Result]:
        if tries[0] >= budget:
            return None
        tries[0] += 1
        for step in readers:  # a step whose output a later step reads gets a recognisable one
            if plan.by_id[step].type == "Command" and step not in candidate.outcomes:
                candidate.outcomes[step] = [Outcome(stdout="%s-output\n" % step)]
        candidate.people = people
        scenario = candidate.scenario(len(kept))
        try:
            rehearsal.bind(scenario)
        except UsageError:
            return None
        return rehearsal.run(scenario, explore=explore)

    def keep(candidate: _Candidate, result: Optional[Result], force: bool = False) -> Optional[Result]:
        if result is None or len(kept) >= max_scenarios:
            return None
        gain = covered_by(plan, result) - covered
        if not gain and not force:
            return None
        signature = result.path_signature()
        if signature in signatures:
            return None
        signatures.add(signature)
        covered.update(gain)
        result.scenario.name = candidate.name
        kept.append((candidate, result))
        return result

    def attempt(candidate: _Candidate) -> Optional[Result]:
        if len(kept) >= max_scenarios:
            return None
        return keep(candidate, trial_run(candidate))

    # 1. variables: the fullest path first
    variants: List[Tuple[str, Dict[str, Any]]] = [("happy path", dict(base))]
    for name, tried in domains.items():
        for value in tried[1:]:
            variants.append(("%s=%s" % (name, _short(value)), dict(base, **{name: value})))
    first: List[Tuple[_Candidate, Result]] = []
    for label, assignment in variants:
        candidate = _Candidate(label, assignment)
        ran = trial_run(candidate)
        if ran is not None:
            first.append((candidate, ran))
    first.sort(key=lambda item: -len(item[1].started))  # stable: variables in the runbook's order
    for number, (candidate, result) in enumerate(first):
        if number == 0:
            label = "happy path" if result.status == SUCCEEDED else "main path"
            candidate.name = label if candidate.vars == base else "%s (%s)" % (label, _describe_vars(candidate.vars, base))
        else:
            candidate.name = _describe_vars(candidate.vars, first[0][0].vars) or candidate.name
        keep(candidate, result, force=number == 0)
    when_nodes = [node for node in plan.nodes if node.when is not None]
    if kept:
        happy = kept[0][0].vars
        names = list(domains)
        for i, name in enumerate(names):
            for other in names[i + 1:]:
                for value in domains[name]:
                    for other_value in domains[other]:
                        if tries[0] >= budget or not any(when_open(node) for node in when_nodes):
                            break
                        pair = dict(happy, **{name: value, other: other_value})
                        if pair != happy:
                            attempt(_Candidate(_describe_vars(pair, happy) or "variables", pair))
    def copy(candidate: _Candidate, name: str, **outcomes: Outcome) -> _Candidate:
        trial = _Candidate(name + _context(candidate, kept), dict(candidate.vars), dict(candidate.outcomes),
                           {k: list(v) for k, v in candidate.planned.items()})
        for step, outcome in outcomes.items():
            trial.outcomes[step] = [outcome]
            trial.planned.pop(step, None)
        return trial

    def failing(step: str) -> Outcome:
        return Outcome(exit_code=1) if plan.by_id[step].type == "Command" else Outcome(error="%s failed (rehearsed)" % step)

    # Each stage yields candidates and is told whether the last one was kept (then it moves on
    # to its next step). Stages 2 and 3 take turns, so that a budget that runs out leaves
    # both failures and rejections rehearsed.
    def handled_failures() -> Iterator[_Candidate]:
        for node in plan.nodes:
            if not node.handled or node.type == "Manual" or not open_items(node.id, "failure", "done"):
                continue
            for candidate, result in list(kept):
                if result.steps[node.id].status == SUCCEEDED:
                    taken = yield copy(candidate, "%s fails" % node.id, **{node.id: failing(node.id)})
                    if taken:
                        break

    def rejections() -> Iterator[_Candidate]:
        for node in plan.nodes:
            if not approvals_mod.has_question(node) or ("rejections", node.id) in covered:
                continue
            word = "declined" if node.prompt_before and node.type != "Manual" else "rejected"
            for candidate, result in list(kept):
                if any(a.step == node.id and a.kind == "question" and a.answer == "approve" for a in result.asked):
                    trial = copy(candidate, "%s %s" % (node.id, word))
                    trial.planned[node.id] = ["reject"]
                    taken = yield trial
                    if taken:
                        break

    def when_failures() -> Iterator[_Candidate]:
        # a `when` never true or false: fail a step it reads whose failure nothing handles (the
        # operator then skips it, or aborts: the explorer's choice)
        for node in plan.nodes:
            for step in node.when_nodes if when_open(node) else ():
                upstream = plan.by_id[step]
                if upstream.handled or upstream.type == "Manual":
                    continue
                for candidate, result in list(kept):
                    if result.steps[step].status == SUCCEEDED and when_open(node):
                        taken = yield copy(candidate, "%s fails" % step, **{step: failing(step)})
                        if taken:
                            break

    def successes() -> Iterator[_Candidate]:
        # a step that fails as the runbook is today (a safe function that raises) succeeds
        for node in plan.nodes:
            if node.type == "Manual" or "success" not in below.get(node.id, {}) or not open_items(node.id, "success"):
                continue
            for candidate, result in list(kept):
                if result.steps[node.id].status == FAILED and node.id not in candidate.outcomes:
                    taken = yield copy(candidate, "%s succeeds" % node.id, **{node.id: Outcome()})
                    if taken:
                        break

    for stages in ((handled_failures, rejections), (when_failures,), (successes,)):
        running: List[Any] = [stage() for stage in stages]
        answer: Dict[int, Optional[bool]] = {id(g): None for g in running}
        while running and len(kept) < max_scenarios and tries[0] < budget:
            for generator in list(running):
                try:
                    trial = generator.send(answer[id(generator)])
                except StopIteration:
                    running.remove(generator)
                    continue
                answer[id(generator)] = attempt(trial) is not None
    report = coverage(plan, [r for _, r in kept])
    if len(kept) >= max_scenarios and report["covered"] < report["total"]:
        notes.append("stopped at --max-scenarios %d; coverage %.1f%%" % (max_scenarios, report["percent"]))
    return [r for _, r in kept], notes, report


def _short(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _describe_vars(values: Mapping[str, Any], base: Mapping[str, Any]) -> str:
    return ", ".join("%s=%s" % (k, _short(v)) for k, v in values.items() if base.get(k, object()) != v)


def _context(candidate: _Candidate, kept: Sequence[Tuple[_Candidate, Result]]) -> str:
    if kept and candidate is kept[0][0]:
        return ""
    words = _describe_vars(candidate.vars, kept[0][0].vars) if kept else ""
    return " (%s)" % words if words else ""


COMPACT_ABOVE = 60  # steps: a larger runbook's generated scenarios say what differs from the first
COMPACT_TEXTS = 40  # ... and list at most this many commands, parameters or questions each


def generated_toml(plan: Plan, display: str, results: Sequence[Result], notes: Sequence[str], report: Mapping[str, Any]) -> str:
    """The scenarios file `--generate` writes: each scenario with what the runbook does today.

    Up to COMPACT_ABOVE steps every scenario has exact lists (ran, skipped, failed, pending)
    and the rendered text of every templated command, parameter set and question it reached.
    Above, the first scenario has the exact lists and every later one only what differs from it
    (`ran = { includes, excludes }`, `steps.X.status`); commands, parameters and questions
    appear only where they differ between scenarios (in a later one: from the first), at most
    COMPACT_TEXTS of each: past the first scenario the file grows with the runbook's branches,
    not with its size."""
    compact = len(plan.nodes) > COMPACT_ABOVE
    for result in results:
        result.rendered = result.rendered or _rendered(plan, result)
    varying = _varying(results) if compact else None
    out = [
        "# Scenarios for %s" % display,
        "# written by `playbook test --generate`: one per distinct path through its conditional edges",
        "# (the happy path, each handled failure, each rejected question, each `when` on and off).",
        "# Each expect block is what the runbook does TODAY: review it, correct what it should do,",
        "# and commit the file; `playbook test %s` rehearses them." % display,
        "# Coverage of these scenarios: %.1f%% (%d of %d)." % (report["percent"], report["covered"], report["total"]),
    ]
    if compact:
        out.append("# The runbook has %d steps: each scenario after the first says what differs from the first." % len(plan.nodes))
    out.extend("# Note: %s." % note for note in notes)
    for number, result in enumerate(results):
        out.append("")
        out.extend(_scenario_toml(plan, result, results[0] if compact and number else None, varying))
    return "\n".join(out) + "\n"


def _rendered(plan: Plan, result: Result) -> Dict[str, Dict[str, Any]]:
    """What the scenario can check of the texts it rendered: templated commands, function
    parameters and questions, by kind and step."""
    found: Dict[str, Dict[str, Any]] = {"commands": {}, "params": {}, "questions": {}}
    for step in result.started:
        node = plan.by_id[step]
        calls = result.calls.get(step)
        if not calls:
            continue
        if node.type == "Command" and templating.is_template(node.command):
            found["commands"][step] = calls[-1].command
        elif node.type == "Function" and calls[-1].params is not None and any(
            templating.is_template(text) for text in templating.strings(node.function_params or {})
        ):
            found["params"][step] = calls[-1].params
    for step, asked_texts in result.questions.items():
        node = plan.by_id[step]
        texts = [node.prompt_before, node.prompt_after] if node.type != "Manual" else [node.prompt_after]
        if any(templating.is_template(t) for t in texts if t):
            found["questions"][step] = asked_texts[0] if len(set(asked_texts)) == 1 else asked_texts
    return found


def _varying(results: Sequence[Result]) -> set:
    """(kind, step) of the texts that differ between the scenarios that reached them."""
    seen: Dict[Tuple[str, str], List[str]] = {}
    for result in results:
        for kind, table in result.rendered.items():
            for step, value in table.items():
                seen.setdefault((kind, step), []).append(json.dumps(value, sort_keys=True, default=str))
    return {key for key, values in seen.items() if len(set(values)) > 1}


def _scenario_toml(plan: Plan, result: Result, first: Optional[Result] = None, varying: Optional[set] = None) -> List[str]:
    scenario = result.scenario
    lines = ["[[scenario]]", "name = %s" % _toml_value(scenario.name)]
    variables = {k: v for k, v in scenario.vars.items()}
    if variables:
        lines.append("vars = %s" % _toml_value(variables))
    if scenario.who != DEFAULT_WHO:
        lines.append("who = %s" % _toml_value(scenario.who))
    for step, names in scenario.approved_by.items():
        lines.append("approved_by.%s = %s" % (_toml_key(step), _toml_value(names)))
    started = set(result.started)
    for step, sequence in scenario.outcomes.items():
        if step in started:
            node_type = plan.by_id[step].type
            shown = [o.to_toml(node_type) for o in sequence]
            lines.append("outcomes.%s = %s" % (_toml_key(step), _toml_value(shown[0] if len(shown) == 1 else shown)))
    answers: Dict[str, List[str]] = {}
    for asked in result.asked:
        answers.setdefault(asked.step, []).append(asked.answer)
    for step, words in answers.items():
        lines.append("answers.%s = %s" % (_toml_key(step), _toml_value(words[0] if len(words) == 1 else words)))
    lines += ["", "[scenario.expect]", "status = %s" % _toml_value(result.status), "exit_code = %d" % result.exit_code]
    if first is None:
        lines.append("ran = %s" % _toml_list(result.started))
        for key in ("skipped", "failed", "pending"):
            steps = result.by_status(key)
            if steps or key == "skipped":
                lines.append("%s = %s" % (key, _toml_list(steps)))
    else:
        before = set(first.started)
        includes = [s for s in result.started if s not in before]
        excludes = [s for s in first.started if s not in started]
        lines.append("ran = { includes = %s, excludes = %s }" % (_toml_list(includes), _toml_list(excludes)))
    if result.approvals:
        lines.append("approvals = %s" % _toml_list([{"step": a["step"], "decision": a["decision"]} for a in result.approvals]))
    if first is not None:
        changed = [(step, view.status) for step, view in result.steps.items() if view.status != first.steps[step].status]
        lines.extend("steps.%s = { status = %s }" % (_toml_key(step), _toml_value(status)) for step, status in changed)
    for title, table in result.rendered.items():
        left = 0
        if first is not None:  # what differs from the first scenario
            table = {step: value for step, value in table.items() if first.rendered[title].get(step) != value}
        elif varying is not None:  # what some other scenario renders otherwise
            table = {step: value for step, value in table.items() if (title, step) in varying}
        if varying is not None and len(table) > COMPACT_TEXTS:
            left = len(table) - COMPACT_TEXTS
            table = dict(list(table.items())[:COMPACT_TEXTS])
        if table:
            lines += ["", "[scenario.expect.%s]" % title]
            lines.extend("%s = %s" % (_toml_key(k), _toml_value(v, multiline=True)) for k, v in table.items())
        if left:
            lines.append("# … and %d more %s rendered as differently (not listed)" % (left, title))
    # secrets are masked as everywhere else; the stand-in values of `vars` are no secrets
    return [line if line.startswith("vars = ") else result.masker.text(line) for line in lines]


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_string(key)


def _toml_string(text: str, multiline: bool = False) -> str:
    if multiline and "\n" in text and "'''" not in text and not text.endswith("'") and not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text):
        return "'''\n%s'''" % text
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value: Any, multiline: bool = False) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value, multiline)
    if isinstance(value, (list, tuple)):
        return "[%s]" % ", ".join(_toml_value(v) for v in value)
    if isinstance(value, dict):
        return "{ %s }" % ", ".join("%s = %s" % (_toml_key(str(k)), _toml_value(v)) for k, v in value.items()) if value else "{}"
    if value is None:
        return '""'
    return _toml_string(str(value))


def _toml_list(items: Sequence[Any], width: int = 96) -> str:
    """An array on one line, or on several lines of at most `width` characters (TOML 1.1 also
    allows that for arrays of inline tables)."""
    one = _toml_value(list(items))
    if len(one) <= width:
        return one
    rows, row = [], ""
    for value in items:
        item = _toml_value(value) + ","
        if row and len(row) + len(item) + 1 > width:
            rows.append(row)
            row = ""
        row = (row + " " + item) if row else item
    rows.append(row)
    return "[\n%s\n]" % "\n".join("    " + r for r in rows)


# -- the command line -----------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = options.parser(
        "playbook test",
        "Rehearse every scenario of a runbook through the real engine, without running any command.\n"
        "The scenarios are FILE.scenarios.toml beside FILE.playbook.toml (or --scenarios). Exit 0 when\n"
        "every scenario passes (and coverage is at least --min-coverage), 1 when not.",
        examples=(
            "playbook test deploy.playbook.toml",
            "playbook test deploy.playbook.toml --junit results.xml --min-coverage 100",
            "playbook test deploy.playbook.toml --generate      # a starter deploy.scenarios.toml",
        ),
        codes=(EXIT_OK, EXIT_FAILED, EXIT_INVALID),
    )
    parser.add_argument("runbook", metavar="RUNBOOK", help="the runbook (FILE.playbook.toml)")
    parser.add_argument("--scenarios", metavar="FILE", help="the scenarios (default: FILE.scenarios.toml beside the runbook)")
    parser.add_argument("-k", dest="select", metavar="NAME", action="append", default=[],
                        help="only the scenarios whose name contains NAME (case-insensitive; repeatable)")
    parser.add_argument("--junit", metavar="FILE", help="write a JUnit XML report to FILE ('-': standard output)")
    options.add_json_arg(parser, "print one JSON document instead of lines")
    parser.add_argument("--coverage", metavar="FILE", nargs="?", const="",
                        help="print what no scenario reached; with FILE also write it as JSON")
    parser.add_argument("--min-coverage", metavar="N", type=float, help="fail (exit 1) when coverage is below N percent")
    parser.add_argument("--generate", action="store_true", help="write a starter scenarios file from what the runbook does today")
    parser.add_argument("-o", "--output", metavar="FILE", help="with --generate: where (default: beside the runbook; '-': standard output)")
    parser.add_argument("--max-scenarios", metavar="N", type=int, default=DEFAULT_MAX_SCENARIOS,
                        help="with --generate: at most N scenarios (default %d)" % DEFAULT_MAX_SCENARIOS)
    parser.add_argument("--state-path", metavar="DB", help="record the rehearsed runs in DB (for debugging; by default nothing is written)")
    return parser


def main(argv: List[str]) -> int:
    """`playbook test RUNBOOK …`; returns the exit code. Invalid input raises UsageError (exit
    2): for an invalid runbook or scenarios file a ScenarioError, whose `report()` (what
    `errors.guard` prints) gives every problem at its file:line:col."""
    try:
        return _main(argv)
    except SystemExit as done:  # argparse: --help (0) or a usage error it printed (2)
        return done.code if isinstance(done.code, int) else EXIT_INVALID


def _main(argv: List[str]) -> int:
    args = _parser().parse_args(argv)
    if args.min_coverage is not None and not 0 <= args.min_coverage <= 100:
        raise UsageError("--min-coverage must be a percentage (0 to 100)")
    if args.generate:
        if args.junit or args.json or args.coverage is not None or args.min_coverage is not None or args.select or args.scenarios:
            raise UsageError("--generate writes a scenarios file; it takes only -o, --max-scenarios and --state-path")
        return _generate(args)
    if args.output:
        raise UsageError("-o goes with --generate (use --junit FILE or --coverage FILE for reports)")
    prepared = Prepared(args.runbook, args.scenarios, args.select, args.state_path)  # ScenarioError: exit 2
    loaded = prepared.loaded

    def stream(result: Result) -> None:
        sys.stdout.write("\n".join(result_lines(result, loaded.locate, loaded.display)) + "\n")
        sys.stdout.flush()

    suite = prepared.run(None if args.json else stream)
    report = coverage(suite.plan, suite.results) if args.coverage is not None or args.min_coverage is not None else None
    if args.junit:
        _write(args.junit, junit_xml(suite))
    if report is not None and args.coverage:
        _write(args.coverage, (json.dumps(dict(report, runbook=suite.display, scenarios_file=suite.scenarios.display), indent=2) + "\n").encode("utf-8"))
    low = report is not None and args.min_coverage is not None and report["percent"] < args.min_coverage
    if args.json:
        document = suite.summary()
        if report is not None:
            document["coverage"] = report
        sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")
    else:
        if report is not None:
            sys.stdout.write(coverage_table(report) + "\n")
        sys.stdout.write("%d passed, %d failed in %.2f s (%s)\n" % (suite.passed, suite.failed, suite.seconds, suite.scenarios.display))
        if low:
            sys.stdout.write("coverage %.1f%% is below --min-coverage %g%%\n" % (report["percent"] if report else 0, args.min_coverage))
    return EXIT_FAILED if suite.failed or low else EXIT_OK


def _generate(args: argparse.Namespace) -> int:
    from .files import runbook_dir

    if args.max_scenarios < 1:
        raise UsageError("--max-scenarios must be at least 1")
    plan, display, _ = compile_runbook(args.runbook)  # ScenarioError: exit 2
    target = args.output or default_scenarios_path(args.runbook)
    if target != "-" and os.path.exists(target):
        raise UsageError("%s exists; nothing was written (remove it, or give -o another file)" % target)
    store = session.open_store(args.state_path) if args.state_path else None
    rehearsal = Rehearsal(plan, display, store=store, runbook_dir=runbook_dir(args.runbook))
    try:
        results, notes, report = generate(plan, rehearsal, args.max_scenarios)
    finally:
        rehearsal.close()
    text = generated_toml(plan, display, results, notes, report)
    _write(target, text.encode("utf-8"))
    if target != "-":
        sys.stdout.write("wrote %s: %d scenario%s, coverage %.1f%% (%d of %d)\n" % (
            target, len(results), "" if len(results) == 1 else "s", report["percent"], report["covered"], report["total"]))
        for note in notes:
            sys.stdout.write("note: %s\n" % note)
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover - `python -m playbook.compiler.rehearse`
    from playbook.runtime.errors import guard

    sys.exit(guard(lambda: main(sys.argv[1:])))
