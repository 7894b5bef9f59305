"""The runtime's command line: run, resume, show, info, plan, set-status, report.

One definition of the options, used twice: by the bundle (argparse, standard library) and by the
`playbook` tool, which hands its arguments to `main()` with a `load_plan` callable that compiles
the runbook file in memory. There is one engine either way, and one lifecycle (session.py):
this module only parses, calls, and returns the exit code. Errors are `PlaybookError`s; the
entry point's `errors.guard()` prints them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import detach, options, session
from . import variables as var_mod
from .errors import EXIT_INVALID, EXIT_OK, EXIT_STATE, BundleError, UsageError
from .plan import Plan, PlanError
from .private import UnsafePath
from .state import whoami

TYPE_CHECKING = False  # typing is not imported at run time (start-up)
if TYPE_CHECKING:
    from typing import Any, Callable


# -- the commands' parsers -----------------------------------------------------------------------
RUN_CODES = (EXIT_OK, 1, EXIT_INVALID, 3, EXIT_STATE, 129, 130)  # a command that drives a run
QUERY_CODES = (EXIT_OK, EXIT_INVALID, EXIT_STATE)  # one that reads or records


def _since_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since", metavar="DATE", help="only runs started at or after DATE (UTC, e.g. 2026-11-01) or within an age (7d, 12h)"
    )


def _exec_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-retries", type=int, metavar="N", help="attempts offered per node when it fails (default 3)")
    parser.add_argument("--parallel", type=int, metavar="N", help="run up to N independent nodes at once (default 1)")
    options.add_approval_args(parser)
    options.add_json_arg(parser, "print one JSON object per event")
    parser.add_argument("--no-output", action="store_true", help="do not echo command output (it is still recorded)")
    parser.add_argument(
        "--events-file", metavar="FILE",
        help="also append every run event to FILE as it happens, one JSON object per line (as --json prints them)",
    )


def _detach_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--detach", metavar="JOB",
        help="run in the background, detached from this terminal and connection; JOB (a 0700 directory of yours) "
        "receives its events, output, exit code and a state copy (`follow JOB` looks at it); a --vars-file inside "
        "JOB is removed once read",
    )


def _approval_files_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--approval", action="append", default=[], metavar="FILE",
        help="a signed approval (`playbook approval sign`) to record before the run goes on (repeatable)",
    )


def _command(sub: Any, name: str, summary: str, description: str, examples: list[str], codes: tuple[int, ...]) -> Any:
    """A command's parser, in the one shape of every command's help (runtime/options.py)."""
    return sub.add_parser(name, help=summary, description=description, epilog=options.epilog(examples, codes),
                          formatter_class=options.HelpFormatter)


def command_parsers(bundle: Any = None, prog: str = "playbook") -> dict[str, argparse.ArgumentParser]:
    """Each command's parser, by name (what `playbook` completes and lists)."""
    return dict(_subparsers(build_parser(bundle, prog)).choices)


def _subparsers(parser: argparse.ArgumentParser) -> Any:
    return next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))


def build_parser(bundle: Any = None, prog: str = "playbook") -> argparse.ArgumentParser:
    parser = options.parser(prog, "Run a runbook step by step, with approvals, retries and resumable state.", codes=())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    file_help = "the runbook file (*.playbook.toml)"
    runbook = "" if bundle else "deploy.playbook.toml "

    run = _command(sub, "run", "run the runbook", "Run the runbook step by step: approvals, retries, resumable state.",
                   ["%s run %s--var ENVIRONMENT=staging --auto-approve --state-path run.db" % (prog, runbook)], RUN_CODES)
    if not bundle:
        run.add_argument("file", help=file_help)
    options.add_variable_args(run)
    _exec_args(run)
    options.add_state_arg(run)
    _approval_files_arg(run)
    run.add_argument(
        "--rollout", nargs=2, metavar=("UID", "HOST"),
        help="record that the fleet rollout UID started this run as HOST (`playbook fleet` gives it; approvals "
        "signed for that rollout are checked against it)",
    )
    _detach_arg(run)

    resume = _command(sub, "resume", "continue a failed or aborted run",
                      "Continue a failed, aborted or waiting run: succeeded steps never run again.",
                      ["%s resume %s7 --auto-approve" % (prog, runbook)], RUN_CODES)
    if not bundle:
        resume.add_argument("file", help=file_help)
    resume.add_argument("run_id", nargs="?", type=int, help="the run to continue (default: the latest resumable one)")
    options.add_variable_args(resume)
    _exec_args(resume)
    options.add_state_arg(resume)
    resume.add_argument(
        "--replan",
        action="store_true",
        help="continue the run with the runbook as it is now: succeeded steps whose definition is unchanged keep "
        "their results, changed, new and failed steps run (asked on a terminal; required without one)",
    )
    resume.add_argument("--force", action="store_true", help="continue with the recorded plan even though the runbook changed")
    resume.add_argument(
        "--rerun-interrupted", action="store_true", help="without a terminal, run again a step that was interrupted"
    )
    _approval_files_arg(resume)
    _detach_arg(resume)

    detach.add_follow_arguments(_command(sub, "follow", detach.FOLLOW_SUMMARY, detach.FOLLOW_DESCRIPTION,
                                         [detach.FOLLOW_EXAMPLE % prog], detach.FOLLOW_CODES))

    approve = _command(
        sub, "approve", "record a decision on a waiting step's question (out of band, or signed)",
        "Record an approval (or with --reject a rejection) of a step's question in a run, "
        "for a run that waits for it; `resume` then continues without asking again. Recorded with "
        "who (the operating system's name of the user running this; behind sudo, the login that ran "
        "sudo), when, how and the note. In a bundle compiled with --approval-signers, a step with "
        "approvers or approvals accepts only --signature FILE (exit 2: it does not fit this run, step, "
        "question or values, or has expired; exit 4: its signature does not verify); RUN and NODE "
        "may then be left out (the file names them).",
        ["%s approve 7 approve_production --note 'dashboards green'" % prog, "%s approve --signature approval.json" % prog],
        QUERY_CODES,
    )
    approve.add_argument("run_id", type=int, nargs="?", metavar="RUN")
    approve.add_argument("node", nargs="?", metavar="NODE")
    approve.add_argument("--reject", action="store_true", help="record a rejection instead")
    approve.add_argument("--note", metavar="TEXT", help="why (recorded)")
    approve.add_argument("--signature", metavar="FILE", help="a signed approval made with `playbook approval sign`")
    options.add_state_arg(approve)

    approval = _command(
        sub, "approval", "export a waiting step's approval request, for an approver to sign elsewhere",
        "Approvals signed away from this host. `approval request RUN NODE` writes what the "
        "approver signs: the run (its id and random UID), the step, its question as asked and the run's "
        "values (secrets masked). On a workstation: `playbook approval sign request.json --key KEY -o "
        "approval.json`; back here: `resume --approval approval.json` (or `approve --signature approval.json`).",
        ["%s approval request 7 approve_production -o request.json" % prog], QUERY_CODES,
    )
    approval_sub = approval.add_subparsers(dest="approval_command", metavar="ACTION")
    approval_sub.required = True
    request = _command(approval_sub, "request", "write the approval request of a step a run waits for",
                       "Write the approval request of a step the run waits for (JSON; standard output without -o).",
                       ["%s approval request 7 approve_production -o request.json" % prog], QUERY_CODES)
    request.add_argument("run_id", type=int, metavar="RUN")
    request.add_argument("node", metavar="NODE")
    request.add_argument("--output", "-o", metavar="FILE", help="write it to FILE (default: standard output)")
    options.add_state_arg(request)

    show = _command(sub, "show", "list runs with statistics per workflow, or show one run's steps",
                    "List runs with statistics per workflow (what each waiting run waits for), or show one run: its "
                    "attempts, decisions, audit trail and, with --output, the output tails.",
                    ["%s show" % prog, "%s show deploy --since 7d" % prog, "%s show --run 7 --output" % prog], QUERY_CODES)
    show.add_argument(
        "title", nargs="?", metavar="NAME", help="only runs of this runbook: its file, its id, or a unique part of its title"
    )
    show.add_argument("--run", type=int, metavar="ID", help="show the attempts of one run")
    show.add_argument("--last", action="store_true", help="show the attempts of the latest run")
    show.add_argument("--output", action="store_true", help="with --run/--last: include the output tails")
    show.add_argument("--limit", type=int, default=20, help="how many runs to list (default 20)")
    _since_arg(show)
    options.add_json_arg(show)
    options.add_state_arg(show)

    info = _command(sub, "info", "database location and statistics per workflow; --plugins lists plugins",
                    "The state database and statistics per workflow (runs by outcome, durations, the steps that fail "
                    "or are retried most, the slowest, approvals by person); --plugins lists the plugins.",
                    ["%s info --plugins" % prog], QUERY_CODES)
    info.add_argument("--plugins", action="store_true", help="list the plugins, their functions and parameters")
    _since_arg(info)
    options.add_json_arg(info)
    options.add_state_arg(info)

    setst = _command(sub, "set-status", "correct the recorded status of a step (audited)",
                     "Correct the recorded status of a step, recorded with who and why. A step with approvers "
                     "or approvals can never be set succeeded or skipped: decisions on it are given with `approve`.",
                     ["%s set-status 7 deploy succeeded --reason 'finished by hand'" % prog], QUERY_CODES)
    setst.add_argument("run_id", type=int)
    setst.add_argument("node")
    setst.add_argument("status", choices=["succeeded", "failed", "skipped"])
    setst.add_argument("--reason", help="why (recorded)")
    options.add_state_arg(setst)

    report_cmd = _command(
        sub, "report", "write a run's report: HTML for people, JUnit XML for CI, JSON",
        "Write the report of a run (default: the latest):\n"
        "  --html   one self-contained page: summary, DAG coloured by state, timeline of attempts,\n"
        "           audit trail of approvals and decisions, output tails\n"
        "  --junit  JUnit XML, one test case per step (failed, skipped with the reason)\n"
        "  --json   the same content as JSON\n"
        "Secrets stay masked. Without any of them: HTML to playbook-run-ID.html here."
        + ("" if bundle else "\nThe report of a fleet rollout: playbook fleet report DIR."),
        ["%s report --html report.html" % prog, "%s report 7 --junit junit.xml --json run.json" % prog, "%s report --json" % prog],
        QUERY_CODES,
    )
    report_cmd.add_argument("run_id", nargs="?", type=int, metavar="RUN_ID", help="the run (default: the latest one)")
    report_cmd.add_argument("--last", action="store_true", help="the latest run (the default)")
    report_cmd.add_argument(
        "--html", nargs="?", const=DEFAULT_NAME, metavar="FILE",
        help="write the HTML page to FILE (- for standard output; default playbook-run-ID.html)",
    )
    report_cmd.add_argument(
        "--junit", nargs="?", const=DEFAULT_NAME, metavar="FILE",
        help="write JUnit XML to FILE (- for standard output; default playbook-run-ID.xml)",
    )
    report_cmd.add_argument("--json", nargs="?", const="-", metavar="FILE", help="write JSON to FILE (standard output without FILE)")
    options.add_state_arg(report_cmd)

    if bundle:
        plan = _command(sub, "plan", "show what will run here, with this host's variables",
                        "Show what will run here, in execution order, with this host's variables: each step's command "
                        "rendered, its timeout, and its run condition in words.",
                        ["%s plan --var ENVIRONMENT=prod" % prog], QUERY_CODES)
        options.add_variable_args(plan)
        options.add_json_arg(plan, "print the plan document")
        for name, text in (
            ("verify", "check the bundle's integrity and signature"),
            ("inspect", "what is inside: runbook, versions, contents, Python floor"),
            ("extract", "unpack the bundle into a directory for inspection"),
        ):
            sub.add_parser(name, help=text, add_help=False)
    return parser


# -- entry point ---------------------------------------------------------------------------------
def main(
    argv: list[str] | None = None,
    bundle: Any = None,
    load_plan: Callable[[str, Any], Plan] | None = None,
    prog: str | None = None,
) -> int:
    """Run one command; returns the exit code, raises `PlaybookError` for the entry point's
    guard. `load_plan(file, sources)` compiles a runbook file (the `playbook` tool); a bundle
    brings its plan. The bundle's own commands (verify, inspect, extract) are dispatched by
    runtime/bundle.py before this is called."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = prog or ("./%s" % os.path.basename(bundle.path) if bundle is not None else "playbook")
    parser = build_parser(bundle, prog=prog)
    if not argv:
        parser.print_help()
        return EXIT_INVALID
    args = parser.parse_args(argv)
    inv = Invocation(args, bundle, load_plan, prog)
    if getattr(args, "detach", None):
        return _detached(inv)
    return COMMANDS[args.command](inv)


def _detached(inv: Invocation) -> int:
    """`run|resume --detach JOB`: the variables read (a --vars-file inside JOB then removed, so
    secrets do not stay on disk), then the command started in the background (detach.py)."""
    args = inv.args
    job = os.path.abspath(args.detach)
    problem = detach.job_problem(job)
    if problem is not None:
        raise UsageError("--detach %s: %s" % (job, problem))
    args.events_file = args.events_file or os.path.join(job, detach.EVENTS)
    inv.sources()
    if args.vars_file and os.path.dirname(os.path.abspath(args.vars_file)) == job:
        os.unlink(args.vars_file)
    return detach.start(job, lambda: COMMANDS[args.command](inv), inv.state_file(), _print)


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


class Invocation:
    """One command as invoked: its arguments, the bundle (or None), the plan loader, the name the
    user typed, and the configuration (loaded once, when first needed)."""

    def __init__(self, args: argparse.Namespace, bundle: Any, load_plan: Callable[[str, Any], Plan] | None, prog: str) -> None:
        self.args = args
        self.bundle = bundle
        self.load_plan = load_plan
        self.prog = prog
        self._cfg = None
        self._sources: Any = None

    @property
    def cfg(self) -> Any:
        if self._cfg is None:
            self._cfg = session.load_config()
        return self._cfg

    def store(self) -> Any:
        return session.open_store(getattr(self.args, "state_path", None), self.cfg)

    def state_file(self) -> str:
        """The state database's path, as `store()` opens it."""
        return os.path.abspath(getattr(self.args, "state_path", None) or os.path.expanduser(self.cfg.get("database", "path")))

    def sources(self) -> Any:
        """The variables given (read once)."""
        if self._sources is None:
            try:
                self._sources = var_mod.Sources.gather(self.args.var, self.args.vars_file, self.args.vars_env)
            except var_mod.VariableError as exc:
                raise UsageError(str(exc)) from None
        return self._sources

    def plan(self, sources: Any) -> tuple[Plan, str]:
        """The plan to run and where it came from (the runbook file, or the bundle)."""
        if self.bundle is not None:
            try:
                return Plan.loads(self.bundle.plan_bytes), getattr(self.bundle, "source_label", self.bundle.path)
            except PlanError as exc:
                raise BundleError("bundle plan: %s" % exc) from None
        assert self.load_plan is not None
        return self.load_plan(self.args.file, sources), os.path.abspath(self.args.file)

    def commands(self) -> Callable[..., str]:
        """The commands that continue a run or approve its steps, as the operator can paste
        them: the program as it was invoked, the runbook file (resume), the run, the step, and
        --state-path when one was given."""
        import shlex

        state_path = getattr(self.args, "state_path", None)
        tail = ["--state-path", state_path] if state_path else []

        def command(verb: str, run_id: int, *words: str, file: str | None = None) -> str:
            file = file or getattr(self.args, "file", None)
            head = [self.invoked, *verb.split()] + ([file] if verb == "resume" and self.bundle is None and file else [])
            return " ".join(shlex.quote(str(w)) for w in head + [run_id, *words] + tail)

        return command

    @property
    def invoked(self) -> str:
        """The program as the operator typed it (a bundle: its path as given, e.g. /tmp/x/s.pyz)."""
        if self.bundle is not None and sys.argv and sys.argv[0] and os.path.abspath(sys.argv[0]) == os.path.abspath(self.bundle.path):
            return sys.argv[0]
        return self.prog

    def software(self) -> str:
        """The Playbook running this, as a run records it: its version, and a bundle's sha256."""
        if self.bundle is not None:
            return "playbook %s, %s" % (self.bundle.manifest.get("playbook_version", "?"), self.bundle.identity_line)
        from playbook import __version__

        return "playbook %s (installed)" % __version__

    def header(self) -> str | None:
        """What a run prints when it starts: a bundle's identity."""
        return self.bundle.identity_line if self.bundle is not None else None

    def entry_points(self) -> Any:
        return self.bundle.entry_points if self.bundle is not None else None

    def options(self) -> Any:
        from .engine import Options

        args, cfg = self.args, self.cfg
        max_retries = args.max_retries if args.max_retries is not None else int(cfg.get("execution", "max_retries"))
        parallel = args.parallel if args.parallel is not None else int(cfg.get("execution", "parallel_execution") or 1)
        if max_retries < 1:
            raise UsageError("--max-retries must be at least 1")
        if parallel < 1:
            raise UsageError("--parallel must be at least 1")
        return Options(
            max_retries=max_retries,
            parallel=parallel,
            auto_approve=args.auto_approve,
            default_timeout=cfg.get("execution", "default_timeout"),
            rerun_interrupted=getattr(args, "rerun_interrupted", False),
            approve=frozenset(args.approve),
            approval_signers=self.approval_signers(),
            approval_max_valid=self.options_max_valid(),
        )

    def options_max_valid(self) -> float | None:
        """The longest validity (seconds) this bundle accepts for a signed approval (None: 7 days)."""
        return self.bundle.manifest.get("approval_max_valid") if self.bundle is not None else None

    def approval_signers(self, run: Any = None) -> str | None:
        """The allowed signers whose signatures alone approve steps with a policy: the bundle's,
        else those recorded with `run` (the bundle that started it)."""
        signers = self.bundle.manifest.get("approval_signers") if self.bundle is not None else None
        return signers or (run or {}).get("approval_signers") or None

    def check_approvals(self, plan: Plan, run: Any = None) -> None:
        """--approve names steps of this runbook that ask a question; where only signed
        approvals count for a step with a policy, neither --approve nor --auto-approve may
        claim to approve it."""
        from .approvals import has_policy, has_question

        for node_id in self.args.approve:
            node = plan.by_id.get(node_id)
            if node is None or not has_question(node):
                asking = ", ".join(n.id for n in plan.nodes if has_question(n)) or "none"
                what = "has no step" if node is None else "asks no question at step"
                raise UsageError("--approve %s: the runbook %s %s (steps with a question: %s)" % (node_id, what, node_id, asking))
        if not self.approval_signers(run):
            return
        signed = [n.id for n in plan.nodes if has_question(n) and has_policy(n)]
        flagged = [n for n in self.args.approve if n in signed] or (signed if self.args.auto_approve else [])
        if flagged:
            flag = "--approve %s" % flagged[0] if self.args.approve and flagged[0] in self.args.approve else "--auto-approve"
            raise UsageError(
                "%s cannot approve %s: this bundle accepts only signed approvals for %s (it has approvers or approvals); "
                "the run waits there and says how to get a signature%s"
                % (flag, ", ".join(flagged), "it" if len(flagged) == 1 else "them",
                   "" if flag != "--auto-approve" else " (--approve NODE still answers the other questions)")
            )

    def ui(self, parallel: int) -> Any:
        """The run's UI from the [ui] keys (and interactive_timeout), wrapped to write the
        [logging] file when one is configured."""
        from . import ui as ui_mod

        cfg = self.cfg
        theme = cfg.get("ui", "color_theme")
        ui = ui_mod.make_ui(
            json_mode=self.args.json,
            parallel=parallel > 1,
            color=not os.environ.get("NO_COLOR") and theme != "none",
            timestamps=cfg.get("ui", "show_timestamps"),
            theme=theme,
            progress=cfg.get("ui", "progress_style") == "bar",
            show_output=not self.args.no_output and not cfg.get("ui", "compact_output"),
            prompt_timeout=cfg.get("execution", "interactive_timeout"),
        )
        if self.args.events_file:
            try:
                fd = ui_mod.open_events_file(self.args.events_file)
            except UnsafePath as exc:
                raise UsageError(str(exc)) from None
            except OSError as exc:
                raise UsageError("--events-file %s: cannot be opened: %s" % (self.args.events_file, exc.strerror or exc)) from None
            ui = ui_mod.EventsFileUI(ui, fd)
        if not cfg.get("logging", "file_path"):
            return ui
        from . import config, runlog  # logging is imported only when a log file is configured

        try:
            log = runlog.open_run_log(cfg)
        except config.ConfigError as exc:
            raise UsageError(str(exc)) from None
        return runlog.LoggingUI(ui, log, who=whoami()) if log is not None else ui

    def since(self) -> str | None:
        """--since as a database timestamp (None when not given)."""
        from . import report

        try:
            return report.parse_since(self.args.since) if getattr(self.args, "since", None) else None
        except ValueError as exc:
            raise UsageError(str(exc)) from None


# -- commands ------------------------------------------------------------------------------------
def cmd_run(inv: Invocation) -> int:
    options = inv.options()
    ui = inv.ui(options.parallel)
    sources = inv.sources()
    plan, source = inv.plan(sources)
    inv.check_approvals(plan)
    values = session.resolve_values(plan, sources, ui, ui.interactive and not inv.args.no_interactive_vars)
    bound = session.bind(plan, values)
    origin = None
    if inv.args.rollout:
        origin = {"rollout": inv.args.rollout[0], "host": inv.args.rollout[1]}
    store = inv.store()
    files = [approval_file(path) for path in inv.args.approval]
    if files:  # checked before anything is recorded: only a rollout's approvals exist before its runs
        dumped = plan.dumps()
        about = {"id": 0, "uid": None, "plan": dumped, "plan_hash": plan.digest(dumped), "status": "running", "origin": origin,
                 "variables": session.masked_values(plan, values), "approval_signers": options.approval_signers}
        for path, text in files:
            check_decision(inv, None, about, None, path, document=text)

    def record(run_id: int) -> None:
        for path, text in files:
            record_approval(inv, store, _get_run(store, run_id), None, path, document=text)

    runs = session.Session(store, ui, options, inv.commands(), inv.entry_points(), header=inv.header(), origin=origin,
                           software=inv.software())
    return runs.start(plan, bound, values, source, before=record if files else None)


def cmd_resume(inv: Invocation) -> int:
    args = inv.args
    options = inv.options()
    ui = inv.ui(options.parallel)
    sources = inv.sources()
    store = inv.store()
    current, _ = inv.plan(sources)
    interactive = ui.interactive and not args.no_interactive_vars
    run = session.find_resumable(store, args.run_id, current, args.force, replan=args.replan or ui.interactive)
    recorded = Plan.loads(run["plan"])
    inv.check_approvals(current, run)
    for path in args.approval:
        record_approval(inv, store, run, None, path)
    runs = session.Session(store, ui, options, inv.commands(), inv.entry_points(), header=inv.header())
    if (run["plan_hash"] == current.digest() and not args.replan) or args.force:
        values = session.resolve_values(recorded, sources, ui, interactive, fixed=session.recorded_values(run, recorded),
                                        recorded_by="run %d" % run["id"])
        return runs.resume(run, session.bind(recorded, values), values)
    # the runbook changed: continue the same run with the runbook as it is now
    kept = {k: v for k, v in session.recorded_values(run, recorded).items() if sources.lookup(k) is None}
    values = session.resolve_values(current, sources, ui, interactive, fixed=kept)
    bound = session.bind(current, values)
    try:
        old = session.bind(recorded, dict(values, **session.recorded_values(run, recorded)))  # as it ran
    except UsageError:  # the recorded plan no longer binds: every templated step (and question) counts as changed
        old = recorded
    if not args.replan:  # on a terminal: show the change and ask
        prior = store.final_attempts(run["id"])
        ui.event("message", text=session.replan_text(run["id"], session.replan_changes(old, bound, prior)))
        try:
            agreed = ui.confirm(None, "The runbook changed since run %d started. Continue it with the runbook as it is now?" % run["id"])
        except EOFError:
            agreed = False
        if not agreed:
            raise UsageError("nothing was done; `resume --force` continues the recorded plan")
    return runs.resume(run, old, values, replan=(current, bound))


def cmd_plan(inv: Invocation) -> int:
    from . import ui as ui_mod

    args = inv.args
    sources = inv.sources()
    plan, _ = inv.plan(sources)
    interactive = sys.stdin.isatty() and not args.no_interactive_vars
    ui = ui_mod.TerminalUI() if interactive else ui_mod.PlainUI()
    ui.interactive = interactive
    from . import preview

    values = session.resolve_values(plan, sources, ui, interactive)
    bound = session.bind(plan, values)
    origins = var_mod.origins(plan.variables, sources, values, fixed=plan.values)
    timeout = (inv.cfg.get("execution", "default_timeout"), inv.cfg.origin("execution", "default_timeout"))
    if args.json:
        document = preview.document(bound, values, origins, *timeout)
        sys.stdout.write(json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(ui_mod.plan_text(bound, values, origins, *timeout) + "\n")
    return EXIT_OK


def _write_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


def _get_run(store: Any, run_id: int) -> dict:
    run = store.get_run(run_id)
    if run is None:
        raise UsageError("no run %d in %s" % (run_id, store.path))
    return run


def _latest_run_id(store: Any, workflow: str | None = None) -> int:
    latest = store.runs(workflow=workflow, limit=1)
    if not latest:
        raise UsageError("no runs recorded in %s" % store.path)
    return latest[0]["id"]


def _workflow(inv: Invocation, store: Any, name: str | None) -> str | None:
    """The runbook NAME stands for: a runbook file, a runbook id, or a unique part of a title."""
    if name is None:
        return None
    if inv.load_plan is not None and os.path.isfile(name):
        return inv.load_plan(name, var_mod.Sources()).runbook.get("id")
    known = store.workflows()
    exact = [w for w in known if name in (w["workflow"], w["title"])]
    lowered = name.lower()
    found = exact or [w for w in known if lowered in (w["title"] or "").lower() or lowered in w["workflow"].lower()]
    if len(found) == 1:
        return found[0]["workflow"]
    listed = ", ".join("%r (%s)" % (w["title"], w["workflow"]) for w in (found or known)[:8])
    if not found:
        raise UsageError("no runbook in %s matches %r%s" % (store.path, name, "; runbooks: " + listed if known else ""))
    raise UsageError("%r matches several runbooks: %s; give the runbook's id or file" % (name, listed))


def _waits_for(store: Any, run_id: int) -> list[str]:
    """The steps a waiting run waits for: those of its `approval-needed` events since it was
    last resumed (an approval given since may not be all the step needs: `_waiting_lines`
    counts them)."""
    needed: list[str] = []
    for event in store.events(run_id):
        if event["kind"] == "approval-needed" and event["node_id"] and event["node_id"] not in needed:
            needed.append(event["node_id"])
        elif event["kind"] == "resume":
            needed = []
    return needed


def _waiting_lines(inv: Invocation, store: Any, run_id: int) -> list[str]:
    """What a waiting run waits for, a line per step: the step, the approvals it has and needs,
    from whom, and the command that gives one."""
    from . import approvals

    run = store.get_run(run_id) or {}
    try:
        plan = Plan.loads(run.get("plan") or "")
    except PlanError:
        plan = None
    command = inv.commands()
    lines = []
    for node_id in _waits_for(store, run_id):
        node = plan.by_id.get(node_id) if plan is not None else None
        if node is None:
            lines.append("run %d waits for an approval of %s (%s)" % (run_id, node_id, command("approve", run_id, node_id)))
            continue
        policy = approvals.policy_of(node)
        given = approvals.approvers_of(store.approvals(run_id, node_id, unused=True), policy)
        have = "%d of %d approval%s given%s" % (
            len(given), policy.approvals, "" if policy.approvals == 1 else "s", " (by %s)" % ", ".join(given) if given else "")
        signed = inv.approval_signers(run) and approvals.has_policy(node)
        if len(given) >= policy.approvals:
            lines.append("run %d waits for an approval of %s: %s; go on with: %s" % (
                run_id, node_id, have, command("resume", run_id, file=run.get("source"))))
            continue
        how = command("approval request", run_id, node_id, "-o", "request.json") if signed else command("approve", run_id, node_id)
        lines.append("run %d waits for an approval of %s: %s; %s may approve%s; %s: %s" % (
            run_id, node_id, have, ", ".join(policy.approvers) or "anyone", ", signed only" if signed else "",
            "export the request with" if signed else "approve with", how))
    return lines or ["run %d waits for an approval (show --run %d lists its questions)" % (run_id, run_id)]


def _alive_note(attempt: dict) -> dict:
    """An attempt left running or interrupted whose command is still alive says so."""
    if attempt.get("status") in ("running", "interrupted") and attempt.get("pgid"):
        from .executors import group_alive

        if group_alive(attempt["pgid"], attempt.get("proc_start")):
            attempt["still_running"] = True
            attempt["error"] = "its command is still running (process group %d)" % attempt["pgid"]
    return attempt


def cmd_show(inv: Invocation) -> int:
    from . import report

    args = inv.args
    store = inv.store()
    workflow = _workflow(inv, store, args.title)
    if args.last:
        args.run = _latest_run_id(store, workflow)
    if args.run is not None:
        run = _get_run(store, args.run)
        attempts = [_alive_note(a) for a in store.attempts(args.run)]
        events = store.events(args.run)
        if args.json:
            run = dict(run)
            run.pop("plan", None)
            _write_json({"run": run, "attempts": attempts, "events": events})
        else:
            sys.stdout.write(report.run_text(run, attempts, events, output=args.output) + "\n")
        return EXIT_OK
    since = inv.since()
    runs = store.runs(workflow=workflow, since=since, limit=args.limit)
    stats = store.stats(title=workflow, since=since)
    if args.json:
        _write_json({"database": store.path, "since": since, "runs": runs, "workflows": stats})
        return EXIT_OK
    text = report.runs_text(runs, store.path)
    for run in runs:
        if run["status"] == "waiting":
            text += "".join("\n" + line for line in _waiting_lines(inv, store, run["id"]))
    if since:
        text += "\n(runs started since %s)" % report.parse_time(since).strftime("%Y-%m-%d %H:%M:%S UTC")
    if stats:
        text += "\n\nper workflow (all its runs%s, not only those listed):" % (" since then" if since else "")
        text += report.workflows_text(stats)
    sys.stdout.write(text + "\n")
    return EXIT_OK


def cmd_info(inv: Invocation) -> int:
    from . import report

    args = inv.args
    if args.plugins:
        from .plugins import Registry, describe_plugins

        plugins = describe_plugins(Registry(entry_points=inv.entry_points()))
        if args.json:
            _write_json({"plugins": plugins})
        else:
            sys.stdout.write(report.plugins_text(plugins) + "\n")
        return EXIT_OK
    store = inv.store()
    since = inv.since()
    stats = store.stats(since=since)
    if args.json:
        _write_json({"database": store.path, "since": since, "workflows": stats})
    else:
        sys.stdout.write(report.stats_text(stats, store.path, since=since) + "\n")
    return EXIT_OK


def cmd_set_status(inv: Invocation) -> int:
    from .approvals import has_policy, policy_of

    args = inv.args
    store = inv.store()
    plan = Plan.loads(_get_run(store, args.run_id)["plan"])
    node = plan.by_id.get(args.node)
    if node is None:
        raise UsageError("run %d has no node %r (nodes: %s)" % (args.run_id, args.node, ", ".join(n.id for n in plan.nodes)))
    if has_policy(node) and args.status != "failed":
        raise UsageError(
            "%s is an approval with a policy (%s): set-status never settles it as %s; record decisions with: %s"
            % (node.id, policy_of(node).describe(), args.status, inv.commands()("approve", args.run_id, node.id))
        )
    store.set_node_status(args.run_id, args.node, args.status, whoami(), args.reason or "no reason given")
    said = "recorded with who and why" if args.reason else "recorded with who; no reason given: --reason says why"
    sys.stdout.write("run %d: %s is now %s (%s)\n" % (args.run_id, args.node, args.status, said))
    return EXIT_OK


DEFAULT_NAME = "<playbook-run-ID>"  # --html / --junit without a FILE: playbook-run-ID.html / .xml here
REPORT_NAMES = {"html": "HTML report", "junit": "JUnit XML", "json": "JSON report"}


def _report_targets(args: argparse.Namespace) -> list[tuple[str, str]]:
    if args.json and args.json.isdigit() and args.run_id is None and not os.path.exists(args.json):
        args.run_id, args.json = int(args.json), "-"  # `report --json 7`: 7 is the run, not a file
    if args.run_id is not None and args.last:
        raise UsageError("give a RUN_ID or --last, not both")
    outputs = [(kind, target) for kind, target in (("html", args.html), ("junit", args.junit), ("json", args.json)) if target]
    if len([kind for kind, target in outputs if target == "-"]) > 1:
        raise UsageError("only one of --html, --junit and --json can go to standard output (-)")
    return outputs


def _report_text(rep: Any, kind: str, in_bundle: bool) -> str:
    if kind == "html":
        svg, note = rep.dag_svg()
        if note and in_bundle and svg is None:
            note = "the DAG is shown as a table"  # a server is no place to install Graphviz
        elif note:
            sys.stderr.write("note: %s\n" % note)
        return rep.html(svg=svg, note=note)
    if kind == "junit":
        return rep.junit().decode("utf-8")
    return rep.json()


def _write_stdout_utf8(text: str) -> None:
    sys.stdout.flush()
    out = getattr(sys.stdout, "buffer", None)
    if out is not None:  # UTF-8 whatever the locale says
        out.write(text.encode("utf-8"))
        out.flush()
    else:
        sys.stdout.write(text)


def cmd_report(inv: Invocation) -> int:
    """Write a run's report as HTML, JUnit XML and/or JSON (files, or one to standard output)."""
    from . import report

    args = inv.args
    outputs = _report_targets(args)
    store = inv.store()
    run = _get_run(store, args.run_id if args.run_id is not None else _latest_run_id(store))
    outputs = outputs or [("html", DEFAULT_NAME)]
    suffix = {"html": "html", "junit": "xml", "json": "json"}
    outputs = [(k, "playbook-run-%d.%s" % (run["id"], suffix[k]) if t == DEFAULT_NAME else t) for k, t in outputs]
    rep = report.RunReport(store, run)
    say = sys.stderr if any(target == "-" for _, target in outputs) else sys.stdout
    for kind, target in outputs:
        text = _report_text(rep, kind, inv.bundle is not None)
        if target == "-":
            _write_stdout_utf8(text)
            continue
        try:
            with open(target, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as exc:
            raise UsageError("cannot write %s: %s" % (target, exc.strerror or exc), EXIT_STATE) from None
        say.write("wrote %s of run %d (%s): %s\n" % (REPORT_NAMES[kind], run["id"], run["status"], target))
    return EXIT_OK


def approval_file(path: str) -> tuple[str, str]:
    """(path, text) of a signed approval file (exit 2 when it cannot be read)."""
    from .approvals import read_document

    return path, read_document(path)


def waiting_question(store: Any, run_id: int, node_id: str) -> str | None:
    """The question a run last asked at `node_id` and waits for an answer to (as shown: secrets
    masked), from its `approval-needed` event; None when it has not asked it."""
    question = None
    for event in store.events(run_id):
        if event["node_id"] != node_id:
            continue
        if event["kind"] == "approval-needed":
            detail = event.get("detail") or ""
            for marker in ("%s: needed, no terminal: " % node_id, "%s: waiting: " % node_id):
                if detail.startswith(marker):
                    question = detail[len(marker):]
    return question


def record_approval(inv: Invocation, store: Any, run: dict, node_id: str | None, signature: str | None,
                    reject: bool = False, note: str | None = None, document: str | None = None) -> tuple[str, str]:
    """Check and record one decision on `run`'s step: signed (the document at `signature`, or
    its text `document`), or out of band by the person running this. Returns (node id,
    decision)."""
    decision = check_decision(inv, store, run, node_id, signature, reject, note, document)
    node_id, verdict, who, how, principal, fingerprint, note, text = decision
    store.add_approval(run["id"], node_id, verdict, who, how, principal=principal, fingerprint=fingerprint, note=note, signature=text)
    detail = "%s: %s: (by %s%s)%s" % (
        node_id, verdict, how, " %s key %s" % (principal, fingerprint) if principal else "", " note: %s" % note if note else ""
    )
    store.add_event(run["id"], "approval", detail, who=who, node_id=node_id)
    return node_id, verdict


def check_decision(inv: Invocation, store: Any, run: dict, node_id: str | None, signature: str | None,
                   reject: bool = False, note: str | None = None, document: str | None = None) -> tuple:
    """The decision `record_approval` records, checked: (node id, decision, who, how, principal,
    fingerprint, note, signed document text or None). `store` may be None (a run about to be
    recorded: no question asked yet)."""
    from . import approvals

    plan = Plan.loads(run["plan"])
    signers = inv.approval_signers(run)
    text = None
    if signature:
        text = document if document is not None else approvals.read_document(signature)
        data, _ = approvals.load_document(text, signature)
        if node_id is not None and data.get("node") != node_id:
            raise approvals.ApprovalError("%s approves step %s, not %s" % (signature, data.get("node"), node_id))
        node_id = str(data.get("node"))
    node = plan.by_id.get(node_id or "")
    if node is None or not approvals.has_question(node):
        asking = ", ".join(n.id for n in plan.nodes if approvals.has_question(n)) or "none"
        raise UsageError("run %d has no step %r with a question (steps with one: %s)" % (run["id"], node_id, asking))
    if run["status"] == "succeeded":
        raise UsageError("run %d succeeded; there is nothing to approve" % run["id"])
    policy = approvals.policy_of(node)
    host = whoami().rsplit("@", 1)[1]
    principal: str | None
    fingerprint: str | None
    if text is not None:
        if not signers:
            raise approvals.ApprovalError("a signed approval needs a bundle compiled with --approval-signers to check it against")
        expected = approvals.expected(run, signers, approvals.values_digest(run.get("variables") or {}), inv.options_max_valid())
        asked = waiting_question(store, run["id"], node.id) if store is not None else None
        checked = approvals.check(text, signature or "the signed approval", expected, node.id, asked)
        if reject and checked.decision != "rejected":
            raise UsageError("%s approves %s; --reject contradicts it" % (signature, node.id))
        who, how, decision = "%s@%s" % (checked.principal, host), "signed", checked.decision
        principal, fingerprint, note = checked.principal, checked.fingerprint, note or checked.note or None
    else:
        if signers and approvals.has_policy(node):
            raise approvals.ApprovalError(
                "%s accepts only a signed approval (this bundle was compiled with --approval-signers and %s has a "
                "policy: %s); export the request with: %s, have an approver sign it on a workstation "
                "(playbook approval sign request.json --key KEY -o approval.json), then: %s"
                % (node.id, node.id, policy.describe(), inv.commands()("approval request", run["id"], node.id, "-o", "request.json"),
                   inv.commands()("approve", run["id"], node.id, "--signature", "approval.json"))
            )
        who, how, decision = whoami(), "out-of-band", "rejected" if reject else "approved"
        principal = fingerprint = None
    if not policy.allows(approvals.person(who)):
        raise approvals.ApprovalError("%s may not approve %s: %s may" % (approvals.person(who), node.id, policy.describe()))
    return node.id, decision, who, how, principal, fingerprint, note, text


def cmd_approve(inv: Invocation) -> int:
    args = inv.args
    if args.run_id is None and not args.signature:
        raise UsageError("give RUN and NODE, or --signature FILE (which names them)")
    store = inv.store()
    run_id = args.run_id
    document = None
    if run_id is None:
        _, document = approval_file(args.signature)
        run_id = _run_of_document(store, document, args.signature)
    run = _get_run(store, run_id)
    node_id, decision = record_approval(inv, store, run, args.node, args.signature, reject=args.reject, note=args.note, document=document)
    command = inv.commands()
    sys.stdout.write(
        "run %d: %s %s by %s; continue with: %s\n"
        % (run["id"], node_id, decision, store.approvals(run["id"], node_id)[-1]["who"], command("resume", run["id"], file=run.get("source")))
    )
    return EXIT_OK


def _run_of_document(store: Any, document: str, path: str) -> int:
    """The run of this database a signed approval names (by its run UID)."""
    from . import approvals

    data, _ = approvals.load_document(document, path)
    uid = data.get("run_uid")
    if not uid:
        raise UsageError("%s names no run uid (a fleet approval): give RUN and NODE" % path)
    found = store.run_by_uid(str(uid))
    if found is None:
        raise approvals.ApprovalError("%s approves run uid %s, which is not in %s" % (path, uid, store.path))
    return int(found["id"])


def cmd_approval(inv: Invocation) -> int:
    """`approval request RUN NODE [-o FILE]`."""
    from . import approvals

    args = inv.args
    store = inv.store()
    run = _get_run(store, args.run_id)
    plan = Plan.loads(run["plan"])
    node = plan.by_id.get(args.node)
    if node is None or not approvals.has_question(node):
        asking = ", ".join(n.id for n in plan.nodes if approvals.has_question(n)) or "none"
        raise UsageError("run %d has no step %r with a question (steps with one: %s)" % (run["id"], args.node, asking))
    question = waiting_question(store, run["id"], node.id)
    if question is None or run["status"] == "succeeded":
        raise UsageError(
            "run %d does not wait for %s (it has not asked its question); a request is made for a step the run waits for"
            % (run["id"], node.id)
        )
    bundle = inv.bundle.identity if inv.bundle is not None else None
    document = approvals.request_document(run, node, question, whoami().rsplit("@", 1)[1], bundle)
    text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if not args.output or args.output == "-":
        _write_stdout_utf8(text)
        return EXIT_OK
    try:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise UsageError("cannot write %s: %s" % (args.output, exc.strerror or exc), EXIT_STATE) from None
    sys.stdout.write(
        "wrote %s: the request to approve %s in run %d (uid %s); sign it on a workstation with:\n"
        "  playbook approval sign %s --key ~/.ssh/id_ed25519 -o approval.json\n"
        % (args.output, node.id, run["id"], run["uid"], os.path.basename(args.output))
    )
    return EXIT_OK


def cmd_follow(inv: Invocation) -> int:
    return detach.look(inv.args, _print)


COMMANDS: dict[str, Callable[[Invocation], int]] = {
    "follow": cmd_follow,
    "approve": cmd_approve,
    "approval": cmd_approval,
    "run": cmd_run,
    "resume": cmd_resume,
    "show": cmd_show,
    "info": cmd_info,
    "set-status": cmd_set_status,
    "report": cmd_report,
    "plan": cmd_plan,
}
