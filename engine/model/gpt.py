"""The GPT, composed from the families in this package. Every knob is a plain config value."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from engine.config import ConvictionConfig, ModelConfig
from engine.model.attention import CausalSelfAttention, LayerCache
from engine.model.heads import ConvictionHead, conviction_target
from engine.model.mlp import MLP
from engine.model.norms import make_norm
from engine.model.positions import LearnedPositions, Rotary


class Output(NamedTuple):
    logits: torch.Tensor  # (B, T, V)
    loss: torch.Tensor | None  # the training loss: ce_loss + weight * conviction_loss
    hidden: torch.Tensor  # final normed hidden state (B, T, d): what heads other than the LM head read
    lm_input: torch.Tensor  # the state fed to the LM head (after the output projection, if any)
    conviction: torch.Tensor | None = None  # (B, T) when the model has a conviction head
    ce_loss: torch.Tensor | None = None
    conviction_loss: torch.Tensor | None = None


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, head_dim: int, d_ff: int, rotary: Rotary | None):
        super().__init__()
        self.ln1 = make_norm(cfg.norm, cfg.d_model, cfg.bias)
        self.attn = CausalSelfAttention(cfg.d_model, cfg.n_head, head_dim, cfg.bias, cfg.dropout,
                                        cfg.qk_norm, cfg.norm, rotary)
        self.ln2 = make_norm(cfg.norm, cfg.d_model, cfg.bias)
        self.mlp = MLP(cfg.d_model, d_ff, cfg.activation, cfg.gated, cfg.bias, cfg.dropout)
        self.residual_scale = cfg.residual_scale

    def forward(self, x: torch.Tensor, cache: LayerCache | None = None) -> torch.Tensor:
        x = x + self.residual_scale * self.attn(self.ln1(x), cache)
        return x + self.residual_scale * self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int, head_dim: int, d_ff: int,
                 conviction: ConvictionConfig | None = None):
        super().__init__()
        self.cfg, self.vocab_size = cfg, vocab_size
        self.conviction_cfg = conviction if conviction is not None and conviction.enabled else None
        self.wte = nn.Embedding(vocab_size, cfg.d_model)
        n_tables = {"learned": 1, "learned_per_layer": cfg.n_layer}.get(cfg.pos, 0)
        self.wpe = LearnedPositions(n_tables, cfg.block_size, cfg.d_model) if n_tables else None
        rotary = Rotary(head_dim, cfg.block_size, cfg.rope_base) if cfg.pos == "rope" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, head_dim, d_ff, rotary) for _ in range(cfg.n_layer))
        self.ln_f = make_norm(cfg.norm, cfg.d_model, cfg.bias)
        self.output_projection = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias) if cfg.output_projection else None
        self.output_norm = make_norm(cfg.norm, cfg.d_model, cfg.bias) if cfg.output_projection_norm else None
        # The LM head carries no bias even with bias = true (as GPT-2): a bias would not tie.
        self.lm_head = nn.Linear(cfg.d_model, vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        self.conviction_head = ConvictionHead(cfg.d_model, self.conviction_cfg) if self.conviction_cfg else None
        self._init_weights()

    # -- init -------------------------------------------------------------------------------
    def _init_weights(self) -> None:
        std = self.cfg.init_std
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, 0.0, std)
        residual_outs = [m for m in self.modules() if getattr(m, "is_residual_out", False)]
        for m in residual_outs:
            if self.cfg.init == "scaled":  # GPT-2: keep the residual stream's variance flat in depth
                nn.init.normal_(m.weight, 0.0, std / math.sqrt(2 * self.cfg.n_layer))
            elif self.cfg.init == "zero_out":  # each block starts as the identity
                nn.init.zeros_(m.weight)
        if self.cfg.init == "zero_out" and not self.cfg.tie_embeddings:
            nn.init.zeros_(self.lm_head.weight)  # uniform predictions at step 0

    # -- sizes ------------------------------------------------------------------------------
    def num_params(self, non_embedding: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.wte.weight.numel()
            if self.wpe is not None:
                n -= sum(p.numel() for p in self.wpe.parameters())
        return n

    def flops_per_token(self) -> float:
        """Training FLOPs per token: 6 x (matmul weights, LM head included even when tied)
        + 12 x layers x context x attention width (PaLM appendix B)."""
        matmul = sum(m.weight.numel() for m in self.modules() if isinstance(m, nn.Linear))
        attn_width = self.blocks[0].attn.n_head * self.blocks[0].attn.head_dim
        return 6.0 * matmul + 12.0 * self.cfg.n_layer * self.cfg.block_size * attn_width

    # -- forward ----------------------------------------------------------------------------
    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                cache: list[LayerCache] | None = None) -> Output:
        B, T = idx.shape
        offset = cache[0].length if cache is not None else 0
        x = self.wte(idx)
        if self.wpe is not None:
            x = x + self.wpe(0, T, offset, idx.device)
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            if i > 0 and self.cfg.pos == "learned_per_layer":
                x = x + self.wpe(i, T, offset, idx.device)
            x = block(x, cache[i] if cache is not None else None)
        hidden = self.ln_f(x)
        lm_input = hidden
        if self.output_projection is not None:
            lm_input = self.output_projection(lm_input)
            if self.output_norm is not None:
                lm_input = self.output_norm(lm_input)
        logits = self.lm_head(lm_input)
        if self.cfg.logit_softcap > 0:
            c = self.cfg.logit_softcap
            logits = c * torch.tanh(logits / c)
        conviction = self.conviction_head(hidden) if self.conviction_head is not None else None
        if targets is None:
            return Output(logits, None, hidden, lm_input, conviction)
        ce = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        if conviction is None:
            return Output(logits, ce, hidden, lm_input, None, ce)
        target = conviction_target(self.conviction_cfg, self.lm_head.weight, lm_input, targets)
        valid = targets >= 0
        conv_loss = F.mse_loss(conviction[valid], target[valid])
        return Output(logits, ce + self.conviction_cfg.weight * conv_loss, hidden, lm_input, conviction, ce, conv_loss)

    def new_cache(self) -> list[LayerCache]:
        return [LayerCache() for _ in self.blocks]

    # -- grouping for optimizers and per-module gradient norms ------------------------------
    def module_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by the names used in debug/grad_norm/* (each parameter once)."""
        groups: dict[str, list[nn.Parameter]] = {"embeddings": [self.wte.weight], "blocks": []}
        if self.wpe is not None:
            groups["embeddings"] += list(self.wpe.parameters())
        groups["blocks"] = [p for b in self.blocks for p in b.parameters()] + list(self.ln_f.parameters())
        if self.output_projection is not None:
            groups["output_projection"] = list(self.output_projection.parameters())
            if self.output_norm is not None:
                groups["output_projection"] += list(self.output_norm.parameters())
        if not self.cfg.tie_embeddings:
            groups["lm_head"] = [self.lm_head.weight]
        if self.conviction_head is not None:
            groups["conviction_head"] = list(self.conviction_head.parameters())
        return groups


def padded_vocab(vocab_size: int) -> int:
    """Round the embedding table up to a multiple of 64 (faster matmuls); never-seen ids are
    simply never targets."""
    return ((vocab_size + 63) // 64) * 64


def build_model(cfg, vocab_size: int) -> GPT:
    """``cfg`` is a RunConfig; derived sizes (head_dim, d_ff) come from it."""
    return GPT(cfg.model, padded_vocab(vocab_size), cfg.head_dim, cfg.d_ff, cfg.conviction)
