"""Entry point of the ``reinstate`` console script."""

from __future__ import annotations

import sys

from gates._cli import main as _main


def main() -> None:
    """Run ``reinstate`` with the process arguments and exit with its code."""
    sys.exit(_main())
