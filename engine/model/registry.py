"""Which module builds each kind (the specs live torch-free in engine/kinds.py)."""

from __future__ import annotations

from torch import nn

from engine.model.attention.diff import Diff, Dint
from engine.model.attention.mha import MHA
from engine.model.attention.mla import MLA
from engine.model.blocks import NGPTBlock, PreNorm
from engine.model.mlp import MLP
from engine.model.moe import MoE
from runspec.config.kinds import Regime
from runspec.config.schema import ModelConfig

ATTENTION: dict[str, type[nn.Module]] = {"mha": MHA, "mla": MLA, "diff": Diff, "dint": Dint}
FFN: dict[str, type[nn.Module]] = {"dense": MLP, "moe": MoE}
BLOCKS = ("prenorm", "ngpt")
REGISTERED = {"attention": ATTENTION, "ffn": FFN, "block": {k: None for k in BLOCKS}}


def build_block(m: ModelConfig, layer: int) -> nn.Module:
    regime = Regime.of(m)  # decided once, by the block kind; every module takes it
    attn = ATTENTION[m.attention.kind](m, m.attention, layer, regime)
    mlp = FFN[m.ffn.kind](m, m.ffn, regime)
    return NGPTBlock(m, m.block, attn, mlp) if regime.ngpt else PreNorm(m, attn, mlp)
