"""The bundle's side of a bundle: what the boot code starts, and the commands only a bundle has.

The boot code (templates/launcher.sh) has checked the file's embedded SHA-256 and set up
sys.path; it calls `main(path, argv, digest, tree)`. `--version`, `verify`, `inspect` and
`extract` are answered here without loading the engine; everything else goes to the runtime CLI
(`playbook.runtime.cli.main(argv, bundle=context)`); the three bundle commands are dispatched
here, so the runtime CLI never imports this module. Files inside the bundle are read by name through the zip importer.

Standard library only, Python 3.9 syntax: this module goes into bundles.
"""

import json
import os
import sys

SIGN_NAMESPACE = "playbook-bundle"
from .errors import EXIT_INVALID, EXIT_OK
from .errors import EXIT_STATE as EXIT_BUNDLE


class BundleContext:
    """A running bundle: `path`, `manifest`, `plan_bytes`, `entry_points` (plugin name ->
    "module:Class" of the plugins it carries), `digest` (embedded SHA-256, checked at start),
    `tree` (the bytecode tree in use, or None when running from source)."""

    def __init__(self, path, manifest, plan_bytes, digest=None, tree=None):
        self.path = path
        self.manifest = manifest
        self.plan_bytes = plan_bytes
        self.digest = digest
        self.tree = tree
        self.entry_points = {name: info["entry_point"] for name, info in manifest.get("plugins", {}).items()}
        self.source_label = "%s (bundle of %s)" % (path, manifest.get("runbook", {}).get("source") or "a runbook")

    @property
    def title(self):
        return self.manifest.get("runbook", {}).get("title", "")

    @property
    def name(self):
        return os.path.basename(self.path)


def read(path, name):
    """The bytes of the archive member `name` (read through the zip importer, whose directory
    of the archive is already in memory)."""
    import zipimport

    return zipimport.zipimporter(path).get_data(name)


def open_bundle(path, digest=None, tree=None):
    manifest = json.loads(read(path, "manifest.json").decode("utf-8"))
    return BundleContext(path, manifest, read(path, "plan.json"), digest=digest, tree=tree)


def version_line(bundle):
    return "playbook %s (bundle of %s)" % (bundle.manifest.get("playbook_version", "?"), bundle.title or "a runbook")


def main(path, argv, digest=None, tree=None):
    """Entry point of a bundle (called by the boot code). Returns the exit code."""
    from .errors import guard

    return guard(lambda: _dispatch(path, argv, digest, tree))


def _dispatch(path, argv, digest, tree):
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
    from . import cli

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


def command(name, argv, bundle):
    """Run one of the bundle's own commands (`verify`, `inspect`, `extract`)."""
    return COMMANDS[name](argv, bundle)


def _parser(bundle, name, description, epilog):
    import argparse

    return argparse.ArgumentParser(
        prog="./%s %s" % (bundle.name, name),
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


# -- inspect -------------------------------------------------------------------------------------
def _size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def inspect_text(bundle):
    m = bundle.manifest
    runbook = m.get("runbook", {})
    plan = m.get("plan", {})
    lines = []
    by = " by %s" % runbook["author"] if runbook.get("author") else ""
    version = " %s" % runbook["version"] if runbook.get("version") else ""
    lines.append("%s: Playbook bundle of \"%s\"%s%s" % (bundle.name, runbook.get("title", ""), version, by))
    lines.append("  source:       %s (sha256 %s)" % (runbook.get("source", "?"), runbook.get("source_sha256", "?")))
    lines.append("  plan:         %d node%s, sha256 %s" % (plan.get("nodes", 0), "" if plan.get("nodes") == 1 else "s", plan.get("sha256", "?")))
    if plan.get("baked_variables"):
        lines.append("  given at build time: %s" % ", ".join(plan["baked_variables"]))
    if plan.get("host_variables"):
        lines.append("  taken on this host:  %s (--var, --vars-file, --vars-env or a prompt)" % ", ".join(plan["host_variables"]))
    lines.append("  playbook:     %s" % m.get("playbook_version", "?"))
    floor_from = "; ".join(m.get("floor_from", []))
    lines.append("  python:       CPython %s or newer%s" % (m.get("python_floor", "?"), " (set by %s)" % floor_from if floor_from else ""))
    trees = ", ".join(b["python"] for b in m.get("bytecode", []))
    running = "%d.%d" % sys.version_info[:2]
    now = "bytecode" if bundle.tree else "sources (no bytecode for %s)" % running
    lines.append("  bytecode for: %s; this interpreter (%s) runs from %s" % (trees or "none", running, now))
    if m.get("plugins"):
        for name, info in sorted(m["plugins"].items()):
            lines.append("  plugin:       %s = %s (%s %s)" % (name, info.get("entry_point"), info.get("distribution"), info.get("version", "")))
    lines.append("  contents:")
    lines.append("    playbook %s (runtime only)" % m.get("playbook_version", "?"))
    for dist in m.get("distributions", []):
        why = dist.get("role", "")
        if dist.get("required_by"):
            why = "needed by %s" % ", ".join(dist["required_by"])
        lines.append("    %s %s (%s; Python %s)" % (dist["name"], dist["version"], why, dist.get("requires_python") or "any"))
    size = _size(bundle.path)
    if size is not None:
        lines.append("  size:         %.1f MB" % (size / 1e6))
    lines.append("  built:        %s" % (m.get("built_at") or "time not recorded (SOURCE_DATE_EPOCH was not set)"))
    lines.append("  integrity:    embedded sha256 %s (checked at start: ok)" % (bundle.digest or "?"))
    return "\n".join(lines)


def cmd_inspect(argv, bundle):
    parser = _parser(
        bundle,
        "inspect",
        "What is inside this bundle: runbook, versions, contents, Python floor, bytecode targets.",
        "example:\n  ./%s inspect --json" % bundle.name,
    )
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON")
    args = parser.parse_args(argv)
    if args.json:
        data = dict(bundle.manifest)
        data["bundle"] = {
            "path": bundle.path,
            "size": _size(bundle.path),
            "embedded_sha256": bundle.digest,
            "running_python": "%d.%d.%d" % sys.version_info[:3],
            "running_bytecode": bundle.tree,
        }
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(inspect_text(bundle) + "\n")
    return EXIT_OK


# -- verify --------------------------------------------------------------------------------------
def _ssh_keygen(args, data):
    import subprocess

    try:
        proc = subprocess.run(["ssh-keygen"] + args, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        return None, "ssh-keygen is not available (%s); signatures need OpenSSH 8.0 or newer" % exc
    out = (proc.stdout + proc.stderr).decode("utf-8", "replace").strip()
    return proc.returncode, out


def cmd_verify(argv, bundle):
    parser = _parser(
        bundle,
        "verify",
        "Check this bundle: its embedded SHA-256 (always; it is also checked at every start)\n"
        "and, with --allowed-signers, its detached signature (BUNDLE.sig, written by\n"
        "`playbook compile --sign-key`) with `ssh-keygen -Y verify`. Exit 0 verified, 4 not.",
        "examples:\n  ./%s verify\n  ./%s verify --allowed-signers /etc/playbook/allowed_signers\n"
        "  ./%s verify --allowed-signers allowed_signers --identity release@example.com"
        % (bundle.name, bundle.name, bundle.name),
    )
    parser.add_argument("--allowed-signers", metavar="FILE", help="OpenSSH allowed-signers file of trusted keys")
    parser.add_argument("--identity", metavar="ID", help="the signer the signature must come from (default: any allowed signer)")
    parser.add_argument("--signature", metavar="SIG", help="the signature file (default: the bundle's path + .sig)")
    args = parser.parse_args(argv)
    out = sys.stdout
    out.write("integrity: ok — the embedded SHA-256 %s matches the file\n" % bundle.digest)
    if not args.allowed_signers:
        if args.identity or args.signature:
            sys.stderr.write("error: --identity and --signature need --allowed-signers\n")
            return EXIT_INVALID
        out.write("authenticity: not checked (give --allowed-signers FILE to check the signature %s.sig)\n" % bundle.path)
        return EXIT_OK
    sig = args.signature or bundle.path + ".sig"
    if not os.path.isfile(sig):
        sys.stderr.write("error: no signature: %s does not exist (copy it with the bundle, or give --signature)\n" % sig)
        return EXIT_BUNDLE
    if not os.path.isfile(args.allowed_signers):
        sys.stderr.write("error: allowed-signers file %s does not exist\n" % args.allowed_signers)
        return EXIT_INVALID
    with open(bundle.path, "rb") as handle:
        data = handle.read()
    identities = [args.identity] if args.identity else []
    if not identities:
        code, text = _ssh_keygen(["-Y", "find-principals", "-s", sig, "-f", args.allowed_signers], data)
        if code is None:
            sys.stderr.write("error: %s\n" % text)
            return EXIT_BUNDLE
        identities = [line.strip() for line in text.splitlines() if line.strip() and code == 0]
        if not identities:
            sys.stderr.write(
                "NOT VERIFIED: %s is not signed by any key in %s (%s)\n" % (bundle.name, args.allowed_signers, text or "no match")
            )
            return EXIT_BUNDLE
    for identity in identities:
        code, text = _ssh_keygen(
            ["-Y", "verify", "-f", args.allowed_signers, "-I", identity, "-n", SIGN_NAMESPACE, "-s", sig], data
        )
        if code is None:
            sys.stderr.write("error: %s\n" % text)
            return EXIT_BUNDLE
        if code == 0:
            detail = text.splitlines()[-1] if text else ""
            out.write(
                "authenticity: VERIFIED — %s was signed by %s (namespace %s; %s)\n"
                % (bundle.name, identity, SIGN_NAMESPACE, detail)
            )
            return EXIT_OK
        last = text
    sys.stderr.write(
        "NOT VERIFIED: the signature %s does not match %s for %s: %s\n"
        % (sig, bundle.name, " or ".join(identities), (last or "").splitlines()[-1] if last else "verification failed")
    )
    return EXIT_BUNDLE


# -- extract -------------------------------------------------------------------------------------
def cmd_extract(argv, bundle):
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
