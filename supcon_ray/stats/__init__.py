"""Statistics of stability studies, one module per concept (no HTML, no plotting).

* :mod:`.scoring`: which trials carry a score; status counts; the logit transform.
* :mod:`.variance`: seed noise and between-setting std per loss (variance components).
* :mod:`.settings`: alpha, design minimums and resampling sizes, named once.
* :mod:`.these_settings`: "for these settings": the spread of the settings tried (fixed effects),
  a studentised parametric bootstrap test and interval for the ratio.
* :mod:`.paired`: "beyond these settings": the paired, setting-level permutation test and its
  inverted interval (settings as a sample), and the check that seed noise is even enough for it.
* :mod:`.drop`: the second measure, the drop from the base (each loss's, their difference and ratio).
* :mod:`.drop_answer`: the drop over one entry or pooled over several, and the claims it supports.
* :mod:`.claims`: the claim names (one string enum).
* :mod:`.agreement`: agreement with the paper that can disagree (equivalence by two one-sided tests).
* :mod:`.multiplicity`: Holm's adjustment.
* :mod:`.divergence`: divergence counts and Fisher's exact test.
* :mod:`.tuning_curve`: expected best accuracy versus number of random configurations.
* :mod:`.importance`: fANOVA importance with seed spread and a permuted-metric baseline.
* :mod:`.tolerance`: the one resolution at which computed statistics are compared (no last-bit decisions).
* :mod:`.simulate`: studies with known truth, for calibration.
* :mod:`.power`: the design planner (power of both questions against settings x seeds).
"""

from .agreement import DEFAULT_EQUIVALENCE_RATIO, PAPER_FIG4A, Outcome
from .claims import Claim
from .drop import DropComparison, LossDrop, compare_drops, loss_drop
from .divergence import divergence_summary
from .multiplicity import holm
from .paired import PairedResult, compare, compare_pooled, uneven_noise
from .scoring import completed, logit, scored, status_counts
from .settings import ALPHA
from .these_settings import OneLossSpread, TheseSettingsResult, compare_these, spread_of_one
from .tuning_curve import expected_max, expected_max_section, expected_max_unbiased
from .variance import SettingTable, components

__all__ = ["ALPHA", "Claim", "DEFAULT_EQUIVALENCE_RATIO", "DropComparison", "LossDrop", "OneLossSpread",
           "Outcome", "PAPER_FIG4A", "PairedResult", "SettingTable", "TheseSettingsResult",
           "compare", "compare_drops", "compare_pooled", "compare_these", "completed", "components",
           "divergence_summary", "expected_max", "expected_max_section", "expected_max_unbiased", "holm", "logit",
           "loss_drop", "scored", "spread_of_one", "status_counts", "uneven_noise"]
