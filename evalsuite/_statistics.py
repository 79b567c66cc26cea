"""What repeated trials of a probabilistic agent can and cannot show.

A case passes on its pass rate against its threshold, but three lucky trials prove
little: the Wilson score interval says how sure the rate is, and when the interval
straddles the threshold the honest answer is "inconclusive, run more trials".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

Decision = Literal["pass", "fail", "inconclusive"]
MAX_TRIALS = 10_000


def z_for(confidence: float) -> float:
    """The two-sided normal quantile for a confidence level (1.96 for 0.95)."""
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(passed: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval for ``passed`` successes in ``trials``."""
    if trials == 0:
        return 0.0, 1.0
    z = z_for(confidence)
    p = passed / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class RateJudgement:
    """A case's trials judged against its threshold."""

    decision: Decision
    passed: int
    trials: int
    low: float
    high: float
    trials_needed: int | None = None
    """For an inconclusive case: trials that would decide it if the rate held."""

    @property
    def rate(self) -> float:
        """The observed pass rate."""
        return self.passed / self.trials if self.trials else 0.0


def trials_needed(rate: float, threshold: float, confidence: float) -> int | None:
    """The fewest trials at which ``rate`` would be told apart from ``threshold``."""
    if math.isclose(rate, threshold):
        return None
    for n in _doubling(1):
        low, high = wilson(round(rate * n), n, confidence)
        if (rate > threshold and low >= threshold) or (rate < threshold and high < threshold):
            return _smallest(rate, threshold, confidence, n // 2 + 1, n)
    return None


def _doubling(start: int) -> list[int]:
    out, n = [], start
    while n <= MAX_TRIALS:
        out.append(n)
        n *= 2
    return out


def _smallest(rate: float, threshold: float, confidence: float, low_n: int, high_n: int) -> int:
    for n in range(max(1, low_n), high_n + 1):
        low, high = wilson(round(rate * n), n, confidence)
        if (rate > threshold and low >= threshold) or (rate < threshold and high < threshold):
            return n
    return high_n


def judge_rate(passed: int, trials: int, threshold: float, *, every_trial: bool,
               confidence: float = 0.95) -> RateJudgement:
    """Pass, fail or inconclusive for ``passed`` of ``trials`` against ``threshold``.

    ``every_trial`` is pass^k: safety and regression cases pass only when every trial
    passed, and one failure fails them. Otherwise the Wilson interval decides: pass when
    its lower bound clears the threshold, fail when its upper bound is below it.
    """
    low, high = wilson(passed, trials, confidence)
    if trials == 0:
        return RateJudgement("inconclusive", 0, 0, low, high, trials_needed=None)
    if every_trial or threshold >= 1.0:
        decision: Decision = "pass" if passed == trials else "fail"
        return RateJudgement(decision, passed, trials, low, high)
    if low >= threshold:
        return RateJudgement("pass", passed, trials, low, high)
    if high < threshold:
        return RateJudgement("fail", passed, trials, low, high)
    return RateJudgement("inconclusive", passed, trials, low, high,
                         trials_needed=trials_needed(passed / trials, threshold, confidence))
