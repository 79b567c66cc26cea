"""The CEL package (``common-expression-language``), imported without its command line.

``cel/__init__.py`` imports ``cel.cli`` eagerly, and with it typer, prompt_toolkit, rich
and pygments: about six times the cost of the compiler itself, paid by every command that
reads a rule (``reinstate check`` loads the controls). reinstate never uses that command
line, so while the package initialises ``cel.cli`` is a placeholder; afterwards the
placeholder is gone, and ``import cel.cli`` (``python -m cel``) loads the real one.
"""

from __future__ import annotations

import sys
import threading
import types

_LOCK = threading.Lock()


def cel_package() -> types.ModuleType:
    """The ``cel`` package, imported now if it was not already."""
    loaded = sys.modules.get("cel")
    if loaded is not None:
        return loaded
    with _LOCK:
        if "cel" in sys.modules:
            return sys.modules["cel"]
        placeholder = types.ModuleType("cel.cli", "Not loaded: reinstate does not use it.")
        sys.modules["cel.cli"] = placeholder
        try:
            import cel
        finally:
            if sys.modules.get("cel.cli") is placeholder:
                del sys.modules["cel.cli"]
        if getattr(cel, "cli", None) is placeholder:
            del cel.cli
        return cel
