"""SyncBatchNorm for data-parallel training: batch statistics over the global batch, on GPU and CPU.

On GPU this is PyTorch's ``nn.SyncBatchNorm`` (through timm's converter, which keeps the activation
fused into timm's ``BatchNormAct2d``). PyTorch has no CPU kernels for it, and DDP refuses it on CPU,
so for gloo on CPU :class:`CpuSyncBatchNorm` does the same arithmetic in plain tensor ops: two
all-reduces (sum and count, then the centred sum of squares) give the global mean and biased
variance as one process would compute them on the whole batch, and autograd all-reduces the
gradients flowing back through them.

State-dict keys are those of the original BatchNorm, so checkpoints load into unconverted models.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class _AllReduceSum(torch.autograd.Function):
    """``sum over ranks`` with its exact gradient: every rank's loss depends on every rank's
    contribution, so the incoming gradients are summed over ranks on the way back."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        out = tensor.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad, None


class CpuSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training-mode statistics span every process of a gloo group (CPU tensors).

    Not a subclass of ``nn.SyncBatchNorm``: DDP refuses those on CPU. Outside a process group,
    in eval mode, or in a world of one it is exactly ``BatchNorm``. A converted timm layer's
    ``drop``/``act`` run after normalising, as in ``BatchNormAct2d``.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group=None,
    ):
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.process_group = process_group

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _cpu_sync_forward(self, x) if self._needs_sync(x) else super().forward(x)
        if "drop" in self._modules:
            x = self.drop(x)
        if "act" in self._modules:
            x = self.act(x)
        return x

    def _needs_sync(self, x: torch.Tensor) -> bool:
        return (
            self.training
            and x.device.type == "cpu"
            and dist.is_available()
            and dist.is_initialized()
            and dist.get_world_size(self.process_group or dist.group.WORLD) > 1
        )


def _cpu_sync_forward(bn: CpuSyncBatchNorm, x: torch.Tensor) -> torch.Tensor:
    group = bn.process_group or dist.group.WORLD
    dims = [0, *range(2, x.dim())]
    shape = [1, x.size(1)] + [1] * (x.dim() - 2)
    local = torch.cat([x.sum(dims), x.new_tensor([x.numel() // x.size(1)])])
    total = _AllReduceSum.apply(local, group)
    count = total[-1].detach()
    mean = total[:-1] / count
    centred = x - mean.view(shape)
    # Two passes (mean first, then centred squares), as a single process computes the variance.
    var = _AllReduceSum.apply((centred * centred).sum(dims), group) / count
    y = centred * torch.rsqrt(var + bn.eps).view(shape)
    if bn.affine:
        y = y * bn.weight.view(shape) + bn.bias.view(shape)
    if bn.track_running_stats:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            factor = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
            bn.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
            unbiased = var.detach() * (count / (count - 1).clamp(min=1))
            bn.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
    return y


def convert_sync_batchnorm(module: nn.Module, device: torch.device, process_group=None) -> nn.Module:
    """Synchronise every BatchNorm in ``module`` across the process group, for training on ``device``.

    GPU: timm's converter to ``nn.SyncBatchNorm`` (it keeps ``BatchNormAct2d``'s activation).
    CPU: :class:`CpuSyncBatchNorm`. Parameters and buffers are shared with the old layers; returns
    ``module`` (or the new layer when ``module`` itself is a BatchNorm).
    """
    if device.type != "cpu":
        from timm.layers import convert_sync_batchnorm as timm_convert

        return timm_convert(module, process_group)
    return _convert_cpu(module, process_group)


def _convert_cpu(module: nn.Module, process_group) -> nn.Module:
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, CpuSyncBatchNorm):
        out = CpuSyncBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats, process_group
        )
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        out.running_mean, out.running_var = module.running_mean, module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.training = module.training
    for name, child in module.named_children():
        # A timm BatchNormAct2d's children are its ``drop`` and ``act``: the new layer keeps them.
        out.add_module(name, _convert_cpu(child, process_group))
    return out
