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
                         m.block.label() if m.block.kind != "prenorm" else "",
                         m.memory.label(), m.shape.label()) if x]
    return f"{m.n_layer}L×{m.d_model}" + (" " + "+".join(parts) if parts else "")


def count_params(m: ModelConfig, vocab_size: int, conviction: bool = False, aux=None) -> dict[str, int]:
    """Parameters by part, as the built model has them: total, embedding (token and position
    tables), non-embedding, and (among those) the training-only auxiliary classifiers."""
    v, d = padded_vocab(vocab_size), m.d_model
    regime = Regime.of(m)
    ngpt = regime.ngpt
    n_tables = {"learned": 1, "learned_per_layer": m.n_layer}.get(m.pos, 0)
    embedding = v * d + n_tables * m.block_size * d
    layer = m.attention.params(m, regime) + m.ffn.params(m, regime) + m.block.params(m) + m.memory.params(m)
    if m.pos == "xl_relative":  # W_R and the u, v biases of each layer
        h, hd = m.attention.heads(m)
        layer += d * h * hd + 2 * h * hd
    norm = d * (2 if m.norm == "layernorm" and m.bias else 1)
    rest = m.n_layer * layer + (0 if ngpt else norm) + m.shape.params(m)
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


def _layer_shares(m: ModelConfig) -> list[float]:
    """The share of a token each layer processes: 1 at full length, 1/k in an hourglass level
    shortened k times."""
    return [1.0 / k for k in m.shape.factors(m)]


def matmul_params(m: ModelConfig, vocab_size: int) -> float:
    """Weights each token is multiplied by in a forward pass (the LM head included, tied or not);
    an hourglass's shortened layers count their share. A memory's states go through the
    attention's projections again each segment (keys and values of [memory ; segment]: the
    queries and outputs of the memory rows too, as computed here), so attention counts
    (segment + memory) / segment times."""
    d = m.d_model
    memory = m.memory.slots() / m.block_size
    attention = m.attention.matmul_params(m) * (1.0 + memory)
    per_layer = [(attention + m.ffn.matmul_params(m)) * share for share in _layer_shares(m)]
    n = sum(per_layer) + padded_vocab(vocab_size) * d + m.shape.params(m)
    return n + (d * d if m.output_projection else 0)


def flops_per_token(m: ModelConfig, vocab_size: int) -> float:
    """Training FLOPs per token: 6 x the weights a token is multiplied by (fwd + bwd) + 3 x the
    forward attention FLOPs of each layer (PaLM appendix B, per kind) over the keys it sees (its
    segment and memory; an hourglass level's shortened context, for its share of the tokens)."""
    scores = sum(share * m.attention.score_flops(m, int((m.block_size * share) + m.memory.slots()))
                 for share in _layer_shares(m))
    return 6.0 * matmul_params(m, vocab_size) + 3.0 * scores


def cache_per_token(m: ModelConfig) -> float:
    """Numbers a decoding keeps per token over all layers: each layer's KV cache, an hourglass's
    shortened layers for their share of the tokens."""
    return sum(share * m.attention.cache_per_token(m) for share in _layer_shares(m))

