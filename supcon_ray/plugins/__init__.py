"""Your own losses, encoders and datasets under the same protocol as the built-in ones.

A plugin is a Python module that registers names with the decorators below; a study file lists it
under ``plugins:`` (an importable module name, a path relative to the study file such as
``../examples/poly_loss.py``, or the name of an entry point in the group ``supcon_ray.plugins`` that
an installed package declares). The study's driver, every trial process and every Ray Train worker
load it; the report, the planner and the analysis never do (what they need is in the recorded data).
Each module file's bytes enter the study's fingerprint, so an edited plugin is never resumed into a
folder its old version started. ``examples/poly_loss.py`` is a complete plugin; the README's
"Your own method" shows its study file.
"""

from ._load import ENTRY_POINT_GROUP, PluginSource, activate, digests, load_plugins, resolve
from ._register import PluginError, register_dataset, register_encoder, register_loss

__all__ = [
    "ENTRY_POINT_GROUP",
    "PluginError",
    "PluginSource",
    "activate",
    "digests",
    "load_plugins",
    "register_dataset",
    "register_encoder",
    "register_loss",
    "resolve",
]
