"""Whether a stored JSON text reads alike in every JSON reader the project uses.

The whole verdict model reads a stored verdict with pydantic's parser (jiter); the light
reads use Python's :mod:`json` (the light ``check``) and msgspec (the ratchet's terms).
On valid, ordinary JSON they agree (duplicate keys included: each takes the last), but
not at the edges: a lone UTF-16 surrogate escape (``"\\ud800"``) is taken by :mod:`json`
and refused by jiter, and nesting deeper than jiter's limit (200) is taken by both other
readers. A light read that takes such a text would answer where the full read raises, so
it is not sure of it. The stores never write either (pydantic writes UTF-8 unescaped, and
a verdict nests a dozen levels), so only a text written behind the store is turned away.
"""

from __future__ import annotations

import re

# Rounds of removing the innermost brackets: each removes a level of [] and then one of {},
# so at most 128 levels pass, below jiter's limit and far above a verdict's own depth.
MAX_DEPTH = 64
# A \u escape of a surrogate (paired or not: pydantic never escapes one, so either is odd).
_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")
# A run of anything but brackets: JSON strings (escapes included, unrolled and possessive:
# one scan, no backtracking) and what lies between them. One match per run keeps the pieces
# a substitution holds to about one per bracket: a match per string held some ten pieces
# per case row of a stored verdict (10 MiB at 10,000 rows, the gate's peak). A quote that
# opens no closed string is kept with the rest of the text (group 1), which is then not
# plain: matched to the end at once, not tried again at every later quote (that was
# quadratic in the text).
_NOT_BRACKET = re.compile(r'(?:"[^"\\]*+(?:\\.[^"\\]*+)*+"|[^"\[\]{}]++)++|("[\s\S]*+)')


def plain_json(text: str) -> bool:
    """Whether ``text`` has no surrogate escape and nests shallowly enough (outside its
    strings; see :data:`MAX_DEPTH`) that every reader that parses it reads the same values."""
    if _SURROGATE.search(text):
        return False
    brackets = _NOT_BRACKET.sub(r"\1", text)
    for _ in range(MAX_DEPTH):  # each round removes the innermost levels
        shorter = brackets.replace("[]", "").replace("{}", "")
        if shorter == brackets:
            break
        brackets = shorter
    return not brackets
