"""Reader plugins: a reader installed under the ``reinstate.readers`` entry points, or named
``module:callable``, is used by ``reinstate ingest``; the contract test a plugin author runs
(``check_reader``) passes a sound reader and names what a broken one does wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from evalsuite import (
    InvalidInput,
    ReaderContractError,
    RunPart,
    Skips,
    ToolCall,
    UserInput,
    check_reader,
    is_log_format,
)

# A folder laid out as site-packages after `pip install reinstate-calls-csv`: the module and
# its .dist-info declaring `calls-csv = reinstate_calls_csv:read_calls`.
PLUGIN = Path(__file__).parent.parent / "data" / "reader_plugin"
GOOD = ('r1,input,refund order 7\nr1,call,"issue_refund {""order"": 7, ""amount"": 40}"\n'
        "r1,result,refunded\nr1,output,Done.\nr2,input,hello\nr2,output,hi\n")
BAD = "r1,input,refund order 7\nr1,teleport,somewhere\nr2,output,hi\n"


def _reinstate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``reinstate ARGS`` in a child process whose sys.path holds the installed plugin."""
    paths = [str(PLUGIN), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "gates", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def calls_log(tmp_path: Path) -> Path:
    """A log in the plugin's format, named so that its detector claims it."""
    path = tmp_path / "support.calls.csv"
    path.write_text(GOOD)
    return path


@pytest.fixture
def plugin_on_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The plugin module importable in this process, and gone again after: the readers
    found and loaded are cached for the process, so the caches are emptied both ways (a
    later test in this worker must not meet a plugin it cannot import)."""
    from evalsuite._readers import installed_readers, load_reader

    monkeypatch.syspath_prepend(str(PLUGIN))
    installed_readers.cache_clear()
    load_reader.cache_clear()
    yield
    monkeypatch.undo()
    installed_readers.cache_clear()
    load_reader.cache_clear()
    sys.modules.pop("reinstate_calls_csv", None)


@pytest.mark.slow
def test_ingest_uses_a_reader_installed_under_the_entry_point(calls_log: Path) -> None:
    """`reinstate ingest --format calls-csv` reads the log with the installed plugin."""
    done = _reinstate("ingest", calls_log.name, "--format", "calls-csv", "--out", "out.jsonl",
                      cwd=calls_log.parent)
    assert done.returncode == 0, done.stderr
    assert ("support.calls.csv (calls-csv): 2 runs, 6 steps (2 inputs, 1 call, 1 result, "
            "2 outputs); calls: 1 with a result, 0 without") in done.stdout
    written = (calls_log.parent / "out.jsonl").read_text()
    assert '"tool": "issue_refund"' in written and '"amount": 40' in written


@pytest.mark.slow
def test_auto_detection_asks_the_installed_readers(calls_log: Path) -> None:
    """A file no bundled format recognises is claimed by the plugin's detector under auto."""
    done = _reinstate("ingest", calls_log.name, cwd=calls_log.parent)
    assert done.returncode == 0, done.stderr
    assert "(calls-csv): 2 runs" in done.stdout
    other = calls_log.parent / "notes.csv"
    other.write_text(GOOD)
    refused = _reinstate("ingest", other.name, cwd=calls_log.parent)
    assert refused.returncode == 2 and "not a run log" in refused.stderr


@pytest.mark.slow
def test_format_names_a_reader_as_module_and_callable(calls_log: Path) -> None:
    """`--format module:callable` imports the reader; a bad record is still one clear line."""
    done = _reinstate("ingest", calls_log.name, "--format", "reinstate_calls_csv:read_calls",
                      cwd=calls_log.parent)
    assert done.returncode == 0, done.stderr
    assert "(reinstate_calls_csv:read_calls): 2 runs, 6 steps" in done.stdout
    calls_log.write_text(BAD)
    bad = _reinstate("ingest", calls_log.name, "--format", "reinstate_calls_csv:read_calls",
                     cwd=calls_log.parent)
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("error: support.calls.csv:2: column 2: expected input, "
                                  "output, call or result, got 'teleport'")


@pytest.mark.slow
@pytest.mark.parametrize(("fmt", "code", "says"), [
    ("reinstate_calls_csv:crashes", 3,
     "the 'reinstate_calls_csv:crashes' reader failed: RuntimeError: the plugin's own bug"),
    ("reinstate_calls_csv:nothing_here", 2, "cannot load the reader"),
    ("no_such_module:read", 2, "ModuleNotFoundError"),
    ("calls-tsv", 2, "no reader named 'calls-tsv'"),
])
def test_a_reader_that_cannot_read_is_one_line(calls_log: Path, fmt: str, code: int,
                                               says: str) -> None:
    """A plugin that crashes, or a name that names no reader, is one line and no traceback."""
    done = _reinstate("ingest", calls_log.name, "--format", fmt, "--out", "out.jsonl",
                      cwd=calls_log.parent)
    assert done.returncode == code
    assert says in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr and not (calls_log.parent / "out.jsonl").exists()


def test_the_plugin_keeps_the_reader_contract(plugin_on_path: None, tmp_path: Path,
                                              calls_log: Path) -> None:
    """check_reader passes the plugin on a good log and on one with a bad record."""
    import reinstate_calls_csv  # type: ignore[import-not-found]

    bad = tmp_path / "bad.calls.csv"
    bad.write_text(BAD)
    done = check_reader(reinstate_calls_csv.read_calls, calls_log, invalid=bad)
    assert (done.runs, done.steps, done.skipped) == (2, 6, 1)
    assert done.kinds == {"user_input": 2, "tool_call": 1, "tool_result": 1, "output": 2}
    assert is_log_format("reinstate_calls_csv:read_calls") and not is_log_format("csv")


def _no_steps(path: Path, skips: Skips | None) -> Iterator[RunPart]:
    yield RunPart(run_id="r1", source=path, place=1)


def _places_missing(path: Path, skips: Skips | None) -> Iterator[RunPart]:
    yield RunPart(run_id="r1", source=path, place=1, steps=[UserInput(content="hi")])


def _no_run_id(path: Path, skips: Skips | None) -> Iterator[RunPart]:
    yield RunPart(run_id="", source=path, place=1, steps=[UserInput(content="hi")], places=[1])


def _invalid_step(path: Path, skips: Skips | None) -> Iterator[RunPart]:
    step = ToolCall.model_construct(tool=["not", "a", "name"])  # skips validation
    yield RunPart(run_id="r1", source=path, place=1, steps=[step], places=[1])


def _crashes_on_bad_records(path: Path, skips: Skips | None) -> Iterator[RunPart]:
    if "teleport" in path.read_text():
        raise KeyError("teleport")
    yield RunPart(run_id="r1", source=path, place=1, steps=[UserInput(content="hi")],
                  places=[1])


def _no_place(path: Path, skips: Skips | None) -> Iterator[RunPart]:
    if "teleport" in path.read_text():
        raise InvalidInput(path, "", "expected a kind")
    yield RunPart(run_id="r1", source=path, place=1, steps=[UserInput(content="hi")],
                  places=[1])


def _ignores_skips(path: Path, skips: Skips | None) -> Iterator[RunPart]:
    if "teleport" in path.read_text():
        raise InvalidInput(path, "column 2", "expected a kind", line=2)
    yield RunPart(run_id="r1", source=path, place=1, steps=[UserInput(content="hi")],
                  places=[1])


_COUNT = [0]


def _stateful(path: Path, skips: Skips | None) -> Iterator[RunPart]:
    _COUNT[0] += 1
    yield RunPart(run_id=f"r{_COUNT[0]}", source=path, place=1,
                  steps=[UserInput(content="hi")], places=[1])


@pytest.mark.parametrize(("reader", "says"), [
    (_no_steps, "a silent empty read"),
    (_places_missing, "one place per step"),
    (_no_run_id, "run_id that is a non-empty string"),
    (_invalid_step, "not a valid tool_call step"),
    (_crashes_on_bad_records, "raised KeyError"),
    (_no_place, "names no place"),
    (_ignores_skips, "with skips given the reader still raised"),
    (_stateful, "reading the file twice gave different runs"),
])
def test_the_contract_test_names_what_a_broken_reader_does(
        tmp_path: Path, calls_log: Path, reader: object, says: str) -> None:
    """Each way of breaking the contract is refused by check_reader with its reason."""
    bad = tmp_path / "bad.calls.csv"
    bad.write_text(BAD)
    with pytest.raises(ReaderContractError, match=says):
        check_reader(reader, calls_log, invalid=bad)  # type: ignore[arg-type]
