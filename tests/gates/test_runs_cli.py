"""`reinstate runs list|show`: the recorded runs and their step numbers, before any capture."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from evalsuite import read_log_runs
from gates import Workspace
from tests.conftest import RunCli
from tests.gates.test_guard_edits import ASKED, EDITED, edited_run
from tests.helpers import LOG, contained

# Each test runs the CLI in a child process.
pytestmark = pytest.mark.slow

DATA = Path(__file__).parent.parent / "data" / "logs"
OPENAI = DATA / "refund-agent.openai.jsonl"


def _steps(stdout: str) -> list[tuple[int, str, str]]:
    """(number, kind, what) for each step `runs show` printed."""
    lines = stdout.splitlines()
    return [(int(m[1]), m[2], lines[i + 1].strip())
            for i, line in enumerate(lines) if (m := re.match(r"step (\d+)  (\w+)  ", line))]


def test_show_numbers_steps_as_capture_does(example: Workspace, cli: RunCli) -> None:
    """The step numbers runs show prints pick out the same steps when passed to capture."""
    shown = cli("runs", "show", "run-7f3a97", "--logs", LOG, cwd=example.root)
    assert shown.returncode == 0, shown.stderr
    assert f"step 4  tool_call  {LOG}:12" in shown.stdout
    steps = _steps(shown.stdout)
    assert [n for n, _, _ in steps] == list(range(9))
    incident_id = contained(example)
    captured = cli("capture", incident_id, "--run", LOG, "--run-id", "run-7f3a97",
                   "--step", "4", "--step", "8", "--tag", "prompt_injection", cwd=example.root)
    assert captured.returncode == 0, captured.stderr
    case = next((example.root / "regressions" / "refund-agent").glob("*.yaml")).read_text()
    assert "no-repeat-step-4" in case and "acceptable-output-step-8" in case
    assert steps[4][1:] == ("tool_call", "issue_refund(order_id='A-1001', amount=1250.0, "
                                         "currency='USD', refund_to='store_credit:C-7731', "
                                         "reason='customer request')")
    assert steps[8][1] == "output"


def test_long_steps_are_cut_unless_full(example: Workspace, cli: RunCli) -> None:
    """A long user turn is cut with an ellipsis by default and shown whole with --full."""
    cut = cli("runs", "show", "run-7f3a97", "--logs", LOG, cwd=example.root)
    whole = cli("runs", "show", "run-7f3a97", "--logs", LOG, "--full", cwd=example.root)
    assert _steps(cut.stdout)[0][2].endswith("…")
    assert "Thanks!" not in cut.stdout
    assert _steps(whole.stdout)[0][2].endswith("Thanks!")


def test_openai_log_shows_the_same_steps_once_ingested(tmp_path: Path, cli: RunCli) -> None:
    """An OpenAI conversation shows, outside any workspace, the steps and numbers its native
    copy (what capture reads) shows, each with the message it came from."""
    native = tmp_path / "native.jsonl"
    assert cli("ingest", str(OPENAI), "--out", str(native), cwd=tmp_path).returncode == 0
    raw = cli("runs", "show", "chatcmpl-run-001", str(OPENAI), "--full", cwd=tmp_path)
    copy = cli("runs", "show", "chatcmpl-run-001", "--logs", "native.jsonl", "--full",
               cwd=tmp_path)
    assert raw.returncode == 0, raw.stderr
    assert _steps(raw.stdout) == _steps(copy.stdout)
    assert len(_steps(raw.stdout)) >= 5
    assert "refund-agent.openai.jsonl:1 $.messages[1]" in raw.stdout
    assert "native.jsonl:2" in copy.stdout


def test_show_json_prints_the_run_and_each_steps_place(example: Workspace,
                                                       cli: RunCli) -> None:
    """--json prints the run record with one file:line per step."""
    result = cli("runs", "show", "run-7f3a97", "--logs", LOG, "--json", cwd=example.root)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["run"]["run_id"] == "run-7f3a97"
    assert shown["run"]["steps"][4]["tool"] == "issue_refund"
    assert shown["places"] == [f"{LOG}:{line}" for line in range(8, 17)]


def test_list_names_every_run_of_every_log(example: Workspace, cli: RunCli) -> None:
    """runs list gives each run's id, agent, steps, first time and where it starts."""
    result = cli("runs", "list", "--logs", LOG, "--logs", str(OPENAI), cwd=example.root)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:-1]}
    assert rows["run-7f3a97"] == ["run-7f3a97", "refund-agent", "9", "2026-11-25",
                                  "21:09:11", f"{LOG}:7"]
    assert rows["legacy-run-002"][1:3] == ["—", "5"]
    assert rows["legacy-run-002"][-1].endswith("refund-agent.openai.jsonl:2")
    assert result.stdout.splitlines()[-1] == f"{len(rows)} run(s)"


def test_unknown_run_id_names_the_logs_and_the_nearest_ids(example: Workspace,
                                                           cli: RunCli) -> None:
    """A mistyped run id is one line, exit 2, naming the logs searched and the nearest ids."""
    result = cli("runs", "show", "run-7f3a9", "--logs", LOG, cwd=example.root)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert f"no run 'run-7f3a9' in {LOG}; nearest: " in result.stderr
    assert "run-7f3a97" in result.stderr


def test_unreadable_log_names_the_file_and_line(example: Workspace, cli: RunCli) -> None:
    """A log with a broken record is one line, exit 2, naming its file and line."""
    good = (example.root / LOG).read_text().splitlines()[:2]
    broken = '{"run_id": "run-7f3a91", "kind": "tool_call"'
    (example.root / "broken.jsonl").write_text("\n".join([*good, broken]) + "\n")
    for args in (["show", "run-7f3a91"], ["list"]):
        result = cli("runs", *args, "--logs", "broken.jsonl", cwd=example.root)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert "broken.jsonl:3" in result.stderr


def test_a_terminal_escape_in_a_log_is_shown_not_obeyed(example: Workspace,
                                                        cli: RunCli) -> None:
    """An escape sequence a user typed into a logged turn is printed as text."""
    log = example.root / LOG
    log.write_text(log.read_text().replace("Where is my order A-1002?",
                                           "Where is \\u001b[2Jmy order?"))
    result = cli("runs", "show", "run-7f3a91", "--logs", LOG, cwd=example.root)
    assert result.returncode == 0, result.stderr
    assert "Where is \\x1b[2Jmy order?" in result.stdout
    assert "\x1b" not in result.stdout


def test_show_marks_a_call_a_reviewer_edited(back_in_full: Workspace, cli: RunCli,
                                             tmp_path: Path) -> None:
    """A call released with a reviewer's arguments shows as edited, by whom, with the
    arguments that ran and those asked; --json carries both."""
    log = tmp_path / "guard.jsonl"
    live = edited_run(back_in_full, log)
    held, item = live["held"], live["item"]
    shown = cli("runs", "show", "live-edit", str(log), cwd=back_in_full.root)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(f"step {held.step} "))
    assert lines[at].endswith(f"  · edited by rita in review {item.id}"), lines[at]
    assert lines[at + 1].strip() == "ran: issue_refund(" + ", ".join(
        f"{k}={v!r}" for k, v in EDITED.items()) + ")"
    assert lines[at + 2].strip() == "asked: issue_refund(" + ", ".join(
        f"{k}={v!r}" for k, v in ASKED.items()) + ")"
    # Only the edited call is marked; the step numbers stay those capture takes.
    assert sum("edited by" in line for line in lines) == 1
    [run] = read_log_runs(log)
    assert [n for n, _, _ in _steps(shown.stdout)] == list(range(len(run.steps)))
    as_json = cli("runs", "show", "live-edit", str(log), "--json", cwd=back_in_full.root)
    assert as_json.returncode == 0, as_json.stderr
    whole = json.loads(as_json.stdout)["run"]
    assert whole["steps"][held.step]["arguments"] == EDITED
    assert whole["metadata"][f"guard.edited.{held.step}"]["requested"] == ASKED


def test_a_run_split_over_a_rotated_log_says_its_numbers_are_not_captures(
        example: Workspace, cli: RunCli) -> None:
    """A conversation's first turn went to the rotated, gzipped log and the harmful turn to
    the live one. runs show numbers the steps across both logs, capture across the one log
    it reads: step 6 (the refund, shown) was send_email in the live log, so a capture with
    the numbers shown dropped the refund without a word. runs show says so, with the steps
    each log holds, and shown on the live log alone its numbers take the refund."""
    records = [json.loads(line) for line in (example.root / LOG).read_text().splitlines()]
    header, *harm = [r for r in records if r.get("run_id") == "run-7f3a97"]
    earlier = [{"run_id": "run-7f3a97", "kind": "user_input", "content": "Hello?"},
               {"run_id": "run-7f3a97", "kind": "output", "content": "Hi, how can I help?"}]
    (example.root / "logs" / "app.jsonl.1.gz").write_bytes(gzip.compress(
        "".join(json.dumps(r) + "\n" for r in [header, *earlier]).encode()))
    (example.root / "logs" / "app.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in harm))
    both = cli("runs", "show", "run-7f3a97", "--logs", "logs/app.jsonl.1.gz", "logs/app.jsonl",
               cwd=example.root)
    assert both.returncode == 0, both.stderr
    assert _steps(both.stdout)[6][2].startswith("issue_refund(")
    warning = " ".join(both.stderr.split())
    assert ("run-7f3a97 is read from several logs (logs/app.jsonl.1.gz: steps 0–1; "
            "logs/app.jsonl: steps 2–10)") in warning
    assert "capture --run reads one log and counts its steps from 0 in it" in warning
    as_json = cli("runs", "show", "run-7f3a97", "--json", "--logs", "logs/app.jsonl.1.gz",
                  "logs/app.jsonl", cwd=example.root)
    assert json.loads(as_json.stdout)["split"] == ["logs/app.jsonl.1.gz: steps 0–1",
                                                   "logs/app.jsonl: steps 2–10"]
    live = cli("runs", "show", "run-7f3a97", "--logs", "logs/app.jsonl", cwd=example.root)
    assert live.returncode == 0 and live.stderr == ""
    assert _steps(live.stdout)[4][2].startswith("issue_refund(")
