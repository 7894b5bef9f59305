"""Places to write that no other local user controls (docs/architecture.md, "Security model").

Root may run a bundle with another user's environment (`su` without `-`, `sudo -E`): then
$TMPDIR, $XDG_RUNTIME_DIR, the working directory and the paths of files given on the command
line may be that user's to choose or to change. What Playbook reads and writes there is
checked when it is used:

- `private_tempdir` makes a fresh 0700 directory under a *trusted* base: one whose every
  component belongs to the effective user or root and is writable by nobody else (a sticky
  directory such as /tmp is fine: others cannot rename what is ours in it). $XDG_RUNTIME_DIR
  is used only when it belongs to the effective user and is not group- or world-writable.
- `remove_tree` removes such a directory without following any symbolic link in it.
- `open_own_file` opens a file to append to (events, logs): never through a symbolic link; an
  existing file must belong to the effective user (a regular file is then made 0600; a named
  pipe stays as it is; a character device such as /dev/null may also be root's).
- `trusted_file` says why a discovered file (configuration) may not be trusted: it belongs to
  someone else, or others may write it.

Standard library only: this module goes into bundles.
"""

from __future__ import annotations

import errno
import os
import stat

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
DIRECTORY = getattr(os, "O_DIRECTORY", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class UnsafePath(OSError):
    """A path another user controls, or that is not what it must be (one line in str())."""

    def __str__(self) -> str:
        return self.strerror or "unsafe path"


def owner_name(uid: int) -> str:
    import pwd

    try:
        return "%s (uid %d)" % (pwd.getpwuid(uid).pw_name, uid)
    except KeyError:
        return "uid %d" % uid


def _you_or_root() -> str:
    return "root" if os.geteuid() == 0 else "%s or root" % owner_name(os.geteuid())


def _trusted_owner(uid: int) -> bool:
    return uid in (os.geteuid(), 0)


def directory_problem(path: str, strict: bool = False) -> str | None:
    """Why `path` is not a directory only the effective user (and root) can change, or None.

    Every component of its real path must belong to the effective user or root and be writable
    by no one else, unless it is sticky (/tmp). `strict`: the directory itself must belong to the
    effective user and be writable by no one else, sticky or not ($XDG_RUNTIME_DIR)."""
    return checked_directory(path, strict)[1]


def checked_directory(path: str, strict: bool = False) -> tuple[str, str | None]:
    """(the real path of `path`, why it is not trusted or None): `directory_problem`. Use the
    real path returned, which is the one checked: resolving `path` again could meet a link
    changed in between."""
    if not path or not os.path.isabs(path):
        return path, "it is not an absolute path"
    real = os.path.realpath(path)
    try:
        info = os.stat(real)
    except OSError as exc:
        return real, exc.strerror or str(exc)
    if not stat.S_ISDIR(info.st_mode):
        return real, "it is not a directory"
    if strict and info.st_uid != os.geteuid():
        return real, "it belongs to %s, not to %s" % (owner_name(info.st_uid), owner_name(os.geteuid()))
    if strict and info.st_mode & 0o022:
        return real, "others may write to it (mode %o)" % stat.S_IMODE(info.st_mode)
    current = real
    while True:
        try:
            info = os.lstat(current)
        except OSError as exc:
            return real, "%s: %s" % (current, exc.strerror or exc)
        if stat.S_ISLNK(info.st_mode):  # changed since it was resolved
            return real, "%s changed while it was checked" % current
        if not _trusted_owner(info.st_uid):
            return real, "%s belongs to %s" % (current, owner_name(info.st_uid))
        if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
            return real, "others may write to %s (mode %o)" % (current, stat.S_IMODE(info.st_mode))
        parent = os.path.dirname(current)
        if parent == current:
            return real, None
        current = parent


def temp_bases() -> list[tuple[str, bool]]:
    """(directory, strict) in the order a private directory is looked for."""
    bases = []
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        bases.append((runtime, True))
    tmpdir = os.environ.get("TMPDIR")
    if tmpdir:
        bases.append((tmpdir, False))
    bases += [("/tmp", False), ("/var/tmp", False), ("/dev/shm", False)]
    return bases


def trusted_base() -> str:
    """The first trusted, writable base of `temp_bases()`; UnsafePath naming why each was not."""
    reasons = []
    for base, strict in temp_bases():
        real, problem = checked_directory(base, strict)
        if problem is None and not os.access(real, os.W_OK | os.X_OK):
            problem = "it is not writable"
        if problem is None:
            return real
        reasons.append("%s: %s" % (base, problem))
    raise UnsafePath(errno.EPERM, "no private temporary directory can be made (%s)" % "; ".join(reasons))


def private_tempdir(prefix: str) -> str:
    """A fresh directory (0700, a random name) under the first trusted base."""
    import tempfile

    return tempfile.mkdtemp(prefix=prefix, dir=trusted_base())


def remove_tree(path: str) -> None:
    """Remove a directory made by `private_tempdir` and everything in it, read-only or not.
    Nothing is followed: a symbolic link is removed, never its target; if `path` itself is no
    longer a directory we made (a link put in its place), nothing is touched."""
    try:
        fd = os.open(path, os.O_RDONLY | DIRECTORY | NOFOLLOW | CLOEXEC)
    except OSError:
        return
    try:
        if os.fstat(fd).st_uid != os.geteuid():
            return
        _empty(fd)
    finally:
        os.close(fd)
    try:
        os.rmdir(path)
    except OSError:
        pass


def _empty(fd: int) -> None:
    """Remove everything in the directory open as `fd` (making each directory writable first)."""
    try:
        os.fchmod(fd, 0o700)
    except OSError:
        pass
    for name in os.listdir(fd):
        try:
            info = os.lstat(name, dir_fd=fd)
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode):
            try:
                child = os.open(name, os.O_RDONLY | DIRECTORY | NOFOLLOW | CLOEXEC, dir_fd=fd)
            except OSError:
                continue
            try:
                _empty(child)
            finally:
                os.close(child)
            try:
                os.rmdir(name, dir_fd=fd)
            except OSError:
                pass
        else:
            try:
                os.unlink(name, dir_fd=fd)
            except OSError:
                pass


def open_own_file(path: str, what: str) -> int:
    """A descriptor of `path` opened for appending: created 0600, or an existing regular file
    or named pipe that belongs to the effective user (a regular file is made 0600), or a
    character device of the effective user or root (/dev/null). Never opened through a symbolic
    link. UnsafePath (one line naming `what` and `path`) when it is someone else's."""
    try:
        found = os.lstat(path)
    except OSError:
        found = None
    if found is not None and not stat.S_ISLNK(found.st_mode):
        _own(found, what, path)  # before opening: a named pipe of another user is not even opened
    try:
        # non-blocking: a named pipe nobody reads from must not hold the run before the checks
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | NOFOLLOW | CLOEXEC | getattr(os, "O_NONBLOCK", 0), 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath(exc.errno, "%s %s is a symbolic link; give the file itself" % (what, path)) from None
        if exc.errno == errno.ENXIO:
            raise UnsafePath(exc.errno, "%s %s is a named pipe that nobody reads" % (what, path)) from None
        raise
    try:
        os.set_blocking(fd, True)
        info = os.fstat(fd)
        _own(info, what, path)
        if stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) != 0o600:
            os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _own(info: os.stat_result, what: str, path: str) -> None:
    """UnsafePath unless `info` is a file, named pipe or device `open_own_file` may write to."""
    device = stat.S_ISCHR(info.st_mode)  # /dev/null, /dev/full: the system's (root's) own
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISFIFO(info.st_mode) or device):
        raise UnsafePath(errno.EPERM, "%s %s is not a file, a pipe or a terminal" % (what, path))
    if info.st_uid != os.geteuid() and not (device and info.st_uid == 0):
        raise UnsafePath(
            errno.EPERM,
            "%s %s belongs to %s, not to %s: give a file of your own" % (what, path, owner_name(info.st_uid), owner_name(os.geteuid())),
        )


def location_problem(path: str) -> str | None:
    """Why a file Playbook writes at a place it was not told on the command line (the default
    state database under $HOME, a path from configuration or the environment) may not be
    written there: a directory on its way another user controls, or the file is a symbolic
    link of another user. None when it may. Directories not made yet are made by us: the
    nearest one that exists is checked."""
    directory = os.path.dirname(os.path.abspath(path)) or "/"
    while not os.path.lexists(directory) and os.path.dirname(directory) != directory:
        directory = os.path.dirname(directory)
    real, problem = checked_directory(directory)
    if problem is not None:
        return "its directory %s is not yours alone: %s" % (real, problem)
    return link_problem(path)


def link_problem(path: str) -> str | None:
    """Why `path`, when it is a symbolic link, may not be followed (it is another user's)."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if stat.S_ISLNK(info.st_mode) and not _trusted_owner(info.st_uid):
        return "it is a symbolic link of %s" % owner_name(info.st_uid)
    return None


def trusted_file(path: str) -> tuple[int | None, str | None]:
    """(a read-only descriptor of `path`, None) when the file may be trusted: it and a symbolic
    link leading to it belong to the effective user or root, and no one else may write it;
    else (None, why not). A missing file gives (None, None)."""
    try:
        link = os.lstat(path)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, exc.strerror or str(exc)
    if stat.S_ISLNK(link.st_mode) and not _trusted_owner(link.st_uid):
        return None, "it is a symbolic link of %s" % owner_name(link.st_uid)
    try:
        fd = os.open(path, os.O_RDONLY | CLOEXEC)
    except OSError as exc:
        return None, exc.strerror or str(exc)
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = "it is not a regular file"
    elif not _trusted_owner(info.st_uid):
        problem = "it belongs to %s, not to %s" % (owner_name(info.st_uid), _you_or_root())
    elif info.st_mode & 0o022:
        problem = "others may write to it (mode %o; chmod go-w fixes that)" % stat.S_IMODE(info.st_mode)
    if problem is not None:
        os.close(fd)
        return None, problem
    return fd, None


