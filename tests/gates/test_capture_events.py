"""A capture names its case in the incident's history, for the ratchet to read, not parse."""

from __future__ import annotations

import yaml

from gates import Workspace, ratchet_status
from tests.helpers import captured


def test_capture_entry_names_its_case(example: Workspace) -> None:
    """The history entry a capture appends carries the case id as a field of its own."""
    incident_id = captured(example)
    incident = example.incidents().load(incident_id)
    entry = next(e for e in incident.history if e.action == "capture")
    assert entry.case == f"{incident_id}-1"


def test_capture_recorded_before_entries_named_cases_still_binds_the_ratchet(
        example: Workspace) -> None:
    """An incident file written before entries carried ``case`` still holds the ratchet:
    deleting its captured case is a loosening."""
    incident_id = captured(example)
    path = example.incidents().path(incident_id)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for entry in data["history"]:
        entry.pop("case", None)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    (example.regressions_dir("refund-agent") / f"{incident_id}-1.yaml").unlink()
    loosened, _ = ratchet_status(example, "refund-agent")
    assert [(item.case, item.key) for item in loosened][:1] == [(f"{incident_id}-1", "removed")]
