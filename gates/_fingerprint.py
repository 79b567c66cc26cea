"""Content hashes of what a verdict was computed on, so a stale verdict cannot restore."""

from __future__ import annotations

import hashlib
from pathlib import Path

from evalsuite import (
    AgentSpec,
    InvalidInput,
    PythonAdapterSpec,
    Record,
    ReplayAdapterSpec,
    SubprocessAdapterSpec,
    case_files,
    load_model,
)
from gates._config import Workspace
from gates._controls import CONTROL_FILES


class Fingerprint(Record):
    """SHA-256 digests of the controls, eval suite, regression set and agent."""

    agent_version: str
    """The version in agent.yaml."""
    controls: str
    """Digest of the four control files."""
    eval_suite: str
    """Digest of every eval case file."""
    regression_set: str
    """Digest of every regression case file."""
    agent: str
    """Digest of agent.yaml and the agent's Python source."""
    files: dict[str, str]
    """Digest of each file, by workspace path, to say which one changed."""

    def changed_since(self, other: Fingerprint) -> list[str]:
        """Workspace paths whose content differs between the two fingerprints."""
        paths = sorted(set(self.files) | set(other.files))
        return [p for p in paths if self.files.get(p) != other.files.get(p)]


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, or a marker for a missing or unreadable file."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return "missing"
    except OSError:  # unreadable: never equal to a digest, so never current
        return "unreadable"


def _combine(digests: dict[str, str]) -> str:
    joined = "\n".join(f"{k} {v}" for k, v in sorted(digests.items()))
    return hashlib.sha256(joined.encode()).hexdigest()


def agent_sources(workspace: Workspace, agent: str) -> list[Path]:
    """agent.yaml and the Python files its adapter imports from."""
    agent_file = workspace.agent_dir(agent) / "agent.yaml"
    sources = [agent_file]
    spec = load_model(agent_file, AgentSpec)
    for adapter in [spec.adapter, *spec.adapters.values()]:
        if isinstance(adapter, PythonAdapterSpec | SubprocessAdapterSpec):
            folder = adapter.path if isinstance(adapter, PythonAdapterSpec) else adapter.cwd
            root = _inside(workspace, agent_file, (agent_file.parent / folder).resolve())
            sources += sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
        elif isinstance(adapter, ReplayAdapterSpec):
            sources.append(_inside(workspace, agent_file,
                                   (agent_file.parent / adapter.log).resolve()))
        # An HTTP agent's code is not here to hash: its version in agent.yaml stands for it.
    return sorted(set(sources), key=lambda p: (p != agent_file, str(p)))


def _inside(workspace: Workspace, agent_file: Path, path: Path) -> Path:
    """``path`` if it lies in the workspace: agent.yaml must not reach outside it."""
    if not path.is_relative_to(workspace.root.resolve()):
        raise InvalidInput(agent_file, "$.adapter",
                           f"expected a path inside the workspace, got {path}")
    return path


def fingerprint(workspace: Workspace, agent: str) -> Fingerprint:
    """Today's fingerprint of an agent's workspace files."""
    def digests(paths: list[Path]) -> dict[str, str]:
        return {workspace.relative(p): file_digest(p) for p in paths}

    directory = workspace.agent_dir(agent)
    controls = digests([directory / name for name in CONTROL_FILES])
    evals = digests(case_files(workspace.evals_dir(agent)))
    regressions = digests(case_files(workspace.regressions_dir(agent)))
    source = digests(agent_sources(workspace, agent))
    spec = load_model(directory / "agent.yaml", AgentSpec)
    return Fingerprint(
        agent_version=spec.version,
        controls=_combine(controls),
        eval_suite=_combine(evals),
        regression_set=_combine(regressions),
        agent=_combine(source),
        files={**controls, **evals, **regressions, **source},
    )
