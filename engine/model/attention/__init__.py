"""Attention kinds: mha (baseline), mla (latent), diff and dint (differential)."""

from engine.model.attention.base import AttentionBase, Cache, allowed
from engine.model.attention.diff import Diff, Dint
from engine.model.attention.mha import MHA
from engine.model.attention.mla import MLA

__all__ = ["AttentionBase", "Cache", "allowed", "MHA", "MLA", "Diff", "Dint"]
