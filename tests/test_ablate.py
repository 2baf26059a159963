"""Seeds and ablations end to end, through the real CLI and a real worker: `run --seeds`,
`queue add --seeds`, `cockpit ablate` (queued as one sweep, a findings entry the worker rebuilds
when the last run ends) and `compare --baseline` over the seed groups."""

import json
import re
import subprocess
import sys

import pytest
from conftest import PATIENCE, cockpit

pytestmark = pytest.mark.slow  # real engine subprocesses and a worker

SHORT = ["--set", "train.max_steps=6", "--set", "eval.every=3", "--set", "eval.final_max_batches=2",
         "--set", "train.checkpoint_every=0", "--set", "eval.sample_tokens=0"]


def test_ablate_queues_arms_times_seeds_and_the_worker_writes_the_finding(write_config, tmp_path):
    cfg = write_config("tiny")
    runs, findings = tmp_path / "runs", tmp_path / "findings"
    r = cockpit("--runs-dir", str(runs), "ablate", str(cfg), "--vary", "model.activation=relu2", "--seeds", "2",
                "--findings", str(findings), "--question", "Does relu2 help a tiny model?", *SHORT)
    assert r.returncode == 0, r.stderr
    sweep = re.search(r"as sweep (\S+)", r.stdout).group(1)
    ls = json.loads(cockpit("--runs-dir", str(runs), "queue", "ls", "--json").stdout)
    names = sorted(re.sub(r"-\d{8}-\d{6}$", "", q["id"]) for q in ls["queue"])
    assert names == ["tiny-abl-activation-relu2-s1337", "tiny-abl-activation-relu2-s1338",
                     "tiny-abl-base-s1337", "tiny-abl-base-s1338"]
    entry = next((findings / "entries").glob("*.md")).read_text()
    assert f'sweep = "{sweep}"' in entry and 'baseline = "tiny-abl-base"' in entry
    done = subprocess.run([sys.executable, "-m", "cockpit", "--runs-dir", str(runs), "worker", "--once",
                           "--slots", "2"], capture_output=True, text=True, timeout=PATIENCE)
    assert done.returncode == 0, done.stderr
    assert f"ablation {sweep} finished: wrote" in done.stdout + done.stderr
    doc = (findings / "FINDINGS.md").read_text()
    assert "## Does relu2 help a tiny model?" in doc and "tiny-abl-base ×2" in doc
    assert re.search(r"Δ val loss, equal steps \(step 6\) \| baseline \| [+-]\d\.\d{4} ±\d\.\d{4} [~*] \|", doc), doc
    # the same table from the CLI, the baseline named by its group
    c = cockpit("--runs-dir", str(runs), "compare", "--sweep", sweep, "--baseline", "tiny-abl-base", "--no-chart")
    assert c.returncode == 0, c.stderr
    header = c.stdout.splitlines()[0].split()
    assert header[:2] == ["tiny-abl-base", "×2"]
    assert "model.ffn.activation" in c.stdout and "train.seed" in c.stdout and "1337,1338" in c.stdout
    assert "Δ tokens/s" in c.stdout and "paired t" in c.stdout
    # --separate: four columns, one per run
    sep = cockpit("--runs-dir", str(runs), "compare", "--sweep", sweep, "--separate", "--no-chart")
    assert len(sep.stdout.splitlines()[0].split()) == 4
    bad = cockpit("--runs-dir", str(runs), "compare", "--sweep", sweep, "--baseline", "nosuch")
    assert bad.returncode == 2 and "--baseline 'nosuch'" in bad.stderr and "tiny-abl-base" in bad.stderr
    # bad input to ablate: one line, nothing queued
    before = sorted(p.name for p in runs.iterdir())
    for args, words in ((["--vary", "model.activation=nosuch"], "tiny-abl-activation-nosuch"),
                        (["--vary", "train.seed=1,2"], "use --seeds"),
                        (["--vary", "model.activation"], "expected KEY=V1,V2")):
        bad = cockpit("--runs-dir", str(runs), "ablate", str(cfg), *args, "--findings", str(findings))
        assert bad.returncode == 2 and words in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert sorted(p.name for p in runs.iterdir()) == before


def test_run_and_queue_add_with_seeds(write_config, tmp_path):
    cfg = write_config("tiny")
    runs = tmp_path / "runs"
    r = cockpit("--runs-dir", str(runs), "--headless", "run", str(cfg), "--seeds", "5,9", *SHORT)
    assert r.returncode == 0, r.stderr
    assert "(seed 5: 1 of 2)" in r.stdout and "(seed 9: 2 of 2)" in r.stdout
    table = r.stdout[r.stdout.index("tiny ×2"):]
    assert "completed ×2" in table and re.search(r"final val loss +\d\.\d{4} ± \d\.\d{4}", table)
    q = cockpit("--runs-dir", str(runs), "queue", "add", str(cfg), "--seeds", "2", "--name", "arm")
    assert q.returncode == 0, q.stderr
    assert re.search(r"queued arm-s1337-\d{8}-\d{6} at position 1", q.stdout)
    assert re.search(r"queued arm-s1338-\d{8}-\d{6} at position 2", q.stdout)
    seeds_of = sorted(json.loads(p.read_text()).get("overrides", {}).get("train.seed")
                      for p in runs.glob("arm-s*/run.json"))
    assert seeds_of == [1337, 1338]
    bad = cockpit("--runs-dir", str(runs), "queue", "add", str(cfg), "--seeds", "0")
    assert bad.returncode == 2 and "at least 1" in bad.stderr
