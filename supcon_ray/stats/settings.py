"""The named settings of every statistic: significance level, design minimums, resampling sizes.

One place, so that the report, the planner, the calibration and the tests all use the same values.
"""

from __future__ import annotations

#: Significance level of every test, and 1 - confidence of every interval.
ALPHA = 0.05
#: A "these settings" comparison needs this many paired settings, each with this many completed seeds per loss.
MIN_SETTINGS_THESE = 2
MIN_SEEDS_THESE = 2
#: The "beyond these settings" permutation test can reach ALPHA only from this many paired settings
#: (its smallest two-sided p-value is 2 / 2^K: 0.031 at 6 settings, 0.0625 at 5).
MIN_SETTINGS_BEYOND = 6
#: Parametric-bootstrap draws of the "these settings" test (common random numbers for every tested value).
BOOTSTRAP_DRAWS = 2000
#: fANOVA evaluator seeds, and permutations of the metric for the importance p-value.
EVALUATOR_SEEDS = (0, 1, 2)
IMPORTANCE_PERMUTATIONS = 39
#: The largest standard deviation an accuracy in [0, 1] can have over a population of settings.
MAX_ACCURACY_STD = 0.5
#: "Beyond these settings" swaps whole settings between the losses, which assumes their seed noise is alike
#: at each setting. Where a loss's seed noise at a setting (the variance of its mean) exceeds this many times
#: its own median over the factor's settings *and* this share of the setting means' variance, seeds split
#: between collapse and success there (a bimodal collapse); no test at such seed counts was calibrated, so
#: the factor is "cannot tell: seed noise too uneven". Chosen by measurement (``benchmarks.calibration``):
#: it fires on 94% of bimodal collapses and on none of the normal-noise truths.
NOISE_CONCENTRATION = 20.0
NOISE_TO_SPREAD = 0.5
