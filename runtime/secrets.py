"""Secret values masked where texts leave the engine: the UI (console, --json, run-event log)
and the state database (and so `show`, the reports and `view-dag --run`, which read it).

A `Masker` knows the run's secret values and replaces each occurrence by ``***``:
- `text()` / `value()`: a string, or JSON-like data (plugin results, event fields);
- `tail()`: a captured output tail that may start in the middle of a secret (its first
  characters were cut off): a leading proper suffix of a secret is masked too;
- `MaskedUI`: wraps a UI; every event field, question, choice and node text is masked, and
  streamed command output is masked even when a secret arrives split across two reads (the
  possible beginning of a secret is held back until the next read or the end of the step).

What cannot be recognised: a value the runbook transforms before it is printed (`| upper`,
slices, base64, a command that reverses it). Secrets are compared as exact substrings.

Standard library only: this module goes into bundles.
"""

from __future__ import annotations

import threading

TYPE_CHECKING = False  # typing is not imported at run time (start-up)
if TYPE_CHECKING:
    from typing import Any, Iterable

MASK = "***"


class Masker:
    def __init__(self, secrets: Iterable[Any] = ()) -> None:
        # longest first, so that a secret containing another is masked whole
        found = {s for s in secrets if isinstance(s, str) and s}
        self.secrets = sorted(found, key=len, reverse=True)
        self.longest = len(self.secrets[0]) if self.secrets else 0

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def text(self, text: str) -> str:
        if not self.secrets or not text:
            return text
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def value(self, value: Any) -> Any:
        """`value` with every string inside masked (dicts, lists and tuples are rebuilt)."""
        if not self.secrets:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.value(v) for v in value)
        return value

    def tail(self, text: str) -> str:
        """A tail of output whose beginning was cut off: also masks a leading piece that is the
        end of a secret."""
        text = self.text(text)
        for secret in self.secrets:
            for size in range(len(secret) - 1, 0, -1):
                if text.startswith(secret[-size:]):
                    return MASK + text[size:]
        return text

    def held_back(self, data: str) -> int:
        """How many characters at the end of `data` could be the beginning of a secret."""
        for size in range(min(self.longest - 1, len(data)), 0, -1):
            end = data[-size:]
            if any(secret.startswith(end) for secret in self.secrets):
                return size
        return 0


class MaskedUI:
    """A UI whose every outgoing text is masked; everything else is the wrapped UI's."""

    def __init__(self, ui: Any, masker: Masker) -> None:
        self._ui = ui
        self._mask = masker
        self._nodes: dict[int, Any] = {}
        self._pending: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ui, name)

    @property
    def interactive(self) -> bool:
        return self._ui.interactive

    @interactive.setter
    def interactive(self, value: bool) -> None:
        self._ui.interactive = value

    def node(self, node: Any) -> Any:
        """The node as the UI may show it (its texts masked); one copy per node."""
        if node is None:
            return None
        # the node is kept with its copy: an id is unique only while its object lives, and a
        # step's copy made when it starts (fields rendered then) is freed when the step ends
        cached = self._nodes.get(id(node))
        if cached is not None and cached[0] is node:
            return cached[1]
        changes = {}
        for field in ("name", "description", "command", "prompt_before", "prompt_after", "cwd", "when", "env"):
            value = getattr(node, field, None)
            if value is not None:
                changes[field] = self._mask.value(value)
        masked = node.copy(**changes)
        self._nodes[id(node)] = (node, masked)
        return masked

    def event(self, kind: str, **data: Any) -> None:
        node = data.get("node")
        if kind == "node_output":
            self._output(node, data["stream"], data["text"])
            return
        if node is not None and kind in ("node_finished", "node_retrying", "node_skipped"):
            self._flush(node)
        data = {key: (self.node(v) if key == "node" else self._mask.value(v)) for key, v in data.items()}
        self._ui.event(kind, **data)

    def _output(self, node: Any, stream: str, text: str) -> None:
        key = (node.id, stream)
        with self._lock:
            data = self._mask.text(self._pending.pop(key, "") + text)
            hold = self._mask.held_back(data)
            if hold:
                self._pending[key] = data[-hold:]
                data = data[:-hold]
        if data:
            self._ui.event("node_output", node=self.node(node), stream=stream, text=data)

    def _flush(self, node: Any) -> None:
        with self._lock:
            keys = [k for k in self._pending if k[0] == node.id]
            rest = [(k[1], self._mask.text(self._pending.pop(k))) for k in keys]
        for stream, text in rest:
            self._ui.event("node_output", node=self.node(node), stream=stream, text=text)

    def confirm(self, node: Any, question: str) -> bool:
        self._flush(node)
        return self._ui.confirm(self.node(node), self._mask.text(question))

    def choose(self, node: Any, question: str, options: list, critical: bool = False) -> str:
        self._flush(node)
        options = [tuple(self._mask.value(list(option))) for option in options]
        return self._ui.choose(self.node(node), self._mask.text(question), options, critical=critical)

    def error(self, text: str) -> None:
        self._ui.error(self._mask.text(text))
