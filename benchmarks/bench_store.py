"""Containment to every follower: how long a mode change takes to reach the runtimes that
follow it on the PostgreSQL state store (``reinstate mode AGENT --follow``).

Starts a throwaway PostgreSQL cluster (as ``tests/postgres_server.py`` does for the tests),
lays out the example workspace with ``[state] url`` pointing at it, starts ``--followers``
follower processes (default 3, the "replicas") and, ``--changes`` times (default 20),
changes the agent's mode through the store API and times the moment each follower prints
the new mode. It prints, as medians with the lowest and highest:

- **write**: the mode change itself (connect, one transaction, commit);
- **to every follower**: from the start of the write to the last follower's line (the goal
  is under one second);
- **baseline**: one ``reinstate mode AGENT`` process against the same store, measured in
  the same run: what a runtime that polls pays for each look, before its polling interval.
- **mode read as the log grows**: ``read_mode`` in process (wall time: the server's work
  counts) on the store as the followers left it, and again after ``--entries`` more audit
  entries of the agent (default 1,000, as many gates store): flat when the read does not
  grow with the agent's history.
- **check as the log grows**: ``check`` in process (CPU and wall time) on a restored
  example workspace on its own database, after its one gate and after ``--gates`` more
  stored gates (default 1,000 and 5,000, each the current verdict saved again): flat when
  the check verifies only what it decides on, not the whole log.

    python benchmarks/bench_store.py [--changes N] [--followers N] [--entries N]
        [--gates 1000,5000]
"""

from __future__ import annotations

import argparse
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _figures import Figure, machine, process, timed

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the tests' throwaway cluster

AGENT = "refund-agent"


class Follower:
    """A follower process; each line it prints, with the time it arrived here."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gates", "mode", AGENT, "--follow"], cwd=root, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.lines: queue.Queue[tuple[float, str]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put((time.perf_counter(), line.strip()))

    def next(self) -> tuple[float, str]:
        """The next line and when it arrived (at most 30 s)."""
        return self.lines.get(timeout=30)


def main() -> int:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--followers", type=int, default=3)
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--gates", default="1000,5000",
                        help="stored gates to check after (comma-separated; empty: none)")
    args, _ = parser.parse_known_args()  # `nox -s bench -- --steps N` is for other benches

    from tests.postgres_server import bindir, cluster

    binaries = bindir()
    if binaries is None:
        print("bench_store: skipped, PostgreSQL is not installed (no initdb)")
        return 0
    from gates import ModeRecord, PostgresStore, Workspace, read_mode
    from gates._demo import lay_out
    from regressions import utc_now

    with cluster(binaries) as running, tempfile.TemporaryDirectory() as folder:
        url = running.new_database()
        root = lay_out(Path(folder) / "ws")
        config = root / "reinstate.toml"
        config.write_text(f'{config.read_text()}\n[state]\nurl = "{url}"\n')
        store = PostgresStore(url)
        store.create()
        env = {**os.environ, "REINSTATE_ACTOR": "bench"}
        env.pop("REINSTATE_WORKSPACE", None)
        followers = [Follower(root, env) for _ in range(args.followers)]
        try:
            for follower in followers:
                assert follower.next()[1] == "full"
            writes, reached = [], []
            for n in range(args.changes):
                mode = ("suspended", "review", "full")[n % 3]
                start = time.perf_counter()
                store.set_mode(ModeRecord(agent=AGENT, mode=mode, since=utc_now(),
                                          actor="bench", reason=f"change {n}"))
                writes.append(time.perf_counter() - start)
                arrivals = [follower.next() for follower in followers]
                assert all(line == mode for _, line in arrivals), arrivals
                reached.append(max(at for at, _ in arrivals) - start)
        finally:
            for follower in followers:
                follower.process.kill()
                follower.process.wait()
        baseline = process([sys.executable, "-m", "gates", "mode", AGENT], 5, cwd=root, env=env)
        workspace = Workspace.find(root)
        before = timed(lambda: read_mode(workspace, AGENT), 11)
        entries = len(store.audit(AGENT))
        for _ in range(args.entries):  # what a gate adds: one verdict entry of the agent
            store.append(actor="bench", action="verdict", agent=AGENT, reason="gate pass",
                         detail={"outcome": "pass", "sha256": "0" * 64})
        after = timed(lambda: read_mode(workspace, AGENT), 11)
        checks = check_growth(running.new_database(), Path(folder) / "restored",
                              [int(n) for n in args.gates.split(",") if n])

    write, to_all = Figure(tuple(writes)), Figure(tuple(reached))
    print(f"containment to {args.followers} followers (LISTEN/NOTIFY), {args.changes} mode "
          f"changes on a local PostgreSQL")
    print(f"  write (one transaction)      {write.ms()}")
    print(f"  write to every follower      {to_all.ms()}  "
          f"{'under' if to_all.high < 1 else 'NOT under'} one second at the worst")
    print(f"  baseline: one `reinstate mode` process {baseline.ms()}  "
          f"(follow/poll-once ratio {to_all.median / baseline.median:.3f})")
    print(f"  mode read in process, {entries} entries of the agent: {before.ms()}; after "
          f"{args.entries} more: {after.ms()} ({after.median / before.median:.2f}x "
          f"[{after.low / before.high:.2f}–{after.high / before.low:.2f}]; flat: 1x)")
    if checks:
        first = checks[0][1]
        for gates, cpu, wall in checks:
            print(f"  check in process after {gates:>5} stored gates: {cpu.ms()} CPU, "
                  f"{wall.ms()} wall ({cpu.median / first.median:.2f}x the CPU after 1; "
                  f"flat: 1x)")
    print(machine())
    return 0


def check_growth(url: str, into: Path,
                 sizes: list[int]) -> list[tuple[int, Figure, Figure]]:
    """``check`` in process (CPU, wall) on the restored example on ``url``, after its one
    gate and after each of ``sizes`` stored gates."""
    if not sizes:
        return []
    from gates import PostgresStore, Workspace, check
    from gates._demo import apply_fix, lay_out
    from tests.helpers import restored

    root = lay_out(into)
    config = root / "reinstate.toml"
    config.write_text(f'{config.read_text()}\n[state]\nurl = "{url}"\n')
    workspace = Workspace.find(root)
    restored(workspace, apply_fix)
    store = PostgresStore(url)
    verdict = store.latest_verdict(AGENT)
    assert verdict is not None
    found, stored = [], 1
    for size in [1, *sizes]:
        for _ in range(size - stored):  # the gate's own verdict again: it stays current
            store.save_verdict(verdict.model_copy(deep=True), "bench")
        stored = max(stored, size)
        assert check(workspace, AGENT).cleared
        found.append((size, timed(lambda: check(workspace, AGENT), 11, clock=time.process_time),
                      timed(lambda: check(workspace, AGENT), 11)))
    return found


if __name__ == "__main__":
    sys.exit(main())
