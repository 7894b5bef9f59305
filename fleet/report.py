"""The report of a rollout, from the hosts' fetched state databases: a hosts × steps matrix with
each host's details (HTML, templates/fleet/report.html.j2), JUnit XML with one test suite per
host, or JSON (`playbook fleet report DIR`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Iterator, Mapping, Sequence

from playbook.runtime.errors import EXIT_INVALID, EXIT_OK, EXIT_STATE, UsageError

from .summary import FLEET_VERSION, _now, read_summary


def host_reports(out_dir: str, summary: Mapping[str, Any]) -> Iterator[tuple[dict, Any]]:
    """(summary entry, RunReport or None) per host, from its fetched state database."""
    from playbook.runtime import report
    from playbook.runtime.state import Store

    for entry in summary["hosts"]:
        rep = None
        if entry.get("database") and entry.get("run_id") is not None:
            path = os.path.join(out_dir, entry["database"])
            if os.path.isfile(path):
                store = Store(path)
                try:
                    run = store.get_run(int(entry["run_id"]))
                    if run is not None:
                        rep = report.RunReport(store, run)
                finally:
                    store.close()
        yield dict(entry), rep


def fleet_report_data(out_dir: str) -> dict:
    summary = read_summary(out_dir)
    hosts, steps = [], []
    for entry, rep in host_reports(out_dir, summary):
        entry["nodes"] = rep.to_dict()["nodes"] if rep is not None else []
        entry["run"] = rep.to_dict()["run"] if rep is not None else None
        for node in entry["nodes"]:
            if node["id"] not in steps:
                steps.append(node["id"])
        hosts.append(entry)
    return {"fleet_version": FLEET_VERSION, "generated_at": _now(), "runbook": summary.get("runbook"), "exit_code": summary.get("exit_code"),
            "counts": summary.get("counts"), "started_at": summary.get("started_at"), "ended_at": summary.get("ended_at"),
            "steps": steps, "hosts": hosts}


def fleet_junit(data: Mapping[str, Any]) -> bytes:
    """One <testsuite> per host, one <testcase> per step; a host that has no run is one test case."""
    import xml.etree.ElementTree as ET

    suites = ET.Element("testsuites", name="playbook fleet")
    for host in data["hosts"]:
        suite = ET.SubElement(suites, "testsuite", name=host["host"], hostname=host["host"])
        nodes = host["nodes"] or [{"id": "run", "status": host["status"], "reason": host.get("reason"), "duration": 0}]
        counts = {"tests": len(nodes), "failures": 0, "skipped": 0, "errors": 0}
        for node in nodes:
            case = ET.SubElement(suite, "testcase", classname="playbook.%s" % host["host"], name=node["id"], time="%.3f" % (node.get("duration") or 0))
            status = node["status"]
            message = node.get("reason") or node.get("error") or status
            if status in ("failed", "unreachable"):
                counts["failures"] += 1
                ET.SubElement(case, "failure", message=str(message)).text = node.get("stderr") or None
            elif status != "succeeded":
                counts["skipped"] += 1
                ET.SubElement(case, "skipped", message=str(message))
        for key, value in counts.items():
            suite.set(key, str(value))
    if hasattr(ET, "indent"):
        ET.indent(suites)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="utf-8") + b"\n"


COLOURS = {"succeeded": "#2e7d32", "failed": "#c62828", "skipped": "#9e9e9e", "aborted": "#ef6c00", "waiting": "#f9a825",
           "unreachable": "#6a1b9a", "not started": "#e0e0e0", "not_reached": "#eeeeee", "running": "#1565c0", "interrupted": "#ef6c00"}


def build_report_parser() -> argparse.ArgumentParser:
    from playbook.runtime import options

    parser = options.parser(
        "playbook fleet report",
        "Write the report of a fleet rollout: a hosts × steps matrix (HTML), JUnit XML with one test suite per "
        "host, or JSON. Without a FILE: DIR/fleet-report.*",
        ["playbook fleet report rollout --html --junit"], (EXIT_OK, EXIT_INVALID, EXIT_STATE),
    )
    parser.add_argument("dir", nargs="?", metavar="DIR", help="the --out directory of `playbook fleet`")
    parser.add_argument("--fleet", metavar="DIR", help=argparse.SUPPRESS)  # the former `playbook report --fleet DIR`
    parser.add_argument("--html", nargs="?", const="", metavar="FILE", help="the HTML page (default DIR/fleet-report.html)")
    parser.add_argument("--junit", nargs="?", const="", metavar="FILE", help="JUnit XML (default DIR/fleet-report.xml)")
    parser.add_argument("--json", nargs="?", const="", metavar="FILE", help="JSON (default DIR/fleet-report.json)")
    return parser


def report_main(argv: Sequence[str]) -> int:
    """`playbook fleet report DIR [--html [FILE]] [--junit [FILE]] [--json [FILE]]`."""
    args = build_report_parser().parse_args(list(argv))
    args.fleet = args.dir or args.fleet
    if not args.fleet:
        raise UsageError("give the rollout's directory: playbook fleet report DIR")
    data = fleet_report_data(args.fleet)
    wanted = [(kind, target) for kind, target in (("html", args.html), ("junit", args.junit), ("json", args.json)) if target is not None]
    for kind, target in wanted or [("html", "")]:
        suffix = {"html": "html", "junit": "xml", "json": "json"}[kind]
        path = target or os.path.join(args.fleet, "fleet-report.%s" % suffix)
        if kind == "html":
            content = fleet_html(data).encode("utf-8")
        elif kind == "junit":
            content = fleet_junit(data)
        else:
            content = (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        if path == "-":
            sys.stdout.flush()
            sys.stdout.buffer.write(content)
            continue
        try:
            with open(path, "wb") as handle:
                handle.write(content)
        except OSError as exc:
            raise UsageError("cannot write %s: %s" % (path, exc.strerror or exc), EXIT_STATE) from None
        print("wrote the fleet %s report of %d hosts: %s" % (kind.upper() if kind != "junit" else "JUnit", len(data["hosts"]), path))
    return EXIT_OK



def fleet_html(data: Mapping[str, Any]) -> str:
    """One self-contained page: hosts × steps coloured by state, then the details of each host
    (templates/fleet/report.html.j2, every text escaped)."""
    import jinja2

    from .playbook import template

    env = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined, keep_trailing_newline=True)
    title = (data.get("runbook") or {}).get("title") or "runbook"
    counts = ", ".join("%d %s" % (n, s) for s, n in (data.get("counts") or {}).items())
    return env.from_string(template("report.html.j2")).render(data=data, title=title, counts=counts, colours=COLOURS)
