"""``reinstate eval AGENT``: the eval suite and regression set alone, no verdict stored."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import click
from rich.table import Table

from evalsuite import CaseResult
from gates._cli._common import ctx, engine_options
from gates._cli._progress import progress
from gates._gate.checks import case_finding, stopped_by_control, usage_totals
from gates._gate.evals import run_evals
from gates._gate.inputs import load_inputs
from gates._gate.ray_engine import check_engine
from gates._gate.selected_inputs import load_selected
from gates._reports.terminal import outcome
from gates._store.attestation import drop_signing_key, keep_key_from_agent
from gates._verdict.verdict import EXIT_CODES, combine
from gates._visible import percent


@click.command("eval")
@click.argument("agent")
@click.option("--cases", "patterns", multiple=True,
              help="Only cases whose id matches this glob, e.g. 'refund-*' or 'INC-3-*'; "
                   "repeatable (a case matching any is run).")
@click.option("--trials", type=click.IntRange(1, 1000),
              help="Trials per case when the case sets none (default: reinstate.toml).")
@click.option("--concurrency", type=click.IntRange(1, 1024),
              help="Trials in flight at once (default: reinstate.toml).")
@click.option("--adapter", "adapter_name",
              help="Reach the agent through a named adapter of agent.yaml instead.")
@click.option("--all-cases", "every_case", is_flag=True,
              help="List every case, passing ones too (by default only the cases that did "
                   "not pass are listed, under a summary).")
@engine_options
def command(agent: str, patterns: tuple[str, ...], trials: int | None, concurrency: int | None,
            adapter_name: str | None, every_case: bool, engine: str,
            workers: int | None) -> int:
    """Run AGENT's eval and regression cases and report their pass rates.

    Prints a summary and a row per case that did not pass (--all-cases: a row per
    case). Every trial is written to a run file under .reinstate/runs/ (compare two with
    `reinstate diff`). Exit 0 when every case passed, 1 on a failure, 3 on an error,
    4 when a case is inconclusive.
    """
    # First of all: no agent, Ray process or workspace module may find the signing key.
    key_was_set = drop_signing_key()
    engine_name = check_engine(engine, workers)
    c = ctx()
    workspace = c.workspace()
    if patterns:  # only the chosen cases' files are parsed (the gate reads every one)
        selected = load_selected(workspace, agent, patterns)
        inputs, chosen = selected.inputs, selected.chosen
    else:
        inputs = load_inputs(workspace, agent)
        chosen = inputs.cases
    if key_was_set:  # the process that started this one still holds it: before any agent runs
        inputs = replace(inputs, workspace=keep_key_from_agent(
            inputs.workspace, inputs.agent, inputs.agent_file, adapter_name, signing=False))
    with progress(c.err, f"eval {agent}") as callback:
        evidence = run_evals(inputs, trials, cases=chosen, adapter=adapter_name,
                             concurrency=concurrency, progress=callback,
                             engine_name=engine_name, workers=workers)
    results = evidence.results
    c.out.print(f"eval {agent} (agent {inputs.agent.version}): {case_counts(results)}",
                highlight=False)
    # A row per case costs more than running an instant agent on it: at thousands of
    # cases the passing ones are a count, and the run file holds every trial.
    listed = results if every_case else [r for r in results if r.outcome != "pass"]
    if listed:
        c.out.print(_case_table(listed))
    hidden = len(results) - len(listed)
    if hidden:
        c.out.print(f"{hidden:,} passing case{'s' if hidden != 1 else ''} not listed "
                    f"(--all-cases lists them; the run file holds every trial)",
                    highlight=False)
    for result in evidence.results:
        finding = case_finding(result)
        if finding:
            c.out.print(f"• {finding}", highlight=False, markup=False)
    usage = usage_totals(evidence.results)
    if usage.input_tokens is not None:
        cost = f", ${usage.cost_usd:.4f}" if usage.cost_usd is not None else ""
        c.out.print(f"tokens: {usage.input_tokens:,} in, {usage.output_tokens or 0:,} out"
                    f"{cost}")
    if evidence.run_file is not None:
        c.out.print(f"run file: {workspace.relative(evidence.run_file)}")
    overall = combine(r.outcome for r in evidence.results)
    c.out.print(f"eval: {outcome(overall)}")
    return EXIT_CODES[overall]


def case_counts(results: Sequence[CaseResult]) -> str:
    """``20 cases: 18 pass, 1 fail, 1 inconclusive (2 flaky)``: outcomes with cases only."""
    counts = Counter(r.outcome for r in results)
    parts = [f"{counts[o]:,} {o}" for o in ("pass", "fail", "error", "inconclusive")
             if counts[o]]
    flaky = sum(1 for r in results if r.flaky)
    return (f"{len(results):,} case{'s' if len(results) != 1 else ''}: "
            f"{', '.join(parts) or 'none ran'}" + (f" ({flaky:,} flaky)" if flaky else ""))


def _case_table(results: Sequence[CaseResult]) -> Table:
    """A row per case: outcome, trials passed, the pass rate's interval and notes."""
    table = Table()
    for column in ("case", "outcome", "passed", "interval", "note"):
        table.add_column(column, overflow="fold")
    for result in results:
        stats = result.statistics
        notes = [n for n in ("flaky" if result.flaky else "",
                             f"{stats.trials_needed} trials would decide"
                             if result.outcome == "inconclusive" and stats.trials_needed else "",
                             "pass^k" if result.every_trial else "",
                             "stopped by a control" if stopped_by_control(result) else "")
                 if n]
        table.add_row(result.case_id, outcome(result.outcome),
                      f"{stats.passed}/{len(result.trials)}",
                      f"{percent(stats.low)}–{percent(stats.high)}", ", ".join(notes))
    return table
