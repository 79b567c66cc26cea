"""Signed verdicts: an in-toto Statement about the agent, in a DSSE envelope, Ed25519.

Whoever can write the state store can write any verdict row and chain an audit entry to
it; only the holder of the signing key can sign one. So with a key configured the gate
signs each verdict it stores, and ``check`` and ``restore`` believe a verdict only when
its envelope verifies against the public key that the workspace commits (or the deploy
job names).

The private key is a CI secret that reaches the gate through ``$REINSTATE_SIGNING_KEY``:
the gate takes it out of its own environment before any agent starts, and on Linux makes
itself undumpable, so neither the agent's environment nor ``/proc/<gate>/environ`` or
``/proc/<gate>/mem`` hands it over. The envelope format and the signing are
securesystemslib's (the DSSE reference for Python); this module only says what is signed.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, Field, ValidationError

from evalsuite import (
    AgentSpec,
    InvalidInput,
    PythonAdapterSpec,
    Record,
    SubprocessAdapterSpec,
    choose_sandbox,
    create_exclusive,
    read_regular,
    write_atomic,
)
from gates._config import CONFIG_FILE, Workspace
from gates._errors import GatesError
from gates._store.backends import verdict_digest

# Checking a stored verdict's signature lives apart (no verdict model there, for `check`);
# its names stay importable from here, where they always were.
from gates._store.verdict_signature import SignatureInvalid as SignatureInvalid
from gates._store.verdict_signature import _first_line
from gates._store.verdict_signature import attestation_path as attestation_path
from gates._store.verdict_signature import configured_public_key as configured_public_key
from gates._store.verdict_signature import key_id as key_id
from gates._store.verdict_signature import load_public_key as load_public_key
from gates._store.verdict_signature import signature_line as signature_line
from gates._store.verdict_signature import signature_problem as signature_problem
from gates._verdict.verdict import Verdict, read_verdict

# securesystemslib and cryptography take a quarter of a second to import: every command
# reads the config, only the ones that sign or verify load them (inside the functions).
if TYPE_CHECKING:
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import CryptoSigner, SSlibKey

SIGNING_KEY_ENV = "REINSTATE_SIGNING_KEY"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://reinstate.dev/attestation/verdict/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
# The parts of the fingerprint each subject names, in order; subject names are AGENT/PART.
_SUBJECT_PARTS = ("controls", "eval_suite", "regression_set", "agent")
_PR_SET_DUMPABLE = 4  # <linux/prctl.h>
_KEY_FILES = ("reinstate-signing.key", "reinstate-signing.pub")


class Subject(Record):
    """An in-toto resource descriptor: one fingerprinted part of the agent."""

    name: str
    """``<agent>/<part>``: controls, eval_suite, regression_set or agent (its sources)."""
    digest: dict[str, str]
    """``{"sha256": …}``: the fingerprint's digest of that part."""


class Statement(Record):
    """An in-toto Statement v1 whose predicate is a reinstate verdict."""

    model_config = ConfigDict(populate_by_name=True)

    type: str = Field(alias="_type")
    """Always ``https://in-toto.io/Statement/v1``."""
    subject: list[Subject]
    """The agent's fingerprinted parts the verdict was computed on."""
    predicate_type: str = Field(alias="predicateType")
    """Always :data:`PREDICATE_TYPE`."""
    predicate: dict[str, Any]
    """The verdict, as ``reinstate gate --json`` writes it."""


class Attestation(Record):
    """A verdict whose DSSE envelope verified against a public key."""

    agent: str
    """The agent the statement is about."""
    verdict: Verdict
    """The signed verdict."""
    verdict_sha256: str
    """Its digest as the store's audit entry records it (:func:`verdict_digest`)."""
    keyid: str
    """The id of the key that signed it (securesystemslib's default key id)."""


def subjects(verdict: Verdict) -> list[Subject]:
    """The statement's subjects for a verdict: each fingerprinted part of its agent."""
    stamp = verdict.fingerprint.model_dump()
    return [Subject(name=f"{verdict.agent}/{part}", digest={"sha256": stamp[part]})
            for part in _SUBJECT_PARTS]


def sign_verdict(verdict: Verdict, signer: CryptoSigner) -> dict[str, Any]:
    """The DSSE envelope (as JSON data) of an in-toto Statement whose predicate is ``verdict``.

    Args:
        verdict: The verdict, exactly as the store keeps it.
        signer: The gate's key, from :func:`load_signing_key` or :func:`take_signing_key`.

    Returns:
        ``{"payload", "payloadType", "signatures"}`` as the DSSE spec writes them.
    """
    from securesystemslib.dsse import Envelope

    statement = Statement(type=STATEMENT_TYPE, subject=subjects(verdict),
                          predicate_type=PREDICATE_TYPE,
                          predicate=verdict.model_dump(mode="json"))
    payload = statement.model_dump_json(by_alias=True).encode()
    envelope = Envelope(payload=payload, payload_type=PAYLOAD_TYPE, signatures={})
    envelope.sign(signer)
    data: dict[str, Any] = envelope.to_dict()
    return data


def write_attestation(workspace: Workspace, verdict: Verdict, signer: CryptoSigner,
                      also: Path | None = None) -> Path:
    """Sign ``verdict`` and write its envelope into the workspace (and to ``also``), atomically.

    Returns:
        The envelope's path in the workspace.
    """
    text = json.dumps(sign_verdict(verdict, signer), indent=2) + "\n"
    path = attestation_path(workspace, verdict)
    write_atomic(path, text)
    if also is not None:
        write_atomic(also, text)
    return path


def protect_process() -> None:
    """Make this process undumpable on Linux, so other processes of the same user can read
    neither its memory nor its ``/proc/<pid>/environ`` (where the key was).

    Children started with ``exec`` are dumpable again: the agent loses nothing it needs.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise GatesError(f"cannot protect the signing key: prctl(PR_SET_DUMPABLE, 0) failed "
                         f"({os.strerror(error)})")


def take_signing_key() -> CryptoSigner | None:
    """The gate's signing key from ``$REINSTATE_SIGNING_KEY``, removed from the environment.

    Call it before any agent starts: the variable is gone from ``os.environ`` (and so from
    every child's environment) whether or not the key is valid, and the process is made
    undumpable while it holds the key. None when the variable is unset or empty.

    Raises:
        InvalidInput: The variable is not the PEM text of an Ed25519 private key (exit 2).
    """
    text = _pop_signing_key()
    return None if text is None else load_signing_key(text)


def drop_signing_key() -> bool:
    """Take ``$REINSTATE_SIGNING_KEY`` out of this process's environment, as the gate does,
    for a command that runs agent code without signing (``eval``, ``verify``, the pytest
    plugin): gone from ``os.environ`` and ``/proc/<pid>/environ``, the process undumpable.

    Returns:
        Whether a key was set: then the process that started this one holds it too, and
        :func:`keep_key_from_agent` must refuse an agent that could read it there.
    """
    return _pop_signing_key() is not None


def _pop_signing_key() -> str | None:
    text = os.environ.pop(SIGNING_KEY_ENV, None)
    if text is None:
        return None
    _erase_from_proc_environ(SIGNING_KEY_ENV)
    if not text.strip():
        return None
    protect_process()
    return text


def _erase_from_proc_environ(name: str) -> None:
    """Overwrite ``NAME=…`` in the block the kernel shows as ``/proc/<pid>/environ``.

    Unsetting a variable only drops libc's pointer to it: the bytes stay where ``exec``
    put them, and ``/proc/<pid>/environ`` reads them from there. Once unset, nothing
    points to them, so zeroing them is safe.
    """
    try:  # fields 50 and 51 of /proc/self/stat (Linux 3.5 and later), after "pid (comm)"
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start, end = int(fields[47]), int(fields[48])
    except (OSError, ValueError, IndexError):
        return  # not Linux: no /proc to read it from
    if not 0 < start < end:
        return
    block = ctypes.string_at(start, end - start)
    marker = f"{name}=".encode()
    at = block.find(marker)
    while at != -1:
        stop = block.find(b"\0", at)
        stop = len(block) if stop == -1 else stop
        if at == 0 or block[at - 1] == 0:
            ctypes.memset(start + at, 0, stop - at)
        at = block.find(marker, stop)


def gate_signer(workspace: Workspace, given: CryptoSigner | None,
                attestation: Path | None) -> CryptoSigner | None:
    """The key a gate run signs with: ``given``, else ``$REINSTATE_SIGNING_KEY``.

    The variable leaves the environment either way, before any agent starts. Refuses
    (exit 2, nothing run) a signed file asked for without a key, and a key that is not
    the private half of the workspace's ``[signing] public_key``: its verdicts would
    never verify.
    """
    taken = take_signing_key()
    signer = given or taken
    if signer is None:
        if attestation is not None:
            raise InvalidInput(None, f"${SIGNING_KEY_ENV}",
                               "expected a signing key: --attestation asks for a signed "
                               "verdict (`reinstate keygen` makes a key pair)")
        return None
    protect_process()
    public = configured_public_key(workspace)
    if public is not None and public.keyid != signer.public_key.keyid:
        raise InvalidInput(None, f"${SIGNING_KEY_ENV}",
                           f"expected the private key of [signing] public_key (key "
                           f"{key_id(public)}…), got key {key_id(signer.public_key)}…: its "
                           f"verdicts would never verify")
    return signer


def keep_key_from_agent(workspace: Workspace, agent: AgentSpec, agent_file: Path,
                        adapter: str | None = None, *, signing: bool = True) -> Workspace:
    """Refuse (exit 2, before any agent starts) an agent that could reach the signing key;
    return the workspace with ``[agent] sandbox`` pinned to the sandbox chosen here.

    Call it while the gate holds a key (``signing``), or where a command that does not sign
    found ``$REINSTATE_SIGNING_KEY`` set (:func:`drop_signing_key`). Refused:

    - an agent run in this process (``isolation: in-process``): it shares the gate's memory,
      the key with it, and could sign any verdict, for any agent and any files, long after
      this run; and, like the next, it reads ``/proc`` unhindered;
    - an agent whose processes would run without a sandbox (``[agent] sandbox = "none"``,
      or ``"auto"`` with neither Landlock nor bubblewrap here): taking the key out of this
      process's environment does not take it out of the process that started it (the shell
      a CI step's ``env:`` runs), and such an agent walks up its parents in ``/proc`` and
      reads it there. Landlock hides ``/proc`` from the agent and bubblewrap gives it one of
      its own processes only.

    Pinned, the sandbox cannot resolve to none in another process (a Ray worker): it is an
    error there. ``adapter`` is the named adapter of ``agent.yaml`` that will run, if not
    the default one; http and replay adapters run no agent code here.
    """
    spec = agent.adapters.get(adapter) if adapter is not None else agent.adapter
    if not isinstance(spec, PythonAdapterSpec | SubprocessAdapterSpec):
        return workspace  # no agent code runs here (or no such adapter: an error later)
    while_ = (f"while the gate signs (${SIGNING_KEY_ENV} is set)" if signing
              else f"while ${SIGNING_KEY_ENV} is set")
    remedy = "gate unsigned" if signing else "set the key only for the step that runs the gate"
    if isinstance(spec, PythonAdapterSpec) and spec.isolation == "in-process":
        place = f"$.adapters.{adapter}.isolation" if adapter is not None else "$.adapter.isolation"
        reach = ("shares the gate's memory, and so its signing key" if signing else
                 "shares this process and can read the key from the environment of the "
                 f"process that started it; {remedy}")
        raise InvalidInput(agent_file, place,
                           f"expected isolation: process {while_}: an agent run in-process "
                           f"{reach}")
    settings = workspace.config.agent
    sandbox = choose_sandbox(settings.sandbox)  # one asked for and missing: exit 3
    if sandbox == "none":
        why = ('sandbox = "none"' if settings.sandbox == "none"
               else "neither Landlock nor bubblewrap is available on this machine")
        raise InvalidInput(workspace.root / CONFIG_FILE, "$.agent.sandbox",
                           f"expected a sandbox {while_}, got none ({why}): an unsandboxed "
                           f"agent can read the key from the environment of the process "
                           f"that started {'the gate' if signing else 'reinstate'}; install "
                           f"bubblewrap or use a kernel with Landlock, or {remedy}")
    pinned = settings.model_copy(update={"sandbox": sandbox})
    return Workspace(workspace.root, workspace.config.model_copy(update={"agent": pinned}))


def load_signing_key(pem: str, source: str = f"${SIGNING_KEY_ENV}") -> CryptoSigner:
    """An Ed25519 signer from the PEM text of its private key (PKCS#8, unencrypted).

    Raises:
        InvalidInput: Not PEM, encrypted, or not Ed25519; the message names ``source``.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from securesystemslib.signer import CryptoSigner

    expected = ("expected the PEM text of an unencrypted Ed25519 private key "
                "(`reinstate keygen` writes one)")
    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(None, source, f"{expected}: {_first_line(exc)}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidInput(None, source, f"{expected}, got a {type(key).__name__}")
    return CryptoSigner(key)


def read_envelope(path: Path) -> Envelope:
    """A DSSE envelope from a file.

    Raises:
        InvalidInput: Not readable, not JSON, or not an envelope (exit 2).
    """
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import FormatError

    expected = ("expected a DSSE envelope (payload, payloadType, signatures) as "
                "`reinstate gate --attestation` writes it")
    try:
        data = json.loads(read_regular(path))
    except OSError as exc:
        raise InvalidInput(path, "", f"cannot read the verdict ({exc.strerror})") from None
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(path, "", f"{expected}; not JSON: {_first_line(exc)}") from None
    if not isinstance(data, dict) or not {"payload", "payloadType", "signatures"} <= set(data):
        unsigned = isinstance(data, dict) and "outcome" in data
        raise InvalidInput(path, "$", expected + ("; this is an unsigned verdict, which proves "
                                                  "nothing" if unsigned else ""))
    try:
        return Envelope.from_dict(data)
    except (KeyError, TypeError, ValueError, FormatError, AttributeError) as exc:
        raise InvalidInput(path, "$", f"{expected}: {_first_line(exc)}") from None


def read_kept_verdict(path: Path) -> Verdict:
    """A verdict kept outside the store, to anchor the audit log: ``gate --json`` output,
    or the verdict inside a ``gate --attestation`` envelope (its signature is not checked:
    an anchor is a claim the log must still bear out, not a clearance).

    Raises:
        InvalidInput: Neither a verdict nor an envelope holding one (exit 2).
    """
    try:
        data: Any = json.loads(read_regular(path))
    except OSError as exc:
        raise InvalidInput(path, "", f"cannot read the verdict ({exc.strerror})") from None
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(path, "", f"expected a verdict or an attestation; not JSON: "
                                     f"{_first_line(exc)}") from None
    try:
        if isinstance(data, dict) and "payloadType" in data:
            statement = Statement.model_validate_json(read_envelope(path).payload)
            return read_verdict(statement.predicate)
        return read_verdict(data)
    except ValidationError as exc:
        raise InvalidInput(path, "", f"expected a verdict (`reinstate gate --json`) or a signed "
                                     f"attestation of one: {_first_line(exc)}") from None


def verify_attestation(envelope: Envelope, key: SSlibKey) -> Attestation:
    """The verdict in ``envelope`` once its signature verifies against ``key``.

    The signature is checked before anything in the payload is read.

    Raises:
        SignatureInvalid: A signature that does not verify, a payload that is not a
            reinstate verdict statement, or subjects that are not the verdict's (exit 1).
    """
    from securesystemslib.exceptions import UnverifiedSignatureError

    if envelope.payload_type != PAYLOAD_TYPE:
        raise SignatureInvalid(f"payload type is {envelope.payload_type!r}, expected "
                               f"{PAYLOAD_TYPE!r}")
    try:
        envelope.verify([key], 1)
    except (UnverifiedSignatureError, ValueError):  # VerificationError is one too
        raise SignatureInvalid(f"no signature by key {key_id(key)}… verifies") from None
    try:
        statement = Statement.model_validate_json(envelope.payload)
        verdict = read_verdict(statement.predicate)  # a version 1 verdict is upgraded
    except ValidationError as exc:
        raise SignatureInvalid(f"the signed payload is not a reinstate verdict statement: "
                               f"{_first_line(exc)}") from None
    if statement.type != STATEMENT_TYPE or statement.predicate_type != PREDICATE_TYPE:
        raise SignatureInvalid(f"the signed statement is {statement.type} about "
                               f"{statement.predicate_type}, expected {STATEMENT_TYPE} about "
                               f"{PREDICATE_TYPE}")
    if statement.subject != subjects(verdict):
        raise SignatureInvalid("the statement's subjects are not the fingerprint of its verdict")
    return Attestation(agent=verdict.agent, verdict=verdict,
                       verdict_sha256=verdict_digest(verdict), keyid=key.keyid)


def generate_key_pair(out: Path) -> tuple[Path, Path]:
    """Write a new Ed25519 key pair into ``out``: the private key (mode 0600) and the public.

    Never overwrites: a key already there may be the one a CI secret holds.

    Returns:
        The private key's path and the public key's path.

    Raises:
        InvalidInput: ``out`` already holds a key file, or is not a folder (exit 2).
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        PublicFormat,
    )

    private_path, public_path = (out / name for name in _KEY_FILES)
    for path in (private_path, public_path):
        if path.exists():
            raise InvalidInput(path, "", "expected no file here: a key is never overwritten "
                                         "(choose another --out, or remove it first)")
    if out.exists() and not out.is_dir():
        raise InvalidInput(out, "", "expected a folder to write the key pair into")
    # A folder made here is its owner's alone whatever the umask (under umask 000 it was
    # 0777): another user of the machine could otherwise swap the public key in it before
    # it is committed, and every verdict the swapped key vouches for would check.
    with contextlib.suppress(FileExistsError):
        out.mkdir(parents=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    public = key.public_key().public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    # Written private (0600 from creation), so the key is never readable by others.
    if not create_exclusive(private_path, private, private=True):
        raise InvalidInput(private_path, "", "expected no file here: written meanwhile")
    private_path.chmod(0o600)
    if not create_exclusive(public_path, public):
        raise InvalidInput(public_path, "", "expected no file here: written meanwhile")
    public_path.chmod(0o644)
    return private_path, public_path


