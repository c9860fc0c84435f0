"""supcon-ray: is a training method robust to its hyperparameters? SupCon against cross-entropy, and your own.

The Python API (:mod:`supcon_ray.api`) is exported here, imported lazily (``import supcon_ray`` loads no
torch or Ray): :func:`load_study`, :func:`run`, :func:`read_trials`, :func:`analyze`; and
:mod:`supcon_ray.plugins` registers your own losses, encoders and datasets.
"""

from supcon_ray.exports import exports

__version__ = "0.1.0"
__all__ = ["Run", "analyze", "load_study", "read_trials", "run"]
__getattr__, __dir__ = exports(__name__, {name: "api" for name in __all__})
