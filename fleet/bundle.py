"""The bundle a rollout copies to its hosts: a bundle is checked (its embedded SHA-256, and its
signature with --allowed-signers) and copied; a runbook is compiled first.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from typing import Any

from playbook.runtime.errors import BundleError, UsageError


def is_bundle(path: str) -> bool:
    """A bundle is a launcher followed by a zip; a runbook is TOML text."""
    return zipfile.is_zipfile(path)


def read_bundle(path: str) -> tuple[dict, Any]:
    """The manifest and the plan of a bundle (read from its zip, nothing executed)."""
    from playbook.runtime.plan import Plan, PlanError

    try:
        with zipfile.ZipFile(path) as archive:
            manifest = json.loads(archive.read("manifest.json").decode("utf-8"))
            plan = Plan.loads(archive.read("plan.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, PlanError) as exc:
        raise BundleError("%s is not a usable bundle: %s" % (path, exc)) from None
    return manifest, plan


def prepare_bundle(source: str, files_dir: str, allowed_signers: str | None) -> str:
    """Put the bundle to roll out into `files_dir` and return its path there: a bundle is checked
    (its embedded SHA-256, and its signature with `allowed_signers`) and copied; a runbook is
    compiled (nothing baked: the variables are given to each host)."""
    if not os.path.isfile(source):
        raise UsageError("%s: no such runbook or bundle" % source)
    os.makedirs(files_dir, exist_ok=True)
    if not is_bundle(source):
        if allowed_signers:
            raise UsageError("--allowed-signers checks a signed bundle; %s is a runbook (compile it with --sign-key first)" % source)
        return _compile_into(source, files_dir)
    verify = [os.path.abspath(source), "verify"]
    if allowed_signers:
        if not os.path.isfile(allowed_signers):
            raise UsageError("--allowed-signers %s: no such file" % allowed_signers)
        verify += ["--allowed-signers", allowed_signers]
    done = subprocess.run(verify, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        detail = (done.stderr.strip() or done.stdout.strip() or "exit %d" % done.returncode).splitlines()[-1]
        raise BundleError("%s did not verify, nothing was copied: %s" % (source, detail.replace("error: ", "", 1)))
    target = os.path.join(files_dir, os.path.basename(source))
    shutil.copyfile(source, target)
    os.chmod(target, 0o755)
    if os.path.isfile(source + ".sig"):
        shutil.copyfile(source + ".sig", target + ".sig")
    return target


def _compile_into(runbook: str, files_dir: str) -> str:
    from playbook.compiler.bundle import build, default_output
    from playbook.compiler.plan import compile_file
    from playbook.compiler.source import CompileError

    try:
        compiled = compile_file(runbook)
    except CompileError as exc:
        for diag in exc.diagnostics:
            sys.stderr.write(diag.format() + "\n")
        raise UsageError("%s does not compile; nothing was rolled out" % runbook) from None
    target = os.path.join(files_dir, os.path.basename(default_output(runbook)))
    build(compiled, target)  # a BundleError carries its exit code
    return target
