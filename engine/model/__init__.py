"""The configurable GPT: one module per family (attention, mlp, norms, positions), composed in gpt.py."""

from engine.model.gpt import GPT, Output, build_model, padded_vocab

__all__ = ["GPT", "Output", "build_model", "padded_vocab"]
