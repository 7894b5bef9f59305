"""`playbook view-dag`: draw a runbook's DAG (or one run of it) with Graphviz.

The DOT text comes from ``playbook.runtime.graph`` (standard library, shared with run reports);
this module renders it with the `graphviz` package and the `dot` program, writes the file and
opens it in a viewer when there is one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from playbook.runtime.errors import EXIT_INVALID, EXIT_STATE, PlaybookError
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from playbook.runtime.plan import Plan

FORMATS = ("png", "svg", "pdf", "dot")
SUFFIXES = {".png": "png", ".svg": "svg", ".pdf": "pdf", ".dot": "dot", ".gv": "dot"}

INSTALL_HINT = (
    "install Graphviz: apt-get install graphviz (Debian/Ubuntu), yum install graphviz "
    "(RHEL/Fedora), brew install graphviz (macOS); or use --format dot to write the DOT text only"
)


class GraphError(PlaybookError):
    """A picture that cannot be made: exit 2 (a program it needs is missing: dot; a bad
    format) or 4 (a file that cannot be written)."""

    def __init__(self, message: str, code: int = EXIT_STATE) -> None:
        super().__init__(message, code)


def default_output(runbook_path: str | None, fmt: str, run_id: int | None = None) -> str:
    """`deploy.png` for `path/to/deploy.playbook.toml` (in the current directory)."""
    name = os.path.basename(runbook_path) if runbook_path else "run"
    for suffix in (".toml", ".playbook"):
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    if run_id is not None:
        name += "-run%s" % run_id
    return name + "." + fmt


def format_for(output: str | None, fmt: str | None) -> str:
    """The format to write: --format if given, else from the output's suffix, else png."""
    if fmt:
        return fmt
    if output:
        return SUFFIXES.get(os.path.splitext(output)[1].lower(), "png")
    return "png"


def picture_plan(plan: Plan) -> Plan:
    """The plan as the picture shows it: templates completed with the given values and the
    defaults of non-secret variables (the rest stay templates)."""
    from playbook.runtime.preview import render_known

    values = {
        name: spec["default"]
        for name, spec in plan.variables.items()
        if "default" in spec and not spec.get("secret")
    }
    values.update(plan.values)
    return render_known(plan, values)


def render(dot_text: str, fmt: str) -> bytes:
    """The picture as bytes, made by the `dot` program; GraphError when it cannot be."""
    if fmt == "dot":
        return dot_text.encode("utf-8")
    import graphviz

    try:
        return graphviz.Source(dot_text, engine="dot").pipe(format=fmt, quiet=True)
    except graphviz.ExecutableNotFound:
        raise GraphError("the Graphviz program `dot` was not found on PATH; %s" % INSTALL_HINT, EXIT_INVALID) from None
    except graphviz.CalledProcessError as exc:
        detail = exc.stderr.decode("utf-8", "replace").strip() if isinstance(exc.stderr, bytes) else str(exc.stderr or exc)
        raise GraphError("`dot` could not draw the graph: %s" % (detail.splitlines()[-1] if detail else exc)) from None
    except OSError as exc:
        raise GraphError("cannot run `dot`: %s; %s" % (exc, INSTALL_HINT)) from None


def write(path: str, data: bytes) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise GraphError("cannot write %s: %s" % (path, exc.strerror or exc)) from None


def viewer(environ: Mapping[str, str] | None = None, platform: str | None = None) -> tuple[str | None, str | None]:
    """The command that opens a file on this machine's display, or None (with the reason)."""
    environ = os.environ if environ is None else environ
    platform = platform or sys.platform
    if platform == "darwin":
        return ("open", None) if shutil.which("open", path=environ.get("PATH")) else (None, "`open` was not found")
    if platform.startswith("win"):
        return ("start", None)
    if not (environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY")):
        return None, "no display (DISPLAY is not set)"
    if shutil.which("xdg-open", path=environ.get("PATH")) is None:
        return None, "no viewer (xdg-open was not found)"
    return "xdg-open", None


def open_file(path: str) -> tuple[bool, str | None]:
    """Open `path` in the desktop's viewer without waiting; returns (opened, reason)."""
    command, reason = viewer()
    if command is None:
        return False, reason
    try:
        if command == "start":
            os.startfile(path)  # type: ignore[attr-defined,unused-ignore]  # pragma: no cover - Windows only
        else:
            subprocess.Popen(
                [command, path],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
    except OSError as exc:
        return False, "%s failed: %s" % (command, exc)
    return True, None
