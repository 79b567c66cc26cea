"""Python predicates by import path: the escape hatch when a rule needs real code.

A predicate is named ``module.sub:function`` and loaded from a file inside the workspace
(``module/sub.py``), only when the workspace configuration allows the module: a data
file alone can never make reinstate run code.
"""

from __future__ import annotations

import hashlib
import re
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from evalsuite._expressions import ExpressionFailed
from evalsuite._files import read_regular

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


def load_predicate(path: str, root: Path, allowed: Sequence[str]) -> Predicate:
    """Load ``module:function`` from ``root``; refuse modules the configuration does not allow.

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
    module = _load(file)
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ValueError(f"module '{module_name}' has no function '{function_name}'")
    return function  # type: ignore[no-any-return]


_MODULES: dict[tuple[Path, str], Any] = {}


def _load(file: Path) -> Any:
    source = read_regular(file)
    digest = hashlib.sha256(source).hexdigest()
    key = (file.resolve(), digest)
    if key not in _MODULES:
        # A private name per file and content, so two workspaces never share a module; run
        # from the very bytes digested (never a __pycache__ file, which no fingerprint
        # covers, nor a file changed since).
        module = types.ModuleType(f"_reinstate_predicate_{digest[:16]}")
        module.__file__ = str(file)
        try:
            exec(compile(source, str(file), "exec"), module.__dict__)
        except Exception as exc:
            raise ValueError(f"cannot import {file.name}: {exc!r}") from None
        _MODULES[key] = module
    return _MODULES[key]


def call_predicate(function: Predicate | None, path: str, data: dict[str, Any]) -> bool:
    """Call a bound predicate; it must answer a bool. Any failure is ExpressionFailed."""
    if function is None:
        raise ExpressionFailed(f"predicate {path} was not loaded")
    try:
        answer = function(data)
    except Exception as exc:
        raise ExpressionFailed(f"{path} raised {exc!r}") from None
    if not isinstance(answer, bool):
        raise ExpressionFailed(f"{path} returned {answer!r}, expected True or False")
    return answer
