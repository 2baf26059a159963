"""The run config: strict checking with errors that name the file and the key."""

import pytest

from runspec.config.load import load_config
from runspec.config.schema import ConfigError, RunConfig, parse_time_budget, resolved_dict


def write(tmp_path, text: str):
    p = tmp_path / "run.toml"
    p.write_text(text)
    return p


def error_of(path, overrides=None) -> str:
    with pytest.raises(ConfigError) as exc:
        load_config(path, overrides)
    return str(exc.value)


def test_defaults_load_and_resolve_derived_values(tmp_path):
    cfg = load_config(write(tmp_path, "[model]\nd_model = 96\nn_head = 3\n"))
    assert cfg.head_dim == 32 and cfg.d_ff == 384
    resolved = resolved_dict(cfg)
    assert resolved["model"]["head_dim"] == 32 and resolved["optim"]["decay_steps"] == cfg.train.max_steps


def test_unknown_key_names_file_section_key_and_suggests(tmp_path):
    p = write(tmp_path, "[model]\nactivaton = 'gelu'\n")
    msg = error_of(p)
    assert str(p) in msg and "[model] activaton" in msg and "did you mean [model.ffn] activation?" in msg


def test_a_key_in_the_wrong_kind_table_says_where_it_belongs(tmp_path):
    msg = error_of(write(tmp_path, "[model.attention]\nkind = 'mha'\nactivation = 'silu'\n"))
    assert "[model.attention] activation" in msg and "did you mean [model.ffn] activation?" in msg
    msg = error_of(write(tmp_path, "[model.ffn]\nlatent_dim = 32\n"))
    assert "did you mean [model.attention] latent_dim (kind 'mla')?" in msg
    msg = error_of(write(tmp_path, "[model.attention]\nkind = 'mha'\nwindw = 3\n"))
    assert "did you mean 'window'?" in msg  # a typo inside the right table is still a typo


def test_unknown_section_is_an_error(tmp_path):
    msg = error_of(write(tmp_path, "[modle]\nn_layer = 2\n"))
    assert "[modle]" in msg and "did you mean 'model'" in msg


def test_wrong_type_says_what_was_found_and_expected(tmp_path):
    msg = error_of(write(tmp_path, "[train]\nmax_steps = '100'\n"))
    assert "[train] max_steps" in msg and "'100' (str)" in msg and "an integer" in msg


def test_bool_is_not_an_integer(tmp_path):
    assert "expected an integer" in error_of(write(tmp_path, "[model]\nn_layer = true\n"))


def test_choice_outside_allowed_values_lists_them(tmp_path):
    msg = error_of(write(tmp_path, "[model]\nnorm = 'rms'\n"))
    assert "[model] norm" in msg and "layernorm, rmsnorm" in msg


@pytest.mark.parametrize("text, key", [
    ("[model]\nd_model = 100\nn_head = 3\n", "[model] n_head"),
    ("[train]\nmax_steps = -5\n", "[train] max_steps"),
    ("[train]\nmax_time = '90 minutes'\n", "[train] max_time"),
    ("[optim]\nmin_lr = 0.1\nlr = 0.01\n", "[optim] min_lr"),
    ("[optim]\nbetas = [0.9]\n", "[optim] betas"),
    ("[model]\npos = 'rope'\nd_model = 30\nn_head = 2\n", "[model] head_dim"),
    ("[data]\nval_fraction = 1.5\n", "[data] val_fraction"),
    ("[model]\noutput_projection_norm = true\n", "[model] output_projection_norm"),
    ("[data]\ntokenizer = 'gpt-2'\n", "[data] tokenizer"),
])
def test_impossible_values_are_rejected_with_their_key(tmp_path, text, key):
    assert key in error_of(write(tmp_path, text))


def test_head_dim_decouples_head_size_from_width(tmp_path):
    cfg = load_config(write(tmp_path, "[model]\nd_model = 100\nn_head = 3\nhead_dim = 16\n"))
    assert cfg.head_dim == 16


def test_toml_syntax_error_names_file(tmp_path):
    p = write(tmp_path, "[model\nn_layer = 2\n")
    assert str(p) in error_of(p) and "TOML syntax" in error_of(p)


def test_missing_file(tmp_path):
    assert "does not exist" in error_of(tmp_path / "nope.toml")


def test_overrides_keep_toml_types_and_are_checked(tmp_path):
    p = write(tmp_path, "")
    cfg = load_config(p, ["train.max_steps=7", "model.pos=rope", "log.wandb=false"])
    assert cfg.train.max_steps == 7 and cfg.model.pos == "rope" and cfg.log.wandb is False
    assert "did you mean 'max_steps'" in error_of(p, ["train.max_step=7"])
    assert "section.key=value" in error_of(p, ["max_steps"])


def test_time_budget_parsing():
    assert parse_time_budget("1:30") == 5400 and parse_time_budget("0:05") == 300 and parse_time_budget("") == 0
    assert parse_time_budget("0:00:30") == 30
    for bad in ("1:75", "90", "0:00"):
        with pytest.raises(ValueError):
            parse_time_budget(bad)


def test_every_example_config_is_valid():
    from pathlib import Path

    from cockpit.sweep import load_sweep

    examples = sorted(Path(__file__).resolve().parent.parent.glob("examples/**/*.toml"))
    sweeps = [p for p in examples if "[sweep]" in p.read_text()]
    run_configs = [p for p in examples if "corpora" not in p.parts and p not in sweeps]
    assert run_configs and len(sweeps) >= 4
    for p in run_configs:
        assert isinstance(load_config(p), RunConfig), p
    from cockpit.study import is_study, load_study_spec

    for p in sweeps:  # every run a sweep spec expands into is checked too (a search: every key of its space)
        assert load_study_spec(p).trials if is_study(p) else load_sweep(p).runs, p


@pytest.mark.parametrize("model, label", [
    ("", "4L×128"),
    ("[model.attention]\nkind = 'mla'\n[model.ffn]\nkind = 'moe'\n", "4L×128 mla+moe4x2"),
    ("[model.attention]\nkind = 'mha'\npattern = 'sliding'\nwindow = 8\nrank = 16\n", "4L×128 mha/sliding/r16"),
    ("[model]\ntie_embeddings = false\nblock = {kind = 'ngpt', variant = 'simple'}\n[model.ffn]\nrank = 32\n",
     "4L×128 dense/r32+ngpt-simple"),
    ("[model]\ntie_embeddings = false\n[model.attention]\nkind = 'mla'\nmap = 'dint'\n[model.block]\nkind = 'ngpt'\n",
     "4L×128 mla/dint+ngpt"),
])
def test_a_run_is_named_by_its_kinds(tmp_path, model, label):
    from runspec.config.shape import model_label

    assert model_label(load_config(write(tmp_path, model)).model) == label
