"""The study layer: study files validated into a :class:`Study`, planned into trials, and the protocol's
steps (tune each loss's base, then the factors, then replicates).

One module per concept, each importing only those above it in this list (no cycles):

* :mod:`.values`: the configuration algebra (settings, plugin options ``options.<name>``, values relative
  to the base ``x0.1``, which keys a loss uses);
* :mod:`.grids`: grid generators for a factor's settings;
* :mod:`.schema`: the study file's pydantic models and the constants they own;
* :mod:`.bases`: each loss's base configuration, and each factor's base setting;
* :mod:`.sampling`: configurations drawn up front with Optuna (grid, random, QMC);
* :mod:`.validation`: loading a study file (its plugins first) and the checks across its blocks;
* :mod:`.trials`: one planned trial (:class:`TrialSpec`, its :class:`Phase` and id) and step 2's ordinary trials;
* :mod:`.margins`: how clearly the protocol picked (a pick's lead over the runner-up of its search);
* :mod:`.protocol`: the protocol's :class:`Step` s, each planned from the decisions before it, then decided.

The names below are imported lazily (:mod:`supcon_ray.exports`); none of them imports torch, and Optuna
only when a design is drawn.
"""

from supcon_ray.exports import exports

__all__ = [
    "ANALYSIS_KEYS",
    "Design",
    "Distribution",
    "EXECUTION_KEYS",
    "Phase",
    "STEPS",
    "Step",
    "Study",
    "TrialSpec",
    "analysis_settings",
    "applies_to",
    "at_own_size",
    "base_config",
    "base_margins",
    "base_settings",
    "default_baseline",
    "draw_design",
    "load_study",
    "make_spec",
    "margin_sentence",
    "nuisance_margins",
    "optuna_space",
    "plan",
    "plan_trials",
    "sample_design",
    "setting_values",
    "source_text",
    "space_for",
    "study_as_yaml",
    "study_from_dict",
    "tpe_spec",
    "train_config",
    "trial_id",
    "within_noise",
]
__getattr__, __dir__ = exports(__name__, {
    "ANALYSIS_KEYS": "schema",
    "EXECUTION_KEYS": "schema",
    "Distribution": "schema",
    "Study": "schema",
    "default_baseline": "schema",
    "analysis_settings": "schema",
    "study_as_yaml": "schema",
    "applies_to": "values",
    "setting_values": "values",
    "space_for": "values",
    "at_own_size": "bases",
    "base_config": "bases",
    "base_settings": "bases",
    "Design": "sampling",
    "draw_design": "sampling",
    "optuna_space": "sampling",
    "sample_design": "sampling",
    "load_study": "validation",
    "study_from_dict": "validation",
    "Phase": "trials",
    "TrialSpec": "trials",
    "make_spec": "trials",
    "plan_trials": "trials",
    "tpe_spec": "trials",
    "train_config": "trials",
    "trial_id": "trials",
    "base_margins": "margins",
    "margin_sentence": "margins",
    "nuisance_margins": "margins",
    "within_noise": "margins",
    "STEPS": "protocol",
    "Step": "protocol",
    "plan": "protocol",
    "source_text": "protocol",
})
