"""runtime/suggest.py: the one "did you mean" helper."""

from playbook.runtime.suggest import did_you_mean

TYPES = ["Manual", "Command", "Function"]


def test_closest_candidate_is_quoted():
    assert did_you_mean("retrys", ["retries", "retry_delay", "timeout"]) == "did you mean 'retries'?"
    assert did_you_mean("Shel", TYPES) is None
    assert did_you_mean("x", {"y": 1}) is None  # any iterable of names, a dict's keys too


def test_cutoff_is_per_call_site():
    assert did_you_mean("func", TYPES) is None  # ratio 0.5: below the default 0.6
    assert did_you_mean("func", TYPES, cutoff=0.5) == "did you mean 'Function'?"
    assert did_you_mean("sucess", ["success"], cutoff=0.95) is None
