"""Outputs feed later steps: previous_node() in commands, env, cwd, function params and
questions, rendered when the step starts, quoted like any value, secrets masked, the reference an
ordering edge (the README's Runbooks section). Real `playbook` processes, real shells,
real SQLite files, a real pty for a question."""

import json
import sqlite3

import pytest

from playbook.compiler.plan import compile_file
from playbook.runtime import templating

HEAD = """
[runbook]
title = "Outputs"
description = "d"
version = "1"
author = "tests"
created_at = 2026-01-01T00:00:00Z
"""


def write(tmp_path, body, name="o.playbook.toml"):
    path = tmp_path / name
    path.write_text(HEAD + body)
    return path


FEED = r"""
[variables]
TOKEN = { required = true, secret = true }

[build]
type = "Command"
command_name = '''printf '%s\n' 'it'\''s; $(touch pwned) a b''''
depends_on = []

[token]
type = "Command"
command_name = 'echo "$T"'
env = { T = "{{ TOKEN }}" }
depends_on = []

[use]
type = "Command"
command_name = '''printf '<%s>\n' {{ previous_node('build').stdout | trim }} "{{ previous_node('build').exit_code }}" && echo "$ART" && pwd'''
env = { ART = "art={{ previous_node('build').stdout | trim }}" }
cwd = "{{ previous_node('dir').stdout | trim }}"
depends_on = ["token"]

[dir]
type = "Command"
command_name = "mkdir -p sub && cd sub && pwd"
depends_on = []

[notify]
type = "Function"
plugin = "python"
function = "notify"
function_params = { message = "token step said {{ previous_node('token').stdout | trim }}, use said {{ previous_node('use').status }}" }
depends_on = []
"""


def test_outputs_reach_command_env_cwd_and_params_exactly_and_masked(playbook, tmp_path):
    runbook = write(tmp_path, FEED)
    db = tmp_path / "s.db"
    ran = playbook("run", runbook, "--var", "TOKEN=s3cr3t-value", "--state-path", db)
    assert ran.returncode == 0, ran.text
    # one word, exactly as printed: the quote, the semicolon and $( ) reach printf as text
    assert "│ <it's; $(touch pwned) a b>\n  │ <0>\n" in ran.stdout
    assert not (tmp_path / "pwned").exists()
    assert "art=it's; $(touch pwned) a b" in ran.stdout
    assert "%s\n" % (tmp_path / "sub") in ran.stdout  # cwd from dir's output
    assert "token step said ***, use said succeeded" in ran.stdout
    assert "s3cr3t-value" not in ran.text
    with sqlite3.connect(str(db)) as conn:
        dump = "\n".join(conn.iterdump())
    assert "s3cr3t-value" not in dump


def test_references_are_ordering_edges_and_stay_templates_in_the_plan(tmp_path):
    plan = compile_file(str(write(tmp_path, FEED)), bake=True).plan
    order = [n.id for n in plan.nodes]
    use = plan.by_id["use"]
    assert order.index("dir") < order.index("use") and order.index("build") < order.index("use")
    assert order.index("use") < order.index("notify")  # declared before, runs after: an edge
    assert use.output_nodes == ("build", "dir") and set(use.upstream()) == {"token", "build", "dir"}
    assert use.runtime_templates == ("command", "env", "cwd") and use.templates == ()
    assert use.command_quoting == (templating.PLAIN, templating.DOUBLE)
    assert "previous_node('build')" in use.command  # rendered only when the step starts
    assert templating.outputs_read(use, "command") == ["build"]
    assert templating.outputs_read(use, "cwd") == ["dir"]
    assert templating.outputs_read(plan.by_id["build"], "command") == []


@pytest.mark.parametrize(
    "body, message",
    [
        (
            '[a]\ntype = "Command"\ncommand_name = "echo {{ previous_node(\'c\').stdout }}"\ndepends_on = []\n'
            '[b]\ntype = "Command"\ncommand_name = "echo b"\n[c]\ntype = "Command"\ncommand_name = "echo c"\n',
            "o.playbook.toml:10:1: error: node a reads previous_node('c') in command_name, but c cannot have finished "
            "before a: it waits for a (c -> b -> a)",
        ),
        (
            '[a]\ntype = "Command"\ncommand_name = "echo {{ previous_node(\'zz\').stdout }}"\n',
            "o.playbook.toml:10:1: error: the command_name of node a names unknown node 'zz' in previous_node()",
        ),
        (
            '[a]\ntype = "Command"\ncommand_name = "echo {{ previous_node(\'a\').stdout }}"\n',
            "o.playbook.toml:10:1: error: the command_name of node a asks about the node itself (previous_node)",
        ),
        (
            '[a]\ntype = "Command"\ncommand_name = "echo a"\n[b]\ntype = "Command"\ncommand_name = "echo {{ previous_node(\'a\').stdot }}"\n',
            "o.playbook.toml:13:1: error: previous_node() has no field 'stdot' in b.command_name",
        ),
        (
            '[a]\ntype = "Command"\ncommand_name = "echo a"\n[b]\ntype = "Command"\nname = "{{ previous_node(\'a\').stdout }}"\ncommand_name = "echo"\n',
            "o.playbook.toml:13:1: error: previous_node() in b.name: only command_name, env, cwd, function_params, "
            "prompt_before and prompt_after may use it",
        ),
    ],
    ids=["downstream", "unknown", "itself", "field", "title"],
)
def test_validate_refuses_outputs_that_cannot_be_there(playbook, tmp_path, body, message):
    ran = playbook("validate", write(tmp_path, body))
    assert ran.returncode == 2
    assert message in ran.text, ran.text
    assert "Traceback" not in ran.text


def test_a_cut_output_is_refused_not_passed_on(playbook, tmp_path):
    runbook = write(
        tmp_path,
        '[big]\ntype = "Command"\ncommand_name = "head -c 200000 /dev/zero | tr \'\\\\0\' x"\ndepends_on = []\n'
        '[use]\ntype = "Command"\ncommand_name = "echo {{ previous_node(\'big\').stdout | length }}"\n',
    )
    ran = playbook("run", runbook, "--state-path", tmp_path / "s.db", "--no-output")
    assert ran.returncode == 1, ran.text
    assert "the stdout of big was longer than the state keeps; only its end is known, so it is not passed on" in ran.text


def test_outputs_survive_a_resume(playbook, tmp_path):
    flag = tmp_path / "flag"
    runbook = write(
        tmp_path,
        '[build]\ntype = "Command"\ncommand_name = "echo v7"\ndepends_on = []\n'
        '[gate]\ntype = "Command"\ncommand_name = "test -e %s"\n'
        '[use]\ntype = "Command"\ncommand_name = "echo got-{{ previous_node(\'build\').stdout | trim }}"\n' % flag,
    )
    db = tmp_path / "s.db"
    first = playbook("run", runbook, "--state-path", db)
    assert first.returncode == 1 and "got-" not in first.stdout
    flag.write_text("")
    again = playbook("resume", runbook, "--state-path", db)
    assert again.returncode == 0, again.text
    assert "got-v7" in again.stdout and "echo v7" not in again.stdout  # build was not run again


def test_a_question_shows_the_output_on_a_terminal(spawn_playbook, tmp_path):
    runbook = write(
        tmp_path,
        '[build]\ntype = "Command"\ncommand_name = "echo app-9.tar.gz"\ndepends_on = []\n'
        '[deploy]\ntype = "Command"\ncommand_name = "echo deployed"\n'
        'prompt_before = "Deploy {{ previous_node(\'build\').stdout | trim }} now?"\n',
    )
    child = spawn_playbook("run", runbook, "--state-path", tmp_path / "s.db")
    child.expect_exact("Deploy app-9.tar.gz now?")
    child.sendline("y")
    child.expect_exact("deployed")
    child.expect_exact("succeeded")
    child.expect(r"\$|$")
    child.wait()
    assert child.exitstatus == 0


def test_plan_json_lists_the_fields_rendered_at_start(playbook, tmp_path):
    runbook = write(tmp_path, FEED)
    ran = playbook("plan", runbook, "--json", "--var", "TOKEN=x")
    assert ran.returncode == 0, ran.text
    nodes = {n["id"]: n for n in json.loads(ran.stdout)["nodes"]}
    assert nodes["use"]["runtime_templates"] == ["command", "env", "cwd"]
    assert nodes["use"]["output_nodes"] == ["build", "dir"]


def test_plan_says_which_output_a_command_reads(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from cli_support import pb, write_runbook

    rb = write_runbook(tmp_path, """
    [build]
    type = "Command"
    command_name = "echo app-1.2.tar.gz"

    [deploy]
    type = "Command"
    command_name = "echo deploying {{ previous_node('build').stdout | trim }}"
    """)
    r = pb(tmp_path, "plan", rb)
    assert r.returncode == 0, r.text
    assert "(from build's output: rendered when the step starts)" in r.text
