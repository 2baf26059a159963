"""``python -m engine export RUN_DIR [--step N] --merged OUT``: a plain checkpoint of a run.

Adapters are merged into the weights and the checkpoint's stage becomes the model's only
shape, so ``cockpit complete OUT`` and ``[init] from = "OUT"`` load it like any run's. The
file is written atomically; an existing OUT is never overwritten.
"""

from __future__ import annotations

import sys
from pathlib import Path

from engine import checkpoint
from runspec.config.schema import ConfigError
from runspec.fs import atomic_file


def main(run_dir: str, step: int | None, out: str) -> int:
    import torch

    from engine.stages import export_merged
    from runspec.run.rundir import RunDir

    target = Path(out)
    try:
        if target.exists():
            raise ConfigError(str(target), "--merged", "exists already; give a new file name (nothing was written)")
        if not target.parent.is_dir():
            raise ConfigError(str(target), "--merged", f"{target.parent} is not a directory")
        rd = RunDir(run_dir)
        source = checkpoint.find(rd.checkpoints, step)
        payload = checkpoint.load(source)
        plain = export_merged(payload)
        with atomic_file(target) as f:
            torch.save(plain, f)
    except (ConfigError, checkpoint.CheckpointError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n = sum(v.numel() for v in plain["model"].values())
    had = any(k.endswith(".lora_A") for k in payload["model"])
    print(f"wrote {target}: {rd.id} step {plain['step']} (stage {plain['exported_from']['stage']}), "
          f"{n:,} numbers, {'adapters merged' if had else 'no adapters to merge'}")
    return 0
