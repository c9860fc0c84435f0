"""The name registries: readable without torch, every name built by its home module and no other
name built there, unknown names refused with the list of registered ones."""

import subprocess
import sys

import pytest

from supcon_ray import registry


def test_the_study_report_and_planner_layers_import_no_torch():
    code = ("import sys; import supcon_ray.study.validation, supcon_ray.study.protocol, supcon_ray.report, supcon_ray.power, supcon_ray.results.manifest; "
            "from supcon_ray.config import TrainConfig; TrainConfig(loss='ce', model='resnet50', augment='autoaugment'); "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'torchvision'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_every_registered_name_is_built_by_its_home_module_and_nothing_else_is():
    import torch

    from supcon_ray.data import augment
    from supcon_ray.networks import models, optim
    from supcon_ray.config import TrainConfig
    from supcon_ray.networks.losses import cross_entropy_loss
    from supcon_ray.engine.stages import contrastive_loss

    assert tuple(models.ENCODERS) == registry.MODELS.names()
    for name in registry.MODELS:
        assert models.ENCODERS[name].stem == registry.MODELS.meta(name, "stem")
        models.build_network(name, in_channels=3, num_classes=10)
    params = [torch.nn.Parameter(torch.zeros(2))]
    for name in registry.OPTIMIZERS:
        opt = optim.build_optimizer(name, params, lr=0.1)
        for schedule in registry.SCHEDULES:
            optim.build_scheduler(opt, schedule, total_steps=10)
    for name in registry.POLICIES:
        augment.policy_steps(name, 32)
        augment.build_transform(name, 32, (0.5,) * 3, (0.25,) * 3)
    feats, labels = torch.randn(4, 2, 8), torch.tensor([0, 1, 0, 1])
    for name in registry.LOSSES.where("kind", "contrastive"):
        cfg = TrainConfig(loss=name)
        loss = contrastive_loss(cfg)(feats, labels if registry.LOSSES.meta(name, "labels") else None)
        assert loss.ndim == 0 and torch.isfinite(loss)
    assert registry.LOSSES.where("kind", "classifier") == ("ce",)
    assert cross_entropy_loss(0.0)(torch.randn(4, 3), torch.tensor([0, 1, 2, 0])).ndim == 0
    for builder, kind in ((lambda n: models.build_network(n, in_channels=3, num_classes=10), "model"),
                          (lambda n: optim.build_optimizer(n, params, lr=0.1), "optimizer")):
        with pytest.raises(ValueError, match="must be one of"):
            builder(f"not-a-{kind}")


def test_unknown_names_are_refused_with_the_registered_ones():
    from supcon_ray.config import ConfigError, TrainConfig

    for reg in registry.REGISTRIES.values():
        with pytest.raises(ValueError, match=f"unknown {reg.kind} 'nope'; must be one of: {', '.join(reg.names())}"):
            reg.check("nope")
    with pytest.raises(Exception, match="must be one of: supcon, simclr, ce"):
        TrainConfig(loss="triplet")
    assert registry.LOSSES.where("kind", "contrastive") == ("supcon", "simclr")
    assert not issubclass(ConfigError, KeyError)
