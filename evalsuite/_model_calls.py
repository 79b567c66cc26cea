"""Model calls into runs: logs with one record per model call, grouped into conversations.

Teams log what the SDKs hand them: a request's messages with its response, one record per
call, or the response alone. Every call repeats the dialogue so far, so reading each record
as a run would give one fragment per call, each repeating the user's input and every answer
before it. A call here continues a run when

- it names the run: a run id, or a session or conversation id (:data:`SESSION_KEYS`) on the
  record, its metadata, the request or the request's metadata; or it chains to an earlier
  response (the Responses API's ``previous_response_id``);
- or, for a conversation logged whole without a response, its own ``id``;
- or what it sends extends a run's dialogue so far (the earlier request and its answer),
  the only sign most per-call logs give; an end-user id (:data:`SCOPE_KEYS`) narrows where
  to look, since one user has many conversations;
- or it sends nothing (a bare response) and the call before it stopped to call tools;
- or its whole dialogue (what it sent and its answer) is already part of a run's, and its
  answer is older than that run's latest: an earlier call of that run, logged late (log
  lines shipped out of order). It adds no steps (its usage still counts). With no time on
  the answers, or the same second, it is read as a run of its own: two identical runs must
  not be read as one.

Only the turns the run has not had yet become steps, so each input appears once and the
final answer is counted once. Messages are compared by the steps they give, not by their
JSON, because the SDK's dump of an answer (``content: null``, ``refusal: null``, …) and the
copy a client sends back differ in form but not in meaning.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic_core import to_json

from evalsuite._log_files import log_stem
from evalsuite._parts import RunHeader, RunPart
from evalsuite._run import Reasoning, Step, ToolCall, ToolResult

SESSION_KEYS = ("session_id", "conversation_id", "thread_id", "conversation")
"""Fields that name the conversation a model call belongs to (LiteLLM's and Langfuse's
``session_id``, a ``conversation_id``, an Assistants ``thread_id``, the Responses API's
``conversation``): calls naming the same one are one run."""
SCOPE_KEYS = ("user", "user_id", "safety_identifier")
"""Fields that name the end user (OpenAI's ``user``, Anthropic's ``metadata.user_id``): not
a conversation, so they only narrow which earlier calls a call may continue."""
_UNTIMED = {1: {"__all__": {"at"}}}  # an answer has its time, the copy sent back has none
_OPEN_RUNS = 10_000  # runs a later call may still continue; older ones are closed
_KNOWN_PREFIXES = 50_000  # dialogues so far a late call may be found in; older ones forgotten


@dataclass(slots=True)
class Turn:
    """One message (or Responses API item) of a call: its steps, where it was read, the
    system text it carries (a system message gives context, not steps), and why content of
    it was not read as steps (reported as the part's ``unread``, never dropped unsaid)."""

    steps: list[Step]
    place: str
    system: str | None = None
    unread: list[str] = field(default_factory=list)

    def key(self) -> bytes:
        """A digest of what the turn means, for telling a repeated turn from a new one; empty
        when it means nothing a later call repeats (reasoning alone is often not sent back)."""
        said = [s for s in self.steps if not isinstance(s, Reasoning)]
        if not said and self.system is None and not self.unread:
            return b""
        # what was not read counts too: the copy sent back is then not reported again
        meaning = to_json([self.system, said, *([self.unread] if self.unread else [])],
                          fallback=str, exclude=_UNTIMED)
        return hashlib.blake2b(meaning, digest_size=16).digest()


@dataclass(slots=True)
class Call:
    """One record of a log read as a model call: what it sent, what came back, and what it
    says about the run it belongs to."""

    sent: list[Turn]
    """The dialogue sent (a whole conversation, when the record is one)."""
    answer: list[Turn]
    """The response's message or output items; empty when the record has none."""
    header: dict[str, Any]
    """:class:`RunHeader` fields apart from ``run_id``."""
    place: str
    """Where the record is: ``line 7`` or ``$[3]``."""
    named: str | None = None
    """The run the record names (run id, session id, benchmark task), if it names one."""
    scope: str = ""
    """The end user the record names, if any."""
    own_id: str | None = None
    """The id a new run takes: the record's or its response's."""
    response_id: str | None = None
    """The response's id, which a later call may chain to."""
    previous_id: str | None = None
    """The response this call chains to (``previous_response_id``); its input is all new."""
    waiting: bool = False
    """The answer stopped to call tools, so the agent's turn goes on."""
    choices: bool = False
    """The answer's turns are choices (``n``), one of which the agent went on with, not
    turns one after the other."""


@dataclass(slots=True)
class _Run:
    run_id: str
    scope: str
    keys: list[bytes] = field(default_factory=list)  # one digest per turn: memory stays small
    digest: bytes = b""
    names: dict[str, str] = field(default_factory=dict)
    waiting: bool = False
    choices: frozenset[bytes] = frozenset()  # the last answer's choices, any one may follow
    answered_at: datetime | None = None  # the latest answer's time, when answers have one


def _chain(digest: bytes, key: bytes) -> bytes:
    return hashlib.blake2b(digest + key, digest_size=16).digest()


def _bounded(table: OrderedDict[Any, _Run], key: Any, run: _Run,
             limit: int = _OPEN_RUNS) -> None:
    table[key] = run
    table.move_to_end(key)
    while len(table) > limit:
        table.popitem(last=False)


def _answered_at(turns: list[Turn]) -> datetime | None:
    """The latest time on the answer's steps, if they have one."""
    times = [step.at for turn in turns for step in turn.steps if step.at is not None]
    return max(times) if times else None


class CallGrouper:
    """Turns the calls of one log, in file order, into run parts without repeats."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._by_dialogue: OrderedDict[bytes, _Run] = OrderedDict()
        self._by_name: OrderedDict[str, _Run] = OrderedDict()
        self._by_response: OrderedDict[str, _Run] = OrderedDict()
        self._prefixes: OrderedDict[bytes, _Run] = OrderedDict()
        self._last: _Run | None = None

    def part(self, call: Call) -> RunPart:
        """The part of its run that ``call`` adds: the turns the run has not had yet."""
        keyed = [(i, k) for i, k in enumerate(t.key() for t in call.sent) if k]
        digests = [_chain(call.scope.encode(), b"")]
        for _, key in keyed:
            digests.append(_chain(digests[-1], key))
        run, chained = self._run_of(call, digests)
        late = None
        if not chained and call.named is None and not run.keys:
            late = self._late(call, digests)
        elif not chained and call.named is not None and run.keys and (
                self._late(call, digests) is run):
            # Its run is named, so found already; its turns would otherwise come again
            # after the later call's, at their earlier times.
            late = run
        if late is not None:
            header = RunHeader.model_validate({**call.header, "run_id": late.run_id})
            return RunPart(run_id=late.run_id, source=self.path, place=call.place,
                           header=header, steps=[], places=[])
        start = 0
        if not chained and run.keys:
            common = 0
            for (_, key), known in zip(keyed, run.keys, strict=False):
                if key != known:
                    break
                common += 1
            if (common == len(run.keys) and common < len(keyed)
                    and keyed[common][1] in run.choices):
                common += 1  # the choice the agent took, read already with the others
            start = keyed[common - 1][0] + 1 if common else 0
        answer_keys = [k for k in (t.key() for t in call.answer) if k]
        sent_keys = [k for _, k in keyed]
        answer = call.answer
        if answer_keys and sent_keys[-len(answer_keys):] == answer_keys:
            answer, answer_keys = [], []  # the record's messages already end with its answer
        turns = [*call.sent[start:], *answer]
        if chained:
            keys, digest = [*run.keys, *sent_keys], run.digest
            for key in sent_keys:
                digest = _chain(digest, key)
        else:
            keys, digest = sent_keys, digests[-1]
        self._by_dialogue.pop(run.digest, None)
        if call.choices:  # the dialogue goes on with whichever choice the next call sends
            run.keys, run.digest, run.choices = keys, digest, frozenset(answer_keys)
            for key in answer_keys:
                _bounded(self._by_dialogue, _chain(digest, key), run)
        else:
            for key in answer_keys:
                digest = _chain(digest, key)
            run.keys, run.digest, run.choices = [*keys, *answer_keys], digest, frozenset()
        run.waiting = call.waiting
        _bounded(self._by_dialogue, run.digest, run)
        self._remember_prefixes(run, digests[1:] if not chained else [], answer_keys, call)
        if call.response_id:
            _bounded(self._by_response, call.response_id, run)
        self._last = run
        steps: list[Step] = []
        places: list[str | int] = []
        unread: list[tuple[str | int, str]] = []
        for turn in turns:
            for step in turn.steps:
                steps.append(self._named(run, step))
                places.append(turn.place)
            unread.extend((turn.place, why) for why in turn.unread)
        fields = dict(call.header)
        system = [t.system for t in call.sent if t.system]
        if system:
            fields["context"] = {**fields.get("context", {}), "system": "\n\n".join(system)}
        header = RunHeader.model_validate({**fields, "run_id": run.run_id})
        return RunPart(run_id=run.run_id, source=self.path, place=call.place, header=header,
                       steps=steps, places=places, unread=unread)

    def _late(self, call: Call, digests: list[bytes]) -> _Run | None:
        """The run whose dialogue already holds this call's whole dialogue, answered after
        it (so the call is an earlier one of that run, logged late); None otherwise."""
        at = _answered_at(call.answer)
        if at is None:  # no answer, or one without a time
            return None
        keys = [k for k in (t.key() for t in call.answer) if k]
        if not keys:
            return None
        if call.choices:  # any one of them may be the one the run went on with
            ends = [_chain(digests[-1], key) for key in keys]
        else:
            end = digests[-1]
            for key in keys:
                end = _chain(end, key)
            ends = [end]
        for end in ends:
            found = self._prefixes.get(end)
            if found is not None and found.answered_at is not None and at < found.answered_at:
                return found
        return None

    def _remember_prefixes(self, run: _Run, sent: list[bytes], answer_keys: list[bytes],
                           call: Call) -> None:
        """Remember the dialogue's prefixes this call showed, and when it was answered."""
        for digest in sent:
            _bounded(self._prefixes, digest, run, _KNOWN_PREFIXES)
        if call.choices:
            for key in answer_keys:
                _bounded(self._prefixes, _chain(run.digest, key), run, _KNOWN_PREFIXES)
        else:
            _bounded(self._prefixes, run.digest, run, _KNOWN_PREFIXES)
        at = _answered_at(call.answer)
        if at is not None and (run.answered_at is None or at > run.answered_at):
            run.answered_at = at

    def _run_of(self, call: Call, digests: list[bytes]) -> tuple[_Run, bool]:
        """The run the call continues (and whether its input is all new), or a new run."""
        # A conversation logged whole (no response beside it) is named by its own id.
        named = call.named if call.named is not None or call.answer else call.own_id
        if named is not None:
            found = self._by_name.get(named)
            if found is None:
                found = _Run(named, call.scope)
                _bounded(self._by_name, named, found)
            return found, call.previous_id is not None and call.previous_id in self._by_response
        if call.previous_id is not None and call.previous_id in self._by_response:
            return self._by_response[call.previous_id], True
        for digest in reversed(digests[1:]):  # the longest dialogue it extends
            found = self._by_dialogue.get(digest)
            if found is not None:
                return found, False
        last = self._last
        bare = not any(t.steps for t in call.sent)  # a response alone, perhaps with its context
        if bare and last is not None and last.waiting and last.scope == call.scope:
            return last, False
        number = call.place[5:] if call.place.startswith("line ") else (
            call.place.strip("$[]") or "0")
        run_id = call.own_id or (call.response_id or f"{log_stem(self.path)}-{number}")
        return _Run(run_id, call.scope), False

    @staticmethod
    def _named(run: _Run, step: Step) -> Step:
        """The step, with the tool's name on a result that only gives the call's id."""
        if isinstance(step, ToolCall) and step.call_id:
            run.names[step.call_id] = step.tool
        elif (isinstance(step, ToolResult) and step.tool is None and step.call_id
              and step.call_id in run.names):
            return step.model_copy(update={"tool": run.names[step.call_id]})
        return step

