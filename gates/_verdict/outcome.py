"""A verdict's outcome, in a module of its own: the models that only name it (a
clearance, a read of a stored verdict) need not build the check results'."""

from __future__ import annotations

from typing import Literal

Outcome = Literal["pass", "fail", "error", "inconclusive"]
