"""``reinstate review list|show|approve|reject|edit|serve``: the human review queue."""

from __future__ import annotations

import json
from typing import Any

import click

from evalsuite import InvalidInput
from gates._cli._common import ctx
from gates._store.review_queue import ReviewQueue
from gates._store.reviews import ReviewItem
from gates._visible import visible

# A call's arguments or an output's text is cut to this many characters in the list.
WIDTH = 80

REASON = click.option("--reason", required=True,
                      help="Why you decide so (kept in the item and the audit log).")


@click.group("review")
def command() -> None:
    """The human review queue: calls and outputs held for a person by the guard, the MCP
    gateway or the review mode, and the decisions on them (each an audit entry)."""


def _queue() -> ReviewQueue:
    return ReviewQueue(ctx().workspace())


def _say(line: str) -> None:
    # Stored text came from an agent and its users: a terminal escape in it is shown, not
    # obeyed, and so is a character that shows nothing or reorders what follows (a bidi
    # override, a zero-width space, a Unicode tag): a reviewer reads the arguments that run.
    ctx().out.print(visible(line, keep="\n"), markup=False, highlight=False)


def _what(item: ReviewItem, width: int | None = WIDTH) -> str:
    if item.kind == "call":
        text = f"{item.tool}({json.dumps(item.args or {}, ensure_ascii=False, default=str)})"
    else:
        text = f"output: {item.text or ''}"
    text = " ".join(text.split())
    return text if width is None or len(text) <= width else f"{text[:width - 1]}…"


@command.command("list")
@click.argument("agent", required=False)
@click.option("--all", "every", is_flag=True, help="Decided items too, not only pending ones.")
@click.option("--json", "as_json", is_flag=True, help="Print the items as a JSON array.")
def list_command(agent: str | None, every: bool, as_json: bool) -> int:
    """Pending items (of AGENT only when given), oldest first: id, agent, status, what is
    held and why."""
    queue = _queue()
    if agent is not None and queue.workspace is not None:
        agent = queue.workspace.require_agent(agent)
    items = queue.items(agent, status=None if every else "pending")
    unlike = queue.unlike_submitted(items)
    _warn(unlike)
    if as_json:
        click.echo(json.dumps([i.model_dump(mode="json") for i in items], indent=2))
        return 0
    rows = [("id", "agent", "status", "submitted (UTC)", "held")] + [
        (i.id, i.agent, i.status, f"{i.submitted_at:%Y-%m-%d %H:%M:%S}",
         f"NOT AS SUBMITTED (reinstate review show {i.id}): {_what(i)}" if i.id in unlike
         else _what(i))
        for i in items]
    widths = [max(len(row[n]) for row in rows) for n in range(4)]
    for row in rows:
        _say("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False))
             + f"  {row[4]}")
    which = "item(s)" if every else "pending item(s)"
    _say(f"{len(items)} {which}" + ("" if every else " (--all shows decided ones too)"))
    return 0


@command.command("show")
@click.argument("review_id")
@click.option("--json", "as_json", is_flag=True, help="Print the item as JSON.")
def show_command(review_id: str, as_json: bool) -> int:
    """Everything about one item: what is held, why, and its decision if any."""
    queue = _queue()
    item = queue.get(review_id)
    _warn(queue.unlike_submitted([item]))
    if as_json:
        click.echo(json.dumps(item.model_dump(mode="json"), indent=2))
        return 0
    for label, value in _fields(item):
        _say(f"{label + ':':<16}{value}")
    return 0


def _warn(unlike: dict[str, str]) -> None:
    """Say on stderr which items are not what their runtime submitted (stdout keeps the
    items as the store holds them, so ``--json`` stays an item's JSON)."""
    for review, problem in unlike.items():  # the id and the problem quote the row: see _say
        click.echo(visible(f"warning: {review} is NOT AS SUBMITTED: {problem}. Do not decide "
                           f"on what it shows; only rejecting it is possible."), err=True)


def _fields(item: ReviewItem) -> list[tuple[str, str]]:
    found: list[tuple[str, Any]] = [
        ("id", item.id), ("agent", item.agent), ("status", item.status),
        ("kind", item.kind), ("tool", item.tool),
        ("args", json.dumps(item.args, ensure_ascii=False, default=str)
         if item.args is not None else None),
        ("text", item.text), ("rule", item.rule), ("routed because", item.reason),
        ("run", item.run_id), ("source", item.source),
        ("submitted", f"{item.submitted_at:%Y-%m-%d %H:%M:%S} UTC"),
        ("decided", f"{item.decided_at:%Y-%m-%d %H:%M:%S} UTC" if item.decided_at else None),
        ("decided by", item.decided_by), ("decision", item.decision_reason),
        ("edited args", json.dumps(item.edited_args, ensure_ascii=False, default=str)
         if item.edited_args is not None else None),
        ("edited text", item.edited_text)]
    return [(label, str(value)) for label, value in found if value is not None]


def _decided(item: ReviewItem) -> int:
    _say(f"{item.id} {item.status} by {item.decided_by}: {item.decision_reason} "
         f"({'released' if item.released else 'not released'})")
    return 0


@command.command("approve")
@click.argument("review_id")
@REASON
def approve_command(review_id: str, reason: str) -> int:
    """Release a pending item as it was submitted."""
    return _decided(_queue().approve(review_id, actor=ctx().actor, reason=reason))


@command.command("reject")
@click.argument("review_id")
@REASON
def reject_command(review_id: str, reason: str) -> int:
    """Refuse a pending item: the call does not run, the output is not shown."""
    return _decided(_queue().reject(review_id, actor=ctx().actor, reason=reason))


@command.command("edit")
@click.argument("review_id")
@REASON
@click.option("--args", "args_json", help="A call's new arguments, as a JSON object.")
@click.option("--text", help="An output's new text.")
def edit_command(review_id: str, reason: str, args_json: str | None,
                 text: str | None) -> int:
    """Release a pending item with your change: --args for a call, --text for an output."""
    if (args_json is None) == (text is None):
        raise click.UsageError("give --args JSON (a call) or --text TEXT (an output)")
    args = parse_args_json(args_json, "--args") if args_json is not None else None
    return _decided(_queue().edit(review_id, actor=ctx().actor, reason=reason, args=args,
                                  text=text))


def parse_args_json(text: str, where: str) -> dict[str, Any]:
    """A call's arguments as a reviewer typed them: a JSON object, else one clean error."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(None, where, f"a JSON object of arguments ({exc})") from None
    if not isinstance(value, dict):
        raise InvalidInput(None, where, f"a JSON object of arguments, not "
                                        f"{type(value).__name__}")
    return value


@command.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (the page decides: keep it on this machine unless "
                   "a proxy in front authenticates reviewers).")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port to listen on (0: any free one; the address is printed).")
def serve_command(host: str, port: int) -> int:
    """A local web page for reviewers: the pending items, each with approve, reject and
    edit forms (decided as the actor of this command). Open the address it prints: its
    token shows the page, and a request without it is refused. Ctrl-C stops it."""
    from gates._cli._review_server import serve  # the page's code, only for this command

    c = ctx()
    return serve(_queue(), host=host, port=port, actor=c.actor, say=_say)
