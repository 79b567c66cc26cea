"""Progress of an eval run: a bar on a terminal, a few plain lines in CI logs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from evalsuite import CaseResult
from evalsuite import Progress as Callback


@contextmanager
def progress(console: Console, what: str) -> Iterator[Callback]:
    """A callback for the engine that shows trials done out of the total."""
    if console.is_terminal:
        bar = Progress("[progress.description]{task.description}", BarColumn(),
                       MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                       transient=True)
        task = bar.add_task(what, total=None)
        with bar:
            def on_terminal(_: CaseResult | None, done: int, total: int) -> None:
                # The engine calls from its own thread; rich's progress is thread-safe.
                bar.update(task, completed=done, total=total)
            yield on_terminal
        return
    shown = -1

    def in_a_log(_: CaseResult | None, done: int, total: int) -> None:
        nonlocal shown
        tenth = done * 10 // total
        if tenth > shown:  # about ten lines for a whole run, whatever its size
            shown = tenth
            console.print(f"{what}: {done}/{total} trials", highlight=False)
    yield in_a_log
