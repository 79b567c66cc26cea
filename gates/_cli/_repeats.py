"""Options given twice: an option that takes one value refuses a second, as a usage error.

click keeps only the last value of an option without ``multiple=True`` and says nothing,
so ``gate --json a.json --json b.json`` would write one file and ``--actor`` twice would
record one of two people. Options that make sense repeated are declared ``multiple=True``
(every value applies); for every other option this check, run once by the command group
before any command starts, refuses the repeat (exit 2) instead of dropping a value.
"""

from __future__ import annotations

from collections import Counter

import click


def refuse_repeats(command: click.Command, parent: click.Context | None, name: str,
                   args: list[str]) -> None:
    """Raise :class:`click.UsageError` when ``args`` give a single-valued option of
    ``command`` (or of the sub-command they go on to, at any depth) more than once.

    Arguments click cannot parse are left for click's own parsing to report.
    """
    context = click.Context(command, parent=parent, info_name=name,
                            **command.context_settings)
    try:
        _, rest, order = command.make_parser(context).parse_args(args=list(args))
    except click.UsageError:
        return
    counts = Counter(id(param) for param in order)
    for param in command.get_params(context):
        if (isinstance(param, click.Option) and not param.multiple and not param.count
                and param.expose_value and counts[id(param)] > 1):
            names = "/".join(param.opts + param.secondary_opts)
            raise click.UsageError(
                f"option {names} is given {counts[id(param)]} times, but it takes one "
                f"value: give it once", ctx=context)
    if isinstance(command, click.Group) and rest:
        sub = command.get_command(context, rest[0])
        if sub is not None:
            refuse_repeats(sub, context, rest[0], rest[1:])
