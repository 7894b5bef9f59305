"""The options several commands share, defined once, and the one shape of every command's help.

Every `playbook` command and every bundle command is an argparse parser made by `parser()`: a
description, its options, examples, and the exit codes it can return (from errors.py). The
options that mean the same everywhere are added by the functions below: variables, the state
database, JSON output, approvals.

Standard library only: this module goes into bundles.
"""

from __future__ import annotations

import argparse

from .errors import exit_codes

TYPE_CHECKING = False  # typing is not imported at run time (start-up)
if TYPE_CHECKING:
    from typing import Iterable, Sequence


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written (paragraphs, examples), options wrapped."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=100)


def epilog(examples: Sequence[str] = (), codes: Iterable[int] = (), meanings: dict[int, str] | None = None) -> str | None:
    """What follows the options in a command's help: its examples, and the exit codes it can
    return (errors.py)."""
    parts = []
    if examples:
        parts.append("example%s:\n%s" % ("s" if len(examples) > 1 else "", "\n".join("  " + e for e in examples)))
    codes = list(codes)
    if codes:
        parts.append(exit_codes(*codes, meanings=meanings))
    return "\n\n".join(parts) or None


def parser(prog: str, description: str, examples: Sequence[str] = (), codes: Iterable[int] = (0, 2),
           meanings: dict[int, str] | None = None, add_help: bool = True) -> argparse.ArgumentParser:
    """A command's parser: `description`, then (after the options) the examples and the exit
    codes it can return."""
    return argparse.ArgumentParser(
        prog=prog, description=description, epilog=epilog(examples, codes, meanings), formatter_class=HelpFormatter,
        add_help=add_help,
    )


def add_variable_args(parser: argparse.ArgumentParser, interactive: bool = True) -> None:
    """--var, --vars-file, --vars-env (and --no-interactive-vars where a prompt is possible)."""
    group = parser.add_argument_group("variables")
    group.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="set a variable (repeatable)")
    group.add_argument("--vars-file", metavar="FILE", help="read variables from a TOML file of NAME = value lines")
    group.add_argument("--vars-env", metavar="PREFIX", help="read variables from environment variables PREFIX<NAME>")
    if interactive:
        group.add_argument(
            "--no-interactive-vars", action="store_true", help="never prompt for a missing variable; fail and list them"
        )


def add_state_arg(parser: argparse.ArgumentParser, what: str = "SQLite state database") -> None:
    parser.add_argument(
        "--state-path", metavar="DB", help="%s (default: $PLAYBOOK_DB_PATH or ~/.config/playbook/run.db)" % what,
    )


def add_json_arg(parser: argparse.ArgumentParser, what: str = "print JSON") -> None:
    parser.add_argument("--json", action="store_true", help=what)


def add_approval_args(parser: argparse.ArgumentParser) -> None:
    """--approve NODE and --auto-approve: questions answered without a terminal."""
    parser.add_argument("--auto-approve", action="store_true", help="approve every approval without a terminal (recorded as such)")
    parser.add_argument(
        "--approve", action="append", default=[], metavar="NODE",
        help="approve this step's question without a terminal (repeatable; recorded as approved by flag with user@host)",
    )
