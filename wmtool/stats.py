"""The ownership test: is the suspect's watermark success rate above what non-watermarked models reach?"""

from __future__ import annotations

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


def binomial_p_value(successes: int, trials: int, null_rate: float) -> float:
    """One-sided exact binomial p-value: P(X ≥ successes) for X ~ Binomial(trials, null_rate)."""
    from scipy.stats import binom

    if trials == 0:
        return 1.0
    return float(binom.sf(successes - 1, trials, null_rate))


def t_test_p_value(successes: int, trials: int, null_rate: float) -> float:
    """The EWE paper's one-sided one-sample T-test of the per-query outcomes against ``null_rate``.

    All outcomes equal give no variance: the p-value is then 0 when their mean exceeds the null rate
    and 1 otherwise. It relies on the central limit theorem, so the paper asks for ≥ 30 queries.
    """
    from scipy.stats import ttest_1samp

    if trials < 2:
        return 1.0
    if successes in (0, trials):
        return 0.0 if successes / trials > null_rate else 1.0
    outcomes = [1.0] * successes + [0.0] * (trials - successes)
    return float(ttest_1samp(outcomes, null_rate, alternative="greater").pvalue)


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
    import numpy as np
    from scipy.stats import binom, t

    if success_rate <= null_rate:
        return None
    n = np.arange(1, limit + 1)
    k = np.floor(success_rate * n + 1e-9)
    if test == "binomial":
        p = binom.sf(k - 1, n, null_rate)
    elif test == "ttest":
        mean = k / n
        with np.errstate(divide="ignore", invalid="ignore"):
            variance = (k * (1 - mean) ** 2 + (n - k) * mean**2) / (n - 1)
            statistic = (mean - null_rate) / np.sqrt(variance / n)
            p = np.where(variance > 0, t.sf(statistic, n - 1), np.where(mean > null_rate, 0.0, 1.0))
        p[n < 2] = 1.0
    else:
        raise UserError(f"unknown test {test!r}; use {' or '.join(TESTS)}")
    hits = np.flatnonzero(p < alpha)
    return int(n[hits[0]]) if hits.size else None


def clopper_pearson_upper(successes: int, trials: int, confidence: float = 0.99) -> float:
    """The one-sided Clopper–Pearson upper confidence bound of a binomial proportion."""
    from scipy.stats import beta

    if trials == 0 or successes >= trials:
        return 1.0
    return float(beta.ppf(confidence, successes + 1, trials - successes))
