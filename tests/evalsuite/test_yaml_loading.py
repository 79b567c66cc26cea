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
