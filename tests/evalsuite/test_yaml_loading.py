"""User YAML read through libyaml's loader: the same data and the same refusals as PyYAML's
pure-Python loader, which stays the one that decides every error."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from evalsuite import InvalidInput, parse_yaml
from gates import Workspace
from gates._cli import main
from tests.conftest import tree
from tests.helpers import ACTOR

EXAMPLE = Path(__file__).parents[2] / "gates" / "_example"

TRICKY = """\
base: &base {tool: lookup_order, risk: low, limits: [1, 2, 3]}
derived:
  <<: *base
  risk: high
when: 2026-11-30T10:15:00Z
day: 2026-11-30
octal: 0o17
hex: 0x1F
float: 6.02e+23
nothing: ~
yes_word: yes
folded: >-
  one
  two
literal: |
  line one
    indented
quoted: "tab\\there \\u00e9"
single: 'it''s'
unicode: Ärger über 🚚
? complex key
: value
"""


@pytest.mark.parametrize("path", sorted(EXAMPLE.rglob("*.yaml")), ids=lambda p: p.name)
def test_every_example_file_reads_as_pure_python_reads_it(path: Path) -> None:
    """Each YAML file the example workspace ships gives the same data as PyYAML's
    pure-Python safe loader."""
    text = path.read_text(encoding="utf-8")
    assert parse_yaml(text, path) == yaml.safe_load(text)


def test_anchors_merges_and_scalars_read_as_pure_python_reads_them() -> None:
    """Anchors, merge keys, timestamps, number forms, block scalars, escapes and a complex
    key give the same data as PyYAML's pure-Python safe loader."""
    assert parse_yaml(TRICKY, Path("tricky.yaml")) == yaml.safe_load(TRICKY)


@pytest.mark.parametrize("text, line", [
    ("a: 1\nb: " + "[" * 300 + "]" * 300 + "\n", 2),
    ("a: 1\nb:\n" + "".join(" " * i + "- \n" for i in range(1, 300)) + " " * 300 + "x\n", 252),
    ("a: 1\nb:\n" + "- " * 300 + "x\n", 3),
], ids=["flow", "block", "compact"])
def test_nesting_libyaml_accepts_but_the_limit_refuses(text: str, line: int) -> None:
    """A document nested 300 deep (under libyaml's own thousand, over reinstate's 250) is
    refused with the pure-Python loader's message and line."""
    with pytest.raises(InvalidInput) as info:
        parse_yaml(text, Path("deep.yaml"))
    assert str(info.value).startswith(f"deep.yaml:{line}: malformed YAML: nested too deeply")


def test_an_alias_adds_no_depth() -> None:
    """A node anchored near the top and aliased 240 levels down is accepted, as the
    pure-Python composer accepts it (an alias is not composed again)."""
    text = ("shallow: &x " + "[" * 20 + "]" * 20 + "\ndeep: "
            + "[" * 240 + "*x" + "]" * 240 + "\n")
    expected = yaml.safe_load(text)
    assert parse_yaml(text, Path("alias.yaml")) == expected


@pytest.mark.parametrize("body", [
    "\n" + "- " * 1_000_000 + "x",
    "[" * 1_500_000 + "]" * 1_500_000,
    "\n" + "".join(f"- &a{i} " for i in range(200_000)) + "x",
], ids=["compact-sequences", "flow", "anchored-sequences"])
def test_hostile_nesting_is_one_clean_line(example: Workspace, body: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """An eval case nesting a million levels is refused with one line naming the file,
    exit 2 and nothing written: never a crash in libyaml's recursive composer."""
    case = example.root / "evals" / "refund-agent" / "greeting.yaml"
    case.write_text(case.read_text() + f"\nextra: {body}\n")
    before = tree(example.root)
    capsys.readouterr()
    code = main(["-C", str(example.root), "--actor", ACTOR, "eval", "refund-agent"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "greeting.yaml:" in err and "malformed YAML" in err
    assert "nested too deeply" in err or "not allowed" in err
    assert tree(example.root) == before


@pytest.mark.parametrize("text, line, key", [
    ("tools:\n  issue_refund: {allowed: false}\n  lookup_order: {allowed: true}\n"
     "  issue_refund: {allowed: true}\n", 4, "'issue_refund'"),
    ("{a: 1, b: 2, a: 3}\n", 1, "'a'"),
    ("flags:\n  true: on\n  yes: off\n", 3, "True"),
], ids=["block", "flow", "same-when-loaded"])
def test_a_key_set_twice_in_one_mapping_is_refused(text: str, line: int, key: str) -> None:
    """YAML keeps the last of two equal keys without a word, so a reader of the first would
    not see the second that reinstate obeys: refused, naming both lines, in either loader."""
    with pytest.raises(InvalidInput) as info:
        parse_yaml(text, Path("permissions.yaml"))
    assert str(info.value).startswith(
        f"permissions.yaml:{line}: key {key} is set twice in one mapping (first at line")


def test_a_merge_may_override_what_it_merges() -> None:
    """A merge key (``<<``) and a key set beside it are not a key set twice."""
    text = "base: &b {risk: low, allowed: true}\ntool:\n  <<: *b\n  risk: high\n"
    assert parse_yaml(text, Path("merge.yaml")) == yaml.safe_load(text)


def test_a_control_file_granting_a_tool_twice_stops_the_gate(
        example: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """permissions.yaml denies issue_refund where a reviewer reads it, and grants it again
    further down: the gate stops with exit 2 naming the second line, and writes nothing."""
    permissions = example.root / "agents" / "refund-agent" / "permissions.yaml"
    text = permissions.read_text()
    text = text.replace("  issue_refund:\n    allowed: true",
                        "  issue_refund:\n    allowed: false")
    permissions.write_text(text + "  issue_refund:\n    allowed: true\n    risk: high\n")
    line = text.count("\n") + 1
    before = tree(example.root)
    capsys.readouterr()
    code = main(["-C", str(example.root), "--actor", ACTOR, "gate", "refund-agent"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert (f"agents/refund-agent/permissions.yaml:{line}: key 'issue_refund' is set twice"
            in err), err
    assert tree(example.root) == before
