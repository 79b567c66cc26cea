"""The pytest plugin and `reinstate eval` run every case through the same engine and agree."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gates import Workspace
from gates._demo import lay_out
from tests.chat_server import ChatServer
from tests.conftest import RunCli
from tests.helpers import captured

# Each test runs pytest and the CLI in child processes.
pytestmark = pytest.mark.slow

pytest_plugins = ["pytester"]

AGENT = "refund-agent"
PERMISSIONS = f"agents/{AGENT}/permissions.yaml"


def plugin_outcomes(pytester: pytest.Pytester, *args: str) -> dict[str, str]:
    """Each case's outcome as the plugin reports it, run in a real pytest subprocess."""
    report = pytester.path / "plugin.xml"
    pytester.runpytest_subprocess("--reinstate-agent", AGENT, "--reinstate-workspace", "ws",
                                  "--reinstate-trials", "1", "-p", "no:cacheprovider",
                                  f"--junitxml={report}", *args)
    # pytest's default xunit2 family: each case's outcome is a property of the suite.
    prefix = "reinstate_outcome."
    return {str(p.get("name"))[len(prefix):]: str(p.get("value"))
            for p in ET.parse(report).getroot().iter("property")
            if str(p.get("name")).startswith(prefix)}


def eval_outcomes(cli: RunCli, root: Path, *args: str) -> dict[str, str]:
    """Each case's outcome as `reinstate eval` prints it, run as a user runs it."""
    done = cli("eval", AGENT, "--trials", "1", "--all-cases", *args, cwd=root)
    assert done.returncode in (0, 1, 3, 4), done.stderr
    rows = [line.split("│") for line in done.stdout.splitlines() if line.startswith("│")]
    return {row[1].strip(): row[2].strip().lower() for row in rows}


@pytest.fixture
def example_ws(pytester: pytest.Pytester) -> Workspace:
    """The example workspace in ws/ under pytester's folder, with INC-1 captured."""
    ws = Workspace.find(lay_out(pytester.path / "ws"))
    captured(ws)
    return ws


def test_every_example_case_has_the_same_outcome(pytester: pytest.Pytester,
                                                 example_ws: Workspace, cli: RunCli) -> None:
    """For every case of the example, the plugin's outcome is the one `reinstate eval` gives."""
    from_eval = eval_outcomes(cli, example_ws.root)
    assert len(from_eval) == 21 and from_eval["INC-1-1"] == "fail"
    assert plugin_outcomes(pytester) == from_eval


def test_a_tool_not_allowed_fails_the_case_in_both(pytester: pytest.Pytester,
                                                   example_ws: Workspace, cli: RunCli) -> None:
    """With issue_refund set to allowed: false, the plugin fails the refund cases as eval does."""
    permissions = example_ws.root / PERMISSIONS
    text = permissions.read_text()
    denied = text.replace("issue_refund:\n    allowed: true", "issue_refund:\n    allowed: false")
    assert denied != text
    permissions.write_text(denied)
    from_eval = eval_outcomes(cli, example_ws.root)
    assert from_eval["refund-full-damaged"] == from_eval["refund-partial-chipped"] == "fail"
    assert plugin_outcomes(pytester) == from_eval


def test_an_agent_in_its_own_process_has_the_same_outcomes(pytester: pytest.Pytester,
                                                           example_ws: Workspace,
                                                           cli: RunCli) -> None:
    """Through the JSON-lines adapter (a process started once, kept between cases) both agree."""
    agent_file = example_ws.root / f"agents/{AGENT}/agent.yaml"
    agent_file.write_text(agent_file.read_text().replace(
        "  kind: python\n  target: refund_agent:respond\n  path: .\n",
        "  kind: subprocess\n  command: [python3, serve_jsonl.py]\n"))
    from_eval = eval_outcomes(cli, example_ws.root)
    assert len(from_eval) == 21 and from_eval["INC-1-1"] == "fail"
    assert plugin_outcomes(pytester) == from_eval


def greeting(body: dict[str, Any]) -> dict[str, Any]:
    """A model that answers every request in words, calling no tool."""
    return {"choices": [{"message": {"role": "assistant",
                                     "content": "Hello from Harbor Goods."}}]}


def tools_sent(server: ChatServer) -> list[Any]:
    """The tool lists of the requests so far, and forget them."""
    sent = [request.get("tools") for request in server.requests]
    server.requests.clear()
    return sent


@pytest.fixture
def chat_server() -> Iterator[ChatServer]:
    """A real HTTP server on a free local port."""
    server = ChatServer(greeting)
    yield server
    server.close()


def test_an_http_agent_is_sent_the_same_tools_by_both(pytester: pytest.Pytester,
                                                      example_ws: Workspace, cli: RunCli,
                                                      chat_server: ChatServer) -> None:
    """An HTTP agent's request carries the allowed tools from the plugin as from eval."""
    agent_file = example_ws.root / f"agents/{AGENT}/agent.yaml"
    agent_file.write_text(f"schema_version: 1\nname: {AGENT}\nversion: 1.4.0\n"
                          f"adapter:\n  kind: http\n  url: {chat_server.url}\n  model: m\n")
    from_eval = eval_outcomes(cli, example_ws.root, "--cases", "greeting")
    sent_by_eval = tools_sent(chat_server)
    from_plugin = plugin_outcomes(pytester, "-k", "greeting")
    sent_by_plugin = tools_sent(chat_server)
    assert from_plugin == from_eval and len(from_eval) == 1
    assert sent_by_plugin == sent_by_eval and len(sent_by_eval) == 1
    names = [tool["function"]["name"] for tool in sent_by_eval[0]]
    assert names == ["lookup_order", "create_ticket", "send_email", "issue_refund",
                     "close_account"]
