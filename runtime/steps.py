"""One attempt of a Command or a Function step, as fields for the state database.

The engine (engine.py) decides when a step runs, records the attempt and asks the operator; this
module does the attempt itself: a Command through the runner it is given (executors.run_command,
or a rehearsal's stand-in), a Function through the plugin host. Every text it returns is masked.
Manual steps have no attempt to run: they are a question, which the engine asks.
"""

from __future__ import annotations

from . import templating
from .conditions import FAILED, SUCCEEDED

TYPE_CHECKING = False  # typing is not imported at run time (start-up)
if TYPE_CHECKING:
    from typing import Any, Callable, Mapping

    from .plan import Node
    from .secrets import Masker

# What a shell's exit code 126 means, said where a failed step shows its error.
NOT_EXECUTABLE = (
    "exit 126: a program was found but could not be executed (no execute permission, or a file system "
    "mounted noexec, as /tmp often is): run a script through its interpreter, as `sh script.sh` does"
)


def command(node: Node, runner: Callable[..., Any], mask: Masker, *, shell: str | None, default_timeout: float,
            kill_grace: float, on_output: Callable[[str, str], None],
            on_start: Callable[[int, Any], None]) -> tuple[str, dict[str, Any], bool]:
    """Run a Command node's (rendered) command: (status, fields, interrupted by a signal)."""
    result = runner(
        node.command,
        shell=node.shell or shell,
        env=templating.command_env(node),
        cwd=node.cwd,
        timeout=node.timeout if node.timeout is not None else default_timeout,
        interactive=node.interactive,
        on_output=on_output,
        on_start=on_start,
        kill_grace=kill_grace,
    )
    fields: dict[str, Any] = {
        "exit_code": result.exit_code,
        "stdout": mask.tail(result.stdout) if result.stdout_truncated else mask.text(result.stdout),
        "stderr": mask.tail(result.stderr) if result.stderr_truncated else mask.text(result.stderr),
        "stdout_truncated": result.stdout_truncated,
        "stderr_truncated": result.stderr_truncated,
        "error": result.error,
    }
    if result.timed_out and node.timeout is None:
        from .durations import default_timeout_note

        fields["error"] = default_timeout_note(fields["error"])
    elif result.exit_code == 126 and not fields["error"]:
        fields["error"] = NOT_EXECUTABLE
    return (SUCCEEDED if result.ok else FAILED), fields, bool(result.interrupted)


def function(node: Node, plugins: Any, runbook_config: Mapping[str, Any], values: Mapping[str, Any],
             mask: Masker) -> tuple[str, dict[str, Any]]:
    """Call a Function node's plugin function: (status, fields). A plugin's failure is a failed
    attempt with its message; KeyboardInterrupt (a signal) goes through."""
    try:
        from .plugins import merge_config  # plugins load only when a Function node runs

        rendered = templating.render_value(dict(runbook_config or {}), values, native=True)
        config = merge_config(rendered, node.plugin_config)
        output = plugins.call(node.plugin, node.function, node.function_params or {}, config, where="node %s" % node.id)
    except Exception as exc:  # any plugin error is the step's failure
        return FAILED, {"error": mask.text(str(exc) or type(exc).__name__)}
    if not (output is None or isinstance(output, (str, int, float, bool, list, dict))):
        output = str(output)
    return SUCCEEDED, {"output": mask.value(output)}
