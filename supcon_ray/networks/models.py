"""ResNet encoders, the projection head and the linear classifier.

Encoders are built by name from :data:`ENCODERS` (one way to build each thing). The CIFAR stem is
a 3x3 stride-1 convolution with no max-pool, so 32x32 inputs keep their resolution into layer 1;
``resnet50-imagenet`` has the ImageNet stem (7x7 stride-2 convolution and a stride-2 max-pool,
as in the paper's ImageNet runs), which divides a 224x224 input by 4 before layer 1.
Residual blocks are torchvision's own ``BasicBlock`` / ``Bottleneck``.

The representation ``r`` that the projection head and the linear classifier see is the encoder
output, L2-normalised by default (``normalize_representation``): the paper normalises ``r`` to the
unit hypersphere for both, and so does its TensorFlow code. Cross-entropy training end to end uses
the raw encoder output (a normalised input would cap the classifier's logits at the norm of its
weights, a change to the baseline the paper does not make).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from supcon_ray import registry


@dataclass(frozen=True)
class EncoderSpec:
    block: type[nn.Module]
    layers: tuple[int, int, int, int]
    widths: tuple[int, int, int, int]
    stem: str = "cifar"  # "cifar" or "imagenet"


ENCODERS: dict[str, EncoderSpec] = {
    "resnet-mini": EncoderSpec(BasicBlock, (2, 2, 2, 2), (16, 32, 64, 128)),
    # One block per stage: half of resnet-mini's compute, for CPU studies (docs/results.md: the regime table).
    "resnet-micro": EncoderSpec(BasicBlock, (1, 1, 1, 1), (16, 32, 64, 128)),
    "resnet18": EncoderSpec(BasicBlock, (2, 2, 2, 2), (64, 128, 256, 512)),
    "resnet34": EncoderSpec(BasicBlock, (3, 4, 6, 3), (64, 128, 256, 512)),
    "resnet50": EncoderSpec(Bottleneck, (3, 4, 6, 3), (64, 128, 256, 512)),
    "resnet50-imagenet": EncoderSpec(Bottleneck, (3, 4, 6, 3), (64, 128, 256, 512), stem="imagenet"),
}
MODELS = tuple(ENCODERS)


class ResNetEncoder(nn.Module):
    """ResNet trunk with the spec's stem; ``forward`` returns pooled features ``[batch, out_dim]``."""

    def __init__(self, spec: EncoderSpec, in_channels: int = 3) -> None:
        super().__init__()
        self.inplanes = spec.widths[0]
        if spec.stem == "imagenet":
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, self.inplanes, 7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(self.inplanes),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, self.inplanes, 3, stride=1, padding=1, bias=False),
                nn.BatchNorm2d(self.inplanes),
                nn.ReLU(inplace=True),
            )
        self.layers = nn.Sequential(
            *(self._make_layer(spec.block, w, n, stride=1 if i == 0 else 2)
              for i, (w, n) in enumerate(zip(spec.widths, spec.layers)))
        )
        self.out_dim = spec.widths[-1] * spec.block.expansion
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block: type[nn.Module], planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


class ProjectionHead(nn.Module):
    """MLP (hidden = encoder width, ReLU) to ``out_dim``, L2-normalised output."""

    def __init__(self, in_dim: int, out_dim: int = 128) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(inplace=True), nn.Linear(in_dim, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(x), dim=1)


class L2Normalize(nn.Module):
    """``x / ||x||`` along dim 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1)


class Network(nn.Module):
    """Encoder + projection head + linear classifier, sharing one encoder.

    Each training stage wraps the part it trains (``contrastive()``, ``end_to_end()`` or
    ``classifier``) so that DistributedDataParallel only sees parameters that get gradients.
    """

    def __init__(self, model: str, in_channels: int, num_classes: int, proj_dim: int = 128,
                 normalize_representation: bool = True, cfg=None) -> None:
        super().__init__()
        self.normalize_representation = normalize_representation
        self.encoder = ResNetEncoder(ENCODERS[model], in_channels) if model in ENCODERS else \
            plugin_encoder(model, in_channels, cfg)
        self.head = ProjectionHead(self.encoder.out_dim, proj_dim)
        self.classifier = nn.Linear(self.encoder.out_dim, num_classes)

    def representation(self) -> nn.Module:
        """Images -> ``r``: the encoder output, L2-normalised when ``normalize_representation``."""
        return nn.Sequential(self.encoder, L2Normalize()) if self.normalize_representation else self.encoder

    def contrastive(self) -> nn.Sequential:
        """Images -> normalised projections (SupCon / SimCLR pre-training)."""
        return nn.Sequential(self.representation(), self.head)

    def linear_probe(self) -> nn.Sequential:
        """Images -> class logits through ``r`` (what the linear stage of a contrastive run trains)."""
        return nn.Sequential(self.representation(), self.classifier)

    def end_to_end(self) -> nn.Sequential:
        """Images -> class logits (cross-entropy training, and evaluation)."""
        return nn.Sequential(self.encoder, self.classifier)


def plugin_encoder(model: str, in_channels: int, cfg=None) -> nn.Module:
    """A plugin's encoder (:func:`supcon_ray.plugins.register_encoder`), checked against its contract:
    an ``nn.Module`` with a positive integer ``out_dim``."""
    from supcon_ray.plugins import PluginError

    registry.MODELS.check(model)
    module, builder = registry.MODELS.meta(model, "module"), registry.MODELS.meta(model, "builder")
    if builder is None:
        raise ValueError(f"model {model!r} has no encoder in {__name__}")
    encoder = builder(cfg, in_channels)
    dim = getattr(encoder, "out_dim", None)
    if not isinstance(encoder, nn.Module) or not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise PluginError(f"plugin module {module!r}: encoder {model!r}: its builder must return an nn.Module with a "
                          f"positive int attribute out_dim (the feature width); got {type(encoder).__name__} with "
                          f"out_dim={dim!r}")
    return encoder


def build_network(model: str, in_channels: int, num_classes: int, proj_dim: int = 128,
                  normalize_representation: bool = True, cfg=None) -> Network:
    """Build the network for ``model`` (a registered encoder: :data:`MODELS`, or a plugin's, which is
    built from the run's ``cfg``)."""
    return Network(model, in_channels, num_classes, proj_dim, normalize_representation, cfg)
