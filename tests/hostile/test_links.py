"""Symbolic links that lead out of the workspace: a case file, a regression folder, an
incident file, a baseline folder or a baseline copy. Each is refused with one line naming
the link, exit 2, on read as on write; nothing outside the workspace is read into a verdict
or written to. Links are refused wherever they lead, so none of this depends on where."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from gates import Workspace, open_incident
from gates._cli import main
from regressions import utc_now
from tests.conftest import tree
from tests.helpers import ACTOR, LOG, contained

AGENT = "refund-agent"
GREETING = "evals/refund-agent/greeting.yaml"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the workspace, which no command may read from or write to."""
    folder = tmp_path / "outside"
    folder.mkdir()
    return folder


def refused(ws: Workspace, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run the CLI and check it refused: exit 2 and one error line naming a symbolic link."""
    capsys.readouterr()
    code = main(["-C", str(ws.root), "--actor", ACTOR, *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "got a symbolic link" in err, err
    return err


def files(root: Path) -> dict[str, bytes]:
    """The workspace's files without ``.reinstate/``: the store, whose mode contain sets
    first, and the lock files writers take before they read."""
    return {k: v for k, v in tree(root).items() if not k.startswith(".reinstate/")}


def test_case_file_linked_out_is_refused(example: Workspace, outside: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """An eval case that is a link to a file outside is refused, not gated on."""
    source = (example.root / GREETING).read_text().replace("id: greeting", "id: borrowed")
    (outside / "borrowed.yaml").write_text(source)
    (example.root / "evals/refund-agent/borrowed.yaml").symlink_to(outside / "borrowed.yaml")
    before = tree(example.root)
    err = refused(example, capsys, "gate", AGENT)
    assert "borrowed.yaml" in err
    assert tree(example.root) == before


def test_regression_folder_linked_out_is_refused_on_capture(
        example: Workspace, outside: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Capture refuses a regression folder that is a link, and writes no case through it."""
    incident_id = contained(example)
    (example.root / "regressions").mkdir(exist_ok=True)
    (example.root / "regressions/refund-agent").symlink_to(outside, target_is_directory=True)
    before = files(example.root)
    err = refused(example, capsys, "capture", incident_id, "--run", str(example.root / LOG),
                  "--run-id", "run-7f3a97", "--step", "4", "--tag", "prompt_injection")
    assert "regressions/refund-agent" in err
    assert list(outside.iterdir()) == []
    assert files(example.root) == before


@pytest.mark.parametrize("command", [
    ("incident", "show", "INC-1"),
    ("incident", "finding", "INC-1", "--layer", "review_gate", "--gap", "--description", "x"),
], ids=["read", "change"])
def test_incident_file_linked_out_is_refused(example: Workspace, outside: Path,
                                             capsys: pytest.CaptureFixture[str],
                                             command: tuple[str, ...]) -> None:
    """An incident file that is a link to a file outside is neither read nor rewritten."""
    incident_id = contained(example)
    link = example.incidents().path(incident_id)
    shutil.move(link, outside / link.name)
    link.symlink_to(outside / link.name)
    kept = (outside / link.name).read_bytes()
    before = tree(example.root)
    err = refused(example, capsys, *command)
    assert f"{incident_id}.yaml" in err
    assert link.is_symlink() and (outside / link.name).read_bytes() == kept
    assert tree(example.root) == before


def test_baseline_folder_linked_out_is_refused_on_contain(
        example: Workspace, outside: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Containment writes no baseline copy through a link; the mode change, made first so
    containment takes effect whatever fails next, is the only thing written."""
    incident = open_incident(example, AGENT, summary="over-refund", severity="sev2",
                             actor=ACTOR, detected_at=utc_now() - timedelta(hours=1))
    (example.incidents_dir / f"{incident.id}.baseline").symlink_to(
        outside, target_is_directory=True)
    before = files(example.root)
    err = refused(example, capsys, "contain", incident.id, "--mode", "review", "--notify",
                  "legal,compliance,eng-lead", "--scope", "one refund")
    assert f"{incident.id}.baseline" in err
    assert list(outside.iterdir()) == []
    assert files(example.root) == before


def test_baseline_copy_linked_out_is_refused_on_read(example: Workspace, outside: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A baseline copy replaced by a link to an identical file outside is refused when the
    baseline is replayed, although its hash still matches."""
    incident_id = contained(example)
    copy = example.incidents_dir / f"{incident_id}.baseline" / "permissions.yaml"
    shutil.move(copy, outside / copy.name)
    copy.symlink_to(outside / copy.name)
    before = tree(example.root)
    err = refused(example, capsys, "rca", incident_id, "--no-input")
    assert "permissions.yaml" in err
    assert tree(example.root) == before
