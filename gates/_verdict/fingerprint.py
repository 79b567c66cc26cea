"""Content hashes of everything a verdict depends on, so a stale verdict cannot restore.

The fingerprint covers the workspace configuration the gate read, every predicate module
``[rules] predicate_modules`` lists, the four control files, the eval suite, the regression
set and the agent: ``agent.yaml``, every file in its folder, under its adapters' folders and
matched by its ``sources:`` globs. Configuration and control files are hashed by their
parsed content, so a comment or a reformatting is not a change; everything else by its
bytes. Each file is read once.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import SerializerFunctionWrapHandler, model_serializer

from evalsuite import (
    AgentSpec,
    InvalidInput,
    PythonAdapterSpec,
    Record,
    ReinstateError,
    ReplayAdapterSpec,
    SubprocessAdapterSpec,
    case_files,
    load_model,
    parse_model,
    parse_yaml,
    read_regular,
)
from gates._config import CONFIG_FILE, Config, Workspace
from gates._controls.files import CONTROL_FILES
from gates._verdict.fingerprint_files import (
    SUMMARIES,
    agent_files,
    combine,
    content_digest,
    cut,
    same,
    sha256,
    walk,
)
from gates._verdict.fingerprint_files import file_digest as file_digest  # the gate's

# Summary digests added after verdicts were first stored: a verdict without them was
# computed on less than today's fingerprint covers, so it is never current.
_ADDED = ("config", "predicates")
# libyaml's safe loader when installed: the same documents, parsed several times faster.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _parse_yaml(text: str) -> Any:
    """One YAML document with the safe loader (libyaml's when installed: hashing runs at
    every gate and check, so speed matters here; the loaders that validate user files
    bound aliases and sizes, and this one only hashes)."""
    loader = _YAML_LOADER(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


class Fingerprint(Record):
    """SHA-256 digests of everything a verdict was computed on."""

    agent_version: str
    """The version in agent.yaml."""
    controls: str
    """Digest of the four control files' parsed content."""
    eval_suite: str
    """Digest of every eval case file."""
    regression_set: str
    """Digest of every regression case file."""
    agent: str
    """Digest of agent.yaml, every file in the agent's folder and its adapters' folders,
    and the files its ``sources:`` globs match."""
    config: str | None = None
    """Digest of the workspace configuration's parsed content (``reinstate.toml`` or
    ``[tool.reinstate]``); none on verdicts written before it was kept."""
    predicates: str | None = None
    """Digest of every predicate module ``[rules] predicate_modules`` lists; none on
    verdicts written before it was kept."""
    files: dict[str, str]
    """Digest of each file, by workspace path, to say which one changed: an eval or
    regression case file's cut to its first 16 hex digits (its set's digest above is whole),
    so a verdict over many cases stays small, unless ``[gate] full_case_digests`` keeps it
    whole."""

    @model_serializer(mode="wrap")
    def _as_stored(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A verdict stored before a digest existed dumps exactly as it was stored, so the
        # body digest the audit log keeps for it still matches.
        data: dict[str, Any] = handler(self)
        for name in _ADDED:
            if data.get(name, "") is None:
                del data[name]
        return data

    def changed_since(self, other: Fingerprint) -> list[str]:
        """Workspace paths whose content differs between the two fingerprints.

        When no file differs but a summary digest does (a verdict from before a part was
        fingerprinted), the differing digests are named instead: never an empty answer
        for two fingerprints that differ.
        """
        paths = sorted(set(self.files) | set(other.files))
        changed = [p for p in paths if not same(self.files.get(p), other.files.get(p))]
        if not changed:
            changed = [f"the {name} digest" for name in SUMMARIES
                       if getattr(self, name) != getattr(other, name)]
        return changed


def control_digest(path: Path) -> str:
    """Digest of a YAML file's parsed content; of its bytes, marked, when it does not parse.

    A comment-only edit keeps the digest; any change to what the file says changes it.
    """
    try:
        raw = read_regular(path)
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "unreadable"
    return control_bytes_digest(raw)


def control_bytes_digest(raw: bytes) -> str:
    """:func:`control_digest` of a control file's bytes ``raw``."""
    try:
        return content_digest(_parse_yaml(raw.decode("utf-8")))
    except (UnicodeDecodeError, yaml.YAMLError, ValueError, RecursionError):
        # Never equal to a parsed digest; loading the file reports what is wrong with it.
        return "bytes:" + sha256(raw)


def config_digest(config: Config) -> str:
    """Digest of a workspace configuration's parsed content, as the fingerprint keeps it.

    Who hears of an incident says nothing about the agent, nor how long a verdict's case
    digests are: ``[notify]`` and ``full_case_digests`` never stale a verdict.
    """
    return content_digest(config.model_dump(
        mode="json", exclude={"notify": True, "gate": {"full_case_digests"}}))


def config_file(workspace: Workspace) -> Path:
    """The file the workspace's configuration was read from."""
    own = workspace.root / CONFIG_FILE
    return own if own.is_file() else workspace.root / "pyproject.toml"


def predicate_files(workspace: Workspace) -> dict[str, Path | None]:
    """Every file of every listed predicate module, by workspace path.

    A module is its ``.py`` file, or every ``.py`` file in its package folder; a module
    found in neither place (or outside the workspace) maps to None, so it is recorded as
    missing, never skipped.
    """
    root = workspace.root.resolve()
    found: dict[str, Path | None] = {}
    for module in workspace.config.rules.predicate_modules:
        if not all(part.isidentifier() for part in module.split(".")):
            found[f"predicate module {module}"] = None
            continue
        base = root.joinpath(*module.split("."))
        module_file = base.with_suffix(".py")
        paths = [module_file] if module_file.is_file() else []
        if base.is_dir():
            paths += (p for p in walk(base, workspace) if p.suffix == ".py")
        inside = [p for p in paths if p.resolve().is_relative_to(root)]
        for path in inside:
            found[workspace.relative(path)] = path
        if not inside:
            found[workspace.relative(module_file)] = None
    return found


def agent_sources(workspace: Workspace, agent: str, spec: AgentSpec | None = None,
                  ) -> list[Path]:
    """Every file the agent is made of, agent.yaml first; its control files excepted.

    agent.yaml, every file in the agent's folder, under its Python adapter's ``path`` or
    subprocess adapter's ``cwd``, its replay log, and every file its ``sources:`` globs
    match. The control files are fingerprinted by their parsed content instead.
    """
    agent_file = workspace.agent_dir(agent) / "agent.yaml"
    if spec is None:
        spec = load_model(agent_file, AgentSpec)
    adapters: list[tuple[str, str]] = []
    for adapter in [spec.adapter, *spec.adapters.values()]:
        if isinstance(adapter, PythonAdapterSpec):
            adapters.append(("folder", adapter.path))
        elif isinstance(adapter, SubprocessAdapterSpec):
            adapters.append(("folder", adapter.cwd))
        elif isinstance(adapter, ReplayAdapterSpec):
            adapters.append(("file", adapter.log))
        # An HTTP agent's code is not here to hash: its version in agent.yaml stands for it.
    return agent_files(workspace, agent_file, adapters, spec.sources, CONTROL_FILES)


def case_digests(workspace: Workspace, directory: Path,
                 read: Mapping[Path, str] | None = None) -> dict[str, str]:
    """Each case file of ``directory`` by workspace path: its digest from ``read`` (files
    already read, by path) or else from its bytes. The folder is resolved once: the case
    files are no links (``case_files`` refuses them), so each is its folder's and its name."""
    prefix = workspace.relative(directory)
    known = read or {}
    return {f"{prefix}/{p.name}": known.get(p) or file_digest(p) for p in case_files(directory)}


def _source_digests(workspace: Workspace, agent: str, raw: bytes,
                    spec: AgentSpec) -> dict[str, str]:
    """Each file the agent is made of by workspace path, agent.yaml (``raw``) first."""
    agent_file = workspace.agent_dir(agent) / "agent.yaml"
    return {workspace.relative(agent_file): sha256(raw),
            **{workspace.relative(p): file_digest(p)
               for p in agent_sources(workspace, agent, spec) if p != agent_file}}


def agent_changed(workspace: Workspace, agent: str, taken: Fingerprint) -> list[str]:
    """The agent's files whose content differs from fingerprint ``taken``: its processes
    read them after the fingerprint was taken (a module imported late, a data file), so a
    verdict bound to ``taken`` would name code that did not run. Empty when none did."""
    agent_file = workspace.agent_dir(agent) / "agent.yaml"
    try:
        raw = read_regular(agent_file)
        text = raw.decode("utf-8")
        spec = parse_model(AgentSpec, parse_yaml(text, agent_file), agent_file, text)
        now = _source_digests(workspace, agent, raw, spec)
    except (OSError, UnicodeDecodeError, ReinstateError) as exc:
        return [f"{workspace.relative(agent_file)} ({exc})"]
    if combine(now) == taken.agent:
        return []
    return [p for p, digest in now.items() if taken.files.get(p) != digest] or [
        "a file of the agent was removed"]


def control_digests(workspace: Workspace, agent: str,
                    ) -> tuple[dict[str, str], dict[str, str]]:
    """Today's digests of the agent's four control files and of every predicate module's
    files, by workspace path, as a verdict's fingerprint keeps them."""
    directory = workspace.agent_dir(agent)
    controls = {workspace.relative(directory / name): control_digest(directory / name)
                for name in CONTROL_FILES}
    predicates = {where: "missing" if path is None else file_digest(path)
                  for where, path in predicate_files(workspace).items()}
    return controls, predicates


def loaded_digests(controls: Mapping[str, bytes | None],
                   predicates: Mapping[str, bytes | None],
                   ) -> tuple[dict[str, str], dict[str, str]]:
    """:func:`control_digests` of files as they were read (bytes by workspace path; None
    for a missing one): the runtime guard digests the very bytes it loaded, so what it
    enforces is compared with what a verdict verified, never with a later state of the
    files."""
    return ({where: "missing" if raw is None else control_bytes_digest(raw)
             for where, raw in controls.items()},
            {where: "missing" if raw is None else sha256(raw)
             for where, raw in predicates.items()})


def fingerprint(workspace: Workspace, agent: str, *,
                read: Mapping[Path, str] | None = None) -> Fingerprint:
    """Today's fingerprint of everything an agent's verdict depends on.

    ``read`` gives case files' digests already taken (by path) as they were read, so
    they are not read again; every other case file is read here.
    """
    directory = workspace.agent_dir(agent)
    agent_file = directory / "agent.yaml"
    try:
        raw = read_regular(agent_file)
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise InvalidInput(agent_file, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(agent_file, "", f"cannot read the file ({exc})") from None
    spec = parse_model(AgentSpec, parse_yaml(text, agent_file), agent_file, text)
    config = {workspace.relative(config_file(workspace)): config_digest(workspace.config)}
    controls, predicates = control_digests(workspace, agent)
    evals = case_digests(workspace, workspace.evals_dir(agent), read)
    regressions = case_digests(workspace, workspace.regressions_dir(agent), read)
    whole = workspace.config.gate.full_case_digests
    source = _source_digests(workspace, agent, raw, spec)
    return Fingerprint(
        agent_version=spec.version,
        controls=combine(controls),
        eval_suite=combine(evals),
        regression_set=combine(regressions),
        agent=combine(source),
        config=combine(config),
        predicates=combine(predicates),
        files={**config, **predicates, **controls, **cut(evals, whole),
               **cut(regressions, whole), **source},
    )
