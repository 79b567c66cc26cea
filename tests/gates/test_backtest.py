"""``reinstate backtest`` and ``gates.backtest``: what the controls would have done to history."""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from evalsuite import InvalidInput, ToolCall, read_log_runs
from gates import (
    Backtest,
    BacktestLabel,
    Guard,
    UnknownAgent,
    Workspace,
    backtest,
    backtest_runs,
    decide_call,
    investigate,
    route_call,
)
from tests.conftest import RunCli
from tests.helpers import ACTOR, LOG, captured, contained

AGENT = "refund-agent"
SCHEMA = Path(__file__).parents[2] / "schemas" / "backtest.json"
# The example's harmful run: step 4 refunds $1,250 as store credit, step 6 emails it out,
# step 8 tells the customer a supervisor approved it. run-7f3a9c is a good $12 refund.
HARMFUL_RUN, GOOD_RUN = "run-7f3a97", "run-7f3a9c"


def controls_copy(ws: Workspace, name: str,
                  edit: Callable[[dict[str, Any]], None] | None = None,
                  file: str = "permissions.yaml") -> Path:
    """A folder with the agent's control files, one of them edited."""
    folder = ws.root / "variants" / name
    folder.mkdir(parents=True)
    for source in (ws.agent_dir(AGENT)).glob("*.yaml"):
        shutil.copyfile(source, folder / source.name)
    if edit is not None:
        data = yaml.safe_load((folder / file).read_text())
        edit(data)
        (folder / file).write_text(yaml.safe_dump(data, sort_keys=False))
    return folder


def fixed_copy(ws: Workspace) -> Path:
    """The example's fixed controls (INC-1's pull request) in a folder of their own."""
    folder = controls_copy(ws, "fixed")
    fix = Path(__file__).parents[2] / "gates" / "_example" / "fix" / "agents" / AGENT
    for name in ("permissions.yaml", "acceptance.yaml", "review.yaml"):
        shutil.copyfile(fix / name, folder / name)
    return folder


def run(ws: Workspace, **options: Any) -> Backtest:
    """``gates.backtest`` over the example's log."""
    return backtest(ws, AGENT, [ws.root / LOG], **options)


def big_refund(data: dict[str, Any]) -> None:
    """Send refunds over $100 to a person from permissions.yaml."""
    data["tools"]["issue_refund"]["review_when"] = [
        {"id": "big", "arguments": {"properties": {"amount": {"exclusiveMinimum": 100}}}}]


def big_refund_rule(data: dict[str, Any]) -> None:
    """Send refunds over $100 to a person from review.yaml."""
    data["rules"].append({"id": "big", "applies_to": "tool_call", "tool": "issue_refund",
                          "arguments": {"properties": {"amount": {"exclusiveMinimum": 100}}}})


def test_a_condition_fires_alike_from_either_layer(example: Workspace) -> None:
    """The same review condition in permissions.yaml or in review.yaml fires on the same call."""
    in_permissions = run(example, controls=str(controls_copy(example, "p", big_refund)))
    in_review = run(example, controls=str(controls_copy(example, "r", big_refund_rule,
                                                        "review.yaml")))
    (by_permission,) = [t for t in in_permissions.rules if t.rule.endswith(".big")]
    (by_review,) = [t for t in in_review.rules if t.rule.endswith(".big")]
    assert by_permission.rule == "permissions.tools.issue_refund.review_when.big"
    assert by_review.rule == "review.rules[1].big"
    for tally in (by_permission, by_review):
        assert (tally.effect, tally.calls, tally.runs) == ("review", 1, 1)
        assert [(e.run_id, e.step, e.where) for e in tally.examples] == [
            (HARMFUL_RUN, 4, f"{LOG}:12")]
    assert in_permissions.review_load == in_review.review_load


def test_acceptance_names_the_failing_call_and_output(example: Workspace) -> None:
    """A failed acceptance criterion names the call or the output it failed, not the run."""
    result = run(example, controls=str(fixed_copy(example)))
    rules = {t.rule: t for t in result.rules}
    claimed = rules["acceptance.no-claimed-authority"]
    assert (claimed.outputs, claimed.calls) == (1, 0)
    assert [(e.step, e.what, e.where) for e in claimed.examples] == [(8, "output", f"{LOG}:16")]
    email = rules["acceptance.email-from-template"]
    assert [(e.step, e.what.split("(")[0]) for e in email.examples] == [(6, "send_email")]


def test_review_load_per_tool_and_in_all(example: Workspace) -> None:
    """Calls sent to a person are counted per tool, as a share of the tool's and of all calls."""
    def every_lookup(data: dict[str, Any]) -> None:
        data["rules"].append({"id": "lookups", "applies_to": "tool_call",
                              "tool": "lookup_order"})

    result = run(example, controls=str(controls_copy(example, "l", every_lookup,
                                                     "review.yaml")))
    load = result.review_load
    assert (load.calls, load.routed, load.share) == (7, 3, round(3 / 7, 4))
    tools = {t.tool: t for t in load.tools}
    assert (tools["lookup_order"].calls, tools["lookup_order"].routed) == (3, 3)
    assert tools["lookup_order"].share_of_tool == 1.0
    assert tools["lookup_order"].share_of_all == round(3 / 7, 4)
    assert tools["issue_refund"].routed == 0


def test_compare_shows_newly_denied_routed_and_allowed(example: Workspace) -> None:
    """Against other controls, each changed step is newly denied, newly routed or newly
    allowed, by the rule that decides it."""
    fixed = str(fixed_copy(example))
    tighter = run(example, controls=fixed, compare="today")
    assert tighter.comparison is not None
    assert (tighter.comparison.newly_denied, tighter.comparison.newly_allowed) == (3, 0)
    denied = {c.rule: c for c in tighter.comparison.changes if c.kind == "newly_denied"}
    assert denied["permissions.tools.issue_refund.arguments"].examples[0].step == 4
    looser = run(example, controls="today", compare=fixed)
    assert looser.comparison is not None
    assert (looser.comparison.newly_allowed, looser.comparison.newly_denied) == (3, 0)
    routed = run(example, controls=str(controls_copy(example, "p", big_refund)),
                 compare="today")
    assert routed.comparison is not None
    assert routed.comparison.newly_routed == 1
    assert [c.rule for c in routed.comparison.changes] == [
        "permissions.tools.issue_refund.review_when.big"]


def test_fail_closed_holds_are_counted_per_rule_with_the_first_error(
        example: Workspace) -> None:
    """A condition that cannot be evaluated is counted per rule with its first error."""
    def broken(data: dict[str, Any]) -> None:
        data["tools"]["issue_refund"]["deny_when"] = [
            {"id": "typo", "expression": "double(args.order_id) > 1.0"}]

    result = run(example, controls=str(controls_copy(example, "b", broken)))
    (typo,) = [t for t in result.rules if t.rule.endswith("deny_when.typo")]
    assert (typo.calls, typo.fail_closed) == (2, 2)
    assert typo.first_error is not None and typo.first_error.endswith("failing closed")
    assert result.totals.fail_closed == 2


def test_a_review_rule_that_cannot_be_evaluated_is_counted_as_failing_closed(
        example: Workspace) -> None:
    """A review.yaml rule whose expression fails routes the call to a person and is counted
    as a fail-closed hold with its error, not as a rule that matched."""
    def broken(data: dict[str, Any]) -> None:
        data["rules"].append({"id": "typo", "applies_to": "tool_call", "tool": "issue_refund",
                              "expression": "double(args.order_id) > 1.0"})

    result = run(example, controls=str(controls_copy(example, "rb", broken, "review.yaml")))
    (typo,) = [t for t in result.rules if t.rule.endswith(".typo")]
    assert typo.calls == typo.fail_closed == 2
    assert typo.first_error is not None and typo.first_error.startswith("could not evaluate typo")


LABELS = {
    "jsonl": (f'{{"run_id": "{HARMFUL_RUN}", "step": 4, "label": "harmful", '
              f'"note": "over-refund"}}\n{{"run_id": "{GOOD_RUN}", "label": "good"}}\n'),
    "csv": f"run_id,step,label,note\n{HARMFUL_RUN},4,harmful,over-refund\n{GOOD_RUN},,good,\n",
    "yaml": (f"- {{run_id: {HARMFUL_RUN}, step: 4, label: harmful, note: over-refund}}\n"
             f"- {{run_id: {GOOD_RUN}, label: good}}\n"),
}


@pytest.mark.parametrize("suffix", sorted(LABELS))
def test_labels_from_a_file_fill_the_confusion_table(example: Workspace, tmp_path: Path,
                                                     suffix: str) -> None:
    """Labels in JSONL, CSV or YAML put each labelled step and run in its place."""
    labels = tmp_path / f"labels.{suffix}"
    labels.write_text(LABELS[suffix])
    before = run(example, labels=labels)
    assert before.confusion is not None and not before.passed
    assert [(i.run_id, i.step, i.note) for i in before.confusion.harmful_allowed] == [
        (HARMFUL_RUN, 4, "over-refund")]
    after = run(example, controls=str(fixed_copy(example)), labels=labels)
    assert after.confusion is not None and after.passed
    (stopped,) = after.confusion.harmful_stopped
    assert (stopped.effect, stopped.rule) == ("deny",
                                              "permissions.tools.issue_refund.arguments")
    assert stopped.source == f"labels.{suffix}:{2 if suffix == 'csv' else 1}"  # CSV: header
    assert [(i.run_id, i.step) for i in after.confusion.good_left_alone] == [(GOOD_RUN, None)]


def test_labels_from_an_incident_mark_its_harm_and_scope(example: Workspace,
                                                         fixed: Callable[..., Any]) -> None:
    """--incident labels the captured harmful steps and every step its scope matches
    harmful (here the same steps: the signature is the captured calls)."""
    incident_id = captured(example)
    investigate(example, incident_id, [example.root / LOG], actor=ACTOR)
    before = run(example, incident=incident_id)
    assert before.confusion is not None and not before.passed
    assert [(i.run_id, i.step) for i in before.confusion.harmful_allowed] == [
        (HARMFUL_RUN, 4), (HARMFUL_RUN, 6), (HARMFUL_RUN, 8)]
    fixed(example)
    after = run(example, incident=incident_id)
    assert after.confusion is not None and after.passed
    assert len(after.confusion.harmful_stopped) == 3


@pytest.mark.slow
def test_a_harmful_variant_the_rule_misses_exits_1_naming_run_and_step(
        example: Workspace, fixed: Callable[..., Any], cli: RunCli) -> None:
    """A labelled harmful variant the one rule does not stop fails, naming run and step."""
    fixed(example)
    variant = [json.loads(line) for line in (example.root / LOG).read_text().splitlines()
               if '"run-7f3a9c"' in line]
    for record in variant:
        record["run_id"] = "run-variant"
        if record.get("tool") == "issue_refund" and record["kind"] == "tool_call":
            record["arguments"]["amount"] = 29.0  # under the order total, a whole refund
    log = example.root / "logs" / "variant.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in variant))
    labels = example.root / "labels.jsonl"
    labels.write_text('{"run_id": "run-variant", "step": 4, "label": "harmful"}\n')
    done = cli("backtest", AGENT, "--logs", LOG, str(log), "--labels", str(labels),
               "--rule", "permissions.tools.issue_refund.deny_when[0]", cwd=example.root)
    assert done.returncode == 1, done.stderr
    assert "Harmful, still allowed: 1" in done.stdout
    assert "run-variant step 4 at logs/variant.jsonl:" in done.stdout


@pytest.mark.slow
def test_one_rule_decides_alone_by_position_or_id(example: Workspace,
                                                 fixed: Callable[..., Any], cli: RunCli) -> None:
    """--rule by position and by id give the same result, with only that rule firing."""
    fixed(example)
    outputs: list[dict[str, Any]] = []
    for path in ("permissions.tools.issue_refund.deny_when[0]",
                 "permissions.tools.issue_refund.deny_when.refund-exceeds-order-total"):
        out = example.root / f"{len(outputs)}.json"
        done = cli("backtest", AGENT, "--logs", LOG, "--rule", path, "--json", str(out),
                   cwd=example.root)
        assert done.returncode == 0, done.stderr
        outputs.append(json.loads(out.read_text()))
    assert outputs[0] == outputs[1]
    assert [t["rule"] for t in outputs[0]["rules"]] == [
        "permissions.tools.issue_refund.deny_when.refund-exceeds-order-total"]
    assert outputs[0]["totals"]["calls_denied"] == 1


def test_one_review_rule_keeps_its_own_path(example: Workspace,
                                           fixed: Callable[..., Any]) -> None:
    """A review rule alone is reported under its path in the full review.yaml."""
    fixed(example)
    result = run(example, rule="review.rules.large-refund")
    assert [t.rule for t in result.rules] == ["review.rules[1].large-refund"]
    assert result.totals.calls_denied == 0


@pytest.mark.slow
def test_an_unknown_rule_path_is_bad_input_naming_the_paths(example: Workspace,
                                                           cli: RunCli) -> None:
    """An unknown rule path exits 2 with one line naming the rule paths that exist."""
    done = cli("backtest", AGENT, "--logs", LOG, "--rule", "permissions.tools.refund.deny",
               "--json", "out.json", cwd=example.root)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "permissions.tools.issue_refund.arguments" in done.stderr
    assert not (example.root / "out.json").exists()


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("labels.jsonl",
     '{"run_id": "run-7f3a97", "label": "harmful"}\n{"run_id": "x", "label": "bad"}\n',
     "labels.jsonl:2: $.label: expected a label"),
    ("labels.jsonl", '{"run_id": "run-7f3a97", "label": "harmful"\n',
     "labels.jsonl:1: expected one JSON"),
    ("labels.jsonl", "[" * 100_000 + "\n", "labels.jsonl:1: expected one JSON"),
    ("labels.yaml", "- {run_id: run-7f3a97, label: good}\n- {run_id: r, label: good, step: x}\n",
     "labels.yaml:2: $[1].step: expected a label"),
    ("labels.csv", "run_id,label,verdict\nrun-7f3a97,good,ok\n",
     "labels.csv:1: expected a header row of run_id, step, label, note"),
    ("labels.txt", "run-7f3a97 harmful\n", "expected a labels file ending in .jsonl"),
    ("labels.jsonl", '{"run_id": "run-7f3a97", "step": 5, "label": "harmful"}\n',
     "step 5 of 'run-7f3a97' is a tool_result"),
    ("labels.jsonl", '{"run_id": "run-7f3a97", "step": 40, "label": "harmful"}\n',
     "run 'run-7f3a97' has 9 steps (0 to 8), not step 40"),
    # A digit int() refuses (str.isdigit() takes it): was a ValueError traceback, exit 1.
    ("labels.csv", "run_id,step,label\nrun-7f3a97,\u00b3,harmful\n",
     "labels.csv:2: $.step: expected a label"),
])
def test_bad_labels_are_bad_input_naming_file_and_line(example: Workspace, name: str,
                                                      text: str, expected: str) -> None:
    """Unreadable labels, or a label naming no step that acts, are bad input naming the
    file and line."""
    (example.root / name).write_text(text)
    with pytest.raises(InvalidInput) as raised:
        run(example, labels=example.root / name)
    assert expected in str(raised.value)


@pytest.mark.slow
def test_a_label_naming_no_run_exits_2_and_writes_nothing(example: Workspace,
                                                         cli: RunCli) -> None:
    """A label naming a run in none of the logs exits 2 with one line, writing nothing."""
    (example.root / "labels.jsonl").write_text('{"run_id": "run-nowhere", "label": "good"}\n')
    done = cli("backtest", AGENT, "--logs", LOG, "--labels", "labels.jsonl",
               "--json", "out.json", cwd=example.root)
    assert done.returncode == 2
    assert done.stderr == ("error: labels.jsonl:1: run 'run-nowhere' is in none of the logs "
                           "read\n")
    assert not (example.root / "out.json").exists()


def test_a_missing_labels_file_or_unknown_agent_is_bad_input(example: Workspace,
                                                            tmp_path: Path) -> None:
    """A labels file that is not there, or an agent the workspace lacks, is bad input."""
    with pytest.raises(InvalidInput, match="file not found"):
        run(example, labels=tmp_path / "none.csv")
    with pytest.raises(UnknownAgent, match="unknown agent 'refund-agnt'"):
        backtest(example, "refund-agnt", [example.root / LOG])


def test_diff_compares_today_with_the_latest_open_baseline(example: Workspace,
                                                           fixed: Callable[..., Any]) -> None:
    """--diff is today's controls against the baseline of the latest open incident, and
    bad input when there is none."""
    with pytest.raises(InvalidInput, match="no open, contained incident"):
        run(example, diff=True)
    incident_id = contained(example)
    fixed(example)
    result = run(example, diff=True)
    assert result.compare == f"baseline:{incident_id}"
    assert result.comparison is not None and result.comparison.newly_denied == 3


def test_diff_of_one_new_rule_shows_what_it_alone_adds(example: Workspace,
                                                      fixed: Callable[..., Any]) -> None:
    """--diff --rule with a rule the baseline lacks compares it with nothing stopping."""
    contained(example)
    fixed(example)
    result = run(example, diff=True, rule="permissions.tools.issue_refund.deny_when[0]")
    assert result.comparison is not None
    assert (result.comparison.newly_denied, result.comparison.newly_allowed) == (1, 0)
    (change,) = result.comparison.changes
    assert change.rule == "permissions.tools.issue_refund.deny_when.refund-exceeds-order-total"
    assert [(e.run_id, e.step) for e in change.examples] == [(HARMFUL_RUN, 4)]


def many_runs(ws: Workspace, copies: int) -> Path:
    """The example's log with every run copied ``copies`` times, runs interleaved line by
    line so each run's history must be kept apart."""
    lines = [json.loads(line) for line in (ws.root / LOG).read_text().splitlines()]
    runs: dict[str, list[dict[str, Any]]] = {}
    for record in lines:
        runs.setdefault(record["run_id"], []).append(record)
    out = []
    for number in range(copies):
        batch = [[{**r, "run_id": f"{run_id}-{number}"} for r in records]
                 for run_id, records in runs.items()]
        for row in range(max(len(b) for b in batch)):
            out += [b[row] for b in batch if row < len(b)]
    path = ws.root / "logs" / "many.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in out))
    return path


def test_interleaved_runs_keep_their_own_history(example: Workspace,
                                                 fixed: Callable[..., Any]) -> None:
    """Runs interleaved line by line are decided with their own history each: a refund
    whose own run never looked the order up is denied though other runs did."""
    fixed(example)
    alone = run(example)
    log = many_runs(example, 4)
    lines = log.read_text().splitlines(keepends=True)
    refund = {"run_id": "run-no-lookup", "kind": "tool_call", "tool": "issue_refund",
              "arguments": {"order_id": "A-1004", "amount": 12.0,
                            "refund_to": "original_payment_method"}}
    lines.insert(len(lines) // 2, json.dumps(refund) + "\n")
    log.write_text("".join(lines))
    mixed = backtest(example, AGENT, [log])
    assert mixed.totals.runs == 4 * alone.totals.runs + 1
    expected = {t.rule: t.calls * 4 for t in alone.rules}
    deny_when = "permissions.tools.issue_refund.deny_when.refund-exceeds-order-total"
    expected[deny_when] = expected.get(deny_when, 0) + 1
    assert {t.rule: t.calls for t in mixed.rules} == expected


@pytest.mark.slow
def test_jobs_2_gives_the_same_output_as_jobs_1(example: Workspace, cli: RunCli) -> None:
    """Splitting the runs across two processes changes nothing in the JSON or Markdown."""
    fixed = str(fixed_copy(example))
    log = many_runs(example, 20)
    labels = example.root / "labels.csv"
    labels.write_text("run_id,step,label\nrun-7f3a97-3,4,harmful\nrun-7f3a9c-11,,good\n")
    written = []
    for jobs in ("1", "2"):
        done = cli("backtest", AGENT, "--logs", str(log), "--controls", fixed, "--compare",
                   "today", "--labels", str(labels), "--jobs", jobs, "--json", f"{jobs}.json",
                   "--markdown", f"{jobs}.md", cwd=example.root)
        assert done.returncode == 0, done.stderr
        written.append(((example.root / f"{jobs}.json").read_text(),
                        (example.root / f"{jobs}.md").read_text(), done.stdout))
    assert written[0] == written[1]
    assert json.loads(written[0][0])["totals"]["runs"] == 60


@pytest.mark.slow
def test_the_json_meets_its_committed_schema(example: Workspace, tmp_path: Path,
                                             cli: RunCli) -> None:
    """--json writes a document valid against schemas/backtest.json, schema_version first."""
    labels = tmp_path / "labels.yaml"
    labels.write_text(LABELS["yaml"])
    done = cli("backtest", AGENT, "--logs", LOG, "--compare", str(fixed_copy(example)),
               "--labels", str(labels), "--json", "out.json", "--markdown", "out.md",
               cwd=example.root)
    assert done.returncode == 1  # the harmful refund is still allowed today
    document = json.loads((example.root / "out.json").read_text())
    jsonschema.validate(document, json.loads(SCHEMA.read_text()))
    assert next(iter(document)) == "schema_version"
    assert "**Harmful, still allowed: 1**" in (example.root / "out.md").read_text()


def test_backtest_runs_over_runs_already_read(example: Workspace) -> None:
    """backtest_runs decides runs held in memory, labels and steps named by run and step."""
    runs = read_log_runs(example.root / LOG)
    fixed_controls = example.controls(AGENT, fixed_copy(example))
    result = backtest_runs(
        fixed_controls, runs, compare=example.controls(AGENT),
        labels=[BacktestLabel(run_id=HARMFUL_RUN, step=6, label="harmful", source="test")])
    assert result.passed
    assert result.confusion is not None
    assert result.confusion.harmful_stopped[0].where == f"{HARMFUL_RUN} step 6"
    with pytest.raises(InvalidInput, match="is in none of the logs"):
        backtest_runs(fixed_controls, runs, labels=[
            BacktestLabel(run_id="elsewhere", step=None, label="good", source="test")])


@pytest.mark.attack
@pytest.mark.parametrize("engine", ["local", "ray"])
def test_nothing_to_replay_is_inconclusive_never_a_table_of_zeros(
        example: Workspace, cli: RunCli, engine: str) -> None:
    """Logs with no run of the agent, or runs of it without a tool call or output (even
    labelled good), decide nothing: exit 4 saying so, never exit 0 on "0 blocked"."""
    other = example.root / "logs" / "other.jsonl"
    other.write_text(
        '{"schema_version": 1, "kind": "run", "run_id": "o1", "agent": "other-agent"}\n'
        '{"run_id": "o1", "kind": "tool_call", "tool": "issue_refund", "call_id": "c1", '
        '"arguments": {"amount": 5}}\n')
    quiet = example.root / "logs" / "quiet.jsonl"
    quiet.write_text(
        f'{{"schema_version": 1, "kind": "run", "run_id": "q1", "agent": "{AGENT}"}}\n'
        '{"run_id": "q1", "kind": "user_input", "content": "hi", '
        '"at": "2026-11-26T10:00:00Z"}\n')
    labels = example.root / "labels.jsonl"
    labels.write_text('{"run_id": "q1", "label": "good"}\n')
    options = ["--engine", engine, "--workers", "1"] if engine == "ray" else []
    for given in (["--logs", str(other)], ["--logs", str(quiet), "--labels", str(labels)]):
        done = cli("backtest", AGENT, *given, *options, cwd=example.root)
        assert done.returncode == 4, done.stdout + done.stderr
        assert "INCONCLUSIVE: nothing to replay" in done.stdout
    result = backtest(example, AGENT, [quiet], labels=labels)
    assert not result.passed and result.inconclusive is not None
    assert run(example).inconclusive is None  # the example's log: something was decided


@pytest.mark.attack
def test_an_incident_label_never_lands_on_another_run_with_its_id(example: Workspace,
                                                                 cli: RunCli) -> None:
    """An older log holds a part of a run with the captured run's id, whose steps 4, 6 and
    8 are calls today's permissions deny: read first, it renumbers the run, and the labels
    INC-1-1 recorded (the refund, the email, the answer, all still allowed today) landed
    on those calls, "Harmful, stopped: 3", exit 0. The labels know their steps now: the
    mismatch is bad input naming the step, nothing is decided."""
    incident_id = captured(example)
    log = _older_log_reusing_the_harmful_runs_id(example)
    alone = cli("backtest", AGENT, "--logs", LOG, "--incident", incident_id, cwd=example.root)
    assert alone.returncode == 1 and "Harmful, still allowed: 3" in alone.stdout
    done = cli("backtest", AGENT, "--logs", str(log), LOG, "--incident", incident_id,
               cwd=example.root)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Harmful, stopped" not in done.stdout
    assert (f"step 4 of '{HARMFUL_RUN}' in the logs read is wipe_cache(), not the step "
            f"captured in INC-1-1 (issue_refund(") in done.stderr


@pytest.mark.attack
def test_a_labels_file_cannot_call_a_captured_harmful_step_good(example: Workspace,
                                                                cli: RunCli) -> None:
    """The refund INC-1-1 captured as harmful, labelled good in a labels file beside
    --incident: the file decided that step, so the unfixed controls, which allow it, were
    "good, left alone". Recorded harm is not a judgement to reverse: bad input naming the
    file's line and the case; a label agreeing with the case is fine."""
    incident_id = captured(example)
    labels = example.root / "labels.jsonl"
    labels.write_text(json.dumps({"run_id": HARMFUL_RUN, "step": 4, "label": "good"}) + "\n")
    done = cli("backtest", AGENT, "--logs", LOG, "--incident", incident_id, "--labels",
               str(labels), cwd=example.root)
    assert done.returncode == 2, done.stdout + done.stderr
    assert (f"labels.jsonl:1: labels {HARMFUL_RUN} step 4 good, but it is the harm captured "
            f"in INC-1-1 (issue_refund(") in done.stderr
    labels.write_text(json.dumps({"run_id": HARMFUL_RUN, "step": 4, "label": "harmful"}) + "\n")
    agreed = cli("backtest", AGENT, "--logs", LOG, "--incident", incident_id, "--labels",
                 str(labels), cwd=example.root)
    assert agreed.returncode == 1 and "Harmful, still allowed: 3" in agreed.stdout


def handed_over(ws: Workspace) -> Path:
    """A conversation triage-agent began and handed over to this agent, with a record of
    another run between two of this agent's steps (as concurrent runs write a log): after
    the lookup, a refund to store credit that the fixed permissions deny."""
    run_id = "conv-1"
    records = [
        {"schema_version": 1, "kind": "run", "run_id": run_id, "agent": "triage-agent"},
        {"run_id": run_id, "kind": "user_input", "content": "Refund A-1004 as credit"},
        {"run_id": run_id, "kind": "output", "content": "Handing you to refunds."},
        {"schema_version": 1, "kind": "run", "run_id": run_id, "agent": AGENT},
        {"run_id": run_id, "kind": "tool_call", "tool": "lookup_order", "call_id": "c-1",
         "arguments": {"order_id": "A-1004"}},
        {"schema_version": 1, "kind": "run", "run_id": "run-beside", "agent": AGENT},
        {"run_id": run_id, "kind": "tool_result", "tool": "lookup_order", "call_id": "c-1",
         "result": {"order_id": "A-1004", "total": 30.0}},
        {"run_id": run_id, "kind": "tool_call", "tool": "issue_refund", "call_id": "c-2",
         "arguments": {"order_id": "A-1004", "amount": 12.0, "refund_to": "store_credit"}},
        {"run_id": run_id, "kind": "output", "content": "Refunded $12 as store credit."}]
    log = ws.root / "logs" / "handover.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    return log


@pytest.mark.attack
def test_a_handed_over_run_is_decided_past_a_record_of_another_run(
        example: Workspace, fixed: Callable[..., Any], cli: RunCli) -> None:
    """After the handover, a record of another run split this agent's steps into a part
    naming no agent, which was left out as triage-agent's: the refund today's permissions
    deny in a run labelled good was never decided ("Good, blocked: 0", exit 0)."""
    fixed(example)
    log = handed_over(example)
    labels = example.root / "labels.jsonl"
    labels.write_text('{"run_id": "conv-1", "label": "good"}\n')
    result = backtest(example, AGENT, [log], labels=labels)
    assert (result.totals.runs, result.totals.calls, result.totals.outputs) == (2, 2, 1)
    assert result.confusion is not None and not result.passed
    (blocked,) = result.confusion.good_blocked
    assert (blocked.run_id, blocked.stopped_at) == ("conv-1", 2)  # the refund
    done = cli("backtest", AGENT, "--logs", str(log), "--labels", str(labels),
               cwd=example.root)
    assert done.returncode == 1 and "Good, blocked: 1" in done.stdout, done.stdout


def widened_to_refunds_of_a1001(ws: Workspace, incident_id: str, logs: list[Path]) -> None:
    """Investigate the example's log, widen INC-1's signature by hand to every refund of
    order A-1001, and investigate again over the example's log and ``logs``."""
    investigate(ws, incident_id, [ws.root / LOG], actor=ACTOR)
    path = ws.incidents().path(incident_id)
    data = yaml.safe_load(path.read_text())
    data["investigation"]["signature"]["match"] = [
        {"kind": "tool_call", "tool": "issue_refund", "arguments": A1001}]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    investigate(ws, incident_id, [ws.root / LOG, *logs], actor=ACTOR)


def long_scope_run(ws: Workspace, benign: int) -> Path:
    """A run, in a log of its own, that refunds order A-1001 (INC-1's target) within its
    total, to the original payment method, after ``benign`` lookups: first a closure a
    person must confirm and a lookup the permissions deny (an order id in lower case),
    neither of them the harm."""
    run_id = "run-long"
    records: list[dict[str, Any]] = [
        {"schema_version": 1, "kind": "run", "run_id": run_id, "agent": AGENT},
        {"run_id": run_id, "kind": "user_input", "content": "close my account, refund A-1001"},
        {"run_id": run_id, "kind": "tool_call", "tool": "close_account", "call_id": "c-0",
         "arguments": {"customer_id": "C-1001"}},
        {"run_id": run_id, "kind": "tool_call", "tool": "lookup_order", "call_id": "c-1",
         "arguments": {"order_id": "a-1001"}}]
    for i in range(benign):
        records += [{"run_id": run_id, "kind": "tool_call", "tool": "lookup_order",
                     "call_id": f"l-{i}", "arguments": {"order_id": "A-1001"}},
                    {"run_id": run_id, "kind": "tool_result", "tool": "lookup_order",
                     "call_id": f"l-{i}", "result": {"order_id": "A-1001", "total": 84.99}}]
    records += [{"run_id": run_id, "kind": "tool_call", "tool": "issue_refund",
                 "call_id": "c-2", "arguments": {"order_id": "A-1001", "amount": 80.0,
                                                 "refund_to": "original_payment_method"}},
                {"run_id": run_id, "kind": "output", "content": "Refunded."}]
    log = ws.root / "logs" / "2026-11-26-refund-agent.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    return log


A1001 = {"type": "object", "required": ["order_id"],
         "properties": {"order_id": {"const": "A-1001"}}}


@pytest.mark.attack
@pytest.mark.parametrize("engine", ["local", "ray"])
def test_a_scope_match_far_into_a_run_is_judged_itself_not_by_an_earlier_stop(
        example: Workspace, fixed: Callable[..., Any], cli: RunCli, engine: str) -> None:
    """INC-1's signature widened to every refund of order A-1001; a later log holds a run
    whose refund of it, 200 steps in, today's controls allow. --incident labelled the
    scope of impact by whole run, and a run counts as stopped by any step: the closure a
    person confirms at step 1 (or the lookup denied at step 2) made it "Harmful, stopped:
    5", "still allowed: 0", exit 0. Each step the signature matches is now labelled
    itself: the refund is harmful and allowed, exit 1, as a recount step by step says."""
    incident_id = captured(example)
    later = long_scope_run(example, 100)
    widened_to_refunds_of_a1001(example, incident_id, [later])
    fixed(example)
    controls = example.controls(AGENT)
    # The recount: every step the signature matches or a case captured, in each run as
    # read, stopped when today's permissions deny it or anything sends it to a person.
    matches = jsonschema.Draft202012Validator(A1001)
    harmful: dict[tuple[str, int], bool] = {}
    for log in (example.root / LOG, later):
        for one in read_log_runs(log):
            for i, step in enumerate(one.steps):
                captured_step = one.run_id == HARMFUL_RUN and i in (4, 6, 8)
                if not captured_step and not (isinstance(step, ToolCall)
                                              and step.tool == "issue_refund"
                                              and matches.is_valid(step.arguments)):
                    continue
                history = one.steps[:i]
                if isinstance(step, ToolCall):
                    stopped = (decide_call(controls, step, history, one.context).effect
                               != "allow" or route_call(controls, step, history,
                                                        one.context).effect != "allow")
                else:
                    stopped = True  # the supervisor claim fails no-claimed-authority
                harmful[(one.run_id, i)] = stopped
    allowed = sorted(key for key, stopped in harmful.items() if not stopped)
    assert allowed == [("run-long", 203)]
    options = ["--engine", engine, "--workers", "1"] if engine == "ray" else []
    done = cli("backtest", AGENT, "--logs", LOG, str(later), "--incident", incident_id,
               *options, cwd=example.root)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"Harmful, still allowed: {len(allowed)}\n" in done.stdout
    assert f"Harmful, stopped: {len(harmful) - len(allowed)}\n" in done.stdout
    assert "run-long step 203 at logs/2026-11-26-refund-agent.jsonl:" in done.stdout
    # A labels file may still judge a scope match good, by its step or its whole run.
    labels = example.root / "labels.jsonl"
    labels.write_text('{"run_id": "run-long", "label": "good"}\n')
    judged = backtest(example, AGENT, [example.root / LOG, later], incident=incident_id,
                      labels=labels)
    assert judged.confusion is not None and not judged.confusion.harmful_allowed
    assert [(i.run_id, i.step) for i in judged.confusion.good_blocked] == [("run-long", None)]


@pytest.mark.attack
@pytest.mark.parametrize("engine", ["local", "ray"])
def test_rotated_logs_given_newest_first_are_refused_not_replayed_backwards(
        example: Workspace, fixed: Callable[..., Any], cli: RunCli, engine: str) -> None:
    """The good $12 refund run, rotated mid-run: its lookup in app.jsonl.1.gz, its refund
    in app.jsonl, and labelled harmful. `--logs logs/app.jsonl*` gives the live log first,
    so the refund was decided before the lookup it follows, denied by
    refund-exceeds-order-total ("no lookup"): "Harmful, stopped: 1", exit 0, while today's
    controls let it through in the order it ran. A run whose step from a later log is
    older than one read before is now bad input naming both places; oldest first, the
    refund is counted as the recount says: still allowed."""
    fixed(example)
    records = [json.loads(line) for line in (example.root / LOG).read_text().splitlines()
               if f'"{GOOD_RUN}"' in line]
    cut = next(i for i, r in enumerate(records) if r.get("tool") == "issue_refund")
    with gzip.open(example.root / "logs" / "app.jsonl.1.gz", "wt") as older:
        older.write("".join(json.dumps(r) + "\n" for r in records[:cut]))
    (example.root / "logs" / "app.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records[cut:]))
    labels = example.root / "labels.jsonl"
    labels.write_text(json.dumps({"run_id": GOOD_RUN, "label": "harmful"}) + "\n")
    # The recount: the run in time order, each call decided on the steps before it.
    (whole,) = [r for r in read_log_runs(example.root / LOG) if r.run_id == GOOD_RUN]
    controls = example.controls(AGENT)
    stopped = [i for i, step in enumerate(whole.steps) if isinstance(step, ToolCall) and (
        decide_call(controls, step, whole.steps[:i], whole.context).effect != "allow"
        or route_call(controls, step, whole.steps[:i], whole.context).effect != "allow")]
    assert stopped == []
    options = ["--engine", engine, "--workers", "1"] if engine == "ray" else []
    glob = sorted(str(p.relative_to(example.root))
                  for p in (example.root / "logs").glob("app.jsonl*"))
    assert glob == ["logs/app.jsonl", "logs/app.jsonl.1.gz"]  # the shell's order
    done = cli("backtest", AGENT, "--logs", *glob, "--labels", str(labels), *options,
               cwd=example.root)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Harmful, stopped" not in done.stdout
    assert (f"logs/app.jsonl.1.gz:2: run '{GOOD_RUN}' read out of order: this step "
            f"(2026-11-25T21:16:11+00:00) is earlier than its step at logs/app.jsonl:5"
            ) in done.stderr
    done = cli("backtest", AGENT, "--logs", *reversed(glob), "--labels", str(labels),
               *options, cwd=example.root)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Harmful, still allowed: 1\n" in done.stdout and "Harmful, stopped: 0\n" in done.stdout


@pytest.mark.attack
def test_a_labels_file_agreeing_with_a_case_keeps_the_cases_check_of_its_step(
        example: Workspace, cli: RunCli) -> None:
    """As above, an older log renumbers the captured run so its steps 4, 6 and 8 are calls
    the permissions deny; a labels file beside --incident labels those very steps harmful,
    agreeing with INC-1-1. The file's labels took the case's place, and with them went the
    check that step 4 is the captured refund: "Harmful, stopped: 3", exit 0, for the
    refund, email and answer today's controls all let through (the recount below). The
    case's label is kept, so the renumbering is bad input as without the file."""
    incident_id = captured(example)
    (whole,) = [r for r in read_log_runs(example.root / LOG) if r.run_id == HARMFUL_RUN]
    controls = example.controls(AGENT)
    allowed = [i for i in (4, 6) if decide_call(controls, whole.steps[i], whole.steps[:i],
                                                whole.context).effect == "allow"
               and route_call(controls, whole.steps[i], whole.steps[:i],
                              whole.context).effect == "allow"]
    assert allowed == [4, 6]  # the refund and the email still go through today
    log = _older_log_reusing_the_harmful_runs_id(example)
    labels = example.root / "labels.jsonl"
    labels.write_text("".join(json.dumps({"run_id": HARMFUL_RUN, "step": step,
                                          "label": "harmful"}) + "\n" for step in (4, 6, 8)))
    done = cli("backtest", AGENT, "--logs", str(log), LOG, "--incident", incident_id,
               "--labels", str(labels), cwd=example.root)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Harmful, stopped" not in done.stdout
    assert (f"step 4 of '{HARMFUL_RUN}' in the logs read is wipe_cache(), not the step "
            f"captured in INC-1-1 (issue_refund(") in done.stderr
    alone = cli("backtest", AGENT, "--logs", LOG, "--incident", incident_id, "--labels",
                str(labels), cwd=example.root)
    assert alone.returncode == 1 and "Harmful, still allowed: 3\n" in alone.stdout


@pytest.mark.attack
def test_a_scope_run_whose_harm_is_in_a_log_left_out_is_bad_input(
        example: Workspace, fixed: Callable[..., Any], cli: RunCli) -> None:
    """The long run's refund of A-1001 (in INC-1's widened scope) rotated into a second
    log; investigated over both, backtested over the first only. The run is listed in the
    scope and read, its refund is not: labelled whole, it was stopped by the closure a
    person confirms at step 1, "Harmful, stopped: 4", exit 0, though today's controls let
    the refund through (the recount over both logs). Logs holding less of the scope than
    the investigation recorded are now bad input naming the run and the logs."""
    incident_id = captured(example)
    whole = long_scope_run(example, 3)
    lines = whole.read_text().splitlines(keepends=True)
    first, second = (example.root / "logs" / "part-1.jsonl",
                     example.root / "logs" / "part-2.jsonl")
    first.write_text("".join(lines[:4]))  # the header, the request, the closure, a lookup
    second.write_text("".join(lines[4:]))
    whole.unlink()
    widened_to_refunds_of_a1001(example, incident_id, [first, second])
    fixed(example)
    # The recount over both parts: the refund of A-1001 is allowed today.
    records = [json.loads(line) for line in lines]
    steps = [r for r in records if r.get("kind") != "run"]
    (refund,) = [i for i, r in enumerate(steps) if r.get("tool") == "issue_refund"]
    (one,) = read_log_runs(first)
    (rest,) = read_log_runs(second)
    history = [*one.steps, *rest.steps]
    call = history[refund]
    assert isinstance(call, ToolCall) and call.arguments["order_id"] == "A-1001"
    controls = example.controls(AGENT)
    assert decide_call(controls, call, history[:refund], one.context).effect == "allow"
    assert route_call(controls, call, history[:refund], one.context).effect == "allow"
    done = cli("backtest", AGENT, "--logs", LOG, str(first), "--incident", incident_id,
               cwd=example.root)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Harmful, stopped" not in done.stdout
    assert ("investigation.scope: the logs read (logs/2026-11-25-refund-agent.jsonl, "
            "logs/part-1.jsonl) hold 1 call(s) and 0 output(s) in 1 run(s) matching "
            "investigation.signature (none of run-long), not the 2 call(s)") in done.stderr
    done = cli("backtest", AGENT, "--logs", LOG, str(first), str(second), "--incident",
               incident_id, cwd=example.root)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Harmful, still allowed: 1\n" in done.stdout
    assert f"run-long step {refund} at logs/part-2.jsonl:" in done.stdout


TRUNCATING_READER = '''
from evalsuite import read_log


def read(path, skips=None):
    """The native reader, then logrotate's copytruncate once the live log was read."""
    yield from read_log(path, "jsonl", skips=skips)
    if path.name == "app.jsonl":
        path.write_text("")
'''


@pytest.mark.attack
def test_a_log_truncated_between_the_backtests_reads_never_drops_a_label(
        example: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The live log holds a run refunding $1,250, labelled harmful at that step, which
    today's controls allow (the recount). The backtest reads the logs once to check the
    labels and again to decide: emptied in between (copytruncate), the labelled step was
    never decided and left the table unseen, "Harmful, still allowed: 0", passed. Every
    label must be settled exactly once, else bad input saying the logs changed."""
    (tmp_path / "truncating_reader.py").write_text(TRUNCATING_READER)
    monkeypatch.syspath_prepend(str(tmp_path))
    live = example.root / "logs" / "app.jsonl"
    live.write_text("".join(line.replace(HARMFUL_RUN, "run-live") for line in
                            (example.root / LOG).read_text().splitlines(keepends=True)
                            if HARMFUL_RUN in line))
    (run_live,) = read_log_runs(live)
    refund = run_live.steps[4]
    assert isinstance(refund, ToolCall) and refund.tool == "issue_refund"
    controls = example.controls(AGENT)
    assert decide_call(controls, refund, run_live.steps[:4], run_live.context).effect == "allow"
    assert route_call(controls, refund, run_live.steps[:4], run_live.context).effect == "allow"
    labels = example.root / "labels.jsonl"
    labels.write_text(json.dumps({"run_id": "run-live", "step": 4, "label": "harmful"}) + "\n"
                      + json.dumps({"run_id": GOOD_RUN, "label": "good"}) + "\n")
    logs = [example.root / LOG, live]
    with pytest.raises(InvalidInput, match=r"labels\.jsonl:1: run 'run-live' step 4 was "
                                           r"decided 0 times, not once: the logs changed"):
        backtest(example, AGENT, logs, labels=labels, fmt="truncating_reader:read")
    live.write_text("".join(line.replace(HARMFUL_RUN, "run-live") for line in
                            (example.root / LOG).read_text().splitlines(keepends=True)
                            if HARMFUL_RUN in line))
    steady = backtest(example, AGENT, logs, labels=labels)
    assert steady.confusion is not None and not steady.passed
    assert [(i.run_id, i.step) for i in steady.confusion.harmful_allowed] == [("run-live", 4)]


@pytest.mark.attack
@pytest.mark.parametrize("engine", ["local", "ray"])
def test_a_run_id_reused_by_an_older_run_is_refused_not_joined(
        example: Workspace, fixed: Callable[..., Any], cli: RunCli, engine: str) -> None:
    """Last month's log holds another run with the id of the good $12 refund run, which
    asked for order '17' (denied by the permissions). The refund run, labelled harmful,
    is allowed today (the recount, and the backtest of its own log). Read together, the
    two runs were joined as one, "over 3 runs" for 4, and the other run's denied lookup
    stopped the label: "Harmful, stopped: 1", exit 0. A run record starting the run again
    at another time is now bad input naming both places."""
    fixed(example)
    older = [{"schema_version": 1, "kind": "run", "run_id": GOOD_RUN, "agent": AGENT,
              "started_at": "2026-10-25T09:00:00Z"},
             {"run_id": GOOD_RUN, "kind": "user_input", "content": "status of order 17?",
              "at": "2026-10-25T09:00:00Z"},
             {"run_id": GOOD_RUN, "kind": "tool_call", "tool": "lookup_order",
              "call_id": "c-1", "arguments": {"order_id": "17"},
              "at": "2026-10-25T09:00:01Z"}]
    old_log = example.root / "logs" / "2026-10-25-refund-agent.jsonl"
    old_log.write_text("".join(json.dumps(r) + "\n" for r in older))
    labels = example.root / "labels.jsonl"
    labels.write_text(json.dumps({"run_id": GOOD_RUN, "label": "harmful"}) + "\n")
    # The recount: each run on its own, the number of runs and what today stops.
    runs = [*read_log_runs(old_log), *read_log_runs(example.root / LOG)]
    assert len(runs) == 4 and len({r.run_id for r in runs}) == 3
    (refund_run,) = [r for r in runs if r.run_id == GOOD_RUN and len(r.steps) > 3]
    controls = example.controls(AGENT)
    assert not [i for i, step in enumerate(refund_run.steps) if isinstance(step, ToolCall)
                and (decide_call(controls, step, refund_run.steps[:i],
                                 refund_run.context).effect != "allow"
                     or route_call(controls, step, refund_run.steps[:i],
                                   refund_run.context).effect != "allow")]
    options = ["--engine", engine, "--workers", "1"] if engine == "ray" else []
    alone = cli("backtest", AGENT, "--logs", LOG, "--labels", str(labels), *options,
                cwd=example.root)
    assert alone.returncode == 1 and "Harmful, still allowed: 1\n" in alone.stdout
    done = cli("backtest", AGENT, "--logs", str(old_log), LOG, "--labels", str(labels),
               *options, cwd=example.root)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Harmful, stopped" not in done.stdout
    assert (f"{LOG}:17: run '{GOOD_RUN}' starts again here (2026-11-25T21:16:11+00:00) "
            f"after it started at logs/2026-10-25-refund-agent.jsonl:1 "
            f"(2026-10-25T09:00:00+00:00): two runs share its id") in done.stderr


def test_a_conversation_guarded_turn_by_turn_under_one_id_backtests_as_its_log_holds(
        example: Workspace, cli: RunCli) -> None:
    """Two turns of one conversation, each opened as a guarded run with the conversation's
    id, write the run's record twice into the day's guard log, at two times. Within one
    log that is one run in the log's own order (only a record of another log starting the
    run again is two runs sharing an id): the backtest decides it, never refuses it."""
    log = example.root / "logs" / "guarded.jsonl"
    guard = Guard(example.root, AGENT, log=log)
    for turn in range(2):
        with guard.run("conv-1", goal=f"status of A-1001, turn {turn}",
                       context={"customer_id": "C-1001"}) as run:
            looked = run.call("lookup_order", {"order_id": "A-1001"})
            run.result(looked.call_id, {"order_id": "A-1001", "total": 84.99})
            run.output("It is on its way.")
    guard.close()
    starts = {r["started_at"] for r in map(json.loads, log.read_text().splitlines())
              if r.get("kind") == "run" and "started_at" in r}
    assert len(starts) == 2  # the run is started again, at another time, in one log
    labels = example.root / "labels.jsonl"
    labels.write_text(json.dumps({"run_id": "conv-1", "label": "good"}) + "\n")
    done = cli("backtest", AGENT, "--logs", "logs/guarded.jsonl", "--labels", str(labels),
               cwd=example.root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Good, blocked: 0" in done.stdout, done.stdout


def _older_log_reusing_the_harmful_runs_id(ws: Workspace) -> Path:
    """An older log holding another run with the captured run's id, whose steps 4, 6 and 8
    (where INC-1's harm is) are `wipe_cache` calls today's permissions deny."""
    older = [{"schema_version": 1, "kind": "run", "run_id": HARMFUL_RUN, "agent": AGENT}]
    older += [{"run_id": HARMFUL_RUN, "kind": "tool_call", "tool": "wipe_cache",
               "arguments": {}, "call_id": f"c-{i}"} if i in (4, 6, 8)
              else {"run_id": HARMFUL_RUN, "kind": "reasoning", "content": "…"}
              for i in range(9)]
    log = ws.root / "logs" / "2026-11-24-refund-agent.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in older))
    return log
