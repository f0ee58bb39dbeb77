"""Reproduce the EWE paper's Figure 4: queries needed to claim ownership as the watermark success rate falls.

Run: python benchmarks/queries_needed.py   (pure computation, a second)
"""

from wmtool.stats import queries_needed

RATES = (0.1874, 0.2, 0.23, 0.3, 0.4, 0.5, 0.6568, 0.8, 1.0)


def main() -> None:
    """Print a markdown table for null rate 1/K = 0.1 (K = 10), as in the paper's Figure 4."""
    print("| success rate | T-test, 95% (paper's setting) | exact binomial, 95% | exact binomial, 99% (wmtool default) |")
    print("|---|---|---|---|")
    for rate in RATES:
        cells = [queries_needed(rate, 0.1, alpha=0.05, test="ttest"), queries_needed(rate, 0.1, alpha=0.05),
                 queries_needed(rate, 0.1, alpha=0.01)]
        print(f"| {rate:.4f} | " + " | ".join(str(c) for c in cells) + " |")


if __name__ == "__main__":
    main()
