"""Building models without validation gives what pydantic gives, without its per-call cost."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel
from pydantic._internal import _fields

from evalsuite import Behaviour, Output, Run, ToolCall, ToolResult, TrialResult, UserInput
from gates import Workspace, backtest_runs, load_controls


@pytest.mark.parametrize(("model", "values"), [
    (Behaviour, {"output": "done"}),
    (Behaviour, {"tool_calls": [], "history": []}),
    (Run, {"run_id": "r-1", "steps": []}),
    (ToolCall, {"tool": "lookup_order"}),
    (TrialResult, {"trial": 0, "passed": True}),
])
def test_construct_matches_pydantics_own(model: type[BaseModel], values: dict[str, Any]) -> None:
    """Defaults, fields set and dumps are those of pydantic's model_construct."""
    ours = model.model_construct(**values)
    theirs = BaseModel.model_construct.__func__(model, **values)  # type: ignore[attr-defined]
    assert ours.model_fields_set == theirs.model_fields_set == set(values)
    assert ours.model_dump() == theirs.model_dump()
    assert ours.model_dump(exclude_unset=True) == theirs.model_dump(exclude_unset=True)


def test_factories_give_each_model_its_own_value() -> None:
    """Two models built without a value for a factory field do not share one list."""
    first, second = Behaviour.model_construct(output="a"), Behaviour.model_construct(output="b")
    first.history.append(Output(content="x"))  # type: ignore[attr-defined]
    assert second.history == []


def test_replaying_steps_never_inspects_a_factory(example: Workspace,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A backtest replays calls and outputs through the controls without pydantic
    inspecting default factories' signatures (the cost of every replayed step before)."""
    controls = load_controls(example.agent_dir("refund-agent"), "refund-agent")
    run = Run(run_id="r-1", steps=[
        UserInput(content="Where is my order A-1?"),
        ToolCall(tool="lookup_order", arguments={"order_id": "A-1"}, call_id="c-1"),
        ToolResult(tool="lookup_order", call_id="c-1", result={"status": "shipped"}),
        Output(content="Your order A-1 has shipped.")])
    asked: list[object] = []
    original = _fields.takes_validated_data_argument

    def counting(factory: Any) -> Any:
        asked.append(factory)
        return original(factory)

    monkeypatch.setattr(_fields, "takes_validated_data_argument", counting)
    result = backtest_runs(controls, [run, run.model_copy(update={"run_id": "r-2"})])
    assert result.totals.calls == 2 and result.totals.outputs == 2
    assert asked == []
