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
#: "Beyond these settings" swaps whole settings between the losses, which assumes that each setting's seed
#: noise is alike in both losses. Where one loss's seeds split between collapse and success at a setting (a
#: bimodal collapse), its seed variance there is hundreds of times that of its other settings; such a
#: setting is found by an F test of its seed variance against the loss's other settings
#: (:func:`supcon_ray.stats.paired.uneven_noise`), each cell at this level divided by the number of cells
#: (Bonferroni), so under even normal seed noise about this share of factors lose their "beyond" answer.
NOISE_LEVEL = 0.01
#: ... and only where it matters: the variance of that mean above this many times the variance of the
#: other settings' means. Not tuned on the split: with *normal* seed noise in one loss at one setting the
#: swap test keeps its level up to a noise variance of the mean about 8 times the setting effects'
#: variance (6 x 4: 0.044 at 8x, 0.064 at 16x, 0.095 at 32x; 12 x 3: 0.059, 0.063, 0.092), so 1 flags
#: well inside that; a split's noise is 15 to 35 times the spread. docs/method.md gives the rule's rates
#: on split truths at one, two and both ends' settings, in one loss or both, at 3, 4 and 6 seeds.
NOISE_TO_SPREAD = 1.0
