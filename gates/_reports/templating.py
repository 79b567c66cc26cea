"""The Jinja2 templates of the report and the postmortem, escaped by default in both formats.

Everything these documents show can come from an attacker: the incident this tool exists
for was a crafted customer message, and the report quotes what the agent answered. So
escaping is never left to the template author: HTML uses Jinja2's autoescape, and
Markdown escapes every ``{{ value }}`` through ``finalize``. A template opts out only with
the ``code`` filter, which makes a code span that cannot be broken out of. Both write out
hidden characters (a bidi override, a zero-width space) in every value, so a browser shows
an agent's text as it is rather than reordered.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from gates._verdict.diff import short
from gates._visible import visible

# Characters that start Markdown syntax anywhere in a line (GFM), and a backslash itself.
_INLINE = re.compile(r"([\\`*\[\]<>|~])")
# Underscores only make emphasis at a word's edge: issue_refund stays readable.
_EDGE_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
# What makes a heading, list item or quote when it starts a line ("1." before a space).
_LINE_START = re.compile(r"^(#{1,6}|[+\-]|>|(?P<number>\d{1,9})[.)])(?=\s|$)|^>")


class Raw(str):
    """Markdown that is already safe: the output of the ``code`` filter."""


def markdown_escape(value: Any) -> str:
    """A value as Markdown text that renders literally, on one line."""
    if value is None:
        return ""
    if isinstance(value, Raw):
        return value
    text = _one_line(value)
    text = _EDGE_UNDERSCORE.sub(r"\\_", _INLINE.sub(r"\\\1", text))
    return _LINE_START.sub(_escape_start, text)


def _escape_start(match: re.Match[str]) -> str:
    number = match.group("number")
    if number is not None:  # the marker is the punctuation after the digits
        return f"{number}\\{match.group(0)[len(number):]}"
    return "\\" + match.group(0)


def html_visible(value: Any) -> Any:
    """A value with its hidden characters written out (``\\u202e``) before autoescape:
    a bidi override in an agent's answer would show it reordered to the reviewer. Line
    breaks and tabs stay (a ``<pre>`` or a textarea shows them as they are). HTML already
    made safe (a macro's output, ``tojson``) stays safe: the escapes are plain text."""
    if hasattr(value, "__html__"):
        return Markup(visible(str(value.__html__()), keep="\n\t"))
    return visible(str(value), keep="\n\t")


def code(value: Any) -> Raw:
    """A Markdown code span holding ``value`` literally, whatever backticks it contains."""
    text = _one_line(value)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return Raw(f"{fence}{pad}{text}{pad}{fence}")


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return stamp(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _one_line(value: Any) -> str:
    """A value's text on one line: whitespace runs joined into a space, and every other
    control or hidden character written out (``\\x1b``, ``\\u202e``): a terminal showing
    the Markdown (`reinstate report`, a CI log) would act on an escape sequence."""
    text = " ".join(_text(value).split())
    return visible(text)


def stamp(value: datetime | None) -> str:
    """``2026-11-26 04:27 UTC``."""
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


def reinstate_version() -> str:
    """The installed version, printed in every document's footer."""
    try:
        return version("reinstate")
    except PackageNotFoundError:  # pragma: no cover - running from an uninstalled checkout
        return "unknown"


def _common(env: Environment) -> Environment:
    env.filters["stamp"] = stamp
    env.filters["code"] = code
    env.filters["short"] = short
    env.globals["version"] = reinstate_version()
    return env


@cache
def html_environment() -> Environment:
    """Templates rendered to HTML, every value escaped and its hidden characters written out."""
    return _common(Environment(
        loader=PackageLoader("gates._reports", "templates"),
        autoescape=select_autoescape(["html", "html.j2"], default=True), finalize=html_visible,
        undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    ))


@cache
def markdown_environment() -> Environment:
    """Templates rendered to Markdown, every value escaped by ``finalize``."""
    return _common(Environment(
        loader=PackageLoader("gates._reports", "templates"),
        autoescape=False, finalize=markdown_escape,
        undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True,
    ))


def render_html(template: str, **context: Any) -> str:
    """Render ``templates/<template>`` as HTML."""
    return html_environment().get_template(template).render(**context)


def render_markdown(template: str, **context: Any) -> str:
    """Render ``templates/<template>`` as Markdown."""
    text = markdown_environment().get_template(template).render(**context)
    # Templates stay readable with blank lines around blocks; the document needs at most one.
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
