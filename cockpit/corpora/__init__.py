"""Corpus tools: token counts cached in ``<file>.meta.json``, listing, and mixing by ratio.
Torch-free (the TUI uses them); the readers and tokenizers are the engine's own."""
