"""``reinstate gate AGENT``."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.markup import escape

from evalsuite import ReinstateError, write_atomic
from gates._cli._common import ctx, engine_options
from gates._gate.pipeline import GateRun, recorded_run, stored_by_this_run
from gates._gate.ray_engine import check_engine
from gates._reports.terminal import case_table, verdict_table, verification_table
from gates._response.notify import notify_failed_gate
from gates._response.restore import restore_blockers
from gates._store.access import open_store
from gates._store.attestation import SIGNING_KEY_ENV, attestation_path, take_signing_key
from gates._store.audit import latest_for_decision, one_decision

if TYPE_CHECKING:
    from gates._config import Workspace
    from gates._verdict.stored import DecidedVerdict
    from gates._verdict.verdict import Verdict


def _restore_needs(workspace: Workspace, verdict: Verdict,
                   ours: str) -> list[str] | None:
    """``restore_needs`` of the verdict this run computed, which restore would read back.

    When the store's latest verdict is exactly this one (``ours``: its stored text's
    digest, as its audit entry recorded it), restore's
    conditions read it from memory: at thousands of cases, reading the stored text into
    another copy beside this one was the gate's peak. Any other latest verdict is read
    from the store, as restore reads it.
    """
    if not verdict:
        return None
    try:
        store = open_store(workspace)

        def latest(agent: str) -> DecidedVerdict | None:
            if agent == verdict.agent and store.latest_verdict_sha256(agent) == ours:
                return verdict
            return latest_for_decision(store, agent)
        return restore_blockers(workspace, verdict.agent, store, latest=cache(latest))
    except ReinstateError as exc:  # fail closed: a pass restore cannot confirm promises nothing
        return [f"its conditions could not be read: {exc}"]


@click.command("gate")
@click.argument("agent")
@click.option("--json", "json_file", type=click.Path(path_type=Path),
              help="Write the verdict as JSON here.")
@click.option("--junit", "junit_file", type=click.Path(path_type=Path),
              help="Write JUnit XML here (a test case per check and per eval case).")
@click.option("--markdown", "markdown_file", type=click.Path(path_type=Path),
              help="Write the verdict report as Markdown here.")
@click.option("--trials", type=click.IntRange(1, 1000),
              help="Trials per case when the case sets none (default: reinstate.toml).")
@click.option("--against", metavar="REF",
              help="Also hold the regression set, incidents and baselines to those at this "
                   "git ref (origin/main, a merge base): what CI needs with a fresh store.")
@click.option("--new-store", is_flag=True,
              help="Start a new state store even though the workspace shows it had one (a CI "
                   "job that starts from an empty store by design).")
@click.option("--attestation", "attestation_file", type=click.Path(path_type=Path),
              help="Also write the signed verdict (an in-toto statement in a DSSE envelope) "
                   "here, for the deploy job's `check --verdict`; needs "
                   "$REINSTATE_SIGNING_KEY.")
@click.option("--all-cases", "every_case", is_flag=True,
              help="List every eval case, passing ones too (by default only the cases that "
                   "did not pass are listed).")
@engine_options
def command(agent: str, json_file: Path | None, junit_file: Path | None,
            markdown_file: Path | None, trials: int | None, against: str | None,
            new_store: bool, attestation_file: Path | None, every_case: bool, engine: str,
            workers: int | None) -> int:
    """Run every check for AGENT and store the verdict.

    Exit 0 pass, 1 fail, 2 invalid input, 3 error, 4 inconclusive. When
    GITHUB_STEP_SUMMARY is set, the Markdown report is appended to that file. With
    REINSTATE_SIGNING_KEY set, the verdict is signed; the key leaves the gate's
    environment before anything else happens.
    """
    signer = take_signing_key()  # first of all: nothing started later may inherit it
    engine_name = check_engine(engine, workers)
    c = ctx()
    workspace = c.workspace()
    # One decision: the rows before the log's checkpoint are passed over once, for the gate
    # and for restore's conditions its closing line prints (the entries after the
    # checkpoint, this gate's verdict among them, are still read afresh).
    with one_decision():
        verdict, entry = recorded_run(GateRun(
            workspace=workspace, agent=agent, actor=c.actor, trials=trials, against=against,
            new_store=new_store, signer=signer, attestation=attestation_file,
            engine=engine_name, workers=workers))
        # A pass restores only when restore's own conditions hold too (a review scheduled,
        # a signature it accepts): the closing line says what it still needs, from the
        # same check.
        needs = _restore_needs(workspace, verdict, str(entry.detail.get("sha256")))
    case_table(c.out, verdict, every=every_case)
    verdict_table(c.out, verdict, restore_needs=needs)
    verification_table(c.out, verdict.verifications)
    if signer is not None:
        c.out.print(f"signed: {workspace.relative(attestation_path(workspace, verdict))}"
                    + (f" and {attestation_file}" if attestation_file else ""),
                    highlight=False, markup=False)
    else:
        refused = ("; [signing] public_key is set, so check and restore will refuse this "
                   "verdict" if workspace.config.signing.public_key else "")
        c.out.print(f"unsigned: ${SIGNING_KEY_ENV} is not set{refused}", highlight=False,
                    markup=False)
    if json_file is not None:
        write_atomic(json_file, verdict.model_dump_json(indent=2) + "\n")
    if junit_file is not None:
        from gates._reports.junit import junit_xml  # only when asked: XML parsers stay out

        write_atomic(junit_file, junit_xml(verdict))
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if markdown_file is not None or summary:
        # Only when asked: the report's Jinja2 templates stay out of a plain gate's memory.
        from gates._reports.verdict_report import report_markdown, verdict_report

        markdown = report_markdown(verdict_report(workspace, agent, verdict=verdict))
        if markdown_file is not None:
            write_atomic(markdown_file, markdown)
        if summary:
            # GitHub gives each step this file to append to; earlier steps' text stays.
            with Path(summary).open("a", encoding="utf-8") as handle:
                handle.write(markdown + "\n")
    # A contained agent's audiences hear of a gate that keeps it contained.
    for warning in notify_failed_gate(workspace, agent, verdict, actor=c.actor).warnings:
        c.err.print(f"[yellow]warning:[/] {escape(warning)}")
    if verdict and not stored_by_this_run(workspace, verdict, entry):
        c.err.print(f"[bold red]error:[/] the state store does not hold this run's passing "
                    f"verdict for {agent}: not cleared", highlight=False)
        return 3
    return verdict.exit_code
