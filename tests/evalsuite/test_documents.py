"""Reading user files into models with precise errors, and writing files atomically."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from evalsuite import (
    EvalCase,
    InvalidInput,
    ReinstateError,
    create_exclusive,
    line_of,
    load_model,
    parse_model,
    read_text,
    write_atomic,
)

CASE = """\
schema_version: 1
id: refund-damaged-order
agent: refund-agent
tags: [refund_request]
input:
  messages:
    - role: user
      content: My order A-1001 arrived damaged, can I get a refund?
tools:
  - tool: lookup_order
    result: {order_id: A-1001, total: 84.99}
expect:
  - kind: tool_called
    tool: lookup_order
"""


def _write(tmp_path: Path, text: str, name: str = "case.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _line_containing(text: str, fragment: str) -> int:
    """1-based number of the only line of ``text`` that contains ``fragment``."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if fragment in line]
    assert len(hits) == 1, hits
    return hits[0]


def _error(path: Path) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        load_model(path, EvalCase)
    return info.value


def test_valid_case_loads(tmp_path: Path) -> None:
    """A well-formed case file loads into an EvalCase with its fixtures and criteria."""
    case = load_model(_write(tmp_path, CASE), EvalCase)
    assert case.id == "refund-damaged-order"
    assert case.tools[0].result == {"order_id": "A-1001", "total": 84.99}
    assert case.expect[0].kind == "tool_called"


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    """Malformed YAML is an InvalidInput naming the file and the line of the mistake."""
    text = CASE.replace("agent: refund-agent", "agent: refund-agent: v2")
    path = _write(tmp_path, text)
    error = _error(path)
    assert error.path == path
    assert error.line == _line_containing(text, "refund-agent: v2")
    assert "malformed YAML" in str(error)
    assert f"case.yaml:{error.line}:" in str(error)


def test_tab_indentation_names_its_line(tmp_path: Path) -> None:
    """A tab that YAML cannot tokenise is reported on the line where it appears."""
    text = "id: c1\n\tagent: refund-agent\ntags: [x]\n"
    error = _error(_write(tmp_path, text))
    assert error.line == 2
    assert "malformed YAML" in error.expected


def test_invalid_input_is_a_reinstate_error(tmp_path: Path) -> None:
    """InvalidInput is a ReinstateError with the CLI's bad-input exit code."""
    error = _error(_write(tmp_path, "- just\n- a list\n"))
    assert isinstance(error, ReinstateError)
    assert error.exit_code == 2


def test_missing_field_in_list_item_gives_json_path_and_line(tmp_path: Path) -> None:
    """A fixture without its tool is reported at $.tools[0].tool on the fixture's line."""
    text = CASE.replace("  - tool: lookup_order\n    result:", "  - result:")
    path = _write(tmp_path, text)
    error = _error(path)
    assert error.place == "$.tools[0].tool"
    assert "required field 'tool' is missing" in error.expected
    assert error.line == _line_containing(text, "- result: {order_id")
    assert error.line == line_of(text, ["tools", 0, "tool"])


def test_wrong_type_points_at_the_value_line(tmp_path: Path) -> None:
    """A value of the wrong type is reported at its own path and line, with what was given."""
    text = CASE.replace("  - tool: lookup_order\n", "  - tool: [lookup_order]\n")
    error = _error(_write(tmp_path, text))
    assert error.place == "$.tools[0].tool"
    assert error.line == _line_containing(text, "- tool: [lookup_order]")
    assert "got [\"lookup_order\"]" in error.expected


def test_nested_path_inside_messages(tmp_path: Path) -> None:
    """An invalid role deep in the input names $.input.messages[0].role and its line."""
    text = CASE.replace("- role: user", "- role: customer")
    error = _error(_write(tmp_path, text))
    assert error.place == "$.input.messages[0].role"
    assert error.line == _line_containing(text, "role: customer")
    assert "'customer'" in error.expected


def test_error_in_a_criterion_names_the_file_path_without_the_tag(tmp_path: Path) -> None:
    """An error inside a criterion is placed at $.expect[0].<field>, as the file spells it."""
    text = CASE.replace("    tool: lookup_order\n", "    tool: 42\n")
    error = _error(_write(tmp_path, text))
    assert error.place == "$.expect[0].tool"
    assert error.line == _line_containing(text, "tool: 42")


def test_unknown_field_suggests_the_close_name(tmp_path: Path) -> None:
    """An unknown top-level field says "unknown field 'x'" and suggests the intended name."""
    text = CASE.replace("tags: [refund_request]", "tags: [refund_request]\ntreshold: 0.5")
    error = _error(_write(tmp_path, text))
    assert error.place == "$.treshold"
    assert error.expected.startswith("unknown field 'treshold'")
    assert "(did you mean 'threshold'?)" in error.expected
    assert error.line == _line_containing(text, "treshold")


def test_unknown_nested_field_suggests_from_the_nested_model(tmp_path: Path) -> None:
    """An unknown field in a fixture is matched against the fixture's own fields."""
    text = CASE.replace("    result: {order_id", "    reslut: {order_id")
    error = _error(_write(tmp_path, text))
    assert error.place == "$.tools[0].reslut"
    assert error.expected.startswith("unknown field 'reslut' (did you mean 'result'?)")


def test_unknown_field_without_a_near_name_has_no_suggestion(tmp_path: Path) -> None:
    """An unknown field unlike any real one gets no did-you-mean."""
    text = CASE.replace("tags: [refund_request]", "tags: [refund_request]\nzzzzzz: 1")
    error = _error(_write(tmp_path, text))
    assert error.expected == "unknown field 'zzzzzz'"


def test_unknown_field_in_a_criterion_suggests_its_fields(tmp_path: Path) -> None:
    """A misspelt criterion field is reported at $.expect[0].<name> with a did-you-mean."""
    text = CASE.replace("    tool: lookup_order\n",
                        "    tool: lookup_order\n    argumentz: {type: object}\n")
    error = _error(_write(tmp_path, text))
    assert error.place == "$.expect[0].argumentz"
    assert "(did you mean 'arguments'?)" in error.expected
    assert error.line == _line_containing(text, "argumentz")


def test_several_errors_say_how_many_more(tmp_path: Path) -> None:
    """When several fields are wrong, the first is reported and the rest are counted."""
    text = "id: c1\nagent: a\n"
    error = _error(_write(tmp_path, text))
    assert error.expected == "required field 'tags' is missing (and 2 more)"
    assert error.place == "$.tags"


@pytest.mark.parametrize(
    ("text", "kind"),
    [("- a\n- b\n", "list"), ("just a sentence\n", "str"), ("42\n", "int"), ("", "empty file")],
)
def test_non_mapping_top_level_is_a_clear_error(tmp_path: Path, text: str, kind: str) -> None:
    """A file whose top level is not a mapping says it expected fields and what it got."""
    error = _error(_write(tmp_path, text))
    assert error.place == "$"
    assert error.expected == f"expected a mapping of fields, got {kind}"
    assert error.line == 1


def test_parse_model_rejects_non_mapping_data() -> None:
    """parse_model refuses already-parsed data that is not a dict."""
    with pytest.raises(InvalidInput, match="expected a mapping of fields, got list"):
        parse_model(EvalCase, ["a"], Path("x.yaml"))


def test_missing_file_is_invalid_input(tmp_path: Path) -> None:
    """A file that does not exist is an InvalidInput saying so, not an OSError."""
    path = tmp_path / "absent.yaml"
    error = _error(path)
    assert error.path == path
    assert error.expected == "file not found"


def test_undecodable_file_is_invalid_input(tmp_path: Path) -> None:
    """A file that is not UTF-8 is an InvalidInput saying it cannot be read."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"id: caf\xe9\n")
    error = _error(path)
    assert error.expected.startswith("cannot read the file")


def test_line_of_finds_nested_nodes_and_falls_back_to_parents() -> None:
    """line_of returns the line of a nested node, or of its closest existing parent."""
    text = CASE
    assert line_of(text, []) == 1
    assert line_of(text, ["agent"]) == _line_containing(text, "agent: refund-agent")
    assert line_of(text, ["input", "messages", 0, "content"]) == _line_containing(
        text, "content: My order")
    assert line_of(text, ["expect", 0, "tool"]) == _line_containing(text, "    tool: lookup_order")
    # Past the end of the fixtures list: the list itself, which starts at its first item.
    assert line_of(text, ["tools", 5, "tool"]) == _line_containing(text, "- tool: lookup_order")
    assert line_of(text, ["nope", "deeper"]) == 1
    assert line_of("a: [unclosed\n", ["a"]) is None


def test_write_atomic_replaces_content_without_leftovers(tmp_path: Path) -> None:
    """write_atomic replaces a file's content and leaves no temporary file behind."""
    path = tmp_path / "sub" / "incident.yaml"
    write_atomic(path, "first: 1\n")
    assert path.read_text(encoding="utf-8") == "first: 1\n"
    write_atomic(path, "second: 2\n")
    assert path.read_text(encoding="utf-8") == "second: 2\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["incident.yaml"]


def test_write_atomic_keeps_unicode(tmp_path: Path) -> None:
    """write_atomic writes UTF-8 text that reads back unchanged."""
    path = tmp_path / "note.yaml"
    write_atomic(path, "summary: refund of 1 250 € — to another account\n")
    assert path.read_text(encoding="utf-8") == "summary: refund of 1 250 € — to another account\n"


def test_create_exclusive_writes_a_new_file(tmp_path: Path) -> None:
    """create_exclusive writes a file that did not exist and reports True."""
    path = tmp_path / "incidents" / "INC-1.yaml"
    assert create_exclusive(path, "id: INC-1\n") is True
    assert path.read_text(encoding="utf-8") == "id: INC-1\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["INC-1.yaml"]


def test_create_exclusive_refuses_an_existing_file(tmp_path: Path) -> None:
    """create_exclusive returns False for an existing file and leaves it untouched."""
    path = tmp_path / "INC-1.yaml"
    path.write_text("id: INC-1\nsummary: original\n", encoding="utf-8")
    assert create_exclusive(path, "id: INC-1\nsummary: intruder\n") is False
    assert path.read_text(encoding="utf-8") == "id: INC-1\nsummary: original\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["INC-1.yaml"]


def test_reading_a_small_file_allocates_about_its_size(tmp_path: Path) -> None:
    """Reading a case file of a few hundred bytes allocates kilobytes, not the 4 MiB limit
    (a suite reads thousands of them)."""
    path = tmp_path / "case.yaml"
    path.write_text(CASE)
    tracemalloc.start()
    try:
        text = read_text(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert text == CASE
    assert peak < 64 * 1024


def test_a_file_whose_size_is_not_known_ahead_is_read_whole_and_bounded(
        tmp_path: Path) -> None:
    """A file the system reports as empty (a /proc file) is read to its end, and a file
    over the limit is refused with the same line as ever."""
    status = Path("/proc/self/status")
    if not status.exists():
        pytest.skip("no /proc here")
    assert status.stat().st_size == 0 and "VmRSS" in read_text(status)
    large = tmp_path / "large.yaml"
    large.write_bytes(b"x" * (4 * 1024 * 1024 + 1))
    with pytest.raises(InvalidInput, match="file too large: expected at most 4 MiB"):
        read_text(large)
