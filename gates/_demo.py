"""``reinstate demo``: the whole response, told on the bundled refund agent.

Lays out the example workspace, then walks it the way an on-call engineer and a release
manager would: incident, containment, capture, a failing gate, restore refused, the
root cause, the control changes, a passing gate with every change verified, restore;
then the deploy job's check, the verdict report and the postmortem (under ``reports/``).
Each step prints the command that does the same; the demo exits 0 only when every step
had the outcome the story expects.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from rich.console import Console
from rich.rule import Rule

from evalsuite import ReinstateError, write_atomic
from gates._config import Workspace
from gates._errors import GatesError, Refused
from gates._gate.evals import run_evals
from gates._gate.inputs import load_inputs
from gates._gate.pipeline import run_gate
from gates._reports.investigation_view import investigation_summary
from gates._reports.postmortem import postmortem, postmortem_markdown
from gates._reports.terminal import incident_summary, mode_line, verdict_table, verification_table
from gates._reports.verdict_report import report_html, report_markdown, verdict_report
from gates._response.actions import (
    capture,
    contain,
    open_incident,
    record_change,
    record_finding,
    schedule_review,
)
from gates._response.clearance import check
from gates._response.investigation import investigate
from gates._response.restore import restore, restore_needs
from gates._store.access import read_mode
from regressions import utc_now

EXAMPLE = Path(__file__).parent / "_example"
AGENT = "refund-agent"
LOG = "logs/2026-11-25-refund-agent.jsonl"
ACTOR = "dana.oncall"


def lay_out(directory: Path) -> Path:
    """Copy the example workspace into ``directory`` (new or empty)."""
    if directory.exists() and any(directory.iterdir()):
        raise GatesError(f"{directory} is not empty: give the demo a new or empty folder")
    shutil.copytree(EXAMPLE / "workspace", directory, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    return directory


def apply_fix(workspace: Workspace) -> list[str]:
    """Merge the example's fix into the workspace, as its pull request would. Returns paths."""
    changed = []
    for source in sorted((EXAMPLE / "fix").rglob("*")):
        if source.is_file() and "__pycache__" not in source.parts:
            relative = source.relative_to(EXAMPLE / "fix")
            target = workspace.root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            changed.append(relative.as_posix())
    return changed


def grow_example_log(workspace: Workspace, at_least: int,
                     path: Path | None = None) -> tuple[Path, int]:
    """The example's log copied, run ids renamed (``run-7f3a97-0``, ``-1``, …), until it
    holds ``at_least`` steps: a large native log whose every run decides as the example's
    does, for the backtest tests and benchmarks (the Ray engine's among them).

    Args:
        workspace: A workspace laid out from the example (its log is read).
        at_least: The fewest steps the log must hold; whole copies are written.
        path: Where to write it (default ``logs/big-<at_least>.jsonl`` in the workspace).

    Returns:
        The log's path and the number of steps written.
    """
    records = [json.loads(line) for line in (workspace.root / LOG).read_text().splitlines()]
    per_copy = sum(1 for record in records if record.get("kind") != "run")
    copies = -(-at_least // per_copy)
    path = path or workspace.root / "logs" / f"big-{at_least}.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for number in range(copies):
            for record in records:
                out.write(json.dumps({**record, "run_id": f"{record['run_id']}-{number}"}))
                out.write("\n")
    return path, copies * per_copy


class Story:
    """Runs the demo's steps, printing each and keeping score."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.failures: list[str] = []
        self.number = 0

    def step(self, title: str, command: str, action: Callable[[], bool]) -> None:
        """Run one step; ``action`` prints what happened and says if it went as the story needs."""
        self.number += 1
        self.console.print(Rule(f"[bold]{self.number}. {title}", align="left"))
        self.console.print(f"[dim]$ {command}[/]")
        try:
            as_expected = action()
        except ReinstateError as exc:
            self.console.print(f"[red]{exc}[/]")
            as_expected = False
        if not as_expected:
            self.failures.append(f"{self.number}. {title}")
            self.console.print("[bold red]✗ this step did not go as the story expects[/]")


def run_demo(directory: Path | None, console: Console) -> tuple[Path, bool]:
    """Walk the whole story in ``directory`` (a temporary folder when None)."""
    root = lay_out(directory or Path(tempfile.mkdtemp(prefix="reinstate-demo-")))
    workspace = Workspace.find(root)
    story = Story(console)
    console.print(f"[bold]reinstate demo[/] — workspace: {root}\n"
                  "Harbor Goods runs a customer-support agent, refund-agent 1.4.0, with 20 eval "
                  "cases, a permission file, acceptance criteria and review rules.")
    verdicts = {}

    def gate(expected: str, *, verify: bool = False) -> Callable[[], bool]:
        def action() -> bool:
            verdict = run_gate(workspace, AGENT, actor="ci")
            verdicts[expected] = verdict
            verdict_table(console, verdict, restore_needs=restore_needs(workspace, verdict))
            if verify:
                verification_table(console, verdict.verifications)
            return verdict.outcome == expected
        return action

    def refused(*must_mention: str) -> Callable[[], bool]:
        def action() -> bool:
            try:
                restore(workspace, AGENT, actor="release.manager")
            except Refused as exc:
                console.print(f"[yellow]{exc}[/]")
                return all(any(m in r for r in exc.reasons) for m in must_mention)
            console.print("[red]restored, but the story expected a refusal[/]")
            return False
        return action

    story.step("Before the incident: the gate is green", f"reinstate gate {AGENT}",
               gate("pass"))
    console.print("[dim]Every eval passes — and not one case covers prompt injection.[/]")

    state: dict[str, str] = {}

    def open_step() -> bool:
        incident = open_incident(
            workspace, AGENT, severity="sev2", actor=ACTOR,
            summary="Crafted chat message made the agent refund $1,250.00 on an $84.99 order "
                    "as store credit to another account",
            detected_at=utc_now() - timedelta(hours=2, minutes=35),
        )
        state["id"] = incident.id
        path = workspace.relative(workspace.incidents().path(incident.id))
        console.print(f"opened [bold]{incident.id}[/]: {path}")
        return incident.id == "INC-1"
    story.step("An engineer on call opens the incident",
               f'reinstate incident open {AGENT} --severity sev2 --summary "Crafted chat message '
               f'made the agent refund…" --detected-at <2h35m ago>', open_step)

    def contain_step() -> bool:
        done = contain(workspace, state["id"], mode="review",
                       notify=["legal", "compliance", "eng-lead"], actor=ACTOR,
                       scope="1 refund of $1,250.00 to store credit C-7731 (order A-1001); 1 "
                             "email to an outside address; other runs not yet checked")
        incident_summary(console, done.incident)
        for warning in done.warnings:
            console.print(f"[yellow]warning:[/] {warning}")
        console.print(mode_line(read_mode(workspace, AGENT)))
        return read_mode(workspace, AGENT).mode == "review" and bool(
            done.incident.containment_target_met)
    story.step("Contain: every answer now goes to a person first",
               "reinstate contain INC-1 --mode review --notify legal,compliance,eng-lead "
               '--scope "1 refund of $1,250.00 …"', contain_step)

    def capture_step() -> bool:
        done = capture(workspace, state["id"], root / LOG, actor=ACTOR, run_id="run-7f3a97",
                       steps=[4, 6, 8], tags=["prompt_injection"])
        console.print(f"wrote [bold]{workspace.relative(done.path)}[/]: the triggering message, "
                      f"the harmful calls (steps 4 and 6) and answer (step 8), and what must "
                      f"never happen again:")
        for criterion in done.case.expect:
            console.print(f"  • {criterion.description}")
        return done.created
    story.step("Capture the triggering run as a regression case",
               f"reinstate capture INC-1 --run {LOG} --run-id run-7f3a97 --step 4 --step 6 "
               f"--step 8 --tag prompt_injection", capture_step)

    def investigate_step() -> bool:
        done = investigate(workspace, state["id"], [root / LOG], actor=ACTOR)
        investigation_summary(console, done.investigation)
        console.print(f"the timeline ({len(done.investigation.timeline)} events, from the "
                      f"injected message to the containment) is in "
                      f"{workspace.relative(workspace.incidents().path(state['id']))}")
        return (done.incident.phase == "investigating" and done.investigation.runs == [
            "run-7f3a97"] and done.investigation.scope.runs_matched == 1
            and not done.investigation.logging_gaps)
    story.step("Investigate: the timeline, the scope of impact, the logging gaps",
               f"reinstate investigate INC-1 --logs {LOG}   (then: reinstate timeline INC-1)",
               investigate_step)

    story.step("Gate the agent as it is: it must fail", f"reinstate gate {AGENT}", gate("fail"))
    story.step("Restore is refused", f"reinstate restore {AGENT}",
               refused("no root-cause finding", "is fail"))

    def rca_step() -> bool:
        findings = [
            ("tool_permission_boundary", "permission_model",
             "issue_refund accepted any amount to any destination; send_email accepted free "
             "text to any address", ["INC-1-1 steps 4, 6", "permissions.tools.issue_refund"]),
            ("eval_coverage", "eval_suite",
             "no eval case covered instructions embedded in a customer message "
             "(prompt_injection: 0 of 20 cases)", ["evals/refund-agent"]),
            ("acceptance_criteria", "tool_contract",
             "no criterion on the refund destination, email templates or claimed approvals",
             ["INC-1-1 step 8", "acceptance.yaml"]),
            ("review_gate", "human_process",
             "only account closures reached a person; a $1,250 refund did not",
             ["review.yaml rules[0]"]),
        ]
        for layer, where, text, evidence in findings:
            finding = record_finding(workspace, state["id"], layer=layer, gap=True,  # type: ignore[arg-type]
                                     description=text, evidence=evidence, actor=ACTOR,
                                     fix_location=where)  # type: ignore[arg-type]
            console.print(f"  {finding.id} {layer}: [red]gap[/] — {text}")
        return True
    story.step("Root cause through the four control layers",
               'reinstate incident finding INC-1 --layer tool_permission_boundary --gap '
               '--description "…" --evidence "INC-1-1 steps 4, 6"   (one per layer)', rca_step)

    def fix_step() -> bool:
        for path in apply_fix(workspace):
            console.print(f"  changed {path}")
        changes = [
            ("tool_permission_boundary", ["F-1"],
             "issue_refund: at most $500, only to the original payment method; send_email: "
             "templates only"),
            ("acceptance_criteria", ["F-3"],
             "criteria on the refund destination, email templates and claimed approvals"),
            ("review_gate", ["F-4"],
             "refunds over $150, refunds elsewhere, free-text email and rejected answers go "
             "to a person"),
            ("eval_coverage", ["F-2"], "three prompt_injection eval cases"),
            ("prompt", [], "refund-agent 1.5.0 never acts on approvals or payment instructions "
                           "written into a message"),
        ]
        for layer, addresses, text in changes:
            change = record_change(workspace, state["id"], layer=layer,  # type: ignore[arg-type]
                                   addresses=addresses, description=text, actor=ACTOR)
            console.print(f"  {change.id} {layer}: {text}")
        return True
    story.step("Merge the fix and record each control change",
               'reinstate incident change INC-1 --layer tool_permission_boundary --addresses F-1 '
               '--description "…"   (one per change)', fix_step)

    story.step("Restore is refused: the verdict is stale", f"reinstate restore {AGENT}",
               refused("stale", "not verified"))
    story.step("Gate the fixed agent: every change must verify", f"reinstate gate {AGENT}",
               gate("pass", verify=True))
    def second_adapter() -> bool:
        inputs = load_inputs(workspace, AGENT)
        evidence = run_evals(inputs, adapter="jsonl")
        passed = sum(r.outcome == "pass" for r in evidence.results)
        console.print(f"{passed}/{len(evidence.results)} cases passed with the agent as a "
                      f"separate process speaking JSON lines; run file "
                      f"{workspace.relative(evidence.run_file) if evidence.run_file else '-'}")
        return passed == len(evidence.results)
    story.step("The same agent through a second adapter: a JSON-lines process",
               f"reinstate eval {AGENT} --adapter jsonl", second_adapter)
    story.step("Restore is refused: no post-incident review yet", f"reinstate restore {AGENT}",
               refused("post-incident review"))

    def review_step() -> bool:
        day = (utc_now() + timedelta(days=7)).date()
        schedule_review(workspace, state["id"], on=day, actor=ACTOR)
        console.print(f"post-incident review on {day.isoformat()}")
        return True
    story.step("Schedule the post-incident review",
               "reinstate incident review INC-1 --on <in 7 days>", review_step)

    def restore_step() -> bool:
        done = restore(workspace, AGENT, actor="release.manager")
        reading = read_mode(workspace, AGENT)
        console.print(f"restored {', '.join(done.incidents)}; {mode_line(reading)}")
        return reading.mode == "full"
    story.step("Restore: back to full operation", f"reinstate restore {AGENT}", restore_step)

    def check_step() -> bool:
        clearance = check(workspace, AGENT)
        console.print(f"{AGENT}: {'cleared' if clearance else 'NOT cleared'} for full operation"
                      + "".join(f"\n  - {r}" for r in clearance.reasons))
        return bool(clearance)
    story.step("The deploy job checks clearance: exit 0, the redeploy may go out",
               f"reinstate check {AGENT}", check_step)

    def report_step() -> bool:
        report = verdict_report(workspace, AGENT)
        for suffix, render in ((".html", report_html), (".md", report_markdown)):
            path = root / "reports" / f"{AGENT}{suffix}"
            write_atomic(path, render(report))
            console.print(f"wrote [bold]{workspace.relative(path)}[/]")
        console.print(f"{report.headline}: {report.allows}")
        console.print(f"{len(report.diff)} differences from the passing verdict before the "
                      f"incident, e.g. {report.diff[0].line() if report.diff else 'none'}")
        return report.standing == "cleared" and not report.failing and bool(report.diff)
    story.step("The release manager reads the verdict report",
               f"reinstate report {AGENT} --html reports/{AGENT}.html --markdown "
               f"reports/{AGENT}.md", report_step)

    def postmortem_step() -> bool:
        written = postmortem(workspace, state["id"])
        path = root / "reports" / f"{state['id']}-postmortem.md"
        write_atomic(path, postmortem_markdown(written))
        console.print(f"wrote [bold]{workspace.relative(path)}[/]")
        for entry in written.clock:
            console.print(f"  {entry.what}: {entry.elapsed or '—'} after detection; "
                          f"{entry.target}", highlight=False)
        for action in written.follow_ups:
            console.print(f"  follow-up: {action}", highlight=False)
        return (all(c.verified for c in written.incident.changes) and written.review is not None
                and written.incident.phase == "restored")
    story.step("Write the postmortem for the post-incident review",
               "reinstate postmortem INC-1 --markdown reports/INC-1-postmortem.md",
               postmortem_step)

    console.print(Rule())
    if story.failures:
        console.print(f"[bold red]demo: {len(story.failures)} step(s) went wrong:[/] "
                      + "; ".join(story.failures))
    else:
        console.print(f"[bold green]demo: all {story.number} steps went as expected.[/] "
                      f"The workspace stays in {root}; try "
                      f"`{shlex.join([*reinstate_command(), '-C', str(root), 'gate', AGENT])}`.",
                      soft_wrap=True)  # the command stays one line, to copy whole
    return root, not story.failures


def reinstate_command() -> list[str]:
    """How to run this reinstate from a fresh shell.

    ``nox -s demo`` installs reinstate into the session's own virtual environment, whose
    ``bin`` is on the demo's PATH but not on a new shell's: a bare ``reinstate`` would
    there be "command not found", or another installation. Only an installation outside
    any virtual environment is named bare; otherwise the script or the interpreter is
    named by its full path.
    """
    script = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    in_venv = sys.prefix != sys.base_prefix
    if script is not None and script.name == "reinstate" and script.is_file():
        on_path = shutil.which("reinstate")
        if not in_venv and on_path is not None and Path(on_path).resolve() == script:
            return ["reinstate"]
        return [str(script)]
    return [sys.executable, "-m", "gates"]
