"""``python -m gates`` runs the ``reinstate`` command line."""

from gates.cli import main

main()
