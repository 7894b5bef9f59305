"""Configuration: files in the seed's discovery order, environment sections and overrides.

Where values come from, highest first (docs/configuration.md):

1. command-line flags (``--state-path``, ``--max-retries``, ``--parallel``, ``--no-output``);
2. environment variables (``ENV_OVERRIDES``: ``PLAYBOOK_DB_PATH``, ``PLAYBOOK_MAX_RETRIES``, …);
3. the ``[environments.NAME]`` section selected by ``PLAYBOOK_ENV=NAME`` (of any file);
4. the files: ``PLAYBOOK_CONFIG`` if set, else ``./playbook.toml``,
   ``~/.config/playbook/config.toml``, ``/etc/playbook/config.toml`` — the first listed wins,
   key by key;
5. ``DEFAULTS``.

Unknown keys and wrong types are reported as ``FILE:LINE: message`` with a did-you-mean hint;
a run refuses to start with a bad configuration. What the keys do lives where it is done: the
database backup before a schema migration in state.py (``backup_hook``), the rotating log file
of run events in runlog.py (``open_run_log``, ``LoggingUI``).

Standard library and tomli (runtime/tomlfile.py) only: this module goes into bundles.
"""

from __future__ import annotations

import json
import os
import re

from . import tomlfile
from .errors import EXIT_INVALID, PlaybookError
from .durations import DurationError, check_duration
from .suggest import did_you_mean

TYPE_CHECKING = False  # typing is not imported at run time (start-up)
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

    # check_value's answer: (normalized value, None) or (None, (message, hint))
    _Checked = Tuple[Any, Optional[Tuple[str, Optional[str]]]]
    # the values a file (or one of its environments) sets: {(section, key): (value, line)}
    _Found = Dict[Tuple[str, str], Tuple[Any, Optional[int]]]
    # one file read: (the file, its base values, {environment name: its values})
    _Layer = Tuple["_File", _Found, Dict[str, _Found]]

SYSTEM_FILE = "/etc/playbook/config.toml"
USER_FILE = "~/.config/playbook/config.toml"
LOCAL_FILE = "playbook.toml"

DEFAULTS: Dict[str, Dict[str, Any]] = {
    "database": {"path": "~/.config/playbook/run.db", "timeout": 30, "backup_enabled": True, "backup_count": 5},
    "execution": {"default_timeout": 300, "max_retries": 3, "interactive_timeout": 1800, "parallel_execution": 1},
    "logging": {"level": "INFO", "file_path": "", "max_size_mb": 10, "backup_count": 3},
    "ui": {"progress_style": "bar", "color_theme": "auto", "show_timestamps": True, "compact_output": False},
}

# `parallel_execution = true` means this many nodes at once (false means 1).
PARALLEL_WHEN_TRUE = 4
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# Largest [logging] max_size_mb (1 TiB): beyond it the size in bytes overflows.
MAX_LOG_SIZE_MB = 1024 * 1024

# section.key -> (kind, rule). Kinds and their rules: str (None, "nonempty" or the choices),
# bool, int (the minimum), number (minimum, maximum), duration (runtime/durations.py: finite,
# 0 or more, at most 7 days), parallel (an int with its minimum, or true/false).
RULES: Dict[str, Tuple[str, Any]] = {
    "database.path": ("str", "nonempty"),
    "database.timeout": ("duration", None),
    "database.backup_enabled": ("bool", None),
    "database.backup_count": ("int", 1),
    "execution.default_timeout": ("duration", None),
    "execution.max_retries": ("int", 1),
    "execution.interactive_timeout": ("duration", None),
    "execution.parallel_execution": ("parallel", 1),
    "logging.level": ("str", LOG_LEVELS),
    "logging.file_path": ("str", None),
    "logging.max_size_mb": ("number", (0, MAX_LOG_SIZE_MB)),
    "logging.backup_count": ("int", 0),
    "ui.progress_style": ("str", ("bar", "plain")),
    "ui.color_theme": ("str", ("auto", "light", "dark", "none")),
    "ui.show_timestamps": ("bool", None),
    "ui.compact_output": ("bool", None),
}

ENV_OVERRIDES = {
    "PLAYBOOK_DB_PATH": ("database", "path"),
    "PLAYBOOK_MAX_RETRIES": ("execution", "max_retries"),
    "PLAYBOOK_DEFAULT_TIMEOUT": ("execution", "default_timeout"),
    "PLAYBOOK_PARALLEL": ("execution", "parallel_execution"),
    "PLAYBOOK_LOG_LEVEL": ("logging", "level"),
    "PLAYBOOK_LOG_FILE": ("logging", "file_path"),
}

KIND_WORDS = {
    "str": "a string",
    "int": "an integer",
    "number": "a number",
    "duration": "a number",
    "bool": "true or false",
    "parallel": "an integer (or true/false)",
}


class Problem:
    """One configuration mistake: where (file and line, or an environment variable) and what."""

    def __init__(self, where: str, line: Optional[int], message: str, hint: Optional[str] = None) -> None:
        self.where = where
        self.line = line
        self.message = message
        self.hint = hint

    def format(self, label: Optional[str] = None) -> str:
        place = "%s:%d" % (self.where, self.line) if self.line else self.where
        text = "%s: %s%s" % (place, label + ": " if label else "", self.message)
        if self.hint:
            text += " (%s)" % self.hint
        return text

    def to_json(self) -> Dict[str, Any]:
        return {"file": self.where, "line": self.line, "message": self.message, "hint": self.hint}

    def __str__(self) -> str:
        return self.format()


class ConfigError(PlaybookError):
    """A bad configuration: `problems` lists every mistake found (exit 2)."""

    def __init__(self, problems: str | Iterable[Problem]) -> None:
        if isinstance(problems, str):
            problems = [_Text(problems)]
        self.problems = list(problems)
        super().__init__("\n".join(p.format() for p in self.problems), EXIT_INVALID)

    def report(self) -> str:
        return "\n".join("error: %s" % p.format() for p in self.problems) + (
            "\n(`playbook config --validate` checks the configuration files)")


class _Text(Problem):
    def __init__(self, text: str) -> None:
        super().__init__(text, None, "")

    def format(self, label: Optional[str] = None) -> str:
        return self.where


# -- discovery ----------------------------------------------------------------------------------
def candidates(environ: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None) -> List[str]:
    """The files searched, highest priority first (PLAYBOOK_CONFIG alone when set)."""
    environ = os.environ if environ is None else environ
    if environ.get("PLAYBOOK_CONFIG"):
        return [os.path.abspath(os.path.expanduser(environ["PLAYBOOK_CONFIG"]))]
    home = environ.get("HOME") or os.path.expanduser("~")
    return [
        os.path.join(cwd or os.getcwd(), LOCAL_FILE),
        os.path.join(home, USER_FILE[2:]),
        SYSTEM_FILE,
    ]


class _File:
    """One configuration file: its text, its parsed data and where each key is."""

    def __init__(self, path: str, text: str, data: Dict[str, Any]) -> None:
        self.path = path
        self.text = text
        self.data = data
        self._where: Optional[Dict[Tuple[str, ...], Any]] = None

    def line(self, *path: str) -> Optional[int]:
        """The line of a key path (or of its nearest enclosing table); None when unknown."""
        if self._where is None:
            self._where = tomlfile.locate_keys(self.text)
        while path:
            if path in self._where:
                return self._where[path][0]
            path = path[:-1]
        return None


def read_file(path: str, fd: Optional[int] = None) -> Tuple[Optional[_File], List[Problem]]:
    """(_File or None, [Problem]) for one existing file (read from `fd` when given: the
    descriptor whose owner was checked)."""
    try:
        with (os.fdopen(fd, "rb") if fd is not None else open(path, "rb")) as handle:
            raw = handle.read()
    except OSError as exc:
        return None, [Problem(path, None, "cannot read: %s" % (exc.strerror or exc))]
    try:
        text = tomlfile.decode(raw)
        data = tomlfile.loads(text)
    except tomlfile.TomlError as exc:
        return None, [Problem(path, exc.line, exc.message)]
    return _File(path, text, data), []


# -- checking -----------------------------------------------------------------------------------
def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def check_value(section: str, key: str, value: Any) -> _Checked:
    """(normalized value, None) or (None, (message, hint))."""
    name = "%s.%s" % (section, key)
    kind, rule = RULES[name]
    if not _IS_KIND[kind](value):
        message = "%s must be %s, not %s (%s)" % (name, KIND_WORDS[kind], _type_name(value), _toml(value))
        return None, (message, _type_hint(key, kind, value))
    return _CHECK_KIND[kind](name, rule, value)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_IS_KIND: Dict[str, Callable[[Any], bool]] = {
    "str": lambda value: isinstance(value, str),
    "bool": lambda value: isinstance(value, bool),
    "int": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "number": lambda value: _is_number(value) and value == value,  # NaN is not a number here
    "duration": _is_number,  # check_duration says what is wrong with NaN
    "parallel": lambda value: isinstance(value, (int, bool)),
}


def _type_hint(key: str, kind: str, value: Any) -> Optional[str]:
    """How to write a value whose TOML type is wrong (a number or boolean in quotes, 2.0)."""
    if isinstance(value, float):
        return "write %s = %d" % (key, int(value)) if kind == "int" and value.is_integer() else None
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    if kind in ("bool", "parallel") and text in ("true", "false"):
        return "write %s = %s, without quotes" % (key, text)
    if kind in ("int", "number", "duration", "parallel") and re.match(r"^-?\d+(\.\d+)?$", text):
        return "write %s = %s, without quotes" % (key, text)
    return None


def _check_str(name: str, rule: Union[None, str, Sequence[str]], value: str) -> _Checked:
    if rule is None:
        return value, None
    if rule == "nonempty":
        return (value, None) if value.strip() else (None, ("%s must not be empty" % name, None))
    normal = value.upper() if name.startswith("logging.") else value.lower()
    if normal in rule:
        return normal, None
    choices = ", ".join(_toml(c) for c in rule)
    return None, ("%s must be one of %s, not %s" % (name, choices, _toml(value)), did_you_mean(normal, rule))


def _check_minimum(name: str, minimum: float, value: float) -> _Checked:
    if value < minimum:
        return None, ("%s must be at least %s, not %s" % (name, minimum, _toml(value)), None)
    return value, None


def _check_number(name: str, rule: Tuple[float, float], value: float) -> _Checked:
    minimum, maximum = rule
    if value > maximum:
        return None, ("%s must be at most %s, not %s" % (name, maximum, _toml(value)), None)
    return _check_minimum(name, minimum, value)


def _check_duration(name: str, rule: None, value: float) -> _Checked:
    try:
        return check_duration(value, name), None
    except DurationError as exc:
        return None, (str(exc), None)


def _check_parallel(name: str, rule: int, value: int) -> _Checked:
    if isinstance(value, bool):
        return (PARALLEL_WHEN_TRUE if value else 1), None
    return _check_minimum(name, rule, value)


_CHECK_KIND: Dict[str, Callable[[str, Any, Any], _Checked]] = {
    "str": _check_str,
    "bool": lambda name, rule, value: (value, None),
    "int": _check_minimum,
    "number": _check_number,
    "duration": _check_duration,
    "parallel": _check_parallel,
}


def _check_sections(file: _File, tables: Mapping[str, Any], prefix: Tuple[str, ...], problems: List[Problem]) -> _Found:
    """Check `{section: {key: value}}` of a file (or of one environment); returns the values
    found as {(section, key): (value, line)}."""
    found: _Found = {}
    for section, keys in tables.items():
        path = prefix + (section,)
        if section not in DEFAULTS:
            problems.append(_unknown_section(file, path, keys))
        elif not isinstance(keys, dict):
            table = ".".join(path)
            problems.append(Problem(file.path, file.line(*path), "%s must be a table ([%s] with keys under it)" % (table, table)))
        else:
            for key, value in keys.items():
                line = file.line(*path + (key,))
                if key not in DEFAULTS[section]:
                    problems.append(_unknown_key(file.path, line, path, key))
                    continue
                normal, error = check_value(section, key, value)
                if error:
                    context = "[%s] " % ".".join(prefix) if prefix else ""
                    problems.append(Problem(file.path, line, context + error[0], error[1]))
                else:
                    found[(section, key)] = (normal, line)
    return found


def _unknown_section(file: _File, path: Tuple[str, ...], keys: Any) -> Problem:
    section = path[-1]
    top = len(path) == 1
    hint: Optional[str]
    if top and section in ("runbook", "variables"):
        hint = "this looks like a runbook; configuration files hold [%s] and [environments.NAME]" % "], [".join(DEFAULTS)
    else:
        hint = did_you_mean(section, list(DEFAULTS) + (["environments"] if top else []))
    if not hint and isinstance(keys, dict):
        owners = sorted({s for k in keys for s in DEFAULTS if k in DEFAULTS[s]})
        hint = "its keys belong in [%s]" % "], [".join(owners) if owners else None
    message = "unknown section [%s]" % ".".join(path)
    return Problem(file.path, file.line(*path), message, hint or "known: %s" % ", ".join(DEFAULTS))


def _unknown_key(where: str, line: Optional[int], path: Tuple[str, ...], key: str) -> Problem:
    section = path[-1]
    hint = did_you_mean(key, DEFAULTS[section])
    if not hint:
        owners = [s for s in DEFAULTS if key in DEFAULTS[s]]
        hint = "%s belongs in [%s]" % (key, owners[0]) if owners else "known keys: %s" % ", ".join(DEFAULTS[section])
    return Problem(where, line, "unknown key %r in [%s]" % (key, ".".join(path)), hint)


def check_file(file: _File) -> Tuple[_Found, Dict[str, _Found], List[Problem]]:
    """(base values, {environment: values}, problems) of one parsed file; every environment
    section is checked, selected or not."""
    problems: List[Problem] = []
    data = dict(file.data)
    environments = data.pop("environments", None)
    base = _check_sections(file, data, (), problems)
    envs: Dict[str, _Found] = {}
    if environments is not None and not isinstance(environments, dict):
        message = "environments must be a table of [environments.NAME] sections"
        problems.append(Problem(file.path, file.line("environments"), message))
        environments = None
    for name, tables in (environments or {}).items():
        if isinstance(tables, dict):
            envs[name] = _check_sections(file, tables, ("environments", name), problems)
        else:
            problems.append(Problem(file.path, file.line("environments", name),
                                    "environments.%s must be a table ([environments.%s] with sections under it)" % (name, name)))
    return base, envs, problems


def _env_value(name: str, text: str) -> Tuple[Any, Optional[Problem]]:
    """(value, None) or (None, Problem) of the environment variable `name` set to `text`."""
    section, key = ENV_OVERRIDES[name]
    kind = RULES["%s.%s" % (section, key)][0]
    parse = _ENV_PARSERS.get(kind)
    try:
        value = parse(text.strip()) if parse else text
    except ValueError:
        return None, Problem("environment variable %s" % name, None, "%r is not %s" % (text, KIND_WORDS[kind]))
    normal, error = check_value(section, key, value)
    if error:
        message = error[0].replace("%s.%s" % (section, key), "%s (%s.%s)" % (name, section, key), 1)
        return None, Problem("environment variable %s" % name, None, message, error[1])
    return normal, None


def _env_number(text: str) -> float:
    value = float(text)
    return int(value) if value.is_integer() else value


def _env_parallel(text: str) -> Union[bool, int]:
    lowered = text.lower()
    if lowered in ("true", "yes", "on", "false", "no", "off"):
        return lowered in ("true", "yes", "on")
    return int(text)


_ENV_PARSERS: Dict[str, Callable[[str], Any]] = {"int": int, "number": _env_number, "duration": _env_number, "parallel": _env_parallel}


# -- the effective configuration ----------------------------------------------------------------
class Config:
    """Effective values with their origins ("section.key" -> where the value came from)."""

    def __init__(
        self,
        values: Dict[str, Dict[str, Any]],
        origins: Dict[str, str],
        files: Iterable[str] = (),
        searched: Iterable[str] = (),
        env_name: Optional[str] = None,
    ) -> None:
        self.values = values
        self.origins = origins
        self.files = list(files)  # the files read, highest priority first
        self.searched = list(searched)
        self.env_name = env_name
        self.skipped: List[Tuple[str, str]] = []  # (path, why) of each discovered file not trusted (not read)

    def get(self, section: str, key: str) -> Any:
        return self.values[section][key]

    def origin(self, section: str, key: str) -> str:
        return self.origins["%s.%s" % (section, key)]

    def to_json(self) -> Dict[str, Any]:
        return {
            "files": [{"path": p, "found": p in self.files} for p in self.searched],
            "skipped": [{"path": p, "why": why} for p, why in self.skipped],
            "environment": self.env_name,
            "values": {
                section: {key: {"value": value, "from": self.origin(section, key)} for key, value in keys.items()}
                for section, keys in self.values.items()
            },
        }


def gather(
    environ: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None, paths: Optional[Sequence[str]] = None
) -> Tuple[Config, List[str], List[Problem]]:
    """(Config or None, files read, problems) — everything `load` and `--validate` need.

    `paths` replaces the discovery list (tests use it for the system layer)."""
    environ = os.environ if environ is None else environ
    explicit = paths is None and bool(environ.get("PLAYBOOK_CONFIG"))
    searched = list(paths) if paths is not None else candidates(environ, cwd)
    problems: List[Problem] = []
    skipped: List[Tuple[str, str]] = []
    layers = _read_layers(searched, explicit, problems, skipped)
    values = {s: dict(keys) for s, keys in DEFAULTS.items()}
    origins = {"%s.%s" % (s, k): "default" for s, keys in DEFAULTS.items() for k in keys}
    # lowest priority first: system, user, local; then the environment sections the same way
    for file, base, _ in reversed(layers):
        _apply(values, origins, base, file.path)
    env_name = environ.get("PLAYBOOK_ENV") or None
    if env_name:
        _apply_environment(values, origins, layers, env_name, problems)
    for name, (section, key) in ENV_OVERRIDES.items():
        if environ.get(name):
            value, problem = _env_value(name, environ[name])
            if problem:
                problems.append(problem)
            else:
                _apply(values, origins, {(section, key): (value, None)}, "environment variable %s" % name)
    files = [file.path for file, _, _ in layers]
    cfg = Config(values, origins, files, searched, env_name)
    cfg.skipped = skipped
    return cfg, files, problems


def _read_layers(searched: Iterable[str], explicit: bool, problems: List[Problem], skipped: List[Tuple[str, str]]) -> List[_Layer]:
    """[(file, base values, {environment: values})] of the files found, highest priority first.

    A file is read only when no other user controls it (runtime/private.py: it belongs to the
    effective user or root and no one else may write it). A discovered one that fails this is
    skipped ((path, why) in `skipped`), as git skips a repository another user owns; the file
    PLAYBOOK_CONFIG names is a problem instead."""
    from .private import trusted_file

    layers: List[_Layer] = []
    for path in searched:
        if not os.path.exists(path):
            if explicit:
                problems.append(Problem("PLAYBOOK_CONFIG=%s" % path, None, "no such file"))
            continue
        if not os.path.isfile(path):
            if explicit:
                problems.append(Problem(path, None, "not a file"))
            else:  # a directory named playbook.toml where the run happens to start
                skipped.append((path, "it is not a file"))
            continue
        fd, distrust = trusted_file(path)
        if distrust is not None:
            if explicit:
                problems.append(Problem(path, None, "not used: %s" % distrust, "use a configuration file of your own"))
            else:
                skipped.append((path, distrust))
            continue
        file, trouble = read_file(path, fd)
        problems.extend(trouble)
        if file is not None:
            base, envs, trouble = check_file(file)
            problems.extend(trouble)
            layers.append((file, base, envs))
    return layers


def _apply(values: Dict[str, Dict[str, Any]], origins: Dict[str, str], found: _Found, where: str, note: str = "") -> None:
    """Set the values `found` ({(section, key): (value, line)}), recording where they came from."""
    for (section, key), (value, line) in found.items():
        values[section][key] = value
        origins["%s.%s" % (section, key)] = "%s%s%s" % (where, ":%d" % line if line else "", note)


def _apply_environment(
    values: Dict[str, Dict[str, Any]], origins: Dict[str, str], layers: Sequence[_Layer], env_name: str, problems: List[Problem]
) -> None:
    """PLAYBOOK_ENV=NAME: the [environments.NAME] sections of every file, lowest priority first."""
    defined = [(file, envs[env_name]) for file, _, envs in reversed(layers) if env_name in envs]
    for file, found in defined:
        _apply(values, origins, found, file.path, " [environments.%s]" % env_name)
    if defined:
        return
    known = sorted({name for _, _, envs in layers for name in envs})
    hint = did_you_mean(env_name, known) or (
        "known: %s" % ", ".join(known) if known else "create one with: playbook config --init %s" % env_name
    )
    read = [file.path for file, _, _ in layers]
    problems.append(Problem(
        "environment variable PLAYBOOK_ENV", None,
        "%r selects [environments.%s], which %s" % (
            env_name, env_name,
            "none of %s defines" % ", ".join(read) if read else "no configuration file defines (none found)"),
        hint,
    ))


def load(
    environ: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None, paths: Optional[Sequence[str]] = None
) -> Config:
    """The effective configuration; raises ConfigError listing every problem."""
    cfg, _, problems = gather(environ, cwd, paths)
    if problems:
        raise ConfigError(problems)
    warn_skipped(cfg)
    return cfg


def warn_skipped(cfg: Config, write: Optional[Callable[[str], Any]] = None) -> None:
    """One warning line on standard error per configuration file skipped as untrusted."""
    import sys

    for path, why in cfg.skipped:
        text = "warning: ignoring the configuration file %s: %s\n" % (path, why)
        try:
            (write or sys.stderr.write)(text)
        except (OSError, ValueError):
            pass


# -- playbook config --show / --init / --template ----------------------------------------------
def show_text(cfg: Config) -> str:
    lines = ["Configuration files (the first listed wins, key by key):"]
    ignored = dict(cfg.skipped)
    for path in cfg.searched:
        note = "" if path in cfg.files else "  (ignored: %s)" % ignored[path] if path in ignored else "  (not found)"
        lines.append("  %s%s" % (path, note))
    if cfg.env_name:
        lines.append("Environment: %s (PLAYBOOK_ENV selects [environments.%s])" % (cfg.env_name, cfg.env_name))
    width = max(len(k) for keys in DEFAULTS.values() for k in keys)
    for section, keys in cfg.values.items():
        lines.append("")
        lines.append("[%s]" % section)
        for key, value in keys.items():
            shown = "%s = %s" % (key.ljust(width), _toml(value))
            lines.append("%s  # %s" % (shown.ljust(width + 34), cfg.origin(section, key)))
    return "\n".join(lines)


def init_target(environ: Optional[Mapping[str, str]] = None) -> str:
    environ = os.environ if environ is None else environ
    if environ.get("PLAYBOOK_CONFIG"):
        return os.path.abspath(os.path.expanduser(environ["PLAYBOOK_CONFIG"]))
    home = environ.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, USER_FILE[2:])


def environment_text(name: str) -> str:
    lines = [
        "[environments.%s]" % name,
        "# Used when PLAYBOOK_ENV=%s: keys set here override the plain sections of every file." % name,
        "# Uncomment and change what differs (`playbook config --template FILE` explains each key).",
    ]
    for section, keys in DEFAULTS.items():
        for key, value in keys.items():
            lines.append("# %s.%s = %s" % (section, key, _toml(value)))
    return "\n".join(lines) + "\n"


def init_environment(name: str, environ: Optional[Mapping[str, str]] = None, force: bool = False) -> Tuple[str, str]:
    """Write or extend the user's configuration file with [environments.NAME].

    Returns (path, what was done). Raises ConfigError when it would overwrite existing
    content (unless `force`) or the file is not valid TOML."""
    if not re.match(r"^[A-Za-z0-9_-]+$", name or ""):
        raise ConfigError("environment name %r: use letters, digits, '-' and '_'" % name)
    path = init_target(environ)
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        text = (
            "# Playbook configuration (docs/configuration.md; `playbook config --show` shows the effective values).\n"
            "# Plain sections ([database], [execution], [logging], [ui]) apply everywhere; an\n"
            "# [environments.NAME] section applies when PLAYBOOK_ENV=NAME.\n\n" + environment_text(name)
        )
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        return path, "created %s with [environments.%s]" % (path, name)
    file, problems = read_file(path)
    if file is None:
        raise ConfigError(problems + [_Text("%s was not changed" % path)])
    existing = file.data.get("environments")
    if isinstance(existing, dict) and name in existing:
        if not force:
            raise ConfigError([Problem(path, file.line("environments", name),
                                       "[environments.%s] exists already; nothing was changed" % name,
                                       "--force replaces that section")])
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        text, removed = _remove_environment(text, name)
        if not removed:
            raise ConfigError([Problem(path, file.line("environments", name),
                                       "[environments.%s] is not written as [environments.%s...] headers; edit it by hand" % (name, name))])
        action = "replaced [environments.%s] in %s" % (name, path)
    else:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        action = "added [environments.%s] to %s" % (name, path)
    if text and not text.endswith("\n"):
        text += "\n"
    text += ("\n" if text.strip() else "") + environment_text(name)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path, action


def _remove_environment(text: str, name: str) -> Tuple[str, bool]:
    out = []
    skipping = False
    removed = False
    for raw in text.splitlines(keepends=True):
        header = tomlfile.table_header(raw)
        if header is not None:
            skipping = header[:2] == ("environments", name)
            removed = removed or skipping
        if not skipping:
            out.append(raw)
    return "".join(out).rstrip("\n") + "\n", removed


def template_text() -> str:
    """The fully commented template (templates/config.toml)."""
    try:
        from importlib.resources import files

        return files("playbook.templates").joinpath("config.toml").read_text(encoding="utf-8")
    except (ImportError, FileNotFoundError, ModuleNotFoundError):
        here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "templates", "config.toml")
        with open(here, encoding="utf-8") as handle:
            return handle.read()


# -- [database] backup_enabled / backup_count ---------------------------------------------------
