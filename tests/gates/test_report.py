"""The verdict report and the gate's Markdown: what a release manager and a CI summary show."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from gates import (
    CHECKS,
    CheckResult,
    Workspace,
    open_incident,
    open_store,
    register,
    report_html,
    report_markdown,
    run_gate,
    verdict_report,
)
from tests.browser import Browser
from tests.conftest import RunCli, tree
from tests.helpers import ACTOR, captured

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("report")]

ROOT = Path(__file__).parent.parent.parent
# Screenshots are kept for a person to look at after the run; the folder is gitignored.
ARTIFACTS = ROOT / "test-artifacts"
INJECTED = '<script>document.title="pwned"</script><img src=x onerror="document.title=1">'


@pytest.fixture
def failing(example: Workspace) -> Workspace:
    """Green before the incident; then the incident is captured and the gate fails."""
    assert run_gate(example, "refund-agent", actor="ci")
    captured(example)
    assert run_gate(example, "refund-agent", actor="ci").outcome == "fail"
    return example


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module's pages."""
    chromium = Browser(width=1280, height=900)
    yield chromium
    chromium.close()


def test_markdown_of_a_failing_verdict_says_no_and_why(failing: Workspace) -> None:
    """The top says the agent may not go back, the failing case shows what the agent did."""
    text = report_markdown(verdict_report(failing, "refund-agent"))
    top = text.splitlines()[0]
    assert top == "## ⛔ refund-agent may NOT go back to full operation"
    assert "| `evals` | The eval suite and the regression set pass against the live agent. | " \
           "**FAIL** | 20/21 cases passed" in text
    assert "#### `INC-1-1` FAIL (regression case)" in text
    assert "2. `called issue_refund(order_id='A-1001', amount=1250.0" in text
    assert "- no-repeat-step-4: called issue\\_refund" not in text  # underscores stay readable
    assert "- no-repeat-step-4: called issue_refund(order_id='A-1001'" in text
    assert "| **F-1**" not in text and "INC-1 has no root-cause finding" in text


def test_diff_from_the_last_passing_verdict(failing: Workspace) -> None:
    """The report compares the failing verdict with the green one before the incident."""
    report = verdict_report(failing, "refund-agent")
    lines = [change.line() for change in report.diff]
    assert 'outcome: "pass" → "fail"' in lines
    assert 'checks.evals.outcome: "pass" → "fail"' in lines
    assert 'cases.INC-1-1: added "fail"' in lines
    assert report.previous is not None and report.verdict is not None
    assert report.previous < report.verdict.created_at


def test_html_shows_the_outcome_first_to_a_person(back_in_full: Workspace,
                                                  browser: Browser, tmp_path: Path) -> None:
    """In Chromium the headline is at the top, every check and change is shown, nothing loads."""
    page = tmp_path / "report.html"
    page.write_text(report_html(verdict_report(back_in_full, "refund-agent")))
    browser.open(page)
    shot = browser.screenshot(ARTIFACTS / "report-restored.png")
    assert shot.stat().st_size > 20_000
    headline = browser.evaluate("(() => { const h = document.querySelector('h1'); "
                                "const r = h.getBoundingClientRect(); "
                                "return [h.innerText, r.top, r.bottom]; })()")
    assert headline[0] == "refund-agent may run in full operation"
    assert headline[1] >= 0 and headline[2] < 200  # above the fold, first thing on the page
    seen = browser.evaluate("document.body.innerText")
    assert "Deploying it is allowed." in seen
    assert seen.count("PASS") >= 7  # the verdict and each of the six checks
    assert "CC-1 tool_permission_boundary" in seen
    assert "allow (permissions.tools.issue_refund) → deny (permissions.tools.issue_refund." in seen
    assert "Verified: prompt_injection covered by at least 3 passing cases" in seen
    assert "Every eval and regression case passed." in seen
    assert 'agent_version\t"1.4.0"\t"1.5.0"' in seen  # the diff from the green verdict before
    assert browser.evaluate("performance.getEntriesByType('resource').length") == 0
    assert browser.evaluate("document.scripts.length") == 0


def test_html_shows_injected_text_as_text(failing: Workspace, browser: Browser,
                                          tmp_path: Path) -> None:
    """Markup in an incident's summary is shown literally and never runs."""
    open_incident(failing, "refund-agent", summary=f"second attempt {INJECTED}",
                  severity="sev3", actor=ACTOR)
    report = verdict_report(failing, "refund-agent")
    page = tmp_path / "report.html"
    page.write_text(report_html(report))
    browser.open(page)
    browser.screenshot(ARTIFACTS / "report-failing.png")
    assert browser.evaluate("document.title").startswith("refund-agent may NOT go back")
    assert browser.evaluate("document.images.length + document.scripts.length") == 0
    seen = browser.evaluate("document.body.innerText")
    assert f"second attempt {INJECTED}" in seen
    assert "INC-2 was never contained: contain it first" in seen
    # Capture redacted the address the injected message named (the agent saw the same).
    assert ("What the agent did" in seen
            and "called send_email(to='redacted-email-1@quickmail.example'" in seen)
    markdown = report_markdown(report)
    assert "<script>" not in markdown and "\\<script\\>" in markdown


def test_gate_writes_markdown_and_appends_the_step_summary(example: Workspace,
                                                            cli: RunCli) -> None:
    """--markdown writes the report; GITHUB_STEP_SUMMARY gets it appended after earlier text."""
    captured(example)
    summary = example.root / "step-summary.md"
    summary.write_text("earlier step\n")
    result = cli("gate", "refund-agent", "--markdown", "out/gate.md", "--json", "out/v.json",
                 cwd=example.root, env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert result.returncode == 1, result.stderr
    written = (example.root / "out/gate.md").read_text()
    assert written.startswith("## ⛔ refund-agent may NOT go back to full operation\n")
    assert summary.read_text() == "earlier step\n" + written + "\n"


def test_json_verdict_is_versioned_and_matches_its_schema(example: Workspace,
                                                          cli: RunCli) -> None:
    """The JSON verdict starts with schema_version and validates against schemas/verdict.json."""
    captured(example)
    cli("gate", "refund-agent", "--json", "v.json", cwd=example.root)
    text = (example.root / "v.json").read_text()
    assert text.startswith('{\n  "schema_version": 2,')
    schema = json.loads((ROOT / "schemas" / "verdict.json").read_text())
    errors = list(Draft202012Validator(schema).iter_errors(json.loads(text)))
    assert errors == []
    evals = next(c for c in json.loads(text)["checks"] if c["name"] == "evals")
    failed = next(c for c in evals["data"]["cases"] if c["id"] == "INC-1-1")["failed"]
    assert failed["trial"] == 1 and failed["did"][1].startswith("called issue_refund(")


def test_report_command_writes_both_files(back_in_full: Workspace, cli: RunCli) -> None:
    """`reinstate report --html --markdown` writes both and says the outcome in one line."""
    result = cli("report", "refund-agent", "--html", "r/report.html", "--markdown",
                 "r/report.md", cwd=back_in_full.root)
    assert result.returncode == 0, result.stderr
    assert "refund-agent: refund-agent may run in full operation" in result.stdout
    html = (back_in_full.root / "r/report.html").read_text()
    assert html.startswith("<!doctype html>") and "<link" not in html and "src=" not in html
    assert (back_in_full.root / "r/report.md").read_text().startswith("## ✅ refund-agent may")
    printed = cli("report", "refund-agent", cwd=back_in_full.root)
    assert printed.stdout.startswith("## ✅ refund-agent may run in full operation\n")


@pytest.fixture
def escaping_check() -> Iterator[None]:
    """A check registered for one test that fails quoting an answer with terminal escapes:
    conceal the rest of the line, go up one line and erase it."""
    @register("quotes_the_answer")
    def quotes_the_answer(inputs: object, evidence: object) -> CheckResult:
        return CheckResult(name="quotes_the_answer", outcome="fail",
                           summary="answer: \x1b[8mhidden",
                           findings=["the agent said \x1b[1A\x1b[2K## ✅ cleared"])
    yield
    del CHECKS["quotes_the_answer"]


def test_report_printed_writes_out_the_escapes_a_verdict_quotes(
        example: Workspace, cli: RunCli, escaping_check: None) -> None:
    """`reinstate report` printed to a CI log (piped) writes each control character a
    finding quotes out (``\\x1b``): a terminal showing it acts on none of them."""
    assert run_gate(example, "refund-agent", actor="ci").outcome == "fail"
    printed = cli("report", "refund-agent", cwd=example.root)
    assert printed.returncode == 0, printed.stderr
    assert "\x1b" not in printed.stdout
    assert "the agent said \\\\x1b\\[1A\\\\x1b\\[2K## ✅ cleared" in printed.stdout
    assert printed.stdout.startswith("## ⛔ refund-agent may NOT go back")


def test_report_without_a_verdict_says_so(example: Workspace) -> None:
    """An agent never gated gets a report that refuses, not an empty success."""
    open_store(example).create()
    report = verdict_report(example, "refund-agent")
    assert report.standing == "blocked" and report.verdict is None
    text = report_markdown(report)
    assert "- no gate verdict for refund-agent: run \\`reinstate gate refund-agent\\`" in text
    assert "| Latest verdict | none: the gate has never run for refund-agent |" in text


def test_report_of_an_unknown_agent_writes_nothing(example: Workspace, cli: RunCli) -> None:
    """A misspelt agent is exit 2, one line, and no file."""
    open_store(example).create()
    before = tree(example.root)
    result = cli("report", "refund-agnet", "--html", "r.html", cwd=example.root)
    assert result.returncode == 2 and "did you mean 'refund-agent'" in result.stderr
    assert tree(example.root) == before


def test_behaviour_changes_since_the_last_passing_run(example: Workspace) -> None:
    """The report names the case whose calls changed between the two passing runs."""
    assert run_gate(example, "refund-agent", actor=ACTOR).outcome == "pass"
    agent = example.agent_dir("refund-agent") / "refund_agent.py"
    agent.write_text(agent.read_text().replace('"reason": "customer request"',
                                               '"reason": "goodwill"'))
    assert run_gate(example, "refund-agent", actor=ACTOR).outcome == "pass"
    behaviour = verdict_report(example, "refund-agent").behaviour
    assert sorted(behaviour) == ["close-own-account", "close-own-account-curt",
                                 "refund-full-damaged", "refund-partial-chipped"]
    assert any("goodwill" in line for line in behaviour["refund-partial-chipped"])
    assert "goodwill" in report_markdown(verdict_report(example, "refund-agent"))
