#!/bin/sh
#=playbook-sha256=0000000000000000000000000000000000000000000000000000000000000000
# ^ SHA-256 of this whole file with those 64 digits as zeros; checked at every start.
# Playbook bundle: @TITLE@
# Built by Playbook @VERSION@; needs CPython @FLOOR@ or newer. Run it: ./@NAME@ --help
#
# This file is a POSIX sh launcher followed by a zip archive that Python runs in place: nothing
# is extracted and nothing is written except the run-state database. It also works as
# `sh @NAME@` and `python3 @NAME@`. PLAYBOOK_PYTHON=/path/to/python3 picks the interpreter.
# The next two lines do nothing in sh. When Python cannot read the zip archive at the end
# (`python3 @NAME@` on a damaged or incomplete copy), it reads this file as a Python script: the
# quote left open there is its first error, and Python shows that line.
: 'playbook: @NAME@ is damaged (Python cannot read the zip archive in it); copy the original bundle again
'
PROBE='import sys; v = sys.version_info; sys.stdout.write("%d.%d" % (v[0], v[1])); sys.exit(3 * int(v[:2] < (@FLOOR_TUPLE@)))'
BOOT='import sys
_playbook_ok = False
try:
    exec(compile(open(sys.argv[1], "rb").read(65536).split(b"\n#=playbook-boot=\n")[1], "boot", "exec"))
except Exception:
    if _playbook_ok:
        raise
    sys.stderr.write("playbook: %s is damaged (its start-up code fails); copy the original bundle again\n" % sys.argv[1])
    sys.exit(4)'
if [ -n "${PLAYBOOK_PYTHON:-}" ]; then
    v=$("$PLAYBOOK_PYTHON" -E -s -S -c "$PROBE" 2>/dev/null) && exec "$PLAYBOOK_PYTHON" -I -S -c "$BOOT" "$0" "$@"
    if [ -n "$v" ]; then v="is Python $v"; else v="does not run"; fi
    echo "playbook: PLAYBOOK_PYTHON=$PLAYBOOK_PYTHON $v; this bundle needs Python @FLOOR@ or newer" >&2
    exit 127
fi
# The interpreter search costs next to nothing whatever PATH holds. Each name (python3 first,
# then python3.X newest first, then python) is looked up in every PATH directory in turn with
# shell built-ins. A wrapper (a file in a directory named shims, as pyenv and asdf make, or a
# shell script) is tried only when no real interpreter qualifies: running one starts a shell,
# and a pyenv shim takes about 150 ms just to say "command not found".
found=""
last=""
search() {  # $1: real or wrapper; probes the candidates of that kind, sets py to the first good one
    want=$1
    set -f
    IFS=:
    for name in @CANDIDATES@; do
        for dir in $PATH; do
            unset IFS
            py=${dir:-.}/$name
            [ -f "$py" ] && [ -x "$py" ] || continue
            [ "$py" -ef "$last" ] 2>/dev/null && continue  # /bin/X when /bin is /usr/bin
            kind=real
            case $dir in */shims | */shims/) kind=wrapper ;; *)
                first=""
                IFS= read -r first 2>/dev/null <"$py"
                unset IFS
                case $first in "#!"*)
                    set -- ${first#??}
                    [ "${1##*/}" = env ] && shift
                    [ "${1:-}" = -S ] && shift
                    case ${1##*/} in *sh) kind=wrapper ;; esac ;;
                esac ;;
            esac
            [ "$kind" = "$want" ] || continue
            last=$py
            v=$("$py" -E -s -S -c "$PROBE" 2>/dev/null) && { set +f; return 0; }
            found="$found${found:+, }$py (${v:-does not run})"
        done
        IFS=:
    done
    unset IFS
    set +f
    return 1
}
if search real || search wrapper; then
    exec "$py" -I -S -c "$BOOT" "$0" "$@"
fi
echo "playbook: this bundle needs Python @FLOOR@ or newer; found: ${found:-no python3 or python on PATH} (set PLAYBOOK_PYTHON to a suitable interpreter)" >&2
exit 127
#=playbook-boot=
# The boot code, run by the `exec` above and by the archive's __main__.py (`python3 @NAME@`):
# refuse an interpreter below the floor, check the embedded SHA-256 of the whole file before
# anything is imported from it, put the bytecode tree for this interpreter (if any) in front of
# the sources, and start the runtime. Python 2 syntax on purpose, so that old interpreters get
# the message instead of a SyntaxError.
def _playbook_boot():
    global _playbook_ok
    import sys

    floor = (@FLOOR_TUPLE@)
    trees = @TREES@

    def fail(code, message):
        sys.stderr.write("playbook: %s\n" % message)
        sys.exit(code)

    if sys.argv[0] == "-c":
        del sys.argv[0]
    if tuple(sys.version_info[:2]) < floor:
        fail(127, "this bundle needs Python %d.%d or newer; %s is Python %d.%d (set PLAYBOOK_PYTHON to a newer python3)"
             % (floor[0], floor[1], sys.executable or "this interpreter", sys.version_info[0], sys.version_info[1]))
    import hashlib
    import os

    path = os.path.abspath(sys.argv[0])
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except (IOError, OSError) as exc:
        fail(4, "cannot read the bundle %s: %s" % (path, exc))
    # Line 2 holds the digest of the whole file computed with the digest itself as 64 zeros.
    start = data.find(b"\n#=playbook-sha256=", 0, 4096) + 19
    stored = data[start:start + 64].decode("ascii", "replace") if start >= 19 else ""
    view = memoryview(data)
    check = hashlib.sha256(view[:start])
    check.update(b"0" * 64)
    check.update(view[start + 64:])
    digest = check.hexdigest()
    del view, data
    if stored != digest:
        fail(4, "%s is damaged or was changed after it was built (its embedded SHA-256 does not match); "
             "copy the original bundle again" % sys.argv[0])
    _playbook_ok = True  # from here on, errors are not damage
    sys.dont_write_bytecode = True
    tree = "py%d%d" % tuple(sys.version_info[:2])
    magic = getattr(sys.modules.get("_frozen_importlib_external"), "MAGIC_NUMBER", None)
    if trees.get(tree) != magic:
        tree = None
    entries = [path + "/" + tree, path] if tree else [path]
    sys.path[:] = entries + [p for p in sys.path if p not in (path, sys.argv[0])]
    if tree:
        # Modules without bytecode in the tree (rarely used parts of rich's dependencies) are
        # found at the same place in the sources.
        from importlib.machinery import PathFinder

        prefix = path + "/" + tree + "/"

        class SourceFallback(object):
            @staticmethod
            def find_spec(name, search=None, target=None):
                alt = [path + "/" + p[len(prefix):] for p in (search or ()) if p.startswith(prefix)]
                return PathFinder.find_spec(name, alt) if alt else None

        sys.meta_path.append(SourceFallback)
    from playbook.runtime.bundle import main

    sys.exit(main(path, sys.argv[1:], digest=digest, tree=tree))


_playbook_boot()
#=playbook-boot=
