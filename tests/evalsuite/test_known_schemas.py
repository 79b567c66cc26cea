"""Valid JSON Schemas remembered across processes: only a pass is remembered, and only in a
folder nobody else can write."""

from __future__ import annotations

from pathlib import Path

import pytest

from evalsuite import check_json_schema

VALID = {"type": "object", "properties": {"amount": {"type": "number", "maximum": 500}},
         "required": ["amount"]}
INVALID = {"type": "object", "properties": {"amount": {"type": "money"}}}
BAD_PATTERN = {"type": "string", "pattern": "(?<=refund)x"}  # lookbehind: RE2 has none


def markers(cache: Path) -> list[Path]:
    """Every file under the cache folder."""
    return sorted(p for p in cache.rglob("*") if p.is_file()) if cache.exists() else []


def test_a_valid_schema_leaves_one_marker_and_checks_the_same_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Checking a valid schema twice returns it both times and remembers it once, in a
    folder only its owner can open."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("REINSTATE_CACHE_DIR", str(cache))
    assert check_json_schema(VALID) is VALID
    assert check_json_schema(dict(VALID)) == VALID
    (marker,) = markers(cache)
    assert marker.parent.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("schema", [INVALID, BAD_PATTERN], ids=["unknown-type", "re2"])
def test_an_invalid_schema_is_refused_every_time_and_never_remembered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, schema: dict[str, object]) -> None:
    """An invalid schema raises the same error on every check and leaves no marker, even
    after a valid schema was remembered."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("REINSTATE_CACHE_DIR", str(cache))
    check_json_schema(VALID)
    errors = []
    for _ in range(2):
        with pytest.raises(ValueError, match="invalid JSON Schema") as caught:
            check_json_schema(schema)
        errors.append(str(caught.value))
    assert errors[0] == errors[1]
    assert len(markers(cache)) == 1


def test_an_empty_cache_setting_turns_the_cache_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`REINSTATE_CACHE_DIR=` (empty) checks in full and writes nothing anywhere, where the
    default folder would have got the marker."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("REINSTATE_CACHE_DIR", "")
    assert check_json_schema(VALID) is VALID
    assert list(tmp_path.iterdir()) == []
    monkeypatch.delenv("REINSTATE_CACHE_DIR")
    assert check_json_schema(VALID) is VALID
    assert len(markers(tmp_path / "xdg")) == 1


def test_without_a_setting_the_cache_is_under_xdg_cache_home(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no `REINSTATE_CACHE_DIR`, valid schemas are remembered under
    `$XDG_CACHE_HOME/reinstate`."""
    monkeypatch.delenv("REINSTATE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    check_json_schema({"type": "string", "maxLength": 7})
    assert len(markers(tmp_path / "xdg" / "reinstate")) == 1


def test_a_cache_folder_others_can_write_gets_no_marker(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache folder that other users can write is neither trusted nor written; made
    private again, it gets the marker."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("REINSTATE_CACHE_DIR", str(cache))
    (cache / "valid-json-schemas").mkdir(parents=True)
    (cache / "valid-json-schemas").chmod(0o777)
    assert check_json_schema(VALID) is VALID
    assert markers(cache) == []
    (cache / "valid-json-schemas").chmod(0o700)
    assert check_json_schema(VALID) is VALID
    assert len(markers(cache)) == 1


def test_a_schema_json_cannot_spell_exactly_is_checked_but_not_remembered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A schema with a non-string key (YAML's `1:`) is checked in full and leaves no
    marker, while its string-keyed twin does."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("REINSTATE_CACHE_DIR", str(cache))
    check_json_schema({"type": "object", "properties": {1: {"type": "string"}}})
    assert markers(cache) == []
    check_json_schema({"type": "object", "properties": {"1": {"type": "string"}}})
    assert len(markers(cache)) == 1
