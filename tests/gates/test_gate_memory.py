"""The gate builds its verdict without holding every case's result as models: the verdict is
the one the checks' models redacted whole would give, its case rows share one set of field
names, and a parked trial answers what a control stopped without being unpacked."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from deepdiff import DeepDiff

from evalsuite import Judgement, Redactor, TrialResult
from gates import (
    CaseFigures,
    EvalsResult,
    Verdict,
    Workspace,
    load_inputs,
    open_store,
    run_checks,
    run_evals,
    run_gate,
)
from gates._demo import lay_out
from regressions import utc_now

AGENT = "refund-agent"
Cli = Callable[..., tuple[int, str, str]]

# Cases that fail with personal data in their findings, so that the verdict's redaction
# numbers several placeholders across the checks.
FAILING = """\
schema_version: 1
id: {id}
agent: refund-agent
description: A case the agent fails, quoting {said}.
tags:
- address_change
input:
  messages:
  - role: user
    content: Please reach me at {said}.
  context:
    customer_id: C-1002
    channel: chat
expect:
- kind: output_contains
  text: "{said}"
"""

# What two runs of the gate may differ in: when they ran, how long, and the store's head.
VARYING = [r"created_at", r"\['seconds'\]", r"run_file", r"audit_head"]


@pytest.fixture
def failing(tmp_path: Path) -> Workspace:
    """The example workspace with three extra cases that fail, quoting an address, a phone
    number and the address again."""
    root = lay_out(tmp_path / "ws")
    for number, said in enumerate(["jane.doe@example.com", "+44 20 7946 0958",
                                   "jane.doe@example.com"]):
        (root / "evals" / AGENT / f"quoting-{number}.yaml").write_text(
            FAILING.format(id=f"quoting-{number}", said=said))
    return Workspace.find(root)


def _as_before(workspace: Workspace) -> dict[str, Any]:
    """The verdict as the gate built it before: every check's model, the whole verdict
    dumped and redacted in one go."""
    inputs = load_inputs(workspace, AGENT)
    checks = run_checks(inputs, run_evals(inputs, record=False))
    verdict = Redactor().record(Verdict(agent=AGENT, outcome="fail", created_at=utc_now(),
                                        fingerprint=inputs.fingerprint, checks=checks),
                                keep=("fingerprint", "terms", "run_file"))
    return verdict.model_dump(mode="json", exclude={"outcome"})


@pytest.mark.slow
def test_the_verdict_is_the_one_redacted_whole(failing: Workspace) -> None:
    """The gate's verdict equals the checks' models redacted as one verdict, placeholders
    numbered the same."""
    verdict = run_gate(failing, AGENT, actor="test")
    stored = verdict.model_dump(mode="json", exclude={"outcome"})
    assert verdict.outcome == "fail"
    assert "redacted-email-1@example.com" in str(stored) and "jane.doe" not in str(stored)
    assert DeepDiff(_as_before(failing), stored, exclude_regex_paths=VARYING) == {}


@pytest.mark.slow
def test_case_rows_share_one_set_of_field_names(failing: Workspace) -> None:
    """Every case row of a stored gate verdict that has every field holds the same set of
    field names, not a copy each."""
    evals = run_gate(failing, AGENT, actor="test").result(EvalsResult)
    assert evals is not None and evals.data is not None
    rows = [c for c in evals.data.cases if c.model_fields_set == set(CaseFigures.model_fields)]
    assert len(rows) > 3
    assert len({id(c.model_fields_set) for c in rows}) == 1


def test_redacting_in_place_changes_the_data_given() -> None:
    """``value_in_place`` redacts the mappings and lists it is given, numbering as
    ``value`` does, and keeps what it is told to keep."""
    data = {"a": ["mail jane@example.com", {"b": "and bob@example.com"}],
            "fingerprint": "jane@example.com"}
    copy = Redactor().value(data, keep=("fingerprint",))
    inner = data["a"]
    assert Redactor().value_in_place(data, keep=("fingerprint",)) is data
    assert data == copy and data["a"] is inner
    assert data["fingerprint"] == "jane@example.com"


def test_a_parked_trial_says_what_a_control_stopped() -> None:
    """A trial's ``stopped_details`` are the details of its judgements a control stopped,
    the same once it is parked."""
    judgements = [
        Judgement(criterion="never_called", passed=True, detail="refund was denied",
                  stopped_by=["no-refunds"]),
        Judgement(criterion="output_contains", passed=True, detail="said sorry"),
    ]
    trial = TrialResult(trial=1, passed=True, judgements=judgements)
    assert trial.stopped_details == ("refund was denied",)
    assert trial.parked().stopped_details == ("refund was denied",)
    assert trial.parked().judgements == []


@pytest.mark.slow
def test_a_passing_gate_serialises_its_verdict_once_and_parses_no_text_of_it(
        restorable: Workspace, inline_cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """A passing `reinstate gate` checks what the store holds by the digest the save's audit
    entry recorded, serialising its verdict only for the store and restore's audit check,
    and never parses a text of the whole verdict."""
    calls: list[str] = []
    dump, parse = Verdict.model_dump_json, Verdict.model_validate_json

    def counted_dump(self: Verdict, **kwargs: Any) -> str:
        calls.append("dump")
        return dump(self, **kwargs)

    def counted_parse(cls: type[Verdict], *args: Any, **kwargs: Any) -> Verdict:
        calls.append("parse")
        return parse(*args, **kwargs)

    monkeypatch.setattr(Verdict, "model_dump_json", counted_dump)
    monkeypatch.setattr(Verdict, "model_validate_json", classmethod(counted_parse))
    code, out, _ = inline_cli(restorable, "gate", "refund-agent")
    assert code == 0, out
    # Once for the store, once for the audit check restore's conditions make of the latest
    # verdict; the digest for the exit code and the closing line comes from the save.
    assert calls == ["dump", "dump"]
    store = open_store(restorable)
    text = store.latest_verdict_text(AGENT)
    assert text is not None
    entry = list(store.audit(AGENT, actions={"verdict"}))[-1]
    assert entry.detail["sha256"] == hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.slow
def test_the_stored_text_is_the_verdict_read_back_byte_for_byte(failing: Workspace) -> None:
    """The verdict the gate built row by row is the one its stored text validates to, and
    that text is what serialising either gives, byte for byte."""
    verdict = run_gate(failing, AGENT, actor="test")
    text = open_store(failing).latest_verdict_text(AGENT)
    assert text is not None and verdict.outcome == "fail"
    read = Verdict.model_validate_json(text)
    assert read == verdict
    assert read.model_dump_json() == text == verdict.model_dump_json()
    assert verdict.model_dump_json(indent=2) == read.model_dump_json(indent=2)
