"""Whether an agent's controls are proven: the one answer the runtime guard enforces
(``controls.unproven``) and every reader of the agent's mode reports.

Controls are proven when a passing verdict of the agent made after its last containment
fingerprinted exactly those control and predicate digests (signed with the configured key,
where one is). The guard digests the very bytes it loaded; ``reinstate mode``,
``agent_mode`` and the OpenFeature provider digest the files as they are now
(:func:`today_controls`). Both ask :func:`controls_unproven`, so they cannot disagree on what
counts as proven.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from evalsuite import read_regular
from gates._config import Workspace
from gates._controls.files import CONTROL_FILES
from gates._store.backends import StateStore
from gates._verdict.fingerprint import loaded_digests, predicate_files
from gates._verdict.fingerprint_files import combine, same

if TYPE_CHECKING:  # a verdict model is built only when the latest verdict does not prove
    from gates._store.audit import LatestVerdict
    from gates._verdict.verdict import Verdict

# How many passing verdicts since the last containment are looked through for one on the
# loaded controls (a shared store holds every branch's gate runs); past it, none is.
PROOF_LOOKBACK = 100

Loaded = tuple[dict[str, str], dict[str, str]]
"""The control and predicate digests of an agent's controls, by workspace path, as a
verdict's fingerprint keeps them (:func:`gates._verdict.fingerprint.loaded_digests`)."""


def controls_unproven(workspace: Workspace, agent: str, loaded: Loaded, store: StateStore,
                      since: datetime | None, latest: LatestVerdict | None = None) -> str:
    """Why the ``loaded`` digests of ``agent``'s controls are not those of a passing verdict
    of it made after ``since`` (its last containment), signed with ``[signing] public_key``
    where one is configured; "" when they are, or when it never passed and was never
    contained.

    With ``latest`` (:func:`gates._store.audit.decision_reader`) and no public key, the
    latest verdict's deciding fields are asked first, which builds no verdict model: when
    it passed on these controls after ``since``, they are proven; else every passing
    verdict since is looked through as without it.

    Raises:
        ReinstateError: the store or the configured public key cannot be read (nothing is
            proven then: callers answer as for unproven controls).
    """
    vouched = _vouched(workspace)
    if latest is not None and vouched is None:
        found = latest(agent)
        if (found is not None and found and found.agent == agent
                and (since is None or found.created_at > since)
                and (found.fingerprint.controls, found.fingerprint.predicates) == (
                    combine(loaded[0]), combine(loaded[1]))):
            return ""
    return _unproven(agent, loaded, store, since, vouched)


def today_controls(workspace: Workspace, agent: str,
                   ) -> tuple[Loaded, dict[str, bytes | None]]:
    """The agent's controls as they are now: their digests as :func:`controls_unproven`
    takes them, and the four control files' bytes by name (None: missing) they were taken
    from. An unreadable file raises :class:`OSError` (nothing is proven then)."""
    folder = workspace.agent_dir(agent)
    raw = {name: _bytes(folder / name) for name in CONTROL_FILES}
    predicates = {where: None if path is None else _bytes(path)
                  for where, path in predicate_files(workspace).items()}
    loaded = loaded_digests({workspace.relative(folder / name): data
                             for name, data in raw.items()}, predicates)
    return loaded, raw


def _bytes(path: Path) -> bytes | None:
    # As the guard reads a control file: missing is a digest of its own, not an error.
    try:
        return read_regular(path)
    except FileNotFoundError:
        return None


def _vouched(workspace: Workspace) -> Callable[[Verdict], str | None] | None:
    """With ``[signing] public_key``: why a stored verdict is not signed with that key
    (None when it is). Whoever can write the store can add a passing verdict on any
    controls, as check and restore know; only the signature says the gate made it.
    None without a key (verdicts are then unsigned)."""
    if workspace.config.signing.public_key is None:
        return None
    # Imported here: only a workspace that signs reads a key or an envelope.
    from gates._store.verdict_signature import configured_public_key, signature_problem

    key = configured_public_key(workspace)  # a bad key raises: nothing proven
    if key is None:
        return None
    return lambda verdict: signature_problem(workspace, verdict, key)


def _unproven(agent: str, loaded: Loaded, store: StateStore, since: datetime | None,
              vouched: Callable[[Verdict], str | None] | None) -> str:
    verdict = store.last_passing_verdict(agent)
    if verdict is None:
        # Never gated is nothing to hold to, unless the agent was contained: then its
        # verdicts were deleted from the store (a restore needs one), not never made.
        return "" if since is None else (
            f"no passing verdict of {agent} is in the store, though it was contained "
            f"({since:%Y-%m-%d %H:%M UTC})")
    controls, predicates = loaded
    today = (combine(controls), combine(predicates))
    last, unsigned = verdict, ""
    for _ in range(PROOF_LOOKBACK):
        if since is not None and verdict.created_at <= since:
            break
        taken = verdict.fingerprint
        # The store picks rows by their outcome and agent columns; only the verdict itself
        # (what a signature covers) says it passed, for this agent.
        if verdict and verdict.agent == agent and (taken.controls, taken.predicates) == today:
            problem = vouched(verdict) if vouched is not None else None
            if problem is None:
                return ""
            unsigned = unsigned or problem
        found = store.last_passing_verdict(agent, before=verdict.created_at)
        if found is None:
            break
        verdict = found
    stamp = last.created_at.strftime("%Y-%m-%d %H:%M UTC")
    if unsigned:
        return (f"the passing verdict of {agent} on today's controls is not signed by the "
                f"configured key ({unsigned})")
    if since is not None and last.created_at <= since:
        return (f"no gate of {agent} passed since its last containment "
                f"({since:%Y-%m-%d %H:%M UTC}; the last pass was {stamp})")
    taken = last.fingerprint
    changed = [path for path, digest in {**controls, **predicates}.items()
               if not same(digest, taken.files.get(path))]
    return (f"{agent}'s controls are not the ones a passing gate verified: "
            f"{', '.join(changed) or 'their digest'} differ from its last passing verdict "
            f"({stamp})")

