"""The ratchet against a git ref: what a pull request drops, seen without any state store.

A CI job often starts with no store from earlier runs, so the store's memory of the
regression set is empty there. ``--against REF`` (the base branch, a merge base) makes git
the memory instead: the agent's regression cases, its incident files and their baseline
folders at REF are compared with the working tree. A case removed or loosened, an incident
file deleted, or a baseline file deleted or changed fails the ``regression_ratchet`` check
unless ``regressions/<agent>.ratchet-approvals.yaml`` (reviewed in the same pull request)
approves exactly that change.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from evalsuite import (
    InvalidInput,
    load_cases,
    parse_model,
    parse_yaml,
    predicate_module_file,
    predicates_named,
)
from gates._config import CONFIG_FILE, Config, Workspace
from gates._controls.files import Acceptance, Controls, Permissions, ReviewRouting
from gates._gate.control_ratchet import (
    RecordedRun,
    compare_controls,
    control_terms,
    recorded_runs,
)
from gates._gate.engine import default_trials
from gates._gate.git import Blob, GitRepo
from gates._verdict.fingerprint import file_digest, predicate_files
from gates._verdict.fingerprint_files import SKIPPED_DIRS, combine
from gates._verdict.ratchet_approvals import (
    RatchetApproval,
    RatchetApprovals,
    load_approvals,
    matching,
)
from gates._verdict.ratchet_terms import (
    ControlTerms,
    Loosening,
    RatchetTerms,
    approval_of,
    captured_cases,
    compare,
    digest_of,
    terms_of,
)
from regressions import INCIDENT_ID, Incident, RegressionCase

DELETED = "deleted"
RULE_FILES = ("permissions.yaml", "review.yaml", "acceptance.yaml")
"""The control files whose rules the ratchet holds (the checklist stops no call)."""

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class RefSnapshot:
    """What the ratchet holds an agent to at a git ref, read before the gate runs anything."""

    ref: str
    """The ref as given (``origin/main``)."""
    commit: str
    """The commit it named."""
    terms: dict[str, RatchetTerms]
    """Terms of each regression case of the agent at the ref, by case id."""
    captured: set[str]
    """Case ids the agent's incidents at the ref record as captured."""
    incidents: dict[str, str]
    """Each incident of the agent at the ref → its file, as the workspace names it."""
    baselines: dict[str, dict[str, str]]
    """Each incident's baseline at the ref: file (from the incidents folder) → SHA-256."""
    baseline_folders: dict[str, str]
    """Each incident's baseline folder, from the incidents folder."""
    incident_sha256: dict[str, str]
    """SHA-256 of each incident's file at the ref: what approving its deletion is bound to."""
    approvals: RatchetApprovals
    """The approvals file of the working tree: the pull request's own approvals."""
    control_terms: dict[str, ControlTerms] | None = None
    """Each control rule of the agent at the ref, by its path; None when the ref has no
    ``permissions.yaml`` for the agent."""


def _model_at_ref(model: type[M], label: str, *, yaml_text: str | None = None,
                  data: Any = None) -> M:
    """Validate a file read from git (YAML text, or data already parsed) as ``model``; an
    error names it ``REF:path``, the line and the place."""
    path = Path(label)
    try:
        if yaml_text is not None:
            data = parse_yaml(yaml_text, path)
        return parse_model(model, data, path, yaml_text)
    except InvalidInput as exc:
        where = label + (f":{exc.line}" if exc.line is not None else "")
        raise InvalidInput(None, f"{where}: {exc.place}" if exc.place else where,
                           exc.expected) from None


def _text(label: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(None, label, f"expected UTF-8 text ({exc.reason} at byte "
                                        f"{exc.start})") from None


class _Reader:
    """One ref of one repository, read through git, with paths from the workspace's root."""

    def __init__(self, workspace: Workspace, ref: str) -> None:
        self.repo = GitRepo.of(workspace.root)
        self.ref = ref
        self.commit = self.repo.commit(ref)
        self.prefix = self.repo.path_of(workspace.root)

    def path(self, relative: str, file: str, field: str) -> str:
        """A workspace path (from ``reinstate.toml`` at the ref) as git names it."""
        joined = posixpath.normpath(posixpath.join(self.prefix, relative))
        inside = (joined == self.prefix or not self.prefix
                  or joined.startswith(self.prefix.rstrip("/") + "/"))
        if joined.startswith(("../", "/")) or joined == ".." or not inside:
            raise InvalidInput(None, f"{self.label(posixpath.join(self.prefix, file))}: "
                                     f"$.paths.{field}",
                               f"expected a path inside the workspace, got '{relative}'")
        return "" if joined == "." else joined

    def label(self, path: str) -> str:
        """How an error names a file at the ref: ``origin/main:regressions/x.yaml``."""
        return f"{self.ref}:{path}"

    def files(self, *folders: str) -> list[Blob]:
        """Every regular file under ``folders`` at the ref."""
        return [b for folder in folders for b in self.repo.files(self.commit, folder)]

    def read(self, blobs: list[Blob]) -> dict[str, str]:
        """The text of each blob, by path."""
        return {path: _text(self.label(path), data)
                for path, data in self.repo.read(blobs).items()}

    def config(self, today: Config) -> Config:
        """``reinstate.toml`` (or ``[tool.reinstate]``) at the ref; today's when it has none."""
        own, pyproject = (posixpath.join(self.prefix, name)
                          for name in (CONFIG_FILE, "pyproject.toml"))
        blobs = {b.path: b for b in self.repo.files(self.commit, own)
                 + self.repo.files(self.commit, pyproject)}
        for path in (own, pyproject):
            if path not in blobs:
                continue
            text = self.read([blobs[path]])[path]
            try:
                document = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise InvalidInput(None, self.label(path), f"malformed TOML: {exc}") from None
            section: Any = document
            if path == pyproject:
                tool = document.get("tool", {})
                section = tool.get("reinstate") if isinstance(tool, dict) else None
                if section is None:
                    continue
            return _model_at_ref(Config, self.label(path), data=section)
        return today


def read_ref(workspace: Workspace, agent: str, ref: str) -> RefSnapshot:
    """Read ``agent``'s regression set, incidents and baselines as they were at ``ref``.

    Raises:
        InvalidInput: git is missing, the workspace is not in a git repository, ``ref``
            is unknown (in a shallow clone: says to fetch it), a file at ``ref`` does not
            parse (named ``REF:path``), or today's approvals file is invalid. Exit 2.
    """
    git = _Reader(workspace, ref)
    config = git.config(workspace.config)
    cases_dir = posixpath.join(git.path(config.paths.regressions, CONFIG_FILE, "regressions"),
                               agent)
    incidents_dir = git.path(config.paths.incidents, CONFIG_FILE, "incidents")
    listed = git.files(cases_dir, incidents_dir)
    case_blobs = [b for b in listed if posixpath.dirname(b.path) == cases_dir
                  and posixpath.splitext(b.path)[1] in (".yaml", ".yml")]
    incident_blobs = [b for b in listed if posixpath.dirname(b.path) == incidents_dir
                      and re.fullmatch(INCIDENT_ID, posixpath.basename(b.path)[:-5])
                      and b.path.endswith(".yaml")]
    texts = git.read([*case_blobs, *incident_blobs])

    cases = [_model_at_ref(RegressionCase, git.label(blob.path), yaml_text=texts[blob.path])
             for blob in case_blobs]
    # A gate at the ref runs each case for its own trials, else [gate] trials as set there;
    # its predicates' code is the modules' source at the ref.
    code, modules = _code_at_ref(git, cases), _once(lambda: _modules_at_ref(git, config))
    terms = {case.id: terms_of(case, config.gate.trials, code.__getitem__, modules)
             for case in cases}

    incidents: dict[str, str] = {}
    digests: dict[str, str] = {}
    folders: dict[str, str] = {}
    captured: set[str] = set()
    for blob in incident_blobs:
        label = git.label(blob.path)
        incident = _model_at_ref(Incident, label, yaml_text=texts[blob.path])
        if incident.agent != agent:
            continue
        incidents[incident.id] = workspace.relative(workspace.incidents().path(incident.id))
        digests[incident.id] = hashlib.sha256(texts[blob.path].encode()).hexdigest()
        captured |= captured_cases(incident)
        if incident.containment is not None:
            folders[incident.id] = _baseline_folder(incident, label)
    return RefSnapshot(ref=ref, commit=git.commit, terms=terms, captured=captured,
                       incidents=incidents,
                       baselines=_baselines(git, listed, incidents_dir, folders),
                       baseline_folders=folders, incident_sha256=digests,
                       approvals=load_approvals(workspace, agent),
                       control_terms=_controls_at_ref(git, config, agent, modules))


def _controls_at_ref(git: _Reader, config: Config, agent: str,
                     modules: Callable[[], str]) -> dict[str, ControlTerms] | None:
    """The agent's control rules at the ref (:func:`control_terms`), read from its
    permissions, review and acceptance files there; None when the ref has no permissions
    file for it (the agent is new since)."""
    folder = posixpath.join(git.path(config.paths.agents, CONFIG_FILE, "agents"), agent)
    names = {posixpath.join(folder, name): name for name in RULE_FILES}
    blobs = [b for b in git.files(folder) if b.path in names]
    texts = {names[path]: text for path, text in git.read(blobs).items()}
    if "permissions.yaml" not in texts:
        return None

    def read(model: type[M], name: str) -> M:
        if name not in texts:  # none at the ref: no rule of that layer
            return model.model_validate({"agent": agent})
        return _model_at_ref(model, git.label(posixpath.join(folder, name)),
                             yaml_text=texts[name])

    # Two rules at one path at the ref is an error naming the file there (REF:path), not
    # the working tree's.
    return control_terms(read(Permissions, "permissions.yaml"),
                         read(ReviewRouting, "review.yaml"),
                         read(Acceptance, "acceptance.yaml"), modules(),
                         Path(git.label(folder)))


def _code_at_ref(git: _Reader, cases: list[RegressionCase]) -> dict[str, str]:
    """SHA-256 of each module file the cases' predicate expectations call, at the ref (by
    path from the workspace root; ``missing`` when the ref has none), read at once."""
    wanted = {predicate_module_file(c.predicate) for case in cases
              for _, c in predicates_named(case.expect)}
    where = {posixpath.normpath(posixpath.join(git.prefix, module)): module
             for module in sorted(wanted)}
    blobs = [b for path in where for b in git.repo.files(git.commit, path) if b.path == path]
    contents = git.repo.read(blobs)
    return {module: hashlib.sha256(contents[path]).hexdigest() if path in contents
            else "missing" for path, module in where.items()}


def _modules_at_ref(git: _Reader, config: Config) -> str:
    """The digest of every file of the predicate modules ``config`` lists, at the ref, as
    :func:`workspace_modules` takes it today (a module's ``.py`` file, or every ``.py`` file
    under its package's folder; ``missing`` for one found in neither place)."""
    found: dict[str, str] = {}
    start = len(git.prefix) + 1 if git.prefix else 0
    for module in config.rules.predicate_modules:
        if not all(part.isidentifier() for part in module.split(".")):
            found[f"predicate module {module}"] = "missing"
            continue
        base = posixpath.join(git.prefix, *module.split("."))
        blobs = [b for b in git.files(base + ".py") if b.path == base + ".py"]
        blobs += [b for b in git.files(base) if b.path.startswith(base + "/")
                  and b.path.endswith(".py")
                  and SKIPPED_DIRS.isdisjoint(b.path[len(base):].split("/"))]
        contents = git.repo.read(blobs)
        for path, data in contents.items():
            found[path[start:]] = hashlib.sha256(data).hexdigest()
        if not contents:
            found[f"{base[start:]}.py"] = "missing"
    return combine(found)


def workspace_modules(workspace: Workspace) -> str:
    """The digest of every file of the predicate modules the workspace lists today (the
    fingerprint's files): the code any predicate may import."""
    return combine({where: "missing" if path is None else file_digest(path)
                    for where, path in predicate_files(workspace).items()})


T = TypeVar("T")


def _once(make: Callable[[], T]) -> Callable[[], T]:
    """``make``, called on first use only: most regression sets call no predicate."""
    made: list[T] = []

    def get() -> T:
        if not made:
            made.append(make())
        return made[0]
    return get


def workspace_code(workspace: Workspace) -> Callable[[str], str]:
    """A predicate module file (from the workspace root) → SHA-256 of its source today,
    each file read once however many cases call into it."""
    read: dict[str, str] = {}

    def digest(module: str) -> str:
        if module not in read:
            read[module] = file_digest(workspace.root / module)
        return read[module]
    return digest


def today_terms(workspace: Workspace, cases: list[RegressionCase],
                trials: int | None = None) -> dict[str, RatchetTerms]:
    """Each case's terms as a gate run with ``trials`` (``--trials``; default ``[gate]
    trials``) runs it today: the trials the engine gives it, its predicates' code now."""
    default, code = default_trials(workspace, trials), workspace_code(workspace)
    modules = _once(lambda: workspace_modules(workspace))
    return {case.id: terms_of(case, default, code, modules) for case in cases}


def _baseline_folder(incident: Incident, label: str) -> str:
    """The incident's baseline folder at the ref, from the incidents folder."""
    assert incident.containment is not None
    directory = posixpath.normpath(incident.containment.baseline.directory)
    if directory.startswith(("..", "/")):
        raise InvalidInput(None, f"{label}: $.containment.baseline.directory",
                           "expected a folder inside the incidents folder")
    return directory


def _baselines(git: _Reader, listed: list[Blob], incidents_dir: str,
               folders: dict[str, str]) -> dict[str, dict[str, str]]:
    """SHA-256 of each file of each incident's baseline folder at the ref, read at once."""
    owned = {incident_id: [b for b in listed
                           if b.path.startswith(posixpath.join(incidents_dir, folder) + "/")]
             for incident_id, folder in folders.items()}
    contents = git.repo.read([b for blobs in owned.values() for b in blobs])
    start = len(incidents_dir) + 1 if incidents_dir else 0
    return {incident_id: {b.path[start:]: hashlib.sha256(contents[b.path]).hexdigest()
                          for b in blobs}
            for incident_id, blobs in owned.items()}


def compare_with_ref(snapshot: RefSnapshot, workspace: Workspace, agent: str,
                     cases: list[RegressionCase], incidents: list[Incident],
                     trials: int | None = None, controls: Controls | None = None,
                     runs: list[RecordedRun] | None = None) -> list[Loosening]:
    """Every case removed or loosened, incident file deleted, baseline file deleted or
    changed and control rule removed or loosened since ``snapshot``'s ref, each with its
    approval from the approvals file; the cases as run with ``trials`` per case that sets
    none (default ``[gate] trials``), the controls (default: read now) compared on the
    recorded ``runs`` (default: the cases' recorded runs)."""
    today = today_terms(workspace, cases, trials)
    found = compare(snapshot.terms, snapshot.captured, today)
    if snapshot.control_terms is not None:
        found += compare_controls(snapshot.control_terms,
                                  controls or workspace.controls(agent),
                                  workspace_modules(workspace),
                                  recorded_runs(cases) if runs is None else runs,
                                  {*snapshot.terms, *snapshot.captured,
                                   *(c for i in incidents for c in captured_cases(i))})
    present = {incident.id for incident in incidents}
    for incident_id in sorted(snapshot.incidents, key=lambda i: int(i.split("-")[1])):
        if incident_id not in present:
            found.append(Loosening(
                incident_id, f"incident file {snapshot.incidents[incident_id]} deleted (or it "
                             f"no longer names {agent})",
                f"{DELETED}:{snapshot.incident_sha256[incident_id]}", kind="incident-deleted"))
        now, changes = {}, []
        for name, digest in sorted(snapshot.baselines.get(incident_id, {}).items()):
            path = workspace.incidents_dir / name
            now[name] = file_digest(path)
            if now[name] != digest:
                verb = "deleted" if now[name] == "missing" else "changed"
                changes.append(f"{workspace.relative(path)} {verb}")
        if changes and all(digest == "missing" for digest in now.values()):
            folder = workspace.incidents_dir / snapshot.baseline_folders[incident_id]
            changes = [f"folder {workspace.relative(folder)}/ deleted"]
        if changes:
            # Bound to the baseline at the ref as well as today's: an incident id opened
            # again after deletion has a baseline of the same file names, deleted alike.
            then = snapshot.baselines[incident_id]
            found.append(Loosening(incident_id, "baseline " + "; ".join(changes),
                                   digest_of({"at_ref": then, "now": now}),
                                   kind="baseline-changed"))
    approved = matching(snapshot.approvals)
    return [replace(f, approval=_approval(approved, f)) for f in found]


def _approval(approved: dict[tuple[str, str, str, str], RatchetApproval],
              loosening: Loosening) -> RatchetApproval | None:
    """The approval of ``loosening`` in the approvals file (:func:`approval_of`): a
    loosening's bound to the terms at the ref as well as to today's."""
    exact = approved.get((loosening.case, loosening.kind, loosening.key, loosening.since))
    return approval_of(loosening, exact,
                       ((case, terms, approval) for (case, kind, terms, _), approval
                        in approved.items() if kind == "removed"))


def ratchet_against(workspace: Workspace, agent: str, ref: str,
                    trials: int | None = None) -> list[Loosening]:
    """What ``agent``'s regression set, incidents and baselines lost since git ``ref``.

    Each removal, loosening or deletion comes with its approval from
    ``regressions/<agent>.ratchet-approvals.yaml`` when one matches exactly; the gate's
    ``regression_ratchet`` check fails on any without.

    Args:
        workspace: The workspace, anywhere inside a git work tree.
        agent: The agent whose files to compare.
        ref: What to compare with: ``origin/main``, a merge base, a commit.
        trials: Trials per case that sets none, as a ``gate --trials`` would run them
            (default: ``[gate] trials``).

    Raises:
        InvalidInput: see :func:`read_ref`; or a file of today's workspace is invalid.
    """
    workspace.require_agent(agent)
    snapshot = read_ref(workspace, agent, ref)
    cases = list(load_cases(workspace.regressions_dir(agent), RegressionCase, agent).values())
    return compare_with_ref(snapshot, workspace, agent, cases, workspace.incidents().all(agent),
                            trials)
