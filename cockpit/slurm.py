"""The Slurm path for cluster users: an ``sbatch`` script that trains one run directory across
``nodes`` machines. ``srun`` starts one engine per node (``python -m engine train RUN``); each
takes its node rank from ``$SLURM_NODEID`` and meets the others at the first node of the
allocation (the rendezvous is known only when the job starts, so the script passes it as
``--rdzv``). The run directory exists before the job is submitted, so ``cockpit status`` and
the TUI show it queued, then running, like any run; the runs directory must be on a filesystem
every node mounts (the other nodes' ranks read the run's config and, on a resume, the checkpoint
rank 0 picked). A time limit sends SIGTERM to the engines two minutes ahead (``--signal``): they
agree on a step, node 0 writes a checkpoint, and submitting the same script again
(``sbatch RUN/slurm.sbatch``) continues the run from it."""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

SCRIPT_NAME = "slurm.sbatch"
PORT_BASE = 20000  # the rendezvous port: from the job id, so two jobs on one first node differ
STOP_WARNING_S = 120  # SIGTERM this long before the time limit: time for a checkpoint


class SlurmError(ValueError):
    """A bad option of `cockpit slurm` (one line, exit 2)."""


@dataclass
class Job:
    nodes: int
    gpus_per_node: int
    time: str  # Slurm's [D-]HH:MM[:SS]
    partition: str = ""
    account: str = ""
    cpus_per_node: int = 0  # 0: Slurm's default
    extra: tuple[str, ...] = ()  # more #SBATCH lines, verbatim (e.g. --constraint=a100)


def parse_time(text: str) -> str:
    """'H:MM', 'HH:MM:SS' or 'D-HH:MM' as Slurm's time string; SlurmError otherwise."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d{1,3}):([0-5]\d)(?::([0-5]\d))?", text.strip())
    if not m:
        raise SlurmError(f"--time {text!r}: expected H:MM, H:MM:SS or D-H:MM (e.g. 4:00 for four hours)")
    days, hours, minutes, seconds = m.groups()
    out = f"{int(hours)}:{minutes}:{seconds or '00'}"
    return f"{int(days)}-{out}" if days else out


def script(run_dir: Path, job: Job, workdir: Path, python: str = sys.executable) -> str:
    """The sbatch script for ``run_dir``: directives, then one srun that starts an engine per node."""
    q = shlex.quote
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={run_dir.name}",
        f"#SBATCH --nodes={job.nodes}",
        "#SBATCH --ntasks-per-node=1",  # one engine per node; it starts the node's ranks under torchrun
        f"#SBATCH --time={job.time}",
        f"#SBATCH --output={run_dir}/slurm-%j.out",
        f"#SBATCH --signal=TERM@{STOP_WARNING_S}",
    ]
    if job.gpus_per_node:
        lines.append(f"#SBATCH --gpus-per-node={job.gpus_per_node}")
    if job.cpus_per_node:
        lines.append(f"#SBATCH --cpus-per-task={job.cpus_per_node}")
    if job.partition:
        lines.append(f"#SBATCH --partition={job.partition}")
    if job.account:
        lines.append(f"#SBATCH --account={job.account}")
    lines += [f"#SBATCH {x}" for x in job.extra]
    lines += [
        "",
        "set -euo pipefail",
        f"cd {q(str(workdir))}",
        "# every node meets the first node of the allocation",
        'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        f"port=$(( {PORT_BASE} + SLURM_JOB_ID % 20000 ))",
        "export PYTHONUNBUFFERED=1",
        "# one engine per node: node 0 owns the run (state, events, checkpoints) and logs to engine.log,",
        "# node K to engine.node<K>.log; each takes its node rank from $SLURM_NODEID",
        f"srun --kill-on-bad-exit=1 --ntasks-per-node=1 {q(python)} -m engine train {q(str(run_dir))} "
        f'--rdzv "$head_node:$port" --own-log',
        "",
    ]
    return "\n".join(lines)


def directives(text: str) -> dict[str, str]:
    """The #SBATCH options of a script, as sbatch reads them (before the first command)."""
    out: dict[str, str] = {}
    for line in text.splitlines()[1:]:
        if not line.startswith("#SBATCH"):
            if line.strip() and not line.startswith("#"):
                break
            continue
        opt = line.split(None, 1)[1]
        key, _, value = opt.partition("=")
        out[key] = value
    return out
