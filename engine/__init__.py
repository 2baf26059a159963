"""The engine: everything that needs torch (model, training, checkpoints, completion).

Its config, events, rundir, corpus, tokenizers and shards modules are torch-free, so the
cockpit may import them; the rest is only ever run as ``python -m engine ...``."""
