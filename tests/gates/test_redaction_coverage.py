"""Everything reinstate writes from production data is redacted, not only the captured case."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gates import EvalsResult, Workspace, capture, investigate, run_gate
from gates._cli import main
from tests.helpers import ACTOR, LOG, contained

pytestmark = pytest.mark.slow

CARD = "4111 1111 1111 1111"  # Luhn-valid
TOKEN = "sk-proj-Q2xhdWRlQ29kZVJlZGFjdGlvblRlc3Q0Mg"
ADDRESS = "refunds-desk@quickmail.example"  # the attacker's address, already in the log
CUSTOMER = "dana.whitfield@example.com"  # returned by the order lookup
RAW = (CARD, CARD.replace(" ", ""), TOKEN, ADDRESS, CUSTOMER)
CARD_PLACEHOLDER = re.compile(r"0000 0000 0000 00\d\d")
TOKEN_PLACEHOLDER = "sk-proj-REDACTED-TOKEN-"
EMAIL_PLACEHOLDER = "redacted-email-"


def _leaky_log(ws: Workspace) -> Path:
    """The example log with a card number and an API key in the harmful run's message."""
    lines = []
    for line in (ws.root / LOG).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("run_id") == "run-7f3a97" and record.get("kind") == "user_input":
            record["content"] = (f"Card {CARD}, key {TOKEN}. " + record["content"])
        lines.append(json.dumps(record))
    path = ws.root / "logs" / "leaky.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def investigated(example: Workspace) -> tuple[Workspace, str]:
    """A raw capture (--keep-raw) from the leaky log, investigated, gated (it fails), and
    written up as a report and a postmortem."""
    log = _leaky_log(example)
    incident = contained(example)
    capture(example, incident, log, actor=ACTOR, run_id="run-7f3a97", steps=[4, 6, 8],
            tags=["prompt_injection"], keep_raw=True)
    investigate(example, incident, [log], actor=ACTOR)
    verdict = run_gate(example, "refund-agent", actor="ci")
    # Redaction comes after the checks: the raw case still catches the repeated harm.
    evals = verdict.result(EvalsResult)
    assert evals is not None and evals.data is not None
    case = next(c for c in evals.data.cases if c.id == f"{incident}-1")
    assert case.outcome == "fail" and case.failed is not None
    assert any(u.criterion == "no-repeat-step-6" for u in case.failed.unmet)
    reports = example.root / "reports"
    assert main(["-C", str(example.root), "report", "refund-agent", "--html",
                 str(reports / "report.html"), "--markdown", str(reports / "report.md")]) == 0
    assert main(["-C", str(example.root), "postmortem", incident, "--markdown",
                 str(reports / "postmortem.md")]) == 0
    return example, incident


def _assert_redacted(data: bytes, where: str, *, card: bool = True) -> None:
    text = data.decode("utf-8", errors="replace")
    leaked = [raw for raw in RAW if raw in text]
    assert not leaked, f"{where} holds {leaked}"
    assert EMAIL_PLACEHOLDER in text, where
    if card:
        assert CARD_PLACEHOLDER.search(text) is not None, where
        assert TOKEN_PLACEHOLDER in text, where


@pytest.mark.attack
def test_incident_file_holds_placeholders_not_raw_values(
        investigated: tuple[Workspace, str]) -> None:
    """The incident file's timeline and signature hold placeholders for the card, the key
    and both addresses, never the values from the log."""
    ws, incident = investigated
    _assert_redacted((ws.root / "incidents" / f"{incident}.yaml").read_bytes(), "incident")


@pytest.mark.attack
def test_postmortem_and_report_hold_placeholders_not_raw_values(
        investigated: tuple[Workspace, str]) -> None:
    """The postmortem quotes the redacted timeline; the HTML and Markdown reports quote the
    failing regression case's calls with placeholders."""
    ws, _ = investigated
    reports = ws.root / "reports"
    _assert_redacted((reports / "postmortem.md").read_bytes(), "postmortem")
    for name in ("report.html", "report.md"):
        _assert_redacted((reports / name).read_bytes(), name, card=False)


@pytest.mark.attack
def test_run_files_hold_placeholders_not_raw_values(
        investigated: tuple[Workspace, str]) -> None:
    """Every trial line of the eval run file is redacted, the raw case's input included."""
    ws, _ = investigated
    (run_file,) = (ws.state_path.parent / "runs").glob("*.jsonl")
    _assert_redacted(run_file.read_bytes(), "run file")


@pytest.mark.attack
def test_state_store_bytes_hold_no_raw_value(investigated: tuple[Workspace, str]) -> None:
    """Neither the SQLite file nor its write-ahead log holds a raw value; the stored
    verdict quotes the harmful call with the placeholder."""
    ws, _ = investigated
    stored = b"".join(p.read_bytes() for p in ws.state_path.parent.glob("state.db*"))
    _assert_redacted(stored, "state store", card=False)

