"""The compressive transformer's memories: what leaves the memory is compressed rate to one
into the compressed memory, by a strided convolution (or a mean); the convolution learns from
the attention-reconstruction loss alone."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from zoo.memory.compressive.spec import CompressiveSpec
from zoo.memory.module import LayerState, MemoryModule
from zoo.modules import builds


@builds(CompressiveSpec)
class CompressiveMemory(MemoryModule):
    def __init__(self, m, spec: CompressiveSpec, layer: int):
        super().__init__(m, spec, layer)
        # kernel = stride = rate over the time axis, d_model channels in and out (the paper's best)
        self.conv = nn.Conv1d(m.d_model, m.d_model, spec.rate, stride=spec.rate) if spec.compress == "conv" else None
        if self.conv is not None:
            self.conv.param_roles = {"weight": "matrix", "bias": "bias"}

    def compress(self, old: torch.Tensor) -> torch.Tensor:
        """(B, n, d) -> (B, n / rate, d)."""
        r = self.spec.rate
        if self.conv is None:
            return old.reshape(old.size(0), old.size(1) // r, r, old.size(2)).mean(2)
        return self.conv(old.transpose(1, 2).to(self.conv.weight.dtype)).transpose(1, 2)

    def context(self, state: LayerState) -> torch.Tensor:
        return torch.cat((state.cmem, state.mem), dim=1)

    def roll(self, state: LayerState, x: torch.Tensor, attn: nn.Module | None) -> None:
        both = torch.cat((state.mem, x), dim=1)
        r = self.spec.rate
        gone = (both.size(1) - state.mem_len) // r * r  # whole groups leave (a short last segment keeps a few over)
        if gone <= 0:
            state.mem = both
            return
        state.mem = both[:, gone:]
        old = both[:, :gone]
        compressed = self.compress(old)
        if attn is not None and self.spec.recon_weight > 0:  # training: teach the compression
            state.losses["compress"] = self.reconstruction(attn, x, old, compressed)
        state.cmem = torch.cat((state.cmem, compressed.detach().to(state.cmem.dtype)), dim=1)[:, -state.cmem_len:]

    @staticmethod
    def reconstruction(attn: nn.Module, h: torch.Tensor, old: torch.Tensor, compressed: torch.Tensor) -> torch.Tensor:
        """||attn(h, old) - attn(h, compressed)||^2 (mean over elements): the layer's attention
        from this segment's states over the old states against over their compression, with
        the layer's weights held fixed, so only the compression learns from it (the paper's
        stop-gradient). Each is a causal pass over [memory ; segment] whose segment rows are kept."""
        fixed = {name: p.detach() for name, p in attn.named_parameters()}
        h = h.detach()

        def over(context: torch.Tensor) -> torch.Tensor:
            out = functional_call(attn, fixed, (torch.cat((context.to(h.dtype), h), dim=1),))
            return out[:, context.size(1):]

        with torch.no_grad():
            target = over(old.detach())
        return F.mse_loss(over(compressed).float(), target.float())
