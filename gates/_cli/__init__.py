"""The ``reinstate`` command line: one module per command, this one ties them together."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console

from evalsuite import ReinstateError
from gates._cli import audit, capture, contain, demo, gate, incident, init, mode, restore
from gates._cli._common import Context, default_actor


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-C", "--workspace", "workspace_dir", type=click.Path(path_type=Path),
              help="Workspace folder (default: found from the working directory upwards).")
@click.option("--actor", default=default_actor, show_default="$REINSTATE_ACTOR or login",
              help="Who is acting, for the incident history and the audit log.")
@click.version_option(package_name="reinstate")
@click.pass_context
def reinstate(click_ctx: click.Context, workspace_dir: Path | None, actor: str) -> None:
    """Contain an agent incident, prove the fix, and restore only what is proven."""
    click_ctx.obj = Context(workspace_dir, actor, Console(), Console(stderr=True))


for module in (init, incident, contain, mode, capture, gate, restore, audit, demo):
    reinstate.add_command(module.command)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; a user's mistake is one line on stderr and exit 2, never a traceback."""
    try:
        result = reinstate.main(args=argv, prog_name="reinstate", standalone_mode=False)
    except ReinstateError as exc:
        Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {exc}", markup=True)
        return exc.exit_code
    except click.exceptions.Abort:
        return 130
    except KeyboardInterrupt:
        return 130
    except click.ClickException as exc:
        exc.show()
        return 2 if exc.exit_code == 1 else exc.exit_code
    return result if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
