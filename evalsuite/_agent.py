"""How to reach an agent for evals: its ``agent.yaml``, the adapter protocol, the registry.

Every adapter answers one trial of one case through an :class:`AgentSession` (the
sandbox), returning the agent's answer; what the agent did is recorded by the session.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from string import Template
from typing import Annotated, Any, Literal, Protocol

from pydantic import Field, field_validator, model_validator

from evalsuite._case import EvalCase
from evalsuite._errors import EvalsuiteError
from evalsuite._record import Record
from evalsuite._sandbox import Isolation, protected_env_problem
from evalsuite._session import AgentSession

AGENT_NAME = r"^[a-z0-9][a-z0-9._-]*$"
# An HTTP header name: RFC 9110's token.
HEADER_NAME = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"


def _no_protected_names(env: dict[str, str]) -> dict[str, str]:
    for name in env:
        problem = protected_env_problem(name)
        if problem is not None:
            raise ValueError(problem)
    return env


class PythonAdapterSpec(Record):
    """Run the agent as a Python function ``respond(session) -> str``, sync or async."""

    kind: Literal["python"]
    target: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    """``module:function`` to call with an :class:`AgentSession`."""
    path: str = "."
    """Directory, relative to ``agent.yaml``, to import the module from; the agent's
    working directory."""
    isolation: Literal["process", "in-process"] = "process"
    """``process`` (the default): the function runs in a confined child process of its
    own, like a subprocess agent. ``in-process``: in the gate's own process, for trusted
    code and speed only: the agent could change the gate's result, and the verdict says so."""
    processes: int | None = Field(default=None, ge=1, le=1024)
    """With ``isolation: process``, how many child processes may answer side by side;
    by default one per trial in flight (``[gate] concurrency``), each reused."""
    env: dict[str, str] = Field(default_factory=dict)
    """Extra environment variables for the child process (``isolation: process``)."""

    _env = field_validator("env")(_no_protected_names)


class SubprocessAdapterSpec(Record):
    """Run the agent as a long-lived process speaking JSON lines on stdin and stdout."""

    kind: Literal["subprocess"]
    command: list[str] = Field(min_length=1)
    """The program and its arguments, run directly (never through a shell)."""
    cwd: str = "."
    """Working directory, relative to ``agent.yaml``."""
    processes: int = Field(default=1, ge=1, le=64)
    """How many copies to run side by side; each handles one conversation at a time."""
    env: dict[str, str] = Field(default_factory=dict)
    """Extra environment variables for the process; with ``[agent] env`` and a few basics,
    the only ones it gets."""

    _env = field_validator("env")(_no_protected_names)


class HttpAdapterSpec(Record):
    """Call an OpenAI-compatible chat-completions endpoint and run the tool loop here."""

    kind: Literal["http"]
    url: str = Field(pattern=r"^https?://")
    """The chat-completions URL, e.g. ``http://localhost:8000/v1/chat/completions``."""
    model: str
    """The model name sent with every request."""
    api_key_env: str | None = None
    """Environment variable holding the API key, sent as a bearer token."""
    max_turns: int = Field(default=12, ge=1, le=100)
    """Model calls allowed per trial before the agent counts as not finishing."""
    request_timeout_s: float = Field(default=60.0, gt=0)
    """Timeout of one HTTP request."""
    temperature: float | None = Field(default=None, ge=0, le=2)
    """Sampling temperature to send, if any."""
    system_prompt: str | None = None
    """The agent's system prompt, sent as the first message of every conversation, so the
    gate evaluates the agent and not the bare model."""
    system_prompt_file: str | None = None
    """A file holding the system prompt instead, relative to ``agent.yaml`` (keep it in the
    agent's folder or its ``sources`` so a change to it makes a verdict stale)."""
    context: Literal["message", "body", "omit"] = "message"
    """How the case's ``input.context`` is sent: ``message`` as a system message holding it
    as JSON, after the system prompt (what any chat endpoint accepts); ``body`` as a
    top-level ``context`` field of the request, for a gateway that reads it there;
    ``omit`` not at all."""
    headers: dict[Annotated[str, Field(pattern=HEADER_NAME)], str] = Field(
        default_factory=dict)
    """HTTP headers sent with every request (a gateway's route, an API key). ``${NAME}`` in
    a value is the environment variable ``NAME``, read when the run starts, so a secret
    stays out of the file (``Authorization: "Bearer ${GATEWAY_KEY}"``); ``$$`` is a
    literal ``$``. A variable that is not set stops the run with an error naming it."""

    @field_validator("headers")
    @classmethod
    def _placeholders(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not Template(value).is_valid():
                raise ValueError(f"header {name}: expected ${{NAME}} placeholders (a "
                                 f"letter or _, then letters, digits, _) and $$ for a $")
        return headers

    @model_validator(mode="after")
    def _one_prompt(self) -> HttpAdapterSpec:
        if self.system_prompt is not None and self.system_prompt_file is not None:
            raise ValueError("expected system_prompt or system_prompt_file, not both")
        if self.api_key_env and any(h.lower() == "authorization" for h in self.headers):
            raise ValueError("expected api_key_env or an Authorization header, not both")
        return self


class ReplayAdapterSpec(Record):
    """Answer as a recorded run did: its tool calls go through today's sandbox again."""

    kind: Literal["replay"]
    log: str
    """A run log in any format ``reinstate ingest`` reads, relative to ``agent.yaml``."""
    match: Literal["run_id", "input"] = "input"
    """Find a case's run by the case id as run id, or by its last user message (more than
    one run with that message is an error naming them). A regression case always replays
    the run its provenance names, from the log file it was captured from."""


AdapterSpec = Annotated[
    PythonAdapterSpec | SubprocessAdapterSpec | HttpAdapterSpec | ReplayAdapterSpec,
    Field(discriminator="kind"),
]


class AgentSpec(Record):
    """``agents/<agent>/agent.yaml``: what the agent is and how to run it for evals."""

    schema_version: Literal[1] = 1
    """Version of this file's format."""
    name: str = Field(pattern=AGENT_NAME)
    """The agent's name, as used on the command line."""
    version: str
    """The agent's version; part of every verdict's fingerprint."""
    description: str = ""
    """What the agent does, in a sentence."""
    adapter: AdapterSpec
    """How reinstate runs the agent for the gate."""
    adapters: dict[str, AdapterSpec] = Field(default_factory=dict)
    """Other ways to reach the same agent, by name (``reinstate eval --adapter NAME``)."""
    sources: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    """Glob patterns, relative to ``agent.yaml`` and inside the workspace, of more files the
    agent depends on (``data/*.json``, ``prompts/**``); they join its fingerprint, so a
    verdict goes stale when one changes. The agent's folder and its adapter's folder are
    always covered."""


class AgentCrashed(EvalsuiteError):
    """The agent could not be loaded, raised, died, or answered with something unreadable."""

    exit_code = 3


class TransportError(EvalsuiteError):
    """Reaching the agent failed (timeout, connection refused, an endpoint busy or
    unavailable: HTTP 429, 502, 503, 504): worth a retry.

    Only these are retried; a wrong answer never is. ``retry_after`` is how many seconds
    the endpoint asked to be left alone (its ``Retry-After``), if it said.
    """

    exit_code = 3

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Adapter(Protocol):
    """Runs an agent on one trial of a case.

    An adapter that starts agent processes may also define ``async start(count)``: the
    engine calls it before the first trial, so process start-up is not counted against
    any trial's timeout.
    """

    agent: AgentSpec
    """The agent it reaches."""

    async def respond(self, case: EvalCase, trial: int, session: AgentSession) -> str | None:
        """The agent's answer; its tool calls go through ``session``. None only when there is
        no answer to give (a recorded run that ended without one): the run then has no
        output, and the criteria judge that."""
        ...

    async def aclose(self) -> None:
        """Release what the adapter holds (processes, connections)."""
        ...


# (adapter spec, agent.yaml, agent, isolation) → adapter; adapters that start agent code
# must confine it as the isolation says.
AdapterFactory = Callable[[Any, Path, AgentSpec, Isolation], Adapter]
ADAPTERS: dict[str, AdapterFactory] = {}
# The built-in kinds register when their modules are imported: on the first adapter built
# or registered, not when evalsuite is, so a command that runs no agent does not load them.
_BUILT_IN = ("evalsuite._http_adapter", "evalsuite._python_adapter",
             "evalsuite._replay_adapter", "evalsuite._subprocess_adapter")


def _built_ins() -> dict[str, AdapterFactory]:
    """Every adapter kind, the built-in ones imported (and so registered) first."""
    import importlib

    for module in _BUILT_IN:
        importlib.import_module(module)
    return ADAPTERS


def register_adapter(kind: str) -> Callable[[AdapterFactory], AdapterFactory]:
    """Register the factory of an adapter kind; a kind registered twice is an error."""
    def add(factory: AdapterFactory) -> AdapterFactory:
        if not factory.__module__.startswith("evalsuite."):
            _built_ins()  # a kind from outside cannot take a built-in's name
        known = ADAPTERS.get(kind)
        # The same module imported again (pytest's in-process runs drop the modules a run
        # imported) registers the same factory again; any other module is refused the name.
        if known is not None and (known.__module__, known.__qualname__) != (
                factory.__module__, factory.__qualname__):
            raise ValueError(f"an adapter kind '{kind}' is already registered")
        ADAPTERS[kind] = factory
        return factory
    return add


def build_adapter(agent: AgentSpec, agent_file: Path, name: str | None = None,
                  isolation: Isolation | None = None) -> Adapter:
    """The adapter ``agent.yaml`` asks for (or its alternative called ``name``).

    Args:
        agent: The agent, as ``agent.yaml`` defines it.
        agent_file: Where ``agent.yaml`` is; adapter paths are relative to it.
        name: One of ``agent.adapters`` instead of the default adapter.
        isolation: How agent processes are confined; the defaults when None (allowlisted
            environment, the first available sandbox).

    Raises:
        InvalidInput: No adapter is called ``name``.
        SandboxUnavailable: The sandbox ``isolation`` asks for cannot be used here.
    """
    from evalsuite._errors import InvalidInput, did_you_mean

    spec: Any = agent.adapter
    if name is not None:
        if name not in agent.adapters:
            raise InvalidInput(agent_file, "$.adapters",
                               f"no adapter named '{name}'" + did_you_mean(name, agent.adapters)
                               + f" (named adapters: {', '.join(agent.adapters) or 'none'})")
        spec = agent.adapters[name]
    return _built_ins()[spec.kind](spec, agent_file, agent, isolation or Isolation())


def isolation_of(adapter: Adapter) -> dict[str, str]:
    """What confinement the adapter gives agent code, as a verdict records it."""
    used = getattr(adapter, "isolation_used", None)
    if isinstance(used, dict):
        return dict(used)
    return {"process": "none started by reinstate (the agent is reached, not run, here)",
            "sandbox": "not applicable"}
