"""``cockpit slurm CONFIG --nodes N --gpus-per-node G --time H:MM [--partition P] [--dry-run |
--submit]``: create the run directory and write RUN/slurm.sbatch, an sbatch script that trains it
across N nodes under srun (cockpit.slurm); --submit hands it to sbatch, --dry-run prints the
script and creates nothing."""

from __future__ import annotations

from cockpit.args import add_set, non_negative_int, positive_int


def register(sub) -> None:
    s = sub.add_parser("slurm", help="write (and --submit) an sbatch script that trains a config across Slurm nodes")
    s.add_argument("config", help="a run config (TOML)")
    s.add_argument("--nodes", type=positive_int, default=None, metavar="N", help="nodes (default: [train] nodes)")
    s.add_argument("--gpus-per-node", type=non_negative_int, default=None, metavar="G",
                   help="ranks (GPUs) per node (default: [train] gpus; 0 asks Slurm for no GPU: CPU ranks)")
    s.add_argument("--time", default="4:00", metavar="H:MM", help="the job's time limit (default 4:00)")
    s.add_argument("--partition", default="", metavar="P", help="the partition (default: the cluster's)")
    s.add_argument("--account", default="", metavar="A", help="the account to charge (default: yours)")
    s.add_argument("--cpus-per-node", type=non_negative_int, default=0, metavar="C",
                   help="CPUs for each node's engine and ranks (default: Slurm's)")
    s.add_argument("--sbatch", action="append", default=[], metavar="OPTION",
                   help="another #SBATCH option, verbatim, e.g. --sbatch=--constraint=a100 (repeatable)")
    s.add_argument("--name", help="run name (default: the config file's stem)")
    do = s.add_mutually_exclusive_group()
    do.add_argument("--dry-run", action="store_true", help="print the script; create and submit nothing")
    do.add_argument("--submit", action="store_true", help="submit the script with sbatch")
    add_set(s)
    s.set_defaults(func=main)


def main(args) -> int:
    import shutil
    import subprocess
    from pathlib import Path

    from cockpit import slurm
    from cockpit.args import fail
    from cockpit.runs import check_config, create_run, new_run_id, runs_root
    from runspec.run.rundir import RunDir, RunMeta

    sets = list(args.set or [])
    if args.nodes is not None:
        sets.append(f"train.nodes={args.nodes}")
    if args.gpus_per_node is not None:
        sets.append(f"train.gpus={max(1, args.gpus_per_node)}")
    try:
        time_limit = slurm.parse_time(args.time)
    except slurm.SlurmError as e:
        return fail(str(e))
    for extra in args.sbatch:
        if not extra.startswith("-") or "\n" in extra:
            return fail(f"--sbatch {extra!r}: give one sbatch option such as --constraint=a100")
    cfg = check_config(args.config, sets)
    if cfg.train.rdzv:
        return fail(f"{args.config}: [train] rdzv = {cfg.train.rdzv!r}: under Slurm the nodes meet at the job's first "
                    f"node, known only when it starts; remove rdzv")
    gpus = cfg.train.gpus if args.gpus_per_node is None else args.gpus_per_node
    if gpus and cfg.train.device == "cpu":
        return fail(f"{args.config}: [train] device = 'cpu' with {gpus} GPU(s) per node: pass --gpus-per-node 0 for "
                    f"CPU ranks, or set device = 'auto'")
    job = slurm.Job(cfg.train.nodes, gpus, time_limit, args.partition, args.account, args.cpus_per_node,
                    tuple(args.sbatch))
    runs_dir = runs_root(args.runs_dir).resolve()
    if args.dry_run:
        rd = RunDir(runs_dir / new_run_id(runs_dir, args.name or Path(args.config).stem))
        print(slurm.script(rd.path, job, Path.cwd()), end="")
        print(f"# dry run: nothing created; without --dry-run the run directory would be {rd.path}")
        return 0
    if args.submit and shutil.which("sbatch") is None:
        return fail("--submit: sbatch is not on PATH here; run this on the cluster's login node, or without "
                    "--submit and then: sbatch RUN/slurm.sbatch")
    rd = create_run(args.config, sets, args.name, runs_dir, RunMeta(tags=["slurm"]), checked=cfg)
    path = rd.path / slurm.SCRIPT_NAME
    path.write_text(slurm.script(rd.path, job, Path.cwd()), encoding="utf-8")
    print(f"created {rd.path}")
    print(f"script  {path}")
    if not args.submit:
        print(f"submit it with: sbatch {path}")
        return 0
    r = subprocess.run(["sbatch", "--parsable", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        said = (r.stderr or r.stdout).strip().splitlines()
        return fail(f"sbatch refused {path}: {said[-1] if said else f'exit code {r.returncode}'}; "
                    f"the run stays queued here: fix the options and sbatch it again")
    job_id = r.stdout.strip().split(";")[0]
    meta = rd.read_meta()
    meta.tags = [*meta.tags, f"slurm:{job_id}"]
    rd.write_meta(meta)
    print(f"submitted Slurm job {job_id}; follow it with: cockpit status {rd.id}   (stop: scancel {job_id})")
    return 0
