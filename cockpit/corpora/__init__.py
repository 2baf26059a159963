"""Corpus tools: token counts cached in ``<file>.meta.json``, listing, and mixing by ratio.
Torch-free (the TUI uses them); the readers and tokenizers are runspec's own."""

from __future__ import annotations

import os
from pathlib import Path


def corpora_root(explicit: str | None = None) -> Path:
    """Where the Corpora tab and ``cockpit corpora ls`` look: --corpora-dir, $COCKPIT_CORPORA_DIR, ./corpora."""
    return Path(explicit or os.environ.get("COCKPIT_CORPORA_DIR") or "corpora")
