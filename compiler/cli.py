"""The commands for authors and CI: validate, plan, view-dag, compile, create, config and
`approval sign`, as argparse parsers in the one shape of every command's help
(runtime/options.py), over the compiler and the runtime.

Each command is a pair in COMMANDS: a function that builds its parser, and one that runs it
and returns the exit code. An anticipated failure raises a PlaybookError carrying its exit
code; the entry point's `guard()` (compiler/main.py) prints it. Heavy modules are imported
inside the commands that use them, so `validate` starts fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable

from playbook.runtime import options
from playbook.runtime.errors import EXIT_ABORTED, EXIT_FAILED, EXIT_INVALID, EXIT_OK, EXIT_STATE, PlaybookError, UsageError

CHECK_CODES = (EXIT_OK, EXIT_INVALID)
WRITE_CODES = (EXIT_OK, EXIT_INVALID, EXIT_STATE)


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _sources(args: argparse.Namespace) -> Any:
    from playbook.runtime import variables

    try:
        return variables.Sources.gather(args.var, args.vars_file, args.vars_env)
    except variables.VariableError as exc:
        raise UsageError(str(exc)) from None


def _print_diagnostics(diagnostics: Any) -> None:
    for diag in diagnostics:
        _err(diag.format())


def _compile(path: str, sources: Any, bake: bool, as_json: bool = False) -> Any:
    """Compile, or raise CompileError (exit 2, every diagnostic; as JSON on standard output
    with `as_json`)."""
    from .plan import compile_file
    from .source import CompileError

    try:
        compiled = compile_file(path, sources, bake=bake)
    except CompileError as exc:
        if as_json:
            _out(json.dumps({"valid": False, "diagnostics": [d.to_json() for d in exc.diagnostics]}, indent=2))
            raise _Silent("", EXIT_INVALID) from None
        raise
    if not as_json:
        _print_diagnostics(compiled.warnings)
    return compiled


class _Silent(PlaybookError):
    """A failure whose words were printed already (JSON on standard output): exit code only."""

    def report(self) -> str:
        return ""


# -- validate ------------------------------------------------------------------------------------
def parse_validate(prog: str) -> argparse.ArgumentParser:
    parser = options.parser(
        prog,
        "Check runbooks without running anything; several files may be given (as pre-commit does). "
        "Writes no file and no state database.",
        ["%s deploy.playbook.toml --var ENVIRONMENT=prod --check-vars" % prog], CHECK_CODES,
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="runbook files (*.playbook.toml)")
    options.add_variable_args(parser, interactive=False)
    parser.add_argument("--check-vars", action="store_true", help="fail when a required variable has no value")
    options.add_json_arg(parser, "print the result as JSON")
    return parser


def cmd_validate(args: argparse.Namespace) -> int:
    from .plan import compile_file
    from .source import CompileError

    sources = _sources(args)
    results = []
    for file in args.files:
        try:
            compiled = compile_file(file, sources, bake=True)
        except CompileError as exc:
            results.append(_validation_failed(file, exc.diagnostics, args.json))
            continue
        results.append(_validation_passed(compiled, args.check_vars, args.json))
    if args.json:
        document = results[0] if len(results) == 1 else {"valid": all(r["valid"] for r in results), "files": results}
        _out(json.dumps(document, indent=2, sort_keys=True))
    return EXIT_OK if all(r["valid"] for r in results) else EXIT_INVALID


def _validation_failed(file: str, diagnostics: Any, as_json: bool) -> dict:
    if not as_json:
        _print_diagnostics(diagnostics)
        errors = sum(1 for d in diagnostics if d.severity == "error")
        _err("%s: %d error%s" % (diagnostics[0].file, errors, "" if errors == 1 else "s"))
    return {"file": file, "valid": False, "diagnostics": [d.to_json() for d in diagnostics]}


def _validation_passed(compiled: Any, check_vars: bool, as_json: bool) -> dict:
    summary = compiled.summary()
    missing = summary["required_variables"] if check_vars else []
    if not as_json:
        _print_diagnostics(compiled.warnings)
        types = ", ".join("%d %s" % (n, t) for t, n in sorted(summary["node_types"].items()))
        verdict = "invalid (--check-vars: required variables have no value)" if missing else "valid"
        _out("%s: %s — %s" % (summary["file"], verdict, summary["title"]))
        _out("  %d node%s: %s" % (summary["nodes"], "" if summary["nodes"] == 1 else "s", types or "none"))
        if summary["variables"] or summary["baked"]:
            shown = []
            for name in sorted(set(summary["variables"]) | set(summary["baked"])):
                if name in summary["baked"]:
                    shown.append("%s (given)" % name)
                elif name in summary["required_variables"]:
                    shown.append("%s (required)" % name)
                else:
                    shown.append(name)
            _out("  variables: %s" % ", ".join(shown))
        if summary["plugins"]:
            _out("  plugins: %s" % ", ".join(summary["plugins"]))
        if not compiled.runbook.meta.get("id"):
            _out(
                "  hint: no [runbook] id: runs are recorded under %s, made from the title and the file's name, so a "
                "renamed file starts a new history; add id = %s to [runbook] to keep it"
                % (compiled.plan.runbook["id"], json.dumps(compiled.plan.runbook["id"]))
            )
        if missing:
            from playbook.runtime.variables import describe_missing

            _err("error: missing required variables:")
            for name in missing:
                _err(describe_missing(name, compiled.plan.variables[name]))
    return {
        "file": summary["file"],
        "valid": not missing,
        "summary": summary,
        "missing_variables": missing,
        "diagnostics": [d.to_json() for d in compiled.warnings],
    }


# -- plan ----------------------------------------------------------------------------------------
def parse_plan(prog: str) -> argparse.ArgumentParser:
    parser = options.parser(
        prog,
        "Show what will run here, in execution order: each node's command rendered with the values a "
        "run would use, its effective timeout, and its run condition in words.\n\n"
        "Values given here come first, then the runbook's defaults (marked \"default\"); conditions that "
        "depend only on them are decided now. Secrets are never shown (a command shows the reference "
        "to the variable its secret travels in). Every Command step shows its timeout: its own, or "
        "[execution] default_timeout (300 s unless configured). --json prints the plan document with "
        "`effective` values (and where each comes from) and timeouts, sorted, for diffs in CI.",
        ["%s deploy.playbook.toml --var ENVIRONMENT=staging" % prog,
         "%s deploy.playbook.toml --var ENVIRONMENT=prod --json > plan.json" % prog], WRITE_CODES,
    )
    parser.add_argument("file", metavar="FILE", help="the runbook file")
    options.add_variable_args(parser, interactive=False)
    options.add_json_arg(parser, "print the plan document (JSON)")
    parser.add_argument("--run", dest="run_id", type=int, metavar="ID",
                        help="show what `resume --replan` would do to run ID with the runbook as it is now")
    options.add_state_arg(parser, "state database for --run")
    return parser


def cmd_plan(args: argparse.Namespace) -> int:
    from playbook.runtime import config as config_mod
    from playbook.runtime import preview

    sources = _sources(args)
    if args.run_id is not None:
        return _replan_preview(args.file, sources, args.run_id, args.state_path, args.json)
    compiled = _compile(args.file, sources, bake=True, as_json=args.json)
    cfg = config_mod.load()  # a bad one: every problem as FILE:LINE (exit 2)
    shown, values, origins = _plan_here(args.file, compiled, sources)
    timeout = (cfg.get("execution", "default_timeout"), cfg.origin("execution", "default_timeout"))
    if args.json:
        document = preview.document(shown, values, origins, *timeout)
        _out(json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False))
        return EXIT_OK
    from playbook.runtime.ui import plan_text

    _out(plan_text(shown, values, origins, *timeout))
    return EXIT_OK


def _plan_here(file: str, compiled: Any, sources: Any) -> tuple:
    """(plan rendered with the given values and the defaults, the values, where each comes from).

    The given values were checked by the first compilation; this one adds the defaults so that
    what they complete is rendered and decided too. A secret is never baked: it shows masked."""
    from playbook.runtime import preview, variables

    from .plan import compile_file
    from .source import CompileError

    specs = dict(compiled.runbook.variables)
    layered = sources.with_defaults(specs)
    try:
        shown = compile_file(file, layered, bake=True).plan
    except CompileError as exc:  # a default that cannot be used where it is used
        _print_diagnostics(exc.diagnostics)
        raise UsageError("%s: the runbook's defaults do not render" % exc.diagnostics[0].file) from None
    values = dict(shown.values)
    for name, spec in specs.items():
        if spec.get("secret") and sources.lookup(name) is not None:
            values[name] = variables.MASK
    shown = preview.render_known(shown, values)
    specs.update({name: {} for name in values if name not in specs})  # undeclared, supplied
    return shown, values, variables.origins(specs, layered, values)


def _replan_preview(file: str, sources: Any, run_id: int, state_path: str | None, as_json: bool) -> int:
    """`plan FILE --run ID`: which steps of the run would keep their results, run again, be new
    or be removed, and which approvals would be asked again, if it were continued with the
    runbook as it is now."""
    from playbook.runtime import session
    from playbook.runtime.plan import Plan

    current = _compile(file, sources, bake=False).plan
    store = session.open_store(state_path)
    run = session.find_resumable(store, run_id, current, replan=True)
    recorded = Plan.loads(run["plan"])
    kept = session.recorded_values(run, recorded)
    values = dict(kept, **{k: v for k, v in current.values.items()})
    try:
        new = session.bind(current, session.resolve_values(current, sources, _Quiet(), False, fixed={
            k: v for k, v in kept.items() if sources.lookup(k) is None and k in current.variables}))
        old = session.bind(recorded, dict(values, **kept))
    except PlaybookError as exc:
        raise PlaybookError("cannot preview the replan of run %d: %s" % (run_id, exc)) from None
    changes = session.replan_changes(old, new, store.final_attempts(run_id))
    if as_json:
        _out(json.dumps({"run": run_id, "plan_before": run["plan_hash"], "plan_now": current.digest(), **changes},
                        indent=2, sort_keys=True))
    else:
        _out(session.replan_text(run_id, changes))
    return EXIT_OK


class _Quiet:
    """A UI that asks nothing (plan never prompts for a preview)."""

    interactive = False

    def error(self, text: str) -> None:
        _err(text)


# -- create --------------------------------------------------------------------------------------
def parse_create(prog: str) -> argparse.ArgumentParser:
    parser = options.parser(
        prog,
        "Write a new runbook that validates as written. On a terminal: a wizard asks for what was not "
        "given, then for the steps one by one (Manual, Command or Function; dependencies; critical), "
        "checking each. Without a terminal, or with no step added: a commented example runbook.",
        ['%s --title "Rotate TLS certificates" --author ops -o rotate.playbook.toml' % prog],
        (EXIT_OK, EXIT_INVALID, EXIT_ABORTED),
    )
    parser.add_argument("--title", help="title of the runbook")
    parser.add_argument("--author", help="author (team or person)")
    parser.add_argument("--description", help="one-line description")
    parser.add_argument("--output", "-o", metavar="FILE", help="file to write (default: from the title)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    return parser


def cmd_create(args: argparse.Namespace) -> int:
    from .create import default_name, interactive_create, write_runbook

    output = args.output
    if output is not None and os.path.exists(output) and not args.force:
        raise UsageError("%s exists; use --force to overwrite it" % output)
    if sys.stdin.isatty():
        import click

        try:
            output = interactive_create(args.title, args.author, args.description, output, args.force)
        except click.Abort:
            raise PlaybookError("aborted: nothing was written", EXIT_ABORTED) from None
        except click.ClickException as exc:
            raise UsageError(exc.format_message()) from None
        _out("wrote %s — check it with: playbook validate %s" % (output, output))
        return EXIT_OK
    title = "My runbook" if args.title is None else args.title
    author = os.environ.get("USER", "ops") if args.author is None else args.author
    description = "What this runbook does" if args.description is None else args.description
    if output is None:
        output = default_name(title)
    if os.path.exists(output) and not args.force:
        raise UsageError("%s exists; use --force to overwrite it" % output)
    try:
        write_runbook(output, title=title, author=author, description=description)
    except OSError as exc:
        raise PlaybookError("cannot write %s: %s" % (output, exc.strerror or exc), EXIT_STATE) from None
    _out("wrote %s — check it with: playbook validate %s" % (output, output))
    return EXIT_OK


# -- compile -------------------------------------------------------------------------------------
def parse_compile(prog: str) -> argparse.ArgumentParser:
    parser = options.parser(
        prog,
        "Build one executable file that runs the runbook on a server with only a system Python. "
        "Validates first (the same diagnostics as `validate`); the given variables are baked in (never "
        "secrets), the others are taken on the host. Bytecode is built for the interpreter running this "
        "and every CPython 3.9-3.13 on PATH or under pyenv, unless --python/--interpreter say.",
        ["%s deploy.playbook.toml --var ENVIRONMENT=prod --sign-key ~/.ssh/release" % prog,
         "scp deploy.pyz deploy.pyz.sig server:   # there: ./deploy.pyz run"], (EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_STATE),
    )
    parser.add_argument("file", metavar="FILE", help="the runbook file")
    parser.add_argument("--output", "-o", metavar="FILE", help="bundle to write (default: the runbook's stem + .pyz, here)")
    options.add_variable_args(parser, interactive=False)
    parser.add_argument("--python", dest="pythons", action="append", default=[], metavar="3.X",
                        help="build bytecode for this Python version (repeatable)")
    parser.add_argument("--interpreter", dest="interpreters", action="append", default=[], metavar="PATH",
                        help="build bytecode with this interpreter (repeatable)")
    parser.add_argument("--no-bytecode", action="store_true", help="sources only (smaller, slower start)")
    parser.add_argument("--sign-key", metavar="KEY", help="sign with this SSH private key: writes OUTPUT.sig")
    parser.add_argument("--approval-signers", metavar="FILE",
                        help="an ssh allowed-signers file: steps with approvers or approvals accept only approvals signed "
                        "by these principals")
    parser.add_argument("--approval-max-valid", metavar="DURATION",
                        help="with --approval-signers: the longest a signed approval may be valid for (30m, 2h, 1d; "
                        "default and most 7d)")
    parser.add_argument("--test", action="store_true",
                        help="rehearse the runbook's scenarios first (as `playbook test` does); build nothing unless all "
                        "pass, and record the result in the bundle's manifest")
    parser.add_argument("--scenarios", metavar="FILE", help="with --test: the scenarios (default: FILE.scenarios.toml beside the runbook)")
    options.add_json_arg(parser, "print the result (manifest, size, sha256) as JSON")
    return parser


def _rehearsed(args: argparse.Namespace) -> dict[str, Any]:
    """`compile --test`: every scenario rehearsed; what the manifest records of it, or
    PlaybookError (exit 1) naming the scenarios that failed."""
    from .rehearse import rehearse, result_lines

    suite = rehearse(args.file, args.scenarios)
    if suite.failed:
        for result in suite.results:
            if not result.passed:
                for line in result_lines(result, suite.scenarios.locate, suite.scenarios.display):
                    _err(line)
        raise PlaybookError(
            "%d of %d scenarios failed (%s); nothing was written (`playbook test %s` shows the same)"
            % (suite.failed, len(suite.results), suite.scenarios.display, args.file), EXIT_FAILED,
        )
    return {"scenarios_file": os.path.basename(suite.scenarios.display), "scenarios_sha256": suite.scenarios.sha256,
            "runbook_sha256": suite.runbook_sha256, "passed": suite.passed}


def cmd_compile(args: argparse.Namespace) -> int:
    from playbook.runtime import approvals

    from .bundle import build, default_output, describe

    sources = _sources(args)
    max_valid = None
    if args.approval_max_valid is not None:
        if not args.approval_signers:
            raise UsageError("--approval-max-valid bounds signed approvals: give --approval-signers too")
        max_valid = approvals.parse_duration(args.approval_max_valid, what="--approval-max-valid").total_seconds()
    if args.scenarios and not args.test:
        raise UsageError("--scenarios goes with --test")
    compiled = _compile(args.file, sources, bake=True, as_json=args.json)
    rehearsal = _rehearsed(args) if args.test else None
    output = args.output or default_output(args.file)
    if args.approval_signers:
        signed = [n.id for n in compiled.plan.nodes if approvals.has_question(n) and approvals.has_policy(n)]
        if signed:
            _err("steps that accept only signed approvals: %s" % ", ".join(signed))
        else:
            _err("warning: --approval-signers: no step has approvers or approvals, so no step needs a signature "
                 "(every question stays the operator's own confirmation)")
    report = build(
        compiled, output, sign_key=args.sign_key, pythons=args.pythons, interpreters=args.interpreters,
        bytecode=not args.no_bytecode, approval_signers=args.approval_signers, approval_max_valid=max_valid,
        rehearsal=rehearsal,
    )
    if args.json:
        _out(json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False))
        return EXIT_OK
    for warning in report["warnings"]:
        _err("warning: %s" % warning)
    for line in describe(report):
        _out(line)
    return EXIT_OK


# -- approval sign -------------------------------------------------------------------------------
def parse_approval_sign(prog: str) -> argparse.ArgumentParser:
    parser = options.parser(
        prog,
        "Sign an approval (or rejection) of the request a host exported (`approval request`).\n\n"
        "The signature (`ssh-keygen -Y sign`, namespace `playbook-approval`) binds the run's random UID, "
        "the plan, the step, the question as the host asked it and the run's values (their digests are "
        "computed here from the texts shown, so what is signed is what you read), the decision, your "
        "principal and the expiry. The host checks it against the principals its bundle was compiled "
        "with (--approval-signers), when it is recorded and again when it is used.",
        ["%s request.json --key ~/.ssh/id_ed25519 --bundle deploy.pyz -o approval.json" % prog], WRITE_CODES,
    )
    parser.add_argument("request", metavar="REQUEST", help="the request the host wrote (`approval request RUN NODE -o FILE`)")
    parser.add_argument("--key", required=True, metavar="KEY", help="your SSH private key (an agent's key works too)")
    parser.add_argument("--principal", help="your principal in the bundle's allowed-signers list (default: your user name)")
    parser.add_argument("--valid-for", default="2h", metavar="DURATION",
                        help="how long the approval stays valid: 30m, 2h, 1d; at most 7d (default 2h)")
    parser.add_argument("--reject", action="store_true", help="sign a rejection instead of an approval")
    parser.add_argument("--note", help="why (recorded on the server)")
    parser.add_argument("--bundle", metavar="BUNDLE", help="the bundle you reviewed: refuse to sign a request for another plan")
    parser.add_argument("--output", "-o", required=True, metavar="FILE", help="the signed approval file to write")
    return parser


def cmd_approval_sign(args: argparse.Namespace) -> int:
    from playbook.runtime import approvals
    from playbook.runtime.state import current_user

    if not os.path.isfile(args.key):
        raise UsageError("--key %s: no such key file" % args.key)
    wanted = approvals.read_request(args.request)
    if args.bundle:
        theirs = bundle_plan_hash(args.bundle)
        if theirs != wanted["plan"]:
            raise approvals.ApprovalError(
                "%s asks about plan %s…, not the plan of %s (%s…): it was made with another bundle"
                % (args.request, wanted["plan"][:12], args.bundle, theirs[:12])
            )
    data = approvals.run_payload(
        wanted, "rejected" if args.reject else "approved", args.principal or current_user(),
        approvals.parse_duration(args.valid_for), args.note,
    )
    _err(_request_summary(wanted, data))
    signature = approvals.sign(data, args.key)
    try:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(approvals.signed_document(data, signature))
    except OSError as exc:
        raise PlaybookError("cannot write %s: %s" % (args.output, exc.strerror or exc), EXIT_STATE) from None
    _out("wrote %s: %s of %s in run %s (uid %s), valid until %s" % (
        args.output, data["decision"], wanted["node"], wanted.get("run"), wanted["run_uid"], data["expires"]))
    return EXIT_OK


def _request_summary(request: dict, data: dict) -> str:
    """What the approver signs, in words (values as the host recorded them: secrets masked)."""
    from playbook.runtime import terminal

    values = request.get("values") or {}
    lines = [
        "signing a %s as %s:" % ("rejection" if data["decision"] == "rejected" else "approval", data["principal"]),
        "  runbook:  %s" % ((request.get("runbook") or {}).get("title") or "?"),
        "  host:     %s, run %s (uid %s)" % (request.get("host") or "?", request.get("run"), request["run_uid"]),
        "  step:     %s (%s)" % (request["node"], request.get("policy") or "no policy"),
        "  question: %s" % request["question"],
        "  values:   %s" % (", ".join("%s=%s" % (k, json.dumps(v)) for k, v in sorted(values.items())) or "(none)"),
        "  valid:    %s until %s" % (data["issued"], data["expires"]),
    ]
    return terminal.clean("\n".join(lines))


def bundle_plan_hash(path: str) -> str:
    """The plan identity of a bundle: the SHA-256 of its plan.json member."""
    import hashlib
    import zipfile

    from playbook.runtime.errors import BundleError

    try:
        with zipfile.ZipFile(path) as archive:
            return hashlib.sha256(archive.read("plan.json")).hexdigest()
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise BundleError("%s is not a Playbook bundle: %s" % (path, exc)) from None


# -- view-dag ------------------------------------------------------------------------------------
def parse_view_dag(prog: str) -> argparse.ArgumentParser:
    parser = options.parser(
        prog,
        "Draw the runbook's DAG: node types, critical nodes, conditional edges, `when`s.\n\n"
        "Variables given here are baked in, like `plan`; templates that need other variables show their "
        "defaults or stay as written. With --run, every node is coloured by what happened to it in that "
        "run (succeeded, failed, skipped and why, not reached) with its attempt count; FILE may then be "
        "left out. The picture is opened in a viewer when there is a display and a viewer (xdg-open / "
        "open), otherwise only its path is printed. Without Graphviz's `dot`, --format dot still works.",
        ["%s deploy.playbook.toml --var ENVIRONMENT=prod --no-open" % prog,
         "%s deploy.playbook.toml --format svg -o docs/deploy.svg --keep-dot" % prog,
         "%s --run 12 --state-path run.db -o run12.png" % prog], WRITE_CODES,
    )
    parser.add_argument("file", nargs="?", metavar="FILE", help="the runbook file (optional with --run)")
    options.add_variable_args(parser, interactive=False)
    parser.add_argument("--format", dest="fmt", choices=["png", "svg", "pdf", "dot"],
                        help="picture format (default: from --output's suffix, else png)")
    parser.add_argument("--output", "-o", metavar="FILE",
                        help="file to write, - for standard output (default: the runbook's name + the format's suffix, here)")
    parser.add_argument("--keep-dot", action="store_true", help="also write the DOT source beside the picture (OUTPUT with .dot)")
    parser.add_argument("--no-open", action="store_true", help="never open a viewer; just write the file")
    parser.add_argument("--run", dest="run_id", type=int, metavar="ID",
                        help="colour every node by its state in run ID (draws the plan that run used)")
    options.add_state_arg(parser, "state database for --run")
    return parser


def cmd_view_dag(args: argparse.Namespace) -> int:
    from playbook.runtime import graph as dag

    from . import graph as graph_mod

    if args.file is None and args.run_id is None:
        raise UsageError("give a runbook FILE, or --run ID to draw a recorded run")
    sources = _sources(args)
    name = args.file
    if args.run_id is None:
        compiled = _compile(args.file, sources, bake=True)
        dot_text = dag.to_dot(graph_mod.picture_plan(compiled.plan))
    else:
        if args.var or args.vars_file or args.vars_env:
            _err("note: with --run the run's own variables are used; --var/--vars-file/--vars-env are ignored")
        dot_text, recorded_source = _recorded_run_dot(args.run_id, args.state_path, args.file, sources)
        name = args.file if args.file is not None else recorded_source
    fmt = graph_mod.format_for(args.output, args.fmt)
    output = args.output or graph_mod.default_output(name, fmt, args.run_id)
    if output == "-":
        data = graph_mod.render(dot_text, fmt)
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return EXIT_OK
    graph_mod.write(output, graph_mod.render(dot_text, fmt))
    if args.keep_dot and fmt != "dot":
        graph_mod.write(os.path.splitext(output)[0] + ".dot", dot_text.encode("utf-8"))
    _out("wrote %s" % output)
    if args.keep_dot and fmt != "dot":
        _out("wrote %s" % (os.path.splitext(output)[0] + ".dot"))
    if args.no_open or fmt == "dot":
        return EXIT_OK
    opened, reason = graph_mod.open_file(output)
    if not opened:
        _err("not opened: %s; the picture is at %s" % (reason, os.path.abspath(output)))
    return EXIT_OK


def _recorded_run_dot(run_id: int, state_path: str | None, file: str | None, sources: Any) -> tuple[str, str]:
    """(DOT text of run `run_id` coloured by what happened, the run's runbook source); no such
    run is exit 2, a state database or plan problem exit 4."""
    from playbook.runtime import graph as dag
    from playbook.runtime.errors import StateError
    from playbook.runtime.plan import PlanError
    from playbook.runtime.session import open_store

    explicit = state_path or os.environ.get("PLAYBOOK_DB_PATH")
    if explicit and not os.path.isfile(os.path.expanduser(explicit)):
        raise StateError("no state database at %s" % explicit)
    store = open_store(state_path)
    try:
        run = store.get_run(run_id)
        if run is None:
            raise UsageError("no run %d in %s" % (run_id, store.path))
        states = dag.run_states(store.attempts(run_id))
    finally:
        store.close()
    try:
        drawn = dag.plan_for_run(run)
    except (PlanError, TypeError) as exc:
        raise StateError("run %d has no usable plan in %s: %s" % (run_id, store.path, exc)) from None
    if file is not None:
        current = _compile(file, sources, bake=False)
        if current.plan.digest() != run.get("plan_hash"):
            _err("note: %s differs from the plan run %d used; drawing the run's plan" % (file, run_id))
    return dag.to_dot(drawn, states, title=dag.run_caption(drawn, run)), run.get("source") or "run"


# -- config --------------------------------------------------------------------------------------
def parse_config(prog: str) -> argparse.ArgumentParser:
    parser = options.parser(
        prog,
        "Show, check and create configuration. Files, the first listed winning key by key: $PLAYBOOK_CONFIG "
        "if set, else ./playbook.toml, ~/.config/playbook/config.toml, /etc/playbook/config.toml (a "
        "discovered file is read only when it belongs to you or root and no one else may write to it). "
        "PLAYBOOK_ENV=NAME selects their [environments.NAME] sections; PLAYBOOK_DB_PATH, "
        "PLAYBOOK_MAX_RETRIES, ... override both.",
        ["%s --show" % prog, "%s --init production" % prog, "%s --validate" % prog, "%s --template config-template.toml" % prog],
        CHECK_CODES,
    )
    parser.add_argument("--show", action="store_true", help="print the effective values and where each came from (the default)")
    parser.add_argument("--init", dest="init_env", metavar="ENV",
                        help="add an [environments.ENV] section to ~/.config/playbook/config.toml (or $PLAYBOOK_CONFIG)")
    parser.add_argument("--validate", action="store_true", help="check every configuration file found (exit 2 on problems)")
    parser.add_argument("--template", metavar="FILE", help="write a commented template of every key ('-' prints it)")
    parser.add_argument("--force", action="store_true", help="with --init/--template: replace existing content")
    options.add_json_arg(parser, "machine-readable output")
    return parser


def cmd_config(args: argparse.Namespace) -> int:
    from playbook.runtime import config as config_mod

    done = False
    info = _err if args.json else _out
    if args.template:
        text = config_mod.template_text()
        if args.template == "-":
            sys.stdout.write(text)
        else:
            if os.path.exists(args.template) and not args.force:
                raise UsageError("%s exists; --force overwrites it" % args.template)
            try:
                with open(args.template, "w", encoding="utf-8") as handle:
                    handle.write(text)
            except OSError as exc:
                raise UsageError("cannot write %s: %s" % (args.template, exc.strerror or exc)) from None
            info("wrote %s" % args.template)
        done = True
    if args.init_env:
        try:
            path, action = config_mod.init_environment(args.init_env, force=args.force)
        except OSError as exc:
            raise UsageError("cannot write the configuration: %s" % exc) from None
        info(action)
        info("use it with: PLAYBOOK_ENV=%s playbook run ..." % args.init_env)
        done = True
    if args.validate:
        cfg, files, problems = config_mod.gather()
        if args.json:
            _out(json.dumps({"valid": not problems, "files": files, "searched": cfg.searched,
                             "skipped": [{"path": p, "why": why} for p, why in cfg.skipped],
                             "problems": [p.to_json() for p in problems]}, indent=2))
        else:
            for problem in problems:
                _err(problem.format("error"))
            config_mod.warn_skipped(cfg)
            if not files:
                _out("no configuration file found (searched %s); the defaults apply" % ", ".join(cfg.searched))
            for path in files:
                _out("%s %s" % ("checked" if problems else "ok", path))
        if problems:
            if not args.json:
                _err("%d problem%s" % (len(problems), "" if len(problems) == 1 else "s"))
            raise _Silent("", EXIT_INVALID)
        done = True
    if args.show or not done:
        cfg, _, problems = config_mod.gather()
        if problems:
            raise config_mod.ConfigError(problems)
        if args.json:
            _out(json.dumps(cfg.to_json(), indent=2))
        else:
            _out(config_mod.show_text(cfg))
    return EXIT_OK


# -- the table -----------------------------------------------------------------------------------
COMMANDS: dict[str, tuple[Callable[[str], argparse.ArgumentParser], Callable[[argparse.Namespace], int]]] = {
    "validate": (parse_validate, cmd_validate),
    "plan": (parse_plan, cmd_plan),
    "view-dag": (parse_view_dag, cmd_view_dag),
    "compile": (parse_compile, cmd_compile),
    "create": (parse_create, cmd_create),
    "config": (parse_config, cmd_config),
    "approval sign": (parse_approval_sign, cmd_approval_sign),
}


def main(name: str, argv: list[str], prog: str) -> int:
    """Run the author command `name` with `argv`; returns the exit code (PlaybookError for the
    entry point's guard)."""
    build, run = COMMANDS[name]
    return run(build(prog).parse_args(argv))
