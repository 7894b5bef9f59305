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
        click.echo("%s: valid — %s" % (summary["file"], summary["title"]))
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
def plan(file, var_pairs, vars_file, vars_env, as_json):
    """Show what will run, in execution order, with each node's run condition in words.

    Variables given here are baked in; conditions that depend only on them are decided now.

    \b
    Example:
      playbook plan deploy.playbook.toml --var ENVIRONMENT=staging
    """
    sources = _sources(var_pairs, vars_file, vars_env)
    compiled = _compile(file, sources, bake=True, as_json=as_json)
    if as_json:
        click.echo(json.dumps(compiled.plan.to_json(), indent=2, sort_keys=True, ensure_ascii=False))
        return
    from playbook.runtime.ui import plan_text

    click.echo(plan_text(compiled.plan))


@cli.command()
@click.option("--title", help="Title of the runbook.")
@click.option("--author", help="Author (team or person).")
@click.option("--description", help="One-line description.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="File to write (default: from the title).")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def create(title, author, description, output, force):
    """Write a new, commented runbook that validates as written.

    Asks on a terminal for what was not given.

    \b
    Example:
      playbook create --title "Rotate TLS certificates" --author ops -o rotate.playbook.toml
    """
    from .create import default_name, write_runbook

    interactive = sys.stdin.isatty()
    if title is None:
        title = click.prompt("Title", default="My runbook") if interactive else "My runbook"
    if author is None:
        author = click.prompt("Author", default=os.environ.get("USER", "ops")) if interactive else os.environ.get("USER", "ops")
    if description is None:
        description = click.prompt("Description", default="What this runbook does") if interactive else "What this runbook does"
    if output is None:
        output = default_name(title)
    if os.path.exists(output) and not force:
        click.echo("error: %s exists; use --force to overwrite it" % output, err=True)
        sys.exit(EXIT_INVALID)
    write_runbook(output, title=title, author=author, description=description)
    click.echo("wrote %s — check it with: playbook validate %s" % (output, output))


# -- the runtime's commands: options are defined once, in playbook.runtime.cli ------------------
_PASS = {"context_settings": {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}, "add_help_option": False}


def _runtime(name, summary):
    @click.pass_context
    def command(ctx):
        from .main import run_runtime

        sys.exit(run_runtime([name] + ctx.args))

    command.__doc__ = summary + "\n\nSee `playbook %s --help` for its options." % name
    return cli.command(name, help=summary, short_help=summary, **_PASS)(command)


_runtime("run", "Run a runbook step by step (approvals, retries, resumable state).")
_runtime("resume", "Continue a failed or aborted run; succeeded steps never run again.")
_runtime("show", "List runs, or show one run's steps, decisions and output.")
_runtime("info", "Database location and statistics; --plugins lists plugins.")
_runtime("set-status", "Correct the recorded status of a step (audited).")


def main(argv=None):
    try:
        cli.main(args=argv, prog_name="playbook", standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
