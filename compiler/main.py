"""The `playbook` console script: runtime commands go straight to the runtime's CLI.

`run`, `resume`, `show`, `info`, `set-status` and `report` are defined once, in playbook.runtime.cli
(argparse, shared with bundles); importing click for them would only cost start-up time.
"""

import sys

RUNTIME_COMMANDS = ("run", "resume", "show", "info", "set-status", "report")


def load_plan(file, sources):
    """Compile a runbook in memory for the runtime (nothing baked: variables resolve when run)."""
    from playbook.runtime.cli import CliError

    from .plan import compile_file
    from .source import CompileError

    try:
        compiled = compile_file(file, sources, bake=False)
    except CompileError as exc:
        for diag in exc.diagnostics:
            sys.stderr.write(diag.format() + "\n")
        errors = sum(1 for d in exc.diagnostics if d.severity == "error")
        raise CliError("%s has %d error%s; nothing was run" % (file, errors, "" if errors == 1 else "s"))
    for diag in compiled.warnings:
        sys.stderr.write(diag.format() + "\n")
    return compiled.plan


def run_runtime(args):
    from playbook.runtime.cli import main as runtime_main

    return runtime_main(args, load_plan=load_plan)


def main(argv=None):
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] in RUNTIME_COMMANDS:
        sys.exit(run_runtime(args))
    from .cli import main as cli_main

    cli_main(args)


if __name__ == "__main__":  # pragma: no cover
    main()
