"""``backtest --engine ray`` on logs in object storage: a real S3 server on this machine.

moto's S3 server stands in for the bucket; pyarrow (which Ray Data reads through) finds it
by ``AWS_ENDPOINT_URL``, set before the Ray cluster starts so its workers inherit it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from deepdiff import DeepDiff

from gates import Workspace
from tests.helpers import LOG

ray = pytest.importorskip("ray")  # the `test` extra installs it; reinstate[ray] for users
pafs = pytest.importorskip("pyarrow.fs")
pytest.importorskip("moto")

AGENT = "refund-agent"
BUCKET = "agent-logs"
Cli = Callable[..., tuple[int, str, str]]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    """A moto S3 server on a free local port, the AWS settings pointing at it, and a local
    Ray cluster of two CPUs started after them; all undone after the module."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    settings = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_EC2_METADATA_DISABLED": "true"}
    before = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the moto S3 server did not start") from None
                time.sleep(0.1)
        bucket = pafs.S3FileSystem(endpoint_override=endpoint, access_key="testing",
                                   secret_key="testing", region="us-east-1",
                                   allow_bucket_creation=True)
        bucket.create_dir(BUCKET)
        ray.init(num_cpus=2, include_dashboard=False)
        yield bucket
    finally:
        if ray.is_initialized():
            ray.shutdown()
        server.terminate()
        server.wait(timeout=30)
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _upload(bucket: Any, local: Path, key: str) -> str:
    with bucket.open_output_stream(f"{BUCKET}/{key}") as out:
        out.write(local.read_bytes())
    return f"s3://{BUCKET}/{key}"


@pytest.mark.slow
def test_a_log_in_s3_backtests_as_the_same_log_on_disk(
        s3: Any, example: Workspace, inline_cli: Cli,
        fixed: Callable[[Workspace], list[str]]) -> None:
    """The example's log read from an S3 bucket on Ray gives the local backtest of the same
    file on disk: same totals, rules, decisions and examples; only the log's name and the
    note saying the Ray Dataset read it differ."""
    baseline = shutil.copytree(example.root / "agents" / AGENT, example.root / "baseline")
    fixed(example)
    uri = _upload(s3, example.root / LOG, "prod/runs.jsonl")
    common = ("backtest", AGENT, "--compare", str(baseline))
    code, _, err = inline_cli(example, *common, "--logs", str(example.root / LOG),
                              "--json", str(example.root / "local.json"))
    assert code == 0, err
    code, _, err = inline_cli(example, *common, "--logs", uri, "--engine", "ray",
                                "--workers", "2", "--json", str(example.root / "ray.json"))
    assert code == 0, err
    local = json.loads((example.root / "local.json").read_text())
    on_ray = json.loads((example.root / "ray.json").read_text())
    assert local["totals"]["runs"] == 3 and local["totals"]["calls"] > 0
    assert any(n.startswith("--engine ray: the logs were read as a Ray Dataset")
               for n in on_ray["notes"])
    shown = json.dumps(on_ray)
    assert uri in shown or "prod/runs.jsonl" in shown
    diff = DeepDiff(local, on_ray, exclude_paths=["root['logs']", "root['notes']"],
                    exclude_regex_paths=[r"\['(where|place|source|log)'\]"])
    assert not diff, diff


@pytest.mark.slow
def test_a_missing_object_is_one_line_and_no_pass(s3: Any, example: Workspace,
                                                  inline_cli: Cli) -> None:
    """A log key the bucket does not hold is refused in one line naming it, nothing decided."""
    code, out, err = inline_cli(example, "backtest", AGENT, "--logs",
                                f"s3://{BUCKET}/no/such.jsonl", "--engine", "ray",
                                "--json", str(example.root / "ray.json"))
    assert code in (2, 3), (code, out, err)
    assert "no/such.jsonl" in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not (example.root / "ray.json").exists()
