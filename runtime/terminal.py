"""What command output may do to the terminal it is shown on: the control-sequence policy.

Standard library only, Python 3.9 syntax: this module goes into bundles.

Command output is text from programs the runbook started. Passed to a terminal as it is, it
could clear the screen, move the cursor over lines already shown, set the window title, plant an
OSC 8 hyperlink whose target differs from its text, or hide a line behind carriage returns and
backspaces. So command output is shown, never obeyed:

- **Colour** (SGR, ``ESC [ … m``) is kept only for live output on a terminal that shows colour
  (``keep_sgr=True``), without *conceal* (SGR 8, invisible text). Everywhere else — plain
  output to pipes and logs, ``show --output``, reports — it is removed.
- **Every other escape sequence is removed whole**: cursor movement, erase, scrolling, modes and
  queries (CSI, 7- and 8-bit), window titles, hyperlinks, clipboard and colour-palette changes
  (OSC), device-control and other strings (DCS, SOS, PM, APC), and the two-character escapes
  (charsets, keypad modes, reset). The visible text of an OSC 8 link stays; its target goes.
- **Line ends.** ``\\r\\n`` becomes ``\\n``. A lone ``\\r`` becomes ``\\n`` as well: every state
  of a progress line is shown, and nothing can be overwritten.
- **Other control characters are shown, not executed.** ``\\t`` and ``\\n`` stay; C0 controls and
  DEL become their Unicode control pictures (backspace ``␈``, bell ``␇``, NUL ``␀``, and an ESC
  that starts no complete sequence ``␛``); C1 controls (U+0080–U+009F) become U+FFFD.
- Everything else (text in any script, emoji, ``[markup]``) passes unchanged.

Not covered: text made unreadable by colour alone (the same foreground and background colour),
and bidirectional-override characters.

:class:`Cleaner` applies the policy to one stream read in chunks: a sequence (or ``\\r\\n``)
split across two chunks is held back until it is complete, so none leaks; a held-back start is
at most ``MAX_HELD`` characters, and the contents of an OSC/DCS string are dropped as they
arrive, so memory stays bounded whatever the stream holds. Time is linear in the text's
length; text without any control character is returned as it is. :func:`clean` is the one-shot
form for stored text.
"""

from __future__ import annotations

import re

__all__ = ["Cleaner", "clean", "MAX_HELD"]

MAX_HELD = 256  # longest incomplete sequence held back at the end of a chunk

# Anything that needs a look: C0 except \t and \n, DEL, C1.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# What starts a sequence: ESC, or an 8-bit CSI or string introducer.
_INTRODUCER = re.compile("[\x1b\x90\x98\x9b\x9d\x9e\x9f]")

# Sequences, each alternative after its introducer. A string (OSC, DCS, SOS, PM, APC) runs up to
# BEL or ST; any other ESC ends it too, and starts a sequence of its own.
_STRING_BODY = "[^\x07\x1b\x9c]*(?:\x07|\x9c|\x1b\\\\|(?=\x1b)|\\Z)"
_CSI_BODY = "[0-?]*[ -/]*[@-~]"  # parameters, intermediates, final byte
_SGR_BODY = "[0-9;:]{0,64}m"  # parameters only (ESC[>4m sets a keyboard mode)
# Other escapes: intermediates, then a final byte that does not start a CSI or a string.
_ESCAPE_BODY = "[ -/]*[0-OQ-WYZ\\\\`-~]"
_STRING_7BIT, _STRING_8BIT = "[]PX^_]", "[\x90\x98\x9d\x9e\x9f]"

# Complete sequences to remove: all of them, or all but SGR.
_SEQUENCES = re.compile(
    "\x1b(?:%s%s|\\[%s|%s)|%s%s|\x9b%s"
    % (_STRING_7BIT, _STRING_BODY, _CSI_BODY, _ESCAPE_BODY, _STRING_8BIT, _STRING_BODY, _CSI_BODY)
)
_SEQUENCES_BUT_SGR = re.compile(
    "\x1b(?:%s%s|\\[(?!%s)%s|%s)|%s%s|\x9b%s"
    % (_STRING_7BIT, _STRING_BODY, _SGR_BODY, _CSI_BODY, _ESCAPE_BODY, _STRING_8BIT, _STRING_BODY,
       _CSI_BODY)
)
# Where a chunk ends inside a sequence: a string not ended yet, or the start of a CSI or other
# escape.
_OPEN_TAIL = re.compile(
    "(?P<string>(?:\x1b%s|%s)[^\x07\x1b\x9c]*)\\Z|(?:\x1b\\[|\x9b)[0-?]*[ -/]*\\Z|\x1b[ -/]*\\Z"
    % (_STRING_7BIT, _STRING_8BIT)
)
_STRING_END = re.compile("\x07|\x9c|\x1b\\\\|\x1b")  # in a string continued from a chunk before
_LONE_ESC = re.compile("\x1b(?!\\[%s)" % _SGR_BODY)  # not the start of a kept SGR
_CONCEAL = re.compile("\x1b\\[[0-9;:]*8[0-9;:]*m")  # an SGR that may hide its text

# The visible stand-ins: C0 and DEL as control pictures, C1 as U+FFFD; \r is a line end.
_PICTURES = {code: 0x2400 + code for code in range(0x20) if code not in (0x09, 0x0A)}
_PICTURES.update({0x0D: 0x0A, 0x7F: 0x2421})
_PICTURES.update({code: 0xFFFD for code in range(0x80, 0xA0)})
_PICTURES_BUT_ESC = {code: to for code, to in _PICTURES.items() if code != 0x1B}


def _without_conceal(match: re.Match) -> str:
    """An SGR without 8 (conceal); colour arguments such as 38;5;8 are kept."""
    parts = match.group()[2:-1].replace(":", ";").split(";")
    kept = []
    i = 0
    while i < len(parts):
        if parts[i] in ("38", "48", "58") and i + 1 < len(parts):
            width = {"5": 3, "2": 5}.get(parts[i + 1], 2)
            kept.extend(parts[i : i + width])
            i += width
            continue
        if parts[i].lstrip("0") != "8":
            kept.append(parts[i])
        i += 1
    return "\x1b[%sm" % ";".join(kept) if kept else ""


class Cleaner:
    """The policy applied to one stream, chunk by chunk (see the module docstring)."""

    __slots__ = ("keep_sgr", "_held", "_in_string", "_cr")

    def __init__(self, keep_sgr: bool = False) -> None:
        self.keep_sgr = keep_sgr
        self._held = ""  # the start of a sequence cut off at the end of the last chunk
        self._in_string = False  # inside an OSC/DCS/... string: dropping until its end
        self._cr = False  # the last chunk ended with \r: a line end, \r\n if \n comes next

    def feed(self, text: str) -> str:
        """The cleaned text of the next chunk (an incomplete end held back)."""
        if self._held:
            text = self._held + text
            self._held = ""
        if self._in_string:
            text = self._skip_string(text)
        if not self._cr and not _CONTROL.search(text):
            return text
        tail = self._open_tail(text)
        if tail is not None:
            start = tail.start()
            if tail.group("string") is not None:
                self._in_string = True
                text = text[:start]
            elif len(text) - start <= MAX_HELD:
                self._held = text[start:]
                text = text[:start]
        return self._clean(text, False)

    def flush(self) -> str:
        """End of the stream: what was held back, as text (an unfinished string is dropped)."""
        text = self._held
        self._held = ""
        self._in_string = False
        return self._clean(text, True)

    @staticmethod
    def _open_tail(text: str) -> re.Match | None:
        """Where ``text`` ends inside a sequence, if it does.

        Such a tail starts at the last ESC or at an 8-bit introducer after it (an ESC ends a
        string): the search starts there.
        """
        if not _INTRODUCER.search(text):
            return None
        return _OPEN_TAIL.search(text, max(text.rfind("\x1b"), 0))

    def _skip_string(self, text: str) -> str:
        """Drop the rest of a string begun in an earlier chunk; returns what follows it."""
        match = _STRING_END.search(text)
        if match is None:
            return ""
        self._in_string = False
        if match.group() != "\x1b":  # BEL, 8-bit ST or ESC \: the string is over
            return text[match.end() :]
        return text[match.start() :]  # any other ESC ends it too, and starts a sequence

    def _clean(self, text: str, last: bool) -> str:
        if _INTRODUCER.search(text):
            text = (_SEQUENCES_BUT_SGR if self.keep_sgr else _SEQUENCES).sub("", text)
        if self._cr and (text or last):
            self._cr = False
            if not text.startswith("\n"):  # a lone \r (else \r\n): a line end
                text = "\n" + text
        if not last and text.endswith("\r"):
            self._cr = True
            text = text[:-1]
        if "\r" in text:
            text = text.replace("\r\n", "\n")
        if not _CONTROL.search(text):
            return text
        if self.keep_sgr and "\x1b" in text:
            text = _LONE_ESC.sub("\u241b", text)
            if "8" in text:
                text = _CONCEAL.sub(_without_conceal, text)
            return text.translate(_PICTURES_BUT_ESC)
        return text.translate(_PICTURES)


def clean(text: str, keep_sgr: bool = False) -> str:
    """``text`` as it may be shown (see the module docstring); for stored, complete text."""
    if not _CONTROL.search(text):
        return text
    cleaner = Cleaner(keep_sgr)
    return cleaner.feed(text) + cleaner.flush()
