"""The light mode read (no pydantic): it answers exactly as the full read, or defers to it.

Every test compares the light read with the full read on the same real workspace (real
files, a real SQLite store written through the store's own interface, then edited by hand
where a test attacks it): the light read may say "not sure" (None) anywhere, but when it
answers, its answer is the full read's, byte for byte, and never a degraded one.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from evalsuite import MAX_USER_FILE_BYTES, ReinstateError
from gates import Workspace, agent_mode, mode_reading, open_store, read_mode
from gates._demo import lay_out
from gates._store.backends import ModeRecord
from gates._store.mode_light import MAX_FILE_BYTES, inputs_path, light_reading
from regressions import utc_now
from tests.conftest import built_once
from tests.helpers import contained, learned_mode

AGENT = "refund-agent"
OTHER = "other-agent"


@pytest.fixture(scope="session")
def contained_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example workspace with a second agent and the refund incident contained."""
    def build(root: Path) -> None:
        ws = Workspace.find(lay_out(root))
        shutil.copytree(ws.agent_dir(AGENT), ws.agent_dir(OTHER))
        contained(ws)
    return built_once(tmp_path_factory, "light-mode-contained", build)


@pytest.fixture
def ws(contained_template: Path, tmp_path: Path) -> Workspace:
    """A fresh copy of the contained workspace."""
    shutil.copytree(contained_template, tmp_path / "ws")
    return Workspace.find(tmp_path / "ws")


def full_reading(root: Path, agent: str = AGENT) -> dict[str, Any] | None:
    """What the full read answers, as `reinstate mode --json` prints it; None where it is
    an error or a degraded (exit 3) answer, which the light read must never give."""
    try:
        workspace = Workspace.find(root)
        workspace.require_agent(agent)
        reading = read_mode(workspace, agent)
    except ReinstateError:
        return None
    if reading.degraded:
        return None
    dumped: dict[str, Any] = reading.model_dump(mode="json")
    return dumped


def assert_parity(root: Path, agent: str = AGENT) -> dict[str, Any] | None:
    """The light read defers or answers as the full read does; its answer."""
    light = light_reading(agent, root)
    if light is not None:
        assert light == full_reading(root, agent)
        assert json.dumps(light) == json.dumps(full_reading(root, agent))
    return light


def learned(root: Path) -> None:
    """A full read of the mode, which remembers the files it accepted."""
    assert Workspace.find(root)
    learned_mode(root)


def incident_files(ws: Workspace) -> list[Path]:
    """The workspace's incident files."""
    return sorted(ws.incidents_dir.glob("INC-*.yaml"))


def edit_incident(path: Path, **changes: Any) -> None:
    """Change top-level fields of an incident file by hand (None removes one)."""
    data = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def run_sql(ws: Workspace, *statements: str) -> None:
    """Edit the SQLite store by hand."""
    with sqlite3.connect(ws.state_path) as conn:
        for statement in statements:
            conn.execute(statement)


# --- the clean case ---------------------------------------------------------------------


def test_a_learned_contained_workspace_is_read_light_as_the_full_read_reads_it(
        ws: Workspace) -> None:
    """After one full read, an unchanged contained workspace is read light, with the
    full read's answer (the store's review mode, its time, actor and reason)."""
    assert light_reading(AGENT, ws.root) is None  # nothing remembered yet
    learned(ws.root)
    light = assert_parity(ws.root)
    assert light is not None and light["mode"] == "review" and light["since"].endswith("Z")
    assert assert_parity(ws.root, OTHER) == {
        "agent": OTHER, "mode": "full", "since": None, "actor": None,
        "reason": "never contained", "degraded": None}


def test_the_file_limit_is_the_full_reads() -> None:
    """The light read refuses files from the size the full read refuses them at."""
    assert MAX_FILE_BYTES == MAX_USER_FILE_BYTES


@pytest.mark.slow
def test_the_cli_prints_the_same_bytes_light_and_full(ws: Workspace) -> None:
    """`reinstate mode` and `mode --json` print the same bytes and exit codes whether the
    read was full (first) or light (after it), for a contained and a free agent."""
    for agent in (AGENT, OTHER):
        for args in ([], ["--json"]):
            first = _cli(ws.root, "mode", agent, *args)
            assert inputs_path(ws.state_path).is_file()
            assert light_reading(agent, ws.root) is not None
            assert _cli(ws.root, "mode", agent, *args) == first


def _cli(root: Path, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "REINSTATE_ACTOR": "test.engineer"}
    for forcing in ("FORCE_COLOR", "TTY_COMPATIBLE", "REINSTATE_WORKSPACE"):
        env.pop(forcing, None)
    done = subprocess.run([sys.executable, "-m", "gates", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.slow
def test_a_light_mode_imports_no_pydantic(ws: Workspace) -> None:
    """`reinstate mode` and `agent_mode` over a learned, clean workspace answer without
    importing pydantic, jsonschema, rich, yaml or the regressions models."""
    learned(ws.root)
    dump = ws.root.parent / "modules.json"
    heavy = ("pydantic", "jsonschema", "rich", "yaml", "regressions", "gates._config")
    for call in ("sys.argv = ['reinstate', 'mode', 'refund-agent', '--json']\n"
                 "from gates.cli import main\n"
                 "try:\n    main()\nexcept SystemExit as exit:\n    code = exit.code\n",
                 "from gates import agent_mode\nprint(agent_mode('refund-agent'))\ncode = 0\n"):
        code = (f"import json, sys\n{call}"
                f"open({str(dump)!r}, 'w').write(json.dumps([code, sorted(sys.modules)]))\n")
        env = {k: v for k, v in os.environ.items() if k != "REINSTATE_WORKSPACE"}
        done = subprocess.run([sys.executable, "-c", code], cwd=ws.root, env=env,
                              capture_output=True, text=True, timeout=120, check=True)
        exit_code, modules = json.loads(dump.read_text())
        assert exit_code == 0 and "review" in done.stdout
        assert [m for m in modules if m.split(".")[0] in heavy or m in heavy] == []


def test_agent_mode_answers_light_and_full_alike(ws: Workspace) -> None:
    """`agent_mode` gives the full read's mode before and after learning, cached or not."""
    before = mode_reading(AGENT, ws.root).mode
    assert agent_mode(AGENT, ws.root) == before == "review"  # full, and learns
    assert light_reading(AGENT, ws.root) is not None
    assert agent_mode(AGENT, ws.root) == agent_mode(AGENT, ws.root, cache_s=60) == before


# --- attacks: each must read as the full read reads it ----------------------------------


@pytest.mark.attack
def test_a_hand_written_restore_does_not_read_full(ws: Workspace) -> None:
    """An incident file edited to say restored, with no restore in the audit log, and the
    modes row set to full by hand: the light read does not answer full."""
    learned(ws.root)
    path = incident_files(ws)[0]
    edit_incident(path, restored_at=utc_now().isoformat())
    run_sql(ws, "UPDATE modes SET mode = 'full'")
    learned(ws.root)  # the edited file is valid: it is remembered
    assert assert_parity(ws.root) is None
    reading = read_mode(ws, AGENT)
    assert reading.mode == "review" and reading.degraded


@pytest.mark.attack
def test_a_restore_the_incident_file_does_not_record_defers(ws: Workspace) -> None:
    """A restore's mode entry for the contained incident, appended through the store's own
    interface with no verdict behind it: the light read defers, and the full read answers
    the containment (degraded), never full."""
    store = open_store(ws)
    store.replace_mode(ModeRecord(agent=AGENT, mode="full", since=utc_now(), actor="mallory",
                                  reason="restore after INC-1"),
                       expected=store.mode(AGENT), detail={"incidents": ["INC-1"]})
    learned(ws.root)
    assert light_reading(AGENT, ws.root) is None
    reading = read_mode(ws, AGENT)
    assert reading.mode == "review" and reading.degraded is not None
    assert "INC-1: the audit log holds a restore of it" in reading.degraded
    assert agent_mode(AGENT, ws.root) == "review"


def test_a_store_row_saying_full_while_an_incident_holds_defers(ws: Workspace) -> None:
    """A modes row changed to full behind the log while the incident holds: the light read
    leaves the degraded answer (review, exit 3) to the full read."""
    learned(ws.root)
    run_sql(ws, "UPDATE modes SET mode = 'full'")
    assert assert_parity(ws.root) is None
    code, out, err = _cli(ws.root, "mode", AGENT)
    assert code == 3 and out.strip() == "review"
    assert err.count("answering") == 1 and err.rstrip().endswith("answering review"), err


@pytest.mark.attack
@pytest.mark.parametrize("odd", [
    {"containment": "suspended"},
    {"restored_at": "yesterday"},
    {"severity": ["sev1"]},
    {"agent": 7},
    {"unknown_field": True},
])
def test_an_incident_file_of_an_odd_shape_is_not_read_light(ws: Workspace,
                                                            odd: dict[str, Any]) -> None:
    """An incident file changed after it was learned, to a shape the model refuses: the
    light read defers, and the mode is the full read's suspended."""
    learned(ws.root)
    edit_incident(incident_files(ws)[0], **odd)
    learned(ws.root)  # refused: not remembered
    assert light_reading(AGENT, ws.root) is None
    assert light_reading(OTHER, ws.root) is None  # the full read reads every incident
    assert mode_reading(AGENT, ws.root).mode == "suspended"


@pytest.mark.attack
def test_a_symlinked_incident_file_is_not_read_light(ws: Workspace) -> None:
    """An incident file replaced by a link to an identical copy is not read light."""
    learned(ws.root)
    path = incident_files(ws)[0]
    copy = ws.root / "elsewhere.yaml"
    copy.write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(copy)
    assert light_reading(AGENT, ws.root) is None
    assert mode_reading(AGENT, ws.root).mode == "suspended"


@pytest.mark.attack
def test_an_unreadable_incident_file_is_not_read_light(ws: Workspace) -> None:
    """An incident file nobody may read is not read light (running as root, it is read,
    and its bytes are the learned ones)."""
    learned(ws.root)
    path = incident_files(ws)[0]
    path.chmod(0)
    try:
        assert_parity(ws.root)
        if os.geteuid() != 0:
            assert light_reading(AGENT, ws.root) is None
    finally:
        path.chmod(0o644)


@pytest.mark.attack
def test_an_alias_bomb_and_a_huge_incident_file_are_not_read_light(ws: Workspace) -> None:
    """A YAML alias bomb and a file over the size limit, as a new incident of another
    agent: the light read defers and the full read suspends."""
    learned(ws.root)
    for text in (ALIAS_BOMB, "# padding\n" * (MAX_USER_FILE_BYTES // 10 + 1)):
        (ws.incidents_dir / "INC-9.yaml").write_text(text)
        learned(ws.root)
        assert light_reading(OTHER, ws.root) is None
        assert mode_reading(OTHER, ws.root).mode == "suspended"


@pytest.mark.attack
def test_a_garbled_audit_entry_or_a_forged_inputs_file_is_not_trusted(
        ws: Workspace) -> None:
    """A garbled entry of the agent, an inputs file anyone may write, one edited by hand,
    or one written under another version of the code: the light read defers each time."""
    learned(ws.root)
    with sqlite3.connect(ws.state_path) as conn:
        [(detail,)] = conn.execute("SELECT detail FROM audit WHERE seq = 1").fetchall()
    run_sql(ws, "UPDATE audit SET detail = '[1]' WHERE seq = 1")
    assert light_reading(AGENT, ws.root) is None
    # A mode entry that names no mode cannot vouch for the modes row: the full read fails
    # closed, and the light read leaves it to it.
    run_sql(ws, "UPDATE audit SET detail = '{}' WHERE seq = 1")
    assert light_reading(AGENT, ws.root) is None
    assert read_mode(ws, AGENT).mode == "suspended"
    run_sql(ws, f"UPDATE audit SET detail = '{detail}' WHERE seq = 1")
    assert light_reading(AGENT, ws.root) is not None
    inputs = inputs_path(ws.state_path)
    inputs.chmod(0o666)
    assert light_reading(AGENT, ws.root) is None  # anyone may write it: not trusted
    inputs.chmod(0o644)
    data = json.loads(inputs.read_text())
    inputs.write_text(json.dumps({**data, "salt": "0" * 64}))
    assert light_reading(AGENT, ws.root) is None
    inputs.write_text("{")
    assert light_reading(AGENT, ws.root) is None


@pytest.mark.attack
def test_a_postgres_url_or_a_missing_store_is_not_read_light(ws: Workspace) -> None:
    """A workspace whose store moved to PostgreSQL, or whose store file is gone, is left
    to the full read."""
    learned(ws.root)
    config = ws.root / "reinstate.toml"
    plain = config.read_text()
    config.write_text(f"{plain}\n[state]\nurl = \"postgresql://nobody@127.0.0.1:9/none\"\n")
    learned(ws.root)  # not remembered: the light read never answers for a server store
    assert light_reading(AGENT, ws.root) is None
    config.write_text(plain)
    assert light_reading(AGENT, ws.root) is not None
    ws.state_path.unlink()
    assert light_reading(AGENT, ws.root) is None
    assert mode_reading(AGENT, ws.root).mode == "suspended"


# --- parity over generated workspaces ---------------------------------------------------

ODD = st.sampled_from([*[None] * 8, "restored_by_hand", "closed_by_hand", "bad_type",
                       "string_containment", "symlink", "alias"])


@st.composite
def histories(draw: st.DrawFn) -> dict[str, Any]:
    """A workspace history: incidents, mode entries, store rows, edits after learning."""
    incidents = draw(st.lists(st.fixed_dictionaries({
        "agent": st.sampled_from([AGENT, OTHER]),
        "containment": st.sampled_from([None, "review", "suspended"]),
        "restored": st.booleans(),
        "logged_restore": st.booleans(),
        "closed": st.booleans(),
        "odd": ODD,
    }), max_size=4))
    return {
        "incidents": incidents,
        "row": draw(st.sampled_from([None, "full", "review", "suspended"])),
        "store": draw(st.sampled_from([*["written"] * 6, "missing", "empty",
                                       "created"])),
        "learn_after_edit": draw(st.booleans()),
        "odd_row": draw(st.sampled_from([*[None] * 6, "since", "mode"])),
    }


@pytest.fixture(scope="session")
def incident_template(contained_template: Path) -> dict[str, Any]:
    """A real contained incident, as `reinstate contain` wrote it."""
    path = sorted((contained_template / "incidents").glob("INC-*.yaml"))[0]
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


@pytest.fixture(scope="session")
def bare_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example workspace with a second agent and no incident, no store."""
    def build(root: Path) -> None:
        ws = Workspace.find(lay_out(root))
        shutil.copytree(ws.agent_dir(AGENT), ws.agent_dir(OTHER))
    return built_once(tmp_path_factory, "light-mode-bare", build)


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n"
    for p, c in zip("abcdefgh", "bcdefghi", strict=True))


def build(ws: Workspace, template: dict[str, Any], history: dict[str, Any]) -> None:
    """Write the history through the store's interface and the incident files, learn
    them, then make the hand edits of ``history``."""
    store = open_store(ws)
    store.create()
    ws.incidents_dir.mkdir(exist_ok=True)
    stamp = (utc_now() - timedelta(minutes=5)).isoformat()
    paths = []
    for number, incident in enumerate(history["incidents"], start=1):
        incident_id = f"INC-{number}"
        data = {**template, "id": incident_id, "agent": incident["agent"]}
        data.pop("containment", None)
        if incident["containment"] is not None:
            data["containment"] = {**template["containment"], "mode": incident["containment"]}
            store.set_mode(ModeRecord(agent=incident["agent"], mode=incident["containment"],
                                      since=utc_now(), actor="t", reason="contain"),
                           detail={"incident": incident_id})
        if incident["restored"]:
            data["restored_at"] = stamp
        if incident["closed"]:
            data["closed_at"] = stamp
        if incident["logged_restore"]:
            store.set_mode(ModeRecord(agent=incident["agent"], mode="full", since=utc_now(),
                                      actor="t", reason="restore"),
                           detail={"incidents": [incident_id]})
        path = ws.incidents_dir / f"{incident_id}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        paths.append(path)
    if history["row"] is not None:
        store.set_mode(ModeRecord(agent=AGENT, mode=history["row"], since=utc_now(),
                                  actor="t", reason="by hand"))
    else:
        run_sql(ws, f"DELETE FROM modes WHERE agent = '{AGENT}'")
    learned_mode(ws)
    for path, incident in zip(paths, history["incidents"], strict=True):
        odd = incident["odd"]
        if odd == "restored_by_hand":
            edit_incident(path, restored_at=stamp)
        elif odd == "closed_by_hand":
            edit_incident(path, closed_at=stamp)
        elif odd == "bad_type":
            edit_incident(path, severity=[1])
        elif odd == "string_containment":
            edit_incident(path, containment="review")
        elif odd == "alias":
            path.write_text(ALIAS_BOMB)
        elif odd == "symlink":
            moved = ws.root / f"{path.stem}-moved.yaml"
            path.rename(moved)
            path.symlink_to(moved)
    if history["learn_after_edit"]:
        learned_mode(ws)
    if history["odd_row"] == "since":
        run_sql(ws, "UPDATE modes SET since = '2026-01-01 10:00:00Z'")
    elif history["odd_row"] == "mode":
        run_sql(ws, "UPDATE modes SET mode = 'Full'")
    if history["store"] == "missing":
        ws.state_path.unlink()
    elif history["store"] == "empty":
        ws.state_path.write_bytes(b"")
    elif history["store"] == "created":
        run_sql(ws, "DELETE FROM audit", "DELETE FROM modes")


@pytest.mark.slow
@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(history=histories())
def test_the_light_read_defers_or_gives_the_full_reads_answer(
        bare_template: Path, incident_template: dict[str, Any],
        history: dict[str, Any]) -> None:
    """Over generated workspaces (contained, restored and closed incidents, restores logged
    or not, hand edits, odd YAML, links, missing, empty and emptied stores, odd rows), the
    light read of either agent is None or exactly the full read's answer."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "ws"
        shutil.copytree(bare_template, root)
        build(Workspace.find(root), incident_template, history)
        for agent in (AGENT, OTHER):
            light = assert_parity(root, agent)
            event(f"{agent}: {'deferred' if light is None else 'answered ' + light['mode']}")


def test_a_whole_second_and_a_fraction_read_alike(ws: Workspace) -> None:
    """A mode set at a whole second (no fraction in the stored text) and one set with a
    fraction both read light as the full read prints them."""
    store = open_store(ws)
    for since in (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
                  datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=UTC)):
        store.set_mode(ModeRecord(agent=OTHER, mode="suspended", since=since, actor="t",
                                  reason="by hand"))
        learned(ws.root)
        light = assert_parity(ws.root, OTHER)
        assert light is not None and light["since"].startswith("2026-01-02T03:04:05")


# --- hand edits of the audit log, before and after the checkpoint ------------------------

LOG_EDITS = {
    "detail garbled": "UPDATE audit SET detail = 'x' WHERE seq = {seq}",
    "detail a list": "UPDATE audit SET detail = '[1]' WHERE seq = {seq}",
    "reason edited": "UPDATE audit SET reason = 'edited' WHERE seq = {seq}",
    "stamp garbled": "UPDATE audit SET at = 'yesterday' WHERE seq = {seq}",
    "unlinked": "UPDATE audit SET prev_hash = 'x' WHERE seq = {seq}",
    "hash changed": "UPDATE audit SET hash = 'x' WHERE seq = {seq}",
    "removed": "DELETE FROM audit WHERE seq = {seq}",
    "made a restore": "UPDATE audit SET action = 'mode', detail = '{{\"mode\": \"full\"}}' "
                      "WHERE seq = {seq}",
    "given to the agent": f"UPDATE audit SET agent = '{AGENT}' WHERE seq = {{seq}}",
    "given to nobody": "UPDATE audit SET agent = NULL WHERE seq = {seq}",
    "checkpoint moved": "UPDATE meta SET value = json_set(value, '$.seq', {seq}) "
                        "WHERE key = 'audit_checkpoint'",
}


@pytest.mark.slow
@pytest.mark.attack
@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.sampled_from(list(LOG_EDITS)), st.integers(1, 14)),
                      min_size=1, max_size=3),
       learn_after=st.booleans())
def test_an_audit_log_edited_by_hand_is_read_light_only_as_the_full_read_reads_it(
        contained_template: Path, edits: list[tuple[str, int]], learn_after: bool) -> None:
    """Rows of the log edited, unlinked or removed anywhere (before the checkpoint, where
    the light read takes only the agent's mode entries, or after it), and the checkpoint
    moved: the light read of either agent is None or exactly the full read's answer."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "ws"
        shutil.copytree(contained_template, root)
        ws = Workspace.find(root)
        store = open_store(ws)
        for index in range(8):  # entries no mode decision reads, before the checkpoint
            store.append(actor="ci", action="note", agent=(AGENT, OTHER, None)[index % 3],
                         reason=f"note {index}")
        learned(root)
        run_sql(ws, *(LOG_EDITS[kind].format(seq=seq) for kind, seq in edits))
        if learn_after:
            learned(root)
        for agent in (AGENT, OTHER):
            light = assert_parity(root, agent)
            event(f"{agent}: {'deferred' if light is None else 'answered ' + light['mode']}")


@pytest.mark.attack
def test_a_workspace_whose_store_is_postgresql_is_never_read_from_a_local_file(
        ws: Workspace) -> None:
    """With `[state] url` set the mode is PostgreSQL's: a SQLite file and facts planted
    where the light read looks (keyed to today's configuration, as anyone can key them)
    never answer for it."""
    from gates._store.mode_light import file_key

    learned(ws.root)
    config = ws.root / "reinstate.toml"
    accepted = file_key("reinstate.toml", config.read_bytes())
    config.write_text(config.read_text()
                      + '\n[state]\nurl = "postgresql://reinstate@127.0.0.1:9/reinstate"\n')
    path = inputs_path(ws.state_path)
    facts = json.loads(path.read_text())
    facts["configs"][file_key("reinstate.toml", config.read_bytes())] = (
        facts["configs"][accepted])
    path.write_text(json.dumps(facts))
    assert light_reading(AGENT, ws.root) is None
