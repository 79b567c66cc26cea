"""The verdict report: one page a release manager can read without knowing the tool.

At the top, what the agent may do now, in plain words (the same answer as ``check``);
then every check of the latest verdict, each incident's chain finding → control change
→ verification, the cases that did not pass with what the agent did, the fingerprint,
and what changed since the last passing verdict. Built once as data, redacted as a whole
(a verdict or run file stored before redaction covered them is redacted here too), and
rendered as HTML or Markdown from templates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AwareDatetime, Field

from evalsuite import Record, Redactor, ReinstateError, diff_runs, load_cases, read_run_file
from gates._config import Workspace
from gates._gate.pipeline import CHECKS, UNREDACTED
from gates._reports.incident_view import IncidentView, incident_view
from gates._reports.templating import render_html, render_markdown
from gates._response.clearance import Clearance, check
from gates._store.access import open_store
from gates._store.backends import StateStore
from gates._verdict.check_results import EvalsResult
from gates._verdict.diff import Change, differences
from gates._verdict.fingerprint import Fingerprint, fingerprint
from gates._verdict.verdict import ChangeVerification, Outcome, Verdict
from regressions import RegressionCase, trigger_summary, utc_now

Standing = Literal["cleared", "restorable", "blocked"]
MODE_MEANS = {
    "full": "the agent acts on its own",
    "review": "every answer and action goes to a person before it takes effect",
    "suspended": "the agent does not run",
}


class CheckView(Record):
    """One check of the verdict, as the report shows it."""

    name: str
    """The check's name."""
    asks: str
    """What the check asks, in a sentence."""
    outcome: Outcome
    """Its outcome."""
    summary: str
    """Its counts, in a line."""
    findings: list[str] = Field(default_factory=list)
    """Each gap, error or doubt it found."""


class FailingCase(Record):
    """A case that did not pass, with what the agent did."""

    id: str
    """The case id."""
    outcome: str
    """fail or error."""
    trials: str
    """``0 of 3 trials passed``."""
    regression: bool
    """Whether it is a regression case captured from an incident."""
    tags: list[str] = Field(default_factory=list)
    """Its input types."""
    did: list[str] = Field(default_factory=list)
    """What the agent did in the first failing trial, step by step."""
    unmet: list[str] = Field(default_factory=list)
    """The expectations it missed, each with why; or why it could not run."""
    trigger: str | None = None
    """For a regression case, the input that caused the harm it recorded, in a line."""


class Report(Record):
    """Everything the verdict report shows."""

    agent: str
    """The agent."""
    generated_at: AwareDatetime
    """When the report was made."""
    standing: Standing
    """cleared (full operation allowed), restorable (restore allowed) or blocked."""
    headline: str
    """The outcome in plain words."""
    allows: str
    """What that allows, in plain words."""
    clearance: Clearance
    """The answer ``reinstate check`` gives, with every reason."""
    mode_means: str
    """What the current mode means for the agent's users."""
    verdict: Verdict | None
    """The latest verdict; none when the agent was never gated."""
    current: bool
    """Whether the latest verdict was computed on today's files."""
    changed_files: list[str] = Field(default_factory=list)
    """Files changed since the latest verdict."""
    checks: list[CheckView] = Field(default_factory=list)
    """Each check of the latest verdict."""
    incidents: list[IncidentView] = Field(default_factory=list)
    """Each incident not yet closed, with its chain."""
    failing: list[FailingCase] = Field(default_factory=list)
    """The cases that did not pass in the latest verdict."""
    fingerprint: Fingerprint | None = None
    """What the latest verdict was computed on."""
    previous: AwareDatetime | None = None
    """When the last passing verdict before it was computed; none if there is none."""
    diff: list[Change] = Field(default_factory=list)
    """What changed from the last passing verdict to the latest."""
    behaviour: dict[str, list[str]] = Field(default_factory=dict)
    """Per case, how the agent's behaviour changed from the last passing run (deepdiff of
    the two run files: calls, arguments, outputs, judgements); empty when either is gone."""


def verdict_report(workspace: Workspace, agent: str, store: StateStore | None = None, *,
                   verdict: Verdict | None = None) -> Report:
    """Build the report of ``agent``'s standing and a verdict (the latest when none given).

    Reads state, runs nothing. E-mail addresses, phone and card numbers and tokens are
    replaced by placeholders throughout, one value one placeholder.
    """
    store = store or open_store(workspace)
    clearance = check(workspace, agent, store)
    # Never `verdict or …`: bool(verdict) means "may restore", not "exists".
    verdict = verdict if verdict is not None else store.latest_verdict(agent)
    standing, headline, allows = _standing(agent, clearance)
    changed = (fingerprint(workspace, agent).changed_since(verdict.fingerprint)
               if verdict is not None else [])
    verified = ({(v.incident, v.change): v for v in verdict.verifications}
                if verdict is not None else {})
    previous = (store.last_passing_verdict(agent, before=verdict.created_at)
                if verdict is not None else None)
    return Redactor().record(Report(
        agent=agent, generated_at=utc_now(), standing=standing, headline=headline,
        allows=allows, clearance=clearance, mode_means=MODE_MEANS[clearance.mode],
        verdict=verdict, current=verdict is not None and not changed, changed_files=changed,
        checks=[_check_view(c.name, c.outcome, c.summary, c.findings)
                for c in (verdict.checks if verdict is not None else [])],
        incidents=[incident_view(i, _lookup(verified, i.id))
                   for i in workspace.incidents().all(agent) if i.phase != "closed"],
        failing=(_failing(verdict, _triggers(workspace, agent))
                 if verdict is not None else []),
        fingerprint=verdict.fingerprint if verdict is not None else None,
        previous=previous.created_at if previous is not None else None,
        diff=(verdict_diff(previous, verdict)
              if previous is not None and verdict is not None else []),
        behaviour=(behaviour_diff(workspace, previous, verdict)
                   if previous is not None and verdict is not None else {}),
    ), keep=UNREDACTED)


def _run_file(workspace: Workspace, verdict: Verdict) -> Path | None:
    evals = verdict.result(EvalsResult)
    name = evals.data.run_file if evals is not None and evals.data is not None else None
    path = workspace.root / name if name else None
    return path if path is not None and path.is_file() else None


def behaviour_diff(workspace: Workspace, before: Verdict, after: Verdict) -> dict[str, list[str]]:
    """What the agent did differently, case by case, between two verdicts' runs."""
    first, second = _run_file(workspace, before), _run_file(workspace, after)
    if first is None or second is None:
        return {}
    try:
        return diff_runs(read_run_file(first)[1], read_run_file(second)[1])
    except ReinstateError:  # a damaged run file only costs the report this section
        return {}


def _standing(agent: str, clearance: Clearance) -> tuple[Standing, str, str]:
    if clearance:
        return ("cleared", f"{agent} may run in full operation",
                "It is in full operation, the latest gate verdict passed on today's files, and "
                "no incident is waiting on an unverified change. Deploying it is allowed.")
    if clearance.restorable:
        return ("restorable", f"{agent} may be restored to full operation",
                f"Every condition is met: \"reinstate restore {agent}\" will put it back in full "
                f"operation. Until then it stays in {clearance.mode} mode: "
                f"{MODE_MEANS[clearance.mode]}.")
    if clearance.mode == "full":
        allows = ("It is recorded as in full operation, but it is not cleared: do not deploy it "
                  "until every reason below is resolved.")
    else:
        allows = (f"It stays in {clearance.mode} mode ({MODE_MEANS[clearance.mode]}) until every "
                  f"reason below is resolved; restore is refused until then.")
    return "blocked", f"{agent} may NOT go back to full operation", allows


def _lookup(verified: dict[tuple[str, str], ChangeVerification],
            incident: str) -> dict[str, ChangeVerification]:
    return {change: v for (inc, change), v in verified.items() if inc == incident}


def _check_view(name: str, outcome: Outcome, summary: str, findings: list[str]) -> CheckView:
    # What a check asks is its docstring (built-in ones are declared in the pipeline).
    function = CHECKS.get(name)
    doc = (function.__doc__ or "") if function is not None else ""
    return CheckView(name=name, asks=doc.strip().split("\n")[0], outcome=outcome,
                     summary=summary, findings=findings)


def _triggers(workspace: Workspace, agent: str) -> dict[str, str]:
    """Each regression case's trigger, in a line, by case id."""
    try:
        cases = load_cases(workspace.regressions_dir(agent), RegressionCase, agent)
    except ReinstateError:  # a broken case file only costs the report the trigger lines
        return {}
    return {case.id: line for case in cases.values()
            if (line := trigger_summary(case)) is not None}


def _failing(verdict: Verdict, triggers: dict[str, str]) -> list[FailingCase]:
    evals = verdict.result(EvalsResult)
    if evals is None or evals.data is None:
        return []
    out = []
    for case in evals.data.cases:
        if case.outcome == "pass":
            continue
        failed = case.failed
        unmet = [f"{u.criterion}: {u.detail}" for u in failed.unmet] if failed else []
        if failed is not None and failed.error:
            unmet.insert(0, f"could not run: {failed.error}")
        out.append(FailingCase(
            id=case.id, outcome=case.outcome,
            trials=f"{round(case.pass_rate * case.trials)} of {case.trials} trials passed",
            regression=case.regression, tags=list(case.tags),
            did=list(failed.did) if failed else [], unmet=unmet,
            trigger=triggers.get(case.id) if case.regression else None,
        ))
    return out


def _comparable(verdict: Verdict) -> dict[str, Any]:
    """A verdict as one flat mapping, so each case, check or file shows as its own change."""
    evals = verdict.result(EvalsResult)
    cases = evals.data.cases if evals is not None and evals.data is not None else []
    flat: dict[str, Any] = {"outcome": verdict.outcome,
                            "agent_version": verdict.fingerprint.agent_version}
    for result in verdict.checks:
        flat |= {f"checks.{result.name}.outcome": result.outcome,
                 f"checks.{result.name}.summary": result.summary,
                 f"checks.{result.name}.findings": result.findings}
    flat |= {f"cases.{c.id}": c.outcome for c in cases}
    flat |= {f"verifications.{v.incident} {v.change}": "verified" if v.verified
             else f"not verified: {v.reason}" for v in verdict.verifications}
    flat |= {f"files.{path}": digest[:12] for path, digest in verdict.fingerprint.files.items()}
    return flat


def verdict_diff(before: Verdict, after: Verdict) -> list[Change]:
    """What changed from one verdict to another: outcomes, cases, verifications, files."""
    return differences(_comparable(before), _comparable(after), ignore_order=True)


def report_html(report: Report) -> str:
    """The report as one self-contained HTML page (no script, no outside resources)."""
    return render_html("report.html.j2", r=report)


def report_markdown(report: Report) -> str:
    """The report as Markdown, for a CI step summary or a pull request."""
    return render_markdown("report.md.j2", r=report)
