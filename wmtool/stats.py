"""The ownership test: is the suspect's watermark success rate above what non-watermarked models reach?"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from wmtool.errors import UserError

Test = Literal["binomial", "ttest"]
TESTS = ("binomial", "ttest")


@dataclass(frozen=True)
class OwnershipResult:
    """The outcome of one ownership test."""

    test: str
    successes: int
    queries: int
    success_rate: float
    null_rate: float
    p_value: float
    alpha: float
    claimed: bool

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return asdict(self)


def _log_pmf(n: int, k: int, p: float) -> float:
    """log P(X = k) for X ~ Binomial(n, p), 0 < p < 1."""
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p) + (n - k) * math.log1p(-p)


def _binomial_tail(k: int, n: int, p: float) -> float:
    """P(X ≥ k) for X ~ Binomial(n, p), summed exactly from the smaller side in log space.

    The same numbers as scipy.stats.binom.sf (a test holds them to 1e-9), without importing scipy, which
    would cost every black-box command a fifth of a second."""
    if k <= 0:
        return 1.0
    if k > n or p <= 0.0:
        return 0.0
    upper = k > n * p  # the terms fall away from the mode: sum the tail that does not hold it
    total, i, step = 0.0, (k if upper else k - 1), (1 if upper else -1)
    while 0 <= i <= n:
        term = math.exp(_log_pmf(n, i, p))
        total += term
        if term < total * 1e-17 and (i - n * p) * step > 0:
            break
        i += step
    return min(total, 1.0) if upper else max(1.0 - total, 0.0)


def _t_tail(statistic: Any, degrees: Any) -> Any:
    """P(T ≥ statistic) for Student's t with ``degrees`` of freedom (scipy.stats.t.sf)."""
    from scipy.special import stdtr

    return stdtr(degrees, -statistic)


def binomial_p_value(successes: int, trials: int, null_rate: float) -> float:
    """One-sided exact binomial p-value: P(X ≥ successes) for X ~ Binomial(trials, null_rate)."""
    if trials == 0:
        return 1.0
    return _binomial_tail(successes, trials, null_rate)


def t_test_p_value(successes: int, trials: int, null_rate: float) -> float:
    """The EWE paper's one-sided one-sample T-test of the per-query outcomes against ``null_rate``.

    All outcomes equal give no variance: the p-value is then 0 when their mean exceeds the null rate
    and 1 otherwise. It relies on the central limit theorem, so the paper asks for ≥ 30 queries.
    """
    import math

    if trials < 2:
        return 1.0
    if successes in (0, trials):
        return 0.0 if successes / trials > null_rate else 1.0
    mean = successes / trials
    variance = (successes * (1 - mean) ** 2 + (trials - successes) * mean**2) / (trials - 1)
    return float(_t_tail((mean - null_rate) / math.sqrt(variance / trials), trials - 1))


def p_value(successes: int, trials: int, null_rate: float, test: Test = "binomial") -> float:
    """The p-value of ``test`` (``binomial`` or ``ttest``)."""
    if test == "binomial":
        return binomial_p_value(successes, trials, null_rate)
    if test == "ttest":
        return t_test_p_value(successes, trials, null_rate)
    raise UserError(f"unknown test {test!r}; use {' or '.join(TESTS)}")


def ownership_test(successes: int, trials: int, null_rate: float, *, alpha: float = 0.01,
                   test: Test = "binomial") -> OwnershipResult:
    """Test H0 "the suspect's success rate is at most ``null_rate``" and claim ownership when p < alpha."""
    if not 0 < alpha < 1:
        raise UserError(f"--alpha must lie strictly between 0 and 1, got {alpha}")
    if not 0 <= null_rate < 1:
        raise UserError(f"the null rate must lie in [0, 1), got {null_rate}")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes ({successes}) must lie in 0..trials ({trials})")
    value = p_value(successes, trials, null_rate, test)
    rate = successes / trials if trials else 0.0
    return OwnershipResult(test, successes, trials, rate, null_rate, value, alpha, value < alpha)


def queries_needed(success_rate: float, null_rate: float, *, alpha: float = 0.01, test: Test = "binomial",
                   limit: int = 100_000) -> int | None:
    """The fewest queries with which a suspect of ``success_rate`` is claimed (EWE's Figure 4).

    A suspect answering ``n`` queries is taken to score ``floor(success_rate · n)``; None when
    no number up to ``limit`` suffices (a success rate at or below the null rate never does).
    """
    if success_rate <= null_rate:
        return None
    if test == "binomial":
        return _fewest_binomial_queries(success_rate, null_rate, alpha, limit)
    import numpy as np

    n = np.arange(1, limit + 1)
    k = np.floor(success_rate * n + 1e-9)
    if test == "ttest":
        mean = k / n
        with np.errstate(divide="ignore", invalid="ignore"):
            variance = (k * (1 - mean) ** 2 + (n - k) * mean**2) / (n - 1)
            statistic = (mean - null_rate) / np.sqrt(variance / n)
            p = np.where(variance > 0, _t_tail(statistic, n - 1), np.where(mean > null_rate, 0.0, 1.0))
        p[n < 2] = 1.0
    else:
        raise UserError(f"unknown test {test!r}; use {' or '.join(TESTS)}")
    hits = np.flatnonzero(p < alpha)
    return int(n[hits[0]]) if hits.size else None


def _fewest_binomial_queries(success_rate: float, null_rate: float, alpha: float, limit: int) -> int | None:
    """The fewest n ≤ limit with P(X_n ≥ k_n) < alpha, k_n = floor(success_rate · n), walking n upwards and
    keeping the tail exact with one term per step: one more trial adds P(X_n = k − 1) · p, and a larger
    k_n takes P(X_{n+1} = k_n) away."""
    if null_rate <= 0.0:
        return 1
    k, tail = 0, 1.0  # n = 0: P(X_0 ≥ 0) = 1
    for n in range(limit):
        tail += null_rate * math.exp(_log_pmf(n, k - 1, null_rate)) if 1 <= k <= n + 1 else 0.0
        while k < math.floor(success_rate * (n + 1) + 1e-9):
            tail -= math.exp(_log_pmf(n + 1, k, null_rate)) if k <= n + 1 else 0.0
            k += 1
        if tail < alpha:
            return n + 1
    return None


def clopper_pearson_upper(successes: int, trials: int, confidence: float = 0.99) -> float:
    """The one-sided Clopper–Pearson upper confidence bound of a binomial proportion."""
    from scipy.special import betaincinv

    if trials == 0 or successes >= trials:
        return 1.0
    return float(betaincinv(successes + 1, trials - successes, confidence))


def holm_adjusted(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (in the given order): rejecting every hypothesis whose adjusted
    p-value is at most α keeps the family-wise error rate at α, however the tests depend on each other."""
    order = sorted(range(len(p_values)), key=lambda index: p_values[index])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted
