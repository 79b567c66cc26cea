"""Files reinstate writes are readable as a plain ``open()`` would leave them; keys stay private."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from evalsuite import create_exclusive, write_atomic
from tests.conftest import RunCli

DATA = Path(__file__).parent.parent / "data"


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask for the test, whatever the runner's, restored after."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    """The permission bits of a file."""
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_writes_follow_the_umask(tmp_path: Path, umask_022: None) -> None:
    """A replaced file and an exclusively created one are 0644 under umask 022."""
    write_atomic(tmp_path / "verdict.json", "{}\n")
    write_atomic(tmp_path / "verdict.json", "{}\n")  # replacing keeps the mode too
    assert create_exclusive(tmp_path / "INC-1.yaml", "id: INC-1\n")
    assert mode(tmp_path / "verdict.json") == 0o644
    assert mode(tmp_path / "INC-1.yaml") == 0o644


def test_a_strict_umask_is_respected(tmp_path: Path) -> None:
    """Under umask 077 a written file is readable by its owner only."""
    old = os.umask(0o077)
    try:
        write_atomic(tmp_path / "report.md", "# report\n")
    finally:
        os.umask(old)
    assert mode(tmp_path / "report.md") == 0o600


def test_private_writes_stay_owner_only(tmp_path: Path, umask_022: None) -> None:
    """``private`` keeps a file 0600 under a permissive umask (signing keys)."""
    write_atomic(tmp_path / "a.key", "secret\n", private=True)
    assert create_exclusive(tmp_path / "b.key", "secret\n", private=True)
    assert mode(tmp_path / "a.key") == 0o600
    assert mode(tmp_path / "b.key") == 0o600


@pytest.mark.slow
def test_ingest_out_is_readable_by_others(tmp_path: Path, cli: RunCli,
                                          umask_022: None) -> None:
    """``reinstate ingest --out`` leaves a 0644 file under umask 022 (a CI artifact reader
    running as another user can read it)."""
    out = tmp_path / "runs.jsonl"
    result = cli("ingest", str(DATA / "logs/refund-agent.openai.jsonl"), "--out", str(out),
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert mode(out) == 0o644
