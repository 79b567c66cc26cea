"""A rich console hook that writes out every hidden character in what it prints."""

from __future__ import annotations

from collections.abc import Iterator

from rich.console import Console, ConsoleOptions, ConsoleRenderable, RenderHook
from rich.segment import Segment

from gates._visible import visible


class ShowHidden(RenderHook):
    """Wraps each thing printed so that a terminal escape, a bidi override or a zero-width
    character in its text reaches the terminal written out (``\\x1b``, ``\\u202e``): a
    command that prints a log line, a file name or a summary without quoting it first
    still cannot clear the screen, hide a link or reorder what a reviewer reads. rich's own
    styles and cursor moves are not text, so they pass."""

    def process_renderables(self, renderables: list[ConsoleRenderable],
                            ) -> list[ConsoleRenderable]:
        return [_Shown(renderable) for renderable in renderables]


class _Shown:
    def __init__(self, renderable: ConsoleRenderable) -> None:
        self.renderable = renderable

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Segment]:
        for segment in console.render(self.renderable, options):
            if segment.control or segment.text.isprintable():
                yield segment
            else:  # the line breaks and tabs rich lays out stay what they are
                yield Segment(visible(segment.text, keep="\n\t"), segment.style)
