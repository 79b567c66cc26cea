"""The renderers' name for :func:`gates._visible.visible`, which lives outside this package so
that ``reinstate check`` (which loads no report) can use it too."""

from __future__ import annotations

from gates._visible import visible

__all__ = ["visible"]
