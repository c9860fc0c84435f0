"""Losses: supervised contrastive (SupCon), self-supervised contrastive (SimCLR) and cross-entropy.

Notation follows Khosla et al., "Supervised Contrastive Learning" (NeurIPS 2020). For an anchor
``i`` with normalised feature ``z_i``, ``A(i)`` is every other sample in the contrast set and
``P(i)`` the members of ``A(i)`` with the anchor's label:

* ``variant="out"`` (Eq. 2, the paper's default):
  ``-(tau/tau_b) * 1/|P(i)| * sum_p log( exp(z_i.z_p/tau) / sum_{a in A(i)} exp(z_i.z_a/tau) )``
* ``variant="in"`` (Eq. 3):
  ``-(tau/tau_b) * log( 1/|P(i)| * sum_p exp(z_i.z_p/tau) / sum_{a in A(i)} exp(z_i.z_a/tau) )``

``labels=None`` makes every sample its own class, which is SimCLR's NT-Xent loss.

Contract of :class:`SupConLoss`:

* ``features`` is ``[batch, n_views, dim]``; it is L2-normalised inside (normalising an already
  normalised vector changes nothing), any ``n_views >= 1`` works.
* The loss computes in float32 (float64 inputs stay float64) with autocast turned off, so it gives
  the same value and gradient inside a bf16/fp16 autocast region as outside it.
* The loss is the mean over anchors that have at least one positive. An anchor without a positive
  (a class seen once with one view) contributes nothing; if no anchor has one the loss is 0.
* Under ``torch.distributed`` (``gather=True``, world size > 1) every worker's features and labels
  are all-gathered with a differentiable all-gather, so each local anchor is contrasted with the
  whole global batch and gradients flow back to the worker that produced each feature. Each worker
  returns ``world_size * (its anchors' share of the global loss)``: the average over workers is
  exactly the single-process loss on the concatenated batch, and because DistributedDataParallel
  averages gradients, parameter gradients equal the single-process ones (the same convention as a
  per-worker mean cross-entropy).

Two implementations give the same values and gradients:

* ``dense``: builds the ``anchors x contrast`` logit matrix and keeps it for backward.
* ``blockwise``: memory linear in the batch. The positive term of ``L_out`` needs no pairwise
  matrix (``sum_p z_i.z_p = z_i . (class feature sum) - z_i.z_i``); log-sum-exps are computed in
  row blocks by an autograd function whose forward also accumulates the gradient sums while each
  block is live, so backward needs no second pass and no block is stored.

``method="auto"`` picks dense only for tiny problems (batch <= 32 with 2 views), where it is faster.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from supcon_ray.config import AUTHORS_BASE_TEMPERATURE


#: ``method="auto"`` uses the dense form while anchors x contrast stays within this many entries.
#: From ``python -m benchmarks.loss`` on the project's 2-core CPU (docs/performance.md): dense is
#: faster only at batch 32 (1.8 vs 2.0 ms); blockwise wins from batch 128 (2.7 vs 3.4 ms) upwards.
AUTO_DENSE_MAX_ENTRIES = 64 * 64
#: ``tau_b`` of the PyTorch re-implementation (HobbitLong/SupContrast): the loss x ``tau / 0.07``.
REFERENCE_BASE_TEMPERATURE = 0.07
DEFAULT_BLOCK_ROWS = 256


def _allowed_mask(
    rows: slice,
    n_contrast: int,
    self_index: torch.Tensor,
    anchor_labels: torch.Tensor | None,
    contrast_labels: torch.Tensor | None,
    device: torch.device,
) -> torch.Tensor:
    """Boolean ``[rows, n_contrast]`` mask of the contrast samples each anchor may use."""
    idx = self_index[rows]
    if anchor_labels is None:
        allowed = torch.ones(idx.numel(), n_contrast, dtype=torch.bool, device=device)
    else:
        allowed = anchor_labels[rows, None] == contrast_labels[None, :]
    in_contrast = idx >= 0
    allowed[torch.nonzero(in_contrast).squeeze(1), idx[in_contrast]] = False
    return allowed


def _exclude_(logits, rows, self_index, all_in_contrast, anchor_labels, contrast_labels):
    """Set the excluded entries of one row block of logits to -inf, in place.

    Only the anchor itself is excluded unless labels restrict the columns to positives; that case
    needs no ``[rows, n]`` boolean mask, just one write per row (a scatter when every anchor is in
    the contrast set, as in :class:`SupConLoss`: no host synchronisation on a GPU).
    """
    if anchor_labels is not None:
        logits.masked_fill_(anchor_labels[rows, None] != contrast_labels[None, :], -math.inf)
    idx = self_index[rows]
    if all_in_contrast:
        logits.scatter_(1, idx[:, None], -math.inf)
    else:
        keep = idx >= 0
        logits[torch.nonzero(keep).squeeze(1), idx[keep]] = -math.inf
    return logits


def _needs_shift(scaled_anchors: torch.Tensor, contrast: torch.Tensor) -> bool:
    """Whether ``exp`` of the logits could overflow or underflow without subtracting a row maximum.

    ``|a_i . c_j| <= ||a_i|| ||c_j||`` bounds every logit. When ``exp`` of the bound, summed over the
    whole contrast set, stays finite and ``exp`` of minus the bound stays a normal number, the
    log-sum-exp needs no shift: one pass (the row maximum) and one subtraction fewer per block. With
    unit-norm features that holds for every temperature above about 0.013 in float32.
    """
    info = torch.finfo(contrast.dtype)
    limit = min(math.log(info.max) - math.log(max(contrast.shape[0], 1)), -math.log(info.tiny)) - 2.0
    bound = scaled_anchors.norm(dim=1).max() * contrast.norm(dim=1).max()
    return not bool(bound <= limit)


def _shifted_exp_(logits: torch.Tensor, shift: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``exp(logits - top)`` in place and the per-row ``top`` (zero when ``shift`` is False)."""
    if not shift:
        return logits.exp_(), logits.new_zeros(logits.shape[0])
    top = logits.amax(dim=1)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))  # rows with nothing allowed
    return logits.sub_(top[:, None]).exp_(), top


class _BlockwiseLogSumExp(torch.autograd.Function):
    """``out_i = log sum_{j allowed} exp(anchors_i . contrast_j * inv_temp)``, in row blocks.

    Allowed: every contrast sample but the anchor itself (``self_index``, -1 for an anchor outside
    the contrast set), and with labels given only those sharing the anchor's label. Only
    ``O(block_rows x n_contrast)`` memory is live at a time. Rows with nothing allowed give ``-inf``
    and a zero gradient. Computes in the inputs' dtype with autocast off (callers pass float32 or
    float64).

    Gradients: with ``softmax`` weights ``p_ij`` and upstream gradient ``g``,
    ``d/d anchors_i = g_i * inv_temp * sum_j p_ij contrast_j`` and
    ``d/d contrast_j = inv_temp * sum_i g_i p_ij anchors_i``. The caller passes the upstream
    gradient it expects (``expected_grad``: the loss is linear in these log-sum-exps, so it knows
    them), and forward accumulates both sums while each block is live: three block products and one
    ``exp`` pass per block, no second pass (the products are ~90% of the time on a CPU). The softmax
    normalisation is applied to the ``n x dim`` products, never to the block, and the row maximum is
    subtracted only when ``exp`` could overflow (:func:`_needs_shift`). Backward uses the saved sums
    when the actual upstream gradient is the expected one (up to a common factor, as with a scaled
    loss); otherwise it recomputes every block. The saved sums are ``O(n x dim)``.
    """

    @staticmethod
    def forward(ctx, anchors, contrast, self_index, anchor_labels, contrast_labels, inv_temp, block_rows,
                expected_grad):
        with torch.autocast(anchors.device.type, enabled=False):
            n = anchors.shape[0]
            out = anchors.new_empty(n)
            scaled = anchors * inv_temp
            shift = _needs_shift(scaled, contrast)
            all_in = bool((self_index >= 0).all())
            fused = expected_grad is not None and any(ctx.needs_input_grad[:2])
            if fused:
                mean_contrast = torch.empty_like(anchors)  # sum_j p_ij contrast_j, per anchor row
                weighted_anchors = torch.zeros_like(contrast)  # sum_i g_i p_ij anchors_i, per contrast row
            # one block buffer for every block: a fresh multi-megabyte tensor per block costs page faults
            buffer = anchors.new_empty(min(block_rows, n), contrast.shape[0])
            with torch.no_grad():
                for start in range(0, n, block_rows):
                    rows = slice(start, min(start + block_rows, n))
                    logits = torch.mm(scaled[rows], contrast.T, out=buffer[:rows.stop - start])
                    _exclude_(logits, rows, self_index, all_in, anchor_labels, contrast_labels)
                    probs, top = _shifted_exp_(logits, shift)  # unnormalised
                    if not fused:
                        out[rows] = probs.sum(dim=1).log_().add_(top)
                        continue
                    total = probs.sum(dim=1)
                    out[rows] = total.log().add_(top)
                    inv_total = 1.0 / total.clamp(min=torch.finfo(total.dtype).tiny)
                    mean_contrast[rows] = (probs @ contrast).mul_(inv_total[:, None])
                    weighted_anchors.addmm_(probs.T, anchors[rows] * (expected_grad[rows] * inv_total)[:, None])
            finite = torch.isfinite(out)
            if fused:
                ctx.save_for_backward(anchors, contrast, self_index, anchor_labels, contrast_labels, out,
                                      mean_contrast, weighted_anchors, torch.where(finite, expected_grad, 0.0))
            else:
                ctx.save_for_backward(anchors, contrast, self_index, anchor_labels, contrast_labels, out)
        ctx.fused, ctx.inv_temp, ctx.block_rows, ctx.all_in = fused, inv_temp, block_rows, all_in
        return out

    @staticmethod
    def backward(ctx, grad_out):
        anchors, contrast, self_index, anchor_labels, contrast_labels, out = ctx.saved_tensors[:6]
        inv_temp, block_rows = ctx.inv_temp, ctx.block_rows
        nones = (None,) * 6
        with torch.autocast(anchors.device.type, enabled=False):
            grad_out = grad_out.to(anchors.dtype)
            finite = torch.isfinite(out)
            weight = torch.where(finite, grad_out, torch.zeros_like(grad_out))
            if ctx.fused:
                mean_contrast, weighted_anchors, expected = ctx.saved_tensors[6:]
                factor = _common_factor(weight, expected)
                if factor is not None:
                    return (mean_contrast * (weight * inv_temp)[:, None], weighted_anchors * (factor * inv_temp)) + nones
            n = anchors.shape[0]
            scaled = anchors * inv_temp
            safe_out = torch.where(finite, out, torch.zeros_like(out))
            weight = weight * inv_temp
            grad_anchors = torch.empty_like(anchors)
            grad_contrast = torch.zeros_like(contrast)
            buffer = anchors.new_empty(min(block_rows, n), contrast.shape[0])
            for start in range(0, n, block_rows):
                rows = slice(start, min(start + block_rows, n))
                logits = torch.mm(scaled[rows], contrast.T, out=buffer[:rows.stop - start])
                _exclude_(logits, rows, self_index, ctx.all_in, anchor_labels, contrast_labels)
                probs = logits.sub_(safe_out[rows, None]).exp_()  # softmax over the allowed columns
                grad_anchors[rows] = (probs @ contrast) * weight[rows, None]
                grad_contrast.addmm_(probs.T, anchors[rows] * weight[rows, None])
        return (grad_anchors, grad_contrast) + nones


def _common_factor(actual: torch.Tensor, expected: torch.Tensor) -> float | None:
    """``c`` such that ``actual == c * expected`` (exactly for c = 1, else to 1e-6), or None."""
    if torch.equal(actual, expected):
        return 1.0
    nonzero = expected != 0
    if not nonzero.any() or not torch.equal(actual == 0, ~nonzero):
        return None
    ratio = actual[nonzero] / expected[nonzero]
    c = ratio[0]
    return float(c) if torch.allclose(ratio, c.expand_as(ratio), rtol=1e-6, atol=0.0) else None


class _AllGather(torch.autograd.Function):
    """Differentiable all-gather along dim 0: each worker gets the gradient of its own slice.

    Backward all-reduces the (contiguous) gradient of the gathered tensor and keeps this
    worker's slice. (torch.distributed.nn's all_gather is deprecated, and on gloo its
    all-to-all backward mishandles the non-contiguous gradients this loss produces.)
    """

    @staticmethod
    def forward(ctx, tensor):
        world = dist.get_world_size()
        out = tensor.new_empty((world * tensor.shape[0], *tensor.shape[1:]))
        dist.all_gather_into_tensor(out, tensor.contiguous())
        ctx.rank, ctx.rows = dist.get_rank(), tensor.shape[0]
        return out

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def _gather(features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """All-gather ``features`` (differentiably) and ``labels`` from every worker.

    Returns the global features, global labels, this worker's rank and the world size.
    Every worker must pass the same batch size.
    """
    world, rank = dist.get_world_size(), dist.get_rank()
    all_labels = labels.new_empty(world * labels.shape[0])
    dist.all_gather_into_tensor(all_labels, labels.contiguous())
    return _AllGather.apply(features), all_labels, rank, world


class SupConLoss(nn.Module):
    """Supervised contrastive loss (``variant`` "out" = Eq. 2, "in" = Eq. 3); SimCLR when ``labels`` is None.

    Args:
        temperature: ``tau`` in the paper; must be positive.
        base_temperature: ``tau_b``; the loss is scaled by ``tau / tau_b``. ``None`` means ``tau``
            (no scaling). Training runs pass :data:`AUTHORS_BASE_TEMPERATURE` (or their own) unless the run's
            ``temperature_scaling`` is off: the gradient of the unscaled loss grows like ``1 / tau``.
        variant: ``"out"`` (default, the paper's choice) or ``"in"``.
        contrast_mode: ``"all"`` (every view is an anchor) or ``"one"`` (only view 0 is).
        method: ``"auto"``, ``"dense"`` or ``"blockwise"``; same results, different memory.
        block_rows: anchor rows per block in the blockwise form.
        gather: contrast against the global batch when ``torch.distributed`` is initialised.
    """

    def __init__(
        self,
        temperature: float = 0.1,
        base_temperature: float | None = None,
        variant: Literal["out", "in"] = "out",
        contrast_mode: Literal["all", "one"] = "all",
        method: Literal["auto", "dense", "blockwise"] = "auto",
        block_rows: int = DEFAULT_BLOCK_ROWS,
        gather: bool = True,
    ) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if base_temperature is not None and not base_temperature > 0:
            raise ValueError(f"base_temperature must be > 0, got {base_temperature}")
        if variant not in ("out", "in"):
            raise ValueError(f"variant must be one of 'out', 'in'; got {variant!r}")
        if contrast_mode not in ("all", "one"):
            raise ValueError(f"contrast_mode must be one of 'all', 'one'; got {contrast_mode!r}")
        if method not in ("auto", "dense", "blockwise"):
            raise ValueError(f"method must be one of 'auto', 'dense', 'blockwise'; got {method!r}")
        if block_rows < 1:
            raise ValueError(f"block_rows must be >= 1, got {block_rows}")
        self.temperature = float(temperature)
        self.base_temperature = float(base_temperature if base_temperature is not None else temperature)
        self.variant = variant
        self.contrast_mode = contrast_mode
        self.method = method
        self.block_rows = int(block_rows)
        self.gather = gather

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, base_temperature={self.base_temperature}, "
            f"variant={self.variant!r}, contrast_mode={self.contrast_mode!r}, method={self.method!r}"
        )

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if features.dim() != 3:
            raise ValueError(
                f"features must have shape [batch, n_views, dim]; got shape {tuple(features.shape)}"
            )
        batch, n_views, _ = features.shape
        if labels is not None:
            labels = torch.as_tensor(labels, device=features.device)
            if labels.dim() != 1 or labels.shape[0] != batch:
                raise ValueError(
                    f"labels must have shape [batch] = [{batch}] to match features "
                    f"[batch, n_views, dim] = {list(features.shape)}; got shape {tuple(labels.shape)}"
                )
        # The loss always computes in (at least) float32 with autocast off: under bf16/fp16 autocast
        # the matmuls would otherwise run in low precision (or mix dtypes in the blockwise form).
        features = features.to(torch.promote_types(features.dtype, torch.float32))
        with torch.autocast(features.device.type, enabled=False):
            return self._loss(F.normalize(features, dim=-1), labels)

    def _loss(self, features: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        batch, n_views, _ = features.shape
        distributed = self.gather and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        ids = labels.long() if labels is not None else torch.arange(batch, device=features.device)
        if distributed:
            if labels is None:
                ids = ids + dist.get_rank() * batch  # every sample its own class, globally
            all_features, all_ids, rank, world = _gather(features, ids)
        else:
            all_features, all_ids, rank, world = features, ids, 0, 1
        global_batch = all_features.shape[0]

        # Contrast set: every view of every sample, view-major (index = view * global_batch + sample).
        contrast = all_features.transpose(0, 1).reshape(n_views * global_batch, -1)
        contrast_ids = all_ids.repeat(n_views)
        anchor_views = n_views if self.contrast_mode == "all" else 1
        anchors = features[:, :anchor_views].transpose(0, 1).reshape(anchor_views * batch, -1)
        anchor_ids = ids.repeat(anchor_views)
        view = torch.arange(anchor_views, device=features.device).repeat_interleave(batch)
        self_index = view * global_batch + rank * batch + torch.arange(batch, device=features.device).repeat(anchor_views)

        # |P(i)|: samples in the contrast set with the anchor's label, minus the anchor itself.
        _, inverse = torch.unique(torch.cat([contrast_ids, anchor_ids]), return_inverse=True)
        contrast_cls, anchor_cls = inverse[: contrast_ids.numel()], inverse[contrast_ids.numel():]
        counts = torch.bincount(contrast_cls)
        n_pos = counts[anchor_cls] - 1
        valid = n_pos > 0

        # d loss / d per-anchor term: exact constants, so the blockwise form knows its upstream gradient
        n_valid = valid.sum()
        if distributed:
            dist.all_reduce(n_valid)
        scale = (self.temperature / self.base_temperature) * world
        coef = valid.to(anchors.dtype) * (scale / n_valid.clamp(min=1).to(anchors.dtype))
        if self._use_dense(anchors.shape[0], contrast.shape[0]):
            per_anchor = self._dense(anchors, contrast, self_index, anchor_cls, contrast_cls, n_pos)
        else:
            per_anchor = self._blockwise(anchors, contrast, self_index, anchor_cls, contrast_cls, n_pos, coef)
        return (torch.where(valid, per_anchor, torch.zeros_like(per_anchor)) * coef).sum()

    def _use_dense(self, n_anchors: int, n_contrast: int) -> bool:
        if self.method == "auto":
            return n_anchors * n_contrast <= AUTO_DENSE_MAX_ENTRIES
        return self.method == "dense"

    def _dense(self, anchors, contrast, self_index, anchor_cls, contrast_cls, n_pos):
        """Per-anchor loss (without the tau/tau_b factor) from the full logit matrix."""
        logits = anchors @ contrast.T / self.temperature
        others = _allowed_mask(slice(None), contrast.shape[0], self_index, None, None, anchors.device)
        positives = others & (anchor_cls[:, None] == contrast_cls[None, :])
        log_prob = logits - torch.logsumexp(logits.masked_fill(~others, -math.inf), dim=1, keepdim=True)
        safe_n_pos = n_pos.clamp(min=1).to(logits.dtype)
        if self.variant == "out":
            return -(log_prob * positives).sum(1) / safe_n_pos
        pos_lse = torch.logsumexp(log_prob.masked_fill(~positives, -math.inf), dim=1)
        pos_lse = torch.where(n_pos > 0, pos_lse, torch.zeros_like(pos_lse))
        return -(pos_lse - safe_n_pos.log())

    def _blockwise(self, anchors, contrast, self_index, anchor_cls, contrast_cls, n_pos, coef):
        """Per-anchor loss (without the tau/tau_b factor) in memory linear in the batch.

        ``coef``: the gradient the final reduction sends to each anchor's term; the log-sum-exp over
        all others enters with +1, the one over positives (L_in) with -1.
        """
        inv_temp = 1.0 / self.temperature
        lse_all = _BlockwiseLogSumExp.apply(anchors, contrast, self_index, None, None, inv_temp, self.block_rows, coef)
        lse_all = torch.where(torch.isfinite(lse_all), lse_all, torch.zeros_like(lse_all))
        safe_n_pos = n_pos.clamp(min=1).to(anchors.dtype)
        if self.variant == "out":
            class_sums = torch.zeros(int(contrast_cls.max()) + 1, contrast.shape[1], dtype=contrast.dtype, device=contrast.device)
            class_sums = class_sums.index_add(0, contrast_cls, contrast)
            self_dot = (anchors * anchors).sum(1)
            # index_select, not class_sums[anchor_cls]: advanced indexing's backward (index_put with
            # accumulate) sums in a nondeterministic order on CPU, which breaks same-seed reproducibility
            pos_logit_sum = ((anchors * class_sums.index_select(0, anchor_cls)).sum(1) - self_dot) * inv_temp
            return -(pos_logit_sum / safe_n_pos - lse_all)
        lse_pos = _BlockwiseLogSumExp.apply(anchors, contrast, self_index, anchor_cls, contrast_cls, inv_temp,
                                            self.block_rows, -coef)
        lse_pos = torch.where(n_pos > 0, lse_pos, torch.zeros_like(lse_pos))
        return -(lse_pos - safe_n_pos.log() - lse_all)


def cross_entropy_loss(label_smoothing: float = 0.0) -> nn.CrossEntropyLoss:
    """The cross-entropy baseline: plain ``nn.CrossEntropyLoss`` with optional label smoothing."""
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    return nn.CrossEntropyLoss(label_smoothing=label_smoothing)


def plugin_objective(name: str, cfg) -> Callable[..., torch.Tensor]:
    """A plugin loss's function for run ``cfg``: its registered builder's result, checked against the
    contract (:func:`supcon_ray.plugins.register_loss`): the builder must return a callable, and each call
    a scalar tensor. A contrastive loss registered with ``batch="global"`` (the default) is given every worker's
    features and labels under ``torch.distributed`` (world size > 1). A broken contract raises
    :class:`~supcon_ray.plugins.PluginError` naming the module and the loss, which fails the trial with that
    message."""
    from supcon_ray import registry
    from supcon_ray.plugins import PluginError

    module, builder = registry.LOSSES.meta(name, "module"), registry.LOSSES.meta(name, "builder")
    whole = registry.LOSSES.meta(name, "kind") == "contrastive" and registry.LOSSES.meta(name, "batch", "global") == "global"
    fn = builder(cfg)
    if not callable(fn):
        raise PluginError(f"plugin module {module!r}: loss {name!r}: its builder returned {type(fn).__name__}, "
                          "not a callable loss(inputs, labels)")

    def checked(*args: torch.Tensor) -> torch.Tensor:
        if whole and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # every worker computes the loss of the global batch; _AllGather's backward sums the workers'
            # (equal) gradients of this worker's slice, and DDP's average divides by the world size again
            features, labels = args
            if labels is None:
                args = (_AllGather.apply(features), None)
            else:
                args = _gather(features, labels)[:2]
        out = fn(*args)
        if not isinstance(out, torch.Tensor) or out.dim() != 0:
            shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise PluginError(f"plugin module {module!r}: loss {name!r} returned {shape}, not a scalar tensor "
                              "(reduce it to one number, e.g. with .mean())")
        return out

    return checked
