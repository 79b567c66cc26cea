"""A verdict stays proportionate to its case set: case files' digests are cut short in the
fingerprint's ``files``, while the set's whole digest still decides, and verdicts stored
with whole digests stay current."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gates import Fingerprint, Workspace, fingerprint
from gates._demo import lay_out

AGENT = "refund-agent"
CASE = "evals/refund-agent/greeting.yaml"


@pytest.fixture
def example(tmp_path: Path) -> Workspace:
    """The example workspace, never gated."""
    return Workspace.find(lay_out(tmp_path / "ws"))


def test_case_files_keep_a_short_digest(example: Workspace) -> None:
    """Each eval case file's digest in ``files`` is 16 hex digits; a control file's is whole."""
    files = fingerprint(example, AGENT).files
    assert len(files[CASE]) == 16
    assert len(files["agents/refund-agent/permissions.yaml"]) == 64


def test_a_changed_case_file_is_still_named(example: Workspace) -> None:
    """Editing one case file names that file, as before."""
    before = fingerprint(example, AGENT)
    path = example.root / CASE
    path.write_text(path.read_text().replace("greeting", "greetings", 1))
    assert fingerprint(example, AGENT).changed_since(before) == [CASE]


def test_a_verdict_stored_with_whole_digests_stays_current(example: Workspace) -> None:
    """A fingerprint stored with whole case digests (before they were cut) matches today's
    while nothing changed, and names a case file changed since."""
    today = fingerprint(example, AGENT)
    whole = dict(today.files)
    for path in whole:
        if path.startswith(("evals/", "regressions/")):
            whole[path] = hashlib.sha256(
                (example.root / path).read_bytes()).hexdigest()
    stored = Fingerprint.model_validate({**today.model_dump(), "files": whole})
    assert today.changed_since(stored) == []
    (example.root / CASE).write_text("id: changed\n")
    assert fingerprint(example, AGENT).changed_since(stored) == [CASE]


def test_a_short_digest_that_matches_by_chance_still_leaves_the_set_digest(
        example: Workspace) -> None:
    """Two fingerprints whose case files agree in ``files`` but whose eval suite digest
    differs are never the same: the whole digest is named."""
    today = fingerprint(example, AGENT)
    other = today.model_copy(update={"eval_suite": "0" * 64})
    assert today.changed_since(other) == ["the eval_suite digest"]


def test_case_digests_are_kept_whole_when_the_workspace_asks(example: Workspace) -> None:
    """``[gate] full_case_digests = true`` keeps each case file's whole SHA-256 in ``files``;
    by default each is cut to 16 hex digits."""
    short = fingerprint(example, AGENT).files[CASE]
    config = example.root / "reinstate.toml"
    config.write_text(config.read_text().replace("[gate]\n", "[gate]\nfull_case_digests = true\n"))
    whole = fingerprint(Workspace.find(example.root), AGENT).files[CASE]
    assert len(short) == 16 and len(whole) == 64 and whole.startswith(short)
    assert whole == hashlib.sha256((example.root / CASE).read_bytes()).hexdigest()


def test_asking_for_whole_case_digests_does_not_stale_a_verdict(example: Workspace) -> None:
    """Turning ``full_case_digests`` on changes only what a verdict records, not what it was
    computed on: a fingerprint taken before matches today's."""
    before = fingerprint(example, AGENT)
    config = example.root / "reinstate.toml"
    config.write_text(config.read_text().replace("[gate]\n", "[gate]\nfull_case_digests = true\n"))
    after = fingerprint(Workspace.find(example.root), AGENT)
    assert after.config == before.config
    assert after.changed_since(before) == []
