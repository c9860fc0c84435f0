"""Statistics of stability studies, one module per concept (no HTML, no plotting).

* :mod:`.scoring`: which trials carry a score; status counts; the logit transform.
* :mod:`.variance`: seed noise and between-setting std per loss (variance components).
* :mod:`.paired`: the paired, setting-level permutation test and its inverted interval.
* :mod:`.multiplicity`: Holm's adjustment.
* :mod:`.divergence`: divergence counts and Fisher's exact test.
* :mod:`.tuning_curve`: expected best accuracy versus number of random configurations.
* :mod:`.importance`: fANOVA importance with seed spread and a permuted-metric baseline.
* :mod:`.stability`: the per-factor and pooled analysis that the report formats.
* :mod:`.simulate`: studies with known truth, for calibration.
"""

from .divergence import divergence_summary
from .multiplicity import holm
from .paired import PairedResult, compare
from .scoring import completed, logit, scored, status_counts
from .stability import ALPHA, CLAIMS, analyze_factors, expected_max_section
from .tuning_curve import expected_max, expected_max_unbiased
from .variance import SettingTable, components

__all__ = ["ALPHA", "CLAIMS", "PairedResult", "SettingTable", "analyze_factors", "compare", "completed", "components",
           "divergence_summary", "expected_max", "expected_max_section", "expected_max_unbiased", "holm", "logit",
           "scored", "status_counts"]
