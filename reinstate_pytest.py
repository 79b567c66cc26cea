"""reinstate's pytest entry point: an agent's eval and regression cases as test items.

pytest imports every installed plugin at start-up, so this module stays small: it only
declares the options. The plugin itself (``gates.pytest_plugin``) is loaded when an agent
is asked for (``pytest --reinstate-agent NAME`` or ``reinstate_agents`` in the ini file).
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    """The plugin's options, in their own group, each also settable in the ini file."""
    group = parser.getgroup("reinstate", "reinstate: an agent's eval and regression cases")
    group.addoption("--reinstate-agent", action="append", dest="reinstate_agents",
                    default=[], metavar="NAME",
                    help="collect NAME's eval and regression cases as tests (repeatable)")
    group.addoption("--reinstate-workspace", dest="reinstate_workspace", metavar="DIR",
                    help="the reinstate workspace (default: found from the working "
                         "directory upwards, or $REINSTATE_WORKSPACE)")
    group.addoption("--reinstate-trials", dest="reinstate_trials", type=int, metavar="N",
                    help="trials per case that sets none (default: reinstate.toml)")
    parser.addini("reinstate_agents", type="args", default=[],
                  help="agents whose cases to collect, as --reinstate-agent")
    parser.addini("reinstate_workspace", default="",
                  help="the reinstate workspace, relative to the ini file")
    parser.addini("reinstate_trials", default="", help="trials per case that sets none")


def pytest_configure(config: pytest.Config) -> None:
    """Load and switch on the plugin when an agent is asked for."""
    agents = list(config.getoption("reinstate_agents") or config.getini("reinstate_agents"))
    if agents:
        from gates.pytest_plugin import activate

        activate(config, agents)
