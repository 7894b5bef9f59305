"""The bundle's sh launcher: how it finds an interpreter on PATH.

Real bundles run with a PATH of fake interpreters in temporary directories: "real" ones (Python
scripts that log how they were run, then exec this interpreter), slow wrappers that must never
run (pyenv-style shims in a directory named shims and shell scripts elsewhere; each writes a
marker file before sleeping), broken python3.X names (a symlink to `false`, a dangling symlink)
and interpreters below the floor. Nothing here depends on pyenv or on timing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, run_playbook

from playbook import __version__

EXPECTED = "playbook %s (bundle of Deploy myapp to <ENVIRONMENT>)\n" % __version__
FALSE = "/bin/false" if os.path.exists("/bin/false") else "/usr/bin/false"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("launcher") / "deploy.pyz"
    proc = run_playbook(["compile", REPO_ROOT / "examples" / "deploy.playbook.toml", "-o", out, "--no-bytecode"], timeout=300)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return out


class Fakes:
    """Directories of fake interpreters, a log of the real ones run and a marker for wrappers."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log = root / "log"
        self.marker = root / "wrapper-ran"

    def _write(self, folder: str, name: str, text: str) -> Path:
        path = self.root / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o755)
        return path

    def real(self, folder: str, name: str, version: str = "") -> Path:
        """A real interpreter (not a shell script); with `version` one below the floor."""
        below = 'if sys.argv[1] == "-E":\n    sys.stdout.write(%r)\n    sys.exit(3)\n' % version if version else ""
        return self._write(folder, name, (
            "#!%s\nimport os, sys\n"
            "with open(%r, 'a') as log:\n"
            "    log.write('%%s %%s\\n' %% ('probe' if sys.argv[1] == '-E' else 'run', sys.argv[0]))\n"
            "%sos.execv(sys.executable, [sys.executable] + sys.argv[1:])\n"
        ) % (sys.executable, str(self.log), below))

    def wrapper(self, folder: str, name: str, shebang: str = "#!/bin/sh") -> Path:
        """A slow wrapper: marks that it ran, then takes seconds to fail like a pyenv shim."""
        return self._write(folder, name, "%s\n: > '%s'\n/bin/sleep 3\nexit 127\n" % (shebang, self.marker))

    def link(self, folder: str, name: str, target: str) -> Path:
        path = self.root / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)
        return path

    def runs(self) -> list:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def path(self, *folders: str) -> str:
        return os.pathsep.join(str(self.root / f) for f in folders)


@pytest.fixture
def fakes(tmp_path) -> Fakes:
    return Fakes(tmp_path)


def launch(bundle: Path, fakes: Fakes, path: str, **extra: str) -> subprocess.CompletedProcess:
    env = dict({"HOME": str(fakes.root), "PATH": path}, **extra)
    return subprocess.run([str(bundle), "--version"], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)


def test_wrappers_never_run_when_a_real_interpreter_qualifies(bundle, fakes):
    for name in ("python3", "python3.13", "python3.12", "python3.11", "python3.10", "python3.9", "python"):
        fakes.wrapper("pyenv/shims", name, "#!/usr/bin/env bash")
    fakes.wrapper("asdf/shims/", "python3")
    fakes.wrapper("wrappers", "python3", "#!/usr/bin/env -S /bin/sh -e")
    fakes.wrapper("wrappers", "python3.12", "#! /bin/bash")
    fakes.link("broken", "python3.13", FALSE)  # a real program that does not run as Python
    fakes.link("broken", "python3.11", str(fakes.root / "nowhere"))  # dangling
    chosen = fakes.real("real", "python3.10")  # and no python3 that is not a wrapper
    path = fakes.path("pyenv/shims", "asdf/shims/", "wrappers", "broken", "real")
    proc = launch(bundle, fakes, path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, EXPECTED, "")
    assert fakes.runs() == ["probe %s" % chosen, "run %s" % chosen]
    assert not fakes.marker.exists()


def test_python3_comes_first_when_it_meets_the_floor(bundle, fakes):
    fakes.real("a", "python3.13")
    chosen = fakes.real("b", "python3")
    proc = launch(bundle, fakes, fakes.path("a", "b"))
    assert (proc.returncode, proc.stdout) == (0, EXPECTED), proc.stderr
    assert fakes.runs() == ["probe %s" % chosen, "run %s" % chosen]


def test_python3_below_the_floor_is_passed_over(bundle, fakes):
    old = fakes.real("a", "python3", version="3.8")
    fakes.link("b", "a", str(fakes.root / "a"))  # the same directory twice on PATH: probed once
    chosen = fakes.real("c", "python3.12")
    fakes.real("c", "python3.9")
    proc = launch(bundle, fakes, fakes.path("a", "b/a", "c"))
    assert (proc.returncode, proc.stdout) == (0, EXPECTED), proc.stderr
    assert fakes.runs() == ["probe %s" % old, "probe %s" % chosen, "run %s" % chosen]


def test_wrappers_are_the_last_resort(bundle, fakes):
    shim = fakes._write("pyenv/shims", "python3", '#!/bin/sh\nexec %s "$@"\n' % sys.executable)
    fakes.link("broken", "python3.12", FALSE)
    proc = launch(bundle, fakes, fakes.path("pyenv/shims", "broken"))
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, EXPECTED, ""), shim


def test_playbook_python_comes_before_path(bundle, fakes):
    fakes.wrapper("pyenv/shims", "python3")
    chosen = fakes.real("elsewhere", "interpreter")
    proc = launch(bundle, fakes, fakes.path("pyenv/shims"), PLAYBOOK_PYTHON=str(chosen))
    assert (proc.returncode, proc.stdout) == (0, EXPECTED), proc.stderr
    assert fakes.runs() == ["probe %s" % chosen, "run %s" % chosen]
    assert not fakes.marker.exists()


def test_nothing_suitable_names_every_candidate_tried(bundle, fakes):
    old = fakes.real("a", "python3", version="3.8")
    broken = fakes.link("a", "python3.13", FALSE)
    failing = fakes._write("wrappers", "python", "#!/bin/sh\nexit 127\n")
    proc = launch(bundle, fakes, fakes.path("a", "missing", "wrappers"))
    assert (proc.returncode, proc.stdout) == (127, "")
    assert proc.stderr == (
        "playbook: this bundle needs Python 3.9 or newer; found: %s (3.8), %s (does not run), %s (does not run) "
        "(set PLAYBOOK_PYTHON to a suitable interpreter)\n" % (old, broken, failing)
    )
    proc = launch(bundle, fakes, fakes.path("missing"))
    assert proc.returncode == 127
    assert "this bundle needs Python 3.9 or newer; found: no python3 or python on PATH" in proc.stderr
