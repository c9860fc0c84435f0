"""How numbers are computed on the training device: mixed precision and deterministic kernels.

Mixed precision (``TrainConfig.amp``) runs forward passes under ``torch.autocast`` for the training
device, CPU included, so CPU bf16 autocast exercises the GPU code path; fp16 adds a gradient scaler.
``auto`` picks bf16 only where the GPU has it natively (V100 / T4 report emulated bf16 as supported,
and it is slow there), fp16 on other GPUs, and full precision on a CPU.
"""

from __future__ import annotations

import os

import torch

from supcon_ray.config import ConfigError, TrainConfig


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``TrainConfig.amp`` on ``device``, or None for full precision."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("amp: bf16 is not supported on this GPU; use --amp fp16 or --amp off")
    return torch.bfloat16 if amp == "bf16" else torch.float16


def amp_context(cfg: TrainConfig, device: torch.device) -> tuple[torch.autocast, torch.amp.GradScaler | None]:
    """(autocast context, gradient scaler or None) for the training device."""
    dtype = amp_dtype(cfg.amp, device)
    if dtype is None:
        return torch.autocast(device_type=device.type, enabled=False), None
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    return torch.autocast(device_type=device.type, dtype=dtype), scaler


def cuda_determinism(enabled: bool) -> None:
    """Deterministic (or autotuned) cuDNN / cuBLAS kernels for this process."""
    if enabled:
        # cuBLAS reads this when it creates its handle, i.e. before the first matmul on the device
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled
    # warn_only: an op with no deterministic CUDA kernel warns instead of stopping the run
    torch.use_deterministic_algorithms(enabled, warn_only=True)
