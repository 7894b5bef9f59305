""""Did you mean …?": the one helper behind every hint about a misspelt name.

Runbook keys and node types (compiler/schema.py), dependencies (compiler/resolve.py),
variable specs (variables.py), configuration keys (config.py) and plugins, functions and
parameters (plugins.py) all suggest the closest known name the same way.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable, Optional


def did_you_mean(word: str, candidates: Iterable[str], cutoff: float = 0.6) -> Optional[str]:
    """"did you mean 'name'?" for the candidate most similar to `word` (difflib ratio at least
    `cutoff`), or None when none is that close."""
    import difflib  # only when something is misspelt

    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=cutoff)
    return "did you mean %r?" % close[0] if close else None
