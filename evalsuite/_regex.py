"""Regular expressions from user files, matched by RE2 in time linear in the text.

Python's ``re`` backtracks: ``^(a+)+$`` against forty ``a`` and a ``!`` would run for
longer than anyone waits, and the text is what the agent wrote. RE2 (the engine behind
CEL's ``matches``) guarantees linear time and bounded memory; in exchange it has no
backreferences or lookaround, and a pattern that uses them is refused when its file is read.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Protocol

import re2  # type: ignore[import-untyped]


class Match(Protocol):
    """What reinstate reads of a match."""

    def group(self, index: int = 0) -> str:
        """The matched text."""
        ...


class Pattern(Protocol):
    """A compiled RE2 pattern."""

    def search(self, text: str) -> Match | None:
        """The first match anywhere in ``text``."""
        ...


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # RE2 would print its own copy of the error to stderr
    return options


_OPTIONS = _options()


@lru_cache(maxsize=1024)
def user_regex(pattern: str) -> Pattern:
    """Compile a pattern from a user file with RE2.

    Raises:
        ValueError: the pattern is not RE2 syntax (a backreference, lookaround, ``\\Z``)
            or would compile to more than RE2's memory budget.
    """
    try:
        return re2.compile(pattern, _OPTIONS)  # type: ignore[no-any-return]
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "unknown error"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(f"invalid regular expression (RE2 syntax, no backreferences or "
                         f"lookaround): {reason}") from None


def check_regex(pattern: str) -> str:
    """``pattern`` if RE2 compiles it; raises ``ValueError`` saying why not."""
    user_regex(pattern)
    return pattern
