"""Bounds for rates measured on simulated draws (false claims, coverage), derived from the binomial
standard error of the draw count rather than picked by eye.

A bound is the nominal rate plus ``Z`` standard errors of ``draws`` Bernoulli trials at the nominal
rate: a correct method fails it with probability about 0.6% (``Z = 2.5``), and every seeded test is
deterministic besides. A bound is only worth asserting if a clearly broken method fails it, so
:func:`assert_rate_at_most` also checks that the draw count is large enough for a *doubled* error rate
(0.10 for alpha = 0.05) to fail the bound with probability at least 0.9; a test with too few draws
fails on that, whatever the method does.
"""

from __future__ import annotations

import math

from scipy import stats as sps

#: Standard errors of the draw count between the nominal rate and the bound.
Z = 2.5
#: The chance that a doubled error rate must have of failing the bound.
POWER = 0.9


def se(rate: float, draws: int) -> float:
    """Binomial standard error of a rate measured on ``draws`` independent draws."""
    return math.sqrt(rate * (1 - rate) / draws)


def rate_bound(nominal: float, draws: int) -> float:
    """The largest measured rate that a method at ``nominal`` passes."""
    return nominal + Z * se(nominal, draws)


def catches_doubling(nominal: float, draws: int) -> bool:
    """Whether a method whose true rate is ``2 * nominal`` fails :func:`rate_bound` with probability >= POWER."""
    passes = sps.binom.cdf(math.floor(rate_bound(nominal, draws) * draws + 1e-9), draws, 2 * nominal)
    return passes <= 1 - POWER


def assert_rate_at_most(rate: float, draws: int, nominal: float = 0.05, what: str = "false claims") -> None:
    """``rate`` (measured on ``draws`` draws) is within binomial noise of ``nominal`` or below it."""
    assert catches_doubling(nominal, draws), f"{draws} draws cannot tell {nominal} from {2 * nominal}: draw more"
    assert rate <= rate_bound(nominal, draws), f"{what} {rate:.4f} > {rate_bound(nominal, draws):.4f} ({draws} draws)"


def assert_coverage(coverage: float, draws: int, nominal: float = 0.95) -> None:
    """Coverage at least ``nominal`` less ``Z`` standard errors (for both ends, see :func:`assert_between`)."""
    low = nominal - Z * se(nominal, draws)
    assert coverage >= low, f"coverage {coverage:.4f} < {low:.4f} ({draws} draws)"


def assert_between(rate: float, low: float, high: float, what: str) -> None:
    """``low <= rate <= high``: a rate bounded on both sides (intervals too wide fail as well as too narrow)."""
    assert low <= rate <= high, f"{what} {rate:.4f} outside [{low:.4f}, {high:.4f}]"
