"""`reinstate capture` redacts by default, keeps the raw text only when asked, and the
redacted incident still fails the unfixed agent and passes the fixed one."""

from __future__ import annotations

import pytest

from evalsuite import load_model
from gates import EvalsResult, Workspace, run_gate
from gates._cli import main
from regressions import RegressionCase
from tests.helpers import ACTOR, LOG, contained

ADDRESS = "refunds-desk@quickmail.example"


def _capture(ws: Workspace, incident: str, *extra: str) -> int:
    return main(["-C", str(ws.root), "--actor", ACTOR, "capture", incident, "--run",
                 str(ws.root / LOG), "--run-id", "run-7f3a97", "--tag", "prompt_injection",
                 *extra])


def test_capture_redacts_unless_told_to_keep_raw(example: Workspace,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The default capture holds no address from the log and says what it redacted;
    --keep-raw keeps the log's text and warns."""
    incident = contained(example)
    assert _capture(example, incident, "--step", "4", "--step", "6") == 0
    out, _ = capsys.readouterr()
    assert "redacted: email" in out
    redacted = example.regressions_dir("refund-agent") / f"{incident}-1.yaml"
    assert ADDRESS not in redacted.read_text() and "example.com" in redacted.read_text()
    assert load_model(redacted, RegressionCase).redacted == ["email"]

    assert _capture(example, incident, "--step", "6", "--keep-raw") == 0
    _, err = capsys.readouterr()
    assert "keeps the raw text: it may hold personal data" in err
    raw = load_model(example.regressions_dir("refund-agent") / f"{incident}-2.yaml",
                     RegressionCase)
    assert raw.kept_raw and raw.redacted == [] and ADDRESS in raw.model_dump_json()


@pytest.mark.slow
def test_redacted_case_still_tells_the_agents_apart(example: Workspace, fixed: object) -> None:
    """Against the redacted case the unfixed agent still repeats the harm and the fixed one
    does not."""
    incident = contained(example)
    assert _capture(example, incident, "--step", "4", "--step", "6", "--step", "8") == 0
    before = run_gate(example, "refund-agent", actor="ci")
    evals = next(c for c in before.checks if c.name == "evals")
    assert any(f.startswith(f"{incident}-1: 0/") for f in evals.findings)
    fixed(example)  # type: ignore[operator]
    after = run_gate(example, "refund-agent", actor="ci")
    evals = after.result(EvalsResult)
    assert evals is not None and evals.data is not None
    case = next(c for c in evals.data.cases if c.id == f"{incident}-1")
    assert case.outcome == "pass"


@pytest.mark.attack
def test_a_secret_under_a_secret_key_is_redacted(example: Workspace, tmp_path: object) -> None:
    """A password or key logged as the value of a field named for it (`Password`, `API_KEY`,
    nested in arguments or a tool result) has no shape of its own to find, so it was
    written to the case raw. The key says what it is: it is a token placeholder, and the
    derived scope still finds the run it came from."""
    import json

    from gates import capture, investigate

    password, key = "Tr0ub4dor3xyzQ", "abcd1234efgh5678ijkl"
    lines = []
    for line in (example.root / LOG).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("run_id") == "run-7f3a97" and record.get("tool") == "issue_refund" \
                and record.get("kind") == "tool_call":
            record["arguments"]["auth"] = {"Password": password}
        if record.get("run_id") == "run-7f3a97" and record.get("kind") == "tool_result" \
                and record.get("tool") == "lookup_order":
            record["result"]["API_KEY"] = key
        lines.append(json.dumps(record))
    log = example.root / "logs" / "keyed.jsonl"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    incident = contained(example)
    capture(example, incident, log, actor=ACTOR, run_id="run-7f3a97", steps=[4],
            tags=["prompt_injection"])
    text = (example.regressions_dir("refund-agent") / f"{incident}-1.yaml").read_text()
    assert password not in text and key not in text, text
    assert "REDACTED-TOKEN-" in text
    done = investigate(example, incident, [log], actor=ACTOR)
    assert password not in example.incidents().path(incident).read_text()
    assert done.investigation.scope.runs_matched == 1, done.warnings
    assert not done.warnings, done.warnings
