"""`reinstate eval --cases GLOB` parses only the chosen case files; the gate reads them all."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from evalsuite import InvalidInput, case_files, case_index
from gates import Workspace

pytestmark = pytest.mark.slow

InlineCli = Callable[..., tuple[int, str, str]]

# Valid YAML with a plain id, but no case: any load that parses it fails on its schema.
BROKEN_CASE = "schema_version: 1\nid: status-broken\nagent: refund-agent\nexpect: 5\n"


def _run_file_lines(ws: Workspace) -> list[dict[str, object]]:
    [run_file] = sorted((ws.state_path.parent / "runs").glob("*.jsonl"))
    return [json.loads(line) for line in run_file.read_text().splitlines()]


def _suite(ws: Workspace) -> Path:
    return ws.evals_dir("refund-agent")


def test_an_unchosen_broken_case_does_not_stop_a_chosen_run(example: Workspace,
                                                            inline_cli: InlineCli) -> None:
    """A broken case file another glob would pick is not parsed; the run file holds only
    the chosen case's trials, and the gate still refuses the broken file."""
    (_suite(example) / "zz-broken.yaml").write_text(BROKEN_CASE)
    code, out, err = inline_cli(example, "eval", "refund-agent", "--cases", "greeting",
                                "--trials", "2")
    assert code == 0, out + err
    assert "1 case: 1 pass" in out
    lines = _run_file_lines(example)
    assert lines[0]["kind"] == "eval_run" and lines[0]["agent"] == "refund-agent"
    assert [line["case_id"] for line in lines[1:]] == ["greeting", "greeting"]
    code, out, err = inline_cli(example, "gate", "refund-agent")
    assert code == 2 and "zz-broken.yaml" in err and "$.tags" in err


def test_a_chosen_broken_case_is_reported(example: Workspace, inline_cli: InlineCli) -> None:
    """A broken file whose id matches is parsed and refused with its place, nothing run."""
    (_suite(example) / "zz-broken.yaml").write_text(BROKEN_CASE)
    code, _out, err = inline_cli(example, "eval", "refund-agent", "--cases", "status-*")
    assert code == 2 and "zz-broken.yaml" in err and "$.tags" in err
    assert not (example.state_path.parent / "runs").exists()


def test_a_case_file_without_a_readable_id_is_reported(example: Workspace,
                                                       inline_cli: InlineCli) -> None:
    """A file whose id cannot be read could be any case, so its error stops a chosen run."""
    (_suite(example) / "zz-garbled.yaml").write_text("id: [unclosed\n")
    code, _out, err = inline_cli(example, "eval", "refund-agent", "--cases", "greeting")
    assert code == 2 and "zz-garbled.yaml" in err and "malformed YAML" in err


def test_a_glob_matching_nothing_is_named_beside_an_unchosen_broken_file(
        example: Workspace, inline_cli: InlineCli) -> None:
    """The glob that matches no case id is the error, not a file no glob chose."""
    (_suite(example) / "zz-broken.yaml").write_text(BROKEN_CASE)
    code, _out, err = inline_cli(example, "eval", "refund-agent", "--cases", "greeting",
                                "--cases", "nothing-*")
    assert code == 2 and "no case id matches 'nothing-*'" in err
    assert "zz-broken" not in err


def test_chosen_cases_still_may_not_share_an_id(example: Workspace,
                                                inline_cli: InlineCli) -> None:
    """Two chosen files with one id are refused, naming the second, as the gate does."""
    suite = _suite(example)
    (suite / "zz-greeting-again.yaml").write_text((suite / "greeting.yaml").read_text())
    code, _out, err = inline_cli(example, "eval", "refund-agent", "--cases", "greeting")
    assert code == 2 and "zz-greeting-again.yaml" in err
    assert "case id 'greeting' is already used by greeting.yaml" in err


def test_the_index_names_each_file_by_id_and_remembers_them(example: Workspace) -> None:
    """Every case file gets its id, in the listing's order, the same from the cache."""
    suite = _suite(example)
    (suite / "zz-garbled.yaml").write_text("id: [unclosed\n")
    first = case_index([suite])
    assert [e.path for e in first] == case_files(suite)
    ids = {e.path.name: e.id for e in first}
    assert ids["greeting.yaml"] == "greeting" and ids["zz-garbled.yaml"] is None
    assert case_index([suite]) == first


def test_a_wrong_cached_id_cannot_run_a_case_the_glob_does_not_match(
        example: Workspace, inline_cli: InlineCli, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache that names a file by another id only makes it read: it runs by its real id."""
    monkeypatch.setenv("REINSTATE_CACHE_DIR", str(tmp_path / "cache"))
    case_index([_suite(example)])
    [cache] = (tmp_path / "cache" / "case-ids").glob("*.json")
    praise = next(e for e in case_index([_suite(example)]) if e.id == "praise")
    data = json.loads(cache.read_text())
    data["ids"][praise.digest] = "greeting"
    cache.write_text(json.dumps(data))
    assert {e.path.name: e.id for e in case_index([_suite(example)])}["praise.yaml"] == "greeting"
    code, out, err = inline_cli(example, "eval", "refund-agent", "--cases", "greeting",
                                "--trials", "1")
    assert code == 0, out + err
    assert [line["case_id"] for line in _run_file_lines(example)[1:]] == ["greeting"]


def test_an_unreadable_case_file_is_refused_by_the_index(example: Workspace) -> None:
    """A case file that is not UTF-8 stops the index with its name, as its load would."""
    (_suite(example) / "zz-binary.yaml").write_bytes(b"id: \xff\xfe\n")
    with pytest.raises(InvalidInput, match="not UTF-8"):
        case_index([_suite(example)])
