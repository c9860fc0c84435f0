"""supcon-ray: is Supervised Contrastive Learning more stable to hyperparameters than cross-entropy?"""

__version__ = "0.1.0"
