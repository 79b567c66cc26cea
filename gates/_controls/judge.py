"""Deciding one recorded step through every control layer it passes: a tool call through
the permissions, review and acceptance layers, an output through review and acceptance,
each asked of :func:`gates._controls.replay.replay`, perhaps narrowed to one rule
(:mod:`gates._controls.rule`). The backtest decides every recorded step this way, and the
ratchet on the controls decides one rule as it was and as it is."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from evalsuite import History, Step, ToolCall
from gates._controls.files import Controls
from gates._controls.policy import Decision
from gates._controls.replay import ReplayLayer, replay
from gates._controls.rule import OneRule

CALL_LAYERS: tuple[ReplayLayer, ...] = ("permissions", "review", "acceptance")
OUTPUT_LAYERS: tuple[ReplayLayer, ...] = ("review", "acceptance")
STRENGTH = {"allow": 0, "review": 1, "deny": 2}
"""How strongly each effect holds a step back: deny over review over allow."""


@dataclass(frozen=True)
class Judge:
    """Controls to replay through, perhaps narrowed to one rule."""

    controls: Controls
    one: OneRule | None = None

    @classmethod
    def of(cls, controls: Controls, one: OneRule | None = None) -> Judge:
        """Replay ``controls``, or only ``one`` rule of them."""
        return cls(one.controls if one else controls, one)

    def decide(self, step: Step, history: History,
               context: Mapping[str, Any]) -> dict[str, Decision]:
        """Each layer's decision on a call or an output, by layer."""
        layers = CALL_LAYERS if isinstance(step, ToolCall) else OUTPUT_LAYERS
        decided: dict[str, Decision] = {
            layer: replay(step, layer, self.controls, history=history, context=context)
            for layer in layers}
        if self.one is not None:
            decided = {layer: self.one.only(d) for layer, d in decided.items()}
        return decided


def strongest(decisions: Mapping[str, Decision]) -> Decision:
    """The decision that wins: deny over review over allow, earlier layers first."""
    best: Decision | None = None
    for decision in decisions.values():
        if best is None or STRENGTH[decision.effect] > STRENGTH[best.effect]:
            best = decision
    assert best is not None
    return best
