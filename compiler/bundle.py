"""Write a bundle: one executable file that runs a compiled runbook on a server with nothing but
a system CPython (docs/architecture.md, "The bundle").

Layout of the file::

    templates/launcher.sh, filled in     POSIX sh: find a python >= the floor, exec it with -I -S;
                                         below it, the Python boot code (between two markers)
    zip archive, imported in place:
      __main__.py                        `python3 FILE`: runs the same boot code
      manifest.json, plan.json           read by name, through the zip importer
      precompiled/templates.json         the Python code Jinja generates for the plan's templates
                                         and expressions (runtime/templating.py, precompile)
      playbook/, jinja2/, rich/, ...     sources (the fallback for interpreters without bytecode)
      <name>-<version>.dist-info/        METADATA and entry_points.txt of each distribution
      py39/, py310/, ... py313/          legacy-layout bytecode (`name.pyc`), one tree per target
                                         interpreter, unchecked-hash, compiled by that interpreter;
                                         with precompiled/templates.marshal, the same templates
                                         compiled by it (the host skips Jinja's parser)

Integrity: line 2 of the launcher holds the SHA-256 of the whole file computed with those 64
digits as zeros; the boot code checks it before anything is imported from the archive. The
bundle's identity is the SHA-256 of the file as written (runtime/bundle.py).

Bytecode trees leave out SOURCE_ONLY (modules used only for syntax highlighting, tracebacks,
Markdown and Windows, about half of the code by size); the boot code finds those in the
sources. Reproducible: entries sorted, timestamps from SOURCE_DATE_EPOCH (else 1980-01-01),
fixed permissions, no path of the build machine inside (bytecode is compiled with relative file
names), bytecode compiled with PYTHONHASHSEED=0. STRIP_DOCSTRINGS packages get bytecode without
docstrings (asserts kept, unlike -OO); Playbook's own, also without function annotations.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

from playbook.runtime.bundle import DIGEST_MARK, SIGN_NAMESPACE, identity_text, rehearsal_text
from playbook.runtime.errors import EXIT_STATE
from playbook.runtime.errors import BundleError as RuntimeBundleError
from playbook.runtime.templating import PRECOMPILED_CODE, PRECOMPILED_SOURCES, precompile

TYPE_CHECKING = False  # typing is not imported at run time (start-up)
if TYPE_CHECKING:
    from importlib.metadata import Distribution
    from typing import Any, Callable, Container, Iterable, Mapping, Sequence

    from playbook.runtime.plan import Plan

    from .plan import Compiled

    Warn = Callable[[str], object]  # where warnings go: print, list.append, …

BUNDLE_FORMAT = 1
BOOT_MARK = b"\n#=playbook-boot=\n"
DEFAULT_EPOCH = 315532800  # 1980-01-01T00:00:00Z, the earliest time a zip entry can hold
MIN_FLOOR = (3, 9)
FILES_PREFIX = "files/"  # the runbook's [runbook] files, under their paths relative to it
SUPPORTED = ((3, 9), (3, 10), (3, 11), (3, 12), (3, 13))
PREFIX_LIMIT = 65536  # the boot code is read from the first 64 KiB of the file

# The runtime's third-party distributions; their requirements are followed from the metadata.
RUNTIME_DISTRIBUTIONS = ("jinja2", "rich", "tomli")
# Folders of the `playbook` package that go into bundles (never `compiler`), and the files of
# templates/ the runtime reads (`report` loads its HTML template through pkgutil.get_data).
PLAYBOOK_FOLDERS = ("", "runtime", "domain")
RUNTIME_TEMPLATES = ("report.html.j2",)
# Bytecode is not built for these (prefixes of archive names); they stay available as source.
SOURCE_ONLY = (
    "pygments/",
    "markdown_it/",
    "mdurl/",
    "rich/__main__.py",
    "rich/_win32_console.py",
    "rich/_windows.py",
    "rich/_windows_renderer.py",
    "rich/diagnose.py",
    "rich/markdown.py",
    "rich/syntax.py",
    "rich/traceback.py",
)
# Their bytecode is built without docstrings (they never read __doc__): a sixth of the size.
# Sources keep them (tracebacks show the source); plugins keep theirs. Playbook's own bytecode
# also goes without the annotations of its functions (strings that nothing reads at run time;
# classes keep theirs: dataclasses read them).
STRIP_DOCSTRINGS = ("jinja2/", "markupsafe/", "rich/", "tomli/", "playbook/")
# Files never copied: compiled code (pure-Python fallbacks are used) and type-checker files.
SKIP_SUFFIXES = (".so", ".pyd", ".dll", ".dylib", ".pyc", ".pyo", ".c", ".h", ".pyx", ".pxd", ".pyi", ".exe")
SKIP_NAMES = ("py.typed",)


class BundleError(RuntimeBundleError):
    """A bundle cannot be built: exit 2 (invalid input) or 4 (a bundle problem)."""

    def __init__(self, message: str, code: int = EXIT_STATE) -> None:
        super().__init__(message, code)


def default_output(runbook_path: str) -> str:
    """deploy.playbook.toml -> deploy.pyz (in the current directory)."""
    name = os.path.basename(runbook_path)
    for suffix in (".toml", ".playbook"):
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name + ".pyz"


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --------------------------------------------------------------------------------------------
# Distributions
# --------------------------------------------------------------------------------------------


class Dist:
    """One distribution copied into the bundle: {archive name: file on disk} plus metadata."""

    def __init__(
        self,
        name: str,
        version: str,
        requires_python: str,
        role: str,
        files: dict[str, str],
        metadata: str,
        entry_points: str,
        notes: list[str],
    ) -> None:
        self.name = name
        self.version = version
        self.requires_python = requires_python
        self.role = role
        self.required_by: list[str] = []
        self.files = files
        self.metadata = metadata
        self.entry_points = entry_points
        self.notes = notes

    def info_dir(self) -> str:
        return "%s-%s.dist-info" % (normalize(self.name).replace("-", "_"), self.version)


_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*?)\s*(?:;\s*(.*?))?\s*$")


def parse_requirement(text: str) -> tuple[str, str] | None:
    """(name, marker) of a requirement string; None when it cannot be read."""
    match = _REQ.match(text)
    if not match:
        return None
    return match.group(1), (match.group(4) or "").strip()


def marker_applies(marker: str) -> bool:
    """Whether a requirement with this environment marker can be needed in a bundle: extras are
    never included; other markers are evaluated for Linux CPython 3.9-3.13 (true if true for
    any), with `packaging` when it is installed, else assumed true."""
    if not marker:
        return True
    if re.search(r"\bextra\b", marker):
        return False
    try:
        from packaging.markers import Marker
    except ImportError:
        return True
    try:
        parsed = Marker(marker)
    except Exception:
        return True
    for major, minor in SUPPORTED:
        env = {
            "python_version": "%d.%d" % (major, minor),
            "python_full_version": "%d.%d.0" % (major, minor),
            "sys_platform": "linux",
            "platform_system": "Linux",
            "os_name": "posix",
            "implementation_name": "cpython",
            "platform_python_implementation": "CPython",
            "extra": "",
        }
        try:
            if parsed.evaluate(env):
                return True
        except Exception:
            return True
    return False


def lower_bound(requires_python: str | None) -> tuple[int, int] | None:
    """(major, minor) lower bound of a Requires-Python specifier, or None."""
    best = None
    for clause in (requires_python or "").split(","):
        match = re.match(r"\s*(>=|~=|===|==|>)\s*(\d+)(?:\.(\d+))?", clause)
        if match:
            bound = (int(match.group(2)), int(match.group(3) or 0))
            best = bound if best is None else max(best, bound)
    return best


def _metadata_text(dist: Distribution) -> str:
    return dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""


def _module_files(top: str, notes: list[str]) -> dict[str, str]:
    """{archive name: disk path} of an importable top-level module or package (editable and
    egg-info installs, whose file lists do not name the code)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
        notes.append("module %s not found" % top)
        return {}
    files = {}
    if spec.submodule_search_locations:
        root = os.path.dirname(spec.origin)
        for folder, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
            for name in names:
                disk = os.path.join(folder, name)
                rel = os.path.relpath(disk, os.path.dirname(root)).replace(os.sep, "/")
                files[rel] = disk
    else:
        files[os.path.basename(spec.origin)] = spec.origin
    return files


def _filter(files: Mapping[str, str], notes: list[str], strict: bool) -> dict[str, str]:
    """Drop compiled and type-checker files; with `strict` (plugins), note extension modules that
    have no Python twin (the runtime's own dependencies have pure-Python fallbacks)."""
    kept = {}
    for rel, disk in files.items():
        base = rel.rsplit("/", 1)[-1]
        if base in SKIP_NAMES or rel.endswith(SKIP_SUFFIXES):
            if strict and rel.endswith((".so", ".pyd")):
                module = base.split(".", 1)[0]
                twin = rel[: len(rel) - len(base)] + module
                if twin + ".py" not in files and twin + "/__init__.py" not in files and "__mypyc" not in module:
                    notes.append("%s is compiled code without a pure-Python version; it is not included" % rel)
            continue
        kept[rel] = disk
    return kept


def collect_distribution(name: str, role: str) -> Dist:
    """A Dist from the build environment's installed distribution `name`."""
    import importlib.metadata as md

    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        raise BundleError("distribution %r is not installed in the build environment (%s)" % (name, sys.executable)) from None
    notes: list = []
    files = _recorded_files(dist)
    if not any(rel.endswith(".py") and os.path.isfile(disk) for rel, disk in files.items()):
        files = _editable_files(dist, notes)
    files = {rel: disk for rel, disk in files.items() if os.path.isfile(disk)}
    files = _filter(files, notes, strict=role == "plugin")
    if not files:
        raise BundleError("distribution %s %s: no Python files found to copy" % (name, dist.version))
    return Dist(
        name=dist.metadata["Name"] or name,
        version=dist.version,
        requires_python=dist.metadata.get("Requires-Python") or "",  # type: ignore[attr-defined]
        role=role,
        files=files,
        metadata=_metadata_text(dist),
        entry_points=dist.read_text("entry_points.txt") or "",
        notes=notes,
    )


def _recorded_files(dist: Distribution) -> dict[str, str]:
    """{archive name: disk path} of the files the distribution's record lists that belong in a
    bundle: not its metadata, installer files, caches, or files outside site-packages."""
    files = {}
    for path in dist.files or ():
        rel = str(path).replace("\\", "/")
        parts = rel.split("/")
        if rel.startswith(("../", "/")) or "__pycache__" in parts:
            continue
        if parts[0].endswith((".dist-info", ".egg-info", ".data")) or rel.endswith(".pth"):
            continue
        if len(parts) == 1 and not rel.endswith((".py", ".so", ".pyd")):
            continue  # stray top-level files (licences, installer records)
        files[rel] = str(dist.locate_file(path))
    return files


def _editable_files(dist: Distribution, notes: list[str]) -> dict[str, str]:
    """Editable or egg-info install, whose record does not name the code: the files of its
    top-level import names (top_level.txt, else the modules of its entry points)."""
    tops = (dist.read_text("top_level.txt") or "").split()
    if not tops:
        tops = sorted({ep.value.split(":")[0].split(".")[0].strip() for ep in dist.entry_points})
    files = {}
    for top in tops:
        files.update(_module_files(top, notes))
    return files


def resolve_distributions(plugin_dists: Iterable[str], warn: Warn) -> list[Dist]:
    """The runtime's distributions, the plugin distributions and every requirement of them,
    in a stable order. Playbook itself is never taken from the metadata (see playbook_files)."""
    import importlib.metadata as md

    # (name, role, the name of the distribution that requires it or None); `Any`, not `str | None`:
    # the type of a list concatenation is not inferred from the declared one
    queue: list[tuple[str, str, Any]] = [(n, "runtime", None) for n in RUNTIME_DISTRIBUTIONS] + [(n, "plugin", None) for n in plugin_dists]
    found: dict = {}
    order = []
    while queue:
        name, role, parent = queue.pop(0)
        key = normalize(name)
        if key == "playbook":
            continue
        if key in found:
            if parent and parent not in found[key].required_by:
                found[key].required_by.append(parent)
            continue
        dist = collect_distribution(name, role)
        if parent:
            dist.required_by.append(parent)
        found[key] = dist
        order.append(key)
        for requirement in md.distribution(name).requires or ():
            parsed = parse_requirement(requirement)
            if parsed is None:
                warn("%s: cannot read the requirement %r; not followed" % (dist.name, requirement))
                continue
            req_name, marker = parsed
            if not marker_applies(marker):
                continue
            try:
                md.distribution(req_name)
            except md.PackageNotFoundError:
                if marker:
                    warn("%s requires %s (%s), which is not installed here; not included" % (dist.name, req_name, marker))
                    continue
                raise BundleError("%s requires %s, which is not installed in the build environment" % (dist.name, req_name)) from None
            queue.append((req_name, "dependency", dist.name))
    return [found[key] for key in order]


def playbook_files() -> dict[str, str]:
    """{archive name: disk path} of the runtime part of the playbook package."""
    import playbook

    root = os.path.dirname(os.path.abspath(playbook.__file__))
    files = {}
    for folder in PLAYBOOK_FOLDERS:
        base = os.path.join(root, folder) if folder else root
        for name in sorted(os.listdir(base)):
            if name.endswith(".py") and os.path.isfile(os.path.join(base, name)):
                rel = "playbook/%s%s" % (folder + "/" if folder else "", name)
                files[rel] = os.path.join(base, name)
    for name in RUNTIME_TEMPLATES:
        files["playbook/templates/" + name] = os.path.join(root, "templates", name)
    if RUNTIME_TEMPLATES:
        files["playbook/templates/__init__.py"] = os.path.join(root, "templates", "__init__.py")
    return files


def playbook_requires_python() -> str:
    import importlib.metadata as md

    try:
        return md.distribution("playbook").metadata.get("Requires-Python") or ">=3.9"  # type: ignore[attr-defined]
    except md.PackageNotFoundError:
        return ">=3.9"


# --------------------------------------------------------------------------------------------
# Interpreters and bytecode
# --------------------------------------------------------------------------------------------

_PROBE = (
    "import sys, json, importlib.util; print(json.dumps({'impl': sys.implementation.name, "
    "'version': list(sys.version_info[:3]), 'magic': importlib.util.MAGIC_NUMBER.hex()}))"
)


class Target:
    """An interpreter that bytecode is built with."""

    def __init__(self, executable: str, version: Iterable[int], magic: str) -> None:
        self.executable = executable
        self.version = tuple(version)  # (major, minor, micro)
        self.magic = magic  # hex

    @property
    def minor(self) -> tuple[int, ...]:
        return self.version[:2]

    @property
    def tree(self) -> str:
        return "py%d%d" % self.minor

    @property
    def label(self) -> str:
        return "%d.%d" % self.minor

    def __repr__(self) -> str:
        return "Target(%s, %s)" % (self.executable, ".".join(map(str, self.version)))


def probe(executable: str) -> Target | None:
    """A Target for a CPython interpreter, or None when it is not one or does not run."""
    try:
        proc = subprocess.run(
            [executable, "-I", "-S", "-c", _PROBE],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            timeout=30,
        )
        info = json.loads(proc.stdout.decode() or "null")
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0 or not info or info.get("impl") != "cpython":
        return None
    return Target(executable, info["version"], info["magic"])


def candidate_interpreters() -> list[str]:
    """The building interpreter, python3.9-3.13 and python3 on PATH, then pyenv's versions."""
    import glob

    names: list = [sys.executable]
    for major, minor in reversed(SUPPORTED):
        names.append(shutil.which("python%d.%d" % (major, minor)))
    names.append(shutil.which("python3"))
    pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    names.extend(sorted(glob.glob(os.path.join(pyenv, "versions", "*", "bin", "python3"))))
    seen = set()
    result = []
    for name in names:
        if name and name not in seen:
            seen.add(name)
            result.append(name)
    return result


def discover(candidates: Iterable[str] | None = None) -> dict[tuple[int, ...], Target]:
    """{(major, minor): Target} of the usable CPython interpreters among the candidates, the
    first found winning for each version."""
    from concurrent.futures import ThreadPoolExecutor

    candidates = candidate_interpreters() if candidates is None else candidates
    with ThreadPoolExecutor(max_workers=8) as pool:
        probed = list(pool.map(probe, candidates))
    found = {}
    for target in probed:
        if target is not None and target.minor not in found:
            found[target.minor] = target
    return found


def parse_version(text: str) -> tuple[int, int]:
    match = re.match(r"^\s*(?:python)?(\d+)\.(\d+)\s*$", text or "")
    if not match:
        raise BundleError("--python %r: give a version like 3.11" % text, code=2)
    return int(match.group(1)), int(match.group(2))


def choose_targets(
    floor: tuple[int, ...],
    pythons: Sequence[str] = (),
    interpreters: Sequence[str] = (),
    bytecode: bool = True,
    warn: Warn = print,
) -> list[Target]:
    """The Targets to build bytecode for, one per Python version, all >= floor.

    Default: the building interpreter plus every CPython 3.9-3.13 found on PATH or under pyenv.
    `pythons` (versions) and `interpreters` (paths) choose explicitly.
    """
    if not bytecode:
        return []
    chosen: dict = {}
    if pythons or interpreters:
        for path in interpreters:
            target = probe(path)
            if target is None:
                raise BundleError("--interpreter %s: not a working CPython interpreter" % path, code=2)
            chosen.setdefault(target.minor, target)
        if pythons:
            available = discover()
            for text in pythons:
                wanted = parse_version(text)
                if wanted in chosen:
                    continue
                if wanted not in available:
                    have = ", ".join("%d.%d" % v for v in sorted(available)) or "none"
                    raise BundleError(
                        "--python %s: no CPython %d.%d found on PATH or under pyenv (found: %s); "
                        "give its path with --interpreter" % (text, wanted[0], wanted[1], have),
                        code=2,
                    )
                chosen[wanted] = available[wanted]
    else:
        chosen = {v: t for v, t in discover().items() if v in SUPPORTED}
    targets = []
    for version in sorted(chosen):
        if version < floor:
            warn("Python %d.%d is below the bundle's floor %d.%d; no bytecode for it" % (version + floor))
            continue
        targets.append(chosen[version])
    return targets


_COMPILE = r"""
import ast, importlib.util, json, marshal, os, sys
from importlib._bootstrap_external import _code_to_hash_pyc

def strip_docstrings(tree, annotations):
    for node in ast.walk(tree):
        if annotations and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.returns = None
            arguments = node.args
            for arg in arguments.posonlyargs + arguments.args + arguments.kwonlyargs + [arguments.vararg, arguments.kwarg]:
                if arg is not None:
                    arg.annotation = None
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                if len(body) == 1:
                    body[0] = ast.copy_location(ast.Pass(), body[0])
                else:
                    del body[0]
    return tree

job = json.load(sys.stdin)
out = job["out"]
errors = {}
for disk, rel, nodoc in job["modules"]:
    with open(disk, "rb") as handle:
        source = handle.read()
    try:
        if nodoc:
            tree = compile(source, rel, "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
            code = compile(strip_docstrings(tree, rel.startswith("playbook/")), rel, "exec", dont_inherit=True)
        else:
            code = compile(source, rel, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        errors[rel] = "%s: %s" % (type(exc).__name__, exc)
        continue
    # What py_compile writes with invalidation_mode=UNCHECKED_HASH, from this code object.
    data = _code_to_hash_pyc(code, importlib.util.source_hash(source), False)
    path = os.path.join(out, rel + "c")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
# The runbook's templates: the Python code Jinja generated for them, compiled as Jinja compiles
# it (file name "<template>", no inherited flags), marshalled for this interpreter version.
store = job["templates"]
if store is not None:
    code = {}
    for key, source in sorted(store["code"].items()):
        try:
            code[key] = marshal.dumps(compile(source, "<template>", "exec", dont_inherit=True))
        except (SyntaxError, ValueError) as exc:
            errors["template " + key] = "%s: %s" % (type(exc).__name__, exc)
    store = dict(store, code=code)
    with open(os.path.join(out, "templates.marshal"), "wb") as handle:
        handle.write(marshal.dumps(store))
json.dump(errors, sys.stdout)
"""


def strip_docstrings(rel: str) -> bool:
    return rel.startswith(STRIP_DOCSTRINGS)


def compile_tree(
    target: Target, sources: Mapping[str, str], templates: Mapping[str, Any] | None = None
) -> tuple[dict[str, bytes], dict[str, str], bytes | None]:
    """{archive name of the .py: .pyc bytes} compiled by the target interpreter, and
    {archive name: error} for files it cannot compile; and with `templates` (templating.precompile's
    store) that store compiled by the target interpreter (marshal bytes), else None."""
    workdir = tempfile.mkdtemp(prefix="playbook-bytecode-")
    try:
        modules = [[disk, rel, strip_docstrings(rel)] for rel, disk in sorted(sources.items())]
        jobs = {"out": workdir, "modules": modules, "templates": templates}
        env = {"PYTHONHASHSEED": "0", "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
        proc = subprocess.run(
            # no_debug_ranges: no column tables (3.11+), about a third of the bytecode's size;
            # tracebacks keep their line numbers. Older versions ignore the option.
            [target.executable, "-s", "-S", "-X", "no_debug_ranges", "-c", _COMPILE],
            input=json.dumps(jobs).encode(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            timeout=600,
        )
        if proc.returncode != 0:
            raise BundleError(
                "compiling bytecode with %s failed: %s"
                % (target.executable, proc.stderr.decode(errors="replace").strip().splitlines()[-1:])
            )
        errors = json.loads(proc.stdout.decode())
        compiled = {}
        for rel in sources:
            if rel in errors:
                continue
            with open(os.path.join(workdir, rel + "c"), "rb") as handle:
                compiled[rel] = handle.read()
        templates_code = None
        if templates is not None:
            with open(os.path.join(workdir, "templates.marshal"), "rb") as handle:
                templates_code = handle.read()
        return compiled, errors, templates_code
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def source_only(rel: str) -> bool:
    return rel.startswith(SOURCE_ONLY)


# --------------------------------------------------------------------------------------------
# Writing the file
# --------------------------------------------------------------------------------------------

# `python3 FILE` runs the archive's __main__.py, which Python reads from the zip before any of
# our code can check anything. It runs the boot code at the top of the file (which checks the
# SHA-256 of the whole file first), and it is built so that most damage to its own bytes ends in
# the "is damaged" message too: it is stored uncompressed, in a latin-1 file (every byte
# decodes), and its code and its error handler are hex in raw strings (no single changed byte
# there can end the string or make a NUL), run by `exec` inside `try`. The handler is not run for
# exits (the boot code's own messages) and lets through any error once the boot code has checked
# the file. Only the few bytes around the hex are unguarded (README, "Security").
_MAIN_CODE = b"""import sys
_playbook_ok = False
with open(sys.argv[0], 'rb') as _bundle:
    _head = _bundle.read(65536)
exec(compile(_head.split(b'\\n#=playbook-boot=\\n')[1], 'boot', 'exec'))
"""
_MAIN_DAMAGED = b"""import sys
if globals().get('_playbook_ok'):
    raise
sys.stderr.write('playbook: %s is damaged (its start-up code fails); copy the original bundle again\\n' % sys.argv[0])
sys.exit(4)
"""


def _hex_exec(code: bytes) -> bytes:
    return b'exec(bytes(bytearray.fromhex(r"""' + code.hex().encode("ascii") + b'""")))'


MAIN_PY = (
    b"#coding:latin1\n"
    # no space, "@", "*", "-", "J" or "M", which one changed bit turns into a NUL or a line break
    b"#Playbook_bundle:python3_FILE_starts_here,the_hex_runs_the_boot_code_at_the_top_of_the_file\n"
    b"try:" + _hex_exec(_MAIN_CODE) + b"\n"
    b"except Exception:" + _hex_exec(_MAIN_DAMAGED) + b"\n"
)


def _launcher_template() -> str:
    import playbook

    path = os.path.join(os.path.dirname(os.path.abspath(playbook.__file__)), "templates", "launcher.sh")
    with open(path, "rb") as handle:
        return handle.read().decode("utf-8")


def launcher(name: str, title: str | None, version: str, floor: tuple[int, ...], trees: Mapping[str, str]) -> bytes:
    """The sh launcher with the boot code, filled in for this bundle."""
    candidates = ["python3"] + ["python%d.%d" % v for v in reversed(SUPPORTED) if v >= floor] + ["python"]
    one_line = re.sub(r"\s+", " ", title or "").strip() or "(untitled)"
    safe_name = re.sub(r"[^A-Za-z0-9._+-]", "_", name)
    text = _launcher_template()
    for key, value in (
        ("@TITLE@", one_line),
        ("@VERSION@", version),
        ("@NAME@", safe_name),
        ("@FLOOR@", "%d.%d" % floor),
        ("@FLOOR_TUPLE@", "%d, %d" % floor),
        ("@CANDIDATES@", " ".join(candidates)),
        ("@TREES@", "{%s}" % ", ".join("%r: %r" % (tree, bytes.fromhex(magic)) for tree, magic in sorted(trees.items()))),
    ):
        text = text.replace(key, value)
    data = text.encode("utf-8")
    if data.count(BOOT_MARK) != 2 or len(data) >= PREFIX_LIMIT:
        raise BundleError("internal error: the launcher template is malformed")
    return data


def display_title(plan: Plan) -> str:
    """The title for people: a title rendered when the runbook was compiled as it is (a value in
    it is text); a template rendered once with the baked values and defaults, or with
    `{{ NAME }}` shown as `<NAME>` for variables given only on the host."""
    from playbook.runtime import templating

    title = str(plan.runbook.get("title") or "")
    if "title" not in plan.runbook.get("templates", ()):
        return title
    known = {k: v["default"] for k, v in plan.variables.items() if "default" in v and not v.get("secret")}
    known.update(plan.values)
    try:
        return templating.render(title, known)
    except templating.TemplateError:
        pass

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        return str(known[name]) if name in known else "<%s>" % name

    return re.sub(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", fill, title)


def zip_time(epoch: float) -> tuple[int, int, int, int, int, int]:
    epoch = max(int(epoch), DEFAULT_EPOCH)
    return time.gmtime(epoch)[:6]


def write_archive(prefix: bytes, entries: dict, epoch: int, executables: Container[str] = frozenset()) -> bytes:
    """prefix + zip of entries (sorted, fixed time and modes: 755 for the names in
    `executables`, else 644), with the SHA-256 of the whole file (computed with the digest
    field as zeros) written into the launcher's line 2. Returns the bytes of the file."""
    buf = io.BytesIO()
    buf.write(prefix)
    date_time = zip_time(epoch)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time)
            info.compress_type = zipfile.ZIP_STORED if name == "__main__.py" else zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = (0o100755 if name in executables else 0o100644) << 16
            archive.writestr(info, entries[name], compresslevel=9)
    data = bytearray(buf.getvalue())
    start = prefix.find(DIGEST_MARK) + len(DIGEST_MARK)
    if start < len(DIGEST_MARK) or start > 4000 or data[start : start + 64] != b"0" * 64:
        raise BundleError("internal error: the launcher has no digest field")
    digest = hashlib.sha256(data).hexdigest()
    data[start : start + 64] = digest.encode("ascii")
    return bytes(data)


def _read(disk: str) -> bytes:
    with open(disk, "rb") as handle:
        return handle.read()


def build(
    compiled: Compiled, output: str, targets: list | None = None, sign_key: str | None = None, epoch: int | None = None,
    pythons: Sequence[str] = (), interpreters: Sequence[str] = (), bytecode: bool = True, warn: Warn | None = None,
    approval_signers: str | None = None,
    approval_max_valid: float | None = None, rehearsal: dict | None = None,
) -> dict:
    """Write the bundle for a Compiled runbook to `output`. Returns a report (dict).

    `targets` (a list of Target) overrides the discovery from `pythons`/`interpreters`.
    `approval_signers` (an ssh allowed-signers file) makes the bundle accept only signed
    approvals for steps with a policy, valid for at most `approval_max_valid` seconds (7 days).
    """
    from playbook import __version__

    if sign_key and not os.path.isfile(sign_key):
        raise BundleError("--sign-key %s: no such key file" % sign_key, code=2)
    notes: list = []
    warn = warn or notes.append
    plan = compiled.plan

    plugins = bundled_plugins(plan)
    dists = collect_distributions(plugins, warn)
    floor, floor_from = python_floor(dists)
    sources, origin = collect_sources(dists)

    if targets is None:
        targets = choose_targets(floor, pythons, interpreters, bytecode, warn)
    templates = precompile(plan)
    trees = compile_trees([t for t in targets if t.minor >= floor], sources, origin, warn, templates)

    epoch = build_epoch(epoch)
    manifest = make_manifest(plan, plugins, dists, floor, floor_from, trees, epoch)
    manifest["precompiled_templates"] = len(templates["code"])
    if approval_signers:
        manifest["approval_signers"] = read_allowed_signers(approval_signers)
        if approval_max_valid:
            manifest["approval_max_valid"] = int(approval_max_valid)
    if rehearsal is not None:
        if rehearsal["runbook_sha256"] != manifest["runbook"]["source_sha256"]:
            raise BundleError("the runbook changed while its scenarios were rehearsed; nothing was written (compile again)")
        manifest["rehearsal"] = {key: rehearsal[key] for key in ("scenarios_file", "scenarios_sha256", "passed")}
    carried = {FILES_PREFIX + f.path: f.read() for f in compiled.files}
    manifest["files"] = [f.manifest_entry(carried[FILES_PREFIX + f.path]) for f in compiled.files]
    entries = archive_entries(plan, manifest, sources, dists, trees)
    entries[PRECOMPILED_SOURCES] = json.dumps(templates, sort_keys=True, ensure_ascii=False).encode("utf-8")
    entries.update(carried)
    prefix = launcher(os.path.basename(output), manifest["runbook"]["title"], __version__, floor, trees.magic)
    executables = {FILES_PREFIX + f.path for f in compiled.files if f.executable}
    data = write_archive(prefix, entries, epoch if epoch is not None else DEFAULT_EPOCH, executables)
    _write_executable(output, data)
    signature = sign(output, sign_key) if sign_key else None
    return {
        "output": output,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "signature": signature,
        "manifest": manifest,
        "files": len(entries),
        "warnings": notes,
    }


def bundled_plugins(plan: Plan) -> dict:
    """{plugin name: {"entry_point", "distribution"}} of the plugins the plan's Function nodes
    use, other than the built-in ones; each must come from an installed distribution."""
    from playbook.runtime.plugins import BUILTINS, Registry

    registry = Registry()
    plugins = {}
    for name in sorted({n.plugin for n in plan.nodes if n.type == "Function" and n.plugin}):
        if name in BUILTINS:
            continue
        spec = registry.entry_point_spec(name)
        dist = registry.distribution(name)
        if not dist:
            raise BundleError("plugin %r (%s) does not come from an installed distribution; it cannot be bundled" % (name, spec))
        plugins[name] = {"entry_point": spec, "distribution": dist}
    return plugins


def collect_distributions(plugins: dict, warn: Warn) -> list:
    """The distributions to copy (see resolve_distributions), their notes passed to `warn`;
    sets the "version" of each plugin's entry to that of its distribution."""
    dists = resolve_distributions([info["distribution"] for info in plugins.values()], warn)
    for dist in dists:
        for note in dist.notes:
            warn("%s: %s" % (dist.name, note))
    versions = {normalize(d.name): d.version for d in dists}
    for info in plugins.values():
        info["version"] = versions.get(normalize(info["distribution"]), "")
    return dists


def python_floor(dists: list) -> tuple:
    """The bundle's floor: the highest Requires-Python lower bound (of playbook and of every
    distribution), at least 3.9; and which requirements set it ("name spec")."""
    own_requires = playbook_requires_python()
    bounds = [("playbook", own_requires, lower_bound(own_requires))]
    bounds += [(d.name, d.requires_python, lower_bound(d.requires_python)) for d in dists]
    floor = max([MIN_FLOOR] + [bound for _, _, bound in bounds if bound])
    floor_from = sorted("%s %s" % (name, spec.strip()) for name, spec, bound in bounds if bound == floor)
    return floor, floor_from


def collect_sources(dists: list) -> tuple:
    """{archive name: disk path} of every file copied, and {archive name: who provides it}:
    playbook's runtime, then each distribution (no file may come from two places)."""
    sources = dict(playbook_files())
    origin = {rel: "playbook" for rel in sources}
    for dist in dists:
        for rel, disk in dist.files.items():
            if rel in origin:
                raise BundleError("%s and %s both provide %s" % (origin[rel], dist.name, rel))
            origin[rel] = dist.name
            sources[rel] = disk
    return sources, origin


class Trees:
    """The bytecode trees of a bundle: `magic` {tree: magic hex} for the boot code, `info` (one
    dict per tree, for the manifest) and `entries` {archive name: .pyc bytes, or None for a
    copy of the package data file of the same name}."""

    def __init__(self) -> None:
        self.magic: dict[str, str] = {}
        self.info: list[dict[str, Any]] = []
        self.entries: dict[str, bytes | None] = {}

    def add(self, target: Target, pycs: Mapping[str, bytes], data_files: Iterable[str]) -> None:
        self.magic[target.tree] = target.magic
        self.info.append(
            {
                "python": target.label,
                "tree": target.tree,
                "magic": target.magic,
                "compiled_with": ".".join(str(p) for p in target.version),
                "modules": len(pycs),
            }
        )
        for rel, data in pycs.items():
            self.entries["%s/%sc" % (target.tree, rel)] = data
        for rel in data_files:  # package data next to the bytecode, for loaders' get_data()
            self.entries["%s/%s" % (target.tree, rel)] = None


def compile_trees(targets: list, sources: dict, origin: dict, warn: Warn, templates: dict | None = None) -> Trees:
    """Bytecode of the sources (but SOURCE_ONLY) for each target, compiled in parallel, and of
    the runbook's `templates` (templating.precompile). A file of playbook's own that does not
    compile is an error; one of a distribution stays source, a template is compiled on the host."""
    hot = {rel: disk for rel, disk in sources.items() if rel.endswith(".py") and not source_only(rel)}
    data_files = [rel for rel in sources if not rel.endswith(".py") and "/" in rel and not source_only(rel)]
    trees = Trees()
    if not targets:
        return trees
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, min(len(targets), os.cpu_count() or 2))) as pool:
        results = list(pool.map(lambda t: compile_tree(t, hot, templates), targets))
    for target, (pycs, errors, templates_code) in zip(targets, results):
        for rel, error in sorted(errors.items()):
            if rel.startswith("template "):
                warn("a template does not compile with Python %s (%s); the host compiles it" % (target.label, error))
                continue
            if origin.get(rel) == "playbook":
                raise BundleError("%s does not compile with Python %s: %s" % (rel, target.label, error))
            warn("%s: no bytecode for Python %s (%s); it stays source" % (rel, target.label, error))
        trees.add(target, pycs, data_files)
        if templates_code is not None:
            trees.entries["%s/%s" % (target.tree, PRECOMPILED_CODE)] = templates_code
    return trees


def read_allowed_signers(path: str) -> str:
    """The text of an ssh allowed-signers file (principals, then a public key); refused when it
    names no principal with a key."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise BundleError("--approval-signers %s: %s" % (path, exc.strerror or exc), code=2) from None
    lines = [line.split() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines or any(len(words) < 3 or not any(w.startswith(("ssh-", "ecdsa-", "sk-")) for w in words[1:]) for words in lines):
        raise BundleError(
            "--approval-signers %s: not an ssh allowed-signers file (each line: principals, key type, key)" % path, code=2
        )
    return text


def build_epoch(epoch: int | None) -> int | None:
    """The build time: `epoch`, else SOURCE_DATE_EPOCH, else None (not recorded)."""
    if epoch is not None:
        return epoch
    text = os.environ.get("SOURCE_DATE_EPOCH")
    return int(text) if text and text.strip().isdigit() else None


def make_manifest(plan: Plan, plugins: dict, dists: list, floor: tuple, floor_from: list, trees: Trees, epoch: int | None) -> dict:
    """manifest.json: what the bundle holds, for `inspect` and for people."""
    from playbook import __version__

    return {
        "bundle_format": BUNDLE_FORMAT,
        "playbook_version": __version__,
        "runbook": {
            "title": display_title(plan),
            "version": plan.runbook.get("version", ""),
            "author": plan.runbook.get("author", ""),
            "source": plan.source.get("name", ""),
            "source_sha256": plan.source.get("sha256", ""),
        },
        "plan": {
            "sha256": plan.digest(),
            "nodes": len(plan.nodes),
            "baked_variables": sorted(plan.values),
            "host_variables": sorted(k for k in plan.variables if k not in plan.values),
        },
        "plugins": plugins,
        "distributions": [
            {
                "name": d.name,
                "version": d.version,
                "requires_python": d.requires_python,
                "role": d.role,
                "required_by": sorted(d.required_by),
                "files": len(d.files),
            }
            for d in dists
        ],
        "python_floor": "%d.%d" % floor,
        "floor_from": floor_from,
        "bytecode": trees.info,
        "source_only": list(SOURCE_ONLY),
        "bytecode_without_docstrings": list(STRIP_DOCSTRINGS),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch)) if epoch is not None else None,
        "sign_namespace": SIGN_NAMESPACE,
    }


def archive_entries(plan: Plan, manifest: dict, sources: dict, dists: list, trees: Trees) -> dict:
    """{archive name: bytes} of everything in the zip."""
    from playbook import __version__

    entries = {"__main__.py": MAIN_PY, "plan.json": plan.dumps()}
    entries["manifest.json"] = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8") + b"\n"
    for rel, disk in sources.items():
        entries[rel] = _read(disk)
    own_info = "playbook-%s.dist-info/METADATA" % __version__
    own_metadata = "Metadata-Version: 2.1\nName: playbook\nVersion: %s\nRequires-Python: %s\n" % (__version__, playbook_requires_python())
    entries[own_info] = own_metadata.encode()
    for dist in dists:
        entries[dist.info_dir() + "/METADATA"] = dist.metadata.encode("utf-8")
        if dist.entry_points:
            entries[dist.info_dir() + "/entry_points.txt"] = dist.entry_points.encode("utf-8")
    for name, data in trees.entries.items():
        entries[name] = data if data is not None else entries[name.split("/", 1)[1]]
    return entries


def _write_executable(output: str, data: bytes) -> None:
    """Write atomically (a temporary file renamed over OUTPUT), mode 755."""
    directory = os.path.dirname(os.path.abspath(output))
    if os.path.isdir(output):
        raise BundleError("%s is a directory; give the bundle's file name with -o" % output, code=2)
    temp = None
    try:
        fd, temp = tempfile.mkstemp(prefix=".%s." % os.path.basename(output), dir=directory)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temp, 0o755)
        os.replace(temp, output)
    except OSError as exc:
        if temp and os.path.exists(temp):
            os.unlink(temp)
        raise BundleError("cannot write %s: %s" % (output, exc.strerror or exc)) from None


def sign(path: str, key: str) -> str:
    """Write PATH.sig with `ssh-keygen -Y sign`. Returns the signature's path."""
    sig = path + ".sig"
    if os.path.exists(sig):
        os.unlink(sig)
    try:
        proc = subprocess.run(
            ["ssh-keygen", "-Y", "sign", "-f", key, "-n", SIGN_NAMESPACE, path],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError as exc:
        raise BundleError("cannot sign: ssh-keygen is not available (%s); install OpenSSH 8.0 or newer" % exc) from None
    if proc.returncode != 0 or not os.path.exists(sig):
        text = proc.stderr.decode(errors="replace").strip() or "exit status %d" % proc.returncode
        raise BundleError("signing with %s failed: %s" % (key, text))
    return sig


def floor_line(manifest: Mapping[str, Any]) -> str:
    """The bundle's Python floor in one line: the distributions that raise it above the
    project's own floor are named; the usual case is not spelled out per distribution."""
    floor = manifest["python_floor"]
    raised = sorted({entry.split(" ", 1)[0] for entry in manifest["floor_from"]}) if floor != "%d.%d" % MIN_FLOOR else []
    why = "raised by %s" % ", ".join(raised) if raised else "the floor of its distributions"
    return "CPython %s or newer (%s)" % (floor, why)


def describe(report: Mapping[str, Any]) -> list[str]:
    """Lines for the `compile` command's output."""
    manifest = report["manifest"]
    size = report["size"] / 1e6
    trees = ", ".join(b["python"] for b in manifest["bytecode"]) or "none (sources only)"
    lines = [
        "wrote %s (%.1f MB) — %s" % (report["output"], size, manifest["runbook"]["title"]),
        "  runs on: %s" % floor_line(manifest),
        "  bytecode for: %s" % trees,
        "  contents: playbook %s, %s"
        % (manifest["playbook_version"], ", ".join("%s %s" % (d["name"], d["version"]) for d in manifest["distributions"])),
    ]
    if manifest["plugins"]:
        lines.append(
            "  plugins: %s"
            % ", ".join("%s (%s %s)" % (n, p["distribution"], p["version"]) for n, p in sorted(manifest["plugins"].items()))
        )
    if manifest.get("files"):
        count = len(manifest["files"])
        lines.append("  files: %d next to the runbook (%s)" % (count, ", ".join(f["path"] for f in manifest["files"][:5]) + (" …" if count > 5 else "")))
    if manifest.get("rehearsal"):
        lines.append("  " + rehearsal_text(manifest["rehearsal"]))
    if manifest["plan"]["host_variables"]:
        lines.append("  variables taken on the host: %s" % ", ".join(manifest["plan"]["host_variables"]))
    lines.append("  " + identity_text(report["sha256"]))
    if report["signature"]:
        lines.append("  signature: %s (check on the server: ./%s verify --allowed-signers FILE)" % (report["signature"], os.path.basename(report["output"])))
    return lines
