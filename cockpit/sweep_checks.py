"""What a sweep's dry run says about runs that cannot mean anything: a run that never reaches
its peak learning rate, gets no running validation, writes no checkpoint before its end,
trains a number of tokens per parameter far outside what a scaling fit uses, or takes more
tokens in one step than its training split holds. Warnings by
default (the sweep still queues); ``cockpit sweep --strict`` refuses the sweep instead."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cockpit.sweep import PlannedRun

# tokens per parameter a scaling fit can use: Chinchilla's optimum is ~20; a run far below
# has barely started, far above it is deep in the data-rich tail (the fit's points cluster)
TOKENS_PER_PARAM = (1.0, 1000.0)


GENERIC = {  # what several runs with the same problem are told, once
    "warmup": "optim.warmup_steps >= train.max_steps: they never reach their peak learning rate",
    "eval": "no running validation before the final pass (eval.every off, or >= train.max_steps)",
    "checkpoint": "train.checkpoint_every > train.max_steps: a checkpoint only at the end (a crash loses a run)",
    "tokens": "tokens per parameter far outside the {lo:g}-{hi:g} a scaling fit uses (Chinchilla's optimum is ~20)",
    "data": "one step's batch is more than the whole training split: every step sees the data more than once",
}


_sizes: dict[tuple, int | None] = {}


def train_tokens(cfg) -> int | None:
    """About how many tokens the training split holds, where that is cheap to know: the built-in
    stories, or the files' bytes with the bytes tokenizer. None otherwise (not guessed)."""
    from runspec.config.schema import BUILTIN_STORIES

    if cfg.data.tokenizer != "bytes":
        return None
    key = (cfg.data.path, cfg.data.val_fraction, cfg.data.test_fraction)
    if key not in _sizes:
        if cfg.data.path == BUILTIN_STORIES:
            from runspec.data.stories import generate_stories

            total = sum(len(x.encode()) + 1 for x in generate_stories())
        else:
            from runspec.data.corpus import CorpusError, corpus_files

            try:
                total = sum(f.stat().st_size for f in corpus_files(cfg.data.path))
            except (CorpusError, OSError):
                total = None
        held = cfg.data.val_fraction + cfg.data.test_fraction
        _sizes[key] = None if total is None else int(total * (1 - held))
    return _sizes[key]


def run_warnings(run: "PlannedRun", counted: str = "total") -> list[tuple[str, str]]:
    """(kind, what is wrong with this run) for each problem of one run."""
    cfg = run.cfg
    if cfg is None:
        return []
    t, steps = cfg.train, cfg.train.max_steps
    out = []
    if cfg.optim.warmup_steps >= steps:
        out.append(("warmup", f"optim.warmup_steps {cfg.optim.warmup_steps} >= train.max_steps {steps}: "
                              f"it never reaches its peak learning rate"))
    if cfg.eval.every == 0 or cfg.eval.every >= steps:
        why = "(off)" if cfg.eval.every == 0 else f">= train.max_steps {steps}"
        out.append(("eval", f"eval.every {cfg.eval.every} {why}: no running validation before the final pass"))
    if t.checkpoint_every > steps:
        out.append(("checkpoint", f"train.checkpoint_every {t.checkpoint_every} > train.max_steps {steps}: "
                                  f"a checkpoint only at the end (a crash loses the whole run)"))
    data = train_tokens(cfg)
    if data is not None and cfg.tokens_per_step > data:
        out.append(("data", f"a step's batch is {cfg.tokens_per_step:,} tokens, more than the ~{data:,} of the "
                            f"training split: every step sees the data more than once"))
    n = run.params.get("total" if counted == "total" else "non_embedding") if run.params else None
    if n and run.tokens:
        ratio = run.tokens / n
        lo, hi = TOKENS_PER_PARAM
        if not lo <= ratio <= hi:
            out.append(("tokens", f"{ratio:.3g} tokens per parameter: far {'below' if ratio < lo else 'above'} the "
                                  f"{lo:g}-{hi:g} a scaling fit uses (Chinchilla's optimum is about 20)"))
    return out


def sweep_warnings(runs: list["PlannedRun"], counted: str = "total") -> list[str]:
    """One line per problem: 'run 3 (ladder-03): ...' for a run of its own, 'runs 1, 2, 4 of 9:
    ...' when several runs share it (a sweep's fixed keys usually do)."""
    by_kind: dict[str, list[tuple[int, "PlannedRun", str]]] = {}
    for i, r in enumerate(runs, 1):
        for kind, text in run_warnings(r, counted):
            by_kind.setdefault(kind, []).append((i, r, text))
    lo, hi = TOKENS_PER_PARAM
    out = []
    for kind, hits in by_kind.items():
        if len(hits) == 1:
            i, r, text = hits[0]
            out.append(f"run {i} ({r.name}): {text}")
        else:
            nums = ", ".join(str(i) for i, _, _ in hits)
            out.append(f"runs {nums} of {len(runs)}: {GENERIC[kind].format(lo=lo, hi=hi)}")
    return out
