"""LoRA adapters (Hu et al. 2021) and ReLoRA's restarts (Lialin et al. 2023).

W' = W0 + (alpha / r) B A with A (r x in) Kaiming-uniform and B (out x r) zero, so a model
with fresh adapters computes exactly what the base model does. ``LoRALinear`` is an
``nn.Linear`` with two more parameters: the base weight keeps its name (``...qkv.weight``),
so a plain checkpoint loads into it and merging gives back a plain ``nn.Linear``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class LoRALinear(nn.Linear):
    param_roles = {"lora_A": "adapter", "lora_B": "adapter"}

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float):
        super().__init__(base.in_features, base.out_features, bias=base.bias is not None,
                         device=base.weight.device, dtype=base.weight.dtype)
        self.weight = base.weight  # the same Parameter objects: the base is not copied
        self.bias = base.bias
        if getattr(base, "is_residual_out", False):
            self.is_residual_out = True
        self.rank, self.alpha = rank, alpha
        self.scaling = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        self.lora_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)
        a = self.lora_dropout(x) @ self.lora_A.to(x.dtype).t()
        return out + (a @ self.lora_B.to(x.dtype).t()) * self.scaling

    @torch.no_grad()
    def reset_adapters(self, generator: torch.Generator | None = None) -> None:
        """A Kaiming-uniform (a = sqrt(5), as nn.Linear), B zero: the update starts at zero."""
        bound = 1.0 / math.sqrt(self.in_features)  # kaiming_uniform with a = sqrt(5) on fan_in
        a = torch.empty(self.lora_A.shape).uniform_(-bound, bound, generator=generator)
        self.lora_A.copy_(a)
        self.lora_B.zero_()

    @torch.no_grad()
    def merge_into_weight(self) -> None:
        """W += (alpha / r) B A, computed in fp32."""
        delta = (self.lora_B.float() @ self.lora_A.float()) * self.scaling
        self.weight.add_(delta.to(self.weight.dtype))

    def to_linear(self) -> nn.Linear:
        """A plain nn.Linear holding this layer's (merged or base) weight and bias Parameters."""
        plain = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                          device="meta")
        plain.weight, plain.bias = self.weight, self.bias
        if getattr(self, "is_residual_out", False):
            plain.is_residual_out = True  # type: ignore[attr-defined]
        return plain


def _blocks_linears(model: nn.Module, targets: list[str]) -> list[tuple[nn.Module, str, nn.Linear]]:
    """(parent, attribute, layer) for every block matrix named in ``targets`` (qkv, proj, up...)."""
    out = []
    for name, module in model.named_modules():
        if not name.startswith("blocks."):
            continue
        for attr in targets:
            layer = module._modules.get(attr) if hasattr(module, "_modules") else None
            if isinstance(layer, nn.Linear) and name.count(".") == 2:  # blocks.<i>.attn / blocks.<i>.mlp
                out.append((module, attr, layer))
    return out


def add_adapters(model: nn.Module, targets: list[str], rank: int, alpha: float, dropout: float,
                 generator: torch.Generator | None = None) -> int:
    """Wrap every targeted block matrix; returns how many were wrapped."""
    found = _blocks_linears(model, targets)
    for parent, attr, layer in found:
        wrapped = LoRALinear(layer, rank, alpha, dropout)
        wrapped.reset_adapters(generator)
        setattr(parent, attr, wrapped)  # same key in _modules: the parameter order is kept
    return len(found)


def adapters(model: nn.Module) -> list[LoRALinear]:
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


@torch.no_grad()
def merge_adapters(model: nn.Module) -> int:
    """Fold every adapter into its weight and put the plain nn.Linear back; returns how many."""
    n = 0
    for name, module in list(model.named_modules()):
        for attr, child in list(module._modules.items()):
            if isinstance(child, LoRALinear):
                child.merge_into_weight()
                setattr(module, attr, child.to_linear())
                n += 1
    return n


@torch.no_grad()
def merge_and_reinit(model: nn.Module, generator: torch.Generator | None = None) -> list[nn.Parameter]:
    """ReLoRA's restart: W += (alpha/r) B A, then A fresh and B zero (the output is unchanged).
    Returns the adapter parameters, whose optimizer state the caller resets."""
    params = []
    for layer in adapters(model):
        layer.merge_into_weight()
        layer.reset_adapters(generator)
        params += [layer.lora_A, layer.lora_B]
    return params


def merge_state_dict(state: dict[str, torch.Tensor], scaling: dict[str, float] | float) -> dict[str, torch.Tensor]:
    """A checkpoint's state dict with adapters folded in and their keys gone (export, init
    from a run that still has adapters). ``scaling``: alpha / rank (one for all, or by prefix)."""
    out = dict(state)
    for key in [k for k in state if k.endswith(".lora_A")]:
        prefix = key[: -len(".lora_A")]
        a, b = out.pop(key), out.pop(prefix + ".lora_B")
        s = scaling[prefix] if isinstance(scaling, dict) else scaling
        w = out[prefix + ".weight"]
        out[prefix + ".weight"] = (w.float() + (b.float() @ a.float()) * s).to(w.dtype)
    return out
