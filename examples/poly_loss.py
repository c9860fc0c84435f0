"""A plugin loss: Poly-1 (Leng et al., "PolyLoss: A Polynomial Expansion Perspective of Classification
Loss Functions", ICLR 2022), a supervised classification loss that is not built into supcon-ray.

Poly-1 adds ``epsilon * (1 - p_t)`` to the cross-entropy, where ``p_t`` is the softmax probability of the
true class (the paper's Eq. 3); ``epsilon = 0`` is plain cross-entropy, and the paper reports gains on
ImageNet with ``epsilon = 2``. ``epsilon`` is this loss's own hyperparameter: a study sets it as
``options: {epsilon: 2.0}`` in ``base.poly1`` and varies it as the factor ``options.epsilon``.
"""

import torch.nn.functional as F

from supcon_ray.plugins import register_loss


@register_loss("poly1", kind="classifier", options={"epsilon": 1.0}, display="Poly-1")
def build(cfg):
    epsilon = float(cfg.option("epsilon"))

    def poly1(logits, labels):
        ce = F.cross_entropy(logits, labels, reduction="none")
        p_true = F.softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)
        return (ce + epsilon * (1.0 - p_true)).mean()

    return poly1
