"""Attacks on the fast paths that could clear an agent or hide evidence: the light `check`,
the light `mode`, the ratchet's light read of the last verdict and the case-id cache of
`eval --cases`.

Each test is one attack, made on a real restored workspace (real files, a real SQLite
store written by the store itself, then edited by hand, or re-sealed as a tampered store
would be). A fast path may always say "not sure" and leave the answer to the full path;
what no attack may do is make it answer otherwise than the full path, above all "cleared"
or "full" where the full path refuses.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from evalsuite import ReinstateError, case_index, parse_yaml
from gates import (
    RegressionRatchetResult,
    Workspace,
    check,
    open_store,
    ratchet_status,
    read_mode,
    run_gate,
)
from gates._cli import main
from gates._response.check_facts import remember_check_inputs
from gates._response.check_light import fact_key, light_clearance
from gates._response.check_light import inputs_path as check_inputs_path
from gates._store import mode_light
from gates._store.access import standing
from gates._store.backends import ModeRecord, SQLiteStore
from gates._store.mode_light import file_key, light_reading
from gates._store.mode_light import inputs_path as mode_inputs_path
from regressions import utc_now
from tests.helpers import copied, learned_mode

AGENT = "refund-agent"
GENESIS = "0" * 64
STRANGER = 4242  # a user id that is not this test's


@pytest.fixture
def not_restored(gated_green_template: Path, tmp_path: Path) -> Workspace:
    """A copy of the workspace gated green but not restored: its agent is contained."""
    return copied(gated_green_template, tmp_path / "not-restored")


# --- what the full paths answer, and what the CLI (light first) answers ------------------


def full_answer(root: Path) -> dict[str, Any] | None:
    """The full check's answer; None for an error (never a clearance)."""
    try:
        dumped: dict[str, Any] = check(Workspace.find(root), AGENT).model_dump(mode="json")
    except ReinstateError:
        return None
    return dumped


def learned(root: Path) -> None:
    """A full check, which remembers what it accepted (the CLI does it after each one)."""
    learned_mode(root)  # the full check proves the controls, as this full read does
    remember_check_inputs(Workspace.find(root), AGENT)


def cli_check(root: Path, capsys: pytest.CaptureFixture[str]) -> int:
    """`reinstate -C ROOT check AGENT --json` in this process: its exit code."""
    capsys.readouterr()
    code = main(["-C", str(root), "check", AGENT, "--json"])
    capsys.readouterr()
    return code


def assert_never_cleared_wrongly(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The light check defers or gives the full check's answer, and `reinstate check`
    exits 0 only when the full check clears."""
    light = light_clearance(AGENT, root)
    full = full_answer(root)
    if light is not None:
        assert full is not None and full["cleared"], "cleared light, refused in full"
        assert light == full
    code = cli_check(root, capsys)
    assert (code == 0) == bool(full is not None and full["cleared"])


# --- a tampered store: rows edited, then the hash chain and checkpoint made whole again ---


def _entry_hash(row: tuple[Any, ...]) -> str:
    seq, at, actor, action, agent, reason, detail, prev = row[:8]
    body = json.dumps([seq, at, actor, action, agent, reason, json.loads(detail), prev],
                      sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def reseal(ws: Workspace) -> None:
    """Re-link and re-hash every audit entry, and write the head, the checkpoint and the
    agents' tallies over them (with the store's own code), as someone who can write the
    store can (the chain has no secret)."""
    columns = "seq, at, actor, action, agent, reason, detail, prev_hash, hash"
    with sqlite3.connect(ws.state_path) as conn:
        rows = conn.execute(f"SELECT {columns} FROM audit ORDER BY seq").fetchall()
        prev = GENESIS
        for row in rows:
            digest = _entry_hash((*row[:7], prev))
            conn.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?",
                         (prev, digest, row[0]))
            prev = digest
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('audit_head', ?)",
                     (f"{rows[-1][0]}:{prev}",))
        conn.execute("DELETE FROM meta WHERE key = 'audit_checkpoint' OR key LIKE "
                     "'audit_tally:%'")
    conn.close()
    store = SQLiteStore(ws.state_path)
    with store._writing() as held:
        store._advance_checkpoint(held)


def store_verdict_text(ws: Workspace, text: str) -> None:
    """Replace the agent's latest stored verdict with ``text`` and make its audit entry
    record that text's digest, then re-seal the log: a verdict forged inside the store."""
    digest = hashlib.sha256(text.encode()).hexdigest()
    with sqlite3.connect(ws.state_path) as conn:
        (last,) = conn.execute("SELECT max(id) FROM verdicts WHERE agent = ?",
                               (AGENT,)).fetchone()
        conn.execute("UPDATE verdicts SET body = ? WHERE id = ?", (text, last))
        seq, detail = conn.execute("SELECT seq, detail FROM audit WHERE agent = ? AND "
                                   "action = 'verdict' ORDER BY seq DESC LIMIT 1",
                                   (AGENT,)).fetchone()
        changed = {**json.loads(detail), "sha256": digest}
        conn.execute("UPDATE audit SET detail = ? WHERE seq = ?",
                     (json.dumps(changed, sort_keys=True), seq))
    reseal(ws)


def verdict_text(ws: Workspace) -> str:
    """The agent's latest stored verdict, as stored."""
    with sqlite3.connect(ws.state_path) as conn:
        (text,) = conn.execute("SELECT body FROM verdicts WHERE agent = ? ORDER BY id DESC "
                               "LIMIT 1", (AGENT,)).fetchone()
    return str(text)


def loosen_review(ws: Workspace) -> tuple[bytes, bytes]:
    """Raise the amount that routes a refund to a person: review.yaml's bytes before and
    after."""
    review = ws.agent_dir(AGENT) / "review.yaml"
    before = review.read_bytes()
    review.write_bytes(before.replace(b"exclusiveMinimum: 150", b"exclusiveMinimum: 1500"))
    return before, review.read_bytes()


def forge_loosened_facts(ws: Workspace) -> dict[str, Any]:
    """Check inputs that vouch for a loosened review.yaml as if it were the gated one (its
    parsed digest the old one's, its load done): what an attacker writes beside the store."""
    facts: dict[str, Any] = json.loads(check_inputs_path(ws.state_path).read_text())
    before, after = loosen_review(ws)
    old = fact_key("control", "review.yaml", before)
    facts["controls"][fact_key("control", "review.yaml", after)] = facts["controls"][old]
    directory = ws.agent_dir(AGENT)
    config = ws.root / "reinstate.toml"
    raw = [after if n == "review.yaml" else (directory / n).read_bytes()
           for n in facts["control_files"]]
    facts["loaded"][fact_key("loaded", AGENT, str(directory), str(ws.root), config.name,
                             config.read_bytes(), *raw)] = True
    forge_mode_proof(ws)
    return facts


def forge_mode_proof(ws: Workspace) -> None:
    """Mode inputs, written as the store's owner, that remember the agent's controls as
    they now are as proven (:func:`mode_light.proof_key`): the light mode read then
    answers full on them, so only the check inputs stand between the attacks below and a
    light clearance."""
    path = mode_inputs_path(ws.state_path)
    inputs = json.loads(path.read_text())
    store = open_store(ws)
    config = ws.root / "reinstate.toml"
    inputs["proofs"][AGENT] = mode_light.proof_key(
        AGENT, file_key(config.name, config.read_bytes()),
        {n: (ws.agent_dir(AGENT) / n).read_bytes() for n in mode_light.CONTROL_FILES},
        store.latest_verdict_sha256(AGENT), standing(ws, AGENT, store).last_contained_at())
    path.write_text(json.dumps(inputs))


# --- the light check ----------------------------------------------------------------------


@pytest.mark.attack
def test_forged_facts_that_still_clear_prove_the_forgery_works(
        back_in_full: Workspace) -> None:
    """The forged facts the next attacks plant do clear a loosened control light when the
    store's owner writes them: the attacks below fail only for where they are put."""
    learned(back_in_full.root)
    facts = forge_loosened_facts(back_in_full)
    check_inputs_path(back_in_full.state_path).write_text(json.dumps(facts))
    assert light_clearance(AGENT, back_in_full.root) is not None
    full = full_answer(back_in_full.root)
    assert full is not None and not full["cleared"]


@pytest.mark.attack
def test_facts_another_user_planted_do_not_clear(back_in_full: Workspace,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Attack: another user, who may write the store's folder but not the store, plants
    check inputs vouching for a loosened control; they are not the store owner's, so the
    check is made in full (and refuses)."""
    learned(back_in_full.root)
    facts = forge_loosened_facts(back_in_full)
    path = check_inputs_path(back_in_full.state_path)
    path.unlink()
    path.write_text(json.dumps(facts))
    os.chown(path, STRANGER, STRANGER)
    assert light_clearance(AGENT, back_in_full.root) is None
    assert_never_cleared_wrongly(back_in_full.root, capsys)


@pytest.mark.attack
@pytest.mark.parametrize("folder", ["writable by anyone", "another user's"])
def test_facts_in_a_folder_others_may_write_do_not_clear(
        back_in_full: Workspace, folder: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Attack: the store's folder is writable by anyone, or is another user's, so someone
    else may have renamed forged check inputs over the owner's; they are not trusted, and
    the check is made in full."""
    learned(back_in_full.root)
    facts = forge_loosened_facts(back_in_full)
    check_inputs_path(back_in_full.state_path).write_text(json.dumps(facts))
    if folder == "writable by anyone":
        back_in_full.state_path.parent.chmod(0o777)
    else:
        os.chown(back_in_full.state_path.parent, STRANGER, STRANGER)
    assert light_clearance(AGENT, back_in_full.root) is None
    assert_never_cleared_wrongly(back_in_full.root, capsys)


@pytest.mark.attack
def test_facts_another_user_planted_are_not_carried_into_the_next_facts(
        back_in_full: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """Attack: forged check inputs planted by another user are left for the next full
    check to merge into the facts it writes (then the owner's); the writer reads earlier
    facts only from a file it would trust, so the forgery is dropped, not laundered."""
    learned(back_in_full.root)
    facts = forge_loosened_facts(back_in_full)
    path = check_inputs_path(back_in_full.state_path)
    path.unlink()
    path.write_text(json.dumps(facts))
    os.chown(path, STRANGER, STRANGER)
    checklist = back_in_full.agent_dir(AGENT) / "checklist.yaml"
    checklist.write_text("# read again\n" + checklist.read_text())  # something new to learn
    learned(back_in_full.root)  # a full check (refusing the loosened control) writes facts
    assert path.stat().st_uid == os.getuid()
    assert light_clearance(AGENT, back_in_full.root) is None
    assert_never_cleared_wrongly(back_in_full.root, capsys)


@pytest.mark.attack
def test_facts_linked_to_an_attackers_file_do_not_clear(
        back_in_full: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Attack: the check inputs are a symbolic link to a file the attacker writes (holding
    forged facts); a link is never read."""
    learned(back_in_full.root)
    facts = forge_loosened_facts(back_in_full)
    theirs = tmp_path / "theirs.json"
    theirs.write_text(json.dumps(facts))
    path = check_inputs_path(back_in_full.state_path)
    path.unlink()
    path.symlink_to(theirs)
    assert light_clearance(AGENT, back_in_full.root) is None
    assert_never_cleared_wrongly(back_in_full.root, capsys)


@pytest.mark.attack
def test_facts_learned_in_another_workspace_do_not_clear_this_one(
        back_in_full: Workspace, restored_template: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Attack: the facts of a cleared copy of the workspace (elsewhere) are copied beside
    this one's store, whose control was loosened; they are keyed by place, so nothing
    here is vouched for."""
    other = copied(restored_template, tmp_path / "other")
    learned(other.root)
    loosen_review(back_in_full)
    for path_of in (check_inputs_path, mode_inputs_path):
        shutil.copy(path_of(other.state_path), path_of(back_in_full.state_path))
    assert light_clearance(AGENT, back_in_full.root) is None
    assert_never_cleared_wrongly(back_in_full.root, capsys)


@pytest.mark.attack
def test_a_store_swapped_for_one_never_restored_is_not_cleared(
        back_in_full: Workspace, not_restored: Workspace,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Attack: the store is replaced by a copy from before the restore (a passing verdict,
    the agent still contained); the incident files say restored, the log does not."""
    learned(back_in_full.root)
    shutil.copy(not_restored.state_path, back_in_full.state_path)
    assert light_clearance(AGENT, back_in_full.root) is None
    assert_never_cleared_wrongly(back_in_full.root, capsys)


@pytest.mark.attack
def test_a_config_pointing_the_store_elsewhere_is_checked_in_full(
        back_in_full: Workspace, not_restored: Workspace,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Attack: reinstate.toml is changed so the store is another file (a copy of a store
    whose agent is still contained, with its own learned facts beside it)."""
    learned(back_in_full.root)
    elsewhere = back_in_full.root / "elsewhere" / "state.db"
    elsewhere.parent.mkdir()
    shutil.copy(not_restored.state_path, elsewhere)
    shutil.copy(check_inputs_path(back_in_full.state_path), check_inputs_path(elsewhere))
    shutil.copy(mode_inputs_path(back_in_full.state_path), mode_inputs_path(elsewhere))
    config = back_in_full.root / "reinstate.toml"
    config.write_text(config.read_text() + '\n[paths]\nstate = "elsewhere/state.db"\n'
                      if "[paths]" not in config.read_text() else
                      config.read_text().replace("[paths]",
                                                 '[paths]\nstate = "elsewhere/state.db"'))
    assert light_clearance(AGENT, back_in_full.root) is None
    assert_never_cleared_wrongly(back_in_full.root, capsys)


@pytest.mark.attack
def test_the_workspace_variable_is_followed_as_the_full_check_follows_it(
        back_in_full: Workspace, not_restored: Workspace, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Attack: REINSTATE_WORKSPACE names a workspace whose agent is contained while the
    working folder is a learned, cleared one; `reinstate check` answers for the one the
    full check reads (the variable's), and refuses."""
    learned(back_in_full.root)
    learned(not_restored.root)
    monkeypatch.chdir(back_in_full.root)
    monkeypatch.setenv("REINSTATE_WORKSPACE", str(not_restored.root))
    capsys.readouterr()
    assert main(["check", AGENT, "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["cleared"] is False


@pytest.mark.attack
@pytest.mark.parametrize("name", ["agent.yaml", "refund_agent.py", "review.yaml"])
def test_a_file_edited_keeping_its_size_and_time_is_not_cleared(
        back_in_full: Workspace, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Attack: a workspace file (agent.yaml, the agent's code, a control file) is changed
    to bytes of the same size and its modification time put back: workspace files are
    hashed, never trusted by size and time."""
    learned(back_in_full.root)
    path = back_in_full.agent_dir(AGENT) / name
    if not path.exists():
        path = next(p for p in sorted(back_in_full.agent_dir(AGENT).rglob("*.py")))
    held = path.stat()
    raw = path.read_bytes()
    edited = (raw.replace(b"150", b"999", 1) if b"150" in raw
              else raw[:-2] + (b"#\n" if raw[-2:] != b"#\n" else b"!\n"))
    assert len(edited) == len(raw) and edited != raw
    path.write_bytes(edited)
    os.utime(path, ns=(held.st_atime_ns, held.st_mtime_ns))
    assert light_clearance(AGENT, back_in_full.root) is None
    assert_never_cleared_wrongly(back_in_full.root, capsys)


@pytest.mark.attack
def test_a_file_added_in_a_new_folder_of_the_agent_is_not_cleared(
        back_in_full: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """Attack: a control-like file is added in a new sub-folder of the agent's folder,
    which no remembered fact lists; the walk finds it and the verdict is stale."""
    learned(back_in_full.root)
    extra = back_in_full.agent_dir(AGENT) / "more" / "permissions.yaml"
    extra.parent.mkdir()
    extra.write_text("tools: {}\n")
    assert light_clearance(AGENT, back_in_full.root) is None
    assert_never_cleared_wrongly(back_in_full.root, capsys)


@pytest.mark.attack
def test_a_control_file_deleted_is_not_cleared(back_in_full: Workspace,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Attack: a control file is deleted after learning (the acceptance criteria gone)."""
    learned(back_in_full.root)
    (back_in_full.agent_dir(AGENT) / "acceptance.yaml").unlink()
    assert light_clearance(AGENT, back_in_full.root) is None
    assert_never_cleared_wrongly(back_in_full.root, capsys)


@pytest.mark.attack
def test_a_public_key_configured_after_learning_is_checked_in_full(
        back_in_full: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """Attack on the deploy job's trust: [signing] public_key added to reinstate.toml
    after learning; the unsigned verdict must be refused against it, never cleared light."""
    learned(back_in_full.root)
    assert main(["-C", str(back_in_full.root), "keygen", "--out",
                 str(back_in_full.root / "keys")]) == 0
    public = next((back_in_full.root / "keys").glob("*.pub*"))
    config = back_in_full.root / "reinstate.toml"
    config.write_text(config.read_text() + f'\n[signing]\npublic_key = "keys/{public.name}"\n')
    assert light_clearance(AGENT, back_in_full.root) is None
    assert_never_cleared_wrongly(back_in_full.root, capsys)
    assert cli_check(back_in_full.root, capsys) == 1


@pytest.mark.attack
def test_an_audit_log_cut_back_to_an_old_checkpoint_clears_as_the_full_check_says(
        back_in_full: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """Attack: after a containment, the log is cut back to the checkpoint before it (its
    head and checkpoint put back, the mode row too): the incident file of the
    containment still holds the agent, so nothing is cleared."""
    learned(back_in_full.root)
    with sqlite3.connect(back_in_full.state_path) as conn:
        saved = conn.execute("SELECT key, value FROM meta WHERE key IN ('audit_head', "
                             "'audit_checkpoint')").fetchall()
        (last,) = conn.execute("SELECT max(seq) FROM audit").fetchone()
        mode_row = conn.execute("SELECT * FROM modes WHERE agent = ?", (AGENT,)).fetchone()
    old = next(iter(sorted(back_in_full.incidents_dir.glob("INC-*.yaml"))))
    data = yaml.safe_load(old.read_text())
    assert main(["-C", str(back_in_full.root), "--actor", "oncall", "incident", "open",
                 AGENT, "--summary", "again", "--severity", data["severity"]]) == 0
    new = max(back_in_full.incidents_dir.glob("INC-*.yaml"), key=lambda p: int(p.stem[4:]))
    assert main(["-C", str(back_in_full.root), "--actor", "oncall", "contain", new.stem,
                 "--mode", "suspended", "--notify", "eng-lead", "--scope", "one refund"]) == 0
    with sqlite3.connect(back_in_full.state_path) as conn:
        conn.execute("DELETE FROM audit WHERE seq > ?", (last,))
        conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", saved)
        conn.execute("DELETE FROM modes WHERE agent = ?", (AGENT,))
        conn.execute(f"INSERT INTO modes VALUES ({', '.join('?' * len(mode_row))})", mode_row)
    assert light_clearance(AGENT, back_in_full.root) is None
    assert_never_cleared_wrongly(back_in_full.root, capsys)
    learned(back_in_full.root)
    assert light_clearance(AGENT, back_in_full.root) is None


@pytest.mark.attack
def test_a_store_swapped_between_the_mode_read_and_the_verdict_read_is_not_cleared(
        back_in_full: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack: a race swaps the store after the light check read the mode (full) for one
    whose log puts the agent in review by hand (no incident, the log consistent, the same
    passing verdict); the verdict read must not clear an agent its own store holds."""
    learned(back_in_full.root)
    before = light_reading(AGENT, back_in_full.root)
    assert before is not None and before["mode"] == "full"
    open_store(back_in_full).set_mode(ModeRecord(agent=AGENT, mode="review", since=utc_now(),
                                                 actor="oncall", reason="watching it"))
    monkeypatch.setattr(mode_light, "light_reading", lambda *args: before)  # read earlier
    assert light_clearance(AGENT, back_in_full.root) is None
    full = full_answer(back_in_full.root)
    assert full is not None and not full["cleared"]


# --- the stored verdict, forged inside the store (its digest recorded, the log re-sealed) ---


@pytest.mark.attack
def test_a_resealed_store_alone_still_clears_light(back_in_full: Workspace) -> None:
    """Re-sealing the log over an unchanged verdict keeps it cleared light: the forgeries
    below are refused for what they forge, not for the re-sealing."""
    learned(back_in_full.root)
    store_verdict_text(back_in_full, verdict_text(back_in_full))
    assert light_clearance(AGENT, back_in_full.root) is not None


@pytest.mark.attack
def test_a_verdict_with_a_duplicated_outcome_is_read_as_the_full_check_reads_it(
        back_in_full: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """Attack: the stored verdict says ``"outcome":"fail"`` and again ``"outcome":"pass"``
    (two keys of one name): the light check takes the value the full read takes."""
    learned(back_in_full.root)
    text = verdict_text(back_in_full)
    store_verdict_text(back_in_full, '{"outcome":"fail",' + text[1:])
    assert_never_cleared_wrongly(back_in_full.root, capsys)
    store_verdict_text(back_in_full, text[:-1] + ',"outcome":"fail"}')
    assert light_clearance(AGENT, back_in_full.root) is None
    assert_never_cleared_wrongly(back_in_full.root, capsys)


@pytest.mark.attack
def test_a_verdict_with_a_lone_surrogate_is_not_cleared_light(
        back_in_full: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """Attack: the stored verdict holds a lone UTF-16 surrogate escape (``\\ud800``), which
    Python's json accepts and the full read refuses: the light check must not clear it."""
    learned(back_in_full.root)
    text = verdict_text(back_in_full)
    store_verdict_text(back_in_full, text[:-1] + ',"note":"\\ud800"}')
    assert light_clearance(AGENT, back_in_full.root) is None
    assert_never_cleared_wrongly(back_in_full.root, capsys)


@pytest.mark.attack
def test_a_verdict_nested_deeper_than_the_full_read_allows_is_not_cleared_light(
        back_in_full: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """Attack: the stored verdict nests a field 250 levels deep, which Python's json reads
    and pydantic's parser refuses: the light check must not clear what the full one cannot
    read."""
    learned(back_in_full.root)
    text = verdict_text(back_in_full)
    store_verdict_text(back_in_full, text[:-1] + ',"note":' + "[" * 250 + "]" * 250 + "}")
    assert light_clearance(AGENT, back_in_full.root) is None
    assert_never_cleared_wrongly(back_in_full.root, capsys)


@pytest.mark.attack
def test_quotes_and_brackets_inside_a_verdicts_strings_are_read_as_text(
        back_in_full: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """A stored verdict whose strings hold thousands of escaped quotes and brackets is
    plain JSON, read light as the full check reads it; the same text with a quote that
    opens no closed string (not JSON) is never taken light."""
    learned(back_in_full.root)
    text = verdict_text(back_in_full)
    store_verdict_text(back_in_full, text[:-1] + ',"note":"' + '\\"[{' * 20_000 + '"}')
    learned_mode(back_in_full)  # a new verdict: the controls are proven again in full
    assert light_clearance(AGENT, back_in_full.root) is not None
    assert_never_cleared_wrongly(back_in_full.root, capsys)
    store_verdict_text(back_in_full, text[:-1] + ',"note":"' + '\\"[{' * 20_000 + '}')
    assert light_clearance(AGENT, back_in_full.root) is None
    assert_never_cleared_wrongly(back_in_full.root, capsys)


@pytest.mark.attack
def test_a_verdict_of_another_agent_is_not_cleared(back_in_full: Workspace,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Attack: the agent's row holds a verdict whose text names another agent (a store
    edited behind the log, its digest recorded): neither check clears on it."""
    learned(back_in_full.root)
    text = verdict_text(back_in_full)
    store_verdict_text(back_in_full, text.replace(f'"agent":"{AGENT}"', '"agent":"other"', 1))
    assert light_clearance(AGENT, back_in_full.root) is None
    full = full_answer(back_in_full.root)
    assert full is not None and not full["cleared"]
    assert any("other" in reason for reason in full["reasons"])
    assert_never_cleared_wrongly(back_in_full.root, capsys)


@pytest.mark.attack
def test_a_verdict_dated_in_the_future_is_answered_as_the_full_check_answers(
        back_in_full: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """Attack: clock skew, or a verdict's time moved forward by hand (its digest recorded):
    the light check answers only as the full check does, time included."""
    learned(back_in_full.root)
    text = verdict_text(back_in_full)
    created = json.loads(text)["created_at"]
    store_verdict_text(back_in_full, text.replace(created, "2099" + created[4:], 1))
    light = light_clearance(AGENT, back_in_full.root)
    assert light is None or light["verdict_created_at"].startswith("2099")
    assert_never_cleared_wrongly(back_in_full.root, capsys)


@pytest.mark.slow
@pytest.mark.attack
def test_a_failing_verdict_removed_behind_the_log_is_not_cleared(
        back_in_full: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """Attack: after a gate fails on broken agent code, the code is put back and the
    failing verdict's row deleted, so the latest row is the old passing verdict again,
    current on today's files; the log's last verdict entry still names the failing one."""
    learned(back_in_full.root)
    code = back_in_full.agent_dir(AGENT) / "refund_agent.py"
    before = code.read_bytes()
    code.write_bytes(before + b"\nraise RuntimeError('broken')\n")
    assert not run_gate(back_in_full, AGENT, actor="ci")
    code.write_bytes(before)
    with sqlite3.connect(back_in_full.state_path) as conn:
        conn.execute("DELETE FROM verdicts WHERE id = (SELECT max(id) FROM verdicts)")
    assert light_clearance(AGENT, back_in_full.root) is None
    full = full_answer(back_in_full.root)
    assert full is None or not full["cleared"]
    assert_never_cleared_wrongly(back_in_full.root, capsys)


# --- the light mode -----------------------------------------------------------------------


def full_mode(root: Path) -> str:
    """The mode the full read answers (a degraded reading answers its stricter mode)."""
    workspace = Workspace.find(root)
    return read_mode(workspace, AGENT).mode


def cli_mode(root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`reinstate -C ROOT mode AGENT` (plain, light first): exit code and mode printed."""
    capsys.readouterr()
    code = main(["-C", str(root), "mode", AGENT])
    return code, capsys.readouterr().out.strip()


def open_incident_behind_the_store(ws: Workspace) -> Path:
    """An incident file that contains the agent (suspended), which the store never saw."""
    old = next(iter(sorted(ws.incidents_dir.glob("INC-*.yaml"))))
    data = yaml.safe_load(old.read_text())
    data.update(id="INC-99", restored_at=None, closed_at=None)
    data["containment"]["mode"] = "suspended"
    path = ws.incidents_dir / "INC-99.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.attack
def test_mode_inputs_another_user_planted_never_answer_full(
        back_in_full: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """Attack: mode inputs saying an open containment belongs to some other agent, written
    by another user beside the store, would make `mode` answer full; they are not the
    store owner's, so the mode is read in full (suspended)."""
    learned_mode(back_in_full)
    incident = open_incident_behind_the_store(back_in_full)
    path = mode_inputs_path(back_in_full.state_path)
    facts = json.loads(path.read_text())
    facts["incidents"][file_key(incident.name, incident.read_bytes())] = {
        "id": "INC-99", "agent": "someone-else", "containment": "suspended",
        "restored": False, "closed": False}
    path.write_text(json.dumps(facts))
    assert full_mode(back_in_full.root) == "suspended"
    light = light_reading(AGENT, back_in_full.root)
    assert light is not None and light["mode"] == "full"  # the store's owner is trusted
    path.unlink()
    path.write_text(json.dumps(facts))
    os.chown(path, STRANGER, STRANGER)
    assert light_reading(AGENT, back_in_full.root) is None
    assert cli_mode(back_in_full.root, capsys) == (3, "suspended")


@pytest.mark.attack
def test_a_mode_row_set_to_full_behind_the_log_never_answers_full(
        not_restored: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """Attack: the modes row of a contained agent is set to full by hand; its incident
    still holds it, so `mode` never answers full, light or not."""
    learned_mode(not_restored)
    with sqlite3.connect(not_restored.state_path) as conn:
        conn.execute("UPDATE modes SET mode = 'full' WHERE agent = ?", (AGENT,))
    assert light_reading(AGENT, not_restored.root) is None
    code, printed = cli_mode(not_restored.root, capsys)
    assert printed == full_mode(not_restored.root) != "full" and code == 3


@pytest.mark.attack
def test_an_incident_edited_keeping_its_size_and_time_is_read_in_full(
        not_restored: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """Attack: the containing incident's file is edited to contain less strictly, with the
    same size and modification time: incident files are hashed, so `mode` reads it in
    full and answers as the full read does."""
    learned_mode(not_restored)
    assert light_reading(AGENT, not_restored.root) is not None
    path = next(iter(sorted(not_restored.incidents_dir.glob("INC-*.yaml"))))
    held = path.stat()
    raw = path.read_bytes()
    edited = raw.replace(b"mode: review", b"mode: revie ", 1)
    assert edited != raw and len(edited) == len(raw)
    path.write_bytes(edited)
    os.utime(path, ns=(held.st_atime_ns, held.st_mtime_ns))
    assert light_reading(AGENT, not_restored.root) is None
    learned_mode(not_restored)
    assert light_reading(AGENT, not_restored.root) is None  # refused in full: never learned


@pytest.mark.attack
def test_the_workspace_variable_is_followed_by_mode_as_by_the_full_read(
        back_in_full: Workspace, not_restored: Workspace, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Attack: REINSTATE_WORKSPACE names a workspace whose agent is contained while the
    working folder is a learned one in full operation; `mode` answers for the variable's."""
    learned_mode(back_in_full)
    learned_mode(not_restored)
    monkeypatch.chdir(back_in_full.root)
    monkeypatch.setenv("REINSTATE_WORKSPACE", str(not_restored.root))
    capsys.readouterr()
    assert main(["mode", AGENT]) == 0
    assert capsys.readouterr().out.strip() == full_mode(not_restored.root) != "full"


# --- the ratchet's light read of the last verdict -----------------------------------------


def ratchet_check(text: str) -> dict[str, Any]:
    """The regression ratchet's check in a verdict text."""
    return next(c for c in json.loads(text)["checks"] if c["name"] == "regression_ratchet")


def stricter(data: dict[str, Any]) -> dict[str, Any]:
    """The ratchet check's data with every case held to 99 trials."""
    return {**data, "terms": {case: {**held, "trials": 99}
                              for case, held in data["terms"].items()}}


def dumped(value: Any) -> str:
    """JSON as the store writes it (no spaces)."""
    return json.dumps(value, separators=(",", ":"))


def with_checks(text: str, *parts: str) -> str:
    """The verdict ``text`` with its ``checks`` replaced by ``parts`` (``"key":value``
    texts, a key given more than once standing for a tampered store's duplicates)."""
    rest = {k: v for k, v in json.loads(text).items() if k != "checks"}
    return "{" + ",".join([dumped(rest)[1:-1], *parts]) + "}"


def full_read_terms(ws: Workspace) -> dict[str, Any]:
    """The ratchet's terms as the whole verdict model reads the stored text."""
    verdict = open_store(ws).latest_verdict(AGENT)
    assert verdict is not None
    found = verdict.result(RegressionRatchetResult)
    assert found is not None and found.data is not None
    return {case: terms.model_dump(mode="json") for case, terms in found.data.terms.items()}


@pytest.mark.attack
@pytest.mark.parametrize("key", ['"checks"', '"\\u0063hecks"'])
@pytest.mark.parametrize("strict_last", [True, False])
def test_a_duplicated_checks_key_is_read_by_the_ratchet_as_the_full_read_reads_it(
        back_in_full: Workspace, key: str, strict_last: bool) -> None:
    """Attack: the stored verdict holds ``checks`` twice (the second spelt plainly or with
    a unicode escape), one with the ratchet's real terms and one stricter: the light read
    takes the list the whole model takes, so the ratchet holds the set to the same terms."""
    text = verdict_text(back_in_full)
    checks = json.loads(text)["checks"]
    strict = [{**c, "data": stricter(c["data"])} if c["name"] == "regression_ratchet" else c
              for c in checks]
    first, last = (checks, strict) if strict_last else (strict, checks)
    store_verdict_text(back_in_full, with_checks(text, f'"checks":{dumped(first)}',
                                                 f"{key}:{dumped(last)}"))
    trials = {t["trials"] for t in full_read_terms(back_in_full).values()}
    assert (trials == {99}) is strict_last
    found, _ = ratchet_status(back_in_full, AGENT)
    assert bool(found) is strict_last  # fewer trials today than remembered: loosened


@pytest.mark.attack
def test_a_duplicated_ratchet_name_and_data_are_read_as_the_full_read_reads_them(
        back_in_full: Workspace) -> None:
    """Attack: the ratchet check says ``name`` twice (another check's name first) and
    ``data`` twice (the real terms first, stricter ones last): the light read takes the
    check and the terms the whole model takes."""
    text = verdict_text(back_in_full)
    checks = json.loads(text)["checks"]
    real = ratchet_check(text)
    forged = ('{"name":"evals",' + dumped(real)[1:-1] + ',"data":'
              + dumped(stricter(real["data"])) + "}")
    listed = ",".join(forged if c["name"] == "regression_ratchet" else dumped(c)
                      for c in checks)
    store_verdict_text(back_in_full, with_checks(text, f'"checks":[{listed}]'))
    assert {t["trials"] for t in full_read_terms(back_in_full).values()} == {99}
    found, _ = ratchet_status(back_in_full, AGENT)
    assert found


@pytest.mark.slow
@pytest.mark.attack
def test_ratchet_terms_edited_in_the_stored_verdict_fail_the_next_gate(
        back_in_full: Workspace) -> None:
    """Attack: the last verdict's ratchet terms are edited in the store (the regression
    case forgotten, so it could be loosened unseen) while the rest stays; the audit entry's
    digest no longer matches, so the ratchet must not hold the set to the edited terms."""
    text = verdict_text(back_in_full)
    real = ratchet_check(text)
    forged = dumped({**real, "data": {**real["data"], "terms": {}}})
    edited = text.replace(dumped(real), forged, 1)
    assert edited != text
    with sqlite3.connect(back_in_full.state_path) as conn:
        conn.execute("UPDATE verdicts SET body = ? WHERE id = (SELECT max(id) FROM verdicts)",
                     (edited,))
    verdict = run_gate(back_in_full, AGENT, actor="ci")
    ratchet = [c for c in verdict.checks if c.name == "regression_ratchet"]
    assert [c.outcome for c in ratchet] == ["error"]
    assert "changed behind the log" in ratchet[0].summary
    assert verdict.outcome == "error"


@pytest.mark.attack
def test_ratchet_terms_nested_deeper_than_the_full_read_allows_are_not_read_light(
        back_in_full: Workspace) -> None:
    """Attack: the stored verdict nests another field 250 levels deep, which msgspec reads
    and the whole model refuses: the ratchet does not take its terms from it, and fails as
    the full read fails."""
    text = verdict_text(back_in_full)
    store_verdict_text(back_in_full, text[:-1] + ',"note":' + "[" * 250 + "]" * 250 + "}")
    with pytest.raises(ReinstateError):
        open_store(back_in_full).latest_verdict(AGENT)
    with pytest.raises(ReinstateError):
        ratchet_status(back_in_full, AGENT)


# --- the case-id cache of `eval --cases` --------------------------------------------------

SHAPES = {
    "a duplicate id key": "id: a\nid: b\n",
    "an anchored id": "id: &x a\nother: *x\n",
    "an aliased id": "base: &x a\nid: *x\n",
    "a merge key before the id": "<<: {id: z}\nid: a\n",
    "a merge key after the id": "id: a\n<<: {id: z}\n",
    "a quoted merge key": 'id: a\n"<<": {id: z}\n',
    "a byte order mark": "\ufeffid: a\n",
    "a second document": "id: a\n---\nid: b\n",
    "a tagged id": "id: !!str 12\n",
    "a tagged key": "!!str id: a\n",
    "an escaped key": '"\\x69d": a\n',
    "a flow mapping": "{id: a, id: b}\n",
    "a complex key": "? id\n: a\n",
    "a nested id only": "x:\n  id: q\n",
    "a boolean id": "id: yes\n",
    "a date id": "id: 2020-01-01\n",
    "a sexagesimal id": "id: 1:20\n",
    "a folded id": "id: >\n  a\n  b\n",
    "a directive": "%YAML 1.1\n---\nid: a\n",
    "a document end and more": "id: a\n...\n---\nid: b\n",
}


@pytest.mark.attack
@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_case_id_read_from_parser_events_is_the_loaded_id_or_none(
        shape: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack: a case file whose id the index reads from libyaml's events could differ
    from the id its full load constructs (anchors, tags, merge keys, duplicate keys, a
    BOM, a second document); the index names the loaded id, or none (then it is loaded)."""
    monkeypatch.setenv("REINSTATE_CACHE_DIR", "")  # every file scanned
    folder = tmp_path / "cases"
    folder.mkdir()
    path = folder / "case.yaml"
    path.write_text(SHAPES[shape], encoding="utf-8")
    (entry,) = case_index([folder])
    try:
        document = parse_yaml(path.read_text(encoding="utf-8"), path)
    except ReinstateError:
        assert entry.id is None  # the load refuses it: chosen, so its error is reported
        return
    loaded = document.get("id") if isinstance(document, dict) else None
    assert entry.id is None or entry.id == loaded


def poison(folder: Path, lies: dict[str, str], cache: Path) -> None:
    """Rewrite the case-id cache of ``folder`` so each file named in ``lies`` (by file
    name) is said to hold another id."""
    (written,) = (cache / "case-ids").glob("*.json")
    data = json.loads(written.read_text())
    for name, said in lies.items():
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        data["ids"][digest] = said
    written.write_text(json.dumps(data))


@pytest.mark.attack
def test_a_poisoned_case_id_cache_never_runs_a_case_whose_id_does_not_match(
        back_in_full: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Attack: the cache says status-shipped.yaml holds the case greeting (and greeting's
    file some other id); `eval --cases greeting` reads the file the cache names, finds
    its real id does not match, and runs nothing it was not asked for."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("REINSTATE_CACHE_DIR", str(cache))
    folder = back_in_full.evals_dir(AGENT)
    case_index([folder])
    poison(folder, {"status-shipped.yaml": "greeting", "greeting.yaml": "zz-hidden"}, cache)
    assert {e.path.name: e.id for e in case_index([folder])}["status-shipped.yaml"] == \
        "greeting"
    capsys.readouterr()
    code = main(["-C", str(back_in_full.root), "eval", AGENT, "--cases", "greeting",
                 "--all-cases"])
    out, err = capsys.readouterr()
    assert code != 0 and "status-shipped" not in out
    assert "no case id matches 'greeting'" in out + err


@pytest.mark.attack
def test_a_poisoned_case_id_cache_hides_no_case_file_from_the_gate(
        back_in_full: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Attack: an invalid case file is added and the cache says it holds an id no glob
    asks for; the gate never selects by the cache, reads every file and refuses it."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("REINSTATE_CACHE_DIR", str(cache))
    folder = back_in_full.evals_dir(AGENT)
    bad = folder / "zz-broken.yaml"
    bad.write_text("schema_version: 1\nid: zz-broken\nagent: refund-agent\n")
    case_index([folder])
    poison(folder, {"zz-broken.yaml": "never-asked-for"}, cache)
    capsys.readouterr()
    code = main(["-C", str(back_in_full.root), "gate", AGENT])
    out, err = capsys.readouterr()
    assert code == 2 and "zz-broken.yaml" in out + err
