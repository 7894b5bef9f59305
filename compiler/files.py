"""`[runbook] files`: the files next to the runbook that travel with it.

Each entry is relative to the runbook's directory: a file, a directory (`scripts/`, with
everything below it) or a glob pattern (`sql/*.sql`, `**` for any depth). No entry may leave the
directory: absolute paths, `..` and symbolic links whose target is outside are refused, as are
entries that match nothing, symbolic links to directories and anything that is not a regular
file. Bundles carry what `collect` finds (compiler/bundle.py); at run time `{{ runbook_dir }}`
points at them.
"""

from __future__ import annotations

import glob
import hashlib
import os
import stat
from dataclasses import dataclass

TYPE_CHECKING = False  # typing is not imported at run time (start-up)
if TYPE_CHECKING:
    from typing import Any, Iterable

    from .source import Source


@dataclass(frozen=True)
class RunbookFile:
    """One file that travels with the runbook: its path relative to the runbook's directory
    (with `/`), where it is on disk, and whether it is executable."""

    path: str
    disk: str
    executable: bool

    def read(self) -> bytes:
        with open(self.disk, "rb") as handle:
            return handle.read()

    def manifest_entry(self, data: bytes) -> dict[str, Any]:
        return {"path": self.path, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "executable": self.executable}


def runbook_dir(path: str) -> str:
    """The directory of a runbook file, absolute."""
    return os.path.dirname(os.path.abspath(path))


def collect(src: Source, entries: Iterable[Any] | None) -> list[RunbookFile]:
    """The files the entries of `[runbook] files` name, sorted by path; each problem is an
    error at the key's line on `src`."""
    if not entries:
        return []
    root = os.path.realpath(runbook_dir(src.path))
    found: dict[str, RunbookFile] = {}
    for entry in entries:
        problem = _check_entry(entry)
        if problem:
            src.error("[runbook] files: %s" % problem, "runbook", "files", hint="list paths inside the runbook's directory, e.g. \"scripts/\" or \"sql/*.sql\"")
            continue
        matches = _expand(root, entry)
        if not matches:
            src.error("[runbook] files: %r matches no file in the runbook's directory" % entry, "runbook", "files")
            continue
        for disk in matches:
            item, problem = _file(root, disk)
            if problem:
                src.error("[runbook] files: %r: %s" % (entry, problem), "runbook", "files")
            elif item is not None:
                found[item.path] = item
    return [found[path] for path in sorted(found)]


def _check_entry(entry: object) -> str | None:
    if not isinstance(entry, str) or not entry.strip():
        return "each entry must be a non-empty path, not %r" % (entry,)
    if "\x00" in entry or "\\" in entry:
        return "%r: write paths with / and without NUL characters" % entry
    if entry.startswith(("/", "~")):
        return "%r is not relative to the runbook's directory" % entry
    if ".." in entry.split("/"):
        return "%r leaves the runbook's directory (..)" % entry
    return None


def _expand(root: str, entry: str) -> list[str]:
    """Disk paths below `root` that `entry` names (directories expanded to their files)."""
    path = os.path.join(root, entry.rstrip("/"))
    if glob.has_magic(entry):
        names = sorted(glob.glob(os.path.join(glob.escape(root), entry.rstrip("/")), recursive=True))
    elif os.path.lexists(path):
        names = [path]
    else:
        names = []
    result = []
    for name in names:
        if os.path.isdir(name) and not os.path.islink(name):
            for top, dirs, files in os.walk(name):
                dirs.sort()
                for leaf in sorted(files) + [d for d in dirs if os.path.islink(os.path.join(top, d))]:
                    result.append(os.path.join(top, leaf))
        elif not entry.endswith("/"):
            result.append(name)
    return result


def _file(root: str, disk: str) -> tuple[RunbookFile, None] | tuple[None, str]:
    """(RunbookFile, None), or (None, the problem) for a path found below `root`."""
    rel = os.path.relpath(disk, root).replace(os.sep, "/")
    target = os.path.realpath(disk)
    if target != root and not target.startswith(root + os.sep):
        return None, "%s is a symbolic link to %s, outside the runbook's directory" % (rel, target)
    try:
        info = os.stat(target)
    except OSError as exc:
        return None, "%s cannot be read: %s" % (rel, exc.strerror or exc)
    if stat.S_ISDIR(info.st_mode):
        return None, "%s is a symbolic link to a directory; list the directory itself" % rel
    if not stat.S_ISREG(info.st_mode):
        return None, "%s is not a regular file" % rel
    if not os.access(target, os.R_OK):
        return None, "%s cannot be read" % rel
    return RunbookFile(rel, target, bool(info.st_mode & stat.S_IXUSR)), None
