"""The study definition and its protocol: study files validated into a :class:`Study`, planned into
trials, and the protocol's steps (tune each loss's base, then the factors, then replicates).
"""

from supcon_ray.exports import exports

__all__ = [
    "STEPS",
    "Study",
    "TrialSpec",
    "base_config",
    "load_study",
    "make_spec",
    "plan",
    "plan_trials",
]
__getattr__, __dir__ = exports(__name__, {
    "Study": "definition",
    "load_study": "definition",
    "plan_trials": "definition",
    "TrialSpec": "definition",
    "make_spec": "definition",
    "base_config": "definition",
    "plan": "protocol",
    "STEPS": "protocol",
})
