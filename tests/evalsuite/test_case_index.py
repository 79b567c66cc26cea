"""`evalsuite.case_index`: each case file's id as the full load would read it, or none."""

from __future__ import annotations

from pathlib import Path

import pytest

from evalsuite import case_index

SPELLINGS = [
    ("id: greeting\n", "greeting"),
    ("id: '12'\n", "12"),
    ("a: 1\nid: first\nid: last\n", None),  # a key set twice: the full load refuses it
    ('{"id": "json-case", "tags": [{"id": "inner"}]}', "json-case"),
    ("? id\n: explicit\n", "explicit"),
    ("x: {id: nested}\nid: >\n  folded\n", "folded\n"),
    ("id: 12\n", None),  # an integer, not a string id
    ("id: true\n", None),
    ("id: ~\n", None),
    ("id: !!str 12\n", None),  # tagged: left to the full load
    ("base: &b {id: merged}\n<<: *b\n", None),  # a merge key may bring the id
    ("id: one\n---\nid: two\n", None),  # two documents: the full load refuses the file
    ("- id: listed\n", None),
    ("id: [unclosed\n", None),
]


@pytest.mark.parametrize("cache", ["on", "off"])
@pytest.mark.parametrize(("text", "expected"), SPELLINGS)
def test_the_index_reads_the_id_the_loader_would(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 text: str, expected: str | None,
                                                 cache: str) -> None:
    """A string id is found however it is spelled; any other shape gives none."""
    monkeypatch.setenv("REINSTATE_CACHE_DIR", str(tmp_path / "cache") if cache == "on" else "")
    folder = tmp_path / "evals"
    folder.mkdir()
    (folder / "case.yaml").write_text(text)
    for _ in range(2):  # the second read comes from the cache when it is on
        [entry] = case_index([folder])
        assert entry.id == expected
    assert (tmp_path / "cache").exists() == (cache == "on" and expected is not None)
