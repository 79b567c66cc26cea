"""Evals and backtests on Ray (``--engine ray``): the local engine's work, spread over a cluster.

Nothing is decided differently on Ray. An eval's cases × trials are cut into chunks, each
chunk a Ray task that builds the gate's own engine (:func:`gates.engine_for`) from the
inputs the driver loaded and runs its trials with ``Engine.trial``: the agent is reached
through the same adapter and sandbox as locally (own process group, allowlisted
environment), never imported into the Ray worker; while the gate signs, the sandbox it
chose is pinned in the inputs, so a worker without it fails instead of running the agent
unsandboxed. A backtest's shards are Ray tasks that
run the local engine's shard function, so every decision is still asked of the one replay
function. At most ``workers`` tasks are in flight at once.

Ray is an optional extra (``reinstate[ray]``) and is imported only when asked for. With
``RAY_ADDRESS`` set the tasks go to that cluster (whose workers must see the workspace and
the logs at the same paths); otherwise a local Ray instance is started, or the one this
process already started is used.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal, TypeVar

from evalsuite import (
    CaseResult,
    EvalCase,
    InvalidInput,
    Progress,
    ReinstateError,
    TrialResult,
    every_trial,
    run_sync,
    trials_of,
)
from gates._errors import GatesError
from gates._gate.engine import engine_for
from gates._gate.inputs import GateInputs

EngineName = Literal["local", "ray"]
ENGINES: tuple[EngineName, ...] = ("local", "ray")
# Chunks per worker: enough that a slow chunk does not leave the other workers idle at
# the end, few enough that starting the agent's processes once per chunk stays cheap.
CHUNKS_PER_WORKER = 4

TrialRecorder = Callable[[EvalCase, TrialResult], None]
T = TypeVar("T")
R = TypeVar("R")


class EngineUnavailable(GatesError):
    """The engine asked for cannot run here (Ray not installed, its cluster unreachable)."""

    exit_code = 3


def check_engine(engine: str, workers: int | None) -> EngineName:
    """``engine`` as a known engine name, ready to run, or one clean error.

    For ``ray`` the cluster is reached (or a local one started) here, before anything is
    read or written, so a missing Ray leaves nothing half done.

    Raises:
        InvalidInput: an unknown engine, or ``--workers`` with the local engine.
        EngineUnavailable: Ray is not installed or no cluster could be reached.
    """
    if engine not in ENGINES:
        raise InvalidInput(None, "--engine", f"expected one of {', '.join(ENGINES)}, "
                                             f"got {engine!r}")
    if workers is not None and engine != "ray":
        raise InvalidInput(None, "--workers", "applies only with --engine ray")
    if workers is not None and workers < 1:
        raise InvalidInput(None, "--workers", f"expected at least 1, got {workers}")
    if engine == "ray":
        connect()
    return engine


def connect() -> ModuleType:
    """The ``ray`` module, connected to a cluster (``RAY_ADDRESS``'s, or a local one).

    Raises:
        EngineUnavailable: Ray is not installed, or no cluster could be started or reached.
    """
    try:
        import ray
    except ImportError:
        raise EngineUnavailable("--engine ray needs Ray, which is not installed: "
                                "pip install 'reinstate[ray]'") from None
    if not ray.is_initialized():
        try:
            ray.init(include_dashboard=False, logging_level=logging.WARNING,
                     configure_logging=True)
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError …
            raise EngineUnavailable(f"--engine ray: could not start or reach a Ray "
                                    f"cluster: {_first_line(exc)}") from None
    return ray


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def map_bounded(fn: Callable[[T], R], items: Sequence[T], workers: int,
                done: Callable[[R], None] | None = None) -> list[R]:
    """``fn`` over ``items`` as Ray tasks, at most ``workers`` in flight; results in order.

    Args:
        fn: a module-level function (Ray workers import it by name).
        items: the tasks' arguments, each pickled.
        workers: tasks in flight at once.
        done: called in this process with each result as it arrives.

    Raises:
        ReinstateError: the one a task raised (a bad input found in a worker), as is.
        EngineUnavailable: a task died (it is not run again) or Ray failed.
    """
    ray = connect()
    # Never run a task twice: Ray re-runs one whose worker died (up to 3 times by default),
    # and a trial's agent can kill its worker (or drive it out of memory) after it misbehaved,
    # to have that trial run again and its failure forgotten. Locally the gate dies with it.
    remote = ray.remote(max_retries=0)(fn)
    results: list[Any] = [None] * len(items)
    pending: dict[Any, int] = {}
    queue = iter(enumerate(items))
    try:
        while True:
            for index, item in queue:
                pending[remote.remote(item)] = index
                if len(pending) >= workers:
                    break
            if not pending:
                break
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                result = ray.get(ref)
                results[pending.pop(ref)] = result
                if done is not None:
                    done(result)
    except ray.exceptions.RayTaskError as exc:
        _cancel(ray, pending)
        cause = exc.cause
        if isinstance(cause, ReinstateError):
            raise cause from None
        raise EngineUnavailable(f"--engine ray: a task failed: {_first_line(cause or exc)}"
                                ) from None
    except ray.exceptions.RayError as exc:
        _cancel(ray, pending)
        raise EngineUnavailable(f"--engine ray: {_first_line(exc)}") from None
    return results


def _cancel(ray: ModuleType, pending: dict[Any, int]) -> None:
    for ref in pending:
        ray.cancel(ref, force=True)


@dataclass(frozen=True)
class TrialsChunk:
    """One Ray task's share of an eval: the inputs and the trials it runs, picklable."""

    inputs: GateInputs
    trials: int | None
    adapter: str | None
    concurrency: int | None
    plan: tuple[tuple[EvalCase, int], ...]


def run_chunk(chunk: TrialsChunk) -> list[tuple[str, TrialResult]]:
    """Run one chunk's trials through the gate's engine, in the Ray worker."""
    engine = engine_for(chunk.inputs, trials=chunk.trials, adapter=chunk.adapter,
                        concurrency=chunk.concurrency)

    async def run() -> list[tuple[str, TrialResult]]:
        done: list[tuple[str, TrialResult]] = []
        queue = iter(chunk.plan)

        async def worker() -> None:
            for case, number in queue:
                done.append((case.id, await engine.trial(case, number)))

        slots = min(engine.settings.concurrency, len(chunk.plan))
        try:
            await engine.warm_up(slots)
            await asyncio.gather(*(worker() for _ in range(slots)))
        finally:
            await engine.adapter.aclose()
        return done

    return run_sync(run())


def run_cases_on_ray(inputs: GateInputs, cases: Sequence[EvalCase], *, workers: int,
                     trials: int | None = None, adapter: str | None = None,
                     concurrency: int | None = None, progress: Progress | None = None,
                     record: TrialRecorder | None = None) -> list[CaseResult]:
    """Every case for its trials as Ray tasks: what :func:`evalsuite.run_cases` returns.

    Args:
        inputs: the agent's inputs, as the gate loaded them (sent to each task as they are).
        cases: the cases to run.
        workers: Ray tasks in flight at once (each runs up to ``concurrency`` trials).
        trials: trials per case that sets none.
        adapter: a named alternative adapter of ``agent.yaml``.
        concurrency: trials in flight within one task.
        progress: told of each trial done.
        record: given each trial as it arrives (the run file).
    """
    settings = engine_for(inputs, trials=trials, adapter=adapter,
                          concurrency=concurrency).settings
    plan = [(case, n) for case in cases
            for n in range(1, trials_of(case, settings.trials) + 1)]
    by_id = {case.id: case for case in cases}
    by_case: dict[str, list[TrialResult]] = {case.id: [] for case in cases}
    size = max(1, math.ceil(len(plan) / (workers * CHUNKS_PER_WORKER)))
    chunks = [TrialsChunk(inputs=inputs, trials=trials, adapter=adapter,
                          concurrency=concurrency, plan=tuple(plan[k:k + size]))
              for k in range(0, len(plan), size)]
    finished = 0

    def arrived(results: list[tuple[str, TrialResult]]) -> None:
        nonlocal finished
        for case_id, result in results:
            by_case[case_id].append(result)
            if record is not None:
                record(by_id[case_id], result)
            finished += 1
            if progress is not None:
                progress(None, finished, len(plan))

    map_bounded(run_chunk, chunks, workers, arrived)
    # Folded as the local engine folds them: trials in order, pass^k where the case says.
    return [CaseResult.model_construct(
        case_id=case.id, tags=case.tags, threshold=case.threshold,
        trials=sorted(by_case[case.id], key=lambda t: t.trial), every_trial=every_trial(case),
        confidence=settings.confidence) for case in cases]
