"""The model zoo's kinds, torch-free: attention, feed-forward and block are each a *kind* chosen in
the config (``[model.attention] kind = "mla"``), with that kind's own keys. Each kind is a spec
dataclass that checks itself against the model's shape, and knows its parameter count, its
matmul FLOPs and its KV cache per token, so the cockpit can validate configs, size sweeps and
show a run's shape without torch. The modules that build from these specs are registered in
``engine/model/registry.py``; a test checks every spec's counts against its built module.

A new kind is a spec class here (added to ``FAMILIES``) plus a module registered for it; the
correctness suite (tests/test_zoo.py) then covers it and its combinations automatically.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar

if TYPE_CHECKING:
    from runspec.config.schema import ModelConfig

Need = Callable[[bool, str, str], None]  # need(ok, key, message): raise a ConfigError naming key unless ok

PATTERNS = ("full", "sliding", "strided", "dilated")


def _choices(*values: str) -> Any:
    return {"choices": values}


class ModuleKind:
    """What an attention or ffn kind says about the rest of the product, with the defaults a kind
    overrides: no matrices for LoRA, one plain row in ``cockpit bench modules``. (Whether it can
    grow, ``grow_refusal``, each family says for itself.)"""

    kind: str

    def lora_targets(self) -> list[str]:
        """The names of this kind's matrices that LoRA may adapt ([[stage]] lora.targets)."""
        return []

    @classmethod
    def bench_variants(cls, d_model: int, seq: int) -> list[tuple[str, dict]]:
        """The rows of ``cockpit bench modules`` for this kind: (row name, its [model.<family>] table)."""
        return [(cls.kind, {"kind": cls.kind})]


# -- attention ----------------------------------------------------------------------------------

@dataclass
class AttentionSpec(ModuleKind):
    """Keys every attention kind has. Head count and size are the model's (``[model] n_head``,
    ``head_dim``): each kind reads them as its baseline geometry."""

    family: ClassVar[str] = "attention"
    kind: str = "mha"
    # sparse patterns, for any kind (Child et al. 2019): which earlier keys a query may see
    pattern: str = field(default="full", metadata=_choices(*PATTERNS))
    window: int = 0  # sliding/strided: keys within this distance (self included); dilated: how many keys
    stride: int = 0  # strided: also every stride-th key further back; dilated: the step between keys
    rank: int = 0  # low-rank q/k/v and output projections (d -> rank -> out); 0: full rank

    def check(self, m: "ModelConfig", need: Need) -> None:
        w = "[model.attention]"
        need(self.rank >= 0, f"{w} rank", f"found {self.rank}, must be >= 0 (0 = full rank)")
        need(self.window >= 0 and self.stride >= 0, f"{w} window", "window and stride must be >= 0")
        if self.pattern == "full":
            need(self.window == 0 and self.stride == 0, f"{w} pattern",
                 "window/stride set but pattern = 'full'; choose pattern = 'sliding', 'strided' or 'dilated'")
        elif self.pattern == "sliding":
            need(self.window >= 1 and self.stride == 0, f"{w} window", "sliding needs window >= 1 (and no stride)")
        elif self.pattern == "strided":
            need(self.window >= 1 and self.stride >= 1, f"{w} stride", "strided needs window >= 1 and stride >= 1")
        elif self.pattern == "dilated":
            need(self.window >= 1 and self.stride >= 2, f"{w} stride", "dilated needs window >= 1 and stride >= 2")

    def heads(self, m: "ModelConfig") -> tuple[int, int]:
        """(heads, head size) of the baseline geometry."""
        return m.n_head, m.head_dim or m.d_model // m.n_head

    def _weights(self, d_in: int, d_out: int) -> int:
        return d_in * self.rank + self.rank * d_out if self.rank else d_in * d_out

    def _proj(self, d_in: int, d_out: int, bias: bool) -> int:
        return self._weights(d_in, d_out) + (d_out if bias else 0)

    def _qk_norm_params(self, m: "ModelConfig", dim: int) -> int:
        if not m.qk_norm:
            return 0
        return 2 * dim * (2 if m.norm == "layernorm" and m.bias else 1)

    # what every kind answers
    def params(self, m: "ModelConfig", regime: "Regime") -> int:
        """With nGPT's trainable s_qk under its full variant."""
        raise NotImplementedError

    def matmul_params(self, m: "ModelConfig") -> int:
        """Weights a token is multiplied by (no biases, gains or scales)."""
        raise NotImplementedError

    def cache_per_token(self, m: "ModelConfig") -> int:
        """Numbers kept in the KV cache per token and layer."""
        raise NotImplementedError

    def score_flops(self, m: "ModelConfig", context: int) -> float:
        """Forward FLOPs per token of the attention scores and their weighted sum (the part
        that is not a weight matmul), at full context, as PaLM counts it (no causal halving)."""
        raise NotImplementedError

    def label(self) -> str:
        return self.kind + (f"/{self.pattern}" if self.pattern != "full" else "") + (f"/r{self.rank}" if self.rank else "")

    def grow_refusal(self) -> str:
        """Why a model with this kind cannot grow; '' when it can (function-preserving growth)."""
        return f"growth needs full-rank attention kind 'mha' (found '{self.label()}')"


@dataclass
class MHASpec(AttentionSpec):
    """Multi-head attention (the LLaMA/GPT baseline): fused QKV, SDPA."""

    kind: str = "mha"
    fused_qkv: bool = True  # one matmul for q, k and v (False: three; the bench compares them)

    def lora_targets(self) -> list[str]:
        return ["qkv", "proj"] if self.fused_qkv else ["q", "k", "v", "proj"]

    def grow_refusal(self) -> str:
        return "" if self.rank == 0 else super().grow_refusal()

    @classmethod
    def bench_variants(cls, d_model, seq):
        window = max(1, seq // 4)
        return [("mha", {"kind": "mha"}),
                (f"mha sliding {window}", {"kind": "mha", "pattern": "sliding", "window": window}),
                ("mha low-rank d/4", {"kind": "mha", "rank": max(1, d_model // 4)})]

    def params(self, m, regime):
        ngpt = regime.trains_scales
        h, hd = self.heads(m)
        inner = h * hd
        qkv = self._proj(m.d_model, 3 * inner, m.bias) if self.fused_qkv else 3 * self._proj(m.d_model, inner, m.bias)
        return qkv + self._proj(inner, m.d_model, m.bias) + self._qk_norm_params(m, hd) + (inner if ngpt else 0)

    def matmul_params(self, m):
        h, hd = self.heads(m)
        inner = h * hd
        qkv = self._weights(m.d_model, 3 * inner) if self.fused_qkv else 3 * self._weights(m.d_model, inner)
        return qkv + self._weights(inner, m.d_model)

    def cache_per_token(self, m):
        h, hd = self.heads(m)
        return 2 * h * hd

    def score_flops(self, m, context):
        h, hd = self.heads(m)
        return 2.0 * context * h * (hd + hd)


@dataclass
class MLASpec(AttentionSpec):
    """Multi-head latent attention (DeepSeek-V2/V3): keys and values from a shared latent
    c_KV = W_DKV h (cached, normed), a decoupled RoPE key k_R shared by all heads (cached).
    ``absorb``: fold W_UK into the query and attend in the latent space (same result)."""

    kind: str = "mla"

    @classmethod
    def bench_variants(cls, d_model, seq):
        return [("mla", {"kind": "mla"}), ("mla absorbed", {"kind": "mla", "absorb": True}),
                ("mla map=dint", {"kind": "mla", "map": "dint"})]

    latent_dim: int = 0  # d_c; 0: 4 x head size (DeepSeek-V2's ratio)
    rope_head_dim: int = 0  # d_h^R; 0: half the head size with pos = "rope", none otherwise
    q_latent_dim: int = 0  # d_c' of the optional query compression; 0: no compression
    absorb: bool = False
    # the attention map over the latent keys: plain softmax, or differential (pairs of heads, as diff/dint)
    map: str = field(default="softmax", metadata=_choices("softmax", "diff", "dint"))
    lambda_schedule: str = field(default="depth", metadata=_choices("depth", "constant"))
    lambda_init: float = 0.8
    subln: bool = True

    def dims(self, m: "ModelConfig") -> tuple[int, int, int, int]:
        """(heads, head size, latent, rope part) as built."""
        h, hd = self.heads(m)
        rope = self.rope_head_dim or (hd // 2 if m.pos == "rope" else 0)
        return h, hd, self.latent_dim or 4 * hd, rope

    def check(self, m, need):
        super().check(m, need)
        w = "[model.attention]"
        need(self.rank == 0, f"{w} rank", "MLA's projections are low-rank already (latent_dim); rank is for "
                                          "mha, diff and dint")
        for key in ("latent_dim", "rope_head_dim", "q_latent_dim"):
            need(getattr(self, key) >= 0, f"{w} {key}", f"found {getattr(self, key)}, must be >= 0")
        need(not m.qk_norm, "[model] qk_norm", "MLA normalizes its latent (c_KV) instead; a per-head norm of k "
                                              "would mix the cached, rotated k_R with k_C; remove qk_norm")
        need(m.pos == "rope" or self.rope_head_dim == 0, f"{w} rope_head_dim",
             f"the decoupled RoPE key needs [model] pos = 'rope' (found '{m.pos}')")
        _, _, _, rope = self.dims(m)
        need(rope % 2 == 0, f"{w} rope_head_dim", f"RoPE needs an even size, found {rope}")
        if self.map != "softmax":
            need(m.n_head % 2 == 0, "[model] n_head", f"map = '{self.map}' pairs heads: n_head must be even, "
                                                      f"found {m.n_head}")
            need(not self.absorb, f"{w} absorb", "the absorbed path is for map = 'softmax'; a differential map "
                                                 "shares each pair's values, so use absorb = false")
            need(0.0 <= self.lambda_init < 1.0, f"{w} lambda_init", f"found {self.lambda_init}, must be in [0, 1)")

    def params(self, m, regime):
        ngpt = regime.trains_scales
        h, hd, dc, dr = self.dims(m)
        b = m.bias
        n = m.d_model * (dc + dr) + (dc + dr if b else 0)  # W_DKV and W_KR, fused
        n += dc * (1 if m.norm == "rmsnorm" or not b else 2)  # the norm on c_KV
        n += dc * h * (hd + hd)  # W_UK, W_UV (no bias, as the reference)
        if self.q_latent_dim:
            dq = self.q_latent_dim
            n += m.d_model * dq + (dq if b else 0) + dq * (1 if m.norm == "rmsnorm" or not b else 2)
            n += dq * h * (hd + dr)
        else:
            n += m.d_model * h * (hd + dr) + (h * (hd + dr) if b else 0)
        n += h * hd * m.d_model + (m.d_model if b else 0)
        if self.map != "softmax":
            n += 4 * (hd + dr) + (2 * hd if self.subln else 0)  # λ vectors over the q/k size, the 2d sub-norm
        return n + self._qk_norm_params(m, hd + dr) + (h * (hd + dr) if ngpt else 0)

    def matmul_params(self, m):
        h, hd, dc, dr = self.dims(m)
        q = (m.d_model * self.q_latent_dim + self.q_latent_dim * h * (hd + dr) if self.q_latent_dim
             else m.d_model * h * (hd + dr))
        return m.d_model * (dc + dr) + dc * h * 2 * hd + q + h * hd * m.d_model

    def cache_per_token(self, m):
        _, _, dc, dr = self.dims(m)
        return dc + dr

    def score_flops(self, m, context):
        h, hd, _, dr = self.dims(m)
        if self.map != "softmax":  # per pair: two score maps of d + d_R, one weighted sum of 2d, applied twice
            return 2.0 * context * (h // 2) * (2 * (hd + dr) + 2 * 2 * hd)
        return 2.0 * context * h * ((hd + dr) + hd)

    def label(self) -> str:
        base = super().label()
        return base if self.map == "softmax" else base.replace("mla", f"mla/{self.map}", 1)


@dataclass
class DiffSpec(AttentionSpec):
    """Differential attention (Ye et al. 2024): (softmax(Q1K1) - λ softmax(Q2K2)) V per head, a
    per-head RMSNorm scaled by (1 - λ_init). With ``[model] n_head`` = H and head size d, it
    has H/2 heads, each with two query/key maps of size d and a value of size 2d: the same
    parameters as the H-head baseline."""

    kind: str = "diff"
    lambda_schedule: str = field(default="depth", metadata=_choices("depth", "constant"))
    lambda_init: float = 0.8  # used with lambda_schedule = "constant"; "depth": 0.8 - 0.6 exp(-0.3 layer)
    subln: bool = True  # the per-head RMSNorm (2d) and its (1 - λ_init) factor
    version: int = 1  # 2: λ = sigmoid(W_λ x) per token and head, no sub-norm (the repository's DIFF V2)

    def check(self, m, need):
        super().check(m, need)
        w = "[model.attention]"
        need(m.n_head % 2 == 0, "[model] n_head", f"{self.kind} pairs heads: n_head must be even, found {m.n_head}")
        need(self.version in (1, 2), f"{w} version", f"found {self.version}, allowed: 1, 2")
        need(0.0 <= self.lambda_init < 1.0, f"{w} lambda_init", f"found {self.lambda_init}, must be in [0, 1)")

    def params(self, m, regime):
        ngpt = regime.trains_scales
        h, hd = self.heads(m)
        inner = h * hd  # q: 2 maps x H/2 heads x d; k the same; v: H/2 heads x 2d
        n = 3 * self._proj(m.d_model, inner, m.bias) + self._proj(inner, m.d_model, m.bias)
        if self.version == 1:
            n += 4 * hd  # λ_q1, λ_k1, λ_q2, λ_k2
            n += 2 * hd if self.subln else 0  # RMSNorm over 2d, with a gain
        else:
            n += m.d_model * (h // 2) + (h // 2 if m.bias else 0)  # W_λ
        return n + self._qk_norm_params(m, hd) + (inner if ngpt else 0)

    def matmul_params(self, m):
        h, hd = self.heads(m)
        inner = h * hd
        n = 3 * self._weights(m.d_model, inner) + self._weights(inner, m.d_model)
        return n + (m.d_model * (h // 2) if self.version == 2 else 0)

    def cache_per_token(self, m):
        h, hd = self.heads(m)
        return 2 * h * hd

    def score_flops(self, m, context):
        h, hd = self.heads(m)
        return 2.0 * context * (h // 2) * (2 * hd + 2 * hd)  # two score maps of d, one weighted sum of 2d


@dataclass
class DintSpec(DiffSpec):
    """DINT (Cang et al. 2025): differential attention plus λ·G, G_i the causal mean of the
    first map's rows m <= i, so every row sums to one. Computed as a running mean of the
    first map's outputs, so decoding keeps one vector per head, not the maps."""

    kind: str = "dint"

    def check(self, m, need):
        super().check(m, need)
        need(self.version == 1, "[model.attention] version", "dint has one version (1)")


# -- feed-forward -------------------------------------------------------------------------------

ACTIVATIONS = ("relu", "relu2", "gelu", "gelu_tanh", "gelu_sigmoid", "silu", "solu")


@dataclass
class FFNSpec(ModuleKind):
    family: ClassVar[str] = "ffn"
    kind: str = "dense"
    activation: str = field(default="gelu", metadata=_choices(*ACTIVATIONS))
    gated: bool = False  # SwiGLU = gated + silu, GEGLU = gated + gelu
    d_ff: int = 0  # hidden width (per expert for moe); 0: mlp_ratio x d_model
    mlp_ratio: float = 4.0
    rank: int = 0  # low-rank: d -> rank -> d_ff and d_ff -> rank -> d (a compression in the middle); 0: off

    def width(self, m: "ModelConfig") -> int:
        return self.d_ff or int(round(self.mlp_ratio * m.d_model))

    def check(self, m, need):
        w = "[model.ffn]"
        need(self.d_ff >= 0, f"{w} d_ff", f"found {self.d_ff}, must be >= 0 (0 = mlp_ratio * d_model)")
        need(self.mlp_ratio > 0, f"{w} mlp_ratio", f"found {self.mlp_ratio}, must be > 0")
        need(self.rank >= 0, f"{w} rank", f"found {self.rank}, must be >= 0 (0 = full rank)")

    def _mlp_params(self, m: "ModelConfig", regime: "Regime") -> int:
        d, f, b, r = m.d_model, self.width(m), m.bias, self.rank
        proj = (lambda a, z: a * r + r * z + (z if b else 0)) if r else (lambda a, z: a * z + (z if b else 0))
        n = proj(d, f) * (2 if self.gated else 1) + proj(f, d)
        if self.activation == "solu":
            n += f * (2 if b else 1)
        if regime.trains_scales:
            n += f * (2 if self.gated else 1)  # s_u, s_v
        return n

    def params(self, m, regime: "Regime") -> int:
        return self._mlp_params(m, regime)

    def matmul_params(self, m: "ModelConfig") -> int:
        """Weights a token is multiplied by (active ones, for a mixture of experts)."""
        d, f, r = m.d_model, self.width(m), self.rank
        one = (d * r + r * f) if r else d * f
        down = (f * r + r * d) if r else f * d
        return one * (2 if self.gated else 1) + down

    def label(self) -> str:
        return self.kind + (f"/r{self.rank}" if self.rank else "")

    def grow_refusal(self) -> str:
        """Why a model with this kind cannot grow; '' when it can."""
        return "growth needs a full-rank dense ffn without SoLU (its layernorm over the hidden units would change)"


@dataclass
class DenseSpec(FFNSpec):
    kind: str = "dense"

    def lora_targets(self) -> list[str]:
        return ["up", "gate", "down"] if self.gated else ["up", "down"]

    def grow_refusal(self) -> str:
        return "" if self.rank == 0 and self.activation != "solu" else super().grow_refusal()

    @classmethod
    def bench_variants(cls, d_model, seq):
        return [("dense swiglu", {"kind": "dense", "activation": "silu", "gated": True}),
                ("dense gelu", {"kind": "dense", "activation": "gelu", "gated": False}),
                ("dense low-rank d/4", {"kind": "dense", "activation": "silu", "gated": True,
                                        "rank": max(1, d_model // 4)})]


@dataclass
class MoESpec(FFNSpec):
    """A mixture of experts: a router (fp32, no bias) sends each token to its top-k experts,
    weighted by the renormalized top-k of the softmax. Switch load balancing (α·E·Σ f_i P_i, f_i
    the share of routing slots, so a uniform router gives exactly 1) and the router z-loss
    are named losses; expert load is logged. capacity_factor 0 is dropless."""

    kind: str = "moe"
    experts: int = 4
    top_k: int = 2
    balance_weight: float = 0.01
    z_weight: float = 0.001
    capacity_factor: float = 0.0  # > 0: each expert takes at most ceil(tokens·k/E·factor); overflow passes by

    def check(self, m, need):
        super().check(m, need)
        w = "[model.ffn]"
        need(self.experts >= 1, f"{w} experts", f"found {self.experts}, must be >= 1")
        need(1 <= self.top_k <= self.experts, f"{w} top_k", f"found {self.top_k}, must be between 1 and experts "
                                                             f"({self.experts})")
        need(self.rank == 0, f"{w} rank", "low-rank experts are not supported; use kind = 'dense' with rank")
        for key in ("balance_weight", "z_weight", "capacity_factor"):
            need(getattr(self, key) >= 0, f"{w} {key}", f"found {getattr(self, key)}, must be >= 0")

    def params(self, m, regime):
        return m.d_model * self.experts + self.experts * self._mlp_params(m, regime)

    def matmul_params(self, m):
        return m.d_model * self.experts + self.top_k * super().matmul_params(m)

    def label(self) -> str:
        return f"moe{self.experts}x{self.top_k}" + (f"/r{self.rank}" if self.rank else "")

    @classmethod
    def bench_variants(cls, d_model, seq):
        return [("moe 4x2", {"kind": "moe", "experts": 4, "top_k": 2}),
                ("moe 8x2", {"kind": "moe", "experts": 8, "top_k": 2})]


# -- blocks -------------------------------------------------------------------------------------

@dataclass
class BlockSpec:
    family: ClassVar[str] = "block"
    kind: str = "prenorm"

    def check(self, m, need):
        pass

    def params(self, m: "ModelConfig") -> int:
        return 2 * m.d_model * (2 if m.norm == "layernorm" and m.bias else 1)

    def label(self) -> str:
        return self.kind

    def grow_refusal(self) -> str:
        """Why a model with this block cannot grow; '' when it can."""
        return f"growth needs block = 'prenorm' (found '{self.kind}')"


@dataclass
class PreNormSpec(BlockSpec):
    """x + attn(norm(x)), then x + ffn(norm(x)): GPT-2 and LLaMA."""

    kind: str = "prenorm"

    def grow_refusal(self) -> str:
        return ""


@dataclass
class NGPTSpec(BlockSpec):
    """The normalized transformer (Loshchilov et al. 2024): every vector on the unit sphere,
    h <- Norm(h + α (Norm(f(h)) - h)), matrices renormalized after every optimizer step, q and k
    normalized per head and scaled by s_qk, logits scaled by s_z. ``variant = "simple"``: one
    scalar α per sub-layer, q/k normalized with a fixed scale, no s_uv (our proposal, not the
    paper's)."""

    kind: str = "ngpt"
    variant: str = field(default="full", metadata=_choices("full", "simple"))
    alpha_init: float = 0.05

    def label(self) -> str:
        return "ngpt" if self.variant == "full" else "ngpt-simple"

    def check(self, m, need):
        need(not m.tie_embeddings, "[model] tie_embeddings",
             "nGPT keeps separate input and output embeddings (both normalized); set tie_embeddings = false")
        need(not m.qk_norm, "[model] qk_norm", "nGPT normalizes q and k itself; remove qk_norm")
        need(0 < self.alpha_init <= 1, "[model.block] alpha_init", f"found {self.alpha_init}, must be in (0, 1]")

    def params(self, m):
        return 2 * (m.d_model if self.variant == "full" else 1)


@dataclass(frozen=True)
class Regime:
    """How every module of a model treats its hidden state, decided once by the block kind:
    ``prenorm`` (a residual stream, norms before each sublayer) or ``ngpt`` (the unit sphere);
    nGPT's ``full`` variant trains its per-dimension scales (s_qk, s_u, s_v), ``simple`` keeps
    them fixed. Modules and specs take one Regime instead of two booleans."""

    kind: str = "prenorm"
    variant: str = "full"

    @classmethod
    def of(cls, m: "ModelConfig") -> "Regime":
        return cls(m.block.kind, getattr(m.block, "variant", "full"))

    @property
    def ngpt(self) -> bool:
        return self.kind == "ngpt"

    @property
    def trains_scales(self) -> bool:
        """nGPT's full variant: the trainable per-dimension scales."""
        return self.ngpt and self.variant == "full"


PRENORM = Regime()


FAMILIES: dict[str, dict[str, type]] = {
    "attention": {"mha": MHASpec, "mla": MLASpec, "diff": DiffSpec, "dint": DintSpec},
    "ffn": {"dense": DenseSpec, "moe": MoESpec},
    "block": {"prenorm": PreNormSpec, "ngpt": NGPTSpec},
}
DEFAULT_KIND = {"attention": "mha", "ffn": "dense", "block": "prenorm"}


def spec_keys(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def kind_of_key(family: str, key: str) -> list[str]:
    """Which kinds of a family have ``key`` (for 'that key belongs to kind X' hints)."""
    return [k for k, cls in FAMILIES[family].items() if key in spec_keys(cls)]


# -- whole-model figures (torch-free) ---------------------------------------------------------

def padded_vocab(vocab_size: int) -> int:
    """The embedding table is rounded up to a multiple of 64 (faster matmuls); never-seen ids
    are simply never targets."""
    return ((vocab_size + 63) // 64) * 64


def model_label(m: "ModelConfig") -> str:
    """'4L×128', with the kinds that are not the baseline: '4L×128 mla+moe4x2'."""
    plain_attention = m.attention.kind == "mha" and m.attention.pattern == "full" and not m.attention.rank
    parts = [x for x in (m.attention.label() if not plain_attention else "",
                         m.ffn.label() if m.ffn.kind != "dense" or m.ffn.rank else "",
                         m.block.label() if m.block.kind != "prenorm" else "") if x]
    return f"{m.n_layer}L×{m.d_model}" + (" " + "+".join(parts) if parts else "")


def count_params(m: "ModelConfig", vocab_size: int, conviction: bool = False, aux=None) -> dict[str, int]:
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


def matmul_params(m: "ModelConfig", vocab_size: int) -> int:
    """Weights each token is multiplied by in a forward pass (the LM head included, tied or not)."""
    d = m.d_model
    per_layer = m.attention.matmul_params(m) + m.ffn.matmul_params(m)
    n = m.n_layer * per_layer + padded_vocab(vocab_size) * d
    return n + (d * d if m.output_projection else 0)


def flops_per_token(m: "ModelConfig", vocab_size: int) -> float:
    """Training FLOPs per token: 6 x the weights a token is multiplied by (fwd + bwd) + 3 x the
    forward attention FLOPs of each layer (PaLM appendix B, per kind)."""
    return 6.0 * matmul_params(m, vocab_size) + 3.0 * m.n_layer * m.attention.score_flops(m, m.block_size)
