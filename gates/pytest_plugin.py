"""reinstate's pytest plugin: an agent's eval and regression cases as test items.

    pytest --reinstate-agent refund-agent          # or reinstate_agents in the ini file

Every case in ``evals/<agent>/`` and ``regressions/<agent>/`` becomes one item, named by
its case id (and, for a regression case, its incident: ``INC-1-1[INC-1]``), marked with
its input-type tags, so ``-k`` and ``-m prompt_injection`` select as usual; it works under
pytest-xdist. A failing item shows what the agent did against what the case expected,
not a traceback. The workspace is read and checked by the gate's own loader, and cases
run through the gate's own runner: a test here and a gate check never disagree about a
case. It is not a gate: no verdict is stored and nothing is restored.

Loaded through the ``pytest11`` entry point ``reinstate`` (the small module
``reinstate_pytest``, so pytest starts fast wherever reinstate is installed);
``-p no:reinstate`` turns it off.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evalsuite import (
    Adapter,
    CaseResult,
    EvalCase,
    ReinstateError,
    build_adapter,
    load_cases,
    run_case,
    run_sync,
)
from gates._case_failure import failure_text
from gates._config import Workspace
from gates._inputs import GateInputs, load_inputs
from regressions import RegressionCase

# Tags that would collide with pytest's own markers are kept as keywords only.
_PYTEST_MARKERS = frozenset({"skip", "skipif", "xfail", "parametrize", "usefixtures",
                             "filterwarnings", "tryfirst", "trylast"})
_PROPERTY = "reinstate_case"


def activate(config: pytest.Config, agents: list[str]) -> None:
    """Switch the plugin on for ``agents`` (called by the ``reinstate_pytest`` entry point)."""
    config.addinivalue_line("markers", "reinstate: an agent's case, collected by reinstate")
    config.pluginmanager.register(CaseSession(config, agents), "reinstate-session")


class CaseSession:
    """The plugin at work for one pytest run: loads the agents, adds the items, tallies."""

    def __init__(self, config: pytest.Config, agents: list[str]) -> None:
        self.config = config
        self.agents = list(dict.fromkeys(agents))
        self.suites: dict[str, AgentSuite] = {}
        self.outcomes: dict[str, str] = {}

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Read and check every agent's workspace files before anything runs."""
        try:
            workspace = Workspace.find(self._workspace_dir())
            for agent in self.agents:
                self.suites[agent] = AgentSuite(load_inputs(workspace, agent), self._trials())
        except ReinstateError as exc:
            raise pytest.UsageError(f"reinstate: {exc}") from None

    def _workspace_dir(self) -> Path | None:
        given = self.config.getoption("reinstate_workspace")
        if given:  # relative to where pytest was started (xdist workers may start elsewhere)
            return self.config.invocation_params.dir / str(given)
        ini = str(self.config.getini("reinstate_workspace"))
        if ini:
            base = self.config.inipath.parent if self.config.inipath else self.config.rootpath
            return base / ini
        return None

    def _trials(self) -> int | None:
        given = self.config.getoption("reinstate_trials") or self.config.getini(
            "reinstate_trials")
        if not given:
            return None
        try:
            trials = int(given)
        except ValueError:
            trials = 0
        if not 1 <= trials <= 1000:
            raise pytest.UsageError(f"reinstate: trials must be 1 to 1000, got {given!r}")
        return trials

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        """Add each agent's cases, before -k and -m select among the items."""
        for suite in self.suites.values():
            for path, case in suite.files():
                # genitems reports the collection like any file's, so counts and --lf work.
                items.extend(session.genitems(CaseFile.from_parent(session, path=path,
                                                                   suite=suite, case=case)))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Stop the agents' processes (and remove their private folders)."""
        for suite in self.suites.values():
            suite.close()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Tally each case's outcome (on the controller too, under xdist)."""
        case = dict(report.user_properties).get(_PROPERTY)
        if case is not None and report.when == "call":
            self.outcomes[str(case)] = report.outcome

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """One line: how many of the agents' cases passed, and that it is not a verdict."""
        if not self.outcomes:
            return
        failed = sorted(c for c, o in self.outcomes.items() if o != "passed")
        line = (f"reinstate {', '.join(self.agents)}: {len(self.outcomes) - len(failed)} of "
                f"{len(self.outcomes)} cases passed")
        if failed:
            line += f"; not passing: {', '.join(failed)}"
        terminalreporter.write_sep("-", "reinstate")
        terminalreporter.write_line(line)
        terminalreporter.write_line("(tests only: `reinstate gate` decides whether the agent "
                                    "may be restored)")


class AgentSuite:
    """One agent's inputs as the gate reads them, and its adapter, built once per process."""

    def __init__(self, inputs: GateInputs, trials: int | None) -> None:
        self.inputs = inputs
        self.trials = trials or inputs.workspace.config.gate.trials
        self._adapter: Adapter | None = None

    @property
    def adapter(self) -> Adapter:
        """The agent's adapter, as agent.yaml asks."""
        if self._adapter is None:
            self._adapter = build_adapter(self.inputs.agent, self.inputs.agent_file,
                                          isolation=self.inputs.workspace.config.agent
                                          .isolation())
        return self._adapter

    def close(self) -> None:
        """Release the adapter, if one was built."""
        if self._adapter is not None:
            run_sync(self._adapter.aclose())
            self._adapter = None

    def files(self) -> Iterator[tuple[Path, EvalCase]]:
        """(file, case) for each case the gate loaded, eval suite first."""
        ws, agent = self.inputs.workspace, self.inputs.agent.name
        paths = {c.id: p for p, c in [*load_cases(ws.evals_dir(agent), EvalCase, agent).items(),
                                      *load_cases(ws.regressions_dir(agent), RegressionCase,
                                                  agent).items()]}
        for case in self.inputs.cases:
            yield paths[case.id], case

    def run(self, case: EvalCase) -> CaseResult:
        """Run a case for its trials, judged with the agent's acceptance criteria."""
        return run_case(self.adapter, case, self.trials,
                        self.inputs.controls.acceptance.criteria)


class CaseFile(pytest.File):
    """A case file of an agent's workspace; it holds one case."""

    def __init__(self, *, suite: AgentSuite, case: EvalCase, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.suite = suite
        self.case = case

    def collect(self) -> list[pytest.Item]:
        """The case as one item, marked with its input types."""
        name = self.case.id
        if isinstance(self.case, RegressionCase):
            name += f"[{self.case.provenance.incident}]"
        item = CaseItem.from_parent(self, name=name, case=self.case)
        item.add_marker("reinstate")
        known = {line.split(":")[0].split("(")[0].strip()
                 for line in self.config.getini("markers")}
        for tag in self.case.tags:
            if tag in _PYTEST_MARKERS:
                continue
            if tag not in known:  # so that --strict-markers accepts the input types
                self.config.addinivalue_line("markers", f"{tag}: cases of input type {tag}")
            item.add_marker(tag)
        item.extra_keyword_matches.update(self.case.tags)
        return [item]


class CaseFailed(Exception):
    """A case did not clear its threshold; carries the result to show."""

    def __init__(self, result: CaseResult) -> None:
        super().__init__(f"{result.case_id}: {result.outcome}")
        self.result = result


class CaseItem(pytest.Item):
    """One eval or regression case, run for its trials against the live agent."""

    def __init__(self, *, case: EvalCase, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case

    def runtest(self) -> None:
        """Run the case; it passes when its pass rate clears its threshold."""
        assert isinstance(self.parent, CaseFile)
        self.user_properties.append((_PROPERTY, self.case.id))
        result = self.parent.suite.run(self.case)
        if result.outcome != "pass":
            raise CaseFailed(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> Any:
        """What the agent did against what was expected, instead of a traceback."""
        if isinstance(excinfo.value, CaseFailed):
            return failure_text(excinfo.value.result, self.case)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        """Where the case lives, for the failure header."""
        return self.path, None, f"{self.case.agent} case {self.name}"
