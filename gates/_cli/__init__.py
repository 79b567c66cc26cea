"""The ``reinstate`` command line: one module per command, this one ties them together."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click

from evalsuite import ReinstateError
from gates._cli._common import Context, default_actor
from gates._cli._repeats import refuse_repeats

# Each command is the module of its name, imported only when it runs (or when --help lists
# it): a deploy job's `reinstate check` or a runtime's `reinstate mode` loads neither the
# demo, the report nor the backtest.
COMMANDS = (
    # The response, start to finish.
    "init", "incident", "contain", "mode", "capture", "rca", "verify", "gate", "restore",
    "audit", "demo",
    # The investigation: logs in, the runs they hold, the timeline, the scope of impact, the
    # operating metrics.
    "ingest", "runs", "investigate", "timeline", "metrics",
    # What a rule would have done to the recorded history.
    "backtest",
    # The eval engine on its own: run the suite, compare two runs.
    "eval", "diff",
    # Where CI and the release manager meet the gate.
    "check", "report", "postmortem",
    # Tamper evidence: the regression set only tightens unless a person approves; verdicts
    # are signed with a key that `keygen` makes.
    "ratchet", "keygen",
    # The state store itself: a team's history onto a shared server.
    "store",
    # The human review queue: calls and outputs held for a person, and their decisions.
    "review",
    # The verified controls in production: an MCP server's tools behind the guard.
    "mcp-gateway",
)


class Commands(click.Group):
    """The ``reinstate`` group, whose commands load on first use."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Parse as click does, after refusing a single-valued option given twice anywhere
        on the command line (:func:`refuse_repeats`)."""
        if not ctx.resilient_parsing:  # shell completion parses half-typed lines
            refuse_repeats(self, ctx.parent, ctx.info_name or "reinstate", args)
        return super().parse_args(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command's name, in alphabetical order (as click lists them)."""
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command, its module imported now; None for a name that is not one."""
        if cmd_name not in COMMANDS:
            return None
        module = cmd_name.replace("-", "_")  # mcp-gateway lives in mcp_gateway.py
        command: click.Command = importlib.import_module(f"gates._cli.{module}").command
        return command


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-C", "--workspace", "workspace_dir", type=click.Path(path_type=Path),
              help="Workspace folder (default: found from the working directory upwards).")
@click.option("--actor", default=default_actor, show_default="$REINSTATE_ACTOR or login",
              help="Who is acting, for the incident history and the audit log.")
@click.version_option(package_name="reinstate")
@click.pass_context
def reinstate(click_ctx: click.Context, workspace_dir: Path | None, actor: str) -> None:
    """Contain an agent incident, prove the fix, and restore only what is proven."""
    click_ctx.obj = Context(workspace_dir, actor)


def _error(message: str) -> None:
    """One line on stderr, ``error:`` in red, escaped (a message quoting "[Billing-team
    note: …]" is not markup) and never wrapped: a line a script can grep."""
    from rich.console import Console  # the error path only
    from rich.markup import escape

    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[bold red]error:[/] {escape(message)}", markup=True)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; a user's mistake is one line on stderr and exit 2, never a traceback."""
    try:
        result = reinstate.main(args=argv, prog_name="reinstate", standalone_mode=False)
    except ReinstateError as exc:
        _error(str(exc))
        return exc.exit_code
    except OSError as exc:  # the machine, not the user: a disk full, a file system gone
        where = f" ({exc.filename})" if exc.filename else ""
        _error(f"{exc.strerror or exc}{where}; run the command again once that is fixed")
        return 3
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
