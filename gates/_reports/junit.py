"""A verdict as JUnit XML, for CI systems that show test reports."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from gates._verdict.check_results import EvalsResult
from gates._verdict.verdict import Verdict
from gates._visible import percent

# What XML 1.0 cannot hold at all, even escaped: control characters but tab and newlines,
# lone surrogates, U+FFFE and U+FFFF. ElementTree writes them as they are, and the file
# no longer parses.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(text: str) -> str:
    """``text`` with each character XML cannot hold written out (``\\x1b``): a finding
    quoting an agent's answer must not leave CI a report it cannot read."""
    return _NOT_XML.sub(lambda m: repr(m.group(0))[1:-1], text)


def _seconds(value: float) -> str:
    """``1.234``: the form the Jenkins xUnit schema's time pattern accepts."""
    return f"{value:.3f}"


def junit_xml(verdict: Verdict) -> str:
    """One test suite; a test case per check, and per eval case under the evals check.

    An eval case's ``time`` is its trials' wall time added up; the evals check's is its
    cases' and the suite's is the evals check's. The other checks replay recorded steps in
    memory and are not timed, so their test cases carry no ``time`` (it is optional).
    """
    suite = ET.Element("testsuite", name=_xml_text(f"reinstate gate {verdict.agent}"),
                       timestamp=verdict.created_at.isoformat())
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total = 0.0

    def case(classname: str, name: str, outcome: str, message: str, text: str = "",
             seconds: float | None = None) -> None:
        element = ET.SubElement(suite, "testcase", classname=_xml_text(classname),
                                name=_xml_text(name))
        if seconds is not None:
            element.set("time", _seconds(seconds))
        counts["tests"] += 1
        message, text = _xml_text(message), _xml_text(text)
        if outcome == "fail":
            counts["failures"] += 1
            ET.SubElement(element, "failure", message=message).text = text
        elif outcome == "error":
            counts["errors"] += 1
            ET.SubElement(element, "error", message=message).text = text
        elif outcome == "inconclusive":
            # JUnit has no "inconclusive"; a failure keeps CI from reading it as a pass.
            counts["failures"] += 1
            ET.SubElement(element, "failure", message=f"inconclusive: {message}").text = text

    for check in verdict.checks:
        cases = (check.data.cases if isinstance(check, EvalsResult) and check.data is not None
                 else [])
        timed = [c.seconds for c in cases if c.seconds is not None]
        spent = sum(timed) if timed else None
        case(f"reinstate.{verdict.agent}", check.name, check.outcome, check.summary,
             "\n".join(check.findings), spent)
        total += spent or 0.0
        for item in cases:
            case(f"reinstate.{verdict.agent}.evals", item.id, item.outcome,
                 f"pass rate {percent(item.pass_rate)} over {item.trials} trials",
                 seconds=item.seconds)
    for key, value in counts.items():
        suite.set(key, str(value))
    suite.set("time", _seconds(total))
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
