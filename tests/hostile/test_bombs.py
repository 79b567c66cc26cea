"""Resource bombs in the files a team keeps: YAML aliases that expand to billions of nodes,
regular expressions that backtrack for ever, CEL rules that multiply work or grow strings.
Each finishes quickly: refused with one line naming the file and place, or evaluated in
linear time, or failing closed. Every command runs in a child process that is killed after
:data:`GUARD` seconds, which counts as a failure; nothing else here depends on timing."""

from __future__ import annotations

import resource
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gates import Workspace
from gates._demo import lay_out
from tests.conftest import CLI, tree
from tests.helpers import ACTOR, captured

pytestmark = pytest.mark.slow

GUARD = 60
MEMORY = 4 * 1024**3  # address space of each child: a bomb fails the test, not the machine
AGENT = "refund-agent"
CONTROLS = Path("agents/refund-agent")
CASE = Path("regressions/refund-agent/INC-1-1.yaml")
SLOW = "a" * 40 + "!"  # ^(a+)+$ against this takes Python's re about 2**40 steps
BACKTRACKS = "^(a+)+$"



def laughs() -> list[Any]:
    """Billion laughs: nine levels of ten references each, written by PyYAML as anchors and
    aliases, about a kilobyte of YAML that stands for a billion strings."""
    level: list[Any] = ["lol"] * 10
    for _ in range(8):
        level = [level] * 10
    return level


@pytest.fixture(scope="module")
def captured_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example with INC-1 contained and captured, one trial per case (built once)."""
    root = lay_out(tmp_path_factory.mktemp("bombs") / "ws")
    config = root / "reinstate.toml"
    config.write_text(config.read_text().replace("trials = 3", "trials = 1"))
    captured(Workspace.find(root))
    return root


@pytest.fixture
def ws(captured_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the captured workspace."""
    root = tmp_path / "ws"
    shutil.copytree(captured_template, root)
    return root


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def reinstate(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``reinstate ARGS`` in a child process with at most MEMORY of address space, killed
    (and the test failed) after GUARD seconds."""
    try:
        return subprocess.run([*CLI, "-C", str(root), "--actor", ACTOR, *args],
                              capture_output=True, text=True, timeout=GUARD, check=False,
                              preexec_fn=_limit_memory)
    except subprocess.TimeoutExpired:
        pytest.fail(f"reinstate {' '.join(args)} was still running after {GUARD} s")


def refused(root: Path, *args: str) -> str:
    """Run a command that must refuse: exit 2, one error line, nothing written."""
    before = tree(root)
    done = reinstate(root, *args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert tree(root) == before
    return done.stderr


def edit_yaml(path: Path, change: Callable[[Any], None]) -> None:
    """Load a YAML file, change it in place, write it back."""
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False, width=1000))


def _in_case_context(data: Any) -> None:
    data["input"].setdefault("context", {})["laughs"] = laughs()


def _in_argument_examples(data: Any) -> None:
    data["tools"]["issue_refund"]["arguments"]["examples"] = laughs()


@pytest.mark.parametrize(("relative", "bomb"), [
    ("evals/refund-agent/greeting.yaml", _in_case_context), (str(CASE), _in_case_context),
    (str(CONTROLS / "permissions.yaml"), _in_argument_examples),
], ids=["eval-case", "regression-case", "control-file"])
def test_alias_bomb_is_refused(ws: Path, relative: str, bomb: Callable[[Any], None]) -> None:
    """A billion-laughs value in a case's context or in a control file's JSON Schema is
    refused naming the file, before anything expands it."""
    edit_yaml(ws / relative, bomb)
    assert len((ws / relative).read_bytes()) < 100_000
    err = refused(ws, "gate", AGENT)
    assert f"{Path(relative).name}:" in err and "YAML aliases expand to" in err


def test_alias_cycle_is_refused(ws: Path) -> None:
    """An alias that refers to the node containing it is refused naming the file and line."""
    path = ws / "evals/refund-agent/greeting.yaml"
    path.write_text(path.read_text().replace("  context:\n", "  context: &loop\n    me: *loop\n"))
    err = refused(ws, "gate", AGENT)
    assert "greeting.yaml:" in err and "an alias refers to the node that contains it" in err


def test_oversized_case_file_is_refused(ws: Path) -> None:
    """A case file larger than the bound is refused before it is parsed."""
    path = ws / "evals/refund-agent/greeting.yaml"
    path.write_text(path.read_text() + "# " + "x" * (5 * 1024 * 1024) + "\n")
    err = refused(ws, "gate", AGENT)
    assert "greeting.yaml: file too large: expected at most 4 MiB" in err


def _memo_on_harmful_call(data: Any) -> None:
    for step in data["recorded"]["steps"]:
        if step["kind"] == "tool_call" and step["tool"] == "issue_refund":
            step["arguments"]["memo"] = SLOW


def _long_memo(data: Any) -> None:
    for step in data["recorded"]["steps"]:
        if step["kind"] == "tool_call" and step["tool"] == "issue_refund":
            step["arguments"]["memo"] = "a" * 200_000


def _slow_harmful_output(data: Any) -> None:
    for step in data["recorded"]["steps"]:
        if step["kind"] == "output":
            step["content"] = SLOW


def _argument_pattern(data: Any) -> None:
    data["tools"]["issue_refund"]["arguments"]["properties"]["memo"] = {
        "type": "string", "pattern": BACKTRACKS}


def _condition_pattern(data: Any) -> None:
    data["tools"]["issue_refund"]["deny_when"] = [{
        "id": "memo-shape", "arguments": {"type": "object", "patternProperties": {
            "^memo$": {"type": "string", "pattern": BACKTRACKS}}}}]


def _criterion_pattern(data: Any) -> None:
    data["criteria"].append({"kind": "output_not_matches", "id": "slow", "pattern": BACKTRACKS})


def _review_pattern(data: Any) -> None:
    data["rules"].append({"id": "slow", "applies_to": "output", "output_matches": BACKTRACKS})


def _rereads_long_argument(data: Any) -> None:
    ones = ", ".join(["1"] * 300)
    data["tools"]["issue_refund"]["deny_when"] = [{
        "id": "rereads", "expression": f"[{ones}].map(x, [{ones}].map(y, "
                                       f"args.memo + args.memo)).size() > 0"}]


def _string_growth(data: Any) -> None:
    grow = "".join('.replace("a", "aaaaaaaaaa")' for _ in range(10))
    data["tools"]["issue_refund"]["deny_when"] = [{
        "id": "grows", "expression": f'"a"{grow}.size() > 0'}]


@pytest.mark.parametrize(("control", "rule"), [
    ("permissions.yaml", _argument_pattern), ("permissions.yaml", _condition_pattern),
    ("acceptance.yaml", _criterion_pattern), ("review.yaml", _review_pattern),
    ("permissions.yaml", _string_growth), ("permissions.yaml", _rereads_long_argument),
], ids=["argument-schema", "condition-schema", "criterion", "review-rule", "cel-growth",
        "cel-rereads"])
def test_gate_finishes_on_a_rule_that_would_never_end(ws: Path, control: str,
                                                      rule: Callable[[Any], None]) -> None:
    """A backtracking pattern (in an argument schema, a condition's schema, a criterion or a
    review rule) meets a recorded call or output made to trip it, or a CEL rule grows a
    string ten billion characters long or copies a long argument 90,000 times: the gate
    still reaches a verdict, never a pass."""
    edit_yaml(ws / CASE, lambda d: (_memo_on_harmful_call(d), _slow_harmful_output(d)))
    if rule is _rereads_long_argument:
        edit_yaml(ws / CASE, _long_memo)
    edit_yaml(ws / CONTROLS / control, rule)
    done = reinstate(ws, "gate", AGENT)
    assert done.returncode in (1, 3, 4), done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "verdict:" in done.stdout


@pytest.mark.parametrize(("control", "where", "rule"), [
    ("permissions.yaml", "$.tools.issue_refund.arguments",
     lambda d: d["tools"]["issue_refund"]["arguments"]["properties"].update(
         memo={"pattern": "(a)\\1"})),
    ("permissions.yaml", "$.tools.close_account.review_when[0].arguments",
     lambda d: d["tools"]["close_account"]["review_when"][0]["arguments"].update(
         patternProperties={"(?!x)": {}})),
    ("acceptance.yaml", "$.criteria[0].pattern",
     lambda d: d["criteria"][0].update(pattern="(?<=card )\\d+")),
    ("review.yaml", "$.rules[0].output_matches",
     lambda d: d["rules"].insert(0, {"id": "x", "applies_to": "output",
                                     "output_matches": "refund\\Z"})),
], ids=["backreference", "lookahead-key", "lookbehind", "python-only-escape"])
def test_pattern_re2_cannot_compile_is_refused(ws: Path, control: str, where: str,
                                               rule: Callable[[Any], None]) -> None:
    """A pattern that needs backtracking (a backreference, lookaround) is refused when the
    control file is read, naming the file and the JSON path."""
    edit_yaml(ws / CONTROLS / control, rule)
    err = refused(ws, "gate", AGENT)
    assert f"{control}:" in err and where in err and "RE2 syntax" in err, err


@pytest.mark.parametrize(("expression", "expected"), [
    ("[1, 2].map(x, [1, 2].map(y, [1, 2].exists(z, z == x + y))).size() > 0",
     "comprehensions nested 3 deep: expected at most 2"),
    ("[" + ", ".join(["1"] * 1000) + "].size() > 0", "expression too long"),
], ids=["nested-comprehensions", "long-literal"])
def test_cel_rule_with_unbounded_work_is_refused(ws: Path, expression: str,
                                                 expected: str) -> None:
    """A CEL condition nesting three comprehensions, or longer than the bound, is refused
    when permissions.yaml is read, naming the file and the JSON path."""
    edit_yaml(ws / CONTROLS / "permissions.yaml", lambda d: d["tools"]["issue_refund"].update(
        deny_when=[{"id": "heavy", "expression": expression}]))
    err = refused(ws, "gate", AGENT)
    assert "permissions.yaml:" in err and "$.tools.issue_refund.deny_when[0].expression" in err
    assert expected in err
