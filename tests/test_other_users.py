"""Another local user's environment (runtime/private.py): when root runs Playbook with a second
user's $TMPDIR, $XDG_RUNTIME_DIR, working directory or files (`su` without `-`, `sudo -E`),
nothing that user controls decides what root runs or where root writes.

- a bundle's `[runbook] files` go into a fresh private directory under a *trusted* base only
  ($XDG_RUNTIME_DIR: root's and not writable by others; $TMPDIR: every component root's, not
  writable by others unless sticky; else /tmp), removed at the end without following links;
- a discovered configuration file (./playbook.toml, ~/.config/playbook/config.toml) another
  user owns or may write is skipped with one warning line (`config --show` lists it as ignored);
  one named by PLAYBOOK_CONFIG is an error;
- `--events-file` and the `[logging] file_path` log are never opened through a symbolic link,
  nor when they are someone else's file, and are made 0600;
- crash reports and signed-approval checks write nothing into someone else's $TMPDIR.

Two real OS users: root (these tests and CI run as root) and `nobody`, who owns the files and
directories set up here (os.chown, or `runuser -u nobody` to create them as that user). Real
`playbook` processes and real bundles (run with PLAYBOOK_PYTHON=this interpreter), real
`ssh-keygen` keys. Directories another user must reach are made with tempfile.mkdtemp (pytest's
tmp_path is private to root) and removed by the fixture that made them.
"""

import datetime
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_support import json_lines, pb, runs, write_runbook

from playbook.runtime import approvals, errors, private


def _nobody():
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        return None


NOBODY = _nobody()

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("runuser") or NOBODY is None,
    reason="needs a second OS user: root, runuser and the user `nobody` (CI runs as root)",
)

NOBODY_NAME = "nobody (uid %d)" % (NOBODY.pw_uid if NOBODY else 65534)
PYTHON_VERSION = "%d.%d" % sys.version_info[:2]


# -- set-up helpers -------------------------------------------------------------------------------
def as_nobody(*argv):
    """Run `argv` as the user nobody (it must be able to reach every path it names)."""
    proc = subprocess.run(["runuser", "-u", "nobody", "--", *[str(a) for a in argv]], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=30)
    assert proc.returncode == 0, "as nobody: %s: %s" % (" ".join(map(str, argv)), proc.stderr)
    return proc


def give_to_nobody(path, mode=None):
    os.lchown(str(path), NOBODY.pw_uid, NOBODY.pw_gid)
    if mode is not None:
        os.chmod(str(path), mode)
    return path


def make_dir(path, mode, nobody=False):
    path = Path(path)
    path.mkdir()
    if nobody:
        give_to_nobody(path)
    os.chmod(str(path), mode)  # after mkdir: the umask does not apply
    return path


def owner(path):
    return os.lstat(str(path)).st_uid


def mode_of(path):
    return stat.S_IMODE(os.lstat(str(path)).st_mode)


def snapshot(root):
    """{relative path: (kind, mode, owner, content or link target)} of everything under `root`."""
    found = {}
    for top, dirs, files in os.walk(str(root)):
        for name in dirs + files:
            path = os.path.join(top, name)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                what = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                what = ("dir", None)
            else:
                what = ("file", Path(path).read_bytes())
            found[os.path.relpath(path, str(root))] = what + (stat.S_IMODE(info.st_mode), info.st_uid)
    return found


def under(path, base):
    real, base = os.path.realpath(str(path)), os.path.realpath(str(base))
    return real == base or real.startswith(base + os.sep)


def warnings_of(text):
    return [line for line in text.splitlines() if line.startswith("warning:")]


def error_lines(text):
    return [line for line in text.splitlines() if line.strip()]


def tmp_is_sticky_and_roots():
    info = os.stat("/tmp")
    return info.st_uid == 0 and bool(info.st_mode & stat.S_ISVTX)


@pytest.fixture
def shared():
    """A root-owned 0755 directory under /tmp that nobody can traverse (tmp_path cannot be:
    /tmp/pytest-of-root is 0700). Everything in it, world-writable or not, goes at the end."""
    path = Path(tempfile.mkdtemp(prefix="playbook-other-users-"))
    try:
        path.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(str(path), ignore_errors=True)
        assert not path.exists()


# -- a real bundle that carries files ------------------------------------------------------------------
FILES_RUNBOOK = """
[runbook]
title = "Other users"
files = ["scripts/"]

[show]
type = "Command"
command_name = '''
echo DIR={{ runbook_dir }}
if [ -n "$WATCH" ]; then echo "SEEN=[$(ls -A "$WATCH" | tr '\\n' ' ')]"; fi
sh {{ runbook_dir }}/scripts/hello.sh
if [ -n "$OUTSIDE" ]; then ln -s "$OUTSIDE" {{ runbook_dir }}/scripts/outside-dir && ln -s "$OUTSIDE/a.txt" {{ runbook_dir }}/outside-file && echo LINKED; fi
'''
"""


@pytest.fixture(scope="module")
def files_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("files-bundle")
    (root / "scripts").mkdir()
    (root / "scripts" / "hello.sh").write_text('echo "hello from $(basename "$PLAYBOOK_RUNBOOK_DIR")"\n')
    runbook = write_runbook(root, FILES_RUNBOOK)
    r = pb(root, "compile", runbook, "-o", root / "files.pyz", "--python", PYTHON_VERSION)
    assert r.returncode == 0, r.text
    return root / "files.pyz"


def run_bundle(bundle, tmp_path, **env):
    """`BUNDLE run` as root with a bare environment plus `env` (no TMPDIR/XDG_RUNTIME_DIR unless given)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    full = {"PATH": "/usr/bin:/bin", "HOME": str(home), "PLAYBOOK_PYTHON": sys.executable}
    full.update({k: str(v) for k, v in env.items()})
    proc = subprocess.run([str(bundle), "run", "--state-path", str(tmp_path / "state.db")], env=full, cwd=str(tmp_path),
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    proc.text = proc.stdout + proc.stderr
    return proc


def printed(proc, key):
    """The value a step printed as KEY=VALUE (an output line, not the command shown)."""
    found = re.findall(r"│ %s=(.*)$" % key, proc.stdout, re.M)
    assert len(found) == 1, "%s= printed %d times:\n%s" % (key, len(found), proc.text)
    return found[0].strip()


# (variable, how the directory is made, whether the private directory may go under it)
BASES = {
    "tmpdir-of-nobody-0777": ("TMPDIR", lambda s: make_dir(s / "t", 0o777, nobody=True), False),
    "tmpdir-inside-a-directory-of-nobody": ("TMPDIR", lambda s: make_dir(make_dir(s / "n", 0o755, nobody=True) / "t", 0o700), False),
    "tmpdir-of-root-0777-not-sticky": ("TMPDIR", lambda s: make_dir(s / "t", 0o777), False),
    "tmpdir-of-root-0770-group-writable": ("TMPDIR", lambda s: make_dir(s / "t", 0o770), False),
    "runtime-dir-of-nobody-0700": ("XDG_RUNTIME_DIR", lambda s: make_dir(s / "r", 0o700, nobody=True), False),
    "runtime-dir-of-root-0777": ("XDG_RUNTIME_DIR", lambda s: make_dir(s / "r", 0o777), False),
    "runtime-dir-of-root-sticky-1777": ("XDG_RUNTIME_DIR", lambda s: make_dir(s / "r", 0o1777), False),
    # the same checks accept what root alone controls (so the refusals above are the checks' doing)
    "runtime-dir-of-root-0700": ("XDG_RUNTIME_DIR", lambda s: make_dir(s / "r", 0o700), True),
    "tmpdir-of-root-0700": ("TMPDIR", lambda s: make_dir(s / "t", 0o700), True),
    "tmpdir-of-root-sticky-1777": ("TMPDIR", lambda s: make_dir(s / "t", 0o1777), True),
}


@pytest.mark.parametrize("case", list(BASES))
def test_bundle_files_go_only_under_a_base_no_other_user_controls(files_bundle, tmp_path, shared, case):
    variable, make, trusted = BASES[case]
    base = make(shared)
    proc = run_bundle(files_bundle, tmp_path, **{variable: base, "WATCH": base})
    assert proc.returncode == 0, proc.text
    directory = printed(proc, "DIR")
    assert os.path.basename(directory).startswith("playbook-files-")
    assert "hello from %s" % os.path.basename(directory) in proc.stdout  # the files were there
    seen = printed(proc, "SEEN").strip("[] ")
    if trusted:
        assert os.path.dirname(directory) == os.path.realpath(str(base))
        assert seen == os.path.basename(directory)  # while the run went on
    else:
        assert not under(directory, base), "%s went under %s (%s)" % (directory, variable, case)
        assert seen == "", "something was made in %s during the run: %s" % (variable, seen)
        if tmp_is_sticky_and_roots():
            assert os.path.dirname(directory) == os.path.realpath("/tmp")  # the next trusted base
    assert not os.path.lexists(directory)  # removed at the end
    assert os.listdir(str(base)) == []
    assert owner(base) == (0 if "of-root" in case or "inside" in case else NOBODY.pw_uid)


def test_an_inherited_runbook_dir_is_never_used(files_bundle, tmp_path, shared):
    """PLAYBOOK_RUNBOOK_DIR from the other user's environment: the bundle's own copy is used,
    never a directory of theirs with their scripts in it."""
    theirs = make_dir(shared / "theirs", 0o755, nobody=True)
    as_nobody("mkdir", theirs / "scripts")
    as_nobody("sh", "-c", 'echo "echo EVIL; touch %s" > %s' % (theirs / "ran", theirs / "scripts" / "hello.sh"))
    proc = run_bundle(files_bundle, tmp_path, PLAYBOOK_RUNBOOK_DIR=theirs, TMPDIR=theirs)
    assert proc.returncode == 0, proc.text
    directory = printed(proc, "DIR")
    assert not under(directory, theirs)
    assert "hello from playbook-files-" in proc.stdout and "EVIL" not in proc.stdout
    assert not (theirs / "ran").exists()
    assert sorted(os.listdir(str(theirs))) == ["scripts"]


def test_the_private_directory_is_removed_without_following_links(files_bundle, tmp_path):
    """The step (root) puts links to a directory outside into the private copy; the removal at
    the end takes the links, never what they point to (nor changes its mode)."""
    outside = make_dir(tmp_path / "outside", 0o751)
    (outside / "a.txt").write_text("keep me\n")
    (outside / "a.txt").chmod(0o640)
    make_dir(outside / "nested", 0o705)
    (outside / "nested" / "b.txt").write_text("and me\n")
    before = snapshot(outside)
    proc = run_bundle(files_bundle, tmp_path, OUTSIDE=outside)
    assert proc.returncode == 0, proc.text
    assert "│ LINKED" in proc.stdout
    directory = printed(proc, "DIR")
    assert not os.path.lexists(directory)
    assert mode_of(outside) == 0o751
    assert snapshot(outside) == before


# -- remove_tree ---------------------------------------------------------------------------------------
def _outside(tmp_path):
    outside = make_dir(tmp_path / "outside", 0o751)
    (outside / "a.txt").write_text("keep me\n")
    (outside / "a.txt").chmod(0o444)
    make_dir(outside / "nested", 0o555)
    (outside / "nested" / "b.txt").write_text("and me\n")
    return outside


def test_remove_tree_removes_read_only_trees_and_never_follows_a_link(tmp_path):
    outside = _outside(tmp_path)
    before = snapshot(outside)
    tree = make_dir(tmp_path / "tree", 0o700)
    sub = make_dir(tree / "sub", 0o700)
    (sub / "f.txt").write_text("x")
    deeper = make_dir(sub / "deeper", 0o700)
    (deeper / "g.txt").write_text("y")
    os.symlink(str(outside), str(tree / "to-dir"))
    os.symlink(str(outside / "a.txt"), str(sub / "to-file"))
    os.symlink(str(outside / "nested"), str(deeper / "to-nested"))
    for path in (sub / "f.txt", deeper / "g.txt"):
        path.chmod(0o400)
    deeper.chmod(0o500)
    sub.chmod(0o500)
    tree.chmod(0o500)
    private.remove_tree(str(tree))
    assert not os.path.lexists(str(tree))
    assert mode_of(outside) == 0o751 and mode_of(outside / "nested") == 0o555
    assert snapshot(outside) == before


def test_remove_tree_touches_nothing_when_the_top_is_a_link(tmp_path):
    outside = _outside(tmp_path)
    before = snapshot(outside)
    top = tmp_path / "playbook-files-x"
    os.symlink(str(outside), str(top))
    private.remove_tree(str(top))
    assert os.path.islink(str(top)) and os.readlink(str(top)) == str(outside)
    assert mode_of(outside) == 0o751
    assert snapshot(outside) == before


def test_remove_tree_touches_nothing_of_another_users_directory(tmp_path):
    theirs = make_dir(tmp_path / "theirs", 0o755, nobody=True)
    (theirs / "f.txt").write_text("theirs")
    give_to_nobody(theirs / "f.txt")
    before = snapshot(theirs)
    private.remove_tree(str(theirs))
    assert theirs.is_dir() and mode_of(theirs) == 0o755
    assert snapshot(theirs) == before


def test_private_tempdir_is_fresh_0700_under_a_trusted_base_and_removable(monkeypatch, shared):
    theirs = make_dir(shared / "t", 0o777, nobody=True)
    monkeypatch.setenv("TMPDIR", str(theirs))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    first, second = private.private_tempdir("playbook-test-"), private.private_tempdir("playbook-test-")
    try:
        assert first != second
        for made in (first, second):
            assert not under(made, theirs)
            assert mode_of(made) == 0o700 and owner(made) == 0
            assert private.directory_problem(made) is None
    finally:
        private.remove_tree(first)
        private.remove_tree(second)
    assert not os.path.lexists(first) and not os.path.lexists(second)
    assert os.listdir(str(theirs)) == []


# -- directory_problem and trusted_base -----------------------------------------------------------------
def test_directory_problem_names_a_component_another_user_owns(shared):
    theirs = make_dir(shared / "n", 0o755, nobody=True)
    mine = make_dir(theirs / "mine", 0o700)
    real = os.path.realpath(str(theirs))
    assert private.directory_problem(str(mine)) == "%s belongs to %s" % (real, NOBODY_NAME)
    assert private.directory_problem(str(mine), strict=True) == "%s belongs to %s" % (real, NOBODY_NAME)
    assert private.directory_problem(str(theirs)) == "%s belongs to %s" % (real, NOBODY_NAME)
    # a link of root's leading there: the real path is what is judged
    os.symlink(str(mine), str(shared / "link"))
    assert private.directory_problem(str(shared / "link")) == "%s belongs to %s" % (real, NOBODY_NAME)


def test_directory_problem_accepts_a_sticky_world_writable_directory_of_root(shared):
    sticky = make_dir(shared / "sticky", 0o1777)
    inside = make_dir(sticky / "inside", 0o700)
    assert private.directory_problem(str(sticky)) is None
    assert private.directory_problem(str(inside)) is None
    if tmp_is_sticky_and_roots():
        assert private.directory_problem("/tmp") is None
    # not sticky: others could rename what is in it
    plain = make_dir(shared / "plain", 0o777)
    assert private.directory_problem(str(plain)) == "others may write to %s (mode 777)" % os.path.realpath(str(plain))
    group = make_dir(shared / "group", 0o775)
    assert private.directory_problem(str(make_dir(group / "in", 0o700))) == \
        "others may write to %s (mode 775)" % os.path.realpath(str(group))


def test_directory_problem_strict_wants_the_directory_private(shared):
    assert private.directory_problem(str(make_dir(shared / "a", 0o777)), strict=True) == "others may write to it (mode 777)"
    assert private.directory_problem(str(make_dir(shared / "b", 0o1777)), strict=True) == "others may write to it (mode 1777)"
    assert private.directory_problem(str(make_dir(shared / "c", 0o720)), strict=True) == "others may write to it (mode 720)"
    assert private.directory_problem(str(make_dir(shared / "d", 0o700, nobody=True)), strict=True) == \
        "it belongs to %s, not to root (uid 0)" % NOBODY_NAME
    assert private.directory_problem(str(make_dir(shared / "e", 0o700)), strict=True) is None
    assert private.directory_problem(str(make_dir(shared / "f", 0o755)), strict=True) is None


def test_directory_problem_refuses_what_is_not_an_absolute_directory(shared):
    (shared / "file").write_text("")
    assert private.directory_problem("relative/dir") == "it is not an absolute path"
    assert private.directory_problem("") == "it is not an absolute path"
    assert private.directory_problem(str(shared / "file")) == "it is not a directory"
    assert private.directory_problem(str(shared / "missing")) == "No such file or directory"


def test_trusted_base_skips_every_base_another_user_controls(monkeypatch, shared):
    theirs_runtime = make_dir(shared / "r", 0o700, nobody=True)
    theirs_tmp = make_dir(shared / "t", 0o777, nobody=True)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(theirs_runtime))
    monkeypatch.setenv("TMPDIR", str(theirs_tmp))
    base = private.trusted_base()
    assert not under(base, theirs_runtime) and not under(base, theirs_tmp)
    assert private.directory_problem(base) is None
    if tmp_is_sticky_and_roots():
        assert base == os.path.realpath("/tmp")
    # a private TMPDIR of root's comes next, reached through a link of nobody's: the real path is returned
    mine = make_dir(shared / "mine", 0o700)
    link = theirs_tmp / "link"
    as_nobody("ln", "-s", mine, link)
    assert owner(link) == NOBODY.pw_uid
    monkeypatch.setenv("TMPDIR", str(link))
    assert private.trusted_base() == os.path.realpath(str(mine))
    # and a runtime directory of root's own is first
    runtime = make_dir(shared / "run", 0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert private.trusted_base() == os.path.realpath(str(runtime))


# -- configuration files ----------------------------------------------------------------------------
ECHO_RUNBOOK = '[hello]\ntype = "Command"\ncommand_name = "echo hello-output"\n'


def _config_text(tmp_path):
    chosen = tmp_path / "chosen"
    return '[database]\npath = "%s"\n\n[logging]\nfile_path = "%s"\n' % (chosen / "run.db", chosen / "run.log")


def _place_config(tmp_path, case):
    """Put the configuration for `case`; returns (the path discovered, why it is not trusted or None)."""
    text = _config_text(tmp_path)
    local = tmp_path / "playbook.toml"
    if case == "user-file-of-nobody":
        directory = tmp_path / "home" / ".config" / "playbook"
        directory.mkdir(parents=True)
        path = directory / "config.toml"
        path.write_text(text)
        give_to_nobody(path, 0o644)
        return path, "it belongs to %s, not to root" % NOBODY_NAME
    if case in ("link-of-nobody", "link-of-root"):
        real = tmp_path / "real.toml"
        real.write_text(text)
        real.chmod(0o644)
        os.symlink(str(real), str(local))
        if case == "link-of-nobody":
            give_to_nobody(local)
            return local, "it is a symbolic link of %s" % NOBODY_NAME
        return local, None
    if case == "link-of-root-to-a-file-of-nobody":
        real = tmp_path / "real.toml"
        real.write_text(text)
        give_to_nobody(real, 0o644)
        os.symlink(str(real), str(local))
        return local, "it belongs to %s, not to root" % NOBODY_NAME
    local.write_text(text)
    if case == "owned-by-nobody":
        give_to_nobody(local, 0o644)
        return local, "it belongs to %s, not to root" % NOBODY_NAME
    mode = {"root-0666": 0o666, "root-0620": 0o620, "root-0644": 0o644, "root-0600": 0o600}[case]
    local.chmod(mode)
    if mode & 0o022:
        return local, "others may write to it (mode %o; chmod go-w fixes that)" % mode
    return local, None


@pytest.mark.parametrize(
    "case",
    ["owned-by-nobody", "root-0666", "root-0620", "link-of-nobody", "link-of-root-to-a-file-of-nobody", "user-file-of-nobody"],
)
def test_a_configuration_file_another_user_controls_is_ignored_with_a_warning(tmp_path, case):
    path, why = _place_config(tmp_path, case)
    rb = write_runbook(tmp_path, ECHO_RUNBOOK)
    r = pb(tmp_path, "run", rb)
    assert r.returncode == 0, r.text
    assert "hello-output" in r.out
    assert warnings_of(r.err) == ["warning: ignoring the configuration file %s: %s" % (path, why)]
    assert not (tmp_path / "chosen").exists()  # neither its database nor its log
    default_db = tmp_path / "home" / ".config" / "playbook" / "run.db"
    assert [row["status"] for row in runs(default_db)] == ["succeeded"]


@pytest.mark.parametrize("case", ["root-0644", "root-0600", "link-of-root"])
def test_a_configuration_file_of_roots_own_is_used(tmp_path, case):
    path, why = _place_config(tmp_path, case)
    assert why is None
    rb = write_runbook(tmp_path, ECHO_RUNBOOK)
    r = pb(tmp_path, "run", rb)
    assert r.returncode == 0, r.text
    assert warnings_of(r.err) == []
    chosen = tmp_path / "chosen"
    assert [row["status"] for row in runs(chosen / "run.db")] == ["succeeded"]
    assert "hello" in (chosen / "run.log").read_text() and mode_of(chosen / "run.log") == 0o600
    assert not (tmp_path / "home" / ".config" / "playbook" / "run.db").exists()


def test_a_bundle_ignores_a_configuration_file_of_another_user_too(files_bundle, tmp_path):
    path, why = _place_config(tmp_path, "owned-by-nobody")
    proc = run_bundle(files_bundle, tmp_path)
    assert proc.returncode == 0, proc.text
    assert warnings_of(proc.stderr) == ["warning: ignoring the configuration file %s: %s" % (path, why)]
    assert not (tmp_path / "chosen").exists()
    assert [row["status"] for row in runs(tmp_path / "state.db")] == ["succeeded"]


def test_playbook_config_naming_a_file_of_another_user_is_an_error(tmp_path):
    path = tmp_path / "theirs.toml"
    path.write_text(_config_text(tmp_path))
    give_to_nobody(path, 0o644)
    rb = write_runbook(tmp_path, ECHO_RUNBOOK)
    r = pb(tmp_path, "run", rb, env={"PLAYBOOK_CONFIG": path})
    assert r.returncode == 2, r.text
    assert "%s: not used: it belongs to %s, not to root" % (path, NOBODY_NAME) in r.err
    assert "use a configuration file of your own" in r.err
    assert "hello-output" not in r.out
    assert not (tmp_path / "chosen").exists()
    assert not (tmp_path / "home" / ".config" / "playbook" / "run.db").exists()
    r = pb(tmp_path, "config", "--validate", env={"PLAYBOOK_CONFIG": path})
    assert r.returncode == 2 and "not used: it belongs to %s" % NOBODY_NAME in r.text


def test_config_show_lists_a_skipped_file_as_ignored(tmp_path):
    path, why = _place_config(tmp_path, "owned-by-nobody")
    r = pb(tmp_path, "config", "--show")
    assert r.returncode == 0, r.text
    assert "  %s  (ignored: %s)\n" % (path, why) in r.out
    (db_line,) = [line for line in r.out.splitlines() if line.startswith("path ")]
    assert '"~/.config/playbook/run.db"' in db_line and db_line.endswith("# default")
    (log_line,) = [line for line in r.out.splitlines() if line.startswith("file_path ")]
    assert '""' in log_line and log_line.endswith("# default")
    shown = json.loads(pb(tmp_path, "config", "--show", "--json").out)
    assert shown["skipped"] == [{"path": str(path), "why": why}]
    assert {"path": str(path), "found": False} in shown["files"]
    assert shown["values"]["database"]["path"] == {"value": "~/.config/playbook/run.db", "from": "default"}


# -- --events-file -------------------------------------------------------------------------------------
def _events_run(tmp_path, events):
    rb = write_runbook(tmp_path, ECHO_RUNBOOK)
    return pb(tmp_path, "run", rb, "--events-file", events, "--state-path", tmp_path / "state.db")


def test_events_file_through_a_symbolic_link_is_refused(tmp_path):
    target = tmp_path / "target.json"
    target.write_text("root's\n")
    target.chmod(0o644)
    link = tmp_path / "events.json"
    os.symlink(str(target), str(link))
    r = _events_run(tmp_path, link)
    assert r.returncode == 2, r.text
    assert error_lines(r.err) == ["error: --events-file %s is a symbolic link; give the file itself" % link]
    assert "hello-output" not in r.out
    assert target.read_text() == "root's\n" and mode_of(target) == 0o644
    # a dangling link: nothing is created where it points
    dangling = tmp_path / "dangling.json"
    os.symlink(str(tmp_path / "created.json"), str(dangling))
    r = _events_run(tmp_path, dangling)
    assert r.returncode == 2 and "is a symbolic link" in r.err
    assert not (tmp_path / "created.json").exists()


def test_events_file_of_another_user_is_refused(tmp_path, shared):
    theirs = make_dir(shared / "n", 0o755, nobody=True)
    events = theirs / "events.json"
    as_nobody("sh", "-c", "echo theirs > %s && chmod 0644 %s" % (events, events))
    r = _events_run(tmp_path, events)
    assert r.returncode == 2, r.text
    assert error_lines(r.err) == [
        "error: --events-file %s belongs to %s, not to root (uid 0): give a file of your own" % (events, NOBODY_NAME)]
    assert "hello-output" not in r.out
    assert events.read_text() == "theirs\n" and mode_of(events) == 0o644 and owner(events) == NOBODY.pw_uid


def test_events_file_of_roots_own_is_used_and_made_0600(tmp_path):
    events = tmp_path / "events.json"
    events.write_text('{"earlier": true}\n')
    events.chmod(0o644)
    r = _events_run(tmp_path, events)
    assert r.returncode == 0, r.text
    assert mode_of(events) == 0o600
    lines = json_lines(events.read_text())
    assert lines[0] == {"earlier": True}
    assert [line["event"] for line in lines[1:]] == ["run_started", "node_started", "node_finished", "run_finished"]


def test_a_new_events_file_is_created_0600(tmp_path):
    events = tmp_path / "new.json"
    r = _events_run(tmp_path, events)
    assert r.returncode == 0, r.text
    assert mode_of(events) == 0o600 and owner(events) == 0
    assert [line["event"] for line in json_lines(events.read_text())] == ["run_started", "node_started", "node_finished", "run_finished"]


# -- [logging] file_path -------------------------------------------------------------------------------
def _log_config(tmp_path, log):
    config = tmp_path / "playbook.toml"
    config.write_text('[logging]\nfile_path = "%s"\n' % log)
    config.chmod(0o644)  # root's, not writable by others: trusted
    return config


def test_log_file_through_a_symbolic_link_is_refused(tmp_path):
    target = tmp_path / "target.log"
    target.write_text("root's\n")
    target.chmod(0o644)
    link = tmp_path / "run.log"
    os.symlink(str(target), str(link))
    config = _log_config(tmp_path, link)
    rb = write_runbook(tmp_path, ECHO_RUNBOOK)
    r = pb(tmp_path, "run", rb, "--state-path", tmp_path / "state.db")
    assert r.returncode == 2, r.text
    (line,) = error_lines(r.err)
    assert line.startswith("error: %s:2: " % config)
    assert "logging.file_path %s cannot be opened: the log file %s is a symbolic link" % (link, link) in line
    assert "hello-output" not in r.out
    assert target.read_text() == "root's\n" and mode_of(target) == 0o644


def test_log_file_of_another_user_is_refused(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("theirs\n")
    give_to_nobody(log, 0o644)
    _log_config(tmp_path, log)
    rb = write_runbook(tmp_path, ECHO_RUNBOOK)
    r = pb(tmp_path, "run", rb, "--state-path", tmp_path / "state.db")
    assert r.returncode == 2, r.text
    (line,) = error_lines(r.err)
    assert "the log file %s belongs to %s, not to root (uid 0)" % (log, NOBODY_NAME) in line
    assert log.read_text() == "theirs\n" and owner(log) == NOBODY.pw_uid


def test_log_file_of_roots_own_is_appended_to_and_made_0600(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("earlier line\n")
    log.chmod(0o644)
    _log_config(tmp_path, log)
    rb = write_runbook(tmp_path, ECHO_RUNBOOK)
    r = pb(tmp_path, "run", rb, "--state-path", tmp_path / "state.db")
    assert r.returncode == 0, r.text
    text = log.read_text()
    assert text.startswith("earlier line\n") and "hello" in text[len("earlier line\n"):]
    assert mode_of(log) == 0o600


@pytest.mark.parametrize("which", ["events-file", "log-file"])
def test_a_fifo_of_another_user_is_refused_not_waited_on(tmp_path, shared, which):
    theirs = make_dir(shared / "n", 0o755, nobody=True)
    fifo = theirs / "out"
    as_nobody("mkfifo", "-m", "0666", fifo)
    rb = write_runbook(tmp_path, ECHO_RUNBOOK)
    args = ["run", rb, "--state-path", tmp_path / "state.db"]
    if which == "events-file":
        args += ["--events-file", fifo]
    else:
        _log_config(tmp_path, fifo)
    try:
        r = pb(tmp_path, *args, timeout=5)  # the run itself takes well under a second
    except subprocess.TimeoutExpired:
        raise AssertionError("playbook run still waited on the FIFO %s after 5 s" % fifo) from None
    assert r.returncode == 2, r.text
    assert "is not a regular file" in r.err or "belongs to %s" % NOBODY_NAME in r.err


# -- the database under another user's HOME -------------------------------------------------------------
def test_the_default_database_under_another_users_home_is_not_opened_through_their_link(tmp_path, shared):
    home = make_dir(shared / "home", 0o755, nobody=True)
    as_nobody("mkdir", "-p", home / ".config" / "playbook")
    victim = make_dir(tmp_path / "victim", 0o700) / "chosen-by-nobody.db"
    as_nobody("ln", "-s", victim, home / ".config" / "playbook" / "run.db")
    rb = write_runbook(tmp_path, ECHO_RUNBOOK)
    r = pb(tmp_path, "run", rb, env={"HOME": home})
    assert not victim.exists(), "root wrote %s, the target of nobody's link" % victim
    # refused with one line naming the place and what to do (exit 4: a state problem)
    assert r.returncode == 4, r.text
    assert "the state database %s" % (home / ".config" / "playbook" / "run.db") in r.err
    assert "belongs to %s" % NOBODY_NAME in r.err and "give --state-path" in r.err


# -- crash reports -----------------------------------------------------------------------------------------
def test_crash_reports_go_only_to_a_trusted_directory(monkeypatch, tmp_path, shared):
    theirs = make_dir(shared / "t", 0o777, nobody=True)
    monkeypatch.setenv("TMPDIR", str(theirs))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(theirs))
    saved = errors._crash_dir
    written = []
    try:
        errors.set_crash_dir(None)
        try:
            raise ValueError("boom for the report")
        except ValueError as exc:
            written.append(errors.write_crash_report(exc))
        path = written[0]
        assert path is not None
        assert not under(path, theirs) and os.listdir(str(theirs)) == []
        assert private.directory_problem(os.path.dirname(path)) is None
        if tmp_is_sticky_and_roots():
            assert os.path.dirname(path) == os.path.realpath("/tmp")
        assert mode_of(path) == 0o600 and owner(path) == 0
        assert "ValueError: boom for the report" in Path(path).read_text()
        # root's own private TMPDIR is used when it is trusted
        mine = make_dir(tmp_path / "mine", 0o700)
        monkeypatch.setenv("TMPDIR", str(mine))
        written.append(errors.write_crash_report(ValueError("second")))
        assert os.path.dirname(written[1]) == str(mine)
    finally:
        errors.set_crash_dir(saved)
        for path in written:
            if path:
                os.unlink(path)


# -- signed approvals ------------------------------------------------------------------------------------
@pytest.fixture
def keys(tmp_path):
    if not shutil.which("ssh-keygen"):
        pytest.skip("ssh-keygen is not installed (CI installs openssh-client)")
    made = {}
    for name in ("alice", "mallory"):
        key = tmp_path / ("%s_key" % name)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
        made[name] = key
    return made


def _signed(keys, signer):
    request = {"run_uid": "run-uid-1", "plan": "a" * 64, "node": "gate", "question": "Go on?", "values": {"A": "1"}}
    data = approvals.run_payload(request, "approved", "alice", datetime.timedelta(minutes=10), note="checked")
    text = approvals.signed_document(data, approvals.sign(data, str(keys[signer])))
    public = " ".join(Path(str(keys["alice"]) + ".pub").read_text().split()[:2])
    expected = approvals.Expected(signers="alice %s\n" % public, plan=request["plan"], run_uid=request["run_uid"],
                                  values=approvals.values_digest(request["values"]))
    return text, expected


def test_signed_approval_verifies_with_a_tmpdir_of_another_user_and_writes_nothing_there(monkeypatch, keys, shared):
    good, expected = _signed(keys, "alice")
    forged, _ = _signed(keys, "mallory")
    theirs = make_dir(shared / "t", 0o777, nobody=True)
    monkeypatch.setenv("TMPDIR", str(theirs))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(theirs))
    verified = approvals.check(good, "approval.json", expected, question="Go on?")
    fingerprint = subprocess.run(["ssh-keygen", "-lf", str(keys["alice"]) + ".pub"], capture_output=True, text=True,
                                 check=True).stdout.split()[1]
    assert (verified.decision, verified.principal, verified.note, verified.node) == ("approved", "alice", "checked", "gate")
    assert verified.fingerprint == fingerprint
    with pytest.raises(approvals.ApprovalError) as refused:
        approvals.check(forged, "forged.json", expected, question="Go on?")
    assert refused.value.exit_code == 4 and "does not verify for principal 'alice'" in str(refused.value)
    assert os.listdir(str(theirs)) == []


def test_anonymous_file_is_on_no_file_system(monkeypatch, shared):
    theirs = make_dir(shared / "t", 0o777, nobody=True)
    monkeypatch.setenv("TMPDIR", str(theirs))
    fd = approvals._anonymous_file(b"allowed signers text")
    try:
        assert os.readlink("/proc/self/fd/%d" % fd).startswith("/memfd:playbook-approval")
        assert os.read(fd, 100) == b"allowed signers text"
        assert os.fstat(fd).st_nlink == 0
    finally:
        os.close(fd)
    assert os.listdir(str(theirs)) == []


def test_anonymous_file_without_memfd_uses_a_private_directory_and_leaves_nothing(monkeypatch, shared):
    """Where there is no memfd_create (not Linux): an unlinked file in a private directory under a
    trusted base, never in the other user's TMPDIR."""
    theirs = make_dir(shared / "t", 0o777, nobody=True)
    monkeypatch.setenv("TMPDIR", str(theirs))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.delattr(os, "memfd_create", raising=False)
    fd = approvals._anonymous_file(b"signature text")
    try:
        where = os.readlink("/proc/self/fd/%d" % fd)
        assert where.endswith(" (deleted)")
        directory = os.path.dirname(where[: -len(" (deleted)")])
        assert os.path.basename(directory).startswith("playbook-approval-")
        assert not under(directory, theirs) and not os.path.lexists(directory)
        assert os.fstat(fd).st_nlink == 0
        assert os.read(fd, 100) == b"signature text"
    finally:
        os.close(fd)
    assert os.listdir(str(theirs)) == []
