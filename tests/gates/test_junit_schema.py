"""JUnit XML that CI servers accept: `gate --junit` and pytest's own `--junitxml` of a run of
reinstate's plugin both pass the Jenkins xUnit schema, and the gate's says how long each
case took."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import xmlschema

from gates import CHECKS, CheckResult, Workspace, register
from gates._demo import lay_out
from tests.helpers import captured

pytestmark = pytest.mark.slow

pytest_plugins = ["pytester"]

# The Jenkins xUnit plugin's JUnit schema (source and licence in tests/data/junit/README.md).
XSD = Path(__file__).parent.parent / "data/junit/junit-10.xsd"

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    """The Jenkins xUnit JUnit schema, loaded once."""
    return xmlschema.XMLSchema(str(XSD))


def test_gate_junit_passes_the_schema_with_a_time_per_case(
        restorable: Workspace, inline_cli: Cli, schema: xmlschema.XMLSchema,
        tmp_path: Path) -> None:
    """A passing gate's JUnit XML validates, gives every eval case the time its trials took,
    and the suite the evals' total."""
    report = tmp_path / "gate.xml"
    assert inline_cli(restorable, "gate", "refund-agent", "--junit", str(report))[0] == 0
    schema.validate(str(report))
    suite = schema.to_dict(str(report))
    cases = {c["@name"]: c for c in suite["testcase"]}
    evals = [c for c in suite["testcase"] if c["@classname"].endswith(".evals")]
    assert evals and all(float(c["@time"]) > 0 for c in evals)
    total = sum(float(c["@time"]) for c in evals)
    assert float(cases["evals"]["@time"]) == pytest.approx(total, abs=0.01)
    assert float(suite["@time"]) == pytest.approx(total, abs=0.01)


def test_failing_gate_junit_passes_the_schema(example: Workspace, inline_cli: Cli,
                                              schema: xmlschema.XMLSchema,
                                              tmp_path: Path) -> None:
    """With failures in it (the captured incident not fixed), the gate's JUnit XML still
    validates and counts them."""
    captured(example)
    report = tmp_path / "gate.xml"
    assert inline_cli(example, "gate", "refund-agent", "--junit", str(report))[0] == 1
    schema.validate(str(report))
    assert int(schema.to_dict(str(report))["@failures"]) > 0


@pytest.fixture
def quoting_check() -> Iterator[None]:
    """A check registered for one test that fails quoting an answer with characters XML
    cannot hold (terminal escapes, a form feed, a NUL)."""
    @register("quotes_the_answer")
    def quotes_the_answer(inputs: object, evidence: object) -> CheckResult:
        return CheckResult(name="quotes_the_answer", outcome="fail",
                           summary="answer: \x1b[32mPASS\x1b[0m\x0c",
                           findings=["the agent said \x00\x1b[2K all clear"])
    yield
    del CHECKS["quotes_the_answer"]


def test_junit_quoting_characters_xml_cannot_hold_still_parses(
        example: Workspace, inline_cli: Cli, schema: xmlschema.XMLSchema, tmp_path: Path,
        quoting_check: None) -> None:
    """A finding quoting control characters is written out in the JUnit XML (``\\x1b``),
    so CI can still read the report and its failure: it parses, validates and counts it."""
    report = tmp_path / "gate.xml"
    assert inline_cli(example, "gate", "refund-agent", "--junit", str(report))[0] == 1
    schema.validate(str(report))
    failure = next(c for c in ET.parse(report).getroot().iter("testcase")
                   if c.get("name") == "quotes_the_answer").find("failure")
    assert failure is not None
    assert failure.get("message") == "answer: \\x1b[32mPASS\\x1b[0m\\x0c"
    assert failure.text == "the agent said \\x00\\x1b[2K all clear"


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_plugin_junitxml_passes_the_schema(pytester: pytest.Pytester, workers: list[str],
                                           schema: xmlschema.XMLSchema) -> None:
    """pytest's own --junitxml (default xunit2 family) of a plugin run validates; each case's
    outcome is a property of the suite, not of the test case."""
    captured(Workspace.find(lay_out(pytester.path / "ws")))
    report = pytester.path / "plugin.xml"
    result = pytester.runpytest_subprocess(
        "--reinstate-agent", "refund-agent", "--reinstate-workspace", "ws",
        "--reinstate-trials", "1", "-p", "no:cacheprovider", "-k", "INC-1-1 or greeting",
        f"--junitxml={report}", *workers)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # INC-1-1 fails: the harm is not fixed
    schema.validate(str(report))
    suite = schema.to_dict(str(report))["testsuite"][0]
    properties = {p["@name"]: p["@value"] for p in suite["properties"][0]["property"]}
    assert properties == {"reinstate_outcome.INC-1-1": "fail",
                          "reinstate_outcome.greeting": "pass"}


def test_plugin_keeps_properties_on_the_test_case_under_xunit1(
        pytester: pytest.Pytester) -> None:
    """Asked for the xunit1 family, whose test cases take properties, the plugin leaves the
    case and its outcome on the test case."""
    captured(Workspace.find(lay_out(pytester.path / "ws")))
    report = pytester.path / "plugin.xml"
    pytester.runpytest_subprocess(
        "--reinstate-agent", "refund-agent", "--reinstate-workspace", "ws",
        "--reinstate-trials", "1", "-p", "no:cacheprovider", "-k", "greeting",
        "-o", "junit_family=xunit1", f"--junitxml={report}")
    case = next(ET.parse(report).getroot().iter("testcase"))
    assert {p.get("name"): p.get("value") for p in case.iter("property")} == {
        "reinstate_case": "greeting", "reinstate_outcome": "pass"}
