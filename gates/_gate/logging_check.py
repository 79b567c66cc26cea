"""The gate's logging check: the agent's recent logs answer the four questions for every run.

Recent means the newest ``logging.recent_runs`` runs of the agent in the workspace's logs
folder; once an open incident's investigation has found logging gaps, only runs logged
after that investigation count, so the check fails until new logs show the fix. It never
passes on no evidence: no logs is inconclusive, or a failure when a gap is on record; a
log that cannot be read is an error.
"""

from __future__ import annotations

import heapq
from datetime import UTC, datetime
from pathlib import Path

from evalsuite import ReinstateError, located_runs, read_logs
from gates._gate.checks import Evidence
from gates._gate.inputs import GateInputs
from gates._verdict.check_results import LoggingData, LoggingResult
from regressions import logging_gaps

LOG_SUFFIXES = (".jsonl", ".ndjson", ".json")
_OLDEST = datetime.min.replace(tzinfo=UTC)


def log_paths(folder: Path) -> list[Path]:
    """The log files under the logs folder."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in LOG_SUFFIXES
                  and not p.name.startswith("."))


def logging(inputs: GateInputs, evidence: Evidence) -> LoggingResult:
    """The agent's recent runs answer: goal, context, tools (with results), why done."""
    agent = inputs.agent.name
    workspace = inputs.workspace
    folder = workspace.config.paths.logs
    flagged = [i for i in inputs.incidents if i.phase != "closed" and i.investigation
               is not None and i.investigation.logging_gaps]
    since = max((i.investigation.investigated_at for i in flagged if i.investigation),
                default=None)
    files = log_paths(workspace.logs_dir)
    newest: list[tuple[datetime, int, str]] = []
    order = 0
    limit = workspace.config.logging.recent_runs
    try:
        for part in read_logs(files, agent=agent):
            if part.header is None or part.header.agent != agent:
                continue
            at = part.first_time()
            if since is not None and (at is None or at <= since):
                continue
            order += 1
            entry = (at or _OLDEST, order, part.run_id)
            if len(newest) < limit:
                heapq.heappush(newest, entry)
            else:
                heapq.heappushpop(newest, entry)
        chosen = {run_id for _, _, run_id in newest}
        runs = located_runs((p for p in read_logs(files, agent=agent) if p.run_id in chosen),
                            workspace.relative)
    except ReinstateError as exc:
        return LoggingResult(outcome="error", summary=f"could not read the logs: {exc}",
                             findings=[str(exc)])
    names = ", ".join(i.id for i in flagged)
    if not runs:
        if since is not None:
            return LoggingResult(
                outcome="fail",
                summary=f"no run of {agent} logged since {names} found logging gaps",
                findings=[f"{names}: the investigation found runs whose logs cannot answer what "
                          f"happened; log new runs under {folder}/ to show the fix"],
                data=LoggingData(since=since, runs_checked=0))
        return LoggingResult(
            outcome="inconclusive",
            summary=f"no run logs of {agent} under {folder}/",
            findings=[f"put {agent}'s run logs under {folder}/ (native JSONL, OTLP/JSON, OpenAI "
                      f"or Anthropic conversations) so the gate can check they are complete"],
            data=LoggingData(runs_checked=0))
    gaps = [g for run, places in runs
            for g in logging_gaps(run, places[0] if places else folder)]
    findings = [f"{g.run_id}: {g.question}: {g.detail} ({g.source})" for g in gaps]
    scope = f"{len(runs)} recent run(s)" + (f" logged since {names}'s investigation"
                                             if since is not None else "")
    bad = len({g.run_id for g in gaps})
    return LoggingResult(
        outcome="fail" if gaps else "pass",
        summary=(f"{bad} of {scope} cannot answer the four questions" if gaps
                 else f"{scope} answer the four questions"),
        findings=findings,
        data=LoggingData(runs_checked=len(runs), runs_with_gaps=bad, since=since))
