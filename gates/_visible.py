"""Text from outside reinstate (an agent's answer, a log line, a summary a person typed) as
characters a terminal shows rather than obeys."""

from __future__ import annotations

import unicodedata

# Control characters (ESC starts a sequence that clears the screen or hides a link), and the
# characters that show nothing or reorder what follows: a bidi override, a zero-width space,
# a Unicode tag, a line or paragraph separator.
_HIDDEN = {"Cc", "Cf", "Zl", "Zp"}


def visible(text: str, *, keep: str = "") -> str:
    """``text`` with each hidden character but those in ``keep`` written out as its escape
    (``\\x1b``, ``\\u202e``)."""
    if text.isprintable():  # the common case, checked in C: nothing hidden
        return text
    return "".join(_written_out(char) if char not in keep else char for char in text)


def _written_out(char: str) -> str:
    if unicodedata.category(char) not in _HIDDEN:
        return char
    return repr(char)[1:-1]  # Python's escape: ``\\x1b``, ``\\n``, ``\\u202e``


def percent(ratio: float, digits: int = 0) -> str:
    """``ratio`` as a percentage with ``digits`` decimals, or as many more as it takes for a
    ratio short of 1 not to read 100% and one above 0 not to read 0%: 2,499 of 2,500 runs
    is "99.96%", never "100.0%" (which says that none failed)."""
    for shown in range(digits, 7):
        text = f"{ratio:.{shown}%}"
        figure = float(text[:-1])
        if not ((ratio < 1 and figure >= 100) or (ratio > 0 and figure <= 0)):
            return text
    return ">99.9999%" if ratio > 0.5 else "<0.0001%"
