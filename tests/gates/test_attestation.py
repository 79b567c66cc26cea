"""Signed verdicts: the gate signs each verdict (in-toto statement, DSSE envelope, Ed25519),
check and restore believe only what verifies against the configured public key, the deploy
job checks the signed file without the store, and the key never reaches the agent."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from evalsuite import InvalidInput, SandboxUnavailable, choose_sandbox
from gates import (
    SIGNING_KEY_ENV,
    EvalsResult,
    Guard,
    ModeRecord,
    Refused,
    SQLiteStore,
    Verdict,
    Workspace,
    agent_mode,
    attestation_path,
    check,
    contain,
    fingerprint,
    generate_key_pair,
    load_signing_key,
    open_incident,
    open_store,
    read_mode,
    record_change,
    record_finding,
    report_html,
    report_markdown,
    restore,
    run_gate,
    schedule_review,
    sign_verdict,
    verdict_report,
)
from gates._demo import apply_fix, lay_out
from gates._store.attestation import write_attestation
from gates._store.backends import entry_hash, verdict_digest
from gates._store.verdict_signature import configured_public_key, signature_problem
from gates._verdict.verdict import AuditHead
from regressions import LAYERS, utc_now
from tests.conftest import RunCli, tree
from tests.gates.test_guard_proof import refund as refund_past_total
from tests.gates.test_guard_proof import without_the_total_rule
from tests.helpers import ACTOR, analysed, copied, opened_again, python_under_a_shell, resolved

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("attestation")]

AGENT = "refund-agent"
PUBLIC = "keys/reinstate-signing.pub"
Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture(scope="module")
def key_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A key pair from keygen: the private key's PEM text (the CI secret) and the public file."""
    private, public = generate_key_pair(tmp_path_factory.mktemp("keys"))
    return private.read_text(), public


def _configure(root: Path, public: Path) -> None:
    """Commit the public key into the workspace and name it in reinstate.toml."""
    (root / PUBLIC).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(public, root / PUBLIC)
    config = root / "reinstate.toml"
    config.write_text(config.read_text() + f'\n[signing]\npublic_key = "{PUBLIC}"\n')


@pytest.fixture(scope="module")
def signed_template(tmp_path_factory: pytest.TempPathFactory,
                    key_pair: tuple[str, Path]) -> Path:
    """The example's incident resolved, gated green with the signing key, and restored."""
    pem, public = key_pair
    root = lay_out(tmp_path_factory.mktemp("signed") / "ws")
    _configure(root, public)
    workspace = Workspace.find(root)
    resolved(workspace, apply_fix)
    assert run_gate(workspace, AGENT, actor="ci", signer=load_signing_key(pem))
    restore(workspace, AGENT, actor=ACTOR)
    return root


@pytest.fixture
def signed(signed_template: Path, tmp_path: Path) -> Workspace:
    """A fresh copy of the signed, restored workspace, state store and envelopes included."""
    return copied(signed_template, tmp_path / "signed")


@pytest.fixture
def reinstate(inline_cli: Cli) -> Cli:
    """``reinstate -C WS ARGS`` in this process (tests/gates/conftest.py)."""
    return inline_cli


def _envelope(workspace: Workspace) -> Path:
    """The envelope the gate wrote for the latest stored verdict."""
    verdict = open_store(workspace).latest_verdict(AGENT)
    assert verdict is not None
    return attestation_path(workspace, verdict)


def _forge_pass(workspace: Workspace, *, moved: bool = True,
                again: Verdict | None = None) -> None:
    """What a process that can write the store does: append a pass verdict on today's files
    (or, ``again``, an earlier verdict exactly as stored), its correctly chained audit entry
    and the new head, straight into SQLite; and, when ``moved``, move the checkpoint over it
    and count it into the agent's tally with the store's own code, as the store does with
    each write."""
    store = open_store(workspace)
    latest = store.latest_verdict(AGENT)
    assert latest is not None
    last = store.audit()[-1]
    # A new forgery is stamped with the head, as the store stamps each verdict; a verdict
    # stored again keeps the head it was signed with.
    forged = again or latest.model_copy(update={
        "outcome": "pass", "created_at": utc_now(), "fingerprint": fingerprint(workspace, AGENT),
        "audit_head": AuditHead(seq=last.seq, hash=last.hash)})
    body = forged.model_dump_json()
    detail = {"outcome": "pass",
              "fingerprint": {k: v for k, v in forged.fingerprint.model_dump().items()
                              if k != "files"},
              "sha256": verdict_digest(forged)}
    at = utc_now()
    digest = entry_hash(last.seq + 1, at, "ci", "verdict", AGENT, "gate pass", detail, last.hash)
    with sqlite3.connect(workspace.state_path) as conn:
        conn.execute("INSERT INTO verdicts (agent, created_at, outcome, body) VALUES (?, ?, ?, ?)",
                     (AGENT, forged.created_at.isoformat(), "pass", body))
        conn.execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (last.seq + 1, at.isoformat(), "ci", "verdict", AGENT, "gate pass",
                      json.dumps(detail, sort_keys=True), last.hash, digest))
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('audit_head', ?)",
                     (f"{last.seq + 1}:{digest}",))
    conn.close()
    if moved:
        sqlite = SQLiteStore(workspace.state_path)
        with sqlite._writing() as held:
            sqlite._advance_checkpoint(held)


def _resign(envelope: Path, into: Path, pem: str, **changes: object) -> Path:
    """The envelope's verdict with ``changes``, signed again with the real key."""
    statement = json.loads(base64.b64decode(json.loads(envelope.read_text())["payload"]))
    verdict = Verdict.model_validate(statement["predicate"]).model_copy(update=changes)
    into.write_text(json.dumps(sign_verdict(verdict, load_signing_key(pem))))
    return into


@pytest.mark.attack
def test_forged_pass_row_is_refused_by_check_and_restore(signed: Workspace, reinstate: Cli) -> None:
    """A pass row, audit entry and head written straight into SQLite pass `audit verify`, but
    check (exit 1) and restore refuse it as not signed by the configured key."""
    review = signed.agent_dir(AGENT) / "review.yaml"
    review.write_text(review.read_text() + "# loosened after the gate\n")
    _forge_pass(signed)
    code, _, err = reinstate(signed, "audit", "verify")
    assert code == 0, err  # the chain itself cannot tell: only the signature can
    code, out, _ = reinstate(signed, "check", AGENT)
    assert code == 1
    assert "not signed by the configured key" in out and "no attestation at .reinstate/" in out
    clearance = check(signed, AGENT)
    assert len(clearance.reasons) == 1 and not clearance.signed  # nothing else blocks it
    with pytest.raises(Refused, match="is not signed by the configured key"):
        restore(signed, AGENT, actor=ACTOR)


@pytest.mark.attack
def test_a_forged_pass_row_left_behind_the_checkpoint_is_named(signed: Workspace,
                                                               reinstate: Cli) -> None:
    """The same forgery without the checkpoint moved over it: every write of the store moves
    it in the same transaction, so `audit verify` and check name the entry as written
    behind the store, and check refuses for it as well as for the signature."""
    _forge_pass(signed, moved=False)
    code, _, err = reinstate(signed, "audit", "verify")
    assert code == 1 and "written behind the store" in err, err
    clearance = check(signed, AGENT)
    assert not clearance.cleared
    assert any("written behind the store" in reason for reason in clearance.reasons)


@pytest.mark.attack
def test_stored_verdict_with_another_verdicts_envelope_is_refused(signed: Workspace,
                                                                   reinstate: Cli) -> None:
    """A forged row given a genuine envelope (of the verdict before it) still does not verify
    as the stored verdict: the digests differ."""
    genuine = _envelope(signed)
    _forge_pass(signed)
    shutil.copyfile(genuine, _envelope(signed))
    code, out, _ = reinstate(signed, "check", AGENT)
    assert code == 1
    assert "signs another verdict" in out


@pytest.mark.attack
def test_an_older_signed_pass_stored_again_after_a_signed_fail_is_refused(
        signed: Workspace, reinstate: Cli, key_pair: tuple[str, Path]) -> None:
    """The gate fails later on the very same files (a flaky case, an HTTP agent's model
    changed) and signs that fail. A store writer appends the earlier signed pass again, as
    it was stored, with a chained entry, the head and the checkpoint moved: its digest is
    its envelope's, but not its place (the head it was stamped with, which its signature
    covers), so `audit verify`, check and restore refuse it as stored again."""
    store = open_store(signed)
    earlier = store.latest_verdict(AGENT)
    assert earlier is not None and earlier
    failed = earlier.model_copy(update={"outcome": "fail", "created_at": utc_now()}, deep=True)
    failed.checks[0].outcome = "fail"
    store.save_verdict(failed, "ci")
    write_attestation(signed, failed, load_signing_key(key_pair[0]))
    assert not check(signed, AGENT).cleared
    _forge_pass(signed, again=earlier)
    assert open_store(signed).latest_verdict_text(AGENT) == earlier.model_dump_json()
    assert signature_problem(signed, earlier, configured_public_key(signed)) is None
    code, _, err = reinstate(signed, "audit", "verify")
    assert code == 1
    assert "was stored after entry 1, but its entry is entry 5: an older verdict" in err, err
    code, out, _ = reinstate(signed, "check", AGENT)
    assert code == 1 and "an older verdict was stored again behind the store" in out, out
    with pytest.raises(Refused, match="an older verdict was stored again"):
        restore(signed, AGENT, actor=ACTOR)


def test_signed_pass_clears_with_the_store(signed: Workspace, reinstate: Cli) -> None:
    """A signed, current pass clears (exit 0) and check names the key that signed it."""
    code, out, err = reinstate(signed, "check", AGENT)
    assert code == 0, out + err
    assert "refund-agent: cleared for full operation" in out
    assert "signature: signed by key " in out
    assert check(signed, AGENT).signed


def test_signed_pass_clears_a_deploy_checkout_without_a_store(signed: Workspace,
                                                               key_pair: tuple[str, Path],
                                                               tmp_path: Path,
                                                               cli: RunCli) -> None:
    """`check --verdict FILE --public-key KEY` in a checkout with no store exits 0 and writes
    nothing."""
    deploy = tmp_path / "deploy"
    shutil.copytree(signed.root, deploy, ignore=shutil.ignore_patterns(".reinstate"))
    shutil.copyfile(_envelope(signed), deploy / "verdict.intoto.json")
    before = tree(deploy)
    result = cli("check", AGENT, "--verdict", "verdict.intoto.json", "--public-key",
                 str(key_pair[1]), cwd=deploy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "cleared for full operation" in result.stdout
    assert tree(deploy) == before and not (deploy / ".reinstate").exists()


@pytest.mark.attack
def test_tampered_payload_is_refused(signed: Workspace, reinstate: Cli, tmp_path: Path) -> None:
    """An envelope whose payload was edited after signing (a fail relabelled pass) is refused."""
    envelope = json.loads(_envelope(signed).read_text())
    text = base64.b64decode(envelope["payload"]).decode()
    envelope["payload"] = base64.b64encode(
        text.replace('"outcome":"pass"', '"outcome":"fail"', 1).encode()).decode()
    tampered = tmp_path / "tampered.intoto.json"
    tampered.write_text(json.dumps(envelope))
    code, out, _ = reinstate(signed, "check", AGENT, "--verdict", str(tampered))
    assert code == 1
    assert "is not signed by the key" in out and "no signature by key" in out


@pytest.mark.attack
def test_envelope_checked_with_another_key_is_refused(signed: Workspace, reinstate: Cli,
                                                      tmp_path: Path) -> None:
    """A genuine envelope checked against a different public key is refused (exit 1)."""
    _, other = generate_key_pair(tmp_path / "other")
    code, out, _ = reinstate(signed, "check", AGENT, "--verdict", str(_envelope(signed)),
                       "--public-key", str(other))
    assert code == 1
    assert "is not signed by the key" in out


@pytest.mark.attack
def test_envelope_for_another_agent_is_refused(signed: Workspace, reinstate: Cli,
                                               key_pair: tuple[str, Path],
                                               tmp_path: Path) -> None:
    """A validly signed pass for another agent does not clear this one."""
    other = _resign(_envelope(signed), tmp_path / "other.intoto.json", key_pair[0],
                    agent="billing-agent")
    code, out, _ = reinstate(signed, "check", AGENT, "--verdict", str(other))
    assert code == 1
    assert "is for billing-agent, not refund-agent" in out


@pytest.mark.attack
def test_failing_verdict_envelope_is_refused(signed: Workspace, reinstate: Cli,
                                             key_pair: tuple[str, Path],
                                             tmp_path: Path) -> None:
    """A validly signed fail verdict on today's files does not clear the agent."""
    failing = _resign(_envelope(signed), tmp_path / "fail.intoto.json", key_pair[0],
                      outcome="fail")
    code, out, _ = reinstate(signed, "check", AGENT, "--verdict", str(failing), "--json")
    assert code == 1
    answer = json.loads(out)
    assert answer["signed"] and answer["verdict_outcome"] == "fail"
    assert any(r.startswith("the signed verdict (") and " is fail: " in r
               for r in answer["reasons"])


@pytest.mark.attack
def test_signed_verdict_on_changed_files_is_refused(signed: Workspace, reinstate: Cli) -> None:
    """A validly signed pass whose fingerprint is not today's names the changed file."""
    review = signed.agent_dir(AGENT) / "review.yaml"
    review.write_text(review.read_text().replace("exclusiveMinimum: 150",
                                                 "exclusiveMinimum: 1500"))  # loosened later
    code, out, _ = reinstate(signed, "check", AGENT, "--verdict", str(_envelope(signed)))
    assert code == 1
    assert "stale: changed since: agents/refund-agent/review.yaml" in out


@pytest.mark.attack
def test_verdict_file_needs_a_key_and_an_envelope(example: Workspace, signed: Workspace,
                                                  reinstate: Cli, tmp_path: Path) -> None:
    """`--verdict` with no public key, or a plain unsigned verdict JSON, is bad input (exit 2)."""
    code, _, err = reinstate(example, "check", AGENT, "--verdict", str(_envelope(signed)))
    assert code == 2
    assert "expected a public key to check it against" in err and len(err.splitlines()) == 1
    verdict = open_store(signed).latest_verdict(AGENT)
    assert verdict is not None
    plain = tmp_path / "verdict.json"
    plain.write_text(verdict.model_dump_json(indent=2))
    code, _, err = reinstate(signed, "check", AGENT, "--verdict", str(plain))
    assert code == 2
    assert "expected a DSSE envelope" in err and "unsigned verdict" in err


# What an agent finds of the key: in its own environment, and in the environment of each
# of its ancestors (the gate, the shell that started it, ...), walked up through
# /proc/<pid>/stat. Appended to each answer, the one way out the sandbox leaves it.
_SPY = """

def _spy():
    import os
    seen = sum(1 for name, value in os.environ.items()
               if name == KEY_ENV or "PRIVATE KEY" in value)
    found = read = 0
    pid = os.getpid()
    while pid > 0:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                pid = int(handle.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/environ", "rb") as handle:
                found += b"PRIVATE KEY" in handle.read()
            read += 1
        except (OSError, ValueError, IndexError):
            break
    return f"SPY[seen={seen} found={found} read={read}]"


_answer = respond


def respond(session):
    return _answer(session) + " " + _spy()
"""
_SPIED = re.compile(r"SPY\[seen=(\d+) found=(\d+) read=(\d+)\]")


def _spy_on_the_agent(workspace: Workspace) -> None:
    """Make the example agent (run in a process of its own, sandboxed as the workspace
    says) report in each answer what it finds of the key."""
    source = workspace.agent_dir(AGENT) / "refund_agent.py"
    source.write_text(source.read_text() + f"\n\nKEY_ENV = {SIGNING_KEY_ENV!r}\n" + _SPY)


def _spied(workspace: Workspace) -> list[tuple[int, int, int]]:
    """Each answer's report, from the run files: (seen, found, ancestors read)."""
    runs = workspace.state_path.parent / "runs"
    return [tuple(int(n) for n in match) for path in runs.glob("*.jsonl")
            for match in _SPIED.findall(path.read_text())]


@pytest.mark.attack
def test_run_gate_takes_the_key_out_of_the_environment(
        example: Workspace, key_pair: tuple[str, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """From Python, the agent's processes never see the key (not in their environment, not
    in any ancestor's), `os.environ` no longer holds it after the gate, nor does the
    environment the kernel shows for this process, and the verdict is signed."""
    _spy_on_the_agent(example)
    monkeypatch.setenv(SIGNING_KEY_ENV, key_pair[0])
    verdict = run_gate(example, AGENT, actor="ci", trials=1)
    assert SIGNING_KEY_ENV not in os.environ
    if sys.platform.startswith("linux"):
        assert key_pair[0].encode() not in Path("/proc/self/environ").read_bytes()
    seen = _spied(example)
    assert seen and all(s == 0 and found == 0 for s, found, _ in seen), seen
    assert attestation_path(example, verdict).is_file()


@pytest.mark.attack
def test_gate_command_hides_the_key_from_the_agent(example: Workspace,
                                                   key_pair: tuple[str, Path],
                                                   tmp_path: Path) -> None:
    """`reinstate gate` started by a shell holding the key: the key is neither in the
    agent's environment nor in any ancestor's it can read, the gate's own environment (as
    Python and as /proc/<pid>/environ show it) no longer holds it, and the gate process is
    made undumpable."""
    _spy_on_the_agent(example)
    # The gate's own process says, when it is done, whether it still holds the key in its
    # environment and whether it is still dumpable.
    gate = ("import ctypes, os, sys\n"
            "from gates._cli import main\n"
            "code = main(sys.argv[1:])\n"
            f"print('IN_OS_ENVIRON', {SIGNING_KEY_ENV!r} in os.environ)\n"
            "if sys.platform.startswith('linux'):\n"
            "    print('PR_GET_DUMPABLE', ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))\n"
            "    with open('/proc/self/environ', 'rb') as handle:\n"
            "        print('IN_PROC_ENVIRON', b'PRIVATE KEY' in handle.read())\n"
            "sys.exit(code)\n")
    result = python_under_a_shell(["-c", gate, "gate", AGENT, "--trials", "1", "--attestation",
                             str(tmp_path / "verdict.intoto.json")], example.root, key_pair[0])
    assert "Traceback" not in result.stderr, result.stderr
    assert "signed: .reinstate/attestations/refund-agent/" in result.stdout, result.stderr
    assert (tmp_path / "verdict.intoto.json").is_file()
    seen = _spied(example)
    assert seen and all(s == 0 and found == 0 for s, found, _ in seen), seen
    assert "IN_OS_ENVIRON False" in result.stdout
    if sys.platform.startswith("linux"):
        assert "PR_GET_DUMPABLE 0" in result.stdout
        assert "IN_PROC_ENVIRON False" in result.stdout


def _sandbox(workspace: Workspace, sandbox: str) -> Workspace:
    config = workspace.root / "reinstate.toml"
    config.write_text(config.read_text() + f'\n[agent]\nsandbox = "{sandbox}"\n')
    return Workspace.find(workspace.root)


_NO_SANDBOX = ('reinstate.toml: $.agent.sandbox: expected a sandbox while the gate signs '
               f'(${SIGNING_KEY_ENV} is set), got none')


@pytest.mark.attack
def test_an_unsandboxed_agent_is_never_gated_with_the_signing_key(
        example: Workspace, key_pair: tuple[str, Path], tmp_path: Path) -> None:
    """Taken out of the gate's environment, the key is still in the environment of the shell
    that started the gate, and an unsandboxed agent read it there (/proc/<ppid>/environ,
    walking up its ancestors: found=1). While the gate holds a key, an agent that would run
    without a sandbox is refused, exit 2, before any agent starts: nothing run, stored or
    signed, on the Ray engine too. Without a key it runs as before (and finds none)."""
    _spy_on_the_agent(example)
    spied = _sandbox(example, "none")
    result = python_under_a_shell(["-m", "gates", "gate", AGENT, "--trials", "1", "--attestation",
                             str(tmp_path / "verdict.intoto.json")], example.root, key_pair[0])
    assert result.returncode == 2, result.stdout + result.stderr
    assert _NO_SANDBOX + ' (sandbox = "none")' in result.stderr
    assert "install bubblewrap or use a kernel with Landlock, or gate unsigned" in result.stderr
    assert _spied(spied) == []
    assert not (tmp_path / "verdict.intoto.json").exists()
    assert not (spied.state_path.parent / "attestations").exists()
    assert not spied.state_path.exists()
    # The Ray engine is refused at the same place, before Ray is reached.
    with pytest.raises(InvalidInput, match=re.escape(_NO_SANDBOX)):
        run_gate(spied, AGENT, actor="ci", trials=1, signer=load_signing_key(key_pair[0]),
                 engine="ray")
    assert _spied(spied) == [] and not spied.state_path.exists()
    # Unsigned, the agent runs unsandboxed as before (the verdict warns of it).
    env = {**os.environ, "REINSTATE_ACTOR": "ci"}
    env.pop("REINSTATE_WORKSPACE", None)
    env.pop(SIGNING_KEY_ENV, None)
    result = subprocess.run([sys.executable, "-m", "gates", "gate", AGENT, "--trials", "1"],
                            cwd=example.root, env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    seen = _spied(spied)
    assert seen and all(s == 0 and found == 0 for s, found, _ in seen), seen


@pytest.mark.attack
def test_a_sandbox_that_resolves_to_none_is_refused_while_signing(
        example: Workspace, key_pair: tuple[str, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """sandbox = "auto" on a machine with neither Landlock nor bubblewrap runs the agent
    unsandboxed: with the key set that is refused too, exit 2, saying why."""
    monkeypatch.setattr("evalsuite._sandbox.landlock_problem", lambda: "no Landlock here")
    monkeypatch.setattr("evalsuite._sandbox.bubblewrap_problem", lambda: "no bwrap here")
    _spy_on_the_agent(example)
    monkeypatch.setenv(SIGNING_KEY_ENV, key_pair[0])
    with pytest.raises(InvalidInput) as refused:
        run_gate(example, AGENT, actor="ci", trials=1)
    assert refused.value.exit_code == 2
    assert (_NO_SANDBOX + " (neither Landlock nor bubblewrap is available on this machine)"
            in str(refused.value))
    assert SIGNING_KEY_ENV not in os.environ
    assert _spied(example) == [] and not example.state_path.exists()


@pytest.mark.attack
@pytest.mark.parametrize("sandbox", ["landlock", "bubblewrap"])
def test_each_sandbox_keeps_the_agent_from_its_ancestors_key(
        sandbox: str, example: Workspace, key_pair: tuple[str, Path]) -> None:
    """Under Landlock (no /proc) and under bubblewrap (a /proc of the agent's own processes)
    the agent, gated with the key by a shell that holds it, finds it in no ancestor's
    environment; where this machine lacks that sandbox, the gate is an error (exit 3) and
    nothing runs."""
    _spy_on_the_agent(example)
    spied = _sandbox(example, sandbox)
    result = python_under_a_shell(["-m", "gates", "gate", AGENT, "--trials", "1"], example.root,
                            key_pair[0])
    assert "Traceback" not in result.stderr, result.stderr
    try:
        choose_sandbox(sandbox)  # type: ignore[arg-type]
    except SandboxUnavailable:
        assert result.returncode == 3, result.stdout + result.stderr
        assert _spied(spied) == []
        return
    assert "signed: .reinstate/attestations/refund-agent/" in result.stdout, result.stderr
    seen = _spied(spied)
    assert seen and all(s == 0 and found == 0 for s, found, _ in seen), seen
    verdict = open_store(spied).latest_verdict(AGENT)
    assert verdict is not None
    evals = verdict.result(EvalsResult)
    assert evals is not None and evals.data is not None and evals.data.isolation is not None
    assert evals.data.isolation["sandbox"] == sandbox


# An in-process agent that takes the gate's key as it answers: every Python object of the
# gate's is its to read.
_THIEF = """

def _take_the_key():
    import gc
    from pathlib import Path
    from cryptography.hazmat.primitives import serialization as s
    for held in gc.get_objects():
        if type(held).__name__ == "CryptoSigner":
            Path(STOLEN).write_bytes(held._private_key.private_bytes(
                s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))


_answer = respond


def respond(session):
    _take_the_key()
    return _answer(session)
"""


@pytest.mark.attack
def test_an_in_process_agent_is_never_gated_with_the_signing_key(
        example: Workspace, key_pair: tuple[str, Path], tmp_path: Path) -> None:
    """An agent run in the gate's own process could take the key from the gate's memory and
    sign any verdict for ever after (it did: the stolen key was the CI secret). While the
    gate holds a key, `isolation: in-process` is refused, exit 2, before any agent starts:
    no key taken, no verdict stored or signed. Without a key it runs as before."""
    stolen = tmp_path / "stolen.pem"
    agent_dir = example.agent_dir(AGENT)
    path = agent_dir / "agent.yaml"
    data = yaml.safe_load(path.read_text())
    data["adapter"]["isolation"] = "in-process"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    source = agent_dir / "refund_agent.py"
    source.write_text(source.read_text() + f"\n\nSTOLEN = {str(stolen)!r}\n" + _THIEF)
    env = {**os.environ, SIGNING_KEY_ENV: key_pair[0], "REINSTATE_ACTOR": "ci"}
    env.pop("REINSTATE_WORKSPACE", None)
    result = subprocess.run([sys.executable, "-m", "gates", "gate", AGENT, "--trials", "1",
                             "--attestation", str(tmp_path / "verdict.intoto.json")],
                            cwd=example.root, env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert ("agents/refund-agent/agent.yaml: $.adapter.isolation: expected isolation: process "
            "while the gate signs") in result.stderr
    assert not stolen.exists()
    assert not (tmp_path / "verdict.intoto.json").exists()
    assert not (example.state_path.parent / "attestations").exists()
    # Without the key the trusted in-process agent is gated as before (it finds no key).
    env.pop(SIGNING_KEY_ENV)
    result = subprocess.run([sys.executable, "-m", "gates", "gate", AGENT, "--trials", "1"],
                            cwd=example.root, env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode in (0, 1), result.stderr
    assert not stolen.exists()


def test_unsigned_verdict_is_shown_as_unsigned(example: Workspace, reinstate: Cli) -> None:
    """Without a public key, check and both verdict reports say the verdict is unsigned."""
    run_gate(example, AGENT, actor="ci", trials=1)
    code, out, _ = reinstate(example, "check", AGENT)
    assert code == 0
    assert "signature: unsigned: no public key is configured" in out
    report = verdict_report(example, AGENT)
    assert "| Signature | unsigned: no public key is configured" in report_markdown(report)
    assert ('<dd id="signature">unsigned: no public key is configured'
            in report_html(report))


def test_bad_keys_are_one_line_and_exit_2(example: Workspace, key_pair: tuple[str, Path],
                                          reinstate: Cli, monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    """A signing key that is not Ed25519 PEM, a public key file that is not one, and a signing
    key that does not match the configured public key: one line naming it, exit 2, nothing
    written."""
    before = tree(example.root)
    monkeypatch.setenv(SIGNING_KEY_ENV, "not a key")
    code, _, err = reinstate(example, "gate", AGENT)
    assert code == 2 and err.startswith(f"error: ${SIGNING_KEY_ENV}: expected the PEM text")
    assert len(err.splitlines()) == 1 and SIGNING_KEY_ENV not in os.environ
    assert tree(example.root) == before
    code, _, err = reinstate(example, "check", AGENT, "--public-key",
                             str(example.root / "reinstate.toml"))
    assert code == 2 and "reinstate.toml: expected the PEM text of an Ed25519 public key" in err
    _, other = generate_key_pair(tmp_path / "other")
    _configure(example.root, other)
    before = tree(example.root)
    monkeypatch.setenv(SIGNING_KEY_ENV, key_pair[0])
    code, _, err = reinstate(example, "gate", AGENT)
    assert code == 2 and "expected the private key of [signing] public_key" in err
    assert tree(example.root) == before


def test_keygen_writes_a_private_key_only_its_owner_reads(tmp_path: Path, cli: RunCli) -> None:
    """keygen writes the pair (private 0600), says how to store the secret, never overwrites."""
    result = cli("keygen", "--out", "keys", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    private = tmp_path / "keys/reinstate-signing.key"
    assert private.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "keys/reinstate-signing.pub").read_text().startswith("-----BEGIN PUBLIC")
    assert f"CI secret {SIGNING_KEY_ENV}" in result.stdout
    load_signing_key(private.read_text())
    again = cli("keygen", "--out", "keys", cwd=tmp_path)
    assert again.returncode == 2 and "a key is never overwritten" in again.stderr


@pytest.mark.attack
def test_keygen_makes_its_folder_writable_by_its_owner_alone(tmp_path: Path) -> None:
    """Under umask 000 the folder keygen made was 0777: another local user could replace
    the public key in it before it is committed. The folder it makes is 0700."""
    done = subprocess.run([sys.executable, "-c", "import os; os.umask(0); "
                           "from gates.cli import main; main()",
                           "keygen", "--out", "keys"], cwd=tmp_path, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "keys").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "keys/reinstate-signing.key").stat().st_mode & 0o777 == 0o600


@pytest.mark.attack
def test_an_attestation_anchors_the_audit_log(signed: Workspace, reinstate: Cli) -> None:
    """The envelope kept by the deploy job anchors the log: intact, it verifies; with the
    verdict's entry removed from the end, `audit verify --anchor` names it."""
    envelope = str(_envelope(signed))
    assert reinstate(signed, "audit", "verify", "--anchor", envelope)[0] == 0
    with sqlite3.connect(signed.state_path) as conn:
        seq, prev = conn.execute("SELECT seq, prev_hash FROM audit WHERE action = 'verdict' "
                                 "ORDER BY seq DESC LIMIT 1").fetchone()
        conn.execute("DELETE FROM audit WHERE seq >= ?", (seq,))
        conn.execute("DELETE FROM verdicts WHERE id = (SELECT MAX(id) FROM verdicts)")
        conn.execute("UPDATE meta SET value = ? WHERE key = 'audit_head'", (f"{seq - 1}:{prev}",))
    code, _, err = reinstate(signed, "audit", "verify", "--anchor", envelope)
    assert code == 1 and f"entry {seq}: missing" in err


# --- coverage: a signed verdict clears only incidents it covers --------------------------


def _second_incident(workspace: Workspace, *, on_paper: bool = False) -> str:
    """INC-2, opened and contained (suspended) after the signed verdict; ``on_paper``
    records its RCA, control changes and review too, but never gates them."""
    incident = open_incident(workspace, AGENT, summary="leaked data", severity="sev1",
                             actor=ACTOR)
    contain(workspace, incident.id, mode="suspended", notify=["eng-lead"], scope="unknown",
            actor=ACTOR)
    if on_paper:
        for number, layer in enumerate(LAYERS, start=1):
            record_finding(workspace, incident.id, layer=layer, gap=True,
                           description=f"{layer} gap", actor=ACTOR)
            record_change(workspace, incident.id, layer=layer, addresses=[f"F-{number}"],
                          description=f"fix {layer}", actor=ACTOR)
        schedule_review(workspace, incident.id, on=utc_now().date(), actor=ACTOR)
    return incident.id


def _store_restore(workspace: Workspace, incident: str) -> None:
    """What a process that can write the store but has no signing key does: append a
    restore's mode entry naming ``incident`` through the store's own interface, so the hash
    chain stays whole."""
    store = open_store(workspace)
    store.replace_mode(ModeRecord(agent=AGENT, mode="full", since=utc_now(), actor="mallory",
                                  reason=f"restore after {incident}"),
                       expected=store.mode(AGENT), detail={"incidents": [incident]})


def _type_into(workspace: Workspace, incident: str, **stamps: str) -> None:
    """Type fields into an incident file by hand."""
    path = workspace.incidents().path(incident)
    path.write_text(path.read_text() + "".join(f"{k}: '{v}'\n" for k, v in stamps.items()))


@pytest.mark.attack
@pytest.mark.parametrize("on_paper", [False, True], ids=["bare", "resolved-on-paper"])
def test_a_restore_written_into_the_store_does_not_lift_a_containment(
        signed: Workspace, reinstate: Cli, on_paper: bool) -> None:
    """A restore entry for a contained incident, appended by a store writer (no key), with
    the incident file untouched: check refuses naming the incident, the mode stays
    suspended (read in full, then light), and restore refuses; the chain still verifies."""
    incident = _second_incident(signed, on_paper=on_paper)
    _store_restore(signed, incident)
    assert signed.incidents().load(incident).restored_at is None
    code, _, err = reinstate(signed, "audit", "verify")
    assert code == 0, err  # a consistent chain: only the verdict can tell
    code, out, _ = reinstate(signed, "check", AGENT)
    assert code == 1
    assert (f"{incident}: the audit log holds a restore of it (entry " in out
            and "that its file does not record, and no verdict backs it" in out)
    for _ in range(2):  # the full read, then the light one over the files it remembered
        code, out, err = reinstate(signed, "mode", AGENT)
        assert (code, out) == (3, "suspended\n"), err
        assert f"{incident} contained it" in err
    assert agent_mode(AGENT, signed.root) == "suspended"
    with pytest.raises(Refused) as refused:
        restore(signed, AGENT, actor=ACTOR)
    assert any(r.startswith(f"{incident}: the audit log holds a restore")
               for r in refused.value.reasons)


@pytest.mark.attack
def test_a_restore_in_the_store_and_the_file_still_needs_the_signed_verdict(
        signed: Workspace, reinstate: Cli) -> None:
    """Store writer and file author together (a restore entry and a typed restored_at)
    still do not clear: the signed verdict, made before INC-2, covers none of its changes."""
    incident = _second_incident(signed, on_paper=True)
    _store_restore(signed, incident)
    _type_into(signed, incident, restored_at=utc_now().isoformat())
    code, out, _ = reinstate(signed, "check", AGENT)
    assert code == 1
    assert (f"{incident} is restored, but the latest verdict (" in out
            and "did not verify its control changes: that verdict does not cover it" in out)
    assert not check(signed, AGENT).restorable


def test_a_restore_stopped_between_its_writes_still_counts_where_verdicts_are_signed(
        signed: Workspace, reinstate: Cli) -> None:
    """The mode entry of INC-1's restore written, its file not yet: the signed verdict that
    covers INC-1 backs the restore, so the agent stays in full and is cleared."""
    path = signed.incidents().path("INC-1")
    path.write_text("".join(line for line in path.read_text().splitlines(keepends=True)
                            if not line.startswith("restored_at:")))
    assert signed.incidents().load("INC-1").restored_at is None
    assert read_mode(signed, AGENT).mode == "full" and not read_mode(signed, AGENT).degraded
    code, out, err = reinstate(signed, "check", AGENT)
    assert code == 0, out + err
    assert restore(signed, AGENT, actor=ACTOR).incidents == ["INC-1"]
    assert signed.incidents().load("INC-1").phase == "restored"


@pytest.mark.attack
def test_a_restore_written_into_the_store_does_not_skip_the_post_incident_review(
        tmp_path: Path, key_pair: tuple[str, Path], reinstate: Cli) -> None:
    """INC-1 resolved and gated green with the key, but no post-incident review scheduled,
    so restore refuses. A store writer (no key) appends the restore's mode entry through
    the store's own interface: the signed verdict covers INC-1, and that alone made the
    entry count as a restore stopped between its writes: check cleared, the mode read
    full, and restore "finished" it into the file. Restore's own conditions on the incident
    must hold too, so it stays open, contained, and restore still refuses."""
    pem, public = key_pair
    root = lay_out(tmp_path / "ws")
    _configure(root, public)
    workspace = Workspace.find(root)
    incident = analysed(workspace)
    apply_fix(workspace)
    for layer, finding in (("tool_permission_boundary", "F-1"), ("eval_coverage", "F-2"),
                           ("acceptance_criteria", "F-3"), ("review_gate", "F-4")):
        record_change(workspace, incident, layer=layer, addresses=[finding],  # type: ignore[arg-type]
                      description=f"fix {layer}", actor=ACTOR)
    record_change(workspace, incident, layer="prompt", addresses=[], description="1.5.0",
                  actor=ACTOR)
    assert run_gate(workspace, AGENT, actor="ci", signer=load_signing_key(pem))
    assert check(workspace, AGENT).blockers == [
        f"{incident} has no post-incident review scheduled"]
    _store_restore(workspace, incident)
    code, out, err = reinstate(workspace, "check", AGENT)
    assert code == 1, out + err
    assert (f"{incident}: the audit log holds a restore of it (entry " in out
            and f"restore would refuse it: {incident} has no post-incident review scheduled"
            in out)
    assert read_mode(workspace, AGENT).mode == "review"
    with pytest.raises(Refused):
        restore(workspace, AGENT, actor=ACTOR)
    assert workspace.incidents().load(incident).restored_at is None


@pytest.mark.attack
@pytest.mark.parametrize("when", ["after", "before"])
def test_a_new_incident_typed_closed_does_not_clear_a_deploy(signed: Workspace,
                                                             reinstate: Cli,
                                                             when: str) -> None:
    """`check --verdict` (no store): INC-2, opened after the signed verdict, typed restored
    and closed by hand (stamps after the verdict, or back-dated before it) is not covered by
    that verdict, whatever phase its file claims; back-dated before its own containment, the
    file is refused as out of order (exit 2)."""
    envelope = _envelope(signed)
    made = json.loads(base64.b64decode(json.loads(envelope.read_text())["payload"]))[
        "predicate"]["created_at"]
    incident = _second_incident(signed)
    stamp = "2030-01-01T00:00:00Z" if when == "after" else "2020-01-01T00:00:00Z"
    _type_into(signed, incident, restored_at=stamp, closed_at=stamp)
    if when == "before":
        code, out, err = reinstate(signed, "check", AGENT, "--verdict", str(envelope))
        assert code == 2, out + err
        assert f"incidents/{incident}.yaml" in err and "$.restored_at: expected a time no " \
            "earlier than $.containment.contained_at" in err
        return
    assert signed.incidents().load(incident).phase == "closed"
    code, out, _ = reinstate(signed, "check", AGENT, "--verdict", str(envelope))
    assert code == 1
    assert f"{incident} is closed, but the signed verdict ({made[:10]}" in out
    assert "did not verify any control change of it (its file records none) and was not " \
           "made after its file's last record" in out


def test_closing_a_covered_incident_keeps_the_deploy_cleared(signed: Workspace,
                                                            reinstate: Cli,
                                                            key_pair: tuple[str, Path]) -> None:
    """INC-1, restored on the signed verdict, closed by hand after it: the verdict verified
    its changes, so it still covers it; a verdict made after the closing covers it too,
    though the gate no longer verifies a closed incident."""
    before = _envelope(signed)
    _type_into(signed, "INC-1", closed_at=utc_now().isoformat())
    code, out, err = reinstate(signed, "check", AGENT, "--verdict", str(before))
    assert code == 0, out + err
    verdict = run_gate(signed, AGENT, actor="ci", signer=load_signing_key(key_pair[0]))
    assert verdict and not [v for v in verdict.verifications if v.incident == "INC-1"]
    after = _envelope(signed)
    assert after != before
    for args in (("--verdict", str(after)), ()):
        code, out, err = reinstate(signed, "check", AGENT, *args)
        assert code == 0, out + err


@pytest.mark.attack
def test_an_incident_id_opened_again_is_not_covered_by_the_old_signed_verdict(
        signed: Workspace, reinstate: Cli) -> None:
    """`check --verdict` (no store): INC-1 restored on the signed verdict, its file and
    baseline deleted, a new incident given the id INC-1 by hand and contained after that
    verdict, given the old one's findings and changes (CC-1 … on the same layers) and typed
    restored by hand: the verdict verified the old INC-1's changes, not this one's, so it
    does not cover it."""
    envelope = _envelope(signed)
    incident = signed.incidents().load(opened_again(signed))
    assert incident.id == "INC-1"
    for layer in LAYERS:
        record_finding(signed, incident.id, layer=layer, gap=True,
                       description=f"{layer} gap", actor=ACTOR)
    for number, layer in enumerate(("tool_permission_boundary", "eval_coverage",
                                    "acceptance_criteria", "review_gate"), start=1):
        record_change(signed, incident.id, layer=layer,  # type: ignore[arg-type]
                      addresses=[f"F-{number}"], description=f"fix {layer}", actor=ACTOR)
    record_change(signed, incident.id, layer="prompt", addresses=[], description="agent",
                  actor=ACTOR)
    schedule_review(signed, incident.id, on=utc_now().date(), actor=ACTOR)
    _type_into(signed, incident.id, restored_at=utc_now().isoformat())
    assert signed.incidents().load(incident.id).phase == "restored"
    code, out, _ = reinstate(signed, "check", AGENT, "--verdict", str(envelope))
    assert code == 1, out
    assert "INC-1 is restored, but the signed verdict (" in out
    assert "did not verify any control change of it (it was contained after, at " in out


@pytest.mark.attack
def test_a_signed_verdict_on_controls_that_no_longer_load_does_not_clear_a_deploy(
        signed: Workspace, key_pair: tuple[str, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, cli: RunCli) -> None:
    """A predicate module that imports a package the gate's environment has and the deploy
    job's lacks: the signed verdict is current (no workspace file changed), but the
    controls no longer load there, so `check --verdict` refuses as `check` and `restore`
    do, naming why."""
    vendor = tmp_path / "vendor"
    vendor.mkdir()
    (vendor / "refund_tables.py").write_text("WEEKEND = 'weekend-chat'\n")
    monkeypatch.syspath_prepend(str(vendor))
    root = signed.root
    (root / "refund_rules.py").write_text(
        "import refund_tables\n\n\n"
        "def weekend_refund(data):\n"
        "    return (data.get('context') or {}).get('channel') == refund_tables.WEEKEND\n")
    config = root / "reinstate.toml"
    config.write_text(config.read_text() + '\n[rules]\npredicate_modules = ["refund_rules"]\n')
    permissions = signed.agent_dir(AGENT) / "permissions.yaml"
    data = yaml.safe_load(permissions.read_text())
    data["tools"]["issue_refund"]["review_when"].append(
        {"id": "weekend-chat", "predicate": "refund_rules:weekend_refund"})
    permissions.write_text(yaml.safe_dump(data, sort_keys=False))
    workspace = Workspace.find(root)
    assert run_gate(workspace, AGENT, actor="ci", signer=load_signing_key(key_pair[0]))
    envelope = _envelope(workspace)
    result = cli("check", AGENT, "--verdict", str(envelope), cwd=root)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the controls of refund-agent no longer load with today's configuration" in \
        result.stdout
    assert "refund_tables" in result.stdout


@pytest.mark.attack
def test_a_forged_pass_on_edited_controls_does_not_run_them_in_full(
        signed: Workspace, tmp_path: Path) -> None:
    """The order-total rule taken out of permissions.yaml after the signed gate, and a pass
    on today's files written straight into SQLite (no key needed): the runtime guard took
    that unsigned verdict as proof and let a refund past the order's total through. With a
    public key configured only a verdict signed with it proves the controls: the refund
    goes to a person (controls.unproven), as check refuses the forgery."""
    with Guard(signed.root, AGENT, log=tmp_path / "gated.jsonl").run("gated", goal="look up",
                                                                   ) as gated_run:
        gated = gated_run.call("lookup_order", {"order_id": "A-1002"})
    assert gated.effect == "allow", gated  # the signed gate's controls run in full
    without_the_total_rule(signed)
    _forge_pass(signed)
    _, refund = refund_past_total(Guard(signed.root, AGENT, log=tmp_path / "guard.jsonl"),
                                  "forged")
    assert (refund.effect, refund.rule) == ("review", "controls.unproven"), refund
    assert "signed" in refund.reason, refund.reason


@pytest.mark.attack
def test_a_failing_verdict_relabelled_pass_in_its_row_proves_no_controls(
        signed: Workspace, key_pair: tuple[str, Path], tmp_path: Path) -> None:
    """Refunds capped at $30 by hand: the signed gate fails on them. Its row's ``outcome``
    column set to pass (the body, and so the signature, untouched) made the store hand it
    out as a passing verdict, and the runtime guard ran the capped controls in full. A
    verdict proves the controls only when the verdict itself says pass."""
    edit_text = signed.agent_dir(AGENT) / "permissions.yaml"
    text = edit_text.read_text()
    assert text.count("exclusiveMinimum: 0, maximum: 500}") == 1
    edit_text.write_text(text.replace("exclusiveMinimum: 0, maximum: 500}",
                                      "exclusiveMinimum: 0, maximum: 30}"))
    assert not run_gate(Workspace.find(signed.root), AGENT, actor="ci",
                        signer=load_signing_key(key_pair[0]))
    with sqlite3.connect(signed.state_path) as conn:
        conn.execute("UPDATE verdicts SET outcome = 'pass' WHERE id = (SELECT max(id) FROM "
                     "verdicts WHERE agent = ?)", (AGENT,))
    conn.close()
    guard = Guard(signed.root, AGENT, log=tmp_path / "guard.jsonl")
    with guard.run("relabelled", goal="look up", context={"customer_id": "C-1002"}) as run:
        looked = run.call("lookup_order", {"order_id": "A-1002"})
    assert (looked.effect, looked.rule) == ("review", "controls.unproven"), looked
