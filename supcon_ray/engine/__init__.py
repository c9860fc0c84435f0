"""The training engine: one loop for every loss (:class:`Loop`), the training stages of a run
(pre-training, linear read-out, end-to-end: :mod:`.stages`), checkpoints and run state.
"""

from supcon_ray.exports import exports

__all__ = [
    "Diverged",
    "Loop",
    "Session",
    "Stage",
    "Trainer",
    "stages_of",
    "train",
]
__getattr__, __dir__ = exports(__name__, {
    "Trainer": "trainer",
    "train": "trainer",
    "Session": "session",
    "Loop": "loop",
    "Diverged": "loop",
    "Stage": "stages",
    "stages_of": "stages",
})
