"""Whether a stored verdict is signed: the public key, where its envelope lies, and the
line a release manager reads.

Apart from :mod:`gates._store.attestation` (which signs, and reads envelopes into the whole
verdict model) so that ``check`` and ``restore`` with no key configured load neither the
verdict models nor securesystemslib: they only say "unsigned". With a key the envelope is
verified there, as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from evalsuite import InvalidInput, read_regular
from gates._config import CONFIG_FILE, Workspace
from gates._errors import GatesError
from gates._store.backends import verdict_digest

if TYPE_CHECKING:
    from securesystemslib.signer import SSlibKey

    from gates._verdict.stored import DecidedVerdict


class SignatureInvalid(GatesError):
    """An envelope that does not verify, or does not say what it must."""

    exit_code = 1


def attestation_path(workspace: Workspace, verdict: DecidedVerdict) -> Path:
    """Where the gate keeps a verdict's envelope: beside the state store, named by its digest."""
    return (workspace.state_path.parent / "attestations" / verdict.agent
            / f"{verdict_digest(verdict)}.intoto.json")


def load_public_key(path: Path) -> SSlibKey:
    """The Ed25519 public key in a PEM file (``reinstate keygen`` writes one).

    Raises:
        InvalidInput: The file cannot be read, is not PEM, or is not an Ed25519 key (exit 2).
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from securesystemslib.signer import SSlibKey

    expected = "expected the PEM text of an Ed25519 public key (`reinstate keygen` writes one)"
    try:
        data = read_regular(path)
    except OSError as exc:
        raise InvalidInput(path, "", f"cannot read the public key ({exc.strerror})") from None
    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(path, "", f"{expected}: {_first_line(exc)}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidInput(path, "", f"{expected}, got a {type(key).__name__}")
    return SSlibKey.from_crypto(key)


def configured_public_key(workspace: Workspace, given: Path | None = None) -> SSlibKey | None:
    """The key verdicts must be signed with: ``given``, else ``[signing] public_key``; None
    when neither names one (verdicts are then unsigned).

    Raises:
        InvalidInput: The configured path leaves the workspace, or the key is bad (exit 2).
    """
    if given is not None:
        return load_public_key(given)
    named = workspace.config.signing.public_key
    if named is None:
        return None
    path = (workspace.root / named).resolve()
    if not path.is_relative_to(workspace.root.resolve()):
        raise InvalidInput(workspace.root / CONFIG_FILE, "$.signing.public_key",
                           f"expected a path inside the workspace, got '{named}'")
    return load_public_key(path)


def key_id(key: SSlibKey) -> str:
    """A short name of a key for messages: the first 12 characters of its key id."""
    return key.keyid[:12]


def signature_problem(workspace: Workspace, verdict: DecidedVerdict,
                      key: SSlibKey) -> str | None:
    """Why ``verdict`` (from the store) is not vouched for by ``key``; None when it is.

    The envelope the gate wrote for it must exist, verify against ``key``, and carry
    exactly this verdict (the same digest), for this agent.
    """
    path = attestation_path(workspace, verdict)
    if not path.is_file():
        return f"no attestation at {workspace.relative(path)}"
    # Only with a key: reading the envelope builds the whole verdict model.
    from gates._store.attestation import read_envelope, verify_attestation

    try:
        attestation = verify_attestation(read_envelope(path), key)
    except (SignatureInvalid, InvalidInput) as exc:
        return f"{workspace.relative(path)}: {exc}"
    if attestation.agent != verdict.agent:
        return f"{workspace.relative(path)} is for {attestation.agent}, not {verdict.agent}"
    if attestation.verdict_sha256 != verdict_digest(verdict):
        return (f"{workspace.relative(path)} signs another verdict (sha256 "
                f"{attestation.verdict_sha256[:12]}…), not the stored one")
    return None


def signature_line(workspace: Workspace, verdict: DecidedVerdict | None,
                   key: SSlibKey | None) -> tuple[bool, str]:
    """Whether ``verdict`` is signed by ``key``, and that in a line a release manager reads."""
    if verdict is None:
        return False, "no verdict, so no signature"
    if key is None:
        return False, ("unsigned: no public key is configured ([signing] public_key in "
                       f"{CONFIG_FILE}, or --public-key), so only the state store vouches for "
                       "this verdict")
    problem = signature_problem(workspace, verdict, key)
    if problem is not None:
        return False, f"NOT signed by the configured key {key_id(key)}…: {problem}"
    return True, (f"signed by key {key_id(key)}… (in-toto statement in a DSSE envelope, "
                  f"{workspace.relative(attestation_path(workspace, verdict))})")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
