"""Shared fixtures for the test suite.

Compiler front-end helpers (tests/test_compiler_*.py): where the fixtures and the 1.x
compatibility corpus live, and how to run the `playbook` command as a real process.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
FIXTURES_DIR = TESTS_DIR / "fixtures"
# The checkout has ../shared beside it (CI lays shared/ beside the clone the same way).
COMPAT_DIR = REPO_ROOT.parent / "shared" / "compat-runbooks"


def playbook_command():
    """argv prefix that runs the installed `playbook` console script of this interpreter."""
    script = Path(sys.executable).parent / "playbook"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from playbook.compiler.main import main; main()"]


def run_playbook(args, cwd=None, env=None, input=None, timeout=120):
    """Run `playbook ARGS` in a real process; returns the CompletedProcess (text mode)."""
    full_env = dict(os.environ)
    full_env.setdefault("NO_COLOR", "1")
    if env:
        full_env.update(env)
    return subprocess.run(
        playbook_command() + [str(a) for a in args],
        cwd=str(cwd) if cwd else None,
        env=full_env,
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def compat_dir():
    """The Playbook 1.x compatibility corpus (../shared/compat-runbooks); skipped when absent."""
    if not COMPAT_DIR.is_dir():
        pytest.skip("compat corpus not found at %s (the checkout needs ../shared beside it)" % COMPAT_DIR)
    return COMPAT_DIR


@pytest.fixture
def playbook_cli():
    """`playbook_cli(args, cwd=None, env=None, input=None)` runs the real `playbook` command."""
    return run_playbook


# Property tests explore at random while developing; in CI (CI=true) they are derandomized, so a
# run on the same code always checks the same examples.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("ci-derandomized", derandomize=True, deadline=None, database=None)
if os.environ.get("CI"):
    _hypothesis_settings.load_profile("ci-derandomized")
