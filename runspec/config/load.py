"""Reading a run config: TOML text or a table, ``--set`` overrides, checked whole (stages too)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from runspec.config.plan import stage_plan
from runspec.config.schema import ConfigError, RunConfig, check, parse, tomllib


def config_from_dict(data: dict[str, Any], source: str = "<config>") -> RunConfig:
    """Build and check a RunConfig from parsed TOML. Raises ConfigError on the first problem."""
    cfg = parse(data, source)
    check(cfg, source)
    if cfg.stage:
        stage_plan(cfg, source)
    return cfg


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a TOML run config; ``overrides`` are 'section.key=value' strings (TOML values)."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, "file", "does not exist; give the path of a .toml run config") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(source, "file", f"cannot be read ({e})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(source, "TOML syntax", f"{e}; fix the file and try again") from None
    apply_overrides(data, overrides or [])
    return config_from_dict(data, source)


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """'--set section.key=value' strings -> {"section.key": value}; the value is parsed as
    TOML (so numbers and booleans keep their type), falling back to a bare string."""
    out: dict[str, Any] = {}
    for item in overrides:
        dotted, sep, raw = item.partition("=")
        dotted = dotted.strip()
        parts = dotted.split(".")
        if not sep or len(parts) < 2 or not all(re.fullmatch(r"[A-Za-z0-9_-]+", p) for p in parts):
            raise ConfigError("--set", item, "expected section.key=value, e.g. train.max_steps=200")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        out[dotted] = value
    return out


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> None:
    """Apply '--set a.b.c=value' overrides in place, at any depth (model.attention.kind=mla)."""
    for dotted, value in parse_overrides(overrides).items():
        *path, key = dotted.split(".")
        table = data
        for i, part in enumerate(path):
            nxt = table.get(part, {})
            if isinstance(nxt, str) and i > 0:  # a kind given by name (attention = "mla") becomes its table
                nxt = {"kind": nxt}
            if not isinstance(nxt, dict):
                raise ConfigError("--set", dotted, f"[{'.'.join(path[:i + 1])}] is not a table")
            table[part] = nxt
            table = nxt
        table[key] = value
