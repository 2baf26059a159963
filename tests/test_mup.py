"""μP: the width multiplier's effect on init, learning rates, the attention scale and the readout;
the coordinate check; and analyze lr with both parametrizations side by side."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import cockpit

from engine.coordcheck import slope
from engine.model import build_model
from engine.optim import build_optimizers
from runspec.config.load import config_from_dict
from runspec.config.schema import ConfigError
from zoo.kind import head_multiplier, width_multiplier


def mup(width: int, base: int = 64, **model):
    return config_from_dict({"model": {"d_model": width, "n_head": 4, "parametrization": "mup", "base_width": base,
                                       "tie_embeddings": False, **model}})


def test_the_base_width_is_the_standard_model_and_wider_ones_scale_by_the_multiplier():
    base = mup(64)
    assert width_multiplier(base.model) == 1.0
    wide = mup(256)
    assert width_multiplier(wide.model) == 4.0 and head_multiplier(wide.model) == 4.0
    fixed_heads = mup(256, head_dim=16)  # heads added, each the same size: scores keep 1/sqrt(d)
    assert head_multiplier(fixed_heads.model) == 1.0
    sp = config_from_dict({"model": {"d_model": 256, "n_head": 4, "base_width": 64}})
    assert width_multiplier(sp.model) == 1.0  # sp has no use for base_width


def test_mup_scales_hidden_init_and_learning_rates_and_the_readout_but_not_the_embeddings():
    torch.manual_seed(0)
    narrow, wide = build_model(mup(64), 256), build_model(mup(256), 256)
    fc = lambda m: m.blocks[0].mlp.up.weight.std().item()  # noqa: E731
    assert fc(wide) == pytest.approx(fc(narrow) / 2, rel=0.1)  # std / sqrt(4)
    assert wide.wte.weight.std().item() == pytest.approx(narrow.wte.weight.std().item(), rel=0.1)
    assert wide.readout == 0.25 and narrow.readout == 1.0  # the logits times 1/m
    assert wide.lm_head.weight.std().item() == pytest.approx(0.02, rel=0.1)  # the readout's init: width-free
    assert wide.blocks[0].attn.softmax_scale(64) == pytest.approx(1 / 64 * math.sqrt(16))  # 1/d, equal at the base
    groups = {g["name"]: g for g in build_optimizers(wide, mup(256), "cpu").param_groups}
    assert groups["hidden"]["base_lr"] == pytest.approx(1e-3 / 4)
    assert groups["embeddings"]["base_lr"] == 1e-3 and groups["decay"]["base_lr"] == 1e-3
    hidden = {id(p) for p in groups["hidden"]["params"]}
    assert id(wide.blocks[0].attn.qkv.weight) in hidden and id(wide.lm_head.weight) not in hidden


def test_mup_refuses_tied_embeddings_and_ngpt_in_one_line():
    with pytest.raises(ConfigError, match="μP treats the input embedding and the readout differently"):
        config_from_dict({"model": {"parametrization": "mup"}})
    with pytest.raises(ConfigError, match="nGPT keeps every weight on the unit sphere"):
        config_from_dict({"model": {"parametrization": "mup", "block": "ngpt", "tie_embeddings": False}})


def test_slope_is_the_log_log_gradient():
    assert slope([64, 128, 256], [1.0, 2.0, 4.0]) == pytest.approx(1.0)
    assert slope([64, 128, 256], [3.0, 3.0, 3.0]) == pytest.approx(0.0)


@pytest.mark.slow
def test_the_coordinate_check_is_flat_under_mup_and_grows_under_sp(write_config, tmp_path):
    cfg = write_config("cc", {"model": {"n_layer": 2, "n_head": 4, "tie_embeddings": False},
                              "optim": {"lr": 1e-2, "warmup_steps": 0}})
    r = cockpit("bench", "coordcheck", str(cfg), "--widths", "32,64,128", "--steps", "6", "--out", str(tmp_path / "cc"))
    assert r.returncode == 0, r.stderr
    import json

    result = json.loads((tmp_path / "cc" / "coordcheck.json").read_text())
    sp, mp = result["parametrizations"]["sp"]["slope"], result["parametrizations"]["mup"]["slope"]
    assert sp["logits"] > 0.5 and abs(mp["logits"]) < 0.25, (sp, mp)  # SP's logits grow with width, μP's do not
    assert max(abs(v) for v in mp.values()) < max(abs(v) for v in sp.values())
    assert (tmp_path / "cc" / "coordcheck.png").stat().st_size > 1000
    assert "μP" in r.stdout and "steepest" in r.stdout
    bad = cockpit("bench", "coordcheck", str(cfg), "--widths", "64")
    assert bad.returncode == 2 and "--widths '64'" in bad.stderr
