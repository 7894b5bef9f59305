"""Bad-input fixtures: one file per failure, named after it, each with its expected message.

Every file in tests/fixtures/bad/ starts with comment lines that say what the compiler must
report (the line and column are where the mistake is in that file):

    # expect: LINE:COL: fragment of the error message     (COL may be `*`: not checked)
    # hint: fragment of a hint given with one of the errors
    # errors: exact number of errors (when a cascade of follow-up errors would be wrong)
    # xfail: BUG ... (a known defect of the code under test; the test is xfail(strict))

Every file in tests/fixtures/good/ must validate.
"""

import re
from pathlib import Path

import pytest

from playbook.compiler.plan import compile_file
from playbook.compiler.source import CompileError

FIXTURES = Path(__file__).resolve().parent / "fixtures"
BAD = sorted((FIXTURES / "bad").glob("*.playbook.toml"))
GOOD = sorted((FIXTURES / "good").glob("*.playbook.toml"))

_EXPECT = re.compile(r"^# expect: (\d+):(\d+|\*): (.+)$")


class Expectation:
    def __init__(self, path):
        self.path = path
        self.errors = []  # (line, col or None, fragment)
        self.hints = []
        self.count = None
        self.xfail = None
        text = path.read_bytes().decode("utf-8", "replace")
        for line in text.splitlines():
            if not line.startswith("#"):
                break
            match = _EXPECT.match(line)
            if match:
                col = None if match.group(2) == "*" else int(match.group(2))
                self.errors.append((int(match.group(1)), col, match.group(3)))
            elif line.startswith("# hint: "):
                self.hints.append(line[len("# hint: "):])
            elif line.startswith("# errors: "):
                self.count = int(line[len("# errors: "):])
            elif line.startswith("# xfail: "):
                self.xfail = line[len("# xfail: "):]


def _params(paths):
    params = []
    for path in paths:
        exp = Expectation(path)
        marks = [pytest.mark.xfail(strict=True, reason=exp.xfail)] if exp.xfail else []
        params.append(pytest.param(exp, id=path.name[: -len(".playbook.toml")], marks=marks))
    return params


def _errors(path):
    with pytest.raises(CompileError) as info:
        compile_file(str(path), bake=True)
    return [d for d in info.value.diagnostics if d.severity == "error"]


def test_fixture_folders_are_populated():
    assert len(BAD) >= 40
    assert len(GOOD) >= 5


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_bad_fixture_is_named_after_its_failure_and_says_what_it_expects(path):
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*\.playbook\.toml", path.name)
    assert Expectation(path).errors, "%s has no `# expect:` line" % path.name


@pytest.mark.parametrize("exp", _params(BAD))
def test_bad_fixture_reports_expected_error_at_its_line(exp):
    errors = _errors(exp.path)
    for line, col, fragment in exp.errors:
        found = [
            d for d in errors if d.line == line and (col is None or d.col == col) and fragment in d.message
        ]
        assert found, "expected %d:%s: %r among:\n%s" % (
            line,
            col if col is not None else "*",
            fragment,
            "\n".join(d.format() for d in errors),
        )
    for hint in exp.hints:
        assert any(d.hint and hint in d.hint for d in errors), "no hint containing %r in:\n%s" % (
            hint,
            "\n".join(d.format() for d in errors),
        )
    if exp.count is not None:
        assert len(errors) == exp.count, "\n".join(d.format() for d in errors)
    for diag in errors:
        assert diag.file and diag.line and diag.col, "diagnostic without a place: %r" % diag


@pytest.mark.parametrize("exp", _params(BAD))
def test_bad_fixture_on_the_command_line(exp, playbook_cli):
    """`playbook validate` exits 2, prints FILE:LINE:COL: error: …, and never a traceback."""
    name = exp.path.name
    result = playbook_cli(["validate", name], cwd=exp.path.parent)
    assert "Traceback" not in result.stderr + result.stdout
    assert result.returncode == 2, result.stderr
    for line, col, fragment in exp.errors:
        prefix = "%s:%d:%s: error: " % (re.escape(name), line, r"\d+" if col is None else col)
        pattern = re.compile("^" + prefix + ".*" + re.escape(fragment), re.M)
        assert pattern.search(result.stderr), result.stderr


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_good_fixture_validates(path, playbook_cli):
    result = playbook_cli(["validate", path.name], cwd=path.parent)
    assert result.returncode == 0, result.stderr
    assert "error" not in result.stderr
    assert "%s: valid" % path.name in result.stdout
