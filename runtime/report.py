"""Runs and statistics as text for people (`show`, `info`)."""


def _duration(seconds):
    if seconds is None:
        return "-"
    if seconds < 60:
        return "%.1fs" % seconds
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return "%dm%02ds" % (minutes, sec)
    hours, minutes = divmod(minutes, 60)
    return "%dh%02dm" % (hours, minutes)


def _table(headers, rows):
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(str(cell)))
    lines = ["  ".join(str(h).ljust(widths[i]) for i, h in enumerate(headers)).rstrip()]
    for row in rows:
        lines.append("  ".join(str(c).ljust(widths[i]) for i, c in enumerate(row)).rstrip())
    return "\n".join(lines)


def runs_text(runs, database):
    if not runs:
        return "no runs recorded in %s" % database
    rows = [
        (r["id"], r["status"], r.get("trigger") or "", (r.get("started_at") or "")[:19].replace("T", " "), r.get("user") or "", r["title"])
        for r in runs
    ]
    return "runs in %s\n%s" % (database, _table(("id", "status", "trigger", "started (UTC)", "user", "title"), rows))


def run_text(run, attempts, events, output=False):
    lines = [
        "run %d: %s — %s" % (run["id"], run["title"], run["status"]),
        "  started %s by %s@%s (%s), ended %s"
        % (run.get("started_at"), run.get("user"), run.get("host"), run.get("trigger"), run.get("ended_at") or "-"),
    ]
    if run.get("variables"):
        lines.append("  variables: %s" % ", ".join("%s=%s" % (k, v) for k, v in sorted(run["variables"].items())))
    rows = []
    for a in attempts:
        rows.append(
            (
                a["node_id"],
                a["attempt"],
                a["status"],
                _duration(a.get("duration")),
                "" if a.get("exit_code") is None else a["exit_code"],
                a.get("decision") or "",
                a.get("decided_by") or "",
                (a.get("skip_reason") or a.get("error") or "")[:70],
            )
        )
    lines.append(_table(("node", "try", "status", "time", "exit", "decision", "who", "note"), rows))
    if output:
        for a in attempts:
            for stream in ("stdout", "stderr"):
                text = a.get(stream)
                if text:
                    lines.append("--- %s attempt %d %s%s" % (a["node_id"], a["attempt"], stream, " (tail)" if a.get(stream + "_truncated") else ""))
                    lines.append(text.rstrip("\n"))
            if a.get("output") not in (None, ""):
                lines.append("--- %s attempt %d output" % (a["node_id"], a["attempt"]))
                lines.append(str(a["output"]))
    audit = [e for e in events if e.get("kind") in ("approval", "decision", "set-status", "resume", "interrupted")]
    if audit:
        lines.append("audit trail:")
        for e in audit:
            lines.append("  %s  %-10s %-24s %s" % ((e.get("at") or "")[:19].replace("T", " "), e["kind"], e.get("who") or "", e.get("detail") or ""))
    return "\n".join(lines)


def stats_text(stats, database):
    lines = ["database: %s" % database]
    if not stats:
        lines.append("no runs recorded yet")
        return "\n".join(lines)
    for title, s in sorted(stats.items()):
        by = s.get("by_status") or {}
        total = s.get("runs", 0)
        ok = by.get("succeeded", 0)
        lines.append("")
        lines.append("%s" % title)
        lines.append(
            "  runs %d: %s; success rate %s; median %s, p95 %s"
            % (
                total,
                ", ".join("%d %s" % (n, k) for k, n in sorted(by.items())),
                "%.0f%%" % (100.0 * ok / total) if total else "-",
                _duration(s.get("median_duration")),
                _duration(s.get("p95_duration")),
            )
        )
        for key, label in (("most_failing", "fails most"), ("most_retried", "retried most"), ("slowest", "slowest")):
            items = s.get(key) or []
            if items:
                shown = ", ".join("%s (%s)" % (n, _duration(v) if key == "slowest" else v) for n, v in items)
                lines.append("  %s: %s" % (label, shown))
        approvals = s.get("approvals_by") or {}
        if approvals:
            items = approvals.items() if isinstance(approvals, dict) else approvals
            lines.append("  approvals: %s" % ", ".join("%s (%s)" % (k, v) for k, v in items))
    return "\n".join(lines)


def plugins_text(plugins):
    lines = []
    for p in plugins:
        head = "%s %s" % (p["name"], p.get("version") or "")
        if p.get("distribution"):
            head += " (from %s)" % p["distribution"]
        lines.append(head.strip())
        if p.get("error"):
            lines.append("  cannot load: %s" % p["error"])
            continue
        if p.get("description"):
            lines.append("  %s" % p["description"])
        for f in p.get("functions") or []:
            lines.append("  %s.%s — %s" % (p["name"], f["name"], f.get("description") or ""))
            for param in f.get("parameters") or []:
                extra = []
                if param.get("required"):
                    extra.append("required")
                if param.get("default") is not None:
                    extra.append("default %r" % (param["default"],))
                if param.get("choices"):
                    extra.append("one of %s" % ", ".join(map(str, param["choices"])))
                lines.append(
                    "      %s: %s%s%s"
                    % (param["name"], param.get("type"), " (%s)" % ", ".join(extra) if extra else "", " — " + param["description"] if param.get("description") else "")
                )
    return "\n".join(lines)
