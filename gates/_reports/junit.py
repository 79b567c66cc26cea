"""A verdict as JUnit XML, for CI systems that show test reports."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from gates._verdict.check_results import EvalsResult
from gates._verdict.verdict import Verdict


def junit_xml(verdict: Verdict) -> str:
    """One test suite; a test case per check, and per eval case under the evals check."""
    suite = ET.Element("testsuite", name=f"reinstate gate {verdict.agent}",
                       timestamp=verdict.created_at.isoformat())
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}

    def case(classname: str, name: str, outcome: str, message: str, text: str = "") -> None:
        element = ET.SubElement(suite, "testcase", classname=classname, name=name)
        counts["tests"] += 1
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
        case(f"reinstate.{verdict.agent}", check.name, check.outcome, check.summary,
             "\n".join(check.findings))
        if isinstance(check, EvalsResult) and check.data is not None:
            for item in check.data.cases:
                case(f"reinstate.{verdict.agent}.evals", item.id, item.outcome,
                     f"pass rate {item.pass_rate:.0%} over {item.trials} trials")
    for key, value in counts.items():
        suite.set(key, str(value))
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
