"""The engine: everything that needs torch (model, training, checkpoints, completion).

It is only ever run as ``python -m engine ...``: the cockpit never imports it. What both halves
share (config, run state, events, data) lives in ``runspec``. A few modules here need no torch
either (``launch``, ``stats``) but belong to training, so they stay with it."""
