"""``reinstate store migrate`` (a team's SQLite history onto a shared PostgreSQL server)."""

from __future__ import annotations

import click

from evalsuite import InvalidInput
from gates._cli._common import ctx
from gates._errors import StoreUnavailable


@click.group("store")
def command() -> None:
    """The state store itself: move it to a shared server."""


@command.command("migrate")
@click.option("--from", "source", required=True, metavar="sqlite:PATH",
              help="The SQLite state store to copy (e.g. sqlite:.reinstate/state.db).")
@click.option("--to", "target", metavar="postgresql://…",
              help="The PostgreSQL database to copy it into; ${NAME} is filled from the "
                   "environment. Default: the workspace's [state] url.")
def migrate(source: str, target: str | None) -> int:
    """Copy every mode, verdict, review item and audit entry, hashes and head included, into
    PostgreSQL, in one transaction, then verify the copy: `reinstate audit verify` there
    prints the same head. Refuses a target that holds anything but the start of this same
    history."""
    c = ctx()
    if target is None:
        url = c.workspace().config.state.url
        if url is None:
            raise InvalidInput(None, "--to", "expected a postgresql:// URL (the workspace "
                                             "sets no [state] url)")
        target = url
    if not target.startswith(("postgresql://", "postgres://")):
        raise InvalidInput(None, "--to", f"expected a postgresql:// URL, got "
                                         f"'{target.split('@')[-1][:80]}'")
    try:  # psycopg is imported only by a command that needs it
        from gates._store.migrate import migrate_store, sqlite_source
        from gates._store.postgres import PostgresStore
    except ImportError:
        raise StoreUnavailable("a PostgreSQL state store needs psycopg: install "
                               "reinstate[postgres]") from None
    store = PostgresStore(target, "--to")
    done = migrate_store(sqlite_source(source), store)
    c.out.print(f"migrated {source} to {store.display}: {done.copied_audit} audit entries, "
                f"{done.copied_verdicts} verdicts, {done.modes} modes, {done.copied_reviews} "
                f"review items copied; {done.entries} "
                f"entries verified on the target, head {done.head or 'none'} (as on the "
                f"source)", highlight=False)
    return 0
