"""Sweeps: a spec expands into checked runs (grid, zip, random, presets, token budgets) and is
queued together with its values recorded as data; bad specs are one line and create nothing."""

import json
import math
from pathlib import Path

import pytest
from conftest import TINY, cockpit

from cockpit.sweep import PRESETS, SweepError, load_sweep


def spec(tmp_path: Path, body: str, name: str = "s") -> Path:
    import tomli_w

    base = tmp_path / "base.toml"
    base.write_text(tomli_w.dumps(TINY))
    path = tmp_path / f"{name}.toml"
    path.write_text(f'[sweep]\nbase = "base.toml"\n{body}')
    return path


def test_grid_zip_and_random_expand_as_written(tmp_path):
    grid = load_sweep(spec(tmp_path, '[sweep.axes]\n"model.d_model" = [32, 64]\n"optim.lr" = [1e-3, 3e-3, 1e-2]\n'))
    assert [r.values for r in grid.runs][:2] == [{"model.d_model": 32, "optim.lr": 1e-3},
                                                 {"model.d_model": 32, "optim.lr": 3e-3}]
    assert len(grid.runs) == 6 and grid.runs[5].cfg.model.d_model == 64 and grid.runs[5].cfg.optim.lr == 1e-2
    zipped = load_sweep(spec(tmp_path, 'mode = "zip"\n[sweep.axes]\n"model.d_model" = [32, 64]\n"optim.lr" = [1e-3, 3e-3]\n'))
    assert [(r.cfg.model.d_model, r.cfg.optim.lr) for r in zipped.runs] == [(32, 1e-3), (64, 3e-3)]
    body = 'mode = "random"\ncount = 5\nseed = 3\n[sweep.axes]\n"optim.lr" = {log_uniform = [1e-4, 1e-2]}\n' \
           '"train.batch_size" = {choice = [2, 4]}\n'
    a, b = load_sweep(spec(tmp_path, body)), load_sweep(spec(tmp_path, body))
    lrs = [r.cfg.optim.lr for r in a.runs]
    assert lrs == [r.cfg.optim.lr for r in b.runs] and len(set(lrs)) == 5  # same seed, same runs
    assert all(1e-4 <= lr <= 1e-2 for lr in lrs) and {r.cfg.train.batch_size for r in a.runs} <= {2, 4}


def test_presets_and_token_budgets_set_the_shape_and_the_steps(tmp_path):
    s = load_sweep(spec(tmp_path, 'params = "non_embedding"\n[sweep.set]\n"model.block_size" = 16\n'
                                  '[sweep.axes]\nsize = ["10M", "25M"]\ntokens_per_param = [0.01, 0.02]\n'))
    assert len(s.runs) == 4
    for r in s.runs:
        n_layer, d_model = PRESETS[r.values["size"]]
        assert (r.cfg.model.n_layer, r.cfg.model.d_model, r.cfg.model.n_head) == (n_layer, d_model, d_model // 64)
        want = math.ceil(r.values["tokens_per_param"] * r.params["non_embedding"] / r.cfg.tokens_per_step)
        assert r.cfg.train.max_steps == want and r.tokens == want * r.cfg.tokens_per_step
        assert r.flops > 6 * r.params["non_embedding"] * r.tokens * 0.9
    # 12 layers of d^2 blocks at 4 x 256 against 4 x 512: four times the non-embedding parameters
    assert s.runs[2].params["non_embedding"] / s.runs[0].params["non_embedding"] == pytest.approx(4, rel=0.02)


def test_a_flops_axis_makes_flop_matched_runs(tmp_path):
    s = load_sweep(spec(tmp_path, '[sweep.axes]\n"model.d_model" = [16, 32, 64]\nflops = [1e9, 3e9]\n'))
    for r in s.runs:  # every size trains for its budget's FLOPs (within one step's worth)
        per_step = r.flops / r.cfg.train.max_steps
        assert abs(r.flops - r.values["flops"]) <= per_step / 2 + 1
    small, large = s.runs[0], s.runs[4]  # d16 and d64 at 1e9: the smaller trains on more tokens
    assert small.tokens > 4 * large.tokens


@pytest.mark.parametrize("body, named", [
    ('[sweep.axes]\n"model.d_model" = [32]\nflops = [1e9]\ntokens_per_param = [20]\n', "keep one"),
    ('[sweep.axes]\nflops = [-1]\n', "flops = -1 must be a positive number"),
    ('[sweep.axes]\n"model.d_model" = []\n', "non-empty list"),
    ('mode = "spiral"\n[sweep.axes]\n"model.d_model" = [32]\n', "mode = 'spiral'"),
    ('mode = "zip"\n[sweep.axes]\n"model.d_model" = [32, 64]\n"optim.lr" = [1e-3]\n', "equal lengths"),
    ('[sweep.axes]\nsize = ["3M"]\n', "size = '3M'"),
    ('[sweep.axes]\nd_model = [32]\n', "section.key"),
    ('[sweep.axes]\n"model.d_model" = [32, 33]\n', "run 2 (model.d_model=33)"),
    ('mode = "random"\ncount = 2\n[sweep.axes]\n"optim.lr" = {log_uniform = [0, 1]}\n', "positive low bound"),
    ('colour = 1\n[sweep.axes]\n"model.d_model" = [32]\n', "unknown key"),
    ('mode = "random"\ncount = 1e8\n[sweep.axes]\n"optim.lr" = {log_uniform = [1e-4, 1]}\n',
     "100,000,000 runs: more than 100,000"),
    ('[sweep.axes]\n"optim.lr" = ' + str([i / 1e5 for i in range(1, 41)]) + '\n"train.seed" = '
     + str(list(range(30))) + '\n', "1,200 runs: more than 1,000; pass --yes"),
])
@pytest.mark.slow
def test_bad_specs_are_one_line_naming_the_key_and_create_nothing(tmp_path, body, named):
    path = spec(tmp_path, body)
    with pytest.raises(SweepError, match=None) as e:
        load_sweep(path)
    assert named in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)
    r = cockpit("--runs-dir", str(tmp_path / "runs"), "sweep", str(path))
    assert r.returncode == 2 and named in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").glob("s-*"))


@pytest.mark.slow
def test_a_sweep_is_queued_together_with_its_values_and_shows_progress(tmp_path):
    path = spec(tmp_path, 'name = "lr"\n[sweep.axes]\n"optim.lr" = [1e-3, 3e-3, 1e-2]\n')
    runs = tmp_path / "runs"
    r = cockpit("--runs-dir", str(runs), "sweep", str(path), "--dry-run")
    assert r.returncode == 0 and "3 runs (grid)" in r.stdout and "FLOPs" in r.stdout and not runs.exists()
    r = cockpit("--runs-dir", str(runs), "sweep", str(path))
    assert r.returncode == 0, r.stderr
    sweep_id = r.stdout.split("as sweep ")[1].split(";")[0]
    queue = json.loads((runs / ".cockpit" / "queue.json").read_text())["order"]
    metas = [json.loads((runs / rid / "run.json").read_text()) for rid in queue]
    assert [m["sweep_values"]["optim.lr"] for m in metas] == [1e-3, 3e-3, 1e-2]
    assert all(m["sweep"] == sweep_id for m in metas) and [m["name"] for m in metas] == ["lr-01", "lr-02", "lr-03"]
    ls = cockpit("--runs-dir", str(runs), "sweep", "ls")
    assert ls.returncode == 0 and f"{sweep_id}  3 runs: 3 queued" in ls.stdout
    st = cockpit("--runs-dir", str(runs), "sweep", "status", "lr")
    assert st.returncode == 0 and "0/3 completed" in st.stdout and "optim.lr=0.003" in st.stdout
    st = cockpit("--runs-dir", str(runs), "sweep", "status", "nope")
    assert st.returncode == 2 and "cockpit sweep ls" in st.stderr
    rm = cockpit("--runs-dir", str(runs), "queue", "rm", queue[1])
    assert rm.returncode == 0 and f"removed {queue[1]} from sweep {sweep_id} (2 of its runs remain)" in rm.stdout


def test_known_vocabulary_sizes_are_the_encodings_own():
    """Sweeps size runs from known vocabularies without loading an encoding (offline that tried
    the network once a run); where an encoding does load here, its size must be the known one."""
    from cockpit.sweep import KNOWN_VOCAB
    from runspec.data.tokenizers import TokenizerError, get_tokenizer

    checked = 0
    for name, size in KNOWN_VOCAB.items():
        try:
            tok = get_tokenizer(name)
        except (TokenizerError, ValueError):
            continue  # not cached on this machine
        assert tok.vocab_size == size, name
        checked += 1
    assert checked >= 1  # bytes always loads


def test_runs_that_cannot_mean_anything_are_named_at_expansion(tmp_path):
    """A ladder's short rung: warmup longer than the run, no running validation, a checkpoint
    interval beyond it; far too few tokens per parameter. One line per run, or per problem when
    several runs share it."""
    from cockpit.sweep_checks import run_warnings, sweep_warnings

    s = load_sweep(spec(tmp_path, '[sweep.set]\n"optim.warmup_steps" = 20\n"eval.every" = 100\n'
                                  '"train.checkpoint_every" = 50\n[sweep.axes]\n"train.max_steps" = [17, 400]\n'))
    short, long = s.runs
    kinds = [k for k, _ in run_warnings(short)]
    assert kinds == ["warmup", "eval", "checkpoint", "tokens"], run_warnings(short)
    assert "optim.warmup_steps 20 >= train.max_steps 17: it never reaches its peak" in run_warnings(short)[0][1]
    assert run_warnings(long) == []  # 400 steps: 1.5 tokens per parameter, validated, checkpointed
    lines = sweep_warnings(s.runs)
    assert len(lines) == 4 and lines[0].startswith("run 1 (s-01): optim.warmup_steps 20")
    lines = sweep_warnings(load_sweep(spec(tmp_path, '[sweep.set]\n"optim.warmup_steps" = 20\n[sweep.axes]\n'
                                                     '"train.max_steps" = [17, 18, 400]\n')).runs)
    assert lines[0] == "runs 1, 2 of 3: optim.warmup_steps >= train.max_steps: they never reach their peak learning rate"


@pytest.mark.slow
def test_strict_refuses_such_a_sweep_and_queues_nothing(tmp_path):
    path = spec(tmp_path, '[sweep.set]\n"optim.warmup_steps" = 20\n[sweep.axes]\n"train.max_steps" = [17, 18]\n')
    runs = tmp_path / "runs"
    r = cockpit("--runs-dir", str(runs), "sweep", str(path), "--strict")
    assert r.returncode == 2 and "warning: runs 1, 2 of 2: optim.warmup_steps >= train.max_steps" in r.stderr
    assert "cannot mean anything" in r.stderr.splitlines()[-1] and not (runs / ".cockpit").exists()
    r = cockpit("--runs-dir", str(runs), "sweep", str(path))  # warned, then queued as asked
    assert r.returncode == 0 and "warning:" in r.stderr and "queued 2 runs" in r.stdout


@pytest.mark.slow
def test_a_large_sweep_needs_yes_and_its_dry_run_lists_runs_as_they_are_checked(tmp_path):
    """Before: a 100,000-run grid's --dry-run printed nothing for minutes."""
    body = '[sweep.axes]\n"optim.lr" = ' + str([i / 1e3 for i in range(1, 11)]) + '\n"train.seed" = ' + \
        str(list(range(110))) + '\n'
    path = spec(tmp_path, body)
    r = cockpit("--runs-dir", str(tmp_path / "runs"), "sweep", str(path), "--dry-run", "--yes")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "sweep: 1,100 runs; each is listed as it is checked"
    assert lines[2].startswith("1  s-0001  ") and lines[-4].startswith("1100  s-1100  ")  # names sort in order
    assert lines[-2].startswith("1100 runs (grid)") and not (tmp_path / "runs").exists()
    assert lines[-1].startswith("estimated time: unknown (no run of these shapes has trained here yet")


@pytest.mark.slow
def test_a_dry_run_estimates_the_time_from_runs_trained_here_and_flags_a_batch_beyond_the_data(tmp_path):
    runs = tmp_path / "runs"
    path = spec(tmp_path, '[sweep.axes]\n"optim.lr" = [1e-3, 2e-3]\n')
    base = tmp_path / "base.toml"
    assert cockpit("--headless", "--runs-dir", str(runs), "run", str(base), "--name", "measured").returncode == 0
    r = cockpit("--runs-dir", str(runs), "sweep", str(path), "--dry-run")
    est = [line for line in r.stdout.splitlines() if line.startswith("estimated time:")]
    assert r.returncode == 0 and est and "for 2 of 2 runs at this machine's measured rates" in est[0], r.stdout
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("a" * 3000)  # 2,700 training tokens; one step of 4 sequences x 32 tokens x 32 accumulations: 4,096
    big = spec(tmp_path, f'[sweep.set]\n"data.path" = "{tiny}"\n"train.grad_accum" = 32\n'
                         '[sweep.axes]\n"optim.lr" = [1e-3]\n', name="big")
    r = cockpit("--runs-dir", str(runs), "sweep", str(big), "--dry-run")
    assert "a step's batch is 4,096 tokens, more than the ~2,700 of the training split" in r.stderr, r.stderr
