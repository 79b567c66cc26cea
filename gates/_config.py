"""The workspace a team keeps: where it is, what ``reinstate.toml`` says, where each file lives."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from evalsuite import (
    DEFAULT_SESSION_ATTRIBUTES,
    MAX_NUMBER_CHARS,
    MAX_USER_FILE_BYTES,
    InvalidInput,
    Isolation,
    Record,
    SandboxChoice,
    did_you_mean,
    json_path,
    parse_model,
    protected_env_problem,
    read_regular,
)
from gates._errors import UnknownAgent
from regressions import IncidentBook

if TYPE_CHECKING:
    from gates._controls.files import Controls

CONFIG_FILE = "reinstate.toml"


class Paths(Record):
    """Where the workspace keeps each kind of file, relative to its root."""

    agents: str = "agents"
    """Agent definitions and their controls: ``agents/<agent>/``."""
    evals: str = "evals"
    """Eval suites: ``evals/<agent>/*.yaml``."""
    regressions: str = "regressions"
    """Regression sets: ``regressions/<agent>/*.yaml``."""
    incidents: str = "incidents"
    """Incident records: ``incidents/<id>.yaml``."""
    state: str = ".reinstate/state.db"
    """The SQLite state store: modes, verdicts, the audit log."""
    logs: str = "logs"
    """The agents' run logs (any supported format), which the gate's logging check reads."""

    @field_validator("*")
    @classmethod
    def _nameable(cls, value: str) -> str:
        return _nameable_path(value)


def _nameable_path(value: str) -> str:
    # No file name holds a NUL: every file call on it would raise (a traceback, and
    # `reinstate mode` with no answer), so it is refused where it is written.
    if "\x00" in value:
        raise ValueError(f"expected a path without NUL characters, got {value!r}")
    return value


class ContainmentSettings(Record):
    """How fast containment must happen, and who must hear of it."""

    target_hours: float = Field(default=4.0, gt=0)
    """Detection to containment target."""
    notify: list[str] = Field(default_factory=lambda: ["legal", "compliance", "eng-lead"])
    """Who must be notified at containment; a containment that skips one is flagged."""


_SERVICE_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")


def _service_url(value: str) -> str:
    if not _SERVICE_URL.fullmatch(value):
        # The value is never quoted: a password or a token written into a mistyped URL
        # ('mailtos://user:p@ss@host ' with a trailing space), or pasted bare, would be
        # printed by every command that reads the file.
        raise ValueError(f"expected a service URL such as mailto://user@host or "
                         f"json://host/hook; {_url_fault(value)} (the value is not shown: "
                         f"it may hold a secret)")
    return value


def _url_fault(value: str) -> str:
    """What keeps ``value`` from being a service URL, without quoting any of it."""
    scheme = re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", value)
    if scheme is None:
        return "this one does not start with a scheme and ://"
    if scheme.end() == len(value):
        return f"this one has nothing after {scheme.group()}"
    space = re.search(r"\s", value)
    assert space is not None  # the only other way to miss _SERVICE_URL
    return f"this one has a space or line break at character {space.start() + 1}"


# A service URL as Apprise reads it (``mailto://…``, ``json://…``, ``slack://…``); ``${NAME}``
# in it is an environment variable, expanded only when a message is sent.
NotifyUrl = Annotated[str, AfterValidator(_service_url)]


class NotifySettings(Record):
    """Who hears of a containment, a failed gate of a contained agent and a restore.

    Every key other than the settings below names an audience (``legal``, ``eng-lead``)
    and lists the service URLs its messages go to, in Apprise's form (``mailto://…``,
    ``json://host/hook``, ``slack://…``); ``${NAME}`` in a URL is read from the
    environment at send time, so secrets stay out of the file.
    """

    # The audiences are the table's other keys, each a non-empty list of URLs.
    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, Annotated[list[NotifyUrl], Field(min_length=1)]] = Field(
        init=False)

    timeout_s: float = Field(default=5.0, gt=0, le=300)
    """Seconds one delivery may take (connecting and waiting for the service's answer)."""
    total_s: float = Field(default=10.0, gt=0, le=600)
    """Seconds a command waits for all its deliveries together; one still going then is
    recorded as failed, and the command goes on."""
    on_failed_gate: bool = True
    """Whether a gate that does not pass, run while an incident holds the agent contained,
    tells that incident's audiences (every such run does, CI's included)."""

    def audiences(self) -> dict[str, list[str]]:
        """Each configured audience and its service URLs (unexpanded)."""
        return dict(self.model_extra or {})


class GateSettings(Record):
    """Defaults of the gate."""

    trials: int = Field(default=3, ge=1, le=1000)
    """Trials per case when a case sets none."""
    min_cases_per_input_type: int = Field(default=3, ge=1)
    """Cases an incident's input type needs before eval coverage counts as fixed."""
    concurrency: int = Field(default=8, ge=1, le=1024)
    """Trials in flight at once."""
    timeout_s: float = Field(default=120.0, gt=0, le=3600)
    """Seconds one trial may take when its case sets none."""
    retries: int = Field(default=2, ge=0, le=10)
    """Retries of a trial after a transport error (never after a wrong answer)."""
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    """Confidence of the Wilson interval a case's pass rate is judged with."""
    max_steps: int = Field(default=10_000, ge=1, le=1_000_000)
    """Steps (tool calls and reasoning) one trial may record; an agent that makes more
    errs that trial, rather than growing the gate's memory without end."""
    full_case_digests: bool = False
    """Keep each eval and regression case file's whole SHA-256 in a verdict's fingerprint
    (for an audit that matches files to a verdict by digest); by default each is cut to 16
    hex digits, enough to name a changed file, and the case sets' digests are whole
    either way. Changing it never stales a verdict."""


class RuleSettings(Record):
    """What rules in control files may do."""

    predicate_modules: list[str] = Field(default_factory=list)
    """Workspace modules Python predicates may be loaded from (``rules``, ``rules.refunds``);
    none by default, so a control file alone can never make reinstate run code."""


class LoggingSettings(Record):
    """What the gate's logging check reads."""

    recent_runs: int = Field(default=50, ge=1)
    """How many of an agent's newest runs must answer the four questions."""


class IngestSettings(Record):
    """How run logs are read, by every command that reads them."""

    session_attributes: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=lambda: list(DEFAULT_SESSION_ATTRIBUTES))
    """Span attributes that name the session or conversation a trace belongs to, first
    found wins: traces with the same value are one run, in time order, each call's repeated
    history read once. An empty list makes every trace a run of its own."""


class SigningSettings(Record):
    """How verdicts are signed and checked (``reinstate keygen`` makes the key pair)."""

    public_key: str | None = None
    """The Ed25519 public key (PEM), a file in the workspace committed like any control.
    When set, ``check`` and ``restore`` accept only a verdict signed with its private key,
    which the gate reads from ``$REINSTATE_SIGNING_KEY`` (a CI secret); when unset,
    verdicts are unsigned and ``check`` says so."""

    @field_validator("public_key")
    @classmethod
    def _nameable(cls, value: str | None) -> str | None:
        return value if value is None else _nameable_path(value)


class AgentSettings(Record):
    """How agent code run for evals is confined (python and subprocess adapters)."""

    env: list[str] = Field(default_factory=list)
    """Names of environment variables the agent may see besides PATH, LANG, LC_ALL and TZ
    (HOME and TMPDIR always point at a private temporary folder); nothing else passes.
    ``REINSTATE_SIGNING_KEY`` is refused, and so, with a PostgreSQL ``[state] url``, are
    ``PGPASSWORD`` and the variables the URL is filled from."""
    sandbox: SandboxChoice = "auto"
    """``auto``: Landlock, else bubblewrap, else none (and the verdict says so);
    ``landlock`` or ``bubblewrap``: that one, an error when unavailable; ``none``: no
    sandbox, for platforms without one."""

    @field_validator("env")
    @classmethod
    def _passable(cls, names: list[str]) -> list[str]:
        for name in names:
            problem = protected_env_problem(name)
            if problem is not None:
                raise ValueError(problem)
        return names

    def isolation(self) -> Isolation:
        """These settings as the adapters take them."""
        return Isolation(env=tuple(self.env), sandbox=self.sandbox)


class StateSettings(Record):
    """Where the state store lives when it is not the SQLite file of ``[paths] state``."""

    url: str | None = None
    """A PostgreSQL server shared by CI runners, deploy jobs and agent runtimes:
    ``postgresql://USER:${PGPASSWORD}@HOST:5432/DB``. ``${NAME}`` is filled from the
    environment when the store is used, and libpq's own variables (``PGPASSWORD``,
    ``PGSSLMODE``, ``PGPASSFILE``, …) apply, so no secret needs to be in this file. Unset:
    the SQLite file of ``[paths] state``."""

    @field_validator("url")
    @classmethod
    def _postgres(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"expected a postgresql:// URL, got '{url.split('@')[-1][:80]}'")
        return url


class Config(Record):
    """``reinstate.toml``, or ``[tool.reinstate]`` in ``pyproject.toml``."""

    schema_version: Literal[1] = 1
    """Version of this file's format."""
    paths: Paths = Field(default_factory=Paths)
    """Where things live."""
    containment: ContainmentSettings = Field(default_factory=ContainmentSettings)
    """Containment targets."""
    gate: GateSettings = Field(default_factory=GateSettings)
    """Gate defaults."""
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    """What the logging check reads."""
    rules: RuleSettings = Field(default_factory=RuleSettings)
    """What rules in control files may do."""
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    """How run logs are read: which span attributes tie traces into one run."""
    signing: SigningSettings = Field(default_factory=SigningSettings)
    """Signed verdicts: the public key they must verify against."""
    agent: AgentSettings = Field(default_factory=AgentSettings)
    """How agent code run for evals is confined."""
    notify: NotifySettings = Field(default_factory=NotifySettings)
    """Notifications: each audience's service URLs, and how long deliveries may take."""
    state: StateSettings = Field(default_factory=StateSettings)
    """A shared state store (PostgreSQL) instead of the SQLite file."""

    @model_validator(mode="after")
    def _store_credentials_stay_out_of_the_agent(self) -> Config:
        # The agent under evaluation must not be able to write the store (a verdict, an
        # approval, its own mode): the variables the store's URL is filled from, and the
        # password libpq takes from the environment, never reach it.
        if self.state.url is None:
            return self
        credentials = {*_URL_VARIABLE.findall(self.state.url), "PGPASSWORD"}
        for index, name in enumerate(self.agent.env):
            if name in credentials:
                # Raised as the error of the list item, so the message names its place.
                raise ValidationError.from_exception_data(type(self).__name__, [
                    InitErrorDetails(type=PydanticCustomError("value_error", (
                        "'{name}' holds the state store's credentials ([state] url), which "
                        "the agent under evaluation must never get: it could write "
                        "verdicts, approvals and modes; give the agent a variable of its "
                        "own"), {"name": name}),
                        loc=("agent", "env", index), input=name)])
        return self


# Where libpq reads a password, a service definition or a client key from when set.
_LIBPQ_FILES = ("PGPASSFILE", "PGSERVICEFILE", "PGSYSCONFDIR", "PGSSLKEY", "PGSSLCERT")

# ``${NAME}`` in a URL, as the PostgreSQL store fills it from the environment.
_URL_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Workspace:
    """A workspace root and its configuration."""

    root: Path
    config: Config
    notify_problem: InvalidInput | None = None
    """Why ``[notify]`` of the configuration was set aside (its audiences then are none),
    when the workspace was found ``containing``; None when it was valid."""

    @classmethod
    def find(cls, start: Path | None = None, *, containing: bool = False) -> Workspace:
        """The workspace at ``start`` or above it (``REINSTATE_WORKSPACE`` wins if set).

        Args:
            start: The workspace folder; by default found from the working directory up.
            containing: For what can only make an agent safer (open an incident, contain
                it, read its mode, guard its calls): an invalid ``[notify]`` is set aside
                (:attr:`notify_problem` says why, nobody is told) instead of refusing the
                workspace, so a typo in who to tell never stops a containment. Every other
                section is checked as always.
        """
        env = os.environ.get("REINSTATE_WORKSPACE")
        here = Path(env) if env and start is None else (start or Path.cwd())
        here = here.resolve()
        for folder in (here, *here.parents):
            found = _read_config(folder, containing)
            if found is not None:
                return cls(folder, *found)
            if start is not None or env:
                break  # an explicit folder is the workspace or nothing
        raise InvalidInput(
            None, "",
            f"no reinstate workspace at {here}{'' if start or env else ' or above'}: expected "
            f"{CONFIG_FILE} or [tool.reinstate] in pyproject.toml (run `reinstate init`)",
        )

    def require_notify(self) -> None:
        """Refuse, with the problem found, a workspace whose ``[notify]`` was set aside:
        for what could clear an agent (a gate, a restore), which takes the configuration
        whole or not at all."""
        if self.notify_problem is not None:
            raise self.notify_problem

    def _inside(self, relative: str, field: str) -> Path:
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise InvalidInput(
                self.root / CONFIG_FILE, f"$.paths.{field}",
                f"expected a path inside the workspace, got '{relative}'",
            )
        return path

    @property
    def agents_dir(self) -> Path:
        """Folder of agent definitions."""
        return self._inside(self.config.paths.agents, "agents")

    def agent_dir(self, agent: str) -> Path:
        """``agents/<agent>/``."""
        return self.agents_dir / agent

    def evals_dir(self, agent: str) -> Path:
        """``evals/<agent>/``."""
        return self._inside(self.config.paths.evals, "evals") / agent

    def regressions_dir(self, agent: str) -> Path:
        """``regressions/<agent>/``."""
        return self._inside(self.config.paths.regressions, "regressions") / agent

    @property
    def incidents_dir(self) -> Path:
        """Folder of incident records."""
        return self._inside(self.config.paths.incidents, "incidents")

    @property
    def state_path(self) -> Path:
        """The SQLite state store."""
        return self._inside(self.config.paths.state, "state")

    @property
    def logs_dir(self) -> Path:
        """Folder of run logs."""
        return self._inside(self.config.paths.logs, "logs")

    @property
    def lock_dir(self) -> Path:
        """Lock files of concurrent writers; beside the state store, out of git."""
        return self.state_path.parent / "locks"

    def agent_isolation(self) -> Isolation:
        """How agent code run for evals is confined: ``[agent]``, and never a read of the
        state store. Reading is enough to harm: the SQLite store holds every verdict,
        approval and mode, and a read lock the agent takes on it, its ``-shm`` file or a
        lock file stands in the way of the store's writers (``reinstate contain``); a
        PostgreSQL store's password file lets the agent connect and write verdicts,
        approvals and modes. So the sandbox hides the SQLite file with its companions, the
        lock files and, with a ``[state] url``, the files libpq takes credentials from."""
        state = self.state_path
        hidden = [state, *(state.with_name(state.name + end)
                           for end in ("-wal", "-shm", "-journal")), self.lock_dir]
        if self.config.state.url is not None:
            home = Path.home()
            hidden += [home / ".pgpass", home / ".pg_service.conf", home / ".postgresql"]
            hidden += [Path(os.environ[name]) for name in _LIBPQ_FILES if os.environ.get(name)]
        return replace(self.config.agent.isolation(), hidden=tuple(hidden))

    def incidents(self) -> IncidentBook:
        """The incident records."""
        return IncidentBook(self.incidents_dir, self.lock_dir)

    def agents(self) -> list[str]:
        """Agents defined in the workspace."""
        if not self.agents_dir.is_dir():
            return []
        return sorted(p.parent.name for p in self.agents_dir.glob("*/agent.yaml"))

    def require_agent(self, name: str) -> str:
        """``name`` if the workspace defines it, else a clear error with a suggestion."""
        known = self.agents()
        if name in known:
            return name
        hint = did_you_mean(name, known) or (
            f" (agents: {', '.join(known)})" if known
            else f" (no agents under {self.config.paths.agents}/)"
        )
        raise UnknownAgent(name, hint)

    def controls(self, agent: str, directory: Path | None = None) -> Controls:
        """The agent's control files (or a copy of them in ``directory``), predicates bound."""
        # Imported here: `reinstate mode` and `agent_mode` read no control file.
        from gates._controls.files import load_controls

        return load_controls(directory or self.agent_dir(agent), agent, root=self.root,
                             predicate_modules=self.config.rules.predicate_modules)

    def relative(self, path: Path) -> str:
        """A path as the workspace names it, when it lies inside."""
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(path)


def _read_config(folder: Path,
                 containing: bool) -> tuple[Config, InvalidInput | None] | None:
    # exists, not is_file: a named pipe or a folder in the configuration's place is
    # refused (``_raw``), never passed over for another workspace's configuration.
    own = folder / CONFIG_FILE
    if own.exists():
        return _parse(own, _raw(own), containing)
    pyproject = folder / "pyproject.toml"
    if pyproject.exists():
        return _parse(pyproject, _raw(pyproject), containing)
    return None


def parse_config(path: Path, raw: bytes) -> Config | None:
    """The configuration the bytes ``raw`` of ``path`` (``reinstate.toml`` or
    ``pyproject.toml``) hold, checked as :meth:`Workspace.find` checks it; None for a
    ``pyproject.toml`` without ``[tool.reinstate]``."""
    found = _parse(path, raw, containing=False)
    return None if found is None else found[0]


def _parse(path: Path, raw: bytes,
           containing: bool) -> tuple[Config, InvalidInput | None] | None:
    """The configuration, and when ``containing`` the problem of a ``[notify]`` set aside
    (:meth:`Workspace.find`); None for a ``pyproject.toml`` without ``[tool.reinstate]``."""
    data = _toml(path, raw)
    if path.name == CONFIG_FILE:
        section: object = data
    else:
        tool = data.get("tool", {})
        section = tool.get("reinstate") if isinstance(tool, dict) else None
        if section is None:
            return None
    try:
        return parse_model(Config, section, path), None
    except InvalidInput as found:
        if not _in_notify(found.place):
            raise
        problem = _unquoted(found)
        if not (containing and isinstance(section, dict)):
            raise problem from None
        # Checked again without it: any other section's problem is still refused.
        rest = {key: value for key, value in section.items() if key != "notify"}
        return parse_model(Config, rest, path), problem


def _unquoted(problem: InvalidInput) -> InvalidInput:
    """A ``[notify]`` problem without the value the message quotes (``…, got 'mailtos://
    user:pw@host'`` for a URL not put in a list): a URL may hold a password or a token."""
    said, quoted, rest = problem.expected.partition(", got ")
    if not quoted:
        return problem
    more = re.search(r" \(and [0-9]+ more\)$", rest)
    return InvalidInput(problem.path, problem.place,
                        f"{said} (the value is not shown: it may hold a secret)"
                        f"{more.group() if more else ''}", line=problem.line)


def _in_notify(place: str) -> bool:
    """Whether a JSON path lies in ``[notify]``."""
    return place == "$.notify" or place.startswith(("$.notify.", "$.notify["))


def _raw(path: Path) -> bytes:
    """A configuration file's bytes (one more than the most it may hold, to tell)."""
    try:
        return read_regular(path, MAX_USER_FILE_BYTES)
    except OSError as exc:
        raise InvalidInput(path, "", f"cannot read the file ({exc.strerror})") from None


def _toml(path: Path, raw: bytes) -> dict[str, object]:
    """Parse a TOML file's bytes; every way they can be unreadable is one line naming file
    and place."""
    if len(raw) > MAX_USER_FILE_BYTES:
        raise InvalidInput(path, "", f"file too large: expected at most "
                                     f"{MAX_USER_FILE_BYTES // (1024 * 1024)} MiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:  # tomllib would raise this, not a TOMLDecodeError
        raise InvalidInput(path, "", f"not UTF-8 text ({exc.reason})",
                           line=raw[:exc.start].count(b"\n") + 1) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(path, "", f"malformed TOML: {exc}") from None
    except RecursionError:
        raise InvalidInput(path, "", "malformed TOML: nested too deeply") from None
    except ValueError:  # an integer longer than Python converts to or from text
        raise InvalidInput(path, "", f"malformed TOML: number too long (expected at most "
                                     f"{MAX_NUMBER_CHARS} characters)",
                           line=_long_number_line(text)) from None
    _refuse_huge_numbers(data, path, [])
    return data


def _long_number_line(text: str) -> int | None:
    match = re.search(rf"[0-9a-fA-FxXoObB_]{{{MAX_NUMBER_CHARS + 1}}}", text)
    return text.count("\n", 0, match.start()) + 1 if match else None


def _refuse_huge_numbers(value: object, path: Path, loc: list[str | int]) -> None:
    """Refuse integers Python could not print (a hexadecimal one parses at any length)."""
    if isinstance(value, int) and value.bit_length() > _MAX_BITS:
        raise InvalidInput(path, json_path(loc), f"number too long (expected at most "
                                                 f"{MAX_NUMBER_CHARS} characters)")
    items = value.items() if isinstance(value, dict) else (
        enumerate(value) if isinstance(value, list) else ())
    for key, item in items:
        _refuse_huge_numbers(item, path, [*loc, key])


# Bits of the largest integer of MAX_NUMBER_CHARS decimal digits.
_MAX_BITS = int(MAX_NUMBER_CHARS * 3.33)
