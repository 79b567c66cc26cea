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


# What `reinstate --help` lists beside each command: the first paragraph of its docstring,
# kept here so that the list loads none of the command modules (they bring pydantic, the
# controls, the reports); click shortens it exactly as it shortens the real docstring.
# tests/gates/test_startup_imports.py fails when a line here and the docstring differ.
SUMMARIES = {
    "init": "Lay out a reinstate workspace in DIRECTORY (default: here), or add --agent to it.",
    "incident": "Open incidents and record their root cause and resolution.",
    "contain": "Contain the incident's agent at once and record it; the clock is shown against "
               "target.",
    "mode": "Print the mode AGENT must operate in: full, review or suspended.",
    "capture": "Capture the incident's harmful run as a regression case.",
    "rca": "Walk the four control layers of INC: what the replay shows, then record each "
           "finding.",
    "verify": "Prove each control change of INC: the harm got through the baseline, today it "
              "is stopped.",
    "gate": "Run every check for AGENT and store the verdict.",
    "restore": "Return AGENT to full operation, only on a current passing verdict.",
    "audit": "Print the audit log and check its hash chain (exit 1 if it was tampered with).",
    "demo": "Walk the whole response on the bundled refund agent, step by step.",
    "ingest": "Read run logs (native JSONL, OTLP/JSON GenAI or OpenInference traces, OpenAI "
              "or Anthropic conversations, text actions, or a reader plugin's format), "
              "validate every record and say what each file holds and what was not "
              "understood.",
    "runs": "The runs recorded in logs of any format ingest reads, with the step numbers "
            "`capture --step` and `investigate` use.",
    "investigate": "Attach the incident's runs from the logs, write its timeline, measure "
                   "the scope of impact and find the logging gaps.",
    "timeline": "Show the incident's timeline, scope of impact and logging gaps.",
    "metrics": "Task success, human correction, iterations, cost, escalation and blocked "
               "calls, from the runs in the logs; then human correction and blocked calls "
               "from the review queue and the escalation rate from the guard's decisions in "
               "the logs. \"unknown\" where there is nothing to count.",
    "backtest": "What the controls would have done to every recorded call and output of "
                "AGENT.",
    "eval": "Run AGENT's eval and regression cases and report their pass rates.",
    "diff": "Show, case by case, how behaviour changed between two run files.",
    "check": "Exit 0 only if AGENT is cleared for full operation at today's fingerprint.",
    "report": "Report whether AGENT may go back to full operation, and why, for a release "
              "manager.",
    "postmortem": "Write up INCIDENT_ID for the post-incident review and for compliance.",
    "ratchet": "See and approve removals and loosenings of the regression set and the "
               "controls.",
    "keygen": "Make an Ed25519 key pair for signed verdicts.",
    "store": "The state store itself: move it to a shared server.",
    "review": "The human review queue: calls and outputs held for a person by the guard, the "
              "MCP gateway or the review mode, and the decisions on them (each an audit "
              "entry).",
    "mcp-gateway": "Serve AGENT's MCP tools through its controls: start UPSTREAM_COMMAND (an "
                   "MCP server on stdio) and answer as an MCP server in front of it.",
}


def module_of(name: str) -> str:
    """The module that defines command ``name`` (``mcp-gateway`` is in ``mcp_gateway.py``)."""
    return f"gates._cli.{name.replace('-', '_')}"


def summary(command: click.Command) -> str:
    """The first paragraph of ``command``'s help on one line: what :data:`SUMMARIES` holds."""
    return " ".join((command.help or "").partition("\n\n")[0].split())


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

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List the commands as click does, each with its line from :data:`SUMMARIES`, so
        ``--help`` imports no command module (one missing from the table is imported)."""
        listed = click.Group()
        for name in self.list_commands(ctx):
            command = (click.Command(name, help=SUMMARIES[name]) if name in SUMMARIES
                       else self.get_command(ctx, name))
            if command is not None:
                listed.add_command(command, name)
        listed.format_commands(ctx, formatter)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command, its module imported now; None for a name that is not one."""
        if cmd_name not in COMMANDS:
            return None
        command: click.Command = importlib.import_module(module_of(cmd_name)).command
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
    from rich.markup import escape  # the error path only

    from gates._cli._common import console

    console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", markup=True,
                               highlight=False, soft_wrap=True)


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
