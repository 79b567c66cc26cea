"""The gate's logging check: the agent's recent logs answer the four questions for every run.

Recent means the newest ``logging.recent_runs`` runs of the agent in the workspace's logs
folder; once an open incident's investigation has found logging gaps, only runs logged
after that investigation count, so the check fails until new logs show the fix. It never
passes on no evidence: no logs is inconclusive, or a failure when a gap is on record; a
log that cannot be read is an error.

A run whose log gives no time (no ``started_at``, no step ``at``) has an unknown age: it
cannot be assumed old, so it is never left out for being older than the window or than
the investigation. Every such run is checked as well as the newest timed ones, and a gap
in it fails the check; it is not evidence of a run logged after an investigation, since
it cannot show when it was logged. They are judged one run at a time as their last part
is read, keeping per run an id, a count of parts and the gaps found, never the runs.
"""

from __future__ import annotations

import heapq
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from evalsuite import ReinstateError, Run, RunPart, as_utc, located_runs, read_logs
from gates._gate.checks import Evidence
from gates._gate.inputs import GateInputs
from gates._verdict.check_results import LoggingData, LoggingResult
from regressions import LoggingGap, logging_gaps

# A log's name as written and as rotated (logrotate numbers a file, or dates it with
# dateext), compressed or not (gzip, zstd): x.jsonl, x.jsonl.1, x.jsonl-20261201,
# x.jsonl.2.gz, x.jsonl.zst.
_LOG_NAME = re.compile(
    r"[^.].*\.(?:jsonl|ndjson|json)(?:\.\d+|-\d{8}(?:\d{2})?)?(?:\.gz|\.zst)?", re.IGNORECASE)


def log_paths(folder: Path) -> list[Path]:
    """The log files under the logs folder, rotated ones too (numbered, dated, compressed)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and _LOG_NAME.fullmatch(p.name))


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
    untimed: set[str] = set()
    order = 0
    limit = workspace.config.logging.recent_runs
    try:
        # Only each part's agent and start are read: an OTLP trace's header is not completed.
        for part in read_logs(files, agent=agent, defer_steps=True, headers=False):
            if part.header is None or part.header.agent != agent:
                continue
            at = part.first_time()
            if at is None:
                untimed.add(part.run_id)  # its age is unknown: never assumed old
                continue
            if since is not None and at <= since:
                continue
            order += 1
            entry = (at, order, part.run_id)
            if len(newest) < limit:
                heapq.heappush(newest, entry)
            else:
                heapq.heappushpop(newest, entry)
        chosen = {run_id for _, _, run_id in newest}
        runs = located_runs((p for p in read_logs(files, agent=agent) if p.run_id in chosen),
                            workspace.relative) if chosen else []
        # Older than the window, as far as a time the log gives later shows.
        cutoff = newest[0][0] if len(newest) >= limit else None
        unknown = _Untimed(untimed - chosen, since, cutoff, folder)
        if unknown.wanted:
            unknown.check(files, agent, workspace.relative)
    except ReinstateError as exc:
        return LoggingResult(outcome="error", summary=f"could not read the logs: {exc}",
                             findings=[str(exc)])
    names = ", ".join(i.id for i in flagged)
    if not runs and not unknown.gaps and since is not None:
        untimed_note = (f"; {unknown.checked} run(s) log no time, so they cannot show they "
                        f"were logged after it" if unknown.checked else "")
        return LoggingResult(
            outcome="fail",
            summary=f"no run of {agent} logged since {names} found logging gaps" + untimed_note,
            findings=[f"{names}: the investigation found runs whose logs cannot answer what "
                      f"happened; log new runs under {folder}/ (with their times) to show "
                      f"the fix"],
            data=LoggingData(since=since, runs_checked=unknown.checked))
    if not runs and not unknown.checked:
        return LoggingResult(
            outcome="inconclusive",
            summary=f"no run logs of {agent} under {folder}/",
            findings=[f"put {agent}'s run logs under {folder}/ (native JSONL, OTLP/JSON, OpenAI "
                      f"or Anthropic conversations) so the gate can check they are complete"],
            data=LoggingData(runs_checked=0))
    gaps = [g for run, places in runs
            for g in logging_gaps(run, places[0] if places else folder)] + unknown.gaps
    findings = [f"{g.run_id}: {g.question}: {g.detail} ({g.source})" for g in gaps]
    scope = f"{len(runs)} recent run(s)" + (f" logged since {names}'s investigation"
                                             if since is not None else "")
    if unknown.checked:
        scope = (f"{len(runs) + unknown.checked} run(s) ({scope}, {unknown.checked} whose log "
                 f"gives no time)")
    bad = len({g.run_id for g in gaps})
    if unknown.gaps:
        findings.append(
            f"{len({g.run_id for g in unknown.gaps})} run(s) with gaps log no time, so they "
            f"cannot be told to be old and are checked whatever their age: log each run's "
            f"times (started_at, at), or move logs from before the fix out of {folder}/")
    outcome = "fail" if gaps else "pass"
    if since is not None and not runs:
        outcome = "fail"  # untimed runs cannot show the fix: they may predate it
        findings.append(f"{names}: no timed run logged since the investigation shows the fix")
    return LoggingResult(
        outcome=outcome,
        summary=(f"{bad} of {scope} cannot answer the four questions" if gaps
                 else f"{scope} answer the four questions"),
        findings=findings,
        data=LoggingData(runs_checked=len(runs) + unknown.checked, runs_with_gaps=bad,
                         since=since))


@dataclass
class _Untimed:
    """The runs whose first part logs no time, checked whatever their age.

    Each is judged as soon as its last part is read (a first read counts each run's parts),
    so only the runs being put together are held; what is kept per run is its gaps.
    """

    wanted: set[str]
    since: datetime | None
    cutoff: datetime | None
    folder: str
    checked: int = 0
    gaps: list[LoggingGap] = field(default_factory=list)

    def check(self, files: list[Path], agent: str, show: Callable[[Path], str]) -> None:
        """Read the wanted runs' parts and judge each run once it is whole."""
        wanted = self.wanted
        expected: Counter[str] = Counter(
            p.run_id for p in read_logs(files, agent=agent, defer_steps=True, headers=False)
            if p.run_id in wanted)
        pending: dict[str, list[RunPart]] = {}
        for part in read_logs(files, agent=agent, defer_steps=True):
            if part.run_id not in wanted:
                continue
            parts = pending.setdefault(part.run_id, [])
            parts.append(part)
            if len(parts) >= expected[part.run_id]:
                self._judge(pending.pop(part.run_id), show)
        for parts in pending.values():  # a part counted but not read again: judge what came
            self._judge(parts, show)

    def _judge(self, parts: list[RunPart], show: Callable[[Path], str]) -> None:
        run, places = located_runs(parts, show)[0]
        at = _run_time(run)
        if at is not None and ((self.since is not None and at <= self.since)
                               or (self.cutoff is not None and at < self.cutoff)):
            return  # a later part gives its time after all, and it is old
        self.checked += 1
        self.gaps += logging_gaps(run, places[0] if places else self.folder)


def _run_time(run: Run) -> datetime | None:
    """When a whole run started, if any of its parts says."""
    if run.started_at is not None:
        return as_utc(run.started_at)
    return min((t for s in run.steps if (t := as_utc(s.at)) is not None), default=None)
