"""Expressions in CEL, the Common Expression Language, for conditions and criteria.

CEL is what Kubernetes admission rules and cloud IAM conditions are written in: small,
side-effect free, always terminating. Rules may only name the variables they are given;
a typo is caught when the file is read, not when the rule is first needed.

"Always terminating" is not "quick": the CEL package has no cost limit and holds the
interpreter lock while it evaluates, so nothing can interrupt it. Expressions are bounded
in what they may say and what they may read instead. When the file is read: at most
:data:`MAX_EXPRESSION_CHARS` characters (which bounds every literal list and string) and
comprehensions (``all``, ``exists``, ``exists_one``, ``filter``, ``map``) nested at most
:data:`MAX_COMPREHENSION_DEPTH` deep, so the work is at most the product of two list
sizes. While it runs: the extension functions that grow values (``lists.range``,
``replace``, ``join``, ``split``, ``flatten`` …) refuse lists beyond :data:`MAX_LIST_ITEMS`
and strings beyond :data:`MAX_STRING_CHARS`, and the expression fails, which counts as
holding (fail closed); and an expression that reads its variables over and over (``output``
in a comprehension's body, ``history`` in a comprehension over ``history``) may read at most
:data:`MAX_DATA_READ` items and characters beyond one read of each, and fails closed past it.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any

from evalsuite._cel import cel_package
from evalsuite._errors import did_you_mean
from evalsuite._run import Output, Reasoning, Step, ToolCall, ToolResult, UserInput

# Names a comprehension binds, as in `history.exists(s, …)`: not free variables.
_BOUND = re.compile(r"\.\s*(?:all|exists|exists_one|filter|map)\s*\(\s*([A-Za-z_]\w*)\s*,")
_COMPREHENSION = re.compile(r"\.\s*(?:all|exists_one|exists|filter|map)\s*\(")

MAX_EXPRESSION_CHARS = 2000
"""The longest expression a control or case file may hold."""
MAX_COMPREHENSION_DEPTH = 2
"""How deeply comprehensions may nest: two lists of a thousand literals is a million
steps (about a second); three would be a billion."""
MAX_LIST_ITEMS = 1_000
"""The most items a list an extension function returns may hold (``split``, ``flatten``,
``lists.range``): two nested comprehensions over such lists are a million steps."""
MAX_DATA_READ = 10_000_000
"""How much data (items and characters) an expression may read beyond one read of each
variable: ``history`` read inside a comprehension over ``history`` pays for every read."""
MAX_STRING_CHARS = 100_000
"""The most characters a string an extension function returns may hold (``replace``,
``join``): ``replace`` chained ten times would otherwise make ten billion."""

# The CEL package reports a failing extension function on its logger before raising;
# without a handler Python prints that to stderr, beside reinstate's own one-line error.
logging.getLogger("cel").addHandler(logging.NullHandler())


class ExpressionFailed(Exception):
    """An expression could not be evaluated on the data it was given."""


# What the CEL runtime (the Rust ``cel`` crate under the ``cel`` package) implements
# natively, as its ``cel.stdlib`` module documents it: the language definition's functions,
# ``dyn`` and ``type``, and optional values. Its extension functions (strings, math, lists,
# sets, base64) are ``cel.stdlib.STDLIB_FUNCTIONS``, read from the package itself. Operators
# and the macros (``has``, ``all``, ``exists``, ``exists_one``, ``map``, ``filter``) are not
# listed: the parser expands them; ``cel.bind`` is expanded here (see :func:`expand_bind`).
NATIVE_FUNCTIONS = frozenset({
    "size", "contains", "startsWith", "endsWith", "matches", "int", "uint", "double",
    "string", "bytes", "dyn", "type", "duration", "timestamp", "getDate",
    "getDayOfMonth", "getDayOfWeek", "getDayOfYear", "getFullYear", "getHours",
    "getMilliseconds", "getMinutes", "getMonth", "getSeconds",
    "optional.of", "optional.none", "optional.ofNonZeroValue",
    "hasValue", "value", "orValue", "or",
})
MACROS = ("has", "all", "exists", "exists_one", "map", "filter", "cel.bind")
"""The macros an expression may use: the parser's, and ``cel.bind``."""


@lru_cache(maxsize=1)
def _stdlib() -> dict[str, Any]:
    # Imported on first use: the CEL package costs more at start-up than the whole CLI
    # needs for commands that never read a rule (`reinstate mode`).
    functions = cel_package().stdlib.STDLIB_FUNCTIONS

    return {name: _bounded(name, function) for name, function in functions.items()}


def _too_big(name: str, size: int, limit: int, unit: str) -> ValueError:
    return ValueError(f"{name} would make {size:,} {unit}; expressions may make at most "
                      f"{limit:,}")


def _bounded(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """The extension function, refusing to make a list or string beyond the bounds.

    Sizes that can be known first are checked before any work (a range, a join, a
    replacement); other results are at most a small multiple of their inputs, checked after.
    """
    @functools.wraps(function)
    def call(*args: Any) -> Any:
        if name == "lists.range" and args and isinstance(args[0], int) and (
                args[0] > MAX_LIST_ITEMS):
            raise _too_big(name, args[0], MAX_LIST_ITEMS, "items")
        if name == "join" and args and isinstance(args[0], list):
            size = sum(len(i) for i in args[0] if isinstance(i, str))
            if size > MAX_STRING_CHARS:
                raise _too_big(name, size, MAX_STRING_CHARS, "characters")
        if name == "replace" and len(args) >= 3 and all(isinstance(a, str) for a in args[:3]):
            text, old, new = args[:3]
            size = len(text) + (text.count(old) if old else len(text) + 1) * len(new)
            if size > MAX_STRING_CHARS:
                raise _too_big(name, size, MAX_STRING_CHARS, "characters")
        result = function(*args)
        if isinstance(result, list) and len(result) > MAX_LIST_ITEMS:
            raise _too_big(name, len(result), MAX_LIST_ITEMS, "items")
        if isinstance(result, str | bytes) and len(result) > MAX_STRING_CHARS:
            raise _too_big(name, len(result), MAX_STRING_CHARS, "characters")
        return result
    return call


def known_functions() -> frozenset[str]:
    """Functions an expression may call: the runtime's own and its extensions', namespaced
    ones by their full name (``math.greatest``, ``optional.of``)."""
    return NATIVE_FUNCTIONS | frozenset(_stdlib())


@lru_cache(maxsize=1)
def _namespaces() -> frozenset[str]:
    return frozenset(name.rsplit(".", 1)[0] for name in known_functions() if "." in name)


@lru_cache(maxsize=1)
def _extension_names() -> frozenset[str]:
    """The extension functions as a compiled program lists them: the last part of the name."""
    return frozenset(name.rsplit(".", 1)[-1] for name in _stdlib())


@lru_cache(maxsize=2048)
def _compile(source: str) -> tuple[Any, bool, tuple[str, ...]]:
    """The program (``cel.bind`` expanded), whether it needs the extension functions (which
    cost a context), and the names it reads (comprehension variables among them)."""
    program = cel_package().compile(expand_bind(source))
    return (program, bool(set(program.functions()) & _extension_names()),
            tuple(program.variables()))


def check_expression(source: str, variables: Sequence[str]) -> str:
    """Raise ``ValueError`` when ``source`` is not CEL or names a variable it is not given."""
    if len(source) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"expression too long: {len(source):,} characters, expected at most "
                         f"{MAX_EXPRESSION_CHARS:,}")
    try:
        program, _, _ = _compile(source)
    except (ValueError, RuntimeError) as exc:
        first = str(exc).splitlines()[0]
        raise ValueError(f"invalid CEL expression: {first}{_syntax_hint(first)}") from None
    depth = comprehension_depth(source)
    if depth > MAX_COMPREHENSION_DEPTH:
        raise ValueError(f"comprehensions nested {depth} deep: expected at most "
                         f"{MAX_COMPREHENSION_DEPTH} (each level multiplies the work by the "
                         f"size of a list)")
    qualified = _qualified_calls(source)
    for name in sorted(qualified):
        if name not in known_functions():
            raise _unknown_function(name)
    short = {name.rsplit(".", 1)[-1] for name in qualified}
    for name in program.functions():
        if name[0] not in "_@!" and name not in known_functions() and name not in short:
            raise _unknown_function(name)
    bound = set(_BOUND.findall(_code_only(expand_bind(source))))
    namespaces = {name.rsplit(".", 1)[0] for name in qualified}
    for name in program.variables():
        if name not in variables and name not in bound and name not in namespaces:
            raise ValueError(
                f"unknown variable '{name}' in expression (available: {', '.join(variables)})"
                + did_you_mean(name, variables)
            )
    return source


def _unknown_function(name: str) -> ValueError:
    available = sorted(known_functions(), key=lambda n: (n.lower(), n))
    return ValueError(f"unknown function '{name}' in expression"
                      + did_you_mean(name, known_functions())
                      + f"; available functions: {', '.join(available)}; "
                        f"macros: {', '.join(MACROS)}")


def _syntax_hint(message: str) -> str:
    if "'.?'" in message or "'[?'" in message:
        return (" (the CEL runtime has no optional field selection: write "
                "has(x.field) ? x.field : default, or end a list with .first() or .last() "
                "and .orValue(default))")
    return ""


def _qualified_calls(source: str) -> set[str]:
    """Calls of namespaced functions (``math.greatest(``), outside strings and comments."""
    code = _code_only(source)
    return {f"{m.group(1)}.{m.group(2)}" for m in _NAMESPACED.finditer(code)
            if m.group(1) in _namespaces()}


_NAMESPACED = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\s*\.\s*([A-Za-z_]\w*)\s*\(")
_BIND = re.compile(r"(?<![\w.])cel\s*\.\s*bind\s*\(")
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


def expand_bind(source: str) -> str:
    """``source`` with every ``cel.bind(name, value, body)`` written as
    ``[value].map(name, body)[0]``, which the runtime evaluates the same way: ``value`` once,
    then ``body`` with ``name`` bound to it. (The runtime's parser has no ``cel.bind``.)

    Raises:
        ValueError: a ``cel.bind`` that does not take a name, a value and an expression.
    """
    code = _code_only(source)
    match = _BIND.search(code)
    if match is None:
        return source
    arguments, end = _arguments(source, code, match.end())
    if end < 0:
        return source  # unclosed: the parser says where
    if len(arguments) != 3 or not _IDENTIFIER.fullmatch(arguments[0].strip()):
        raise ValueError("cel.bind takes a name, a value and an expression: "
                         "cel.bind(name, value, expression)")
    name, value, body = arguments
    return (f"{source[:match.start()]}[{expand_bind(value)}].map({name.strip()}, "
            f"{expand_bind(body)})[0]{expand_bind(source[end:])}")


def _arguments(source: str, code: str, start: int) -> tuple[list[str], int]:
    """The arguments of the call whose ``(`` ends just before ``start``, and the index just
    after its ``)`` (-1 when it never closes); ``code`` is ``source`` with strings blanked."""
    depth = 0
    arguments: list[str] = []
    begin = start
    for index in range(start, len(code)):
        char = code[index]
        if char in "([{":
            depth += 1
        elif char in ")]}":
            if depth == 0:
                arguments.append(source[begin:index])
                return arguments, index + 1
            depth -= 1
        elif char == "," and depth == 0:
            arguments.append(source[begin:index])
            begin = index + 1
    return arguments, -1


def _code_only(source: str) -> str:
    """``source`` with the inside of string literals and comments blanked, same length, so
    patterns over it find code only and its positions are the source's."""
    parts: list[str] = []
    index = 0
    while index < len(source):
        char = source[index]
        if char in "'\"":
            end = _after_string(source, index)
            parts.append(char + " " * max(0, end - index - 2) + (char if end - index > 1 else ""))
            index = end
        elif source.startswith("//", index):
            end = source.find("\n", index)
            end = len(source) if end < 0 else end
            parts.append(" " * (end - index))
            index = end
        else:
            parts.append(char)
            index += 1
    return "".join(parts)


def comprehension_depth(source: str) -> int:
    """How deeply comprehension macros nest in ``source`` (string literals and comments
    are skipped): ``a.map(x, b.exists(y, …))`` is 2, ``a.map(x, …).exists(y, …)`` is 1."""
    open_parens: list[bool] = []  # for each open bracket: does it start a comprehension?
    depth = deepest = 0
    index = 0
    while index < len(source):
        char = source[index]
        if char in "'\"":
            index = _after_string(source, index)
            continue
        if source.startswith("//", index):
            end = source.find("\n", index)
            index = len(source) if end < 0 else end
            continue
        macro = _COMPREHENSION.match(source, index) if char == "." else None
        if macro is not None:
            open_parens.append(True)
            depth += 1
            deepest = max(deepest, depth)
            index = macro.end()
            continue
        if char in "([{":
            open_parens.append(False)
        elif char in ")]}" and open_parens and open_parens.pop():
            depth -= 1
        index += 1
    return deepest


def _after_string(source: str, start: int) -> int:
    """The index just after the string literal that starts at ``start``."""
    raw = start > 0 and source[start - 1] in "rR"
    quote = source[start] * 3 if source.startswith(source[start] * 3, start) else source[start]
    index = start + len(quote)
    while index < len(source):
        if source.startswith(quote, index):
            return index + len(quote)
        index += 2 if source[index] == "\\" and not raw else 1
    return index


def evaluate(source: str, activation: Mapping[str, Any]) -> Any:
    """Evaluate a checked expression; any failure, or reading more data than
    :data:`MAX_DATA_READ`, is :class:`ExpressionFailed`.

    Only the variables the expression reads are taken from ``activation`` and handed to
    CEL, which copies each into values of its own, so a :class:`Variables` makes only
    those. The others are still looked at: when one holds something CEL cannot take (not
    plain JSON data), every variable is handed over, as CEL always had them, and the
    expression fails closed as it always did.
    """
    budget = _DataBudget(activation)
    try:
        cel = cel_package()
        program, extended, names = _compile(source)
        variables = {name: activation[name] for name in names if name in activation}
        if len(variables) < len(activation) and not _rest_is_plain(activation, variables):
            variables = dict(activation)  # CEL refuses some of it: let it say so, as ever
        context = cel.Context(variables=variables, functions=_stdlib() if extended else None)
        context.set_variable_resolver(budget.resolve)
        value = program.execute(context)
    except Exception as exc:  # the CEL runtime raises several types; all mean "no answer"
        raise ExpressionFailed(budget.reason or f"{type(exc).__name__}: {exc}") from None
    if budget.reason:
        raise ExpressionFailed(budget.reason)
    return value


class Variables(Mapping[str, Any]):
    """Variables for expressions, each made on first read and kept.

    ``makers`` give each variable's value; ``plain`` may say, for some of them, whether
    the value is plain data without looking at all of it (a :class:`~evalsuite.History`
    knows this of its steps). Iteration follows ``makers``' order.
    """

    __slots__ = ("_made", "_makers", "_plain")

    def __init__(self, makers: Mapping[str, Callable[[], Any]],
                 plain: Mapping[str, Callable[[], bool]] | None = None) -> None:
        self._makers = makers
        self._plain = plain or {}
        self._made: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        try:
            return self._made[name]
        except KeyError:
            value = self._made[name] = self._makers[name]()
            return value

    def __contains__(self, name: object) -> bool:
        return name in self._makers

    def __iter__(self) -> Iterator[str]:
        return iter(self._makers)

    def __len__(self) -> int:
        return len(self._makers)

    def is_plain(self, name: str) -> bool:
        """Whether the variable is plain data CEL surely takes."""
        known = self._plain.get(name)
        return known() if known is not None else is_plain(self[name])


def _rest_is_plain(activation: Mapping[str, Any], read: Mapping[str, Any]) -> bool:
    """Whether every variable the expression does not read is plain data."""
    for name in activation:
        if name in read:
            continue
        plain = (activation.is_plain(name) if isinstance(activation, Variables)
                 else is_plain(activation[name]))
        if not plain:
            return False
    return True


_INT_RANGE = range(-(2**63), 2**64)  # CEL's int and uint
_PLAIN_DEPTH = 64


def is_plain(value: Any) -> bool:
    """Whether ``value`` is plain JSON data that CEL surely converts: None, bools, ints
    that fit CEL's int or uint, floats, UTF-8 strings, lists, and maps with string keys,
    nested at most 64 deep. False for anything else, which may or may not convert."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is str:
            if not item.isascii() and not _utf8(item):
                return False
        elif item is None or kind is bool or kind is float:
            continue
        elif kind is int:
            if item not in _INT_RANGE:
                return False
        elif depth >= _PLAIN_DEPTH:
            return False
        elif kind is dict:
            for key, inner in item.items():
                if type(key) is not str or not (key.isascii() or _utf8(key)):
                    return False
                stack.append((inner, depth + 1))
        elif kind is list:
            stack.extend((inner, depth + 1) for inner in item)
        else:
            return False
    return True


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, from a log's "\ud800"
        return False
    return True


class _DataBudget:
    """Charges every read of a variable after its first with the variable's size.

    CEL gives no way to stop an evaluation, but it asks a resolver before it reads each
    variable (``None`` means "read it as given"). A rule that reads ``history`` once is
    linear and never charged; one that reads it inside a comprehension pays for each
    read, and once it has read more than :data:`MAX_DATA_READ` every variable reads as
    ``0``, which leaves the rest of the evaluation nothing large to work on; the answer
    is then thrown away and the rule fails closed.
    """

    def __init__(self, activation: Mapping[str, Any]) -> None:
        self._activation = activation
        self._read: set[str] = set()
        self._sizes: dict[str, int] = {}
        self._spent = 0
        self.reason = ""

    def resolve(self, name: str) -> Any:
        """The resolver CEL calls before reading ``name``."""
        if self.reason:
            return 0
        if name not in self._read:
            self._read.add(name)
            return None
        if name not in self._sizes:
            self._sizes[name] = _data_size(self._activation.get(name))
        self._spent += self._sizes[name]
        if self._spent > MAX_DATA_READ:
            self.reason = (f"the expression read its variables over and over, more than "
                           f"{MAX_DATA_READ:,} items and characters in all")
            return 0
        return None


def _data_size(value: Any) -> int:
    """Items and characters in a value: what reading it once can cost an expression."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        total += len(item) if isinstance(item, str | bytes | list | tuple | dict) else 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return total


def evaluate_bool(source: str, activation: Mapping[str, Any]) -> bool:
    """Evaluate an expression that must answer true or false."""
    value = evaluate(source, activation)
    if not isinstance(value, bool):
        raise ExpressionFailed(f"expected true or false, got {value!r}")
    return value


def steps_as_data(steps: Sequence[Step]) -> list[dict[str, Any]]:
    """The run so far as plain data for expressions: one map per step, keys by kind.

    A tool result carries the name of the tool it answers even when the log left it out,
    so rules can say ``s.tool == "lookup_order"``.
    """
    tools: dict[str, str] = {}
    return [step_as_data(step, tools) for step in steps]


def step_as_data(step: Step, tools: dict[str, str]) -> dict[str, Any]:
    """One step as :func:`steps_as_data` shows it; ``tools`` maps the call ids seen so far
    to their tools, and a call adds its own."""
    if isinstance(step, UserInput | Reasoning | Output):
        return {"kind": step.kind, "content": step.content}
    if isinstance(step, ToolCall):
        if step.call_id is not None:
            tools[step.call_id] = step.tool
        return {"kind": step.kind, "tool": step.tool, "arguments": step.arguments}
    assert isinstance(step, ToolResult)
    name = step.tool or tools.get(step.call_id or "", "")
    item: dict[str, Any] = {"kind": step.kind, "tool": name, "result": step.result}
    if step.error is not None:
        item["error"] = step.error
    return item
