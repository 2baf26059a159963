"""``cockpit status``: the workers, the queue, the running runs' progress, GPUs and keep-awake,
in one screen that works over SSH. Read from files only."""

from __future__ import annotations

import json
from pathlib import Path

from cockpit.format import hms
from cockpit.queue import Queue
from cockpit.runs import Listed, engine_alive, read_states, run_config, starting
from cockpit.summary import summarize
from cockpit.worker import device_label, live_workers, remote_host
from runspec.config.shape import model_label
from runspec.run.rundir import QUEUED, RUNNING


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def run_label(rd) -> str:
    """The run's shape and kinds, '4L×128 mla+moe4x2' (from resolved.toml, cached)."""
    cfg = run_config(rd)
    return model_label(cfg.model) if cfg is not None else "?"


def run_progress(listed: Listed) -> dict:
    """Step/total, last loss and ETA from the run's newest step event; whether its engine
    is really there."""
    rd, state = listed.rd, listed.state
    s = summarize(listed)
    out = {"id": rd.id, "status": s.status, "step": s.step, "max_steps": s.max_steps, "pid": state.pid,
           "slot": state.slot, "owner": state.owner, "host": state.host if state.elsewhere() else None, "model": s.model, "loss": s.loss, "eta_s": s.eta_s}
    if engine_alive(rd, state):
        out["engine"] = "alive"
    elif starting(state):
        out["engine"] = "starting"
    else:
        out["engine"] = "gone"
        out["eta_s"] = None
    return out


def worker_status(q: Queue) -> dict:
    """Every live worker (its pid, slots and runs); ``alive`` when there is at least one."""
    workers = live_workers(q.runs_dir)
    return {"alive": bool(workers), "pid": workers[0]["pid"] if workers else None,
            "workers": [{"pid": w["pid"], "slots": w.get("slots", []),
                         **({"host": remote_host(w)} if remote_host(w) else {})} for w in workers]}


def control_files(q: Queue) -> dict:
    """The worker's GPU and keep-awake figures."""
    return {"gpus": _read_json(q.dir / "gpus.json"), "keepawake": _read_json(q.dir / "keepawake.json")}


def collect(runs_dir: Path, warn=None) -> dict:
    q = Queue(runs_dir, warn=warn)
    data = q.read()
    listed = read_states(runs_dir)  # each state.json read once; damage is a reason, not a crash
    running = [run_progress(x) for x in listed.values() if x.status == RUNNING]
    queued = []
    held = set(data.get("held", []))
    for i, run_id in enumerate(data["order"], 1):
        x = listed.get(run_id)
        item = {"position": i, "id": run_id, "status": x.status if x else "?", "model": run_label(x.rd) if x else "?"}
        if run_id in held:
            item["held"] = True
        if x is not None and x.state is not None and x.status == QUEUED:
            waiting = q.waiting_for(x.rd)
            if waiting:
                item["waiting_for"] = waiting
        queued.append(item)
    from cockpit.eta import drain

    finished = [x for x in listed.values() if x.status not in (QUEUED, RUNNING) and x.state is not None]
    recent = sorted(finished, key=lambda x: x.state.updated)[-5:]
    # a run whose state.json cannot be read has no time to sort by: listed on its own, always, not dropped
    damaged = [{"id": x.rd.id, "reason": x.problem.removeprefix(f"{x.rd.id}: ")} for x in listed.values()
               if x.state is None]
    return {
        "worker": worker_status(q), "paused": data["paused"], "queue": queued, "running": running,
        "drain": drain(listed, data["order"]).line(),
        "recent": [{"id": x.rd.id, "status": x.status, "reason": x.state.reason if x.state else x.problem}
                   for x in recent],
        "damaged": damaged,
        **control_files(q),
    }


def queue_counts(st: dict) -> str:
    """'2 running, 30 queued': what the lines below a header list, each run counted once (a
    running run may still hold its place in the order)."""
    queued = sum(1 for item in st["queue"] if item["status"] == QUEUED)
    other = sum(1 for item in st["queue"] if item["status"] not in (QUEUED, RUNNING))
    parts = [f"{len(st['running'])} running", f"{queued} queued"] + ([f"{other} other"] if other else [])
    return ", ".join(parts)


def _slot_text(s: dict) -> str:
    """'CPU: run' for one slot a device; 'CPU 2/3: a, b' when the worker runs several on it."""
    label, runs = device_label([s["slot"]]), s.get("runs") or ([s["run"]] if s.get("run") else [])
    if s.get("capacity", 1) > 1:
        label += f" {s.get('used', len(runs))}/{s['capacity']}"
    return label + (f": {', '.join(runs)}" if runs else "")


def slot_usage(slots: list[dict]) -> str:
    """'CPU 1/2' per device: how many of its slots hold runs (the Queue tab's worker line)."""
    return ", ".join(f"{device_label([s['slot']])} {s.get('used', 1 if s.get('run') else 0)}/{s.get('capacity', 1)}"
                     for s in slots)


def worker_line(w: dict) -> str:
    if not w["alive"]:
        return "not running (start: cockpit worker)"
    parts = []
    for x in w["workers"]:
        slots = ", ".join(_slot_text(s) for s in x["slots"])
        parts.append(f"pid {x['pid']}{' on ' + x['host'] if x.get('host') else ''} ({slots})")
    return "alive, " + "; ".join(parts)


def render(st: dict) -> str:
    w = st["worker"]
    lines = [f"worker     {worker_line(w)}{'   PAUSED' if st['paused'] else ''}"]
    for r in st["running"]:
        loss = f"loss {r['loss']:.4f}" if r.get("loss") is not None else "starting"
        where = f"  [{device_label(r['slot'].split(','))}]" if r.get("slot") else ""
        if r.get("host"):  # launched on another machine sharing this runs directory
            where += f"  on {r['host']}"
        if r["engine"] == "gone":
            lines.append(f"running    {r['id']}  {r['model']}  step {r['step']}/{r['max_steps']}  ENGINE GONE (pid {r['pid']}): "
                         f"a worker marks it interrupted and resumes it")
        else:
            lines.append(f"running    {r['id']}  {r['model']}  step {r['step']}/{r['max_steps']}  {loss}  "
                         f"ETA {hms(r.get('eta_s'))}{where}")
    if not st["running"]:
        lines.append("running    -")
    lines.append(f"queue      {queue_counts(st)}" + (f"; {st['drain']}" if st.get("drain") else ""))
    lines += [f"  {q['position']:>3}. {q['id']}  {q['model']}" +
              ("  (held)" if q.get("held") else f"  (waiting for {q['waiting_for']})" if q.get("waiting_for") else "")
              for q in st["queue"]
              if q["status"] != RUNNING]
    for r in st["recent"]:
        lines.append(f"recent     {r['id']}  {r['status']}" + (f": {r['reason']}" if r["reason"] else ""))
    for r in st.get("damaged", []):
        lines.append(f"damaged    {r['id']}: {r['reason']}")
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

