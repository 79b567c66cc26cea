"""Objects held as small bytes while a suite runs: pickled, then deflated against the first.

Thousands of cases (or finished trials) of one suite pickle to bytes that are mostly the
same: class names, field names, the shape of the case. Deflated alone, a 1 KB case pickle
shrinks to about 600 bytes; deflated with the first object's pickle as zlib's preset
dictionary, to about 50, and faster. The bytes are only ever unpacked by the process that
packed them (never written to a file), so the dictionary lives as long as the packer.
"""

from __future__ import annotations

import pickle
import threading
import zlib
from typing import Any

# zlib reads at most its window of a preset dictionary: the tail of a longer first pickle.
_WINDOW = 32 * 1024


class Packer:
    """Packs objects into bytes and back; the first object packed is the dictionary."""

    def __init__(self) -> None:
        self._dictionary: bytes | None = None
        self._lock = threading.Lock()

    def pack(self, value: object) -> bytes:
        """``value`` pickled and deflated against this packer's dictionary."""
        raw = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
        dictionary = self._dictionary
        if dictionary is None:
            with self._lock:  # chosen once: every byte string packed unpacks with it
                if self._dictionary is None:
                    self._dictionary = raw[-_WINDOW:]
                dictionary = self._dictionary
        # Level 1: against the dictionary it packs as small as level 6 does, sooner.
        deflate = zlib.compressobj(1, zdict=dictionary)
        return deflate.compress(raw) + deflate.flush()

    def unpack(self, packed: bytes) -> Any:
        """The object :meth:`pack` packed into ``packed``.

        Only bytes this packer packed (in this process) are ever given, so unpickling them
        is safe.
        """
        inflate = zlib.decompressobj(zdict=self._dictionary or b"")
        return pickle.loads(inflate.decompress(packed) + inflate.flush())
