"""`[runbook] files`: files next to the runbook travel with it. Checked by validate, found through
`{{ runbook_dir }}` / PLAYBOOK_RUNBOOK_DIR when run from the file in another directory, carried by
real bundles (reproducible, in the manifest, executable bits kept) and provided read-only by them
under a bare environment with a read-only home, then removed."""

import hashlib
import json
import os
import zipfile
from pathlib import Path

import pytest

from conftest import run_playbook
from test_bundle import INTERPRETERS, _label, bare_env, compile_bundle, run

RUNBOOK = """
[runbook]
title = "Files"
description = "d"
version = "1"
author = "tests"
created_at = 2026-01-01T00:00:00Z
files = ["scripts/", "sql/*.sql"]

[script]
type = "Command"
command_name = "sh {{ runbook_dir }}/scripts/hello.sh {{ NAME }}"
depends_on = []

[sql]
type = "Command"
command_name = 'cat "$PLAYBOOK_RUNBOOK_DIR"/sql/*.sql && ls "$PLAYBOOK_RUNBOOK_DIR"/sql'
cwd = "{{ runbook_dir }}"

[variables]
NAME = "world"
"""


def make_runbook(root: Path) -> Path:
    (root / "scripts").mkdir(parents=True)
    (root / "sql").mkdir()
    (root / "scripts" / "hello.sh").write_text('echo "hello $1 from $(basename "$PLAYBOOK_RUNBOOK_DIR")"\n')
    (root / "scripts" / "hello.sh").chmod(0o755)
    (root / "scripts" / "lib.txt").write_text("data\n")
    (root / "sql" / "1.sql").write_text("select 1;\n")
    (root / "sql" / "notes.md").write_text("not listed\n")
    path = root / "files.playbook.toml"
    path.write_text(RUNBOOK)
    return path


def test_run_from_another_directory_finds_the_files(playbook, tmp_path):
    runbook = make_runbook(tmp_path / "book")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ran = playbook("run", runbook, "--state-path", tmp_path / "s.db", cwd=elsewhere)
    assert ran.returncode == 0, ran.text
    assert "hello world from book" in ran.stdout
    assert "select 1;" in ran.stdout and "notes.md" in ran.stdout  # the runbook's own directory


@pytest.mark.parametrize(
    "files, setup, message",
    [
        ('["../outside.sh"]', None, "'../outside.sh' leaves the runbook's directory (..)"),
        ('["/etc/passwd"]', None, "'/etc/passwd' is not relative to the runbook's directory"),
        ('["missing/", "sql/*.sql"]', None, "'missing/' matches no file in the runbook's directory"),
        ('["link.sh"]', "link", "link.sh is a symbolic link to"),
        ('["scripts/"]', "dirlink", "is a symbolic link to"),
        ("[1]", None, "each entry must be a non-empty path, not 1"),
    ],
    ids=["dotdot", "absolute", "missing", "symlink-out", "symlink-in-dir", "not-a-string"],
)
def test_validate_refuses_files_that_cannot_travel(playbook, tmp_path, files, setup, message):
    runbook = make_runbook(tmp_path / "book")
    (tmp_path / "outside.sh").write_text("echo out\n")
    if setup == "link":
        os.symlink(tmp_path / "outside.sh", tmp_path / "book" / "link.sh")
    if setup == "dirlink":
        os.symlink(tmp_path, tmp_path / "book" / "scripts" / "up")
    runbook.write_text(RUNBOOK.replace('files = ["scripts/", "sql/*.sql"]', "files = %s" % files))
    ran = playbook("validate", runbook)
    assert ran.returncode == 2, ran.text
    assert "files.playbook.toml:8:1: error: [runbook] files: " in ran.text and message in ran.text, ran.text


def test_runbook_dir_needs_listed_files(playbook, tmp_path):
    runbook = make_runbook(tmp_path / "book")
    runbook.write_text(RUNBOOK.replace('files = ["scripts/", "sql/*.sql"]\n', ""))
    ran = playbook("validate", runbook)
    assert ran.returncode == 2
    assert "script.command_name uses runbook_dir, but [runbook] files lists nothing" in ran.text


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    runbook = make_runbook(root / "book")
    (root / "again").mkdir()
    first = compile_bundle(runbook, root / "files.pyz", "--no-bytecode")
    second = compile_bundle(runbook, root / "again" / "files.pyz", "--no-bytecode")
    return root, first, second


def test_bundles_carry_the_files_reproducibly(built):
    root, first, second = built
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as archive:
        infos = {i.filename: i for i in archive.infolist() if i.filename.startswith("files/")}
        manifest = json.loads(archive.read("manifest.json"))
        assert sorted(infos) == ["files/scripts/hello.sh", "files/scripts/lib.txt", "files/sql/1.sql"]
        assert infos["files/scripts/hello.sh"].external_attr >> 16 == 0o100755
        assert infos["files/sql/1.sql"].external_attr >> 16 == 0o100644
        assert {i.date_time for i in infos.values()} == {(2023, 11, 14, 22, 13, 20)}
        body = archive.read("files/sql/1.sql")
    entries = {e["path"]: e for e in manifest["files"]}
    assert [e["path"] for e in manifest["files"]] == ["scripts/hello.sh", "scripts/lib.txt", "sql/1.sql"]
    assert entries["sql/1.sql"] == {"path": "sql/1.sql", "sha256": hashlib.sha256(body).hexdigest(), "size": len(body), "executable": False}
    assert entries["scripts/hello.sh"]["executable"] is True


@pytest.mark.parametrize("python", INTERPRETERS, ids=_label)
def test_a_bundle_provides_the_files_read_only_and_removes_them(built, tmp_path, python):
    root, bundle, _ = built
    home = tmp_path / "home"
    home.mkdir()
    temp = tmp_path / "tmp"
    temp.mkdir()
    home.chmod(0o500)
    try:
        proc = run([bundle, "run", "--state-path", tmp_path / "s.db"], bare_env(home, python, TMPDIR=str(temp)), cwd=tmp_path)
    finally:
        home.chmod(0o700)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "hello world from playbook-files-" in proc.stdout
    assert "select 1;" in proc.stdout and "notes.md" not in proc.stdout
    assert list(temp.iterdir()) == []  # removed at exit


def test_provided_files_have_their_modes(built, tmp_path):
    root, bundle, _ = built
    probe = root / "probe.playbook.toml"
    probe.write_text(
        RUNBOOK.split("[script]")[0]
        + '[modes]\ntype = "Command"\ncommand_name = \'cd "$PLAYBOOK_RUNBOOK_DIR" && stat -c "%a %n" . scripts scripts/hello.sh sql/1.sql\'\n'
        + 'depends_on = []\n'
    )
    (root / "scripts").mkdir(exist_ok=True)
    (root / "scripts" / "hello.sh").write_text("echo\n")
    (root / "scripts" / "hello.sh").chmod(0o755)
    (root / "sql").mkdir(exist_ok=True)
    (root / "sql" / "1.sql").write_text("select 1;\n")
    modes = compile_bundle(probe, tmp_path / "modes.pyz", "--no-bytecode")
    temp = tmp_path / "tmp"
    temp.mkdir()
    proc = run([modes, "run", "--state-path", tmp_path / "s.db"], bare_env(tmp_path, TMPDIR=str(temp)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for line in ("500 .", "500 scripts", "500 scripts/hello.sh", "400 sql/1.sql"):
        assert line in proc.stdout, proc.stdout
    assert list(temp.iterdir()) == []


def test_inspect_and_compile_list_the_files(built, tmp_path):
    root, bundle, _ = built
    proc = run([bundle, "inspect"], bare_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "    file scripts/hello.sh (" in proc.stdout and ", executable, sha256 " in proc.stdout
    assert "    file sql/1.sql (10 bytes, read-only, sha256 " in proc.stdout
    ran = run_playbook(["compile", root / "book" / "files.playbook.toml", "-o", tmp_path / "c.pyz", "--no-bytecode"])
    assert "  files: 3 next to the runbook (scripts/hello.sh, scripts/lib.txt, sql/1.sql)" in ran.stdout, ran.text

