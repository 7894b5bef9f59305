"""`playbook create`: a new runbook from the scaffold in templates/."""

import datetime
import json
import re
from importlib import resources


def default_name(title):
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "runbook"
    return "%s.playbook.toml" % slug


def _toml_string(text):
    return json.dumps(text, ensure_ascii=False)


def render(title, author, description, now=None):
    now = now or datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    text = resources.files("playbook.templates").joinpath("create.playbook.toml").read_text("utf-8")
    replacements = {
        "@TITLE_COMMENT@": " ".join(title.split()),
        "@TITLE@": _toml_string(title),
        "@DESCRIPTION@": _toml_string(description),
        "@AUTHOR@": _toml_string(author),
        "@CREATED_AT@": _toml_string(now.isoformat().replace("+00:00", "Z")),
    }
    for marker, value in replacements.items():
        text = text.replace(marker, value)
    return text


def write_runbook(path, title, author, description):
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(render(title, author, description))
