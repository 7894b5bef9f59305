"""compiler/source.py: reading the file, TOML 1.1, diagnostics with file, line and column."""

import json
import sys
from pathlib import Path

import pytest

from playbook.compiler import source
from playbook.compiler.plan import compile_file, compile_source
from playbook.compiler.source import CompileError, Diagnostic

GOOD = Path(__file__).resolve().parent / "fixtures" / "good"

MINIMAL = '[runbook]\ntitle = "t"\n\n[a]\ntype = "Manual"\n'


def errors_of(info):
    return [d for d in info.value.diagnostics if d.severity == "error"]


# -- TOML syntax -------------------------------------------------------------------------------
def test_syntax_error_has_line_and_column():
    text = '[runbook]\ntitle = "t"\n\n[a]\ntype = "Command"\ncommand_name = "make build\n'
    with pytest.raises(CompileError) as info:
        source.parse(text, "syntax.toml")
    (diag,) = info.value.diagnostics
    assert diag.severity == "error"
    assert diag.message.startswith("invalid TOML: ")
    assert (diag.file, diag.line, diag.col) == ("syntax.toml", 6, len('command_name = "make build') + 1)
    assert diag.format().startswith("syntax.toml:6:27: error: invalid TOML: ")


def test_syntax_error_message_has_no_duplicated_position():
    with pytest.raises(CompileError) as info:
        source.parse("[runbook]\ntitle = = 1\n", "x.toml")
    (diag,) = info.value.diagnostics
    assert (diag.line, diag.col) == (2, 9)
    assert "(at line" not in diag.message


def test_duplicate_table_is_a_syntax_error():
    with pytest.raises(CompileError) as info:
        source.parse(MINIMAL + '\n[a]\ntype = "Manual"\n', "dup.toml")
    (diag,) = info.value.diagnostics
    assert "invalid TOML" in diag.message
    assert diag.line == 7


# -- encoding and files ------------------------------------------------------------------------
def test_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "latin1.playbook.toml"
    path.write_bytes(b'[runbook]\ntitle = "t"\ndescription = "caf\xe9"\n')
    with pytest.raises(CompileError) as info:
        source.read(str(path), display="latin1.playbook.toml")
    (diag,) = info.value.diagnostics
    assert diag.message == "the file is not valid UTF-8"
    assert (diag.file, diag.line) == ("latin1.playbook.toml", 3)


def test_missing_file_is_a_diagnostic_not_an_exception(tmp_path):
    missing = tmp_path / "nope.playbook.toml"
    with pytest.raises(CompileError) as info:
        compile_file(str(missing), display="nope.playbook.toml")
    (diag,) = info.value.diagnostics
    assert diag.file == "nope.playbook.toml"
    assert "cannot read runbook" in diag.message
    assert "No such file" in diag.message
    assert diag.format().startswith("nope.playbook.toml: error: cannot read runbook")


def test_directory_instead_of_file_is_a_diagnostic(tmp_path):
    with pytest.raises(CompileError) as info:
        source.read(str(tmp_path))
    assert "cannot read runbook" in info.value.diagnostics[0].message


def test_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.playbook.toml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    compiled = compile_file(str(path))
    assert compiled.plan.title == "t"
    assert [n.id for n in compiled.plan.nodes] == ["a"]


def test_byte_order_mark_does_not_shift_locations(tmp_path):
    path = tmp_path / "bom.playbook.toml"
    path.write_bytes(b"\xef\xbb\xbf" + b'[runbook]\ntitle = "t"\n\n[a]\ntype = "Manual"\nprompt = "x"\n')
    with pytest.raises(CompileError) as info:
        compile_file(str(path))
    (diag,) = errors_of(info)
    assert (diag.line, diag.col) == (6, 1)


def test_bom_fixture_file_validates():
    compiled = compile_file(str(GOOD / "bom.playbook.toml"))
    assert compiled.plan.title == "BOM"


# -- TOML 1.1 ----------------------------------------------------------------------------------
MULTILINE_INLINE = """
[runbook]
title = "ml"

[announce]
type = "Function"
plugin = "python"
function = "notify"
function_params = {
    message = "hello",
}
"""


def test_multiline_inline_tables_parse():
    compiled = compile_source(source.parse(MULTILINE_INLINE, "ml.toml"))
    (node,) = compiled.plan.nodes
    assert node.function_params == {"message": "hello"}


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is Python 3.11+")
def test_multiline_inline_tables_are_toml_1_1_which_tomllib_rejects():
    """The reason the compiler must use tomli >= 2.4 rather than the standard library."""
    import tomllib

    with pytest.raises(tomllib.TOMLDecodeError):
        tomllib.loads(MULTILINE_INLINE)


def test_multiline_inline_table_fixture():
    compiled = compile_file(str(GOOD / "multiline-inline-table.playbook.toml"))
    assert compiled.plan.variables["SERVICE"]["choices"] == ["web", "api"]
    assert compiled.plan.nodes[0].function_params == {"message": "deploying {{ SERVICE }}"}


def test_error_inside_multiline_inline_table_points_at_the_key():
    text = '[runbook]\ntitle = "t"\n\n[variables]\nN = {\n    type = "int",\n    default = "x",\n}\n'
    with pytest.raises(CompileError) as info:
        compile_source(source.parse(text, "v.toml"))
    (diag,) = errors_of(info)
    assert (diag.line, diag.col) == (7, 5)


# -- dates ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "written, iso",
    [
        ("2025-01-20T12:00:00Z", "2025-01-20T12:00:00+00:00"),
        ("2025-01-20T12:00:00+02:00", "2025-01-20T12:00:00+02:00"),
        ("2025-01-20T12:00:00", "2025-01-20T12:00:00"),
        ("2025-01-20", "2025-01-20"),
    ],
)
def test_toml_datetime_for_created_at_becomes_iso_string(written, iso):
    text = '[runbook]\ntitle = "t"\ncreated_at = %s\n' % written
    compiled = compile_source(source.parse(text, "d.toml"))
    assert compiled.plan.runbook["created_at"] == iso
    document = json.loads(compiled.plan.dumps())
    assert document["runbook"]["created_at"] == iso


def test_datetime_fixture_in_plan_json():
    compiled = compile_file(str(GOOD / "datetime-created-at.playbook.toml"))
    data = json.loads(compiled.plan.dumps())
    assert data["runbook"]["created_at"] == "2025-01-20T12:00:00+00:00"
    assert data["runbook"]["version"] == "2"


# -- diagnostics -------------------------------------------------------------------------------
def test_diagnostic_format_with_hint():
    diag = Diagnostic("error", "unknown field 'x'", "f.toml", 3, 5, hint="did you mean 'y'?")
    assert diag.format() == "f.toml:3:5: error: unknown field 'x'\n  hint: did you mean 'y'?"
    assert diag.to_json() == {
        "severity": "error",
        "message": "unknown field 'x'",
        "file": "f.toml",
        "line": 3,
        "col": 5,
        "hint": "did you mean 'y'?",
    }


def test_all_diagnostics_are_collected_and_sorted_by_line():
    text = (
        '[runbook]\ntitle = "t"\n\n'
        '[a]\ntype = "Command"\ncomand_name = "x"\n\n'  # line 6
        '[b]\ntype = "Manual"\nretries = -1\n\n'  # line 10
        '[c]\ntype = "Shel"\n'  # line 13
    )
    with pytest.raises(CompileError) as info:
        compile_source(source.parse(text, "many.toml"))
    lines = [d.line for d in errors_of(info)]
    assert lines == sorted(lines)
    messages = str(info.value)
    assert "many.toml:6:1: error: unknown field 'comand_name'" in messages
    assert "many.toml:10:1: error: retries must not be negative" in messages
    assert "many.toml:13:1: error: unknown node type 'Shel'" in messages


def test_keys_inside_multiline_strings_do_not_confuse_locations():
    text = (
        '[runbook]\ntitle = "t"\n\n[a]\ntype = "Command"\n'
        'command_name = """\ncomand_name = "decoy"\n[b]\n"""\n'
        "description = '''\ncomand_name = 'decoy 2'\n'''\n"
        'comand_name = "the real mistake"\n'
    )
    with pytest.raises(CompileError) as info:
        compile_source(source.parse(text, "ml.toml"))
    (diag,) = errors_of(info)
    assert "comand_name" in diag.message
    assert diag.line == 13


def test_inline_table_node_key_has_its_column():
    text = 'a = { type = "Manual", prompt = "x" }\n[runbook]\ntitle = "t"\n'
    with pytest.raises(CompileError) as info:
        compile_source(source.parse(text, "inline.toml"))
    (diag,) = errors_of(info)
    assert (diag.line, diag.col) == (1, 24)
    assert "unknown field 'prompt'" in diag.message


def test_deeply_nested_array_is_a_diagnostic(tmp_path):
    text = '[runbook]\ntitle = "t"\nx = ' + "[" * 1000 + "]" * 1000 + "\n"
    with pytest.raises(CompileError) as info:
        source.parse(text, "deep.toml")
    (diag,) = info.value.diagnostics
    assert diag.severity == "error"
    assert diag.line == 3


def test_deeply_nested_array_on_the_command_line_has_no_traceback(tmp_path, playbook_cli):
    path = tmp_path / "deep.playbook.toml"
    path.write_text('[runbook]\ntitle = "t"\nx = ' + "[" * 1000 + "]" * 1000 + "\n")
    result = playbook_cli(["validate", path.name], cwd=tmp_path)
    assert "Traceback" not in result.stderr
    assert result.returncode == 2
    assert "deep.playbook.toml:3:" in result.stderr
