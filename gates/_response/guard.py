"""The runtime guard: the controls the gate verified, enforced on a live run.

A :class:`Guard` decides each tool call and each output of a running agent with the one
replay the gate, verify and the backtest use (:func:`~gates._controls.replay.replay`): the
permission boundary and review routing (the ``stopped`` layer), then the acceptance
criteria, over the run's history that the guard keeps itself. The agent's mode comes on
top: ``suspended`` denies everything, ``review`` sends everything that would be allowed to
a person. Whatever cannot be read (the controls, the state store, the incident records)
denies, with the reason.

Today's controls and mode are read once and read again only when their files change. The
mode is looked at before every decision, so a containment, a restore, a new incident or a
hand edit of any incident file, made by any process, reaches the very next call: on Linux
the kernel watches the store's folder and the incidents folder
(:mod:`gates._response.guard_watch`, one ``read`` a quiet decision); elsewhere, or when no
watch can be had, each decision stats the SQLite store, its WAL, the incidents folder and
the file of each open incident of the agent. Every incident file is also stat'ed with the
control files (an edit of a restored incident's or another agent's file can change the mode
too: a broken file fails closed, an incident moved to this agent holds it), which bounds
what a watch cannot see (a network file system edited from another machine). The four
control files, and every file of the predicate modules the configuration allows (a
predicate's code is a control: the verdict's fingerprint digests it), are stat'ed at most
every ``controls_recheck_s`` (1 s by default), as a control change is a reviewed deploy,
not an emergency. A file is read again when its stamp
moved, or when it changed too recently for its stamp to be trusted (the "racy" case of
git's index: a write within the file system's timestamp tick of the last read leaves mtime
and size alone); changed control files are parsed from the very bytes their digest was
taken of. A store that is not a file (PostgreSQL) is read at every decision.

The guard writes the run log as it goes, in the native JSONL format ``reinstate ingest`` and
``investigate`` read: a header with the context, the goal as the user input, every call
with its result (a denied call gets a blocked result naming the rule), every output, the
decision of each step (in the run's metadata, ``guard.step.<n>``) and why the run ended;
and, when the OpenTelemetry SDK is configured, the same run as GenAI spans
(:mod:`gates._response.guard_spans`).
Each step is one unbuffered write of whole lines as it happens: a crash of the agent's
process loses no decided step and no tool's answer, and runs logged at once by threads or
processes do not interleave. The lines are pydantic's own JSON of the step and decision,
its serializer called directly and a decision's JSON kept by what it says.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import itertools
import json
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Concatenate, ParamSpec, TypeVar

import pydantic_core
from pydantic import Field

from evalsuite import (
    MAX_USER_FILE_BYTES,
    History,
    InvalidInput,
    Output,
    Step,
    ToolCall,
    ToolResult,
    UserInput,
    read_regular,
)
from gates._config import Workspace
from gates._controls.files import CONTROL_FILES, Controls, load_controls
from gates._controls.policy import Decision
from gates._controls.replay import replay
from gates._errors import GatesError
from gates._response.guard_spans import RunSpans, TracerCache
from gates._response.guard_watch import ChangeWatch, open_watch
from gates._store.access import (
    ModeReading,
    Standing,
    open_store,
    read_mode,
    safe_read_mode,
    standing,
)
from gates._store.control_proof import controls_unproven
from gates._verdict.fingerprint import loaded_digests, predicate_files

# How long after a file's last change its stamp is trusted: a write within one timestamp
# tick of the last read would leave mtime and size as they were (coarse clocks tick in ms).
_SETTLE_NS = 100_000_000

_Stamp = tuple[tuple[int, int, int] | None, ...]


class GuardDecision(Decision):
    """The guard's decision on one step of a live run."""

    step: int = Field(ge=0)
    """The step's position in the run's log (0 is the goal)."""
    call_id: str | None = None
    """For a tool call, the id to give :meth:`GuardedRun.result` with the tool's answer."""


class Guard:
    """Today's controls and mode of one agent, enforced on its live runs.

    Use::

        guard = gates.Guard("path/to/workspace", "refund-agent")
        with guard.run("run-42", goal=user_message, context={"customer_id": "C-1"}):
            decision = guard.call("issue_refund", {"order_id": "A-1001", "amount": 20})

    A guard may be shared by threads and asyncio tasks; ``guard.call`` acts on the run its
    thread or task opened.
    A run's own methods may be called from several threads (a model's parallel calls):
    its steps are decided and logged one at a time, each after those before it.
    """

    def __init__(self, workspace: Workspace | Path | str | None, agent: str, *,
                 log: Path | None = None, recheck_s: float = 0.0,
                 controls_recheck_s: float = 1.0) -> None:
        """Find the workspace and the agent, and read today's controls and mode.

        Args:
            workspace: The workspace (or its folder; default: found from the working
                directory or ``REINSTATE_WORKSPACE``).
            agent: The agent's name, as in ``agents/<agent>/``.
            log: The run log to append to (default:
                ``<logs>/<date>-<agent>-guard.jsonl``, where the logging check reads).
            recheck_s: Look at the mode again only when this many seconds passed since
                the last look; 0 (the default) looks before every decision, so a
                containment takes effect on the very next call.
            controls_recheck_s: Look at the control files again only when this many
                seconds passed since the last look (default 1: an edit of the controls
                is enforced within a second; 0 looks before every decision). A control
                change is a reviewed deploy, a mode change is an emergency: only the
                mode is looked at on every call. Incident files that cannot hold the
                agent unless edited by hand (restored incidents, other agents') are
                looked at on this interval too.

        Raises:
            InvalidInput: no workspace there.
            UnknownAgent: the workspace defines no such agent.
        """
        # An invalid [notify] is set aside: the guard only ever holds the agent back.
        self.workspace = workspace if isinstance(workspace, Workspace) else Workspace.find(
            Path(workspace) if workspace is not None else None, containing=True)
        self.agent = self.workspace.require_agent(agent)
        self._log = log
        self._logs_dir = self.workspace.logs_dir  # resolved once, not at every run
        self._recheck_ns = int(recheck_s * 1e9)
        self._controls_recheck_ns = int(controls_recheck_s * 1e9)
        self._checked_ns = 0
        self._controls_checked_ns = 0
        self._records_checked_ns = 0
        self._lock = threading.Lock()
        self._logs: dict[Path, IO[bytes]] = {}  # one handle a log file, kept open between runs
        self._torn: set[Path] = set()  # logs whose last write may have stopped mid-line
        self._logs_lock = threading.Lock()
        # Closed when the guard is dropped or the interpreter exits, if close() was not called.
        weakref.finalize(self, _close_logs, self._logs, self._logs_lock)
        # The runs open in this thread or asyncio task, innermost last: a context variable,
        # as a thread's own list would be shared by the tasks of its event loop (one
        # conversation's calls decided in, and logged as, another's open meanwhile).
        self._runs: ContextVar[tuple[GuardedRun, ...]] = ContextVar(
            f"reinstate_guard_runs_{id(self)}", default=())
        self._tracers = TracerCache()
        folder = self.workspace.agent_dir(agent)
        self._control_paths = tuple(folder / name for name in CONTROL_FILES)
        self._control_stat = tuple(str(p) for p in self._control_paths)
        # The predicate modules' files are controls too (the verdict's fingerprint digests
        # them): an edit of one alone must reach the guard as an edit of a control file.
        self._predicate_paths: tuple[Path, ...] = ()
        self._predicate_stat: tuple[str, ...] = ()
        self._predicate_found: dict[str, Path | None] = {}
        self._find_predicates()
        state = self.workspace.state_path
        self._file_store = self.workspace.config.state.url is None
        self._store_stat = (str(state), f"{state}-wal", str(self.workspace.incidents_dir))
        # Set at each read of the mode: the files stat'ed before every decision (the store,
        # its WAL, the incidents folder and the files of the agent's open incidents) and
        # every incident file, stat'ed with the control files (see _refresh_mode).
        self._mode_stat: tuple[str, ...] = self._store_stat
        self._records_stat: tuple[str, ...] = ()
        self._records_stamp: _Stamp | None = None
        self._watch: list[ChangeWatch] = []  # the kernel's watch, when it gives one
        weakref.finalize(self, _close_watch, self._watch)
        self._controls: Controls | None = None
        self._controls_problem = ""
        self._controls_digest = ""
        self._controls_stamp: _Stamp | None = None
        self._reading: ModeReading | None = None
        self._mode_stamp: _Stamp | None = None
        # The loaded controls' digests as a verdict's fingerprint keeps them; what the
        # answer to "are they proven?" was worked out from (the latest verdict, the
        # controls, the last containment) and whether to work it out again; the agent's
        # standing as the mode was last read (its containments).
        self._loaded: tuple[dict[str, str], dict[str, str]] = ({}, {})
        # The controls decisions run and why they are unproven, as one pair: decisions read
        # it without the lock, so a reload or a proof worked out in another thread is seen
        # whole or not at all (never new controls with the old controls' answer).
        self._enforced: tuple[Controls | None, str] = (None, "")
        self._proof_key: tuple[object, ...] | None = None
        self._proof_stale = True
        self._held: Standing | None = None
        self.reloads = 0
        """How many times the controls were read (1 after construction)."""
        self.refresh()

    # -- what the guard knows ----------------------------------------------------------

    def refresh(self) -> None:
        """Read the controls and the mode again where their files changed."""
        with self._lock:
            now = time.monotonic_ns()
            self._refresh_controls()
            self._refresh_mode(records=True)
            self._refresh_proof()
            self._checked_ns = self._controls_checked_ns = self._records_checked_ns = now

    def _maybe_refresh(self) -> None:
        # The mode's three stamps on every decision (unless recheck_s), the four control
        # files' only every controls_recheck_s: the stats are most of the guard's own cost.
        now = time.monotonic_ns()
        controls = now - self._controls_checked_ns >= self._controls_recheck_ns
        mode = now - self._checked_ns >= self._recheck_ns
        if not (controls or mode):
            return
        with self._lock:
            if controls:
                self._refresh_controls()
                self._controls_checked_ns = now
            if mode:
                # Every incident file too, at most every controls_recheck_s.
                records = now - self._records_checked_ns >= self._controls_recheck_ns
                self._refresh_mode(records=records)
                self._checked_ns = now
                if records:
                    self._records_checked_ns = now
            self._refresh_proof()

    def _refresh_controls(self) -> None:
        stamp = _stamp(self._control_stat + self._predicate_stat)
        if stamp == self._controls_stamp:
            return
        if self._find_predicates():  # a module's files came or went: stamp them all
            stamp = _stamp(self._control_stat + self._predicate_stat)
        try:
            texts, digest, raw = _read(self._control_paths, self._predicate_paths)
        except OSError as exc:
            self._fail_controls(f"cannot read {exc.filename}: {exc.strerror}", stamp)
            return
        except InvalidInput as exc:  # a folder or a named pipe in a file's place: a deny,
            self._fail_controls(str(exc), stamp)  # never an exception out of a decision
            return
        if digest == self._controls_digest and self._controls is not None:
            self._controls_stamp = _trusted(stamp)  # touched, not changed
            return
        try:
            # Parsed and run from the bytes just digested: one read, and the digest is of
            # what was loaded even when a file changes in between, or a predicate imports
            # a module only when called.
            controls = load_controls(
                self._control_paths[0].parent, self.agent, root=self.workspace.root,
                predicate_modules=self.workspace.config.rules.predicate_modules, texts=texts,
                sources={path: raw[path] for path in self._predicate_paths if path in raw})
        except Exception as exc:  # fail closed on anything, not only the errors we name
            self._fail_controls(str(exc) or repr(exc), stamp)
            return
        relative = self.workspace.relative
        self._loaded = loaded_digests(
            {relative(path): raw.get(path) for path in self._control_paths},
            {where: None if path is None else raw.get(path)
             for where, path in self._predicate_found.items()})
        # Unproven until _refresh_proof says otherwise, set before the new controls are:
        # a decision in another thread reads them without the lock, and the answer
        # worked out for the controls before must never count for these.
        self._enforced = (controls, f"whether {self.agent}'s controls, just read again, are "
                                    f"ones a passing gate verified is not worked out yet")
        self._proof_key, self._proof_stale = None, True
        self._controls, self._controls_problem = controls, ""
        self._controls_digest, self._controls_stamp = digest, _trusted(stamp)
        self.reloads += 1

    def _refresh_proof(self) -> None:
        """Whether the loaded controls are ones a passing verdict of the agent verified
        after its last containment: the control proven at the gate is the control that runs.

        Controls edited where the agent runs after the gate (a rule taken out of
        ``permissions.yaml``) would otherwise be enforced unproven while ``check`` says
        stale; instead every call they do not stop goes to a person, as in review mode, so
        an emergency tightening still denies at once. An agent that never passed a gate
        has nothing proven to hold to. Worked out again after the controls were loaded or
        the mode read, and only when the latest verdict, the controls or the last
        containment changed.
        """
        if not self._proof_stale:
            return
        self._proof_stale = False
        if self._controls is None:
            return  # unreadable controls deny already
        try:
            store = open_store(self.workspace)
            held = self._held if self._held is not None else standing(
                self.workspace, self.agent, store)
            since = held.last_contained_at()
            key = (store.latest_verdict_sha256(self.agent), self._controls_digest, since)
            if key == self._proof_key:
                return
            self._enforced = (self._controls, controls_unproven(
                self.workspace, self.agent, self._loaded, store, since))
            self._proof_key = key
        except Exception as exc:  # nothing read is nothing proven: a person decides
            self._enforced, self._proof_key = (self._controls, (
                f"whether {self.agent}'s controls are ones a passing gate verified cannot "
                f"be read ({str(exc) or repr(exc)})")), None

    def _find_predicates(self) -> bool:
        """List the files of every predicate module the configuration allows (where a
        missing one would be, too); whether the list changed."""
        try:
            found = predicate_files(self.workspace)
        except OSError:
            found = {}
        root = self.workspace.root
        paths = tuple(path if path is not None else root / where
                      for where, path in found.items()
                      if path is not None or not where.startswith("predicate module "))
        self._predicate_found = found
        if paths == self._predicate_paths:
            return False
        self._predicate_paths, self._predicate_stat = paths, tuple(str(p) for p in paths)
        return True

    def _fail_controls(self, problem: str, stamp: _Stamp) -> None:
        self._controls, self._controls_digest = None, ""
        self._proof_stale = True
        self._controls_problem = f"controls unreadable: {problem}; failing closed"
        self._enforced = (None, "")  # after the problem: a decision denies naming it
        self._controls_stamp = _trusted(stamp)

    def _refresh_mode(self, *, records: bool = False) -> None:
        # Before every decision: one read of the kernel's watch on the store's and the
        # incidents' folders (guard_watch), which reports any incident file edited in
        # place too; without a watch, stats of the store, its WAL, the incidents folder
        # (an incident opened, replaced or removed) and each open incident's file of the
        # agent (a hand edit tightening its containment, or breaking it). With
        # ``records`` (every controls_recheck_s): every incident file, as an edit of any
        # can change the mode (a broken file fails closed; an incident moved to this
        # agent holds it), and a watch misses edits from other machines.
        if not self._file_store:
            self._read_mode()
            # A server's store is read on every decision; what it proves, less often.
            self._proof_stale |= records
            return
        watch = self._watch[0] if self._watch else None
        # A broken watch answers "changed": the reading then opens a new one.
        quiet = (not watch.changed() if watch is not None
                 else _stamp(self._mode_stat) == self._mode_stamp)
        if quiet and not (records and _stamp(self._records_stat) != self._records_stamp):
            return
        self._read_mode()

    def _read_mode(self) -> None:
        workspace, agent = self.workspace, self.agent
        if not self._file_store:
            self._reading = safe_read_mode(workspace, agent)
            return
        self._proof_stale = True
        self._rewatch()
        book = workspace.incidents()
        try:
            files = tuple(str(book.path(i)) for i in book.ids())
        except OSError:
            files = ()
        # Stamps taken before the reading: a change made while reading moves a stamp
        # past what was read, so the next call reads again; nothing is lost.
        before, records = _stamp(self._store_stat), _stamp(files)
        try:
            store = open_store(workspace)
            held: Standing | None = standing(workspace, agent, store)
            reading = read_mode(workspace, agent, store, held)
        except Exception:  # the plain reading names the problem, failing closed
            held, reading = None, safe_read_mode(workspace, agent)
        self._reading, self._held = reading, held
        by_path = dict(zip(files, records, strict=True))
        watched = tuple(str(book.path(i.id)) for i in held.open) if held is not None else ()
        self._mode_stat = self._store_stat + watched
        self._mode_stamp = _trusted(before + tuple(by_path.get(w) for w in watched))
        self._records_stat, self._records_stamp = files, _trusted(records)

    def _rewatch(self) -> None:
        # Before a reading: events so far are consumed (what they announced is about to be
        # read); a watch that broke, or was never had (a folder missing), is tried anew.
        watch = self._watch[0] if self._watch else None
        if watch is not None and not watch.broken:
            watch.changed()
            return
        _close_watch(self._watch)
        fresh = open_watch(self.workspace.state_path, self.workspace.incidents_dir)
        if fresh is not None:
            self._watch.append(fresh)

    @property
    def mode(self) -> ModeReading:
        """The agent's mode as the guard last read it."""
        self.refresh()
        assert self._reading is not None
        return self._reading

    def decide(self, step: Step, history: History | None = None,
               context: Mapping[str, Any] | None = None) -> Decision:
        """What today's controls and mode decide on ``step``, after ``history``.

        The same replay the gate verifies, layer by layer: the permission boundary and
        review routing, then the acceptance criteria; then the mode. Nothing is logged.
        """
        self._maybe_refresh()
        reading, (controls, unproven) = self._reading, self._enforced
        assert reading is not None
        if reading.mode == "suspended":
            why = reading.reason + (f" ({reading.degraded})" if reading.degraded else "")
            return Decision(effect="deny", rule="mode.suspended",
                            reason=f"{self.agent} is suspended: {why}")
        if controls is None:
            return Decision(effect="deny", rule="guard.controls", reason=self._controls_problem)
        past = history if history is not None else ()
        try:
            decision = replay(step, "stopped", controls, history=past, context=context)
            if not decision.stopped:
                judged = replay(step, "acceptance", controls, history=past, context=context)
                decision = judged if judged.stopped else decision
        except Exception as exc:  # a predicate that raised: nobody checked the step
            return Decision(effect="deny", rule="guard.error",
                            reason=f"the controls could not decide ({exc!r}); failing closed")
        if reading.mode == "review" and not decision.stopped:
            return Decision(effect="review", rule="mode.review",
                            reason=f"{self.agent} is in review mode ({reading.reason}): "
                                   f"every call and output goes to a person first")
        if unproven and not decision.stopped:
            return Decision(effect="review", rule="controls.unproven",
                            reason=f"{unproven}: every call and output goes to a "
                                   f"person first until `reinstate gate {self.agent}` "
                                   f"passes on today's controls")
        return decision

    # -- live runs --------------------------------------------------------------------

    @contextmanager
    def run(self, run_id: str, *, goal: str, context: Mapping[str, Any] | None = None,
            ) -> Iterator[GuardedRun]:
        """Open a run: its goal and context are logged, and :meth:`call`, :meth:`result`
        and :meth:`output` of this guard act on it until the block ends.

        The run's log ends with why it stopped: ``done`` (or what :meth:`GuardedRun.finish`
        was given), or the exception that ended the block.
        """
        # The context as its header logs it (json.dumps), a copy the caller cannot change.
        opened = GuardedRun(self, run_id, goal=goal,
                            context=json.loads(json.dumps(dict(context or {}))),
                            log=self._log_path())
        self._runs.set((*self._runs.get(), opened))
        try:
            yield opened
        except BaseException as exc:
            opened.finish(f"error: {type(exc).__name__}: {exc}", failure=exc)
            raise
        finally:
            self._runs.set(tuple(r for r in self._runs.get() if r is not opened))
            opened.finish("done")

    def _current(self) -> GuardedRun:
        stack = self._runs.get()
        if not stack:
            raise GatesError("no run is open on this guard in this thread or task: "
                             "use `with guard.run(run_id, goal=...)` first")
        return stack[-1]

    def call(self, tool: str, args: Mapping[str, Any] | None = None, *,
             call_id: str | None = None) -> GuardDecision:
        """Decide a tool call of the open run (see :meth:`GuardedRun.call`)."""
        return self._current().call(tool, args, call_id=call_id)

    def result(self, call_id: str, value: Any = None, *, error: str | None = None,
               blocked: bool = False) -> None:
        """Log a tool's answer in the open run (see :meth:`GuardedRun.result`)."""
        self._current().result(call_id, value, error=error, blocked=blocked)

    def output(self, text: str) -> GuardDecision:
        """Decide an output of the open run (see :meth:`GuardedRun.output`)."""
        return self._current().output(text)

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the run logs the guard holds open (a later run opens them again)."""
        _close_logs(self._logs, self._logs_lock)
        with self._lock:
            _close_watch(self._watch)

    def _emit(self, log: Path, text: bytes) -> None:
        # One write for a step and its decision (whole lines, ending in a newline), on a
        # file opened for appending: lines of runs logged at once by several threads or
        # processes do not interleave.
        with self._logs_lock:
            handle = self._logs.get(log)
            try:
                if handle is None:
                    log.parent.mkdir(parents=True, exist_ok=True)
                    # Unbuffered: each write is one system call, on disk for readers at once.
                    handle = self._logs[log] = log.open("ab", buffering=0)
                if log in self._torn:  # a line cut short: the next starts on its own line
                    text = b"\n" + text
                # An unbuffered write may write less than it was given (a disk filling up,
                # a file size limit) without an error: what is left is written until it
                # is all on disk, or the write that cannot be made raises.
                view = memoryview(text)
                while view:
                    written = handle.write(view)
                    if not written:
                        raise OSError(errno.EIO, "the file took no more bytes")
                    view = view[written:]
                self._torn.discard(log)
            except OSError as exc:
                if handle is not None:
                    self._torn.add(log)
                    with suppress(OSError):
                        handle.close()
                    self._logs.pop(log, None)
                raise GatesError(
                    f"the run log {log} could not be written ({exc.strerror or exc}): the "
                    f"step was not decided or taken (failing closed); nothing of it is "
                    f"in the run's history") from exc

    def _log_path(self) -> Path:
        if self._log is not None:
            return self._log
        day = datetime.now(UTC).date().isoformat()
        return self._logs_dir / f"{day}-{self.agent}-guard.jsonl"


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _one_step_at_a_time(method: Callable[Concatenate[GuardedRun, _P], _R],
                        ) -> Callable[Concatenate[GuardedRun, _P], _R]:
    """``method`` of a run, run under the run's lock."""
    @functools.wraps(method)
    def locked(run: GuardedRun, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with run._lock:
            return method(run, *args, **kwargs)
    return locked


class GuardedRun:
    """One live run behind a :class:`Guard`: its history, its decisions, its log."""

    def __init__(self, guard: Guard, run_id: str, *, goal: str, context: dict[str, Any],
                 log: Path) -> None:
        self.guard = guard
        self.run_id = run_id
        self.context = context
        self.history = History()
        """Every step of the run so far, as the controls read it."""
        self.log = log
        """The native JSONL file the run is written to."""
        self._ids = itertools.count(1)
        self._tools: dict[str, str] = {}  # the tool each call id last named
        self._unanswered: set[str] = set()
        self._finished = False
        # A run's steps are decided and logged one at a time, each after the last (threads
        # running a model's parallel calls share the run): two refunds decided at once
        # would each be decided without the other in the history, and logged as one step.
        self._lock = threading.Lock()
        self._quoted_id = json.dumps(run_id)
        self._step_prefix = f'{{"run_id": {self._quoted_id}, '.encode()
        self._metadata_prefix = (f'{{"kind": "run", "run_id": {self._quoted_id}, '
                                 f'"metadata": ').encode()
        started = _now()
        self._spans: RunSpans | None = None
        self._append(UserInput(content=goal, at=started), header={
            "schema_version": 1, "kind": "run", "run_id": run_id, "agent": guard.agent,
            "started_at": started.isoformat(), "context": context})
        tracer = guard._tracers.tracer()
        if tracer is not None:
            self._spans = RunSpans(tracer, run_id=run_id, agent=guard.agent, goal=goal,
                                   context=context, started=started)

    @_one_step_at_a_time
    def call(self, tool: str, args: Mapping[str, Any] | None = None, *,
             call_id: str | None = None) -> GuardDecision:
        """Decide a tool call before the tool runs, and log it.

        Allowed: run the tool, then give its answer to :meth:`result`. Review: hold the
        call for a person, then log what happened with :meth:`result`. Denied: do not run
        it; the guard has logged a blocked result naming the rule.

        Raises:
            GatesError: ``call_id`` names a call of this run still waiting for its answer
                (answers are logged by id); nothing is decided or logged. An id whose
                call was answered may be used again, as models that number every turn's
                calls from ``call_0`` do. Or the run log cannot be written (a full disk):
                no decision is given, and the call is not in the run's history; do not
                run the tool.
        """
        if call_id is None:
            call_id = f"{self.run_id}-call-{next(self._ids)}"
            while call_id in self._tools:  # a caller's own id took this one
                call_id = f"{self.run_id}-call-{next(self._ids)}"
        elif call_id in self._unanswered:
            # A second call under the id would have the first call's answer attributed to
            # the second tool (and read so by later rules).
            raise GatesError(
                f"run {self.run_id}: call id {call_id!r} names a {self._tools[call_id]} "
                f"call of this run still waiting for its answer; give each call its own "
                f"id (or none: the guard numbers them); nothing was decided or logged")
        # Decided on a copy made of JSON's own types, the data the log holds: a caller
        # that changes its dict afterwards, or hands over an object whose comparisons lie
        # (an int subclass with its own `>`), changes nothing the guard decided or reads
        # later, and the gate replays what was decided.
        try:
            arguments, unfit = _json_data(dict(args or {}), ""), None
        except _NotJson as exc:
            arguments, unfit = _as_logged(dict(args or {})), str(exc)
        step = ToolCall(tool=tool, arguments=arguments, call_id=call_id, at=_now())
        decision = (self.guard.decide(step, self.history, self.context) if unfit is None
                    else Decision(effect="deny", rule="guard.arguments", reason=(
                        f"{unfit}: the arguments are not JSON data, so the controls "
                        f"cannot decide them as the gate replays the log; failing closed")))
        index = len(self.history)
        text = self._lines(step, decision)
        blocked = None
        if decision.effect == "deny":
            # The call, its decision and its blocked result in one write: one system call,
            # and no log that holds a denied call without its answer.
            blocked = ToolResult(tool=tool, call_id=call_id, blocked=True, at=_now(),
                                 error=f"denied by {decision.rule}: {decision.reason}")
            text += self._lines(blocked, index=index + 1)
        # Logged, then taken: a call whose lines could not be written is not decided (the
        # write raises) and is nothing later decisions read.
        self.guard._emit(self.log, text)
        self.history.append(step)
        self._tools[call_id] = tool
        if blocked is None:
            self._unanswered.add(call_id)
        else:
            self.history.append(blocked)
        if self._spans is not None:
            self._spans.call(step, decision, index)
            if blocked is not None:
                self._spans.result(blocked)
        return _ruling(decision, index, call_id)

    @_one_step_at_a_time
    def result(self, call_id: str, value: Any = None, *, error: str | None = None,
               blocked: bool = False) -> None:
        """Log what a call returned (``value``), or the error it raised, or (``blocked``)
        that a person stopped it; later decisions read it in the history."""
        tool = self._tools.get(call_id)
        if tool is None:
            raise GatesError(f"run {self.run_id}: no tool call {call_id!r} to answer")
        # The answer as the log holds it (a copy of JSON's own types): a caller that
        # changes its object afterwards (an order's total) changes no later decision.
        copied = _as_logged(value, strict=True)
        self._answer(ToolResult(tool=tool, call_id=call_id, result=copied, error=error,
                                blocked=blocked, at=_now()))
        self._unanswered.discard(call_id)

    def _answer(self, step: ToolResult) -> None:
        self._append(step)
        if self._spans is not None:
            self._spans.result(step)

    @_one_step_at_a_time
    def revise(self, call_id: str, arguments: Mapping[str, Any], *, by: str,
               review: str | None = None) -> None:
        """Record that a held call runs with a reviewer's ``arguments``, not the agent's.

        What ran is what later decisions must read: the call's step in :attr:`history` is
        replaced by the edited call (same tool, id and time), so rules over the run's
        history (a total of refunds, "after X never Y" on arguments) count the refund that
        was issued, not the one that was asked for. The log keeps both: the agent's call
        as it was decided, and the edit in the run's metadata
        (``guard.edited.<n>``: the arguments, who edited them, the review); the
        call's span carries the arguments that ran (the agent's as
        ``reinstate.tool.call.requested_arguments``). Decide the edit first
        (:func:`~gates.hold_for_review` and the MCP gateway do).

        Raises:
            GatesError: the run has no call ``call_id``, or has ended.
        """
        if self._finished:
            raise GatesError(f"run {self.run_id} has ended")
        steps = list(self.history)
        calls = [(i, s) for i, s in enumerate(steps)
                 if isinstance(s, ToolCall) and s.call_id == call_id]
        if not calls:
            raise GatesError(f"run {self.run_id}: no tool call {call_id!r} to revise")
        index, asked = calls[-1]
        ran = ToolCall(tool=asked.tool, arguments=_as_logged(dict(arguments), strict=True),
                       call_id=call_id, at=asked.at)
        steps[index] = ran
        edit: dict[str, Any] = {"arguments": ran.arguments, "by": by}
        if review is not None:
            edit["review"] = review
        self.guard._emit(self.log, self._metadata_prefix + _json_bytes(
            {f"guard.edited.{index}": edit}) + b"}\n")
        # A history's steps are records, never changed in place: a new one, made once per
        # edit (a person's decision, so rare), holds the data of the call that ran.
        self.history = History(steps)
        if self._spans is not None:
            self._spans.revise(ran, asked.arguments, review)

    @_one_step_at_a_time
    def output(self, text: str) -> GuardDecision:
        """Decide an answer before the user sees it, and log it: show it only when allowed."""
        step = Output(content=text, at=_now())
        decision = self.guard.decide(step, self.history, self.context)
        index = self._append(step, decision)
        if self._spans is not None:
            self._spans.output(step, decision, index)
        return _ruling(decision, index, None)

    @_one_step_at_a_time
    def finish(self, stop_reason: str, *, failure: BaseException | None = None) -> None:
        """Log why the run ended (and the exception that ended it, if one did) and close
        its log and spans; later calls change nothing."""
        if self._finished:
            return
        self._finished = True
        # The bytes json.dumps gives of {"schema_version": 1, "kind": "run", "run_id": ...,
        # "outcome": {"stop_reason": ...}}, without building and walking the dict.
        self.guard._emit(self.log, (
            f'{{"schema_version": 1, "kind": "run", "run_id": {self._quoted_id}, '
            f'"outcome": {{"stop_reason": {json.dumps(stop_reason)}}}}}\n').encode())
        if self._spans is not None:
            self._spans.finish(stop_reason, failure)

    def _append(self, step: Step, decision: Decision | None = None, *,
                header: dict[str, Any] | None = None) -> int:
        """Log ``step`` (and its decision), then add it to the history: a step whose
        lines could not be written raises and is not in the history."""
        index = len(self.history)
        self.guard._emit(self.log, self._lines(step, decision, header=header))
        self.history.append(step)
        return index

    def _lines(self, step: Step, decision: Decision | None = None, *,
               header: dict[str, Any] | None = None, index: int | None = None) -> bytes:
        """The log lines of ``step`` (and its decision's), to write, ``step`` being the
        history's step ``index`` (default: the next)."""
        if self._finished:
            raise GatesError(f"run {self.run_id} has ended")
        index = len(self.history) if index is None else index
        # pydantic's own JSON of the step (its serializer called directly: model_dump_json
        # adds a Python layer that costs as much as the serializing), with the run id put
        # first: the native step line.
        text = b"".join((
            json.dumps(header).encode() + b"\n" if header is not None else b"",
            self._step_prefix, step.__pydantic_serializer__.to_json(step, exclude_none=True)[1:],
            b"\n"))
        if decision is not None:
            # A header line adds to the run's metadata (readers merge a run's headers).
            text += (self._metadata_prefix + f'{{"guard.step.{index}": '.encode()
                     + _decision_json(decision) + b"}}\n")
        return text


# A decision's JSON (pydantic's own) by (effect, rule, reason): a guard decides the same
# few ways over and over, and dumping a model costs more than the rest of logging a step.
_DECISIONS: dict[tuple[str, str, str], bytes] = {}
_DECISIONS_KEPT = 4096


def _decision_json(decision: Decision) -> bytes:
    if type(decision) is not Decision:  # a subclass may have more fields: not cached
        return decision.__pydantic_serializer__.to_json(decision)
    key = (decision.effect, decision.rule, decision.reason)
    found = _DECISIONS.get(key)
    if found is None:
        if len(_DECISIONS) >= _DECISIONS_KEPT:
            _DECISIONS.clear()
        found = _DECISIONS[key] = decision.__pydantic_serializer__.to_json(decision)
    return found


def _json_bytes(value: Any) -> bytes:
    # pydantic's serializer, as the step lines': the same values, written the same way.
    return pydantic_core.to_json(value)


class _NotJson(Exception):
    """Where a call's arguments hold something that is not JSON data, and what."""


def _json_data(value: Any, where: str) -> Any:
    """A copy of ``value`` made of JSON's own types (dict, list, str, int, float, bool,
    None), read through the built-in types' own methods; raises :class:`_NotJson` naming
    the place of anything else.

    A subclass of int, float or str becomes the value it holds (what its JSON is), so its
    own comparisons are never what a bound is checked with; a tuple becomes a list. A
    Decimal, a set, a date or any other object is refused: its JSON is text or nothing,
    so what the log says the controls decided would not be what the tool is given.
    """
    if value is None or value is True or value is False:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return int.__index__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, dict):
        copied: dict[str, Any] = {}
        for key, item in dict.items(value):
            if not isinstance(key, str):
                raise _NotJson(f"{where or 'arguments'}: the key {key!r} is no string")
            key = str.__str__(key)
            copied[key] = _json_data(item, f"{where}.{key}" if where else key)
        return copied
    if isinstance(value, list | tuple):
        items = list.__iter__(value) if isinstance(value, list) else tuple.__iter__(value)
        return [_json_data(item, f"{where}[{i}]") for i, item in enumerate(items)]
    raise _NotJson(f"{where or 'arguments'}: a {type(value).__name__}")


def _as_logged(value: Any, *, strict: bool = False) -> Any:
    """``value`` as the run log holds it, read back: pydantic's JSON of it (NaN and the
    infinities as null, as the step lines write them), parsed into a copy of its own.
    Unless ``strict``, what pydantic cannot write is written as its ``repr``."""
    return pydantic_core.from_json(pydantic_core.to_json(
        value, inf_nan_mode="null", fallback=None if strict else repr))


def _ruling(decision: Decision, step: int, call_id: str | None) -> GuardDecision:
    return GuardDecision(effect=decision.effect, rule=decision.rule, reason=decision.reason,
                         step=step, call_id=call_id)


def _close_logs(logs: dict[Path, IO[bytes]], lock: threading.Lock) -> None:
    with lock:
        for handle in logs.values():
            handle.close()
        logs.clear()


def _close_watch(holder: list[ChangeWatch]) -> None:
    for watch in holder:
        watch.close()
    holder.clear()


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(paths: tuple[str, ...]) -> _Stamp:
    stamps: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            # os.stat on a prepared string: no Path object a decision, as this runs on each.
            found = os.stat(path)  # noqa: PTH116
        except OSError:
            stamps.append(None)
            continue
        stamps.append((found.st_mtime_ns, found.st_size, found.st_ino))
    return tuple(stamps)


def _trusted(stamp: _Stamp) -> _Stamp | None:
    """The stamp to compare against next time, or None (read again) when a file changed
    too recently for a later write to be sure to move its stamp."""
    newest = max((s[0] for s in stamp if s is not None), default=0)
    return stamp if time.time_ns() - newest > _SETTLE_NS else None


def _read(paths: tuple[Path, ...], code: tuple[Path, ...] = (),
          ) -> tuple[dict[str, str], str, dict[Path, bytes]]:
    """The control files' texts by name, the digest of their bytes and of the predicate
    modules' files (``code``), and each file's bytes by path (a missing one left out): the
    loader parses and runs these very bytes. A file missing, too large or not UTF-8 is left to the
    loader, which names the problem."""
    digest = hashlib.sha256()
    texts: dict[str, str] = {}
    raw: dict[Path, bytes] = {}
    for path in code:
        try:
            raw[path] = data = read_regular(path)
            digest.update(data)
        except FileNotFoundError:
            digest.update(b"\0missing")
        digest.update(b"\0")
    for path in paths:
        try:
            raw[path] = data = read_regular(path)
        except FileNotFoundError:
            digest.update(b"\0missing\0")
            continue
        digest.update(data)
        digest.update(b"\0")
        if len(data) <= MAX_USER_FILE_BYTES:
            with suppress(UnicodeDecodeError):
                texts[path.name] = data.decode("utf-8")
    return texts, digest.hexdigest(), raw
