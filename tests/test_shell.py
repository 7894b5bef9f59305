"""compiler/shell.py: where each `{{ … }}` of a command stands, the quoting the plan records for
it, and the positions refused at validate time with their messages (file:line:col and hint).
tests/test_shell_oracle.py checks the accepted positions against real shells."""

from __future__ import annotations

import json

import pytest

from conftest import run_playbook
from playbook.compiler import shell, source
from playbook.compiler.plan import compile_source
from playbook.compiler.source import CompileError
from playbook.runtime import templating
from playbook.runtime.plan import Node, Plan
from playbook.runtime.templating import TemplateError
from playbook.runtime.variables import Sources


def quoting(template, interpreter=None):
    analysis = shell.analyse(template, interpreter)
    assert analysis.problems == ()
    return analysis.quoting


def runbook(command, step="", extra=""):
    """A runbook whose step runs `command`, written as a one-line TOML string on line 9."""
    body = command.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return (
        '[runbook]\ntitle = "t"\n%s\n[variables]\nX = { required = true }\n\n[step]\ntype = "Command"\n'
        'command_name = "%s"\n%s' % (extra, body, step)
    )


def errors(text, var=("X=x", "A=1", "L=ab")):
    with pytest.raises(CompileError) as info:
        compile_source(source.parse(text, "r.toml"), Sources.gather(list(var)), bake=True)
    return [d for d in info.value.diagnostics if d.severity == "error"]


# -- accepted positions and the quoting the plan records -----------------------------------------
@pytest.mark.parametrize(
    "template, expected",
    [
        ("echo {{ X }}", ("plain",)),
        ("echo {{ X }}x", ("word",)),
        ("echo x{{ X }}", ("plain",)),
        ("echo --app={{ X }} --v={{ X }}.", ("plain", "word")),
        ("{{ X }} arg", ("word",)),
        ("A={{ X }} cmd {{ X }}", ("word", "plain")),
        ("echo ~{{ X }} {a,{{ X }}}", ("word", "word")),
        ("echo {{ X }}>out", ("word",)),
        ("for v in {{ X }}; do echo {{ X }}; done", ("word", "plain")),
        ("case {{ X }} in {{ X }}) echo {{ X }};; esac", ("word", "word", "plain")),
        ("echo in {{ X }}", ("plain",)),
        ("echo '{{ X }}' \"{{ X }}\"", ("single", "double")),
        ('echo "$(echo {{ X }})" "$(echo \'{{ X }}\' "{{ X }}")"', ("plain", "single", "double")),
        ("echo hi # don't\necho {{ X }}", ("plain",)),
        ("cat <<'EOF'\nit's \"$(x)\"\nEOF\necho {{ X }}", ("plain",)),
        ("cat <<-EOF\n\tit's $HOME\n\tEOF\necho '{{ X }}'", ("single",)),
        ("cat <<EOF > {{ X }}\nbody\nEOF", ("plain",)),
        (": ${A:-b} $((1 + 2)) `date` $'a' $\"b\"; echo {{ X }}", ("plain",)),
        ("a=( {{ X }} '{{ X }}' )", ("word", "single")),
        ("{{ X | raw }} {{ X }}", ("raw", "word")),
        ("cmd {% if V %}--verbose{% endif %} {{ X }}", ("plain",)),
        ("{% if S %}sudo {% endif %}systemctl restart {{ X }}", ("plain",)),
        ("{% for h in H %}ssh {{ h }} uptime; {% endfor %}", ("plain",)),
        ("{% set y = X %}{% with z = 1 %}echo {{ y }} {{ z }}{{ z }}{% endwith %}", ("plain", "word", "word")),
        ("#!/bin/bash\necho {{ X }}", ("plain",)),
        ("#!/usr/bin/env python3\nx = {{ X | tojson }}\ny = {{ X | raw }}", ("json", "raw")),
    ],
)
def test_accepted_positions_and_their_quoting(template, expected):
    assert quoting(template) == expected


@pytest.mark.parametrize("setting", [None, "/bin/sh", "bash -eu", "/usr/bin/env bash", "busybox sh", "dash"])
def test_shells_quoted_for(setting):
    assert quoting("echo '{{ X }}'", setting) == ("single",)


@pytest.mark.parametrize("interpreter", ["#!/bin/sh", "#!/usr/bin/env -S bash -e", "#!/bin/ash"])
def test_shell_scripts_are_read_as_shell(interpreter):
    assert quoting(interpreter + "\necho '{{ X }}'") == ("single",)


def test_the_plan_records_the_quoting_of_a_command_left_for_run_time():
    compiled = compile_source(source.parse(runbook("echo '{{ X }}' {{ X }}"), "r.toml"), Sources.gather([]))
    node = compiled.plan.nodes[0]
    assert node.templates == ("command",)
    assert node.command_quoting == ("single", "plain")
    data = json.loads(compiled.plan.dumps())
    assert data["nodes"][0]["command_quoting"] == ["single", "plain"]
    again = Plan.loads(compiled.plan.dumps()).nodes[0]
    assert again.command_quoting == ("single", "plain")
    assert templating.render_node(again, {"X": "it's"}).command == "echo 'it'\\''s' 'it'\\''s'"


def test_a_command_rendered_at_compile_time_keeps_no_quoting():
    compiled = compile_source(source.parse(runbook("echo {{ X }}"), "r.toml"), Sources.gather(["X=a b"]), bake=True)
    node = compiled.plan.nodes[0]
    assert (node.command, node.templates, node.command_quoting) == ("echo 'a b'", (), ())
    assert "command_quoting" not in json.loads(compiled.plan.dumps())["nodes"][0]


# -- refused positions ----------------------------------------------------------------------------
HINT = 'pass the value through env (env = { X = "{{ X }}" } and use "$X") or mark it | raw deliberately'
REFUSED = [
    ("echo {{ X }} # {{ X }}", 32, "it stands in a shell comment, where quoting does not apply", HINT),
    (
        "cat <<EOF\n{{ X }}\nEOF",
        28,
        "it stands in a here-document, where quoting does not apply",
        'pass the value through env (env = { X = "{{ X }}" }) and write $X in a here-document with an '
        "unquoted delimiter (<<EOF), or mark it | raw deliberately",
    ),
    ("cat <<'EOF'\n{{ X }}\nEOF", 30, "it stands in a here-document, where quoting does not apply", None),
    ("cat <<{{ X }}\nEOF", 23, "it would be a here-document delimiter", None),
    ("echo `echo {{ X }}`", 28, "it stands inside `…` (backquotes), which read backslashes once more; use $( ) instead", HINT),
    ("echo ${A:-{{ X }}}", 27, "it stands inside ${…}", HINT),
    ("echo $(( {{ X }} + 1 ))", 26, "it stands inside shell arithmetic, which evaluates it as code", HINT),
    ("(( {{ X }} > 1 ))", 20, "it stands inside shell arithmetic, which evaluates it as code", HINT),
    ("echo $'{{ X }}'", 24, "it stands inside $'…', where backslashes are escapes", HINT),
    ('echo $"{{ X }}"', 25, 'it stands inside $"…", which bash translates', HINT),
    ("echo \\{{ X }}", 24, "it stands right after a backslash", HINT),
    ("echo ${{ X }}", 23, "it stands right after a $", HINT),
    ('echo "${{ X }}"', 25, "it stands right after a $", HINT),
    (
        "[[ $n -eq {{ X }} ]]",
        27,
        "it stands inside [[ … ]], where bash evaluates -eq, -lt … operands as arithmetic",
        "compare with [ … ] (test) instead, or mark it | raw deliberately",
    ),
    ('eval "echo {{ X }}"', 29, "it is an argument of eval, which runs it as shell code", HINT),
    ("eval $(echo {{ X }})", 29, "it is an argument of eval, which runs it as shell code", HINT),
    ("trap 'rm {{ X }}' EXIT", 26, "it is an argument of trap, which runs it as shell code", HINT),
    ("let n={{ X }}", 23, "it is an argument of let, which evaluates it as arithmetic", HINT),
    (
        "alias q=ls\nq {{ X }}",
        31,
        "Playbook cannot follow the shell's quoting past alias, which may change how later words read (line 1)",
        HINT,
    ),
    (
        'a=( "{{ X }}" )',
        23,
        "it stands in \"…\" inside a bash array ( … ), where bash changes the characters \\x01 and \\x7f; "
        "write it outside quotes or in '…'",
        HINT,
    ),
    ("a=(;{{ X }}", 21, "Playbook cannot follow the shell's quoting past ';' inside a bash array ( … ) (line 1)", HINT),
    (
        "echo $(echo a # c\n) {{ X }}",
        38,
        "Playbook cannot follow the shell's quoting past a comment inside $( ) (line 1)",
        HINT,
    ),
    (
        "x=$(case a in a) echo;; esac); echo {{ X }}",
        53,
        "Playbook cannot follow the shell's quoting past case … esac inside $( ) (line 1)",
        HINT,
    ),
    (
        "cat <<EOF\n$(date\n)\nEOF\necho {{ X }}",
        49,
        "Playbook cannot follow the shell's quoting past $( ) in a here-document (line 2)",
        HINT,
    ),
    (
        "cat <<EOF\nE\\\nOF\nEOF\necho {{ X }}",
        47,
        "Playbook cannot follow the shell's quoting past a \\ at the end of a here-document line (line 2)",
        HINT,
    ),
    (
        "echo $'it\\'s'; echo {{ X }}",
        38,
        "Playbook cannot follow the shell's quoting past $'…' with a backslash inside (bash and dash read it "
        "differently) (line 1)",
        HINT,
    ),
    (
        "{% if A %}'{% endif %}echo {{ X }}",
        44,
        "Playbook cannot follow the shell's quoting past an {% if %} whose branches leave the quoting in "
        "different states (line 1)",
        HINT,
    ),
    (
        "echo {% for i in L %}({% endfor %} {{ X }}",
        52,
        "Playbook cannot follow the shell's quoting past a {% for %} whose body changes the quoting (line 1)",
        HINT,
    ),
    (
        "echo {% if A %}x{% endif %}#{{ X }}",
        45,
        "Playbook cannot follow the shell's quoting past a # that starts a comment or not, depending on a "
        "{% … %} block (line 1)",
        HINT,
    ),
    (
        "{% if A %}#!/bin/sh\n{% endif %}echo {{ X }}",
        54,
        "Playbook cannot follow the shell's quoting past a #! line that a {% … %} block or a value decides (line 1)",
        HINT,
    ),
    (
        "#!/usr/bin/env python3\nx = {{ X }}",
        45,
        "a #! script run by python3, which Playbook does not quote for (it quotes for sh, dash, bash, ash)",
        "write {{ X | tojson }} where the script expects a JSON (Python, JavaScript) literal, read it from the "
        'environment (env = { X = "{{ X }}" }), or mark it | raw deliberately',
    ),
    (
        "#!/usr/bin/perl\nprint {{ X | upper }}",
        40,
        "a #! script run by perl, which Playbook does not quote for (it quotes for sh, dash, bash, ash)",
        None,
    ),
]


@pytest.mark.parametrize("command, col, message, hint", REFUSED)
def test_refused_positions_with_their_messages(command, col, message, hint):
    (error,) = errors(runbook(command))
    assert error.format().split("\n")[0] == "r.toml:9:%d: error: cannot quote %s in step.command_name: %s" % (
        col,
        "{{ X | upper }}" if "upper" in command else "{{ X }}",
        message,
    )
    if hint is not None:
        assert error.hint == hint


def test_every_refused_value_of_a_command_is_reported():
    found = errors(runbook("echo {{ X }} # {{ X }}\ncat <<EOF\n{{ X }}\nEOF"))
    assert [(e.line, e.col) for e in found] == [(9, 32), (9, 52)]


def test_a_command_run_by_another_shell_is_not_quoted():
    (error,) = errors(runbook("echo {{ X }}", step='shell = "zsh"\n'))
    assert error.message == (
        "cannot quote {{ X }} in step.command_name: a command run by zsh, which Playbook does not quote for "
        "(it quotes for sh, dash, bash, ash)"
    )


def test_the_runbook_shell_decides_too():
    (error,) = errors(runbook("echo {{ X }}", extra='shell = "fish"\n'))
    assert "a command run by fish" in error.message
    assert compile_source(
        source.parse(runbook("echo {{ X }}", step='shell = "bash"\n', extra='shell = "fish"\n'), "r.toml"),
        Sources.gather(["X=x"]),
        bake=True,
    ).plan.nodes[0].command == "echo x"


def test_a_templated_shebang_line_is_refused():
    (error,) = errors(runbook("#!/usr/bin/{{ X }}\nrun"))
    assert error.message == "step.command_name: the #! line of a command must be plain text (no {{ }} or {% %})"
    assert (error.line, error.col) == (9, 17)


def test_blocks_that_cannot_be_checked_are_refused():
    (error,) = errors(runbook("{% macro m() %}x{% endmacro %}echo {{ X }}"))
    assert error.message == (
        "step.command_name: {% macro %} is not supported in a command: Playbook checks where each value stands, "
        "through {% if %}, {% for %}, {% set %} and {% with %} only"
    )


def test_positions_in_a_multi_line_string():
    text = (
        '[runbook]\ntitle = "t"\n\n[variables]\nX = { required = true }\n\n[step]\ntype = "Command"\n'
        "command_name = '''\necho start # it's fine\ncat <<EOF\n  {{ X }}\nEOF\n'''\n"
    )
    (error,) = errors(text)
    assert (error.line, error.col) == (12, 3)


def test_validate_refuses_with_file_line_col_and_hint(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(runbook("echo hi # {{ X }}"))
    result = run_playbook(["validate", "r.toml", "--var", "X=1"], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(
        "r.toml:9:27: error: cannot quote {{ X }} in step.command_name: it stands in a shell comment, "
        "where quoting does not apply\n  hint: %s\n" % HINT
    )


# -- what the runtime does with the recorded quoting ---------------------------------------------
@pytest.mark.parametrize(
    "context, value, expected",
    [
        ("word", "it's", "'it'\\''s'"),
        ("word", "", "''"),
        ("plain", "a-b_1.2:3,4@5%6+7/8", "a-b_1.2:3,4@5%6+7/8"),
        ("plain", "a=b", "'a=b'"),
        ("plain", "a b", "'a b'"),
        ("plain", "", "''"),
        ("single", "it's", "it'\\''s"),
        ("double", 'a"b\\c$d`e', 'a\\"b\\\\c\\$d\\`e'),
        ("json", 'é"\n', '"é\\"\\n"'),
    ],
)
def test_each_quoting(context, value, expected):
    template = "{{ X | tojson }}" if context == "json" else "{{ X }}"
    assert templating.render(template, {"X": value}, shell=True, quoting=[context]) == expected


def test_a_nul_character_is_refused_when_rendered():
    with pytest.raises(TemplateError) as info:
        templating.render("echo {{ X }}", {"X": "a\x00b"}, shell=True, quoting=["plain"])
    assert str(info.value) == "a value of this command contains a NUL character, which no command can receive"


@pytest.mark.parametrize(
    "template, recorded, message",
    [
        ("echo {{ X }}", [], "the plan does not record how to quote the values of this command; compile the runbook again"),
        ("echo {{ X }} {{ X }}", ["word"], "the plan does not record how to quote the values of this command; compile the runbook again"),
        ("echo {{ X }}", ["bare"], "the plan records an unknown quoting 'bare' for a command value"),
        ("echo {{ X }}", ["raw"], "the plan's quoting does not match this command; compile the runbook again"),
    ],
)
def test_a_plan_that_does_not_match_its_command_is_refused(template, recorded, message):
    with pytest.raises(TemplateError) as info:
        templating.render(template, {"X": "x"}, shell=True, quoting=recorded)
    assert str(info.value) == message


def test_a_node_without_recorded_quoting_is_not_rendered():
    node = Node("a", "Command", command="echo {{ X }}", templates=("command",))
    with pytest.raises(TemplateError):
        templating.render_node(node, {"X": "x"})


def test_placeholder_offsets_follow_jinja():
    template = "{# {{ no }} #}a{{ x }}{% raw %}{{ no }}{% endraw %}{% if '%}' %}{{ '}}' }}{% endif %}{{ {'a': 1}['a'] }}"
    offsets = shell.placeholder_offsets(template)
    assert [template[o : o + 5] for o in offsets] == ["{{ x ", "{{ '}", "{{ {'"]
    assert len(offsets) == len(list(templating.output_expressions(templating.parse(template))))
