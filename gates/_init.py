"""``reinstate init``: lay out a workspace, optionally with a first agent to fill in."""

from __future__ import annotations

import re
from pathlib import Path

from evalsuite import AGENT_NAME, InvalidInput, write_atomic
from gates._config import CONFIG_FILE, Config, Workspace
from gates._errors import GatesError
from gates._store.access import open_store

_CONFIG = """\
# reinstate workspace settings; every key is optional and shown with its default.
schema_version = 1

[paths]
agents = "agents"            # agents/<agent>/agent.yaml and its control files
evals = "evals"              # evals/<agent>/*.yaml
regressions = "regressions"  # regressions/<agent>/*.yaml, one or more per incident
incidents = "incidents"      # incidents/<id>.yaml
state = ".reinstate/state.db"  # modes, verdicts, audit log (keep out of git)

[containment]
target_hours = 4
notify = ["legal", "compliance", "eng-lead"]

[gate]
trials = 3
min_cases_per_input_type = 3
"""

_AGENT = {
    "agent.yaml": """\
schema_version: 1
name: {agent}
version: 0.1.0
description: What the agent does, in a sentence.
adapter:
  kind: python
  target: agent:respond   # module:function, called with a reinstate session
  path: .
""",
    "agent.py": '''\
"""The agent under gate. reinstate calls ``respond(session)`` for every eval trial."""

from typing import Any


def respond(session: Any) -> str:
    """Answer the last user message; call tools with ``session.call_tool(name, arguments)``."""
    question = session.messages[-1]["content"]
    return f"You asked: {{question}}"
''',
    "permissions.yaml": """\
schema_version: 1
agent: {agent}
# Every tool the agent may call. Tools not listed here are denied.
tools: {{}}
""",
    "acceptance.yaml": """\
schema_version: 1
agent: {agent}
criteria: []
""",
    "review.yaml": """\
schema_version: 1
agent: {agent}
rules: []
""",
    "checklist.yaml": """\
schema_version: 1
agent: {agent}
owner: ""
allowed_tools: []
tool_risk: {{}}
data_sources: []
completion_criteria: []
review_path: ""
rollback_plan: ""
""",
}

_CASE = """\
schema_version: 1
id: example-echo
agent: {agent}
description: The agent answers a plain question.
tags: [general]
input:
  messages:
    - role: user
      content: Hello
expect:
  - kind: output_contains
    text: Hello
"""


def init_workspace(directory: Path, agent: str | None = None) -> list[Path]:
    """Create a workspace in ``directory``; refuse to overwrite one. Returns the files made."""
    directory = directory.resolve()
    if agent is not None and not re.match(AGENT_NAME, agent):
        raise InvalidInput(None, "--agent", f"expected a name like 'refund-agent' "
                           f"(lowercase letters, digits, . _ -), got {agent!r}")
    if (directory / CONFIG_FILE).exists():
        raise GatesError(f"{directory / CONFIG_FILE} already exists: this is a workspace already")
    made = []
    write_atomic(directory / CONFIG_FILE, _CONFIG)
    made.append(directory / CONFIG_FILE)
    config = Config()
    for folder in ("agents", "evals", "regressions", "incidents"):
        (directory / getattr(config.paths, folder)).mkdir(parents=True, exist_ok=True)
    ignore = directory / ".gitignore"
    if not ignore.exists():
        write_atomic(ignore, ".reinstate/\n__pycache__/\n")
        made.append(ignore)
    workspace = Workspace(directory, config)
    if agent is not None:
        for name, text in _AGENT.items():
            path = workspace.agent_dir(agent) / name
            write_atomic(path, text.format(agent=agent))
            made.append(path)
        case = workspace.evals_dir(agent) / "example-echo.yaml"
        write_atomic(case, _CASE.format(agent=agent))
        made.append(case)
    open_store(workspace).create()
    made.append(workspace.state_path)
    return made
