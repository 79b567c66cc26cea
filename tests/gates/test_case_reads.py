"""Loading a gate's inputs reads each case file once, and still binds the fingerprint to
exactly the files it parsed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from gates import Workspace, fingerprint, load_inputs, open_store
from tests.conftest import RunCli

AGENT = "refund-agent"

# Counts every open of a case file (an audit hook sees them all) while the inputs load;
# with ADD set, the first open of greeting.yaml writes a new case file beside it, as a
# capture or a merge running at that moment would.
COUNT_OPENS = textwrap.dedent('''
    import collections, json, sys
    from pathlib import Path
    from gates import Workspace, load_inputs

    root, add = Path(sys.argv[1]), sys.argv[2] == "add"
    opens = collections.Counter()
    def hook(event, args):
        if event == "open" and isinstance(args[0], str) and "/evals/" in args[0]:
            opens[Path(args[0]).name] += 1
            if add and args[0].endswith("greeting.yaml") and opens["greeting.yaml"] == 1:
                source = (root / "evals/refund-agent/praise.yaml").read_text()
                (root / "evals/refund-agent/zz-added.yaml").write_text(
                    source.replace("id: praise", "id: zz-added"))
    sys.addaudithook(hook)
    inputs = load_inputs(Workspace.find(root), "refund-agent")
    print(json.dumps({"opens": opens, "cases": [c.id for c in inputs.eval_cases],
                      "files": sorted(inputs.fingerprint.files)}))
''')


def _load_counting(ws: Workspace, mode: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", COUNT_OPENS, str(ws.root), mode],
                          capture_output=True, text=True, timeout=120, check=True)
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.slow
def test_each_case_file_is_read_once(example: Workspace) -> None:
    """Loading the gate's inputs opens every eval case file exactly once (it was three
    times: a fingerprint before, the load, a fingerprint after)."""
    opens = _load_counting(example, "plain")["opens"]
    assert isinstance(opens, dict) and len(opens) == 20
    assert set(opens.values()) == {1}, opens


@pytest.mark.slow
def test_a_case_file_added_during_the_load_is_read_before_the_gate_goes_on(
        example: Workspace) -> None:
    """A case file that appears while the cases load makes the gate read them again, so
    the fingerprint never names a file the gate did not parse."""
    result = _load_counting(example, "add")
    assert "zz-added" in result["cases"]  # type: ignore[operator]
    assert "evals/refund-agent/zz-added.yaml" in result["files"]  # type: ignore[operator]


def test_the_loaded_fingerprint_is_todays_fingerprint(example: Workspace) -> None:
    """The fingerprint the gate binds its verdict to equals the one check and restore
    compute from the files on disk."""
    assert load_inputs(example, AGENT).fingerprint == fingerprint(example, AGENT)


@pytest.mark.attack
@pytest.mark.parametrize("where", ["more/greeting-again.yaml", "greeting-again.YAML",
                                   "deeper/still/greeting-again.yml"])
def test_a_case_file_the_gate_would_never_read_does_not_clear(
        where: str, example: Workspace, cli: RunCli) -> None:
    """A case file in a subfolder of the suite, or named ``.YAML``, was passed over in
    silence: the gate passed without running it, and no fingerprint named it. Now the gate
    (and anything reading the suite) stops with exit 2 naming the file, and stores
    nothing."""
    suite = example.evals_dir(AGENT)
    target = suite / where
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text((suite / "greeting.yaml").read_text()
                      .replace("id: greeting", "id: greeting-again"))
    gated = cli("gate", AGENT, "--trials", "1", cwd=example.root)
    assert gated.returncode == 2, gated.stdout + gated.stderr
    assert f"evals/refund-agent/{where}" in gated.stderr
    assert "a case file that is never read" in gated.stderr
    assert not example.state_path.exists() or open_store(example).latest_verdict(AGENT) is None
