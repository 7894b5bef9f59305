"""Durations in seconds (timeouts, delays): finite, and at most a documented maximum.

A longer duration is a mistake, and an enormous one (``1e308``) would overflow the clocks and
sleeps it reaches in the middle of a run. So every duration is checked where it is written:

- runbook fields ``timeout`` and ``retry_delay`` at validate time (``file:line``), and a
  templated ``timeout`` when it is rendered (at compile time or at run time);
- configuration (``[database] timeout``, ``[execution] default_timeout`` and
  ``interactive_timeout``) and ``PLAYBOOK_DEFAULT_TIMEOUT`` when configuration is read.

Limits: a timeout at most 7 days (604800 s), ``retry_delay`` at most 1 day (86400 s).
Standard library only: this module goes into bundles.
"""

from __future__ import annotations

MAX_TIMEOUT = 7 * 24 * 3600
MAX_RETRY_DELAY = 24 * 3600

# what: (whether 0 is allowed, the largest value). 0 means "no limit" for the configured
# timeouts and "no delay" for retry_delay; a node's own timeout must be positive.
LIMITS = {
    "timeout": (False, MAX_TIMEOUT),
    "retry_delay": (True, MAX_RETRY_DELAY),
    "database.timeout": (True, MAX_TIMEOUT),
    "execution.default_timeout": (True, MAX_TIMEOUT),
    "execution.interactive_timeout": (True, MAX_TIMEOUT),
}


class DurationError(ValueError):
    """A duration that is not a number, not finite, negative (or 0 where that is not allowed)
    or above its maximum. The message names the field, never the value (it may be derived
    from a secret)."""


def check_duration(value: object, what: str) -> float:
    """`value` unchanged (an int stays an int) when it is a valid duration for `what` (a key
    of LIMITS); raises DurationError otherwise."""
    zero, maximum = LIMITS[what]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DurationError("%s must be a number of seconds, not %s" % (what, type(value).__name__))
    if not (value >= 0 if zero else value > 0):  # NaN fails both comparisons
        raise DurationError("%s must be %s number of seconds" % (what, "zero or a positive" if zero else "a positive"))
    if value > maximum:  # so does +inf
        raise DurationError("%s must be at most %d seconds (%s)" % (what, maximum, _days(maximum)))
    return value


def _days(seconds: int) -> str:
    days = seconds // 86400
    return "%d day%s" % (days, "" if days == 1 else "s")


def default_timeout_note(error: str) -> str:
    """The error of a step killed by the default timeout (it has no `timeout` of its own),
    saying so and how to change it."""
    return "%s; that is the default timeout: set timeout = SECONDS on the step, or [execution] default_timeout" % error
