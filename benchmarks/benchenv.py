"""What the benchmark scripts share: the `playbook` under test and the environment it runs in.

Not a benchmark itself (`make bench` runs it too; it prints nothing and exits 0).
"""

import os
import sys
from pathlib import Path

PLAYBOOK = str(Path(sys.executable).parent / "playbook")


def bench_env(tmp):
    """Environment for the measured commands: a warm bytecode cache kept in the temp directory.

    Some environments set PYTHONDONTWRITEBYTECODE, so modules whose .pyc is missing or stale
    (files being edited) would be recompiled on every start. A cache under `tmp` (written on
    the first, untimed run) gives the steady state of a normal install and writes nothing else.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
    return env
