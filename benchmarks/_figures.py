"""What every benchmark here prints the same way: a median with its spread, and the load.

A single timing on a shared 2-core machine says little; a median of several rounds with
the lowest and highest beside it says how far to trust it, and the load average at the
time says whether the machine was quiet.

Whole processes are started by a small launcher (``python -S``, a few MiB), which forks,
runs the command and reports its wall time and peak RSS from ``os.wait4``. On Linux a
child's peak RSS starts from its parent's at the fork and survives ``exec``, so measured
straight from a benchmark that has imported reinstate, every child would show at least the
benchmark's own size.

Children run with Python's bytecode cache on, as an installed package runs (pip compiles
it at install), even where the benchmark's own environment sets ``PYTHONDONTWRITEBYTECODE``:
otherwise every child would compile reinstate's modules from source and the figures would
time the compiler, not the product. A caller may still set it in ``env``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    """Seconds (or any unit) over several rounds: median, lowest, highest."""

    samples: tuple[float, ...]
    peak_rss_mib: float = 0.0
    cpu_samples: tuple[float, ...] = ()
    """A whole process's own CPU time (user + system) in each round, beside its wall time:
    what a busy machine's other work does not inflate."""

    @property
    def cpu(self) -> Figure:
        """The rounds' CPU times as a figure of their own."""
        return Figure(self.cpu_samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def low(self) -> float:
        return min(self.samples)

    @property
    def high(self) -> float:
        return max(self.samples)

    def ms(self, per: int = 1) -> str:
        """``median ms [low–high]``, divided by ``per`` (e.g. per case)."""
        scale = 1000 / per
        return (f"{self.median * scale:8.2f} ms [{self.low * scale:.2f}–"
                f"{self.high * scale:.2f}]")


def machine() -> str:
    """One line on where and under what load the figures were taken."""
    one, five, _ = os.getloadavg()
    return (f"machine: {os.cpu_count()} cores, load average {one:.2f} (1 min) "
            f"{five:.2f} (5 min) when measured")


def timed(function: Callable[[], object], rounds: int,
          clock: Callable[[], float] = time.perf_counter) -> Figure:
    """Time of ``function`` over ``rounds`` calls in this process: wall time, or with
    ``clock=time.process_time`` its CPU time (steadier on a busy machine)."""
    samples = []
    for _ in range(rounds):
        start = clock()
        function()
        samples.append(clock() - start)
    return Figure(tuple(samples))


_LAUNCHER = """
import os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    try:
        os.execvp(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - start, usage.ru_maxrss, os.waitstatus_to_exitcode(status),
      usage.ru_utime + usage.ru_stime)
"""


def process(command: Sequence[str], rounds: int, *, cwd: Path | None = None,
            env: Mapping[str, str] | None = None, check: bool = True) -> Figure:
    """Wall time, CPU time and peak RSS of ``command`` as a fresh child process, ``rounds``
    times.

    Output is discarded; with ``check`` a non-zero exit other than the gate's verdict
    codes 1 and 4 raises, so a broken command never passes for a fast one.
    """
    samples, cpu = [], []
    peak = 0.0
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    environment.update(env or {})
    for _ in range(rounds):
        launched = subprocess.run([sys.executable, "-S", "-c", _LAUNCHER, *command], cwd=cwd,
                                  env=environment, capture_output=True, text=True, check=False)
        try:
            seconds, rss_kib, code, cpu_seconds = launched.stdout.split()
        except ValueError:
            raise RuntimeError(f"could not time {' '.join(command)}: "
                               f"{launched.stderr[-2000:]}") from None
        if check and int(code) not in (0, 1, 4):
            raise RuntimeError(f"{' '.join(command)} exited {code}: {launched.stderr[-2000:]}")
        samples.append(float(seconds))
        cpu.append(float(cpu_seconds))
        peak = max(peak, int(rss_kib) / 1024)
    return Figure(tuple(samples), peak, tuple(cpu))
