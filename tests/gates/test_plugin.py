"""The pytest plugin, run by pytester: an agent's cases as test items, selected as usual."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gates import SIGNING_KEY_ENV, Workspace, generate_key_pair
from gates._demo import lay_out
from tests.helpers import captured, plant_key_thief

pytest_plugins = ["pytester"]

AGENT = ["--reinstate-agent", "refund-agent", "--reinstate-workspace", "ws",
         "-p", "no:cacheprovider"]


@pytest.fixture
def pytester_ws(pytester: pytest.Pytester) -> pytest.Pytester:
    """The example workspace in ws/ under pytester's folder, with INC-1 captured."""
    captured(Workspace.find(lay_out(pytester.path / "ws")))
    return pytester


def test_collects_every_case_named_by_case_and_incident(pytester_ws: pytest.Pytester) -> None:
    """Each eval case is an item named by its id; a regression case also names its incident."""
    result = pytester_ws.runpytest(*AGENT, "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([
        "ws/evals/refund-agent/greeting.yaml::greeting",
        "ws/regressions/refund-agent/INC-1-1.yaml::INC-1-1[[]INC-1[]]",
        "21 tests collected*",
    ])


def test_failing_case_shows_what_the_agent_did_not_a_traceback(
        pytester_ws: pytest.Pytester) -> None:
    """The captured case fails and shows the agent's calls against the expectations it broke."""
    result = pytester_ws.runpytest(*AGENT, "-k", "INC-1")
    result.assert_outcomes(failed=1, deselected=20)
    result.stdout.fnmatch_lines([
        "*refund-agent case INC-1-1[[]INC-1[]]*",
        "INC-1-1: 0 of 3 trials passed, needs 100% (regression case of INC-1)",
        "trial 1, what the agent did:",
        "  2. called issue_refund(order_id='A-1001', amount=1250.0, *",
        "expected → what happened (deepdiff):",
        '  expect[[]0[]] no-repeat-step-4: "met" → "not met: called issue_refund(*',
        "against the run recorded in INC-1 (recorded → this trial, deepdiff):",
        "  no difference: the agent repeated the recorded harm exactly",
    ])
    text = result.stdout.str()
    assert "Traceback" not in text and "raise CaseFailed" not in text
    result.stdout.fnmatch_lines(["reinstate refund-agent: 0 of 1 cases passed; not passing: "
                                 "INC-1-1"])


@pytest.mark.slow
def test_markers_by_input_type_and_keywords_select(pytester_ws: pytest.Pytester) -> None:
    """-m selects by input-type tag (under --strict-markers) and -k by case id."""
    only_injection = pytester_ws.runpytest(*AGENT, "--strict-markers", "-m", "prompt_injection")
    only_injection.assert_outcomes(failed=1, deselected=20)
    rest = pytester_ws.runpytest(*AGENT, "--strict-markers", "-m", "not prompt_injection")
    rest.assert_outcomes(passed=20, deselected=1)
    by_name = pytester_ws.runpytest(*AGENT, "-k", "greeting or praise")
    by_name.assert_outcomes(passed=2, deselected=19)


@pytest.mark.slow
def test_runs_under_xdist(pytester_ws: pytest.Pytester) -> None:
    """With -n 2 the same items run in two workers and give the same outcomes."""
    result = pytester_ws.runpytest_subprocess(*AGENT, "-n", "2")
    result.assert_outcomes(passed=20, failed=1)
    result.stdout.fnmatch_lines(["*2 workers*", "reinstate refund-agent: 20 of 21 cases passed*"])


@pytest.mark.slow
def test_configuration_in_the_ini_file(pytester_ws: pytest.Pytester) -> None:
    """reinstate_agents and reinstate_workspace in the ini file work without options."""
    pytester_ws.makeini("[pytest]\nreinstate_agents = refund-agent\nreinstate_workspace = ws\n"
                        "reinstate_trials = 1\n")
    result = pytester_ws.runpytest("-p", "no:cacheprovider", "-k", "INC-1")
    result.assert_outcomes(failed=1, deselected=20)
    result.stdout.fnmatch_lines(["INC-1-1: 0 of 1 trials passed, needs 100%*"])


def test_options_have_their_own_group(pytester: pytest.Pytester) -> None:
    """pytest --help lists the plugin's options under a reinstate heading."""
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["reinstate: an agent's eval and regression cases:",
                                 "  --reinstate-agent=NAME*"])


def test_unknown_agent_is_one_usage_error(pytester_ws: pytest.Pytester) -> None:
    """A misspelt agent stops pytest with one line and a suggestion, before any test runs."""
    result = pytester_ws.runpytest("--reinstate-agent", "refund-agnet",
                                   "--reinstate-workspace", "ws")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: reinstate: unknown agent 'refund-agnet' (did you mean "
                                 "'refund-agent'?)"])
    assert "Traceback" not in result.stderr.str()


def test_without_an_agent_the_plugin_adds_nothing(pytester_ws: pytest.Pytester) -> None:
    """A run that names no agent collects only its own tests."""
    pytester_ws.makepyfile(test_own="def test_own():\n    assert True\n")
    result = pytester_ws.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "reinstate refund-agent" not in result.stdout.str()


@pytest.mark.attack
def test_the_signing_key_never_reaches_an_agent_the_plugin_runs(
        pytester_ws: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pytest in a CI job whose environment holds $REINSTATE_SIGNING_KEY: an in-process
    agent read the key from pytest's environment as each case ran. The plugin now takes
    it out first and refuses such an agent (one usage error, before any case runs)."""
    ws = Workspace.find(pytester_ws.path / "ws")
    stolen = tmp_path / "stolen.txt"
    plant_key_thief(ws, stolen, in_process=True)
    monkeypatch.setenv(SIGNING_KEY_ENV, generate_key_pair(tmp_path / "keys")[0].read_text())
    result = pytester_ws.runpytest(*AGENT, "-k", "refund-full")
    assert SIGNING_KEY_ENV not in os.environ
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    result.stderr.fnmatch_lines([f"ERROR: reinstate: *agent.yaml: $.adapter.isolation: "
                                 f"expected isolation: process while ${SIGNING_KEY_ENV} is set*"])
    assert not stolen.exists()
