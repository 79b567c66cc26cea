"""The eval engine: every case for its trials, concurrently, each trial judged.

asyncio with a bound on trials in flight, a timeout per trial, retries for transport
errors only (timeouts, refused connections, HTTP 429/502/503/504 after their Retry-After;
never for a wrong answer), and a verdict per case from its trials: pass^k for safety and
regression cases, otherwise the Wilson interval against the threshold, ``inconclusive``
with the trials that would decide.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Literal, Protocol

from pydantic import Field, PrivateAttr
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from evalsuite._agent import Adapter, AgentCrashed, TransportError
from evalsuite._case import EvalCase
from evalsuite._criteria import Criterion, Judgement
from evalsuite._effect import judge_trial
from evalsuite._loop import run_sync
from evalsuite._packed import case_keys
from evalsuite._pickled import Packer
from evalsuite._record import Record
from evalsuite._run import Output, Run, ToolCall, ToolResult, Usage, UserInput
from evalsuite._session import (
    MAX_STEPS,
    MAX_TEXT,
    AgentSession,
    ToolPolicy,
    ToolSpec,
    TrialOverrun,
    refuse_invalid_unicode,
)
from evalsuite._statistics import RateJudgement, judge_rate

CaseOutcome = Literal["pass", "fail", "error", "inconclusive"]


@dataclass(frozen=True)
class RunSettings:
    """How a suite is run."""

    trials: int = 3
    concurrency: int = 8
    timeout_s: float = 120.0
    retries: int = 2
    confidence: float = 0.95
    max_steps: int = MAX_STEPS
    """Steps (tool calls and reasoning) one trial may record; more is the trial's error."""
    max_text: int = MAX_TEXT
    """Bytes of tool arguments, reasoning and answer (as JSON) one trial may record."""


# Every parked trial's run and judgements, deflated against the first one's.
_PARKED = Packer()


@cache
def _every_field(model: type[Record]) -> set[str]:
    """One set of ``model``'s field names, shared by every instance that a
    ``model_construct`` giving every field builds.

    Pydantic gives each instance its own set of the fields it was given, a few hundred
    bytes; at 10,000 held results that was 7 MB of the same names. Sharing it is safe
    because the set already holds every field: an assignment only adds a name it has.
    """
    return set(model.model_fields)


class TrialResult(Record):
    """One run of one case."""

    trial: int
    """Number of the trial, from 1."""
    passed: bool
    """Whether every expectation was met."""
    error: str | None = None
    """Why the trial could not be judged (the agent raised, a fixture was missing)."""
    run: Run | None = None
    """What the agent did."""
    judgements: list[Judgement] = Field(default_factory=list)
    """Each expectation's outcome."""
    attempts: int = 1
    """Tries it took; more than one only after transport errors."""
    seconds: float = 0.0
    """Wall time of the trial, retries included."""
    blocked_calls: int = 0
    """Tool calls the permission policy denied during the trial."""

    # The run and judgements of a parked trial (see ``parked``), packed by ``_PARKED``.
    _parked: bytes | None = PrivateAttr(default=None)
    _parked_usage: Usage | None = PrivateAttr(default=None)
    _parked_stopped: tuple[str, ...] = PrivateAttr(default=())

    def parked(self) -> TrialResult:
        """This trial with its run and judgements packed into bytes, for holding many.

        A finished trial's models cost kilobytes each; packed they cost a few hundred
        bytes, so a suite of thousands of passing cases need not hold every run as
        models until it ends. ``run`` and ``judgements`` of the copy are empty: read them
        with :attr:`recorded_run` and :attr:`recorded_judgements`, which unpack them.
        """
        copy = TrialResult.model_construct(
            _every_field(TrialResult),
            trial=self.trial, passed=self.passed, error=self.error, run=None, judgements=[],
            attempts=self.attempts, seconds=self.seconds, blocked_calls=self.blocked_calls)
        copy._parked = _PARKED.pack((self.run, self.judgements))
        copy._parked_usage = self.run.usage if self.run is not None else None
        copy._parked_stopped = self.stopped_details
        return copy

    def _unpacked(self) -> tuple[Run | None, list[Judgement]]:
        if self._parked is None:
            return self.run, self.judgements
        # Bytes this process packed itself (never read from a file), so unpickling is safe.
        run, judgements = _PARKED.unpack(self._parked)
        return run, judgements

    @property
    def recorded_run(self) -> Run | None:
        """What the agent did, parked or not (a parked run is unpacked on each read)."""
        return self._unpacked()[0]

    @property
    def has_run(self) -> bool:
        """Whether a run was recorded, parked or not (without unpacking it)."""
        return self._parked is not None or self.run is not None

    @property
    def recorded_judgements(self) -> list[Judgement]:
        """Each expectation's outcome, parked or not."""
        return self._unpacked()[1]

    @property
    def stopped_details(self) -> tuple[str, ...]:
        """What each judgement that a control stopped says, parked or not (a parked trial
        answers without unpacking: the gate asks it of every passing case)."""
        if self._parked is not None:
            return self._parked_stopped
        return tuple(j.detail for j in self.judgements if j.stopped_by)

    @property
    def usage(self) -> Usage | None:
        """Tokens and cost the adapter reported for the trial, parked or not."""
        if self._parked is not None:
            return self._parked_usage
        return self.run.usage if self.run is not None else None


class CaseResult(Record):
    """A case's trials and what they add up to."""

    case_id: str
    """The case."""
    tags: list[str]
    """The case's input types."""
    threshold: float
    """Share of trials that had to pass."""
    trials: list[TrialResult]
    """Every trial, in order."""
    every_trial: bool = False
    """pass^k: every trial had to pass (safety and regression cases)."""
    confidence: float = 0.95
    """Confidence of the interval the pass rate is judged with."""

    @property
    def judged(self) -> list[TrialResult]:
        """The trials that ran to a judgement."""
        return [t for t in self.trials if t.error is None]

    @property
    def statistics(self) -> RateJudgement:
        """The pass rate of the judged trials against the threshold, with its interval."""
        judged = self.judged
        return judge_rate(sum(t.passed for t in judged), len(judged), self.threshold,
                          every_trial=self.every_trial, confidence=self.confidence)

    @property
    def pass_rate(self) -> float:
        """Share of all trials that passed."""
        return sum(t.passed for t in self.trials) / len(self.trials) if self.trials else 0.0

    @property
    def flaky(self) -> bool:
        """Some judged trials passed and some failed."""
        passed = {t.passed for t in self.judged}
        return passed == {True, False}

    @property
    def outcome(self) -> CaseOutcome:
        """error when no trial could be judged; a pass with errored trials is inconclusive."""
        if not self.judged:
            return "error"
        decision = self.statistics.decision
        if decision == "pass" and len(self.judged) < len(self.trials):
            return "inconclusive"
        return decision


# An endpoint's Retry-After is waited out up to this long before the next attempt; the
# trial's timeout does not run meanwhile.
RETRY_AFTER_MAX_S = 30.0
_exponential = wait_exponential(multiplier=0.1, max=2.0)


def _retry_after_s(exc: BaseException | None) -> float:
    """How long the endpoint asked to wait (its Retry-After, capped), else 0."""
    after = getattr(exc, "retry_after", None)
    if isinstance(after, int | float) and after > 0:
        return min(float(after), RETRY_AFTER_MAX_S)
    return 0.0


def _backoff(state: RetryCallState) -> float:
    """Exponential backoff, or the endpoint's Retry-After when it asked for longer."""
    failed = state.outcome.exception() if state.outcome is not None else None
    return max(_exponential(state), _retry_after_s(failed))


class _SetsTrials(Protocol):
    @property
    def trials(self) -> int | None: ...


def trials_of(case: _SetsTrials, default: int) -> int:
    """The trials ``case`` runs for: its own, else ``default`` (the run's: ``--trials``,
    else ``[gate] trials``). The engine counts with it, and so does the regression ratchet,
    so the terms a verdict remembers are the trials that ran."""
    return case.trials or default


def every_trial(case: EvalCase) -> bool:
    """Whether the case is pass^k."""
    return case.safety or case.threshold >= 1.0


@dataclass
class Engine:
    """What every trial of one suite shares."""

    adapter: Adapter
    settings: RunSettings
    acceptance: Sequence[Criterion] = ()
    policy: ToolPolicy | None = None
    tools: Sequence[ToolSpec] = ()

    async def _attempt(self, case: EvalCase, number: int,
                       session: AgentSession) -> str | None:
        async with asyncio.timeout(case.timeout_s or self.settings.timeout_s):
            answer = await self.adapter.respond(case, number, session)
        try:
            size = refuse_invalid_unicode("the answer", answer)
        except ValueError as exc:
            raise AgentCrashed(str(exc)) from None
        session.spend(0, size)  # and an overrun the agent swallowed is still its error
        if session.missing_fixture is not None:
            # The agent may have swallowed the exception; the case is still broken.
            raise session.missing_fixture
        return answer

    async def trial(self, case: EvalCase, number: int) -> TrialResult:
        """Run and judge one trial; the agent's failure is the trial's result, not ours."""
        start = time.perf_counter()
        attempts = 1
        session = self._session(case)
        try:
            try:
                answer = await self._attempt(case, number, session)
            except (TransportError, TimeoutError) as first:
                if not self.settings.retries or _acted(session):
                    raise
                await asyncio.sleep(_retry_after_s(first))
                # Only now pay for the retry machinery: most trials never need it. The
                # predicate reads `session` when an attempt fails, so it reads that
                # attempt's own (late binding is the point here).
                async for attempt in AsyncRetrying(
                    retry=retry_if_exception(
                        lambda exc: _retryable(exc) and not _acted(session)),  # noqa: B023
                    stop=stop_after_attempt(self.settings.retries),
                    wait=_backoff, reraise=True,
                ):
                    with attempt:
                        attempts += 1
                        session = self._session(case)
                        answer = await self._attempt(case, number, session)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            # What the agent did before it failed is kept: it is how the failure is read.
            return TrialResult(trial=number, passed=False,
                               error=_describe(exc, case.timeout_s or self.settings.timeout_s,
                                               self.settings.retries > 0 and _acted(session)),
                               run=self._run(case, number, session, None), attempts=attempts,
                               seconds=time.perf_counter() - start,
                               blocked_calls=session.blocked)
        run = self._run(case, number, session, answer)
        try:
            judgements = judge_trial(case, run, session.denials, self.acceptance)
        except Exception as exc:
            # Judging reads what the agent wrote (its answer parsed as JSON, schemas and
            # expressions over it): an answer that breaks a judge ("[" nested 100,000 deep
            # raised RecursionError) is that trial's error. It ended the gate with a
            # traceback and no verdict, and the last one stood.
            return TrialResult(trial=number, passed=False,
                               error=f"could not judge the trial: {_said(exc, 0)}", run=run,
                               attempts=attempts, seconds=time.perf_counter() - start,
                               blocked_calls=session.blocked)
        return TrialResult.model_construct(
            trial=number, passed=all(j.passed for j in judgements), error=None, run=run,
            judgements=judgements, attempts=attempts, seconds=time.perf_counter() - start,
            blocked_calls=session.blocked)

    def _session(self, case: EvalCase) -> AgentSession:
        return AgentSession(case, policy=self.policy, tools=self.tools,
                            max_steps=self.settings.max_steps, max_text=self.settings.max_text)

    async def warm_up(self, slots: int) -> None:
        """Start the agent's processes now, so their start is not within a trial's timeout.

        Only adapters that start processes have anything to do; one that cannot start is
        left for a trial to report.
        """
        start = getattr(self.adapter, "start", None)
        if start is not None and slots > 0:
            # Waited on for one trial's timeout at most: an agent whose start never ends (a
            # module whose import blocks, never saying it is ready) held the gate forever,
            # with no verdict. Past it, each trial starts its process within its own timeout.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.timeout_s):
                    await start(slots)

    async def run_case(self, case: EvalCase) -> CaseResult:
        """Run one case for its trials, one after another, and leave the adapter open.

        For callers that run cases one at a time (the pytest plugin): the next case reuses
        the agent's processes and connections. Warm up first, as :func:`run_suite` does,
        and close the adapter (``adapter.aclose()``) when done.
        """
        trials = [await self.trial(case, n) for n in _trial_numbers(case, self.settings)]
        return _case_result(case, trials, self.settings)

    def _run(self, case: EvalCase, number: int, session: AgentSession,
             answer: str | None) -> Run:
        asked = [UserInput(content=m.content) for m in case.input.messages if m.role == "user"]
        usage: Usage | None = session.usage()
        ending = [Output(content=answer)] if answer is not None else []
        return Run.model_construct(
            schema_version=1, run_id=f"{case.id}#{number}", agent=self.adapter.agent.name,
            agent_version=self.adapter.agent.version, started_at=None, context=case.input.context,
            steps=[*asked[-1:], *session.steps, *ending], outcome=None,
            usage=usage, metadata={},
        )


def _retryable(exc: BaseException) -> bool:
    """A transport error or a timeout: worth another attempt, unless the agent acted."""
    return isinstance(exc, TransportError | TimeoutError)


def _acted(session: AgentSession) -> bool:
    """Whether the attempt made a tool call. A retry starts a new session, so retrying
    would judge a run without the calls this attempt made: an agent could make a harmful
    call, then time out (or report a retryable error) and be judged on a clean retry."""
    return any(isinstance(step, ToolCall) for step in session.steps)


_NOT_RETRIED = " (not retried: the attempt had made tool calls, which a retry would drop)"


def _describe(exc: BaseException, timeout_s: float, acted: bool = False) -> str:
    said = _said(exc, timeout_s)
    return said + _NOT_RETRIED if acted and _retryable(exc) else said


def _said(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout_s:g} s"
    if isinstance(exc, TrialOverrun):
        return str(exc)
    if isinstance(exc, SystemExit):
        return f"the agent tried to end the process (SystemExit({exc.code!r}))"
    frame = traceback.extract_tb(exc.__traceback__)[-1:]
    where = f" at {frame[0].filename}:{frame[0].lineno}" if frame else ""
    return f"{exc!r}{where}"


Progress = Callable[[CaseResult | None, int, int], None]
TrialRecorder = Callable[[EvalCase, TrialResult], None]


async def run_suite(engine: Engine, cases: Sequence[EvalCase], *,
                    progress: Progress | None = None,
                    record: TrialRecorder | None = None,
                    park_passing: bool = False) -> list[CaseResult]:
    """Every case for its trials, at most ``concurrency`` trials in flight.

    Args:
        engine: What every trial shares.
        cases: The cases, each run for its trials.
        progress: Called after each trial with the trials done and in all.
        record: Called with each trial as it finishes (the run file's writer).
        park_passing: Once every trial of a case has finished and the case passed, keep
            its trials :meth:`~TrialResult.parked` (their runs released as models, read
            back with ``recorded_run``) unless a trial has a blocked tool call. For
            callers holding thousands of cases that read the runs of passing ones rarely.

    Returns:
        A result per case, in the order of ``cases``.
    """
    settings = engine.settings
    # Cases are read one at a time, in order, as the workers reach them, and each case's
    # result is made once its last trial is in: a case's model (unpacked from
    # PackedCases, which holds thousands packed) lives only while its trials run.
    keys = case_keys(cases)
    total = sum(trials_of(k, settings.trials) for k in keys)
    done = 0
    results: list[CaseResult | None] = [None] * len(keys)
    running: dict[int, list[TrialResult]] = {}
    pending = ((index, case, n) for index, case in enumerate(cases)
               for n in _trial_numbers(case, settings))

    async def worker() -> None:
        # A fixed set of workers sharing one plan: no task or semaphore per trial.
        nonlocal done
        for index, case, number in pending:
            result = await engine.trial(case, number)
            trials = running.setdefault(index, [])
            trials.append(result)
            if record is not None:
                record(case, result)
            del result  # held by the case's list alone, so parking it releases its run
            if len(trials) == len(_trial_numbers(case, settings)):
                if park_passing:
                    _park_if_passed(case, trials, settings)
                results[index] = _case_result(case, running.pop(index), settings)
            del case  # the next trial's case is the generator's to hold
            done += 1
            if progress is not None:
                progress(None, done, total)

    try:
        await engine.warm_up(min(settings.concurrency, total))
        with _fewer_collections():
            await asyncio.gather(*(worker() for _ in range(min(settings.concurrency, total))))
    finally:
        await engine.adapter.aclose()
    finished = [r for r in results if r is not None]
    if len(finished) != len(results):  # never a case silently left out
        raise RuntimeError(f"{len(results) - len(finished)} cases did not finish")
    return finished


def _park_if_passed(case: EvalCase, trials: list[TrialResult], settings: RunSettings) -> None:
    """Park a finished case's trials in place when it passed.

    Only passing cases: a case that did not pass is read whole (what the agent did, a
    passing trial beside the failing one). A trial with a blocked call keeps its run, as
    the over-blocking checks read those.
    """
    if _case_result(case, trials, settings).outcome != "pass":
        return
    for index, trial in enumerate(trials):
        if trial.run is not None and not any(
                isinstance(s, ToolResult) and s.blocked for s in trial.run.steps):
            trials[index] = trial.parked()


def _trial_numbers(case: EvalCase, settings: RunSettings) -> range:
    return range(1, trials_of(case, settings.trials) + 1)


def _case_result(case: EvalCase, trials: list[TrialResult],
                 settings: RunSettings) -> CaseResult:
    # Built from the engine's own, already validated values: validating them again
    # would cost more than running an instant agent.
    return CaseResult.model_construct(
        _every_field(CaseResult),
        case_id=case.id, tags=case.tags, threshold=case.threshold,
        trials=sorted(trials, key=lambda t: t.trial), every_trial=every_trial(case),
        confidence=settings.confidence)


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Collect cyclic garbage less often while a suite runs.

    Every trial's result stays alive until the suite ends; with CPython's default
    thresholds the collector walks those results again every few hundred allocations,
    which cost more than the engine itself (measured: about half of the per-trial time
    with an instant agent). Reference counting still frees everything else at once.
    """
    old = gc.get_threshold()
    gc.set_threshold(max(old[0], 10_000), *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)


def run_cases(engine: Engine, cases: Sequence[EvalCase], *, progress: Progress | None = None,
              record: TrialRecorder | None = None,
              park_passing: bool = False) -> list[CaseResult]:
    """:func:`run_suite` for callers that are not async."""
    return run_sync(run_suite(engine, cases, progress=progress, record=record,
                              park_passing=park_passing))
