"""The compressive transformer's two memories (Rae et al. 2019)."""

from __future__ import annotations

from dataclasses import dataclass, field

from zoo.kind import choices, register
from zoo.memory.spec import MemorySpec

COMPRESSIONS = ("conv", "mean")


@register
@dataclass
class CompressiveSpec(MemorySpec):
    """XL's memory of ``mem_len`` states, and behind it ``cmem_len`` compressed ones: the states
    that leave the memory are compressed ``rate`` to one (a strided convolution, or a mean) instead
    of dropped. The compression network learns from the attention-reconstruction loss alone
    (``compress``: the layer's attention over the old states against over their compression,
    the layer's weights held fixed), never from the language-model loss."""

    kind: str = "compressive"
    mem_len: int = 128  # the uncompressed memory, per layer
    cmem_len: int = 64  # compressed slots kept per layer, behind the memory
    rate: int = 4  # states compressed into one
    compress: str = field(default="conv", metadata=choices(*COMPRESSIONS))  # conv: kernel = stride = rate (the paper's best); mean: pooling, no parameters
    recon_weight: float = 1.0  # weight of the attention-reconstruction loss (it trains the compression only)

    @property
    def active(self) -> bool:
        return True

    def slots(self, evaluating: bool = False) -> int:
        return self.mem_len + self.cmem_len

    def check(self, m, need):
        w = "[model.memory]"
        need(self.rate >= 2, f"{w} rate", f"found {self.rate}, must be >= 2 (states per compressed slot)")
        need(self.mem_len >= self.rate and self.mem_len % self.rate == 0, f"{w} mem_len",
             f"found {self.mem_len}, must be a positive multiple of rate ({self.rate}): states leave it rate at a time")
        need(self.cmem_len >= 1, f"{w} cmem_len", f"found {self.cmem_len}, must be >= 1 (else use kind = 'xl')")
        need(m.block_size % self.rate == 0, "[model] block_size",
             f"found {m.block_size}; compressive memory needs a multiple of rate ({self.rate})")
        need(self.recon_weight >= 0, f"{w} recon_weight", f"found {self.recon_weight}, must be >= 0")
        need(m.attention.kind in ("mha", "gqa"), f"{w} kind",
             f"the reconstruction loss compares one attention map over old and compressed states; attention kind "
             f"'{m.attention.kind}' has others (use mha or gqa, or memory kind 'xl')")
        self._check_memory(m, need)

    def params(self, m) -> int:
        d = m.d_model
        return d * d * self.rate + d if self.compress == "conv" else 0

    def label(self) -> str:
        return f"cmem{self.mem_len}+{self.cmem_len}/{self.rate}"

    @classmethod
    def bench_variants(cls, d_model, seq):
        return [(f"compressive {seq // 2}+{seq // 4}/2", {"kind": "compressive", "mem_len": seq // 2,
                                                          "cmem_len": seq // 4, "rate": 2})]
