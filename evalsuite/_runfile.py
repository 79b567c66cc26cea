"""The run file: every trial of an eval run, so a failure can be read without rerunning.

JSON lines: a header (``{"schema_version": 1, "kind": "eval_run", …}``), then one line
per trial with the case, what the agent did, and how it was judged. The file is written
as trials finish under a temporary name and renamed when the run completes, so a file
under its final name is always whole.

What the agent said, read and sent is redacted as it is written (the gate judged it in
memory before): e-mail addresses, phone and card numbers and tokens become placeholders,
one redactor per case, seeded with the case's own input and fixtures. So the same value
gets the same placeholder in every trial of a case, and in every run of that case
whatever order its trials finished in, and two run files compare like with like.
"""

from __future__ import annotations

import os
import stat
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import ValidationError

from evalsuite._case import EvalCase
from evalsuite._documents import _fsync_dir
from evalsuite._errors import InvalidInput
from evalsuite._files import read_regular
from evalsuite._record import Record
from evalsuite._redaction import Redactor
from evalsuite._runner import TrialResult

try:
    import fcntl
except ImportError:  # no flock (Windows): partial files are then left, never removed wrongly
    fcntl = None  # type: ignore[assignment]


class EvalRunHeader(Record):
    """What the run was."""

    schema_version: Literal[1] = 1
    """Version of this file's format."""
    kind: Literal["eval_run"] = "eval_run"
    """Marks the header line."""
    agent: str
    """The agent evaluated."""
    agent_version: str | None = None
    """Its version."""
    adapter: str = ""
    """How it was reached (python, subprocess, http, replay)."""
    started_at: datetime
    """When the run started, in UTC."""
    settings: dict[str, Any]
    """Trials, concurrency, timeout, retries, confidence."""


class TrialLine(Record):
    """One trial, as recorded."""

    kind: Literal["trial"] = "trial"
    """Marks a trial line."""
    case_id: str
    """The case."""
    tags: list[str]
    """The case's input types."""
    result: TrialResult
    """What happened and how it was judged."""


class RunFileWriter:
    """Appends trials to ``<path>.partial`` and renames it to ``path`` when finished."""

    def __init__(self, path: Path, header: EvalRunHeader) -> None:
        self.path = path
        self._partial = path.with_name(path.name + PARTIAL)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: IO[str] = _locked_new(self._partial)
        remove_abandoned(path.parent)
        self._handle.write(header.model_dump_json() + "\n")
        self._redactors: dict[str, Redactor] = {}
        # Trials still to come per case: a case's redactor is let go after its last one,
        # so a run of thousands of cases does not hold every case's redactor to the end.
        self._default_trials = header.settings.get("trials")
        self._left: dict[str, int] = {}

    def trial(self, case: EvalCase, result: TrialResult) -> None:
        """Record one trial, redacted."""
        line = TrialLine(case_id=case.id, tags=case.tags,
                         result=redact_trial(result, self._redactor(case)))
        self._handle.write(line.model_dump_json(exclude_none=True) + "\n")
        expected = case.trials or self._default_trials
        if isinstance(expected, int):
            left = self._left.pop(case.id, expected) - 1
            if left > 0:
                self._left[case.id] = left
            else:
                del self._redactors[case.id]

    def _redactor(self, case: EvalCase) -> Redactor:
        """The case's redactor; the case's own values are numbered first, in a fixed order."""
        if case.id not in self._redactors:
            redactor = Redactor()
            redactor.value([case.input.model_dump(mode="json"),
                            [f.model_dump(mode="json") for f in case.tools]])
            self._redactors[case.id] = redactor
        return self._redactors[case.id]

    def abandon(self) -> None:
        """The run stopped before it finished: close the file and remove it."""
        self._handle.close()
        self._partial.unlink(missing_ok=True)

    def finish(self) -> Path:
        """Make the file whole under its final name; on failure leave nothing behind."""
        try:
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except BaseException:
            self._handle.close()
            self._partial.unlink(missing_ok=True)
            raise
        # Renamed while still open, so locked: a writer that starts now never takes the
        # partial file for an abandoned one between the close and the rename.
        self._partial.replace(self.path)
        self._handle.close()
        _fsync_dir(self.path.parent)  # the rename itself survives a crash
        return self.path


# A run file's name while it is written. Its writer holds an exclusive flock on it until it
# is renamed: the kernel lets the lock go when the writer dies, however it dies (a gate
# killed midway), so a partial file nobody holds is one no live process will finish. The
# lock, not a pid in the name: a pid is reused, and two containers sharing a workspace
# each have their own.
PARTIAL = ".partial"


def _locked_new(partial: Path) -> IO[str]:
    """``partial`` created empty and open for writing, locked; retried if another writer's
    sweep removed it between its creation and the lock."""
    while True:
        handle = partial.open("w", encoding="utf-8")
        if fcntl is None:
            return handle
        fcntl.flock(handle, fcntl.LOCK_EX)
        if _still_at(partial, handle.fileno()):
            return handle
        handle.close()


def _still_at(path: Path, fd: int) -> bool:
    try:
        return os.path.samestat(os.lstat(path), os.fstat(fd))
    except FileNotFoundError:
        return False


def remove_abandoned(folder: Path) -> list[Path]:
    """Remove the partial run files in ``folder`` that no live process is writing (a run
    killed midway left them, and nothing else ever would); the ones removed.

    One that another writer holds locked is left alone, and so is anything that is not a
    regular file: only what a writer made and let go is removed."""
    removed: list[Path] = []
    if fcntl is None:
        return removed
    for partial in folder.glob(f"*{PARTIAL}"):
        try:
            fd = os.open(partial, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue  # gone already, a link, not ours to read: left as it is
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live writer holds it
            if _still_at(partial, fd):  # not renamed or replaced since it was opened
                partial.unlink()
                removed.append(partial)
        except OSError:
            continue  # a sweep is housekeeping: it never fails the run that does it
        finally:
            os.close(fd)
    return removed


def redact_trial(result: TrialResult, redactor: Redactor) -> TrialResult:
    """A trial with what the agent did, why it errored and how it was judged redacted."""
    return result.model_copy(update={
        "error": redactor.text(result.error) if result.error is not None else None,
        "run": redactor.run(result.run) if result.run is not None else None,
        "judgements": [j.model_copy(update={"detail": redactor.text(j.detail)})
                       for j in result.judgements],
    })


def read_run_file(path: Path) -> tuple[EvalRunHeader, list[TrialLine]]:
    """Read a run file, naming the line of any mistake."""
    try:
        lines = read_regular(path).decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(path, "", f"cannot read the run file ({exc})") from None
    if not lines:
        raise InvalidInput(path, "", "empty file: expected an eval run header line")
    try:
        header = EvalRunHeader.model_validate_json(lines[0])
    except ValidationError:
        raise InvalidInput(path, "$", "expected an eval run header (kind: eval_run)",
                           line=1) from None
    trials = []
    for number, line in enumerate(lines[1:], start=2):
        try:
            trials.append(TrialLine.model_validate_json(line))
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            raise InvalidInput(path, ".".join(map(str, first["loc"])) or "$", first["msg"],
                               line=number) from None
    return header, trials


# Fields that change between runs without the behaviour changing.
_VOLATILE = r"\['(call_id|at|run_id|seconds|attempts|started_at)'\]"


def _behaviour(trials: list[TrialLine]) -> dict[str, Any]:
    ordered = sorted(trials, key=lambda t: t.result.trial)
    return {
        "passed": [t.result.passed for t in ordered],
        "errors": [t.result.error for t in ordered if t.result.error],
        "trials": [
            {
                "steps": [s.model_dump(mode="json", exclude_none=True)
                          for s in (t.result.run.steps if t.result.run else [])],
                "judgements": {j.criterion: j.passed for j in t.result.judgements},
            }
            for t in ordered
        ],
    }


def diff_runs(a: list[TrialLine], b: list[TrialLine]) -> dict[str, list[str]]:
    """Per case, what changed in behaviour between two runs; unchanged cases are left out."""
    def grouped(lines: list[TrialLine]) -> dict[str, list[TrialLine]]:
        out: dict[str, list[TrialLine]] = {}
        for line in lines:
            out.setdefault(line.case_id, []).append(line)
        return out

    before, after = grouped(a), grouped(b)
    changes: dict[str, list[str]] = {}
    for case_id in sorted(set(before) | set(after)):
        if case_id not in after:
            changes[case_id] = ["only in the first run"]
        elif case_id not in before:
            changes[case_id] = ["only in the second run"]
        else:
            # Imported on use: deepdiff imports pandas (and numpy, pyarrow) whenever it is
            # installed, which would weigh on every eval and gate that never compares.
            from deepdiff import DeepDiff

            diff = DeepDiff(_behaviour(before[case_id]), _behaviour(after[case_id]),
                            exclude_regex_paths=[_VOLATILE], verbose_level=2)
            if diff:
                changes[case_id] = [line for line in diff.pretty().splitlines() if line.strip()]
    return changes
