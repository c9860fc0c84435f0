"""Simulated studies with known truth, in the trials-table shape, for calibration and tests.

Model, per loss ``l``, setting ``s`` and seed ``r``: ``y = mu_l + a_ls + e_lsr``. The setting effects
of the two losses are paired and correlated (``pair_corr``): ``a_supcon = sigma * z1`` and
``a_ce = ratio * sigma * (c z1 + sqrt(1 - c^2) z2)``; seed noise ``e ~ N(0, seed_std^2)``. So the
true ``sigma_a(CE) / sigma_a(SupCon)`` is ``ratio``. A run diverges with probability ``p_diverge``
(per loss) and is then recorded at chance, as the engine records it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def simulate_factor(rng: np.random.Generator, n_settings: int, n_seeds: int, ratio: float = 1.0,
                    setting_std: float = 0.03, seed_std: float = 0.01, pair_corr: float = 0.5,
                    means: tuple[float, float] = (0.80, 0.85), p_diverge: tuple[float, float] = (0.0, 0.0),
                    factor: str = "factor", study: str = "sim", chance: float = 0.1) -> pd.DataFrame:
    """One factor of a one-at-a-time study: ``n_settings`` x ``n_seeds`` runs for CE and SupCon."""
    z1, z2 = rng.standard_normal(n_settings), rng.standard_normal(n_settings)
    effects = {"supcon": setting_std * z1,
               "ce": ratio * setting_std * (pair_corr * z1 + np.sqrt(1 - pair_corr**2) * z2)}
    rows = []
    for li, loss in enumerate(("ce", "supcon")):
        for s in range(n_settings):
            for r in range(n_seeds):
                y = means[li] + effects[loss][s] + seed_std * rng.standard_normal()
                diverged = rng.random() < p_diverge[li]
                rows.append({"study": study, "factor": factor, "loss": loss, "setting": f"{factor}={s}", "seed": r,
                             "status": "diverged" if diverged else "completed", "design": "one_factor",
                             "test_top1": chance if diverged else y, "val_top1": chance if diverged else y,
                             "chance_top1": chance, "trial_id": f"{study}-{factor}-{loss}-{s}-{r}"})
    return pd.DataFrame(rows)
