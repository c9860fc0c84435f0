"""Statistics of stability studies, one module per concept (no HTML, no plotting).

* :mod:`.scoring`: which trials carry a score; status counts; the logit transform.
* :mod:`.variance`: seed noise and between-setting std per loss (variance components).
* :mod:`.settings`: alpha, design minimums and resampling sizes, named once.
* :mod:`.these_settings`: "for these settings": the spread of the settings tried (fixed effects),
  a studentised parametric bootstrap test and interval for the ratio.
* :mod:`.paired`: "beyond these settings": the paired, setting-level permutation test and its
  inverted interval (settings as a sample).
* :mod:`.multiplicity`: Holm's adjustment.
* :mod:`.divergence`: divergence counts and Fisher's exact test.
* :mod:`.tuning_curve`: expected best accuracy versus number of random configurations.
* :mod:`.importance`: fANOVA importance with seed spread and a permuted-metric baseline.
* :mod:`.base_margin`: how clearly stage 1 picked each loss's base (lead over the runner-up, its SE).
* :mod:`.tolerance`: the one resolution at which computed statistics are compared (no last-bit decisions).
* :mod:`.stability`: the per-factor and pooled analysis that the report formats.
* :mod:`.simulate`: studies with known truth, for calibration.
* :mod:`.power`: the design planner (power of both questions against settings x seeds).
"""

from .base_margin import base_margins
from .divergence import divergence_summary
from .multiplicity import holm
from .paired import PairedResult, compare
from .scoring import completed, logit, scored, status_counts
from .settings import ALPHA
from .stability import CLAIMS, QUESTIONS, analyze_factors, expected_max_section
from .these_settings import TheseSettingsResult, compare_these
from .tuning_curve import expected_max, expected_max_unbiased
from .variance import SettingTable, components

__all__ = ["ALPHA", "CLAIMS", "PairedResult", "QUESTIONS", "SettingTable", "TheseSettingsResult", "analyze_factors", "base_margins", "compare",
           "compare_these", "completed", "components",
           "divergence_summary", "expected_max", "expected_max_section", "expected_max_unbiased", "holm", "logit",
           "scored", "status_counts"]
