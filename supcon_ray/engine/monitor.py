"""A per-epoch validation signal for contrastive pre-training: a k-nearest-neighbour classifier on the
frozen encoder's features, as self-supervised libraries monitor training (Wu et al. 2018's weighted
kNN: each of the ``k`` nearest training features by cosine similarity votes for its class with weight
``exp(similarity / temperature)``).

CE reports its validation top-1 every epoch; a contrastive loss's classifier is trained only after
pre-training, so without this a contrastive run has no value to stop or promote on mid-way. With
``monitor: knn`` the pre-training stage's epochs carry this score in ``val_top1`` (the epochs table);
the run's own ``val_top1`` and ``test_top1`` are still the linear probe's, measured once at the end.

The monitor never changes a result: it runs in eval mode under ``no_grad`` and puts back the random
generators' state (a DataLoader draws a seed from the global generator when it starts), so a run with
and without it trains bit-identical weights (``weights_digest``); ``monitor`` is therefore an
execution setting, left out of trial ids. Data-parallel: each rank encodes its shard of the bank and
of the validation images; the bank is gathered on every rank, and the counts are summed over ranks.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import Subset

from supcon_ray.data.datasets import Transformed
from supcon_ray.engine.evaluation import encode, gather

#: Neighbours that vote, and the temperature of their similarity weights.
K = 20
TEMPERATURE = 0.07
#: The training images in the bank, at most (every n-th image of the training split, so the bank is the
#: same for every run of a dataset, and its cost stays bounded on ImageNet).
MAX_BANK = 10_000
#: Queries scored per matrix product.
CHUNK = 1024


def _bank_indices(size: int) -> list[int]:
    step = max(1, -(-size // MAX_BANK))
    return list(range(0, size, step))[:MAX_BANK]


class _KeepRandomState:
    """Puts back torch's CPU and CUDA generator states on exit: what the monitor draws is never the run's."""

    def __enter__(self) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None

    def __exit__(self, *exc) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)


@torch.no_grad()
def knn_scores(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, num_classes: int,
               k: int = K, temperature: float = TEMPERATURE) -> torch.Tensor:
    """Each query's class scores: the ``k`` most cosine-similar bank features vote for their labels with
    weight ``exp(similarity / temperature)``. Ties in similarity go to the earlier bank item."""
    bank = F.normalize(bank.float(), dim=1)
    out = torch.zeros(len(queries), num_classes, dtype=torch.float32, device=queries.device)
    k = min(k, len(bank))
    for start in range(0, len(queries), CHUNK):
        q = F.normalize(queries[start:start + CHUNK].float(), dim=1)
        sim, idx = (q @ bank.T).topk(k, dim=1)
        out[start:start + CHUNK].scatter_add_(1, bank_labels[idx], torch.exp(sim / temperature))
    return out


def knn_top1(ctx) -> float:
    """The kNN validation top-1 of the run's current encoder (``ctx``: the run's
    :class:`~supcon_ray.engine.stages.RunContext`), counts summed over the ranks."""
    with _KeepRandomState():
        encoder = ctx.net.representation()
        was_training = encoder.training
        from supcon_ray.engine.precision import amp_context

        autocast, _ = amp_context(ctx.cfg, ctx.device)
        train = ctx.splits.train
        items = _bank_indices(len(train))
        bank = encode(encoder, Transformed(Subset(train, items), ctx.eval_transform), ctx.rank, ctx.world_size,
                      ctx.device, autocast, torch.float32, 0)
        bank = gather(bank, len(items), ctx.world_size)
        feats, labels = encode(encoder, Transformed(ctx.splits.val, ctx.eval_transform), ctx.rank, ctx.world_size,
                               ctx.device, autocast, torch.float32, 0)
        encoder.train(was_training)
        correct = (knn_scores(*bank, feats, ctx.splits.num_classes).argmax(1) == labels).sum().double() \
            if len(labels) else torch.zeros((), dtype=torch.float64, device=ctx.device)
        counts = torch.stack([correct.to(ctx.device), torch.tensor(float(len(labels)), dtype=torch.float64,
                                                                    device=ctx.device)])
        if ctx.world_size > 1:
            dist.all_reduce(counts)
        hit, total = counts.tolist()
    return hit / max(total, 1.0)
