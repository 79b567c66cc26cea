"""The approvals file: loosenings of the regression set that a person approved in git.

``regressions/<agent>.ratchet-approvals.yaml`` sits beside the agent's case folder, not in
it, so the case loader never reads it as a case. It is reviewed in the pull request like
any other change; ``reinstate gate AGENT --against REF`` accepts a loosening only when an
entry names exactly that change (the case, the kind and the terms as approved).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime, Field

from evalsuite import InvalidInput, Record, dump_yaml, line_of, load_model, read_text, write_atomic
from gates._config import Workspace

RatchetKind = Literal["removed", "loosened", "incident-deleted", "baseline-changed"]


class RatchetApproval(Record):
    """One change to the regression set, an incident or its baseline, approved by a person."""

    case: str = Field(min_length=1)
    """The regression case id, or the control rule's path (``permissions.tools.TOOL.
    deny_when.ID``, ``review.rules.ID``, ``acceptance.ID``); the incident id for
    ``incident-deleted`` and ``baseline-changed``."""
    kind: RatchetKind
    """What was approved: a case ``removed`` or ``loosened``, an incident file deleted
    (``incident-deleted``), or a file of its baseline folder deleted or changed
    (``baseline-changed``)."""
    terms: str = Field(min_length=1)
    """What the approval is bound to: ``removed:<digest>`` (the terms of the case removed)
    or ``deleted:<SHA-256>`` (the incident file deleted, as at the ref), else the digest of
    the case's terms (or of the baseline's files, at the ref and now) as approved. A further
    change, or the same change to another case or incident given the same id later, does
    not match and needs its own approval; ``removed`` alone approves a case that only an
    incident's history still names."""
    loosened_from: str | None = None
    """For ``loosened``: the digest of the case's terms at the ref, which the approval is
    bound to as well as to ``terms``. Bound to ``terms`` alone, an approved lower threshold
    also covered an expectation added later and then removed (the terms were again those
    approved); an entry of ``loosened`` without it approves nothing."""
    change: str = ""
    """What changed, in words, as the ratchet described it."""
    actor: str = Field(min_length=1)
    """Who approved it."""
    reason: str = Field(min_length=1)
    """Why the regression set may loosen here."""
    at: AwareDatetime
    """When it was approved, in UTC."""


class RatchetApprovals(Record):
    """``regressions/<agent>.ratchet-approvals.yaml``: the approved loosenings of one agent."""

    schema_version: Literal[1] = 1
    """Version of this file's format."""
    agent: str
    """The agent whose regression set these approvals loosen."""
    approvals: list[RatchetApproval] = Field(default_factory=list)
    """Every approval, oldest first; entries are only ever appended."""


def approvals_path(workspace: Workspace, agent: str) -> Path:
    """Where ``agent``'s approvals file lives: beside its case folder, never inside it."""
    folder = workspace.regressions_dir(agent)
    return folder.with_name(f"{folder.name}.ratchet-approvals.yaml")


def load_approvals(workspace: Workspace, agent: str) -> RatchetApprovals:
    """``agent``'s approvals file, validated; none recorded when it does not exist."""
    path = approvals_path(workspace, agent)
    if not path.exists():
        return RatchetApprovals(agent=agent)
    approvals = load_model(path, RatchetApprovals)
    if approvals.agent != agent:
        raise InvalidInput(path, "$.agent", f"expected '{agent}', got '{approvals.agent}'",
                           line=line_of(read_text(path), ["agent"]))
    return approvals


def append_approvals(workspace: Workspace, agent: str,
                     entries: list[RatchetApproval]) -> Path:
    """Append ``entries`` to ``agent``'s approvals file atomically; returns the file.

    The caller holds the regression-set lock, so two approvers never lose each other's
    entries.
    """
    current = load_approvals(workspace, agent)
    updated = current.model_copy(update={"approvals": [*current.approvals, *entries]})
    path = approvals_path(workspace, agent)
    write_atomic(path, dump_yaml(updated))
    return path


def matching(approvals: RatchetApprovals
             ) -> dict[tuple[str, str, str, str], RatchetApproval]:
    """The latest approval for each (case, kind, terms, terms loosened from)."""
    return {(a.case, a.kind, a.terms, a.loosened_from or ""): a
            for a in approvals.approvals}

