"""The ``--json`` contract of ``python -m supcon_ray.report``: the report's numbers as JSON.

Every number is built once, by :func:`supcon_ray.analysis.build_numbers`, as a typed
:class:`~supcon_ray.analysis.ReportNumbers`; :func:`write_json` writes its :meth:`~supcon_ray.analysis.ReportNumbers.to_json`.
Several folders give the paper's Fig. 4a view: every factor side by side, in one multiple-comparison family.

Two questions per factor and pooled: the top-level keys of a factor answer "beyond these settings"
(settings as a sample; :mod:`supcon_ray.stats.paired`), ``these_settings`` answers "for these
settings" (the settings tried; :mod:`supcon_ray.stats.these_settings`). In ``these_settings`` an
open lower end is ``0``, an unbounded upper end is ``null``, and ``ratio`` is ``null`` when both
spreads are 0 (claim ``no_difference``) or only SupCon's is (then ``ci95`` says how large).

``--json FILE`` writes the numbers (NaN and infinity as null)::

    {"metric": str, "studies": [str],
     "factors": [{"study", "factor", "n_settings", "paired_settings", "unpaired_settings": [str],
                  "losses": {loss: {"completed", "diverged", "failed", "divergence_rate", "mean", "seed_std",
                                    "setting_std", "setting_std_ci95": [lo, hi],
                                    "settings": {setting: {"mean", "n", "ci95", "drop_from_best"}}}},
                  "ratio", "ci95": [lo, hi], "p_value", "p_adjusted", "min_p", "claim", "sentence",
                  "divergence_fisher_p", "question", "logit": {...}, "conservative": {...},
                  "these_settings": {"ratio", "ci95": [lo, hi], "p_value", "p_adjusted", "claim", "sentence",
                                     "n_settings", "losses": {loss: {"spread", "spread_ci95": [lo, hi]}},
                                     "agreement"?: {...}},
                  "baseline": "ce" | null, "method": loss, "uneven_noise"?: [setting],
                  "drop": {"measure", "ratio", "ci95", "difference": {"estimate", "ci95"} | null, "p_value",
                           "p_adjusted", "claim", "sentence", "n_settings", "reason"?,
                           "losses": {loss: {"drop", "ci95", "p_value", "base_setting", "worst", "worst_setting",
                                             "width_decades"}}, "agreement"?: {...}},
                  "primary": "spread" | "drop", "primary_agreement"?: {"outcome", "paper", "ci90", "margin",
                                                                        "tost_p", "tost_p_adjusted", "measure"}}],
     "overall": {"factors", "n_settings", "ratio", "ci95", "p_value", "p_adjusted", "claim", "sentence",
                 "question", "logit": {...}, "conservative": {...}, "these_settings": {...}, "drop": {...},
                 "primary"?, "primary_agreement"?},
     "analysis": {study: {"primary", "equivalence_ratio", "declared"}},
     "divergence": {"per_loss": {loss: {completed, diverged, failed, divergence_rate}}, "fisher_p", "odds_ratio"},
     "expected_max": {"metric", "available", "reason"?, "n_configs", "curves": {loss: {k, mean, low, high}}},
     "importance": {loss: {hyperparameter: {mean, sd, noise_mean, noise_sd, above_noise}}},
     "bases": {study: {loss: {..., "margin": {"best", "runner_up", "best_mean", "runner_up_mean", "margin",
                                              "se", "se_basis", "validation_images", "within_noise",
                                              "validation_images_source", "configurations", "within_noise_of_pick",
                                              "rule"}}}},
     "nuisance"?: {study: [{"loss", "factor", "setting", "pick": {key: value}, "mean", "configurations", "select",
                            "margin": {...} | null}]},
     "flags"?: [str],
     "cost"?: {study: {"phases": [{"phase", "trials", "trial_epochs", "trial_seconds", "device_seconds"}],
                       "trials", "trial_epochs", "trial_seconds", "device_seconds", "selection_share_seconds",
                       "selection_share_epochs", "disk_bytes"}},
     "notes": [str]}

Each setting's ``ci95`` is a t-interval over that setting's own seeds (null with one run). ``nuisance``
(studies with re-tuned nuisance hyperparameters) gives each setting's pick with its lead over the
runner-up of its search, as ``bases`` does for step 1.

Two-method entries compare ``method`` with ``baseline`` (ratio = baseline / method). A factor run by one
loss (``baseline`` null, ``method`` that loss) has no ratio: its ``these_settings`` and ``drop`` test "no
effect beyond seed noise" (claims ``moves`` / ``no_detectable_effect``) and keep the estimates under
``losses``. ``drop`` is the drop from the base (:mod:`supcon_ray.stats.drop_answer`), ``agreement`` the
outcome against the paper's direction (:mod:`supcon_ray.stats.agreement`), computed for each measure
and, as ``primary_agreement`` at the entry's top level, for its study's primary measure (``analysis``: as recorded in the
manifest on the first run; ``declared`` false for folders from before). ``uneven_noise`` names the
settings whose seed noise made the "beyond" swap test inapplicable (claim ``insufficient``). ``cost``
(study folders) is what each study's runs cost per phase, selection runs included, and its folder's
bytes on disk (:mod:`supcon_ray.results.cost`).

Exit status 2 when nothing can be reported (no trials, a missing folder, an unknown metric).
"""

from __future__ import annotations

import json
from pathlib import Path

from supcon_ray.analysis import ReportNumbers

__all__ = ["write_json"]


def write_json(numbers: ReportNumbers, path: str | Path) -> None:
    """Write the ``--json`` contract of ``numbers`` (NaN and infinity as ``null``) to ``path``."""
    Path(path).write_text(json.dumps(numbers.to_json(), indent=2))
