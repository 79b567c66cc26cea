"""Entry point of the ``reinstate`` console script."""

from __future__ import annotations

import sys


def main() -> None:
    """Run ``reinstate`` with the process arguments and exit with its code."""
    if sys.argv[1:] == ["--version"]:
        # Asked by scripts and deploy jobs to see what is installed: answered from the
        # package's metadata without importing the command line (click's own --version,
        # which `reinstate -C dir --version` still reaches, prints the same line).
        from importlib.metadata import version

        print(f"reinstate, version {version('reinstate')}")
        sys.exit(0)
    from gates._cli import main as cli_main

    sys.exit(cli_main())
