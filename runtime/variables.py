"""Runbook variables: specs, sources and their priority, typing and checks, secrets.

Priority, highest first: ``--var`` > ``--vars-file`` > ``--vars-env PREFIX`` > an interactive
prompt (only on a terminal) > the spec's default. Values reach templates and `when` typed.

A variable declared ``required = false`` without a default may be absent: when nobody gives a
value it stays undefined, so templates can use ``default()`` and ``is defined``; it is never
prompted for. Given values are all checked before anyone is prompted.

Standard library and tomli (``--vars-file``, via runtime/tomlfile.py) only: goes into bundles.
"""

from __future__ import annotations

import json
import math
import os
import re

from . import patterns, tomlfile
from .errors import PlaybookError
from .suggest import did_you_mean

TYPE_CHECKING = False  # typing is not imported at run time (start-up)
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Mapping

    # a converter of coerce: (spec, value) -> the value in the spec's type
    _Converter = Callable[[Mapping[str, Any], Any], Any]

TYPES = ("str", "int", "float", "bool", "list", "dict")
SPEC_KEYS = ("default", "required", "type", "choices", "min", "max", "pattern", "description", "secret")
MASK = "***"

_TRUE = ("true", "1", "yes", "on", "y")
_FALSE = ("false", "0", "no", "off", "n")
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class VariableError(PlaybookError):
    """A variable value or spec that cannot be used. `key` names the spec key at fault."""

    def __init__(self, message: str, key: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.hint = hint


def type_of(value: Any) -> str:
    """The spec type name of a TOML/JSON value."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return "str"


def parse_spec(name: str, raw: Any) -> tuple[dict[str, Any], list[VariableError]]:
    """Check one `[variables]` entry and return (spec dict, [VariableError]).

    `NAME = value` is shorthand for a default of that value and type.
    """
    if not isinstance(raw, dict):
        raw = {"default": raw}
    spec: dict[str, Any] = {"required": False, "secret": False, "declared": True}
    errors = [
        VariableError("unknown key %r in variable %s" % (key, name), key,
                      did_you_mean(key, SPEC_KEYS) or "allowed: %s" % ", ".join(SPEC_KEYS))
        for key in raw
        if key not in SPEC_KEYS
    ]
    if not NAME_RE.match(name):
        errors.append(VariableError("variable name %r is not a valid identifier" % name))
    _spec_flags(name, raw, spec, errors)
    if raw.get("required") is False and "default" not in raw:
        spec["optional"] = True  # may be absent: undefined in templates when not given
    if "description" in raw:
        spec["description"] = str(raw["description"])
    declared_type = raw.get("type")
    if declared_type is None:
        declared_type = type_of(raw["default"]) if "default" in raw else "str"
    if declared_type not in TYPES:
        message = "unknown type %r for variable %s (expected one of %s)" % (declared_type, name, ", ".join(TYPES))
        errors.append(VariableError(message, "type"))
        return spec, errors
    spec["type"] = declared_type
    for step in _SPEC_STEPS:  # in this order: the default is checked against the others
        step(name, raw, spec, errors)
    return spec, errors


def _spec_flags(name: str, raw: Mapping[str, Any], spec: dict[str, Any], errors: list[VariableError]) -> None:
    for key in ("required", "secret"):
        if key not in raw:
            continue
        if isinstance(raw[key], bool):
            spec[key] = raw[key]
        else:
            errors.append(VariableError("%s of variable %s must be true or false" % (key, name), key))


def _spec_bounds(name: str, raw: Mapping[str, Any], spec: dict[str, Any], errors: list[VariableError]) -> None:
    for key in ("min", "max"):
        if key not in raw:
            continue
        if spec["type"] not in ("int", "float"):
            errors.append(VariableError("%s applies to int and float variables, but %s is %s" % (key, name, spec["type"]), key))
        elif type_of(raw[key]) not in ("int", "float"):
            errors.append(VariableError("%s of variable %s must be a number" % (key, name), key))
        else:
            spec[key] = raw[key]


def _spec_pattern(name: str, raw: Mapping[str, Any], spec: dict[str, Any], errors: list[VariableError]) -> None:
    if "pattern" not in raw:
        return
    if spec["type"] != "str":
        errors.append(VariableError("pattern applies to str variables, but %s is %s" % (name, spec["type"]), "pattern"))
        return
    try:
        patterns.compile_pattern(str(raw["pattern"]))
    except patterns.PatternError as exc:
        errors.append(VariableError("pattern of variable %s %s" % (name, exc), "pattern", exc.hint))
        return
    spec["pattern"] = str(raw["pattern"])


def _spec_choices(name: str, raw: Mapping[str, Any], spec: dict[str, Any], errors: list[VariableError]) -> None:
    if "choices" not in raw:
        return
    choices = raw["choices"]
    if not isinstance(choices, list) or not choices:
        errors.append(VariableError("choices of variable %s must be a non-empty list" % name, "choices"))
        return
    try:
        spec["choices"] = [coerce(dict(spec, choices=None), c, "choice") for c in choices]
    except VariableError as exc:
        errors.append(VariableError("choices of variable %s: %s" % (name, exc), "choices"))


def _spec_default(name: str, raw: Mapping[str, Any], spec: dict[str, Any], errors: list[VariableError]) -> None:
    if "default" not in raw:
        return
    try:
        spec["default"] = check(name, spec, coerce(spec, raw["default"], "default"))
    except VariableError as exc:
        errors.append(VariableError("default of variable %s: %s" % (name, exc), "default"))


_SPEC_STEPS = (_spec_bounds, _spec_pattern, _spec_choices, _spec_default)


def coerce(spec: Mapping[str, Any], value: Any, source: str = "value") -> Any:
    """Convert `value` (a string from the command line, or a TOML value) to the spec's type."""
    kind = spec.get("type", "str")
    if kind not in _CONVERTERS:
        raise VariableError("unknown type %r" % kind)
    return _CONVERTERS[kind](spec, value)


def _to_str(spec: Mapping[str, Any], value: Any) -> str:
    if isinstance(value, (dict, list, bool)):
        raise VariableError("expected text, got %s" % type_of(value))
    return value if isinstance(value, str) else str(value)


def _to_bool(spec: Mapping[str, Any], value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise VariableError("%s is not a boolean (use true/false, yes/no, on/off or 1/0)" % _quoted(spec, value))


def _to_int(spec: Mapping[str, Any], value: Any) -> int:
    if isinstance(value, bool):
        raise VariableError("expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not value.is_integer():
            raise VariableError("%s is not an integer" % _quoted(spec, value))
        return int(value)
    try:
        return int(str(value).strip().replace("_", ""), 10)
    except ValueError:
        raise VariableError("%s is not an integer" % _quoted(spec, value)) from None


def _to_float(spec: Mapping[str, Any], value: Any) -> float:
    if isinstance(value, bool):
        raise VariableError("expected a number, got a boolean")
    try:
        result = float(value if isinstance(value, (int, float)) else str(value).strip())
    except ValueError:
        raise VariableError("%s is not a number" % _quoted(spec, value)) from None
    except OverflowError:  # an int too large for a float
        result = math.inf
    if not math.isfinite(result):
        raise VariableError("%s is not a finite number" % _quoted(spec, value))
    return result


def _to_json(kind: str, expected: type, words: str) -> _Converter:
    def convert(spec: Mapping[str, Any], value: Any) -> Any:
        if isinstance(value, expected):
            return value
        if isinstance(value, str):
            try:
                parsed = json.loads(value)
            except ValueError:
                raise VariableError("%s is not a JSON %s" % (_quoted(spec, value), words)) from None
            if isinstance(parsed, expected):
                return parsed
        raise VariableError("expected a %s, got %s" % (kind, type_of(value)))

    return convert


_CONVERTERS: dict[str, _Converter] = {
    "str": _to_str,
    "bool": _to_bool,
    "int": _to_int,
    "float": _to_float,
    "list": _to_json("list", list, "array"),
    "dict": _to_json("dict", dict, "object"),
}


def _quoted(spec: Mapping[str, Any], value: Any) -> str:
    """A value inside an error message: secrets are never shown."""
    return MASK if spec.get("secret") else repr(value)


def check(name: str | None, spec: Mapping[str, Any], value: Any) -> Any:
    """Apply choices, min, max and pattern. Returns the value or raises VariableError."""
    choices = spec.get("choices")
    if choices and value not in choices:
        raise VariableError(
            "%s is not one of the allowed values: %s"
            % (show(spec, value), ", ".join(show(spec, c) for c in choices))
        )
    if "min" in spec and value < spec["min"]:
        raise VariableError("%s is below the minimum %s" % (show(spec, value), spec["min"]))
    if "max" in spec and value > spec["max"]:
        raise VariableError("%s is above the maximum %s" % (show(spec, value), spec["max"]))
    if "pattern" in spec and not _matches(spec["pattern"], value):
        raise VariableError("%s does not match the pattern %s" % (show(spec, value), spec["pattern"]))
    return value


def _matches(pattern: str, value: str) -> bool:
    """Whether `value` matches `pattern` as a whole, in time linear in the value."""
    try:
        return patterns.fullmatch(pattern, value)
    except patterns.PatternError as exc:  # a plugin's pattern (a runbook's was checked at validate time)
        raise VariableError("the pattern %s %s" % (pattern, exc), hint=exc.hint) from None


def show(spec: Mapping[str, Any], value: Any) -> str:
    """A value as it may be shown to people: secrets masked."""
    if spec.get("secret"):
        return MASK
    if isinstance(value, str):
        return repr(value)
    return json.dumps(value)


def masked(specs: Mapping[str, Mapping[str, Any]], values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `values` with every secret replaced by the mask."""
    return {k: (MASK if specs.get(k, {}).get("secret") else v) for k, v in values.items()}


def parse_assignments(pairs: Iterable[str] | None, flag: str = "--var") -> dict[str, str]:
    """`["K=V", ...]` from the command line → {K: "V"}; a malformed pair is a VariableError."""
    result = {}
    for pair in pairs or ():
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not NAME_RE.match(name):
            raise VariableError("%s %r: expected NAME=VALUE with NAME a valid identifier" % (flag, pair))
        result[name] = value
    return result


def load_vars_file(path: str) -> dict[str, Any]:
    """Read a `*.vars.toml` file: top-level `NAME = value` pairs (or one [variables] table).
    TOML dates and times become ISO-8601 text, as in runbooks."""
    try:
        with open(path, "rb") as handle:
            data = tomlfile.plain(tomlfile.loads(tomlfile.decode(handle.read())))
    except OSError as exc:
        raise VariableError("--vars-file %s: %s" % (path, exc.strerror or exc)) from None
    except tomlfile.TomlError as exc:
        raise VariableError("--vars-file %s: %s%s" % (path, exc.message, exc.where())) from None
    if "variables" in data and isinstance(data["variables"], dict) and len(data) == 1:
        data = data["variables"]
    for name in data:
        if not NAME_RE.match(name):
            raise VariableError("--vars-file %s: %r is not a valid variable name" % (path, name))
    return data


def from_env(prefix: str | None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Variables from environment variables named PREFIX + NAME."""
    if not prefix:
        return {}
    environ = os.environ if environ is None else environ
    return {k[len(prefix):]: v for k, v in environ.items() if k.startswith(prefix) and NAME_RE.match(k[len(prefix):])}


class Sources:
    """The values people supplied, by source, before resolution. `defaults` is a last layer
    that only previews use (`plan`): the runbook's defaults, labelled "default"."""

    def __init__(
        self,
        cli: dict[str, Any] | None = None,
        file: dict[str, Any] | None = None,
        env: dict[str, Any] | None = None,
        file_name: str | None = None,
        env_prefix: str | None = None,
        defaults: dict[str, Any] | None = None,
    ) -> None:
        self.cli = cli or {}
        self.file = file or {}
        self.env = env or {}
        self.file_name = file_name
        self.env_prefix = env_prefix
        self.defaults = defaults or {}

    @classmethod
    def gather(
        cls,
        var_pairs: Iterable[str] = (),
        vars_file: str | None = None,
        vars_env: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Sources:
        return cls(
            cli=parse_assignments(var_pairs),
            file=load_vars_file(vars_file) if vars_file else {},
            env=from_env(vars_env, environ),
            file_name=vars_file,
            env_prefix=vars_env,
        )

    def with_defaults(self, specs: Mapping[str, dict]) -> Sources:
        """These sources, then the defaults of `specs` (never a secret's, nor a required
        variable's: that one is asked for)."""
        defaults = {
            name: spec["default"]
            for name, spec in specs.items()
            if "default" in spec and not spec.get("secret") and not spec.get("required")
        }
        return Sources(self.cli, self.file, self.env, self.file_name, self.env_prefix, defaults)

    def names(self) -> set[str]:
        """The names people supplied (defaults are not supplied)."""
        return set(self.cli) | set(self.file) | set(self.env)

    def lookup(self, name: str) -> tuple[Any, str] | None:
        """(value, source label) of the highest-priority source that has `name`, or None."""
        if name in self.cli:
            return self.cli[name], "--var"
        if name in self.file:
            return self.file[name], "--vars-file %s" % self.file_name
        if name in self.env:
            return self.env[name], "environment %s%s" % (self.env_prefix, name)
        if name in self.defaults:
            return self.defaults[name], "default"
        return None


def adhoc_spec() -> dict[str, Any]:
    """The spec given to a variable a template uses without declaring it, when supplied."""
    return {"type": "str", "required": True, "secret": False, "declared": False}


def describe_missing(name: str, spec: Mapping[str, Any]) -> str:
    text = "  %s" % name
    if spec.get("description"):
        text += " — %s" % spec["description"]
    if spec.get("choices"):
        text += " (one of: %s)" % ", ".join(str(c) for c in spec["choices"])
    elif spec.get("type", "str") != "str":
        text += " (%s)" % spec["type"]
    return text


def needs_value(spec: Mapping[str, Any]) -> bool:
    """Whether a variable must get a value (given, prompted) when it has none by default."""
    return bool(spec.get("required")) or ("default" not in spec and not spec.get("optional"))


def resolve(
    specs: Mapping[str, dict],
    sources: Sources,
    fixed: Mapping[str, Any] | None = None,
    prompt: Callable[[str, dict], Any] | None = None,
    names: Iterable[str] | None = None,
    recorded: tuple[str, Iterable[str]] | None = None,
) -> dict[str, Any]:
    """Resolve the value of every variable in `specs` (or of those in `names`).

    `fixed` holds values baked at compile time, or (`recorded` = (the run, their names)) those
    a run being resumed recorded: they win and may not be given again.
    Every given value is checked first, so nobody types a prompt (a secret) for a run that a bad
    `--var` stops anyway. Then `prompt(name, spec)` asks a person for each variable that needs
    a value (only passed on a terminal; it returns the raw answer); the others take their
    default, or stay absent when they may be absent.
    Raises VariableError listing every problem at once.
    """
    fixed = fixed or {}
    order = sorted(specs) if names is None else list(names)
    values, problems = _given(specs, sources, fixed, order, recorded)
    if problems:
        if prompt is None:
            absent = [n for n in order if n not in values and sources.lookup(n) is None and needs_value(specs[n])]
            problems.extend(_missing_text(specs, absent))
        raise VariableError("\n".join(problems))
    missing = []
    for name in order:
        spec = specs[name]
        if name in values:
            continue
        if needs_value(spec):
            if prompt is None:
                missing.append(name)
            else:
                values[name] = ask(name, spec, prompt)
        elif "default" in spec:
            values[name] = spec["default"]
    if missing:
        raise VariableError("\n".join(_missing_text(specs, missing)))
    return values


def origins(
    specs: Mapping[str, dict], sources: Sources, values: Mapping[str, Any], fixed: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """Where each variable's value comes from, by name: "compiled in", the source's label
    ("--var", "--vars-file F", "environment PREFIX_NAME"), "default" or "prompt"; for a
    variable without a value, "may be absent" or "needed when run"."""
    fixed = fixed or {}
    found = {}
    for name in sorted(set(specs) | set(values)):
        spec = specs.get(name, {})
        given = sources.lookup(name)
        if name in fixed:
            found[name] = "compiled in"
        elif given is not None:
            found[name] = given[1]
        elif name in values:
            found[name] = "default" if "default" in spec and values[name] == spec["default"] else "prompt"
        else:
            found[name] = "may be absent" if spec.get("optional") else "needed when run"
    return found


def _given(
    specs: Mapping[str, dict], sources: Sources, fixed: Mapping[str, Any], order: Iterable[str],
    recorded: tuple[str, Iterable[str]] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """(fixed and given values, problems) — the values people supplied, coerced and checked."""
    values = dict(fixed)
    problems = []
    run, kept = recorded if recorded is not None else ("", ())
    kept = set(kept)
    for name in order:
        spec = specs[name]
        found = sources.lookup(name)
        if name in fixed:
            if found is not None and not spec.get("secret") and not _same(spec, found[0], fixed[name]):
                if name in kept:
                    problems.append(
                        "%s used %s=%s; %s gives another value, which needs `resume --replan` (the run then goes on "
                        "with it, recorded)" % (run, name, show(spec, fixed[name]), found[1])
                    )
                    continue
                problems.append(
                    "%s was fixed to %s when the runbook was compiled; %s cannot change it"
                    % (name, show(spec, fixed[name]), found[1])
                )
        elif found is not None:
            raw, label = found
            try:
                values[name] = check(name, spec, coerce(spec, raw, label))
            except VariableError as exc:
                problems.append("%s (from %s): %s" % (name, label, exc))
    return values, problems


def _missing_text(specs: Mapping[str, dict], missing: list[str]) -> list[str]:
    if not missing:
        return []
    return [
        "missing required variable%s (give them with --var NAME=VALUE, --vars-file or --vars-env):\n%s"
        % ("s" if len(missing) > 1 else "", "\n".join(describe_missing(n, specs[n]) for n in missing))
    ]


def _same(spec: Mapping[str, Any], raw: Any, value: Any) -> bool:
    try:
        return coerce(spec, raw) == value
    except VariableError:
        return False


def ask(name: str, spec: Mapping[str, Any], prompt: Callable[[str, Any], Any]) -> Any:
    """Prompt until the answer is valid; `prompt` returns the raw text (or raises EOFError)."""
    while True:
        raw = prompt(name, spec)
        if raw == "" and "default" in spec:
            return spec["default"]
        try:
            return check(name, spec, coerce(spec, raw, "prompt"))
        except VariableError as exc:
            hint = getattr(prompt, "error", None)
            if hint is None:
                raise
            hint("%s: %s" % (name, exc))
