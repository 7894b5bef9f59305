"""runtime/durations.py: every duration finite and at most its documented maximum."""

import math

import pytest

from playbook.runtime.durations import LIMITS, MAX_RETRY_DELAY, MAX_TIMEOUT, DurationError, check_duration


def test_the_documented_maximums():
    assert (MAX_TIMEOUT, MAX_RETRY_DELAY) == (604800, 86400)
    assert {what: limit[1] for what, limit in LIMITS.items()} == {
        "timeout": MAX_TIMEOUT,
        "retry_delay": MAX_RETRY_DELAY,
        "database.timeout": MAX_TIMEOUT,
        "execution.default_timeout": MAX_TIMEOUT,
        "execution.interactive_timeout": MAX_TIMEOUT,
    }


def test_valid_values_come_back_unchanged():
    assert check_duration(300, "timeout") == 300 and isinstance(check_duration(300, "timeout"), int)
    assert check_duration(0.5, "timeout") == 0.5
    assert check_duration(MAX_TIMEOUT, "timeout") == MAX_TIMEOUT
    assert check_duration(0, "retry_delay") == 0
    assert check_duration(0, "execution.default_timeout") == 0  # 0 = no limit


@pytest.mark.parametrize(
    "value, what, message",
    [
        (1e308, "timeout", "timeout must be at most 604800 seconds (7 days)"),
        (10**400, "timeout", "timeout must be at most 604800 seconds (7 days)"),
        (math.inf, "execution.default_timeout", "execution.default_timeout must be at most 604800 seconds (7 days)"),
        (MAX_RETRY_DELAY + 1, "retry_delay", "retry_delay must be at most 86400 seconds (1 day)"),
        (math.nan, "timeout", "timeout must be a positive number of seconds"),
        (0, "timeout", "timeout must be a positive number of seconds"),
        (-math.inf, "retry_delay", "retry_delay must be zero or a positive number of seconds"),
        (-1, "database.timeout", "database.timeout must be zero or a positive number of seconds"),
        (True, "timeout", "timeout must be a number of seconds, not bool"),
        ("60", "timeout", "timeout must be a number of seconds, not str"),
    ],
)
def test_refused_with_a_message_naming_the_field_not_the_value(value, what, message):
    with pytest.raises(DurationError) as info:
        check_duration(value, what)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


def test_a_templated_timeout_rendered_at_run_time_is_bounded_too():
    from playbook.runtime import templating
    from playbook.runtime.plan import Node

    node = Node("n", "Command", timeout="{{ T }}")
    with pytest.raises(templating.TemplateError, match=r"timeout must be at most 604800 seconds \(7 days\)"):
        templating.render_field(node, "timeout", {"T": 1e308})


def test_the_default_timeout_note_says_how_to_change_it():
    from playbook.runtime.durations import default_timeout_note

    assert default_timeout_note("timed out after 300 s (process group terminated)") == (
        "timed out after 300 s (process group terminated); that is the default timeout: "
        "set timeout = SECONDS on the step, or [execution] default_timeout"
    )
