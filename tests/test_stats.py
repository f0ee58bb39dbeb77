"""The ownership test against scipy and first principles."""

import math

import pytest
from scipy.stats import binomtest, ttest_1samp

from wmtool.errors import UserError
from wmtool.stats import (binomial_p_value, clopper_pearson_upper, ownership_test, queries_needed,
                          t_test_p_value)


@pytest.mark.parametrize("k,n,p0", [(0, 10, 0.1), (3, 10, 0.1), (10, 10, 0.1), (20, 100, 0.1), (57, 100, 0.5),
                                    (1, 1, 0.3), (30, 30, 0.05)])
def test_binomial_p_value_matches_scipy_binomtest(k, n, p0):
    assert binomial_p_value(k, n, p0) == pytest.approx(binomtest(k, n, p0, alternative="greater").pvalue, rel=1e-9)


def test_binomial_p_value_matches_the_exact_sum():
    k, n, p0 = 7, 25, 0.1
    exact = sum(math.comb(n, i) * p0**i * (1 - p0) ** (n - i) for i in range(k, n + 1))
    assert binomial_p_value(k, n, p0) == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize("k,n,p0", [(5, 40, 0.1), (12, 40, 0.1), (25, 50, 0.4)])
def test_t_test_matches_scipy(k, n, p0):
    outcomes = [1.0] * k + [0.0] * (n - k)
    assert t_test_p_value(k, n, p0) == pytest.approx(ttest_1samp(outcomes, p0, alternative="greater").pvalue)


def test_t_test_without_variance_decides_by_the_mean():
    assert t_test_p_value(30, 30, 0.1) == 0.0
    assert t_test_p_value(0, 30, 0.1) == 1.0


def test_ownership_decision_follows_alpha():
    strong = ownership_test(30, 100, 0.1, alpha=0.01)
    assert strong.claimed and strong.p_value < 0.01 and strong.success_rate == 0.3
    weak = ownership_test(12, 100, 0.1, alpha=0.01)
    assert not weak.claimed and weak.p_value > 0.01


def test_ownership_test_refuses_bad_alpha_and_null():
    with pytest.raises(UserError):
        ownership_test(5, 10, 0.1, alpha=1.5)
    with pytest.raises(UserError):
        ownership_test(5, 10, 1.0)


@pytest.mark.parametrize("test", ["binomial", "ttest"])
def test_queries_needed_is_the_smallest_that_claims(test):
    n = queries_needed(0.5, 0.1, alpha=0.05, test=test)
    assert n is not None
    from wmtool.stats import p_value

    assert p_value(math.floor(0.5 * n + 1e-9), n, 0.1, test) < 0.05
    assert all(p_value(math.floor(0.5 * m + 1e-9), m, 0.1, test) >= 0.05 for m in range(1, n))


def test_queries_needed_grows_as_success_nears_the_null_rate():
    counts = [queries_needed(rate, 0.1, alpha=0.05) for rate in (0.9, 0.5, 0.3, 0.2, 0.15)]
    assert counts == sorted(counts)
    assert counts[-1] > 5 * counts[1]
    assert queries_needed(0.1, 0.1) is None


def test_clopper_pearson_upper_bound():
    # Zero successes in n trials: the bound solves (1 - p)^n = 1 - confidence.
    assert clopper_pearson_upper(0, 100, 0.99) == pytest.approx(1 - 0.01 ** (1 / 100))
    assert clopper_pearson_upper(50, 100, 0.99) > 0.5


def test_the_light_formulas_equal_scipy_stats():
    """stats.py computes its tails with scipy.special (scipy.stats costs half a second to import): the
    numbers must be scipy.stats' own."""
    import numpy as np
    from scipy.stats import beta, binom, ttest_1samp

    from wmtool.stats import binomial_p_value, clopper_pearson_upper, t_test_p_value

    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 400))
        k, p = int(rng.integers(0, n + 1)), float(rng.uniform(0.01, 0.9))
        assert binomial_p_value(k, n, p) == pytest.approx(binom.sf(k - 1, n, p), rel=1e-9, abs=1e-300)
        assert clopper_pearson_upper(k, n) == pytest.approx(beta.ppf(0.99, k + 1, n - k) if k < n else 1.0, rel=1e-9)
        if n >= 2 and 0 < k < n:
            outcomes = [1.0] * k + [0.0] * (n - k)
            expected = ttest_1samp(outcomes, p, alternative="greater").pvalue
            assert t_test_p_value(k, n, p) == pytest.approx(expected, rel=1e-7, abs=1e-300)


def test_fewest_queries_walk_equals_a_scan_of_scipys_tails():
    import numpy as np
    from scipy.stats import binom

    from wmtool.stats import queries_needed

    rng = np.random.default_rng(1)
    cases = [(1.0, 0.1), (0.5, 0.1), (0.3, 0.25), (0.11, 0.1), (0.9, 0.5), (0.6, 0.5)]
    cases += [(float(rng.uniform(0.05, 1)), float(rng.uniform(0.01, 0.6))) for _ in range(40)]
    for rate, null in cases:
        if rate <= null:
            continue
        n = np.arange(1, 20_001)
        hits = np.flatnonzero(binom.sf(np.floor(rate * n + 1e-9) - 1, n, null) < 0.01)
        expected = int(n[hits[0]]) if hits.size else None
        assert queries_needed(rate, null, limit=20_000) == expected, (rate, null)
