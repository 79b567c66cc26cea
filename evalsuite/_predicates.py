"""Python predicates by import path: the escape hatch when a rule needs real code.

A predicate is named ``module.sub:function`` and loaded from a file inside the workspace
(``module/sub.py``), only when the workspace configuration allows the module: a data
file alone can never make reinstate run code. What a predicate module may import of the
workspace (only other listed modules): :mod:`evalsuite._predicate_imports`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from evalsuite._expressions import ExpressionFailed
from evalsuite._predicate_imports import interrupted, load_module

PREDICATE_PATH = r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$"
Predicate = Callable[[dict[str, Any]], Any]


def check_predicate_path(value: str) -> str:
    """Raise ``ValueError`` unless ``value`` reads ``module.sub:function``."""
    if not re.fullmatch(PREDICATE_PATH, value):
        raise ValueError(f"expected a predicate as module:function, got {value!r}")
    return value


def predicate_module_file(predicate: str) -> str:
    """The file ``module.sub:function`` is loaded from, from the workspace root, as a
    POSIX path (``module/sub.py``): what :func:`load_predicate` runs, and what the
    regression ratchet digests as the code of an expectation that calls it."""
    return "/".join(predicate.split(":")[0].split(".")) + ".py"


def load_predicate(path: str, root: Path, allowed: Sequence[str],
                   sources: Mapping[Path, bytes] | None = None) -> Predicate:
    """Load ``module:function`` from ``root``; refuse modules the configuration does not allow.

    ``sources``: the listed modules' files as the caller read (and digested) them, by path;
    the module and all it imports then run from those bytes only (see ``load_module``).

    Raises ``ValueError`` with what is wrong, for the caller to place in its file.
    """
    module_name, function_name = path.split(":")
    if not any(module_name == a or module_name.startswith(a + ".") for a in allowed):
        listed = ", ".join(allowed) or "none"
        raise ValueError(f"module '{module_name}' is not in predicate_modules of "
                         f"reinstate.toml (allowed: {listed})")
    file = root / predicate_module_file(path)
    if not file.resolve().is_relative_to(root.resolve()) or not file.is_file():
        raise ValueError(f"no module '{module_name}' in the workspace (looked for {file.name})")
    module = load_module(module_name, root, allowed, sources)
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ValueError(f"module '{module_name}' has no function '{function_name}'")
    return function  # type: ignore[no-any-return]


def call_predicate(function: Predicate | None, path: str, data: dict[str, Any]) -> bool:
    """Call a bound predicate; it must answer a bool. Any failure is ExpressionFailed."""
    if function is None:
        raise ExpressionFailed(f"predicate {path} was not loaded")
    try:
        answer = function(data)
    except BaseException as exc:  # SystemExit too: never the gate's exit, nor a dead thread
        if interrupted(exc):
            raise
        raise ExpressionFailed(f"{path} raised {exc!r}") from None
    if not isinstance(answer, bool):
        raise ExpressionFailed(f"{path} returned {answer!r}, expected True or False")
    return answer
