"""Seeds as an axis: the one owner of what a seed group is.

``--seeds N`` (or ``--seeds 1,2,5``) on ``run`` and ``queue add``, and ``seeds = N | [...]`` in a
sweep spec, make runs that differ only in ``train.seed`` (and the data order and initialisation
that follow from it), named ``NAME-s<seed>``. Runs whose configs are equal but for the seed form
a group: ``compare``, findings, the Compare tab and ``analyze`` show a group as mean ± standard
deviation over its n runs. Torch-free."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

SEED_KEY = "train.seed"  # the key that tells the runs of a group apart
SUFFIX = re.compile(r"-s(\d+)$")


def parse_seeds(text: str) -> "Seeds":
    """argparse type: ``3`` (three seeds from the config's own) or ``1,2,5`` (these seeds)."""
    import argparse

    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of seeds (3) or a comma list of seeds (1,2,5)") from None
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of seeds (3) or a comma list of seeds (1,2,5)")
    if "," not in str(text):
        if values[0] < 1:
            raise argparse.ArgumentTypeError(f"{values[0]}: the number of seeds must be at least 1")
        if values[0] > 1000:
            raise argparse.ArgumentTypeError(f"{values[0]}: more than 1000 seeds of one config; "
                                             f"give a smaller number")
        return Seeds(count=values[0])
    if any(v < 0 for v in values) or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"{text!r}: seeds are distinct non-negative whole numbers")
    return Seeds(listed=tuple(values))


@dataclass(frozen=True)
class Seeds:
    count: int = 0  # N seeds: the config's own seed and the N-1 after it
    listed: tuple[int, ...] = ()  # or exactly these

    def values(self, base_seed: int) -> list[int]:
        return list(self.listed) if self.listed else [base_seed + i for i in range(self.count)]

    @classmethod
    def from_spec(cls, value: Any, where: str) -> "Seeds":
        """A sweep spec's ``seeds = 3`` or ``seeds = [1, 2, 5]``; ValueError names the key."""
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 1000:
            return cls(count=value)
        if (isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                       for v in value) and len(set(value)) == len(value)):
            return cls(listed=tuple(value))
        raise ValueError(f"{where} = {value!r}: a number of seeds (1-1000) or a list of distinct "
                         f"non-negative seeds")


def seed_name(name: str, seed: int) -> str:
    """The run name of one seed of a config: NAME-s<seed>."""
    return f"{name}-s{seed}"


def group_label(names: list[str]) -> str:
    """A group's name: its runs' shared name without the -s<seed> (and creation stamp) suffixes."""
    bare = [SUFFIX.sub("", re.sub(r"-\d{8}-\d{6}$", "", n)) for n in names]
    return bare[0] if len(set(bare)) == 1 else bare[0] + f" (+{len(names) - 1})"


def group_key(config: dict[str, Any], noise: tuple[str, ...] = ()) -> str:
    """What the runs of a group share: the flattened config without the seed (and noise keys)."""
    return repr(sorted((k, repr(v)) for k, v in config.items() if k != SEED_KEY and k not in noise))


def groups_of(items: list, config_of, noise: tuple[str, ...] = ()) -> list[list]:
    """Items (runs, summaries) grouped by config but the seed, in the order each group first
    appears; a run without a readable config is its own group."""
    order: dict[str, list] = {}
    for i, item in enumerate(items):
        config = config_of(item)
        key = group_key(config, noise) if config else f"#{i}"
        order.setdefault(key, []).append(item)
    return list(order.values())
