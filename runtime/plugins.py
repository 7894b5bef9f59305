"""Plugins: the API plugin authors implement, the registry that finds them, parameter checking,
plugin configuration, the host that runs calls, and the built-in ``python`` plugin.

Plugins are classes registered under the entry-point group ``playbook.plugins``::

    [project.entry-points."playbook.plugins"]
    slack = "playbook_slack.plugin:SlackPlugin"

The 1.x import path ``playbook.domain.plugins`` re-exports the API defined here.

Standard library only, Python 3.9 syntax: this module goes into bundles.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field

from playbook.runtime.errors import PlaybookError
from playbook.runtime.suggest import did_you_mean
from playbook.runtime.variables import VariableError, check, coerce

TYPE_CHECKING = False  # typing is not imported at run time (start-up)
if TYPE_CHECKING:
    from typing import Any, Dict, Iterable, List, Literal, Mapping, Optional, Tuple

GROUP = "playbook.plugins"
BUILTINS = {"python": "playbook.runtime.plugins:PythonPlugin"}

# Type names plugins may declare. Aliases are accepted for plugins written with JSON-Schema words.
TYPE_ALIASES = {
    "string": "str",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
    "array": "list",
    "object": "dict",
}


class PluginError(PlaybookError):
    """A plugin problem reported to people: unknown plugin or function, bad parameters or config,
    or a failure raised by a plugin on purpose."""


# --------------------------------------------------------------------------------------------
# The API plugin authors implement
# --------------------------------------------------------------------------------------------


@dataclass(init=False)
class ParameterDef:
    """One parameter of a plugin function.

    `min`/`max` are accepted as synonyms of `min_value`/`max_value`.
    """

    type: str = "str"
    required: bool = False
    default: Any = None
    description: str = ""
    choices: Optional[List[Any]] = None
    min_value: Any = None
    max_value: Any = None
    pattern: Optional[str] = None

    def __init__(
        self,
        type: str = "str",
        required: bool = False,
        default: Any = None,
        description: str = "",
        choices: Optional[Iterable[Any]] = None,
        min_value: Any = None,
        max_value: Any = None,
        pattern: Optional[str] = None,
        min: Any = None,
        max: Any = None,
    ) -> None:
        self.type = type
        self.required = required
        self.default = default
        self.description = description
        self.choices = list(choices) if choices is not None else None
        self.min_value = min_value if min_value is not None else min
        self.max_value = max_value if max_value is not None else max
        self.pattern = pattern


@dataclass
class FunctionSignature:
    """One function of a plugin.

    `rehearse_safe`: `playbook test` may call the function while it rehearses a runbook (its
    result then becomes the step's output). Declare it only for a function whose one effect is
    its return value or its exception: no network, files, processes, clocks or sleeps. A function
    that does not declare it never runs in a rehearsal: its step takes the scenario's outcome
    (by default success without output)."""

    name: str
    description: str = ""
    parameters: Dict[str, ParameterDef] = field(default_factory=dict)
    returns: Any = None
    rehearse_safe: bool = False


@dataclass
class PluginMetadata:
    name: str
    version: str = ""
    author: str = ""
    description: str = ""
    functions: Dict[str, FunctionSignature] = field(default_factory=dict)


class Plugin:
    """Base class of plugins. Implement `get_metadata` and `execute`; `initialize` receives the
    plugin configuration (runbook-level overlaid by the node's) and `cleanup` runs once at the end
    of the run."""

    def get_metadata(self) -> PluginMetadata:
        raise NotImplementedError("%s must implement get_metadata()" % type(self).__name__)

    def initialize(self, config: Dict[str, Any]) -> None:
        self.config = config

    def execute(self, function_name: str, params: Dict[str, Any]) -> Any:
        raise NotImplementedError("%s must implement execute()" % type(self).__name__)

    def cleanup(self) -> None:
        pass


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------




def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return "%s: %s" % (type(exc).__name__, text[0]) if text else type(exc).__name__


def _scan_entry_points() -> Dict[str, Tuple[str, Optional[str]]]:
    """{name: (spec, distribution name or None)} of the `playbook.plugins` group."""
    import importlib.metadata as md

    entry_points: Any = md.entry_points  # its result's type differs between Python versions
    try:
        found = entry_points(group=GROUP)  # Python 3.10+
    except TypeError:  # Python 3.9: a dict of group -> entry points
        found = entry_points().get(GROUP, ())
    result = {}
    for ep in found:
        if ep.name in result:  # the first on sys.path wins, as for imports
            continue
        dist = getattr(ep, "dist", None)  # 3.10+
        result[ep.name] = (ep.value, dist.metadata["Name"] if dist is not None else None)
    return result


def _distribution_of(name: str, spec: str) -> Optional[str]:
    """The distribution declaring entry point `name = spec` (Python 3.9 lacks `EntryPoint.dist`)."""
    import importlib.metadata as md

    for dist in md.distributions():
        for ep in dist.entry_points:
            if ep.group == GROUP and ep.name == name and ep.value == spec:
                return dist.metadata["Name"]
    return None


class Registry:
    """Finds plugin classes by name.

    `entry_points=None` discovers installed plugins through `importlib.metadata`, lazily: only
    when a plugin other than a built-in is asked for. An explicit `{"name": "module:Class"}` is
    used instead of discovery (bundles pass the plugins they were built with). Built-in plugins
    are always available.
    """

    def __init__(self, entry_points: Optional[Mapping[str, str]] = None) -> None:
        self._explicit = None if entry_points is None else dict(entry_points)
        self._found: Optional[Dict[str, Tuple[str, Optional[str]]]] = None  # {name: (spec, distribution)} once known
        self._classes: Dict[str, type] = {}
        self._metadata: Dict[str, PluginMetadata] = {}

    def _entries(self) -> Dict[str, Tuple[str, Optional[str]]]:
        if self._found is None:
            if self._explicit is not None:
                self._found = {n: (spec, None) for n, spec in self._explicit.items()}
            else:
                self._found = _scan_entry_points()
            for name, spec in BUILTINS.items():
                self._found[name] = (spec, None)
        return self._found

    def names(self) -> List[str]:
        """Built-in plugins first, then the others sorted."""
        others = sorted(n for n in self._entries() if n not in BUILTINS)
        return list(BUILTINS) + others

    def entry_point_spec(self, name: str) -> str:
        """"module:Class" of a plugin."""
        if name in BUILTINS:
            return BUILTINS[name]
        entry = self._entries().get(name)
        if entry is None:
            raise self._unknown(name)
        return entry[0]

    def distribution(self, name: str) -> Optional[str]:
        """The distribution providing the plugin; None for built-ins (and when unknown in the
        explicit mode)."""
        if name in BUILTINS:
            return None
        spec = self.entry_point_spec(name)
        dist = self._entries()[name][1]
        if dist is None and self._explicit is None:
            dist = _distribution_of(name, spec)
        return dist

    def _unknown(self, name: str) -> PluginError:
        installed = self.names()
        advice = did_you_mean(name, installed) or (
            "install the package that provides it, e.g. `pip install playbook-%s`;" % name
        )
        return PluginError(
            "plugin %r is not installed (%s installed plugins: %s)" % (name, advice, ", ".join(installed))
        )

    def load(self, name: str) -> type:
        """The plugin class registered as `name`."""
        if name in self._classes:
            return self._classes[name]
        spec = self.entry_point_spec(name)
        module_name, _, attr = spec.partition(":")
        attr = attr.split("[")[0].strip()  # drop entry-point extras
        try:
            import importlib

            obj = importlib.import_module(module_name.strip())
            for part in attr.split("."):
                obj = getattr(obj, part)
        except Exception as exc:
            raise PluginError("plugin %r (%s) could not be loaded: %s" % (name, spec, _one_line(exc))) from exc
        if not isinstance(obj, type) or not callable(getattr(obj, "execute", None)):
            raise PluginError("plugin %r (%s) is not a plugin class" % (name, spec))
        self._classes[name] = obj
        return obj

    def metadata(self, name: str) -> PluginMetadata:
        """The PluginMetadata of a plugin."""
        if name not in self._metadata:
            cls = self.load(name)
            try:
                meta = cls().get_metadata()
            except Exception as exc:
                raise PluginError("plugin %r could not describe itself: %s" % (name, _one_line(exc))) from exc
            self._metadata[name] = meta
        return self._metadata[name]

    def signature(self, name: str, function: str) -> FunctionSignature:
        """The FunctionSignature of `function` of plugin `name`."""
        functions = self.metadata(name).functions or {}
        if function not in functions:
            hint = did_you_mean(function, functions)
            raise PluginError(
                "plugin %r has no function %r%s; available functions: %s"
                % (name, function, " (%s)" % hint if hint else "", ", ".join(sorted(functions)) or "none")
            )
        return functions[function]


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------


def convert_param(pdef: ParameterDef, value: Any) -> Any:
    """Convert `value` to the declared type and apply choices, min/max and pattern.

    Returns the converted value or raises PluginError (message without the parameter name).
    """
    kind = TYPE_ALIASES.get(pdef.type, pdef.type)
    if kind == "any":
        return value
    spec: Dict[str, Any] = {"type": kind}
    if pdef.choices:
        spec["choices"] = pdef.choices
    if pdef.min_value is not None:
        spec["min"] = pdef.min_value
    if pdef.max_value is not None:
        spec["max"] = pdef.max_value
    if pdef.pattern is not None and kind == "str":
        spec["pattern"] = pdef.pattern
    try:
        return check(None, spec, coerce(spec, value))
    except VariableError as exc:
        raise PluginError(str(exc)) from None


def check_params(
    signature: FunctionSignature, params: Optional[Dict[str, Any]], deferred: Iterable[str] = ()
) -> Tuple[Dict[str, Any], List[str]]:
    """Check and convert the parameters of a call.

    Returns `(converted, errors)`: converted values (defaults filled in for missing optional
    parameters that have one) and a list of messages. Names in `deferred` hold values not known
    yet (templates rendered at run time): they count as present but are left as they are.
    """
    params = params or {}
    declared = signature.parameters or {}
    converted = {}
    errors = []
    for name in params:
        if name not in declared:
            hint = did_you_mean(name, declared) or "accepted: %s" % (", ".join(declared) or "none")
            errors.append("unknown parameter %r (%s)" % (name, hint))
    for name, pdef in declared.items():
        value = params.get(name)
        if value is None:
            if pdef.required:
                errors.append("missing required parameter %r" % name)
            elif pdef.default is not None:
                converted[name] = pdef.default
            continue
        if name in deferred:
            converted[name] = value
            continue
        try:
            converted[name] = convert_param(pdef, value)
        except PluginError as exc:
            errors.append("parameter %r: %s" % (name, exc))
    return converted, errors


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

# `$$` is matched first so that it stays literal (and does not start a `${...}`).
_ENV_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def merge_config(runbook_level: Optional[Dict[str, Any]], node_level: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """The node's plugin_config overlaid (shallowly) on the runbook-level one."""
    merged = dict(runbook_level or {})
    merged.update(node_level or {})
    return merged


def expand_env(config: Any, environ: Optional[Mapping[str, str]] = None, where: str = "plugin_config") -> Any:
    """Expand `${NAME}` and `${NAME:-default}` in the string values of `config`, recursively.

    Other uses of `$` (including `$$` and `$NAME`) stay literal. A variable that is not set and
    has no default is a PluginError naming `where`.
    """
    import os

    environ = os.environ if environ is None else environ
    missing = []

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$$"
        name, default = match.group(1), match.group(2)
        value = environ.get(name)
        if value is None or (value == "" and default is not None):
            if default is not None:
                return default
            if name not in missing:
                missing.append(name)
            return match.group(0)
        return value

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return _ENV_RE.sub(replace, value)
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    result = walk(config or {})
    if missing:
        raise PluginError(
            "%s: environment variable%s %s %s not set"
            % (where, "s" if len(missing) > 1 else "", ", ".join(missing), "are" if len(missing) > 1 else "is")
        )
    return result


# --------------------------------------------------------------------------------------------
# Host
# --------------------------------------------------------------------------------------------


class PluginHost:
    """Runs plugin calls: one initialised instance per (plugin, distinct expanded config),
    cleaned up once by `close()`."""

    def __init__(self, registry: Registry, environ: Optional[Mapping[str, str]] = None) -> None:
        self.registry = registry
        self.environ = environ
        self._instances: Dict[Tuple[str, str], Plugin] = {}  # (name, canonical config) -> instance, in creation order
        self._lock = threading.Lock()

    def instance(self, plugin: str, config: Optional[Dict[str, Any]] = None, where: Optional[str] = None) -> Plugin:
        """The initialised instance of `plugin` for `config` (expanded here)."""
        where = where or "plugin_config of plugin %r" % plugin
        expanded = expand_env(config or {}, self.environ, where)
        key = (plugin, json.dumps(expanded, sort_keys=True, separators=(",", ":"), default=str))
        with self._lock:
            if key not in self._instances:
                cls = self.registry.load(plugin)
                try:
                    instance = cls()
                    instance.initialize(expanded)
                except PluginError:
                    raise
                except Exception as exc:
                    raise PluginError("plugin %r failed to initialise: %s" % (plugin, _one_line(exc))) from exc
                self._instances[key] = instance
            return self._instances[key]

    def call(
        self,
        plugin: str,
        function: str,
        params: Optional[Dict[str, Any]] = None,
        config: Optional[Dict[str, Any]] = None,
        where: Optional[str] = None,
    ) -> Any:
        """Check and convert `params`, then call `plugin.function`; returns its result.

        A PluginError raised by the plugin passes through; other exceptions become a PluginError
        (with the original as its cause).
        """
        signature = self.registry.signature(plugin, function)
        converted, errors = check_params(signature, params)
        if errors:
            raise PluginError("%s.%s: %s" % (plugin, function, "; ".join(errors)))
        instance = self.instance(plugin, config, where)
        try:
            return instance.execute(function, converted)
        except PluginError:
            raise
        except Exception as exc:
            raise PluginError("%s.%s failed: %s" % (plugin, function, _one_line(exc))) from exc

    def close(self) -> List[str]:
        """Call `cleanup()` on every instance once. Never raises; returns the error messages."""
        with self._lock:
            instances, self._instances = self._instances, {}
        errors = []
        for (name, _), instance in instances.items():
            try:
                instance.cleanup()
            except Exception as exc:
                errors.append("plugin %r cleanup failed: %s" % (name, _one_line(exc)))
        return errors

    def __enter__(self) -> PluginHost:
        return self

    def __exit__(self, *exc_info: Any) -> Literal[False]:
        self.close()
        return False


# --------------------------------------------------------------------------------------------
# Built-in plugin
# --------------------------------------------------------------------------------------------

THROW_DEFAULT = "Intentional exception for testing purposes"


class PythonPlugin(Plugin):
    """Built-in utilities: notify, sleep, throw."""

    def get_metadata(self) -> PluginMetadata:
        from playbook import __version__

        return PluginMetadata(
            name="python",
            version=__version__,
            author="Playbook",
            description="Built-in utility functions: notify, sleep, throw",
            functions={
                "notify": FunctionSignature(
                    name="notify",
                    description="Return a notification message (shown as the node's output)",
                    parameters={
                        "message": ParameterDef(type="str", required=True, description="Text of the notification"),
                    },
                    returns="str",
                    rehearse_safe=True,  # a pure function of its parameters
                ),
                "sleep": FunctionSignature(
                    name="sleep",
                    description="Wait for a number of seconds",
                    parameters={
                        "seconds": ParameterDef(
                            type="float", required=True, min_value=0, description="Seconds to wait (may be fractional)"
                        ),
                    },
                    returns="str",
                ),
                "throw": FunctionSignature(
                    name="throw",
                    description="Fail on purpose with a message (to try out retries and error handling)",
                    parameters={
                        "message": ParameterDef(
                            type="str", default=THROW_DEFAULT, description="Error message of the failure"
                        ),
                    },
                    rehearse_safe=True,  # it only raises
                ),
            },
        )

    def execute(self, function_name: str, params: Dict[str, Any]) -> Any:
        if function_name == "notify":
            return "Notification sent: %s" % params["message"]
        if function_name == "sleep":
            time.sleep(params["seconds"])
            return "Slept %g s" % params["seconds"]
        if function_name == "throw":
            raise PluginError(params.get("message") or THROW_DEFAULT)
        raise PluginError("python plugin has no function %r" % function_name)


# --------------------------------------------------------------------------------------------
# Listing
# --------------------------------------------------------------------------------------------


def describe_plugins(registry: Registry) -> List[Dict[str, Any]]:
    """Every plugin with its functions, for `playbook info --plugins`. A plugin that cannot be
    loaded is listed with an `error` instead."""
    result = []
    for name in registry.names():
        try:
            distribution = registry.distribution(name)
        except Exception:
            distribution = None
        entry: Dict[str, Any] = {"name": name, "distribution": distribution}
        try:
            meta = registry.metadata(name)
        except PluginError as exc:
            entry["error"] = str(exc)
            result.append(entry)
            continue
        functions = []
        for fname, sig in sorted((meta.functions or {}).items()):
            functions.append(
                {
                    "name": fname,
                    "description": sig.description,
                    "parameters": [
                        {
                            "name": pname,
                            "type": p.type,
                            "required": bool(p.required),
                            "default": p.default,
                            "description": p.description,
                            "choices": p.choices,
                            "min": p.min_value,
                            "max": p.max_value,
                            "pattern": p.pattern,
                        }
                        for pname, p in (sig.parameters or {}).items()
                    ],
                }
            )
        entry.update(
            version=meta.version, author=meta.author, description=meta.description, functions=functions
        )
        result.append(entry)
    return result
