"""``reinstate init``: lay out a workspace, or add an agent to one; a new agent comes with a
tool guarded by a CEL rule, an acceptance criterion and an eval case, all passing."""

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

# Who hears of a containment, a failed gate of a contained agent and a restore
# (pip install 'reinstate[notify]'; Apprise URLs, ${NAME} read from the environment):
# [notify]
# legal = ["mailtos://${SMTP_USER}:${SMTP_PASSWORD}@smtp.example.com?to=legal@example.com"]
# eng-lead = ["slack://${SLACK_TOKEN}/#incidents"]
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
    """Answer the last user message from the docs; tools are called through the session,
    so the permission boundary sees every call."""
    question = session.messages[-1]["content"]
    found = session.call_tool("search_docs", {{"query": question}})
    return f"You asked: {{question}} {{found.get('answer', 'I found nothing on that.')}}"
''',
    "permissions.yaml": """\
schema_version: 1
agent: {agent}
# Every tool the agent may call. Tools not listed here are denied.
tools:
  search_docs:
    allowed: true
    risk: low
    description: Search the product documentation.
    arguments:            # JSON Schema every call's arguments must meet, or it is denied
      type: object
      required: [query]
      properties:
        query: {{type: string, minLength: 1, maxLength: 500}}
    deny_when:            # CEL over tool, args, history, context and user_inputs
      - id: search-limit
        description: At most three searches per conversation; a loop is stopped.
        expression: >-
          size(history.filter(s, s.kind == "tool_call" && s.tool == "search_docs")) >= 3
""",
    "acceptance.yaml": """\
schema_version: 1
agent: {agent}
# What every output and tool call must meet; review rules can name a criterion by id.
criteria:
  - id: answers
    kind: expression
    expression: has_output && size(output) > 0
    description: Every conversation ends with an answer to the user.
""",
    "review.yaml": """\
schema_version: 1
agent: {agent}
# What reaches a person before it takes effect, e.g. every answer a criterion rejects:
#   - id: rejected-answer
#     applies_to: output
#     failed_criterion: any
rules: []
""",
    "checklist.yaml": """\
schema_version: 1
agent: {agent}
# The gate needs every field filled in before the agent may run in full operation.
owner: ""
allowed_tools: [search_docs]
tool_risk: {{search_docs: low}}
data_sources: []
completion_criteria: []
review_path: ""
rollback_plan: ""
""",
}

CASE_NAME = "example-question.yaml"
_CASE = """\
schema_version: 1
id: example-question
agent: {agent}
description: The agent looks the question up in the docs and answers from what it found.
tags: [general]
input:
  messages:
    - role: user
      content: How do I reset my password?
tools:               # what each tool returns in this case (fixtures)
  - tool: search_docs
    result:
      answer: Use the reset link on the sign-in page.
expect:
  - kind: tool_called
    tool: search_docs
  - kind: output_contains
    text: reset link
"""


def init_workspace(directory: Path, agent: str | None = None) -> list[Path]:
    """Create a workspace in ``directory``, or add ``agent`` to the one already there.

    Args:
        directory: the workspace's root.
        agent: an agent to lay out with a tool, a criterion and an eval case that pass.

    Returns:
        The files made.

    Raises:
        InvalidInput: ``agent`` is not a plain name.
        GatesError: ``directory`` is a workspace already and no agent was given, or the
            agent exists already. Nothing is written then.
    """
    directory = directory.resolve()
    if agent is not None and not re.match(AGENT_NAME, agent):
        raise InvalidInput(None, "--agent", f"expected a name like 'refund-agent' "
                           f"(lowercase letters, digits, . _ -), got {agent!r}")
    existing = _workspace_at(directory)
    if existing is not None:
        if agent is None:
            raise GatesError(f"{directory} is a workspace already: to add an agent to it, "
                             f"pass --agent NAME")
        return _add_agent(existing, agent)
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
        made += _add_agent(workspace, agent)
    # A store left from before (its configuration lost) is kept as it is, history and all,
    # and not listed as made.
    kept = workspace.state_path.exists()
    open_store(workspace).create()
    if not kept:
        made.append(workspace.state_path)
    return made


def _workspace_at(directory: Path) -> Workspace | None:
    """The workspace whose root is ``directory``, or None; a broken one is an error."""
    try:
        return Workspace.find(directory)
    except InvalidInput:
        if (directory / CONFIG_FILE).exists():
            raise  # a workspace whose settings cannot be read: say where, change nothing
        return None


def _add_agent(workspace: Workspace, agent: str) -> list[Path]:
    """Lay out one agent's control files and eval case, touching no other agent's."""
    for folder in (workspace.agent_dir(agent), workspace.evals_dir(agent)):
        if folder.exists():
            raise GatesError(f"{workspace.relative(folder)} already exists: the workspace "
                             f"has an agent '{agent}' already; nothing was written")
    made = []
    for name, text in _AGENT.items():
        path = workspace.agent_dir(agent) / name
        write_atomic(path, text.format(agent=agent))
        made.append(path)
    case = workspace.evals_dir(agent) / CASE_NAME
    write_atomic(case, _CASE.format(agent=agent))
    made.append(case)
    return made
