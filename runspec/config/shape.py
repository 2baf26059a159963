"""What a model's shape comes to, torch-free: its label ('4L×128 mla+moe4x2'), its parameters
by part, the weights a token is multiplied by and the training FLOPs per token, from the kinds'
own counts (``zoo/<family>/<kind>/spec.py``). A test checks every figure against the built model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from zoo.kind import Regime

if TYPE_CHECKING:
    from runspec.config.schema import ModelConfig


# -- whole-model figures (torch-free) ---------------------------------------------------------

def padded_vocab(vocab_size: int) -> int:
    """The embedding table is rounded up to a multiple of 64 (faster matmuls); never-seen ids
    are simply never targets."""
    return ((vocab_size + 63) // 64) * 64


def model_label(m: ModelConfig) -> str:
    """'4L×128', with the kinds that are not the baseline: '4L×128 mla+moe4x2'."""
    plain_attention = m.attention.kind == "mha" and m.attention.pattern == "full" and not m.attention.rank
    parts = [x for x in (m.attention.label() if not plain_attention else "",
                         m.ffn.label() if m.ffn.kind != "dense" or m.ffn.rank else "",
                         m.block.label() if m.block.kind != "prenorm" else "") if x]
    return f"{m.n_layer}L×{m.d_model}" + (" " + "+".join(parts) if parts else "")


def count_params(m: ModelConfig, vocab_size: int, conviction: bool = False, aux=None) -> dict[str, int]:
    """Parameters by part, as the built model has them: total, embedding (token and position
    tables), non-embedding, and (among those) the training-only auxiliary classifiers."""
    v, d = padded_vocab(vocab_size), m.d_model
    regime = Regime.of(m)
    ngpt = regime.ngpt
    n_tables = {"learned": 1, "learned_per_layer": m.n_layer}.get(m.pos, 0)
    embedding = v * d + n_tables * m.block_size * d
    layer = m.attention.params(m, regime) + m.ffn.params(m, regime) + m.block.params(m)
    norm = d * (2 if m.norm == "layernorm" and m.bias else 1)
    rest = m.n_layer * layer + (0 if ngpt else norm)
    if m.output_projection:
        rest += d * d + (d if m.bias else 0) + (norm if m.output_projection_norm else 0)
    if not m.tie_embeddings:
        rest += v * d
    if ngpt:
        rest += v  # s_z
    if conviction:
        rest += d + 1
    extra = 0
    if aux is not None and aux.enabled(m.n_layer):
        A, k = len(aux.chosen_layers(m.n_layer)), aux.targets
        extra = A * d * (2 if m.norm == "layernorm" and m.bias else 1) + A * d * (1 + k) * v + d * k * v
    rest += extra
    return {"total": embedding + rest, "embedding": embedding, "non_embedding": rest, "aux": extra}


def matmul_params(m: ModelConfig, vocab_size: int) -> int:
    """Weights each token is multiplied by in a forward pass (the LM head included, tied or not)."""
    d = m.d_model
    per_layer = m.attention.matmul_params(m) + m.ffn.matmul_params(m)
    n = m.n_layer * per_layer + padded_vocab(vocab_size) * d
    return n + (d * d if m.output_projection else 0)


def flops_per_token(m: ModelConfig, vocab_size: int) -> float:
    """Training FLOPs per token: 6 x the weights a token is multiplied by (fwd + bwd) + 3 x the
    forward attention FLOPs of each layer (PaLM appendix B, per kind)."""
    return 6.0 * matmul_params(m, vocab_size) + 3.0 * m.n_layer * m.attention.score_flops(m, m.block_size)
