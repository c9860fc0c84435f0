"""Loader randomness is a function of (seed, epoch, sample); checkpoints every N epochs; loader defaults."""

import pytest
import torch
from torch.utils.data import DistributedSampler

from supcon_ray.data.augment import MultiView, build_transform
from supcon_ray.config import TrainConfig
from supcon_ray.data.datasets import load_dataset
from supcon_ray.engine.trainer import Session, train
from supcon_ray.data.loader import EpochIndices, SeededItems, epoch_loader, item_seed, loader_options


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _epochs(dataset, num_workers: int, world: int = 1, rank: int = 0, epochs=(0, 1)):
    sampler = EpochIndices(DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=0, drop_last=True))
    options = loader_options(num_workers, 1.0, torch.device("cpu"))
    loader = epoch_loader(dataset, sampler, 32, options)
    out = []
    for epoch in epochs:
        sampler.set_epoch(epoch)
        out.append([(x.clone(), y.clone()) for x, y in loader])
    return out


def test_views_depend_on_seed_epoch_and_index_only(digits):
    """0 or 2 persistent workers, any epoch order: the same views. A worker stream that carried over between
    epochs, or draws that depended on the worker, would change them; the epoch and the seed do change them."""
    tf = MultiView(build_transform("simaugment", 16, digits.mean, digits.std), 2)
    items = SeededItems(digits.train, tf, seed=3)
    inline = _epochs(items, 0)
    workers = _epochs(items, 2)
    for a, b in zip(inline, workers):
        assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert not torch.equal(inline[0][0][0], inline[1][0][0])  # another epoch, other views
    only_second = _epochs(items, 2, epochs=(1,))[0]  # a resumed run starting at epoch 1
    assert all(torch.equal(xa, xb) for (xa, _), (xb, _) in zip(inline[1], only_second))
    # the same item: same views at the same (epoch, index), whoever asks; other views under another seed
    assert torch.equal(items[(1, 5)][0], items[(1, 5)][0])
    assert not torch.equal(items[(1, 5)][0], SeededItems(digits.train, tf, seed=4)[(1, 5)][0])


def test_seeded_items_leave_the_callers_rng_alone(digits):
    items = SeededItems(digits.train, build_transform("simaugment", 16, digits.mean, digits.std), seed=0)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    items[(0, 1)]
    assert torch.equal(torch.rand(3), expected)


def test_item_seeds_differ_by_each_part():
    seeds = {item_seed(s, e, i) for s in range(4) for e in range(4) for i in range(64)}
    assert len(seeds) == 4 * 4 * 64 and all(0 <= s < 2**63 for s in seeds)


def test_loader_defaults_use_the_trial_cpus_on_a_gpu_only():
    gpu = loader_options(None, 12.0, torch.device("cuda", 0))
    assert gpu == {"num_workers": 11, "pin_memory": True, "persistent_workers": True, "prefetch_factor": 4}
    assert loader_options(None, 1.0, torch.device("cuda", 0))["num_workers"] == 1
    assert loader_options(None, 8.0, torch.device("cpu")) == {"num_workers": 0, "pin_memory": False}
    assert loader_options(3, 8.0, torch.device("cpu"))["num_workers"] == 3


@pytest.mark.parametrize("every", [2, 5])
def test_checkpoints_every_n_epochs_and_at_each_stage_end(every, digits):
    cfg = TrainConfig(loss="supcon", epochs=3, linear_epochs=3, linear_stage="cached", checkpoint_every=every,
                      dataset="digits", model="resnet-mini", batch_size=256, augment="basic")
    saved = []
    train(cfg, Session(lambda metrics, state: saved.append((metrics["stage"], metrics["epoch"], state is not None))), digits)
    expect = [(stage, e, e % every == 0 or e == 3) for stage in ("pretrain", "linear") for e in (1, 2, 3)]
    assert saved == expect
