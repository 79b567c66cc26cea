"""The run ids ingest has seen, kept in about 8 bytes a run, so a log of millions of runs
is counted in memory that hardly grows with it.

A set of the ids themselves cost about 90 bytes a run (the string and its slot in the
set): 13 MiB for the 143,000 runs of a million OTLP steps, all of ingest's growth with the
log's size. Here each id is kept as its 64-bit hash: the newest in a set, the older ones
merged, sorted, into an array of 8-byte integers that is searched by bisection.

Two ids with the same 64-bit hash would count as one run: with n runs that happens with a
chance of about n² / 2⁶⁵ (one in 37 million at a million runs), and it only lowers the run
count ingest reports; no step is left out, and nothing a gate decides reads this count.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left

_MERGE_AT = 16_384
"""The newest ids kept in the set before they are merged into the array; once the array
holds more than 8 times as many, an eighth of it: a merge copies the array, so merges are
spaced for their cost to stay in proportion to the runs counted."""


class SeenRuns:
    """Run ids seen so far, as their hashes (see the module's docstring)."""

    __slots__ = ("_newest", "_older")

    def __init__(self) -> None:
        self._older = array("q")  # sorted
        self._newest: set[int] = set()

    def __len__(self) -> int:
        return len(self._older) + len(self._newest)

    def add(self, run_id: str) -> bool:
        """Note ``run_id``; whether it was new."""
        key = hash(run_id)  # a str keeps its hash: no cost after the first time
        newest = self._newest
        if key in newest:
            return False
        older = self._older
        at = bisect_left(older, key)
        if at < len(older) and older[at] == key:
            return False
        newest.add(key)
        if len(newest) >= max(_MERGE_AT, len(older) >> 3):
            self._merge()
        return True

    def _merge(self) -> None:
        """Move the newest hashes into the sorted array: the older ones are copied in
        slices between where the newest go (in C, no integer object made for each)."""
        older, merged, start = self._older, array("q"), 0
        for key in sorted(self._newest):
            at = bisect_left(older, key, start)
            merged.extend(older[start:at])
            merged.append(key)
            start = at
        merged.extend(older[start:])
        self._older, self._newest = merged, set()
