"""The `playbook` console script: the one dispatch of the tool, and its one error handler.

`run`, `resume`, `show`, `info`, `set-status` and `report` are defined once, in
playbook.runtime.cli (argparse, shared with bundles) and go straight there: importing click for
them would only cost start-up time. Every other command is a click command (compiler/cli.py).
Every failure becomes one line and an exit code in `errors.guard()`.
"""

from __future__ import annotations

import sys

from playbook.runtime.errors import guard

RUNTIME_COMMANDS = ("run", "resume", "show", "info", "set-status", "report", "approve")


def dispatch(args: list[str]) -> int:
    if args[:1] == ["report"] and any(a == "--fleet" or a.startswith("--fleet=") for a in args):
        from .fleet import report_main  # the report of a fleet rollout (many hosts' databases)

        return report_main(args[1:])
    if args and (args[0] in RUNTIME_COMMANDS or args[:2] == ["approval", "request"]):
        from playbook.runtime.cli import main as runtime_main

        from .plan import load_plan

        return runtime_main(args, load_plan=load_plan)
    from .cli import cli

    cli.main(args=args, prog_name="playbook")  # click exits by itself (standalone mode)
    return 0


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    sys.exit(guard(lambda: dispatch(args)))


if __name__ == "__main__":  # pragma: no cover
    main()
