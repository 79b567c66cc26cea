"""The backtest: what every control would have done across the whole recorded history.

:func:`backtest` reads an agent's logs (any format ``ingest`` reads), decides every
recorded tool call and output through the permission, review and acceptance layers of
the chosen controls (and of the controls compared with), and tallies the result.
:func:`backtest_runs` does the same over runs already read, for callers that hold them
(verification backtesting an incident's scope of impact).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from evalsuite import InvalidInput, LogFormat, Run, RunHeader, RunPart, as_asked, read_logs
from gates._backtest.controls import TODAY, judges, latest_baseline, resolve_controls
from gates._backtest.decide import decide_parts
from gates._backtest.labels import (
    BacktestLabel,
    Scan,
    check_labels,
    incident_labels,
    read_labels,
    scan,
)
from gates._backtest.model import Backtest
from gates._backtest.tally import Tally
from gates._config import Workspace
from gates._controls.files import Controls
from gates._controls.judge import Judge
from gates._controls.rule import OneRule

if TYPE_CHECKING:
    from gates._gate.ray_engine import EngineName

SEMANTICS = ("a labelled harmful step counts as stopped when any layer denies it or sends it "
             "to a person (a harmful run: any of its steps); a labelled good one counts as "
             "blocked only when denied, and as reviewed when sent to a person")


@dataclass(frozen=True)
class _Job:
    """One process's share of a backtest from logs: everything it needs, picklable."""

    root: Path
    agent: str
    logs: tuple[Path, ...]
    fmt: str
    controls: str
    compare: str | None
    rule: str | None
    labels: tuple[BacktestLabel, ...]
    last_part: dict[str, int]
    shard: tuple[int, int]


def _judges(workspace: Workspace, job: _Job) -> tuple[Judge, Judge | None]:
    controls = resolve_controls(workspace, job.agent, job.controls)
    compared = None if job.compare is None else resolve_controls(workspace, job.agent,
                                                                 job.compare)
    return judges(controls, compared, job.rule)


def _run_job(job: _Job, built: tuple[Judge, Judge | None] | None = None) -> Tally:
    """Decide one shard of the runs (in this process or a worker)."""
    workspace = Workspace.find(job.root)
    judge, against = built or _judges(workspace, job)
    tally = Tally.for_labels(job.labels)
    parts = read_logs(job.logs, job.fmt, agent=job.agent)
    decide_parts(parts, judge, against, tally, last_part=job.last_part, shard=job.shard,
                 show=workspace.relative)
    return tally


def backtest(workspace: Workspace, agent: str, logs: Sequence[Path], *,
             controls: str = TODAY, compare: str | None = None, diff: bool = False,
             labels: Path | None = None, incident: str | None = None, rule: str | None = None,
             jobs: int = 1, fmt: LogFormat | Literal["auto"] = "auto",
             engine: EngineName = "local", workers: int | None = None) -> Backtest:
    """What ``controls`` would have done to every recorded step of ``agent`` in ``logs``.

    Args:
        workspace: the workspace.
        agent: the agent whose runs are backtested (runs of other agents are left out).
        logs: log files in any format ``ingest`` reads.
        controls: ``today``, ``baseline:INC-n`` or a folder of control files.
        compare: controls to compare with, named the same way.
        diff: compare today's controls with the baseline of the agent's latest open
            incident (``controls`` must be today's and ``compare`` unset).
        labels: a labels file (JSONL, CSV or YAML).
        incident: label the incident's captured harm and scope of impact harmful.
        rule: only this rule decides; every other step is allowed.
        jobs: processes to split the runs across (the result is the same for any number).
        fmt: the logs' format, or ``auto``.
        engine: ``ray`` decides the shards as Ray tasks (the result is the same).
        workers: with ``ray``: shards, one Ray task each (default: the cluster's CPUs);
            ``jobs`` is then not used.

    Returns:
        The backtest; ``.passed`` is False when a labelled harmful step got through or a
        labelled good step was blocked, and ``.inconclusive`` says why when nothing could
        be decided (then ``.passed`` is False too).

    Raises:
        InvalidInput: an unknown agent, rule path or incident, an unreadable log or labels
            file, or a label naming no run (nothing is decided then); logs holding less
            of the incident's scope of impact than it records; a run read out of order
            across logs, or two runs sharing an id; logs that changed between reads.
    """
    agent = workspace.require_agent(agent)
    if not logs:
        raise InvalidInput(None, "--logs", "expected at least one log file")
    if jobs < 1:
        raise InvalidInput(None, "--jobs", f"expected at least 1, got {jobs}")
    notes = []
    if diff:
        if compare is not None or controls != TODAY:
            raise InvalidInput(None, "--diff", "is today against the baseline: leave out "
                                               "--controls and --compare")
        compare = latest_baseline(workspace, agent)
        notes.append(f"--diff: today's controls against {compare}, the baseline of "
                     f"{agent}'s latest open incident")
    job = _Job(root=workspace.root, agent=agent, logs=tuple(logs), fmt=fmt, controls=controls,
               compare=compare, rule=rule, labels=(), last_part={}, shard=(0, 1))
    built = _judges(workspace, job)  # every bad control file or rule path fails here
    chosen: list[BacktestLabel] = []
    if labels is not None:
        chosen += read_labels(labels)
    if incident is not None:
        found = workspace.incidents().load(incident)
        if found.agent != agent:
            raise InvalidInput(workspace.incidents().path(found.id), "$.agent",
                               f"expected an incident of {agent}, got one of {found.agent}")
        chosen = _combined(chosen, incident_labels(workspace, found, logs, fmt))
    if engine == "ray":
        from gates._gate.ray_engine import connect, map_bounded  # only when asked for
        jobs = workers or max(1, int(connect().cluster_resources().get("CPU", 1)))
        dataset = _on_dataset(workspace, job, chosen, jobs)
        if dataset is not None:
            tally, found_runs, note = dataset
            check_labels(chosen, found_runs)
            return _result(tally, agent=agent, controls=controls, compare=compare,
                           rule=built[0].one, logs=[workspace.relative(p) for p in logs],
                           labelled=bool(chosen), notes=[*notes, note])
        notes.append(f"--engine ray: not all the logs are native JSONL or Parquet, which a "
                     f"Ray Dataset reads, so the runs were split into {jobs} shards, each a "
                     f"Ray task reading the whole logs")
    else:
        parquet = next((p for p in logs if p.suffix.lower() == ".parquet"), None)
        if parquet is not None:
            raise InvalidInput(parquet, "", "a Parquet log is read only as a Ray Dataset: "
                                            "add --engine ray")
    found_runs = scan(read_logs(logs, fmt, agent=agent), chosen)
    check_labels(chosen, found_runs)
    jobs = min(jobs, max(1, len(found_runs.last_part)))
    shards = [dataclasses.replace(job, labels=tuple(chosen), last_part=found_runs.last_part,
                                  shard=(k, jobs))
              for k in range(jobs)]
    if engine == "ray":
        tallies = map_bounded(_run_job, shards, jobs)
    elif jobs == 1:
        tallies = [_run_job(shards[0], built)]
    else:
        context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            tallies = list(pool.map(_run_job, shards))
    tally = tallies[0]
    for other in tallies[1:]:
        tally.merge(other)
    return _result(tally, agent=agent, controls=controls, compare=compare, rule=built[0].one,
                   logs=[workspace.relative(p) for p in logs], labelled=bool(chosen),
                   notes=notes)


def _on_dataset(workspace: Workspace, job: _Job, labels: list[BacktestLabel],
                workers: int) -> tuple[Tally, Scan, str] | None:
    """The backtest read as a Ray Dataset, when every log is native JSONL or Parquet."""
    try:
        from gates._backtest.ray_dataset import (
            DatasetJob,
            backtest_dataset,
            dataset_formats,
            sources,
        )
    except ImportError as exc:  # Ray without its [data] extra (pyarrow, pandas)
        from gates._gate.ray_engine import EngineUnavailable

        raise EngineUnavailable(f"--engine ray reads logs as a Ray Dataset, which needs Ray "
                                f"Data ({exc.name} is missing): pip install 'reinstate[ray]'"
                                ) from None

    formats = dataset_formats(job.logs, job.fmt)
    if formats is None:
        return None
    tally, found, how = backtest_dataset(
        DatasetJob(root=workspace.root, agent=job.agent, controls=job.controls,
                   compare=job.compare, rule=job.rule, labels=tuple(labels),
                   sources=sources(job.logs)), job.logs, formats, workers)
    return tally, found, (f"--engine ray: the logs were read as a Ray Dataset "
                          f"({', '.join(sorted(set(formats)))}): {how}")


def _combined(given: list[BacktestLabel], extra: list[BacktestLabel]) -> list[BacktestLabel]:
    """A labels file's labels with the incident's. A step its cases captured as harmful is
    recorded harm, not a judgement a file may reverse: labelled good there, it is bad
    input; labelled harmful there too, the case's label is kept, as it knows the step it
    names (the file's would land on whatever the logs read number so, unchecked). A match
    of the scope of impact may be judged good: the file's label of that step, or of its
    whole run, decides it."""
    captured = {(label.run_id, label.step): label for label in extra
                if label.expect is not None}
    for other in given:
        label = captured.get((other.run_id, other.step))
        if label is not None and other.label != label.label:
            raise InvalidInput(None, other.source, f"labels {label.run_id} step {label.step} "
                                                   f"{other.label}, but it is the harm "
                                                   f"{label.note} ({label.expected}): drop the "
                                                   f"label, or the step from the case")
    kept = [label for label in given if (label.run_id, label.step) not in captured]
    taken = {(label.run_id, label.step) for label in kept}
    whole = {label.run_id for label in kept if label.step is None}
    return kept + [label for label in extra if label.expect is not None or (
        (label.run_id, label.step) not in taken and label.run_id not in whole)]


def backtest_runs(controls: Controls, runs: Iterable[Run], *, compare: Controls | None = None,
                  labels: Sequence[BacktestLabel] = (), rule: str | None = None,
                  agent: str | None = None, controls_name: str = "given",
                  compare_name: str = "compared") -> Backtest:
    """What ``controls`` would have done to every step of runs already read.

    Steps are located as ``RUN_ID step N``. Every label must name one of the runs.

    Raises:
        InvalidInput: an unknown rule path, or a label naming no run or step.
    """
    held = list(runs)
    found = scan(_parts(held), labels)
    check_labels(labels, found)
    judge, against = judges(controls, compare, rule)
    tally = Tally.for_labels(labels)
    decide_parts(_parts(held), judge, against, tally, last_part=found.last_part, show=str)
    return _result(tally, agent=agent or controls.permissions.agent, controls=controls_name,
                   compare=compare_name if compare is not None else None, rule=judge.one,
                   logs=[], labelled=bool(labels), notes=[])


def _parts(runs: Sequence[Run]) -> Iterator[RunPart]:
    """Each run as the parts of a log: a call a reviewer edited (a guard's log read whole)
    as the agent asked for it, then the edit, so it is decided as the guard decided it and
    later steps after the call that ran, as a backtest of the guard's log decides them."""
    for run in runs:
        steps, edits = as_asked(run)
        source = Path(run.run_id)
        header: RunHeader | None = RunHeader(run_id=run.run_id, context=run.context)
        start = 0
        for end in sorted(edits):
            yield RunPart(run_id=run.run_id, source=source, place="", header=header,
                          steps=steps[start:end + 1],
                          places=[f"step {i}" for i in range(start, end + 1)])
            yield RunPart(run_id=run.run_id, source=source, place=f"step {end}",
                          header=RunHeader(run_id=run.run_id,
                                           metadata={f"guard.edited.{end}": edits[end]}))
            header, start = None, end + 1
        if header is not None or start < len(steps):
            yield RunPart(run_id=run.run_id, source=source, place="", header=header,
                          steps=steps[start:],
                          places=[f"step {i}" for i in range(start, len(steps))])


def _result(tally: Tally, *, agent: str, controls: str, compare: str | None,
            rule: OneRule | None, logs: list[str], labelled: bool,
            notes: list[str]) -> Backtest:
    if rule is not None:
        notes.append(f"only {rule.rule} decides; every other step is allowed")
    notes.append(SEMANTICS if labelled else "no labels: the exit code is 0 whatever was "
                                            "decided (4 when nothing was); pass --labels or "
                                            "--incident to check")
    for label, times in tally.unsettled():
        # The runs were read once to check the labels and again to decide them: a log
        # written, rotated or truncated in between would drop a harmful label unseen.
        step = f" step {label.step}" if label.step is not None else ""
        raise InvalidInput(None, label.source, (
            f"run '{label.run_id}'{step} was decided {times} times, not once: the logs "
            f"changed while the backtest read them (a log still written, rotated or "
            f"truncated); backtest logs no longer written"))
    confusion = tally.confusion() if labelled else None
    totals = tally.totals.model()
    inconclusive = None
    if not totals.calls and not totals.outputs:
        inconclusive = (f"nothing to replay: the {totals.runs} run(s) of {agent} read hold "
                        f"no tool call or output")
    return Backtest(
        agent=agent, controls=controls, compare=compare,
        rule=rule.rule if rule else None, logs=logs,
        totals=totals, rules=tally.rule_tallies(),
        review_load=tally.review_load(),
        comparison=tally.comparison(compare) if compare is not None else None,
        confusion=confusion, passed=inconclusive is None and (confusion is None or not (
            confusion.harmful_allowed or confusion.good_blocked)),
        inconclusive=inconclusive, notes=notes)

