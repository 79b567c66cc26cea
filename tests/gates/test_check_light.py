"""The light check (no pydantic, YAML or control models): it clears exactly when the full
check clears, with the full check's answer, or defers to it.

Every test works on a real restored workspace (real files, a real SQLite store written by
the store itself, then edited by hand where a test attacks it) and compares the light
answer with the full :func:`gates.check`: the light check may say "not sure" (None)
anywhere, but when it answers, the answer is the full check's, byte for byte.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from evalsuite import ReinstateError
from gates import (
    ModeRecord,
    SQLiteStore,
    Workspace,
    check,
    contain,
    open_incident,
    open_store,
    run_gate,
)
from gates._cli import main
from gates._config import Config, Paths
from gates._response import check_light
from gates._response.check_facts import remember_check_inputs
from gates._response.check_light import inputs_path, light_clearance
from gates._store import mode_light
from gates._store.backends import entry_hash
from regressions import utc_now
from tests.conftest import RunCli
from tests.helpers import ACTOR, copied, learned_mode

AGENT = "refund-agent"


def full_answer(root: Path) -> dict[str, Any] | None:
    """What the full check answers, as `reinstate check --json` prints it; None for an
    error (which the light check must never turn into an answer)."""
    try:
        dumped: dict[str, Any] = check(Workspace.find(root), AGENT).model_dump(mode="json")
    except ReinstateError:
        return None
    return dumped


def assert_parity(root: Path) -> dict[str, Any] | None:
    """The light check defers, or answers as the full check does; its answer."""
    light = light_clearance(AGENT, root)
    if light is not None:
        full = full_answer(root)
        assert full is not None and full["cleared"]
        assert json.dumps(light, indent=2) == json.dumps(full, indent=2)
    return light


def learned(root: Path) -> None:
    """A full check, which remembers the files it accepted."""
    learned_mode(root)  # the full check proves the controls, as this full read does
    remember_check_inputs(Workspace.find(root), AGENT)


def run_sql(ws: Workspace, *statements: str) -> None:
    """Edit the SQLite store by hand."""
    with sqlite3.connect(ws.state_path) as conn:
        for statement in statements:
            conn.execute(statement)


def edit_yaml(path: Path, **changes: Any) -> None:
    """Change top-level fields of a YAML file by hand."""
    data = yaml.safe_load(path.read_text())
    data.update(changes)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_a_learned_restored_workspace_is_cleared_light_as_the_full_check_clears_it(
        back_in_full: Workspace) -> None:
    """After one full check an unchanged restored workspace is cleared light, with the full
    check's answer; before it, the light check defers."""
    assert light_clearance(AGENT, back_in_full.root) is None  # nothing remembered yet
    learned(back_in_full.root)
    light = assert_parity(back_in_full.root)
    assert light is not None and light["cleared"] and light["verdict_outcome"] == "pass"


@pytest.mark.slow
def test_the_light_cli_prints_what_the_full_cli_prints(back_in_full: Workspace,
                                                       cli: RunCli) -> None:
    """`reinstate check`, plain and --json, prints the same and exits 0 on its full run
    (which learns) and on its light run."""
    runs = [(cli("check", AGENT, cwd=back_in_full.root),
             cli("check", AGENT, "--json", cwd=back_in_full.root)) for _ in range(2)]
    assert light_clearance(AGENT, back_in_full.root) is not None  # the second run was light
    (plain, as_json), (light_plain, light_json) = runs
    assert plain.returncode == as_json.returncode == 0, plain.stdout + plain.stderr
    assert (light_plain.returncode, light_plain.stdout) == (0, plain.stdout)
    assert (light_json.returncode, light_json.stdout) == (0, as_json.stdout)
    assert json.loads(light_json.stdout) == full_answer(back_in_full.root)


@pytest.mark.slow
def test_a_light_check_imports_no_models(back_in_full: Workspace) -> None:
    """`reinstate check` over a learned, clean workspace clears without importing pydantic,
    YAML, jsonschema, CEL, RE2, rich or the controls."""
    learned(back_in_full.root)
    dump = back_in_full.root.parent / "modules.json"
    code = ("import json, sys\nfrom gates._cli import main\n"
            "code = main(['check', 'refund-agent', '--json'])\n"
            f"open({str(dump)!r}, 'w').write(json.dumps([code, sorted(sys.modules)]))\n")
    env = {k: v for k, v in os.environ.items() if k != "REINSTATE_WORKSPACE"}
    done = subprocess.run([sys.executable, "-c", code], cwd=back_in_full.root, env=env,
                          capture_output=True, text=True, timeout=120, check=True)
    exit_code, modules = json.loads(dump.read_text())
    assert exit_code == 0 and json.loads(done.stdout)["cleared"]
    heavy = ("pydantic", "yaml", "jsonschema", "cel", "re2", "rich", "regressions",
             "gates._config", "gates._controls")
    assert [m for m in modules if any(m == h or m.startswith(f"{h}.") for h in heavy)] == []


# --- what may change and still clear: the light check defers, then learns again ------------


def test_a_control_file_comment_is_read_in_full_then_learned(back_in_full: Workspace) -> None:
    """A comment added to a control file keeps the verdict current (its parsed content is
    the same) but those bytes were never loaded: the full check clears, and learns them."""
    review = back_in_full.agent_dir(AGENT) / "review.yaml"
    learned(back_in_full.root)
    review.write_text("# reviewed again\n" + review.read_text())
    assert light_clearance(AGENT, back_in_full.root) is None
    assert full_answer(back_in_full.root)["cleared"]  # type: ignore[index]
    learned(back_in_full.root)
    assert assert_parity(back_in_full.root) is not None


def test_a_restored_incident_edited_in_place_is_read_in_full(back_in_full: Workspace) -> None:
    """An incident file edited in place is not one the full read accepted: deferred."""
    learned(back_in_full.root)
    _incident_edited(back_in_full)
    assert light_clearance(AGENT, back_in_full.root) is None
    learned(back_in_full.root)
    assert assert_parity(back_in_full.root) is not None


# --- attacks: each must make the light check defer, and the full check refuse ------------


def _loosen_control(ws: Workspace) -> None:
    review = ws.agent_dir(AGENT) / "review.yaml"
    review.write_text(review.read_text().replace("exclusiveMinimum: 150",
                                                 "exclusiveMinimum: 1500"))


# Entry 1 (the first gate's verdict) was edited here until check was made flat in the log:
# no decision reads it, so only `reinstate audit verify` names it now (test_integrity).
_CONTAINMENT = "(SELECT min(seq) FROM audit WHERE action = 'mode')"


def _edit_audit(ws: Workspace) -> None:
    run_sql(ws, f"UPDATE audit SET reason = 'nothing happened' WHERE seq = {_CONTAINMENT}")


def _hide_containment(ws: Workspace) -> None:
    run_sql(ws, f"UPDATE audit SET action = 'note' WHERE seq = {_CONTAINMENT}")


def _give_containment_away(ws: Workspace) -> None:
    run_sql(ws, f"UPDATE audit SET agent = 'another-agent' WHERE seq = {_CONTAINMENT}")


def _edit_verdict(ws: Workspace) -> None:
    run_sql(ws, "UPDATE verdicts SET body = replace(body, '\"created_at\":\"2', "
                "'\"created_at\":\"1') WHERE id = (SELECT max(id) FROM verdicts)")


def _mode_behind_the_log(ws: Workspace) -> None:
    run_sql(ws, f"UPDATE modes SET mode = 'review' WHERE agent = '{AGENT}'")


def _first_incident(ws: Workspace) -> Path | None:
    return next(iter(sorted(ws.incidents_dir.glob("INC-*.yaml"))), None)


def _new_incident(ws: Workspace) -> None:
    old = _first_incident(ws)
    if old is None:
        return
    data = yaml.safe_load(old.read_text())
    data.update(id="INC-99", restored_at=None, closed_at=None)
    (ws.incidents_dir / "INC-99.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def _forged_restore(ws: Workspace) -> None:
    old = _first_incident(ws)
    if old is None:
        return
    data = yaml.safe_load(old.read_text())
    data.update(id="INC-98")  # says restored, but the log never restored it
    (ws.incidents_dir / "INC-98.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def _incident_file_removed(ws: Workspace) -> None:
    for path in ws.incidents_dir.glob("INC-*.yaml"):
        path.unlink()


def _new_regression_case(ws: Workspace) -> None:
    folder = ws.regressions_dir(AGENT)
    first = sorted(folder.glob("*.yaml"))[0]
    shutil.copy(first, folder / "zz-copied.yaml")


def _agent_code_changed(ws: Workspace) -> None:
    (ws.agent_dir(AGENT) / "extra_tool.py").write_text("SOMETHING = 1\n")


def _predicate_module_named(ws: Workspace) -> None:
    config = ws.root / "reinstate.toml"
    config.write_text(config.read_text() + '\n[rules]\npredicate_modules = ["rules"]\n')
    (ws.root / "rules.py").write_text("def anything(call):\n    return False\n")


def _contained_incident(ws: Workspace) -> str:
    incident = open_incident(ws, AGENT, summary="leaked data", severity="sev1", actor=ACTOR)
    contain(ws, incident.id, mode="suspended", notify=["eng-lead"], scope="unknown",
            actor=ACTOR)
    return incident.id


def _store_restore(ws: Workspace, incident: str) -> None:
    store = open_store(ws)
    store.replace_mode(ModeRecord(agent=AGENT, mode="full", since=utc_now(), actor="mallory",
                                  reason=f"restore after {incident}"),
                       expected=store.mode(AGENT), detail={"incidents": [incident]})


def _restore_written_into_the_store(ws: Workspace) -> None:
    _store_restore(ws, _contained_incident(ws))


def _restored_in_the_store_and_the_file(ws: Workspace) -> None:
    incident = _contained_incident(ws)
    _store_restore(ws, incident)
    path = ws.incidents().path(incident)
    path.write_text(path.read_text() + f"restored_at: '{utc_now().isoformat()}'\n")


def _verdict_stored_again(ws: Workspace) -> None:
    """The latest verdict's text appended again by a store writer, with a chained entry
    (its digest the verdict's), the head and the checkpoint moved, as the store moves them:
    the verdict is not where the store wrote it (after the head it was stamped with)."""
    store = open_store(ws)
    entry = store.audit(AGENT, actions=("verdict",))[-1]
    last = store.audit()[-1]
    at = utc_now()
    digest = entry_hash(last.seq + 1, at, "ci", "verdict", AGENT, entry.reason, entry.detail,
                        last.hash)
    run_sql(ws, "INSERT INTO verdicts (agent, created_at, outcome, body) SELECT agent, "
                "created_at, outcome, body FROM verdicts WHERE id = (SELECT max(id) FROM "
                "verdicts)")
    with sqlite3.connect(ws.state_path) as conn:
        conn.execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (last.seq + 1, at.isoformat(), "ci", "verdict", AGENT, entry.reason,
                      json.dumps(entry.detail, sort_keys=True), last.hash, digest))
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('audit_head', ?)",
                     (f"{last.seq + 1}:{digest}",))
    conn.close()
    sqlite = SQLiteStore(ws.state_path)
    with sqlite._writing() as held:
        sqlite._advance_checkpoint(held)


ATTACKS: dict[str, Callable[[Workspace], None]] = {
    "an earlier verdict stored again behind the store": _verdict_stored_again,
    "a control file loosened after the gate": _loosen_control,
    "an audit entry a decision reads edited": _edit_audit,
    "a containment hidden from the decisions (its action edited)": _hide_containment,
    "a containment hidden from the decisions (its agent edited)": _give_containment_away,
    "the verdict edited": _edit_verdict,
    "the mode set behind the log": _mode_behind_the_log,
    "a new open incident": _new_incident,
    "an incident file that says restored but never was": _forged_restore,
    "the incident file of a containment removed": _incident_file_removed,
    "a regression case added": _new_regression_case,
    "the agent's code changed": _agent_code_changed,
    "a predicate module allowed": _predicate_module_named,
    "a restore of a new containment written into the store": _restore_written_into_the_store,
    "a new incident restored in the store and its file, never gated":
        _restored_in_the_store_and_the_file,
}


@pytest.mark.attack
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_an_attack_after_learning_is_never_cleared_light(back_in_full: Workspace,
                                                         attack: str) -> None:
    """Each change that must keep the agent out of full operation makes the light check
    defer (and the full check refuse), even after the full check learns again."""
    learned(back_in_full.root)
    assert light_clearance(AGENT, back_in_full.root) is not None
    ATTACKS[attack](back_in_full)
    assert light_clearance(AGENT, back_in_full.root) is None
    full = full_answer(back_in_full.root)
    assert full is None or not full["cleared"]
    learned(back_in_full.root)  # what the CLI does after a full check
    assert light_clearance(AGENT, back_in_full.root) is None


@pytest.mark.attack
def test_a_facts_file_with_wrong_digests_is_ignored(back_in_full: Workspace) -> None:
    """Facts whose remembered digests are not today's (a control's parsed digest, the
    configuration's) never clear: a forged or stale facts file clears nothing."""
    learned(back_in_full.root)
    path = inputs_path(back_in_full.state_path)
    facts = json.loads(path.read_text())
    for key in facts["controls"]:
        facts["controls"][key] = "0" * 64
    path.write_text(json.dumps(facts))
    assert light_clearance(AGENT, back_in_full.root) is None
    facts = json.loads(path.read_text())
    for place in facts["workspaces"].values():
        place["config_digest"] = "0" * 64
    path.write_text(json.dumps(facts))
    assert light_clearance(AGENT, back_in_full.root) is None


@pytest.mark.attack
def test_controls_never_loaded_are_not_taken_as_loaded(back_in_full: Workspace) -> None:
    """Without the fact that exactly these control bytes loaded, nothing clears light; a
    facts file others may write is ignored whole."""
    learned(back_in_full.root)
    path = inputs_path(back_in_full.state_path)
    facts = json.loads(path.read_text())
    path.write_text(json.dumps({**facts, "loaded": {}}))
    assert light_clearance(AGENT, back_in_full.root) is None
    path.write_text(json.dumps(facts))
    assert light_clearance(AGENT, back_in_full.root) is not None
    path.chmod(0o666)
    assert light_clearance(AGENT, back_in_full.root) is None


@pytest.mark.attack
def test_a_library_changed_since_the_load_is_read_in_full(
        back_in_full: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A library the load runs on, upgraded after the controls loaded (its entry file
    changed), makes every remembered fact count for nothing."""
    library = tmp_path / "lib" / "fakelib"
    library.mkdir(parents=True)
    (library / "__init__.py").write_text("VERSION = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    monkeypatch.setattr(check_light, "LIBRARIES", (*check_light.LIBRARIES, "fakelib"))
    check_light.check_salt.cache_clear()
    try:
        learned(back_in_full.root)
        assert light_clearance(AGENT, back_in_full.root) is not None
        (library / "__init__.py").write_text("VERSION = 2  # upgraded\n")
        check_light.check_salt.cache_clear()
        assert light_clearance(AGENT, back_in_full.root) is None
    finally:
        check_light.check_salt.cache_clear()


@pytest.mark.attack
def test_reinstate_code_changed_since_the_load_is_read_in_full(back_in_full: Workspace,
                                                               tmp_path: Path) -> None:
    """A reinstate module changed after the facts were remembered (its size or time) makes
    them count for nothing, as Python's own bytecode cache would be."""
    learned(back_in_full.root)
    path = inputs_path(back_in_full.state_path)
    facts = json.loads(path.read_text())
    module = tmp_path / "module.py"  # stands for one of reinstate's modules
    module.write_text("X = 1\n")
    code = [*facts["code"], str(module)]
    path.write_text(json.dumps({**facts, "code": code,
                                "code_stamp": check_light.code_stamp(code)}))
    assert light_clearance(AGENT, back_in_full.root) is not None
    module.write_text("X = 22\n")
    assert light_clearance(AGENT, back_in_full.root) is None
    module.unlink()
    assert light_clearance(AGENT, back_in_full.root) is None


def _comment_on_control(ws: Workspace) -> None:
    review = ws.agent_dir(AGENT) / "review.yaml"
    review.write_text("# reviewed again\n" + review.read_text())


def _incident_edited(ws: Workspace) -> None:
    path = _first_incident(ws)
    if path is not None:
        edit_yaml(path, summary="edited after the restore")


def _learn(ws: Workspace) -> None:
    learned(ws.root)


CHANGES = {**ATTACKS, "a comment in a control file": _comment_on_control,
           "an incident file edited in place": _incident_edited,
           "a full check learns": _learn}


@pytest.mark.slow
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.sampled_from(sorted(CHANGES)), max_size=4))
def test_light_and_full_checks_agree_over_changed_workspaces(
        restored_template: Path, tmp_path_factory: pytest.TempPathFactory,
        steps: list[str]) -> None:
    """Whatever changes follow a learned check, in any order, the light check either defers
    or gives the full check's answer, and never clears what the full check refuses."""
    ws = copied(restored_template, tmp_path_factory.mktemp("changed") / "ws")
    learned(ws.root)
    for step in steps:
        CHANGES[step](ws)
        event(step)
        assert_parity(ws.root)


@pytest.mark.slow
@pytest.mark.attack
def test_files_a_sources_glob_matches_are_fingerprinted_light_as_in_full(
        back_in_full: Workspace) -> None:
    """An agent whose ``sources:`` glob reaches a shared folder is cleared light after a
    gate, and a matched file edited afterwards makes the light check defer and the full
    check refuse (the same file walk serves both)."""
    shared = back_in_full.root / "shared"
    shared.mkdir()
    (shared / "helpers.py").write_text("LIMIT = 150\n")
    agent_file = back_in_full.agent_dir(AGENT) / "agent.yaml"
    agent_file.write_text(agent_file.read_text() + "sources: ['../../shared/*.py']\n")
    assert run_gate(back_in_full, AGENT, actor="ci")
    learned(back_in_full.root)
    light = assert_parity(back_in_full.root)
    assert light is not None
    (shared / "helpers.py").write_text("LIMIT = 15000\n")
    assert light_clearance(AGENT, back_in_full.root) is None
    full = full_answer(back_in_full.root)
    assert full is not None and "shared/helpers.py" in " ".join(full["reasons"])


@pytest.mark.attack
def test_a_public_key_given_is_always_checked_in_full(
        back_in_full: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """`check --public-key` never takes the light read: an unsigned verdict is refused
    against a key, however clean the workspace."""
    learned(back_in_full.root)
    assert light_clearance(AGENT, back_in_full.root) is not None
    assert main(["-C", str(back_in_full.root), "keygen", "--out",
                 str(back_in_full.root / "keys")]) == 0
    public = next((back_in_full.root / "keys").glob("*.pub*"))
    capsys.readouterr()
    code = main(["-C", str(back_in_full.root), "check", AGENT, "--public-key", str(public)])
    assert code == 1
    assert "not signed by the configured key" in capsys.readouterr().out


# --- whether to answer at all comes from today's configuration, never a facts file ---------


def planted_for(ws: Workspace, config: bytes) -> None:
    """Write ``config`` as reinstate.toml and plant facts files that vouch for it, as
    whoever may write the store can: the facts the full check remembered for the old
    bytes, keyed to the new ones."""
    path = ws.root / "reinstate.toml"
    old = path.read_bytes()
    path.write_bytes(config)
    mode_path = mode_light.inputs_path(ws.state_path)
    mode = json.loads(mode_path.read_text())
    mode["configs"][mode_light.file_key(path.name, config)] = mode["configs"][
        mode_light.file_key(path.name, old)]
    mode_path.write_text(json.dumps(mode))
    facts_path = inputs_path(ws.state_path)
    facts = json.loads(facts_path.read_text())
    root, directory = str(ws.root.resolve()), str(ws.agent_dir(AGENT))
    facts["workspaces"][check_light.fact_key("workspace", root, path.name, config)] = {
        **facts["workspaces"][check_light.fact_key("workspace", root, path.name, old)]}
    controls = [(ws.agent_dir(AGENT) / n).read_bytes() for n in facts["control_files"]]
    facts["loaded"][check_light.fact_key("loaded", AGENT, directory, root, path.name, config,
                                         *controls)] = True
    facts_path.write_text(json.dumps(facts))


@pytest.mark.attack
def test_a_configured_public_key_is_checked_in_full_whatever_the_facts_file_says(
        back_in_full: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """With ``[signing] public_key`` in reinstate.toml, facts planted beside the store for
    that configuration (signed workspaces never get any) never clear light: the full check
    runs and refuses the unsigned verdict."""
    learned(back_in_full.root)
    assert light_clearance(AGENT, back_in_full.root) is not None
    assert main(["-C", str(back_in_full.root), "keygen", "--out",
                 str(back_in_full.root / "keys")]) == 0
    public = next((back_in_full.root / "keys").glob("*.pub*"))
    config = (back_in_full.root / "reinstate.toml").read_bytes()
    planted_for(back_in_full, config + f'\n[signing]\npublic_key = "keys/{public.name}"\n'
                .encode())
    assert light_clearance(AGENT, back_in_full.root) is None
    capsys.readouterr()
    assert main(["-C", str(back_in_full.root), "check", AGENT]) == 1
    assert "not signed by the configured key" in capsys.readouterr().out


CONFIGURED = {
    "a PostgreSQL store": '[state]\nurl = "postgresql://reinstate@127.0.0.1:9/nowhere"\n',
    "predicate modules": '[rules]\npredicate_modules = ["rules"]\n',
    "a table the light check does not know": "[surprise]\nanything = 1\n",
}


@pytest.mark.attack
@pytest.mark.parametrize("setting", list(CONFIGURED))
def test_settings_the_light_check_does_not_model_defer_whatever_the_facts_file_says(
        back_in_full: Workspace, setting: str) -> None:
    """A store on a server, predicate modules to import or a table the full read refuses:
    facts planted for that configuration never clear light, and the full check does not
    clear either."""
    learned(back_in_full.root)
    (back_in_full.root / "rules.py").write_text("def anything(call):\n    return False\n")
    config = (back_in_full.root / "reinstate.toml").read_bytes()
    planted_for(back_in_full, config + b"\n" + CONFIGURED[setting].encode())
    assert light_clearance(AGENT, back_in_full.root) is None
    full = full_answer(back_in_full.root)
    assert full is None or not full["cleared"]


def test_the_light_checks_tables_and_places_are_the_configurations() -> None:
    """The tables and default places the light check reads a configuration with are the
    models' (a new setting must be decided there too)."""
    assert set(Config.model_fields) == check_light.CONFIG_TABLES
    assert Paths().model_dump() == check_light.PLACES
