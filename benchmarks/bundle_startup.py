"""Bundle size and start-up time, per interpreter, next to the installed tool.

Builds the deployment example twice — with bytecode for every CPython 3.9-3.13 found (the
default) and with `--no-bytecode` — then times, as the median of N runs (wall-clock and CPU
time), each in a bare environment (HOME a fresh directory, PATH=/usr/bin:/bin, PLAYBOOK_PYTHON
set, which the launcher checks like any candidate it finds on PATH):

  python -c pass                     the interpreter alone
  ./deploy.pyz --version             launcher + integrity check + manifest
  ./deploy.pyz plan --var ...        + the runtime, Jinja and the plan
  python -I -S deploy.pyz --version  the same without the sh launcher's interpreter probe

and, in the same run, the installed `playbook --version` and `playbook plan FILE --var ...`
(the virtual environment's interpreter; `plan` there also compiles the TOML file), and what the
bundle's identity costs where it is shown (verify, inspect, the run header): reading and
hashing the file, in this process.
Targets (issue 4): with bytecode within 50 ms of the installed tool; without under 1 s; size
under 6 MB with five bytecode trees.

Then the launcher's interpreter search (issue 13), `./deploy.pyz --version` without
PLAYBOOK_PYTHON: with the machine's real PATH (where pyenv or asdf shims may come first), with a
PATH of slow fake shims (shell scripts that sleep 0.15 s, as a pyenv shim takes to say "command
not found") in front of /usr/bin:/bin, and with PLAYBOOK_PYTHON set to the interpreter the search
picks, the floor (target: the search costs at most 5 ms). `--compare OLD.pyz` times another
bundle (e.g. one built before a change) in the same rounds; `--discovery-only` skips the table.

Then the templates compiled at build time (issue 13): `./deploy.pyz plan --var ENVIRONMENT=prod`
per interpreter (PLAYBOOK_PYTHON set) in three versions of the same bundle, in interleaved
rounds: as built (each bytecode tree holds the templates compiled by its interpreter, marshal),
with only the generated Python source (the host runs compile() on it, as an interpreter without
a tree does), and without precompiled templates (Jinja lexes, parses and generates code on the
host, as before); with the sizes. Then, in this process, the store of a runbook with 1,000 and
10,000 distinct templates read through the zip importer: the first lookup (reading the index)
and each further one, against Jinja compiling one template. `--templates-only` runs only this.

    .venv/bin/python benchmarks/bundle_startup.py [--runs 15] [--compare OLD.pyz] [--discovery-only]
    .venv/bin/python benchmarks/bundle_startup.py --templates-only [--runs 15]
"""

import argparse
import glob
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXAMPLE = os.path.join(ROOT, "examples", "deploy.playbook.toml")
PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "playbook")
PYENV = os.path.join(os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv"), "versions")


def interpreters():
    found = []
    for minor in range(9, 14):
        versions = sorted(glob.glob(os.path.join(PYENV, "3.%d.*" % minor, "bin", "python3")))
        if versions:
            found.append(("3.%d" % minor, versions[-1]))
    if not found:
        found.append(("%d.%d" % sys.version_info[:2], sys.executable))
    return found


def run_once(cmd, env, cwd):
    """(wall-clock s, CPU s) of one run. CPU time (user + system of the process and the children
    it waited for, e.g. the launcher's probe) is less disturbed by other load than wall-clock."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit("failed: %s\n%s" % (" ".join(cmd), proc.stderr.decode(errors="replace")))
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def measure(commands, runs, cwd):
    """{key: (median wall ms, median CPU ms)}. Rounds go over every command in turn, so that a
    burst of load elsewhere on the machine hits all of them alike; one warm-up round first."""
    samples = {key: [] for key in commands}
    for round_number in range(runs + 1):
        for key, (cmd, env) in commands.items():
            result = run_once(cmd, env, cwd)
            if round_number:
                samples[key].append(result)
    return {
        key: (statistics.median(w for w, _ in values) * 1000, statistics.median(c for _, c in values) * 1000)
        for key, values in samples.items()
    }


def cell(value):
    return "%.0f/%.0f" % value


def identity_cost(path, runs):
    """Median ms of computing a bundle's identity (the SHA-256 of the file) the first time."""
    from playbook.runtime.bundle import open_bundle

    samples = []
    for _ in range(runs):
        bundle = open_bundle(path)
        start = time.perf_counter()
        assert bundle.identity
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def build(out, *extra):
    cmd = [PLAYBOOK, "compile", EXAMPLE, "-o", out] + list(extra)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return os.path.getsize(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="rounds of measurements (medians are reported)")
    parser.add_argument("--compare", metavar="OLD.pyz", help="also time the interpreter search of this bundle")
    parser.add_argument("--discovery-only", action="store_true", help="only the interpreter search")
    parser.add_argument("--templates-only", action="store_true", help="only the templates compiled at build time")
    args = parser.parse_args()
    if not os.path.exists(PLAYBOOK):
        raise SystemExit("run with the virtual environment's python (.venv/bin/python): %s not found" % PLAYBOOK)
    work = tempfile.mkdtemp(prefix="playbook-bench-")
    try:
        report(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(args, work):
    home = os.path.join(work, "home")
    os.mkdir(home)
    fast = os.path.join(work, "deploy.pyz")
    slow = os.path.join(work, "deploy-nobytecode.pyz")
    if args.discovery_only or args.templates_only:
        build(fast)
        (templates if args.templates_only else discovery)(args, work, home, fast)
        return
    start = time.perf_counter()
    size_fast = build(fast)
    built = time.perf_counter() - start
    size_slow = build(slow, "--no-bytecode")
    plan_args = ["plan", "--var", "ENVIRONMENT=staging"]

    print("Bundle of examples/deploy.playbook.toml (median of %d runs, ms; machine: %d CPUs)" % (args.runs, os.cpu_count() or 0))
    print("  with bytecode for every interpreter found: %.2f MB (built in %.1f s)" % (size_fast / 1e6, built))
    print("  sources only (--no-bytecode):              %.2f MB" % (size_slow / 1e6))
    print()
    env = dict(os.environ, NO_COLOR="1")
    commands = {
        "tool --version": ([PLAYBOOK, "--version"], env),
        "tool plan": ([PLAYBOOK, "plan", EXAMPLE] + plan_args[1:], env),
    }
    found = interpreters()
    columns = ("-c pass", "--version", "plan", "direct -I -S", "--version (src)", "plan (src)")
    for label, python in found:
        bare = {"HOME": home, "PATH": "/usr/bin:/bin", "PLAYBOOK_PYTHON": python}
        for column, cmd in zip(
            columns,
            (
                [python, "-c", "pass"],
                [fast, "--version"],
                [fast] + plan_args,
                [python, "-I", "-S", fast, "--version"],
                [slow, "--version"],
                [slow] + plan_args,
            ),
        ):
            commands[(label, column)] = (cmd, bare)
    results = measure(commands, args.runs, work)
    tool_version, tool_plan = results["tool --version"], results["tool plan"]
    print("installed tool (%s, Python %d.%d): playbook --version %s · playbook plan %s"
          % (os.path.relpath(PLAYBOOK, ROOT), sys.version_info[0], sys.version_info[1], cell(tool_version), cell(tool_plan)))
    print()
    header = "%-6s %9s %11s %11s %13s %16s %11s" % (("python",) + columns)
    print(header)
    print("-" * len(header))
    worst = []
    worst_src = []
    for label, _ in found:
        row = [results[(label, column)] for column in columns]
        worst.append((row[1][0] - tool_version[0], row[1][1] - tool_version[1], "%s --version" % label))
        worst.append((row[2][0] - tool_plan[0], row[2][1] - tool_plan[1], "%s plan" % label))
        worst_src.append((max(row[4][0], row[5][0]), label))
        print("%-6s %9s %11s %11s %13s %16s %11s" % tuple([label] + [cell(v) for v in row]))
    print("(milliseconds: median wall-clock / median CPU time; the (src) columns use the --no-bytecode bundle)")
    print()
    print("with bytecode, against the installed tool (target: within 50 ms): at most %+.0f ms wall-clock (%s), "
          "%+.0f ms CPU time (%s)" % (max(worst)[0], max(worst)[2], max(worst, key=lambda w: w[1])[1], max(worst, key=lambda w: w[1])[2]))
    print("sources only: slowest start %.0f ms (%s) (target: under 1000 ms)" % max(worst_src))
    print("size: %.2f MB (target: under 6 MB with five bytecode trees)" % (size_fast / 1e6))
    print("identity (bundle sha256, computed when first shown): %.1f ms for the %.1f MB bundle" % (identity_cost(fast, args.runs), size_fast / 1e6))
    print()
    discovery(args, work, home, fast)
    print()
    templates(args, work, home, fast)


def chosen_interpreter(bundle, env):
    """The interpreter the launcher picks with this environment, from a traced dry run."""
    trace = subprocess.run(["sh", "-x", bundle, "--version"], env=env, capture_output=True, text=True).stderr
    picked = [line.split()[2] for line in trace.splitlines() if line.startswith("+ exec ") and " -I -S -c " in line]
    return picked[-1] if picked else None


def fake_shims(work):
    """A directory of slow shell-script shims, like pyenv's with the system Python selected:
    after 0.15 s, python3 and python run the system python3, python3.X say "command not found"."""
    shims = os.path.join(work, "fake-pyenv", "shims")
    os.makedirs(shims)
    system = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    for name in ["python3", "python"] + ["python3.%d" % minor for minor in range(9, 14)]:
        path = os.path.join(shims, name)
        with open(path, "w") as handle:
            handle.write("#!/bin/sh\nsleep 0.15\n")
            if name in ("python3", "python"):
                handle.write('exec %s "$@"\n' % system)
            handle.write('echo "pyenv: $0: command not found" >&2\nexit 127\n')
        os.chmod(path, 0o755)
    return shims


def discovery(args, work, home, bundle):
    """The launcher's interpreter search: real PATH, a PATH of slow shims, an explicit one."""
    real_path = os.environ.get("PATH", "")
    shims = fake_shims(work)
    bundles = [("this build", bundle)] + ([("--compare", os.path.abspath(args.compare))] if args.compare else [])
    paths = [("real PATH", real_path), ("slow shims first", shims + ":/usr/bin:/bin")]
    commands = {}
    for label, path in paths:
        env = {"HOME": home, "PATH": path}
        python = chosen_interpreter(bundle, env)
        if python:
            commands[(label, "PLAYBOOK_PYTHON")] = ([bundle, "--version"], dict(env, PLAYBOOK_PYTHON=python))
        for name, path_ in bundles:
            commands[(label, name)] = ([path_, "--version"], env)
    results = measure(commands, args.runs, work)
    print("Interpreter search: ./deploy.pyz --version without PLAYBOOK_PYTHON (median of %d, ms wall/CPU)" % args.runs)
    print("  real PATH: %s" % (real_path if len(real_path) < 100 else real_path[:97] + "..."))
    for label, path in paths:
        python = chosen_interpreter(bundle, {"HOME": home, "PATH": path})
        explicit = results.get((label, "PLAYBOOK_PYTHON"))
        cells = ["%s %s" % (name, cell(results[(label, name)])) for name, _ in bundles]
        if explicit:
            cells.append("PLAYBOOK_PYTHON=%s %s" % (python, cell(explicit)))
            mine = results[(label, "this build")]
            cells.append("search costs %+.1f ms wall, %+.1f ms CPU" % (mine[0] - explicit[0], mine[1] - explicit[1]))
        print("  %-17s %s" % (label + ":", " · ".join(cells)))
    print("(target: the search within 5 ms of PLAYBOOK_PYTHON)")


def _rebuilt(bundle, out, drop):
    """The bundle without the archive members for which drop(name) is true, its embedded SHA-256
    recomputed. Returns its size."""
    import zipfile

    from playbook.compiler.bundle import DIGEST_MARK, write_archive

    with open(bundle, "rb") as handle:
        data = handle.read()
    with zipfile.ZipFile(bundle) as archive:
        first = min(info.header_offset for info in archive.infolist())
        entries = {info.filename: archive.read(info) for info in archive.infolist() if not drop(info.filename)}
        epoch = time.mktime(archive.infolist()[0].date_time + (0, 0, -1))
    prefix = bytearray(data[:first])
    start = prefix.index(DIGEST_MARK) + len(DIGEST_MARK)
    prefix[start : start + 64] = b"0" * 64
    with open(out, "wb") as handle:
        handle.write(write_archive(bytes(prefix), entries, int(epoch)))
    os.chmod(out, 0o755)
    return os.path.getsize(out)


def templates(args, work, home, bundle):
    """`plan` of the bundle with templates compiled at build time, with only their generated
    source, and without them; then reading a large store."""
    from playbook.runtime.templating import PRECOMPILED_CODE, PRECOMPILED_SOURCES

    variants = [("marshal (as built)", bundle)]
    sizes = {bundle: os.path.getsize(bundle)}
    source_only = os.path.join(work, "deploy-template-sources.pyz")
    sizes[source_only] = _rebuilt(bundle, source_only, lambda name: name.endswith(PRECOMPILED_CODE))
    variants.append(("source + compile()", source_only))
    none = os.path.join(work, "deploy-no-templates.pyz")
    sizes[none] = _rebuilt(bundle, none, lambda name: name.endswith((PRECOMPILED_CODE, PRECOMPILED_SOURCES)))
    variants.append(("Jinja on the host", none))
    plan_args = ["plan", "--var", "ENVIRONMENT=prod"]
    commands = {}
    found = interpreters()
    for label, python in found:
        bare = {"HOME": home, "PATH": "/usr/bin:/bin", "PLAYBOOK_PYTHON": python}
        for name, path in variants:
            commands[(label, name)] = ([path] + plan_args, bare)
    results = measure(commands, args.runs, work)
    print("Templates compiled at build time: ./deploy.pyz plan --var ENVIRONMENT=prod (median of %d, ms wall/CPU; load %s)"
          % (args.runs, "%.2f %.2f %.2f" % os.getloadavg()))
    header = "%-6s" % "python" + "".join(" %20s" % name for name, _ in variants) + "   CPU as built - Jinja"
    print(header)
    print("-" * len(header))
    for label, _ in found:
        row = [results[(label, name)] for name, _ in variants]
        print("%-6s" % label + "".join(" %20s" % cell(v) for v in row) + "   %+.1f ms" % (row[0][1] - row[-1][1]))
    print("(\"as built\": each tree's own marshalled code; \"source + compile()\": the generated Python source only,\n"
          " as an interpreter without a bytecode tree uses it; \"Jinja on the host\": no precompiled templates)")
    print("size: %.3f MB as built, %.3f MB with the source only, %.3f MB without (+%.1f kB, +%.2f%%)"
          % (sizes[bundle] / 1e6, sizes[source_only] / 1e6, sizes[none] / 1e6, (sizes[bundle] - sizes[none]) / 1e3,
             100.0 * (sizes[bundle] - sizes[none]) / sizes[none]))
    print()
    for count in (1000, 10000):
        large_store(work, count, args.runs)


def large_store(work, count, runs):
    """Read a store of `count` distinct templates the way a bundle does (zip importer, this
    interpreter's marshal and the JSON source): the first lookup reads the index."""
    import marshal
    import zipfile
    import zipimport

    from playbook.runtime import templating
    from playbook.runtime.plan import Node, Plan

    nodes = [Node("n%d" % i, "Command", command="echo {{ X }} n%d '{{ Y }}' \"{{ X }}\"" % i, command_quoting=("plain", "single", "double"),
                  templates=("command",)) for i in range(count)]
    store = templating.precompile(Plan({"title": "t"}, {}, {}, nodes))
    code = dict(store, code={key: marshal.dumps(compile(text, "<template>", "exec", dont_inherit=True)) for key, text in store["code"].items()})
    path = os.path.join(work, "store-%d.zip" % count)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("tree/" + templating.PRECOMPILED_CODE, marshal.dumps(code), compresslevel=9)
        archive.writestr(templating.PRECOMPILED_SOURCES, json.dumps(store).encode(), compresslevel=9)
    keys = [templating._key(templating.TEMPLATE, n.command, True, n.command_quoting) for n in nodes]
    env = templating.environment(True)
    for tree, label in (("tree", "marshal"), (None, "source")):
        first, later = [], []
        for _ in range(runs):
            reader = zipimport.zipimporter(path)
            precompiled = templating.Precompiled(reader.get_data, tree)
            start = time.perf_counter()
            assert precompiled.code(keys[0]) is not None
            middle = time.perf_counter()
            for key in keys[1:11]:
                assert precompiled.code(key) is not None
            first.append(middle - start)
            later.append((time.perf_counter() - middle) / 10)
        print("store of %5d templates, %-7s: first lookup (reads the index) %6.2f ms, each further %.3f ms"
              % (count, label, statistics.median(first) * 1000, statistics.median(later) * 1000))
    jinja = []
    for node in nodes[:runs]:
        start = time.perf_counter()
        env.from_string(templating._quote_outputs(env.parse(node.command), node.command_quoting))
        jinja.append(time.perf_counter() - start)
    print("  Jinja compiling one of these templates: %.3f ms" % (statistics.median(jinja) * 1000))


if __name__ == "__main__":
    main()
