"""runtime/tomlfile.py: the one TOML reader (tomli, TOML 1.1) and the one key locator."""

import datetime
import json
import sys

import pytest
from conftest import run_playbook
from test_bundle import _pyenv, bare_env, compile_bundle, run

from playbook.runtime import tomlfile
from playbook.runtime.tomlfile import TomlError


# -- reading ------------------------------------------------------------------------------------
def test_multiline_inline_table_is_toml_1_1():
    assert tomlfile.loads("t = {\n    a = 1,\n    b = [2],\n}\n") == {"t": {"a": 1, "b": [2]}}


def test_syntax_error_has_message_line_and_column():
    with pytest.raises(TomlError) as info:
        tomlfile.loads('a = 1\nb = "open\n')
    assert info.value.message.startswith("invalid TOML: ")
    assert "(at line" not in info.value.message
    assert (info.value.line, info.value.col) == (2, 10)
    assert info.value.where() == " (at line 2, column 10)"


def test_decode_drops_the_byte_order_mark_and_names_the_line_of_a_bad_byte():
    assert tomlfile.decode(b"\xef\xbb\xbfa = 1\n") == "a = 1\n"
    with pytest.raises(TomlError) as info:
        tomlfile.decode(b'a = 1\nb = "caf\xe9"\n')
    assert info.value.message.startswith("not valid UTF-8 text")
    assert info.value.line == 2


@pytest.mark.parametrize("depth", [tomlfile.MAX_DEPTH + 2, 500, 990])
def test_deep_dotted_key_is_refused_at_its_line(depth):
    text = 'title = "t"\ncreated = 2024-01-01\n\n' + ".".join("k%d" % i for i in range(depth)) + " = 1\n"
    with pytest.raises(TomlError) as info:
        tomlfile.loads(text)
    assert "nested more than %d levels" % tomlfile.MAX_DEPTH in info.value.message
    assert info.value.line == 4


def test_deep_header_plus_inline_tables_is_refused():
    header = "[" + ".".join("t%d" % i for i in range(60)) + "]\n"
    text = "a = 1\n" + header + "x = " + "{y = " * 60 + "1" + "}" * 60 + "\n"
    with pytest.raises(TomlError) as info:
        tomlfile.loads(text)
    assert info.value.line == 3


def test_nesting_up_to_the_limit_is_fine():
    depth = tomlfile.MAX_DEPTH  # tables k.k.k… and the array: MAX_DEPTH levels below the top
    data = tomlfile.loads(".".join(["k"] * depth) + " = [1]\n")
    for _ in range(depth):
        data = data["k"]
    assert data == [1]
    with pytest.raises(TomlError):
        tomlfile.loads(".".join(["k"] * depth) + " = [[1]]\n")


def test_key_longer_than_tomli_allows_is_a_toml_error():
    with pytest.raises(TomlError) as info:
        tomlfile.loads("a = 1\n" + "k." * 5000 + "k = 1\n")
    assert info.value.message == "invalid TOML: arrays or tables nested too deeply"
    assert info.value.line == 2


def test_integer_with_thousands_of_digits_is_a_toml_error():
    if not hasattr(sys, "get_int_max_str_digits"):
        pytest.skip("this Python converts integers of any length")
    with pytest.raises(TomlError) as info:
        tomlfile.loads("a = 1\nb = [\n  1,\n  %s]\n" % ("9" * 5000))
    assert (info.value.message, info.value.line) == ("invalid TOML: an integer with thousands of digits", 4)


def test_plain_turns_dates_into_iso_text_at_any_depth():
    date = datetime.date(2025, 1, 20)
    value = {"d": date, "l": [datetime.time(12, 30), {"x": datetime.datetime(2025, 1, 20, 12, 0)}], "n": 1}
    assert tomlfile.plain(value) == {"d": "2025-01-20", "l": ["12:30:00", {"x": "2025-01-20T12:00:00"}], "n": 1}
    assert list(tomlfile.plain({"b": 1, "a": date, "c": [date]})) == ["b", "a", "c"]  # order kept
    deep = current = {}
    for _ in range(5000):
        current["k"] = {}
        current = current["k"]
    current["d"] = date
    result = tomlfile.plain(deep)
    for _ in range(5000):
        result = result["k"]
    assert result == {"d": "2025-01-20"}


# -- where keys are -----------------------------------------------------------------------------
def test_locate_keys_finds_headers_dotted_and_quoted_keys():
    text = '[a]\nx = 1\n"y" . z = """\nk = 2\n"""\n[ b . "c" ]\nw = 3 # c\n'
    where = tomlfile.locate_keys(text)
    assert where[("a", "x")] == (2, 1)
    assert where[("a", "y", "z")] == (3, 1)
    assert where[("a", "y")] == (3, 1)  # implied by the dotted key
    assert ("a", "k") not in where  # inside a multi-line string
    assert where[("b", "c")] == (6, 1)
    assert where[("b",)] == (6, 1)  # implied by the header
    assert where[("b", "c", "w")] == (7, 1)


def test_a_table_written_out_wins_over_its_first_mention():
    where = tomlfile.locate_keys("[a.b]\nx = 1\n\n[a]\ny = 2\n")
    assert where[("a",)] == (4, 1)
    assert where[("a", "b")] == (1, 1)


def test_keys_of_inline_tables_and_of_tables_in_arrays():
    text = 'n = { a = 1, b = { c = 2 } }\nlist = [\n  { d = 1 },\n  { e = 2 },\n]\n'
    where = tomlfile.locate_keys(text)
    assert where[("n", "a")] == (1, 7)
    assert where[("n", "b", "c")] == (1, 20)
    assert where[("list", "d")] == (3, 5)
    assert where[("list", "e")] == (4, 5)


def test_find_falls_back_to_the_enclosing_table():
    where = tomlfile.locate_keys("[a]\nx = 1\n")
    assert tomlfile.find(where, ("a", "x", "y")) == (2, 1)
    assert tomlfile.find(where, ("nope",)) == (1, 1)


def test_table_header():
    assert tomlfile.table_header("[environments.prod] # c") == ("environments", "prod")
    assert tomlfile.table_header('[[ a . "b.c" ]]') == ("a", "b.c")
    assert tomlfile.table_header("a = [1]") is None


# -- the same reader everywhere: runbooks, --vars-file, configuration files ---------------------
PROBE_RUNBOOK = """[runbook]
title = "toml probe"

[variables]
SERVICE = { type = "dict", default = { name = "none", port = 0 } }

[show]
type = "Command"
command_name = "echo name={{ SERVICE.name }} port={{ SERVICE.port }}"
"""
# TOML 1.1 multi-line inline tables, which Python's tomllib (3.11+) rejects.
PROBE_VARS = 'SERVICE = {\n    name = "web",\n    port = 8080,\n}\n'
PROBE_CONFIG = 'execution = {\n    max_retries = 2,\n}\nlogging = {\n    file_path = "run.log",\n    level = "DEBUG",\n}\n'


def _probe_files(directory):
    (directory / "probe.playbook.toml").write_text(PROBE_RUNBOOK)
    (directory / "svc.vars.toml").write_text(PROBE_VARS)
    (directory / "config.toml").write_text(PROBE_CONFIG)
    return {"PLAYBOOK_CONFIG": str(directory / "config.toml")}


def test_multiline_inline_tables_in_vars_file_and_config_file_via_playbook(tmp_path):
    env = _probe_files(tmp_path)
    plan = run_playbook(["plan", "probe.playbook.toml", "--vars-file", "svc.vars.toml"], cwd=tmp_path, env=env)
    assert plan.returncode == 0, plan.stderr
    assert "$ echo name=web port=8080" in plan.stdout
    checked = run_playbook(["config", "--validate"], cwd=tmp_path, env=env)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip() == "ok %s" % (tmp_path / "config.toml")
    shown = run_playbook(["config", "--show", "--json"], cwd=tmp_path, env=env)
    values = json.loads(shown.stdout)["values"]
    assert values["execution"]["max_retries"]["value"] == 2
    assert values["logging"]["level"]["value"] == "DEBUG"


@pytest.fixture(scope="module")
def probe_bundle(tmp_path_factory):
    work = tmp_path_factory.mktemp("probe")
    (work / "probe.playbook.toml").write_text(PROBE_RUNBOOK)
    return compile_bundle(work / "probe.playbook.toml", work / "probe.pbz")


@pytest.mark.parametrize("minor", [9, 11], ids=lambda m: "py3.%d" % m)
def test_multiline_inline_tables_in_vars_file_and_config_file_in_a_bundle(probe_bundle, tmp_path, minor):
    python = _pyenv(minor)
    if python is None:
        pytest.skip("no CPython 3.%d under pyenv" % minor)
    home = tmp_path / "home"
    home.mkdir()
    env = bare_env(home, python, **_probe_files(tmp_path))
    proc = run([probe_bundle, "plan", "--vars-file", "svc.vars.toml"], env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "$ echo name=web port=8080" in proc.stdout
    proc = run([probe_bundle, "run", "--vars-file", "svc.vars.toml", "--state-path", tmp_path / "run.db"], env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "name=web port=8080" in proc.stdout
    log = (tmp_path / "run.log").read_text()  # [logging] from the configuration file was applied
    assert "show command: echo name=web port=8080" in log
