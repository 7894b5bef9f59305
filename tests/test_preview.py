"""runtime/preview.py and ui.plan_text: what `plan` shows of a plan bound on the host (the
bundle's `plan`): values with their origins, effective timeouts, secrets masked."""

import json

from playbook.runtime import preview
from playbook.runtime.plan import Dep, Node, Plan
from playbook.runtime.ui import plan_text

SECRET = "it's-s3cret"


def bound_plan():
    """A plan as the runtime binds it: the secret is inside the rendered command."""
    variables = {
        "TOKEN": {"type": "str", "required": True, "secret": True},
        "APP": {"type": "str", "default": "web"},
        "ZONE": {"type": "str", "required": False, "optional": True},
    }
    nodes = [
        Node("call", "Command", command="curl -u %s https://x/web" % "'it'\"'\"'s-s3cret'"),
        Node("wait", "Command", [Dep("call")], command="sleep 1", timeout=30),
        Node("note", "Function", [Dep("wait")], plugin="python", function="notify",
             function_params={"message": "token %s" % SECRET}),
        Node("ok", "Manual", [Dep("note")]),
    ]
    return Plan({"title": "Bound web"}, variables, {"ENV": "prod"}, nodes)


def test_plan_text_masks_secrets_and_marks_defaults_and_timeouts():
    plan = bound_plan()
    values = {"ENV": "prod", "TOKEN": SECRET, "APP": "web"}
    origins = {"ENV": "compiled in", "TOKEN": "prompt", "APP": "default", "ZONE": "may be absent"}
    text = plan_text(plan, values, origins, 45, "/etc/playbook/config.toml:3")
    assert SECRET not in text
    lines = text.splitlines()
    assert lines[:3] == ["Plan: Bound web — 4 nodes", "Values: ENV=prod, TOKEN=***, APP=web (default)",
                         "Not given (may be absent): ZONE"]
    assert "1. call [Command] (default timeout 45s from /etc/playbook/config.toml:3)" in lines
    assert "   $ curl -u *** https://x/web" in lines
    assert "2. wait [Command] (timeout 30s)" in lines
    assert "   python.notify(message='token ***')" in lines
    assert "4. ok [Manual]" in lines


def test_plan_text_without_values_keeps_its_old_call():
    text = plan_text(bound_plan())
    assert text.splitlines()[1] == "Values: ENV=prod"
    assert "1. call [Command] (default timeout 300s)" in text.splitlines()
    assert "Resolved when run: APP, TOKEN" in text.splitlines()
    assert "Not given (may be absent): ZONE" in text.splitlines()


def test_document_masks_secrets_and_lists_effective_timeouts():
    plan = bound_plan()
    values = {"ENV": "prod", "TOKEN": SECRET, "APP": "web"}
    origins = {"ENV": "compiled in", "TOKEN": "--var", "APP": "default", "ZONE": "may be absent"}
    data = preview.document(plan, values, origins)
    assert SECRET not in json.dumps(data)
    assert data["effective"]["values"]["TOKEN"] == {"from": "--var", "value": "***"}
    assert data["effective"]["values"]["ZONE"] == {"from": "may be absent"}
    assert data["effective"]["default_timeout"] == {"from": "default", "seconds": 300}
    assert data["effective"]["timeouts"] == {"call": {"from": "default", "seconds": 300},
                                             "wait": {"from": "step", "seconds": 30}}
    assert data["nodes"][0]["command"] == "curl -u *** https://x/web"


def test_effective_timeout():
    assert preview.effective_timeout(Node("a", "Command", command="x")) == (300, "default")
    assert preview.effective_timeout(Node("a", "Command", command="x"), 12.5) == (12.5, "default")
    assert preview.effective_timeout(Node("a", "Command", command="x", timeout=5)) == (5, "step")
    assert preview.effective_timeout(Node("a", "Function", timeout=5)) == (5, "step")
    assert preview.effective_timeout(Node("a", "Function")) is None
    assert preview.effective_timeout(Node("a", "Manual")) is None


def test_render_known_renders_what_the_values_complete():
    nodes = [
        Node("a", "Command", command="echo {{ APP }} {{ ZONE | default('eu') }}", templates=("command",),
             command_quoting=("plain", "plain")),
        Node("b", "Command", command="echo {{ TOKEN }}", templates=("command",), command_quoting=("plain",)),
    ]
    plan = Plan({"title": "{{ APP }}", "templates": ["title"]}, {}, {}, nodes)
    shown = preview.render_known(plan, {"APP": "web"})
    assert shown.title == "web" and "templates" not in shown.runbook
    assert (shown.nodes[0].command, shown.nodes[0].templates) == ("echo web eu", ())
    assert (shown.nodes[1].command, shown.nodes[1].templates) == ("echo {{ TOKEN }}", ("command",))
