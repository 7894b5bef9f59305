"""Bundles: real files built by `playbook compile`, run by every CPython 3.9-3.13 on the machine.

Each run happens in a bare environment (HOME a fresh directory, PATH=/usr/bin:/bin, nothing
else, the interpreter chosen with PLAYBOOK_PYTHON), so Playbook and its dependencies can only
come from the bundle. Bundles are built once per module (five bytecode trees take a few seconds).
"""

import glob
import hashlib
import io
import json
import marshal
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO_ROOT, run_playbook

from playbook import __version__
from playbook.compiler import bundle as bundle_mod

EXAMPLE = REPO_ROOT / "examples" / "deploy.playbook.toml"
PYENV = Path(os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")) / "versions"
EPOCH = "1700000000"  # 2023-11-14T22:13:20Z


def _pyenv(minor):
    found = sorted(glob.glob(str(PYENV / ("3.%d.*" % minor) / "bin" / "python3")))
    return found[-1] if found else None


def _interpreters():
    """One interpreter per CPython 3.9-3.13 present (pyenv), else at least this one."""
    found = [p for p in (_pyenv(m) for m in range(9, 14)) if p]
    return found or [sys.executable]


INTERPRETERS = _interpreters()
OLD_PYTHON = _pyenv(8) or _pyenv(7)


def _label(path):
    out = subprocess.run([path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True)
    return "py" + out.stdout.strip()


def bare_env(home, python=None, **extra):
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    if python:
        env["PLAYBOOK_PYTHON"] = python
    env.update(extra)
    return env


def run(cmd, env, cwd=None, timeout=120):
    return subprocess.run([str(c) for c in cmd], env=env, cwd=str(cwd) if cwd else None, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout)


def compile_bundle(runbook, output, *args, env=None):
    proc = run_playbook(["compile", runbook, "-o", output] + list(args), env=dict({"SOURCE_DATE_EPOCH": EPOCH}, **(env or {})), timeout=300)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return Path(output)


OPS_RUNBOOK = """
[runbook]
title = "Bundle probe"
description = "A plugin installed only in the build environment, and a step that fails until FLAG exists."
version = "1.0.0"
author = "tests"
created_at = 2026-01-01T00:00:00Z

[variables]
FLAG = { required = true, description = "file that must exist for `check` to pass" }

[greet]
type = "Function"
plugin = "echo"
function = "show"
function_params = { i = "42", s = "hello from the bundle" }
plugin_config = { region = "eu" }
depends_on = []

[check]
type = "Command"
command_name = "test -e {{ FLAG }} && echo flag found"

[finish]
type = "Command"
command_name = "echo finished"
"""


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("bundles")


@pytest.fixture(scope="module")
def deploy(work):
    """The deployment example, bytecode for every interpreter found (the default)."""
    (work / "a").mkdir()
    return compile_bundle(EXAMPLE, work / "a" / "deploy.pyz")


@pytest.fixture(scope="module")
def ops(work):
    """The probe-plugin runbook; bytecode only for the building interpreter, so the others run
    from the sources."""
    (work / "ops").mkdir()
    runbook = work / "ops" / "ops.playbook.toml"
    runbook.write_text(OPS_RUNBOOK)
    return compile_bundle(runbook, work / "ops" / "ops.pyz", "--python", "%d.%d" % sys.version_info[:2])


@pytest.fixture
def home(tmp_path):
    path = tmp_path / "home"
    path.mkdir()
    return path


def _snapshot(root):
    result = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            result[os.path.relpath(path, root)] = (st.st_size, st.st_mtime_ns)
    return result


# -- building ------------------------------------------------------------------------------------
def test_compile_writes_an_executable_named_after_the_runbook(tmp_path):
    proc = run_playbook(["compile", EXAMPLE, "--var", "ENVIRONMENT=staging", "--no-bytecode"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "deploy.pyz"
    assert out.is_file() and os.access(out, os.X_OK)
    assert "wrote deploy.pyz" in proc.stdout and "Deploy myapp to staging" in proc.stdout
    assert "bytecode for: none" in proc.stdout
    runs_on = [line for line in proc.stdout.splitlines() if "runs on:" in line]
    assert runs_on == ["  runs on: CPython 3.9 or newer (the floor of its distributions)"], proc.stdout


def test_compile_reports_runbook_errors_like_validate(tmp_path):
    bad = tmp_path / "bad.playbook.toml"
    bad.write_text('[runbook]\ntitle = "x"\n\n[a]\ntype = "Command"\ncommand_nme = "true"\n')
    proc = run_playbook(["compile", bad, "-o", tmp_path / "bad.pyz"])
    validate = run_playbook(["validate", bad])
    assert proc.returncode == 2
    assert proc.stderr == validate.stderr
    assert "bad.playbook.toml:6:1: error" in proc.stderr
    assert not (tmp_path / "bad.pyz").exists()


def test_compile_json_and_unknown_python(tmp_path):
    proc = run_playbook(["compile", EXAMPLE, "-o", tmp_path / "d.pyz", "--no-bytecode", "--json"])
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["manifest"]["python_floor"] == "3.9"
    assert report["manifest"]["bytecode"] == []
    assert report["size"] == os.path.getsize(tmp_path / "d.pyz")
    proc = run_playbook(["compile", EXAMPLE, "-o", tmp_path / "e.pyz", "--python", "3.99"])
    assert proc.returncode == 2 and "no CPython 3.99 found" in proc.stderr
    assert not (tmp_path / "e.pyz").exists()


def test_secrets_are_never_baked(tmp_path):
    runbook = tmp_path / "s.playbook.toml"
    runbook.write_text(
        '[runbook]\ntitle = "s"\n\n[variables]\nTOKEN = { secret = true }\n\n'
        '[a]\ntype = "Command"\ncommand_name = "echo {{ TOKEN }}"\ndepends_on = []\n'
    )
    out = compile_bundle(runbook, tmp_path / "s.pyz", "--no-bytecode", "--var", "TOKEN=hunter2-secret")
    assert b"hunter2-secret" not in out.read_bytes()
    with zipfile.ZipFile(out) as archive:
        assert b"hunter2-secret" not in archive.read("plan.json")


def test_contents_manifest_and_floor(deploy):
    with zipfile.ZipFile(deploy) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("manifest.json"))
    assert "playbook/runtime/engine.py" in names and "playbook/domain/plugins.py" in names
    assert "playbook/templates/report.html.j2" in names and "playbook/templates/create.playbook.toml" not in names
    assert not [n for n in names if "/compiler/" in n or n.startswith("playbook/compiler")]
    assert not [n for n in names if n.endswith((".so", ".pyd"))]
    assert {"jinja2/__init__.py", "markupsafe/_native.py", "rich/console.py", "tomli/_parser.py", "pygments/__init__.py"} <= names
    dists = {d["name"].lower(): d for d in manifest["distributions"]}
    assert {"jinja2", "markupsafe", "rich", "markdown-it-py", "mdurl", "pygments", "tomli"} <= set(dists)
    assert "click" not in dists and "graphviz" not in dists
    assert manifest["python_floor"] == "3.9"
    assert manifest["playbook_version"] == __version__
    assert manifest["runbook"]["source"] == "deploy.playbook.toml"
    assert manifest["built_at"] == "2023-11-14T22:13:20Z"
    trees = {b["tree"] for b in manifest["bytecode"]}
    assert {_label(p).replace(".", "") for p in INTERPRETERS} <= trees
    for tree in trees:
        assert "%s/playbook/runtime/engine.pyc" % tree in names
        assert "%s/pygments/__init__.pyc" % tree not in names  # source only


def test_size_with_five_bytecode_trees(deploy):
    with zipfile.ZipFile(deploy) as archive:
        trees = json.loads(archive.read("manifest.json"))["bytecode"]
    if len(trees) < 5:
        pytest.skip("only %d interpreters on this machine" % len(trees))
    assert os.path.getsize(deploy) < 6_000_000


def test_two_builds_are_byte_identical(deploy, work):
    (work / "b").mkdir()
    again = compile_bundle(EXAMPLE, work / "b" / "deploy.pyz")
    assert again.read_bytes() == deploy.read_bytes()


def test_no_build_machine_paths_inside(deploy, work):
    data = deploy.read_bytes()
    needles = {str(REPO_ROOT), sys.prefix, str(work), os.path.realpath(sys.prefix), str(PYENV)}
    with zipfile.ZipFile(deploy) as archive:
        for info in archive.infolist():
            assert (info.date_time, info.external_attr >> 16) == ((2023, 11, 14, 22, 13, 20), 0o100644), info.filename
            content = archive.read(info)
            for needle in needles:
                assert needle.encode() not in content, (needle, info.filename)
        tree = "py%d%d" % sys.version_info[:2]
        pyc = archive.read("%s/playbook/runtime/engine.pyc" % tree)
        rich_source, rich_pyc = archive.read("rich/console.py"), archive.read("%s/rich/console.pyc" % tree)
        own_pyc = archive.read("%s/playbook/runtime/bundle.pyc" % tree)
        own_source = archive.read("playbook/runtime/bundle.py")
    assert pyc[4:8] == (1).to_bytes(4, "little")  # hash-based, unchecked
    assert marshal.loads(pyc[16:]).co_filename == "playbook/runtime/engine.py"
    # Bytecode without docstrings (the sources keep them, for tracebacks); Playbook's own also
    # without its functions' annotations, which nothing reads at run time
    assert b"A high level console interface" in rich_source and b"A high level console interface" not in rich_pyc
    assert b"The bundle's side of a bundle" in own_source and b"The bundle's side of a bundle" not in own_pyc
    assert b"def rehearsal_text(rehearsal: Mapping[str, Any] | None) -> str:" in own_source
    assert b"Mapping[str, Any] | None" not in own_pyc  # that annotation, a string under the future import
    for needle in needles:
        assert needle.encode() not in data[:65536]


# -- running on every interpreter ----------------------------------------------------------------
@pytest.mark.parametrize("python", INTERPRETERS, ids=_label)
def test_version_inspect_and_run(deploy, home, tmp_path, python):
    env = bare_env(home, python)
    proc = run([deploy, "--version"], env)
    assert (proc.returncode, proc.stdout) == (0, "playbook %s (bundle of Deploy myapp to <ENVIRONMENT>)\n" % __version__), proc.stderr
    proc = run([deploy, "inspect", "--json"], env)
    info = json.loads(proc.stdout)
    version = _label(python)[2:]
    assert info["bundle"]["running_python"].startswith(version + ".")
    assert info["bundle"]["running_bytecode"] == "py" + version.replace(".", "")
    db = tmp_path / "state" / "run.db"
    proc = run([deploy, "run", "--auto-approve", "--var", "ENVIRONMENT=staging", "--state-path", db], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "deploy_application succeeded" in proc.stdout and "run 1 succeeded" in proc.stdout
    assert "deploying myapp-1.4.2.tar.gz to staging" in proc.stdout  # build_app's output
    proc = run([deploy, "plan", "--var", "ENVIRONMENT=staging"], env)
    assert proc.returncode == 0 and "Plan: Deploy myapp to staging" in proc.stdout
    html = tmp_path / "report.html"  # the report template is read from the bundle
    proc = run([deploy, "report", "--html", html, "--state-path", db], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "deploy_application" in html.read_text()


@pytest.mark.parametrize("python", INTERPRETERS, ids=_label)
def test_failure_path_runs(deploy, home, tmp_path, python):
    env = bare_env(home, python)
    db = tmp_path / "run.db"
    proc = run([deploy, "run", "--auto-approve", "--var", "ENVIRONMENT=dev", "--var", "BREAK_HEALTH_CHECK=true", "--state-path", db], env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "health_check failed" in proc.stdout
    assert "rollback succeeded" in proc.stdout and "notify_failure succeeded" in proc.stdout
    assert "notify_success skipped" in proc.stdout


@pytest.mark.parametrize("python", INTERPRETERS, ids=_label)
def test_plugin_from_the_build_environment_and_resume(ops, home, tmp_path, python):
    env = bare_env(home, python)
    flag = tmp_path / "flag"
    db = tmp_path / "run.db"
    proc = run([ops, "run", "--var", "FLAG=%s" % flag, "--state-path", db], env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert '"i": 42' in proc.stdout and '"region": "eu"' in proc.stdout  # typed param, plugin config
    assert "check failed" in proc.stdout
    flag.write_text("")
    proc = run([ops, "resume", "--state-path", db], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "finish succeeded" in proc.stdout
    shown = json.loads(run([ops, "show", "--run", "1", "--json", "--state-path", db], env).stdout)
    attempts = [(a["node_id"], a["status"]) for a in shown["attempts"]]
    assert attempts.count(("greet", "succeeded")) == 1  # never re-run
    assert ("check", "failed") in attempts and ("check", "succeeded") in attempts
    assert shown["run"]["status"] == "succeeded"


def test_plugins_listed_in_bundle(ops, home):
    proc = run([ops, "info", "--plugins"], bare_env(home, INTERPRETERS[0]))
    assert proc.returncode == 0, proc.stderr
    assert "echo" in proc.stdout and "python" in proc.stdout
    proc = run([ops, "inspect"], bare_env(home, INTERPRETERS[0]))
    assert "plugin:       echo = playbook_probe:EchoPlugin (playbook-probe 0.1.0)" in proc.stdout


# -- how it is started ---------------------------------------------------------------------------
def test_runs_as_script_via_sh_and_via_python(deploy, home):
    env = bare_env(home)  # no PLAYBOOK_PYTHON: the launcher searches PATH
    expected = "playbook %s (bundle of Deploy myapp to <ENVIRONMENT>)\n" % __version__
    python = shutil.which("python3", path="/usr/bin:/bin") or INTERPRETERS[-1]
    for cmd in ([deploy], ["sh", deploy], [python, deploy]):
        proc = run(cmd + ["--version"], env, cwd=deploy.parent)
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, expected, ""), cmd
    proc = run(["./deploy.pyz", "--version"], env, cwd=deploy.parent)
    assert proc.stdout == expected


def test_help_lists_every_command(deploy, home):
    proc = run([deploy, "--help"], bare_env(home, INTERPRETERS[0]))
    assert proc.returncode == 0
    for name in ("run", "resume", "show", "info", "plan", "set-status", "verify", "inspect", "extract", "--version"):
        assert name in proc.stdout, name
    for name in ("verify", "inspect", "extract", "run"):
        proc = run([deploy, name, "--help"], bare_env(home, INTERPRETERS[0]))
        assert proc.returncode == 0 and "usage: ./deploy.pyz %s" % name in proc.stdout


def test_interpreter_below_the_floor_gets_a_clear_message(deploy, home):
    if not OLD_PYTHON:
        pytest.skip("no CPython 3.8 or 3.7 under pyenv")
    proc = run([deploy, "--version"], bare_env(home, OLD_PYTHON))
    assert proc.returncode == 127
    assert proc.stderr.startswith("playbook: PLAYBOOK_PYTHON=%s is Python 3." % OLD_PYTHON)
    assert "this bundle needs Python 3.9 or newer" in proc.stderr and "Traceback" not in proc.stderr
    proc = run([OLD_PYTHON, deploy, "--version"], bare_env(home))  # the archive's own check
    assert proc.returncode == 127
    assert "this bundle needs Python 3.9 or newer; %s is Python 3." % OLD_PYTHON in proc.stderr


def test_launcher_skips_broken_candidates_and_names_what_it_found(deploy, tmp_path, home):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python3.13").write_text("#!/bin/sh\necho 'pyenv: python3.13: command not found' >&2\nexit 127\n")
    (fake / "python3.13").chmod(0o755)
    env = {"HOME": str(home), "PATH": str(fake)}
    if OLD_PYTHON:
        (fake / "python3").symlink_to(OLD_PYTHON)
    proc = run(["/bin/sh", deploy, "--version"], env)
    assert proc.returncode == 127
    assert "this bundle needs Python 3.9 or newer; found: " in proc.stderr
    assert "%s (does not run)" % (fake / "python3.13") in proc.stderr
    if OLD_PYTHON:
        assert "found: %s (3." % (fake / "python3") in proc.stderr
        (fake / "python3").unlink()
    (fake / "python3").symlink_to(INTERPRETERS[0])
    proc = run(["/bin/sh", deploy, "--version"], env)
    assert proc.returncode == 0, proc.stderr  # the broken python3.13 was skipped


# -- integrity and authenticity ------------------------------------------------------------------
def test_a_flipped_byte_is_refused(deploy, tmp_path, home):
    data = deploy.read_bytes()
    boot = data.index(b"\n#=playbook-boot=\n") + 200
    with zipfile.ZipFile(deploy) as archive:
        directory = archive.start_dir  # where the zip's central directory starts
    offsets = [20, 70, boot, boot + 500, len(data) // 3, len(data) // 2, directory + 100, len(data) - 40, len(data) - 1]
    python = INTERPRETERS[0]
    for offset in offsets:
        broken = bytearray(data)
        broken[offset] ^= 0x04
        bad = tmp_path / "bad.pyz"
        bad.write_bytes(bytes(broken))
        bad.chmod(0o755)
        for cmd in ([bad, "--version"], [python, bad, "--version"]):
            proc = run(cmd, bare_env(home, python))
            _assert_refused_as_damaged(proc, (offset, cmd))


def _assert_refused_as_damaged(proc, what):
    """Exit 4 with our message; or, for `python3 FILE` when Python itself cannot read the zip
    archive, Python's SyntaxError showing the launcher's line that says so (exit 1)."""
    if proc.returncode == 1:
        assert "is damaged (Python cannot read the zip archive in it); copy the original bundle again" in proc.stderr, (what, proc.stderr)
        assert "SyntaxError" in proc.stderr, (what, proc.stderr)
    else:
        assert proc.returncode == 4, (what, proc.stderr)
        assert "is damaged" in proc.stderr and "copy the original bundle again" in proc.stderr, (what, proc.stderr)
    assert "Traceback" not in proc.stderr, (what, proc.stderr)


def _main_py(data):
    """(offset, bytes) of the archive's __main__.py inside the bundle's bytes."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo("__main__.py")
        assert info.compress_type == zipfile.ZIP_STORED  # what Python reads first is readable as it is
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    return start, data[start : start + info.file_size]


@pytest.mark.parametrize("python", [INTERPRETERS[0], INTERPRETERS[-1]] if len(INTERPRETERS) > 1 else INTERPRETERS, ids=_label)
def test_python3_on_a_bundle_with_a_damaged_main_gives_the_damage_message(deploy, tmp_path, home, python):
    """`python3 FILE` runs __main__.py before any check: damage to its code or its error handler
    still ends in exit 4 and the message (each eleventh byte, a different bit each time). The
    README names the bytes around them where Python's own error shows instead; among them the
    last hex digit, which turned into a quote would end the string early."""
    data = deploy.read_bytes()
    start, main = _main_py(data)
    hex_parts = [(m.start(1), m.end(1)) for m in re.finditer(rb'r"""([0-9a-f]+)"""', main)]
    assert len(hex_parts) == 2  # the code and the handler for damage
    bad = tmp_path / "bad.pyz"
    tried = 0
    for first, last in hex_parts:
        for offset in range(first, last - 1, 11):
            broken = bytearray(data)
            broken[start + offset] ^= 1 << (offset % 8)
            bad.write_bytes(bytes(broken))
            proc = run([python, bad, "--version"], bare_env(home))
            tried += 1
            assert proc.returncode == 4, (offset, proc.stderr)
            assert "is damaged" in proc.stderr and "copy the original bundle again" in proc.stderr, (offset, proc.stderr)
            assert "Traceback" not in proc.stderr, (offset, proc.stderr)
    assert tried >= 20


@pytest.mark.parametrize("python", INTERPRETERS, ids=_label)
def test_python3_on_a_damaged_or_incomplete_zip_names_the_damage(deploy, tmp_path, home, python):
    """When the zip's end record is damaged, or the copy is incomplete, Python finds no
    archive and reads the file as a script: its first error is the launcher's line that says
    what happened. `./FILE` checks before Python reads anything: exit 4."""
    data = deploy.read_bytes()
    bad = tmp_path / "deploy.pyz"
    end_record = len(data) - 22
    for broken in (data[:end_record] + b"PK\x05\x07" + data[end_record + 4 :], data[: len(data) // 2]):
        bad.write_bytes(broken)
        bad.chmod(0o755)
        proc = run([python, bad, "--version"], bare_env(home))
        assert proc.returncode == 1
        assert "deploy.pyz is damaged (Python cannot read the zip archive in it); copy the original bundle again" in proc.stderr
        assert "Traceback" not in proc.stderr
        proc = run([bad, "--version"], bare_env(home, python))
        assert proc.returncode == 4 and "is damaged" in proc.stderr and "Traceback" not in proc.stderr


def test_one_identity_shown_the_same_way_by_compile_verify_and_inspect(tmp_path, home):
    """The SHA-256 of the file (what `sha256sum` prints), as `bundle sha256: ...`; the digest
    in line 2 (of the file with that field as zeros) is never shown as a second hash."""
    out = tmp_path / "d.pyz"
    compiled = run_playbook(["compile", EXAMPLE, "-o", out, "--no-bytecode"], env={"SOURCE_DATE_EPOCH": EPOCH})
    assert compiled.returncode == 0, compiled.stderr
    data = out.read_bytes()
    identity = hashlib.sha256(data).hexdigest()
    embedded = data[data.index(bundle_mod.DIGEST_MARK) + len(bundle_mod.DIGEST_MARK) :][:64].decode()
    line = "bundle sha256: %s" % identity
    env = bare_env(home, INTERPRETERS[0])
    verify = run([out, "verify"], env)
    inspect = run([out, "inspect"], env)
    assert (verify.returncode, inspect.returncode) == (0, 0), verify.stderr + inspect.stderr
    for text in (compiled.stdout, verify.stdout, inspect.stdout):
        assert line in [l.strip() for l in text.splitlines()], text
        assert embedded not in text
    assert re.findall(r"\b[0-9a-f]{64}\b", compiled.stdout + verify.stdout) == [identity, identity]
    as_json = json.loads(run([out, "inspect", "--json"], env).stdout)["bundle"]
    assert as_json["sha256"] == identity and as_json["problems"] == [] and embedded not in json.dumps(as_json)
    report = json.loads(run_playbook(["compile", EXAMPLE, "-o", out, "--no-bytecode", "--json"], env={"SOURCE_DATE_EPOCH": EPOCH}).stdout)
    assert report["sha256"] == identity and embedded not in json.dumps(report)
    header = run([out, "run", "--var", "ENVIRONMENT=dev", "--auto-approve", "--state-path", tmp_path / "h.db"], env)
    assert header.returncode == 0, header.stdout + header.stderr
    assert line in header.stdout  # the run header shows the same identity


def _rebuilt(bundle, change):
    """The bundle with its archive entries changed by change(entries) and its embedded digest
    recomputed: it starts, as any bundle someone rebuilt on purpose would."""
    data = bundle.read_bytes()
    with zipfile.ZipFile(bundle) as archive:
        first = min(info.header_offset for info in archive.infolist())
        entries = {info.filename: archive.read(info) for info in archive.infolist()}
    change(entries)
    prefix = bytearray(data[:first])
    start = prefix.index(bundle_mod.DIGEST_MARK) + len(bundle_mod.DIGEST_MARK)
    prefix[start : start + 64] = b"0" * 64
    rebuilt = bundle.parent / ("rebuilt-" + bundle.name)
    rebuilt.write_bytes(bundle_mod.write_archive(bytes(prefix), entries, int(EPOCH)))
    rebuilt.chmod(0o755)
    return rebuilt


def _change_a_command(entries):
    from playbook.runtime.plan import dumps_canonical

    plan = json.loads(entries["plan.json"])
    node = next(n for n in plan["nodes"] if n.get("command"))
    node["command"] = "echo changed"
    entries["plan.json"] = dumps_canonical(plan)


def _hide_a_host_variable(entries):
    manifest = json.loads(entries["manifest.json"])
    manifest["plan"]["host_variables"] = manifest["plan"]["host_variables"][1:]
    entries["manifest.json"] = json.dumps(manifest).encode()


def test_inspect_and_verify_check_the_manifest_against_the_plan_inside(deploy, tmp_path, home):
    """`inspect` shows the plan's hash recomputed from plan.json, and a manifest that does not
    describe the plan inside is an error (exit 4), for inspect and verify alike."""
    work = tmp_path / "w"
    work.mkdir()
    shutil.copy(str(deploy), str(work / "deploy.pyz"))
    env = bare_env(home, INTERPRETERS[0])
    changed = _rebuilt(work / "deploy.pyz", _change_a_command)
    with zipfile.ZipFile(changed) as archive:
        actual = hashlib.sha256(archive.read("plan.json")).hexdigest()
        said = json.loads(archive.read("manifest.json"))["plan"]["sha256"]
    assert actual != said
    assert run([changed, "--version"], env).returncode == 0  # the embedded digest is right
    proc = run([changed, "inspect"], env)
    assert proc.returncode == 4
    assert "  plan:         9 nodes, sha256 %s\n" % actual in proc.stdout and said not in proc.stdout
    assert "integrity:    NOT OK (1 error; see below)" in proc.stdout
    assert proc.stderr == "error: the manifest says plan sha256 %s, but plan.json inside gives %s\n" % (said, actual)
    proc = run([changed, "inspect", "--json"], env)
    assert proc.returncode == 4 and json.loads(proc.stdout)["bundle"]["problems"] == [proc.stderr[len("error: ") :].strip()]
    proc = run([changed, "verify"], env)
    assert proc.returncode == 4 and "NOT VERIFIED" in proc.stderr and "plan sha256" in proc.stderr
    assert "integrity: ok" not in proc.stdout

    hidden = _rebuilt(work / "deploy.pyz", _hide_a_host_variable)
    proc = run([hidden, "inspect"], env)
    assert proc.returncode == 4
    assert "taken on this host:  APP_NAME, BREAK_HEALTH_CHECK, DEPLOY_TIMEOUT" in proc.stdout
    assert proc.stderr.startswith("error: the manifest says variables taken on the host BREAK_HEALTH_CHECK, DEPLOY_TIMEOUT")
    assert proc.stderr.endswith("but plan.json inside gives APP_NAME, BREAK_HEALTH_CHECK, DEPLOY_TIMEOUT, ENVIRONMENT, SKIP_TESTS, VERSION\n")


def test_inspect_and_verify_check_the_embedded_sha256_again(deploy, tmp_path, capsys):
    """Not only at start: a file changed since (here opened without the boot code) is refused."""
    from playbook.runtime import bundle as runtime_bundle

    data = bytearray(deploy.read_bytes())
    data[200] ^= 0x01  # in the launcher's comments: only the digest notices
    bad = tmp_path / "bad.pyz"
    bad.write_bytes(bytes(data))
    context = runtime_bundle.open_bundle(str(bad))
    assert runtime_bundle.cmd_inspect([], context) == 4
    out, err = capsys.readouterr()
    assert "integrity:    NOT OK" in out and "bundle sha256: %s" % hashlib.sha256(data).hexdigest() in out
    assert err.startswith("error: the file does not match its embedded SHA-256 (line 2 says ")
    assert runtime_bundle.cmd_verify([], context) == 4
    out, err = capsys.readouterr()
    assert "integrity: ok" not in out and "does not match its embedded SHA-256" in err


def _keys(tmp_path, name):
    key = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    return key, (tmp_path / (name + ".pub")).read_text().strip()


def _redigest(data):
    """What an attacker can do: change the file and recompute the embedded SHA-256."""
    import hashlib

    data = bytearray(data)
    start = data.index(bundle_mod.DIGEST_MARK) + len(bundle_mod.DIGEST_MARK)
    data[start : start + 64] = b"0" * 64
    data[start : start + 64] = hashlib.sha256(data).hexdigest().encode()
    return bytes(data)


def test_signature_verifies_and_a_tampered_file_does_not(tmp_path, home):
    if not shutil.which("ssh-keygen"):
        pytest.skip("ssh-keygen is not installed (CI installs openssh-client)")
    key, pub = _keys(tmp_path, "release")
    _, other_pub = _keys(tmp_path, "mallory")
    signers = tmp_path / "allowed_signers"
    signers.write_text('release@example.com namespaces="playbook-bundle" %s\n' % pub)
    out = compile_bundle(EXAMPLE, tmp_path / "signed.pyz", "--no-bytecode", "--sign-key", key)
    assert (tmp_path / "signed.pyz.sig").is_file()
    env = bare_env(home, INTERPRETERS[0])

    proc = run([out, "verify"], env)
    assert proc.returncode == 0 and "integrity: ok" in proc.stdout and "not checked" in proc.stdout
    proc = run([out, "verify", "--allowed-signers", signers], env)
    assert proc.returncode == 0, proc.stderr
    assert "VERIFIED" in proc.stdout and "signed by release@example.com" in proc.stdout
    proc = run([out, "verify", "--allowed-signers", signers, "--identity", "release@example.com"], env)
    assert proc.returncode == 0, proc.stderr
    proc = run([out, "verify", "--allowed-signers", signers, "--identity", "someone@example.com"], env)
    assert proc.returncode == 4 and "NOT VERIFIED" in proc.stderr

    # Changed after signing, with the embedded digest recomputed: starts, but is not verified.
    data = out.read_bytes()
    tampered = tmp_path / "tampered.pyz"
    tampered.write_bytes(_redigest(data.replace(b"Playbook bundle: ", b"Playbook bundlE: ", 1)))
    tampered.chmod(0o755)
    shutil.copy(str(out) + ".sig", str(tampered) + ".sig")
    assert run([tampered, "--version"], env).returncode == 0
    proc = run([tampered, "verify", "--allowed-signers", signers], env)
    assert proc.returncode == 4 and "NOT VERIFIED" in proc.stderr
    # Changed without recomputing: refused before anything runs.
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 1
    tampered.write_bytes(bytes(flipped))
    proc = run([tampered, "verify", "--allowed-signers", signers], env)
    assert proc.returncode == 4 and "is damaged" in proc.stderr
    # Signed by a key that is not allowed.
    signers.write_text('release@example.com namespaces="playbook-bundle" %s\n' % other_pub)
    proc = run([out, "verify", "--allowed-signers", signers], env)
    assert proc.returncode == 4 and "NOT VERIFIED" in proc.stderr
    # No signature next to it.
    os.unlink(str(out) + ".sig")
    proc = run([out, "verify", "--allowed-signers", signers], env)
    assert proc.returncode == 4 and "no signature" in proc.stderr


# -- what it may and may not touch ---------------------------------------------------------------
def test_the_compiler_is_not_in_the_bundle(deploy, home):
    python = INTERPRETERS[0]
    tree = _label(python).replace(".", "")
    code = (
        "import sys; sys.path[:0] = [%r, %r]; import playbook.runtime.cli\n"
        "try:\n    import playbook.compiler\nexcept ImportError as exc:\n    print('absent', exc)\n" % ("%s/%s" % (deploy, tree), str(deploy))
    )
    proc = run([python, "-I", "-S", "-c", code], bare_env(home))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("absent No module named 'playbook.compiler'")


def test_nothing_is_written_but_the_state_database(deploy, tmp_path, home):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    state = tmp_path / "state"
    before_home, before_cwd, before_dir = _snapshot(home), _snapshot(cwd), _snapshot(deploy.parent)
    env = bare_env(home, INTERPRETERS[0])
    proc = run([deploy, "run", "--auto-approve", "--var", "ENVIRONMENT=staging", "--state-path", state / "run.db"], env, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    for cmd in (["--version"], ["inspect"], ["plan", "--var", "ENVIRONMENT=dev"], ["show", "--state-path", state / "run.db"]):
        assert run([deploy] + cmd, env, cwd=cwd).returncode == 0
    assert _snapshot(home) == before_home
    assert _snapshot(cwd) == before_cwd
    assert _snapshot(deploy.parent) == before_dir
    assert os.listdir(state) and all(name.startswith("run.db") for name in os.listdir(state))


def _read_only(home, cmd):
    """cmd with `home` read-only: chmod for ordinary users; root needs a read-only bind mount."""
    if os.geteuid() != 0:
        home.chmod(0o555)
        return cmd
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("running as root without mount namespaces: cannot make HOME read-only")
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, "sh", str(home)] + [str(c) for c in cmd]


def test_read_only_home_with_state_path(deploy, tmp_path, home):
    env = bare_env(home, INTERPRETERS[0])
    db = tmp_path / "run.db"
    proc = run(_read_only(home, [deploy, "run", "--auto-approve", "--var", "ENVIRONMENT=staging", "--state-path", db]), env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert db.exists() and os.listdir(home) == []
    proc = run(_read_only(home, [deploy, "run", "--auto-approve", "--var", "ENVIRONMENT=staging"]), env)
    assert proc.returncode == 4 and "--state-path" in proc.stderr and "Traceback" not in proc.stderr


def test_bytecode_is_used_for_every_module_a_run_imports(deploy, tmp_path, home):
    """On an interpreter with a bytecode tree, a run (plain and on a terminal) imports nothing
    from the source fallback."""
    python = INTERPRETERS[0]
    tree = _label(python).replace(".", "")
    cmd = [python, "-v", "-I", "-S", deploy, "run", "--auto-approve", "--var", "ENVIRONMENT=staging", "--state-path", tmp_path / "run.db"]
    proc = run(cmd, bare_env(home))
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = [line for line in proc.stderr.splitlines() if "zipimporter object" in line or "loaded from Zip" in line]
    assert loaded and all("%s/%s/" % (deploy, tree) in line for line in loaded), [l for l in loaded if tree not in l]
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(str(cmd[0]), [str(c) for c in cmd[1:]], env=dict(bare_env(home), TERM="xterm"), timeout=60, encoding="utf-8")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before[-2000:]
    loaded = [line for line in child.before.splitlines() if "zipimporter object" in line or "loaded from Zip" in line]
    assert loaded and all("%s/%s/" % (deploy, tree) in line for line in loaded), [l for l in loaded if tree not in l]


def test_extract_unpacks_for_inspection(deploy, tmp_path, home):
    target = tmp_path / "unpacked"
    proc = run([deploy, "extract", target], bare_env(home, INTERPRETERS[0]))
    assert proc.returncode == 0, proc.stderr
    assert (target / "manifest.json").is_file() and (target / "plan.json").is_file()
    assert (target / "playbook" / "runtime" / "engine.py").is_file()
    assert (target / "launcher.sh").read_bytes().startswith(b"#!/bin/sh\n")
    with zipfile.ZipFile(deploy) as archive:
        assert (target / "plan.json").read_bytes() == archive.read("plan.json")
    proc = run([deploy, "extract", target], bare_env(home, INTERPRETERS[0]))
    assert proc.returncode == 2 and "not an empty directory" in proc.stderr


def test_inspect_in_words(deploy, home):
    proc = run([deploy, "inspect"], bare_env(home, INTERPRETERS[0]))
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert 'Playbook bundle of "Deploy myapp to <ENVIRONMENT>" 2.0.0 by Platform Team' in text
    assert "CPython 3.9 or newer" in text
    assert "taken on this host:  APP_NAME, BREAK_HEALTH_CHECK, DEPLOY_TIMEOUT, ENVIRONMENT" in text
    assert "Jinja2 3." in text and "needed by Jinja2" in text
    assert "    18 templates and expressions compiled at build time" in text
    assert "built:        2023-11-14T22:13:20Z" in text


# -- helpers -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec, bound",
    [(">=3.9", (3, 9)), (">=3.9.0", (3, 9)), (">=3.7,<4", (3, 7)), ("~=3.10", (3, 10)), ("", None), ("!=3.8.*", None), (">3.8", (3, 8))],
)
def test_lower_bound(spec, bound):
    assert bundle_mod.lower_bound(spec) == bound


def test_requirements_and_markers():
    assert bundle_mod.parse_requirement('pygments (>=2.13.0,<3.0.0)') == ("pygments", "")
    assert bundle_mod.parse_requirement('Babel>=2.7 ; extra == "i18n"') == ("Babel", 'extra == "i18n"')
    assert bundle_mod.parse_requirement("mdurl~=0.1") == ("mdurl", "")
    assert not bundle_mod.marker_applies('extra == "i18n"')
    assert bundle_mod.marker_applies("")
    assert bundle_mod.marker_applies('python_version < "3.11"')
    pytest.importorskip("packaging")
    assert not bundle_mod.marker_applies('sys_platform == "win32"')
    assert not bundle_mod.marker_applies('python_version < "3.8"')


def test_default_output():
    assert bundle_mod.default_output("examples/deploy.playbook.toml") == "deploy.pyz"
    assert bundle_mod.default_output("x.toml") == "x.pyz"
    assert bundle_mod.default_output("runbook") == "runbook.pyz"


# -- a plugin with a dependency and a higher Requires-Python ---------------------------------------
FAKE_FILES = {
    "fakeplug/__init__.py": (
        "from fakedep import greeting\n"
        "from playbook.domain.plugins import FunctionSignature, ParameterDef, Plugin, PluginMetadata\n\n\n"
        "class Hello(Plugin):\n"
        "    def get_metadata(self):\n"
        "        params = {'who': ParameterDef(type='str', required=True)}\n"
        "        return PluginMetadata(name='fakeplug', functions={'hello': FunctionSignature(name='hello', parameters=params)})\n\n"
        "    def execute(self, function_name, params):\n"
        "        import rich.syntax  # source only: found by the boot code's fallback\n"
        "        import pygments.lexers.python\n"
        "        return '%s [%s]' % (greeting(params['who']), rich.syntax.__file__.rsplit('/', 2)[-1])\n"
    ),
    "fakeplug/data.json": "{}\n",
    "fakeplug-1.0.dist-info/METADATA": (
        "Metadata-Version: 2.1\nName: fakeplug\nVersion: 1.0\nRequires-Python: >=3.10\n"
        "Requires-Dist: fakedep>=0.1\nRequires-Dist: notinstalled; extra == 'x'\n"
        "Requires-Dist: winonly; sys_platform == 'win32'\n"
    ),
    "fakeplug-1.0.dist-info/entry_points.txt": "[playbook.plugins]\nfakeplug = fakeplug:Hello\n",
    "fakeplug-1.0.dist-info/RECORD": "fakeplug/__init__.py,,\nfakeplug/data.json,,\nfakeplug-1.0.dist-info/METADATA,,\n",
    "fakedep/__init__.py": "def greeting(who):\n    return 'hello, %s (from fakedep)' % who\n",
    "fakedep-0.2.dist-info/METADATA": "Metadata-Version: 2.1\nName: fakedep\nVersion: 0.2\nRequires-Python: >=3.8\n",
    "fakedep-0.2.dist-info/RECORD": "fakedep/__init__.py,,\nfakedep-0.2.dist-info/METADATA,,\n",
}

FAKE_RUNBOOK = """
[runbook]
title = "Fake plugin"

[hi]
type = "Function"
plugin = "fakeplug"
function = "hello"
function_params = { who = "operator" }
depends_on = []
"""


def test_plugin_requirements_are_followed_and_raise_the_floor(tmp_path, monkeypatch, home):
    site = tmp_path / "site"
    for rel, text in FAKE_FILES.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text)
    monkeypatch.syspath_prepend(str(site))
    runbook = tmp_path / "fake.playbook.toml"
    runbook.write_text(FAKE_RUNBOOK)
    from playbook.compiler.plan import compile_file

    compiled = compile_file(str(runbook), bake=True)
    targets = [t for t in (bundle_mod.probe(p) for p in INTERPRETERS) if t is not None]
    notes = []
    report = bundle_mod.build(compiled, str(tmp_path / "fake.pyz"), targets=targets, warn=notes.append)
    manifest = report["manifest"]
    assert manifest["python_floor"] == "3.10" and manifest["floor_from"] == ["fakeplug >=3.10"]
    assert "  runs on: CPython 3.10 or newer (raised by fakeplug)" in bundle_mod.describe(report)
    assert manifest["plugins"] == {"fakeplug": {"entry_point": "fakeplug:Hello", "distribution": "fakeplug", "version": "1.0"}}
    roles = {d["name"]: (d["role"], d["required_by"]) for d in manifest["distributions"]}
    assert roles["fakeplug"] == ("plugin", []) and roles["fakedep"] == ("dependency", ["fakeplug"])
    assert "notinstalled" not in roles and "winonly" not in roles
    assert "3.9" not in [b["python"] for b in manifest["bytecode"]]
    with zipfile.ZipFile(tmp_path / "fake.pyz") as archive:
        names = set(archive.namelist())
    assert {"fakeplug/__init__.py", "fakeplug/data.json", "fakedep/__init__.py", "fakeplug-1.0.dist-info/entry_points.txt"} <= names
    for tree in (b["tree"] for b in manifest["bytecode"]):
        assert "%s/fakeplug/data.json" % tree in names  # data files next to the bytecode

    by_version = {_label(p): p for p in INTERPRETERS}
    for label, python in sorted(by_version.items()):
        proc = run([tmp_path / "fake.pyz", "run", "--state-path", tmp_path / ("%s.db" % label)], bare_env(home, python))
        if label == "py3.9":
            assert proc.returncode == 127 and "is Python 3.9; this bundle needs Python 3.10 or newer" in proc.stderr
        else:
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert "hello, operator (from fakedep) [syntax.py]" in proc.stdout


def test_resume_hint_is_the_command_as_invoked_with_its_state_path(ops, home, tmp_path):
    """Run from another directory by its full path: the hint pastes back as it is."""
    env = bare_env(home)
    db = tmp_path / "my state.db"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = run([ops, "run", "--var", "FLAG=%s" % (tmp_path / "missing"), "--state-path", db], env, cwd=elsewhere)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    hint = "resume with: %s resume 1 --state-path '%s'" % (ops, db)
    assert hint in proc.stdout + proc.stderr
    (tmp_path / "missing").write_text("")
    pasted = hint.split(": ", 1)[1]
    again = subprocess.run(pasted, shell=True, env=env, cwd=str(tmp_path), capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert again.returncode == 0, again.stdout + again.stderr


def test_bundle_report_never_asks_to_install_graphviz(ops, home, tmp_path):
    """On a server without Graphviz the HTML report shows the DAG as a table, and says nothing
    about installing anything."""
    empty = tmp_path / "bin"
    empty.mkdir()
    env = bare_env(home, sys.executable, PATH=str(empty))
    db = tmp_path / "run.db"
    flag = tmp_path / "flag"
    flag.write_text("")
    proc = run([ops, "run", "--var", "FLAG=%s" % flag, "--state-path", db], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run([ops, "report", "--html", tmp_path / "r.html", "--state-path", db], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    page = (tmp_path / "r.html").read_text()
    assert "install" not in (proc.stdout + proc.stderr).lower()
    assert "install graphviz" not in page.lower() and "shown as a table" in page


def test_a_newer_bundle_continues_an_older_bundles_run_with_replan(tmp_path, home):
    """Fix the runbook, compile it again, and continue the same run on the server with the new
    bundle: the succeeded step keeps its result, the fixed one runs."""
    runbook = tmp_path / "fix.playbook.toml"
    body = '[runbook]\ntitle = "fix me"\n\n[one]\ntype = "Command"\ncommand_name = "echo one >> %s"\n\n[two]\ntype = "Command"\ncommand_name = "%s"\n'
    side = tmp_path / "side.log"
    runbook.write_text(body % (side, "exit 3"))
    old = compile_bundle(runbook, tmp_path / "old.pyz", "--no-bytecode")
    runbook.write_text(body % (side, "echo two >> %s" % side))
    new = compile_bundle(runbook, tmp_path / "new.pyz", "--no-bytecode")
    env = bare_env(home, INTERPRETERS[0])
    db = tmp_path / "run.db"
    assert run([old, "run", "--state-path", db], env).returncode == 1
    refused = run([new, "resume", "--state-path", db], env)
    assert refused.returncode == 2 and "resume --replan" in refused.stderr
    done = run([new, "resume", "--replan", "--state-path", db], env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert side.read_text().splitlines() == ["one", "two"]


# -- templates compiled at build time ------------------------------------------------------------
# A run of a bundle, with an in-process probe in front of the boot code: it counts the calls of
# Jinja's parser (jinja2/parser.py Parser.__init__, which lexes), of its code generator
# (jinja2/compiler.py generate), and Python's compile() of generated template code (file name
# "<template>"), and prints the counts on stderr at exit.
_JINJA_PROBE = r"""
import sys, atexit, threading
counts = {"parser": 0, "codegen": 0, "compile": 0}
def _probe(frame, event, arg):
    if event == "call":
        code = frame.f_code
        name = code.co_filename.replace("\\", "/")
        if name.endswith("jinja2/parser.py") and code.co_name == "__init__":
            counts["parser"] += 1
        elif name.endswith("jinja2/compiler.py") and code.co_name == "generate":
            counts["codegen"] += 1
def _audit(event, args):
    if event == "compile" and len(args) > 1 and args[1] == "<template>":
        counts["compile"] += 1
sys.setprofile(_probe)
threading.setprofile(_probe)
sys.addaudithook(_audit)
atexit.register(lambda: sys.stderr.write("JINJA-PROBE %d %d %d\n" % (counts["parser"], counts["codegen"], counts["compile"])))
exec(compile(open(sys.argv[1], "rb").read(65536).split(b"\n#=playbook-boot=\n")[1], "boot", "exec"))
"""


def probed(python, bundle, args, env):
    """(process, {"parser", "codegen", "compile"} counts) of `python bundle args` with the probe."""
    proc = run([python, "-I", "-S", "-c", _JINJA_PROBE, bundle] + list(args), env)
    found = re.findall(r"^JINJA-PROBE (\d+) (\d+) (\d+)$", proc.stderr, re.M)
    assert len(found) == 1, proc.stderr[-2000:]
    return proc, dict(zip(("parser", "codegen", "compile"), map(int, found[0])))


def _without_precompiled(entries):
    for name in [n for n in entries if n.endswith(("precompiled/templates.json", "precompiled/templates.marshal"))]:
        del entries[name]


def _hostile_runbook():
    """Every command position of the shell oracle, each with three of its payloads (one variable
    per payload), a run-time template, a `when`, a typed timeout and a prompt."""
    from test_shell_oracle import HOSTILE, PAYLOADS, SCRIPTS, SNIPPETS

    values = list(dict.fromkeys(PAYLOADS + HOSTILE))
    commands = [template for _, template, _, _ in SNIPPETS] + [template for name, template, _ in SCRIPTS if name != "python-script"]
    commands.append("#!/usr/bin/env python3\nprint({{ X | tojson }})\n")
    lines = ['[runbook]\ntitle = "Hostile {{ P3 }}"\nshell = "/bin/bash"\n\n[variables]']
    lines += ["P%d = { required = true }" % number for number in range(len(values))]
    lines.append("N = { default = 3, type = \"int\" }")
    for number, template in enumerate(commands):
        for offset in (0, 9, 17):
            variable = "P%d" % ((number + offset) % len(values))
            lines += ["", "[c%d_%d]" % (number, offset), 'type = "Command"', "command_name = %s" % json.dumps(template.replace("X", variable))]
    lines += [
        "",
        "[later]",
        'type = "Command"',
        'command_name = "printf %s {{ previous_node(\'c0_0\').stdout }} \'{{ P12 }}\'"',
        'when = "{{ N > 2 and P1 != \'x\' }}"',
        'timeout = "{{ N * 10 }}"',
        'prompt_before = "Go on with {{ P14 }}?"',
        'depends_on = ["c0_0"]',
    ]
    return "\n".join(lines) + "\n", values


@pytest.fixture(scope="module")
def hostile(work):
    """A bundle of _hostile_runbook (bytecode for every interpreter), the same bundle without its
    precompiled templates, and the --var arguments of the payloads."""
    (work / "hostile").mkdir()
    text, values = _hostile_runbook()
    runbook = work / "hostile" / "hostile.playbook.toml"
    runbook.write_text(text)
    bundle = compile_bundle(runbook, work / "hostile" / "hostile.pyz")
    args = []
    for number, value in enumerate(values):
        args += ["--var", "P%d=%s" % (number, value)]
    return bundle, _rebuilt(bundle, _without_precompiled), args


@pytest.mark.parametrize("python", INTERPRETERS, ids=_label)
def test_precompiled_templates_render_byte_identically_to_their_sources(hostile, home, python):
    """`plan --json` (every command rendered with hostile values, the title, the `when`, the
    typed timeout) of the bundle is the same bytes as that of the same bundle without its
    precompiled templates; the first never runs Jinja's parser or code generator."""
    bundle, stripped, args = hostile
    env = bare_env(home)
    for command in (["plan", "--json"], ["plan"]):
        precompiled, counts = probed(python, bundle, command + args, env)
        assert precompiled.returncode == 0, precompiled.stderr[-2000:]
        assert counts == {"parser": 0, "codegen": 0, "compile": 0}
        compiled_here, counts = probed(python, stripped, command + args, env)
        assert compiled_here.returncode == 0, compiled_here.stderr[-2000:]
        assert counts["parser"] > 100 and counts["codegen"] > 100
        assert precompiled.stdout == compiled_here.stdout
    assert "touch CANARY" in precompiled.stdout and "Hostile" in precompiled.stdout


def test_precompiled_templates_in_the_bundle(deploy):
    """The JSON store holds the code Jinja generates for the plan (templating.precompile), each
    bytecode tree the same code marshalled by its own interpreter."""
    from playbook.runtime import templating
    from playbook.runtime.plan import Plan

    with zipfile.ZipFile(deploy) as archive:
        store = json.loads(archive.read(templating.PRECOMPILED_SOURCES))
        manifest = json.loads(archive.read("manifest.json"))
        plan = Plan.loads(archive.read("plan.json"))
        trees = {b["tree"]: archive.read("%s/%s" % (b["tree"], templating.PRECOMPILED_CODE)) for b in manifest["bytecode"]}
    assert store == json.loads(json.dumps(templating.precompile(plan)))
    assert manifest["precompiled_templates"] == len(store["code"]) == 18
    assert store["reads"] == {templating._key(templating.READS, plan.by_id["deploy_application"].command): ["build_app"]}
    tree = "py%d%d" % sys.version_info[:2]
    if tree in trees:
        mine = marshal.loads(trees[tree])
        assert (mine["format"], mine["signature"], mine["reads"]) == (store["format"], store["signature"], store["reads"])
        assert sorted(mine["code"]) == sorted(store["code"])
        for key, code in mine["code"].items():
            assert marshal.loads(code).co_code == compile(store["code"][key], "<template>", "exec", dont_inherit=True).co_code


@pytest.mark.parametrize("python", INTERPRETERS, ids=_label)
def test_plan_and_run_of_a_bundle_skip_jinjas_parser(deploy, ops, home, tmp_path, python):
    """With its bytecode tree the deployment bundle's plan and runs (both paths) never lex,
    parse, generate or compile a template; the ops bundle has bytecode only for the building
    interpreter, so the others compile the stored Python source of its templates, still without
    Jinja's parser."""
    env = bare_env(home)
    db = tmp_path / "run.db"
    for args, code in (
        (["plan", "--var", "ENVIRONMENT=prod"], 0),
        (["run", "--auto-approve", "--var", "ENVIRONMENT=prod", "--state-path", db], 0),
        (["run", "--auto-approve", "--var", "ENVIRONMENT=dev", "--var", "BREAK_HEALTH_CHECK=true", "--state-path", db], 1),
    ):
        proc, counts = probed(python, deploy, args, env)
        assert proc.returncode == code, proc.stdout + proc.stderr
        assert counts == {"parser": 0, "codegen": 0, "compile": 0}, args
    proc, counts = probed(python, ops, ["plan", "--var", "FLAG=/nonexistent"], env)
    assert proc.returncode == 0 and "test -e /nonexistent" in proc.stdout, proc.stderr
    own = "py%d%d" % sys.version_info[:2] == _label(python).replace(".", "")
    assert counts == {"parser": 0, "codegen": 0, "compile": 0 if own else 1}


def _damage_trees(entries, damage):
    from playbook.runtime import templating

    trees = [name for name in entries if name.endswith(templating.PRECOMPILED_CODE)]
    store = json.loads(entries[templating.PRECOMPILED_SOURCES])
    first = sorted(store["code"])[0]
    if damage == "no stores in the trees":
        for name in trees:
            del entries[name]
    elif damage == "damaged stores":
        for name in trees:
            entries[name] = entries[name][: len(entries[name]) // 2]
        entries[templating.PRECOMPILED_SOURCES] = b'{"format": 1, "signature": '
    elif damage == "another signature":
        for name in trees:
            entries[name] = marshal.dumps(dict(marshal.loads(entries[name]), signature="0" * 64))
        entries[templating.PRECOMPILED_SOURCES] = json.dumps(dict(store, signature="0" * 64)).encode()
    elif damage == "one damaged entry":
        for name in trees:
            loaded = marshal.loads(entries[name])
            loaded["code"][first] = b"\x00not marshal"
            entries[name] = marshal.dumps(loaded)
        store["code"][first] = "def root(:\n"
        entries[templating.PRECOMPILED_SOURCES] = json.dumps(store).encode()


PLAN_PROD = ["plan", "--json", "--var", "ENVIRONMENT=prod"]


@pytest.fixture(scope="module")
def deploy_plans(deploy, work):
    """{interpreter: the deployment bundle's `plan --json` for prod}."""
    found = {}
    for python in INTERPRETERS:
        proc = run([deploy] + PLAN_PROD, bare_env(work, python))
        assert proc.returncode == 0, proc.stderr
        found[python] = proc.stdout
    return found


@pytest.mark.parametrize("damage", ["no stores in the trees", "damaged stores", "another signature", "one damaged entry"])
def test_a_missing_or_damaged_precompiled_store_falls_back_to_the_sources(deploy, deploy_plans, home, damage):
    """Whatever is wrong with the precompiled templates, the plan is the same bytes: a store
    missing from the trees is taken from the JSON sources (compiled here), a damaged store or one
    compiled for another environment is not used, a damaged entry is compiled from its template."""
    rebuilt = _rebuilt(deploy, lambda entries: _damage_trees(entries, damage))
    for python in INTERPRETERS:
        proc, counts = probed(python, rebuilt, PLAN_PROD, bare_env(home))
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout == deploy_plans[python]
        if damage == "no stores in the trees":
            assert counts == {"parser": 0, "codegen": 0, "compile": 14}  # each template the plan shows, once
        elif damage == "one damaged entry":
            assert counts["parser"] == counts["codegen"] == 1
        else:
            assert counts["parser"] > 10 and counts["codegen"] > 10
