"""Cases held packed: thousands of validated cases without thousands of models in memory.

A validated case's models cost about 7 KB; pickled, the same case is about 1 KB, and
deflated against the suite's first case (:class:`Packer`) about 50 bytes. A suite of
10,000 case files held as models was a third of ``reinstate eval``'s peak memory, though
each case is read only while its trials run. :class:`PackedCases` holds each case as the
bytes of its validated model and unpacks a fresh model whenever an item is read, which
nothing else holds once the reader lets it go. Unpacking restores the model without
validating it again (it was validated when loaded), so it costs far less than the load.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Generic, NamedTuple, TypeVar, overload

from evalsuite._case import EvalCase
from evalsuite._criteria import predicates_named
from evalsuite._pickled import Packer

C = TypeVar("C", bound=EvalCase)

# One for every case this process packs: PackedCases share packed bytes (select, slices,
# joins), so the dictionary they unpack with is the process's, not a collection's.
_CASES = Packer()


class CaseKey(NamedTuple):
    """What is read of every case without unpacking it."""

    id: str
    """The case's id."""
    tags: tuple[str, ...]
    """Its input types."""
    trials: int | None
    """Its own number of trials, when it sets one."""


class PackedCases(Sequence[C], Generic[C]):
    """Validated cases, in order, each held as bytes and unpacked when read.

    A case whose criteria call a predicate is held as its model: the predicate is a
    function bound to it from the workspace's code, which bytes cannot carry.
    """

    def __init__(self, cases: Iterable[C] = ()) -> None:
        self._items: list[bytes | C] = []
        self._keys: list[CaseKey] = []
        for case in cases:
            self.append(case)

    def append(self, case: C, *, pack: bool = True) -> None:
        """Add a validated case at the end, packed unless it calls a predicate (or
        ``pack`` is false: a case the caller holds anyway)."""
        key = CaseKey(case.id, tuple(case.tags), case.trials)
        if not pack or predicates_named(case.expect):
            self._items.append(case)
        else:
            # Bytes this process packs itself and only it unpacks (never read from a file).
            self._items.append(_CASES.pack(case))
        self._keys.append(key)

    @property
    def keys(self) -> Sequence[CaseKey]:
        """Each case's id, input types and trials, without unpacking any."""
        return tuple(self._keys)

    @property
    def ids(self) -> list[str]:
        """Each case's id, in order, without unpacking any."""
        return [k.id for k in self._keys]

    def select(self, keep: Callable[[CaseKey], bool]) -> PackedCases[C]:
        """The cases whose key ``keep`` accepts, in order, sharing their packed bytes."""
        chosen: PackedCases[C] = PackedCases()
        for item, key in zip(self._items, self._keys, strict=True):
            if keep(key):
                chosen._items.append(item)
                chosen._keys.append(key)
        return chosen

    def __add__(self, other: Iterable[C]) -> PackedCases[C]:
        """These cases, then ``other``'s (a plain sequence's models are held, not packed)."""
        joined: PackedCases[C] = self.select(lambda _: True)
        if isinstance(other, PackedCases):
            joined._items += other._items
            joined._keys += other._keys
        else:  # models the caller holds already: held as they are
            for case in other:
                joined.append(case, pack=False)
        return joined

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> C: ...

    @overload
    def __getitem__(self, index: slice) -> PackedCases[C]: ...

    def __getitem__(self, index: int | slice) -> C | PackedCases[C]:
        if isinstance(index, slice):
            part: PackedCases[C] = PackedCases()
            part._items, part._keys = self._items[index], self._keys[index]
            return part
        return _unpacked(self._items[index])

    def __iter__(self) -> Iterator[C]:
        for item in self._items:
            yield _unpacked(item)


def _unpacked(item: bytes | C) -> C:
    if isinstance(item, bytes):
        case: C = _CASES.unpack(item)
        return case
    return item


def case_keys(cases: Sequence[EvalCase]) -> Sequence[CaseKey]:
    """Each case's id, input types and trials; read without unpacking from packed cases."""
    if isinstance(cases, PackedCases):
        return cases.keys
    return [CaseKey(c.id, tuple(c.tags), c.trials) for c in cases]
