"""Content hashes of everything a verdict depends on, so a stale verdict cannot restore.

The fingerprint covers the workspace configuration the gate read, every predicate module
``[rules] predicate_modules`` lists, the four control files, the eval suite, the regression
set and the agent: ``agent.yaml``, every file in its folder, under its adapters' folders and
matched by its ``sources:`` globs. Configuration and control files are hashed by their
parsed content, so a comment or a reformatting is not a change; everything else by its
bytes. Each file is read once.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import SerializerFunctionWrapHandler, model_serializer

from evalsuite import (
    AgentSpec,
    InvalidInput,
    PythonAdapterSpec,
    Record,
    ReplayAdapterSpec,
    SubprocessAdapterSpec,
    case_files,
    load_model,
    parse_model,
    parse_yaml,
)
from gates._config import CONFIG_FILE, Workspace
from gates._controls.files import CONTROL_FILES

# Summary digests added after verdicts were first stored: a verdict without them was
# computed on less than today's fingerprint covers, so it is never current.
_ADDED = ("config", "predicates")
_SUMMARIES = ("agent_version", "controls", "eval_suite", "regression_set", "agent", *_ADDED)
# Parsed content with more values than this is hashed by its bytes instead: an alias bomb in
# a control file must not stall the fingerprint (loading the file reports it).
_CANONICAL_LIMIT = 200_000
_SKIPPED_DIRS = frozenset({"__pycache__", ".git"})
# Hex digits kept of each eval and regression case file's digest in ``files``: enough to
# name the file that changed; the case set's full digest decides whether anything did.
_CASE_DIGEST = 16
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
        changed = [p for p in paths if not _same(self.files.get(p), other.files.get(p))]
        if not changed:
            changed = [f"the {name} digest" for name in _SUMMARIES
                       if getattr(self, name) != getattr(other, name)]
        return changed


def _same(one: str | None, other: str | None) -> bool:
    """Whether two digests of a file agree: equal, or one the start of the other (a case
    file's digest is cut short; verdicts stored before kept it whole)."""
    if one is None or other is None:
        return one is other
    if len(one) == len(other):
        return one == other
    short, whole = sorted((one, other), key=len)
    return len(short) == _CASE_DIGEST and whole.startswith(short)


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, or a marker for a missing or unreadable file."""
    try:
        return _sha256(path.read_bytes())
    except FileNotFoundError:
        return "missing"
    except OSError:  # unreadable: never equal to a digest, so never current
        return "unreadable"


def content_digest(data: Any) -> str:
    """SHA-256 of parsed content as canonical JSON (keys sorted, no whitespace).

    Raises ``ValueError`` for content with no canonical form (mixed key types, a cycle,
    nesting too deep) or with more values than the limit.
    """
    _count_values(data)
    try:
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          default=_tagged)
    except (TypeError, RecursionError) as exc:
        raise ValueError(f"no canonical form: {exc}") from None
    return _sha256(text.encode())


def _count_values(data: Any) -> None:
    """Refuse content with more values than the limit, counting every alias expansion."""
    pending, seen = [data], 0
    while pending:
        value = pending.pop()
        seen += 1
        if seen > _CANONICAL_LIMIT:
            raise ValueError(f"more than {_CANONICAL_LIMIT} values to hash")
        if isinstance(value, dict):
            pending += value.keys()
            pending += value.values()
        elif isinstance(value, list):
            pending += value


def _tagged(value: Any) -> Any:
    """YAML values JSON lacks (dates, sets, bytes), tagged so no string equals them."""
    if isinstance(value, set | frozenset):
        return {"$yaml": "set", "value": sorted(repr(v) for v in value)}
    return {"$yaml": type(value).__name__, "value": repr(value)}


def control_digest(path: Path) -> str:
    """Digest of a YAML file's parsed content; of its bytes, marked, when it does not parse.

    A comment-only edit keeps the digest; any change to what the file says changes it.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "unreadable"
    try:
        return content_digest(_parse_yaml(raw.decode("utf-8")))
    except (UnicodeDecodeError, yaml.YAMLError, ValueError, RecursionError):
        # Never equal to a parsed digest; loading the file reports what is wrong with it.
        return "bytes:" + _sha256(raw)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _combine(digests: dict[str, str]) -> str:
    joined = "\n".join(f"{k} {v}" for k, v in sorted(digests.items()))
    return _sha256(joined.encode())


def _cut(digests: dict[str, str], whole: bool) -> dict[str, str]:
    """Case files' digests cut short for ``files`` (markers such as ``missing`` kept), or
    kept ``whole``."""
    if whole:
        return digests
    return {path: digest[:_CASE_DIGEST] if len(digest) == 64 else digest
            for path, digest in digests.items()}


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
            paths += (p for p in _walk(base, workspace) if p.suffix == ".py")
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
    directory = workspace.agent_dir(agent)
    agent_file = directory / "agent.yaml"
    if spec is None:
        spec = load_model(agent_file, AgentSpec)
    sources = {agent_file, *_walk(directory, workspace)}
    for adapter in [spec.adapter, *spec.adapters.values()]:
        if isinstance(adapter, PythonAdapterSpec | SubprocessAdapterSpec):
            folder = adapter.path if isinstance(adapter, PythonAdapterSpec) else adapter.cwd
            root = _inside(workspace, agent_file, "$.adapter", agent_file.parent / folder)
            sources.update(_walk(root, workspace))
        elif isinstance(adapter, ReplayAdapterSpec):
            sources.add(_inside(workspace, agent_file, "$.adapter",
                                agent_file.parent / adapter.log))
        # An HTTP agent's code is not here to hash: its version in agent.yaml stands for it.
    for index, pattern in enumerate(spec.sources):
        sources.update(_matches(workspace, agent_file, index, pattern))
    controls = {directory / name for name in CONTROL_FILES}
    controls |= {path.resolve() for path in controls}
    return sorted((p for p in sources if p not in controls),
                  key=lambda p: (p != agent_file, str(p)))


def _walk(folder: Path, workspace: Workspace) -> Iterator[Path]:
    """Every file under ``folder``, except caches and what reinstate itself writes there
    (the state store, incidents, logs): a restore or a new log line must not make every
    verdict stale."""
    base = folder.resolve()
    state = workspace.state_path
    owned = [d for d in (state.parent, workspace.lock_dir, workspace.incidents_dir,
                         workspace.logs_dir) if d != base and d.is_relative_to(base)]
    holds_state = state.parent.is_relative_to(base)
    for path in folder.rglob("*"):
        if not _SKIPPED_DIRS.isdisjoint(path.parts) or not path.is_file():
            continue
        if not owned and not holds_state:
            yield path  # the usual agent folder: nothing of reinstate's can be in it
            continue
        real = path.resolve()
        if real.parent == state.parent and real.name.startswith(state.name):
            continue  # the store and its journal files
        if not any(real.is_relative_to(d) for d in owned):
            yield path


def _matches(workspace: Workspace, agent_file: Path, index: int, pattern: str) -> list[Path]:
    """The files one ``sources:`` glob matches (a matched folder stands for its files)."""
    place = f"$.sources[{index}]"
    if Path(pattern).is_absolute():
        raise InvalidInput(agent_file, place, f"expected a pattern relative to agent.yaml, "
                                              f"got '{pattern}'")
    _inside(workspace, agent_file, place, Path(os.path.normpath(agent_file.parent / pattern)))
    try:
        matched = sorted(agent_file.parent.glob(pattern))
    except (ValueError, NotImplementedError) as exc:
        raise InvalidInput(agent_file, place, f"expected a glob pattern: {exc}") from None
    files: list[Path] = []
    for path in matched:
        _inside(workspace, agent_file, place, path)
        found = list(_walk(path, workspace)) if path.is_dir() else [path]
        for file in found:
            if file.is_file() and _SKIPPED_DIRS.isdisjoint(file.parts):
                _inside(workspace, agent_file, place, file)
                files.append(file)
    return files


def _inside(workspace: Workspace, agent_file: Path, place: str, path: Path) -> Path:
    """``path``, resolved, if it lies in the workspace: agent.yaml must not reach outside."""
    resolved = path.resolve()
    if not resolved.is_relative_to(workspace.root.resolve()):
        raise InvalidInput(agent_file, place,
                           f"expected a path inside the workspace, got {resolved}")
    return resolved


def case_digests(workspace: Workspace, directory: Path,
                 read: Mapping[Path, str] | None = None) -> dict[str, str]:
    """Each case file of ``directory`` by workspace path: its digest from ``read`` (files
    already read, by path) or else from its bytes. The folder is resolved once: the case
    files are no links (``case_files`` refuses them), so each is its folder's and its name."""
    prefix = workspace.relative(directory)
    known = read or {}
    return {f"{prefix}/{p.name}": known.get(p) or file_digest(p) for p in case_files(directory)}


def fingerprint(workspace: Workspace, agent: str, *,
                read: Mapping[Path, str] | None = None) -> Fingerprint:
    """Today's fingerprint of everything an agent's verdict depends on.

    ``read`` gives case files' digests already taken (by path) as they were read, so
    they are not read again; every other case file is read here.
    """
    def digests(paths: Iterable[Path]) -> dict[str, str]:
        return {workspace.relative(p): file_digest(p) for p in paths}

    directory = workspace.agent_dir(agent)
    agent_file = directory / "agent.yaml"
    try:
        raw = agent_file.read_bytes()
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise InvalidInput(agent_file, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(agent_file, "", f"cannot read the file ({exc})") from None
    spec = parse_model(AgentSpec, parse_yaml(text, agent_file), agent_file, text)
    # Who hears of an incident says nothing about the agent, nor how long a verdict's case
    # digests are: [notify] and full_case_digests never stale a verdict.
    settings = workspace.config.model_dump(
        mode="json", exclude={"notify": True, "gate": {"full_case_digests"}})
    config = {workspace.relative(config_file(workspace)): content_digest(settings)}
    predicates = {where: "missing" if path is None else file_digest(path)
                  for where, path in predicate_files(workspace).items()}
    controls = {workspace.relative(directory / name): control_digest(directory / name)
                for name in CONTROL_FILES}
    evals = case_digests(workspace, workspace.evals_dir(agent), read)
    regressions = case_digests(workspace, workspace.regressions_dir(agent), read)
    whole = workspace.config.gate.full_case_digests
    source = {workspace.relative(agent_file): _sha256(raw),
              **digests(p for p in agent_sources(workspace, agent, spec) if p != agent_file)}
    return Fingerprint(
        agent_version=spec.version,
        controls=_combine(controls),
        eval_suite=_combine(evals),
        regression_set=_combine(regressions),
        agent=_combine(source),
        config=_combine(config),
        predicates=_combine(predicates),
        files={**config, **predicates, **controls, **_cut(evals, whole),
               **_cut(regressions, whole), **source},
    )
