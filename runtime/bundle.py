"""The bundle's side of a bundle: what the boot code starts, and the commands only a bundle has.

The boot code (templates/launcher.sh) has checked the file's embedded SHA-256 and set up
sys.path; it calls `main(path, argv, digest, tree)`. `--version`, `verify`, `inspect` and
`extract` are answered here without loading the engine; everything else goes to the runtime CLI
(`playbook.runtime.cli.main(argv, bundle=context)`); the three bundle commands are dispatched
here, so the runtime CLI never imports this module. Files inside the bundle are read by name through the zip importer.
Before the runtime CLI starts, templating is given the bundle's templates compiled at build time
(templating.Precompiled: read when first needed, from the bytecode tree in use, else as source).

A bundle has one identity: the SHA-256 of the file as it is (what `sha256sum FILE` prints),
shown as `bundle sha256: ...` by `playbook compile`, `verify`, `inspect` and the run header.
Line 2 of the file holds a second digest, of the file with those digits as zeros: the boot code
checks it at every start (corruption), and `verify` and `inspect` check it again.

Standard library only, Python 3.9 syntax: this module goes into bundles.
"""

from __future__ import annotations

import json
import os
import sys

from .errors import EXIT_INVALID, EXIT_OK
from .errors import EXIT_STATE as EXIT_BUNDLE

TYPE_CHECKING = False  # typing is not imported at run time (start-up)
if TYPE_CHECKING:
    import argparse
    from typing import Any, Mapping

SIGN_NAMESPACE = "playbook-bundle"
DIGEST_MARK = b"\n#=playbook-sha256="  # line 2 of the launcher, then 64 hex digits
DIGEST_WITHIN = 4096  # the digest field is in the first 4 KiB of the file
IDENTITY_LABEL = "bundle sha256"


class BundleContext:
    """A running bundle: `path`, `manifest`, `plan_bytes`, `entry_points` (plugin name ->
    "module:Class" of the plugins it carries), `digest` (embedded SHA-256, checked at start),
    `tree` (the bytecode tree in use, or None when running from source), `identity` (the
    SHA-256 of the file, computed when first asked for: a few milliseconds)."""

    def __init__(
        self, path: str, manifest: dict[str, Any], plan_bytes: bytes, digest: str | None = None, tree: str | None = None
    ) -> None:
        self.path = path
        self.manifest = manifest
        self.plan_bytes = plan_bytes
        self.digest = digest
        self.tree = tree
        self.entry_points = {name: info["entry_point"] for name, info in manifest.get("plugins", {}).items()}
        self.source_label = "%s (bundle of %s)" % (path, manifest.get("runbook", {}).get("source") or "a runbook")
        self._identity: str | None = None

    @property
    def title(self) -> str:
        return self.manifest.get("runbook", {}).get("title", "")

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @property
    def identity(self) -> str | None:
        """The bundle's identity: SHA-256 (hex) of the file; None when it cannot be read."""
        if self._identity is None:
            import hashlib

            try:
                self._identity = hashlib.sha256(_read_file(self.path)).hexdigest()
            except OSError:
                return None
        return self._identity

    @property
    def identity_line(self) -> str:
        """The identity as every command shows it (`bundle sha256: ...`)."""
        return identity_text(self.identity)


def identity_text(sha256: str | None) -> str:
    """How the identity is shown everywhere: `bundle sha256: <64 hex digits>`."""
    return "%s: %s" % (IDENTITY_LABEL, sha256 or "? (the file cannot be read)")


def embedded_digest(data: bytes) -> tuple[str, str | None]:
    """(the digest line 2 holds, the SHA-256 of the file with that field as 64 zeros); the
    first is "" when the file has no digest field."""
    import hashlib

    start = data.find(DIGEST_MARK, 0, DIGEST_WITHIN)
    if start < 0:
        return "", None
    start += len(DIGEST_MARK)
    stored = data[start : start + 64].decode("ascii", "replace")
    check = hashlib.sha256(data[:start])
    check.update(b"0" * 64)
    check.update(data[start + 64 :])
    return stored, check.hexdigest()


def _read_file(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def read(path: str, name: str) -> bytes:
    """The bytes of the archive member `name` (read through the zip importer, whose directory
    of the archive is already in memory)."""
    import zipimport

    return zipimport.zipimporter(path).get_data(name)


def open_bundle(path: str, digest: str | None = None, tree: str | None = None) -> BundleContext:
    manifest = json.loads(read(path, "manifest.json").decode("utf-8"))
    return BundleContext(path, manifest, read(path, "plan.json"), digest=digest, tree=tree)


def version_line(bundle: BundleContext) -> str:
    return "playbook %s (bundle of %s)" % (bundle.manifest.get("playbook_version", "?"), bundle.title or "a runbook")


def main(path: str, argv: list[str], digest: str | None = None, tree: str | None = None) -> int:
    """Entry point of a bundle (called by the boot code). Returns the exit code."""
    from .errors import guard

    return guard(lambda: _dispatch(path, argv, digest, tree))


def _dispatch(path: str, argv: list[str], digest: str | None, tree: str | None) -> int:
    try:
        bundle = open_bundle(path, digest, tree)
    except (OSError, ValueError, KeyError) as exc:
        sys.stderr.write("playbook: %s is not a usable bundle: %s\n" % (path, exc))
        return EXIT_BUNDLE
    if argv and argv[0] in ("--version", "-V", "version"):
        sys.stdout.write(version_line(bundle) + "\n")
        return EXIT_OK
    if argv and argv[0] in COMMANDS:
        return command(argv[0], argv[1:], bundle)
    if argv and argv[0] == "follow":  # fleet's looks, one per host event: without the engine (detach.py)
        from . import detach

        return detach.follow_command(argv[1:], "./%s" % bundle.name, lambda text: print(text, flush=True))
    from . import cli, templating

    templating.use_precompiled(templating.Precompiled(lambda name: read(path, name), tree))

    if argv and argv[0] in ("run", "resume"):
        directory = provide_files(bundle)
        try:
            return cli.main(argv, bundle=bundle)
        finally:
            if directory:
                remove_files(directory)
    if not argv or argv[0] in ("-h", "--help", "help"):
        prog = "./%s" % bundle.name
        sys.stdout.write("%s\n\n" % version_line(bundle))
        cli.build_parser(bundle, prog=prog).print_help()
        sys.stdout.write(
            "\nalso:\n  %s --version    the Playbook version and the runbook\n"
            "  %s COMMAND --help   the options of a command\n" % (prog, prog)
        )
        return EXIT_OK if argv else EXIT_INVALID
    return cli.main(argv, bundle=bundle)


# -- the runbook's files ---------------------------------------------------------------------------
FILES_PREFIX = "files/"  # where the bundle holds the runbook's [runbook] files


def provide_files(bundle: BundleContext) -> str | None:
    """Copy the files the bundle carries into a fresh private directory (0700 while it is
    filled, then directories 0500, files 0400, executables 0500), each checked against its
    SHA-256 in the manifest, and point PLAYBOOK_RUNBOOK_DIR (and so `{{ runbook_dir }}`) at
    it. Returns the directory (the caller removes it) or None when the bundle carries none."""
    import hashlib
    import zipimport

    from .errors import BundleError
    from .private import private_tempdir
    from .templating import RUNBOOK_DIR_ENV

    entries = bundle.manifest.get("files") or []
    os.environ.pop(RUNBOOK_DIR_ENV, None)  # never a directory inherited from another run
    if not entries:
        return None
    try:
        directory = private_tempdir("playbook-files-")
    except OSError as exc:
        raise BundleError("cannot provide the runbook's files: %s" % (exc.strerror or exc)) from None
    try:
        archive = zipimport.zipimporter(bundle.path)
        for entry in entries:
            path = entry["path"]
            parts = path.split("/")
            if path.startswith("/") or ".." in parts or "" in parts:
                raise BundleError("the bundle lists the file %r, which is outside the runbook's directory" % path)
            data = archive.get_data(FILES_PREFIX + path)
            if hashlib.sha256(data).hexdigest() != entry["sha256"]:
                raise BundleError("the bundle's file %s does not match its SHA-256 in the manifest" % path)
            target = os.path.join(directory, *parts)
            os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(target, 0o500 if entry.get("executable") else 0o400)
        for top, _, _ in os.walk(directory, topdown=False):
            os.chmod(top, 0o500)
    except BaseException as exc:
        remove_files(directory)
        if isinstance(exc, (OSError, KeyError)):
            raise BundleError("cannot provide the runbook's files in %s: %s" % (directory, exc)) from None
        raise
    os.environ[RUNBOOK_DIR_ENV] = directory
    return directory


def remove_files(directory: str) -> None:
    """Remove a directory made by provide_files (read-only as it is), following no link."""
    from .private import remove_tree

    remove_tree(directory)


def command(name: str, argv: list[str], bundle: BundleContext) -> int:
    """Run one of the bundle's own commands (`verify`, `inspect`, `extract`)."""
    return COMMANDS[name](argv, bundle)


def _parser(bundle: BundleContext, name: str, description: str, epilog: str) -> argparse.ArgumentParser:
    import argparse

    return argparse.ArgumentParser(
        prog="./%s %s" % (bundle.name, name),
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


# -- what inspect and verify check -------------------------------------------------------------
class Examined:
    """A bundle as found now: `identity` (SHA-256 of the file), the plan's `plan_sha256`,
    `nodes`, `baked` and `host` variables and `source_sha256` recomputed from plan.json (None
    where it cannot be read), and `problems`: each way the file differs from its embedded
    SHA-256, or the manifest from the plan inside."""

    def __init__(self) -> None:
        self.identity: str | None = None
        self.plan_sha256: str | None = None
        self.nodes: int | None = None
        self.baked: list[str] | None = None
        self.host: list[str] | None = None
        self.source_sha256: str | None = None
        self.problems: list[str] = []


def examine(bundle: BundleContext) -> Examined:
    """Check the file against line 2 and the manifest against plan.json, from the bytes on
    disk now (not what was checked at start)."""
    import hashlib

    found = Examined()
    try:
        data = _read_file(bundle.path)
    except OSError as exc:
        found.problems.append("cannot read %s: %s" % (bundle.path, exc.strerror or exc))
        return found
    found.identity = hashlib.sha256(data).hexdigest()
    stored, computed = embedded_digest(data)
    if stored != computed:
        found.problems.append(
            "the file does not match its embedded SHA-256 (line 2 says %s, the file gives %s): "
            "it is damaged or was changed after it was built" % (stored or "nothing", computed)
        )
    found.plan_sha256 = hashlib.sha256(bundle.plan_bytes).hexdigest()
    try:
        plan = json.loads(bundle.plan_bytes.decode("utf-8"))
        values, variables = plan.get("values") or {}, plan.get("variables") or {}
        found.nodes = len(plan["nodes"])
        found.baked = sorted(values)
        found.host = sorted(k for k in variables if k not in values)
        found.source_sha256 = (plan.get("source") or {}).get("sha256", "")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        found.problems.append("plan.json inside cannot be read: %s" % exc)
        return found
    _compare_manifest(bundle.manifest, found)
    return found


def _compare_manifest(manifest: Mapping[str, Any], found: Examined) -> None:
    plan = manifest.get("plan", {})
    for label, said, actual in (
        ("plan sha256", plan.get("sha256"), found.plan_sha256),
        ("number of nodes", plan.get("nodes"), found.nodes),
        ("variables given at build time", plan.get("baked_variables"), found.baked),
        ("variables taken on the host", plan.get("host_variables"), found.host),
        ("runbook source sha256", manifest.get("runbook", {}).get("source_sha256"), found.source_sha256),
    ):
        if said != actual:
            found.problems.append("the manifest says %s %s, but plan.json inside gives %s" % (label, _shown(said), _shown(actual)))


def _shown(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(value) or "none"
    return "nothing" if value is None else str(value)


def _report_problems(found: Examined) -> int:
    for problem in found.problems:
        sys.stderr.write("error: %s\n" % problem)
    return EXIT_BUNDLE if found.problems else EXIT_OK


# -- inspect -------------------------------------------------------------------------------------
def _size(path: str) -> int | None:
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def inspect_text(bundle: BundleContext, found: Examined) -> str:
    """`inspect` in words: the plan's facts as recomputed from plan.json, the rest from the
    manifest."""
    return "\n".join(_runbook_lines(bundle, found) + _runtime_lines(bundle.manifest, bundle.tree) + _contents_lines(bundle, found))


def _runbook_lines(bundle: BundleContext, found: Examined) -> list[str]:
    runbook = bundle.manifest.get("runbook", {})
    by = " by %s" % runbook["author"] if runbook.get("author") else ""
    version = " %s" % runbook["version"] if runbook.get("version") else ""
    nodes = "? nodes" if found.nodes is None else "%d node%s" % (found.nodes, "" if found.nodes == 1 else "s")
    lines = [
        "%s: Playbook bundle of \"%s\"%s%s" % (_visible(bundle.name), _visible(runbook.get("title", "")), version, by),
        "  source:       %s (sha256 %s)" % (runbook.get("source", "?"), found.source_sha256 or "?"),
        "  plan:         %s, sha256 %s" % (nodes, found.plan_sha256),
    ]
    lines.append("  " + rehearsal_text(bundle.manifest.get("rehearsal")).replace(": ", ":    ", 1))
    if found.baked:
        lines.append("  given at build time: %s" % ", ".join(found.baked))
    if found.host:
        lines.append("  taken on this host:  %s (--var, --vars-file, --vars-env or a prompt)" % ", ".join(found.host))
    return lines


def rehearsal_text(rehearsal: Mapping[str, Any] | None) -> str:
    """What the manifest says of `compile --test`: the scenarios that passed before the build."""
    if not rehearsal:
        return "rehearsed: no (built without --test)"
    count = rehearsal.get("passed", 0)
    return "rehearsed: %d scenario%s passed before the build (%s, sha256 %s)" % (
        count, "" if count == 1 else "s", _visible(rehearsal.get("scenarios_file", "?")), rehearsal.get("scenarios_sha256", "?"))


def _visible(text: str) -> str:
    """A name as it may be printed: control characters (a line break, an escape sequence) shown
    as \\xNN, never sent to the terminal."""
    return "".join("\\x%02x" % ord(c) if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 else c for c in str(text))


def _runtime_lines(manifest: Mapping[str, Any], tree: str | None) -> list[str]:
    lines = ["  playbook:     %s" % manifest.get("playbook_version", "?")]
    floor_from = "; ".join(manifest.get("floor_from", []))
    lines.append("  python:       CPython %s or newer%s" % (manifest.get("python_floor", "?"), " (set by %s)" % floor_from if floor_from else ""))
    trees = ", ".join(b["python"] for b in manifest.get("bytecode", []))
    running = "%d.%d" % sys.version_info[:2]
    now = "bytecode" if tree else "sources (no bytecode for %s)" % running
    lines.append("  bytecode for: %s; this interpreter (%s) runs from %s" % (trees or "none", running, now))
    for name, info in sorted(manifest.get("plugins", {}).items()):
        lines.append("  plugin:       %s = %s (%s %s)" % (name, info.get("entry_point"), info.get("distribution"), info.get("version", "")))
    return lines


def _contents_lines(bundle: BundleContext, found: Examined) -> list[str]:
    m = bundle.manifest
    lines = ["  contents:", "    playbook %s (runtime only)" % m.get("playbook_version", "?")]
    for dist in m.get("distributions", []):
        why = "needed by %s" % ", ".join(dist["required_by"]) if dist.get("required_by") else dist.get("role", "")
        lines.append("    %s %s (%s; Python %s)" % (dist["name"], dist["version"], why, dist.get("requires_python") or "any"))
    if m.get("precompiled_templates"):
        lines.append("    %d templates and expressions compiled at build time" % m["precompiled_templates"])
    for entry in m.get("files", []):
        mode = "executable" if entry.get("executable") else "read-only"
        lines.append("    file %s (%d bytes, %s, sha256 %s)" % (_visible(entry["path"]), entry.get("size", 0), mode, entry["sha256"]))
    size = _size(bundle.path)
    if size is not None:
        lines.append("  size:         %.1f MB" % (size / 1e6))
    lines.append("  built:        %s" % (m.get("built_at") or "time not recorded (SOURCE_DATE_EPOCH was not set)"))
    lines.append("  " + identity_text(found.identity))
    if found.problems:
        count = len(found.problems)
        lines.append("  integrity:    NOT OK (%d error%s; see below)" % (count, "" if count == 1 else "s"))
    else:
        lines.append("  integrity:    ok (the file matches its embedded SHA-256; the manifest matches the plan inside)")
    return lines


def cmd_inspect(argv: list[str], bundle: BundleContext) -> int:
    parser = _parser(
        bundle,
        "inspect",
        "What is inside this bundle: runbook, versions, contents, Python floor, bytecode targets.\n"
        "Checks what it shows: the file against its embedded SHA-256 and the manifest against the\n"
        "plan inside (exit 4 when they differ).",
        "example:\n  ./%s inspect --json" % bundle.name,
    )
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON")
    args = parser.parse_args(argv)
    found = examine(bundle)
    if args.json:
        data = dict(bundle.manifest)
        data["bundle"] = {
            "path": bundle.path,
            "size": _size(bundle.path),
            "sha256": found.identity,
            "problems": found.problems,
            "running_python": "%d.%d.%d" % sys.version_info[:3],
            "running_bytecode": bundle.tree,
        }
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(inspect_text(bundle, found) + "\n")
    return _report_problems(found)


# -- verify --------------------------------------------------------------------------------------
def _ssh_keygen(args: list[str], data: bytes) -> tuple[int | None, str]:
    import subprocess

    try:
        proc = subprocess.run(["ssh-keygen"] + args, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        return None, "ssh-keygen is not available (%s); signatures need OpenSSH 8.0 or newer" % exc
    out = (proc.stdout + proc.stderr).decode("utf-8", "replace").strip()
    return proc.returncode, out


class _Refused(Exception):
    """verify cannot go on: the message for stderr and the exit code."""

    def __init__(self, message: str, code: int = EXIT_BUNDLE) -> None:
        super().__init__(message)
        self.code = code


def cmd_verify(argv: list[str], bundle: BundleContext) -> int:
    parser = _parser(
        bundle,
        "verify",
        "Check this bundle: the file against its embedded SHA-256 and the manifest against the\n"
        "plan inside (always; the SHA-256 is also checked at every start), and, with\n"
        "--allowed-signers, its detached signature (BUNDLE.sig, written by\n"
        "`playbook compile --sign-key`) with `ssh-keygen -Y verify`. Exit 0 verified, 4 not.",
        "examples:\n  ./%s verify\n  ./%s verify --allowed-signers /etc/playbook/allowed_signers\n"
        "  ./%s verify --allowed-signers allowed_signers --identity release@example.com"
        % (bundle.name, bundle.name, bundle.name),
    )
    parser.add_argument("--allowed-signers", metavar="FILE", help="OpenSSH allowed-signers file of trusted keys")
    parser.add_argument("--identity", metavar="ID", help="the signer the signature must come from (default: any allowed signer)")
    parser.add_argument("--signature", metavar="SIG", help="the signature file (default: the bundle's path + .sig)")
    args = parser.parse_args(argv)
    if (args.identity or args.signature) and not args.allowed_signers:
        sys.stderr.write("error: --identity and --signature need --allowed-signers\n")
        return EXIT_INVALID
    found = examine(bundle)
    sys.stdout.write(identity_text(found.identity) + "\n")
    if found.problems:
        sys.stderr.write("NOT VERIFIED: the integrity check failed\n")
        return _report_problems(found)
    sys.stdout.write("integrity: ok — the file matches its embedded SHA-256 and the manifest matches the plan inside\n")
    if not args.allowed_signers:
        if os.path.isfile(bundle.path + ".sig"):
            sys.stdout.write("authenticity: not checked (give --allowed-signers FILE to check the signature %s.sig)\n" % bundle.path)
        else:
            sys.stdout.write(
                "authenticity: not checked: there is no signature beside it (%s.sig); a bundle is signed with "
                "`playbook compile --sign-key KEY`, and the .sig file travels with it\n" % bundle.path
            )
        return EXIT_OK
    try:
        identity = _verify_signature(bundle, args.allowed_signers, args.signature or bundle.path + ".sig", args.identity)
    except _Refused as exc:
        sys.stderr.write("%s\n" % exc)
        return exc.code
    sys.stdout.write("authenticity: VERIFIED — %s was signed by %s\n" % (bundle.name, identity))
    return EXIT_OK


def _verify_signature(bundle: BundleContext, signers: str, sig: str, identity: str | None) -> str:
    """The signer (and ssh-keygen's words) when `sig` is a valid signature of the bundle by
    `identity`, or by any key of the allowed-signers file; raises _Refused otherwise."""
    if not os.path.isfile(sig):
        raise _Refused("error: no signature: %s does not exist (copy it with the bundle, or give --signature)" % sig)
    if not os.path.isfile(signers):
        raise _Refused("error: allowed-signers file %s does not exist" % signers, EXIT_INVALID)
    data = _read_file(bundle.path)
    identities = [identity] if identity else _signers_of(bundle, signers, sig, data)
    last = ""
    for candidate in identities:
        code, text = _ssh_keygen(["-Y", "verify", "-f", signers, "-I", candidate, "-n", SIGN_NAMESPACE, "-s", sig], data)
        if code is None:
            raise _Refused("error: %s" % text)
        if code == 0:
            detail = text.splitlines()[-1] if text else ""
            return "%s (namespace %s; %s)" % (candidate, SIGN_NAMESPACE, detail)
        last = text
    raise _Refused(
        "NOT VERIFIED: the signature %s does not match %s for %s: %s"
        % (sig, bundle.name, " or ".join(identities), last.splitlines()[-1] if last else "verification failed")
    )


def _signers_of(bundle: BundleContext, signers: str, sig: str, data: bytes) -> list[str]:
    """The principals of the allowed-signers file whose key made `sig`."""
    code, text = _ssh_keygen(["-Y", "find-principals", "-s", sig, "-f", signers], data)
    if code is None:
        raise _Refused("error: %s" % text)
    found = [line.strip() for line in text.splitlines() if line.strip()] if code == 0 else []
    if not found:
        raise _Refused("NOT VERIFIED: %s is not signed by any key in %s (%s)" % (bundle.name, signers, text or "no match"))
    return found


# -- extract -------------------------------------------------------------------------------------
def cmd_extract(argv: list[str], bundle: BundleContext) -> int:
    parser = _parser(
        bundle,
        "extract",
        "Unpack the bundle's archive into DIR for inspection (running it never needs this),\n"
        "plus launcher.sh: the sh launcher and boot code at the top of the file.",
        "example:\n  ./%s extract /tmp/deploy-bundle" % bundle.name,
    )
    parser.add_argument("directory", metavar="DIR", help="a new or empty directory")
    args = parser.parse_args(argv)
    import zipfile

    target = os.path.abspath(args.directory)
    if os.path.exists(target) and (not os.path.isdir(target) or os.listdir(target)):
        sys.stderr.write("error: %s exists and is not an empty directory\n" % args.directory)
        return EXIT_INVALID
    try:
        with zipfile.ZipFile(bundle.path) as archive:
            names = archive.namelist()
            for name in names:
                dest = os.path.normpath(os.path.join(target, name))
                if not dest.startswith(target + os.sep):
                    sys.stderr.write("error: refusing the archive member %r (outside the directory)\n" % name)
                    return EXIT_BUNDLE
                if name.endswith("/"):
                    continue
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                with archive.open(name) as src, open(dest, "wb") as dst:
                    dst.write(src.read())
            with open(bundle.path, "rb") as handle:
                head = handle.read(65536)
            first = min((info.header_offset for info in archive.infolist()), default=0)
        with open(os.path.join(target, "launcher.sh"), "wb") as dst:
            dst.write(head[:first])
    except OSError as exc:
        sys.stderr.write("error: cannot extract to %s: %s\n" % (args.directory, exc))
        return EXIT_BUNDLE
    sys.stdout.write("extracted %d files and launcher.sh to %s\n" % (len(names), args.directory))
    return EXIT_OK


COMMANDS = {"verify": cmd_verify, "inspect": cmd_inspect, "extract": cmd_extract}
