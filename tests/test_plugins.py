"""Plugins: discovery through real entry points (the probe plugin `echo` is installed in the
venv), parameter conversion, configuration, the host's instances and cleanup, the python plugin."""

import importlib.metadata
import json

import pytest

from playbook.runtime import plugins
from playbook.runtime.plugins import (
    FunctionSignature,
    ParameterDef,
    Plugin,
    PluginError,
    PluginHost,
    PluginMetadata,
    PythonPlugin,
    Registry,
    check_params,
    convert_param,
    describe_plugins,
    expand_env,
    merge_config,
)


@pytest.fixture(scope="module")
def registry():
    return Registry()


def forbid_scanning(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("entry points were scanned")

    monkeypatch.setattr(importlib.metadata, "entry_points", boom)
    monkeypatch.setattr(importlib.metadata, "distributions", boom)


# --- the documented import path -----------------------------------------------------------


def test_seed_import_path_exports_the_api():
    from playbook.domain.plugins import FunctionSignature as F
    from playbook.domain.plugins import ParameterDef as P
    from playbook.domain.plugins import Plugin as B
    from playbook.domain.plugins import PluginMetadata as M

    assert (B, M, F, P) == (Plugin, PluginMetadata, FunctionSignature, ParameterDef)


def test_parameter_def_accepts_min_max_and_min_value_max_value():
    assert ParameterDef(type="int", min=1, max=5) == ParameterDef(type="int", min_value=1, max_value=5)
    pdef = ParameterDef(type="int", min=1, max=5)
    assert (pdef.min_value, pdef.max_value) == (1, 5)
    assert ParameterDef().type == "str" and ParameterDef().required is False


# --- registry -----------------------------------------------------------------------------


def test_discovery_finds_builtin_and_installed_plugins(registry):
    assert registry.names()[0] == "python"
    assert "echo" in registry.names()
    assert registry.entry_point_spec("echo") == "playbook_probe:EchoPlugin"
    assert registry.distribution("echo") == "playbook-probe"
    assert registry.distribution("python") is None
    assert registry.metadata("echo").name == "echo"


def test_python_plugin_needs_no_scan(monkeypatch):
    forbid_scanning(monkeypatch)
    reg = Registry()
    assert reg.load("python") is PythonPlugin
    assert reg.entry_point_spec("python") == "playbook.runtime.plugins:PythonPlugin"
    assert reg.distribution("python") is None
    assert "notify" in reg.metadata("python").functions


def test_explicit_entry_points_are_used_without_scanning(monkeypatch):
    forbid_scanning(monkeypatch)
    reg = Registry({"echo": "playbook_probe:EchoPlugin"})
    assert reg.names() == ["python", "echo"]
    assert reg.load("echo").__name__ == "EchoPlugin"
    with pytest.raises(PluginError, match="plugin 'slack' is not installed"):
        reg.load("slack")


def test_python39_dict_api_of_entry_points(monkeypatch):
    class EP:
        def __init__(self, name, value):
            self.name, self.value = name, value

    def old_entry_points(**kwargs):  # 3.9: no keyword arguments, returns {group: [...]}
        if kwargs:
            raise TypeError("entry_points() got an unexpected keyword argument")
        return {"playbook.plugins": [EP("echo", "playbook_probe:EchoPlugin")], "other": [EP("x", "y:Z")]}

    monkeypatch.setattr(importlib.metadata, "entry_points", old_entry_points)
    reg = Registry()
    assert reg.names() == ["python", "echo"]
    assert reg.load("echo").__name__ == "EchoPlugin"


def test_unknown_plugin_message(registry):
    with pytest.raises(PluginError) as err:
        registry.load("slack")
    assert str(err.value) == (
        "plugin 'slack' is not installed (install the package that provides it, e.g. "
        "`pip install playbook-slack`; installed plugins: %s)" % ", ".join(registry.names())
    )
    with pytest.raises(PluginError, match="did you mean 'echo'"):
        registry.load("ecoh")


def test_import_error_of_a_plugin_is_one_line():
    reg = Registry({"broken": "no_such_module_xyz:Plugin", "noattr": "playbook_probe:Nope"})
    with pytest.raises(PluginError) as err:
        reg.load("broken")
    assert "\n" not in str(err.value)
    assert "plugin 'broken' (no_such_module_xyz:Plugin) could not be loaded" in str(err.value)
    assert "No module named 'no_such_module_xyz'" in str(err.value)
    with pytest.raises(PluginError, match="AttributeError"):
        reg.load("noattr")


def test_unknown_function_did_you_mean(registry):
    with pytest.raises(PluginError) as err:
        registry.signature("python", "notfy")
    assert str(err.value) == (
        "plugin 'python' has no function 'notfy' (did you mean 'notify'?); available functions: notify, sleep, throw"
    )


def test_describe_plugins_lists_functions_and_survives_broken_plugins():
    listing = describe_plugins(Registry({"echo": "playbook_probe:EchoPlugin", "broken": "no_such_module_xyz:P"}))
    by_name = {p["name"]: p for p in listing}
    assert [p["name"] for p in listing] == ["python", "broken", "echo"]
    assert "could not be loaded" in by_name["broken"]["error"]
    python = by_name["python"]
    assert python["distribution"] is None and python["description"]
    assert [f["name"] for f in python["functions"]] == ["notify", "sleep", "throw"]
    notify = python["functions"][0]
    assert notify["parameters"][0]["name"] == "message" and notify["parameters"][0]["required"] is True
    assert {f["name"] for f in by_name["echo"]["functions"]} == {"show"}
    json.dumps(listing)  # serialisable for --json output


# --- parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, given, expected",
    [
        ("i", "42", 42),  # "{{NUM}}" rendered
        ("i", 7, 7),
        ("f", "3.5", 3.5),
        ("f", 2, 2.0),
        ("b", "yes", True),
        ("b", "true", True),
        ("b", "1", True),
        ("b", "no", False),
        ("l", '["x", 1]', ["x", 1]),
        ("d", '{"k": 2}', {"k": 2}),
        ("s", "['a', 'b']", "['a', 'b']"),
    ],
)
def test_conversion_to_declared_types(registry, name, given, expected):
    converted, errors = check_params(registry.signature("echo", "show"), {name: given})
    assert errors == []
    assert converted == {name: expected} and type(converted[name]) is type(expected)


@pytest.mark.parametrize(
    "name, given, message",
    [
        ("i", 1.5, "parameter 'i': 1.5 is not an integer"),
        ("i", "abc", "parameter 'i': 'abc' is not an integer"),
        ("i", True, "parameter 'i': expected an integer, got a boolean"),
        ("b", "maybe", "parameter 'b': 'maybe' is not a boolean"),
        ("l", "not json", "parameter 'l': 'not json' is not a JSON array"),
        ("d", "[1]", "parameter 'd': expected a dict, got str"),
    ],
)
def test_conversion_errors(registry, name, given, message):
    converted, errors = check_params(registry.signature("echo", "show"), {name: given})
    assert len(errors) == 1 and errors[0].startswith(message)
    assert name not in converted


def test_missing_and_unknown_params_are_all_reported(registry):
    sig = registry.signature("python", "notify")
    converted, errors = check_params(sig, {"mesage": "hi", "zzz": 1})
    assert errors == [
        "unknown parameter 'mesage' (did you mean 'message'?)",
        "unknown parameter 'zzz' (accepted: message)",
        "missing required parameter 'message'",
    ]


def test_defaults_filled_in_and_deferred_left_alone(registry):
    converted, errors = check_params(registry.signature("python", "throw"), {})
    assert errors == [] and converted == {"message": plugins.THROW_DEFAULT}
    converted, errors = check_params(registry.signature("python", "sleep"), {"seconds": "{{ N }}"}, deferred={"seconds"})
    assert errors == [] and converted == {"seconds": "{{ N }}"}


def test_choices_min_max_pattern():
    assert convert_param(ParameterDef(type="int", min=1, max=5), "3") == 3
    with pytest.raises(PluginError, match="below the minimum 1"):
        convert_param(ParameterDef(type="int", min=1, max=5), 0)
    with pytest.raises(PluginError, match="above the maximum 5"):
        convert_param(ParameterDef(type="float", max_value=5), "5.5")
    assert convert_param(ParameterDef(choices=["low", "high"]), "low") == "low"
    with pytest.raises(PluginError, match="not one of the allowed values: 'low', 'high'"):
        convert_param(ParameterDef(choices=["low", "high"]), "mid")
    assert convert_param(ParameterDef(pattern=r"#\w+"), "#ops") == "#ops"
    with pytest.raises(PluginError, match="does not match the pattern"):
        convert_param(ParameterDef(pattern=r"#\w+"), "ops")
    assert convert_param(ParameterDef(type="string"), 5) == "5"  # JSON-Schema alias
    assert convert_param(ParameterDef(type="any"), [1]) == [1]


# --- configuration ------------------------------------------------------------------------


def test_merge_config_node_overlays_runbook():
    assert merge_config({"a": 1, "b": {"x": 1}}, {"b": {"y": 2}, "c": 3}) == {"a": 1, "b": {"y": 2}, "c": 3}
    assert merge_config(None, None) == {}
    runbook = {"a": 1}
    merge_config(runbook, {"a": 2})
    assert runbook == {"a": 1}


def test_expand_env():
    env = {"HOOK": "https://hooks.example/x", "EMPTY": ""}
    config = {
        "url": "${HOOK}",
        "nested": {"items": ["pre-${HOOK}", 5, True]},
        "fallback": "${NOPE:-default value}",
        "empty": "${EMPTY:-used}",
        "literal": "$$ $HOME $${HOOK} ${not valid}",
    }
    assert expand_env(config, env) == {
        "url": "https://hooks.example/x",
        "nested": {"items": ["pre-https://hooks.example/x", 5, True]},
        "fallback": "default value",
        "empty": "used",
        "literal": "$$ $HOME $${HOOK} ${not valid}",
    }


def test_expand_env_missing_variable():
    with pytest.raises(PluginError) as err:
        expand_env({"webhook": "${SLACK_WEBHOOK}"}, {}, where="plugin_config of node notify")
    assert str(err.value) == "plugin_config of node notify: environment variable SLACK_WEBHOOK is not set"
    with pytest.raises(PluginError, match="environment variables A, B are not set"):
        expand_env({"x": "${A}${B}${A}"}, {})


# --- host ---------------------------------------------------------------------------------


class Recorder(Plugin):
    """Counts instances and cleanups; `fail_cleanup` in the config makes cleanup raise."""

    created = []
    cleaned = []

    def get_metadata(self):
        return PluginMetadata(
            name="rec",
            functions={"get": FunctionSignature(name="get", parameters={"n": ParameterDef(type="int")})},
        )

    def initialize(self, config):
        self.config = config
        Recorder.created.append(config)

    def execute(self, function_name, params):
        if params.get("n") == 0:
            raise ValueError("zero\nsecond line")
        return {"config": self.config, "params": params}

    def cleanup(self):
        Recorder.cleaned.append(self.config)
        if self.config.get("fail_cleanup"):
            raise RuntimeError("cleanup broke")


@pytest.fixture
def recorder():
    Recorder.created, Recorder.cleaned = [], []
    reg = Registry({"rec": "%s:Recorder" % __name__})
    assert reg.load("rec") is Recorder
    return reg


def test_one_instance_per_distinct_config(recorder):
    host = PluginHost(recorder, environ={"TOKEN": "t1"})
    host.call("rec", "get", {}, {"a": 1, "b": 2})
    host.call("rec", "get", {}, {"b": 2, "a": 1})  # same config, other key order
    host.call("rec", "get", {}, {"a": 2})
    host.call("rec", "get", {}, {"token": "${TOKEN}"})
    host.call("rec", "get", {}, {"token": "t1"})  # the same once expanded
    assert Recorder.created == [{"a": 1, "b": 2}, {"a": 2}, {"token": "t1"}]
    assert host.close() == []
    assert len(Recorder.cleaned) == 3


def test_cleanup_always_called_even_if_one_raises(recorder):
    host = PluginHost(recorder)
    host.call("rec", "get", {}, {"fail_cleanup": True})
    host.call("rec", "get", {}, {"other": 1})
    errors = host.close()
    assert len(Recorder.cleaned) == 2
    assert errors == ["plugin 'rec' cleanup failed: RuntimeError: cleanup broke"]
    assert host.close() == [] and len(Recorder.cleaned) == 2  # exactly once


def test_host_as_context_manager(recorder):
    with PluginHost(recorder) as host:
        host.call("rec", "get", {"n": "3"}, {})
    assert Recorder.cleaned == [{}]


def test_call_converts_and_reports_all_param_errors(recorder):
    with PluginHost(recorder) as host:
        assert host.call("rec", "get", {"n": "3"}, None)["params"] == {"n": 3}
        with pytest.raises(PluginError) as err:
            host.call("rec", "get", {"n": 1.5, "nn": 1})
        assert str(err.value) == "rec.get: unknown parameter 'nn' (did you mean 'n'?); parameter 'n': 1.5 is not an integer"
        with pytest.raises(PluginError, match=r"^rec.get failed: ValueError: zero$") as err:
            host.call("rec", "get", {"n": 0})
        assert isinstance(err.value.__cause__, ValueError)
        with pytest.raises(PluginError, match="plugin_config of node p1: environment variable NOPE_X is not set"):
            host.call("rec", "get", {}, {"k": "${NOPE_X}"}, where="plugin_config of node p1")


def test_probe_plugin_end_to_end(registry):
    with PluginHost(registry, environ={"PROBE_SECRET": "s3cret"}) as host:
        config = merge_config({"global_key": "from-runbook-level"}, {"token": "${PROBE_SECRET}", "tmpl": "42"})
        params = {"i": "42", "f": "3.5", "b": "True", "l": '["x", 1]', "d": '{"k": 2}', "s": "['a', 'b']"}
        out = json.loads(host.call("echo", "show", params, config))
        assert out["config"] == {"global_key": "from-runbook-level", "token": "s3cret", "tmpl": "42"}
        assert out["params"] == {"i": 42, "f": 3.5, "b": True, "l": ["x", 1], "d": {"k": 2}, "s": "['a', 'b']"}
        other = json.loads(host.call("echo", "show", {"i": 7, "b": "yes"}, {"token": "second-node-config"}))
        assert other["config"] == {"token": "second-node-config"}
        with pytest.raises(PluginError, match="parameter 'i': 1.5 is not an integer"):
            host.call("echo", "show", {"i": 1.5}, {})


# --- the python plugin --------------------------------------------------------------------


def test_python_notify_sleep_throw():
    with PluginHost(Registry({})) as host:
        assert host.call("python", "notify", {"message": "Deployed"}) == "Notification sent: Deployed"
        assert host.call("python", "sleep", {"seconds": "0.01"}) == "Slept 0.01 s"
        assert host.call("python", "sleep", {"seconds": 0}) == "Slept 0 s"
        with pytest.raises(PluginError, match="below the minimum 0"):
            host.call("python", "sleep", {"seconds": -1})
        with pytest.raises(PluginError, match="missing required parameter 'message'"):
            host.call("python", "notify", {})
        with pytest.raises(PluginError) as err:
            host.call("python", "throw", {})
        assert str(err.value) == "Intentional exception for testing purposes"
        with pytest.raises(PluginError, match="^boom$"):
            host.call("python", "throw", {"message": "boom"})
