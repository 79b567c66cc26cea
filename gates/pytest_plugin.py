"""reinstate's pytest plugin: an agent's eval and regression cases as test items.

    pytest --reinstate-agent refund-agent          # or reinstate_agents in the ini file

Every case in ``evals/<agent>/`` and ``regressions/<agent>/`` becomes one item, named by
its case id (and, for a regression case, its incident: ``INC-1-1[INC-1]``), marked with
its input-type tags, so ``-k`` and ``-m prompt_injection`` select as usual; it works under
pytest-xdist. A failing item shows what the agent did against what the case expected,
not a traceback; the case's outcome (pass, fail, error, inconclusive) is the item's user
property ``reinstate_outcome``, so JUnit XML carries it (as the suite's property
``reinstate_outcome.CASE`` under pytest's default xunit2 family, whose schema has no
properties on a test case). The workspace is read and checked
by the gate's own loader, and each case runs through the engine the gate builds
(``gates.engine_for``: today's permission policy, the allowed tools, the workspace's
timeout, retries and confidence), so a test here and a gate check never disagree about a
case. It is not a gate: no verdict is stored and nothing is restored.

Loaded through the ``pytest11`` entry point ``reinstate`` (the small module
``reinstate_pytest``, so pytest starts fast wherever reinstate is installed);
``-p no:reinstate`` turns it off.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from evalsuite import CaseResult, Engine, EvalCase, ReinstateError, case_files, run_sync
from gates._config import Workspace
from gates._gate.engine import engine_for
from gates._gate.inputs import GateInputs, load_inputs
from gates._store.attestation import drop_signing_key, keep_key_from_agent
from regressions import RegressionCase

# Tags that would collide with pytest's own markers are kept as keywords only.
_PYTEST_MARKERS = frozenset({"skip", "skipif", "xfail", "parametrize", "usefixtures",
                             "filterwarnings", "tryfirst", "trylast"})
_PROPERTY = "reinstate_case"
_OUTCOME = "reinstate_outcome"


def activate(config: pytest.Config, agents: list[str]) -> None:
    """Switch the plugin on for ``agents`` (called by the ``reinstate_pytest`` entry point)."""
    # First of all (xdist workers start later): no agent may find the signing key.
    key_was_set = drop_signing_key()
    config.addinivalue_line("markers", "reinstate: an agent's case, collected by reinstate")
    config.pluginmanager.register(CaseSession(config, agents, key_was_set=key_was_set),
                                  "reinstate-session")


class CaseSession:
    """The plugin at work for one pytest run: loads the agents, adds the items, tallies."""

    def __init__(self, config: pytest.Config, agents: list[str], *,
                 key_was_set: bool = False) -> None:
        self.config = config
        self.key_was_set = key_was_set
        """``$REINSTATE_SIGNING_KEY`` was set: the process that started pytest holds it."""
        self.agents = list(dict.fromkeys(agents))
        self.suites: dict[str, AgentSuite] = {}
        self.outcomes: dict[str, str] = {}

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Read and check every agent's workspace files before anything runs."""
        try:
            workspace = Workspace.find(self._workspace_dir())
            for agent in self.agents:
                inputs = load_inputs(workspace, agent)
                if self.key_was_set:  # refused before any agent runs (on xdist's controller)
                    inputs = replace(inputs, workspace=keep_key_from_agent(
                        inputs.workspace, inputs.agent, inputs.agent_file, signing=False))
                self.suites[agent] = AgentSuite(inputs, self._trials())
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

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Tally each case's outcome (on the controller too, under xdist), and keep the
        case's properties where the JUnit family allows them.

        pytest writes an item's user properties inside its ``<testcase>``, which the xunit2
        schema (pytest's default family, and Jenkins' xUnit schema) forbids. Under xunit2
        they are taken off the report before pytest's JUnit writer reads it, and each
        case's outcome goes to the test suite's ``<properties>`` instead, as
        ``reinstate_outcome.CASE``; under xunit1 and legacy they stay on the test case.
        """
        ours = {str(k): v for k, v in report.user_properties if k in (_PROPERTY, _OUTCOME)}
        case = ours.get(_PROPERTY)
        if case is None:
            return
        if report.when == "call":
            self.outcomes[str(case)] = report.outcome
        writer = self._junit_writer()  # an xdist worker has none: its reports go on as they are
        if writer is None or not self._properties_per_suite():
            return
        report.user_properties = [p for p in report.user_properties
                                  if p[0] not in (_PROPERTY, _OUTCOME)]
        if report.when == "call" and _OUTCOME in ours:
            writer.add_global_property(f"{_OUTCOME}.{case}", str(ours[_OUTCOME]))

    def _properties_per_suite(self) -> bool:
        """Whether JUnit XML is written in a family without per-test-case properties."""
        try:
            family = str(self.config.getini("junit_family"))
        except ValueError:  # pytest's junitxml plugin is switched off
            return False
        return family not in ("xunit1", "legacy")

    def _junit_writer(self) -> Any:
        """pytest's JUnit XML writer in this process (none on an xdist worker)."""
        return next((plugin for plugin in self.config.pluginmanager.get_plugins()
                     if hasattr(plugin, "add_global_property")), None)

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
    """One agent's inputs as the gate reads them, and its engine, built once per process."""

    def __init__(self, inputs: GateInputs, trials: int | None) -> None:
        self.inputs = inputs
        self.trials = trials
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        """The gate's engine for the agent: same policy, tools, timeout, retries, confidence."""
        if self._engine is None:
            # One case at a time, so one trial in flight, as the plugin has always run them.
            engine = engine_for(self.inputs, trials=self.trials, concurrency=1)
            run_sync(engine.warm_up(1))  # as the gate does: a slow start is no trial's timeout
            self._engine = engine
        return self._engine

    def close(self) -> None:
        """Release the agent's processes and connections, if the engine was built."""
        if self._engine is not None:
            run_sync(self._engine.adapter.aclose())
            self._engine = None

    def files(self) -> Iterator[tuple[Path, EvalCase]]:
        """(file, case) for each case the gate loaded, eval suite first.

        The gate loads one case a file, in ``case_files`` order (``load_cases``): pairing
        them again here saves every xdist worker parsing each file twice; a count that
        differs raises rather than mislabel an item.
        """
        ws, agent = self.inputs.workspace, self.inputs.agent.name
        yield from zip(case_files(ws.evals_dir(agent)), self.inputs.eval_cases, strict=True)
        yield from zip(case_files(ws.regressions_dir(agent)), self.inputs.regression_cases,
                       strict=True)

    def run(self, case: EvalCase) -> CaseResult:
        """Run a case for its trials, exactly as the gate runs it; the agent stays up."""
        return run_sync(self.engine.run_case(case))


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
        self.user_properties.append((_OUTCOME, result.outcome))
        if result.outcome != "pass":
            raise CaseFailed(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> Any:
        """What the agent did against what was expected, instead of a traceback."""
        if isinstance(excinfo.value, CaseFailed):
            # Only a failure pays for the diffing libraries the failure text uses.
            from gates._gate.case_failure import failure_text

            return failure_text(excinfo.value.result, self.case)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        """Where the case lives, for the failure header."""
        return self.path, None, f"{self.case.agent} case {self.name}"
