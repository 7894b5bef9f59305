"""The runtime's command line: run, resume, show, info, plan, set-status, report.

One definition of the options, used twice: by the bundle (argparse, standard library) and by the
`playbook` tool, whose click commands hand their arguments to `main()` with a `load_plan`
callable that compiles the runbook file in memory. There is one engine either way.
"""

import argparse
import getpass
import json
import os
import signal
import sys
import time

from . import engine as engine_mod
from . import variables as var_mod
from .plan import Plan, PlanError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_ABORTED = 3
EXIT_STATE = 4
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """Print one line and exit with `code`."""

    def __init__(self, message, code=EXIT_INVALID):
        super().__init__(message)
        self.code = code


# -- the options, defined once -------------------------------------------------------------------
def _variable_args(parser):
    group = parser.add_argument_group("variables")
    group.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="set a variable (repeatable)")
    group.add_argument("--vars-file", metavar="FILE", help="read variables from a TOML file of NAME = value lines")
    group.add_argument("--vars-env", metavar="PREFIX", help="read variables from environment variables PREFIX<NAME>")
    group.add_argument(
        "--no-interactive-vars", action="store_true", help="never prompt for a missing variable; fail and list them"
    )


def _state_arg(parser):
    parser.add_argument(
        "--state-path",
        metavar="DB",
        help="SQLite state database (default: $PLAYBOOK_DB_PATH or ~/.config/playbook/run.db)",
    )


def _since_arg(parser):
    parser.add_argument(
        "--since", metavar="DATE", help="only runs started at or after DATE (UTC, e.g. 2026-11-01) or within an age (7d, 12h)"
    )


def _exec_args(parser):
    parser.add_argument("--max-retries", type=int, metavar="N", help="attempts offered per node when it fails (default 3)")
    parser.add_argument("--parallel", type=int, metavar="N", help="run up to N independent nodes at once (default 1)")
    parser.add_argument("--auto-approve", action="store_true", help="approve every approval without a terminal (recorded as such)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per event")
    parser.add_argument("--no-output", action="store_true", help="do not echo command output (it is still recorded)")


def build_parser(bundle=None, prog="playbook"):
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run a runbook step by step, with approvals, retries and resumable state.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    file_help = "the runbook file (*.playbook.toml)"

    run = sub.add_parser(
        "run",
        help="run the runbook",
        description="Run the runbook. Exit 0 succeeded, 1 failed, 2 invalid input, 3 aborted, 4 state problem, 130 interrupted.",
        epilog="example:\n  %s run %s--var ENVIRONMENT=staging --auto-approve --state-path run.db"
        % (prog, "" if bundle else "deploy.playbook.toml "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if not bundle:
        run.add_argument("file", help=file_help)
    _variable_args(run)
    _exec_args(run)
    _state_arg(run)

    resume = sub.add_parser(
        "resume",
        help="continue a failed or aborted run",
        description="Continue a failed or aborted run: succeeded steps never run again.",
        epilog="example:\n  %s resume %s7 --auto-approve" % (prog, "" if bundle else "deploy.playbook.toml "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if not bundle:
        resume.add_argument("file", help=file_help)
    resume.add_argument("run_id", nargs="?", type=int, help="the run to continue (default: the latest resumable one)")
    _variable_args(resume)
    _exec_args(resume)
    _state_arg(resume)
    resume.add_argument("--force", action="store_true", help="continue even though the runbook changed since the run started")
    resume.add_argument(
        "--rerun-interrupted", action="store_true", help="without a terminal, run again a step that was interrupted"
    )

    show = sub.add_parser(
        "show",
        help="list runs with statistics per workflow, or show one run's steps",
        epilog="examples:\n  %s show\n  %s show deploy --since 7d\n  %s show --run 7 --output" % (prog, prog, prog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument("title", nargs="?", help="only runs of this workflow title")
    show.add_argument("--run", type=int, metavar="ID", help="show the attempts of one run")
    show.add_argument("--last", action="store_true", help="show the attempts of the latest run")
    show.add_argument("--output", action="store_true", help="with --run/--last: include the output tails")
    show.add_argument("--limit", type=int, default=20, help="how many runs to list (default 20)")
    _since_arg(show)
    show.add_argument("--json", action="store_true", help="print JSON")
    _state_arg(show)

    info = sub.add_parser(
        "info",
        help="database location and statistics per workflow; --plugins lists plugins",
        epilog="example:\n  %s info --plugins" % prog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    info.add_argument("--plugins", action="store_true", help="list the plugins, their functions and parameters")
    _since_arg(info)
    info.add_argument("--json", action="store_true", help="print JSON")
    _state_arg(info)

    setst = sub.add_parser(
        "set-status",
        help="correct the recorded status of a step (audited)",
        epilog="example:\n  %s set-status 7 deploy succeeded --reason 'finished by hand'" % prog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    setst.add_argument("run_id", type=int)
    setst.add_argument("node")
    setst.add_argument("status", choices=["succeeded", "failed", "skipped"])
    setst.add_argument("--reason", default="set by an operator", help="why (recorded)")
    _state_arg(setst)

    report_cmd = sub.add_parser(
        "report",
        help="write a run's report: HTML for people, JUnit XML for CI, JSON",
        description="Write the report of a run (default: the latest):\n"
        "  --html   one self-contained page: summary, DAG coloured by state, timeline of attempts,\n"
        "           audit trail of approvals and decisions, output tails\n"
        "  --junit  JUnit XML, one test case per step (failed, skipped with the reason)\n"
        "  --json   the same content as JSON\n"
        "Secrets stay masked. Without any of them: HTML to playbook-run-ID.html here.",
        epilog="examples:\n  %s report --html report.html\n  %s report 7 --junit junit.xml --json run.json\n  %s report --json"
        % (prog, prog, prog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report_cmd.add_argument("run_id", nargs="?", type=int, metavar="RUN_ID", help="the run (default: the latest one)")
    report_cmd.add_argument("--last", action="store_true", help="the latest run (the default)")
    report_cmd.add_argument("--html", metavar="FILE", help="write the HTML page to FILE (- for standard output)")
    report_cmd.add_argument("--junit", metavar="FILE", help="write JUnit XML to FILE (- for standard output)")
    report_cmd.add_argument("--json", nargs="?", const="-", metavar="FILE", help="write JSON to FILE (standard output without FILE)")
    _state_arg(report_cmd)

    if bundle:
        plan = sub.add_parser(
            "plan",
            help="show what will run here, with this host's variables",
            epilog="example:\n  %s plan --var ENVIRONMENT=prod" % prog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _variable_args(plan)
        plan.add_argument("--json", action="store_true", help="print the plan document")
        for name, text in (
            ("verify", "check the bundle's integrity and signature"),
            ("inspect", "what is inside: runbook, versions, contents, Python floor"),
            ("extract", "unpack the bundle into a directory for inspection"),
        ):
            sub.add_parser(name, help=text, add_help=False)
    return parser


# -- entry point ---------------------------------------------------------------------------------
def main(argv=None, bundle=None, load_plan=None, prog=None):
    """Run a command; returns the exit code. `load_plan(file, sources)` compiles (tool mode)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = prog or ("./%s" % os.path.basename(bundle.path) if bundle is not None else "playbook")
    if bundle is not None and argv and argv[0] in ("verify", "inspect", "extract"):
        from . import bundle as bundle_mod

        return bundle_mod.command(argv[0], argv[1:], bundle)
    parser = build_parser(bundle, prog=prog)
    if not argv:
        parser.print_help()
        return EXIT_INVALID
    args = parser.parse_args(argv)
    try:
        handler = {
            "run": cmd_run,
            "resume": cmd_resume,
            "show": cmd_show,
            "info": cmd_info,
            "set-status": cmd_set_status,
            "report": cmd_report,
            "plan": cmd_plan,
        }[args.command]
        return handler(args, bundle, load_plan, prog)
    except CliError as exc:
        sys.stderr.write("error: %s\n" % exc)
        return exc.code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED


# -- shared steps --------------------------------------------------------------------------------
def _config():
    """The effective configuration (files, PLAYBOOK_ENV section, environment variables);
    a bad one stops the command with every problem listed as FILE:LINE (exit 2)."""
    from . import config

    try:
        return config.load()
    except config.ConfigError as exc:
        problems = [p.format() for p in exc.problems]
        raise CliError("invalid configuration; nothing was done:\n  %s\n(`playbook config --validate` checks the files)" % "\n  ".join(problems))


def _open_store(args, cfg=None):
    """--state-path, else [database] path (PLAYBOOK_DB_PATH overrides it); [database] timeout is
    SQLite's busy timeout; backup_enabled/backup_count copy the database before a migration."""
    from . import config, state

    cfg = cfg or _config()
    path = getattr(args, "state_path", None) or os.path.expanduser(cfg.get("database", "path"))
    backup = config.backup_hook(cfg.get("database", "backup_count")) if cfg.get("database", "backup_enabled") else None
    try:
        return state.Store(path, before_migrate=backup, timeout=cfg.get("database", "timeout"))
    except state.StateError as exc:
        raise CliError(str(exc), EXIT_STATE)


def _sources(args):
    try:
        return var_mod.Sources.gather(args.var, args.vars_file, args.vars_env)
    except var_mod.VariableError as exc:
        raise CliError(str(exc))


def _plan(args, bundle, load_plan, sources):
    if bundle is not None:
        try:
            return Plan.loads(bundle.plan_bytes), getattr(bundle, "source_label", bundle.path)
        except PlanError as exc:
            raise CliError("bundle plan: %s" % exc, EXIT_STATE)
    return load_plan(args.file, sources), os.path.abspath(args.file)


def _registry(bundle):
    from .plugins import Registry

    return Registry(entry_points=bundle.entry_points if bundle is not None else None)


def _prompter(ui):
    def prompt(name, spec):
        return ui.ask_variable(name, spec)

    prompt.error = ui.error
    return prompt


def _values(plan, sources, ui, args, fixed=None):
    interactive = ui.interactive and not args.no_interactive_vars
    specs = dict(plan.variables)
    fixed = dict(plan.values, **(fixed or {}))
    try:
        return var_mod.resolve(specs, sources, fixed=fixed, prompt=_prompter(ui) if interactive else None)
    except EOFError:
        raise CliError("no answer for a variable (end of input)")
    except var_mod.VariableError as exc:
        text = str(exc)
        if not ui.interactive and "missing required" in text:
            text += "\n(there is no terminal to ask on)"
        raise CliError(text)


def _bind(plan, values):
    """Render every template that waited for run-time variables. Returns the bound plan."""
    from . import templating

    runbook = dict(plan.runbook)
    errors = []
    for key in runbook.pop("templates", ()):
        try:
            runbook[key] = templating.render(runbook[key], values)
        except templating.TemplateError as exc:
            errors.append("runbook %s: %s" % (key, exc))
    nodes = []
    for node in plan.nodes:
        try:
            nodes.append(templating.render_node(node, values))
        except templating.TemplateError as exc:
            errors.append("node %s: %s" % (node.id, exc))
    if errors:
        raise CliError("cannot render the runbook with these variables:\n  " + "\n  ".join(errors))
    return Plan(runbook, plan.variables, plan.values, nodes, plan.source, plan.plugin_config)


def _secrets(plan, values):
    return [str(values[k]) for k, spec in plan.variables.items() if spec.get("secret") and k in values]


def _who():
    try:
        user = getpass.getuser()
    except Exception:  # no user name in a container
        user = str(os.getuid())
    return "%s@%s" % (user, os.uname().nodename)


def _make_ui(args, parallel, cfg=None):
    """The run's UI from the [ui] keys (and interactive_timeout), wrapped to write the
    [logging] file when one is configured."""
    from . import config
    from . import ui as ui_mod

    cfg = cfg or _config()
    theme = cfg.get("ui", "color_theme")
    ui = ui_mod.make_ui(
        json_mode=args.json,
        parallel=parallel > 1,
        color=not os.environ.get("NO_COLOR") and theme != "none",
        timestamps=cfg.get("ui", "show_timestamps"),
        theme=theme,
        progress=cfg.get("ui", "progress_style") == "bar",
        show_output=not args.no_output and not cfg.get("ui", "compact_output"),
        prompt_timeout=cfg.get("execution", "interactive_timeout"),
    )
    if not cfg.get("logging", "file_path"):
        return ui
    from . import runlog  # logging is imported only when a log file is configured

    try:
        log = runlog.open_run_log(cfg)
    except config.ConfigError as exc:
        raise CliError(str(exc))
    return runlog.LoggingUI(ui, log, who=_who()) if log is not None else ui


class _SignalGuard:
    """SIGTERM becomes an interrupt like Ctrl-C while a run is driven."""

    def __enter__(self):
        def handler(signum, frame):
            raise engine_mod.Interrupted()

        try:
            self.previous = signal.signal(signal.SIGTERM, handler)
        except ValueError:  # not the main thread
            self.previous = None
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
        return False


def _options(args, cfg):
    max_retries = args.max_retries if args.max_retries is not None else int(cfg.get("execution", "max_retries"))
    parallel = args.parallel if args.parallel is not None else int(cfg.get("execution", "parallel_execution") or 1)
    if max_retries < 1:
        raise CliError("--max-retries must be at least 1")
    if parallel < 1:
        raise CliError("--parallel must be at least 1")
    return engine_mod.Options(
        max_retries=max_retries,
        parallel=parallel,
        auto_approve=args.auto_approve,
        default_timeout=cfg.get("execution", "default_timeout"),
        rerun_interrupted=getattr(args, "rerun_interrupted", False),
    )


def _drive(store, run_id, plan, values, ui, options, bundle, resumed=False, prior=None, prog="playbook", file_arg=""):
    """Lock the run, run the engine, record the outcome. Returns the exit code."""
    from . import state

    try:
        lock = store.lock_run(run_id)
    except state.StateError as exc:
        raise CliError(str(exc), EXIT_STATE)
    who = _who()
    host = None
    if any(node.type == "Function" for node in plan.nodes):  # plugins load only when used
        from . import plugins as plugins_mod

        host = plugins_mod.PluginHost(_registry(bundle))
    eng = engine_mod.Engine(plan, values, store, run_id, ui, options, plugins=host, who=who, secrets=_secrets(plan, values))
    started = time.monotonic()
    resume_hint = "resume with: %s resume %s%d" % (prog, file_arg, run_id)
    try:
        with lock, _SignalGuard():
            interrupted = eng.restore(prior) if prior else []
            ui.event("run_started", run_id=run_id, title=plan.title, nodes=len(plan.nodes), resumed=resumed)
            for node_id in interrupted:
                _handle_interrupted(eng, store, run_id, plan.by_id[node_id], ui, options, who)
            status, code, reason = eng.run()
    except engine_mod.Stop as stop:  # raised while handling interrupted nodes
        status, code, reason = stop.status, EXIT_ABORTED, stop.reason
    except engine_mod.Interrupted:
        store.mark_interrupted(run_id)
        store.set_run_status(run_id, "aborted", exit_code=EXIT_INTERRUPTED)
        store.add_event(run_id, "interrupted", "interrupted by a signal", who=who)
        ui.event("run_finished", run_id=run_id, status="aborted", exit_code=EXIT_INTERRUPTED, reason="interrupted by a signal", hint=resume_hint)
        return EXIT_INTERRUPTED
    finally:
        for problem in (host.close() if host is not None else None) or ():
            ui.event("message", text="plugin cleanup: %s" % problem)
    store.set_run_status(run_id, status, exit_code=code)
    counts = {}
    for data in eng.results.values():
        counts[data["status"]] = counts.get(data["status"], 0) + 1
    ui.event(
        "run_finished",
        run_id=run_id,
        status=status,
        exit_code=code,
        reason=reason,
        hint=resume_hint if status != "succeeded" and not eng.completed else None,
        counts=counts,
        duration=time.monotonic() - started,
    )
    return code


def _handle_interrupted(eng, store, run_id, node, ui, options, who):
    """A step found `running` after a crash: re-run, mark succeeded, or abort."""
    if ui.interactive:
        options_list = [
            ("r", "re-run", "run %s again from the start" % node.id),
            ("m", "mark succeeded", "record that %s finished (you checked it by hand)" % node.id),
            ("a", "abort", "stop here"),
        ]
        try:
            choice = ui.choose(node, "%s was interrupted (the runner stopped while it ran). What now?" % node.id, options_list)
        except EOFError:
            raise engine_mod.Stop("aborted", "no answer at the prompt (end of input)")
    else:
        choice = "r" if options.rerun_interrupted else None
        if choice is None:
            raise engine_mod.Stop(
                "aborted",
                "%s was interrupted while it ran; check it, then resume with --rerun-interrupted to run it again "
                "(or on a terminal to choose)" % node.id,
            )
    if choice == "m":
        store.set_node_status(run_id, node.id, "succeeded", who, "marked succeeded after an interruption")
        eng.results[node.id]["status"] = "succeeded"
        eng.final.add(node.id)
    elif choice == "a":
        raise engine_mod.Stop("aborted", "aborted by %s at interrupted %s" % (who, node.id))
    else:
        store.add_event(run_id, "decision", "%s: re-run after interruption" % node.id, who=who if ui.interactive else "--rerun-interrupted", node_id=node.id)


# -- commands ------------------------------------------------------------------------------------
def cmd_run(args, bundle, load_plan, prog):
    cfg = _config()
    options = _options(args, cfg)
    ui = _make_ui(args, options.parallel)
    sources = _sources(args)
    plan, source = _plan(args, bundle, load_plan, sources)
    values = _values(plan, sources, ui, args)
    bound = _bind(plan, values)
    store = _open_store(args, cfg)
    masked = var_mod.masked(dict(plan.variables, **{k: {} for k in plan.values}), values)
    run_id = store.create_run(bound.title, source, plan.digest(), plan.dumps().decode("utf-8"), masked, trigger="run")
    file_arg = "" if bundle is not None else "%s " % args.file
    return _drive(store, run_id, bound, values, ui, options, bundle, prog=prog, file_arg=file_arg)


def cmd_resume(args, bundle, load_plan, prog):
    cfg = _config()
    options = _options(args, cfg)
    ui = _make_ui(args, options.parallel)
    sources = _sources(args)
    store = _open_store(args, cfg)
    current, source = _plan(args, bundle, load_plan, sources)
    digest = current.digest()
    if args.run_id is not None:
        run = store.get_run(args.run_id)
        if run is None:
            raise CliError("no run %d in %s" % (args.run_id, store.path))
    else:
        run = store.latest_run(plan_hash=digest, statuses=("failed", "aborted", "running"))
        if run is None:
            raise CliError("no failed or aborted run of this runbook in %s; start one with `run`" % store.path)
    if run["status"] == "succeeded":
        raise CliError("run %d succeeded; there is nothing to resume" % run["id"])
    if run["plan_hash"] != digest and not args.force:
        raise CliError(
            "the runbook changed since run %d started (plan %s… now %s…); resume --force continues the recorded plan"
            % (run["id"], run["plan_hash"][:12], digest[:12])
        )
    plan = Plan.loads(run["plan"])
    stored = {k: v for k, v in (run.get("variables") or {}).items() if v != var_mod.MASK and k in plan.variables}
    values = _values(plan, sources, ui, args, fixed=stored)
    bound = _bind(plan, values)
    from . import state

    try:
        lock = store.lock_run(run["id"])  # refuse early when another process drives it
        lock.release()
    except state.StateError as exc:
        raise CliError(str(exc), EXIT_STATE)
    store.mark_interrupted(run["id"])
    prior = store.final_attempts(run["id"])
    store.set_run_trigger(run["id"], "resume")
    store.set_run_status(run["id"], "running", ended=False)
    store.add_event(run["id"], "resume", "resumed", who=_who())
    file_arg = "" if bundle is not None else "%s " % args.file
    return _drive(store, run["id"], bound, values, ui, options, bundle, resumed=True, prior=prior, prog=prog, file_arg=file_arg)


def cmd_plan(args, bundle, load_plan, prog):
    from . import ui as ui_mod

    sources = _sources(args)
    plan, _ = _plan(args, bundle, load_plan, sources)
    ui = ui_mod.PlainUI()
    ui.interactive = sys.stdin.isatty() and not args.no_interactive_vars
    if ui.interactive:
        ui = ui_mod.TerminalUI()
    values = _values(plan, sources, ui, args)
    bound = _bind(plan, values)
    if args.json:
        sys.stdout.write(json.dumps(bound.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(ui_mod.plan_text(bound) + "\n")
    return EXIT_OK


def _since(args):
    """--since as a database timestamp (None when not given)."""
    from . import report

    try:
        return report.parse_since(args.since) if getattr(args, "since", None) else None
    except ValueError as exc:
        raise CliError(str(exc))


def cmd_show(args, bundle, load_plan, prog):
    from . import report

    store = _open_store(args)
    if args.last:
        latest = store.runs(title=args.title, limit=1)
        if not latest:
            raise CliError("no runs recorded in %s" % store.path)
        args.run = latest[0]["id"]
    if args.run is not None:
        run = store.get_run(args.run)
        if run is None:
            raise CliError("no run %d in %s" % (args.run, store.path))
        attempts = store.attempts(args.run)
        events = store.events(args.run)
        if args.json:
            run = dict(run)
            run.pop("plan", None)
            sys.stdout.write(json.dumps({"run": run, "attempts": attempts, "events": events}, indent=2, default=str) + "\n")
        else:
            sys.stdout.write(report.run_text(run, attempts, events, output=args.output) + "\n")
        return EXIT_OK
    since = _since(args)
    runs = store.runs(title=args.title, since=since, limit=args.limit)
    stats = store.stats(title=args.title, since=since)
    if args.json:
        doc = {"database": store.path, "since": since, "runs": runs, "workflows": stats}
        sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
    else:
        text = report.runs_text(runs, store.path)
        if since:
            text += "\n(runs started since %s)" % report.parse_time(since).strftime("%Y-%m-%d %H:%M:%S UTC")
        if stats:
            text += "\n\nper workflow (all its runs%s, not only those listed):" % (" since then" if since else "")
            text += report.workflows_text(stats)
        sys.stdout.write(text + "\n")
    return EXIT_OK


def cmd_info(args, bundle, load_plan, prog):
    from . import report

    if args.plugins:
        from .plugins import describe_plugins

        plugins = describe_plugins(_registry(bundle))
        if args.json:
            sys.stdout.write(json.dumps({"plugins": plugins}, indent=2, default=str) + "\n")
        else:
            sys.stdout.write(report.plugins_text(plugins) + "\n")
        return EXIT_OK
    store = _open_store(args)
    since = _since(args)
    stats = store.stats(since=since)
    if args.json:
        sys.stdout.write(json.dumps({"database": store.path, "since": since, "workflows": stats}, indent=2, default=str) + "\n")
    else:
        sys.stdout.write(report.stats_text(stats, store.path, since=since) + "\n")
    return EXIT_OK


def cmd_set_status(args, bundle, load_plan, prog):
    store = _open_store(args)
    run = store.get_run(args.run_id)
    if run is None:
        raise CliError("no run %d in %s" % (args.run_id, store.path))
    plan = Plan.loads(run["plan"])
    if args.node not in plan.by_id:
        raise CliError("run %d has no node %r (nodes: %s)" % (args.run_id, args.node, ", ".join(n.id for n in plan.nodes)))
    store.set_node_status(args.run_id, args.node, args.status, _who(), args.reason)
    sys.stdout.write("run %d: %s is now %s (recorded with who and why)\n" % (args.run_id, args.node, args.status))
    return EXIT_OK


def cmd_report(args, bundle, load_plan, prog):
    """Write a run's report as HTML, JUnit XML and/or JSON (files, or one to standard output)."""
    from . import report

    if args.json and args.json.isdigit() and args.run_id is None and not os.path.exists(args.json):
        args.run_id, args.json = int(args.json), "-"  # `report --json 7`: 7 is the run, not a file
    if args.run_id is not None and args.last:
        raise CliError("give a RUN_ID or --last, not both")
    outputs = [(kind, target) for kind, target in (("html", args.html), ("junit", args.junit), ("json", args.json)) if target]
    to_stdout = [kind for kind, target in outputs if target == "-"]
    if len(to_stdout) > 1:
        raise CliError("only one of --html, --junit and --json can go to standard output (-)")
    store = _open_store(args)
    if args.run_id is not None:
        run = store.get_run(args.run_id)
        if run is None:
            raise CliError("no run %d in %s" % (args.run_id, store.path))
    else:
        latest = store.runs(limit=1)
        if not latest:
            raise CliError("no runs recorded in %s" % store.path)
        run = store.get_run(latest[0]["id"])
    if not outputs:
        outputs = [("html", "playbook-run-%d.html" % run["id"])]
    rep = report.RunReport(store, run)
    say = sys.stderr if to_stdout else sys.stdout
    names = {"html": "HTML report", "junit": "JUnit XML", "json": "JSON report"}
    for kind, target in outputs:
        if kind == "html":
            svg, note = rep.dag_svg()
            if note:
                sys.stderr.write("note: %s\n" % note)
            text = rep.html(svg=svg, note=note)
        elif kind == "junit":
            text = rep.junit().decode("utf-8")
        else:
            text = rep.json()
        if target == "-":
            sys.stdout.flush()
            out = getattr(sys.stdout, "buffer", None)
            if out is not None:  # UTF-8 whatever the locale says
                out.write(text.encode("utf-8"))
                out.flush()
            else:
                sys.stdout.write(text)
            continue
        try:
            with open(target, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as exc:
            raise CliError("cannot write %s: %s" % (target, exc.strerror or exc), EXIT_STATE)
        say.write("wrote %s of run %d (%s): %s\n" % (names[kind], run["id"], run["status"], target))
    return EXIT_OK
