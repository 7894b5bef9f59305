"""The `playbook` console script: the one command table, its dispatch, its help and its one
error handler.

COMMANDS maps every command to where it is defined, imported only when the command runs:
- "runtime": runtime/cli.py (run, resume, follow, approve, approval request, show, info,
  set-status, report), the same parser a bundle uses, with a loader that compiles the runbook file;
- "author": compiler/cli.py (validate, plan, view-dag, compile, create, config, approval sign);
- "fleet": fleet/cli.py; "rehearse": compiler/rehearse.py (`playbook test`).
`playbook --help` and shell completion are made from the table. Every command's help has one
shape (runtime/options.py) and lists its exit codes (runtime/errors.py). Every failure becomes
one line and an exit code in `errors.guard()`.
"""

from __future__ import annotations

import sys
from typing import NamedTuple

from playbook.runtime.errors import EXIT_INVALID, EXIT_OK, UsageError, exit_codes, guard


class Command(NamedTuple):
    where: str  # runtime, author, fleet, rehearse
    group: str  # the heading it is listed under
    summary: str


COMMANDS: dict[str, Command] = {
    "validate": Command("author", "author", "check runbooks without running anything"),
    "plan": Command("author", "author", "show what will run here, in words"),
    "view-dag": Command("author", "author", "draw the runbook's DAG (Graphviz)"),
    "test": Command("rehearse", "author", "rehearse every path of a runbook (scenarios), running nothing"),
    "compile": Command("author", "author", "build one file that runs the runbook on a server"),
    "create": Command("author", "author", "write a new runbook (a wizard on a terminal)"),
    "run": Command("runtime", "run", "run a runbook step by step (approvals, retries, resumable state)"),
    "resume": Command("runtime", "run", "continue a failed, aborted or waiting run"),
    "approve": Command("runtime", "run", "record a decision on a waiting step's question"),
    "approval": Command("approval", "run", "request (on the host) and sign (on a workstation) an approval"),
    "follow": Command("runtime", "run", "one look at a run started with --detach (what `fleet` uses)"),
    "show": Command("runtime", "records", "list runs, or show one run's steps, decisions and output"),
    "info": Command("runtime", "records", "database location and statistics; --plugins lists plugins"),
    "set-status": Command("runtime", "records", "correct the recorded status of a step (audited)"),
    "report": Command("runtime", "records", "write a run's report: HTML, JUnit XML for CI, JSON"),
    "fleet": Command("fleet", "servers", "roll a runbook out over many servers, with Ansible as the engine"),
    "config": Command("author", "setup", "show, check and create configuration"),
}
GROUPS = {
    "author": "author and check",
    "run": "run",
    "records": "records and reports",
    "servers": "many servers",
    "setup": "set-up",
}
APPROVAL_ACTIONS = {"request": "runtime", "sign": "author"}


def overview() -> str:
    """`playbook --help`: the commands from the table, by group."""
    from playbook import __version__

    width = max(len(name) for name in COMMANDS)
    lines = ["usage: playbook COMMAND [ARGS]   (playbook COMMAND --help: its options)", "",
             "Playbook %s: guardrails for humans running operations runbooks." % __version__]
    for group, heading in GROUPS.items():
        lines += ["", "%s:" % heading]
        lines += ["  %-*s  %s" % (width, name, command.summary) for name, command in COMMANDS.items() if command.group == group]
    lines += ["", "examples:",
              "  playbook validate deploy.playbook.toml --var ENVIRONMENT=prod",
              "  playbook plan deploy.playbook.toml --var ENVIRONMENT=prod",
              "  playbook run deploy.playbook.toml",
              "  playbook compile deploy.playbook.toml -o deploy.pyz",
              "", exit_codes(0, 1, 2, 3, 4, 129, 130)]
    return "\n".join(lines) + "\n"


def dispatch(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(overview())
        return EXIT_OK if args else EXIT_INVALID
    if args[0] in ("-V", "--version", "version"):
        from playbook import __version__

        sys.stdout.write("playbook, version %s\n" % __version__)
        return EXIT_OK
    name, rest = args[0], args[1:]
    if name == "report" and any(a == "--fleet" or a.startswith("--fleet=") for a in rest):
        sys.stderr.write("note: `playbook report --fleet DIR` is now `playbook fleet report DIR`\n")
        return _fleet(["report"] + rest)
    command = COMMANDS.get(name)
    if command is None:
        from playbook.runtime.suggest import did_you_mean

        hint = did_you_mean(name, COMMANDS)
        raise UsageError("unknown command %r%s; `playbook --help` lists them" % (name, " (%s)" % hint if hint else ""))
    where = command.where
    if where == "approval":
        return _approval(rest)
    if where == "runtime":
        return _runtime([name] + rest)
    if where == "author":
        from .cli import main as author_main

        return author_main(name, rest, "playbook %s" % name)
    if where == "fleet":
        return _fleet(rest)
    from .rehearse import main as rehearse_main

    return rehearse_main(rest)


def _runtime(args: list[str]) -> int:
    from playbook.runtime.cli import main as runtime_main

    from .plan import load_plan

    return runtime_main(args, load_plan=load_plan)


def _fleet(args: list[str]) -> int:
    from playbook.fleet.cli import main as fleet_main

    return fleet_main(args)


def _approval(args: list[str]) -> int:
    """`approval request` (the runtime: on the host) and `approval sign` (a workstation)."""
    action = args[0] if args else None
    if action not in APPROVAL_ACTIONS:
        sys.stdout.write(
            "usage: playbook approval ACTION [ARGS]\n\n"
            "Approvals signed away from the host that runs the runbook:\n"
            "  request  on the host: write the request of a step a run waits for\n"
            "  sign     on a workstation: sign a request with your SSH key\n\n"
            "example:\n"
            "  ./deploy.pyz approval request 7 approve_production -o request.json            # on the server\n"
            "  playbook approval sign request.json --key ~/.ssh/id_ed25519 -o approval.json  # on a workstation\n"
            "  ./deploy.pyz resume --approval approval.json                                  # on the server\n\n"
            + exit_codes(0, 2, 4) + "\n"
        )
        return EXIT_OK if action in ("-h", "--help") else EXIT_INVALID
    if APPROVAL_ACTIONS[action] == "runtime":
        return _runtime(["approval"] + args)
    from .cli import main as author_main

    return author_main("approval sign", args[1:], "playbook approval sign")


# -- shell completion ----------------------------------------------------------------------------
def completion_script(shell: str) -> str:
    """The completion script for bash, zsh or fish: the commands of the table, each command's
    options (read from its parser), and file names."""
    words = {name: _options_of(name) for name in COMMANDS}
    words["approval"] = list(APPROVAL_ACTIONS)
    names = " ".join(COMMANDS)
    if shell == "fish":
        lines = ["complete -c playbook -f -n '__fish_use_subcommand' -a '%s'" % names]
        for name, opts in words.items():
            for opt in opts:
                if opt.startswith("--"):
                    lines.append("complete -c playbook -n '__fish_seen_subcommand_from %s' -l %s" % (name, opt[2:]))
                elif not opt.startswith("-"):
                    lines.append("complete -c playbook -f -n '__fish_seen_subcommand_from %s' -a %s" % (name, opt))
        return "\n".join(lines) + "\n"
    cases = "\n".join("        %s) opts=%s ;;" % (name, _quote(" ".join(opts))) for name, opts in words.items())
    script = """_playbook_completion() {
    local cur=${COMP_WORDS[COMP_CWORD]} opts=""
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W %s -- "$cur"))
        return 0
    fi
    case "${COMP_WORDS[1]}" in
%s
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    elif [ "${COMP_WORDS[1]}" = approval ] && [ "$COMP_CWORD" -eq 2 ]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
    return 0
}
""" % (_quote(names), cases)
    if shell == "zsh":
        return "autoload -U +X bashcompinit && bashcompinit\n" + script + "complete -o filenames -F _playbook_completion playbook\n"
    return script + "complete -o filenames -F _playbook_completion playbook\n"


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def _options_of(name: str) -> list[str]:
    """The option strings of a command's parser (none for a command without one here)."""
    where = COMMANDS[name].where
    if where == "author":
        from .cli import COMMANDS as AUTHOR

        parser = AUTHOR[name][0]("playbook %s" % name)
    elif where == "runtime":
        from playbook.runtime.cli import command_parsers

        found = command_parsers().get(name)
        if found is None:
            return []
        parser = found
    else:
        return []
    return sorted({option for action in parser._actions for option in action.option_strings})


def main(argv: list[str] | None = None) -> None:
    import os

    shell = os.environ.get("_PLAYBOOK_COMPLETE", "")
    if shell.endswith("_source") and shell[: -len("_source")] in ("bash", "zsh", "fish"):
        sys.stdout.write(completion_script(shell[: -len("_source")]))
        sys.exit(EXIT_OK)
    args = sys.argv[1:] if argv is None else list(argv)
    sys.exit(guard(lambda: dispatch(args)))


if __name__ == "__main__":  # pragma: no cover
    main()
