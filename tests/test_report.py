"""`playbook report` (HTML, JUnit XML, JSON) and the statistics of `info` / `show`.

Real runs of small runbooks (`playbook run ... --state-path`) give a run with a succeeded, a
retried, a failed-and-handled, a skipped (condition), a disabled and an auto-approved Manual
node, a secret echoed by a command, and output full of markup and ANSI escapes; a second
runbook stops at an unhandled failure so a node is never reached. The HTML page is opened in a
real headless Chromium (Debian's `chromium`; CI installs it) and must render without console
errors; the JUnit file is checked against the shape CI tools read.
"""

import datetime
import html.parser
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_support import VENV_BIN, attempts, by_title, events, final, pb, run_row

from playbook.runtime.state import whoami

SECRET = "hunter2-s3cr3t-value"

MAIN = r"""
[runbook]
title = "Report <demo> & co"
description = "Runbook for the report tests: every kind of outcome."

[variables]
TOKEN = { secret = true, description = "an API token" }
CHECK_EXIT = { default = 1, type = "int" }

[build]
type = "Command"
description = "Prints markup, ANSI colours and the secret."
command_name = '''
printf 'built \033[1;31mred\033[0m <script>alert("x")</script> [/] [bold]b[/bold] &amp;\n'
echo token={{ TOKEN }}
'''
depends_on = []

[flaky]
type = "Command"
command_name = '''
if [ -f flaky.marker ]; then echo second try ok; else touch flaky.marker; echo first try failed >&2; exit 3; fi
'''
retries = 1
depends_on = ["build"]

[gate]
type = "Manual"
description = "Look at the dashboards."
prompt_after = "Go on?"
depends_on = ["flaky"]

[check]
type = "Command"
command_name = "echo checking; echo 'check failed: HTTP 503' >&2; exit {{ CHECK_EXIT }}"
depends_on = ["gate"]

[rollback]
type = "Command"
command_name = "echo rolled back"
depends_on = ["check:failure"]

[notify]
type = "Command"
command_name = "echo all good"
depends_on = ["check:success"]

[disabled]
type = "Command"
command_name = "echo never"
skip = true
depends_on = ["check"]

[big]
type = "Command"
command_name = "seq 1 500"
depends_on = ["check:done"]
"""

STOPS = """
[runbook]
title = "stops early"

[first]
type = "Command"
command_name = "echo one; exit 2"
depends_on = []

[second]
type = "Command"
command_name = "echo two"
"""

MAIN_NODES = ["build", "flaky", "gate", "check", "rollback", "notify", "disabled", "big"]


@pytest.fixture(scope="module")

def hist(tmp_path_factory):
    """Runs: 1 main (flaky retried, check failed and handled), 2 stops (second not reached),
    3 main again (check failed), 4 main with CHECK_EXIT=0 (succeeded)."""
    tmp = tmp_path_factory.mktemp("report")
    main = tmp / "main.playbook.toml"
    main.write_text(MAIN, encoding="utf-8")
    stops = tmp / "stops.playbook.toml"
    stops.write_text(STOPS, encoding="utf-8")
    dbp = tmp / "state.db"
    token = "--var", "TOKEN=%s" % SECRET
    r = pb(tmp, "run", main, *token, "--auto-approve", "--state-path", dbp)
    assert r.returncode == 1, r.text
    r = pb(tmp, "run", stops, "--state-path", dbp)
    assert r.returncode == 1, r.text
    r = pb(tmp, "run", main, *token, "--auto-approve", "--state-path", dbp)
    assert r.returncode == 1, r.text
    r = pb(tmp, "run", main, *token, "--var", "CHECK_EXIT=0", "--auto-approve", "--state-path", dbp)
    assert r.returncode == 0, r.text
    return tmp, dbp


def _report(hist, *args, env=None):
    tmp, dbp = hist
    return pb(tmp, "report", *args, "--state-path", dbp, env=env)


def _final_status(dbp, run_id, node_ids):
    rows = final(dbp, run_id)
    return {node: rows[node]["status"] if node in rows else "not_reached" for node in node_ids}


# -- the runs the reports are about -----------------------------------------------------------------------------


def test_the_runs_have_every_kind_of_outcome(hist):
    _, dbp = hist
    assert _final_status(dbp, 1, MAIN_NODES) == {
        "build": "succeeded",
        "flaky": "succeeded",
        "gate": "succeeded",
        "check": "failed",
        "rollback": "succeeded",
        "notify": "skipped",
        "disabled": "skipped",
        "big": "succeeded",
    }
    assert len(attempts(dbp, 1, "flaky")) == 2
    assert final(dbp, 1)["gate"]["decision"] == "auto-approved"
    assert _final_status(dbp, 2, ["first", "second"]) == {"first": "failed", "second": "not_reached"}
    assert run_row(dbp, 4)["status"] == "succeeded"


# -- HTML ---------------------------------------------------------------------------------------------------------


class _Checker(html.parser.HTMLParser):
    """Collects tags, attributes and text of a page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags = []
        self.text = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse_html(text):
    checker = _Checker()
    checker.feed(text)
    checker.close()
    return checker


def _assert_self_contained(page):
    doc = _parse_html(page)
    for tag, attrs in doc.tags:
        for name in ("src", "href", "xlink:href", "action", "data"):
            value = (attrs.get(name) or "").strip().lower()
            assert not re.match(r"^(https?:|//|ftp:|file:)", value), (tag, name, value)
        assert not (tag == "link" and "stylesheet" in (attrs.get("rel") or "")), attrs
        assert tag not in ("script", "iframe", "object", "embed", "img", "link"), (tag, attrs)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", page), "CSS fetches something"
    assert "@import" not in page
    return doc


def test_html_report_is_one_self_contained_file_with_every_node_and_state(hist):
    tmp, dbp = hist
    out = tmp / "run1.html"
    r = _report(hist, "1", "--html", out)
    assert r.returncode == 0, r.text
    assert "wrote HTML report of run 1 (failed)" in r.out
    page = out.read_text(encoding="utf-8")
    doc = _assert_self_contained(page)
    text = " ".join(doc.text)
    for node in MAIN_NODES:
        assert 'id="step-%s"' % node in page and 'id="node-%s"' % node in page
    steps = {}
    for row in re.findall(r'<tr id="step-([a-z]+)">(.*?)</tr>', page, re.S):
        steps[row[0]] = re.sub(r"<[^>]+>", " ", row[1])
    expected = _final_status(dbp, 1, MAIN_NODES)
    for node, status in expected.items():
        assert status in steps[node], (node, steps[node])
    assert "condition" in steps["notify"]  # the skip reason
    assert "disabled" in steps["disabled"]
    assert re.search(r"\b2\b", steps["flaky"])  # two attempts
    assert "auto-approve" in steps["gate"]
    # summary: title (escaped), id, status, who/host, start/end, variables with the secret masked
    assert "Report &lt;demo&gt; &amp; co" in page
    run = run_row(dbp, 1)
    assert "%s@%s" % (run["user"], run["host"]) in text
    assert run["started_at"][:10] in text
    assert "TOKEN" in text and "***" in text
    # timeline: one bar per attempt, proportional
    assert len(re.findall(r'class="tl-bar ', page)) == len(attempts(dbp, 1))
    # audit trail with the approval
    assert "auto-approved: Go on?" in text
    # output tails: escaped, ANSI stripped, markup shown as text
    assert "\x1b" not in page
    assert '<pre class="out">built red &lt;script&gt;alert(' in page  # colour codes gone
    assert "&lt;script&gt;alert(" in page
    assert "<script" not in page.lower()
    assert "[/] [bold]b[/bold] &amp;amp;" in page
    assert "check failed: HTTP 503" in text
    assert "500" in text and "(last lines)" in text  # `seq 1 500` is cut to its tail
    assert SECRET not in page


def test_html_report_draws_the_dag_with_dot_and_falls_back_to_a_table_without_it(hist, tmp_path):
    if shutil.which("dot") is None:
        pytest.skip("Graphviz `dot` is not installed (CI installs graphviz)")
    tmp, dbp = hist
    with_dot = tmp_path / "dot.html"
    assert _report(hist, "1", "--html", with_dot).returncode == 0
    page = with_dot.read_text(encoding="utf-8")
    assert page.count("<svg") >= 1 and "<?xml" not in page and "<!DOCTYPE svg" not in page
    svg = page[page.index("<svg"): page.index("</svg>") + 6]
    for node in MAIN_NODES:
        assert "<title>%s</title>" % node in svg
    assert "#ffcdd2" in svg  # the failed node's fill
    # no dot on PATH: a note, no picture, the steps table still lists every node
    no_dot = tmp_path / "nodot.html"
    r = _report(hist, "1", "--html", no_dot, env={"PATH": str(VENV_BIN)})
    assert r.returncode == 0, r.text
    assert "dot" in r.err and "graphviz" in r.err.lower()
    page = no_dot.read_text(encoding="utf-8")
    assert "<svg" not in page
    assert "is not installed here" in page
    for node in MAIN_NODES:
        assert 'id="step-%s"' % node in page


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _headless(page, tmp_path, *extra):
    """Run headless Chromium on a file; returns (stdout, stderr)."""
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium is not installed (CI installs it: apt-get install chromium)")
    args = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--user-data-dir=%s" % (tmp_path / "chromium-profile"),
        "--enable-logging=stderr",
        "--v=0",
    ] + list(extra) + [Path(page).resolve().as_uri()]
    proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120, env=dict(os.environ, HOME=str(tmp_path)))
    return proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")


_CONSOLE = re.compile(r":CONSOLE[:(]|Uncaught")


def test_chromium_console_check_catches_page_errors(tmp_path):
    """The console check below is not vacuous: a page with errors is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><p>x</p><script>console.error('boom'); missing();</script>", encoding="utf-8")
    _, err = _headless(bad, tmp_path, "--dump-dom")
    assert _CONSOLE.search(err), err[-2000:]


def test_html_report_renders_in_headless_chromium_without_console_errors(hist, tmp_path):
    tmp, dbp = hist
    out = tmp_path / "report.html"
    assert _report(hist, "1", "--html", out).returncode == 0
    dom, err = _headless(out, tmp_path, "--dump-dom")
    problems = [line for line in err.splitlines() if _CONSOLE.search(line)]
    assert not problems, "\n".join(problems)
    assert "<h1>Report &lt;demo&gt; &amp; co</h1>" in dom
    for node, status in _final_status(dbp, 1, MAIN_NODES).items():
        row = re.search(r'<tr id="step-%s">(.*?)</tr>' % node, dom, re.S)
        assert row, node
        assert status in row.group(1), (node, status)
    assert SECRET not in dom
    png = tmp_path / "report.png"
    _, err = _headless(out, tmp_path, "--screenshot=%s" % png, "--window-size=1280,2000")
    assert not [line for line in err.splitlines() if _CONSOLE.search(line)]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20000


# -- JUnit XML --------------------------------------------------------------------------------------------------


def _junit(hist, run_id, tmp_path):
    out = tmp_path / ("junit-%s.xml" % run_id)
    r = _report(hist, str(run_id), "--junit", out)
    assert r.returncode == 0, r.text
    raw = out.read_bytes()
    assert raw.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    return ET.fromstring(raw), raw


def _check_junit_shape(root):
    """The shape Jenkins, GitLab, GitHub test reporters and Azure read."""
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    suite = suites[0]
    for name in ("name", "tests", "failures", "errors", "skipped", "time", "timestamp"):
        assert suite.get(name) is not None, name
    for name in ("tests", "failures", "errors", "skipped"):
        assert int(suite.get(name)) >= 0
        assert root.get(name) == suite.get(name)
    float(suite.get("time"))
    datetime.datetime.strptime(suite.get("timestamp"), "%Y-%m-%dT%H:%M:%S")
    cases = suite.findall("testcase")
    assert len(cases) == int(suite.get("tests"))
    for case in cases:
        assert case.get("classname") and case.get("name")
        float(case.get("time"))
        children = [c.tag for c in case]
        assert set(children) <= {"failure", "error", "skipped", "system-out", "system-err"}, children
        assert sum(children.count(t) for t in ("failure", "error", "skipped")) <= 1
        for tag in ("failure", "error", "skipped"):
            for element in case.findall(tag):
                assert element.get("message") is not None
    assert sum(1 for c in cases if c.find("failure") is not None) == int(suite.get("failures"))
    assert sum(1 for c in cases if c.find("error") is not None) == int(suite.get("errors"))
    assert sum(1 for c in cases if c.find("skipped") is not None) == int(suite.get("skipped"))
    return suite, {c.get("name"): c for c in cases}


def test_junit_has_the_common_shape_and_counts_match_the_database(hist, tmp_path):
    _, dbp = hist
    root, raw = _junit(hist, 1, tmp_path)
    suite, cases = _check_junit_shape(root)
    assert suite.get("name") == "Report <demo> & co"
    statuses = _final_status(dbp, 1, MAIN_NODES)
    assert sorted(cases) == sorted(MAIN_NODES)
    assert int(suite.get("tests")) == len(MAIN_NODES)
    assert int(suite.get("failures")) == list(statuses.values()).count("failed") == 1
    assert int(suite.get("skipped")) == list(statuses.values()).count("skipped") == 2
    assert int(suite.get("errors")) == 0
    assert {c.get("classname") for c in cases.values()} == {"playbook.report-demo-co"}
    failure = cases["check"].find("failure")
    assert "exit code 1" in failure.get("message")
    assert "check failed: HTTP 503" in failure.text
    assert cases["check"].find("system-out").text.strip().endswith("checking")
    assert "condition" in cases["notify"].find("skipped").get("message")
    assert "disabled" in cases["disabled"].find("skipped").get("message")
    assert cases["flaky"].find("failure") is None and "2 attempts" in cases["flaky"].find("system-out").text
    assert "auto-approved by %s" % whoami() in cases["gate"].find("system-out").text
    build_out = cases["build"].find("system-out").text
    assert '<script>alert("x")</script> [/]' in build_out and "\x1b" not in build_out
    assert b"&lt;script&gt;" in raw
    durations = {row["node_id"]: 0.0 for row in attempts(dbp, 1)}
    for row in attempts(dbp, 1):
        durations[row["node_id"]] += row["duration"] or 0
    for node, seconds in durations.items():
        assert abs(float(cases[node].get("time")) - seconds) < 0.002
    assert SECRET.encode() not in raw


def test_junit_reports_not_reached_nodes_as_skipped(hist, tmp_path):
    root, _ = _junit(hist, 2, tmp_path)
    suite, cases = _check_junit_shape(root)
    assert suite.get("name") == "stops early"
    assert cases["first"].find("failure").get("message").startswith("exit code 2")
    assert cases["second"].find("skipped").get("message").startswith("not reached")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("2", "1", "1")


# -- JSON -------------------------------------------------------------------------------------------------------


def test_json_report_is_valid_and_consistent_with_the_database(hist, tmp_path):
    _, dbp = hist
    r = _report(hist, "1", "--json")
    assert r.returncode == 0, r.text
    assert r.err == ""  # nothing but the document on stdout
    doc = json.loads(r.out)
    assert doc["report_version"] == 1
    assert doc["run"]["id"] == 1 and doc["run"]["status"] == "failed"
    assert "plan" not in doc["run"]
    assert doc["run"]["variables"]["TOKEN"] == "***"
    assert [n["id"] for n in doc["nodes"]] == MAIN_NODES
    assert {n["id"]: n["status"] for n in doc["nodes"]} == _final_status(dbp, 1, MAIN_NODES)
    by_id = {n["id"]: n for n in doc["nodes"]}
    assert by_id["flaky"]["attempts"] == 2 and by_id["flaky"]["retried"] == 1
    assert by_id["check"]["exit_code"] == 1 and "HTTP 503" in by_id["check"]["stderr"]
    assert by_id["notify"]["reason"].startswith("condition")
    assert by_id["gate"]["decision"] == "auto-approved"
    assert [a["id"] for a in doc["attempts"]] == [a["id"] for a in attempts(dbp, 1)]
    assert [e["id"] for e in doc["events"]] == [e["id"] for e in events(dbp, 1)]
    assert sum(doc["summary"]["counts"].values()) == len(MAIN_NODES)
    assert doc["summary"]["counts"] == {"succeeded": 5, "failed": 1, "skipped": 2}
    assert doc["stats"]["runs"] == 3 and doc["stats"]["by_status"] == {"failed": 2, "succeeded": 1}
    assert SECRET not in r.out
    # to a file, with the same content
    out = tmp_path / "run.json"
    r = _report(hist, "1", "--json", out)
    assert r.returncode == 0 and "wrote JSON report of run 1" in r.out
    again = json.loads(out.read_text(encoding="utf-8"))
    again.pop("generated_at"), doc.pop("generated_at")
    assert again == doc
    stops = json.loads(_report(hist, "2", "--json").out)
    assert {n["id"]: n["status"] for n in stops["nodes"]} == {"first": "failed", "second": "not_reached"}


# -- secrets --------------------------------------------------------------------------------------------------------


def test_secret_masked_in_all_three_formats(hist, tmp_path):
    tmp, dbp = hist
    out = {kind: tmp_path / ("r." + kind) for kind in ("html", "xml", "json")}
    r = _report(hist, "1", "--html", out["html"], "--junit", out["xml"], "--json", out["json"])
    assert r.returncode == 0, r.text
    for path in out.values():
        text = path.read_text(encoding="utf-8")
        assert SECRET not in text, path
        assert "token=***" in text or "token='***'" in text, path


def test_report_masks_a_secret_an_older_database_kept_in_clear(hist, tmp_path):
    """A database written before masking (value in runs.variables and in an output tail)."""
    _, dbp = hist
    copy = tmp_path / "old.db"
    src = sqlite3.connect(str(dbp))
    dst = sqlite3.connect(str(copy))
    src.backup(dst)
    src.close()
    row = dst.execute("SELECT variables FROM runs WHERE id = 1").fetchone()
    variables = json.loads(row[0])
    variables["TOKEN"] = SECRET
    dst.execute("UPDATE runs SET variables = ? WHERE id = 1", (json.dumps(variables),))
    dst.execute("UPDATE attempts SET stdout = stdout || ? WHERE run_id = 1 AND node_id = 'build'", ("leaked " + SECRET + "\n",))
    dst.commit()
    dst.close()
    tmp = hist[0]
    for fmt in ("--html", "--junit", "--json"):
        target = tmp_path / ("old" + fmt.strip("-"))
        r = pb(tmp, "report", "1", fmt, target, "--state-path", copy)
        assert r.returncode == 0, r.text
        text = target.read_text(encoding="utf-8")
        assert SECRET not in text, fmt
        assert "leaked ***" in text, fmt


# -- command line -------------------------------------------------------------------------------------------------


def test_report_defaults_to_the_latest_run_and_html_here(hist):
    tmp, dbp = hist
    target = tmp / "playbook-run-4.html"
    if target.exists():
        target.unlink()
    r = _report(hist)
    assert r.returncode == 0, r.text
    assert target.is_file() and "playbook-run-4.html" in r.out
    assert "Report &lt;demo&gt; &amp; co" in target.read_text(encoding="utf-8")
    doc = json.loads(_report(hist, "--last", "--json").out)
    assert doc["run"]["id"] == 4 and doc["run"]["status"] == "succeeded"
    doc = json.loads(_report(hist, "--json", "2").out)  # `--json 2`: 2 is the run
    assert doc["run"]["id"] == 2


def test_report_usage_errors_are_clear(hist, tmp_path):
    r = _report(hist, "99", "--json")
    assert r.returncode == 2 and "no run 99" in r.err and "Traceback" not in r.text
    r = _report(hist, "--html", "-", "--junit", "-")
    assert r.returncode == 2 and "standard output" in r.err
    r = _report(hist, "1", "--last", "--json")
    assert r.returncode == 2
    r = pb(tmp_path, "report", "--json", "--state-path", tmp_path / "empty.db")
    assert r.returncode == 2 and "no runs recorded" in r.err
    r = _report(hist, "1", "--html", tmp_path / "missing-dir" / "r.html")
    assert r.returncode == 4 and "cannot write" in r.err


def test_report_works_inside_a_bundle(hist, tmp_path):
    """The bundle carries the HTML template (read from the zip) and the report command."""
    tmp, dbp = hist
    bundle = tmp_path / "stops.pyz"
    r = pb(tmp, "compile", tmp / "stops.playbook.toml", "-o", bundle, "--no-bytecode")
    assert r.returncode == 0, r.text
    env = dict(os.environ, NO_COLOR="1", HOME=str(tmp_path))
    env.pop("PLAYBOOK_DB_PATH", None)
    bdb = tmp_path / "bundle.db"
    run = subprocess.run([str(bundle), "run", "--state-path", str(bdb)], cwd=str(tmp_path), env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    assert run.returncode == 1, run.stderr
    page = tmp_path / "bundle.html"
    rep = subprocess.run(
        [str(bundle), "report", "--html", str(page), "--junit", "-", "--state-path", str(bdb)], cwd=str(tmp_path), env=env, capture_output=True, timeout=120
    )
    assert rep.returncode == 0, rep.stderr
    assert ET.fromstring(rep.stdout).find("testsuite").get("failures") == "1"
    text = page.read_text(encoding="utf-8")
    assert 'id="step-first"' in text and 'id="step-second"' in text and "not reached" in text


# -- statistics: info and show --------------------------------------------------------------------------------


def test_info_json_has_outcomes_durations_and_node_rankings(hist):
    tmp, dbp = hist
    r = pb(tmp, "info", "--json", "--state-path", dbp)
    assert r.returncode == 0, r.text
    doc = json.loads(r.out)
    main = by_title(doc["workflows"], "Report <demo> & co")
    assert main["runs"] == 3
    assert main["by_status"] == {"failed": 2, "succeeded": 1}
    assert main["median_duration"] is not None and main["p95_duration"] is not None
    assert main["p95_duration"] >= main["median_duration"] > 0
    assert main["most_failing"][0] == ["check", 2]
    assert ["flaky", 1] in main["most_retried"]
    slowest = [node for node, _ in main["slowest"]]
    assert slowest and all(node in MAIN_NODES for node in slowest)
    means = [seconds for _, seconds in main["slowest"]]
    assert means == sorted(means, reverse=True)
    assert main["approvals_by"] == {whoami(): 3}
    assert by_title(doc["workflows"], "stops early")["most_failing"] == [["first", 1]]


def test_info_text_reads_like_a_summary(hist):
    tmp, dbp = hist
    r = pb(tmp, "info", "--state-path", dbp)
    assert r.returncode == 0, r.text
    block = r.out.split("Report <demo> & co", 1)[1].split("stops early", 1)[0]
    assert "3: 1 succeeded, 2 failed (33% succeeded)" in block
    assert "median" in block and "p95" in block
    assert "fails most:" in block and "check 2 failures" in block
    assert "retried most:" in block and "flaky 1 retry" in block
    assert "slowest:" in block and "avg" in block
    assert "approvals:" in block and "%s 3" % whoami() in block


def test_since_filters_info_and_show(hist):
    tmp, dbp = hist
    future = (datetime.datetime.utcnow() + datetime.timedelta(days=1)).strftime("%Y-%m-%d")
    r = pb(tmp, "info", "--since", future, "--json", "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert json.loads(r.out)["workflows"] == {}
    assert "no runs recorded since then" in pb(tmp, "info", "--since", future, "--state-path", dbp).out
    r = pb(tmp, "info", "--since", "1d", "--json", "--state-path", dbp)
    assert by_title(json.loads(r.out)["workflows"], "Report <demo> & co")["runs"] == 3
    # a moment between run 3 and run 4: only run 4 counts
    cut = run_row(dbp, 4)["started_at"]
    r = pb(tmp, "info", "--since", cut, "--json", "--state-path", dbp)
    workflows = json.loads(r.out)["workflows"]
    assert [w["title"] for w in workflows.values()] == ["Report <demo> & co"] and by_title(workflows, "Report <demo> & co")["by_status"] == {"succeeded": 1}
    r = pb(tmp, "show", "--since", cut, "--json", "--state-path", dbp)
    assert r.returncode == 0, r.text
    doc = json.loads(r.out)
    assert [run["id"] for run in doc["runs"]] == [4]
    assert by_title(doc["workflows"], "Report <demo> & co")["runs"] == 1
    r = pb(tmp, "show", "--since", "2d", "--state-path", dbp)
    assert r.returncode == 0, r.text
    assert "per workflow" in r.out and "stops early" in r.out and "median" in r.out
    r = pb(tmp, "show", "--since", "last tuesday", "--state-path", dbp)
    assert r.returncode == 2 and "--since" in r.err and "Traceback" not in r.text


def test_show_json_lists_runs_and_statistics_per_workflow(hist):
    tmp, dbp = hist
    r = pb(tmp, "show", "Report <demo> & co", "--json", "--state-path", dbp)
    assert r.returncode == 0, r.text
    doc = json.loads(r.out)
    assert [run["id"] for run in doc["runs"]] == [4, 3, 1]
    assert [w["title"] for w in doc["workflows"].values()] == ["Report <demo> & co"]
    assert by_title(doc["workflows"], "Report <demo> & co")["most_failing"][0] == ["check", 2]


# -- helpers of the report module ---------------------------------------------------------------------------------


def test_plain_text_strips_escapes_and_settles_carriage_returns():
    from playbook.runtime.report import plain_text, tail

    assert plain_text("\x1b[1;31mred\x1b[0m \x1b]8;;http://x\x07link\x1b]8;;\x07") == "red link"
    assert plain_text("10%\r50%\r100%\ndone\r\n") == "100%\ndone\n"
    assert plain_text("a\x00b\x07c") == "a\ufffdb\ufffdc"
    assert plain_text("<b>[/]</b>") == "<b>[/]</b>"  # escaping is the template's job
    text, cut = tail("\n".join(str(i) for i in range(200)), lines=10)
    assert cut and text.split("\n") == [str(i) for i in range(190, 200)]


def test_parse_since_accepts_dates_times_and_ages():
    from playbook.runtime.report import parse_since

    assert parse_since("2026-11-01") == "2026-11-01T00:00:00.000Z"
    assert parse_since("2026-11-01T08:30") == "2026-11-01T08:30:00.000Z"
    assert parse_since("2026-11-01 08:30:00+02:00") == "2026-11-01T06:30:00.000Z"
    now = datetime.datetime(2026, 11, 29, 12, 0, tzinfo=datetime.timezone.utc)
    assert parse_since("7d", now=now) == "2026-11-22T12:00:00.000Z"
    assert parse_since("12h", now=now) == "2026-11-29T00:00:00.000Z"
    assert parse_since("2w", now=now) == "2026-11-15T12:00:00.000Z"
    with pytest.raises(ValueError, match="not a date"):
        parse_since("soon")


# -- a run that waits for an approval ----------------------------------------------------------------------------

WAITS = """
[runbook]
title = "waits"

[first]
type = "Command"
command_name = "echo one"
depends_on = []

[gate]
type = "Manual"
prompt_after = "Go on?"
depends_on = ["first"]
"""


def _waiting_run(tmp_path, kind, detail):
    """A recorded run whose Manual step `gate` needed an approval without a terminal, made
    through the store: `first` succeeded, then the event (kind, detail) about `gate`."""
    from playbook.compiler.plan import compile_file
    from playbook.runtime.state import Store

    book = tmp_path / "waits.playbook.toml"
    book.write_text(WAITS, encoding="utf-8")
    plan = compile_file(str(book)).plan
    store = Store(str(tmp_path / "state.db"))
    run_id = store.create_run(plan.title, str(book), plan.digest(), plan.dumps(), {})
    store.finish_attempt(store.start_attempt(run_id, "first", 1), "succeeded", exit_code=0)
    store.add_event(run_id, kind, detail, node_id="gate")
    store.set_run_status(run_id, "aborted", exit_code=3)
    return store, store.get_run(run_id)


def test_report_recognises_a_missing_approval_by_the_event_kind(tmp_path):
    """The engine records it as an `approval-needed` event (by design: structured, not prose)."""
    from playbook.runtime.report import RunReport, run_text

    store, run = _waiting_run(tmp_path, "approval-needed", "gate: Go on?")
    with store:
        report = RunReport(store, run)
        shown = run_text(run, store.attempts(run["id"]), store.events(run["id"]))
    nodes = {n["id"]: n for n in report.nodes}
    assert nodes["first"]["status"] == "succeeded" and nodes["first"]["reason"] is None
    assert (nodes["gate"]["status"], nodes["gate"]["reason"]) == ("not_reached", "waiting for an approval (there was no terminal to ask on)")
    case = [c for c in ET.fromstring(report.junit()).iter("testcase") if c.get("name") == "gate"][0]
    assert case.find("skipped").get("message") == "not reached: waiting for an approval (there was no terminal to ask on)"
    assert re.search(r"audit trail:\n  \S+ \S+  approval-needed\s+gate: Go on\?$", shown), shown


def test_report_does_not_read_event_prose(tmp_path):
    """An event of another kind is not a missing approval, whatever its text says."""
    from playbook.runtime.report import RunReport

    store, run = _waiting_run(tmp_path, "approval", "gate: needed, no terminal: Go on?")
    with store:
        nodes = {n["id"]: n for n in RunReport(store, run).nodes}
    assert (nodes["gate"]["status"], nodes["gate"]["reason"]) == ("not_reached", None)
