"""Statistics shared by the benchmarks (no SciPy needed)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class MannWhitney:
    """The Mann-Whitney U test of two samples, normal approximation with tie correction."""

    u: float
    """U of the first sample."""
    z: float
    """(U - its mean) / its standard deviation: signed, positive when the first sample ranks higher."""
    p: float
    """Two-sided p-value, with a continuity correction of 0.5."""


def mann_whitney(a: list[float], b: list[float]) -> MannWhitney:
    """Whether `a` and `b` come from one distribution, by ranks (ties get their mean rank)."""
    pooled = sorted([(v, 0) for v in a] + [(v, 1) for v in b])
    ranks = [0.0] * len(pooled)
    ties = 0.0
    i = 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        t = j - i + 1
        ties += t**3 - t
        i = j + 1
    n1, n2 = len(a), len(b)
    n = n1 + n2
    u = sum(rank for rank, (_, side) in zip(ranks, pooled, strict=True) if side == 0) - n1 * (n1 + 1) / 2
    mean = n1 * n2 / 2
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))) if n > 1 else 0.0
    if sigma == 0:
        return MannWhitney(u=u, z=0.0, p=1.0)
    corrected = max(abs(u - mean) - 0.5, 0) / sigma
    return MannWhitney(u=u, z=(u - mean) / sigma, p=math.erfc(corrected / math.sqrt(2)))
