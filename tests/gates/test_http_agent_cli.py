"""An HTTP agent configured in agent.yaml, as ``reinstate eval`` meets it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gates import Workspace
from tests.conftest import tree

GATEWAY = """\
  gateway:
    kind: http
    url: http://127.0.0.1:9/v1/chat/completions
    model: gpt-4o
    system_prompt: You are Harbor Goods' refund agent.
    headers:
      Authorization: "Bearer ${GATEWAY_KEY}"
"""


@pytest.mark.slow
def test_a_missing_header_variable_is_one_line_and_writes_nothing(
        example: Workspace, inline_cli: Callable[..., tuple[int, str, str]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``eval`` through an adapter whose header variable is unset exits 2 with one line
    naming agent.yaml, the header and the variable, and runs and writes nothing."""
    monkeypatch.delenv("GATEWAY_KEY", raising=False)
    agent_file = example.agent_dir("refund-agent") / "agent.yaml"
    agent_file.write_text(agent_file.read_text() + GATEWAY)
    before = tree(example.root)
    code, out, err = inline_cli(example, "eval", "refund-agent", "--adapter", "gateway")
    assert code == 2, out + err
    [line] = err.strip().splitlines()
    assert line.startswith("error: ") and line.endswith(
        "agents/refund-agent/agent.yaml: $.adapters.gateway.headers.Authorization: "
        "environment variable GATEWAY_KEY is not set (the header's value is read from it)")
    assert tree(example.root) == before
