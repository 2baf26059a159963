"""``cockpit status``: the worker, the queue, the running runs' progress, GPUs and keep-awake,
in one screen that works over SSH. Read from files only."""

from __future__ import annotations

import json
import time
from pathlib import Path

from cockpit.queue import Queue
from cockpit.runs import list_runs, pid_alive
from cockpit.history import RunHistory, eta_s
from engine.rundir import RUNNING, RunDir

HEARTBEAT_STALE_S = 10


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def run_progress(rd: RunDir) -> dict:
    """Step/total, last loss and ETA from the run's newest step event."""
    state = rd.read_state()
    h = RunHistory(rd)
    h.poll()
    out = {"id": rd.id, "status": state.status, "step": state.step, "max_steps": state.max_steps}
    if "train/step_ms" in h.latest:  # only step events carry it
        out.update(step=h.step, max_steps=h.max_steps or state.max_steps, loss=h.latest.get("train/loss"))
        out["eta_s"] = eta_s(out["step"], out["max_steps"], h.latest)
    return out


def worker_status(q: Queue) -> dict:
    """Whether a worker is alive: it says so, its pid exists and its heartbeat is fresh."""
    worker = _read_json(q.dir / "worker.json")
    alive = bool(worker.get("alive")) and pid_alive(worker.get("pid")) and \
        time.time() - worker.get("heartbeat", 0) < HEARTBEAT_STALE_S
    return {"alive": alive, "pid": worker.get("pid") if alive else None}


def control_files(q: Queue) -> dict:
    """The worker's GPU and keep-awake figures."""
    return {"gpus": _read_json(q.dir / "gpus.json"), "keepawake": _read_json(q.dir / "keepawake.json")}


def collect(runs_dir: Path) -> dict:
    q = Queue(runs_dir)
    data = q.read()
    states = {rd.id: (rd, rd.read_state()) for rd in list_runs(runs_dir)}  # each state.json read once
    running = [run_progress(rd) for rd, s in states.values() if s.status == RUNNING]
    queued = []
    for i, run_id in enumerate(data["order"], 1):
        queued.append({"position": i, "id": run_id, "status": states[run_id][1].status if run_id in states else "?"})
    finished = [(rd, s) for rd, s in states.values() if s.status not in ("queued", RUNNING)]
    recent = sorted(finished, key=lambda x: x[1].history[-1]["time"] if x[1].history else 0)[-5:]
    return {
        "worker": worker_status(q), "paused": data["paused"], "queue": queued, "running": running,
        "recent": [{"id": rd.id, "status": s.status, "reason": s.reason} for rd, s in recent],
        **control_files(q),
    }


def eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"


def render(st: dict) -> str:
    w = st["worker"]
    lines = [f"worker     {'alive (pid ' + str(w['pid']) + ')' if w['alive'] else 'not running (start: cockpit worker)'}"
             f"{'   PAUSED' if st['paused'] else ''}"]
    for r in st["running"]:
        loss = f"loss {r['loss']:.4f}" if r.get("loss") is not None else "starting"
        lines.append(f"running    {r['id']}  step {r['step']}/{r['max_steps']}  {loss}  ETA {eta(r.get('eta_s'))}")
    if not st["running"]:
        lines.append("running    -")
    lines.append(f"queue      {len(st['queue'])} run(s)")
    lines += [f"  {q['position']:>3}. {q['id']}" for q in st["queue"]]
    for r in st["recent"]:
        lines.append(f"recent     {r['id']}  {r['status']}" + (f": {r['reason']}" if r["reason"] else ""))
    lines += [f"gpu {x}" for x in gpu_lines(st["gpus"])]
    lines.append(f"keep-awake {keepawake_line(st['keepawake'])}")
    return "\n".join(lines)


def gpu_lines(g: dict) -> list[str]:
    """One line per GPU from gpus.json, or one line saying why there are none."""
    if not g.get("gpus"):
        return [f"       {g.get('error') or 'no figures yet (the worker samples them)'}"]
    out = []
    for x in g["gpus"]:
        power = f"  {x['power_w']:.0f} W" if x.get("power_w") is not None else ""
        out.append(f"{x['index']:<6} {x['name']}: {x['util']:.0f}%  {x['mem_used_mb']:.0f}/"
                   f"{x['mem_total_mb']:.0f} MB  {x['temp_c']:.0f} C{power}")
    return out


def keepawake_line(ka: dict) -> str:
    if not ka:
        return "unknown (runs inside the worker, or: cockpit keepawake)"
    detail = ka.get("method") or ka.get("reason") or ""
    return ka["state"] + (f" ({detail})" if detail else "")
