"""Every loader, fed malformed and random documents: a clean error or a valid load, never a
traceback; and through the CLI, one error line, exit 2, and nothing written."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from evalsuite import (
    AgentSpec,
    EvalCase,
    ReinstateError,
    load_cases,
    load_model,
    read_log,
    read_logs,
    read_runs,
)
from gates import Workspace, load_controls
from gates._cli import main
from gates._demo import lay_out
from regressions import IncidentBook, RegressionCase
from tests.conftest import tree
from tests.helpers import ACTOR, captured
from tests.hostile.conftest import Tried

DATA = Path(__file__).parent.parent / "data" / "logs"
AGENT = "refund-agent"

scalars = (st.none() | st.booleans() | st.integers() | st.floats()
           | st.text(max_size=24) | st.sampled_from(["", "INC-1", "../../etc/passwd", "\x00",
                                                      "!!python/object", "${HOME}", "{{ 7*7 }}"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=16)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The example with INC-1 contained and captured: its files are the valid samples."""
    root = lay_out(tmp_path_factory.mktemp("hostile") / "ws")
    config = root / "reinstate.toml"  # one trial per case keeps each gate fast
    config.write_text(config.read_text().replace("trials = 3", "trials = 1"))
    ws = Workspace.find(root)
    captured(ws)
    return ws


def _mutate(data: Any, choices: st.DataObject) -> Any:
    """``data`` with one place deleted, replaced or added to, chosen by Hypothesis."""
    if isinstance(data, dict) and data:
        key = choices.draw(st.sampled_from(sorted(data, key=str)))
        how = choices.draw(st.sampled_from(["delete", "replace", "descend", "add"]))
        if how == "delete":
            return {k: v for k, v in data.items() if k != key}
        if how == "replace":
            return {**data, key: choices.draw(values)}
        if how == "add":
            return {**data, choices.draw(st.text(max_size=12)): choices.draw(values)}
        return {**data, key: _mutate(data[key], choices)}
    if isinstance(data, list) and data:
        index = choices.draw(st.integers(0, len(data) - 1))
        return [*data[:index], _mutate(data[index], choices), *data[index + 1:]]
    return choices.draw(values)


def _document(sample: str, choices: st.DataObject) -> bytes:
    """A hostile version of a YAML ``sample``: mutated, random, or not text at all."""
    kind = choices.draw(st.sampled_from(["mutated", "mutated", "random", "text", "bytes"]))
    if kind == "mutated":
        mutated = _mutate(yaml.safe_load(sample), choices)
        return yaml.safe_dump(mutated, allow_unicode=True).encode()
    if kind == "random":
        return yaml.safe_dump(choices.draw(values), allow_unicode=True).encode()
    if kind == "text":
        return choices.draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")
    return choices.draw(st.binary(max_size=200))


def _lines(sample: str, choices: st.DataObject) -> bytes:
    """A hostile version of a JSON-lines ``sample``: lines mutated, dropped, cut or random."""
    lines = sample.splitlines()
    out = []
    for line in lines[:8]:
        how = choices.draw(st.sampled_from(["keep", "keep", "mutate", "drop", "cut", "random"]))
        if how == "keep":
            out.append(line)
        elif how == "mutate":
            out.append(json.dumps(_mutate(json.loads(line), choices), default=str))
        elif how == "cut":
            out.append(line[: choices.draw(st.integers(0, len(line)))])
        elif how == "random":
            out.append(choices.draw(st.text(max_size=80)))
    return "\n".join(out).encode("utf-8", "surrogatepass")


def _clean(load: Callable[[], object]) -> None:
    """Either it loads, or it raises reinstate's own error: for bad input, one line."""
    try:
        load()
    except ReinstateError as exc:
        assert str(exc).strip()
        if exc.exit_code == 2:
            assert "\n" not in str(exc), str(exc)


YAML_LOADERS: dict[str, tuple[str, Callable[[Path, Workspace], object]]] = {
    "incident": ("incidents/INC-1.yaml",
                 lambda p, ws: IncidentBook(p.parent, p.parent / "locks").load("INC-1")),
    "eval-case": ("evals/refund-agent/greeting.yaml", lambda p, ws: load_model(p, EvalCase)),
    "regression-case": ("regressions/refund-agent/INC-1-1.yaml",
                        lambda p, ws: load_cases(p.parent, RegressionCase, AGENT)),
    "agent": ("agents/refund-agent/agent.yaml", lambda p, ws: load_model(p, AgentSpec)),
    **{f"controls-{name.split('.')[0]}": (
        f"agents/refund-agent/{name}",
        lambda p, ws: load_controls(p.parent, AGENT, root=ws.root))
       for name in ("permissions.yaml", "acceptance.yaml", "review.yaml", "checklist.yaml")},
}


@pytest.mark.slow
@pytest.mark.parametrize("loader", YAML_LOADERS)
@settings(max_examples=60)
@given(choices=st.data())
def test_yaml_loaders_fail_cleanly(workspace: Workspace, tmp_path_factory: pytest.TempPathFactory,
                                   tried: Tried, loader: str, choices: st.DataObject) -> None:
    """Incident, case, agent and control loaders answer any document cleanly."""
    relative, load = YAML_LOADERS[loader]
    folder = tmp_path_factory.mktemp(loader)
    shutil.copytree(workspace.root / Path(relative).parent, folder, dirs_exist_ok=True)
    target = folder / Path(relative).name
    target.write_bytes(_document((workspace.root / relative).read_text(), choices))
    tried()
    _clean(lambda: load(target, workspace))


@settings(max_examples=60)
@given(choices=st.data())
def test_config_loader_fails_cleanly(workspace: Workspace,
                                     tmp_path_factory: pytest.TempPathFactory, tried: Tried,
                                     choices: st.DataObject) -> None:
    """reinstate.toml with lines replaced, cut or added is read or refused cleanly."""
    lines = (workspace.root / "reinstate.toml").read_text().splitlines()
    index = choices.draw(st.integers(0, len(lines) - 1))
    name = lines[index].split("=")[0].strip() or "x"
    new = choices.draw(st.sampled_from([
        f"{name} = {json.dumps(choices.draw(scalars), default=str)}",
        f"{name} = {json.dumps(choices.draw(values), default=str)}",
        choices.draw(st.text(max_size=40)), "[paths]", f"{name} = '../../outside'",
    ]))
    folder = tmp_path_factory.mktemp("config")
    (folder / "reinstate.toml").write_text("\n".join([*lines[:index], new, *lines[index + 1:]]))
    tried()

    def read() -> None:
        found = Workspace.find(folder)
        for place in ("agents_dir", "incidents_dir", "state_path", "logs_dir"):
            getattr(found, place)
        found.evals_dir(AGENT)
        found.regressions_dir(AGENT)
    _clean(read)


LOGS = {
    "native": (lambda ws: (ws.root / "logs/2026-11-25-refund-agent.jsonl").read_text(), "jsonl"),
    "otel": (lambda ws: (DATA / "refund-agent.otlp.jsonl").read_text(), "otel"),
    "openai": (lambda ws: (DATA / "refund-agent.openai.jsonl").read_text(), "openai"),
    "anthropic": (lambda ws: (DATA / "refund-agent.anthropic.jsonl").read_text(), "anthropic"),
}


@pytest.mark.parametrize("log", LOGS)
@settings(max_examples=50)
@given(choices=st.data())
def test_log_importers_fail_cleanly(workspace: Workspace,
                                    tmp_path_factory: pytest.TempPathFactory, tried: Tried,
                                    log: str, choices: st.DataObject) -> None:
    """Each log format, its lines mutated, cut, dropped or replaced, reads or fails cleanly,
    in its own format and detected automatically."""
    sample, fmt = LOGS[log]
    path = tmp_path_factory.mktemp(log) / "run.jsonl"
    path.write_bytes(_lines(sample(workspace), choices))
    tried()
    _clean(lambda: list(read_log(path, fmt)))  # type: ignore[arg-type]
    _clean(lambda: list(read_log(path)))
    if log == "native":
        _clean(lambda: read_runs(path))


@pytest.mark.slow
@settings(max_examples=40)
@given(choices=st.data())
def test_capture_from_a_hostile_log_writes_nothing(workspace: Workspace, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   tried: Tried,
                                                   choices: st.DataObject) -> None:
    """`reinstate capture` from a mangled log exits 2 with one error line, or captures;
    a refused capture leaves every file as it was."""
    sample = (workspace.root / "logs/2026-11-25-refund-agent.jsonl").read_text()
    log = tmp_path / "hostile.jsonl"
    log.write_bytes(_lines(sample, choices))
    before = tree(workspace.root)
    tried()
    code = main(["-C", str(workspace.root), "--actor", ACTOR, "capture", "INC-1", "--run",
                 str(log), "--run-id", "run-7f3a97", "--step", "4", "--tag", "hostile"])
    err = capsys.readouterr().err
    if code != 0:
        assert code == 2, err
        assert err.startswith("error: ") and "Traceback" not in err
        assert tree(workspace.root) == before
    else:  # a mangling that left the run intact: undo it for the next example
        for path in set(tree(workspace.root)) - set(before):
            (workspace.root / path).unlink()
        (workspace.root / "incidents/INC-1.yaml").write_bytes(before["incidents/INC-1.yaml"])


@pytest.mark.slow
@settings(max_examples=25)
@given(choices=st.data())
def test_gate_on_a_hostile_case_writes_nothing(workspace: Workspace,
                                               capsys: pytest.CaptureFixture[str],
                                               tried: Tried, choices: st.DataObject) -> None:
    """`reinstate gate` with a mangled regression case refuses with exit 2, one error line
    and nothing written, or, when the case is still valid, runs without a traceback."""
    case = workspace.root / "regressions/refund-agent/INC-1-1.yaml"
    original = case.read_bytes()
    case.write_bytes(_document(original.decode(), choices))
    before = tree(workspace.root)
    tried()
    try:
        code = main(["-C", str(workspace.root), "--actor", ACTOR, "gate", AGENT])
        err = capsys.readouterr().err
    finally:
        case.write_bytes(original)
    assert "Traceback" not in err
    if code == 2:
        assert err.startswith("error: ") and err.count("\n") == 1, err
        after = tree(workspace.root)
        after[case.relative_to(workspace.root).as_posix()] = before[
            case.relative_to(workspace.root).as_posix()]
        assert after == before
    else:
        assert code in (1, 3, 4), err  # a still-valid case: judged, never a pass


def _stored(text: bytes, storage: str) -> bytes:
    """``text`` as a rotated log or the Collector's file exporter stores it."""
    import gzip

    from backports.zstd import compress as zstd_compress

    lines = text.splitlines()
    if storage == "gzip":
        return gzip.compress(text)
    if storage == "zstd":
        return b"".join(zstd_compress(line + b"\n") for line in lines)
    messages = [zstd_compress(line) if storage == "framed-zstd" else line for line in lines]
    return b"".join(len(m).to_bytes(4, "big") + m for m in messages)


@pytest.mark.parametrize("storage", ["gzip", "zstd", "framed", "framed-zstd"])
@settings(max_examples=60)
@given(choices=st.data())
def test_a_damaged_stored_log_reads_or_fails_cleanly(
        workspace: Workspace, tmp_path_factory: pytest.TempPathFactory, tried: Tried,
        storage: str, choices: st.DataObject) -> None:
    """A compressed or length-prefixed log with bytes flipped, cut off, or bytes inserted
    (a length that lies, a frame that is no frame) reads or fails cleanly."""
    data = bytearray(_stored((DATA / "refund-agent.otlp.jsonl").read_bytes(), storage))
    for _ in range(choices.draw(st.integers(1, 3))):
        at = choices.draw(st.integers(0, len(data)))
        how = choices.draw(st.sampled_from(["flip", "cut", "insert"]))
        if how == "flip" and at < len(data):
            data[at] ^= choices.draw(st.integers(1, 255))
        elif how == "cut":
            del data[at:]
        else:
            data[at:at] = choices.draw(st.binary(min_size=1, max_size=8))
    path = tmp_path_factory.mktemp(storage) / "traces.jsonl"
    path.write_bytes(bytes(data))
    tried()
    _clean(lambda: list(read_logs([path])))
    _clean(lambda: list(read_log(path, "otel")))
