"""``backtest --engine ray`` on native JSONL and Parquet logs read as a Ray Dataset."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from deepdiff import DeepDiff

from gates import Workspace
from tests.conftest import RunCli
from tests.helpers import LOG

ray = pytest.importorskip("ray")  # the `test` extra installs it; reinstate[ray] for users
pq = pytest.importorskip("pyarrow.parquet")

AGENT = "refund-agent"
Cli = Callable[..., tuple[int, str, str]]
DATASET_NOTE = "--engine ray: the logs were read as a Ray Dataset"


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """A local Ray cluster of two CPUs, started by the test, stopped after the module."""
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


def _interleaved(ws: Workspace) -> tuple[Path, Path]:
    """The example's runs split over two logs, their lines interleaved run with run, and a
    run of another agent among them (a blank line too)."""
    records = [json.loads(line) for line in (ws.root / LOG).read_text().splitlines()]
    by_run: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_run.setdefault(record["run_id"], []).append(record)
    other = [{**r, "run_id": "run-other"} for r in by_run["run-7f3a91"]]
    other[0]["agent"] = "billing-agent"
    first, second = ws.root / "logs" / "a.jsonl", ws.root / "logs" / "b.jsonl"
    runs = list(by_run.values())
    with first.open("w") as out:
        for group in zip(runs[0], runs[1], other, strict=False):
            out.writelines(json.dumps(r) + "\n" for r in group)
        out.write("\n")
        out.writelines(json.dumps(r) + "\n" for r in runs[1][len(runs[0]):])
    second.write_text("".join(json.dumps(r) + "\n" for r in runs[2]))
    return first, second


def _labels(ws: Workspace) -> Path:
    path = ws.root / "labels.jsonl"
    path.write_text('{"run_id": "run-7f3a97", "label": "harmful"}\n'
                    '{"run_id": "run-7f3a91", "step": 2, "label": "good"}\n')
    return path


def _without_note(result: dict[str, Any]) -> dict[str, Any]:
    return {**result, "notes": [n for n in result["notes"] if not n.startswith("--engine")]}


@pytest.mark.slow
def test_dataset_backtest_of_interleaved_logs_gives_the_local_result(
        cluster: None, example: Workspace, inline_cli: Cli,
        fixed: Callable[[Workspace], list[str]]) -> None:
    """Interleaved runs over two logs, labelled, decided on a Ray Dataset give the local JSON
    and output; only the note naming the path taken differs."""
    baseline = shutil.copytree(example.root / "agents" / AGENT, example.root / "baseline")
    fixed(example)
    first, second = _interleaved(example)
    common = ("backtest", AGENT, str(first), str(second), "--compare", str(baseline),
              "--labels", str(_labels(example)))
    code, local_out, err = inline_cli(example, *common, "--json", str(example.root / "local.json"))
    assert code == 0, err
    code, ray_out, err = inline_cli(example, *common, "--json", str(example.root / "ray.json"),
                                    "--engine", "ray", "--workers", "2")
    assert code == 0, err
    local = json.loads((example.root / "local.json").read_text())
    on_ray = json.loads((example.root / "ray.json").read_text())
    assert any(n.startswith(DATASET_NOTE) for n in on_ray["notes"])
    assert local["totals"]["runs"] == 3 and local["confusion"]["harmful_stopped"]
    diff = DeepDiff(local, _without_note(on_ray))
    assert not diff, diff
    assert [x for x in ray_out.splitlines() if DATASET_NOTE not in x] == local_out.splitlines()


@pytest.mark.slow
def test_parquet_written_by_ingest_backtests_as_its_jsonl(
        cluster: None, example: Workspace, inline_cli: Cli) -> None:
    """ingest --out FILE.parquet writes the native columns, and its backtest on Ray is the
    local backtest of the JSONL ingest writes, row N naming line N."""
    first, second = _interleaved(example)
    parquet, jsonl = example.root / "runs.parquet", example.root / "runs.jsonl"
    code, out, err = inline_cli(example, "ingest", str(first), str(second),
                                "--out", str(parquet))
    assert code == 0, err
    assert "runs.parquet (32 rows, native Parquet)" in out
    code, _, err = inline_cli(example, "ingest", str(first), str(second), "--out", str(jsonl))
    assert code == 0, err
    table = pq.read_table(example.root / "runs.parquet")
    assert table.column_names == ["run_id", "kind", "record"]
    assert table.column("record").to_pylist() == (
        example.root / "runs.jsonl").read_text().splitlines()
    code, _, err = inline_cli(example, "backtest", AGENT, str(jsonl),
                              "--json", str(example.root / "local.json"))
    assert code == 0, err
    code, _, err = inline_cli(example, "backtest", AGENT, str(parquet),
                              "--json", str(example.root / "ray.json"),
                              "--engine", "ray", "--workers", "1")
    assert code == 0, err
    local = (example.root / "local.json").read_text().replace("runs.jsonl", "runs.parquet")
    diff = DeepDiff(json.loads(local),
                    _without_note(json.loads((example.root / "ray.json").read_text())))
    assert not diff, diff


@pytest.mark.slow
def test_a_bad_line_on_ray_is_the_local_error_and_exit_2(
        cluster: None, example: Workspace, inline_cli: Cli) -> None:
    """A malformed line found by a Ray task is the one line the local engine gives, exit 2."""
    lines = (example.root / LOG).read_text().splitlines()
    lines[6] = lines[6][:-1]  # the closing brace gone
    bad = example.root / "logs" / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    code, _, local_err = inline_cli(example, "backtest", AGENT, str(bad))
    assert code == 2
    code, out, err = inline_cli(example, "backtest", AGENT, str(bad), "--engine", "ray",
                                "--json", str(example.root / "ray.json"))
    assert (code, out) == (2, "")
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == local_err.strip()
    assert "logs/bad.jsonl:7" in local_err
    assert not (example.root / "ray.json").exists()


@pytest.mark.slow
def test_a_parquet_file_with_an_unknown_column_is_refused(
        cluster: None, example: Workspace, inline_cli: Cli) -> None:
    """A Parquet log whose columns are not the native ones is one line naming the column."""
    import pyarrow as pa

    pq.write_table(pa.table({"run_id": ["r"], "kind": ["run"], "record": ["{}"],
                             "extra": ["x"]}), example.root / "odd.parquet")
    code, _, err = inline_cli(example, "backtest", AGENT, str(example.root / "odd.parquet"),
                              "--engine", "ray")
    assert code == 2
    assert err.strip().splitlines()[-1].endswith(
        "odd.parquet: column extra: expected the native columns run_id, kind, record")


def test_parquet_without_ray_is_refused_in_one_line(example: Workspace,
                                                    inline_cli: Cli) -> None:
    """The local engine refuses a Parquet log, saying to add --engine ray, exit 2."""
    (example.root / "runs.parquet").write_bytes(b"PAR1")
    code, out, err = inline_cli(example, "backtest", AGENT, str(example.root / "runs.parquet"))
    assert (code, out) == (2, "")
    assert err.startswith("error: ") and err.count("\n") == 1
    assert err.strip().endswith("runs.parquet: a Parquet log is read only as a Ray "
                                "Dataset: add --engine ray")


@pytest.mark.slow
@pytest.mark.parametrize(("name", "said"), [
    ("missing.parquet", "file not found"),
    ("folder.parquet", "not a regular file: expected a file, got a folder"),
    ("missing.jsonl", "file not found"),
])
def test_a_log_that_is_not_there_is_bad_input_on_ray_parquet_too(
        example: Workspace, cli: RunCli, name: str, said: str) -> None:
    """A missing .jsonl on Ray was exit 2 naming it, a missing .parquet exit 3 ("--engine
    ray: reading the logs as a Ray Dataset failed: …/missing.parquet"), as if the engine
    had failed; so did an empty folder named .parquet. Each is
    now bad input naming the file, exit 2, before Ray reads anything. (A child process:
    Ray as a user starts it.)"""
    (example.root / "folder.parquet").mkdir()
    done = cli("backtest", AGENT, name, "--engine", "ray", "--workers", "1",
               cwd=example.root)
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"error: {name}: {said}"


@pytest.mark.slow
def test_a_log_that_is_not_a_dataset_keeps_the_shard_tasks(
        cluster: None, example: Workspace, inline_cli: Cli) -> None:
    """OpenAI conversations on Ray are decided by shard tasks, with the local result, and
    the note says so."""
    log = Path(__file__).parent.parent / "data" / "logs" / "refund-agent.openai.jsonl"
    code, _, err = inline_cli(example, "backtest", AGENT, str(log),
                              "--json", str(example.root / "local.json"))
    assert code == 0, err
    code, _, err = inline_cli(example, "backtest", AGENT, str(log), "--engine", "ray",
                              "--workers", "1", "--json", str(example.root / "ray.json"))
    assert code == 0, err
    local = json.loads((example.root / "local.json").read_text())
    on_ray = json.loads((example.root / "ray.json").read_text())
    assert local["totals"]["calls"] > 0
    assert [n for n in on_ray["notes"] if n.startswith("--engine")] == [
        "--engine ray: not all the logs are native JSONL or Parquet, which a Ray Dataset "
        "reads, so the runs were split into 1 shards, each a Ray task reading the whole logs"]
    diff = DeepDiff(local, _without_note(on_ray))
    assert not diff, diff


def test_ray_without_its_data_extra_is_one_line_and_exit_3(
        cluster: None, example: Workspace, inline_cli: Cli,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray installed without Ray Data: the dataset backtest says how to install it, exit 3."""
    monkeypatch.delitem(sys.modules, "gates._backtest.ray_dataset", raising=False)
    monkeypatch.setitem(sys.modules, "ray.data.datasource", None)  # its import fails
    code, out, err = inline_cli(example, "backtest", AGENT, str(example.root / LOG),
                                "--engine", "ray")
    assert (code, out) == (3, "")
    assert err.strip() == ("error: --engine ray reads logs as a Ray Dataset, which needs Ray "
                           "Data (ray.data.datasource is missing): pip install 'reinstate[ray]'")


def _local_and_ray(ws: Workspace, cli: Cli, logs: list[Path], *,
                   workers: str = "2") -> tuple[dict[str, Any], dict[str, Any], str]:
    """The labelled backtest of ``logs`` locally and on Ray: both JSON results and the note
    naming the path Ray took."""
    common = ("backtest", AGENT, *map(str, logs), "--labels", str(_labels(ws)))
    local_code, _, err = cli(ws, *common, "--json", str(ws.root / "local.json"))
    assert local_code in (0, 1), err  # 1: a labelled harmful run got through
    code, _, err = cli(ws, *common, "--json", str(ws.root / "ray.json"), "--engine", "ray",
                       "--workers", workers)
    assert code == local_code, err
    on_ray = json.loads((ws.root / "ray.json").read_text())
    note = next(n for n in on_ray["notes"] if n.startswith(DATASET_NOTE))
    return json.loads((ws.root / "local.json").read_text()), _without_note(on_ray), note


@pytest.mark.slow
def test_runs_inside_one_chunk_are_decided_there_and_crossing_runs_on_the_driver(
        cluster: None, example: Workspace, inline_cli: Cli,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A log written run after run, read 16 records a chunk: runs inside a chunk are decided
    where it was read, the few crossing chunks are put together on the driver, and the
    result is the local one."""
    from gates._backtest import ray_dataset

    monkeypatch.setattr(ray_dataset, "BLOCK_ROWS", 16)
    records = [json.loads(line) for line in (example.root / LOG).read_text().splitlines()]
    log = example.root / "logs" / "copies.jsonl"
    log.write_text("".join(json.dumps({**r, "run_id": r["run_id"] + suffix}) + "\n"
                           for suffix in ("", "-1", "-2", "-3") for r in records))
    local, on_ray, note = _local_and_ray(example, inline_cli, [log])
    assert local["totals"]["runs"] == 12 and any(local["confusion"].values())
    diff = DeepDiff(local, on_ray)
    assert not diff, diff
    assert note.endswith(": 8 runs decided in the chunk of 16 records they were read in, "
                         "2 at a time; 4 runs crossing chunks put together on the driver")


@pytest.mark.slow
def test_interleaved_runs_crossing_chunks_are_grouped_by_run_with_the_local_result(
        cluster: None, example: Workspace, inline_cli: Cli,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Interleaved runs read 4 records a chunk cross every chunk: their rows are put
    together in groups of runs in map_groups (too many for the driver here) and give the
    local result."""
    from gates._backtest import ray_dataset

    monkeypatch.setattr(ray_dataset, "BLOCK_ROWS", 4)
    monkeypatch.setattr(ray_dataset, "ON_DRIVER", 0)
    local, on_ray, note = _local_and_ray(example, inline_cli, list(_interleaved(example)))
    assert local["totals"]["runs"] == 3
    diff = DeepDiff(local, on_ray)
    assert not diff, diff
    assert note.endswith(": 0 runs decided in the chunk of 4 records they were read in, "
                         "2 at a time; 32 records of runs crossing chunks put together in 8 "
                         "groups of runs (map_groups)")


@pytest.mark.slow
def test_a_run_split_over_two_logs_is_put_together_before_it_is_decided(
        cluster: None, example: Workspace, inline_cli: Cli) -> None:
    """A run whose first records end one log and the rest start another looks whole in
    each; it is caught as decided twice and the backtest redone by run: the local result."""
    lines = (example.root / LOG).read_text().splitlines(keepends=True)
    first, second = example.root / "logs" / "a.jsonl", example.root / "logs" / "b.jsonl"
    first.write_text("".join(lines[6:16] + lines[:3]))  # run-7f3a97, then run-7f3a91 begins
    second.write_text("".join(lines[3:6] + lines[16:]))
    local, on_ray, note = _local_and_ray(example, inline_cli, [first, second], workers="1")
    assert local["totals"]["runs"] == 3 and any(local["confusion"].values())
    diff = DeepDiff(local, on_ray)
    assert not diff, diff
    assert "a run's records were too far apart (or in two logs) to decide it in one " \
           "chunk, so every run was put together first" in note


@pytest.mark.slow
def test_compressed_logs_on_ray_give_the_local_result(
        cluster: None, example: Workspace, inline_cli: Cli) -> None:
    """A rotated log compressed as `.jsonl.gz` is read as a Ray Dataset (Ray decompresses
    by the suffix); a gzip log not named `.gz`, and a zstd log, go to shard tasks, which
    read them as reinstate does. All give the local result, which is that of the logs
    uncompressed."""
    import gzip

    from backports.zstd import compress as zstd_compress

    first, second = _interleaved(example)
    _, plain, _ = _local_and_ray(example, inline_cli, [first, second])
    named = first.with_name(first.name + ".gz")
    named.write_bytes(gzip.compress(first.read_bytes()))
    unnamed = second.with_name("unnamed.jsonl")
    unnamed.write_bytes(gzip.compress(second.read_bytes()))
    zstd = second.with_name(second.name + ".zst")
    zstd.write_bytes(zstd_compress(second.read_bytes()))
    for logs, dataset in (([named, second], True), ([named, unnamed], False),
                          ([named, zstd], False)):
        common = ("backtest", AGENT, *map(str, logs), "--labels", str(_labels(example)))
        code, _, err = inline_cli(example, *common, "--json", str(example.root / "local.json"))
        assert code in (0, 1), err
        again, _, err = inline_cli(example, *common, "--engine", "ray", "--workers", "2",
                                   "--json", str(example.root / "ray.json"))
        assert again == code, err
        local = json.loads((example.root / "local.json").read_text())
        on_ray = json.loads((example.root / "ray.json").read_text())
        assert any(n.startswith(DATASET_NOTE) for n in on_ray["notes"]) is dataset
        diff = DeepDiff(local, _without_note(on_ray))
        assert not diff, diff
        renamed = DeepDiff(plain, local, exclude_regex_paths=[r"\['logs'\]", r"\['where'\]"])
        assert local["totals"]["runs"] == 3 and not renamed, renamed


@pytest.mark.slow
def test_a_run_handed_over_to_the_agent_is_decided_on_ray_as_locally(
        cluster: None, example: Workspace, inline_cli: Cli) -> None:
    """A conversation triage-agent began and handed over to this agent: on Ray, its run
    was left out whole from the first part naming triage-agent on (local decided this
    agent's part), so Ray counted a run, two calls and an output fewer."""
    from tests.gates.test_backtest import handed_over

    log = handed_over(example)
    local, on_ray, _ = _local_and_ray(example, inline_cli, [example.root / LOG, log],
                                      workers="1")
    assert (local["totals"]["runs"], local["totals"]["calls"]) == (5, 9)
    diff = DeepDiff(local, on_ray)
    assert not diff, diff
