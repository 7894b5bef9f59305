"""The control-sequence policy for command output (runtime/terminal.py)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from playbook.runtime.terminal import MAX_HELD, Cleaner, clean

ESC = "\x1b"

# (output, shown without colour (None: unchanged), shown with colour (None: as without))
CASES = [
    ("plain text, [markup] {{ x }} ünï 😀\ttab\n", None, None),
    (ESC + "[31mred" + ESC + "[0m", "red", ESC + "[31mred" + ESC + "[0m"),
    (ESC + "[38;5;8mgrey" + ESC + "[38;2;1;8;3m", "grey",
     ESC + "[38;5;8mgrey" + ESC + "[38;2;1;8;3m"),  # colour arguments 8 are not conceal
    (ESC + "[1;8mhidden" + ESC + "[8m!", "hidden!", ESC + "[1mhidden!"),  # conceal dropped
    (ESC + "[2J" + ESC + "[H" + ESC + "[3;4fclear", "clear", "clear"),  # erase, cursor
    (ESC + "[?1049h" + ESC + "[?25lmodes", "modes", "modes"),
    (ESC + "[>4;1mkeys", "keys", "keys"),  # not SGR: modifyOtherKeys
    (ESC + "]0;title" + "\x07after", "after", "after"),  # window title, BEL
    (ESC + "]2;title" + ESC + "\\after", "after", "after"),  # window title, ST
    (ESC + "]8;;https://evil.example/" + ESC + "\\shown" + ESC + "]8;;" + ESC + "\\",
     "shown", "shown"),  # OSC 8: the text stays, the target goes
    (ESC + "]52;c;cm0gLXJmIC8=" + "\x07clip", "clip", "clip"),  # clipboard
    (ESC + "Pdevice" + ESC + "\\x", "x", "x"),  # DCS
    (ESC + "_apc" + ESC + "\\" + ESC + "^pm" + ESC + "\\" + ESC + "Xsos" + ESC + "\\y", "y", "y"),
    (ESC + "(B" + ESC + "=" + ESC + "7" + ESC + "cz", "z", "z"),  # charset, keypad, save, reset
    ("\x9b2J\x9d0;t\x9c8bit", "8bit", "8bit"),  # 8-bit CSI and OSC
    (ESC + "]0;cancelled" + ESC + "[31mby ESC", "by ESC", ESC + "[31mby ESC"),
    ("a\bb", "a\u2408b", None),  # backspace shown, not obeyed
    ("bell\x07 nul\x00 del\x7f vt\x0b ff\x0c", "bell\u2407 nul\u2400 del\u2421 vt\u240b ff\u240c", None),
    ("c1\x85\x8d", "c1\ufffd\ufffd", None),
    ("win\r\nline\r\n", "win\nline\n", None),
    ("10%\r50%\r100%\n", "10%\n50%\n100%\n", None),  # nothing is overwritten
    ("end\r", "end\n", None),
    ("lone" + ESC + "\n", "lone\u241b\n", None),
    ("lone" + ESC, "lone\u241b", None),
    (ESC + ESC + "[31mx", "\u241bx", "\u241b" + ESC + "[31mx"),
    (ESC + "[1\n", "\u241b[1\n", None),  # broken CSI: its ESC is shown
    (ESC + "]0;never ended", "", ""),
]


@pytest.mark.parametrize("keep_sgr", [False, True])
@pytest.mark.parametrize("text,plain,coloured", CASES)
def test_policy(text, plain, coloured, keep_sgr):
    expected = text if plain is None else plain
    if keep_sgr:
        expected = expected if coloured is None else coloured
    assert clean(text, keep_sgr=keep_sgr) == expected


@pytest.mark.parametrize("keep_sgr", [False, True])
@pytest.mark.parametrize("text", [case[0] for case in CASES])
def test_a_sequence_split_anywhere_is_cleaned_the_same(text, keep_sgr):
    whole = clean(text, keep_sgr)
    for i in range(len(text) + 1):
        for j in range(i, len(text) + 1):
            cleaner = Cleaner(keep_sgr)
            parts = [cleaner.feed(text[:i]), cleaner.feed(text[i:j]), cleaner.feed(text[j:])]
            assert "".join(parts) + cleaner.flush() == whole, (i, j)


_ALPHABET = st.sampled_from(
    [ESC, "[", "]", "P", "_", "m", "0", "1", "8", ";", ":", "?", ">", "\x07", "\\", "\r", "\n",
     "\t", "\b", "a", "é", "\x9b", "\x9c", "\x9d", "\x85", "\x00", " ", "(", "J"]
)
_SAFE = re.compile(r"(?:\x1b\[[0-9;:]*m|[^\x00-\x08\x0b-\x1f\x7f-\x9f])*")


@settings(max_examples=400, deadline=None)
@given(st.lists(_ALPHABET, max_size=120).map("".join), st.lists(st.integers(0, 120), max_size=4),
       st.booleans())
def test_nothing_but_text_and_kept_colour_gets_through(text, cuts, keep_sgr):
    cleaner = Cleaner(keep_sgr)
    bounds = [0] + sorted(min(c, len(text)) for c in cuts) + [len(text)]
    streamed = "".join(cleaner.feed(text[a:b]) for a, b in zip(bounds, bounds[1:])) + cleaner.flush()
    assert streamed == clean(text, keep_sgr)
    if keep_sgr:
        assert _SAFE.fullmatch(streamed), repr(streamed)
    else:
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", streamed), repr(streamed)


def test_an_unended_string_holds_no_memory():
    cleaner = Cleaner()
    assert cleaner.feed("before" + ESC + "]52;c;") == "before"
    for _ in range(200):
        assert cleaner.feed("QUJD" * 4096) == ""
        assert len(cleaner._held) <= 1
    assert cleaner.feed("\x07after") == "after"


def test_an_overlong_sequence_start_is_shown_not_held():
    cleaner = Cleaner()
    start = ESC + "[" + "1" * (MAX_HELD + 10)
    assert cleaner.feed(start) == "\u241b[" + "1" * (MAX_HELD + 10)
    assert cleaner._held == ""
    assert cleaner.feed("mrest") == "mrest"
