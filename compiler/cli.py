"""The `playbook` command for authors and CI: a thin click layer over the compiler and runtime.

Exit codes: 0 ok · 1 run failed · 2 invalid input · 3 aborted · 4 state or bundle problem.
Heavy modules are imported inside the commands that use them, so `validate` starts fast.
"""

import json
import os
import sys

import click

from playbook import __version__

EXIT_INVALID = 2

VAR_HELP = "Set a variable (repeatable): --var NAME=VALUE."


def _variable_options(func):
    func = click.option("--vars-env", metavar="PREFIX", help="Read variables from environment variables PREFIX<NAME>.")(func)
    func = click.option("--vars-file", type=click.Path(dir_okay=False), help="Read variables from a TOML file of NAME = value lines.")(func)
    func = click.option("--var", "var_pairs", multiple=True, metavar="NAME=VALUE", help=VAR_HELP)(func)
    return func


def _sources(var_pairs, vars_file, vars_env):
    from playbook.runtime import variables

    try:
        return variables.Sources.gather(var_pairs, vars_file, vars_env)
    except variables.VariableError as exc:
        click.echo("error: %s" % exc, err=True)
        sys.exit(EXIT_INVALID)


def _print_diagnostics(diagnostics):
    for diag in diagnostics:
        click.echo(diag.format(), err=True)


def _compile(path, sources, bake, as_json=False):
    """Compile or exit 2 with every diagnostic (as JSON on request)."""
    from .plan import compile_file
    from .source import CompileError

    try:
        compiled = compile_file(path, sources, bake=bake)
    except CompileError as exc:
        if as_json:
            click.echo(json.dumps({"valid": False, "diagnostics": [d.to_json() for d in exc.diagnostics]}, indent=2))
        else:
            _print_diagnostics(exc.diagnostics)
            errors = sum(1 for d in exc.diagnostics if d.severity == "error")
            click.echo("%s: %d error%s" % (exc.diagnostics[0].file, errors, "" if errors == 1 else "s"), err=True)
        sys.exit(EXIT_INVALID)
    if not as_json:
        _print_diagnostics(compiled.warnings)
    return compiled


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="playbook")
def cli():
    """Playbook: guardrails for humans running operations runbooks.

    \b
    Author and check:   playbook validate deploy.playbook.toml --var ENVIRONMENT=prod
    See what will run:  playbook plan deploy.playbook.toml --var ENVIRONMENT=prod
    Run it here:        playbook run deploy.playbook.toml
    Ship it:            playbook compile deploy.playbook.toml -o deploy.pyz
    """


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False), metavar="FILE...")
@_variable_options
@click.option("--check-vars", is_flag=True, help="Fail when a required variable has no value.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def validate(files, var_pairs, vars_file, vars_env, check_vars, as_json):
    """Check runbooks without running anything; exit 0 when all are valid, 2 otherwise.

    Writes no file and no state database. Several files may be given (as pre-commit does).

    \b
    Example:
      playbook validate deploy.playbook.toml --var ENVIRONMENT=prod --check-vars
    """
    from .plan import compile_file
    from .source import CompileError

    sources = _sources(var_pairs, vars_file, vars_env)
    results = []
    for file in files:
        try:
            compiled = compile_file(file, sources, bake=True)
        except CompileError as exc:
            results.append(_validation_failed(file, exc.diagnostics, as_json))
            continue
        results.append(_validation_passed(compiled, check_vars, as_json))
    if as_json:
        document = results[0] if len(results) == 1 else {"valid": all(r["valid"] for r in results), "files": results}
        click.echo(json.dumps(document, indent=2, sort_keys=True))
    if not all(r["valid"] for r in results):
        sys.exit(EXIT_INVALID)


def _validation_failed(file, diagnostics, as_json):
    if not as_json:
        _print_diagnostics(diagnostics)
        errors = sum(1 for d in diagnostics if d.severity == "error")
        click.echo("%s: %d error%s" % (diagnostics[0].file, errors, "" if errors == 1 else "s"), err=True)
    return {"file": file, "valid": False, "diagnostics": [d.to_json() for d in diagnostics]}


def _validation_passed(compiled, check_vars, as_json):
    summary = compiled.summary()
    missing = summary["required_variables"] if check_vars else []
    if not as_json:
        _print_diagnostics(compiled.warnings)
        types = ", ".join("%d %s" % (n, t) for t, n in sorted(summary["node_types"].items()))
        verdict = "invalid (--check-vars: required variables have no value)" if missing else "valid"
        click.echo("%s: %s — %s" % (summary["file"], verdict, summary["title"]))
        click.echo("  %d node%s: %s" % (summary["nodes"], "" if summary["nodes"] == 1 else "s", types or "none"))
        if summary["variables"] or summary["baked"]:
            shown = []
            for name in sorted(set(summary["variables"]) | set(summary["baked"])):
                if name in summary["baked"]:
                    shown.append("%s (given)" % name)
                elif name in summary["required_variables"]:
                    shown.append("%s (required)" % name)
                else:
                    shown.append(name)
            click.echo("  variables: %s" % ", ".join(shown))
        if summary["plugins"]:
            click.echo("  plugins: %s" % ", ".join(summary["plugins"]))
        if not compiled.runbook.meta.get("id"):
            click.echo(
                "  hint: no [runbook] id: runs are recorded under %s, made from the title and the file's name, so a "
                "renamed file starts a new history; add id = %s to [runbook] to keep it"
                % (compiled.plan.runbook["id"], json.dumps(compiled.plan.runbook["id"]))
            )
        if missing:
            from playbook.runtime.variables import describe_missing

            click.echo("error: missing required variables:", err=True)
            for name in missing:
                click.echo(describe_missing(name, compiled.plan.variables[name]), err=True)
    return {
        "file": summary["file"],
        "valid": not missing,
        "summary": summary,
        "missing_variables": missing,
        "diagnostics": [d.to_json() for d in compiled.warnings],
    }


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@_variable_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan document (JSON).")
@click.option("--run", "run_id", type=int, metavar="ID", help="Show what `resume --replan` would do to run ID with the runbook as it is now.")
@click.option("--state-path", metavar="DB", help="State database for --run (default: $PLAYBOOK_DB_PATH or ~/.config/playbook/run.db).")
def plan(file, var_pairs, vars_file, vars_env, as_json, run_id, state_path):
    """Show what will run here, in execution order: each node's command rendered with the
    values a run would use, its effective timeout, and its run condition in words.

    Values given here come first, then the runbook's defaults (marked "default"); conditions
    that depend only on them are decided now. Secrets are never shown. Every Command step
    shows its timeout: its own, or [execution] default_timeout (300 s unless configured).
    --json prints the plan document with `effective` values (and where each comes from) and
    timeouts, sorted, for diffs in CI.

    \b
    Example:
      playbook plan deploy.playbook.toml --var ENVIRONMENT=staging
      playbook plan deploy.playbook.toml --var ENVIRONMENT=prod --json > plan.json
    """
    from playbook.runtime import preview

    sources = _sources(var_pairs, vars_file, vars_env)
    if run_id is not None:
        _replan_preview(file, sources, run_id, state_path, as_json)
        return
    compiled = _compile(file, sources, bake=True, as_json=as_json)
    cfg = _configuration()
    shown, values, origins = _plan_here(file, compiled, sources)
    timeout = (cfg.get("execution", "default_timeout"), cfg.origin("execution", "default_timeout"))
    if as_json:
        document = preview.document(shown, values, origins, *timeout)
        click.echo(json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False))
        return
    from playbook.runtime.ui import plan_text

    click.echo(plan_text(shown, values, origins, *timeout))


def _configuration():
    """The effective configuration, or exit 2 naming every problem."""
    from playbook.runtime import config as config_mod

    try:
        return config_mod.load()
    except config_mod.ConfigError as exc:
        for problem in exc.problems:
            click.echo("error: %s" % problem.format(), err=True)
        click.echo("(`playbook config --validate` checks the configuration files)", err=True)
        sys.exit(EXIT_INVALID)


def _plan_here(file, compiled, sources):
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
        click.echo("%s: the runbook's defaults do not render" % exc.diagnostics[0].file, err=True)
        sys.exit(EXIT_INVALID)
    values = dict(shown.values)
    for name, spec in specs.items():
        if spec.get("secret") and sources.lookup(name) is not None:
            values[name] = variables.MASK
    shown = preview.render_known(shown, values)
    specs.update({name: {} for name in values if name not in specs})  # undeclared, supplied
    return shown, values, variables.origins(specs, layered, values)


def _replan_preview(file, sources, run_id, state_path, as_json):
    """`plan FILE --run ID`: which steps of the run would keep their results, run again, be new
    or be removed if it were continued with the runbook as it is now."""
    from playbook.runtime import session
    from playbook.runtime.errors import PlaybookError, guard
    from playbook.runtime.plan import Plan

    current = _compile(file, sources, bake=False).plan

    def show():
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
            click.echo(json.dumps({"run": run_id, "plan_before": run["plan_hash"], "plan_now": current.digest(), **changes},
                                  indent=2, sort_keys=True))
        else:
            click.echo(session.replan_text(run_id, changes))
        return 0

    code = guard(show)
    if code:
        sys.exit(code)


class _Quiet:
    """A UI that asks nothing (plan never prompts for a preview)."""

    interactive = False

    def error(self, text):
        click.echo(text, err=True)


@cli.command()
@click.option("--title", help="Title of the runbook.")
@click.option("--author", help="Author (team or person).")
@click.option("--description", help="One-line description.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="File to write (default: from the title).")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def create(title, author, description, output, force):
    """Write a new runbook that validates as written.

    On a terminal: a wizard asks for what was not given, then for the steps one by one
    (Manual, Command or Function; dependencies; critical), checking each. Without a terminal,
    or with no step added: a commented example runbook.

    \b
    Example:
      playbook create --title "Rotate TLS certificates" --author ops -o rotate.playbook.toml
    """
    from .create import default_name, interactive_create, write_runbook

    if output is not None and os.path.exists(output) and not force:
        click.echo("error: %s exists; use --force to overwrite it" % output, err=True)
        sys.exit(EXIT_INVALID)
    if sys.stdin.isatty():
        try:
            output = interactive_create(title, author, description, output, force)
        except click.Abort:
            click.echo("\naborted: nothing was written", err=True)
            sys.exit(1)
        click.echo("wrote %s — check it with: playbook validate %s" % (output, output))
        return
    title = "My runbook" if title is None else title
    author = os.environ.get("USER", "ops") if author is None else author
    description = "What this runbook does" if description is None else description
    if output is None:
        output = default_name(title)
    if os.path.exists(output) and not force:
        click.echo("error: %s exists; use --force to overwrite it" % output, err=True)
        sys.exit(EXIT_INVALID)
    write_runbook(output, title=title, author=author, description=description)
    click.echo("wrote %s — check it with: playbook validate %s" % (output, output))


# -- the runtime's commands: options are defined once, in playbook.runtime.cli ------------------
_PASS = {"context_settings": {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}, "add_help_option": False}


@cli.command("compile")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Bundle to write (default: the runbook's stem + .pyz, here).")
@_variable_options
@click.option("--python", "pythons", multiple=True, metavar="3.X", help="Build bytecode for this Python version (repeatable).")
@click.option("--interpreter", "interpreters", multiple=True, type=click.Path(dir_okay=False), help="Build bytecode with this interpreter (repeatable).")
@click.option("--no-bytecode", is_flag=True, help="Sources only (smaller, slower start).")
@click.option("--sign-key", type=click.Path(dir_okay=False), help="Sign with this SSH private key: writes OUTPUT.sig.")
@click.option(
    "--approval-signers", type=click.Path(dir_okay=False),
    help="An ssh allowed-signers file: steps with approvers or approvals accept only approvals signed by these principals.",
)
@click.option(
    "--approval-max-valid", metavar="DURATION",
    help="With --approval-signers: the longest a signed approval may be valid for (30m, 2h, 1d; default and most 7d).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result (manifest, size, sha256) as JSON.")
def compile_command(file, output, var_pairs, vars_file, vars_env, pythons, interpreters, no_bytecode, sign_key, approval_signers,
                    approval_max_valid, as_json):
    """Build one executable file that runs the runbook on a server with only a system Python.

    Validates first (same diagnostics as `validate`); the given variables are baked in (never
    secrets), the others are taken on the host. Bytecode is built for the interpreter running
    this and every CPython 3.9-3.13 on PATH or under pyenv, unless --python/--interpreter say.

    \b
    Example:
      playbook compile deploy.playbook.toml --var ENVIRONMENT=prod --sign-key ~/.ssh/release
      scp deploy.pyz deploy.pyz.sig server:   # there: ./deploy.pyz run
    """
    from playbook.runtime import approvals

    from .bundle import BundleError, build, default_output, describe

    sources = _sources(var_pairs, vars_file, vars_env)
    max_valid = None
    if approval_max_valid is not None:
        if not approval_signers:
            click.echo("error: --approval-max-valid bounds signed approvals: give --approval-signers too", err=True)
            sys.exit(EXIT_INVALID)
        try:
            max_valid = approvals.parse_duration(approval_max_valid, what="--approval-max-valid").total_seconds()
        except approvals.ApprovalError as exc:
            click.echo("error: %s" % exc, err=True)
            sys.exit(exc.exit_code)
    compiled = _compile(file, sources, bake=True, as_json=as_json)
    output = output or default_output(file)
    if approval_signers:
        signed = [n.id for n in compiled.plan.nodes if approvals.has_question(n) and approvals.has_policy(n)]
        if signed:
            click.echo("steps that accept only signed approvals: %s" % ", ".join(signed), err=True)
        else:
            click.echo(
                "warning: --approval-signers: no step has approvers or approvals, so no step needs a signature "
                "(every question stays the operator's own confirmation)", err=True,
            )
    try:
        report = build(
            compiled, output, sign_key=sign_key, pythons=pythons, interpreters=interpreters, bytecode=not no_bytecode,
            approval_signers=approval_signers, approval_max_valid=max_valid,
        )
    except BundleError as exc:
        click.echo("error: %s" % exc, err=True)
        sys.exit(exc.code)
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False))
        return
    for warning in report["warnings"]:
        click.echo("warning: %s" % warning, err=True)
    for line in describe(report):
        click.echo(line)


def _runtime(name, summary):
    @click.argument("args", nargs=-1, type=click.Path())  # lets shell completion offer files
    @click.pass_context
    def command(ctx, args):
        from playbook.runtime.cli import main as runtime_main
        from playbook.runtime.errors import guard

        from .plan import load_plan

        sys.exit(guard(lambda: runtime_main([name] + list(args) + ctx.args, load_plan=load_plan)))

    command.__doc__ = summary + "\n\nSee `playbook %s --help` for its options." % name
    return cli.command(name, help=summary, short_help=summary, **_PASS)(command)


_runtime("run", "Run a runbook step by step (approvals, retries, resumable state).")
_runtime("resume", "Continue a failed or aborted run; succeeded steps never run again.")
_runtime("show", "List runs, or show one run's steps, decisions and output.")
_runtime("info", "Database location and statistics; --plugins lists plugins.")
_runtime("set-status", "Correct the recorded status of a step (audited).")
_runtime("report", "Write a run's report: self-contained HTML, JUnit XML for CI, JSON.")
_runtime("approve", "Record a decision on a waiting step's question (out of band, or signed).")


@cli.group("approval")
def approval_group():
    """Approvals made away from the host: the host exports a request, you sign it on your
    workstation, the signed file goes back to the host.

    \b
    Example. On the server (the run waits for a signed approval):
      ./deploy.pyz approval request 7 approve_production -o request.json
    On a workstation (the approver):
      playbook approval sign request.json --key ~/.ssh/id_ed25519 --bundle deploy.pyz -o approval.json
    Back on the server:
      ./deploy.pyz resume --approval approval.json
    """


@approval_group.command("request", context_settings={"ignore_unknown_options": True, "help_option_names": []}, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def approval_request(args):
    """Write the approval request of a step a run waits for (see `playbook approval request --help`)."""
    from playbook.runtime.cli import main as runtime_main
    from playbook.runtime.errors import guard

    from .plan import load_plan

    sys.exit(guard(lambda: runtime_main(["approval", "request"] + list(args), load_plan=load_plan)))


@approval_group.command("sign")
@click.argument("request", type=click.Path(dir_okay=False))
@click.option("--key", required=True, type=click.Path(exists=True, dir_okay=False), help="Your SSH private key (an agent's key works too).")
@click.option("--principal", help="Your principal in the bundle's allowed-signers list (default: your user name).")
@click.option("--valid-for", default="2h", show_default=True, help="How long the approval stays valid: 30m, 2h, 1d; at most 7d.")
@click.option("--reject", is_flag=True, help="Sign a rejection instead of an approval.")
@click.option("--note", help="Why (recorded on the server).")
@click.option("--bundle", "bundle_path", type=click.Path(exists=True, dir_okay=False),
              help="The bundle you reviewed: refuse to sign a request for another plan.")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="The signed approval file to write.")
def approval_sign(request, key, principal, valid_for, reject, note, bundle_path, output):
    """Sign an approval (or rejection) of the request a host exported (`approval request`).

    The signature (`ssh-keygen -Y sign`, namespace `playbook-approval`) binds the run's random
    UID, the plan, the step, the question as the host asked it and the run's values (their
    digests are computed here from the texts shown below, so what is signed is what you read),
    the decision, your principal and the expiry. The host checks it against the principals its
    bundle was compiled with (--approval-signers), when it is recorded and again when it is used.

    Exit 0 signed · 2 not a request, --valid-for out of bounds, another plan than --bundle ·
    4 ssh-keygen could not sign, the file could not be written.
    """
    from playbook.runtime import approvals
    from playbook.runtime.errors import PlaybookError
    from playbook.runtime.state import current_user

    try:
        wanted = approvals.read_request(request)
        if bundle_path and _bundle_plan_hash(bundle_path) != wanted["plan"]:
            raise approvals.ApprovalError(
                "%s asks about plan %s…, not the plan of %s (%s…): it was made with another bundle"
                % (request, wanted["plan"][:12], bundle_path, _bundle_plan_hash(bundle_path)[:12])
            )
        data = approvals.run_payload(
            wanted, "rejected" if reject else "approved", principal or current_user(), approvals.parse_duration(valid_for), note
        )
        click.echo(_request_summary(wanted, data), err=True)
        signature = approvals.sign(data, key)
    except PlaybookError as exc:
        click.echo("error: %s" % exc, err=True)
        sys.exit(exc.exit_code)
    try:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(approvals.signed_document(data, signature))
    except OSError as exc:
        click.echo("error: cannot write %s: %s" % (output, exc.strerror or exc), err=True)
        sys.exit(4)
    click.echo("wrote %s: %s of %s in run %s (uid %s), valid until %s" % (
        output, data["decision"], wanted["node"], wanted.get("run"), wanted["run_uid"], data["expires"]))


def _request_summary(request, data):
    """What the approver signs, in words (values as the host recorded them: secrets masked)."""
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
    from playbook.runtime import terminal

    return terminal.clean("\n".join(lines))


def _bundle_plan_hash(path):
    """The plan identity of a bundle: the SHA-256 of its plan.json member."""
    import hashlib
    import zipfile

    from playbook.runtime.errors import BundleError

    try:
        with zipfile.ZipFile(path) as archive:
            return hashlib.sha256(archive.read("plan.json")).hexdigest()
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise BundleError("%s is not a Playbook bundle: %s" % (path, exc)) from None


def _recorded_run_dot(run_id, state_path, file, sources):
    """(DOT text of run `run_id` coloured by what happened, the run's runbook source); errors
    exit 2 (no such run) or 4 (state database or plan problem)."""
    from playbook.runtime import graph as dag
    from playbook.runtime.errors import PlaybookError
    from playbook.runtime.plan import PlanError
    from playbook.runtime.session import open_store
    from playbook.runtime.state import StateError

    explicit = state_path or os.environ.get("PLAYBOOK_DB_PATH")
    if explicit and not os.path.isfile(os.path.expanduser(explicit)):
        click.echo("error: no state database at %s" % explicit, err=True)
        sys.exit(4)
    try:
        store = open_store(state_path)
    except PlaybookError as exc:
        click.echo("error: %s" % exc, err=True)
        sys.exit(exc.code)
    try:
        run = store.get_run(run_id)
        if run is None:
            click.echo("error: no run %d in %s" % (run_id, store.path), err=True)
            sys.exit(EXIT_INVALID)
        states = dag.run_states(store.attempts(run_id))
    except StateError as exc:
        click.echo("error: %s" % exc, err=True)
        sys.exit(4)
    finally:
        store.close()
    try:
        drawn = dag.plan_for_run(run)
    except (PlanError, TypeError) as exc:
        click.echo("error: run %d has no usable plan in %s: %s" % (run_id, store.path, exc), err=True)
        sys.exit(4)
    if file is not None:
        current = _compile(file, sources, bake=False)
        if current.plan.digest() != run.get("plan_hash"):
            click.echo("note: %s differs from the plan run %d used; drawing the run's plan" % (file, run_id), err=True)
    return dag.to_dot(drawn, states, title=dag.run_caption(drawn, run)), run.get("source") or "run"


@cli.command("fleet", help="Roll a runbook out over many servers, with Ansible as the engine.", **_PASS)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def fleet_command(args):
    """Roll a runbook out over many servers: see `playbook fleet --help` (compiler/fleet.py)."""
    from playbook.runtime.errors import guard

    from .fleet import main as fleet_main

    sys.exit(guard(lambda: fleet_main(list(args))))


@cli.command("view-dag")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@_variable_options
@click.option("--format", "fmt", type=click.Choice(["png", "svg", "pdf", "dot"]), help="Picture format (default: from --output's suffix, else png).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, allow_dash=True), help="File to write, - for standard output (default: the runbook's name + the format's suffix, here).")
@click.option("--keep-dot", is_flag=True, help="Also write the DOT source beside the picture (OUTPUT with .dot).")
@click.option("--no-open", is_flag=True, help="Never open a viewer; just write the file.")
@click.option("--run", "run_id", type=int, metavar="ID", help="Colour every node by its state in run ID (draws the plan that run used).")
@click.option("--state-path", metavar="DB", help="State database for --run (default: $PLAYBOOK_DB_PATH or ~/.config/playbook/run.db).")
def view_dag(file, var_pairs, vars_file, vars_env, fmt, output, keep_dot, no_open, run_id, state_path):
    """Draw the runbook's DAG: node types, critical nodes, conditional edges, `when`s.

    Variables given here are baked in, like `plan`; templates that need other variables show
    their defaults or stay as written. With --run, every node is coloured by what happened to it
    in that run (succeeded, failed, skipped and why, not reached) with its attempt count; FILE
    may then be left out. The picture is opened in a viewer when there is a display and a
    viewer (xdg-open / open), otherwise only its path is printed.

    Exit codes: 0 written · 2 invalid runbook, variables or run id · 4 environment problem:
    the Graphviz `dot` program is missing (install graphviz, or use --format dot), the state
    database or the output file cannot be used.

    \b
    Examples:
      playbook view-dag deploy.playbook.toml --var ENVIRONMENT=prod --no-open
      playbook view-dag deploy.playbook.toml --format svg -o docs/deploy.svg --keep-dot
      playbook view-dag --run 12 --state-path run.db -o run12.png
    """
    from playbook.runtime import graph as dag

    from . import graph as graph_mod

    if file is None and run_id is None:
        click.echo("error: give a runbook FILE, or --run ID to draw a recorded run", err=True)
        sys.exit(EXIT_INVALID)
    sources = _sources(var_pairs, vars_file, vars_env)
    name = file
    if run_id is None:
        compiled = _compile(file, sources, bake=True)
        dot_text = dag.to_dot(graph_mod.picture_plan(compiled.plan))
    else:
        if var_pairs or vars_file or vars_env:
            click.echo("note: with --run the run's own variables are used; --var/--vars-file/--vars-env are ignored", err=True)
        dot_text, recorded_source = _recorded_run_dot(run_id, state_path, file, sources)
        name = file if file is not None else recorded_source
    fmt = graph_mod.format_for(output, fmt)
    output = output or graph_mod.default_output(name, fmt, run_id)
    if output == "-":
        try:
            data = graph_mod.render(dot_text, fmt)
        except graph_mod.GraphError as exc:
            click.echo("error: %s" % exc, err=True)
            sys.exit(exc.code)
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        graph_mod.write(output, graph_mod.render(dot_text, fmt))
        if keep_dot and fmt != "dot":
            graph_mod.write(os.path.splitext(output)[0] + ".dot", dot_text.encode("utf-8"))
    except graph_mod.GraphError as exc:
        click.echo("error: %s" % exc, err=True)
        sys.exit(exc.code)
    click.echo("wrote %s" % output)
    if keep_dot and fmt != "dot":
        click.echo("wrote %s" % (os.path.splitext(output)[0] + ".dot"))
    if no_open or fmt == "dot":
        return
    opened, reason = graph_mod.open_file(output)
    if not opened:
        click.echo("not opened: %s; the picture is at %s" % (reason, os.path.abspath(output)), err=True)


@cli.command("config")
@click.option("--show", "show", is_flag=True, help="Print the effective values and where each came from (the default).")
@click.option("--init", "init_env", metavar="ENV", help="Add an [environments.ENV] section to ~/.config/playbook/config.toml (or $PLAYBOOK_CONFIG).")
@click.option("--validate", is_flag=True, help="Check every configuration file found (exit 2 on problems).")
@click.option("--template", "template", metavar="FILE", type=click.Path(dir_okay=False, allow_dash=True), help="Write a commented template of every key ('-' prints it).")
@click.option("--force", is_flag=True, help="With --init/--template: replace existing content.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def config_command(show, init_env, validate, template, force, as_json):
    """Show, check and create configuration.

    Files, the first listed winning key by key: $PLAYBOOK_CONFIG if set, else ./playbook.toml,
    ~/.config/playbook/config.toml, /etc/playbook/config.toml. PLAYBOOK_ENV=NAME selects their
    [environments.NAME] sections; PLAYBOOK_DB_PATH, PLAYBOOK_MAX_RETRIES, ... override both.
    Exit 0 ok, 2 bad configuration or refused change.

    \b
    Examples:
      playbook config --show
      playbook config --init production
      playbook config --validate
      playbook config --template config-template.toml
    """
    from playbook.runtime import config as config_mod

    done = False
    if template:
        text = config_mod.template_text()
        if template == "-":
            click.echo(text, nl=False)
        else:
            if os.path.exists(template) and not force:
                click.echo("error: %s exists; --force overwrites it" % template, err=True)
                sys.exit(EXIT_INVALID)
            try:
                with open(template, "w", encoding="utf-8") as handle:
                    handle.write(text)
            except OSError as exc:
                click.echo("error: cannot write %s: %s" % (template, exc.strerror or exc), err=True)
                sys.exit(EXIT_INVALID)
            click.echo("wrote %s" % template, err=as_json)
        done = True
    if init_env:
        try:
            path, action = config_mod.init_environment(init_env, force=force)
        except config_mod.ConfigError as exc:
            click.echo("error: %s" % exc, err=True)
            sys.exit(EXIT_INVALID)
        except OSError as exc:
            click.echo("error: cannot write the configuration: %s" % exc, err=True)
            sys.exit(EXIT_INVALID)
        click.echo(action, err=as_json)
        click.echo("use it with: PLAYBOOK_ENV=%s playbook run ..." % init_env, err=as_json)
        done = True
    if validate:
        cfg, files, problems = config_mod.gather()
        if as_json:
            click.echo(json.dumps({"valid": not problems, "files": files, "searched": cfg.searched,
                                   "problems": [p.to_json() for p in problems]}, indent=2))
        else:
            for problem in problems:
                click.echo(problem.format("error"), err=True)
            if not files:
                click.echo("no configuration file found (searched %s); the defaults apply" % ", ".join(cfg.searched))
            for path in files:
                click.echo("%s %s" % ("checked" if problems else "ok", path))
        if problems:
            if not as_json:
                click.echo("%d problem%s" % (len(problems), "" if len(problems) == 1 else "s"), err=True)
            sys.exit(EXIT_INVALID)
        done = True
    if show or not done:
        cfg, _, problems = config_mod.gather()
        if problems:
            for problem in problems:
                click.echo("error: %s" % problem.format(), err=True)
            sys.exit(EXIT_INVALID)
        if as_json:
            click.echo(json.dumps(cfg.to_json(), indent=2))
        else:
            click.echo(config_mod.show_text(cfg))


if __name__ == "__main__":  # pragma: no cover
    cli.main(prog_name="playbook")
